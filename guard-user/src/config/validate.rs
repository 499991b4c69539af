//! Checks that involve more than one field, or bounds the field types cannot express.

use std::time::Duration;

use super::{Config, Protocol, limits};

impl Config {
    /// What is valid but worth saying: check-config prints it, guardd logs it.
    pub fn warnings(&self) -> Vec<String> {
        let everywhere = if self.fleet.enabled() {
            " on every host of the fleet"
        } else {
            ""
        };
        let mut out = Vec::new();
        for (i, r) in self.rules.iter().enumerate() {
            let name = r.name.as_str();
            if r.ban_after.is_none() {
                continue;
            }
            if r.ban_unverified {
                out.push(format!(
                    "rules[{i}] ({name}): ban_unverified = true: anyone who can send packets with \
                     a forged source address can get that address banned{everywhere}"
                ));
            } else if !r.can_prove() {
                out.push(format!(
                    "rules[{i}] ({name}): ban_after never bans: this rule's traffic (UDP, ICMP or \
                     SYNs only) cannot prove a source address real; set ban_unverified = true to \
                     ban unproven sources, knowing a forger can then get any address banned"
                ));
            }
        }
        out
    }

    /// Checks that involve more than one field. Returns the key path and the reason.
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        let err = |key: String, msg: String| Err((key, msg));
        if !(limits::MIN_REFILL_PERIOD..=limits::MAX_REFILL_PERIOD).contains(&self.refill_period) {
            return err(
                "refill_period".into(),
                "must be between 100ms and 10s".into(),
            );
        }
        if !(1..=limits::MAX_BATCHES_PER_SECOND).contains(&self.refill_batches_per_second) {
            return err(
                "refill_batches_per_second".into(),
                format!("must be between 1 and {}", limits::MAX_BATCHES_PER_SECOND),
            );
        }
        if self.refill_stale_after <= self.refill_period {
            return err(
                "refill_stale_after".into(),
                "must be longer than refill_period, or the rules would fail open between refills"
                    .into(),
            );
        }
        if self.rules.len() > limits::MAX_RULES {
            return err(
                "rules".into(),
                format!("at most {} rules", limits::MAX_RULES),
            );
        }
        for (i, rule) in self.rules.iter().enumerate() {
            let key = |field: &str| format!("rules[{i}].{field}");
            if self.rules[..i].iter().any(|r| r.name == rule.name) {
                return err(
                    key("name"),
                    format!("duplicate rule name {:?}", rule.name.as_str()),
                );
            }
            if !(1..=32).contains(&rule.ipv4_prefix) {
                return err(key("ipv4_prefix"), "must be between 1 and 32".into());
            }
            if !(1..=128).contains(&rule.ipv6_prefix) {
                return err(key("ipv6_prefix"), "must be between 1 and 128".into());
            }
            if !(rule.rate.is_finite()
                && (limits::MIN_RATE..=limits::MAX_RATE).contains(&rule.rate))
            {
                return err(
                    key("rate"),
                    format!(
                        "must be between {} and {} tokens/s",
                        limits::MIN_RATE,
                        limits::MAX_RATE
                    ),
                );
            }
            if !(1..=limits::MAX_BURST).contains(&rule.burst) {
                return err(
                    key("burst"),
                    format!("must be between 1 and {}", limits::MAX_BURST),
                );
            }
            if rule.ports.len() > limits::MAX_PORTS {
                return err(key("ports"), format!("at most {} ports", limits::MAX_PORTS));
            }
            if rule.ports.contains(&0) {
                return err(key("ports"), "port 0 is not a destination port".into());
            }
            if !rule.ports.is_empty() && !matches!(rule.protocol, Protocol::Tcp | Protocol::Udp) {
                return err(
                    key("ports"),
                    "ports need protocol \"tcp\" or \"udp\"".into(),
                );
            }
            if rule.tcp_syn_only && rule.protocol != Protocol::Tcp {
                return err(key("tcp_syn_only"), "needs protocol \"tcp\"".into());
            }
            if let Some(d) = rule.ban_after
                && !(limits::MIN_BAN_AFTER..=limits::MAX_BAN_AFTER).contains(&d.0)
            {
                return err(key("ban_after"), "must be between 1s and 24h".into());
            }
            self.validate_budget(i, rule)?;
        }
        self.validate_known()?;
        if !(1..=limits::MAX_BANS).contains(&self.bans.max_entries) {
            return err(
                "bans.max_entries".into(),
                format!("must be between 1 and {}", limits::MAX_BANS),
            );
        }
        // The API's bounds (`ttl_secs`), so a config cannot make a ban the API would refuse.
        let ttl = |key: String, d: Duration| match crate::model::ttl::ttl_duration(d) {
            Ok(_) => Ok(()),
            Err(e) => err(key, e),
        };
        ttl("bans.default_ttl".into(), self.bans.default_ttl)?;
        for (i, d) in self.bans.escalation.iter().enumerate() {
            ttl(format!("bans.escalation[{i}]"), d.0)?;
        }
        self.validate_aggregation()?;
        self.validate_fleet()
    }

    fn validate_aggregation(&self) -> Result<(), (String, String)> {
        let b = &self.bans;
        if b.aggregate_sources == 1 || b.aggregate_sources > limits::MAX_AGGREGATE_SOURCES {
            return Err((
                "bans.aggregate_sources".into(),
                format!(
                    "must be 0 (never) or between 2 and {}",
                    limits::MAX_AGGREGATE_SOURCES
                ),
            ));
        }
        if !(1..=31).contains(&b.aggregate_ipv4_prefix) {
            return Err((
                "bans.aggregate_ipv4_prefix".into(),
                "must be between 1 and 31".into(),
            ));
        }
        if !(1..=127).contains(&b.aggregate_ipv6_prefix) {
            return Err((
                "bans.aggregate_ipv6_prefix".into(),
                "must be between 1 and 127".into(),
            ));
        }
        Ok(())
    }

    fn validate_fleet(&self) -> Result<(), (String, String)> {
        for (i, s) in self.fleet.servers.iter().enumerate() {
            if let Err(e) = s.parse::<async_nats::ServerAddr>() {
                return Err((
                    format!("fleet.servers[{i}]"),
                    format!("{s:?} is not a NATS server address ({e}); write nats://host:4222"),
                ));
            }
        }
        if let Some(node) = &self.fleet.node {
            let ok = node
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if node.is_empty() || node.len() > limits::MAX_NODE_NAME || !ok {
                return Err((
                    "fleet.node".into(),
                    format!(
                        "must be 1 to {} characters of letters, digits, '-', '_' and '.'",
                        limits::MAX_NODE_NAME
                    ),
                ));
            }
        }
        if self.fleet.tls_cert.is_some() != self.fleet.tls_key.is_some() {
            let missing = if self.fleet.tls_cert.is_some() {
                "tls_key"
            } else {
                "tls_cert"
            };
            return Err((
                format!("fleet.{missing}"),
                "a client certificate needs both tls_cert and tls_key".into(),
            ));
        }
        Ok(())
    }
}
