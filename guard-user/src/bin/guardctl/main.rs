//! guardctl: drives guardd over its control API; reads the pinned maps when it is down.
//!
//! Exit status: 0 success, 1 refused or failed (the reason printed), 2 usage error.

mod offline;
mod render;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use guard_user::{
    client::{Client, ClientError},
    config::Config,
    model::{Stats, Status},
    pins::PinLayout,
};

#[derive(Debug, Parser)]
#[command(
    name = "guardctl",
    version,
    about = "Control and inspect guard (guardd)"
)]
struct Cli {
    /// guardd's control API socket.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        default_value = "/run/guard/guard.sock"
    )]
    socket: PathBuf,
    /// The pin directory, read when guardd is not running.
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        default_value = "/sys/fs/bpf/guard"
    )]
    pin_dir: PathBuf,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Daemon, interfaces and XDP attachment.
    Status,
    /// Packets by verdict and reason.
    Stats {
        /// Refresh every second until interrupted.
        #[arg(long)]
        watch: bool,
    },
    /// Validate a config file and the lists it names, without touching the kernel.
    CheckConfig { file: PathBuf },
    /// Remove guard from the kernel: links (detaching XDP), maps and pins.
    Detach,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("guardctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let client = Client::new(&cli.socket);
    let pins = PinLayout::new(&cli.pin_dir);
    match cli.command {
        Command::Status => match client.get::<Status>("/v1/status").await {
            Ok(s) => render::print(cli.json, &s, render::status),
            Err(e @ ClientError::Unreachable { .. }) => offline::status(&pins, &e, cli.json),
            Err(e) => Err(e.into()),
        },
        Command::Stats { watch } => loop {
            match client.get::<Stats>("/v1/stats").await {
                Ok(s) => render::print(cli.json, &s, render::stats)?,
                Err(e @ ClientError::Unreachable { .. }) => offline::stats(&pins, &e, cli.json)?,
                Err(e) => return Err(e.into()),
            }
            if !watch {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            println!();
        },
        Command::CheckConfig { file } => check_config(&file, cli.json),
        Command::Detach => detach(&client, &pins).await,
    }
}

fn check_config(file: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let config = Config::load(file)?;
    let allow = guard_user::lists::load(&config.lists.allow).context("allow list")?;
    let deny = guard_user::lists::load(&config.lists.deny).context("deny list")?;
    let tables = guard_user::tables::Tables::build(&allow, &deny)?;
    if json {
        let out = serde_json::json!({
            "file": file.display().to_string(),
            "ok": true,
            "rules": config.rules.len(),
            "allow_entries": tables.counts.allow,
            "deny_entries": tables.counts.deny,
        });
        println!("{out}");
    } else {
        println!(
            "{}: ok ({} rules, {} allow entries, {} deny entries)",
            file.display(),
            config.rules.len(),
            tables.counts.allow,
            tables.counts.deny
        );
    }
    Ok(())
}

async fn detach(client: &Client, pins: &PinLayout) -> anyhow::Result<()> {
    if let Ok(s) = client.get::<Status>("/v1/status").await {
        anyhow::bail!(
            "guardd (pid {}) is running on {}: stop it first (systemctl stop guard), then detach",
            s.pid,
            client.socket().display()
        );
    }
    if !pins.exists() {
        println!("nothing to detach under {}", pins.root().display());
        return Ok(());
    }
    let links = pins.linked_interfaces();
    pins.remove_all()?;
    let ifaces: Vec<&str> = links.iter().map(|(i, _)| i.as_str()).collect();
    println!(
        "detached from {} and removed the maps under {}",
        if ifaces.is_empty() {
            "no interface".to_string()
        } else {
            ifaces.join(", ")
        },
        pins.root().display()
    );
    Ok(())
}
