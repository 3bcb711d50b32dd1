//! The contract of [`MetricStore`] as tests that every implementation must pass (docs/architecture.md §9).
//!
//! An implementation plugs in by implementing [`Subject`] (how to make an empty store on a given clock, and how to
//! make it remove what has expired) and one line in its tests:
//!
//! ```ignore
//! crate::store_conformance!(MemoryStore);
//! ```
//!
//! which expands to a `conformance` module with one `#[tokio::test]` per clause below. Each clause is also a public
//! async function, generic over the subject, for a test that needs to run it by hand (for example against a
//! networked backend that must be started first). Available to this crate's tests and, with the `test-support`
//! feature, to integration tests.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{
    CustomMetricDescriptor, CustomSeriesId, Limits, MetricStore, Put, RateLimits, Sample, SampleWrite, SeriesFilter,
    SeriesKind, SeriesLabels, SeriesPosition, StoreError, history,
};
use crate::clock::{Clock, ManualClock};
use crate::quantity::Quantity;

/// A store under test.
#[async_trait]
pub trait Subject: MetricStore + Sized {
    /// A new, empty store with these limits, reading time from `clock`, isolated from every other store the suite
    /// makes (the clauses run concurrently).
    async fn create(limits: Limits, clock: Arc<dyn Clock>) -> Self;

    /// Removes what has expired by the clock's present, as the store's own expiry eventually does; after it,
    /// [`MetricStore::series_count`] and [`MetricStore::bytes_used`] no longer count expired series.
    async fn purge(&self);
}

/// One test per clause of the contract, for the store type `$subject` (which implements [`Subject`]).
#[macro_export]
macro_rules! store_conformance {
    ($subject:ty) => {
        mod conformance {
            #[allow(unused_imports)]
            use super::*;
            $crate::store_conformance!(@tests $subject;
                custom_values_are_put_read_and_deleted,
                the_last_write_wins_and_replaces_the_labels,
                external_series_are_identified_by_namespace_metric_and_labels,
                an_expired_value_is_absent_from_every_read,
                a_rewrite_moves_the_deadline,
                a_huge_ttl_never_expires,
                listings_and_discovery_are_sorted_and_live_only,
                delete_object_removes_every_metric_of_one_object,
                the_series_limit_refuses_new_series_and_changes_nothing,
                label_limits_refuse_and_change_nothing,
                names_longer_than_their_maximum_are_refused,
                the_byte_budget_refuses_and_changes_nothing,
                accounting_returns_to_zero_after_deletes_and_expiry,
                put_many_applies_each_write_on_its_own_in_order,
                a_healthy_store_says_so,
                series_pages_list_every_live_series_once_in_order,
                a_counter_keeps_its_samples_within_the_rate_window,
                a_recent_read_gives_the_labels_and_without_names_every_live_object,
                a_gauge_keeps_its_last_values_for_the_sparkline,
                the_kind_is_replaced_by_a_later_write_and_discovery_knows_counters,
                the_history_is_accounted_and_released,
            );
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_writers_lose_nothing_and_count_exactly() {
                $crate::store::conformance::concurrent_writers_lose_nothing_and_count_exactly::<$subject>().await;
            }
        }
    };
    (@tests $subject:ty; $($clause:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $clause() {
                $crate::store::conformance::$clause::<$subject>().await;
            }
        )*
    };
}

const START: i64 = 1_000_000;

async fn subject<S: Subject>(limits: Limits) -> (S, ManualClock) {
    let clock = ManualClock::new(START);
    (S::create(limits, Arc::new(clock.clone())).await, clock)
}

fn write(value: &str, ttl: Option<Duration>) -> SampleWrite {
    SampleWrite { value: Quantity::parse(value).unwrap(), labels: SeriesLabels::empty(), ttl, kind: SeriesKind::Gauge }
}

fn labelled(value: &str, pairs: &[(&str, &str)]) -> SampleWrite {
    SampleWrite { labels: labels(pairs), ..write(value, None) }
}

fn labels(pairs: &[(&str, &str)]) -> SeriesLabels {
    SeriesLabels::from_map(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>())
}

fn pod(name: &str) -> CustomSeriesId<'_> {
    CustomSeriesId { resource: "pods", namespace: "default", name, metric: "m" }
}

fn secs(s: u64) -> Option<Duration> {
    Some(Duration::from_secs(s))
}

fn value(sample: Option<Sample>) -> Option<String> {
    sample.map(|s| s.value.to_string())
}

fn names(items: Vec<(String, Sample)>) -> Vec<String> {
    items.into_iter().map(|(name, _)| name).collect()
}

fn values(items: Vec<Sample>) -> Vec<String> {
    items.into_iter().map(|s| s.value.to_string()).collect()
}

/// What a store shows of itself, to prove that a refused operation changed nothing.
async fn snapshot<S: Subject>(store: &S) -> (usize, usize, Vec<(String, Sample)>, Vec<Sample>) {
    (
        store.series_count(),
        store.bytes_used(),
        store.list_custom_objects("pods", "default", "m").await.unwrap(),
        store.list_external("default", "e").await.unwrap(),
    )
}

/// put, get and delete of a custom value, with its timestamp and deadline.
pub async fn custom_values_are_put_read_and_deleted<S: Subject>() {
    let (store, _) = subject::<S>(Limits::default()).await;
    assert_eq!(store.get_custom(pod("a")).await.unwrap(), None);
    store.put_custom(pod("a"), labelled("1500m", &[("q", "x")])).await.unwrap();
    let sample = store.get_custom(pod("a")).await.unwrap().unwrap();
    assert_eq!(sample.value.to_string(), "1500m");
    assert_eq!(sample.timestamp_millis, START);
    assert_eq!(sample.expires_at_millis, i64::MAX, "no ttl: never expires");
    assert_eq!(sample.labels, labels(&[("q", "x")]));
    assert_eq!(store.get_custom(CustomSeriesId { metric: "other", ..pod("a") }).await.unwrap(), None);
    assert_eq!(store.get_custom(CustomSeriesId { namespace: "other", ..pod("a") }).await.unwrap(), None);
    assert_eq!(store.get_custom(CustomSeriesId { resource: "services", ..pod("a") }).await.unwrap(), None);
    assert_eq!(store.series_count(), 1);
    assert!(store.delete_custom(pod("a")).await.unwrap(), "a live value was deleted");
    assert_eq!(store.get_custom(pod("a")).await.unwrap(), None);
    assert!(!store.delete_custom(pod("a")).await.unwrap(), "nothing left to delete");
    assert_eq!(store.series_count(), 0);
}

