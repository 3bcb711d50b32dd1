//! Flags and environment variables into one validated [`Config`]. Reads no cluster and binds no port.
//!
//! Every flag can also be set through the environment variable named in `--help` (`CUSTOM_METRICS_<FLAG>`).
//! The flags are declared by concern beside the code that uses them, each group a `clap::Args` struct flattened
//! into [`Flags`] (docs/architecture.md §8): serving and connections in [`crate::server::flags`], the
//! store in [`crate::store::flags`], the read APIs in [`crate::api::flags`], cluster mode (with authentication and
//! authorization, [`crate::auth::flags`]) in [`crate::cluster::flags`], logging in [`crate::logging`]. This
//! module adds `--standalone`, checks what no single group can, and converts each group once.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use clap::Parser;

use crate::admin::{AdminConfigError, AdminFlags, AdminOptions};
use crate::api::ReadLimits;
use crate::api::flags::ReadFlags;
use crate::cluster::flags::ClusterFlags;
pub use crate::logging::{LogFormat, LoggingFlags};
pub use crate::server::flags::WriteAuth;
use crate::server::flags::{ConnectionFlags, ServingFlags};
use crate::server::listener::ConnectionLimits;
use crate::server::tls::CertSource;
use crate::store::Limits;
use crate::store::flags::StoreFlags;

/// What `--version` prints after the program's name: the crate's version and the git commit it was built from
/// (build.rs: the checkout's `HEAD`, or the image's `GIT_COMMIT` build argument, or `unknown`).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("CUSTOM_METRICS_GIT_COMMIT"), ")");

/// Command-line flags, as Kubernetes' generic API servers name them where they have one.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "custom-metrics-apiserver",
    version = VERSION,
    about = "Kubernetes custom and external metrics adapter: write any value over HTTP, read it through custom.metrics.k8s.io and external.metrics.k8s.io (for the HorizontalPodAutoscaler)."
)]
pub struct Flags {
    /// Run without a cluster: no authentication or authorization, built-in resource table, listening on
    /// 127.0.0.1 unless --bind-address says otherwise.
    #[arg(long, env = "CUSTOM_METRICS_STANDALONE")]
    pub standalone: bool,

    /// Listeners, certificate, write API.
    #[command(flatten)]
    pub serving: ServingFlags,

    /// Store limits and the default value lifetime.
    #[command(flatten)]
    pub store: StoreFlags,

    /// Log format and verbosity.
    #[command(flatten)]
    pub logging: LoggingFlags,

    /// Bounds on what reads return.
    #[command(flatten)]
    pub reads: ReadFlags,

    /// Limits of each listener's connections.
    #[command(flatten)]
    pub connections: ConnectionFlags,

    /// Cluster mode: client, discovery, label index, authentication, authorization.
    #[command(flatten)]
    pub cluster: ClusterFlags,

    /// Forwarding to another adapter.
    #[command(flatten)]
    pub forward: crate::forward::ForwardFlags,
    /// The admin listener (status page).
    #[command(flatten)]
    pub admin: AdminFlags,
}

/// The plain write listener's port when --write-auth=none and none is given.
const DEFAULT_WRITE_PORT: u16 = 8080;

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
    /// The forwarding flags do not describe a neighbour.
    #[error(transparent)]
    Forward(#[from] crate::forward::ForwardConfigError),
    /// The admin listener's flags.
    #[error(transparent)]
    Admin(#[from] AdminConfigError),
    /// The store flags do not describe a store.
    #[error(transparent)]
    Store(#[from] crate::store::flags::StoreConfigError),
    /// Certificates are kept in a Secret of the cluster.
    #[error(
        "--manage-certificates keeps the certificate in a Secret of the cluster: drop --standalone or --manage-certificates"
    )]
    ManagedCertificatesWithoutCluster,
    /// Renewals too close to the sync interval for every replica to follow one before the next.
    #[error(
        "--certificate-validity={validity:?} must be at least 12 times --certificate-sync-interval={interval:?}: every replica must serve a renewed certificate well before the previous one expires"
    )]
    CertificateValidityTooShort {
        /// The validity.
        validity: Duration,
        /// The sync interval.
        interval: Duration,
    },
}

/// How the adapter finds out about the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// No cluster: built-in resource table, no object labels, no authentication.
    Standalone,
    /// Against a cluster: discovery, label index, delegated authentication and authorization.
    Cluster(Box<ClusterConfig>),
}

