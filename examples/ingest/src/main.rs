//! A tiny analytics-ingest endpoint, as in guard's mission: browsers post events from a
//! tracking script, nobody logs in, and bots post junk. It validates every event and tells
//! guard about junk senders: a penalty per junk post (they hit their rate limit early), and
//! a ban once they keep at it, so the kernel drops them before they reach this process.
//!
//! `guard-example-ingest --listen 0.0.0.0:8080 --guard-socket /run/guard/guard.sock`

mod event;
mod reporter;

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use axum::{
    Json, Router,
    extract::{ConnectInfo, State},
    http::StatusCode,
    routing::post,
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
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let reporter = Arc::new(reporter::Reporter::new(
        args.guard_socket,
        args.penalty,
        args.ban_after,
    ));
    let app = Router::new()
        .route("/collect", post(collect))
        .with_state(reporter);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    tracing::info!(listen = %args.listen, "ingest listening");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}

async fn collect(
    State(reporter): State<Arc<reporter::Reporter>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: axum::body::Bytes,
) -> (StatusCode, Json<serde_json::Value>) {
    match event::validate(&body, std::time::SystemTime::now()) {
        Ok(e) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({"accepted": e.event})),
        ),
        Err(why) => {
            reporter.junk(peer.ip().to_canonical(), &why).await;
            (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({"error": why})),
            )
        }
    }
}