/// The last write wins, with its own labels (replaced, not merged) and timestamp.
pub async fn the_last_write_wins_and_replaces_the_labels<S: Subject>() {
    let (store, clock) = subject::<S>(Limits::default()).await;
    store.put_custom(pod("a"), labelled("1", &[("q", "x"), ("r", "y")])).await.unwrap();
    clock.advance(5_000);
    store.put_custom(pod("a"), labelled("2", &[("s", "z")])).await.unwrap();
    let sample = store.get_custom(pod("a")).await.unwrap().unwrap();
    assert_eq!(sample.value.to_string(), "2");
    assert_eq!(sample.timestamp_millis, START + 5_000);
    assert_eq!(sample.labels, labels(&[("s", "z")]), "labels are replaced, not merged");
    store.put_custom(pod("a"), write("3", None)).await.unwrap();
    assert!(store.get_custom(pod("a")).await.unwrap().unwrap().labels.is_empty());
    assert_eq!(store.series_count(), 1);
}

/// External series: (namespace, metric, labels) is the identity; listings are sorted by labels.
pub async fn external_series_are_identified_by_namespace_metric_and_labels<S: Subject>() {
    let (store, _) = subject::<S>(Limits::default()).await;
    store.put_external("ns", "q", labelled("2", &[("a", "2")])).await.unwrap();
    store.put_external("ns", "q", labelled("1", &[("a", "1")])).await.unwrap();
    store.put_external("ns", "q", labelled("3", &[("a", "1")])).await.unwrap();
    store.put_external("ns", "q", write("4", None)).await.unwrap();
    store.put_external("other", "q", write("5", None)).await.unwrap();
    store.put_external("ns", "r", write("6", None)).await.unwrap();
    let listed = store.list_external("ns", "q").await.unwrap();
    assert_eq!(values(listed.clone()), ["4", "3", "2"], "sorted by labels, the unlabelled series first");
    assert_eq!(listed[1].labels, labels(&[("a", "1")]), "a listed sample carries its labels");
    assert_eq!(store.series_count(), 5);
    assert!(store.delete_external("ns", "q", &labels(&[("a", "1")])).await.unwrap());
    assert!(!store.delete_external("ns", "q", &labels(&[("a", "1")])).await.unwrap());
    assert!(!store.delete_external("ns", "q", &labels(&[("a", "9")])).await.unwrap());
    assert_eq!(values(store.list_external("ns", "q").await.unwrap()), ["4", "2"]);
    assert_eq!(values(store.list_external("other", "q").await.unwrap()), ["5"]);
    assert!(store.list_external("nowhere", "q").await.unwrap().is_empty());
    assert_eq!(store.list_external_metrics().await.unwrap(), ["q", "r"]);
}

/// A value with a ttl is readable until its deadline and absent from every read from then on.
pub async fn an_expired_value_is_absent_from_every_read<S: Subject>() {
    let (store, clock) = subject::<S>(Limits::default()).await;
    store.put_custom(pod("a"), write("1", secs(10))).await.unwrap();
    store.put_custom(pod("b"), write("2", None)).await.unwrap();
    let namespace = CustomSeriesId { resource: "namespaces", namespace: "", name: "default", metric: "t" };
    store.put_custom(namespace, write("3", secs(10))).await.unwrap();
    store.put_external("default", "e", write("4", secs(10))).await.unwrap();
    assert_eq!(store.get_custom(pod("a")).await.unwrap().unwrap().expires_at_millis, START + 10_000);
    clock.advance(9_999);
    assert!(store.get_custom(pod("a")).await.unwrap().is_some(), "live until the deadline");
    assert_eq!(store.list_external("default", "e").await.unwrap().len(), 1);
    clock.advance(1);
    assert_eq!(store.get_custom(pod("a")).await.unwrap(), None);
    assert_eq!(names(store.list_custom_objects("pods", "default", "m").await.unwrap()), ["b"]);
    let wanted = ["a".to_string(), "b".to_string()];
    assert_eq!(names(store.get_custom_objects("pods", "default", "m", &wanted).await.unwrap()), ["b"]);
    assert!(store.list_object_metrics("pods", "default", "a").await.unwrap().is_empty());
    assert!(store.list_object_metrics("namespaces", "", "default").await.unwrap().is_empty());
    assert_eq!(store.custom_objects("pods").await.unwrap(), [("default".to_string(), "b".to_string())]);
    assert!(store.custom_objects("namespaces").await.unwrap().is_empty());
    assert!(store.list_external("default", "e").await.unwrap().is_empty());
    assert!(store.list_external_metrics().await.unwrap().is_empty());
    let pods = CustomMetricDescriptor { resource: "pods".into(), metric: "m".into(), namespaced: true, counter: false };
    assert_eq!(store.list_custom_metrics().await.unwrap(), [pods]);
    assert!(!store.delete_custom(pod("a")).await.unwrap(), "deleting an expired value reports nothing deleted");
    assert!(!store.delete_external("default", "e", &SeriesLabels::empty()).await.unwrap());
    // Writing again brings it back, with a deadline of its own.
    store.put_custom(pod("a"), write("5", secs(1))).await.unwrap();
    assert_eq!(value(store.get_custom(pod("a")).await.unwrap()).as_deref(), Some("5"));
}

