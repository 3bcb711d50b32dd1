//! `/metrics`: the adapter's own metrics in the Prometheus text format (docs/wire-contract.md §11), with the names
//! and labels of Kubernetes' aggregated API servers where they exist, so that the usual apiserver dashboards work.
//!
//! One [`Metrics`] is built by `app.rs` and handed to the components at wiring time: the pipeline counts requests
//! ([`Metrics::request_started`]), the read API observes the age of the values it returns ([`Freshness`]), the
//! delegated reviews are timed by wrapping the reviewers ([`InstrumentedTokenReviewer`],
//! [`InstrumentedAccessReviewer`]), and the store's figures are read at scrape time. Nothing is global.
//!
//! Label values come from fixed sets (indices into tables of `&'static str`, status codes), so a request allocates
//! nothing for its labels and a client cannot create series at will. Requests are counted in per-thread shards
//! (`requests`), summed when scraped.

mod requests;

use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use http::{Method, StatusCode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet, prometheus_text,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use requests::{InFlight, RequestCounts, RequestKind};

use crate::api::group_versions::{CUSTOM_GROUP, EXTERNAL_GROUP, GroupVersion, SERVED};
use crate::auth::{AccessReviewer, Attributes, CacheCounters, Decision, ReviewError, TokenReviewer, UserInfo};
use crate::cluster::label_index::WatchLabelIndex;
use crate::histogram::{AtomicHistogram, HistogramSnapshot};
use crate::ingest::WRITE_EXTERNAL_PREFIX;
use crate::response::{self, HttpResponse};
use crate::store::{MetricStore, ReplicationStats};

/// The path of the endpoint.
pub const METRICS_PATH: &str = "/metrics";

/// Buckets of `apiserver_request_duration_seconds`: Kubernetes' (k8s.io/apiserver `pkg/endpoints/metrics`).
const REQUEST_DURATION_BUCKETS: [f64; 23] = [
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0,
    45.0, 60.0,
];
/// Buckets of the delegated authentication and authorization durations: Kubernetes'.
const REVIEW_DURATION_BUCKETS: [f64; 8] = [0.25, 0.5, 0.7, 1.0, 1.5, 3.0, 5.0, 10.0];
/// Buckets of `metrics_apiserver_metric_freshness_seconds`: from a second (a writer pushing continuously) to an
/// hour (a value written once and kept by its ttl); an HPA reads every 15 s.
const FRESHNESS_BUCKETS: [f64; 12] = [1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0];

/// Object resources kept as the `resource` label of custom-metric reads; any other is `other`, so that a client
/// cannot create series with made-up resource names. A group-qualified name (`deployments.apps`) counts as its
/// plural.
const LABELLED_RESOURCES: &[&str] = &[
    "pods",
    "services",
    "nodes",
    "namespaces",
    "metrics",
    "persistentvolumeclaims",
    "replicationcontrollers",
    "deployments",
    "replicasets",
    "statefulsets",
    "daemonsets",
    "jobs",
    "cronjobs",
    "ingresses",
    "horizontalpodautoscalers",
];

/// The verbs of [`RequestLabels`]: Kubernetes' for the served group-versions, the method for other paths.
const VERBS: &[&str] =
    &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "other", "LIST", "WATCH"];
/// The scopes of [`RequestLabels`]; empty for non-resource paths.
const SCOPES: &[&str] = &["", "resource", "namespace", "cluster"];
/// The metric groups of `metrics_apiserver_writes` (index 0: not a write).
const WRITE_GROUPS: &[&str] = &["", CUSTOM_GROUP, EXTERNAL_GROUP];

fn index_of(table: &[&str], value: &str) -> u8 {
    // The tables are short and fixed; only called while building labels from fixed sets.
    table.iter().position(|entry| *entry == value).and_then(|i| u8::try_from(i).ok()).unwrap_or(0)
}

/// The Kubernetes labels of a request, all from fixed sets: indices into `VERBS`, [`SERVED`] (0 for none),
/// `LABELLED_RESOURCES` (0 for none, 1 for `other`) and `SCOPES`, so that counting keys on one integer.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub struct RequestLabels {
    verb: u8,
    group_version: u8,
    resource: u8,
    scope: u8,
}

