//! `/v1/bans` and `/v1/allows`: list, add (one or a bulk array, all or nothing), remove.

use axum::{
    Json,
    body::Body,
    extract::{ConnectInfo, Path, State},
    http::header,
    response::{IntoResponse, Response},
};
use guard_user::{
    control::model::{Applied, EntryList, EntryRequest, EntryView},
    control::requests,
    lists::parse_net,
    verdicts::{Entry, Kind},
};
use tracing::info;

use super::{ApiError, Peer, bad_request, blocking, read_body};
use crate::state::Shared;

pub async fn list_bans(State(d): State<Shared>) -> Json<EntryList> {
    list(d, Kind::Ban)
}

pub async fn list_allows(State(d): State<Shared>) -> Json<EntryList> {
    list(d, Kind::Allow)
}

fn list(d: Shared, kind: Kind) -> Json<EntryList> {
    let entries = d.engine.entries(kind);
    Json(EntryList {
        entries: entries.iter().map(Entry::view).collect(),
    })
}

pub async fn add_bans(
    s: State<Shared>,
    p: ConnectInfo<Peer>,
    body: Body,
) -> Result<Response, ApiError> {
    add(s, p, body, Kind::Ban).await
}

pub async fn add_allows(
    s: State<Shared>,
    p: ConnectInfo<Peer>,
    body: Body,
) -> Result<Response, ApiError> {
    add(s, p, body, Kind::Allow).await
}

async fn add(
    State(d): State<Shared>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    body: Body,
    kind: Kind,
) -> Result<Response, ApiError> {
    let body = read_body(body).await?;
    // Decoding, applying and encoding 100,000 entries all take a while: off the runtime
    // thread, so status calls and scrapes go on meanwhile.
    let answer = blocking(d, move |d| {
        let reqs = requests::one_or_many::<EntryRequest>(&body).map_err(bad_request)?;
        let reqs = requests::entries(&reqs).map_err(bad_request)?;
        let added = d.engine.add_durably(kind, &reqs)?;
        let applied = added.entries;
        match applied.as_slice() {
            [one] => {
                info!(%peer, kind = kind.as_str(), cidr = %one.net, ttl = ?one.remaining(), reason = %one.reason, "added")
            }
            many => info!(%peer, kind = kind.as_str(), count = many.len(), "added in bulk"),
        }
        let answer = Applied {
            applied: applied.iter().map(Entry::view).collect(),
            durable: added.durable,
        };
        if applied.len() >= crate::memory::BULK {
            crate::memory::after_bulk();
        }
        serde_json::to_vec(&answer).map_err(|e| super::errors::internal(&e))
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], answer).into_response())
}

pub async fn remove_ban(
    s: State<Shared>,
    p: ConnectInfo<Peer>,
    c: Path<String>,
) -> Result<Json<EntryView>, ApiError> {
    remove(s, p, c, Kind::Ban).await
}

pub async fn remove_allow(
    s: State<Shared>,
    p: ConnectInfo<Peer>,
    c: Path<String>,
) -> Result<Json<EntryView>, ApiError> {
    remove(s, p, c, Kind::Allow).await
}

async fn remove(
    State(d): State<Shared>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Path(cidr): Path<String>,
    kind: Kind,
) -> Result<Json<EntryView>, ApiError> {
    let net = parse_net(&cidr).map_err(|e| bad_request(format!("cidr {cidr:?}: {e}")))?;
    let gone = blocking(d, move |d| Ok(d.engine.remove(&net, kind)?)).await?;
    info!(%peer, kind = kind.as_str(), cidr = %net, "removed");
    Ok(Json(gone.view()))
}
