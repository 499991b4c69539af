//! Allow and deny list files: one IPv4 or IPv6 address or CIDR per line, `#` comments.
//!
//! A file is loaded whole or not at all: every bad line is reported with file:line.

pub mod tables;
pub mod trie6;

use std::{
    fmt,
    net::IpAddr,
    path::{Path, PathBuf},
};

use ipnet::IpNet;

/// Bad lines reported before giving up on a file set (the rest are counted).
const MAX_REPORTED: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("cannot read list {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", BadLines(.lines, *.more))]
    BadLines { lines: Vec<BadLine>, more: usize },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    pub origin: String,
    pub line: usize,
    pub text: String,
    pub reason: String,
}

struct BadLines<'a>(&'a [BadLine], usize);

impl fmt::Display for BadLines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}:{}: {:?}: {}", b.origin, b.line, b.text, b.reason)?;
        }
        if self.1 > 0 {
            write!(f, "\n... and {} more bad lines", self.1)?;
        }
        Ok(())
    }
}

/// Parses list text. `origin` names the source in errors.
pub fn parse(text: &str, origin: &str) -> Result<Vec<IpNet>, ListError> {
    let mut nets = Vec::new();
    let mut bad = Vec::new();
    let mut more = 0;
    for (n, raw) in text.lines().enumerate() {
        let entry = raw.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        match parse_net(entry) {
            Ok(net) => nets.push(net),
            Err(reason) if bad.len() < MAX_REPORTED => bad.push(BadLine {
                origin: origin.to_string(),
                line: n + 1,
                text: entry.to_string(),
                reason,
            }),
            Err(_) => more += 1,
        }
    }
    if bad.is_empty() {
        Ok(nets)
    } else {
        Err(ListError::BadLines { lines: bad, more })
    }
}

/// Reads and parses every file; fails, naming every bad line, if any file is bad.
pub fn load(paths: &[PathBuf]) -> Result<Vec<IpNet>, ListError> {
    let mut nets = Vec::new();
    let mut bad = Vec::new();
    let mut more = 0;
    for path in paths {
        match parse(&read(path)?, &path.display().to_string()) {
            Ok(mut n) => nets.append(&mut n),
            Err(ListError::BadLines { lines, more: m }) => {
                more += m;
                for line in lines {
                    if bad.len() < MAX_REPORTED {
                        bad.push(line)
                    } else {
                        more += 1
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
    if bad.is_empty() {
        Ok(nets)
    } else {
        Err(ListError::BadLines { lines: bad, more })
    }
}

/// The file and line (1-based) of the first line of `paths` holding `net` (an error's
/// pointer: the files are read again).
pub fn locate(paths: &[PathBuf], net: &IpNet) -> Option<(String, usize)> {
    paths.iter().find_map(|path| {
        let text = std::fs::read_to_string(path).ok()?;
        text.lines().enumerate().find_map(|(n, raw)| {
            let entry = raw.split('#').next().unwrap_or("").trim();
            (parse_net(entry).ok() == Some(*net)).then(|| (path.display().to_string(), n + 1))
        })
    })
}

fn read(path: &Path) -> Result<String, ListError> {
    std::fs::read_to_string(path).map_err(|source| ListError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// One address or CIDR as lists and the API accept it: host bits clear, not /0.
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    let net = if s.contains('/') {
        let net: IpNet = s
            .parse()
            .map_err(|_| "not an IP address or CIDR".to_string())?;
        if net.trunc() != net {
            return Err(format!(
                "host bits are set (the network is {})",
                net.trunc()
            ));
        }
        net
    } else {
        let addr: IpAddr = s
            .parse()
            .map_err(|_| "not an IP address or CIDR".to_string())?;
        IpNet::from(addr)
    };
    if net.prefix_len() == 0 {
        return Err("a /0 prefix would match every address".to_string());
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(v: &[&str]) -> Vec<IpNet> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn mixed_families_comments_and_blank_lines() {
        let text = "# header\n\n198.18.0.7\n198.18.1.0/24  # trailing comment\n  2001:db8::1\n2001:db8:1::/48\n\t\n";
        let got = parse(text, "l.txt").unwrap();
        assert_eq!(
            got,
            nets(&[
                "198.18.0.7/32",
                "198.18.1.0/24",
                "2001:db8::1/128",
                "2001:db8:1::/48"
            ])
        );
    }

    #[test]
    fn garbage_lines_are_reported_with_line_numbers() {
        let text = "198.18.0.1\nnot-an-ip\n198.18.0.0/33\n198.18.0.1/24\n2001:db8::/129\n0.0.0.0/0\n1.2.3\n";
        let ListError::BadLines { lines, more } = parse(text, "bad.txt").unwrap_err() else {
            panic!("expected bad lines");
        };
        assert_eq!(more, 0);
        let got: Vec<(usize, &str)> = lines.iter().map(|b| (b.line, b.text.as_str())).collect();
        assert_eq!(
            got,
            [
                (2, "not-an-ip"),
                (3, "198.18.0.0/33"),
                (4, "198.18.0.1/24"),
                (5, "2001:db8::/129"),
                (6, "0.0.0.0/0"),
                (7, "1.2.3")
            ]
        );
        assert!(
            lines[2].reason.contains("198.18.0.0/24"),
            "{}",
            lines[2].reason
        );
        let msg = ListError::BadLines { lines, more }.to_string();
        assert!(
            msg.starts_with("bad.txt:2: \"not-an-ip\": not an IP address or CIDR"),
            "{msg}"
        );
    }

    #[test]
    fn reporting_is_bounded() {
        let text = "x\n".repeat(50);
        let ListError::BadLines { lines, more } = parse(&text, "x").unwrap_err() else {
            panic!()
        };
        assert_eq!((lines.len(), more), (MAX_REPORTED, 50 - MAX_REPORTED));
    }

    #[test]
    fn load_is_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.txt");
        let bad = dir.path().join("bad.txt");
        std::fs::write(&good, "198.18.0.1\n").unwrap();
        std::fs::write(&bad, "198.18.0.2\nnope\n").unwrap();
        assert_eq!(
            load(std::slice::from_ref(&good)).unwrap(),
            nets(&["198.18.0.1/32"])
        );
        let e = load(&[good.clone(), bad.clone()]).unwrap_err().to_string();
        assert!(e.contains("bad.txt:2: \"nope\""), "{e}");
        let e = load(&[dir.path().join("missing.txt")])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("cannot read list ") && e.contains("missing.txt"),
            "{e}"
        );
    }

    #[test]
    fn the_real_blocklist_parses() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/firehol_level1.netset");
        let Ok(text) = std::fs::read_to_string(path) else {
            panic!("{path} is missing: it is part of the repository");
        };
        let got = parse(&text, "firehol").unwrap();
        // 6,273 entries per the file's header.
        assert_eq!(got.len(), 6273);
        assert!(got.iter().all(|n| matches!(n, IpNet::V4(_))));
    }
}
