//! The accept loop: one task per connection, a connection cap and a smaller cap on unauthenticated connections,
//! deadlines (TLS handshake, first request, idle, request body), body framing checks, failed accepts logged and
//! skipped, and a bounded drain when shutdown starts. Knows nothing of metrics.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, TryAcquireError};
use tokio_rustls::TlsAcceptor;

use super::body::RequestBody;
use super::framing::{self, Framing, HeadScan};
use super::idle::{Activity, Deadlines, IdleTimeout};
use super::shutdown::Shutdown;
use super::unauthenticated::Unauthenticated;
use crate::auth::ClientCertChain;
use crate::response::HttpResponse;

/// Answers requests; one value serves every connection of a listener.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request arriving on `connection`. The body fails with
    /// [`BodyTimedOut`](super::body::BodyTimedOut) once `--request-body-timeout` has passed since the headers.
    fn call(&self, request: Request<RequestBody>, connection: &Connection)
    -> impl Future<Output = HttpResponse> + Send;
}

/// What a handler knows about the connection a request came on; shared by all of the connection's requests.
#[derive(Debug)]
pub struct Connection {
    /// The client's address.
    pub peer: SocketAddr,
    /// The TLS client certificate chain the client presented, if any (not yet verified against any CA).
    pub client_certs: Option<ClientCertChain>,
    state: Arc<ConnectionState>,
}

impl Connection {
    /// Takes the connection out of the unauthenticated ones (see [`ConnectionLimits::max_unauthenticated`]): the
    /// handler calls this once a request on it was made by an authenticated client.
    pub fn mark_authenticated(&self) {
        let state = &self.state;
        if !state.authenticated.load(Ordering::Relaxed) && !state.authenticated.swap(true, Ordering::Relaxed) {
            state.unauthenticated.authenticated(state.id);
        }
    }
}

impl AsRef<Activity> for Connection {
    fn as_ref(&self) -> &Activity {
        &self.state.activity
    }
}

/// What the listener tracks of one connection.
#[derive(Debug)]
struct ConnectionState {
    activity: Activity,
    /// Increases with accept order.
    id: u64,
    authenticated: AtomicBool,
    unauthenticated: Arc<Unauthenticated>,
    framing: Framing,
}

impl AsRef<Framing> for ConnectionState {
    fn as_ref(&self) -> &Framing {
        &self.framing
    }
}

impl AsRef<Activity> for ConnectionState {
    fn as_ref(&self) -> &Activity {
        &self.activity
    }
}

