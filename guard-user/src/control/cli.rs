//! The command lines of guardd and guardctl (clap), shared with `guard-docgen`, which
//! generates their man pages and shell completions.

pub mod guardd {
    use std::{net::SocketAddr, path::PathBuf};

    use clap::Parser;

    use crate::config::XdpModeSetting;

    /// guard's daemon: an XDP abuse guard for public, unauthenticated endpoints.
    #[derive(Debug, Parser)]
    #[command(name = "guardd", version)]
    pub struct Options {
        /// TOML config file (default: the embedded default config).
        #[arg(long, value_name = "FILE")]
        pub config: Option<PathBuf>,
        /// Interface to protect (repeatable); replaces `interfaces` from the config.
        #[arg(long = "iface", value_name = "NAME")]
        pub ifaces: Vec<String>,
        /// XDP attach mode; `auto` falls back from driver to skb mode.
        #[arg(long, value_enum, value_name = "MODE")]
        pub xdp_mode: Option<XdpModeSetting>,
        /// Control API socket path.
        #[arg(long, value_name = "PATH")]
        pub socket: Option<PathBuf>,
        /// bpffs directory for pinned maps and links.
        #[arg(long, value_name = "DIR")]
        pub pin_dir: Option<PathBuf>,
        /// Prometheus metrics listen address.
        #[arg(long, value_name = "ADDR")]
        pub metrics: Option<SocketAddr>,
        /// Count would-drops, drop nothing.
        #[arg(long)]
        pub monitor: bool,
        /// Stay in the foreground (for systemd and terminals), logging to stderr; without it
        /// guardd detaches once it is ready, reporting start-up errors before it does, and
        /// logs to $GUARD_LOG_FILE, else syslog (/dev/log), else /var/log/guardd.log.
        #[arg(long)]
        pub foreground: bool,
    }
}

pub mod guardctl {
    use std::{path::PathBuf, time::Duration};

    use clap::{Parser, Subcommand};

    #[derive(Debug, Parser)]
    #[command(
        name = "guardctl",
        version,
        about = "Control and inspect guard (guardd)"
    )]
    pub struct Cli {
        /// guardd's control API socket.
        #[arg(
            long,
            global = true,
            value_name = "PATH",
            default_value = "/run/guard/guard.sock"
        )]
        pub socket: PathBuf,
        /// The pin directory, read when guardd is not running.
        #[arg(
            long,
            global = true,
            value_name = "DIR",
            default_value = "/sys/fs/bpf/guard"
        )]
        pub pin_dir: PathBuf,
        /// Print JSON instead of tables.
        #[arg(long, global = true)]
        pub json: bool,
        /// How long to wait for guardd's answer (a hung guardd fails the command, and
        /// `systemctl reload` with it, instead of hanging).
        #[arg(long, global = true, value_name = "DURATION", default_value = "30s",
              value_parser = humantime::parse_duration)]
        pub timeout: Duration,
        #[command(subcommand)]
        pub command: Command,
    }

    #[derive(Debug, Subcommand)]
    pub enum Command {
        /// Daemon, interfaces and XDP attachment (exit status 3 when guardd is not
        /// running: what the pins say is printed, as `systemctl status` does).
        Status,
        /// Packets by verdict and reason.
        Stats {
            /// Refresh every second until interrupted.
            #[arg(long)]
            watch: bool,
        },
        /// Ban an address or CIDR (TTL omitted: escalation from [bans]).
        Ban(EntryArgs),
        /// Lift a ban.
        Unban {
            #[arg(value_parser = crate::control::requests::cidr_text)]
            cidr: String,
        },
        /// Active bans with expiry and reason (from the pins when guardd is down).
        Bans,
        /// Allow an address or CIDR past every rule (TTL omitted: until removed).
        Allow(EntryArgs),
        /// Remove a temporary allow.
        Unallow {
            #[arg(value_parser = crate::control::requests::cidr_text)]
            cidr: String,
        },
        /// Temporary allows (from the pins when guardd is down).
        Allows,
        /// Vouch for one address: it passes a rule's empty endpoint budget, still under its
        /// own bucket and bans (TTL omitted: [known] verified_for).
        Vouch(EntryArgs),
        /// Withdraw a vouch.
        Unvouch {
            #[arg(value_parser = crate::control::requests::cidr_text)]
            cidr: String,
        },
        /// Addresses vouched for (from the pins when guardd is down).
        Vouches,
        /// Charge TOKENS from the source's bucket in one rule or all.
        Penalize {
            #[arg(value_parser = crate::control::requests::ip_text)]
            ip: String,
            #[arg(value_parser = clap::value_parser!(u64).range(1..=crate::control::requests::MAX_PENALTY_TOKENS))]
            tokens: u64,
            #[arg(long)]
            rule: Option<String>,
        },
        /// Sources with the most (sampled) drops in the last minute.
        Top {
            #[arg(short, default_value_t = 20)]
            n: usize,
        },
        /// Each rule's attack shape: the last window, its baseline and its class.
        Shape,
        /// Re-read the config and lists (as SIGHUP); prints why when refused.
        Reload,
        /// Validate a config file and the lists it names, without touching the kernel.
        CheckConfig { file: PathBuf },
        /// Remove guard from the kernel: links (detaching XDP), maps and pins.
        Detach,
    }

    /// What `ban`, `allow` and `vouch` take.
    #[derive(Debug, clap::Args)]
    pub struct EntryArgs {
        #[arg(value_parser = crate::control::requests::cidr_text)]
        pub cidr: String,
        /// e.g. 10m, 1h, 2d (1s to 30 days).
        #[arg(long, value_parser = crate::control::requests::ttl_text)]
        pub ttl: Option<Duration>,
        #[arg(long)]
        pub reason: Option<String>,
        /// Keep it on this host: do not share it with the fleet.
        #[arg(long)]
        pub local: bool,
    }

    impl EntryArgs {
        pub fn request(self) -> crate::control::model::EntryRequest {
            crate::control::model::EntryRequest {
                cidr: self.cidr,
                ttl_secs: self.ttl.map(|t| t.as_secs()),
                reason: self.reason,
                local: self.local,
            }
        }
    }
}
