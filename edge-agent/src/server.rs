//! Listeners and connections: TCP (optionally TLS) and a Unix domain socket, HTTP/1.1
//! with keep-alive and HTTP/2 (h2c by prior knowledge, or negotiated by ALPN over TLS),
//! a bound on open connections, a deadline for request heads, and a graceful shutdown.
//!
//! Every connection also has an idle deadline, because an open connection holds one of
//! the `max_connections` slots: a new connection must start its first request within
//! the head deadline (this also bounds the HTTP/1-or-HTTP/2 detection, which hyper does
//! not time), and a connection with no request in flight is closed after the idle
//! timeout (HTTP/2 with `GOAWAY`; keep-alive pings do not count as activity). A closing
//! connection that does not finish within the head deadline is dropped.
//!
//! The head deadline of HTTP/1 is kept here too, not by hyper: hyper's
//! `header_read_timeout` starts as soon as a keep-alive connection waits for its next
//! request, so it would close every idle keep-alive connection at the head deadline
//! instead of the idle one. The connection's reads are watched instead: a head is
//! timed from its first byte (or, on a new connection, from the accept), and a
//! connection whose head is not complete by the deadline is dropped without an answer.
//!
//! Writes are watched as well: a client that stops reading its answers (a slow read,
//! or requests pipelined without reading) leaves hyper with an answer it cannot write
//! and the next request unserved, which would otherwise count as a request in flight
//! for ever. A connection whose writes make no progress for the idle timeout is
//! dropped.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use metrics::{counter, gauge};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::api::{Api, Connection, Role};
use crate::tls::{Certificate, ClientNames};

/// What the listeners serve with.
pub struct Server {
    /// The API.
    pub api: Arc<Api>,
    /// Bound on open connections.
    pub connections: Arc<Semaphore>,
    /// Deadline for a request head, and for a new connection's first request.
    pub header_timeout: Duration,
    /// How long a connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// Most concurrent HTTP/2 streams per connection.
    pub http2_max_concurrent_streams: u32,
    /// Largest HTTP/1 request head, and the size of a connection's read buffer.
    pub max_head_bytes: usize,
    /// TLS for the TCP listener.
    pub tls: Option<TlsAcceptor>,
    /// Which paths its listeners serve.
    pub role: Role,
    /// Client certificates tied to storefronts.
    pub client_names: ClientNames,
}

/// A bound listener.
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// A Unix domain socket (removed again when the server stops).
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Binds a Unix socket with permissions `mode`, replacing a stale socket file left
    /// by an earlier run.
    ///
    /// # Errors
    ///
    /// When the path exists and is not a socket, or binding or setting the mode fails.
    pub fn unix(path: PathBuf, mode: u32) -> anyhow::Result<Listener> {
        use std::os::unix::fs::FileTypeExt;
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            anyhow::ensure!(
                meta.file_type().is_socket(),
                "{} exists and is not a socket; not replacing it",
                path.display()
            );
            if std::os::unix::net::UnixStream::connect(&path).is_ok() {
                anyhow::bail!("{} is in use by another process", path.display());
            }
            std::fs::remove_file(&path)?;
        }
        let listener = UnixListener::bind(&path)
            .map_err(|e| anyhow::anyhow!("binding {}: {e}", path.display()))?;
        // Whoever may write to the socket may send events: its mode is the configured
        // one, not whatever the umask leaves.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).map_err(|e| {
            anyhow::anyhow!("setting the mode of {} to {mode:o}: {e}", path.display())
        })?;
        Ok(Listener::Unix(listener, path))
    }
}

/// Streams an HTTP/2 connection may have refused or reset by the agent (over
/// `http2_max_concurrent_streams`, malformed) before it is ended with `GOAWAY`
/// `ENHANCE_YOUR_CALM`. A client that keeps to the advertised limit meets none; h2's
/// default of 1,024 let one connection of a flood cost the agent eight times the work.
const HTTP2_MAX_REFUSED_STREAMS: usize = 128;

