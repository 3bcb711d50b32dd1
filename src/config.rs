//! Flags and environment variables into one validated [`Config`]. Reads no cluster and binds no port.
//!
//! Every flag can also be set through the environment variable named in `--help` (`CUSTOM_METRICS_<FLAG>`).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::api::ReadLimits;
use crate::server::listener::ConnectionLimits;
use crate::server::tls::CertSource;
use crate::store::Limits;

/// How writes are authenticated and authorized (docs/wire-contract.md §10 item 12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WriteAuth {
    /// Bearer token checked by TokenReview, then a SubjectAccessReview with verb `create`.
    Token,
    /// No checks: whoever reaches a write listener may write.
    None,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Command-line flags, as Kubernetes' generic API servers name them where they have one.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "custom-metrics-apiserver",
    version,
    about = "Kubernetes custom and external metrics adapter: write any value over HTTP, read it through custom.metrics.k8s.io and external.metrics.k8s.io (for the HorizontalPodAutoscaler)."
)]
pub struct Flags {
    /// Run without a cluster: no authentication or authorization, built-in resource table, listening on
    /// 127.0.0.1 unless --bind-address says otherwise.
    #[arg(long, env = "CUSTOM_METRICS_STANDALONE")]
    pub standalone: bool,

    /// Port of the HTTPS listener serving the Kubernetes APIs (0 picks a free port).
    #[arg(long, env = "CUSTOM_METRICS_SECURE_PORT", default_value_t = 6443)]
    pub secure_port: u16,

    /// Address both listeners bind to [default: 0.0.0.0, or 127.0.0.1 with --standalone].
    #[arg(long, env = "CUSTOM_METRICS_BIND_ADDRESS")]
    pub bind_address: Option<IpAddr>,

    /// Port of the plain-HTTP write API (0 disables it) [default: 8080 with --write-auth=none, else 0]. Plain
    /// HTTP carries no tokens: with --write-auth=token the writes are served on the secure port only.
    #[arg(long, env = "CUSTOM_METRICS_WRITE_PORT")]
    pub write_port: Option<u16>,

    /// How writes are checked: `token` (bearer token, TokenReview, then a SubjectAccessReview with verb create;
    /// the default against a cluster) or `none` (anyone who reaches a write listener may write; the only choice
    /// with --standalone).
    #[arg(long, env = "CUSTOM_METRICS_WRITE_AUTH", value_enum)]
    pub write_auth: Option<WriteAuth>,

    /// Directory of the serving certificate (apiserver.crt, apiserver.key); a self-signed one is generated and
    /// written there when absent. Ignored when --tls-cert-file is given.
    #[arg(long, env = "CUSTOM_METRICS_CERT_DIR", default_value = "apiserver.local.config/certificates")]
    pub cert_dir: PathBuf,

    /// PEM file of the serving certificate chain (with --tls-private-key-file).
    #[arg(long, env = "CUSTOM_METRICS_TLS_CERT_FILE", requires = "tls_private_key_file")]
    pub tls_cert_file: Option<PathBuf>,

    /// PEM file of the serving certificate's private key (with --tls-cert-file).
    #[arg(long, env = "CUSTOM_METRICS_TLS_PRIVATE_KEY_FILE", requires = "tls_cert_file")]
    pub tls_private_key_file: Option<PathBuf>,

    /// Lifetime of every written value unless the write gives `ttl`; 0 keeps values until overwritten.
    #[arg(long, env = "CUSTOM_METRICS_METRIC_TTL", default_value = "0", value_parser = parse_duration)]
    pub metric_ttl: Duration,

    /// Log format.
    #[arg(long, env = "CUSTOM_METRICS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log verbosity, as klog's -v: 0 logs start-up and warnings, 4 adds debug detail, 6 and more trace.
    #[arg(short = 'v', long = "v", env = "CUSTOM_METRICS_V", default_value_t = 0)]
    pub verbosity: u8,

    /// Series the store holds at most (custom and external together); writes beyond are refused with 403.
    #[arg(long, env = "CUSTOM_METRICS_MAX_SERIES", default_value_t = Limits::default().max_series)]
    pub max_series: usize,

    /// Labels one series may carry; writes with more are refused with 422.
    #[arg(long, env = "CUSTOM_METRICS_MAX_LABELS_PER_SERIES", default_value_t = Limits::default().max_labels_per_series)]
    pub max_labels_per_series: usize,

