//! What filters the receiver's traffic, installed and removed per measurement so every
//! contender starts from empty state.
//!
//! veth takes frames from the sender's XDP_TX only while an XDP program runs on the
//! receiving end, so the netfilter contenders (and "no filter") run behind `xdp_pass`.

use std::{
    io::Write,
    process::{Command, Stdio},
};

use aya::{
    Ebpf,
    programs::{Xdp, XdpMode, xdp::XdpLinkId},
};
use guard_tests::{daemon::Guardd, netns::Testbed};

/// Every limiter gets guard's default rule: 1000 packets/s, burst 2000, per source
/// address, with room for 131,072 sources.
pub const RATE: u64 = 1000;
pub const BURST: u64 = 2000;
/// guard's `refill_period` here (the default): each bucket is credited rate x period once
/// per period, so over any window it may admit one period's tokens more than an ideal
/// token bucket would (see "attacker excess").
pub const REFILL_PERIOD_SECS: u64 = 1;
const ROOM: u32 = 131_072;

#[derive(Clone, Copy, PartialEq)]
pub enum Contender {
    NoFilter,
    XdpDrop,
    Guard,
    /// guard without its rule: the removal experiment for the rule stage (the rule's
    /// `RuleSpec`, `BUCKETS` and `RULE_STATS` lines); what is left is the fixed part
    /// (parse, `CONFIG`, `STATS`, the list lookups).
    GuardNoRule,
    NftMeter,
    Hashlimit,
}

impl Contender {
    pub const ALL: [Contender; 6] = [
        Contender::NoFilter,
        Contender::XdpDrop,
        Contender::Guard,
        Contender::GuardNoRule,
        Contender::NftMeter,
        Contender::Hashlimit,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Contender::NoFilter => "no filter",
            Contender::XdpDrop => "XDP_DROP",
            Contender::Guard => "guard",
            Contender::GuardNoRule => "guard, no rule",
            Contender::NftMeter => "nft meter",
            Contender::Hashlimit => "iptables hashlimit",
        }
    }

    /// Whether it limits per source (the let-through figures apply).
    pub fn limits(self) -> bool {
        matches!(
            self,
            Contender::Guard | Contender::NftMeter | Contender::Hashlimit
        )
    }
}

pub enum Installed {
    Xdp(&'static str, XdpLinkId),
    Guard(Box<Guardd>),
    Netfilter(XdpLinkId, &'static str),
}

pub fn install(c: Contender, bed: &Testbed, ebpf: &mut Ebpf) -> Installed {
    match c {
        Contender::NoFilter => Installed::Xdp("xdp_pass", attach(bed, ebpf, "xdp_pass")),
        Contender::XdpDrop => Installed::Xdp("xdp_drop", attach(bed, ebpf, "xdp_drop")),
        Contender::Guard | Contender::GuardNoRule => {
            let mut config =
                format!("xdp_mode = \"driver\"\nrefill_period = \"{REFILL_PERIOD_SECS}s\"\n");
            if c == Contender::Guard {
                config += &format!(
                    "[[rules]]\nname = \"per-source\"\nipv4_prefix = 32\nipv6_prefix = 128\n\
                     rate = {RATE}.0\nburst = {BURST}\nbuckets = {ROOM}\n"
                );
            }
            let g = Guardd::start(&bed.server, &bed.server_if, &config);
            // Its threads (refill, API, event reader) stay off the measured core; their
            // cost is measured on its own (refill CPU).
            guard_tests::netns::sh("taskset", &["-a", "-p", "-c", "0", &g.pid().to_string()]);
            Installed::Guard(Box::new(g))
        }
        Contender::NftMeter => {
            let link = attach(bed, ebpf, "xdp_pass");
            let script = format!(
                "table netdev guardbench {{\n chain ingress {{\n  type filter hook ingress \
                 device \"{}\" priority -500; policy accept;\n  meter flood size {ROOM} \
                 {{ ip6 saddr limit rate over {RATE}/second burst {BURST} packets }} drop\n }}\n}}\n",
                bed.server_if
            );
            in_ns(bed, "nft", &["-f", "-"], Some(&script));
            Installed::Netfilter(link, "nft")
        }
        Contender::Hashlimit => {
            let link = attach(bed, ebpf, "xdp_pass");
            let (room, rate, burst) = (ROOM.to_string(), format!("{RATE}/sec"), BURST.to_string());
            in_ns(
                bed,
                "ip6tables",
                &[
                    "-t",
                    "raw",
                    "-A",
                    "PREROUTING",
                    "-i",
                    &bed.server_if,
                    "-m",
                    "hashlimit",
                    "--hashlimit-mode",
                    "srcip",
                    "--hashlimit-above",
                    &rate,
                    "--hashlimit-burst",
                    &burst,
                    "--hashlimit-name",
                    "guardbench",
                    "--hashlimit-htable-size",
                    &room,
                    "--hashlimit-htable-max",
                    &room,
                    "-j",
                    "DROP",
                ],
                None,
            );
            Installed::Netfilter(link, "ip6tables")
        }
    }
}

pub fn remove(installed: Installed, bed: &Testbed, ebpf: &mut Ebpf) {
    match installed {
        Installed::Xdp(name, link) => detach(ebpf, name, link),
        // Stopping it removes its pins, which detaches the program.
        Installed::Guard(g) => drop(g),
        Installed::Netfilter(link, tool) => {
            if tool == "nft" {
                in_ns(
                    bed,
                    "nft",
                    &["delete", "table", "netdev", "guardbench"],
                    None,
                );
            } else {
                in_ns(bed, "ip6tables", &["-t", "raw", "-F", "PREROUTING"], None);
            }
            detach(ebpf, "xdp_pass", link);
        }
    }
}

fn xdp<'a>(ebpf: &'a mut Ebpf, name: &str) -> &'a mut Xdp {
    ebpf.program_mut(name)
        .and_then(|p| p.try_into().ok())
        .unwrap_or_else(|| panic!("{name} loaded"))
}

fn attach(bed: &Testbed, ebpf: &mut Ebpf, name: &str) -> XdpLinkId {
    let prog = xdp(ebpf, name);
    let iface = bed.server_if.clone();
    bed.server
        .run(move || prog.attach(&iface, XdpMode::Driver))
        .unwrap_or_else(|e| panic!("attaching {name} natively: {e}"))
}

fn detach(ebpf: &mut Ebpf, name: &str, link: XdpLinkId) {
    xdp(ebpf, name)
        .detach(link)
        .unwrap_or_else(|e| panic!("detaching {name}: {e}"));
}

/// Runs a netfilter tool in the receiver's namespace (sysfs is not needed, so
/// `ip netns exec` is fine), feeding `stdin`.
pub fn in_ns(bed: &Testbed, tool: &str, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new("ip")
        .args(["netns", "exec", &bed.server.name, tool])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{tool}: {e} (cargo xtask bench installs it)"));
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(stdin.unwrap_or("").as_bytes())
        .expect("stdin");
    let out = child.wait_with_output().expect("output");
    assert!(
        out.status.success(),
        "{tool} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