impl RequestLabels {
    /// `GET`, `LIST`, `WATCH`, `POST`, … for the served group-versions; the method for other paths.
    pub fn verb(&self) -> &'static str {
        VERBS.get(usize::from(self.verb)).copied().unwrap_or("other")
    }

    fn served(&self) -> Option<&'static GroupVersion> {
        usize::from(self.group_version).checked_sub(1).and_then(|i| SERVED.get(i)).copied()
    }

    /// A served group, or empty.
    pub fn group(&self) -> &'static str {
        self.served().map_or("", |gv| gv.group)
    }

    /// A served version, or empty.
    pub fn version(&self) -> &'static str {
        self.served().map_or("", |gv| gv.version)
    }

    /// See `LABELLED_RESOURCES`; empty for external metrics (whose resource segment is the metric name) and for
    /// non-resource paths.
    pub fn resource(&self) -> &'static str {
        match self.resource {
            0 => "",
            1 => "other",
            i => LABELLED_RESOURCES.get(usize::from(i) - 2).copied().unwrap_or("other"),
        }
    }

    /// `resource`, `namespace`, `cluster`, or empty for non-resource paths.
    pub fn scope(&self) -> &'static str {
        SCOPES.get(usize::from(self.scope)).copied().unwrap_or("")
    }

    /// The key of these labels with a status code and a write group (an index into [`WRITE_GROUPS`]).
    fn key(self, code: u16, write_group: u8) -> u64 {
        u64::from(self.verb)
            | u64::from(self.group_version) << 8
            | u64::from(self.resource) << 16
            | u64::from(self.scope) << 24
            | u64::from(write_group) << 32
            | u64::from(code) << 40
    }

    /// The inverse of [`Self::key`].
    fn from_key(key: u64) -> (RequestLabels, u16, u8) {
        let byte = |shift: u32| u8::try_from((key >> shift) & 0xff).unwrap_or(0);
        let labels = RequestLabels { verb: byte(0), group_version: byte(8), resource: byte(16), scope: byte(24) };
        (labels, u16::try_from((key >> 40) & 0xffff).unwrap_or(0), byte(32))
    }

    fn encoded(&self) -> DurationLabels {
        DurationLabels {
            verb: self.verb(),
            group: self.group(),
            version: self.version(),
            resource: self.resource(),
            subresource: "",
            scope: self.scope(),
        }
    }
}