/// A rewrite replaces the deadline: a longer ttl keeps the value past the old deadline (through the store's own
/// expiry too), a shorter one ends it sooner, none makes it permanent.
pub async fn a_rewrite_moves_the_deadline<S: Subject>() {
    let (store, clock) = subject::<S>(Limits::default()).await;
    store.put_custom(pod("longer"), write("1", secs(10))).await.unwrap();
    store.put_custom(pod("shorter"), write("1", secs(60))).await.unwrap();
    store.put_custom(pod("forever"), write("1", secs(10))).await.unwrap();
    store.put_custom(pod("later"), write("1", None)).await.unwrap();
    store.put_external("default", "e", write("1", secs(10))).await.unwrap();
    clock.advance(8_000);
    store.put_custom(pod("longer"), write("2", secs(10))).await.unwrap();
    store.put_custom(pod("shorter"), write("2", secs(1))).await.unwrap();
    store.put_custom(pod("forever"), write("2", None)).await.unwrap();
    store.put_custom(pod("later"), write("2", secs(5))).await.unwrap();
    store.put_external("default", "e", write("2", secs(10))).await.unwrap();
    clock.advance(1_000);
    store.purge().await;
    assert_eq!(store.get_custom(pod("shorter")).await.unwrap(), None, "the shorter deadline applies");
    clock.advance(2_000);
    store.purge().await;
    for name in ["longer", "forever", "later"] {
        assert_eq!(value(store.get_custom(pod(name)).await.unwrap()).as_deref(), Some("2"), "{name}");
    }
    assert_eq!(values(store.list_external("default", "e").await.unwrap()), ["2"]);
    assert_eq!(store.series_count(), 4, "only the shortened series was purged");
    clock.advance(3_000);
    store.purge().await;
    assert_eq!(store.get_custom(pod("later")).await.unwrap(), None, "a ttl given to a permanent value applies");
    clock.advance(6_000);
    store.purge().await;
    assert_eq!(store.get_custom(pod("longer")).await.unwrap(), None);
    assert!(store.list_external("default", "e").await.unwrap().is_empty());
    assert_eq!(value(store.get_custom(pod("forever")).await.unwrap()).as_deref(), Some("2"));
    assert_eq!(store.series_count(), 1);
}

/// A ttl too large to add to the clock saturates: the value never expires.
pub async fn a_huge_ttl_never_expires<S: Subject>() {
    let (store, clock) = subject::<S>(Limits::default()).await;
    store.put_custom(pod("a"), write("1", Some(Duration::from_secs(u64::MAX)))).await.unwrap();
    store.put_custom(pod("b"), write("1", Some(Duration::from_secs(3_600_000_000_000)))).await.unwrap();
    clock.advance(1_000_000_000);
    store.purge().await;
    assert_eq!(store.get_custom(pod("a")).await.unwrap().unwrap().expires_at_millis, i64::MAX);
    assert!(store.get_custom(pod("b")).await.unwrap().is_some());
    assert_eq!(store.list_custom_metrics().await.unwrap().len(), 1);
}

/// The listings: objects by name, named reads in the caller's order, an object's metrics, discovery.
pub async fn listings_and_discovery_are_sorted_and_live_only<S: Subject>() {
    let (store, clock) = subject::<S>(Limits::default()).await;
    for name in ["c", "a", "b"] {
        store.put_custom(pod(name), write("1", None)).await.unwrap();
    }
    store.put_custom(CustomSeriesId { metric: "z", ..pod("a") }, write("2", None)).await.unwrap();
    store.put_custom(CustomSeriesId { metric: "k", ..pod("a") }, write("3", None)).await.unwrap();
    store.put_custom(CustomSeriesId { metric: "gone", ..pod("a") }, write("4", secs(1))).await.unwrap();
    store.put_custom(CustomSeriesId { namespace: "other", ..pod("d") }, write("1", None)).await.unwrap();
    let namespace = CustomSeriesId { resource: "namespaces", namespace: "", name: "default", metric: "w" };
    store.put_custom(namespace, write("1", None)).await.unwrap();
    store.put_custom(CustomSeriesId { resource: "deployments.apps", ..pod("x") }, write("1", secs(1))).await.unwrap();
    store.put_external("ns", "ext-b", write("1", None)).await.unwrap();
    store.put_external("other", "ext-b", write("1", None)).await.unwrap();
    store.put_external("ns", "ext-a", write("1", None)).await.unwrap();
    store.put_external("ns", "ext-gone", write("1", secs(1))).await.unwrap();
    clock.advance(1_000);

    assert_eq!(names(store.list_custom_objects("pods", "default", "m").await.unwrap()), ["a", "b", "c"]);
    assert!(store.list_custom_objects("pods", "default", "none").await.unwrap().is_empty());
    let wanted = ["c", "x", "a", "c"].map(String::from);
    assert_eq!(
        names(store.get_custom_objects("pods", "default", "m", &wanted).await.unwrap()),
        ["c", "a", "c"],
        "the caller's order, absent names skipped"
    );
    let metrics = store.list_object_metrics("pods", "default", "a").await.unwrap();
    let metrics: Vec<(String, String)> = metrics.into_iter().map(|(m, s)| (m, s.value.to_string())).collect();
    let expected = [("k", "3"), ("m", "1"), ("z", "2")].map(|(m, v)| (m.to_string(), v.to_string()));
    assert_eq!(metrics, expected, "sorted by metric name, the expired one left out");
    assert!(store.list_object_metrics("pods", "default", "nobody").await.unwrap().is_empty());
    let objects = ["a", "b", "c"].map(|n| ("default".to_string(), n.to_string()));
    let mut objects = objects.to_vec();
    objects.push(("other".to_string(), "d".to_string()));
    assert_eq!(store.custom_objects("pods").await.unwrap(), objects, "sorted, once per object");
    assert_eq!(store.custom_objects("namespaces").await.unwrap(), [(String::new(), "default".to_string())]);
    assert!(store.custom_objects("deployments.apps").await.unwrap().is_empty());
    let descriptor = |resource: &str, metric: &str, namespaced| CustomMetricDescriptor {
        resource: resource.into(),
        metric: metric.into(),
        namespaced,
        counter: false,
    };
    assert_eq!(
        store.list_custom_metrics().await.unwrap(),
        [
            descriptor("namespaces", "w", false),
            descriptor("pods", "k", true),
            descriptor("pods", "m", true),
            descriptor("pods", "z", true),
        ],
        "sorted, de-duplicated across namespaces, expired pairs left out"
    );
    assert_eq!(store.list_external_metrics().await.unwrap(), ["ext-a", "ext-b"]);
}

