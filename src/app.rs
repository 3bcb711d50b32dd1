//! Wiring: builds the store, the cluster stand-ins, the API and the write handler from one [`Config`], binds the
//! listeners and serves until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::Request;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::api::Api;
use crate::auth::{self, AuthConfigError, Authenticator, Authorizer, UserInfo};
use crate::cluster::client::{self, ClientError};
use crate::cluster::discovery::DiscoveryMapper;
use crate::cluster::label_index::{LabelIndexOptions, WatchLabelIndex};
use crate::cluster::reviews::{KubeAccessReviewer, KubeTokenReviewer};
use crate::cluster::{BuiltinMapper, LabelIndex, ResourceMapper, StandaloneLabelIndex, auth_config};
use crate::config::{ClusterConfig, Config, WriteAuth};
use crate::ingest::{self, Ingest, OpenGate, Series, WriteGate};
use crate::response::{self, HttpResponse, RequestError};
use crate::server::body::{self, RequestBody};
use crate::server::health::{Check, Health};
use crate::server::listener::{self, Connection, Handler};
use crate::server::shutdown::{self, ShutdownTrigger};
use crate::server::tls::{self, TlsError};
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
}

/// Who may do what on the secure port.
enum Access {
    /// Standalone: nobody is checked.
    Open,
    /// Cluster mode: delegated authentication and authorization (docs/wire-contract.md §6.2, §6.3).
    Delegated(Box<Delegated>),
}

/// The checks of cluster mode.
struct Delegated {
    /// Front proxy, client certificates, bearer tokens, anonymous.
    authenticator: Authenticator,
    /// Always-allowed paths, `system:masters`, SubjectAccessReview.
    authorizer: Authorizer,
}

/// The secure port: health and the Kubernetes APIs, and in cluster mode with `--write-auth=token` the write API;
/// in cluster mode every request is authenticated and authorized first.
struct SecureHandler {
    health: Health,
    api: Api,
    access: Access,
    /// The write API, when served on this port.
    ingest: Option<Ingest>,
    /// How much of an unread request body is drained before answering.
    max_body_bytes: usize,
}

impl Handler for SecureHandler {
    async fn call(&self, request: Request<RequestBody>, connection: &Connection) -> HttpResponse {
        let audit_id = request.headers().get(AUDIT_ID).cloned();
        let mut response = self.respond(request, connection).await;
        // Echoes the Audit-ID that kube-apiserver's aggregator sends, so that a proxied request can be found in
        // both servers' logs. Requests without one get none: a generated ID would cost a random number per
        // request and serve nobody.
        if let Some(id) = audit_id {
            response.headers_mut().insert(AUDIT_ID, id);
        }
        response
    }
}

impl SecureHandler {
    async fn respond(&self, mut request: Request<RequestBody>, connection: &Connection) -> HttpResponse {
        if let Access::Delegated(delegated) = &self.access {
            let Delegated { authenticator, authorizer } = delegated.as_ref();
            let pretty = response::wants_pretty(None, request.headers());
            let user = match authenticator.authenticate(request.headers_mut(), connection.client_certs.as_ref()).await {
                Ok(user) => user,
                Err(error) => return self.refuse(request, error, pretty).await,
            };
            // Only connections that carry credentials are spared when unauthenticated ones are closed.
            if !user.is_anonymous() {
                connection.mark_authenticated();
            }
            if let Some(ingest) = &self.ingest
                && ingest::is_write_path(request.uri().path())
            {
                // A write is authorized on what it resolves to, so the gate runs inside ingest.
                if user.is_anonymous() {
                    return self.refuse(request, RequestError::Unauthorized(Vec::new()), pretty).await;
                }
                return ingest.handle(request, &AuthorizedWrite { user, authorizer }).await;
            }
            let attributes =
                auth::request_attributes(request.method(), request.uri().path(), request.uri().query(), user);
            if let Err(error) = authorizer.authorize(&attributes).await {
                return self.refuse(request, error, pretty).await;
            }
        }
        // Reads have no body; anything sent along is drained after answering.
        let (parts, body) = request.into_parts();
        let request = Request::from_parts(parts, ());
        let path = request.uri().path();
        let response = if Health::is_health_path(path) {
            self.health.handle(path, request.uri().query())
        } else {
            self.api.handle(&request).await
        };
        body::drain(body, self.max_body_bytes).await;
        if matches!(self.access, Access::Open) {
            // Standalone, nobody is authenticated: a connection that completed a request counts as if it were.
            connection.mark_authenticated();
        }
        response
    }

    /// Answers with `error` after draining the request body.
    async fn refuse(&self, request: Request<RequestBody>, error: RequestError, pretty: bool) -> HttpResponse {
        body::drain(request.into_body(), self.max_body_bytes).await;
        error.into_response(pretty)
    }
}

/// Admits a write when the user may `create` (or `delete`) the metric it resolves to
/// (docs/wire-contract.md §10 item 12).
struct AuthorizedWrite<'a> {
    user: UserInfo,
    authorizer: &'a Authorizer,
}

