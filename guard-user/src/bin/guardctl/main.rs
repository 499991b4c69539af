//! guardctl: drives guardd over its control API; reads the pinned maps when it is down.
//!
//! Exit status: 0 success, 1 refused or failed (the reason printed), 2 usage error (a bad
//! address, CIDR or TTL, whether or not guardd runs), 3 `status` when guardd is not running.

mod offline;
mod render;

use std::{process::ExitCode, time::Duration};

use anyhow::Context;
use clap::Parser;
use guard_user::{
    config::Config,
    control::client::{Client, ClientError},
    control::model::{
        Applied, EntryList, EntryRequest, EntryView, PenaltyRequest, PenaltyResult, Reloaded,
        Stats, Status,
    },
    control::routes,
    control::top::Top,
    engine::ShapeReport,
    kernel::pins::PinLayout,
    model::Kind,
};

use guard_user::control::cli::guardctl::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("guardctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Exit status of `status` when guardd is not running (as `systemctl status`'s "not
/// running").
const NOT_RUNNING: u8 = 3;

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let client = Client::new(&cli.socket).with_timeout(cli.timeout);
    let pins = PinLayout::new(&cli.pin_dir);
    if let Command::Status = cli.command {
        return match client.get::<Status>(routes::STATUS).await {
            Ok(s) => render::print(cli.json, &s, render::status).map(|()| ExitCode::SUCCESS),
            Err(e @ ClientError::Unreachable { .. }) => {
                offline::status(&pins, &e, cli.json)?;
                Ok(ExitCode::from(NOT_RUNNING))
            }
            Err(e) => Err(e.into()),
        };
    }
    command(cli, &client, &pins)
        .await
        .map(|()| ExitCode::SUCCESS)
}

