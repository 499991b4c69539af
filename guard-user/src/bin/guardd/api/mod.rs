//! The control API: HTTP/1.1 + JSON on the Unix socket. Every error is a status code and
//! `{"error": "..."}`; changes are logged with the peer's uid and pid.

mod entries;
mod errors;
mod misc;

pub use errors::{ApiError, bad_request};

use axum::{
    Router,
    body::{Body, Bytes},
    http::{Method, StatusCode, Uri},
    routing::{delete, get, post},
};
use guard_user::control::{requests::MAX_BODY, routes};

use crate::state::Shared;

pub fn router(daemon: Shared, requests: crate::metrics::ApiRequests) -> Router {
    routes::router(routes::Handlers {
        status: get(misc::status),
        stats: get(misc::stats),
        bans: get(entries::list_bans).post(entries::add_bans),
        ban: delete(entries::remove_ban),
        allows: get(entries::list_allows).post(entries::add_allows),
        allow: delete(entries::remove_allow),
        vouches: get(entries::list_vouches).post(entries::add_vouches),
        vouch: delete(entries::remove_vouch),
        penalties: post(misc::penalize),
        reload: post(misc::reload),
        top: get(misc::top),
        shape: get(misc::shape),
    })
    .fallback(not_found)
    .method_not_allowed_fallback(method_not_allowed)
    .layer(axum::middleware::from_fn_with_state(
        requests,
        crate::metrics::count_requests,
    ))
    .with_state(daemon)
}

pub use crate::http::Peer;

/// Reads a body of at most `MAX_BODY` bytes.
pub async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than {MAX_BODY} bytes"),
        )
    })
}

/// Runs `f` on the daemon off the async thread (big batches take a while); the engine takes
/// the locks it needs, so other requests go on meanwhile.
pub async fn blocking<T: Send + 'static>(
    d: Shared,
    f: impl FnOnce(&crate::state::Daemon) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(move || f(&d))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!("no route {method} {}", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
}
