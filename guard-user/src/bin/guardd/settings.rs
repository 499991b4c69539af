//! The configuration guardd runs with: the file (or the embedded default), then the
//! command line's overrides. Start-up and every reload read it the same way.

use guard_user::config::Config;

use crate::Options;

/// The config file (or the embedded default) with the command-line flags applied.
pub fn effective_config(opts: &Options) -> anyhow::Result<Config> {
    let mut config = match &opts.config {
        Some(path) => Config::load(path)?,
        None => Config::embedded_default(),
    };
    if !opts.ifaces.is_empty() {
        config.interfaces = opts.ifaces.clone();
    }
    if let Some(mode) = opts.xdp_mode {
        config.xdp_mode = mode;
    }
    if let Some(socket) = &opts.socket {
        config.api.socket = socket.clone();
    }
    if let Some(dir) = &opts.pin_dir {
        config.pin_dir = dir.clone();
    }
    if let Some(addr) = opts.metrics {
        config.metrics.listen = addr;
    }
    config.monitor |= opts.monitor;
    Ok(config)
}
