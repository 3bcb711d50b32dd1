//! The metric store: series identity, stored samples, limits, and the [`MetricStore`] trait that ingest writes to
//! and the API reads from.
//!
//! Two kinds of series exist:
//! - a *custom* series is attached to one Kubernetes object: (resource, namespace, object name, metric). Its labels
//!   are attributes of the value (replaced on every write) that `metricLabelSelector` filters on.
//! - an *external* series is identified by (namespace, metric, labels); `labelSelector` filters on its labels.
//!
//! The store knows nothing of HTTP, the cluster or the wire types; resource names arrive already normalised
//! (group-qualified plural such as `pods` or `deployments.apps`) and names already validated by ingest. It enforces
//! the limits below itself, so that no caller can grow it without bound.

pub mod budget;
/// The contract every store passes, as tests (with the `test-support` feature for other crates' tests).
#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
pub mod flags;
pub mod history;
pub mod memory;
pub mod redis;
/// A real `redis-server` for the Redis store's tests (with the `test-support` feature for other crates' tests).
#[cfg(any(test, feature = "test-support"))]
pub mod redis_testing;

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::task::AbortOnDropHandle;

use crate::quantity::Quantity;

pub use crate::histogram::HistogramSnapshot;
pub use history::{Rate, RateLimits, Recent, SeriesKind};
pub use memory::MemoryStore;

/// Longest accepted namespace name (a DNS-1123 label).
pub const MAX_NAMESPACE_LEN: usize = 63;
/// Longest accepted object name (a DNS-1123 subdomain).
pub const MAX_OBJECT_NAME_LEN: usize = 253;
/// Longest accepted metric name.
pub const MAX_METRIC_NAME_LEN: usize = 253;
/// Longest accepted group-qualified resource name (`plural.group`).
pub const MAX_RESOURCE_LEN: usize = 253 + 1 + 63;

/// The store budget when the container has no memory limit: half of the manifest's 512Mi, the same share that
/// [`budget::from_memory_limit`] takes of a cgroup limit.
pub const DEFAULT_MAX_STORE_BYTES: usize = 256 << 20;

/// The limits a store enforces. Every limit answers a 4xx to the writer when exceeded and changes nothing stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Total live series (custom and external) the store holds; a write that would add one more is refused.
    pub max_series: usize,
    /// Labels one series may carry.
    pub max_labels_per_series: usize,
    /// Bytes of label keys and values one series may carry, all labels together.
    pub max_label_bytes_per_series: usize,
    /// Bytes the store may hold, as it accounts them (names, labels and a measured overhead per series and per
    /// group); a write that would go beyond is refused.
    pub max_store_bytes: usize,
    /// How much history counters keep for their rates (`--rate-window`, `--rate-max-samples`; docs/architecture.md
    /// §9, "History").
    pub rates: RateLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_series: 2_000_000,
            max_labels_per_series: 16,
            max_label_bytes_per_series: 4096,
            max_store_bytes: DEFAULT_MAX_STORE_BYTES,
            rates: RateLimits::default(),
        }
    }
}