async fn command(cli: Cli, client: &Client, pins: &PinLayout) -> anyhow::Result<()> {
    match cli.command {
        Command::Status => unreachable!("answered by run"),
        Command::Stats { watch } => loop {
            match client.get::<Stats>(routes::STATS).await {
                Ok(s) => render::print(cli.json, &s, render::stats)?,
                Err(e @ ClientError::Unreachable { .. }) => offline::stats(pins, &e, cli.json)?,
                Err(e) => return Err(e.into()),
            }
            if !watch {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            println!();
        },
        Command::Ban(a) => add(client, routes::BANS, a.request(), cli.json).await,
        Command::Allow(a) => add(client, routes::ALLOWS, a.request(), cli.json).await,
        Command::Unban { cidr } => remove(client, Kind::Ban, &cidr, cli.json).await,
        Command::Unallow { cidr } => remove(client, Kind::Allow, &cidr, cli.json).await,
        Command::Bans => list(client, pins, Kind::Ban, cli.json).await,
        Command::Allows => list(client, pins, Kind::Allow, cli.json).await,
        Command::Vouch(a) => add(client, routes::VOUCHES, a.request(), cli.json).await,
        Command::Unvouch { cidr } => remove(client, Kind::Vouch, &cidr, cli.json).await,
        Command::Vouches => list(client, pins, Kind::Vouch, cli.json).await,
        Command::Penalize { ip, tokens, rule } => {
            let r: PenaltyResult = client
                .post(routes::PENALTIES, &PenaltyRequest { ip, tokens, rule })
                .await?;
            render::print(cli.json, &r, render::penalty)
        }
        Command::Top { n } => {
            let t: Top = client.get(&format!("{}?n={n}", routes::TOP)).await?;
            render::print(cli.json, &t, render::top)
        }
        Command::Shape => {
            let s: ShapeReport = client.get(routes::SHAPE).await?;
            render::print(cli.json, &s, render::shape)
        }
        Command::Reload => {
            let r: Reloaded = client.post(routes::RELOAD, &serde_json::json!({})).await?;
            render::print(cli.json, &r, |r| {
                format!(
                    "reloaded: {} allow entries, {} deny entries, {} rules\n",
                    r.lists.allow, r.lists.deny, r.rules
                )
            })
        }
        Command::CheckConfig { file } => check_config(&file, cli.json),
        Command::Detach => detach(client, pins).await,
    }
}

async fn add(client: &Client, route: &str, req: EntryRequest, json: bool) -> anyhow::Result<()> {
    let applied: Applied = client.post(route, &req).await?;
    if !applied.durable && !json {
        eprintln!(
            "guardctl: enforced, but not yet in guardd's state database (it refuses writes; \
             guardd retries): a reboot now would lose it"
        );
    }
    render::print(json, &applied, |a| render::entries(&a.applied))
}

async fn remove(client: &Client, kind: Kind, cidr: &str, json: bool) -> anyhow::Result<()> {
    let gone: EntryView = client.delete(&routes::entry(kind, cidr)).await?;
    render::print(json, &gone, |e| format!("removed {}\n", e.cidr))
}

async fn list(client: &Client, pins: &PinLayout, kind: Kind, json: bool) -> anyhow::Result<()> {
    let list = match client.get::<EntryList>(routes::entries(kind)).await {
        Ok(l) => l,
        Err(e @ ClientError::Unreachable { .. }) => offline::entries(pins, kind, &e, json)?,
        Err(e) => return Err(e.into()),
    };
    render::print(json, &list, |l| render::entries(&l.entries))
}

fn check_config(file: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let config = Config::load(file)?;
    let allow = guard_user::lists::load(&config.lists.allow).context("allow list")?;
    let deny = guard_user::lists::load(&config.lists.deny).context("deny list")?;
    let tables = guard_user::lists::tables::Tables::build(&allow, &deny)?;
    // As guardd would see this host now.
    let protected = guard_user::protect::host::Protection::new(&config).current();
    guard_user::protect::check_deny(&deny, &tables, &protected, &config.lists.deny)?;
    for w in config.warnings() {
        eprintln!("warning: {w}");
    }
    if json {
        let out = serde_json::json!({
            "file": file.display().to_string(),
            "ok": true,
            "rules": config.rules.len(),
            "allow_entries": tables.counts.allow,
            "deny_entries": tables.counts.deny,
            "protected": protected.iter().map(ToString::to_string).collect::<Vec<_>>(),
        });
        println!("{out}");
    } else {
        println!(
            "{}: ok ({} rules, {} allow entries, {} deny entries, {} protected addresses)",
            file.display(),
            config.rules.len(),
            tables.counts.allow,
            tables.counts.deny,
            protected.len()
        );
    }
    Ok(())
}

/// Removes the pins, only when no daemon owns them: none answers on the socket, and no
/// process holds the pinned maps (a guardd on another socket, or one that is hung).
async fn detach(client: &Client, pins: &PinLayout) -> anyhow::Result<()> {
    match client.get::<Status>(routes::STATUS).await {
        Ok(s) => anyhow::bail!(
            "guardd (pid {}) is running on {}: stop it first (systemctl stop guard), then detach",
            s.pid,
            client.socket().display()
        ),
        Err(ClientError::Unreachable { .. }) => {}
        Err(e) => anyhow::bail!(
            "something answers on {} but not as guardd does ({}): not detaching while a \
             daemon may own the pins",
            client.socket().display(),
            guard_user::error_chain(&e)
        ),
    }
    if !pins.exists() {
        println!("nothing to detach under {}", pins.root().display());
        return Ok(());
    }
    let owners = guard_user::kernel::owners::owners(pins)
        .context("not detaching: cannot tell whether a daemon owns the pins")?;
    if let Some(o) = owners.first() {
        anyhow::bail!(
            "process {} ({}) holds guard's maps under {} (a guardd on another socket?): \
             stop it first, then detach",
            o.pid,
            o.comm,
            pins.root().display()
        );
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