/// `delete_object` removes every series of one object, live or expired, and nothing else.
pub async fn delete_object_removes_every_metric_of_one_object<S: Subject>() {
    let (store, clock) = subject::<S>(Limits::default()).await;
    store.put_custom(pod("a"), write("1", None)).await.unwrap();
    store.put_custom(CustomSeriesId { metric: "n", ..pod("a") }, write("2", None)).await.unwrap();
    store.put_custom(CustomSeriesId { metric: "expired", ..pod("a") }, write("2", secs(1))).await.unwrap();
    store.put_custom(pod("b"), write("3", None)).await.unwrap();
    store.put_custom(CustomSeriesId { namespace: "other", ..pod("a") }, write("4", None)).await.unwrap();
    let service = CustomSeriesId { resource: "services", ..pod("a") };
    store.put_custom(service, write("5", None)).await.unwrap();
    store.put_external("default", "a", write("6", None)).await.unwrap();
    clock.advance(1_000);
    assert_eq!(store.delete_object("pods", "default", "a").await.unwrap(), 3, "live and expired");
    assert!(store.list_object_metrics("pods", "default", "a").await.unwrap().is_empty());
    assert!(store.get_custom(pod("b")).await.unwrap().is_some());
    assert!(store.get_custom(CustomSeriesId { namespace: "other", ..pod("a") }).await.unwrap().is_some());
    assert!(store.get_custom(service).await.unwrap().is_some());
    assert_eq!(store.list_external("default", "a").await.unwrap().len(), 1);
    assert_eq!(store.series_count(), 4);
    assert_eq!(store.delete_object("pods", "default", "a").await.unwrap(), 0);
    assert_eq!(store.delete_object("pods", "nowhere", "a").await.unwrap(), 0);
}

/// `max_series` counts custom and external series; an update of an existing series is always allowed; a refused
/// write stores nothing; a delete makes room.
pub async fn the_series_limit_refuses_new_series_and_changes_nothing<S: Subject>() {
    let (store, _) = subject::<S>(Limits { max_series: 2, ..Limits::default() }).await;
    store.put_custom(pod("a"), write("1", None)).await.unwrap();
    store.put_external("default", "e", write("1", None)).await.unwrap();
    let before = snapshot(&store).await;
    assert_eq!(store.put_custom(pod("b"), write("1", None)).await, Err(StoreError::SeriesLimit { limit: 2 }));
    let refused = store.put_external("default", "e", labelled("1", &[("k", "v")])).await;
    assert_eq!(refused, Err(StoreError::SeriesLimit { limit: 2 }));
    assert_eq!(store.put_external("x", "y", write("1", secs(5))).await, Err(StoreError::SeriesLimit { limit: 2 }));
    assert_eq!(snapshot(&store).await, before, "refused writes changed nothing");
    assert!(store.list_external("x", "y").await.unwrap().is_empty());
    assert!(store.list_external_metrics().await.unwrap() == ["e"]);
    store.put_custom(pod("a"), write("2", secs(5))).await.unwrap();
    store.put_external("default", "e", write("2", None)).await.unwrap();
    assert!(store.delete_custom(pod("a")).await.unwrap());
    store.put_custom(pod("b"), write("1", None)).await.unwrap();
    assert_eq!(store.series_count(), 2);
}

/// `max_labels_per_series` and `max_label_bytes_per_series`, custom and external, for new and existing series.
pub async fn label_limits_refuse_and_change_nothing<S: Subject>() {
    let limits = Limits { max_labels_per_series: 2, max_label_bytes_per_series: 10, ..Limits::default() };
    let (store, _) = subject::<S>(limits).await;
    store.put_custom(pod("a"), labelled("1", &[("abcd", "efghij")])).await.unwrap();
    store.put_external("default", "e", labelled("1", &[("a", "1"), ("b", "2")])).await.unwrap();
    let before = snapshot(&store).await;
    let three = labelled("2", &[("a", "1"), ("b", "2"), ("c", "3")]);
    let too_many = Err(StoreError::TooManyLabels { count: 3, limit: 2 });
    assert_eq!(store.put_custom(pod("a"), three.clone()).await, too_many);
    assert_eq!(store.put_custom(pod("b"), three.clone()).await, too_many);
    assert_eq!(store.put_external("default", "e", three).await, too_many);
    let over = labelled("2", &[("abcd", "efghijk")]);
    let too_big = Err(StoreError::LabelBytes { bytes: 11, limit: 10 });
    assert_eq!(store.put_custom(pod("a"), over.clone()).await, too_big);
    assert_eq!(store.put_custom(pod("b"), over.clone()).await, too_big);
    assert_eq!(store.put_external("default", "e", over).await, too_big);
    assert_eq!(snapshot(&store).await, before, "refused writes changed nothing");
}

/// Names longer than their documented maximum are refused, whoever the caller.
pub async fn names_longer_than_their_maximum_are_refused<S: Subject>() {
    let (store, _) = subject::<S>(Limits::default()).await;
    let long = |n: usize| "x".repeat(n);
    let (ns, name, metric, resource) = (long(64), long(254), long(254), long(253 + 1 + 63 + 1));
    let cases = [
        (CustomSeriesId { namespace: &ns, ..pod("a") }, "namespace", 64, 63),
        (CustomSeriesId { name: &name, ..pod("a") }, "object name", 254, 253),
        (CustomSeriesId { metric: &metric, ..pod("a") }, "metric name", 254, 253),
        (CustomSeriesId { resource: &resource, ..pod("a") }, "resource", 318, 317),
    ];
    for (id, what, len, max) in cases {
        assert_eq!(store.put_custom(id, write("1", None)).await, Err(StoreError::NameTooLong { what, len, max }));
    }
    let refused = store.put_external(&ns, "e", write("1", None)).await;
    assert_eq!(refused, Err(StoreError::NameTooLong { what: "namespace", len: 64, max: 63 }));
    let refused = store.put_external("default", &metric, write("1", None)).await;
    assert_eq!(refused, Err(StoreError::NameTooLong { what: "metric name", len: 254, max: 253 }));
    let fits = (long(63), long(253));
    store.put_custom(CustomSeriesId { namespace: &fits.0, name: &fits.1, ..pod("a") }, write("1", None)).await.unwrap();
    assert_eq!(store.series_count(), 1);
}

fn big_labels(i: usize) -> SeriesLabels {
    let map = (0..8).map(|k| (format!("key-{k}-{i}"), format!("{:0>120}", i * 8 + k))).collect();
    SeriesLabels::from_map(map)
}