#[async_trait::async_trait]
impl WriteGate for AuthorizedWrite<'_> {
    async fn admit(&self, series: &Series<'_>, delete: bool) -> Result<(), RequestError> {
        let user = self.user.clone();
        let mut attributes = match series {
            Series::Custom(custom) => {
                auth::custom_write_attributes(user, &custom.resource, custom.namespace, custom.name, custom.metric)
            }
            Series::External { namespace, metric } => auth::external_write_attributes(user, namespace, metric),
        };
        if delete {
            attributes.verb = "delete".to_string();
        }
        self.authorizer.authorize(&attributes).await
    }
}

/// The plain write port: the write API and health endpoints, nothing else (docs/wire-contract.md §10 item 14).
/// Only with `--write-auth=none`: plain HTTP never carries tokens.
struct WriteHandler {
    health: Health,
    ingest: Ingest,
}

impl Handler for WriteHandler {
    async fn call(&self, request: Request<RequestBody>, connection: &Connection) -> HttpResponse {
        let path = request.uri().path();
        // Writes first: they are nearly all of this port's traffic.
        let response = if ingest::is_write_path(path) {
            self.ingest.handle(request, &OpenGate).await
        } else if Health::is_health_path(path) {
            self.health.handle(path, request.uri().query())
        } else {
            RequestError::RouteNotFound.into_response(false)
        };
        // Nobody is authenticated on this port: a connection that completed a request counts as if it were.
        connection.mark_authenticated();
        response
    }
}

const AUDIT_ID: http::header::HeaderName = http::header::HeaderName::from_static("audit-id");

/// What cluster mode adds: the cluster-backed mapper and label index, the access checks, and the guards that
/// keep their background tasks alive.
struct ClusterParts {
    mapper: Arc<dyn ResourceMapper>,
    labels: Arc<dyn LabelIndex>,
    access: Access,
    readiness: Vec<Check>,
    guards: Guards,
}

/// Background tasks (discovery refresh, watches) that stop when dropped.
type Guards = Vec<Box<dyn std::any::Any + Send + Sync>>;

