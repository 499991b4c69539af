use super::*;

fn parse_err(text: &str) -> String {
    Config::parse(text, "t.toml")
        .expect_err("config should be refused")
        .to_string()
}

#[test]
fn embedded_default_matches_the_design() {
    let c = Config::embedded_default();
    assert!(c.interfaces.is_empty());
    assert_eq!(c.xdp_mode, XdpModeSetting::Auto);
    assert_eq!(c.rules.len(), 1);
    let r = &c.rules[0];
    assert_eq!(
        (r.rate, r.burst, r.ipv4_prefix, r.ipv6_prefix),
        (1000.0, 2000, 32, 64)
    );
    assert_eq!(r.protocol, Protocol::Any);
    assert_eq!(c.refill_period, Duration::from_secs(1));
    assert_eq!(c.refill_stale_after, Duration::from_secs(5));
    assert_eq!(c.bans.escalation.len(), 3);
    assert_eq!(r.ban_after, None, "never by default");
    assert_eq!(
        c.bans.aggregate_sources, 0,
        "never by default: shared NAT ranges"
    );
    assert_eq!(c.api.socket_mode.bits(), 0o660);
    assert_eq!(c.metrics.listen.port(), 9752);
}

#[test]
fn the_design_example_parses() {
    let text = r#"
interfaces = ["eth0"]
xdp_mode = "auto"
monitor = false
refill_period = "1s"
refill_batches_per_second = 32
refill_stale_after = "5s"
pin_dir = "/sys/fs/bpf/guard"

[[rules]]
name = "api-syn"
protocol = "tcp"
ports = [443, 80]
tcp_syn_only = true
ipv4_prefix = 32
ipv6_prefix = 64
rate = 20.0
burst = 100
buckets = 131072
monitor = false
ban_after = "10s"

[lists]
allow = ["/etc/guard/allow.txt"]
deny = ["/etc/guard/deny.txt"]

[bans]
max_entries = 1048576
default_ttl = "10m"
escalation = ["10m", "1h", "24h"]
aggregate_sources = 8
aggregate_ipv4_prefix = 24
aggregate_ipv6_prefix = 48

[api]
socket = "/run/guard/guard.sock"
socket_mode = "0660"

[metrics]
listen = "127.0.0.1:9752"
"#;
    let c = Config::parse(text, "design.toml").unwrap();
    assert_eq!(
        c.rules[0].ban_after.map(|d| d.0),
        Some(Duration::from_secs(10))
    );
    assert_eq!(
        (
            c.bans.aggregate_sources,
            c.bans.aggregate_ipv4_prefix,
            c.bans.aggregate_ipv6_prefix
        ),
        (8, 24, 48)
    );
    assert_eq!(c.interfaces, ["eth0"]);
    assert_eq!(c.rules[0].ports, [443, 80]);
    assert!(c.rules[0].tcp_syn_only);
    assert_eq!(c.lists.deny, [PathBuf::from("/etc/guard/deny.txt")]);
}

#[test]
fn empty_file_gets_defaults() {
    let c = Config::parse("", "empty.toml").unwrap();
    assert!(c.rules.is_empty());
    assert_eq!(c.pin_dir, PathBuf::from("/sys/fs/bpf/guard"));
    assert_eq!(c.refill_batches_per_second, 32);
}

#[test]
fn unknown_keys_are_errors_with_position() {
    let e = parse_err("monitor = true\nfrobnicate = 1\n");
    assert!(e.starts_with("t.toml:2:1: "), "{e}");
    assert!(e.contains("frobnicate"), "{e}");
    let e = parse_err("[[rules]]\nname = \"a\"\nrate = 1.0\nburst = 1\nspeed = 3\n");
    assert!(e.starts_with("t.toml:5:1: "), "{e}");
    assert!(e.contains("speed"), "{e}");
}

#[test]
fn bad_values_name_the_key_and_position() {
    let e = parse_err("[[rules]]\nname = \"a\"\nrate = 1.0\nburst = 1\nbuckets = 1000\n");
    assert!(e.starts_with("t.toml:5:11: rules[0].buckets: "), "{e}");
    assert!(e.contains("power of two"), "{e}");

    let e = parse_err("[[rules]]\nname = \"Bad Name\"\nrate = 1.0\nburst = 1\n");
    assert!(e.starts_with("t.toml:2:8: rules[0].name: "), "{e}");

    let e = parse_err("xdp_mode = \"turbo\"\n");
    assert!(e.starts_with("t.toml:1:12: xdp_mode: "), "{e}");

    let e = parse_err("refill_period = \"soon\"\n");
    assert!(e.starts_with("t.toml:1:17: refill_period: "), "{e}");

    let e = parse_err("[api]\nsocket_mode = \"rw\"\n");
    assert!(e.contains("api.socket_mode: "), "{e}");

    let e = parse_err("monitor = \"yes\"\n");
    assert!(e.contains("monitor: "), "{e}");
}

