//! guardd: loads guard's XDP program, attaches it, keeps the maps current and serves the
//! control API. Enforcement stays pinned when it exits.

mod api;
mod daemonize;
mod events;
mod ifaces;
mod memory;
mod metrics;
mod startup;
mod state;

use std::process::ExitCode;

use clap::Parser;

pub use guard_user::cli::guardd::Options;

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
