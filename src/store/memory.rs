//! The in-memory store: a cheap-clone handle over sharded maps, built for many concurrent writers.
//!
//! Layout: series are grouped by (resource, namespace, metric) for custom values and by (namespace, metric) for
//! external ones. The outer maps are sharded ([`DashMap`]); each group keeps its series in a small map under its own
//! lock. A write therefore takes one shard read lock and one group write lock: no global lock, and writers to
//! different groups never wait for each other. Wildcard reads walk one group. Object names are stored once per
//! series; the group key carries the shared parts, which keeps a series to roughly 100 bytes.
//!
//! Expired samples are invisible at once (every read checks the deadline) and are removed by a purge task that
//! [`MemoryStore::spawn_purger`] starts and its guard stops.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;

use super::{
    CustomMetricDescriptor, CustomSeriesId, Limits, MetricStore, Sample, SampleWrite, SeriesLabels, StoreError,
    check_custom_id, check_external_id,
};
use crate::clock::{Clock, SystemClock};

/// Separates the parts of a group key; no part (resource, namespace, metric name) may contain it.
const KEY_SEPARATOR: char = '/';

/// The in-memory [`MetricStore`]. Clones share the same data.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// `resource/namespace/metric` -> object name -> sample.
    custom: DashMap<Box<str>, Group<Box<str>>>,
    /// `namespace/metric` -> labels -> sample.
    external: DashMap<Box<str>, Group<SeriesLabels>>,
    /// Series held in both maps; kept exact under the group locks.
    series: AtomicUsize,
    limits: Limits,
    clock: Arc<dyn Clock>,
}

/// The series of one group. The std lock is right here: it is never held across an `.await`.
struct Group<K> {
    series: RwLock<HashMap<K, Sample>>,
}

impl<K> Default for Group<K> {
    fn default() -> Self {
        Group { series: RwLock::new(HashMap::new()) }
    }
}

impl<K: Hash + Eq> Group<K> {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<K, Sample>> {
        // A poisoned lock means a panic mid-insert of a plain map; the map itself is still consistent.
        self.series.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<K, Sample>> {
        self.series.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Stops the purge task when dropped.
#[derive(Debug)]
pub struct PurgerGuard(tokio::task::JoinHandle<()>);

impl Drop for PurgerGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl MemoryStore {
    /// An empty store with the given limits, reading time from the system clock.
    pub fn new(limits: Limits) -> Self {
        Self::with_clock(limits, Arc::new(SystemClock))
    }

    /// An empty store reading time from `clock`.
    pub fn with_clock(limits: Limits, clock: Arc<dyn Clock>) -> Self {
        MemoryStore {
            inner: Arc::new(Inner {
                custom: DashMap::new(),
                external: DashMap::new(),
                series: AtomicUsize::new(0),
                limits,
                clock,
            }),
        }
    }

    /// Starts the task that removes expired samples every `interval`. The task ends when the guard is dropped or
    /// the last handle to the store is gone.
    pub fn spawn_purger(&self, interval: Duration) -> PurgerGuard {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        PurgerGuard(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let removed = inner.purge_expired();
                if removed > 0 {
                    tracing::debug!(removed, "purged expired series");
                }
            }
        }))
    }

    /// Removes every expired sample and every group left empty; returns how many samples were removed.
    pub fn purge_expired(&self) -> usize {
        self.inner.purge_expired()
    }
}

impl Inner {
    fn now(&self) -> i64 {
        self.clock.now_millis()
    }