/// `max_store_bytes`: writes are refused before the budget is exceeded, a refusal changes nothing (a new series, a
/// relabelling that grows one), and deleting gives room back.
pub async fn the_byte_budget_refuses_and_changes_nothing<S: Subject>() {
    let budget = 64 << 10;
    let (store, _) = subject::<S>(Limits { max_store_bytes: budget, ..Limits::default() }).await;
    let mut stored = 0;
    let refusal = loop {
        let name = format!("pod-{stored}");
        let ttl = (stored % 2 == 0).then(|| Duration::from_secs(60));
        let before = snapshot(&store).await;
        let result = if stored % 3 == 0 {
            store.put_external("default", "e", SampleWrite { labels: big_labels(stored), ..write("1", ttl) }).await
        } else {
            store.put_custom(pod(&name), SampleWrite { labels: big_labels(stored), ..write("1", ttl) }).await
        };
        match result {
            Ok(()) => stored += 1,
            Err(error) => {
                assert_eq!(snapshot(&store).await, before, "the refused write changed nothing");
                break error;
            }
        }
        assert!(store.bytes_used() <= budget, "accounted {} > budget {budget}", store.bytes_used());
        assert!(stored < 1_000, "64 KiB never filled");
    };
    assert!(matches!(refusal, StoreError::StoreBytesLimit { limit, .. } if limit == budget), "{refusal:?}");
    assert!(refusal.to_string().contains("--max-store-bytes"), "{refusal}");
    assert!(stored >= 2, "{stored} series stored");
    // Growing the labels of a stored series is refused too, and keeps the old value and labels.
    let before = snapshot(&store).await;
    let grown = SampleWrite {
        labels: SeriesLabels::from_map((0..16).map(|k| (format!("grown-{k}"), "y".repeat(200))).collect()),
        ..write("9", None)
    };
    let result = store.put_custom(pod("pod-1"), grown).await;
    assert!(matches!(result, Err(StoreError::StoreBytesLimit { .. })), "{result:?}");
    assert_eq!(snapshot(&store).await, before);
    // Deleting gives the room back.
    assert!(store.delete_custom(pod("pod-1")).await.unwrap());
    assert!(store.bytes_used() < before.1);
    store.put_custom(pod("pod-1"), SampleWrite { labels: big_labels(1), ..write("1", None) }).await.unwrap();
}

/// `series_count` and `bytes_used` follow every addition and removal and return to zero: after deletes, after
/// `delete_object`, after expiry.
pub async fn accounting_returns_to_zero_after_deletes_and_expiry<S: Subject>() {
    let (store, clock) = subject::<S>(Limits::default()).await;
    assert_eq!((store.series_count(), store.bytes_used()), (0, 0));
    store.put_custom(pod("a"), labelled("1", &[("k", "v")])).await.unwrap();
    let one = store.bytes_used();
    assert!(one > 0);
    store.put_custom(pod("a"), labelled("2", &[("k", "v")])).await.unwrap();
    assert_eq!(store.bytes_used(), one, "an update of the same shape costs nothing more");
    store.put_custom(pod("b"), write("1", None)).await.unwrap();
    store.put_custom(CustomSeriesId { metric: "n", ..pod("b") }, write("1", None)).await.unwrap();
    store.put_external("default", "e", labelled("1", &[("k", "v")])).await.unwrap();
    assert_eq!(store.series_count(), 4);
    assert!(store.delete_custom(pod("a")).await.unwrap());
    assert_eq!(store.delete_object("pods", "default", "b").await.unwrap(), 2);
    assert!(store.delete_external("default", "e", &labels(&[("k", "v")])).await.unwrap());
    assert_eq!((store.series_count(), store.bytes_used()), (0, 0), "deletes give everything back");

    for i in 0..50 {
        let name = format!("p{i}");
        let ttl = secs(1 + i % 5);
        store
            .put_custom(CustomSeriesId { namespace: &format!("ns{}", i % 7), ..pod(&name) }, write("1", ttl))
            .await
            .unwrap();
        store
            .put_external("default", "e", SampleWrite { labels: labels(&[("i", &name)]), ..write("1", ttl) })
            .await
            .unwrap();
    }
    // Renewed with a later deadline, then relabelled: the accounting follows.
    store.put_custom(CustomSeriesId { namespace: "ns0", ..pod("p0") }, labelled("2", &[("k", "v")])).await.unwrap();
    store.put_custom(CustomSeriesId { namespace: "ns0", ..pod("p0") }, write("3", secs(20))).await.unwrap();
    assert_eq!(store.series_count(), 100);
    clock.advance(5_000);
    store.purge().await;
    assert_eq!(store.series_count(), 1, "only the renewed series is left");
    clock.advance(15_000);
    store.purge().await;
    assert_eq!((store.series_count(), store.bytes_used()), (0, 0), "expiry gives everything back");
}

/// `put_many`: each write applied or refused on its own, in order; result `i` is write `i`'s, with the live sample it
/// replaced.
pub async fn put_many_applies_each_write_on_its_own_in_order<S: Subject>() {
    let limits = Limits { max_series: 4, max_labels_per_series: 1, ..Limits::default() };
    let (store, clock) = subject::<S>(limits).await;
    assert!(store.put_many(Vec::new()).await.is_empty());
    store.put_custom(pod("old"), write("7", secs(5))).await.unwrap();
    store.put_external("default", "e", labelled("8", &[("q", "1")])).await.unwrap();
    clock.advance(6_000);
    let results = store
        .put_many(vec![
            Put::Custom(pod("a"), write("1", None)),
            Put::Custom(pod("b"), labelled("1", &[("x", "1"), ("y", "2")])),
            Put::External { namespace: "default", metric: "e", write: write("2", secs(10)) },
            Put::Custom(pod("a"), labelled("3", &[("x", "1")])),
            Put::External { namespace: "default", metric: "e", write: labelled("9", &[("q", "1")]) },
            Put::Custom(pod("old"), write("4", None)),
            Put::Custom(pod("d"), write("5", None)),
            Put::Custom(pod("old"), write("6", None)),
        ])
        .await;
    type Shown = Result<Option<(String, BTreeMap<String, String>)>, StoreError>;
    let shown: Vec<Shown> = results
        .into_iter()
        .map(|result| result.map(|replaced| replaced.map(|sample| (sample.value.to_string(), sample.labels.to_map()))))
        .collect();
    let pair = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
    assert_eq!(
        shown,
        [
            Ok(None),
            Err(StoreError::TooManyLabels { count: 2, limit: 1 }),
            Ok(None),
            Ok(Some(("1".to_string(), BTreeMap::new()))),
            Ok(Some(("8".to_string(), pair("q", "1")))),
            // The earlier value of `old` had expired: nothing live was replaced.
            Ok(None),
            Err(StoreError::SeriesLimit { limit: 4 }),
            Ok(Some(("4".to_string(), BTreeMap::new()))),
        ]
    );
    assert_eq!(value(store.get_custom(pod("a")).await.unwrap()).as_deref(), Some("3"), "later writes win");
    assert_eq!(store.get_custom(pod("b")).await.unwrap(), None, "the refused write stored nothing");
    assert_eq!(value(store.get_custom(pod("old")).await.unwrap()).as_deref(), Some("6"));
    assert_eq!(store.get_custom(pod("d")).await.unwrap(), None);
    assert_eq!(values(store.list_external("default", "e").await.unwrap()), ["2", "9"]);
    assert_eq!(store.series_count(), 4);
}