/// `apiserver_request_duration_seconds`' labels as written; `subresource` is always empty: in Kubernetes'
/// attributes it is the metric name, which is not bounded.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    verb: &'static str,
    group: &'static str,
    version: &'static str,
    resource: &'static str,
    subresource: &'static str,
    scope: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestCodeLabels {
    verb: &'static str,
    group: &'static str,
    version: &'static str,
    resource: &'static str,
    subresource: &'static str,
    scope: &'static str,
    code: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    request_kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteLabels {
    group: &'static str,
    result: &'static str,
    code: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn review_histogram() -> Histogram {
    Histogram::new(REVIEW_DURATION_BUCKETS)
}

/// The adapter's metrics and the registry that renders them.
pub struct Metrics {
    registry: Registry,
    /// `apiserver_request_total`, `apiserver_request_duration_seconds`, `apiserver_current_inflight_requests` and
    /// `metrics_apiserver_writes_total`, rendered by [`RequestCollector`].
    requests: Arc<RequestCounts>,
    freshness: Arc<AtomicHistogram>,
    authn: ReviewMetrics,
    authz: ReviewMetrics,
    label_index: Arc<OnceLock<Arc<WatchLabelIndex>>>,
    review_caches: Arc<OnceLock<ReviewCaches>>,
    forwarder: Arc<OnceLock<Arc<crate::forward::Forwarder>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// The request count and duration of one kind of delegated review, by the code of kube-apiserver's answer.
#[derive(Clone)]
struct ReviewMetrics {
    total: Family<CodeLabels, Counter>,
    duration: HistogramFamily<CodeLabels>,
}

impl ReviewMetrics {
    fn new() -> Self {
        ReviewMetrics { total: Family::default(), duration: Family::new_with_constructor(review_histogram) }
    }

    fn register(&self, registry: &mut Registry, name: &str, what: &str) {
        registry.register(
            format!("{name}_request"),
            format!("Number of {what} requests to kube-apiserver, by status code (<error>: no answer)"),
            self.total.clone(),
        );
        registry.register(
            format!("{name}_request_duration_seconds"),
            format!("Latency in seconds of {what} requests to kube-apiserver, by status code"),
            self.duration.clone(),
        );
    }

    /// Records one review that took `took`: code 201 when kube-apiserver answered it (a review is a create), even
    /// with something unusable; `<error>` when the request failed.
    fn record<T>(&self, result: &Result<T, ReviewError>, took: std::time::Duration) {
        let code = match result {
            Ok(_) | Err(ReviewError::BadAnswer { .. }) => "201",
            Err(ReviewError::Request { .. }) => "<error>",
        };
        let labels = CodeLabels { code };
        self.total.get_or_create(&labels).inc();
        self.duration.get_or_create(&labels).observe(took.as_secs_f64());
    }
}

/// A gauge without labels, from a value read at scrape time.
fn const_gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

/// A counter (`name` without its `_total`), from values read at scrape time, one per label set.
fn const_counters<const N: usize>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &[([(&'static str, &'static str); N], u64)],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in values {
        ConstCounter::new(*value).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

/// A histogram from figures read at scrape time.
struct ConstHistogram<'a>(&'a HistogramSnapshot);

impl EncodeMetric for ConstHistogram<'_> {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(self.0.sum, self.0.count, &self.0.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// The Redis store's figures (docs/architecture.md §10): round trips by operation, the copy's lag, its full loads
/// and how long changes took to reach it.
fn encode_replication(e: &mut DescriptorEncoder, stats: &ReplicationStats) -> Result<(), std::fmt::Error> {
    let mut family = e.encode_descriptor(
        "metrics_apiserver_store_request_duration_seconds",
        "Round trips to the shared store (Redis) in seconds, by operation (write, batch, delete, load, time)",
        None,
        MetricType::Histogram,
    )?;
    for (operation, histogram) in &stats.round_trips {
        ConstHistogram(histogram).encode(family.encode_family(&[("operation", *operation)])?)?;
    }
    if let Some(lag) = stats.lag_seconds {
        let gauge = ConstGauge::new(lag);
        gauge.encode(e.encode_descriptor(
            "metrics_apiserver_store_replication_lag_seconds",
            "Seconds since this replica's copy last held everything the shared store held (up to about a second \
             while it follows; grows while it cannot); absent before the first load",
            None,
            gauge.metric_type(),
        )?)?;
    }
    let resyncs: Vec<([(&'static str, &'static str); 1], u64)> =
        stats.resyncs.iter().map(|(why, n)| ([("reason", *why)], *n)).collect();
    const_counters(
        e,
        "metrics_apiserver_store_resyncs",
        "Full loads of this replica's copy from the shared store, by reason (start, trimmed, server_changed)",
        &resyncs,
    )?;
    let delay = ConstHistogram(&stats.apply_delay);
    delay.encode(e.encode_descriptor(
        "metrics_apiserver_store_apply_delay_seconds",
        "Seconds from a change entering the shared store to this replica's copy applying it, by the store's clock",
        None,
        MetricType::Histogram,
    )?)
}

/// The figures that components keep themselves, read when scraped: the store's, the label index's, the review
/// caches'. The components count with plain atomics and know nothing of this module.
struct ComponentCollector {
    store: Arc<dyn MetricStore>,
    label_index: Arc<OnceLock<Arc<WatchLabelIndex>>>,
    review_caches: Arc<OnceLock<ReviewCaches>>,
    forwarder: Arc<OnceLock<Arc<crate::forward::Forwarder>>>,
}

/// The TokenReview cache's counters and the SubjectAccessReview cache's.
type ReviewCaches = (Arc<CacheCounters>, Arc<CacheCounters>);

impl std::fmt::Debug for ComponentCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ComponentCollector")
    }
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl Collector for ComponentCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        const_gauge(
            e,
            "metrics_apiserver_store_bytes",
            "Bytes the store accounts for its series, as bounded by --max-store-bytes",
            count(self.store.bytes_used()),
        )?;
        if let Some(stats) = self.store.stats() {
            let series = ConstGauge::new(0i64);
            let mut family = e.encode_descriptor(
                "metrics_apiserver_stored_series",
                "Series in the store by metric group, expired ones not yet removed included",
                None,
                series.metric_type(),
            )?;
            for (group, value) in [(CUSTOM_GROUP, stats.custom_series), (EXTERNAL_GROUP, stats.external_series)] {
                let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
                gauge.encode(family.encode_family(&[("group", group)])?)?;
            }
            const_counters(
                e,
                "metrics_apiserver_expired_series",
                "Series removed from the store because their ttl ran out",
                &[([], stats.expired_series)],
            )?;
            if let Some(replication) = &stats.replication {
                encode_replication(e, replication)?;
            }
        }
        if let Some(index) = self.label_index.get() {
            let stats = index.stats();
            const_gauge(
                e,
                "metrics_apiserver_label_index_objects",
                "Objects held by the label index, all watched resource types together",
                stats.objects,
            )?;
            const_gauge(
                e,
                "metrics_apiserver_label_index_watches",
                "Resource types the label index watches",
                stats.watches,
            )?;
            const_counters(
                e,
                "metrics_apiserver_label_index_watch_restarts",
                "Label index watches that failed and were restarted with back-off",
                &[([], stats.watch_restarts)],
            )?;
            const_counters(
                e,
                "metrics_apiserver_swept_series",
                "Series removed by the deleted-object sweep with the objects they belonged to",
                &[([], stats.swept_series)],
            )?;
        }
        if let Some((tokens, decisions)) = self.review_caches.get() {
            let (hits, misses) = tokens.hits_and_misses();
            const_counters(
                e,
                "authentication_token_cache_request",
                "TokenReview cache lookups by status (hit, miss: a review was made)",
                &[([("status", "hit")], hits), ([("status", "miss")], misses)],
            )?;
            let (hits, misses) = decisions.hits_and_misses();
            const_counters(
                e,
                "metrics_apiserver_access_review_cache_requests",
                "SubjectAccessReview cache lookups by result (hit, miss: a review was made)",
                &[([("result", "hit")], hits), ([("result", "miss")], misses)],
            )?;
        }
        if let Some(forwarder) = self.forwarder.get() {
            forwarder.encode_metrics(e)?;
        }
        Ok(())
    }
}

