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

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use metrics::{counter, gauge};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::api::Api;

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
}

/// A bound listener.
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// A Unix domain socket (removed again when the server stops).
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Binds a Unix socket, replacing a stale socket file left by an earlier run.
    ///
    /// # Errors
    ///
    /// When the path exists and is not a socket, or binding fails.
    pub fn unix(path: PathBuf) -> anyhow::Result<Listener> {
        use std::os::unix::fs::FileTypeExt;
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
        Ok(Listener::Unix(listener, path))
    }
}

impl Server {
    fn builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout)
            .max_buf_size(self.max_head_bytes)
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(self.http2_max_concurrent_streams)
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
                                        server.serve(stream, stop).await;
                                    }
                                    Ok(Err(error)) => {
                                        tracing::debug!(%error, "TLS handshake failed")
                                    }
                                    Err(_) => tracing::debug!("TLS handshake timed out"),
                                }
                                drop((permit, held));
                            });
                        }
                        None => self.spawn(stream, &open, &stop, permit),
                    }
                }
                Ok(Stream::Unix(stream)) => self.spawn(stream, &open, &stop, permit),
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
        open: &watch::Sender<()>,
        stop: &watch::Receiver<bool>,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let server = self.clone();
        let (held, stop) = (open.subscribe(), stop.clone());
        tokio::spawn(async move {
            server.serve(stream, stop).await;
            drop((permit, held));
        });
    }

    /// Serves one connection until it ends, the server stops (graceful), or it has been
    /// idle too long (graceful, then dropped after the head deadline).
    async fn serve<S>(&self, stream: S, mut stop: watch::Receiver<bool>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let open = gauge!("edge_http_connections");
        open.increment(1.0);
        let activity = Arc::new(Activity::new());
        let service = {
            let (api, activity) = (self.api.clone(), activity.clone());
            service_fn(move |request| {
                let (api, busy) = (api.clone(), Activity::begin(&activity));
                async move {
                    let answer = api.serve(request).await;
                    drop(busy);
                    answer
                }
            })
        };
        let builder = self.builder();
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
                _ = activity.idle(self.header_timeout, self.idle_timeout), if !closing => {
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

/// What a connection is doing: requests in flight, and when the last one ended.
struct Activity {
    in_flight: AtomicUsize,
    /// When the connection became idle; `None` before its first request.
    idle_since: Mutex<Option<Instant>>,
    opened: Instant,
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
            opened: Instant::now(),
        }
    }

    fn begin(this: &Arc<Activity>) -> Busy {
        this.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(this.clone())
    }

    /// Resolves once the connection has had no request in flight for `idle` (or, before
    /// its first request, for `first`).
    async fn idle(&self, first: Duration, idle: Duration) {
        loop {
            let deadline = if self.in_flight.load(Ordering::Acquire) > 0 {
                Instant::now() + idle
            } else {
                let since = *self
                    .idle_since
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match since {
                    Some(since) => since + idle,
                    None => self.opened + first,
                }
            };
            if deadline <= Instant::now() && self.in_flight.load(Ordering::Acquire) == 0 {
                return;
            }
            tokio::time::sleep_until(deadline.max(Instant::now() + Duration::from_millis(1))).await;
        }
    }
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