/// Why the store refused an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Writing would exceed [`Limits::max_series`].
    #[error(
        "series limit reached: the store already holds {limit} series (--max-series); delete series or raise the limit"
    )]
    SeriesLimit {
        /// The configured limit.
        limit: usize,
    },
    /// A series carries more labels than [`Limits::max_labels_per_series`].
    #[error("too many labels: {count} given, at most {limit} are allowed per series (--max-labels-per-series)")]
    TooManyLabels {
        /// Labels given.
        count: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The labels of a series are larger than [`Limits::max_label_bytes_per_series`].
    #[error(
        "labels too large: {bytes} bytes of keys and values given, at most {limit} are allowed per series (--max-label-bytes-per-series)"
    )]
    LabelBytes {
        /// Bytes of keys and values given.
        bytes: usize,
        /// The configured limit.
        limit: usize,
    },
    /// Writing would take the store beyond [`Limits::max_store_bytes`].
    #[error(
        "store full: it holds {used} of its {limit} bytes and this write needs {needed} more (--max-store-bytes); delete series or raise the limit"
    )]
    StoreBytesLimit {
        /// Bytes accounted now.
        used: usize,
        /// Bytes the write would add.
        needed: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A name is longer than its documented maximum.
    #[error("{what} is {len} characters long, at most {max} are allowed")]
    NameTooLong {
        /// Which name (`namespace`, `object name`, `metric name`, `resource`).
        what: &'static str,
        /// Its length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// A networked backend failed.
    #[error("metric store unavailable: {0}")]
    Unavailable(String),
}

/// One label: key and value.
pub type Label = (Box<str>, Box<str>);

/// Labels of a series, sorted by key; cheap to clone and compact when empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesLabels(Option<Arc<[Label]>>);

impl SeriesLabels {
    /// No labels.
    pub fn empty() -> Self {
        SeriesLabels(None)
    }

    /// Labels from a map (already validated by the caller).
    pub fn from_map(map: BTreeMap<String, String>) -> Self {
        if map.is_empty() {
            return SeriesLabels(None);
        }
        let pairs: Vec<Label> = map.into_iter().map(|(k, v)| (k.into_boxed_str(), v.into_boxed_str())).collect();
        SeriesLabels(Some(pairs.into()))
    }

    /// Labels from pairs sorted by key, keys unique (already validated by the caller).
    pub fn from_sorted(pairs: Vec<Label>) -> Self {
        debug_assert!(pairs.windows(2).all(|pair| pair[0].0 < pair[1].0), "labels not sorted or not unique");
        if pairs.is_empty() {
            return SeriesLabels(None);
        }
        SeriesLabels(Some(pairs.into()))
    }

    /// The labels as an ordered map.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }
}

impl Deref for SeriesLabels {
    type Target = [Label];

    fn deref(&self) -> &Self::Target {
        match &self.0 {
            Some(pairs) => pairs,
            None => &[],
        }
    }
}

/// A stored value with its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The value as written.
    pub value: Quantity,
    /// When it was written, in milliseconds since the Unix epoch.
    pub timestamp_millis: i64,
    /// When it stops being visible, in milliseconds since the Unix epoch; [`i64::MAX`] for never.
    pub expires_at_millis: i64,
    /// The series labels.
    pub labels: SeriesLabels,
    /// The kind of the series, as its last write said.
    pub kind: SeriesKind,
}

impl Sample {
    /// Whether the sample is still visible at `now_millis`. An expired sample behaves exactly like an absent one.
    pub fn is_live(&self, now_millis: i64) -> bool {
        now_millis < self.expires_at_millis
    }
}

/// One write: the value, its labels and how long it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleWrite {
    /// The value.
    pub value: Quantity,
    /// For custom series: the labels stored with the value (replacing earlier ones).
    /// For external series: part of the identity.
    pub labels: SeriesLabels,
    /// Lifetime from now; `None` lives until overwritten or deleted.
    pub ttl: Option<Duration>,
    /// What the series is from now on (replacing the kind of earlier writes, as the labels are replaced).
    pub kind: SeriesKind,
}

impl SampleWrite {
    /// The sample this write stores when made at `now_millis`.
    pub fn at(self, now_millis: i64) -> Sample {
        let expires_at_millis = match self.ttl {
            Some(ttl) => now_millis.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)),
            None => i64::MAX,
        };
        Sample {
            value: self.value,
            timestamp_millis: now_millis,
            expires_at_millis,
            labels: self.labels,
            kind: self.kind,
        }
    }
}

/// Identity of a custom series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CustomSeriesId<'a> {
    /// Normalised group-qualified resource, e.g. `pods`, `deployments.apps`, `namespaces`.
    pub resource: &'a str,
    /// Namespace of the object; empty for cluster-scoped objects (including Namespace objects themselves).
    pub namespace: &'a str,
    /// Object name.
    pub name: &'a str,
    /// Metric name.
    pub metric: &'a str,
}