    /// Bytes of label keys and values one series may carry, all labels together; writes with more are refused with
    /// 422.
    #[arg(long, env = "CUSTOM_METRICS_MAX_LABEL_BYTES_PER_SERIES", default_value_t = Limits::default().max_label_bytes_per_series)]
    pub max_label_bytes_per_series: usize,

    /// Bytes the store may hold (names, labels and a measured overhead per series); writes beyond are refused with
    /// 403 [default: half the container's memory limit (cgroup), else 268435456 (256 MiB)].
    #[arg(long, env = "CUSTOM_METRICS_MAX_STORE_BYTES")]
    pub max_store_bytes: Option<usize>,

    /// Entries a discovery document lists at most per group-version.
    #[arg(long, env = "CUSTOM_METRICS_DISCOVERY_MAX_METRICS", default_value_t = 1000)]
    pub discovery_max_metrics: usize,

    /// Largest accepted write body in bytes; larger ones are refused with 413.
    #[arg(long, env = "CUSTOM_METRICS_MAX_REQUEST_BODY_BYTES", default_value_t = 4096)]
    pub max_request_body_bytes: usize,

    /// Items one list read (wildcard, every metric of an object, external) returns at most; a read that would
    /// return more is refused with 403.
    #[arg(long, env = "CUSTOM_METRICS_MAX_LIST_ITEMS", default_value_t = ReadLimits::default().max_list_items)]
    pub max_list_items: usize,

    /// Bytes of one read's response body at most; a read whose answer would be larger is refused with 403.
    #[arg(long, env = "CUSTOM_METRICS_MAX_RESPONSE_BYTES", default_value_t = ReadLimits::default().max_response_bytes)]
    pub max_response_bytes: usize,

    /// Bytes of a labelSelector or metricLabelSelector query value at most (after URL decoding); longer ones are
    /// refused with 400.
    #[arg(long, env = "CUSTOM_METRICS_MAX_SELECTOR_BYTES", default_value_t = ReadLimits::default().max_selector_bytes)]
    pub max_selector_bytes: usize,

    /// Open connections per listener at most. When all are open, a new client takes the place of the oldest
    /// unauthenticated connection; when none is unauthenticated, it waits to be accepted.
    #[arg(long, env = "CUSTOM_METRICS_MAX_CONNECTIONS", default_value_t = ConnectionLimits::default().max_connections)]
    pub max_connections: usize,

    /// Open connections per listener at most that have not completed an authenticated request (standalone and on
    /// the plain write port: any request); a new connection beyond closes the oldest of them.
    #[arg(long, env = "CUSTOM_METRICS_MAX_UNAUTHENTICATED_CONNECTIONS", default_value_t = ConnectionLimits::default().max_unauthenticated)]
    pub max_unauthenticated_connections: usize,

    /// Time a client has, from connecting, to complete the TLS handshake and send its first request's headers
    /// (HTTP/1.1 or HTTP/2), and to send each later HTTP/1.1 request's headers.
    #[arg(long, env = "CUSTOM_METRICS_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// A connection without a request in flight for this long is closed (HTTP/2 PINGs are not requests).
    #[arg(long, env = "CUSTOM_METRICS_IDLE_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Time a client has to send a request's body, from the end of its headers; later, the request is answered
    /// with 408 and nothing is stored.
    #[arg(long, env = "CUSTOM_METRICS_REQUEST_BODY_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub request_body_timeout: Duration,

    /// After SIGTERM, time given to open connections to finish before they are closed.
    #[arg(long, env = "CUSTOM_METRICS_SHUTDOWN_GRACE_PERIOD", default_value = "15s", value_parser = parse_duration)]
    pub shutdown_grace_period: Duration,

    /// kubeconfig file for watching objects and reading discovery [default: in-cluster configuration].
    #[arg(long, env = "CUSTOM_METRICS_KUBECONFIG", help_heading = "Cluster")]
    pub kubeconfig: Option<PathBuf>,

    /// How often the resource table is read again from the cluster's discovery (an unknown name also triggers a
    /// read, at most once per --discovery-miss-interval).
    #[arg(long, env = "CUSTOM_METRICS_DISCOVERY_REFRESH_INTERVAL", default_value = "5m", value_parser = parse_duration, help_heading = "Cluster")]
    pub discovery_refresh_interval: Duration,

    /// Shortest time between two discovery reads caused by unknown resource names.
    #[arg(long, env = "CUSTOM_METRICS_DISCOVERY_MISS_INTERVAL", default_value = "10s", value_parser = parse_duration, help_heading = "Cluster")]
    pub discovery_miss_interval: Duration,

