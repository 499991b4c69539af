//! The link to NATS: one client that reconnects by itself; over it, sessions that open the
//! buckets, follow them (`watch`) and publish the outbox. A session ends on any error and
//! the next one starts from a full catch-up, so nothing depends on what a broken
//! connection may have lost.

use std::{
    sync::{Arc, atomic::Ordering::Relaxed},
    time::Duration,
};

use async_nats::{
    HeaderMap, ServerAddr,
    jetstream::{self, kv},
};
use tracing::{error, info, warn};

use super::Host;
use super::{Fleet, record};
use crate::{model::Kind, state::OutboxRow};

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("NATS credentials {path}")]
    Credentials {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}")]
    Nats {
        what: String,
        #[source]
        source: async_nats::Error,
    },
    #[error("the watch of {bucket} ended")]
    WatchEnded { bucket: &'static str },
}

pub(super) fn nats(what: impl Into<String>) -> impl FnOnce(async_nats::Error) -> FleetError {
    let what = what.into();
    move |source| FleetError::Nats { what, source }
}

/// Verdicts published per round trip of acknowledgements.
const PUBLISH_BATCH: usize = 1024;
/// Longest wait between reconnection attempts: NATS back means the backlog leaves soon.
const MAX_RECONNECT_DELAY: Duration = Duration::from_millis(500);
/// How long a publication or a bucket request may wait for JetStream.
const JETSTREAM_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest a ban lives: older records have expired everywhere and may go.
const BANS_MAX_AGE: Duration = Duration::from_secs(crate::model::ttl::MAX_TTL_SECS + 24 * 3600);