/// Everything cluster mode needs beyond the common settings: its flags as given.
pub type ClusterConfig = ClusterFlags;

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
    /// Whether the adapter manages its serving certificate and the APIServices' caBundle (cluster mode only;
    /// `--manage-certificates` without `--tls-cert-file`): then `cert` is unused.
    pub manage_certificates: bool,
    /// Default lifetime of written values.
    pub metric_ttl: Option<Duration>,
    /// Log format and verbosity.
    pub logging: LoggingFlags,
    /// Store limits.
    pub limits: Limits,
    /// Which store (--store).
    pub store: crate::store::Backend,
    /// Discovery entries per group-version.
    pub discovery_max_metrics: usize,
    /// Largest write body.
    pub max_request_body_bytes: usize,
    /// Bounds of a batch write (and of a push's body and samples).
    pub batch: crate::ingest::BatchLimits,
    /// Object labels of pushes (`--object-labels`).
    pub object_labels: crate::ingest::ObjectLabels,
    /// Series the push groups remember (`--max-push-series`).
    pub max_push_series: usize,
    /// Bounds on what one read returns.
    pub reads: ReadLimits,
    /// Limits of both listeners.
    pub connections: ConnectionLimits,
    /// Drain time after SIGTERM.
    pub shutdown_grace_period: Duration,
    /// Where reads of metrics we do not hold go (docs/architecture.md §13); `None`: nowhere.
    pub forward: Option<crate::forward::ForwardConfig>,
    /// The admin listener (status page); `None` when disabled (`--admin-address=`).
    pub admin: Option<AdminOptions>,
}