/// Renders the request counts: summed over the shards at scrape time.
#[derive(Debug)]
struct RequestCollector(Arc<RequestCounts>);

impl Collector for RequestCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counts = &self.0;
        let mut by_code = std::collections::BTreeMap::<(RequestLabels, u16), u64>::new();
        let mut durations = std::collections::BTreeMap::<RequestLabels, requests::Slot>::new();
        let mut writes = std::collections::BTreeMap::<(u8, u16), u64>::new();
        for (key, slot) in counts.snapshot() {
            let (labels, code, write_group) = RequestLabels::from_key(key);
            *by_code.entry((labels, code)).or_default() += slot.count;
            match durations.entry(labels) {
                std::collections::btree_map::Entry::Vacant(entry) => {
                    entry.insert(slot.clone());
                }
                std::collections::btree_map::Entry::Occupied(mut entry) => entry.get_mut().add(&slot),
            }
            if write_group != 0 {
                *writes.entry((write_group, code)).or_default() += slot.count;
            }
        }
        let mut family = encoder.encode_descriptor(
            "apiserver_request",
            "Counter of apiserver requests broken out for each verb, group, version, resource, scope and HTTP response code",
            None,
            MetricType::Counter,
        )?;
        for ((labels, code), count) in &by_code {
            let l = labels.encoded();
            let labels = RequestCodeLabels {
                verb: l.verb,
                group: l.group,
                version: l.version,
                resource: l.resource,
                subresource: l.subresource,
                scope: l.scope,
                code: *code,
            };
            ConstCounter::new(*count).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb, group, version, resource, subresource and scope",
            None,
            MetricType::Histogram,
        )?;
        let bounds: Vec<f64> = counts.bucket_bounds().collect();
        for (labels, slot) in &durations {
            let buckets: Vec<(f64, u64)> = bounds.iter().copied().zip(slot.buckets.iter().copied()).collect();
            family
                .encode_family(&labels.encoded())?
                .encode_histogram::<NoLabelSet>(slot.sum, slot.count, &buckets, None)?;
        }
        // Both kinds always, as Kubernetes': a dashboard sees 0, not a missing series.
        let mut family = encoder.encode_descriptor(
            "apiserver_current_inflight_requests",
            "Requests being served, by kind (readOnly, mutating)",
            None,
            MetricType::Gauge,
        )?;
        for (kind, name) in [(RequestKind::ReadOnly, "readOnly"), (RequestKind::Mutating, "mutating")] {
            ConstGauge::new(counts.in_flight(kind))
                .encode(family.encode_family(&KindLabels { request_kind: name })?)?;
        }
        let mut family = encoder.encode_descriptor(
            "metrics_apiserver_writes",
            "Requests to the write API by metric group and result (accepted, refused) with the HTTP status code",
            None,
            MetricType::Counter,
        )?;
        for ((group, code), count) in &writes {
            let group = WRITE_GROUPS.get(usize::from(*group)).copied().unwrap_or("");
            let result = if StatusCode::from_u16(*code).is_ok_and(|c| c.is_success()) { "accepted" } else { "refused" };
            ConstCounter::new(*count).encode(family.encode_family(&WriteLabels { group, result, code: *code })?)?;
        }
        Ok(())
    }
}

