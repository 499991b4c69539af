//! A tiny analytics-ingest endpoint, as in guard's mission: browsers post events from a
//! tracking script, nobody logs in, and bots post junk. It validates every event and tells
//! guard about junk senders: a penalty per junk post (they hit their rate limit early), and
//! a ban once they keep at it, so the kernel drops them before they reach this process.
//!
//! It also serves a proof-of-work page (`/`, `/guard-pow.js`, `/pow.js`, `/challenge`,
//! `/verify`): a browser that solves a challenge is vouched for through guard, so it passes a
//! rule's empty endpoint budget during a distributed flood (docs/BUDGETS.md).
//!
//! `guard-example-ingest --listen 0.0.0.0:8080 --guard-socket /run/guard/guard.sock`

mod challenge;
mod event;
mod reporter;

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use axum::{
    Json, Router,
    extract::{ConnectInfo, State},
    http::{StatusCode, header},
    response::{Html, IntoResponse},
    routing::{get, post},
};
use clap::Parser;

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[arg(long, default_value = "/run/guard/guard.sock")]
    guard_socket: PathBuf,
    /// Tokens charged to a source per junk post.
    #[arg(long, default_value_t = 50)]
    penalty: u64,
    /// Junk posts after which the source is banned (guard's escalation sets the TTL).
    #[arg(long, default_value_t = 3)]
    ban_after: u32,
    /// Leading zero bits a proof's SHA-256 needs: each one doubles the work (18: about
    /// 260,000 hashes, under a second in a browser).
    #[arg(long, default_value_t = 18, value_parser = clap::value_parser!(u8).range(1..=32))]
    pow_difficulty: u8,
    /// How long a challenge may be solved for.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    pow_max_age: std::time::Duration,
    /// How long a solved challenge vouches for its source (omitted: guard's `[known]
    /// verified_for`).
    #[arg(long, value_parser = humantime::parse_duration)]
    vouch_ttl: Option<std::time::Duration>,
}

struct App {
    reporter: reporter::Reporter,
    challenges: challenge::Challenges,
    vouch_ttl: Option<std::time::Duration>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let app = Arc::new(App {
        reporter: reporter::Reporter::new(args.guard_socket, args.penalty, args.ban_after),
        challenges: challenge::Challenges::new(args.pow_difficulty, args.pow_max_age)?,
        vouch_ttl: args.vouch_ttl,
    });
    let app = Router::new()
        .route("/collect", post(collect))
        .route(
            "/",
            get(|| async { Html(include_str!("../static/index.html")) }),
        )
        .route(
            "/guard-pow.js",
            get(|| async { js(include_str!("../static/guard-pow.js")) }),
        )
        .route(
            "/pow.js",
            get(|| async { js(include_str!("../static/pow.js")) }),
        )
        .route("/challenge", get(challenge))
        .route("/verify", post(verify))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    tracing::info!(listen = %args.listen, "ingest listening");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}

fn js(body: &'static str) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript")], body)
}

/// `GET /challenge`: a challenge for the caller's address.
async fn challenge(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> (StatusCode, Json<serde_json::Value>) {
    match app.challenges.issue(peer.ip()) {
        Ok(c) => (
            StatusCode::OK,
            Json(serde_json::json!({"challenge": c, "difficulty": app.challenges.difficulty})),
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(serde_json::json!({"error": e.to_string()})),
        ),
    }
}

#[derive(serde::Deserialize)]
struct Proof {
    challenge: String,
    counter: u64,
}

/// `POST /verify`: checks the proof once, then vouches for the caller through guard.
async fn verify(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(proof): Json<Proof>,
) -> (StatusCode, Json<serde_json::Value>) {
    let ip = peer.ip().to_canonical();
    if let Err(why) = app.challenges.verify(ip, &proof.challenge, proof.counter) {
        let code = match why {
            challenge::Refused::Replayed => StatusCode::CONFLICT,
            challenge::Refused::Busy => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::FORBIDDEN,
        };
        return (code, Json(serde_json::json!({"error": why.as_str()})));
    }
    match app.reporter.vouch(ip, app.vouch_ttl).await {
        Ok(expires) => (
            StatusCode::OK,
            Json(serde_json::json!({"vouched": ip.to_string(), "expires_at": expires})),
        ),
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            Json(serde_json::json!({"error": format!("guard refused the vouch: {e}")})),
        ),
    }
}

async fn collect(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: axum::body::Bytes,
) -> (StatusCode, Json<serde_json::Value>) {
    match event::validate(&body, std::time::SystemTime::now()) {
        Ok(e) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({"accepted": e.event})),
        ),
        Err(why) => {
            app.reporter.junk(peer.ip().to_canonical(), &why).await;
            (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({"error": why})),
            )
        }
    }
}
