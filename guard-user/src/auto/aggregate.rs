//! `[bans] aggregate_*`: when `sources` bans or more lie inside one IPv4
//! `/aggregate_ipv4_prefix` (IPv6 `/aggregate_ipv6_prefix`) at once, they are replaced by one
//! ban of that prefix, for the longest time any of them had left. Never when an allow
//! (list or temporary) lies inside or over the prefix. The members are kept aside
//! (superseded) and come back if the prefix ban is removed while they would still be in
//! force. The pure part is here; `engine::auto` applies it.

use std::time::Duration;

use ipnet::IpNet;

use crate::config::Bans;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aggregation {
    /// Bans inside one prefix that make it banned; 0: never.
    pub sources: u32,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
}

impl Aggregation {
    pub fn of(bans: &Bans) -> Aggregation {
        Aggregation {
            sources: bans.aggregate_sources,
            ipv4_prefix: bans.aggregate_ipv4_prefix,
            ipv6_prefix: bans.aggregate_ipv6_prefix,
        }
    }

    pub fn enabled(&self) -> bool {
        self.sources >= 2
    }

    /// The aggregate prefix a ban of `net` counts in: None when `net` is not longer than it
    /// (a ban of the prefix itself, or wider, is no member).
    pub fn prefix_of(&self, net: &IpNet) -> Option<IpNet> {
        let len = match net {
            IpNet::V4(_) => self.ipv4_prefix,
            IpNet::V6(_) => self.ipv6_prefix,
        };
        (net.prefix_len() > len).then(|| {
            IpNet::new(net.network(), len)
                .expect("shorter than a valid prefix")
                .trunc()
        })
    }
}

/// Whether two prefixes share an address (one contains the other).
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(b) || b.contains(a)
}

/// The reason of the prefix ban.
pub fn reason(members: usize, prefix: &IpNet) -> String {
    format!("aggregate: {members} sources banned inside {prefix}")
}

/// The prefix ban's TTL: the longest any member has left (at least a second).
pub fn ttl(remaining: impl Iterator<Item = Duration>) -> Duration {
    remaining
        .max()
        .unwrap_or_default()
        .max(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agg() -> Aggregation {
        Aggregation {
            sources: 8,
            ipv4_prefix: 24,
            ipv6_prefix: 48,
        }
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn members_count_in_their_prefix() {
        let a = agg();
        assert_eq!(
            a.prefix_of(&net("198.18.5.77/32")),
            Some(net("198.18.5.0/24"))
        );
        assert_eq!(
            a.prefix_of(&net("2001:db8:7:1::/64")),
            Some(net("2001:db8:7::/48"))
        );
        assert_eq!(
            a.prefix_of(&net("198.18.5.0/24")),
            None,
            "the prefix itself"
        );
        assert_eq!(a.prefix_of(&net("198.18.0.0/16")), None, "wider");
    }

    #[test]
    fn disabled_by_default() {
        assert!(!Aggregation::of(&Bans::default()).enabled());
        assert!(agg().enabled());
    }

    #[test]
    fn overlap_either_way() {
        assert!(overlaps(&net("198.18.5.0/24"), &net("198.18.5.9/32")));
        assert!(overlaps(&net("198.18.5.9/32"), &net("198.18.0.0/16")));
        assert!(!overlaps(&net("198.18.5.0/24"), &net("198.18.6.9/32")));
        assert!(!overlaps(&net("198.18.5.0/24"), &net("2001:db8::/32")));
    }

    #[test]
    fn ttl_is_the_longest_left() {
        let d = Duration::from_secs;
        assert_eq!(ttl([d(60), d(600), d(5)].into_iter()), d(600));
        assert_eq!(ttl(std::iter::empty()), d(1));
    }
}