/// `metrics_apiserver_metric_freshness_seconds`, observed without a lock.
#[derive(Debug)]
struct FreshnessMetric(Arc<AtomicHistogram>);

impl EncodeMetric for FreshnessMetric {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        ConstHistogram(&self.0.snapshot()).encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

impl Metrics {
    /// Every metric, registered; the store's figures are read from `store` when scraped.
    pub fn new(store: Arc<dyn MetricStore>) -> Self {
        let mut registry = Registry::default();
        let requests = Arc::new(RequestCounts::new(&REQUEST_DURATION_BUCKETS));
        registry.register_collector(Box::new(RequestCollector(Arc::clone(&requests))));
        let freshness = Arc::new(AtomicHistogram::new(&FRESHNESS_BUCKETS));
        registry.register(
            "metrics_apiserver_metric_freshness_seconds",
            "Age in seconds of the values returned to readers (read time minus the value's timestamp)",
            FreshnessMetric(Arc::clone(&freshness)),
        );
        let authn = ReviewMetrics::new();
        authn.register(&mut registry, "apiserver_delegated_authn", "TokenReview");
        let authz = ReviewMetrics::new();
        authz.register(&mut registry, "apiserver_delegated_authz", "SubjectAccessReview");
        let label_index = Arc::new(OnceLock::new());
        let review_caches = Arc::new(OnceLock::new());
        let forwarder = Arc::new(OnceLock::new());
        registry.register_collector(Box::new(ComponentCollector {
            store,
            label_index: Arc::clone(&label_index),
            review_caches: Arc::clone(&review_caches),
            forwarder: Arc::clone(&forwarder),
        }));
        Metrics { registry, requests, freshness, authn, authz, label_index, review_caches, forwarder }
    }

