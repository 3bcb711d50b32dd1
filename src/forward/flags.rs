//! The command-line flags of forwarding to another adapter (docs/architecture.md §13). Flattened into
//! [`crate::config::Flags`]; [`ForwardFlags::config`] checks them into a [`ForwardConfig`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::duration::parse_duration;

/// Where reads of metrics we do not hold go, and how.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ForwardFlags {
    /// URL of the adapter that served custom.metrics.k8s.io before this one (e.g.
    /// `https://prometheus-adapter.monitoring.svc`): reads of custom metrics this adapter does not hold are
    /// forwarded to it after this adapter's own authorization, and its discovery entries are listed after ours.
    #[arg(long, env = "CUSTOM_METRICS_FORWARD_CUSTOM_METRICS", help_heading = "Forwarding")]
    pub forward_custom_metrics: Option<String>,

    /// URL of the adapter that served external.metrics.k8s.io before this one (e.g.
    /// `https://keda-operator-metrics-apiserver.keda.svc`): the same for external metrics.
    #[arg(long, env = "CUSTOM_METRICS_FORWARD_EXTERNAL_METRICS", help_heading = "Forwarding")]
    pub forward_external_metrics: Option<String>,

    /// PEM bundle of the CAs that sign the neighbours' serving certificates (required for https URLs: nothing else
    /// is trusted).
    #[arg(long, env = "CUSTOM_METRICS_FORWARD_CA_FILE", help_heading = "Forwarding")]
    pub forward_ca_file: Option<PathBuf>,

    /// File holding the bearer token sent to the neighbours (e.g. the pod's service-account token); read again for
    /// every forwarded request, so a rotated token is used at once. https only.
    #[arg(long, env = "CUSTOM_METRICS_FORWARD_TOKEN_FILE", help_heading = "Forwarding")]
    pub forward_token_file: Option<PathBuf>,

    /// PEM client certificate presented to the neighbours (with --forward-client-key-file). https only.
    #[arg(long, env = "CUSTOM_METRICS_FORWARD_CLIENT_CERT_FILE", help_heading = "Forwarding")]
    pub forward_client_cert_file: Option<PathBuf>,

    /// PEM private key of --forward-client-cert-file.
    #[arg(long, env = "CUSTOM_METRICS_FORWARD_CLIENT_KEY_FILE", help_heading = "Forwarding")]
    pub forward_client_key_file: Option<PathBuf>,

    /// Longest wait for a connection to a neighbour (TCP and TLS).
    #[arg(long, env = "CUSTOM_METRICS_FORWARD_CONNECT_TIMEOUT", default_value = "2s", value_parser = parse_duration, help_heading = "Forwarding")]
    pub forward_connect_timeout: Duration,

    /// Longest time one forwarded request (or discovery read) may take, connection and whole answer included;
    /// then it fails with 503.
    #[arg(long, env = "CUSTOM_METRICS_FORWARD_TIMEOUT", default_value = "5s", value_parser = parse_duration, help_heading = "Forwarding")]
    pub forward_timeout: Duration,

    /// Requests in flight to one neighbour at most, hence its open connections (HTTP/1.1, one request per
    /// connection; as many are kept idle for reuse); a read beyond is refused at once with 503.
    #[arg(long, env = "CUSTOM_METRICS_FORWARD_MAX_CONNECTIONS", default_value_t = 16, help_heading = "Forwarding")]
    pub forward_max_connections: usize,

    /// Consecutive failures (no answer, a timeout, 502, 503 or 504) after which a neighbour's circuit opens:
    /// forwarded reads then fail at once with 503 and its discovery entries are left out.
    #[arg(long, env = "CUSTOM_METRICS_FORWARD_FAILURE_THRESHOLD", default_value_t = 5, help_heading = "Forwarding")]
    pub forward_failure_threshold: u32,

    /// How long an open circuit stays open; then one request probes the neighbour (half-open) and closes it again
    /// on success.
    #[arg(long, env = "CUSTOM_METRICS_FORWARD_COOL_DOWN", default_value = "15s", value_parser = parse_duration, help_heading = "Forwarding")]
    pub forward_cool_down: Duration,

    /// How long a neighbour's discovery document is served from memory before it is read again (in the
    /// background: the stale copy is served meanwhile).
    #[arg(long, env = "CUSTOM_METRICS_FORWARD_DISCOVERY_TTL", default_value = "30s", value_parser = parse_duration, help_heading = "Forwarding")]
    pub forward_discovery_ttl: Duration,
}

