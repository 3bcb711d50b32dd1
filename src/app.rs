//! Wiring: builds the store, the cluster stand-ins, the API, the write API and the access checks from one
//! [`Config`], registers them in each listener's route table ([`crate::pipeline`]), binds the listeners and serves
//! until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::admin::{self, Admin, StateSource};
use crate::api::Api;
use crate::auth::{AuthConfigError, Authenticator, Authorizer};
use crate::cluster::certificates::{CertificateError, CertificateManager, CertificateOptions};
use crate::cluster::client::{self, ClientError};
use crate::cluster::discovery::DiscoveryMapper;
use crate::cluster::label_index::{LabelIndexOptions, WatchLabelIndex};
use crate::cluster::reviews::{KubeAccessReviewer, KubeTokenReviewer};
use crate::cluster::{BuiltinMapper, LabelIndex, ResourceMapper, StandaloneLabelIndex, auth_config};
use crate::config::{ClusterConfig, Config, WriteAuth};
use crate::ingest::{self, Ingest};
use crate::metrics::{self, Metrics};
use crate::pipeline::{Access, AccessControl, Delegated, Endpoint, Options, Pipeline, Route, Routes, any_path};
use crate::server::health::{Check, Health};
use crate::server::listener;
use crate::server::shutdown::{self, ShutdownTrigger};
use crate::server::tls::{self, ServingCertificate, TlsError};
use crate::store::{self, MetricStore, StoreError, StoreOptions};

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
    /// No client for the cluster.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The first discovery of the cluster's resources failed.
    #[error("reading the cluster's API discovery: {0}")]
    Discovery(#[source] kube::Error),
    /// The authentication configuration could not be read.
    #[error("authentication configuration: {0}")]
    Authentication(#[from] AuthConfigError),
    /// The metric store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The neighbours' client could not be built (docs/architecture.md §13).
    #[error(transparent)]
    Forward(#[from] crate::forward::SetupError),
    /// The managed serving certificate could not be read or created.
    #[error("managing the serving certificate (--manage-certificates): {0}")]
    Certificates(#[from] CertificateError),
}

/// What cluster mode adds: the cluster-backed mapper and label index, the access checks, and the guards that
/// keep their background tasks alive.
struct ClusterParts {
    mapper: Arc<dyn ResourceMapper>,
    labels: Arc<dyn LabelIndex>,
    access: AccessControl,
    readiness: Vec<Check>,
    /// The certificate the adapter manages, with --manage-certificates.
    managed_certificate: Option<Arc<ServingCertificate>>,
    /// What the status page shows of the label index and the cluster (docs/architecture.md §14).
    admin_state: Vec<Arc<dyn StateSource>>,
    guards: Guards,
}

/// Background tasks (discovery refresh, watches) that stop when dropped.
type Guards = Vec<Box<dyn std::any::Any + Send + Sync>>;

async fn cluster_parts(
    cluster: &ClusterConfig,
    manage_certificates: bool,
    store: &Arc<dyn MetricStore>,
    metrics: &Metrics,
) -> Result<ClusterParts, StartError> {
    let client = client::client(cluster.kubeconfig.as_deref()).await?;
    let mut guards: Guards = Vec::new();
    let managed_certificate = if manage_certificates {
        let flags = &cluster.certificates;
        let options = CertificateOptions {
            service: flags.service_name.clone(),
            namespace: flags.service_namespace.clone().unwrap_or_else(|| client.default_namespace().to_string()),
            secret: flags.certificate_secret_name.clone(),
            validity: flags.certificate_validity,
            sync_interval: flags.certificate_sync_interval,
        };
        tracing::info!(secret = %options.secret, namespace = %options.namespace, names = ?options.dns_names(), "managing the serving certificate");
        let (manager, guard) =
            CertificateManager::start(client.clone(), options, Arc::new(crate::clock::SystemClock)).await?;
        guards.push(Box::new(guard));
        Some(manager.serving())
    } else {
        None
    };
    let client_for = |path: &Option<PathBuf>| {
        let (path, client) = (path.clone(), client.clone());
        async move {
            match path {
                Some(path) => client::client(Some(&path)).await,
                None => Ok(client),
            }
        }
    };
    let authn_client = client_for(&cluster.authenticator.authentication_kubeconfig).await?;
    let authz_client = client_for(&cluster.authorization.authorization_kubeconfig).await?;

    let (mapper, refresh) =
        DiscoveryMapper::start(client.clone(), cluster.discovery_refresh_interval, cluster.discovery_miss_interval)
            .await
            .map_err(StartError::Discovery)?;
    let discovery_check = mapper.readiness_check();
    let mapper: Arc<dyn ResourceMapper> = mapper;
    let options = LabelIndexOptions {
        deleted_object_grace: cluster.deleted_object_grace_period,
        sweep_interval: sweep_interval(cluster.deleted_object_grace_period),
        sync_timeout: cluster.label_index_sync_timeout,
    };
    let apiservices = admin::state::ApiServiceState { client: client.clone() };
    let (index, index_guard) = WatchLabelIndex::start(client, Arc::clone(store), Arc::clone(&mapper), options);
    let admin_state: Vec<Arc<dyn StateSource>> =
        vec![Arc::new(admin::state::LabelIndexState::Watches(Arc::clone(&index))), Arc::new(apiservices)];
    metrics.watch_label_index(Arc::clone(&index));
    let synced = Arc::clone(&index);
    let readiness = Check::readiness("informer-sync", move || {
        if synced.is_initially_synced() { Ok(()) } else { Err("the pods watch has not listed yet".to_string()) }
    });

    let (auth_config, auth_watch) =
        auth_config::load_and_watch(authn_client.clone(), cluster.authentication.clone()).await?;
    let (authn, authz) = (&cluster.authenticator, &cluster.authorization);
    let authenticator = Authenticator::new(
        auth_config,
        Some(metrics.instrument_token_reviewer(Arc::new(KubeTokenReviewer::new(authn_client)))),
        authn.authentication_token_webhook_cache_ttl,
    )
    .with_unauthorized_log_rate(authn.unauthorized_log_rate)
    .with_token_review_limits(authn.authentication_token_webhook_cache_max_bytes, authn.token_review_rate);
    let authorizer = Authorizer::new(
        metrics.instrument_access_reviewer(Arc::new(KubeAccessReviewer::new(authz_client))),
        authz.authorization_always_allow_paths.clone(),
        authz.authorization_webhook_cache_authorized_ttl,
        authz.authorization_webhook_cache_unauthorized_ttl,
    )
    .with_limits(authz.authorization_webhook_cache_max_bytes, authz.anonymous_authorization_rate);
    metrics.watch_review_caches(authenticator.cache_counters(), authorizer.cache_counters());
    tracing::info!(
        "running against the cluster: delegated authentication and authorization, resources from discovery, label index"
    );
    Ok(ClusterParts {
        mapper,
        labels: index,
        access: AccessControl::Delegated(Box::new(Delegated { authenticator, authorizer })),
        readiness: vec![readiness, discovery_check],
        managed_certificate,
        admin_state,
        guards: guards
            .into_iter()
            .chain([Box::new(refresh) as _, Box::new(index_guard) as _, Box::new(auth_watch) as _])
            .collect(),
    })
}

/// The deleted-object sweep runs often enough that values go within about 1.5 grace periods, but at most every
/// 30 s and at least every second.
fn sweep_interval(grace: Duration) -> Duration {
    (grace / 2).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

/// A started server: its bound addresses and the handle that stops it.
pub struct Running {
    /// Address of the HTTPS listener.
    pub secure_addr: SocketAddr,
    /// Address of the write listener, if enabled.
    pub write_addr: Option<SocketAddr>,
    /// Address of the admin listener (status page), if enabled and bound.
    pub admin_addr: Option<SocketAddr>,
    trigger: ShutdownTrigger,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Cluster-mode background tasks, stopped with the server.
    _guards: Guards,
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

/// The store's health check: the in-memory store cannot fail but by a broken process (liveness); a replica that cannot
/// follow Redis must stop getting requests, never be restarted for it (readiness, docs/architecture.md §10).
fn store_check(backend: &store::Backend, probe: impl Fn() -> Result<(), String> + Send + Sync + 'static) -> Check {
    match backend {
        store::Backend::Memory => Check::liveness("store", probe),
        store::Backend::Redis(_) => Check::readiness("store", probe),
    }
}

/// Builds everything from `config`, binds the listeners and starts serving in the background.
pub async fn start(config: &Config) -> Result<Running, StartError> {
    let store = store::open(&StoreOptions { limits: config.limits, backend: config.store.clone() }).await?;
    tracing::info!(
        max_store_bytes = config.limits.max_store_bytes,
        max_series = config.limits.max_series,
        "store limits"
    );
    let metrics = Arc::new(Metrics::new(Arc::clone(&store)));
    let parts = match config.cluster() {
        Some(cluster) => cluster_parts(cluster, config.manage_certificates, &store, &metrics).await?,
        None => {
            tracing::info!("running standalone: no authentication or authorization, built-in resource table");
            ClusterParts {
                mapper: Arc::new(BuiltinMapper::default()),
                labels: Arc::new(StandaloneLabelIndex),
                access: AccessControl::Open,
                // Nothing to wait for.
                readiness: vec![Check::readiness("informer-sync", || Ok(()))],
                managed_certificate: None,
                admin_state: vec![Arc::new(admin::state::LabelIndexState::Standalone)],
                guards: Vec::new(),
            }
        }
    };
    let ClusterParts { mapper, labels, access, readiness, managed_certificate, mut admin_state, guards } = parts;

    let serving = match managed_certificate {
        Some(managed) => managed,
        None => Arc::new(ServingCertificate::new(&tls::load_or_generate(&config.cert)?)?),
    };
    let served_certificate = Arc::clone(&serving);
    let request_client_certs = !access.is_open();
    let acceptor = TlsAcceptor::from(tls::server_config_with(serving, request_client_certs)?);

    let (trigger, shutdown) = shutdown::channel();
    let health = Health::new(
        shutdown.clone(),
        [store_check(&config.store, store::health_probe(Arc::clone(&store), store::HEALTH_INTERVAL).await)]
            .into_iter()
            .chain(readiness)
            .collect(),
    );

    let secure = bind(config.secure_addr).await?;
    let secure_addr = local_addr(&secure, config.secure_addr);
    let write = match config.write_addr {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let write_addr = write.as_ref().map(|l| local_addr(l, config.secure_addr));

    // One set of push groups for both listeners: a group is the same group on either port.
    let push = Arc::new(ingest::PushOptions {
        object_labels: config.object_labels.clone(),
        groups: ingest::PushGroups::new(config.max_push_series),
    });
    let ingest = || {
        Ingest::new(Arc::clone(&store), Arc::clone(&mapper), config.metric_ttl, config.max_request_body_bytes)
            .with_batch_limits(config.batch)
            .with_push(Arc::clone(&push))
    };
    let mut api = Api::new(Arc::clone(&store), Arc::clone(&mapper), labels, config.discovery_max_metrics, config.reads)
        .with_freshness(metrics.freshness());
    if let Some(forward) = &config.forward {
        let forwarder = Arc::new(crate::forward::Forwarder::new(forward, config.reads.max_response_bytes)?);
        tracing::info!(custom = ?forward.custom, external = ?forward.external, "forwarding reads of metrics not held here");
        metrics.watch_forwarder(Arc::clone(&forwarder));
        forwarder.prefetch();
        admin_state.push(Arc::new(admin::state::NeighbourState { forwarder: Arc::clone(&forwarder) }));
        api = api.with_forwarder(forwarder);
    }
    // The secure port: the write API with --write-auth=token, health, and the Kubernetes APIs, which answer every
    // other path (their 404s included), and /metrics (docs/wire-contract.md §11); in cluster mode every route is
    // authenticated and authorized.
    let mut secure_routes = Routes::new();
    if config.write_auth == WriteAuth::Token {
        secure_routes = secure_routes.with(write_route(ingest())).with(push_route(ingest())).with(otlp_route(ingest()));
    }
    let secure_routes = secure_routes.with(health_route(&health)).with(metrics_route(&metrics)).with(Route::new(
        &["/"],
        any_path,
        Access::Read,
        Endpoint::Api(Box::new(api)),
    ));
    let secure_options = Options { echo_audit_id: true, drain_unread_bytes: Some(config.max_request_body_bytes) };
    let secure_handler =
        Arc::new(Pipeline::new(secure_routes, access, secure_options).with_metrics(Arc::clone(&metrics)));
    let mut tasks = Vec::new();
    tracing::info!(listener = "secure", address = %secure_addr, writes = config.write_auth == WriteAuth::Token, "listening");
    tasks.push(tokio::spawn(listener::serve(
        secure,
        Some(acceptor),
        secure_handler,
        config.connections,
        shutdown.clone(),
        config.shutdown_grace_period,
    )));
    if let (Some(write), Some(write_addr)) = (write, write_addr) {
        // The plain write port: the write API and health, nothing else (docs/wire-contract.md §10 item 14). Only
        // with --write-auth=none: plain HTTP never carries tokens. Writes first: they are nearly all its traffic.
        let write_routes = Routes::new()
            .with(write_route(ingest()))
            .with(push_route(ingest()))
            .with(otlp_route(ingest()))
            .with(health_route(&health));
        let write_options = Options { echo_audit_id: false, drain_unread_bytes: None };
        let write_handler = Arc::new(
            Pipeline::new(write_routes, AccessControl::Open, write_options).with_metrics(Arc::clone(&metrics)),
        );
        tracing::info!(listener = "write", address = %write_addr, "listening");
        tasks.push(tokio::spawn(listener::serve(
            write,
            None,
            write_handler,
            config.connections,
            shutdown.clone(),
            config.shutdown_grace_period,
        )));
    }
    let mut admin_addr = None;
    if let Some(options) = config.admin {
        let kind = match &config.store {
            store::Backend::Memory => "memory".to_string(),
            store::Backend::Redis(redis) => format!("Redis {}", redis.address),
        };
        let clock: Arc<dyn crate::clock::Clock> = Arc::new(crate::clock::SystemClock);
        let sources = [Arc::new(admin::state::StoreState { store: Arc::clone(&store), kind }) as Arc<dyn StateSource>]
            .into_iter()
            .chain(admin_state)
            .chain([
                Arc::new(admin::state::CertificateState { serving: served_certificate, clock: Arc::clone(&clock) })
                    as Arc<dyn StateSource>,
            ]);
        let page = sources.fold(
            Admin::new(Arc::clone(&store), Arc::clone(&metrics), clock, options.max_page_size),
            Admin::with_state,
        );
        if let Some((task, addr)) = serve_admin(options, page, config, shutdown).await {
            tasks.push(task);
            admin_addr = Some(addr);
        }
    }
    Ok(Running { secure_addr, write_addr, admin_addr, trigger, tasks, _guards: guards })
}

/// The admin listener (docs/architecture.md §14): plain HTTP, the status page alone, nobody checked (it is on
/// loopback unless --admin-allow-non-loopback), the same connection limits as the other listeners. A port that
/// cannot be bound is logged and the adapter serves without the page: it is a convenience, never a reason not to
/// serve the metrics APIs.
async fn serve_admin(
    options: admin::AdminOptions,
    page: Admin,
    config: &Config,
    shutdown: shutdown::Shutdown,
) -> Option<(tokio::task::JoinHandle<()>, SocketAddr)> {
    let listener = match bind(options.address).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, "admin listener not started: the status page is not served");
            return None;
        }
    };
    let addr = local_addr(&listener, options.address);
    let routes = Routes::new().with(Route::new(
        &[admin::PATH],
        admin::is_admin_path,
        Access::Always,
        Endpoint::Admin(Box::new(page)),
    ));
    let options = Options { echo_audit_id: false, drain_unread_bytes: Some(config.max_request_body_bytes) };
    let handler = Arc::new(Pipeline::new(routes, AccessControl::Open, options));
    tracing::info!(listener = "admin", address = %addr, "listening");
    let task = tokio::spawn(listener::serve(
        listener,
        None,
        handler,
        config.connections,
        shutdown,
        config.shutdown_grace_period,
    ));
    Some((task, addr))
}

/// The write API's route: authorized as writes on what they resolve to.
fn write_route(ingest: Ingest) -> Route {
    Route::new(&[ingest::WRITE_PATHS_PREFIX], ingest::is_write_path, Access::Write, Endpoint::Write(ingest))
}

/// Pushgateway-compatible pushes (`/metrics/job/...`), served by the write API wherever it is served and authorized
/// as its writes. Registered before `/metrics`, whose predicate takes `/metrics` alone (docs/wire-contract.md §4.5).
fn push_route(ingest: Ingest) -> Route {
    Route::new(&[ingest::PUSH_PREFIX], ingest::is_push_path, Access::Write, Endpoint::Write(ingest))
}

/// The OTLP/HTTP metrics receiver (`POST /v1/metrics`), served by the write API wherever it is served and authorized
/// as its writes (docs/wire-contract.md §4.7).
fn otlp_route(ingest: Ingest) -> Route {
    Route::new(&[ingest::OTLP_METRICS_PATH], ingest::is_otlp_path, Access::Write, Endpoint::Write(ingest))
}

/// The health endpoints' route: authorized as reads, which `--authorization-always-allow-paths` allows by default.
fn health_route(health: &Health) -> Route {
    Route::new(
        &["/healthz", "/livez", "/readyz"],
        Health::is_health_path,
        Access::Read,
        Endpoint::Health(health.clone()),
    )
}

/// `/metrics`: authorized as a read, which in cluster mode is verb `get` on the non-resource URL `/metrics`, as
/// Kubernetes' own servers do.
fn metrics_route(metrics: &Arc<Metrics>) -> Route {
    Route::new(&[metrics::METRICS_PATH], metrics::is_metrics_path, Access::Read, Endpoint::Metrics(Arc::clone(metrics)))
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