#[test]
fn syntax_errors_have_positions() {
    let e = parse_err("monitor = \n");
    assert!(e.starts_with("t.toml:1:"), "{e}");
}

#[test]
fn cross_field_rules_are_checked() {
    let rule = |extra: &str| format!("[[rules]]\nname = \"r\"\nrate = 10.0\nburst = 10\n{extra}");
    let cases = [
        (
            rule("ipv4_prefix = 0\n"),
            "rules[0].ipv4_prefix: must be between 1 and 32",
        ),
        (
            rule("ipv6_prefix = 129\n"),
            "rules[0].ipv6_prefix: must be between 1 and 128",
        ),
        (
            rule("protocol = \"icmp\"\nports = [80]\n"),
            "rules[0].ports: ports need protocol",
        ),
        (
            rule("protocol = \"udp\"\ntcp_syn_only = true\n"),
            "rules[0].tcp_syn_only: needs protocol",
        ),
        (
            rule("protocol = \"tcp\"\nports = [0]\n"),
            "rules[0].ports: port 0",
        ),
        (
            format!("{}{}", rule(""), rule("")),
            "rules[1].name: duplicate rule name",
        ),
        (
            "refill_period = \"50ms\"\n".to_string(),
            "refill_period: must be between 100ms and 10s",
        ),
        (
            "refill_period = \"5s\"\nrefill_stale_after = \"5s\"\n".to_string(),
            "refill_stale_after: must be longer",
        ),
        (
            "refill_batches_per_second = 0\n".to_string(),
            "refill_batches_per_second: must be between",
        ),
        (
            "[bans]\nescalation = [\"0s\"]\n".to_string(),
            "bans.escalation[0]: must be whole seconds between 1s and 30 days",
        ),
        (
            "[bans]\nescalation = [\"10m\", \"31days\"]\n".to_string(),
            "bans.escalation[1]: must be whole seconds between 1s and 30 days",
        ),
        (
            "[bans]\nescalation = [\"1500ms\"]\n".to_string(),
            "bans.escalation[0]: must be whole seconds",
        ),
        (
            "[bans]\ndefault_ttl = \"0s\"\n".to_string(),
            "bans.default_ttl: must be whole seconds between 1s and 30 days",
        ),
        (
            rule("ban_after = \"500ms\"\n"),
            "rules[0].ban_after: must be between 1s and 24h",
        ),
        (
            rule("ban_after = \"2days\"\n"),
            "rules[0].ban_after: must be between 1s and 24h",
        ),
        (
            "[bans]\naggregate_sources = 1\n".to_string(),
            "bans.aggregate_sources: must be 0 (never) or between 2 and 65536",
        ),
        (
            "[bans]\naggregate_ipv4_prefix = 32\n".to_string(),
            "bans.aggregate_ipv4_prefix: must be between 1 and 31",
        ),
        (
            "[bans]\naggregate_ipv6_prefix = 128\n".to_string(),
            "bans.aggregate_ipv6_prefix: must be between 1 and 127",
        ),
    ];
    for (text, want) in cases {
        let e = parse_err(&text);
        assert!(
            e.contains(want),
            "config:\n{text}\nerror: {e}\nwanted: {want}"
        );
        assert!(e.starts_with("t.toml:"), "{e}");
    }
    // The position points at the offending key.
    let e = parse_err(&rule("ipv4_prefix = 0\n"));
    assert!(e.starts_with("t.toml:5:1: "), "{e}");
    let e = parse_err(&format!("{}{}", rule(""), rule("")));
    assert!(e.starts_with("t.toml:6:1: "), "{e}");
}

#[test]
fn rate_and_burst_bounds() {
    let rule = |rate: &str, burst: &str| {
        format!("[[rules]]\nname = \"r\"\nrate = {rate}\nburst = {burst}\n")
    };
    assert!(
        Config::parse(&rule("0.5", "1"), "t").is_ok(),
        "fractional rates are allowed"
    );
    assert!(parse_err(&rule("0.0", "1")).contains("rules[0].rate"));
    assert!(parse_err(&rule("nan", "1")).contains("rules[0].rate"));
    assert!(parse_err(&rule("1e9", "1")).contains("rules[0].rate"));
    assert!(parse_err(&rule("1.0", "0")).contains("rules[0].burst"));
    assert!(parse_err(&rule("1.0", "100000001")).contains("rules[0].burst"));
    assert!(Config::parse(&rule("10000000.0", "100000000"), "t").is_ok());
}

#[test]
fn bursts_below_one_period_of_the_rate_are_accepted() {
    // The kernel accrues between refills, so no rate/burst/period combination within the
    // bounds loses rate (tests/tests/rate_netns.rs measures them).
    for (rate, burst) in ["100.0", "5000.0", "10000000.0"]
        .iter()
        .zip(["50", "1", "1"])
    {
        let text = format!(
            "refill_period = \"10s\"\nrefill_stale_after = \"20s\"\n[[rules]]\nname = \"r\"\nrate = {rate}\nburst = {burst}\n"
        );
        assert!(
            Config::parse(&text, "t").is_ok(),
            "rate {rate} burst {burst}"
        );
    }
}

