//! NATS as docs/FLEET.md tells an operator to run it: TLS with a private CA, one client
//! certificate per node mapped to a user (`verify_and_map`), and each user allowed exactly
//! what guardd needs. The certificates are made here with openssl, for the hub's addresses.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// A CA, a server certificate and client certificates, in a temporary directory.
pub struct Pki {
    pub dir: tempfile::TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    /// A CA and a server certificate for `server_ips`.
    pub fn new(server_ips: &[String]) -> Pki {
        let dir = crate::daemon::workdir();
        let d = dir.path();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=guard test CA"];
        ca.extend(ec);
        ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
        ca.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
        ca.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
        openssl(d, &ca);
        let sans: Vec<String> = server_ips.iter().map(|ip| format!("IP:{ip}")).collect();
        let pki = Pki { dir };
        pki.issue(
            "server",
            "nats",
            &format!(
                "subjectAltName={}\nextendedKeyUsage=serverAuth\n",
                sans.join(",")
            ),
        );
        pki
    }

    /// A certificate and key `name.pem`/`name.key` with subject `CN=cn`, signed by the CA.
    fn issue(&self, name: &str, cn: &str, ext: &str) {
        let d = self.dir.path();
        let (key, csr, pem, extfile) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        let subj = format!("/CN={cn}");
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                &subj,
                "-keyout",
                &key,
                "-out",
                &csr,
            ],
        );
        std::fs::write(d.join(&extfile), ext).expect("extfile");
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-days",
                "2",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-extfile",
                &extfile,
            ],
        );
        // As the docs say to keep a key: readable by its owner, guardd's user, only.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d.join(&key), std::fs::Permissions::from_mode(0o600))
            .expect("chmod key");
        crate::unit_caps::give_to_guardd(&d.join(&key));
    }

    /// A client certificate for node `node` (subject `CN=<node>`, the NATS user it maps to).
    pub fn client(&self, node: &str) -> (PathBuf, PathBuf) {
        self.issue(node, node, "extendedKeyUsage=clientAuth\n");
        (
            self.path(&format!("{node}.pem")),
            self.path(&format!("{node}.key")),
        )
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// The `[fleet]` lines for a node with its certificate.
    pub fn fleet_tls(&self, node: &str) -> String {
        let (cert, key) = (
            self.path(&format!("{node}.pem")),
            self.path(&format!("{node}.key")),
        );
        format!(
            "tls_ca = {:?}\ntls_cert = {cert:?}\ntls_key = {key:?}\n",
            self.path("ca.pem")
        )
    }

    /// A nats-server configuration: TLS with client certificates mapped to `users`
    /// (node name, permissions block).
    pub fn server_config(&self, users: &[(&str, String)]) -> PathBuf {
        let users: Vec<String> = users
            .iter()
            .map(|(node, perms)| format!("    {{ user: \"CN={node}\", permissions: {perms} }}"))
            .collect();
        let text = format!(
            "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n  ca_file: {:?}\n  verify_and_map: true\n  timeout: 2\n}}\n\
             authorization {{\n  users = [\n{}\n  ]\n}}\n",
            self.path("server.pem"),
            self.path("server.key"),
            self.path("ca.pem"),
            users.join("\n")
        );
        let path = self.path("nats.conf");
        std::fs::write(&path, text).expect("nats.conf");
        path
    }
}

/// What a node's user may do, as docs/FLEET.md gives it: the JetStream calls guardd makes
/// (stream info, consumer create, flow control) and replies; with `publish`, writing to the
/// buckets and creating their streams too (without: a node that only receives). No purge,
/// no deletion of a stream or a message. `buckets` narrows it (a user without one of them).
pub fn node_permissions(buckets: &[&str], publish: bool) -> String {
    let mut allow = Vec::new();
    for b in buckets {
        allow.extend([
            format!("\"$JS.API.STREAM.INFO.KV_{b}\""),
            format!("\"$JS.API.CONSUMER.CREATE.KV_{b}\""),
            format!("\"$JS.API.CONSUMER.CREATE.KV_{b}.>\""),
            format!("\"$JS.FC.KV_{b}.>\""),
        ]);
        if publish {
            allow.extend([
                format!("\"$KV.{b}.>\""),
                format!("\"$JS.API.STREAM.CREATE.KV_{b}\""),
            ]);
        }
    }
    format!(
        "{{ publish: {{ allow: [{}] }}, subscribe: {{ allow: [\"_INBOX.>\"] }} }}",
        allow.join(", ")
    )
}