async fn cluster_parts(cluster: &ClusterConfig, store: &Arc<dyn MetricStore>) -> Result<ClusterParts, StartError> {
    let client = client::client(cluster.kubeconfig.as_deref()).await?;
    let client_for = |path: &Option<PathBuf>| {
        let (path, client) = (path.clone(), client.clone());
        async move {
            match path {
                Some(path) => client::client(Some(&path)).await,
                None => Ok(client),
            }
        }
    };
    let authn_client = client_for(&cluster.authentication_kubeconfig).await?;
    let authz_client = client_for(&cluster.authorization_kubeconfig).await?;

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
    let (index, index_guard) = WatchLabelIndex::start(client, Arc::clone(store), Arc::clone(&mapper), options);
    let synced = Arc::clone(&index);
    let readiness = Check::readiness("informer-sync", move || {
        if synced.is_initially_synced() { Ok(()) } else { Err("the pods watch has not listed yet".to_string()) }
    });

    let (auth_config, auth_watch) =
        auth_config::load_and_watch(authn_client.clone(), cluster.authentication.clone()).await?;
    let authenticator =
        Authenticator::new(auth_config, Some(Arc::new(KubeTokenReviewer::new(authn_client))), cluster.token_cache_ttl)
            .with_unauthorized_log_rate(cluster.unauthorized_log_rate)
            .with_token_review_limits(cluster.token_cache_max_bytes, cluster.token_review_rate);
    let (allowed_ttl, denied_ttl) = cluster.authorization_cache_ttl;
    let authorizer = Authorizer::new(
        Arc::new(KubeAccessReviewer::new(authz_client)),
        cluster.always_allow_paths.clone(),
        allowed_ttl,
        denied_ttl,
    )
    .with_limits(cluster.authorization_cache_max_bytes, cluster.anonymous_authorization_rate);
    tracing::info!(
        "running against the cluster: delegated authentication and authorization, resources from discovery, label index"
    );
    Ok(ClusterParts {
        mapper,
        labels: index,
        access: Access::Delegated(Box::new(Delegated { authenticator, authorizer })),
        readiness: vec![readiness, discovery_check],
        guards: vec![Box::new(refresh), Box::new(index_guard), Box::new(auth_watch)],
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

/// Builds everything from `config`, binds the listeners and starts serving in the background.
pub async fn start(config: &Config) -> Result<Running, StartError> {
    let store = store::open(&StoreOptions { limits: config.limits }).await?;
    tracing::info!(
        max_store_bytes = config.limits.max_store_bytes,
        max_series = config.limits.max_series,
        "store limits"
    );
    let parts = match config.cluster() {
        Some(cluster) => cluster_parts(cluster, &store).await?,
        None => {
            tracing::info!(
                "running standalone: no authentication or authorization, built-in resource table, in-memory store"
            );
            ClusterParts {
                mapper: Arc::new(BuiltinMapper::default()),
                labels: Arc::new(StandaloneLabelIndex),
                access: Access::Open,
                // Nothing to wait for.
                readiness: vec![Check::readiness("informer-sync", || Ok(()))],
                guards: Vec::new(),
            }
        }
    };
    let ClusterParts { mapper, labels, access, readiness, guards } = parts;

    let pem = tls::load_or_generate(&config.cert)?;
    let request_client_certs = matches!(access, Access::Delegated(_));
    let acceptor = TlsAcceptor::from(tls::server_config(&pem, request_client_certs)?);

    let (trigger, shutdown) = shutdown::channel();
    let health = Health::new(
        shutdown.clone(),
        [Check::liveness("store", store::health_probe(Arc::clone(&store), store::HEALTH_INTERVAL).await)]
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

    let ingest =
        || Ingest::new(Arc::clone(&store), Arc::clone(&mapper), config.metric_ttl, config.max_request_body_bytes);
    let secure_ingest = (config.write_auth == WriteAuth::Token).then(ingest);
    let api = Api::new(Arc::clone(&store), Arc::clone(&mapper), labels, config.discovery_max_metrics, config.reads);
    let secure_handler = Arc::new(SecureHandler {
        health: health.clone(),
        api,
        access,
        ingest: secure_ingest,
        max_body_bytes: config.max_request_body_bytes,
    });
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
        let write_handler = Arc::new(WriteHandler { health, ingest: ingest() });
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
    Ok(Running { secure_addr, write_addr, trigger, tasks, _guards: guards })
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

#[cfg(test)]
mod tests {
    use arc_swap::ArcSwap;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;
    use crate::auth::{AccessReviewer, Attributes, AuthenticationConfig, Decision, ReviewError, TokenReviewer};
    use crate::server::listener::ConnectionLimits;
    use crate::store::{Limits, MemoryStore};

    /// The token `good` is alice's; any other token authenticates nobody.
    struct OneToken;

    #[async_trait::async_trait]
    impl TokenReviewer for OneToken {
        async fn review(&self, token: &str) -> Result<Option<UserInfo>, ReviewError> {
            Ok((token == "good").then(|| UserInfo { name: "alice".into(), ..UserInfo::default() }))
        }
    }

    struct AllowAll;

    #[async_trait::async_trait]
    impl AccessReviewer for AllowAll {
        async fn review(&self, _attributes: &Attributes) -> Result<Decision, ReviewError> {
            Ok(Decision { allowed: true, reason: String::new() })
        }
    }

    async fn get(stream: &mut TcpStream, token: Option<&str>) -> bool {
        let authorization = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        let request = format!("GET /readyz HTTP/1.1\r\nHost: x\r\n{authorization}\r\n");
        if stream.write_all(request.as_bytes()).await.is_err() {
            return false;
        }
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(n)) => buf[..n].starts_with(b"HTTP/1.1 200"),
            _ => false,
        }
    }

    async fn closes_within(stream: &mut TcpStream, within: Duration) -> bool {
        let mut buf = [0u8; 16];
        matches!(tokio::time::timeout(within, stream.read(&mut buf)).await, Ok(Ok(0) | Err(_)))
    }

    #[tokio::test]
    async fn in_cluster_mode_only_a_request_of_an_authenticated_user_spares_a_connection() {
        let (trigger, shutdown) = shutdown::channel();
        let store: Arc<dyn MetricStore> = Arc::new(MemoryStore::new(Limits::default()));
        let authenticator = Authenticator::new(
            Arc::new(ArcSwap::from_pointee(AuthenticationConfig::default())),
            Some(Arc::new(OneToken)),
            Duration::ZERO,
        );
        let authorizer = Authorizer::new(Arc::new(AllowAll), vec!["/readyz".into()], Duration::ZERO, Duration::ZERO);
        let handler = SecureHandler {
            health: Health::new(shutdown.clone(), Vec::new()),
            api: Api::new(
                store,
                Arc::new(BuiltinMapper::default()),
                Arc::new(StandaloneLabelIndex),
                1000,
                crate::api::ReadLimits::default(),
            ),
            access: Access::Delegated(Box::new(Delegated { authenticator, authorizer })),
            ingest: None,
            max_body_bytes: 4096,
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = ConnectionLimits { max_unauthenticated: 1, ..ConnectionLimits::default() };
        let server =
            tokio::spawn(listener::serve(listener, None, Arc::new(handler), limits, shutdown, Duration::from_secs(1)));
        let mut alice = TcpStream::connect(addr).await.unwrap();
        assert!(get(&mut alice, Some("good")).await);
        // Anonymous: served (an always-allowed path), but still unauthenticated.
        let mut anonymous = TcpStream::connect(addr).await.unwrap();
        assert!(get(&mut anonymous, None).await);
        let mut newcomer = TcpStream::connect(addr).await.unwrap();
        assert!(get(&mut newcomer, None).await);
        assert!(closes_within(&mut anonymous, Duration::from_secs(5)).await, "the anonymous connection stayed");
        // alice's connection, older than both, is never the one closed.
        let mut another = TcpStream::connect(addr).await.unwrap();
        assert!(get(&mut another, None).await);
        assert!(closes_within(&mut newcomer, Duration::from_secs(5)).await);
        assert!(get(&mut alice, Some("good")).await);
        trigger.trigger();
        drop((alice, another));
        server.await.unwrap();
    }
}
