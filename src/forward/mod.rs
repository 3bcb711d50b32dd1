//! Forwarding to another adapter (docs/architecture.md §13): the adapter that served `custom.metrics.k8s.io` or
//! `external.metrics.k8s.io` before this one keeps serving what this one does not hold.
//!
//! - [`flags`]: `--forward-*` into a [`ForwardConfig`].
//! - [`neighbour`]: one neighbour: client, bounds, circuit breaker, discovery cache.
//! - [`breaker`]: the circuit breaker.
//!
//! The read API calls in here only after the pipeline has authorized the request as any read of ours
//! (docs/architecture.md §1.1), and only for a metric it does not hold.

pub mod breaker;
pub mod flags;
pub mod neighbour;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;

pub use breaker::CircuitState;
pub use flags::{ForwardConfig, ForwardConfigError, ForwardFlags};
pub use neighbour::{ForwardError, Neighbour};

use crate::api::group_versions::{CUSTOM_GROUP, EXTERNAL_GROUP};
use crate::api::route::CustomTarget;
use crate::cluster::ResourceMapper;
use crate::response::RequestError;
use crate::store::MetricStore;

/// Why the neighbours' client could not be built (a file of the flags).
#[derive(Debug, thiserror::Error)]
#[error("forwarding: {file}: {message}")]
pub struct SetupError {
    /// The file.
    pub file: PathBuf,
    /// What is wrong with it.
    pub message: String,
}

/// The neighbours, one per group at most.
#[derive(Debug, Default)]
pub struct Forwarder {
    custom: Option<Arc<Neighbour>>,
    external: Option<Arc<Neighbour>>,
}

/// What the status page shows of one neighbour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighbourHealth {
    /// The group it serves for us.
    pub group: &'static str,
    /// Its URL.
    pub url: String,
    /// Its circuit.
    pub circuit: CircuitState,
    /// Consecutive failures while closed (the threshold while open).
    pub consecutive_failures: u32,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// Requests it answered (any status).
    pub answered: u64,
    /// Requests that got no answer.
    pub failed: u64,
    /// Requests refused without being sent (circuit open, too many in flight).
    pub refused: u64,
    /// Requests in flight now.
    pub in_flight: usize,
    /// Its discovery documents as last read: group-version, entries, why the last read failed.
    pub discovery: Vec<(&'static str, usize, Option<String>)>,
}