    /// Values of an object that no longer exists in the cluster are removed once it has been gone this long (a
    /// pod recreated under the same name within it keeps them).
    #[arg(long, env = "CUSTOM_METRICS_DELETED_OBJECT_GRACE_PERIOD", default_value = "60s", value_parser = parse_duration, help_heading = "Cluster")]
    pub deleted_object_grace_period: Duration,

    /// Longest wait of a labelSelector read for the first list of a resource type not watched before.
    #[arg(long, env = "CUSTOM_METRICS_LABEL_INDEX_SYNC_TIMEOUT", default_value = "10s", value_parser = parse_duration, help_heading = "Cluster")]
    pub label_index_sync_timeout: Duration,

    /// kubeconfig file for TokenReviews and reading the ConfigMap kube-system/extension-apiserver-authentication
    /// [default: --kubeconfig, else in-cluster].
    #[arg(long, env = "CUSTOM_METRICS_AUTHENTICATION_KUBECONFIG", help_heading = "Authentication")]
    pub authentication_kubeconfig: Option<PathBuf>,

    /// How long TokenReview results are cached.
    #[arg(long, env = "CUSTOM_METRICS_AUTHENTICATION_TOKEN_WEBHOOK_CACHE_TTL", default_value = "10s", value_parser = parse_duration, help_heading = "Authentication")]
    pub authentication_token_webhook_cache_ttl: Duration,

    /// Size of the TokenReview cache in bytes (each entry's user strings plus 288 bytes; tokens are kept as
    /// hashes); the least used entries go first.
    #[arg(long, env = "CUSTOM_METRICS_AUTHENTICATION_TOKEN_WEBHOOK_CACHE_MAX_BYTES", default_value_t = crate::auth::authn::DEFAULT_TOKEN_CACHE_MAX_BYTES, help_heading = "Authentication")]
    pub authentication_token_webhook_cache_max_bytes: usize,

    /// TokenReviews a second, at most, for bearer tokens not in the cache (cached answers, valid or not, do not
    /// count; with a zero cache TTL every token counts); beyond it such requests are answered 429 Too Many
    /// Requests with Retry-After.
    #[arg(long, env = "CUSTOM_METRICS_TOKEN_REVIEW_RATE", default_value_t = crate::auth::authn::DEFAULT_TOKEN_REVIEW_RATE, help_heading = "Authentication")]
    pub token_review_rate: usize,

    /// Log lines a second, at most, about requests that fail authentication (401); each line written counts the
    /// ones left out since the previous one.
    #[arg(long, env = "CUSTOM_METRICS_UNAUTHORIZED_LOG_RATE", default_value_t = crate::auth::authn::DEFAULT_UNAUTHORIZED_LOG_RATE, help_heading = "Authentication")]
    pub unauthorized_log_rate: usize,

    /// Do not read the ConfigMap kube-system/extension-apiserver-authentication; only the flags configure client
    /// certificate and front-proxy authentication.
    #[arg(long, env = "CUSTOM_METRICS_AUTHENTICATION_SKIP_LOOKUP", help_heading = "Authentication")]
    pub authentication_skip_lookup: bool,

    /// Start even when the ConfigMap cannot be read.
    #[arg(long, env = "CUSTOM_METRICS_AUTHENTICATION_TOLERATE_LOOKUP_FAILURE", help_heading = "Authentication")]
    pub authentication_tolerate_lookup_failure: bool,

    /// CA bundle for x509 client certificates (CN = user, O = groups) [default: from the ConfigMap].
    #[arg(long, env = "CUSTOM_METRICS_CLIENT_CA_FILE", help_heading = "Authentication")]
    pub client_ca_file: Option<PathBuf>,

    /// CA bundle of the front proxy (kube-apiserver's --proxy-client-cert-file) [default: from the ConfigMap].
    #[arg(long, env = "CUSTOM_METRICS_REQUESTHEADER_CLIENT_CA_FILE", help_heading = "Authentication")]
    pub requestheader_client_ca_file: Option<PathBuf>,

