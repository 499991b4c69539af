//! guardd: loads guard's XDP program, attaches it, keeps the maps current and serves the
//! control API. Enforcement stays pinned when it exits.

mod api;
mod daemonize;
mod events;
mod metrics;
mod startup;
mod state;

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::Parser;
use guard_user::config::XdpModeSetting;

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
    /// Stay in the foreground (for systemd and terminals); without it guardd detaches
    /// once it is ready, reporting start-up errors before it does.
    #[arg(long)]
    pub foreground: bool,
}

fn main() -> ExitCode {
    let opts = Options::parse();
    let ready = if opts.foreground {
        None
    } else {
        match daemonize::detach() {
            Ok(daemonize::Role::Parent(code)) => return code,
            Ok(daemonize::Role::Child(ready)) => Some(ready),
            Err(e) => {
                eprintln!("guardd: error: cannot detach: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    init_logging();
    match startup::run(opts, ready) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("guardd: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr; `RUST_LOG` filters. Under systemd (journald adds its own) no timestamps.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().with_ansi(false).init();
    } else {
        builder.init();
    }
}