/// The explicit limits of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections at most; when they are all open, the oldest unauthenticated one is closed for a new
    /// client, and without one the new client waits in the kernel's accept queue.
    pub max_connections: usize,
    /// Open connections at most that have not completed an authenticated request; a new connection beyond closes
    /// the oldest of them.
    pub max_unauthenticated: usize,
    /// Time a client has from connecting to finish the TLS handshake and send its first request's headers, and
    /// to send each later HTTP/1.1 request's headers.
    pub header_read_timeout: Duration,
    /// A connection without a request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// Time a client has to send a request's body, from the end of its headers.
    pub request_body_timeout: Duration,
    /// Concurrent HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 4096,
            max_unauthenticated: 512,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            request_body_timeout: Duration::from_secs(10),
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
    let unauthenticated = Unauthenticated::new(limits.max_unauthenticated);
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

    let mut next_id = 0u64;
    loop {
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
        unauthenticated.make_room();
        let permit = match Arc::clone(&permits).try_acquire_owned() {
            Ok(permit) => permit,
            Err(TryAcquireError::Closed) => break,
            Err(TryAcquireError::NoPermits) => {
                // Full: an unauthenticated connection makes way; without one, this client waits for a slot.
                unauthenticated.close_oldest();
                tokio::select! {
                    _ = shutdown.wait() => break,
                    permit = Arc::clone(&permits).acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                }
            }
        };
        next_id += 1;
        let state = Arc::new(ConnectionState {
            activity: Activity::new(),
            id: next_id,
            authenticated: AtomicBool::new(false),
            unauthenticated: Arc::clone(&unauthenticated),
            framing: Framing::default(),
        });
        let watcher = graceful.watcher();
        let (tls, handler, builder) = (tls.clone(), Arc::clone(&handler), Arc::clone(&builder));
        unauthenticated.spawn(next_id, async move {
            let _permit = permit;
            if let Err(error) = serve_connection(stream, peer, tls, handler, &builder, limits, state, watcher).await {
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

#[allow(clippy::too_many_arguments)]
async fn serve_connection<H: Handler>(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    handler: Arc<H>,
    builder: &auto::Builder<TokioExecutor>,
    limits: ConnectionLimits,
    state: Arc<ConnectionState>,
    watcher: hyper_util::server::graceful::Watcher,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let _ = stream.set_nodelay(true);
    let deadlines = Deadlines { first_request: limits.header_read_timeout, idle: limits.idle_timeout };
    let timed = IdleTimeout::new(stream, Arc::clone(&state), deadlines);
    let body_timeout = limits.request_body_timeout;
    let scan_state = Arc::clone(&state);
    let service = |peer: SocketAddr, client_certs: Option<ClientCertChain>| {
        let connection = Arc::new(Connection { peer, client_certs, state });
        service_fn(move |request: Request<Incoming>| {
            // Counted from here (the headers are in) until the response is handed to hyper.
            let in_flight = Activity::start(Arc::clone(&connection));
            let handler = Arc::clone(&handler);
            // Boxed: a request's future holds the state of everything the handler may await, and hyper moves it
            // into the HTTP/2 stream's task; moving a pointer instead saved about 2,900 instructions per read.
            Box::pin(async move {
                if let Err(error) = framing::check(&request, &in_flight.owner().state.framing) {
                    return Ok(framing::refuse(error));
                }
                let request = request.map(|body| RequestBody::new(body, body_timeout));
                Ok::<Response<_>, Infallible>(handler.call(request, in_flight.owner()).await)
            })
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
            let http1 = tls_stream.get_ref().1.alpn_protocol() != Some(b"h2");
            let service = service(peer, client_certs);
            let scanned = HeadScan::new(tls_stream, scan_state, http1);
            let connection = builder.serve_connection(TokioIo::new(scanned), service).into_owned();
            watcher.watch(connection).await
        }
        None => {
            let service = service(peer, None);
            let scanned = HeadScan::new(timed, scan_state, true);
            let connection = builder.serve_connection(TokioIo::new(scanned), service).into_owned();
            watcher.watch(connection).await
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::response::empty_response;
    use crate::server::raw_http::{self, closes_within};

    /// Marks a connection authenticated when the request says so.
    struct MarksWhenTold;

    impl Handler for MarksWhenTold {
        async fn call(&self, request: Request<RequestBody>, connection: &Connection) -> HttpResponse {
            if request.headers().contains_key("x-authenticated") {
                connection.mark_authenticated();
            }
            empty_response()
        }
    }

    /// Whether a GET, marked authenticated or not, is answered 200.
    async fn request(stream: &mut TcpStream, authenticated: bool) -> bool {
        let header = if authenticated { "X-Authenticated: yes\r\n" } else { "" };
        raw_http::get_status(stream, "/", header).await == Some(200)
    }

    const SOON: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn only_unauthenticated_connections_make_room_oldest_first() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = ConnectionLimits {
            max_connections: 10,
            max_unauthenticated: 2,
            header_read_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            ..ConnectionLimits::default()
        };
        let (trigger, shutdown) = crate::server::shutdown::channel();
        let server =
            tokio::spawn(serve(listener, None, Arc::new(MarksWhenTold), limits, shutdown, Duration::from_secs(1)));
        let connect = || TcpStream::connect(addr);
        let mut authenticated = connect().await.unwrap();
        assert!(request(&mut authenticated, true).await);
        // Completed, but not authenticated: still counted.
        let mut anonymous = connect().await.unwrap();
        assert!(request(&mut anonymous, false).await);
        let mut silent = connect().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Two unauthenticated already: each newcomer closes the oldest of them.
        let mut newcomer = connect().await.unwrap();
        assert!(request(&mut newcomer, false).await);
        assert!(closes_within(&mut anonymous, SOON).await, "the oldest unauthenticated connection stayed open");
        assert!(!closes_within(&mut silent, Duration::from_millis(300)).await, "a newer one was closed");
        let mut another = connect().await.unwrap();
        assert!(request(&mut another, false).await);
        assert!(closes_within(&mut silent, SOON).await);
        // The authenticated connection, the oldest of all, is still served.
        assert!(request(&mut authenticated, false).await);
        trigger.trigger();
        drop((authenticated, newcomer, another));
        server.await.unwrap();
    }
}
