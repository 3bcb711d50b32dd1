//! The command-line flags of delegated authentication and authorization (docs/wire-contract.md §6.1), as
//! Kubernetes' generic API servers name them. Flattened into [`crate::cluster::flags::ClusterFlags`]: only
//! cluster mode authenticates.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::duration::parse_duration;

/// How the [`super::Authenticator`] reaches the cluster and how much TokenReview work and 401 logging it does.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct AuthenticatorFlags {
    /// kubeconfig file for TokenReviews and reading the ConfigMap kube-system/extension-apiserver-authentication
    /// [default: --kubeconfig, else in-cluster].
    #[arg(long, env = "CUSTOM_METRICS_AUTHENTICATION_KUBECONFIG", help_heading = "Authentication")]
    pub authentication_kubeconfig: Option<PathBuf>,

    /// How long TokenReview results are cached.
    #[arg(long, env = "CUSTOM_METRICS_AUTHENTICATION_TOKEN_WEBHOOK_CACHE_TTL", default_value = "10s", value_parser = parse_duration, help_heading = "Authentication")]
    pub authentication_token_webhook_cache_ttl: Duration,

    /// Size of the TokenReview cache in bytes (each entry's user strings plus 288 bytes; tokens are kept as
    /// hashes); the least used entries go first.
    #[arg(long, env = "CUSTOM_METRICS_AUTHENTICATION_TOKEN_WEBHOOK_CACHE_MAX_BYTES", default_value_t = super::authn::DEFAULT_TOKEN_CACHE_MAX_BYTES, help_heading = "Authentication")]
    pub authentication_token_webhook_cache_max_bytes: usize,

    /// TokenReviews a second, at most, for bearer tokens not in the cache (cached answers, valid or not, do not
    /// count; with a zero cache TTL every token counts); beyond it such requests are answered 429 Too Many
    /// Requests with Retry-After.
    #[arg(long, env = "CUSTOM_METRICS_TOKEN_REVIEW_RATE", default_value_t = super::authn::DEFAULT_TOKEN_REVIEW_RATE, help_heading = "Authentication")]
    pub token_review_rate: usize,

    /// Log lines a second, at most, about requests that fail authentication (401); each line written counts the
    /// ones left out since the previous one.
    #[arg(long, env = "CUSTOM_METRICS_UNAUTHORIZED_LOG_RATE", default_value_t = super::authn::DEFAULT_UNAUTHORIZED_LOG_RATE, help_heading = "Authentication")]
    pub unauthorized_log_rate: usize,
}

/// Whom authentication trusts: the CA of client certificates, the front proxy (kube-apiserver's aggregator) and
/// its headers, and whether ConfigMap kube-system/extension-apiserver-authentication fills in what is not given
/// ([`super::AuthenticationConfig::from_flags_and_configmap`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct AuthenticationFlags {
    /// Do not read the ConfigMap kube-system/extension-apiserver-authentication; only the flags configure client
    /// certificate and front-proxy authentication.
    #[arg(
        long = "authentication-skip-lookup",
        env = "CUSTOM_METRICS_AUTHENTICATION_SKIP_LOOKUP",
        help_heading = "Authentication"
    )]
    pub skip_lookup: bool,

    /// Start even when the ConfigMap cannot be read.
    #[arg(
        long = "authentication-tolerate-lookup-failure",
        env = "CUSTOM_METRICS_AUTHENTICATION_TOLERATE_LOOKUP_FAILURE",
        help_heading = "Authentication"
    )]
    pub tolerate_lookup_failure: bool,

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
}

impl AuthenticationFlags {
    /// Whether the ConfigMap has nothing to add: both CA bundles are given by flags (as Kubernetes decides).
    pub fn needs_no_lookup(&self) -> bool {
        self.skip_lookup || (self.client_ca_file.is_some() && self.requestheader_client_ca_file.is_some())
    }
}

/// How the [`super::Authorizer`] reaches the cluster, what it caches and which paths it lets through unasked.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct AuthorizationFlags {
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
    #[arg(long, env = "CUSTOM_METRICS_AUTHORIZATION_WEBHOOK_CACHE_MAX_BYTES", default_value_t = super::authz::DEFAULT_CACHE_MAX_BYTES, help_heading = "Authorization")]
    pub authorization_webhook_cache_max_bytes: usize,

    /// SubjectAccessReviews a second, at most, for anonymous requests (cached decisions do not count); beyond it
    /// such requests are answered 429 Too Many Requests with Retry-After.
    #[arg(long, env = "CUSTOM_METRICS_ANONYMOUS_AUTHORIZATION_RATE", default_value_t = super::authz::DEFAULT_ANONYMOUS_REVIEW_RATE, help_heading = "Authorization")]
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