    /// Common names allowed for front-proxy certificates; empty allows any certificate of the CA
    /// [default: from the ConfigMap].
    #[arg(
        long,
        env = "CUSTOM_METRICS_REQUESTHEADER_ALLOWED_NAMES",
        value_delimiter = ',',
        help_heading = "Authentication"
    )]
    pub requestheader_allowed_names: Vec<String>,

    /// Headers holding the user name of a front-proxy request [default: from the ConfigMap, else x-remote-user].
    #[arg(
        long,
        env = "CUSTOM_METRICS_REQUESTHEADER_USERNAME_HEADERS",
        value_delimiter = ',',
        help_heading = "Authentication"
    )]
    pub requestheader_username_headers: Vec<String>,

    /// Headers holding the groups [default: from the ConfigMap, else x-remote-group].
    #[arg(
        long,
        env = "CUSTOM_METRICS_REQUESTHEADER_GROUP_HEADERS",
        value_delimiter = ',',
        help_heading = "Authentication"
    )]
    pub requestheader_group_headers: Vec<String>,

    /// Prefixes of headers holding extra user information [default: from the ConfigMap, else x-remote-extra-].
    #[arg(
        long,
        env = "CUSTOM_METRICS_REQUESTHEADER_EXTRA_HEADERS_PREFIX",
        value_delimiter = ',',
        help_heading = "Authentication"
    )]
    pub requestheader_extra_headers_prefix: Vec<String>,

    /// Headers holding the user's UID [default: from the ConfigMap, else none].
    #[arg(
        long,
        env = "CUSTOM_METRICS_REQUESTHEADER_UID_HEADERS",
        value_delimiter = ',',
        help_heading = "Authentication"
    )]
    pub requestheader_uid_headers: Vec<String>,

    /// kubeconfig file for SubjectAccessReviews [default: --kubeconfig, else in-cluster].
    #[arg(long, env = "CUSTOM_METRICS_AUTHORIZATION_KUBECONFIG", help_heading = "Authorization")]
    pub authorization_kubeconfig: Option<PathBuf>,

    /// How long an allowing SubjectAccessReview is cached.
    #[arg(long, env = "CUSTOM_METRICS_AUTHORIZATION_WEBHOOK_CACHE_AUTHORIZED_TTL", default_value = "10s", value_parser = parse_duration, help_heading = "Authorization")]
    pub authorization_webhook_cache_authorized_ttl: Duration,

    /// How long a denying SubjectAccessReview is cached.
    #[arg(long, env = "CUSTOM_METRICS_AUTHORIZATION_WEBHOOK_CACHE_UNAUTHORIZED_TTL", default_value = "10s", value_parser = parse_duration, help_heading = "Authorization")]
    pub authorization_webhook_cache_unauthorized_ttl: Duration,

    /// Size of the SubjectAccessReview cache in bytes (each entry's strings plus 256 bytes); the least used
    /// entries go first.
    #[arg(long, env = "CUSTOM_METRICS_AUTHORIZATION_WEBHOOK_CACHE_MAX_BYTES", default_value_t = crate::auth::authz::DEFAULT_CACHE_MAX_BYTES, help_heading = "Authorization")]
    pub authorization_webhook_cache_max_bytes: usize,

    /// SubjectAccessReviews a second, at most, for anonymous requests (cached decisions do not count); beyond it
    /// such requests are answered 429 Too Many Requests with Retry-After.
    #[arg(long, env = "CUSTOM_METRICS_ANONYMOUS_AUTHORIZATION_RATE", default_value_t = crate::auth::authz::DEFAULT_ANONYMOUS_REVIEW_RATE, help_heading = "Authorization")]
    pub anonymous_authorization_rate: usize,

    /// Paths anyone may request without authorization (exact, or a prefix ending in `*`).
    #[arg(
        long,
        env = "CUSTOM_METRICS_AUTHORIZATION_ALWAYS_ALLOW_PATHS",
        value_delimiter = ',',
        default_value = "/healthz,/readyz,/livez",
        help_heading = "Authorization"
    )]
    pub authorization_always_allow_paths: Vec<String>,
}

/// The plain write listener's port when --write-auth=none and none is given.
const DEFAULT_WRITE_PORT: u16 = 8080;