impl Config {
    /// Validates flags into a configuration.
    pub fn from_flags(flags: Flags) -> Result<Config, ConfigError> {
        let Flags { standalone, serving, store, logging, reads, connections, cluster, forward, admin } = flags;
        let forward = forward.config()?;
        let write_auth = serving.write_auth.unwrap_or(if standalone { WriteAuth::None } else { WriteAuth::Token });
        if standalone && write_auth == WriteAuth::Token {
            return Err(ConfigError::TokensWithoutCluster);
        }
        let write_port = match (write_auth, serving.write_port) {
            (WriteAuth::Token, Some(port)) if port != 0 => return Err(ConfigError::PlainWritePortWithTokens(port)),
            (WriteAuth::Token, _) => 0,
            (WriteAuth::None, port) => port.unwrap_or(DEFAULT_WRITE_PORT),
        };
        crate::auth::check_always_allow_paths(&cluster.authorization.authorization_always_allow_paths)?;
        if write_port != 0 && write_port == serving.secure_port {
            return Err(ConfigError::SamePort(write_port));
        }
        let (authenticator, authorization) = (&cluster.authenticator, &cluster.authorization);
        for (name, value) in [
            ("--max-series", store.max_series),
            ("--max-label-bytes-per-series", store.max_label_bytes_per_series),
            ("--max-store-bytes", store.max_store_bytes.unwrap_or(1)),
            ("--max-request-body-bytes", serving.max_request_body_bytes),
            ("--max-batch-items", serving.max_batch_items),
            ("--max-batch-body-bytes", serving.max_batch_body_bytes),
            ("--max-push-series", serving.max_push_series),
            ("--max-connections", connections.max_connections),
            ("--max-unauthenticated-connections", connections.max_unauthenticated_connections),
            ("--discovery-max-metrics", reads.discovery_max_metrics),
            ("--max-list-items", reads.max_list_items),
            ("--max-response-bytes", reads.max_response_bytes),
            ("--max-selector-bytes", reads.max_selector_bytes),
            ("--unauthorized-log-rate", authenticator.unauthorized_log_rate),
            ("--authorization-webhook-cache-max-bytes", authorization.authorization_webhook_cache_max_bytes),
            ("--anonymous-authorization-rate", authorization.anonymous_authorization_rate),
            (
                "--authentication-token-webhook-cache-max-bytes",
                authenticator.authentication_token_webhook_cache_max_bytes,
            ),
            ("--token-review-rate", authenticator.token_review_rate),
            ("--admin-max-page-size", admin.admin_max_page_size),
        ] {
            if value == 0 {
                return Err(ConfigError::ZeroLimit(name));
            }
        }
        let certificates = &cluster.certificates;
        if certificates.manage_certificates && standalone {
            return Err(ConfigError::ManagedCertificatesWithoutCluster);
        }
        if certificates.manage_certificates
            && certificates.certificate_validity < certificates.certificate_sync_interval * 12
        {
            return Err(ConfigError::CertificateValidityTooShort {
                validity: certificates.certificate_validity,
                interval: certificates.certificate_sync_interval,
            });
        }
        if certificates.certificate_sync_interval.is_zero() {
            return Err(ConfigError::ZeroLimit("--certificate-sync-interval"));
        }
        // A mounted certificate (cert-manager, a Secret of the user's) wins: the adapter then manages nothing.
        let manage_certificates = certificates.manage_certificates && serving.tls_cert_file.is_none();
        let default_bind = if standalone { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { IpAddr::V4(Ipv4Addr::UNSPECIFIED) };
        let bind = serving.bind_address.unwrap_or(default_bind);
        Ok(Config {
            secure_addr: (bind, serving.secure_port).into(),
            write_addr: (write_port != 0).then(|| (bind, write_port).into()),
            mode: if standalone { Mode::Standalone } else { Mode::Cluster(Box::new(cluster)) },
            write_auth,
            cert: serving.cert_source(),
            manage_certificates,
            metric_ttl: store.default_ttl(),
            logging,
            limits: store.limits(),
            store: store.backend()?,
            discovery_max_metrics: reads.discovery_max_metrics,
            max_request_body_bytes: serving.max_request_body_bytes,
            batch: serving.batch_limits(),
            object_labels: serving.object_labels.clone(),
            max_push_series: serving.max_push_series,
            reads: (&reads).into(),
            connections: (&connections).into(),
            shutdown_grace_period: serving.shutdown_grace_period,
            forward,
            admin: admin.options()?,
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
        assert_eq!(config.logging.log_format, LogFormat::Json);
        assert_eq!(config.logging.verbosity, 4);
        assert_eq!(parse(&["--standalone", "--v=2"]).unwrap().logging.verbosity, 2);
    }

    #[test]
    fn cluster_mode_defaults_serve_writes_only_on_the_secure_port() {
        let config = parse(&["--kubeconfig=/k"]).unwrap();
        assert_eq!(config.secure_addr, "0.0.0.0:6443".parse().unwrap());
        assert_eq!(config.write_addr, None);
        assert_eq!(config.write_auth, WriteAuth::Token);
        let cluster = config.cluster().unwrap();
        assert_eq!(cluster.kubeconfig, Some("/k".into()));
        let (authn, authz) = (&cluster.authenticator, &cluster.authorization);
        assert_eq!(
            (authz.authorization_webhook_cache_authorized_ttl, authz.authorization_webhook_cache_unauthorized_ttl),
            (Duration::from_secs(10), Duration::from_secs(10))
        );
        assert_eq!(authn.authentication_token_webhook_cache_ttl, Duration::from_secs(10));
        assert_eq!(authn.unauthorized_log_rate, 10);
        assert_eq!(authz.authorization_webhook_cache_max_bytes, 16 << 20);
        assert_eq!(authz.anonymous_authorization_rate, 10);
        assert_eq!(authn.authentication_token_webhook_cache_max_bytes, 16 << 20);
        assert_eq!(authn.token_review_rate, 100);
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
        assert_eq!(authz.authorization_always_allow_paths, ["/healthz", "/readyz", "/livez"]);
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
    fn the_version_names_the_commit_built_from() {
        let printed = <Flags as clap::CommandFactory>::command().render_version();
        let commit = env!("CUSTOM_METRICS_GIT_COMMIT");
        assert_eq!(printed, format!("custom-metrics-apiserver {} (commit {commit})\n", env!("CARGO_PKG_VERSION")));
        // In a checkout, build.rs read HEAD (and runs again when it moves); elsewhere the build says so.
        let head = std::process::Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8(output.stdout).unwrap().trim().to_string());
        match (std::env::var("CUSTOM_METRICS_GIT_COMMIT"), head) {
            (Ok(given), _) if !given.is_empty() => assert_eq!(commit, given.trim()),
            (_, Some(head)) => assert_eq!(commit, head),
            (_, None) => assert_eq!(commit, "unknown"),
        }
    }

    #[test]
    fn the_flag_groups_make_one_consistent_command() {
        // clap's own checks: unique ids and names, `requires` naming existing arguments, and so on.
        <Flags as clap::CommandFactory>::command().debug_assert();
    }

    #[test]
    fn every_flag_has_its_custom_metrics_variable() {
        let command = <Flags as clap::CommandFactory>::command();
        let mut flags = 0;
        for arg in command.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if ["help", "version"].contains(&long) {
                continue;
            }
            let expected = format!("CUSTOM_METRICS_{}", long.to_uppercase().replace('-', "_"));
            assert_eq!(arg.get_env().and_then(|env| env.to_str()), Some(expected.as_str()), "--{long}");
            flags += 1;
        }
        // The groups together still declare every flag (the README's tables list them).
        assert_eq!(flags, 84);
    }

    #[test]
    fn the_admin_listener_is_on_loopback_by_default_and_elsewhere_only_when_allowed() {
        let config = parse(&["--standalone"]).unwrap();
        let admin = config.admin.unwrap();
        assert_eq!(admin.address, "127.0.0.1:8081".parse().unwrap());
        assert_eq!(admin.max_page_size, 1000);
        assert_eq!(parse(&["--standalone", "--admin-address="]).unwrap().admin, None);
        let error = parse(&["--admin-address=0.0.0.0:8081"]).unwrap_err();
        assert!(error.contains("not a loopback address") && error.contains("--admin-allow-non-loopback"), "{error}");
        let allowed = parse(&["--admin-address=0.0.0.0:9000", "--admin-allow-non-loopback"]).unwrap();
        assert_eq!(allowed.admin.unwrap().address, "0.0.0.0:9000".parse().unwrap());
        let error = parse(&["--admin-max-page-size=0"]).unwrap_err();
        assert!(error.contains("--admin-max-page-size must be greater than zero"), "{error}");
    }

    #[test]
    fn managed_certificates_need_a_cluster_and_give_way_to_a_mounted_certificate() {
        let config = parse(&["--kubeconfig=/k", "--manage-certificates"]).unwrap();
        assert!(config.manage_certificates);
        let flags = &config.cluster().unwrap().certificates;
        assert_eq!(flags.certificate_validity, Duration::from_secs(365 * 24 * 3600));
        assert_eq!(flags.certificate_sync_interval, Duration::from_secs(30));
        assert_eq!(flags.certificate_secret_name, "custom-metrics-apiserver-certs");
        assert_eq!(
            (flags.service_name.as_str(), flags.service_namespace.as_deref()),
            ("custom-metrics-apiserver", None)
        );
        assert!(!parse(&["--kubeconfig=/k"]).unwrap().manage_certificates);
        let mounted = parse(&["--manage-certificates", "--tls-cert-file=/c.pem", "--tls-private-key-file=/k.pem"]);
        assert!(!mounted.unwrap().manage_certificates, "--tls-cert-file turns management off");
        let error = parse(&["--standalone", "--manage-certificates"]).unwrap_err();
        assert!(error.contains("--manage-certificates") && error.contains("--standalone"), "{error}");
        let error = parse(&["--manage-certificates", "--certificate-validity=2m", "--certificate-sync-interval=11s"])
            .unwrap_err();
        assert!(error.contains("at least 12 times --certificate-sync-interval"), "{error}");
        let short = parse(&["--manage-certificates", "--certificate-validity=2m", "--certificate-sync-interval=10s"]);
        assert_eq!(short.unwrap().cluster().unwrap().certificates.certificate_validity, Duration::from_secs(120));
        let error = parse(&["--certificate-sync-interval=0"]).unwrap_err();
        assert!(error.contains("--certificate-sync-interval must be greater than zero"), "{error}");
    }

    #[test]
    fn inconsistent_flags_are_refused() {
        assert!(parse(&["--standalone", "--secure-port=8080"]).unwrap_err().contains("different ports"));
        assert!(parse(&["--standalone", "--tls-cert-file=/c.pem"]).is_err());
        assert!(parse(&["--standalone", "--max-series=0"]).unwrap_err().contains("--max-series"));
        assert!(parse(&["--standalone", "--max-batch-items=0"]).unwrap_err().contains("--max-batch-items"));
        assert!(parse(&["--standalone", "--max-batch-body-bytes=0"]).unwrap_err().contains("--max-batch-body-bytes"));
        assert!(parse(&["--standalone", "--max-push-series=0"]).unwrap_err().contains("--max-push-series"));
        assert!(
            parse(&["--standalone", "--object-labels=pod,namespace"])
                .unwrap_err()
                .contains("cannot be an object label")
        );
        let config = Config::from_args(["x", "--standalone", "--object-labels=app=deployments.apps"]).unwrap();
        assert_eq!(config.object_labels.labels()[0].resource, "deployments.apps");
        assert!(parse(&["--standalone", "--metric-ttl=soon"]).is_err());
        assert!(parse(&["--standalone", "--log-format=xml"]).is_err());
        assert!(parse(&["--standalone", "--store=redis://h:1/x"]).unwrap_err().contains("database number"));
        assert!(parse(&["--authorization-always-allow-paths=/a*b"]).unwrap_err().contains("trailing *"));
    }
}
