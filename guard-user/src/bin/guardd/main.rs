//! guardd: loads guard's XDP program, attaches it, keeps the maps current and serves the
//! control API. Enforcement stays pinned when it exits.

mod api;
mod auto;
mod checks;
mod daemonize;
mod events;
mod http;
mod ifaces;
mod logging;
mod memory;
mod metrics;
mod serve;
mod settings;
mod shape;
mod startup;
mod state;

use std::process::ExitCode;

use clap::Parser;

pub use guard_user::control::cli::guardd::Options;

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
    let log_target = match logging::init(opts.foreground) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "guardd: error: cannot open the log file ({e}); set GUARD_LOG_FILE to a writable file"
            );
            return ExitCode::FAILURE;
        }
    };
    if let Some(target) = log_target {
        tracing::info!("running in the background; logging to {target}");
    }
    match startup::run(opts, ready) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("guardd: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
