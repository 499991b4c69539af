//! `/v1/bans`, `/v1/allows` and `/v1/vouches`: list, add (one or a bulk array, all or
//! nothing), remove.

use axum::{
    Json,
    body::{Body, Bytes},
    extract::{ConnectInfo, Path, State},
    http::header,
    response::{IntoResponse, Response},
};
use guard_user::{
    control::model::{Applied, EntryRequest, EntryView},
    control::requests,
    lists::parse_net,
    model::Kind,
};
use ipnet::IpNet;
use tracing::info;

use super::{ApiError, Peer, bad_request, blocking, read_body};
use crate::state::Shared;

pub async fn list_bans(State(d): State<Shared>) -> Response {
    list(d, Kind::Ban)
}

pub async fn list_allows(State(d): State<Shared>) -> Response {
    list(d, Kind::Allow)
}

pub async fn list_vouches(State(d): State<Shared>) -> Response {
    list(d, Kind::Vouch)
}

/// Entries per slice of a listing: the table lock is held for one slice at a time.
const PAGE: usize = 4096;

/// An `EntryList` written as it is read, a slice at a time: a million bans neither hold the
/// table nor sit whole in memory, and a client that stops reading stops the listing. It is
/// not a snapshot: what changes meanwhile may or may not be in it.
fn list(d: Shared, kind: Kind) -> Response {
    enum At {
        Start,
        After(Option<IpNet>),
        Done,
    }
    let chunks = futures_util::stream::unfold(At::Start, move |at| {
        let d = d.clone();
        async move {
            let after = match at {
                At::Done => return None,
                At::Start => {
                    return Some((Ok(Bytes::from_static(b"{\"entries\":[")), At::After(None)));
                }
                At::After(after) => after,
            };
            let first = after.is_none();
            let page = tokio::task::spawn_blocking(move || {
                let page = d.engine.entries_page(kind, after.as_ref(), PAGE);
                let mut out = Vec::with_capacity(page.len() * 160 + 2);
                for (i, e) in page.iter().enumerate() {
                    if i > 0 || !first {
                        out.push(b',');
                    }
                    serde_json::to_writer(&mut out, &EntryView::of(e))?;
                }
                let next = if page.len() < PAGE {
                    out.extend_from_slice(b"]}");
                    At::Done
                } else {
                    At::After(page.last().map(|e| e.net))
                };
                Ok::<_, serde_json::Error>((Bytes::from(out), next))
            })
            .await;
            match page {
                Ok(Ok((bytes, next))) => Some((Ok(bytes), next)),
                Ok(Err(e)) => Some((Err(std::io::Error::other(e)), At::Done)),
                Err(e) => Some((Err(std::io::Error::other(e)), At::Done)),
            }
        }
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(chunks),
    )
        .into_response()
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

pub async fn add_vouches(
    s: State<Shared>,
    p: ConnectInfo<Peer>,
    body: Body,
) -> Result<Response, ApiError> {
    add(s, p, body, Kind::Vouch).await
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
            applied: applied.iter().map(EntryView::of).collect(),
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

pub async fn remove_vouch(
    s: State<Shared>,
    p: ConnectInfo<Peer>,
    c: Path<String>,
) -> Result<Json<EntryView>, ApiError> {
    remove(s, p, c, Kind::Vouch).await
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
    Ok(Json(EntryView::of(&gone)))
}
