//! The HTTP/1.1 servers of the API socket and the metrics port, bounded so that no slow,
//! idle, huge or numerous client delays another: a request's head must arrive within
//! `head`, a connection with no request running and no byte moving for `idle` is closed,
//! and at `connections` open the one idle the longest makes room for the newcomer.

mod conns;

use std::{convert::Infallible, io, sync::Arc, time::Duration};

use axum::{Router, extract::ConnectInfo};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream, UnixListener, UnixStream},
    sync::watch,
};
use tracing::{debug, warn};

use conns::{Admitted, Conns};

/// The bounds of one listener.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub connections: usize,
    pub head: Duration,
    pub idle: Duration,
}

/// The API socket: guardctl and the applications of the `guard` group. The cap stays far
/// below the unit's `LimitNOFILE`, so two full listeners still leave descriptors for maps,
/// the database and the fleet.
pub const API: Limits = Limits {
    connections: 1024,
    head: Duration::from_secs(10),
    idle: Duration::from_secs(30),
};

/// The metrics port: Prometheus, but reachable by every local user.
pub const METRICS: Limits = Limits {
    connections: 256,
    head: Duration::from_secs(10),
    idle: Duration::from_secs(30),
};

/// How long a stop waits for running requests.
const DRAIN: Duration = Duration::from_secs(5);

/// Who is on the other end (SO_PEERCRED on the socket; nobody known over TCP).
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    pub uid: Option<u32>,
    pub pid: Option<i32>,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: Option<String>| v.unwrap_or_else(|| "?".into());
        write!(
            f,
            "uid={} pid={}",
            show(self.uid.map(|u| u.to_string())),
            show(self.pid.map(|p| p.to_string()))
        )
    }
}

/// A listener the servers take connections from.
pub trait Listen: Send + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, Peer)>> + Send;
}

impl Listen for UnixListener {
    type Stream = UnixStream;
    async fn accept(&self) -> io::Result<(UnixStream, Peer)> {
        let (s, _) = UnixListener::accept(self).await?;
        let cred = s.peer_cred().ok();
        let peer = Peer {
            uid: cred.map(|c| c.uid()),
            pid: cred.and_then(|c| c.pid()),
        };
        Ok((s, peer))
    }
}

impl Listen for TcpListener {
    type Stream = TcpStream;
    async fn accept(&self) -> io::Result<(TcpStream, Peer)> {
        let (s, _) = TcpListener::accept(self).await?;
        let _ = s.set_nodelay(true);
        Ok((
            s,
            Peer {
                uid: None,
                pid: None,
            },
        ))
    }
}

/// Serves `app` on `listener` until `stop` turns true; then running requests get `DRAIN`
/// to finish. `name` is the listener's in logs.
pub async fn serve<L: Listen>(
    listener: L,
    app: Router,
    limits: Limits,
    name: &'static str,
    mut stop: watch::Receiver<bool>,
) {
    let conns = Arc::new(Conns::new(limits.connections));
    let (mut full, mut starved) = (OnceAMinute::default(), OnceAMinute::default());
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors (or another passing error): wait rather than spin;
                // the idle closes free some.
                if is_resource_error(&e) {
                    if starved.due() {
                        warn!("{name}: cannot accept a connection: {e} (said once a minute)");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                continue;
            }
        };
        let conn = match conns.admit() {
            Admitted::Room(c) => c,
            Admitted::Evicted(c) => {
                if full.due() {
                    warn!(
                        "{name}: {} connections open, the most it keeps: closing those idle \
                         the longest to take new ones (said once a minute)",
                        limits.connections
                    );
                }
                c
            }
            Admitted::Full => {
                debug!("{name}: every connection has a request running; refused one");
                continue;
            }
        };
        let app = app.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            connection(stream, peer, app, limits, conn.clone(), stop).await;
            conn.closed();
        });
    }
    let deadline = tokio::time::Instant::now() + DRAIN;
    while conns.open() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A warning that repeats at most once a minute: an abuser must not flood the log.
#[derive(Default)]
struct OnceAMinute(Option<tokio::time::Instant>);

impl OnceAMinute {
    fn due(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        let due = self.0.is_none_or(|t| now - t > Duration::from_secs(60));
        if due {
            self.0 = Some(now);
        }
        due
    }
}

fn is_resource_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// One connection, until the client closes it, it idles out, it is evicted or guardd stops.
async fn connection<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    peer: Peer,
    app: Router,
    limits: Limits,
    conn: Arc<conns::Conn>,
    mut stop: watch::Receiver<bool>,
) {
    let io = TokioIo::new(conns::Tracked::new(stream, conn.clone()));
    let running = conn.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let request = running.request();
        let mut app = app.clone();
        async move {
            let resp = tower_service::Service::call(&mut app, req).await;
            drop(request);
            resp.map_err(|e: Infallible| match e {})
        }
    });
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.head)
        .serve_connection(io, service);
    tokio::pin!(served);
    let mut stopping = false;
    loop {
        let idle_at = tokio::time::Instant::from_std(conn.last_activity() + limits.idle);
        tokio::select! {
            _ = &mut served => return,
            _ = conn.evicted() => return,
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                served.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep_until(idle_at) => {
                // A request still being answered counts as activity.
                if conn.running() {
                    conn.touch();
                } else if conn.idle_for() >= limits.idle {
                    return;
                }
            }
        }
    }
}
