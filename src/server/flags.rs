//! The command-line flags of serving: the listeners, the serving certificate, how writes are checked, the size of
//! a write body, the drain after SIGTERM, and the limits of each listener's connections. Flattened into
//! [`crate::config::Flags`].

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::listener::ConnectionLimits;
use super::tls::CertSource;
use crate::duration::parse_duration;
use crate::ingest::BatchLimits;
use crate::ingest::push::{DEFAULT_MAX_PUSH_SERIES, DEFAULT_OBJECT_LABELS, ObjectLabels};

/// How writes are authenticated and authorized (docs/wire-contract.md §10 item 12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WriteAuth {
    /// Bearer token checked by TokenReview, then a SubjectAccessReview with verb `create`.
    Token,
    /// No checks: whoever reaches a write listener may write.
    None,
}

/// The listeners, the serving certificate and the write API. The listeners' addresses are decided with
/// `--standalone` in [`crate::config::Config::from_flags`].
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ServingFlags {
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

    /// Largest accepted write body in bytes; larger ones are refused with 413.
    #[arg(long, env = "CUSTOM_METRICS_MAX_REQUEST_BODY_BYTES", default_value_t = 4096)]
    pub max_request_body_bytes: usize,

    /// Items one batch write (POST /write-metrics) may hold; a larger batch is refused whole with 413. Also the
    /// samples one push and the data points one OTLP export (POST /v1/metrics) may hold.
    #[arg(long, env = "CUSTOM_METRICS_MAX_BATCH_ITEMS", default_value_t = BatchLimits::default().max_items)]
    pub max_batch_items: usize,

    /// Largest accepted batch write body (POST /write-metrics) in bytes; larger ones are refused with 413. Also bounds
    /// push and OTLP export bodies (POST /v1/metrics), as sent and once gzip-decompressed. Single writes are bounded
    /// by --max-request-body-bytes.
    #[arg(long, env = "CUSTOM_METRICS_MAX_BATCH_BODY_BYTES", default_value_t = BatchLimits::default().max_body_bytes)]
    pub max_batch_body_bytes: usize,

    /// Pushgateway-compatible pushes (/metrics/job/...): the sample labels whose value names an object, tried in
    /// this order, as `label` (the resource of the same name) or `label=resource`. A sample with a namespace label
    /// and one of them is stored on that object; with a namespace and none of them, as an external metric.
    #[arg(long, env = "CUSTOM_METRICS_OBJECT_LABELS", default_value = DEFAULT_OBJECT_LABELS, value_parser = str::parse::<ObjectLabels>)]
    pub object_labels: ObjectLabels,

    /// Series the push groups remember, all groups together (so that a PUT replaces what its group pushed before);
    /// a push that would add more is refused with 403. Pushes are also bounded by --max-batch-items (samples) and
    /// --max-batch-body-bytes (body, after gzip decompression too).
    #[arg(long, env = "CUSTOM_METRICS_MAX_PUSH_SERIES", default_value_t = DEFAULT_MAX_PUSH_SERIES)]
    pub max_push_series: usize,

    /// After SIGTERM, time given to open connections to finish before they are closed.
    #[arg(long, env = "CUSTOM_METRICS_SHUTDOWN_GRACE_PERIOD", default_value = "15s", value_parser = parse_duration)]
    pub shutdown_grace_period: Duration,
}

impl ServingFlags {
    /// The bounds of batch writes.
    pub fn batch_limits(&self) -> BatchLimits {
        BatchLimits { max_items: self.max_batch_items, max_body_bytes: self.max_batch_body_bytes }
    }

    /// Where the serving certificate comes from: the two files when given (clap requires both), else the
    /// directory.
    pub fn cert_source(&self) -> CertSource {
        match (&self.tls_cert_file, &self.tls_private_key_file) {
            (Some(cert), Some(key)) => CertSource::Files { cert: cert.clone(), key: key.clone() },
            _ => CertSource::Dir(self.cert_dir.clone()),
        }
    }
}

/// The limits of each listener's connections ([`ConnectionLimits`]).
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ConnectionFlags {
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
}

impl From<&ConnectionFlags> for ConnectionLimits {
    fn from(flags: &ConnectionFlags) -> Self {
        ConnectionLimits {
            max_connections: flags.max_connections,
            max_unauthenticated: flags.max_unauthenticated_connections,
            header_read_timeout: flags.header_read_timeout,
            idle_timeout: flags.idle_timeout,
            request_body_timeout: flags.request_body_timeout,
            ..ConnectionLimits::default()
        }
    }
}