/// How a neighbour is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardConfig {
    /// The custom-metrics neighbour's base URL (no trailing slash).
    pub custom: Option<String>,
    /// The external-metrics neighbour's base URL (no trailing slash).
    pub external: Option<String>,
    /// CA bundle for https neighbours.
    pub ca_file: Option<PathBuf>,
    /// Bearer token file.
    pub token_file: Option<PathBuf>,
    /// Client certificate and key files.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Total timeout of one request.
    pub timeout: Duration,
    /// Requests in flight (and connections) per neighbour.
    pub max_connections: usize,
    /// Consecutive failures that open the circuit.
    pub failure_threshold: u32,
    /// Time an open circuit stays open.
    pub cool_down: Duration,
    /// Time a discovery document is served from memory.
    pub discovery_ttl: Duration,
}

/// Why the forwarding flags do not describe a neighbour.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardConfigError {
    /// Not a URL we can forward to.
    #[error("{flag}={url}: {reason}")]
    BadUrl {
        /// The flag.
        flag: &'static str,
        /// Its value.
        url: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// TLS without anything to trust.
    #[error("{flag} is an https URL: give --forward-ca-file, the CA bundle that signed the neighbour's certificate")]
    NoCa {
        /// The flag.
        flag: &'static str,
    },
    /// Credentials over plain HTTP.
    #[error(
        "{flag} is a plain http URL, which must not carry credentials: use https or drop --forward-token-file and --forward-client-cert-file"
    )]
    CredentialsOverHttp {
        /// The flag.
        flag: &'static str,
    },
    /// One half of a key pair.
    #[error("--forward-client-cert-file and --forward-client-key-file go together")]
    HalfKeyPair,
    /// Settings for a neighbour that is not there.
    #[error("{0} is set but neither --forward-custom-metrics nor --forward-external-metrics is")]
    NoNeighbour(&'static str),
    /// A bound of zero would refuse everything.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
}

impl ForwardFlags {
    /// Checks the flags; `Ok(None)` when nothing is forwarded.
    pub fn config(&self) -> Result<Option<ForwardConfig>, ForwardConfigError> {
        let credentials = self.forward_token_file.is_some() || self.forward_client_cert_file.is_some();
        let client_cert = match (&self.forward_client_cert_file, &self.forward_client_key_file) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            (None, None) => None,
            _ => return Err(ForwardConfigError::HalfKeyPair),
        };
        let custom = check_url("--forward-custom-metrics", self.forward_custom_metrics.as_deref())?;
        let external = check_url("--forward-external-metrics", self.forward_external_metrics.as_deref())?;
        if custom.is_none() && external.is_none() {
            for (flag, set) in [
                ("--forward-ca-file", self.forward_ca_file.is_some()),
                ("--forward-token-file", self.forward_token_file.is_some()),
                ("--forward-client-cert-file", client_cert.is_some()),
            ] {
                if set {
                    return Err(ForwardConfigError::NoNeighbour(flag));
                }
            }
            return Ok(None);
        }
        for (flag, url) in [("--forward-custom-metrics", &custom), ("--forward-external-metrics", &external)] {
            match url {
                Some(url) if url.starts_with("https://") && self.forward_ca_file.is_none() => {
                    return Err(ForwardConfigError::NoCa { flag });
                }
                Some(url) if url.starts_with("http://") && credentials => {
                    return Err(ForwardConfigError::CredentialsOverHttp { flag });
                }
                _ => {}
            }
        }
        for (flag, zero) in [
            ("--forward-max-connections", self.forward_max_connections == 0),
            ("--forward-failure-threshold", self.forward_failure_threshold == 0),
            ("--forward-timeout", self.forward_timeout.is_zero()),
            ("--forward-connect-timeout", self.forward_connect_timeout.is_zero()),
        ] {
            if zero {
                return Err(ForwardConfigError::Zero(flag));
            }
        }
        Ok(Some(ForwardConfig {
            custom,
            external,
            ca_file: self.forward_ca_file.clone(),
            token_file: self.forward_token_file.clone(),
            client_cert,
            connect_timeout: self.forward_connect_timeout,
            timeout: self.forward_timeout,
            max_connections: self.forward_max_connections,
            failure_threshold: self.forward_failure_threshold,
            cool_down: self.forward_cool_down,
            discovery_ttl: self.forward_discovery_ttl,
        }))
    }
}

