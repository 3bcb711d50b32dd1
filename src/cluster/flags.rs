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
}
