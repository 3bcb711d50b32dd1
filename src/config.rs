//! Flags and environment variables into one validated [`Config`]. Reads no cluster and binds no port.
//!
//! Every flag can also be set through the environment variable named in `--help` (`CUSTOM_METRICS_<FLAG>`).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::server::listener::ConnectionLimits;
use crate::server::tls::CertSource;
use crate::store::Limits;

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

    /// Port of the plain-HTTP write API (0 disables it).
    #[arg(long, env = "CUSTOM_METRICS_WRITE_PORT", default_value_t = 8080)]
    pub write_port: u16,

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

    /// Entries a discovery document lists at most per group-version.
    #[arg(long, env = "CUSTOM_METRICS_DISCOVERY_MAX_METRICS", default_value_t = 1000)]
    pub discovery_max_metrics: usize,

    /// Largest accepted write body in bytes; larger ones are refused with 413.
    #[arg(long, env = "CUSTOM_METRICS_MAX_REQUEST_BODY_BYTES", default_value_t = 4096)]
    pub max_request_body_bytes: usize,

    /// Open connections per listener at most; further clients wait to be accepted.
    #[arg(long, env = "CUSTOM_METRICS_MAX_CONNECTIONS", default_value_t = ConnectionLimits::default().max_connections)]
    pub max_connections: usize,

    /// Time a client has to complete the TLS handshake and to send a request's headers.
    #[arg(long, env = "CUSTOM_METRICS_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// A connection with nothing to read for this long is closed.
    #[arg(long, env = "CUSTOM_METRICS_IDLE_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// After SIGTERM, time given to open connections to finish before they are closed.
    #[arg(long, env = "CUSTOM_METRICS_SHUTDOWN_GRACE_PERIOD", default_value = "15s", value_parser = parse_duration)]
    pub shutdown_grace_period: Duration,
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
    /// Cluster mode is not available yet.
    #[error(
        "running against a cluster is not implemented yet: start with --standalone to run without a cluster (no authentication, built-in resource table, in-memory store)"
    )]
    ClusterModeUnavailable,
    /// Both listeners on one port.
    #[error("--write-port and --secure-port are both {0}; give them different ports")]
    SamePort(u16),
    /// A limit of zero would refuse everything.
    #[error("{0} must be greater than zero")]
    ZeroLimit(&'static str),
}

/// The validated configuration of one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Address of the HTTPS listener.
    pub secure_addr: std::net::SocketAddr,
    /// Address of the write listener; `None` when disabled.
    pub write_addr: Option<std::net::SocketAddr>,
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
    /// Limits of both listeners.
    pub connections: ConnectionLimits,
    /// Drain time after SIGTERM.
    pub shutdown_grace_period: Duration,
}

impl Config {
    /// Validates flags into a configuration.
    pub fn from_flags(flags: Flags) -> Result<Config, ConfigError> {
        if !flags.standalone {
            return Err(ConfigError::ClusterModeUnavailable);
        }
        if flags.write_port != 0 && flags.write_port == flags.secure_port {
            return Err(ConfigError::SamePort(flags.write_port));
        }
        for (name, value) in [
            ("--max-series", flags.max_series),
            ("--max-request-body-bytes", flags.max_request_body_bytes),
            ("--max-connections", flags.max_connections),
            ("--discovery-max-metrics", flags.discovery_max_metrics),
        ] {
            if value == 0 {
                return Err(ConfigError::ZeroLimit(name));
            }
        }
        let default_bind =
            if flags.standalone { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { IpAddr::V4(Ipv4Addr::UNSPECIFIED) };
        let bind = flags.bind_address.unwrap_or(default_bind);
        let cert = match (flags.tls_cert_file, flags.tls_private_key_file) {
            (Some(cert), Some(key)) => CertSource::Files { cert, key },
            _ => CertSource::Dir(flags.cert_dir),
        };
        Ok(Config {
            secure_addr: (bind, flags.secure_port).into(),
            write_addr: (flags.write_port != 0).then(|| (bind, flags.write_port).into()),
            cert,
            metric_ttl: (!flags.metric_ttl.is_zero()).then_some(flags.metric_ttl),
            log_format: flags.log_format,
            verbosity: flags.verbosity,
            limits: Limits { max_series: flags.max_series, max_labels_per_series: flags.max_labels_per_series },
            discovery_max_metrics: flags.discovery_max_metrics,
            max_request_body_bytes: flags.max_request_body_bytes,
            connections: ConnectionLimits {
                max_connections: flags.max_connections,
                header_read_timeout: flags.header_read_timeout,
                idle_timeout: flags.idle_timeout,
                ..ConnectionLimits::default()
            },
            shutdown_grace_period: flags.shutdown_grace_period,
        })
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
        assert_eq!(config.limits, Limits::default());
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
    fn without_standalone_the_error_names_the_flag() {
        let error = parse(&[]).unwrap_err();
        assert!(error.contains("--standalone"), "{error}");
    }

    #[test]
    fn inconsistent_flags_are_refused() {
        assert!(parse(&["--standalone", "--secure-port=8080"]).unwrap_err().contains("different ports"));
        assert!(parse(&["--standalone", "--tls-cert-file=/c.pem"]).is_err());
        assert!(parse(&["--standalone", "--max-series=0"]).unwrap_err().contains("--max-series"));
        assert!(parse(&["--standalone", "--metric-ttl=soon"]).is_err());
        assert!(parse(&["--standalone", "--log-format=xml"]).is_err());
    }
}