#[test]
fn too_many_rules() {
    let mut text = String::new();
    for i in 0..17 {
        text += &format!("[[rules]]\nname = \"r{i}\"\nrate = 1.0\nburst = 1\n");
    }
    assert!(parse_err(&text).contains("rules: at most 16 rules"));
}

#[test]
fn the_packaged_config_parses() {
    let text = include_str!("../../../packaging/guard.toml");
    let c = Config::parse(text, "packaging/guard.toml").unwrap();
    assert_eq!(c.interfaces, ["eth0"]);
    assert_eq!(c.rules.len(), 1);
    assert_eq!(c.lists.deny, [PathBuf::from("/etc/guard/deny.txt")]);
    assert_eq!(c.api.socket, PathBuf::from("/run/guard/guard.sock"));
}

#[test]
fn the_fleet_section_names_servers_and_a_node() {
    let c = Config::parse(
        "[fleet]\nservers = [\"nats://198.18.0.5:4222\", \"tls://nats.example:4222\"]\nnode = \"web-3\"\ncredentials = \"/etc/guard/nats.creds\"\n",
        "t.toml",
    )
    .unwrap();
    assert!(c.fleet.enabled());
    assert_eq!(c.node_name(), "web-3");
    assert!(
        !Config::parse("", "t.toml").unwrap().fleet.enabled(),
        "absent: alone"
    );
    let tls = Config::parse(
        "[fleet]\nservers = [\"nats://198.18.0.5:4222\"]\ntls_ca = \"/ca.pem\"\ntls_cert = \"/c.pem\"\ntls_key = \"/c.key\"\n",
        "t.toml",
    )
    .unwrap();
    assert!(tls.fleet.tls());
    let secrets: Vec<&str> = tls.fleet.secrets().map(|(k, _)| k).collect();
    assert_eq!(secrets, ["tls_key"]);
    let half =
        parse_err("[fleet]\nservers = [\"nats://198.18.0.5:4222\"]\ntls_cert = \"/c.pem\"\n");
    assert!(
        half.contains("fleet.tls_key") && half.contains("both"),
        "{half}"
    );
    let bad_server = parse_err("[fleet]\nservers = [\"http://[::1\"]\n");
    assert!(bad_server.contains("fleet.servers[0]"), "{bad_server}");
    let bad_node = parse_err("[fleet]\nservers = [\"nats://198.18.0.5:4222\"]\nnode = \"web 3\"\n");
    assert!(bad_node.contains("fleet.node"), "{bad_node}");
    let unknown = parse_err("[fleet]\nserver = [\"nats://198.18.0.5:4222\"]\n");
    assert!(unknown.contains("server"), "{unknown}");
}

#[test]
fn without_a_node_name_the_hostname_is_the_origin() {
    let c = Config::parse("", "t.toml").unwrap();
    let name = c.node_name();
    assert!(
        !name.is_empty() && name.len() <= limits::MAX_NODE_NAME,
        "{name}"
    );
    assert!(
        name.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
    );
}

#[test]
fn protect_takes_addresses_and_cidrs_as_lists_do() {
    let c = Config::parse(
        "[bans]\nprotect = [\"198.18.64.0/24\", \"2001:db8::53\"]\n",
        "t.toml",
    )
    .unwrap();
    let got: Vec<String> = c.bans.protect.iter().map(|p| p.0.to_string()).collect();
    assert_eq!(got, ["198.18.64.0/24", "2001:db8::53/128"]);
    let zero = parse_err("[bans]\nprotect = [\"0.0.0.0/0\"]\n");
    assert!(
        zero.contains("bans.protect") && zero.contains("/0"),
        "{zero}"
    );
    let bits = parse_err("[bans]\nprotect = [\"198.18.64.1/24\"]\n");
    assert!(bits.contains("host bits"), "{bits}");
}

#[test]
fn ban_after_without_proof_is_said() {
    let rule = |extra: &str| {
        format!("[[rules]]\nname = \"r\"\nrate = 1.0\nburst = 1\nban_after = \"5s\"\n{extra}")
    };
    let warnings = |extra: &str| Config::parse(&rule(extra), "t.toml").unwrap().warnings();
    assert!(
        warnings("protocol = \"tcp\"\n").is_empty(),
        "TCP traffic can prove"
    );
    assert!(
        warnings("").is_empty(),
        "any protocol: TCP among it can prove"
    );
    for cannot in [
        "protocol = \"udp\"\n",
        "protocol = \"tcp\"\ntcp_syn_only = true\n",
    ] {
        let w = warnings(cannot);
        assert!(
            w.len() == 1 && w[0].contains("ban_after never bans"),
            "{cannot}: {w:?}"
        );
    }
    let w = warnings("protocol = \"udp\"\nban_unverified = true\n");
    assert!(
        w.len() == 1 && w[0].contains("forged source address can get that address banned"),
        "{w:?}"
    );
}