fn cluster_config(flags: &Flags) -> ClusterConfig {
    ClusterConfig {
        kubeconfig: flags.kubeconfig.clone(),
        authentication_kubeconfig: flags.authentication_kubeconfig.clone(),
        authorization_kubeconfig: flags.authorization_kubeconfig.clone(),
        discovery_refresh_interval: flags.discovery_refresh_interval,
        discovery_miss_interval: flags.discovery_miss_interval,
        deleted_object_grace_period: flags.deleted_object_grace_period,
        label_index_sync_timeout: flags.label_index_sync_timeout,
        authentication: crate::auth::AuthenticationFlags {
            client_ca_file: flags.client_ca_file.clone(),
            requestheader_client_ca_file: flags.requestheader_client_ca_file.clone(),
            requestheader_allowed_names: flags.requestheader_allowed_names.clone(),
            requestheader_username_headers: flags.requestheader_username_headers.clone(),
            requestheader_group_headers: flags.requestheader_group_headers.clone(),
            requestheader_extra_headers_prefix: flags.requestheader_extra_headers_prefix.clone(),
            requestheader_uid_headers: flags.requestheader_uid_headers.clone(),
            skip_lookup: flags.authentication_skip_lookup,
            tolerate_lookup_failure: flags.authentication_tolerate_lookup_failure,
        },
        token_cache_ttl: flags.authentication_token_webhook_cache_ttl,
        token_cache_max_bytes: flags.authentication_token_webhook_cache_max_bytes,
        token_review_rate: flags.token_review_rate,
        unauthorized_log_rate: flags.unauthorized_log_rate,
        authorization_cache_max_bytes: flags.authorization_webhook_cache_max_bytes,
        anonymous_authorization_rate: flags.anonymous_authorization_rate,
        authorization_cache_ttl: (
            flags.authorization_webhook_cache_authorized_ttl,
            flags.authorization_webhook_cache_unauthorized_ttl,
        ),
        always_allow_paths: flags.authorization_always_allow_paths.clone(),
    }
}

/// A duration flag: `0`, a number of seconds, or `30s`, `5m`, `1h30m`, `250ms`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(text).map_err(|e| format!("{text:?} is not a duration such as 30s or 5m: {e}"))
}

/// Why the flags do not make a runnable configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Tokens would travel in clear text.
    #[error(
        "--write-port={0} serves plain HTTP, which must not carry bearer tokens: with --write-auth=token the write API is served on the secure port; drop --write-port or choose --write-auth=none"
    )]
    PlainWritePortWithTokens(u16),
    /// A bad always-allow path pattern.
    #[error(transparent)]
    AlwaysAllowPath(#[from] crate::auth::PathPatternError),
    /// Standalone mode has no cluster to check tokens against.
    #[error("--write-auth=token needs a cluster to review tokens: drop --standalone or choose --write-auth=none")]
    TokensWithoutCluster,
    /// Both listeners on one port.
    #[error("--write-port and --secure-port are both {0}; give them different ports")]
    SamePort(u16),
    /// A limit of zero would refuse everything.
    #[error("{0} must be greater than zero")]
    ZeroLimit(&'static str),
}

/// How the adapter finds out about the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// No cluster: built-in resource table, no object labels, no authentication.
    Standalone,
    /// Against a cluster: discovery, label index, delegated authentication and authorization.
    Cluster(Box<ClusterConfig>),
}

/// Everything cluster mode needs beyond the common settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// kubeconfig for watches and discovery; `None` = in-cluster.
    pub kubeconfig: Option<PathBuf>,
    /// kubeconfig for TokenReviews and the authentication ConfigMap; `None` = `kubeconfig`.
    pub authentication_kubeconfig: Option<PathBuf>,
    /// kubeconfig for SubjectAccessReviews; `None` = `kubeconfig`.
    pub authorization_kubeconfig: Option<PathBuf>,
    /// Periodic discovery refresh.
    pub discovery_refresh_interval: Duration,
    /// Minimum time between discovery refreshes caused by unknown names.
    pub discovery_miss_interval: Duration,
    /// Time after which values of deleted objects are removed.
    pub deleted_object_grace_period: Duration,
    /// Bound on waiting for a resource type's first list.
    pub label_index_sync_timeout: Duration,
    /// Client-certificate and front-proxy settings.
    pub authentication: crate::auth::AuthenticationFlags,
    /// TokenReview cache lifetime.
    pub token_cache_ttl: Duration,
    /// TokenReview cache size in bytes.
    pub token_cache_max_bytes: usize,
    /// TokenReviews a second at most for tokens not in the cache.
    pub token_review_rate: usize,
    /// 401 log lines a second at most.
    pub unauthorized_log_rate: usize,
    /// SubjectAccessReview cache size in bytes.
    pub authorization_cache_max_bytes: usize,
    /// SubjectAccessReviews a second at most for anonymous requests.
    pub anonymous_authorization_rate: usize,
    /// SubjectAccessReview cache lifetimes (allowed, denied).
    pub authorization_cache_ttl: (Duration, Duration),
    /// Paths served without authorization.
    pub always_allow_paths: Vec<String>,
}