    /// Answered write requests since the start by metric group (`custom.metrics.k8s.io`, `external.metrics.k8s.io`)
    /// and status code, sorted: what `metrics_apiserver_writes_total` shows, for the status page's write rates
    /// (docs/architecture.md §14).
    pub fn write_counts(&self) -> Vec<(&'static str, u16, u64)> {
        let mut writes = std::collections::BTreeMap::<(&'static str, u16), u64>::new();
        for (key, slot) in self.requests.snapshot() {
            let (_, code, group) = RequestLabels::from_key(key);
            if group != 0 {
                let group = WRITE_GROUPS.get(usize::from(group)).copied().unwrap_or("");
                *writes.entry((group, code)).or_default() += slot.count;
            }
        }
        writes.into_iter().map(|((group, code), count)| (group, code, count)).collect()
    }

    /// Shows the label index's figures (cluster mode); the first index given stays.
    pub fn watch_label_index(&self, index: Arc<WatchLabelIndex>) {
        let _ = self.label_index.set(index);
    }

    /// Shows the TokenReview and SubjectAccessReview caches' hits and misses (cluster mode); the first caches given
    /// stay.
    pub fn watch_review_caches(&self, tokens: Arc<CacheCounters>, decisions: Arc<CacheCounters>) {
        let _ = self.review_caches.set((tokens, decisions));
    }

    /// Shows the neighbour adapters' figures (docs/architecture.md §13); the first forwarder given stays.
    pub fn watch_forwarder(&self, forwarder: Arc<crate::forward::Forwarder>) {
        let _ = self.forwarder.set(forwarder);
    }

    /// Starts counting a request: it is in flight until the returned guard is finished or dropped.
    pub fn request_started(&self, method: &Method, path: &str, query: Option<&str>) -> RequestTimer<'_> {
        let kind = if is_mutating(method) { RequestKind::Mutating } else { RequestKind::ReadOnly };
        let in_flight = self.requests.started(kind);
        // An index into WRITE_GROUPS.
        let write_group = match crate::ingest::is_write_path(path) {
            false => 0,
            true if path.starts_with(WRITE_EXTERNAL_PREFIX) || path == "/write-external-metrics" => 2,
            true => 1,
        };
        RequestTimer {
            counts: &self.requests,
            labels: request_labels(method, path, query),
            in_flight,
            write_group,
            started: Instant::now(),
        }
    }

    /// The read API's handle on `metrics_apiserver_metric_freshness_seconds`.
    pub fn freshness(&self) -> Freshness {
        Freshness(Arc::clone(&self.freshness))
    }

    /// `reviewer`, its TokenReviews counted and timed (`apiserver_delegated_authn_request_*`).
    pub fn instrument_token_reviewer(&self, reviewer: Arc<dyn TokenReviewer>) -> Arc<dyn TokenReviewer> {
        Arc::new(InstrumentedTokenReviewer { inner: reviewer, metrics: self.authn.clone() })
    }

    /// `reviewer`, its SubjectAccessReviews counted and timed (`apiserver_delegated_authz_request_*`).
    pub fn instrument_access_reviewer(&self, reviewer: Arc<dyn AccessReviewer>) -> Arc<dyn AccessReviewer> {
        Arc::new(InstrumentedAccessReviewer { inner: reviewer, metrics: self.authz.clone() })
    }

    /// Every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String does not fail, and none of our encoders return an error of their own.
        if let Err(error) = prometheus_text::encode(&mut text, &self.registry) {
            tracing::warn!(%error, "encoding the metrics failed");
        }
        text
    }

    /// The answer to `GET /metrics`.
    pub fn respond(&self) -> HttpResponse {
        response::with_body(StatusCode::OK, prometheus_text::CONTENT_TYPE, Bytes::from(self.render()))
    }
}

/// Whether `path` is the metrics endpoint: the route table's predicate.
pub fn is_metrics_path(path: &str) -> bool {
    path == METRICS_PATH
}

fn is_mutating(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH | Method::DELETE)
}

/// A request being served; see [`Metrics::request_started`].
pub struct RequestTimer<'a> {
    counts: &'a RequestCounts,
    labels: RequestLabels,
    in_flight: InFlight,
    /// An index into [`WRITE_GROUPS`]: 0 unless the path is the write API's.
    write_group: u8,
    started: Instant,
}

impl RequestTimer<'_> {
    /// The request was answered with `status`. `write_route` says whether the write API's route took it (or would
    /// have, had the access layer let it through): such requests are also counted in `metrics_apiserver_writes`.
    pub fn finish(self, status: StatusCode, write_route: bool) {
        let write_group = if write_route { self.write_group } else { 0 };
        self.counts.record(self.labels.key(status.as_u16(), write_group), self.started.elapsed().as_secs_f64());
    }
}