impl Server {
    fn builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            // Heads are timed by `serve` (see the module documentation).
            .header_read_timeout(None)
            .max_buf_size(self.max_head_bytes)
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(self.http2_max_concurrent_streams)
            .max_local_error_reset_streams(Some(HTTP2_MAX_REFUSED_STREAMS))
            .keep_alive_interval(Some(Duration::from_secs(30)));
        builder
    }

    /// Accepts and serves connections until `stop` turns true, then lets in-flight
    /// requests finish (at most `drain`) and returns.
    pub async fn run(
        self: Arc<Self>,
        listener: Listener,
        mut stop: watch::Receiver<bool>,
        drain: Duration,
    ) {
        // Every connection task holds a receiver; `closed()` resolves once all are gone.
        let (open, _) = watch::channel(());
        loop {
            let permit = tokio::select! {
                permit = self.connections.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
                _ = stop.changed() => break,
            };
            let accepted = tokio::select! {
                accepted = accept(&listener) => accepted,
                _ = stop.changed() => break,
            };
            match accepted {
                Ok(Stream::Tcp(stream)) => {
                    let _ = stream.set_nodelay(true);
                    let peer = stream.peer_addr().ok().map(|a| a.ip());
                    match &self.tls {
                        Some(tls) => {
                            let (tls, server) = (tls.clone(), self.clone());
                            let (held, stop) = (open.subscribe(), stop.clone());
                            tokio::spawn(async move {
                                // The handshake counts against the head deadline.
                                match tokio::time::timeout(
                                    server.header_timeout,
                                    tls.accept(stream),
                                )
                                .await
                                {
                                    Ok(Ok(stream)) => {
                                        let certificate = server
                                            .client_names
                                            .identify(stream.get_ref().1.peer_certificates());
                                        server.serve(stream, peer, certificate, stop).await;
                                    }
                                    Ok(Err(error)) => {
                                        tracing::debug!(%error, "TLS handshake failed")
                                    }
                                    Err(_) => tracing::debug!("TLS handshake timed out"),
                                }
                                drop((permit, held));
                            });
                        }
                        None => self.spawn(stream, peer, &open, &stop, permit),
                    }
                }
                Ok(Stream::Unix(stream)) => self.spawn(stream, None, &open, &stop, permit),
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        if let Listener::Unix(_, path) = &listener {
            let _ = std::fs::remove_file(path);
        }
        drop(listener);
        if tokio::time::timeout(drain, open.closed()).await.is_err() {
            tracing::warn!(
                ?drain,
                "connections still open at the drain deadline; closing them"
            );
        }
    }

    fn spawn<S>(
        self: &Arc<Self>,
        stream: S,
        peer: Option<std::net::IpAddr>,
        open: &watch::Sender<()>,
        stop: &watch::Receiver<bool>,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let server = self.clone();
        let (held, stop) = (open.subscribe(), stop.clone());
        tokio::spawn(async move {
            server.serve(stream, peer, Certificate::Untied, stop).await;
            drop((permit, held));
        });
    }

    /// Serves one connection until it ends, the server stops (graceful), or it has been
    /// idle too long (graceful, then dropped after the head deadline).
    async fn serve<S>(
        &self,
        stream: S,
        peer: Option<std::net::IpAddr>,
        certificate: Certificate,
        mut stop: watch::Receiver<bool>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let open = gauge!("edge_http_connections");
        open.increment(1.0);
        let activity = Arc::new(Activity::new());
        let about = Arc::new(Connection {
            peer,
            role: self.role,
            certificate,
        });
        let service = {
            let (api, activity) = (self.api.clone(), activity.clone());
            service_fn(move |request| {
                let (api, busy) = (api.clone(), Activity::begin(&activity));
                let about = about.clone();
                async move {
                    // One turn of the scheduler per request: the requests a client
                    // pipelined on one connection are served one per turn, so other
                    // connections' requests are not kept waiting behind them.
                    tokio::task::yield_now().await;
                    let answer = api.serve(request, about).await;
                    drop(busy);
                    answer
                }
            })
        };
        let builder = self.builder();
        let stream = Watched {
            inner: stream,
            activity: activity.clone(),
        };
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(connection);
        // Asked to close: on a stop (the drain deadline of `run` bounds it), or for
        // idleness, with a deadline of its own.
        let mut closing = false;
        let mut deadline: Option<Instant> = None;
        loop {
            tokio::select! {
                ended = connection.as_mut() => {
                    if let Err(error) = ended {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                    break;
                }
                _ = stop.wait_for(|stopped| *stopped), if !closing => {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
                why = activity.idle(self.header_timeout, self.idle_timeout), if !closing => {
                    match why {
                        Expired::Head => {
                            tracing::debug!("a request head did not arrive in time; dropping the connection");
                            break;
                        }
                        Expired::WriteStalled => {
                            tracing::debug!("the client does not read its answers; dropping the connection");
                            counter!("edge_http_idle_closed_total").increment(1);
                            break;
                        }
                        Expired::Idle => {}
                    }
                    tracing::debug!("closing an idle connection");
                    counter!("edge_http_idle_closed_total").increment(1);
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                    deadline = Some(Instant::now() + self.header_timeout);
                }
                _ = sleep_until(deadline), if deadline.is_some() => {
                    tracing::debug!("a closing connection did not finish in time; dropping it");
                    break;
                }
            }
        }
        open.decrement(1.0);
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// What a connection is doing: requests in flight, when the last one ended, and when
/// the bytes of an HTTP/1 request head started to arrive.
struct Activity {
    in_flight: AtomicUsize,
    /// When the connection became idle; `None` before its first request.
    idle_since: Mutex<Option<Instant>>,
    /// When the first byte of a request head arrived with no request in flight (HTTP/1
    /// only); `None` once the head is complete.
    head_since: Mutex<Option<Instant>>,
    /// Set once the connection turned out to speak HTTP/2 (its frames arrive between
    /// requests, and hyper's HTTP/2 bounds its header blocks).
    http2: std::sync::atomic::AtomicBool,
    /// Whether anything was read yet.
    read_any: std::sync::atomic::AtomicBool,
    /// Since when a write has been waiting for the client to read (`None` while
    /// writes go through).
    write_blocked_since: Mutex<Option<Instant>>,
    /// Wakes [`Activity::idle`] when a head starts or a write blocks.
    head_started: Notify,
    opened: Instant,
}

/// Which deadline passed.
#[derive(Debug, PartialEq, Eq)]
enum Expired {
    /// No request in flight for the idle timeout (or no first request in time).
    Idle,
    /// An HTTP/1 request head started and was not complete within the head deadline.
    Head,
    /// The client has not read its answers for the idle timeout.
    WriteStalled,
}

/// A connection's byte stream, reporting reads to its [`Activity`].
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

/// Bytes read per unit of the task's scheduling budget (tokio gives a task 128 units
/// per turn; a read costs one unit at least).
const BYTES_PER_BUDGET_UNIT: usize = 128;

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    /// Reads, and charges the connection's task for what it read: one unit of tokio's
    /// budget per [`BYTES_PER_BUDGET_UNIT`]. A connection whose socket is full of small
    /// HTTP/2 frames (thousands of HEADERS, or HEADERS and RST_STREAM pairs) otherwise
    /// has hyper and h2 work through all of them in one turn of its task, while the
    /// other connections on that thread wait; charged this way, it yields after about
    /// 16 KiB, as does a large body.
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let turn = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            turn.made_progress();
            self.activity.arrived(&buf.filled()[before..]);
            for _ in 0..read / BYTES_PER_BUDGET_UNIT {
                match tokio::task::coop::poll_proceed(cx) {
                    std::task::Poll::Ready(more) => more.made_progress(),
                    // Out of budget: the next read yields.
                    std::task::Poll::Pending => break,
                }
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write(cx, data);
        self.activity.wrote(&polled);
        polled
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.activity.wrote(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A request in flight; dropping it marks the end of the request.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self
                .0
                .idle_since
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
        }
    }
}

impl Activity {
    fn new() -> Activity {
        Activity {
            in_flight: AtomicUsize::new(0),
            idle_since: Mutex::new(None),
            head_since: Mutex::new(None),
            write_blocked_since: Mutex::new(None),
            http2: std::sync::atomic::AtomicBool::new(false),
            read_any: std::sync::atomic::AtomicBool::new(false),
            head_started: Notify::new(),
            opened: Instant::now(),
        }
    }

    fn begin(this: &Arc<Activity>) -> Busy {
        this.in_flight.fetch_add(1, Ordering::AcqRel);
        *lock(&this.head_since) = None;
        Busy(this.clone())
    }

    /// Bytes were read: with no request in flight on HTTP/1, a head has started.
    fn arrived(&self, bytes: &[u8]) {
        if !self.read_any.swap(true, Ordering::AcqRel) && bytes.starts_with(b"PRI ") {
            // The HTTP/2 client preface ("PRI * HTTP/2.0"); no HTTP/1 method is "PRI".
            self.http2.store(true, Ordering::Release);
        }
        if self.http2.load(Ordering::Acquire) || self.in_flight.load(Ordering::Acquire) > 0 {
            return;
        }
        let mut since = lock(&self.head_since);
        if since.is_none() {
            *since = Some(Instant::now());
            self.head_started.notify_one();
        }
    }

    /// A write was tried: it blocked (the client does not read), or went through.
    fn wrote(&self, polled: &std::task::Poll<std::io::Result<usize>>) {
        let mut since = lock(&self.write_blocked_since);
        match polled {
            std::task::Poll::Pending => {
                if since.is_none() {
                    *since = Some(Instant::now());
                    self.head_started.notify_one();
                }
            }
            std::task::Poll::Ready(_) => *since = None,
        }
    }

    /// Resolves once the connection has had no request in flight for `idle` (or, before
    /// its first request, for `head`), or once an HTTP/1 request head has taken longer
    /// than `head` since its first byte, or once a write has been blocked for `idle`.
    async fn idle(&self, head: Duration, idle: Duration) -> Expired {
        loop {
            let started = self.head_started.notified();
            if let Some(blocked) = *lock(&self.write_blocked_since) {
                if blocked + idle <= Instant::now() {
                    return Expired::WriteStalled;
                }
            }
            let (deadline, why) = if self.in_flight.load(Ordering::Acquire) > 0 {
                (Instant::now() + idle, Expired::Idle)
            } else {
                let idle_deadline = match *lock(&self.idle_since) {
                    Some(since) => since + idle,
                    None => self.opened + head,
                };
                match *lock(&self.head_since) {
                    Some(since) if since + head < idle_deadline => (since + head, Expired::Head),
                    _ => (idle_deadline, Expired::Idle),
                }
            };
            if deadline <= Instant::now() && self.in_flight.load(Ordering::Acquire) == 0 {
                // Before the first request, a head that is still arriving is a slow head.
                let head_pending = lock(&self.head_since).is_some();
                return if head_pending { Expired::Head } else { why };
            }
            let deadline = match *lock(&self.write_blocked_since) {
                Some(blocked) => deadline.min(blocked + idle),
                None => deadline,
            };
            tokio::select! {
                _ = tokio::time::sleep_until(deadline.max(Instant::now() + Duration::from_millis(1))) => {}
                _ = started => {}
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &Listener) -> std::io::Result<Stream> {
    match listener {
        Listener::Tcp(l) => l.accept().await.map(|(s, _)| Stream::Tcp(s)),
        Listener::Unix(l, _) => l.accept().await.map(|(s, _)| Stream::Unix(s)),
    }
}