/// The validated configuration of one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Address of the HTTPS listener.
    pub secure_addr: std::net::SocketAddr,
    /// Address of the write listener; `None` when disabled.
    pub write_addr: Option<std::net::SocketAddr>,
    /// Standalone or against a cluster.
    pub mode: Mode,
    /// How writes are checked.
    pub write_auth: WriteAuth,
    /// The serving certificate's source.
    pub cert: CertSource,
    /// Default lifetime of written values.
    pub metric_ttl: Option<Duration>,
    /// Log format.
    pub log_format: LogFormat,
    /// klog-style verbosity.
    pub verbosity: u8,
    /// Store limits.
    pub limits: Limits,
    /// Discovery entries per group-version.
    pub discovery_max_metrics: usize,
    /// Largest write body.
    pub max_request_body_bytes: usize,
    /// Bounds on what one read returns.
    pub reads: ReadLimits,
    /// Limits of both listeners.
    pub connections: ConnectionLimits,
    /// Drain time after SIGTERM.
    pub shutdown_grace_period: Duration,
}

impl Config {
    /// Validates flags into a configuration.
    pub fn from_flags(flags: Flags) -> Result<Config, ConfigError> {
        let write_auth = flags.write_auth.unwrap_or(if flags.standalone { WriteAuth::None } else { WriteAuth::Token });
        if flags.standalone && write_auth == WriteAuth::Token {
            return Err(ConfigError::TokensWithoutCluster);
        }
        let write_port = match (write_auth, flags.write_port) {
            (WriteAuth::Token, Some(port)) if port != 0 => return Err(ConfigError::PlainWritePortWithTokens(port)),
            (WriteAuth::Token, _) => 0,
            (WriteAuth::None, port) => port.unwrap_or(DEFAULT_WRITE_PORT),
        };
        crate::auth::check_always_allow_paths(&flags.authorization_always_allow_paths)?;
        if write_port != 0 && write_port == flags.secure_port {
            return Err(ConfigError::SamePort(write_port));
        }
        for (name, value) in [
            ("--max-series", flags.max_series),
            ("--max-label-bytes-per-series", flags.max_label_bytes_per_series),
            ("--max-store-bytes", flags.max_store_bytes.unwrap_or(1)),
            ("--max-request-body-bytes", flags.max_request_body_bytes),
            ("--max-connections", flags.max_connections),
            ("--max-unauthenticated-connections", flags.max_unauthenticated_connections),
            ("--discovery-max-metrics", flags.discovery_max_metrics),
            ("--max-list-items", flags.max_list_items),
            ("--max-response-bytes", flags.max_response_bytes),
            ("--max-selector-bytes", flags.max_selector_bytes),
            ("--unauthorized-log-rate", flags.unauthorized_log_rate),
            ("--authorization-webhook-cache-max-bytes", flags.authorization_webhook_cache_max_bytes),
            ("--anonymous-authorization-rate", flags.anonymous_authorization_rate),
            ("--authentication-token-webhook-cache-max-bytes", flags.authentication_token_webhook_cache_max_bytes),
            ("--token-review-rate", flags.token_review_rate),
        ] {
            if value == 0 {
                return Err(ConfigError::ZeroLimit(name));
            }
        }
        let default_bind =
            if flags.standalone { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { IpAddr::V4(Ipv4Addr::UNSPECIFIED) };
        let bind = flags.bind_address.unwrap_or(default_bind);
        let mode = if flags.standalone { Mode::Standalone } else { Mode::Cluster(Box::new(cluster_config(&flags))) };
        let cert = match (flags.tls_cert_file, flags.tls_private_key_file) {
            (Some(cert), Some(key)) => CertSource::Files { cert, key },
            _ => CertSource::Dir(flags.cert_dir),
        };
        Ok(Config {
            secure_addr: (bind, flags.secure_port).into(),
            write_addr: (write_port != 0).then(|| (bind, write_port).into()),
            mode,
            write_auth,
            cert,
            metric_ttl: (!flags.metric_ttl.is_zero()).then_some(flags.metric_ttl),
            log_format: flags.log_format,
            verbosity: flags.verbosity,
            limits: Limits {
                max_series: flags.max_series,
                max_labels_per_series: flags.max_labels_per_series,
                max_label_bytes_per_series: flags.max_label_bytes_per_series,
                max_store_bytes: flags.max_store_bytes.unwrap_or_else(crate::store::budget::default_max_store_bytes),
            },
            discovery_max_metrics: flags.discovery_max_metrics,
            max_request_body_bytes: flags.max_request_body_bytes,
            reads: ReadLimits {
                max_list_items: flags.max_list_items,
                max_response_bytes: flags.max_response_bytes,
                max_selector_bytes: flags.max_selector_bytes,
            },
            connections: ConnectionLimits {
                max_connections: flags.max_connections,
                max_unauthenticated: flags.max_unauthenticated_connections,
                header_read_timeout: flags.header_read_timeout,
                idle_timeout: flags.idle_timeout,
                request_body_timeout: flags.request_body_timeout,
                ..ConnectionLimits::default()
            },
            shutdown_grace_period: flags.shutdown_grace_period,
        })
    }

    /// Whether the adapter runs against a cluster.
    pub fn cluster(&self) -> Option<&ClusterConfig> {
        match &self.mode {
            Mode::Cluster(cluster) => Some(cluster),
            Mode::Standalone => None,
        }
    }

    /// Parses and validates command-line arguments.
    pub fn from_args<I, T>(args: I) -> Result<Config, String>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let flags = Flags::try_parse_from(args).map_err(|e| e.to_string())?;
        Config::from_flags(flags).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        Config::from_args(std::iter::once("custom-metrics-apiserver").chain(args.iter().copied()))
    }

