//! The adapter's state as the status page shows it (docs/architecture.md §14): sections of entries, each from a
//! [`StateSource`]. The built-in sources: the store, the label index, the APIServices as kube-apiserver sees them,
//! the serving certificate. Another component adds its own section with [`super::Admin::with_state`] (for example a
//! neighbour adapter's health).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use serde::Serialize;

use crate::clock::Clock;
use crate::cluster::certificates::apiservice_names;
use crate::cluster::label_index::WatchLabelIndex;
use crate::forward::{CircuitState, Forwarder, NeighbourHealth};
use crate::server::tls::ServingCertificate;
use crate::store::MetricStore;

/// How long the page waits for a source that makes a round trip (the store's health, kube-apiserver).
pub const SOURCE_TIMEOUT: Duration = Duration::from_secs(2);

/// How an entry stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// As it should be.
    Ok,
    /// Works, but needs attention soon (a certificate near its expiry, a watch not yet listed).
    Warning,
    /// Broken.
    Error,
    /// Facts, no judgement.
    Info,
}

/// One line of a section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateEntry {
    /// What it is about.
    pub name: String,
    /// How it stands.
    pub level: Level,
    /// What the page shows of it.
    pub detail: String,
}

impl StateEntry {
    /// An entry.
    pub fn new(name: impl Into<String>, level: Level, detail: impl Into<String>) -> Self {
        StateEntry { name: name.into(), level, detail: detail.into() }
    }
}

/// One section of the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateSection {
    /// Its title.
    pub title: &'static str,
    /// Its entries.
    pub entries: Vec<StateEntry>,
}

/// Something that reports a section of the state, asked on every view of the page.
#[async_trait]
pub trait StateSource: Send + Sync + 'static {
    /// The section's title.
    fn title(&self) -> &'static str;
    /// The section's entries now; a source that makes a round trip bounds it by [`SOURCE_TIMEOUT`].
    async fn entries(&self) -> Vec<StateEntry>;
}

/// The neighbour adapters that reads of metrics not held here go to (docs/architecture.md §13): per group, its URL,
/// circuit, requests and discovery documents.
pub struct NeighbourState {
    /// The forwarder whose neighbours are shown.
    pub forwarder: Arc<Forwarder>,
}

#[async_trait]
impl StateSource for NeighbourState {
    fn title(&self) -> &'static str {
        "Neighbour adapters"
    }

    async fn entries(&self) -> Vec<StateEntry> {
        self.forwarder.health().iter().map(neighbour_entry).collect()
    }
}

/// One neighbour as one line: an open circuit or a failing discovery read is an error, failures a warning.
fn neighbour_entry(health: &NeighbourHealth) -> StateEntry {
    let failing_discovery: Vec<String> = health
        .discovery
        .iter()
        .filter_map(|(group_version, _, error)| error.as_ref().map(|error| format!("{group_version}: {error}")))
        .collect();
    let level = match health.circuit {
        CircuitState::Open => Level::Error,
        _ if !failing_discovery.is_empty() => Level::Error,
        CircuitState::HalfOpen => Level::Warning,
        CircuitState::Closed if health.consecutive_failures > 0 => Level::Warning,
        CircuitState::Closed => Level::Ok,
    };
    let circuit = match health.circuit {
        CircuitState::Closed => "circuit closed",
        CircuitState::Open => "circuit open: reads refused until the cool-down ends",
        CircuitState::HalfOpen => "circuit half-open: probing",
    };
    let entries: usize = health.discovery.iter().map(|(_, entries, _)| entries).sum();
    let mut detail = format!(
        "{} — {circuit}; {} answered, {} failed, {} refused, {} in flight; {entries} discovery entries",
        health.url, health.answered, health.failed, health.refused, health.in_flight
    );
    if let Some(error) = &health.last_error {
        detail.push_str(&format!("; last failure: {error}"));
    }
    if !failing_discovery.is_empty() {
        detail.push_str(&format!("; discovery failing: {}", failing_discovery.join(", ")));
    }
    StateEntry::new(health.group, level, detail)
}