/// A store that can serve says so.
pub async fn a_healthy_store_says_so<S: Subject>() {
    let (store, _) = subject::<S>(Limits::default()).await;
    assert_eq!(store.health().await, Ok(()));
}

/// Writers on many threads, to shared and to their own series: every write lands, and the count is exact.
pub async fn concurrent_writers_lose_nothing_and_count_exactly<S: Subject>() {
    let (store, _) = subject::<S>(Limits { max_series: 10_000, ..Limits::default() }).await;
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for writer in 0..8 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            for i in 0..500 {
                // Half the writes hit series shared by all writers, half hit the writer's own.
                let name = if i % 2 == 0 { format!("shared-{}", i % 100) } else { format!("w{writer}-{i}") };
                let id = CustomSeriesId { resource: "pods", namespace: "default", name: &name, metric: "m" };
                store.put_custom(id, write("1", (i % 4 == 0).then(|| Duration::from_secs(60)))).await.unwrap();
                if i % 10 == 5 {
                    store.put_external("default", "e", labelled("1", &[("w", &writer.to_string())])).await.unwrap();
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(store.series_count(), 50 + 8 * 250 + 8);
    assert_eq!(store.list_custom_objects("pods", "default", "m").await.unwrap().len(), 50 + 8 * 250);
    assert_eq!(store.list_external("default", "e").await.unwrap().len(), 8);
}

/// `series_page` lists every live series once, in position order (namespace, external before custom, resource,
/// metric, then name or labels), page after page, with the filters applied and the expired left out
/// (docs/architecture.md §14).
pub async fn series_pages_list_every_live_series_once_in_order<S: Subject>() {
    let (store, clock) = subject::<S>(Limits::default()).await;
    let custom = |namespace: &'static str, name: &'static str, metric: &'static str| CustomSeriesId {
        resource: "pods",
        namespace,
        name,
        metric,
    };
    store.put_custom(custom("b", "web-2", "qps"), labelled("2", &[("route", "pay")])).await.unwrap();
    store.put_custom(custom("a", "web-1", "qps"), write("1", None)).await.unwrap();
    store.put_custom(custom("b", "web-1", "qps"), write("3", secs(60))).await.unwrap();
    store.put_custom(custom("b", "web-1", "lat"), write("4", None)).await.unwrap();
    store
        .put_custom(CustomSeriesId { resource: "nodes", namespace: "", name: "n1", metric: "t" }, write("0", None))
        .await
        .unwrap();
    store.put_external("b", "queue", labelled("6", &[("q", "y")])).await.unwrap();
    store.put_external("b", "queue", labelled("5", &[("q", "x")])).await.unwrap();
    store.put_custom(custom("a", "gone", "qps"), write("7", secs(1))).await.unwrap();
    clock.advance(2_000);
    let mut seen = Vec::new();
    let mut after: Option<SeriesPosition> = None;
    loop {
        let page = store.series_page(&SeriesFilter::default(), after.as_ref(), 2).await.unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.position.clone());
        for stored in page {
            let p = stored.position;
            let who = if p.resource.is_some() { p.name } else { format!("{:?}", p.labels.to_map()) };
            seen.push(format!(
                "{}/{}/{}/{who}={}",
                p.namespace,
                p.resource.unwrap_or_default(),
                p.metric,
                stored.sample.value
            ));
        }
    }
    assert_eq!(
        seen,
        [
            "/nodes/t/n1=0",
            "a/pods/qps/web-1=1",
            r#"b//queue/{"q": "x"}=5"#,
            r#"b//queue/{"q": "y"}=6"#,
            "b/pods/lat/web-1=4",
            "b/pods/qps/web-1=3",
            "b/pods/qps/web-2=2",
        ],
        "every live series once, the expired one left out"
    );
    let all = store.series_page(&SeriesFilter::default(), None, 100).await.unwrap();
    let web2 = all.iter().find(|s| s.position.name == "web-2").unwrap();
    assert_eq!(web2.sample.labels, labels(&[("route", "pay")]), "a custom sample carries its labels");
    let queue = all.iter().find(|s| s.position.resource.is_none()).unwrap();
    assert_eq!(queue.sample.labels, queue.position.labels, "an external sample carries its identity's labels");
    assert_eq!(
        all.iter()
            .find(|s| s.position.name == "web-1" && s.position.metric == "qps" && s.position.namespace == "b")
            .unwrap()
            .sample
            .expires_at_millis,
        START + 60_000
    );
    let filter = SeriesFilter { namespace: Some("b".into()), metric_contains: Some("q".into()) };
    let filtered: Vec<String> = store
        .series_page(&filter, None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|s| format!("{}={}", s.position.metric, s.sample.value))
        .collect();
    assert_eq!(filtered, ["queue=5", "queue=6", "qps=3", "qps=2"]);
    let nowhere = SeriesFilter { namespace: Some("c".into()), metric_contains: None };
    assert!(store.series_page(&nowhere, None, 100).await.unwrap().is_empty());
}

fn counter(value: &str) -> SampleWrite {
    SampleWrite { kind: SeriesKind::Counter, ..write(value, None) }
}

