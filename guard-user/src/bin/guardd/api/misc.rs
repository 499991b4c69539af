//! Status, stats, penalties and reload.

use axum::{
    Json,
    body::Body,
    extract::{ConnectInfo, State},
};
use guard_user::{
    control::model::{PenaltyRequest, PenaltyResult, Reloaded, Stats, Status},
    control::requests,
};
use tracing::info;

use super::{ApiError, Peer, bad_request, blocking, read_body};
use crate::state::Shared;

pub async fn status(State(d): State<Shared>) -> Json<Status> {
    Json(d.status())
}

pub async fn stats(State(d): State<Shared>) -> Result<Json<Stats>, ApiError> {
    d.engine
        .stats()
        .map(Json)
        .map_err(|e| super::errors::internal(&e))
}

pub async fn penalize(
    State(d): State<Shared>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    body: Body,
) -> Result<Json<PenaltyResult>, ApiError> {
    let body = read_body(body).await?;
    let req: PenaltyRequest = requests::one(&body).map_err(bad_request)?;
    let (ip, tokens) = requests::penalty(&req.ip, req.tokens).map_err(bad_request)?;
    let rule = req.rule.clone();
    let result = blocking(d, move |d| {
        Ok(d.engine.penalize(ip, tokens, rule.as_deref())?)
    })
    .await?;
    info!(%peer, %ip, tokens, rule = req.rule.as_deref().unwrap_or("*"), "penalty");
    Ok(Json(result))
}

pub async fn reload(
    State(d): State<Shared>,
    ConnectInfo(peer): ConnectInfo<Peer>,
) -> Result<Json<Reloaded>, ApiError> {
    let answer = blocking(d, |d| {
        let applied = d.reload()?;
        Ok(Reloaded {
            reloaded: true,
            lists: applied.lists,
            rules: applied.rules,
        })
    })
    .await?;
    info!(%peer, "reload requested through the API");
    Ok(Json(answer))
}

/// `GET /v1/top?n=20`: sources with the most sampled drops in the last minute.
pub async fn top(
    State(d): State<Shared>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Result<Json<guard_user::control::top::Top>, ApiError> {
    let n = match q.get("n") {
        None => 20,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                return Err(bad_request(format!(
                    "n={v}: must be a number between 1 and 1000"
                )));
            }
        },
    };
    if let Some(k) = q.keys().find(|k| k.as_str() != "n") {
        return Err(bad_request(format!("unknown query parameter {k:?}")));
    }
    let answer = d
        .top
        .lock()
        .expect("top lock")
        .top(n, std::time::Instant::now());
    Ok(Json(answer))
}

/// `GET /v1/shape`: every rule's attack shape.
pub async fn shape(
    State(d): State<Shared>,
) -> Result<Json<guard_user::engine::ShapeReport>, ApiError> {
    super::blocking(d, |d| Ok(d.engine.shape())).await.map(Json)
}