/// The store: kind, health, series and bytes, and for a replicated store how its copy follows.
pub struct StoreState {
    /// The store.
    pub store: Arc<dyn MetricStore>,
    /// `memory`, or the Redis address without credentials.
    pub kind: String,
}

#[async_trait]
impl StateSource for StoreState {
    fn title(&self) -> &'static str {
        "Store"
    }

    async fn entries(&self) -> Vec<StateEntry> {
        let mut entries = vec![StateEntry::new("kind", Level::Info, &self.kind)];
        entries.push(match tokio::time::timeout(SOURCE_TIMEOUT, self.store.health()).await {
            Ok(Ok(())) => StateEntry::new("health", Level::Ok, "healthy"),
            Ok(Err(error)) => StateEntry::new("health", Level::Error, error.to_string()),
            Err(_) => StateEntry::new("health", Level::Error, format!("no answer within {SOURCE_TIMEOUT:?}")),
        });
        entries.push(StateEntry::new(
            "size",
            Level::Info,
            format!("{} series, {} bytes accounted", self.store.series_count(), self.store.bytes_used()),
        ));
        if let Some(stats) = self.store.stats() {
            entries.push(StateEntry::new(
                "series",
                Level::Info,
                format!(
                    "{} custom, {} external, {} expired since start",
                    stats.custom_series, stats.external_series, stats.expired_series
                ),
            ));
            if let Some(replication) = stats.replication {
                entries.push(match replication.lag_seconds {
                    // The copy follows within about a second while it keeps up (docs/architecture.md §10).
                    Some(lag) if lag < 5.0 => StateEntry::new("replication lag", Level::Ok, format!("{lag:.1} s")),
                    Some(lag) => StateEntry::new("replication lag", Level::Warning, format!("{lag:.1} s")),
                    None => StateEntry::new("replication lag", Level::Warning, "never in sync yet"),
                });
                let resyncs: Vec<String> = replication.resyncs.iter().map(|(why, n)| format!("{why}: {n}")).collect();
                entries.push(StateEntry::new("full loads", Level::Info, resyncs.join(", ")));
            }
        }
        entries
    }
}

/// The label index: one entry per watched resource type (cluster mode), or what standalone mode does instead.
pub enum LabelIndexState {
    /// Cluster mode.
    Watches(Arc<WatchLabelIndex>),
    /// Standalone: no index.
    Standalone,
}

#[async_trait]
impl StateSource for LabelIndexState {
    fn title(&self) -> &'static str {
        "Label index"
    }

    async fn entries(&self) -> Vec<StateEntry> {
        let LabelIndexState::Watches(index) = self else {
            return vec![StateEntry::new(
                "standalone",
                Level::Info,
                "no cluster: no label index, reads take the empty label selector only",
            )];
        };
        index
            .watch_states()
            .into_iter()
            .map(|watch| {
                let (level, detail) = match (&watch.error, watch.synced, watch.current) {
                    (Some(error), _, _) => (Level::Error, format!("initial list failing: {error}")),
                    (None, false, _) => (Level::Warning, "initial list not complete yet".to_string()),
                    (None, true, true) => (Level::Ok, format!("synced, {} objects", watch.objects)),
                    (None, true, false) => (
                        Level::Warning,
                        format!("synced, {} objects; the watch is restarting (sweep paused)", watch.objects),
                    ),
                };
                StateEntry::new(watch.resource, level, detail)
            })
            .collect()
    }
}

/// The adapter's APIServices as kube-apiserver sees them: registered or not, and their `Available` condition.
pub struct ApiServiceState {
    /// The adapter's client.
    pub client: kube::Client,
}