impl Drop for RequestTimer<'_> {
    fn drop(&mut self) {
        // Also when the connection went away mid-request and the future was dropped.
        self.counts.ended(&self.in_flight);
    }
}

/// Observes the age of the values returned to readers (`metrics_apiserver_metric_freshness_seconds`).
#[derive(Clone, Debug)]
pub struct Freshness(Arc<AtomicHistogram>);

impl Freshness {
    /// Observes the age, now, of values with these timestamps (milliseconds since the epoch); a timestamp in the
    /// future (a writer's clock ahead of ours) counts as age 0.
    pub fn observe(&self, timestamps_millis: impl Iterator<Item = i64>) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        for timestamp in timestamps_millis {
            let age_millis = now.saturating_sub(timestamp).max(0);
            // Ages are far below 2^52 ms: exact as f64.
            #[allow(clippy::cast_precision_loss)]
            self.0.observe(age_millis as f64 / 1000.0);
        }
    }
}

/// The method as Kubernetes reports it: an index into [`VERBS`].
fn method_verb(method: &Method) -> u8 {
    let verb = match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        _ => "other",
    };
    index_of(VERBS, verb)
}

/// The labels of a request, as Kubernetes' request metrics compute them from its `RequestInfo`
/// (docs/wire-contract.md §6.3), within the fixed sets of [`RequestLabels`]. Allocates nothing.
pub fn request_labels(method: &Method, path: &str, query: Option<&str>) -> RequestLabels {
    let non_resource = RequestLabels { verb: method_verb(method), group_version: 0, resource: 0, scope: 0 };
    let mut segments = path.trim_matches('/').split('/');
    if segments.next() != Some("apis") {
        return non_resource;
    }
    let (Some(group), Some(version)) = (segments.next(), segments.next()) else {
        return non_resource;
    };
    let Some(served) = SERVED.iter().position(|gv| gv.group == group && gv.version == version) else {
        return non_resource;
    };
    let rest: [Option<&str>; 5] = std::array::from_fn(|_| segments.next().filter(|s| !s.is_empty()));
    let Some(first) = rest[0] else {
        // `/apis/<group>/<version>`: discovery, a non-resource request.
        return non_resource;
    };
    // Kubernetes' RequestInfo: `namespaces/<ns>/<resource>/<name>`, except `namespaces/<ns>` alone, which is the
    // namespace object itself.
    let (namespaced, resource, name) = if first == "namespaces" && rest[1].is_some() && rest[2].is_some() {
        (true, rest[2], rest[3])
    } else if first == "namespaces" && rest[1].is_some() {
        (true, Some("namespaces"), rest[1])
    } else {
        (false, Some(first), rest[1])
    };
    let verb = match *method {
        Method::GET | Method::HEAD if name.is_none() => {
            index_of(VERBS, if watch_requested(query) { "WATCH" } else { "LIST" })
        }
        _ => method_verb(method),
    };
    let scope = index_of(
        SCOPES,
        if name.is_some() {
            "resource"
        } else if namespaced {
            "namespace"
        } else {
            "cluster"
        },
    );
    let resource = if SERVED[served].group == EXTERNAL_GROUP {
        0
    } else {
        let plural = resource.unwrap_or("").split('.').next().unwrap_or("");
        LABELLED_RESOURCES.iter().position(|r| *r == plural).and_then(|i| u8::try_from(i + 2).ok()).unwrap_or(1)
    };
    let group_version = u8::try_from(served + 1).unwrap_or(0);
    RequestLabels { verb, group_version, resource, scope }
}

/// Whether the query asks for a watch, as Kubernetes reads it (absent, `0` and `false` are not).
fn watch_requested(query: Option<&str>) -> bool {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(key, _)| key == "watch")
        .is_some_and(|(_, value)| value != "0" && !value.eq_ignore_ascii_case("false"))
}