/// A (resource, metric) pair that has at least one live value, for discovery.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CustomMetricDescriptor {
    /// Normalised group-qualified resource.
    pub resource: String,
    /// Metric name.
    pub metric: String,
    /// Whether the values are attached to namespaced objects.
    pub namespaced: bool,
    /// Whether one of its series is a counter (whose rate the API serves, docs/wire-contract.md §4.6).
    pub counter: bool,
}

/// One write of a batch ([`MetricStore::put_many`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Put<'a> {
    /// A custom value, as [`MetricStore::put_custom`] stores it.
    Custom(CustomSeriesId<'a>, SampleWrite),
    /// An external value, as [`MetricStore::put_external`] stores it.
    External {
        /// The namespace.
        namespace: &'a str,
        /// The metric name.
        metric: &'a str,
        /// The value and its labels.
        write: SampleWrite,
    },
}

/// What the write API and the read APIs need from a store.
///
/// Methods are async so that a networked backend can implement the same trait; every implementation must pass the
/// conformance suite (`store/conformance.rs`, docs/architecture.md §9). Reads never return expired samples. Lists are sorted (by object name, metric name or
/// labels) so that responses are deterministic.
#[async_trait]
pub trait MetricStore: Send + Sync + 'static {
    /// Stores a custom value; last write wins.
    async fn put_custom(&self, id: CustomSeriesId<'_>, write: SampleWrite) -> Result<(), StoreError>;
    /// Removes a custom value; `true` if a live one existed.
    async fn delete_custom(&self, id: CustomSeriesId<'_>) -> Result<bool, StoreError>;
    /// The live value of one series.
    async fn get_custom(&self, id: CustomSeriesId<'_>) -> Result<Option<Sample>, StoreError>;
    /// Every object of `resource` in `namespace` that has a live `metric`, sorted by object name.
    async fn list_custom_objects(
        &self,
        resource: &str,
        namespace: &str,
        metric: &str,
    ) -> Result<Vec<(String, Sample)>, StoreError>;
    /// The live values of `metric` for the named objects (absent ones are skipped), in the order of `names`.
    async fn get_custom_objects(
        &self,
        resource: &str,
        namespace: &str,
        metric: &str,
        names: &[String],
    ) -> Result<Vec<(String, Sample)>, StoreError>;
    /// Every live metric of one object, sorted by metric name; costs one lookup per metric stored for `resource` in
    /// `namespace`, not a walk of every series.
    async fn list_object_metrics(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Vec<(String, Sample)>, StoreError>;
    /// The (resource, metric) pairs that have a live value, sorted and de-duplicated. Served from an index, never
    /// a walk of every series: a pair whose values all expired may stay listed until the next purge when a value of
    /// it with a later deadline was overwritten or deleted before (the same for [`Self::list_external_metrics`]).
    async fn list_custom_metrics(&self) -> Result<Vec<CustomMetricDescriptor>, StoreError>;
    /// The objects of `resource` that have at least one live value, as (namespace, name), sorted and de-duplicated.
    /// The label index's sweep uses it to find values of deleted objects.
    async fn custom_objects(&self, resource: &str) -> Result<Vec<(String, String)>, StoreError>;
    /// Removes every series (any metric, live or expired) of one object; returns how many were removed.
    async fn delete_object(&self, resource: &str, namespace: &str, name: &str) -> Result<usize, StoreError>;

    /// Stores an external value for (namespace, metric, labels); last write wins.
    async fn put_external(&self, namespace: &str, metric: &str, write: SampleWrite) -> Result<(), StoreError>;
    /// Removes the external series (namespace, metric, labels); `true` if a live one existed.
    async fn delete_external(&self, namespace: &str, metric: &str, labels: &SeriesLabels) -> Result<bool, StoreError>;
    /// Every live series of an external metric in a namespace, sorted by labels.
    async fn list_external(&self, namespace: &str, metric: &str) -> Result<Vec<Sample>, StoreError>;
    /// The external metric names that have a live value in any namespace, sorted and de-duplicated.
    async fn list_external_metrics(&self) -> Result<Vec<String>, StoreError>;
    /// The external metric names that have a counter series in any namespace, sorted and de-duplicated; as
    /// approximate as [`Self::list_external_metrics`].
    async fn list_external_counters(&self) -> Result<Vec<String>, StoreError>;

    /// The recent values of `metric` of objects of `resource` in `namespace`, each with its object name and the labels
    /// of its latest value: those of `names` in their order (absent and expired ones are skipped), or with `None`
    /// every object that has a live value, sorted by object name (as [`Self::get_custom_objects`] and
    /// [`Self::list_custom_objects`] list them). The history rates are computed from, with the labels a rate is
    /// served with, in one read (docs/wire-contract.md §4.6), and the history the status page draws
    /// (docs/architecture.md §9, "History").
    async fn recent_custom(
        &self,
        resource: &str,
        namespace: &str,
        metric: &str,
        names: Option<&[String]>,
    ) -> Result<Vec<(String, SeriesLabels, Recent)>, StoreError>;
    /// The recent values of every live series of an external metric in a namespace, sorted by labels.
    async fn recent_external(&self, namespace: &str, metric: &str) -> Result<Vec<(SeriesLabels, Recent)>, StoreError>;

    /// Live series in [`SeriesPosition`] order that `filter` admits, starting after `after`, at most `limit`: the
    /// status page (docs/architecture.md §14) reads every series this way, one page at a time, so that no call holds
    /// the store's locks for more than a page. Costs a walk of the group keys (one per (resource, namespace, metric)
    /// or (namespace, metric)) per call plus the series of the groups the page covers, never a walk of every series.
    async fn series_page(
        &self,
        filter: &SeriesFilter,
        after: Option<&SeriesPosition>,
        limit: usize,
    ) -> Result<Vec<StoredSeries>, StoreError>;

    /// Stores a batch of writes. Each write is applied or refused on its own, in order, as if they were made one after
    /// the other: result `i` is the outcome of write `i`, a refused write changes nothing and the others still apply.
    /// An applied write gives the live sample it replaced (`None` where the series had none), so that a caller can
    /// undo it without reading first. Not atomic: a reader may see part of a batch. The default reads then writes,
    /// one call each per write; a store overrides it to replace in one step (and a networked one to make the batch
    /// one round trip).
    async fn put_many(&self, writes: Vec<Put<'_>>) -> Vec<Result<Option<Sample>, StoreError>> {
        let mut results = Vec::with_capacity(writes.len());
        for put in writes {
            results.push(match put {
                Put::Custom(id, write) => match self.get_custom(id).await {
                    Ok(previous) => self.put_custom(id, write).await.map(|()| previous),
                    Err(error) => Err(error),
                },
                Put::External { namespace, metric, write } => match self.list_external(namespace, metric).await {
                    Ok(samples) => {
                        let previous = samples.into_iter().find(|sample| sample.labels == write.labels);
                        self.put_external(namespace, metric, write).await.map(|()| previous)
                    }
                    Err(error) => Err(error),
                },
            });
        }
        results
    }

    /// Whether the store can serve reads and writes. The in-memory store always can; a networked backend makes a
    /// round trip. The health endpoints ask it through [`health_probe`].
    async fn health(&self) -> Result<(), StoreError>;

    /// Number of series held (including expired ones not yet purged).
    fn series_count(&self) -> usize;

    /// Bytes the store accounts against [`Limits::max_store_bytes`] (including expired series not yet purged).
    fn bytes_used(&self) -> usize;

    /// The figures `/metrics` shows (docs/wire-contract.md §11); `None` for a store that does not keep them, whose
    /// series `/metrics` then leaves out.
    fn stats(&self) -> Option<StoreStats> {
        None
    }
}

/// Where a series sits in the order [`MetricStore::series_page`] lists series: by namespace, then resource (external
/// series, which have none, first), metric, and object name (custom) or labels (external).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesPosition {
    /// The namespace; empty for cluster-scoped objects.
    pub namespace: String,
    /// The group-qualified resource of a custom series; `None` for an external series.
    pub resource: Option<String>,
    /// The metric name.
    pub metric: String,
    /// The object name of a custom series; empty for an external series.
    pub name: String,
    /// The labels of an external series (its identity); empty for a custom series, whose labels are the sample's.
    pub labels: SeriesLabels,
}

/// Which series [`MetricStore::series_page`] lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeriesFilter {
    /// Only this namespace (exactly).
    pub namespace: Option<String>,
    /// Only metrics whose name contains this.
    pub metric_contains: Option<String>,
}

impl SeriesFilter {
    /// Whether a group of `namespace` and `metric` is listed.
    pub fn admits(&self, namespace: &str, metric: &str) -> bool {
        self.namespace.as_deref().is_none_or(|wanted| wanted == namespace)
            && self.metric_contains.as_deref().is_none_or(|part| metric.contains(part))
    }
}

/// One live series and its sample (an external series' sample carries its labels, as [`MetricStore::list_external`]
/// gives them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSeries {
    /// Which series.
    pub position: SeriesPosition,
    /// Its value.
    pub sample: Sample,
}