#[async_trait]
impl StateSource for ApiServiceState {
    fn title(&self) -> &'static str {
        "APIServices"
    }

    async fn entries(&self) -> Vec<StateEntry> {
        let api: kube::Api<APIService> = kube::Api::all(self.client.clone());
        let mut entries = Vec::new();
        for name in apiservice_names() {
            let entry = match tokio::time::timeout(SOURCE_TIMEOUT, api.get_opt(&name)).await {
                Err(_) => StateEntry::new(
                    &name,
                    Level::Error,
                    format!("kube-apiserver did not answer within {SOURCE_TIMEOUT:?}"),
                ),
                // The manifest and the chart grant `get` on the APIServices with managed certificates only.
                Ok(Err(kube::Error::Api(status))) if status.code == 403 => StateEntry::new(
                    &name,
                    Level::Info,
                    "not readable by the adapter: its RBAC has no get on this APIService (granted with --manage-certificates); kubectl get apiservice shows it",
                ),
                Ok(Err(error)) => StateEntry::new(&name, Level::Error, format!("cannot read it: {error}")),
                Ok(Ok(None)) => StateEntry::new(&name, Level::Warning, "not registered"),
                Ok(Ok(Some(apiservice))) => availability(&name, &apiservice),
            };
            entries.push(entry);
        }
        entries
    }
}

/// An APIService's `Available` condition as an entry.
fn availability(name: &str, apiservice: &APIService) -> StateEntry {
    let condition = apiservice
        .status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .and_then(|conditions| conditions.iter().find(|c| c.type_ == "Available"));
    let Some(condition) = condition else {
        return StateEntry::new(name, Level::Warning, "registered, no Available condition yet");
    };
    let because = [condition.reason.as_deref(), condition.message.as_deref()]
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(": ");
    match condition.status.as_str() {
        "True" => StateEntry::new(name, Level::Ok, "Available"),
        status => StateEntry::new(name, Level::Error, format!("Available={status} {because}").trim_end().to_string()),
    }
}

/// The serving certificate in use: its expiry.
pub struct CertificateState {
    /// The certificate the secure listener serves now (replaced on renewals).
    pub serving: Arc<ServingCertificate>,
    /// The clock the expiry is measured by.
    pub clock: Arc<dyn Clock>,
}

/// A certificate expiring sooner than this is a warning.
const CERTIFICATE_WARNING: i64 = 7 * 24 * 3600;

