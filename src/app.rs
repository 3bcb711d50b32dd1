//! Wiring: builds the store, the cluster stand-ins, the API and the write handler from one [`Config`], binds the
//! listeners and serves until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::Request;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::api::Api;
use crate::cluster::{BuiltinMapper, LabelIndex, ResourceMapper, StandaloneLabelIndex};
use crate::config::Config;
use crate::ingest::{self, Ingest, OpenGate};
use crate::response::{HttpResponse, RequestError};
use crate::server::health::{Check, Health};
use crate::server::listener::{self, Connection, Handler};
use crate::server::shutdown::{self, ShutdownTrigger};
use crate::server::tls::{self, TlsError};
use crate::store::memory::PurgerGuard;
use crate::store::{MemoryStore, MetricStore};

/// How often expired values are purged from memory (they are invisible from the moment they expire).
const PURGE_INTERVAL: Duration = Duration::from_secs(5);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The serving certificate.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A listener could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The secure port: health, then the Kubernetes APIs. The write API joins it with cluster-mode authentication.
struct SecureHandler {
    health: Health,
    api: Api,
}

impl Handler for SecureHandler {
    async fn call(&self, request: Request<Incoming>, _connection: &Connection) -> HttpResponse {
        let path = request.uri().path();
        let mut response = if Health::is_health_path(path) {
            self.health.handle(path, request.uri().query())
        } else {
            self.api.handle(&request).await
        };
        set_audit_id(&request, &mut response);
        response
    }
}

/// The write port: the write API and health endpoints, nothing else (§10 item 14).
struct WriteHandler {
    health: Health,
    ingest: Ingest,
}

impl Handler for WriteHandler {
    async fn call(&self, request: Request<Incoming>, _connection: &Connection) -> HttpResponse {
        let path = request.uri().path();
        if Health::is_health_path(path) {
            return self.health.handle(path, request.uri().query());
        }
        if ingest::is_write_path(path) {
            return self.ingest.handle(request, &OpenGate).await;
        }
        RequestError::RouteNotFound.into_response(false)
    }
}

/// Echoes the `Audit-ID` that kube-apiserver's aggregator sends, so that a proxied request can be found in both
/// servers' logs. Requests without one get none: a generated ID would cost a random number per request and serve
/// nobody.
fn set_audit_id<B>(request: &Request<B>, response: &mut HttpResponse) {
    if let Some(id) = request.headers().get(AUDIT_ID) {
        response.headers_mut().insert(AUDIT_ID, id.clone());
    }
}

const AUDIT_ID: http::header::HeaderName = http::header::HeaderName::from_static("audit-id");

/// A started server: its bound addresses and the handle that stops it.
pub struct Running {
    /// Address of the HTTPS listener.
    pub secure_addr: SocketAddr,
    /// Address of the write listener, if enabled.
    pub write_addr: Option<SocketAddr>,
    trigger: ShutdownTrigger,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Purges expired values for as long as the server runs.
    _purger: PurgerGuard,
}

impl Running {
    /// Starts the graceful shutdown and waits until every listener has drained.
    pub async fn shutdown(self) {
        self.trigger.trigger();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Builds everything from `config`, binds both listeners and starts serving in the background.
pub async fn start(config: &Config) -> Result<Running, StartError> {
    let store = MemoryStore::new(config.limits);
    let purger = store.spawn_purger(PURGE_INTERVAL);
    let store: Arc<dyn MetricStore> = Arc::new(store);
    let mapper: Arc<dyn ResourceMapper> = Arc::new(BuiltinMapper::default());
    let labels: Arc<dyn LabelIndex> = Arc::new(StandaloneLabelIndex);
    tracing::info!("running standalone: no authentication or authorization, built-in resource table, in-memory store");

    let pem = tls::load_or_generate(&config.cert)?;
    let acceptor = TlsAcceptor::from(tls::server_config(&pem, false)?);

    let (trigger, shutdown) = shutdown::channel();
    let health = Health::new(
        shutdown.clone(),
        // The in-memory store is always reachable; a networked backend will report its connection here.
        vec![Check::liveness("store", || Ok(()))],
    );

    let secure = bind(config.secure_addr).await?;
    let secure_addr = local_addr(&secure, config.secure_addr);
    let write = match config.write_addr {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let write_addr = write.as_ref().map(|l| local_addr(l, config.secure_addr));

    let api = Api::new(Arc::clone(&store), Arc::clone(&mapper), labels, config.discovery_max_metrics);
    let secure_handler = Arc::new(SecureHandler { health: health.clone(), api });
    let mut tasks = Vec::new();
    tracing::info!(listener = "secure", address = %secure_addr, "listening");
    tasks.push(tokio::spawn(listener::serve(
        secure,
        Some(acceptor),
        secure_handler,
        config.connections,
        shutdown.clone(),
        config.shutdown_grace_period,
    )));
    if let (Some(write), Some(write_addr)) = (write, write_addr) {
        let ingest = Ingest::new(store, mapper, config.metric_ttl, config.max_request_body_bytes);
        let write_handler = Arc::new(WriteHandler { health, ingest });
        tracing::info!(listener = "write", address = %write_addr, "listening");
        tasks.push(tokio::spawn(listener::serve(
            write,
            None,
            write_handler,
            config.connections,
            shutdown,
            config.shutdown_grace_period,
        )));
    }
    Ok(Running { secure_addr, write_addr, trigger, tasks, _purger: purger })
}

/// Runs until `stop` resolves (normally SIGTERM or SIGINT), then drains.
pub async fn run(config: &Config, stop: impl Future<Output = ()>) -> Result<(), StartError> {
    let running = start(config).await?;
    stop.await;
    tracing::info!(grace = ?config.shutdown_grace_period, "shutting down: draining connections");
    running.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })
}

fn local_addr(listener: &TcpListener, fallback: SocketAddr) -> SocketAddr {
    listener.local_addr().unwrap_or(fallback)
}