    #[test]
    fn standalone_defaults_bind_loopback_with_both_listeners() {
        let config = parse(&["--standalone"]).unwrap();
        assert_eq!(config.secure_addr, "127.0.0.1:6443".parse().unwrap());
        assert_eq!(config.write_addr, Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(config.cert, CertSource::Dir("apiserver.local.config/certificates".into()));
        assert_eq!(config.metric_ttl, None);
        let derived = crate::store::budget::default_max_store_bytes();
        assert_eq!(config.limits, Limits { max_store_bytes: derived, ..Limits::default() });
        assert_eq!(config.reads, ReadLimits::default());
    }

    #[test]
    fn read_limits_come_from_their_flags_and_are_never_zero() {
        let config =
            parse(&["--standalone", "--max-list-items=5", "--max-response-bytes=6", "--max-selector-bytes=7"]).unwrap();
        assert_eq!(config.reads, ReadLimits { max_list_items: 5, max_response_bytes: 6, max_selector_bytes: 7 });
        for flag in ["--max-list-items", "--max-response-bytes", "--max-selector-bytes"] {
            assert!(parse(&["--standalone", &format!("{flag}=0")]).unwrap_err().contains(flag), "{flag}");
        }
    }

    #[test]
    fn store_limits_have_flags() {
        let config = parse(&["--standalone", "--max-store-bytes=1048576", "--max-label-bytes-per-series=100"]).unwrap();
        assert_eq!(config.limits.max_store_bytes, 1 << 20);
        assert_eq!(config.limits.max_label_bytes_per_series, 100);
        assert!(parse(&["--standalone", "--max-store-bytes=0"]).unwrap_err().contains("--max-store-bytes"));
        let error = parse(&["--standalone", "--max-label-bytes-per-series=0"]).unwrap_err();
        assert!(error.contains("--max-label-bytes-per-series"), "{error}");
    }

    #[test]
    fn flags_override_defaults_in_kubernetes_spelling() {
        let config = parse(&[
            "--standalone",
            "--bind-address=0.0.0.0",
            "--secure-port=7443",
            "--write-port=0",
            "--tls-cert-file=/c.pem",
            "--tls-private-key-file=/k.pem",
            "--metric-ttl=5m",
            "--log-format=json",
            "-v=4",
        ])
        .unwrap();
        assert_eq!(config.secure_addr, "0.0.0.0:7443".parse().unwrap());
        assert_eq!(config.write_addr, None);
        assert_eq!(config.cert, CertSource::Files { cert: "/c.pem".into(), key: "/k.pem".into() });
        assert_eq!(config.metric_ttl, Some(Duration::from_secs(300)));
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.verbosity, 4);
        assert_eq!(parse(&["--standalone", "--v=2"]).unwrap().verbosity, 2);
    }

