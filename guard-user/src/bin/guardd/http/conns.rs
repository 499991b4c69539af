//! The open connections of one listener: when each last moved a byte, whether a request is
//! running on it, and the eviction of the one idle the longest when the cap is reached.

use std::{
    collections::HashMap,
    io,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::Notify,
};

pub struct Conns {
    limit: usize,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
    next: AtomicU64,
    epoch: Instant,
}

pub enum Admitted {
    /// Under the cap.
    Room(Arc<Conn>),
    /// At the cap: the connection idle the longest was told to close.
    Evicted(Arc<Conn>),
    /// At the cap with a request running on every connection: the newcomer is refused.
    Full,
}

impl Conns {
    pub fn new(limit: usize) -> Conns {
        Conns {
            limit,
            open: Mutex::default(),
            next: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    pub fn open(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for a new connection, making one when the listener is full.
    pub fn admit(self: &Arc<Self>) -> Admitted {
        let mut open = self.lock();
        let mut evicted = false;
        if open.len() >= self.limit {
            let victim = open
                .iter()
                .filter(|(_, c)| !c.running())
                .min_by_key(|(_, c)| c.last.load(Ordering::Relaxed))
                .map(|(id, _)| *id);
            let Some(id) = victim else {
                return Admitted::Full;
            };
            if let Some(c) = open.remove(&id) {
                c.evict.notify_one();
            }
            evicted = true;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            id,
            owner: Arc::downgrade(self),
            epoch: self.epoch,
            last: AtomicU64::new(0),
            requests: AtomicUsize::new(0),
            evict: Notify::new(),
        });
        conn.touch();
        open.insert(id, conn.clone());
        if evicted {
            Admitted::Evicted(conn)
        } else {
            Admitted::Room(conn)
        }
    }
}

pub struct Conn {
    id: u64,
    owner: std::sync::Weak<Conns>,
    epoch: Instant,
    /// Milliseconds from `epoch` to the last byte moved.
    last: AtomicU64,
    requests: AtomicUsize,
    evict: Notify,
}

impl Conn {
    pub fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last.store(ms, Ordering::Relaxed);
    }

    pub fn last_activity(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last.load(Ordering::Relaxed))
    }

    pub fn idle_for(&self) -> Duration {
        self.last_activity().elapsed()
    }

    pub fn running(&self) -> bool {
        self.requests.load(Ordering::Relaxed) > 0
    }

    /// Marks a request running until the returned guard drops.
    pub fn request(self: &Arc<Self>) -> Running {
        self.requests.fetch_add(1, Ordering::Relaxed);
        Running(self.clone())
    }

    /// Resolves when the listener closed this connection to make room.
    pub async fn evicted(&self) {
        self.evict.notified().await
    }

    /// Gives its place back (the connection ended).
    pub fn closed(&self) {
        if let Some(owner) = self.owner.upgrade() {
            owner.lock().remove(&self.id);
        }
    }
}

pub struct Running(Arc<Conn>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.touch();
        self.0.requests.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A stream that marks its connection active whenever bytes move.
pub struct Tracked<S> {
    inner: S,
    conn: Arc<Conn>,
}

impl<S> Tracked<S> {
    pub fn new(inner: S, conn: Arc<Conn>) -> Self {
        Tracked { inner, conn }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.touch();
        }
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.touch();
        }
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.touch();
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