/// The values of a series' recent samples.
fn recent_values(recent: &super::Recent) -> Vec<f64> {
    recent.samples.iter().map(|&(_, v)| v).collect()
}

/// A counter keeps the samples written within `--rate-window` (at most `--rate-max-samples`), each at the time the
/// store stamped it, and a read gives those within the window before the read (docs/architecture.md §9, "History").
pub async fn a_counter_keeps_its_samples_within_the_rate_window<S: Subject>() {
    let rates = RateLimits { window: Duration::from_secs(60), max_samples: 6 };
    let (store, clock) = subject::<S>(Limits { rates, ..Limits::default() }).await;
    let names = ["a".to_string(), "b".to_string(), "gone".to_string()];
    for i in 0..5 {
        store.put_custom(pod("a"), counter(&(i * 30).to_string())).await.unwrap();
        store
            .put_external(
                "default",
                "e",
                SampleWrite { labels: labels(&[("q", "x")]), ..counter(&(i * 3).to_string()) },
            )
            .await
            .unwrap();
        if i < 4 {
            clock.advance(15_000);
        }
    }
    store.put_custom(pod("b"), counter("7")).await.unwrap();
    let recent = store.recent_custom("pods", "default", "m", Some(&names)).await.unwrap();
    assert_eq!(recent.len(), 2, "absent series are skipped");
    let (name, _, a) = &recent[0];
    assert_eq!((name.as_str(), a.kind), ("a", SeriesKind::Counter));
    assert_eq!(recent_values(a), [0.0, 30.0, 60.0, 90.0, 120.0]);
    let times: Vec<i64> = a.samples.iter().map(|&(t, _)| t - START).collect();
    assert_eq!(times, [0, 15_000, 30_000, 45_000, 60_000], "stamped by the store's clock");
    let rate = history::rate(&a.samples).unwrap();
    assert_eq!((rate.per_second, rate.span_millis), (2.0, 60_000));
    assert_eq!(recent_values(&recent[1].2), [7.0], "one write: one sample, no rate");
    assert_eq!(history::rate(&recent[1].2.samples), None);
    let external = store.recent_external("default", "e").await.unwrap();
    assert_eq!(external.len(), 1);
    assert_eq!(external[0].0, labels(&[("q", "x")]));
    assert_eq!(recent_values(&external[0].1), [0.0, 3.0, 6.0, 9.0, 12.0]);
    // Half a window later, only the samples within the window before the read count.
    clock.advance(30_000);
    let recent = store.recent_custom("pods", "default", "m", Some(&names[..1])).await.unwrap();
    assert_eq!(recent_values(&recent[0].2), [60.0, 90.0, 120.0]);
    // A reset: the counter restarted from 0. Past the window the older samples are gone for good.
    store.put_custom(pod("a"), counter("10")).await.unwrap();
    let recent = store.recent_custom("pods", "default", "m", Some(&names[..1])).await.unwrap();
    assert_eq!(recent_values(&recent[0].2), [60.0, 90.0, 120.0, 10.0]);
    let rate = history::rate(&recent[0].2.samples).unwrap();
    assert_eq!(rate.per_second * (rate.span_millis as f64 / 1000.0), 120.0 - 60.0 + 10.0);
    // At most max_samples, the latest included.
    for i in 0..10 {
        clock.advance(1_000);
        store.put_custom(pod("a"), counter(&(20 + i).to_string())).await.unwrap();
    }
    let recent = store.recent_custom("pods", "default", "m", Some(&names[..1])).await.unwrap();
    assert_eq!(recent_values(&recent[0].2), [24.0, 25.0, 26.0, 27.0, 28.0, 29.0]);
    // A counter whose latest sample left the window has no recent samples.
    clock.advance(61_000);
    let recent = store.recent_custom("pods", "default", "m", Some(&names[..1])).await.unwrap();
    assert!(recent[0].2.samples.is_empty(), "{recent:?}");
    assert!(store.get_custom(pod("a")).await.unwrap().is_some(), "the value itself is still served");
}

/// A custom series' recent values come with the labels of its latest value (a rate is served with them, from this
/// one read); without names, every object with a live value comes, sorted by object name, as
/// `list_custom_objects` lists them.
pub async fn a_recent_read_gives_the_labels_and_without_names_every_live_object<S: Subject>() {
    let (store, clock) = subject::<S>(Limits::default()).await;
    store.put_custom(pod("c"), SampleWrite { labels: labels(&[("k", "old")]), ..counter("1") }).await.unwrap();
    store.put_custom(pod("a"), write("5", None)).await.unwrap();
    store.put_custom(pod("short"), write("1", secs(1))).await.unwrap();
    clock.advance(1_000);
    store.put_custom(pod("c"), SampleWrite { labels: labels(&[("k", "new")]), ..counter("3") }).await.unwrap();
    store.put_custom(pod("b"), labelled("2", &[("x", "y")])).await.unwrap();
    let every = store.recent_custom("pods", "default", "m", None).await.unwrap();
    let seen: Vec<(&str, SeriesLabels, SeriesKind, Vec<f64>)> = every
        .iter()
        .map(|(name, labels, recent)| (name.as_str(), labels.clone(), recent.kind, recent_values(recent)))
        .collect();
    assert_eq!(
        seen,
        [
            ("a", SeriesLabels::empty(), SeriesKind::Gauge, vec![5.0]),
            ("b", labels(&[("x", "y")]), SeriesKind::Gauge, vec![2.0]),
            ("c", labels(&[("k", "new")]), SeriesKind::Counter, vec![1.0, 3.0]),
        ],
        "sorted by name, the expired one left out, the latest labels"
    );
    let listed: Vec<String> = names(store.list_custom_objects("pods", "default", "m").await.unwrap());
    assert_eq!(listed, ["a", "b", "c"]);
    let named = store.recent_custom("pods", "default", "m", Some(&["c".to_string(), "a".to_string()])).await.unwrap();
    let named: Vec<(&str, &SeriesLabels)> = named.iter().map(|(name, labels, _)| (name.as_str(), labels)).collect();
    assert_eq!(named, [("c", &labels(&[("k", "new")])), ("a", &SeriesLabels::empty())], "in the order of the names");
    assert!(store.recent_custom("pods", "default", "other", None).await.unwrap().is_empty());
}