/// A store's figures for `/metrics`, read at scrape time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreStats {
    /// Custom series held (including expired ones not yet removed).
    pub custom_series: u64,
    /// External series held (including expired ones not yet removed).
    pub external_series: u64,
    /// Series removed because their ttl ran out, since the store started.
    pub expired_series: u64,
    /// A store that copies a shared one (Redis, docs/architecture.md §10): how its copy follows.
    pub replication: Option<ReplicationStats>,
}

/// How a replica's copy follows a shared store, for `/metrics` (docs/wire-contract.md §11).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplicationStats {
    /// Seconds since the copy last held everything the shared store held; `None` before the first time.
    pub lag_seconds: Option<f64>,
    /// Full loads of the copy, by why: `start`, `trimmed` (its position was trimmed away), `server_changed`.
    pub resyncs: Vec<(&'static str, u64)>,
    /// Round trips to the shared store by operation.
    pub round_trips: Vec<(&'static str, HistogramSnapshot)>,
    /// Seconds from a change entering the shared store to this copy applying it, by the shared store's clock.
    pub apply_delay: HistogramSnapshot,
}

/// Which implementation holds the values (`--store`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Backend {
    /// This process's memory ([`MemoryStore`]).
    #[default]
    Memory,
    /// Shared through Redis or Valkey, mirrored in memory ([`redis::RedisStore`], docs/architecture.md §10).
    Redis(redis::RedisOptions),
}

