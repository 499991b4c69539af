//! The control API's routes: their paths, and the one table both guardd and the fuzz
//! target build their router from, so what is fuzzed is what guardd serves.

use axum::{Router, routing::MethodRouter};

use crate::model::Kind;

pub const STATUS: &str = "/v1/status";
pub const STATS: &str = "/v1/stats";
pub const BANS: &str = "/v1/bans";
pub const ALLOWS: &str = "/v1/allows";
pub const VOUCHES: &str = "/v1/vouches";
pub const PENALTIES: &str = "/v1/penalties";
pub const RELOAD: &str = "/v1/reload";
pub const TOP: &str = "/v1/top";
pub const SHAPE: &str = "/v1/shape";

/// `/v1/bans`, `/v1/allows` or `/v1/vouches`.
pub fn entries(kind: Kind) -> &'static str {
    match kind {
        Kind::Ban => BANS,
        Kind::Allow => ALLOWS,
        Kind::Vouch => VOUCHES,
    }
}

/// The path of one entry: the CIDR as a path segment, its `/` percent-encoded.
pub fn entry(kind: Kind, cidr: &str) -> String {
    format!("{}/{}", entries(kind), cidr.replace('/', "%2F"))
}

/// What serves each route (methods combined per path).
pub struct Handlers<S> {
    pub status: MethodRouter<S>,
    pub stats: MethodRouter<S>,
    /// `GET` lists, `POST` adds.
    pub bans: MethodRouter<S>,
    /// `DELETE /v1/bans/{cidr}`.
    pub ban: MethodRouter<S>,
    pub allows: MethodRouter<S>,
    pub allow: MethodRouter<S>,
    pub vouches: MethodRouter<S>,
    pub vouch: MethodRouter<S>,
    pub penalties: MethodRouter<S>,
    pub reload: MethodRouter<S>,
    pub top: MethodRouter<S>,
    pub shape: MethodRouter<S>,
}

/// The API's router: every route with its handlers; the caller adds fallbacks and layers.
pub fn router<S: Clone + Send + Sync + 'static>(h: Handlers<S>) -> Router<S> {
    Router::new()
        .route(STATUS, h.status)
        .route(STATS, h.stats)
        .route(BANS, h.bans)
        .route(&format!("{BANS}/{{cidr}}"), h.ban)
        .route(ALLOWS, h.allows)
        .route(&format!("{ALLOWS}/{{cidr}}"), h.allow)
        .route(VOUCHES, h.vouches)
        .route(&format!("{VOUCHES}/{{cidr}}"), h.vouch)
        .route(PENALTIES, h.penalties)
        .route(RELOAD, h.reload)
        .route(TOP, h.top)
        .route(SHAPE, h.shape)
}