    fn sample(&self, write: SampleWrite) -> Sample {
        let now = self.now();
        let expires_at_millis = match write.ttl {
            Some(ttl) => now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)),
            None => i64::MAX,
        };
        Sample { value: write.value, timestamp_millis: now, expires_at_millis, labels: write.labels }
    }

    fn check_labels(&self, labels: &SeriesLabels) -> Result<(), StoreError> {
        let limit = self.limits.max_labels_per_series;
        if labels.len() > limit {
            return Err(StoreError::TooManyLabels { count: labels.len(), limit });
        }
        Ok(())
    }

    /// Reserves room for one more series, or refuses.
    fn reserve_series(&self) -> Result<(), StoreError> {
        let limit = self.limits.max_series;
        self.series
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < limit).then_some(n + 1))
            .map(|_| ())
            .map_err(|_| StoreError::SeriesLimit { limit })
    }

    fn release_series(&self, count: usize) {
        self.series.fetch_sub(count, Ordering::AcqRel);
    }

    /// Inserts or replaces the series `key` in the group `group_key`, creating the group when needed. The owned
    /// key is only built (`make_key`) when the series is new, so an update allocates nothing.
    fn put<K, Q>(
        &self,
        groups: &DashMap<Box<str>, Group<K>>,
        group_key: &str,
        key: &Q,
        make_key: impl FnOnce() -> K,
        sample: Sample,
    ) -> Result<(), StoreError>
    where
        K: Hash + Eq + std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let insert = |group: &Group<K>| {
            let mut series = group.write();
            if let Some(existing) = series.get_mut(key) {
                *existing = sample;
                return Ok(());
            }
            self.reserve_series()?;
            series.insert(make_key(), sample);
            Ok(())
        };
        // Fast path: the group exists. The shard read guard is held while the group is written so that the purge
        // (which removes empty groups under the shard write lock) can never drop a group we are writing into.
        if let Some(group) = groups.get(group_key) {
            return insert(&group);
        }
        insert(&groups.entry(group_key.into()).or_default())
    }

    /// Removes `key` from group `group_key`; `true` if a live sample was there.
    fn delete<K, Q>(&self, groups: &DashMap<Box<str>, Group<K>>, group_key: &str, key: &Q) -> bool
    where
        K: Hash + Eq + std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = self.now();
        let Some(group) = groups.get(group_key) else {
            return false;
        };
        let removed = group.write().remove(key);
        match removed {
            Some(sample) => {
                self.release_series(1);
                sample.is_live(now)
            }
            None => false,
        }
    }

    fn purge_expired(&self) -> usize {
        let now = self.now();
        let removed = purge_map(&self.custom, now) + purge_map(&self.external, now);
        self.release_series(removed);
        removed
    }
}

/// Removes expired samples from every group of `groups`, then the groups left empty.
fn purge_map<K: Hash + Eq>(groups: &DashMap<Box<str>, Group<K>>, now: i64) -> usize {
    let mut removed = 0;
    // `retain` holds each shard's write lock while it visits it, so no writer is inside a group we drop.
    groups.retain(|_, group| {
        let mut series = group.write();
        let before = series.len();
        series.retain(|_, sample| sample.is_live(now));
        removed += before - series.len();
        !series.is_empty()
    });
    removed
}

fn custom_group_key(resource: &str, namespace: &str, metric: &str) -> String {
    let mut key = String::with_capacity(resource.len() + namespace.len() + metric.len() + 2);
    key.push_str(resource);
    key.push(KEY_SEPARATOR);
    key.push_str(namespace);
    key.push(KEY_SEPARATOR);
    key.push_str(metric);
    key
}

fn external_group_key(namespace: &str, metric: &str) -> String {
    let mut key = String::with_capacity(namespace.len() + metric.len() + 1);
    key.push_str(namespace);
    key.push(KEY_SEPARATOR);
    key.push_str(metric);
    key
}

/// Splits a custom group key into (resource, namespace, metric).
fn split_custom_group_key(key: &str) -> Option<(&str, &str, &str)> {
    let mut parts = key.splitn(3, KEY_SEPARATOR);
    Some((parts.next()?, parts.next()?, parts.next()?))
}

#[async_trait]
impl MetricStore for MemoryStore {
    async fn put_custom(&self, id: CustomSeriesId<'_>, write: SampleWrite) -> Result<(), StoreError> {
        check_custom_id(&id)?;
        let inner = &self.inner;
        inner.check_labels(&write.labels)?;
        let sample = inner.sample(write);
        let group_key = custom_group_key(id.resource, id.namespace, id.metric);
        inner.put(&inner.custom, &group_key, id.name, || Box::from(id.name), sample)
    }

    async fn delete_custom(&self, id: CustomSeriesId<'_>) -> Result<bool, StoreError> {
        let group_key = custom_group_key(id.resource, id.namespace, id.metric);
        Ok(self.inner.delete(&self.inner.custom, &group_key, id.name))
    }

