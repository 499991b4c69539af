//! Protected addresses: what no ban may cover, whoever asks (API, bulk, fleet, `ban_after`,
//! aggregation). `[bans] protect` names some; the host always protects the addresses of
//! the interfaces guard guards, its default gateways, its resolvers and the fleet's
//! servers (`host`), since banning one of them would cut the host off from its own network.
//!
//! Protected is not allowed: the kernel never sees this set, so a forged flood from a
//! protected address is still held to the rules.

pub mod host;

use std::{fmt, net::IpAddr, path::PathBuf};

use guard_common::ListCode;
use ipnet::IpNet;

use crate::lists::tables::Tables;

/// Why an address is protected: said in every refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// `[bans] protect`.
    Config,
    /// An address of this interface.
    Interface(String),
    /// A default gateway (IPv4 or IPv6).
    Gateway,
    /// A `nameserver` of the resolver's configuration.
    Resolver,
    /// One of `[fleet] servers`, as configured.
    FleetServer(String),
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::Config => f.write_str("listed in [bans] protect"),
            Why::Interface(i) => write!(f, "an address of {i}"),
            Why::Gateway => f.write_str("a default gateway"),
            Why::Resolver => write!(f, "a resolver in {}", host::RESOLV_CONF),
            Why::FleetServer(s) => write!(f, "the fleet server {s}"),
        }
    }
}

/// One protected prefix and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protect {
    pub net: IpNet,
    pub why: Why,
}

impl fmt::Display for Protect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A single address reads as one.
        if self.net.prefix_len() == self.net.max_prefix_len() {
            write!(f, "{} ({})", self.net.addr(), self.why)
        } else {
            write!(f, "{} ({})", self.net, self.why)
        }
    }
}

/// The protected prefixes in force.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Protected {
    nets: Vec<Protect>,
}

impl Protected {
    pub fn new(mut nets: Vec<Protect>) -> Self {
        nets.sort_by_key(|p| p.net);
        nets.dedup_by_key(|p| p.net);
        Protected { nets }
    }

    /// The first protected prefix a ban of `net` would cover, or lie inside.
    pub fn overlapping(&self, net: &IpNet) -> Option<&Protect> {
        self.nets.iter().find(|p| overlap(&p.net, net))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Protect> {
        self.nets.iter()
    }

    pub fn len(&self) -> usize {
        self.nets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }
}

/// A deny entry that would drop a protected address no allow entry covers.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{place}: {deny:?}: covers {protect}: a protected address must stay reachable: remove the \
     line, or put {addr} in an allow list"
)]
pub struct DenyCoversProtected {
    /// `file:line` of the entry (or the entry itself when no file holds it).
    pub place: String,
    pub deny: String,
    pub protect: Protect,
    /// The protected address the entry drops.
    pub addr: IpAddr,
}

/// The first deny entry of `deny` that drops an address of `set` (the list `tables` built
/// from it and the allow entries say so), located in `files`.
pub fn check_deny(
    deny: &[IpNet],
    tables: &Tables,
    set: &Protected,
    files: &[PathBuf],
) -> Result<(), Box<DenyCoversProtected>> {
    for p in set.iter() {
        for d in deny.iter().filter(|d| overlap(d, &p.net)) {
            // The protected address the entry reaches first.
            let addr = if d.contains(&p.net.network()) {
                p.net.network()
            } else {
                d.network()
            };
            if tables.lookup(addr) != ListCode::Deny {
                continue;
            }
            let place = crate::lists::locate(files, d)
                .map_or_else(|| "deny list".to_string(), |(f, l)| format!("{f}:{l}"));
            return Err(Box::new(DenyCoversProtected {
                place,
                deny: d.to_string(),
                protect: p.clone(),
                addr,
            }));
        }
    }
    Ok(())
}

/// Two prefixes share an address exactly when one holds the other.
pub fn overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(net: &str, why: Why) -> Protect {
        Protect {
            net: net.parse().unwrap(),
            why,
        }
    }

    #[test]
    fn a_ban_over_under_or_on_a_protected_prefix_is_found() {
        let set = Protected::new(vec![
            p("203.0.113.0/24", Why::Config),
            p("198.18.0.1/32", Why::Interface("veth0".into())),
            p("2001:db8::53/128", Why::Resolver),
        ]);
        let hit = |s: &str| {
            set.overlapping(&s.parse().unwrap())
                .map(|p| p.net.to_string())
        };
        assert_eq!(hit("198.18.0.1/32").as_deref(), Some("198.18.0.1/32"));
        assert_eq!(hit("198.18.0.0/24").as_deref(), Some("198.18.0.1/32"));
        assert_eq!(hit("203.0.113.7/32").as_deref(), Some("203.0.113.0/24"));
        assert_eq!(hit("203.0.0.0/8").as_deref(), Some("203.0.113.0/24"));
        assert_eq!(hit("2001:db8::/32").as_deref(), Some("2001:db8::53/128"));
        assert_eq!(hit("198.18.0.2/32"), None);
        assert_eq!(hit("203.0.112.0/24"), None);
        assert_eq!(hit("2001:db8:1::/48"), None);
    }

    #[test]
    fn a_deny_entry_over_a_protected_address_is_refused_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("deny.txt");
        std::fs::write(&file, "198.18.5.0/24\n# ranges\n198.18.0.0/15\n").unwrap();
        let deny = crate::lists::load(std::slice::from_ref(&file)).unwrap();
        let set = Protected::new(vec![p("198.18.0.1/32", Why::Interface("veth0".into()))]);
        let tables = Tables::build(&[], &deny).unwrap();
        let e = check_deny(&deny, &tables, &set, std::slice::from_ref(&file)).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}:3: \"198.18.0.0/15\": covers 198.18.0.1 (an address of veth0): a protected \
                 address must stay reachable: remove the line, or put 198.18.0.1 in an allow list",
                file.display()
            )
        );
        // An allow over the address, or a deny entry inside a protected range, decide.
        let allow = ["198.18.0.0/24".parse().unwrap()];
        let tables = Tables::build(&allow, &deny).unwrap();
        assert!(check_deny(&deny, &tables, &set, &[]).is_ok());
        let range = Protected::new(vec![p("198.18.0.0/16", Why::Config)]);
        let e = check_deny(&deny, &tables, &range, &[]).unwrap_err();
        assert_eq!(
            (e.place.as_str(), e.deny.as_str()),
            ("deny list", "198.18.5.0/24")
        );
    }

    #[test]
    fn refusals_say_why() {
        let one = p("198.18.0.1/32", Why::Interface("veth0".into()));
        assert_eq!(one.to_string(), "198.18.0.1 (an address of veth0)");
        let range = p("203.0.113.0/24", Why::Config);
        assert_eq!(
            range.to_string(),
            "203.0.113.0/24 (listed in [bans] protect)"
        );
        let server = p(
            "198.18.9.1/32",
            Why::FleetServer("nats://198.18.9.1:4222".into()),
        );
        assert_eq!(
            server.to_string(),
            "198.18.9.1 (the fleet server nats://198.18.9.1:4222)"
        );
    }
}
