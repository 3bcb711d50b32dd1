//! The command-line flags of cluster mode: the client, discovery, the label index, and the delegated
//! authentication and authorization that only cluster mode does. Flattened into [`crate::config::Flags`]; with
//! `--standalone` they are parsed but unused.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::auth::flags::{AuthenticationFlags, AuthenticatorFlags, AuthorizationFlags};
use crate::duration::parse_duration;

/// Everything cluster mode needs beyond the common settings.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ClusterFlags {
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

    /// The authenticator's client, TokenReview cache and rate.
    #[command(flatten)]
    pub authenticator: AuthenticatorFlags,

    /// Client-certificate and front-proxy settings.
    #[command(flatten)]
    pub authentication: AuthenticationFlags,

    /// The authorizer's client, cache and always-allowed paths.
    #[command(flatten)]
    pub authorization: AuthorizationFlags,

    /// The serving certificate the adapter manages itself.
    #[command(flatten)]
    pub certificates: CertificateFlags,
}

/// The self-managed serving certificate and the APIServices' caBundle (docs/architecture.md §11).
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct CertificateFlags {
    /// Keep a CA and a serving certificate for `<service>.<namespace>.svc` in a Secret of the namespace (created by
    /// the first replica, loaded by the others), write the CA into the caBundle of the adapter's three APIServices
    /// (and put it back if removed), and renew both at 2/3 of --certificate-validity without a restart. Off when
    /// --tls-cert-file is given.
    #[arg(long, env = "CUSTOM_METRICS_MANAGE_CERTIFICATES", help_heading = "Certificates")]
    pub manage_certificates: bool,

    /// Lifetime of the managed CA and serving certificate; they are renewed at 2/3 of it. At least 12 times
    /// --certificate-sync-interval.
    #[arg(long, env = "CUSTOM_METRICS_CERTIFICATE_VALIDITY", default_value = "365d", value_parser = parse_duration, help_heading = "Certificates")]
    pub certificate_validity: Duration,

    /// How often each replica reads the certificate Secret and checks the APIServices' caBundle. A renewed
    /// certificate is served two intervals after its CA entered the caBundle.
    #[arg(long, env = "CUSTOM_METRICS_CERTIFICATE_SYNC_INTERVAL", default_value = "30s", value_parser = parse_duration, help_heading = "Certificates")]
    pub certificate_sync_interval: Duration,

    /// Name of the Secret holding the managed CA and serving certificate, in --service-namespace.
    #[arg(
        long,
        env = "CUSTOM_METRICS_CERTIFICATE_SECRET_NAME",
        default_value = "custom-metrics-apiserver-certs",
        help_heading = "Certificates"
    )]
    pub certificate_secret_name: String,

    /// Name of the Service the APIServices point at; the managed certificate is for `<service>.<namespace>.svc`
    /// and `<service>.<namespace>.svc.cluster.local`.
    #[arg(
        long,
        env = "CUSTOM_METRICS_SERVICE_NAME",
        default_value = "custom-metrics-apiserver",
        help_heading = "Certificates"
    )]
    pub service_name: String,

    /// Namespace of that Service and of the certificate Secret [default: the namespace of the kubeconfig's
    /// context, or the pod's own namespace in a cluster].
    #[arg(long, env = "CUSTOM_METRICS_SERVICE_NAMESPACE", help_heading = "Certificates")]
    pub service_namespace: Option<String>,
}