/// Which store to run, with its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// The limits the store enforces.
    pub limits: Limits,
    /// The implementation.
    pub backend: Backend,
}

/// Opens the store the options describe: the one place that names an implementation. Must be called within a tokio
/// runtime: a store may run background work (the in-memory store's expiry, the Redis store's stream tail), which
/// stops when its last handle is dropped. The Redis store opens even while Redis is unreachable: it reports not
/// ready through [`MetricStore::health`] until its copy is loaded.
pub async fn open(options: &StoreOptions) -> Result<Arc<dyn MetricStore>, StoreError> {
    match &options.backend {
        Backend::Memory => Ok(Arc::new(MemoryStore::start(options.limits))),
        Backend::Redis(redis_options) => {
            Ok(Arc::new(redis::RedisStore::connect(redis_options, options.limits, redis::TimeSource::Redis)?))
        }
    }
}

/// How often [`health_probe`] asks the store, and how long it waits for an answer.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// The store's health for the synchronous checks of the health endpoints (src/server/health.rs): the store is asked
/// once now, then every `every` in the background; the probe answers the latest result at once. The background task
/// stops when the probe is dropped.
pub async fn health_probe(
    store: Arc<dyn MetricStore>,
    every: Duration,
) -> impl Fn() -> Result<(), String> + Send + Sync + 'static {
    watch(
        move || {
            let store = Arc::clone(&store);
            async move { store.health().await }
        },
        every,
    )
    .await
}