/// A [`TokenReviewer`] whose reviews are counted and timed.
pub struct InstrumentedTokenReviewer {
    inner: Arc<dyn TokenReviewer>,
    metrics: ReviewMetrics,
}

#[async_trait]
impl TokenReviewer for InstrumentedTokenReviewer {
    async fn review(&self, token: &str) -> Result<Option<UserInfo>, ReviewError> {
        let started = Instant::now();
        let result = self.inner.review(token).await;
        self.metrics.record(&result, started.elapsed());
        result
    }
}

/// An [`AccessReviewer`] whose reviews are counted and timed.
pub struct InstrumentedAccessReviewer {
    inner: Arc<dyn AccessReviewer>,
    metrics: ReviewMetrics,
}

#[async_trait]
impl AccessReviewer for InstrumentedAccessReviewer {
    async fn review(&self, attributes: &Attributes) -> Result<Decision, ReviewError> {
        let started = Instant::now();
        let result = self.inner.review(attributes).await;
        self.metrics.record(&result, started.elapsed());
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(
        method: Method,
        path: &str,
        query: Option<&str>,
    ) -> (&'static str, &'static str, &'static str, &'static str) {
        let l = request_labels(&method, path, query);
        (l.verb(), l.group(), l.resource(), l.scope())
    }

    #[test]
    fn request_labels_follow_kubernetes_request_info_within_fixed_sets() {
        let custom = "custom.metrics.k8s.io";
        assert_eq!(
            labels(Method::GET, "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/q", None),
            ("GET", custom, "pods", "resource")
        );
        assert_eq!(
            labels(Method::GET, "/apis/custom.metrics.k8s.io/v1beta1/namespaces/default/deployments.apps/web/q", None),
            ("GET", custom, "deployments", "resource")
        );
        // A made-up resource does not become a label value.
        assert_eq!(
            labels(Method::GET, "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/x-123/a/q", None),
            ("GET", custom, "other", "resource")
        );
        assert_eq!(
            labels(Method::GET, "/apis/custom.metrics.k8s.io/v1beta2/nodes", None),
            ("LIST", custom, "nodes", "cluster")
        );
        assert_eq!(
            labels(Method::GET, "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods", Some("watch=true")),
            ("WATCH", custom, "pods", "namespace")
        );
        assert_eq!(
            labels(Method::GET, "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default", None),
            ("GET", custom, "namespaces", "resource")
        );
        // External: the resource segment is the metric name, never a label value.
        assert_eq!(
            labels(Method::GET, "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/queue-length", None),
            ("LIST", "external.metrics.k8s.io", "", "namespace")
        );
        // Discovery, unknown versions, health, writes: non-resource requests.
        assert_eq!(labels(Method::GET, "/apis/custom.metrics.k8s.io/v1beta2", None), ("GET", "", "", ""));
        assert_eq!(labels(Method::GET, "/apis/custom.metrics.k8s.io/v9/namespaces/a/pods", None), ("GET", "", "", ""));
        assert_eq!(labels(Method::POST, "/write-metrics/namespaces/a/pods/b/q", None), ("POST", "", "", ""));
        assert_eq!(labels(Method::from_bytes(b"BREW").unwrap(), "/readyz", None), ("other", "", "", ""));
    }

    #[test]
    fn a_request_is_in_flight_until_its_timer_is_finished_or_dropped() {
        let metrics = Metrics::new(Arc::new(crate::store::MemoryStore::new(crate::store::Limits::default())));
        let gauge = |kind| {
            metrics.requests.in_flight(if kind == "readOnly" { RequestKind::ReadOnly } else { RequestKind::Mutating })
        };
        let read = metrics.request_started(&Method::GET, "/readyz", None);
        let write = metrics.request_started(&Method::POST, "/write-metrics/namespaces/a/pods/b/q", None);
        assert_eq!((gauge("readOnly"), gauge("mutating")), (1, 1));
        read.finish(StatusCode::OK, false);
        drop(write);
        assert_eq!((gauge("readOnly"), gauge("mutating")), (0, 0));
        // The dropped write was never answered: not counted as a write.
        assert!(!metrics.render().contains("metrics_apiserver_writes_total{"));
    }
}