#[async_trait]
impl StateSource for CertificateState {
    fn title(&self) -> &'static str {
        "TLS"
    }

    async fn entries(&self) -> Vec<StateEntry> {
        let leaf = self.serving.leaf();
        let parsed = x509_parser::parse_x509_certificate(&leaf);
        let Ok((_, certificate)) = parsed else {
            return vec![StateEntry::new("serving certificate", Level::Error, "cannot parse the served certificate")];
        };
        let not_after = certificate.validity().not_after.timestamp();
        let left = not_after - self.clock.now_millis() / 1000;
        let when = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(not_after).unwrap_or(0)),
        );
        let subject = certificate.subject().to_string();
        let level = if left <= 0 {
            Level::Error
        } else if left < CERTIFICATE_WARNING {
            Level::Warning
        } else {
            Level::Ok
        };
        let detail = if left <= 0 {
            format!("{subject}: expired at {when}")
        } else {
            format!("{subject}: expires at {when}, in {}", super::html::duration(left))
        };
        vec![StateEntry::new("serving certificate", level, detail)]
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cluster::fake_apiserver::FakeApiServer;

    const APISERVICES: &str = "/apis/apiregistration.k8s.io/v1/apiservices";

    #[test]
    fn a_neighbour_is_ok_while_it_answers_and_an_error_when_its_circuit_opens_or_its_discovery_fails() {
        let health = |circuit, consecutive_failures, discovery_error: Option<&str>| NeighbourHealth {
            group: "external.metrics.k8s.io",
            url: "https://keda-metrics:443/".to_string(),
            circuit,
            consecutive_failures,
            last_error: (consecutive_failures > 0).then(|| "connection refused".to_string()),
            answered: 7,
            failed: consecutive_failures.into(),
            refused: 0,
            in_flight: 1,
            discovery: vec![("external.metrics.k8s.io/v1beta1", 3, discovery_error.map(str::to_string))],
        };
        let healthy = neighbour_entry(&health(CircuitState::Closed, 0, None));
        assert_eq!((healthy.name.as_str(), healthy.level), ("external.metrics.k8s.io", Level::Ok));
        assert!(healthy.detail.contains("https://keda-metrics:443/") && healthy.detail.contains("7 answered"));
        assert!(healthy.detail.contains("3 discovery entries"), "{}", healthy.detail);
        let failing = neighbour_entry(&health(CircuitState::Closed, 2, None));
        assert_eq!(failing.level, Level::Warning);
        assert!(failing.detail.contains("last failure: connection refused"), "{}", failing.detail);
        assert_eq!(neighbour_entry(&health(CircuitState::HalfOpen, 5, None)).level, Level::Warning);
        let open = neighbour_entry(&health(CircuitState::Open, 5, None));
        assert_eq!(open.level, Level::Error);
        assert!(open.detail.contains("circuit open"), "{}", open.detail);
        let discovery = neighbour_entry(&health(CircuitState::Closed, 0, Some("503 Service Unavailable")));
        assert_eq!(discovery.level, Level::Error);
        assert!(discovery.detail.contains("external.metrics.k8s.io/v1beta1: 503 Service Unavailable"));
    }

    #[tokio::test]
    async fn apiservices_show_their_available_condition_as_kube_apiserver_reports_it() {
        let server = FakeApiServer::start().await;
        server.store_objects(APISERVICES);
        let names = apiservice_names();
        let with = |name: &str, status: serde_json::Value| {
            json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": name},
                "spec": {"groupPriorityMinimum": 100, "versionPriority": 100}, "status": status})
        };
        server.put_object(
            APISERVICES,
            with(&names[0], json!({"conditions": [{"type": "Available", "status": "True", "reason": "Passed"}]})),
        );
        server.put_object(
            APISERVICES,
            with(
                &names[1],
                json!({"conditions": [{"type": "Available", "status": "False",
                "reason": "FailedDiscoveryCheck", "message": "no response from https://10.0.0.1:443"}]}),
            ),
        );
        let entries = ApiServiceState { client: server.client() }.entries().await;
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0], StateEntry::new(&names[0], Level::Ok, "Available"));
        assert_eq!(entries[1].level, Level::Error);
        assert_eq!(entries[1].detail, "Available=False FailedDiscoveryCheck: no response from https://10.0.0.1:443");
        assert_eq!(entries[2], StateEntry::new(&names[2], Level::Warning, "not registered"));
        // Without RBAC to read it (a mounted certificate: no ClusterRole for the APIServices), the page says so.
        server.forbid(&format!("{APISERVICES}/{}", names[0]));
        let entries = ApiServiceState { client: server.client() }.entries().await;
        assert_eq!(entries[0].level, Level::Info, "{entries:?}");
        assert!(entries[0].detail.contains("no get on this APIService"), "{entries:?}");
        assert_eq!(entries[1].level, Level::Error, "the others as before");
    }

    #[tokio::test]
    async fn the_certificate_entry_counts_down_to_the_served_certificates_expiry() {
        let pair = crate::server::tls::self_signed().unwrap();
        let serving = Arc::new(ServingCertificate::new(&pair).unwrap());
        let (_, parsed) = x509_parser::pem::parse_x509_pem(pair.cert.as_bytes()).unwrap();
        let not_after = parsed.parse_x509().unwrap().validity().not_after.timestamp();
        let at = |seconds_before: i64| {
            let clock = Arc::new(crate::clock::ManualClock::new((not_after - seconds_before) * 1000));
            CertificateState { serving: Arc::clone(&serving), clock }
        };
        let ok = at(30 * 24 * 3600).entries().await;
        assert_eq!(ok[0].level, Level::Ok, "{ok:?}");
        assert!(ok[0].detail.contains("in 30d"), "{ok:?}");
        assert_eq!(at(3600).entries().await[0].level, Level::Warning);
        let expired = at(-1).entries().await;
        assert_eq!(expired[0].level, Level::Error);
        assert!(expired[0].detail.contains("expired at"), "{expired:?}");
    }
}