    #[test]
    fn cluster_mode_defaults_serve_writes_only_on_the_secure_port() {
        let config = parse(&["--kubeconfig=/k"]).unwrap();
        assert_eq!(config.secure_addr, "0.0.0.0:6443".parse().unwrap());
        assert_eq!(config.write_addr, None);
        assert_eq!(config.write_auth, WriteAuth::Token);
        let cluster = config.cluster().unwrap();
        assert_eq!(cluster.kubeconfig, Some("/k".into()));
        assert_eq!(cluster.authorization_cache_ttl, (Duration::from_secs(10), Duration::from_secs(10)));
        assert_eq!(cluster.token_cache_ttl, Duration::from_secs(10));
        assert_eq!(cluster.unauthorized_log_rate, 10);
        assert_eq!(cluster.authorization_cache_max_bytes, 16 << 20);
        assert_eq!(cluster.anonymous_authorization_rate, 10);
        assert_eq!(cluster.token_cache_max_bytes, 16 << 20);
        assert_eq!(cluster.token_review_rate, 100);
        for zero in [
            "--unauthorized-log-rate=0",
            "--authorization-webhook-cache-max-bytes=0",
            "--anonymous-authorization-rate=0",
            "--authentication-token-webhook-cache-max-bytes=0",
            "--token-review-rate=0",
        ] {
            let flag = zero.trim_end_matches("=0");
            let error = parse(&["--kubeconfig=/k", zero]).unwrap_err();
            assert!(error.contains(&format!("{flag} must be greater than zero")), "{zero}: {error}");
        }
        assert_eq!(cluster.always_allow_paths, ["/healthz", "/readyz", "/livez"]);
        assert_eq!(cluster.authentication.requestheader_username_headers, Vec::<String>::new());
        assert!(parse(&["--standalone"]).unwrap().cluster().is_none());
    }

    #[test]
    fn requestheader_lists_are_comma_separated_as_in_kubernetes() {
        let config = parse(&[
            "--requestheader-allowed-names=front-proxy-client,aggregator",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-,X-Other-",
            "--client-ca-file=/ca.crt",
            "--authentication-skip-lookup",
        ])
        .unwrap();
        let authn = &config.cluster().unwrap().authentication;
        assert_eq!(authn.requestheader_allowed_names, ["front-proxy-client", "aggregator"]);
        assert_eq!(authn.requestheader_username_headers, ["X-Remote-User"]);
        assert_eq!(authn.requestheader_extra_headers_prefix, ["X-Remote-Extra-", "X-Other-"]);
        assert_eq!(authn.client_ca_file, Some("/ca.crt".into()));
        assert!(authn.skip_lookup);
    }

    #[test]
    fn tokens_never_go_to_the_plain_write_port() {
        let error = parse(&["--write-port=8080"]).unwrap_err();
        assert!(error.contains("--write-port=8080") && error.contains("--write-auth=none"), "{error}");
        assert!(parse(&["--write-port=8080", "--write-auth=token"]).is_err());
        assert_eq!(parse(&["--write-port=0"]).unwrap().write_addr, None);
        let open = parse(&["--write-auth=none"]).unwrap();
        assert_eq!(open.write_addr, Some("0.0.0.0:8080".parse().unwrap()));
        assert_eq!(open.write_auth, WriteAuth::None);
        let error = parse(&["--standalone", "--write-auth=token"]).unwrap_err();
        assert!(error.contains("--standalone"), "{error}");
        assert_eq!(parse(&["--standalone"]).unwrap().write_auth, WriteAuth::None);
    }

    #[test]
    fn connection_limits_have_defaults_and_flags() {
        let limits = parse(&["--standalone"]).unwrap().connections;
        assert_eq!(limits.max_unauthenticated, 512);
        assert_eq!(limits.request_body_timeout, Duration::from_secs(10));
        let limits = parse(&[
            "--standalone",
            "--max-unauthenticated-connections=7",
            "--request-body-timeout=250ms",
            "--header-read-timeout=3s",
        ])
        .unwrap()
        .connections;
        assert_eq!(limits.max_unauthenticated, 7);
        assert_eq!(limits.request_body_timeout, Duration::from_millis(250));
        assert_eq!(limits.header_read_timeout, Duration::from_secs(3));
        let error = parse(&["--standalone", "--max-unauthenticated-connections=0"]).unwrap_err();
        assert!(error.contains("--max-unauthenticated-connections"), "{error}");
    }

    #[test]
    fn inconsistent_flags_are_refused() {
        assert!(parse(&["--standalone", "--secure-port=8080"]).unwrap_err().contains("different ports"));
        assert!(parse(&["--standalone", "--tls-cert-file=/c.pem"]).is_err());
        assert!(parse(&["--standalone", "--max-series=0"]).unwrap_err().contains("--max-series"));
        assert!(parse(&["--standalone", "--metric-ttl=soon"]).is_err());
        assert!(parse(&["--standalone", "--log-format=xml"]).is_err());
        assert!(parse(&["--authorization-always-allow-paths=/a*b"]).unwrap_err().contains("trailing *"));
    }
}