    async fn get_custom(&self, id: CustomSeriesId<'_>) -> Result<Option<Sample>, StoreError> {
        let now = self.inner.now();
        let group_key = custom_group_key(id.resource, id.namespace, id.metric);
        let Some(group) = self.inner.custom.get(group_key.as_str()) else {
            return Ok(None);
        };
        let series = group.read();
        Ok(series.get(id.name).filter(|s| s.is_live(now)).cloned())
    }

    async fn list_custom_objects(
        &self,
        resource: &str,
        namespace: &str,
        metric: &str,
    ) -> Result<Vec<(String, Sample)>, StoreError> {
        let now = self.inner.now();
        let group_key = custom_group_key(resource, namespace, metric);
        let Some(group) = self.inner.custom.get(group_key.as_str()) else {
            return Ok(Vec::new());
        };
        let mut items: Vec<(String, Sample)> = group
            .read()
            .iter()
            .filter(|(_, s)| s.is_live(now))
            .map(|(name, s)| (name.to_string(), s.clone()))
            .collect();
        items.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(items)
    }

    async fn get_custom_objects(
        &self,
        resource: &str,
        namespace: &str,
        metric: &str,
        names: &[String],
    ) -> Result<Vec<(String, Sample)>, StoreError> {
        let now = self.inner.now();
        let group_key = custom_group_key(resource, namespace, metric);
        let Some(group) = self.inner.custom.get(group_key.as_str()) else {
            return Ok(Vec::new());
        };
        let series = group.read();
        Ok(names
            .iter()
            .filter_map(|name| {
                let sample = series.get(name.as_str()).filter(|s| s.is_live(now))?;
                Some((name.clone(), sample.clone()))
            })
            .collect())
    }