impl Forwarder {
    /// The neighbours of `config`; their answers are bounded by `max_response_bytes` (`--max-response-bytes`).
    ///
    /// # Errors
    ///
    /// A CA, certificate, key or token file that cannot be read or used.
    pub fn new(config: &ForwardConfig, max_response_bytes: usize) -> Result<Self, SetupError> {
        if let Some(path) = &config.token_file {
            std::fs::metadata(path).map_err(|e| SetupError { file: path.clone(), message: e.to_string() })?;
        }
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls_config(config)?)
            .http1_only()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .pool_max_idle_per_host(config.max_connections)
            .build()
            .map_err(|e| SetupError { file: PathBuf::new(), message: e.to_string() })?;
        let neighbour = |group, url: &Option<String>| {
            url.as_ref()
                .map(|url| Arc::new(Neighbour::new(group, url.clone(), client.clone(), config, max_response_bytes)))
        };
        Ok(Forwarder {
            custom: neighbour(CUSTOM_GROUP, &config.custom),
            external: neighbour(EXTERNAL_GROUP, &config.external),
        })
    }

    /// The custom-metrics neighbour.
    pub fn custom(&self) -> Option<&Arc<Neighbour>> {
        self.custom.as_ref()
    }

    /// The external-metrics neighbour.
    pub fn external(&self) -> Option<&Arc<Neighbour>> {
        self.external.as_ref()
    }

    /// Starts reading each neighbour's discovery documents in the background, so that the first discovery
    /// request finds them.
    pub fn prefetch(&self) {
        for neighbour in self.neighbours() {
            for served in crate::api::group_versions::SERVED.iter().filter(|served| served.group == neighbour.group) {
                neighbour.resources(served.api_version);
            }
        }
    }

    fn neighbours(&self) -> impl Iterator<Item = &Arc<Neighbour>> {
        self.custom.iter().chain(self.external.iter())
    }

    /// A snapshot of each neighbour, for the status page.
    pub fn health(&self) -> Vec<NeighbourHealth> {
        self.neighbours()
            .map(|n| {
                let (circuit, consecutive_failures) = n.circuit();
                NeighbourHealth {
                    group: n.group,
                    url: n.url.clone(),
                    circuit,
                    consecutive_failures,
                    last_error: n.last_error.lock().map(|e| e.clone()).unwrap_or(None),
                    answered: n.counters.answered.load(Ordering::Relaxed),
                    failed: n.counters.failed.load(Ordering::Relaxed),
                    refused: n.counters.refused.load(Ordering::Relaxed),
                    in_flight: n.in_flight(),
                    discovery: n.discovery_state(),
                }
            })
            .collect()
    }

    /// The neighbours' figures in `/metrics` (docs/wire-contract.md §11).
    ///
    /// # Errors
    ///
    /// The encoder's.
    pub fn encode_metrics(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let health = self.health();
        let mut family = encoder.encode_descriptor(
            "metrics_apiserver_forwarded_requests",
            "Requests forwarded to a neighbour adapter by its group and result (answered: any status; failed: no answer; refused: not sent, its circuit open or too many in flight)",
            None,
            MetricType::Counter,
        )?;
        for h in &health {
            for (result, value) in [("answered", h.answered), ("failed", h.failed), ("refused", h.refused)] {
                ConstCounter::new(value).encode(family.encode_family(&[("group", h.group), ("result", result)])?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "metrics_apiserver_forward_circuit_open",
            "1 while a neighbour adapter's circuit is open or half-open (its reads fail at once, its discovery entries are left out)",
            None,
            MetricType::Gauge,
        )?;
        for h in &health {
            let open = i64::from(h.circuit != CircuitState::Closed);
            ConstGauge::new(open).encode(family.encode_family(&[("group", h.group)])?)?;
        }
        let mut family = encoder.encode_descriptor(
            "metrics_apiserver_forward_in_flight",
            "Requests in flight to a neighbour adapter (at most --forward-max-connections)",
            None,
            MetricType::Gauge,
        )?;
        for h in &health {
            let in_flight = i64::try_from(h.in_flight).unwrap_or(i64::MAX);
            ConstGauge::new(in_flight).encode(family.encode_family(&[("group", h.group)])?)?;
        }
        let mut family = encoder.encode_descriptor(
            "metrics_apiserver_forward_discovery_failures",
            "Reads of a neighbour adapter's discovery that failed (its entries were left out until the next read)",
            None,
            MetricType::Counter,
        )?;
        for n in self.neighbours() {
            let failures = n.counters.discovery_failures.load(Ordering::Relaxed);
            ConstCounter::new(failures).encode(family.encode_family(&[("group", n.group)])?)?;
        }
        Ok(())
    }
}

/// Whether we hold the custom metric `target` asks for, which decides whether a read that found nothing is ours
/// or the neighbour's (docs/architecture.md §13): a metric of a resource (`pods/q`) is ours while any object of that
/// resource has a live value of it, in any namespace (exactly what our discovery lists); every metric of one object
/// is ours while that object has a live value of any metric.
///
/// # Errors
///
/// The resource is unknown (404, as our own read answers), or the store failed.
pub async fn holds_custom(
    store: &dyn MetricStore,
    mapper: &dyn ResourceMapper,
    target: &CustomTarget,
) -> Result<bool, RequestError> {
    let (namespace, resource) = match target {
        CustomTarget::Object { namespace, resource, .. }
        | CustomTarget::AllObjects { namespace, resource, .. }
        | CustomTarget::ObjectMetrics { namespace, resource, .. } => (namespace.as_deref(), resource.as_str()),
    };
    let info = mapper.resolve(resource).await?;
    let group_resource = info.group_resource();
    match target {
        CustomTarget::Object { metric, .. } | CustomTarget::AllObjects { metric, .. } => Ok(store
            .list_custom_metrics()
            .await?
            .iter()
            .any(|held| held.resource == group_resource && held.metric == *metric)),
        CustomTarget::ObjectMetrics { name, .. } => {
            let namespace = if info.namespaced { namespace.unwrap_or("") } else { "" };
            Ok(!store.list_object_metrics(&group_resource, namespace, name).await?.is_empty())
        }
    }
}

/// Whether we hold the external metric `metric` of `namespace`: any live series of that name there, whatever its
/// labels (docs/architecture.md §13).
///
/// # Errors
///
/// The store failed.
pub async fn holds_external(store: &dyn MetricStore, namespace: &str, metric: &str) -> Result<bool, RequestError> {
    Ok(!store.list_external(namespace, metric).await?.is_empty())
}

/// Our discovery document with the neighbour's entries after ours, those whose name we list already left out, at
/// most `limit` entries in all. Our `placeholder` (listed only while we hold nothing) gives way to the neighbour's
/// entries.
pub fn union(ours: &impl serde::Serialize, theirs: &[Value], placeholder: &str, limit: usize) -> Value {
    let Ok(mut document) = serde_json::to_value(ours) else {
        return Value::Null;
    };
    let Some(resources) = document.get_mut("resources").and_then(Value::as_array_mut) else {
        return document;
    };
    let name = |r: &Value| r.get("name").and_then(Value::as_str).map(str::to_string);
    if !theirs.is_empty() && resources.len() == 1 && name(&resources[0]).as_deref() == Some(placeholder) {
        resources.clear();
    }
    let mut listed: std::collections::HashSet<String> = resources.iter().filter_map(name).collect();
    for entry in theirs {
        if resources.len() >= limit {
            break;
        }
        if let Some(n) = name(entry)
            && listed.insert(n)
        {
            resources.push(entry.clone());
        }
    }
    document
}

/// The rustls configuration of the neighbours' client: only the CAs of `--forward-ca-file` are trusted; the
/// client certificate, if any, is presented. HTTP/1.1: one request per connection, so that
/// `--forward-max-connections` bounds both.
fn tls_config(config: &ForwardConfig) -> Result<rustls::ClientConfig, SetupError> {
    let error = |file: &Path, message: String| SetupError { file: file.to_path_buf(), message };
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = &config.ca_file {
        let certs = read_certs(ca)?;
        for cert in certs {
            roots.add(cert).map_err(|e| error(ca, e.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| error(Path::new(""), e.to_string()))?
        .with_root_certificates(roots);
    let mut tls = match &config.client_cert {
        Some((cert, key)) => {
            let chain = read_certs(cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| error(key, format!("no private key: {e}")))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| error(cert, e.to_string()))?
        }
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, SetupError> {
    let error = |message: String| SetupError { file: path.to_path_buf(), message };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(format!("bad certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(error("no certificate found".to_string()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_union_lists_ours_first_drops_their_duplicates_and_our_placeholder_and_stops_at_the_limit() {
        let ours = json!({"kind": "APIResourceList", "resources": [{"name": "pods/a"}, {"name": "pods/b"}]});
        let theirs =
            [json!({"name": "pods/b", "kind": "theirs"}), json!({"name": "pods/c"}), json!({"name": "pods/d"})];
        let names = |v: &Value| -> Vec<String> {
            v["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_string()).collect()
        };
        assert_eq!(names(&union(&ours, &theirs, "/custommetrics", 10)), ["pods/a", "pods/b", "pods/c", "pods/d"]);
        assert_eq!(names(&union(&ours, &theirs, "/custommetrics", 3)), ["pods/a", "pods/b", "pods/c"]);
        let placeholder = json!({"resources": [{"name": "/custommetrics"}]});
        assert_eq!(names(&union(&placeholder, &theirs, "/custommetrics", 10)), ["pods/b", "pods/c", "pods/d"]);
        assert_eq!(names(&union(&placeholder, &[], "/custommetrics", 10)), ["/custommetrics"]);
    }
}