/// An http or https URL with a host and nothing a request path could not follow (no query, fragment or user
/// info), without its trailing slash; `None` for no flag or an empty one.
fn check_url(flag: &'static str, url: Option<&str>) -> Result<Option<String>, ForwardConfigError> {
    let Some(url) = url.filter(|url| !url.is_empty()) else {
        return Ok(None);
    };
    let bad = |reason| ForwardConfigError::BadUrl { flag, url: url.to_string(), reason };
    let parsed = reqwest::Url::parse(url).map_err(|_| bad("not a URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("the scheme must be https (or http for a neighbour without credentials)"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad("credentials go in --forward-token-file or --forward-client-cert-file, not in the URL"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad("a query or fragment cannot be followed by the forwarded request's path"));
    }
    Ok(Some(parsed.as_str().trim_end_matches('/').to_string()))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        forward: ForwardFlags,
    }

    fn config(args: &[&str]) -> Result<Option<ForwardConfig>, ForwardConfigError> {
        Cli::try_parse_from(std::iter::once("x").chain(args.iter().copied())).unwrap().forward.config()
    }

    #[test]
    fn nothing_is_forwarded_by_default_and_the_defaults_are_bounded() {
        assert_eq!(config(&[]), Ok(None));
        let config = config(&["--forward-external-metrics=http://neighbour:8080/"]).unwrap().unwrap();
        assert_eq!(config.external.as_deref(), Some("http://neighbour:8080"));
        assert_eq!(config.custom, None);
        assert_eq!(config.timeout, Duration::from_secs(5));
        assert_eq!(config.connect_timeout, Duration::from_secs(2));
        assert_eq!(config.max_connections, 16);
        assert_eq!(config.failure_threshold, 5);
        assert_eq!(config.cool_down, Duration::from_secs(15));
        assert_eq!(config.discovery_ttl, Duration::from_secs(30));
    }

    #[test]
    fn https_needs_a_ca_and_credentials_need_https() {
        let error = config(&["--forward-custom-metrics=https://adapter.monitoring.svc"]).unwrap_err();
        assert!(error.to_string().contains("--forward-ca-file"), "{error}");
        let error = config(&["--forward-custom-metrics=http://a", "--forward-token-file=/t"]).unwrap_err();
        assert_eq!(error, ForwardConfigError::CredentialsOverHttp { flag: "--forward-custom-metrics" });
        let ok =
            config(&["--forward-custom-metrics=https://a/base/", "--forward-ca-file=/ca", "--forward-token-file=/t"]);
        assert_eq!(ok.unwrap().unwrap().custom.as_deref(), Some("https://a/base"));
    }

    #[test]
    fn bad_urls_and_stray_settings_are_refused_with_the_flag_named() {
        for url in ["neighbour:8080", "ftp://a", "http://u:p@a", "http://a/?x=1", "http://a/#f", "not a url"] {
            let error = config(&[&format!("--forward-external-metrics={url}")]).unwrap_err();
            assert!(error.to_string().starts_with("--forward-external-metrics="), "{url}: {error}");
        }
        assert_eq!(config(&["--forward-token-file=/t"]), Err(ForwardConfigError::NoNeighbour("--forward-token-file")));
        assert_eq!(
            config(&["--forward-external-metrics=https://a", "--forward-ca-file=/c", "--forward-client-cert-file=/c"]),
            Err(ForwardConfigError::HalfKeyPair)
        );
        for flag in [
            "--forward-max-connections",
            "--forward-failure-threshold",
            "--forward-timeout",
            "--forward-connect-timeout",
        ] {
            let error = config(&["--forward-external-metrics=http://a", &format!("{flag}=0")]).unwrap_err();
            assert_eq!(error, ForwardConfigError::Zero(flag));
        }
    }
}