    async fn list_object_metrics(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Vec<(String, Sample)>, StoreError> {
        let now = self.inner.now();
        let mut items = Vec::new();
        for group in self.inner.custom.iter() {
            let Some((r, ns, metric)) = split_custom_group_key(group.key()) else {
                continue;
            };
            if r != resource || ns != namespace {
                continue;
            }
            if let Some(sample) = group.read().get(name).filter(|s| s.is_live(now)) {
                items.push((metric.to_string(), sample.clone()));
            }
        }
        items.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(items)
    }

    async fn list_custom_metrics(&self) -> Result<Vec<CustomMetricDescriptor>, StoreError> {
        let now = self.inner.now();
        let mut items = Vec::new();
        for group in self.inner.custom.iter() {
            let Some((resource, namespace, metric)) = split_custom_group_key(group.key()) else {
                continue;
            };
            if group.read().values().any(|s| s.is_live(now)) {
                items.push(CustomMetricDescriptor {
                    resource: resource.to_string(),
                    metric: metric.to_string(),
                    namespaced: !namespace.is_empty(),
                });
            }
        }
        items.sort_unstable();
        items.dedup();
        Ok(items)
    }

    async fn custom_objects(&self, resource: &str) -> Result<Vec<(String, String)>, StoreError> {
        let now = self.inner.now();
        let mut objects = Vec::new();
        for group in self.inner.custom.iter() {
            let Some((r, namespace, _)) = split_custom_group_key(group.key()) else {
                continue;
            };
            if r != resource {
                continue;
            }
            objects.extend(
                group
                    .read()
                    .iter()
                    .filter(|(_, s)| s.is_live(now))
                    .map(|(name, _)| (namespace.to_string(), name.to_string())),
            );
        }
        objects.sort_unstable();
        objects.dedup();
        Ok(objects)
    }

    async fn delete_object(&self, resource: &str, namespace: &str, name: &str) -> Result<usize, StoreError> {
        let mut removed = 0;
        for group in self.inner.custom.iter() {
            let Some((r, ns, _)) = split_custom_group_key(group.key()) else {
                continue;
            };
            if r == resource && ns == namespace && group.write().remove(name).is_some() {
                removed += 1;
            }
        }
        // Groups left empty stay until the next purge, as after `delete_custom`.
        self.inner.release_series(removed);
        Ok(removed)
    }

    async fn put_external(&self, namespace: &str, metric: &str, write: SampleWrite) -> Result<(), StoreError> {
        check_external_id(namespace, metric)?;
        let inner = &self.inner;
        inner.check_labels(&write.labels)?;
        let key = write.labels.clone();
        let sample = inner.sample(write);
        inner.put(&inner.external, &external_group_key(namespace, metric), &key, || key.clone(), sample)
    }

    async fn delete_external(&self, namespace: &str, metric: &str, labels: &SeriesLabels) -> Result<bool, StoreError> {
        Ok(self.inner.delete(&self.inner.external, &external_group_key(namespace, metric), labels))
    }

    async fn list_external(&self, namespace: &str, metric: &str) -> Result<Vec<Sample>, StoreError> {
        let now = self.inner.now();
        let group_key = external_group_key(namespace, metric);
        let Some(group) = self.inner.external.get(group_key.as_str()) else {
            return Ok(Vec::new());
        };
        let mut items: Vec<Sample> = group.read().values().filter(|s| s.is_live(now)).cloned().collect();
        items.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));
        Ok(items)
    }

    async fn list_external_metrics(&self) -> Result<Vec<String>, StoreError> {
        let now = self.inner.now();
        let mut names = Vec::new();
        for group in self.inner.external.iter() {
            let Some((_, metric)) = group.key().split_once(KEY_SEPARATOR) else {
                continue;
            };
            if group.read().values().any(|s| s.is_live(now)) {
                names.push(metric.to_string());
            }
        }
        names.sort_unstable();
        names.dedup();
        Ok(names)
    }

    fn series_count(&self) -> usize {
        self.inner.series.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::clock::ManualClock;
    use crate::quantity::Quantity;

    fn store(limits: Limits) -> (MemoryStore, ManualClock) {
        let clock = ManualClock::new(1_000_000);
        (MemoryStore::with_clock(limits, Arc::new(clock.clone())), clock)
    }

    fn write(value: &str, ttl: Option<Duration>) -> SampleWrite {
        SampleWrite { value: Quantity::parse(value).unwrap(), labels: SeriesLabels::empty(), ttl }
    }

    fn labels(pairs: &[(&str, &str)]) -> SeriesLabels {
        SeriesLabels::from_map(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>())
    }

    fn pod(name: &str) -> CustomSeriesId<'_> {
        CustomSeriesId { resource: "pods", namespace: "default", name, metric: "m" }
    }

    #[tokio::test]
    async fn the_last_write_wins_and_carries_its_own_labels_and_timestamp() {
        let (store, clock) = store(Limits::default());
        store.put_custom(pod("a"), SampleWrite { labels: labels(&[("q", "x")]), ..write("1", None) }).await.unwrap();
        clock.advance(5_000);
        store.put_custom(pod("a"), write("2", None)).await.unwrap();
        let sample = store.get_custom(pod("a")).await.unwrap().unwrap();
        assert_eq!(sample.value.to_string(), "2");
        assert_eq!(sample.timestamp_millis, 1_005_000);
        assert!(sample.labels.is_empty(), "labels are replaced, not merged");
        assert_eq!(store.series_count(), 1);
    }

    #[tokio::test]
    async fn an_expired_value_is_absent_everywhere_and_purged_later() {
        let (store, clock) = store(Limits::default());
        store.put_custom(pod("a"), write("1", Some(Duration::from_secs(10)))).await.unwrap();
        store.put_custom(pod("b"), write("2", None)).await.unwrap();
        store.put_external("default", "e", write("3", Some(Duration::from_secs(10)))).await.unwrap();
        clock.advance(9_999);
        assert!(store.get_custom(pod("a")).await.unwrap().is_some());
        clock.advance(1);
        assert_eq!(store.get_custom(pod("a")).await.unwrap(), None);
        let names: Vec<String> =
            store.list_custom_objects("pods", "default", "m").await.unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["b"]);
        assert!(store.list_external("default", "e").await.unwrap().is_empty());
        assert!(store.list_external_metrics().await.unwrap().is_empty());
        assert!(store.list_object_metrics("pods", "default", "a").await.unwrap().is_empty());
        assert!(!store.delete_custom(pod("a")).await.unwrap(), "deleting an expired value reports nothing deleted");
        assert_eq!(store.series_count(), 2);
        assert_eq!(store.purge_expired(), 1);
        assert_eq!(store.series_count(), 1);
        assert_eq!(store.inner.external.len(), 0, "empty groups are dropped");
    }

    #[tokio::test]
    async fn a_rewrite_renews_the_deadline() {
        let (store, clock) = store(Limits::default());
        store.put_custom(pod("a"), write("1", Some(Duration::from_secs(10)))).await.unwrap();
        clock.advance(8_000);
        store.put_custom(pod("a"), write("1", Some(Duration::from_secs(10)))).await.unwrap();
        clock.advance(8_000);
        assert!(store.get_custom(pod("a")).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn limits_refuse_without_changing_anything() {
        let (store, _) = store(Limits { max_series: 2, max_labels_per_series: 1 });
        store.put_custom(pod("a"), write("1", None)).await.unwrap();
        store.put_external("default", "e", write("1", None)).await.unwrap();
        assert_eq!(store.put_custom(pod("b"), write("1", None)).await, Err(StoreError::SeriesLimit { limit: 2 }));
        assert_eq!(store.get_custom(pod("b")).await.unwrap(), None);
        // Updating an existing series is always allowed.
        store.put_custom(pod("a"), write("2", None)).await.unwrap();
        let two = SampleWrite { labels: labels(&[("a", "1"), ("b", "2")]), ..write("1", None) };
        assert_eq!(store.put_custom(pod("a"), two).await, Err(StoreError::TooManyLabels { count: 2, limit: 1 }));
        assert_eq!(store.get_custom(pod("a")).await.unwrap().unwrap().value.to_string(), "2");
        let long = "x".repeat(254);
        assert!(matches!(
            store.put_custom(CustomSeriesId { name: &long, ..pod("a") }, write("1", None)).await,
            Err(StoreError::NameTooLong { what: "object name", len: 254, max: 253 })
        ));
    }

    #[tokio::test]
    async fn external_series_are_identified_by_their_labels() {
        let (store, _) = store(Limits::default());
        store.put_external("ns", "q", SampleWrite { labels: labels(&[("a", "2")]), ..write("2", None) }).await.unwrap();
        store.put_external("ns", "q", SampleWrite { labels: labels(&[("a", "1")]), ..write("1", None) }).await.unwrap();
        store.put_external("ns", "q", SampleWrite { labels: labels(&[("a", "1")]), ..write("3", None) }).await.unwrap();
        store.put_external("ns", "q", write("4", None)).await.unwrap();
        let values: Vec<String> =
            store.list_external("ns", "q").await.unwrap().iter().map(|s| s.value.to_string()).collect();
        assert_eq!(values, ["4", "3", "2"], "sorted by labels, the unlabelled series first");
        assert!(store.delete_external("ns", "q", &labels(&[("a", "1")])).await.unwrap());
        assert_eq!(store.list_external("ns", "q").await.unwrap().len(), 2);
        assert!(store.list_external("other", "q").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn discovery_lists_distinct_resource_metric_pairs_with_their_scope() {
        let (store, _) = store(Limits::default());
        store.put_custom(pod("a"), write("1", None)).await.unwrap();
        store.put_custom(CustomSeriesId { namespace: "other", ..pod("a") }, write("1", None)).await.unwrap();
        let ns = CustomSeriesId { resource: "namespaces", namespace: "", name: "default", metric: "w" };
        store.put_custom(ns, write("1", None)).await.unwrap();
        let listed = store.list_custom_metrics().await.unwrap();
        assert_eq!(
            listed,
            [
                CustomMetricDescriptor { resource: "namespaces".into(), metric: "w".into(), namespaced: false },
                CustomMetricDescriptor { resource: "pods".into(), metric: "m".into(), namespaced: true },
            ]
        );
    }

    #[tokio::test]
    async fn named_reads_keep_the_callers_order_and_skip_the_absent() {
        let (store, _) = store(Limits::default());
        for name in ["a", "b", "c"] {
            store.put_custom(pod(name), write("1", None)).await.unwrap();
        }
        let names = ["c".to_string(), "x".to_string(), "a".to_string()];
        let got: Vec<String> = store
            .get_custom_objects("pods", "default", "m", &names)
            .await
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(got, ["c", "a"]);
    }

    #[tokio::test]
    async fn custom_objects_lists_each_live_object_of_a_resource_once() {
        let (store, clock) = store(Limits::default());
        store.put_custom(pod("b"), write("1", None)).await.unwrap();
        store.put_custom(CustomSeriesId { metric: "n", ..pod("b") }, write("1", None)).await.unwrap();
        store.put_custom(CustomSeriesId { namespace: "other", ..pod("a") }, write("1", None)).await.unwrap();
        store.put_custom(pod("gone"), write("1", Some(Duration::from_secs(1)))).await.unwrap();
        let ns = CustomSeriesId { resource: "namespaces", namespace: "", name: "default", metric: "m" };
        store.put_custom(ns, write("1", None)).await.unwrap();
        clock.advance(1_000);
        let objects = store.custom_objects("pods").await.unwrap();
        let expected = [("default", "b"), ("other", "a")].map(|(ns, n)| (ns.to_string(), n.to_string()));
        assert_eq!(objects, expected, "sorted, de-duplicated across metrics, expired and other resources left out");
        assert_eq!(store.custom_objects("namespaces").await.unwrap(), [(String::new(), "default".to_string())]);
        assert!(store.custom_objects("services").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn delete_object_removes_every_metric_of_that_object_only() {
        let (store, _) = store(Limits::default());
        store.put_custom(pod("a"), write("1", None)).await.unwrap();
        store.put_custom(CustomSeriesId { metric: "n", ..pod("a") }, write("2", None)).await.unwrap();
        store.put_custom(pod("b"), write("3", None)).await.unwrap();
        store.put_custom(CustomSeriesId { namespace: "other", ..pod("a") }, write("4", None)).await.unwrap();
        let svc = CustomSeriesId { resource: "services", ..pod("a") };
        store.put_custom(svc, write("5", None)).await.unwrap();
        assert_eq!(store.delete_object("pods", "default", "a").await.unwrap(), 2);
        assert!(store.list_object_metrics("pods", "default", "a").await.unwrap().is_empty());
        assert!(store.get_custom(pod("b")).await.unwrap().is_some());
        assert!(store.get_custom(CustomSeriesId { namespace: "other", ..pod("a") }).await.unwrap().is_some());
        assert!(store.get_custom(svc).await.unwrap().is_some());
        assert_eq!(store.series_count(), 3, "the series count follows the removal");
        assert_eq!(store.delete_object("pods", "default", "a").await.unwrap(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writers_lose_nothing_and_count_exactly() {
        let (store, _) = store(Limits { max_series: 10_000, max_labels_per_series: 4 });
        let mut tasks = Vec::new();
        for writer in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..1_000 {
                    // Half the writes hit series shared by all writers, half hit the writer's own.
                    let name = if i % 2 == 0 { format!("shared-{}", i % 100) } else { format!("w{writer}-{i}") };
                    let id = CustomSeriesId { resource: "pods", namespace: "default", name: &name, metric: "m" };
                    store.put_custom(id, write("1", None)).await.unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let expected = 50 + 8 * 500;
        assert_eq!(store.series_count(), expected);
        assert_eq!(store.list_custom_objects("pods", "default", "m").await.unwrap().len(), expected);
    }

    #[tokio::test(start_paused = true)]
    async fn the_purger_runs_on_its_interval_and_stops_with_its_guard() {
        let (store, clock) = store(Limits::default());
        store.put_custom(pod("a"), write("1", Some(Duration::from_secs(1)))).await.unwrap();
        let guard = store.spawn_purger(Duration::from_secs(5));
        clock.advance(2_000);
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(store.series_count(), 0);
        drop(guard);
        store.put_custom(pod("b"), write("1", Some(Duration::from_secs(1)))).await.unwrap();
        clock.advance(2_000);
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(store.series_count(), 1, "no purge after the guard is dropped");
    }
}