async fn watch<F, Fut>(probe: F, every: Duration) -> impl Fn() -> Result<(), String> + Send + Sync + 'static
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), StoreError>> + Send,
{
    let ask = move || {
        let answer = tokio::time::timeout(every, probe());
        async move {
            match answer.await {
                Ok(result) => result.map_err(|error| error.to_string()),
                Err(_) => Err(format!("the metric store did not answer its health check within {every:?}")),
            }
        }
    };
    let status = Arc::new(Mutex::new(ask().await));
    let task = AbortOnDropHandle::new(tokio::spawn({
        let status = Arc::clone(&status);
        async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is immediate: the store was just asked.
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let result = ask().await;
                *status.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = result;
            }
        }
    }));
    move || {
        // The probe owns the task: dropping the probe stops it.
        let _task = &task;
        status.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

/// Checks a custom series identity against the documented name limits.
pub(crate) fn check_custom_id(id: &CustomSeriesId<'_>) -> Result<(), StoreError> {
    check_len("resource", id.resource, MAX_RESOURCE_LEN)?;
    check_len("namespace", id.namespace, MAX_NAMESPACE_LEN)?;
    check_len("object name", id.name, MAX_OBJECT_NAME_LEN)?;
    check_len("metric name", id.metric, MAX_METRIC_NAME_LEN)
}

/// Checks an external series identity against the documented name limits.
pub(crate) fn check_external_id(namespace: &str, metric: &str) -> Result<(), StoreError> {
    check_len("namespace", namespace, MAX_NAMESPACE_LEN)?;
    check_len("metric name", metric, MAX_METRIC_NAME_LEN)
}

fn check_len(what: &'static str, value: &str, max: usize) -> Result<(), StoreError> {
    if value.len() > max {
        return Err(StoreError::NameTooLong { what, len: value.len(), max });
    }
    Ok(())
}

/// Checks the labels of a write against [`Limits::max_labels_per_series`] and
/// [`Limits::max_label_bytes_per_series`].
pub(crate) fn check_labels(labels: &SeriesLabels, limits: &Limits) -> Result<(), StoreError> {
    let limit = limits.max_labels_per_series;
    if labels.len() > limit {
        return Err(StoreError::TooManyLabels { count: labels.len(), limit });
    }
    let bytes: usize = labels.iter().map(|(k, v)| k.len() + v.len()).sum();
    let limit = limits.max_label_bytes_per_series;
    if bytes > limit {
        return Err(StoreError::LabelBytes { bytes, limit });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_health_probe_answers_the_latest_result_and_stops_when_dropped() {
        // 0: unavailable, 1: healthy, 2: no answer.
        let state = Arc::new(AtomicUsize::new(0));
        let asked = Arc::new(AtomicUsize::new(0));
        let probe = watch(
            {
                let (state, asked) = (Arc::clone(&state), Arc::clone(&asked));
                move || {
                    asked.fetch_add(1, Ordering::SeqCst);
                    let state = state.load(Ordering::SeqCst);
                    async move {
                        match state {
                            0 => Err(StoreError::Unavailable("connection refused".into())),
                            1 => Ok(()),
                            _ => std::future::pending().await,
                        }
                    }
                }
            },
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(probe(), Err("metric store unavailable: connection refused".to_string()), "asked at once");
        state.store(1, Ordering::SeqCst);
        assert!(probe().is_err(), "the probe answers the last result, it does not ask the store");
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(probe(), Ok(()));
        state.store(2, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(11)).await;
        let error = probe().unwrap_err();
        assert!(error.contains("did not answer its health check within 5s"), "{error}");
        drop(probe);
        let before = asked.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(asked.load(Ordering::SeqCst), before, "the store is no longer asked once the probe is dropped");
    }

    #[tokio::test]
    async fn the_configured_store_opens_healthy_and_empty() {
        let store = open(&StoreOptions { limits: Limits::default(), backend: Backend::Memory }).await.unwrap();
        assert_eq!(store.health().await, Ok(()));
        assert_eq!((store.series_count(), store.bytes_used()), (0, 0));
        let probe = health_probe(Arc::clone(&store), HEALTH_INTERVAL).await;
        assert_eq!(probe(), Ok(()));
    }
}