/// Every series keeps its last `SPARKLINE_VALUES` values for the status page, whatever their age.
pub async fn a_gauge_keeps_its_last_values_for_the_sparkline<S: Subject>() {
    let (store, clock) = subject::<S>(Limits::default()).await;
    for i in 0..12 {
        store.put_custom(pod("a"), write(&i.to_string(), None)).await.unwrap();
        store.put_external("default", "e", write(&format!("{i}500m"), None)).await.unwrap();
        clock.advance(3_600_000);
    }
    let recent = store.recent_custom("pods", "default", "m", Some(&["a".to_string()])).await.unwrap();
    assert_eq!(recent[0].2.kind, SeriesKind::Gauge);
    assert_eq!(recent_values(&recent[0].2), [4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0]);
    assert_eq!(recent[0].2.samples.len(), history::SPARKLINE_VALUES);
    let times: Vec<i64> = recent[0].2.samples.iter().map(|&(t, _)| (t - START) / 3_600_000).collect();
    assert_eq!(times, [4, 5, 6, 7, 8, 9, 10, 11]);
    let external = store.recent_external("default", "e").await.unwrap();
    assert_eq!(recent_values(&external[0].1), [4.5, 5.5, 6.5, 7.5, 8.5, 9.5, 10.5, 11.5]);
    assert!(store.recent_external("default", "nothing").await.unwrap().is_empty());
    // Expired series have no recent values.
    store.put_custom(pod("short"), write("1", Some(Duration::from_secs(1)))).await.unwrap();
    clock.advance(1_000);
    assert!(store.recent_custom("pods", "default", "m", Some(&["short".to_string()])).await.unwrap().is_empty());
}

/// A write's kind replaces the series' kind, as its labels are replaced; the history starts again on a change.
/// Discovery says which metrics have counters.
pub async fn the_kind_is_replaced_by_a_later_write_and_discovery_knows_counters<S: Subject>() {
    let (store, clock) = subject::<S>(Limits::default()).await;
    let a = || vec!["a".to_string()];
    for value in ["1", "2", "3"] {
        store.put_custom(pod("a"), write(value, None)).await.unwrap();
        clock.advance(1_000);
    }
    store.put_external("default", "g", write("1", None)).await.unwrap();
    let listed = store.list_custom_metrics().await.unwrap();
    assert!(!listed[0].counter);
    assert!(store.list_external_counters().await.unwrap().is_empty());
    store.put_custom(pod("a"), counter("10")).await.unwrap();
    assert_eq!(store.get_custom(pod("a")).await.unwrap().map(|s| s.kind), Some(SeriesKind::Counter));
    let recent = store.recent_custom("pods", "default", "m", Some(&a())).await.unwrap();
    assert_eq!(
        (recent[0].2.kind, recent_values(&recent[0].2)),
        (SeriesKind::Counter, vec![10.0]),
        "gauge values dropped"
    );
    store.put_external("default", "c", counter("1")).await.unwrap();
    store
        .put_external("default", "c", SampleWrite { labels: labels(&[("k", "v")]), ..write("1", None) })
        .await
        .unwrap();
    assert!(store.list_custom_metrics().await.unwrap()[0].counter);
    assert_eq!(store.list_external_counters().await.unwrap(), ["c"]);
    assert_eq!(store.list_external_metrics().await.unwrap(), ["c", "g"]);
    let kinds: Vec<SeriesKind> = store.list_external("default", "c").await.unwrap().iter().map(|s| s.kind).collect();
    assert_eq!(kinds, [SeriesKind::Counter, SeriesKind::Gauge]);
    // A gauge write turns the counter back into a gauge.
    clock.advance(1_000);
    store.put_custom(pod("a"), write("4", None)).await.unwrap();
    let recent = store.recent_custom("pods", "default", "m", Some(&a())).await.unwrap();
    assert_eq!((recent[0].2.kind, recent_values(&recent[0].2)), (SeriesKind::Gauge, vec![4.0]));
    assert!(!store.list_custom_metrics().await.unwrap()[0].counter);
    assert!(store.delete_external("default", "c", &SeriesLabels::empty()).await.unwrap());
    assert!(store.list_external_counters().await.unwrap().is_empty(), "the last counter of c is gone");
    // put_many carries the kind and gives back the replaced sample's.
    let replaced = store.put_many(vec![Put::Custom(pod("a"), counter("5"))]).await;
    assert_eq!(replaced[0].as_ref().unwrap().as_ref().map(|s| s.kind), Some(SeriesKind::Gauge));
    assert_eq!(store.get_custom(pod("a")).await.unwrap().map(|s| s.kind), Some(SeriesKind::Counter));
}

/// The history counts against `--max-store-bytes`: a write whose history would not fit is refused and changes
/// nothing; deletes and expiry give its bytes back.
pub async fn the_history_is_accounted_and_released<S: Subject>() {
    let (store, clock) = subject::<S>(Limits::default()).await;
    store.put_custom(pod("a"), counter("1")).await.unwrap();
    let one = store.bytes_used();
    clock.advance(1_000);
    store.put_custom(pod("a"), counter("2")).await.unwrap();
    let two = store.bytes_used();
    assert!(two > one, "the second write allocates the history: {one} -> {two}");
    store.put_custom(pod("g"), write("1", Some(Duration::from_secs(10)))).await.unwrap();
    clock.advance(1_000);
    store.put_custom(pod("g"), write("2", Some(Duration::from_secs(10)))).await.unwrap();
    assert!(store.delete_custom(pod("a")).await.unwrap());
    clock.advance(10_000);
    store.purge().await;
    assert_eq!((store.series_count(), store.bytes_used()), (0, 0));

    // A budget that holds the series but not its history refuses the second write and keeps the first value.
    let (store, clock) = subject::<S>(Limits { max_store_bytes: one, ..Limits::default() }).await;
    store.put_custom(pod("a"), counter("1")).await.unwrap();
    clock.advance(1_000);
    let refused = store.put_custom(pod("a"), counter("2")).await;
    assert!(matches!(refused, Err(StoreError::StoreBytesLimit { .. })), "{refused:?}");
    assert_eq!(value(store.get_custom(pod("a")).await.unwrap()).as_deref(), Some("1"));
    assert_eq!(store.bytes_used(), one);
}
