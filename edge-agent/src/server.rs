//! Listeners and connections: TCP (optionally TLS) and a Unix domain socket, HTTP/1.1
//! with keep-alive and HTTP/2 (h2c by prior knowledge, or negotiated by ALPN over TLS),
//! a bound on open connections, a deadline for request heads, and a graceful shutdown.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use metrics::gauge;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::api::Api;

/// What the listeners serve with.
pub struct Server {
    /// The API.
    pub api: Arc<Api>,
    /// Bound on open connections.
    pub connections: Arc<Semaphore>,
    /// Deadline for a request head.
    pub header_timeout: Duration,
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
        let graceful = GracefulShutdown::new();
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
                            let watcher = graceful.watcher();
                            tokio::spawn(async move {
                                // The handshake counts against the head deadline.
                                match tokio::time::timeout(
                                    server.header_timeout,
                                    tls.accept(stream),
                                )
                                .await
                                {
                                    Ok(Ok(stream)) => {
                                        server.serve(stream, watcher).await;
                                    }
                                    Ok(Err(error)) => {
                                        tracing::debug!(%error, "TLS handshake failed")
                                    }
                                    Err(_) => tracing::debug!("TLS handshake timed out"),
                                }
                                drop(permit);
                            });
                        }
                        None => self.spawn(stream, &graceful, permit),
                    }
                }
                Ok(Stream::Unix(stream)) => self.spawn(stream, &graceful, permit),
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
        if tokio::time::timeout(drain, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                ?drain,
                "connections still open at the drain deadline; closing them"
            );
        }
    }

    fn spawn<S>(
        self: &Arc<Self>,
        stream: S,
        graceful: &GracefulShutdown,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let server = self.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            server.serve(stream, watcher).await;
            drop(permit);
        });
    }

    async fn serve<S>(&self, stream: S, watcher: Watcher)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let open = gauge!("edge_http_connections");
        open.increment(1.0);
        let api = self.api.clone();
        let service = service_fn(move |request| api.clone().serve(request));
        let builder = self.builder();
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        if let Err(error) = watcher.watch(connection).await {
            tracing::debug!(%error, "connection ended with an error");
        }
        open.decrement(1.0);
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