/// Runs the fleet link of `engine` for as long as guardd runs (nothing without `[fleet]`).
pub async fn run<H: Host>(engine: Arc<H>) {
    let Some(fleet) = engine.fleet().cloned() else {
        return;
    };
    let client = match connect(&fleet).await {
        Ok(c) => c,
        Err(e) => {
            error!(
                "fleet disabled: {}; verdicts stay on this host",
                crate::error_chain(&e)
            );
            return;
        }
    };
    info!(node = %fleet.node, servers = ?fleet.servers, "fleet: connecting to NATS");
    let mut last_error = String::new();
    loop {
        let res = session(&engine, &fleet, &client).await;
        fleet.in_sync.store(false, Relaxed);
        if let Err(e) = res {
            let why = crate::error_chain(&e);
            // Once per distinct error: an outage repeats the same one every second.
            if why != last_error {
                warn!(
                    outbox = fleet.outbox.len(),
                    "fleet: {why}; this host enforces and queues its verdicts meanwhile"
                );
                last_error = why;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn connect(fleet: &Arc<Fleet>) -> Result<async_nats::Client, FleetError> {
    let mut opts = async_nats::ConnectOptions::new()
        .name(format!("guardd {}", fleet.node))
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(2))
        .reconnect_delay_callback(|attempts| {
            (Duration::from_millis(100) * attempts as u32).min(MAX_RECONNECT_DELAY)
        });
    let auth = &fleet.auth;
    if let Some(path) = &auth.credentials {
        opts = opts
            .credentials_file(path)
            .await
            .map_err(|source| FleetError::Credentials {
                path: path.clone(),
                source,
            })?;
    }
    if auth.tls() {
        // The servers must then speak TLS and prove who they are: no silent plain text.
        opts = opts.require_tls(true);
    }
    if let Some(ca) = &auth.tls_ca {
        opts = opts.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&auth.tls_cert, &auth.tls_key) {
        opts = opts.add_client_certificate(cert.clone(), key.clone());
    }
    let state = fleet.clone();
    let denied = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    opts = opts.event_callback(move |event| {
        let (state, denied) = (state.clone(), denied.clone());
        async move {
            match event {
                async_nats::Event::Connected => {
                    state.connected.store(true, Relaxed);
                    info!("fleet: connected to NATS");
                }
                async_nats::Event::Disconnected => {
                    state.connected.store(false, Relaxed);
                    warn!("fleet: disconnected from NATS");
                }
                // The node's user lacks a permission: say which, once per subject.
                async_nats::Event::ServerError(async_nats::ServerError::Other(e))
                    if e.to_lowercase().contains("permissions violation") =>
                {
                    if e.contains("Publish to \"$KV.") {
                        state.publish_denied.store(true, Relaxed);
                    }
                    if denied.lock().expect("denied lock").insert(e.clone()) {
                        error!(
                            "fleet: NATS refused this node's user: {e}; its permissions must \
                             allow what docs/FLEET.md lists for a node"
                        );
                    }
                }
                other => info!("fleet: NATS {other}"),
            }
        }
    });
    let addrs: Vec<ServerAddr> = fleet
        .servers
        .iter()
        .map(|s| s.parse().expect("checked with the config"))
        .collect();
    opts.connect(addrs)
        .await
        .map_err(|e| nats("connecting to NATS")(e.into()))
}

/// Opens the buckets, then follows both and publishes until something fails.
async fn session<H: Host>(
    engine: &Arc<H>,
    fleet: &Arc<Fleet>,
    client: &async_nats::Client,
) -> Result<(), FleetError> {
    // The client connects (and reconnects) by itself: give it a moment before saying so.
    let connected = || client.connection_state() == async_nats::connection::State::Connected;
    for _ in 0..40 {
        if connected() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !connected() {
        return Err(FleetError::Nats {
            what: "NATS is not reachable".into(),
            source: "not connected".into(),
        });
    }
    // Asked again each session: the operator may have granted it meanwhile.
    fleet.publish_denied.store(false, Relaxed);
    let mut js = jetstream::new(client.clone());
    js.set_timeout(JETSTREAM_TIMEOUT);
    // As many copies as the cluster has servers, up to 3: a cluster survives losing one.
    let replicas = client.server_info().connect_urls.len().clamp(1, 3);
    let bans = bucket(&js, Kind::Ban, replicas).await?;
    let allows = bucket(&js, Kind::Allow, replicas).await?;
    let vouches = bucket(&js, Kind::Vouch, replicas).await?;
    for (kind, store) in [
        (Kind::Ban, &bans),
        (Kind::Allow, &allows),
        (Kind::Vouch, &vouches),
    ] {
        trust(fleet, kind, store).await?;
    }
    let synced = super::watch::Catchup::new(Kind::ALL.len());
    // A lost connection ends the session at once: the next one resumes from the last
    // revision applied, rather than waiting on the watches' own recovery.
    let lost = async {
        while connected() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(FleetError::Nats {
            what: "lost the connection to NATS".into(),
            source: "disconnected".into(),
        })
    };
    tokio::select! {
        r = lost => r,
        r = super::watch::follow(engine, fleet, &bans, Kind::Ban, &synced) => r,
        r = super::watch::follow(engine, fleet, &allows, Kind::Allow, &synced) => r,
        r = super::watch::follow(engine, fleet, &vouches, Kind::Vouch, &synced) => r,
        r = publish(engine, fleet, &js) => r,
    }
}

/// Whether the bucket of `kind` keeps what guard needs to trust its deletions: one record
/// per key, deletions only by marker, records kept at least as long as a verdict lives. A
/// bucket made otherwise (by hand, or by someone with rights to recreate it) could drop
/// records on its own, and a catch-up would then lift every verdict they held on every
/// host: its deletions are ignored, and it is reported once per session.
async fn trust(fleet: &Fleet, kind: Kind, store: &kv::Store) -> Result<(), FleetError> {
    let name = record::bucket(kind);
    let status = store
        .status()
        .await
        .map_err(|e| nats(format!("reading bucket {name}"))(e.into()))?;
    let found = &status.info.config;
    let made = stream_config(kind, found.num_replicas);
    let mut differs = Vec::new();
    if found.subjects != made.subjects {
        differs.push(format!("subjects {:?}", found.subjects));
    }
    if found.max_messages_per_subject != 1 {
        differs.push(format!("history {}", found.max_messages_per_subject));
    }
    if !found.deny_delete {
        differs.push("messages may be deleted".into());
    }
    // Shorter than guard's: records would vanish while their verdicts live.
    if !found.max_age.is_zero() && (made.max_age.is_zero() || found.max_age < made.max_age) {
        differs.push(format!("records expire after {:?}", found.max_age));
    }
    let trusted = differs.is_empty();
    if !trusted {
        error!(
            bucket = name,
            "fleet: the bucket was not made as guard makes it ({}): its deletions are not \
             trusted on this host (verdicts it lifts stay until they expire); recreate it \
             (docs/FLEET.md)",
            differs.join(", ")
        );
    }
    fleet.set_trusted(kind, trusted);
    Ok(())
}

/// The stream of the bucket of `kind` as guard makes it.
fn stream_config(kind: Kind, replicas: usize) -> jetstream::stream::Config {
    let name = record::bucket(kind);
    jetstream::stream::Config {
        name: format!("KV_{name}"),
        description: Some(format!("guard: {}s shared by the fleet", kind.as_str())),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        // No record guard writes is larger: the server refuses what the nodes would.
        max_message_size: record::MAX_RECORD_BYTES as i32,
        // Bans and vouches expire (allows may not): their records outlive the longest TTL,
        // not more.
        max_age: if kind == Kind::Allow {
            Duration::ZERO
        } else {
            BANS_MAX_AGE
        },
        storage: jetstream::stream::StorageType::File,
        num_replicas: replicas,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: jetstream::stream::DiscardPolicy::New,
        ..Default::default()
    }
}

/// The bucket of `kind`, created when no node has yet.
async fn bucket(
    js: &jetstream::Context,
    kind: Kind,
    replicas: usize,
) -> Result<kv::Store, FleetError> {
    let name = record::bucket(kind);
    if let Ok(store) = js.get_key_value(name).await {
        return Ok(store);
    }
    // The stream a key-value bucket is, made directly: async-nats' create_key_value first
    // reads the account's info, whose 2.10 fields a 2.9 server does not send.
    let made = js.create_stream(stream_config(kind, replicas)).await;
    match js.get_key_value(name).await {
        Ok(store) => {
            if made.is_ok() {
                info!(bucket = name, replicas, "fleet: created the bucket");
            }
            Ok(store)
        }
        Err(e) => Err(match made {
            Err(made) => nats(format!("creating bucket {name}"))(made.into()),
            Ok(_) => nats(format!("opening bucket {name}"))(e.into()),
        }),
    }
}

/// Publishes the outbox, oldest first, in batches whose acknowledgements are awaited
/// together; each acknowledged row leaves the outbox (and the state database).
async fn publish<H: Host>(
    engine: &Arc<H>,
    fleet: &Arc<Fleet>,
    js: &jetstream::Context,
) -> Result<(), FleetError> {
    loop {
        let batch = fleet.outbox.peek(PUBLISH_BATCH);
        if batch.is_empty() {
            // Woken by a new verdict; the timeout only bounds a missed wake.
            let _ =
                tokio::time::timeout(Duration::from_secs(1), fleet.outbox.wake.notified()).await;
            continue;
        }
        let mut acks = Vec::with_capacity(batch.len());
        for row in &batch {
            acks.push(send(js, row).await?);
        }
        for ack in acks {
            if let Err(e) = ack.await {
                if fleet.publish_denied.load(Relaxed) {
                    // A node that only receives: its verdicts stay here (and queued), the
                    // watches go on. Said once per session.
                    warn!(
                        outbox = fleet.outbox.len(),
                        "fleet: this node's user may not publish verdicts: those made here \
                         stay on this host; it still applies the others'"
                    );
                    return std::future::pending().await;
                }
                return Err(nats("NATS did not acknowledge a verdict")(e.into()));
            }
        }
        fleet.outbox.done(&batch);
        engine.fleet_sent(&batch);
    }
}

async fn send(
    js: &jetstream::Context,
    row: &OutboxRow,
) -> Result<jetstream::context::PublishAckFuture, FleetError> {
    let subject = format!(
        "$KV.{}.{}",
        record::bucket(row.kind),
        record::key_of(&row.net)
    );
    let sent = match &row.record {
        Some(bytes) => js.publish(subject, bytes.clone().into()).await,
        None => {
            let mut headers = HeaderMap::new();
            headers.insert("KV-Operation", "DEL");
            js.publish_with_headers(subject, headers, bytes::Bytes::new())
                .await
        }
    };
    sent.map_err(|e| nats("publishing a verdict")(e.into()))
}
