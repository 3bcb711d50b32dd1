//! The in-memory store: a cheap-clone handle over sharded maps, built for many concurrent writers.
//!
//! Layout: series are grouped by (resource, namespace, metric) for custom values and by (namespace, metric) for
//! external ones. The outer maps are sharded ([`DashMap`]); each group keeps its series in a small map under its own
//! lock. A write therefore takes one shard read lock and one group write lock: no global lock, and writers to
//! different groups never wait for each other. Wildcard reads walk one group. Object names are stored once per
//! series; the group key carries the shared parts.
//!
//! Two indexes serve the reads that would otherwise walk every group, and are updated under the lock of the group
//! whose series they describe, so they never drift from it:
//! - per discovery entry, (resource, metric, namespaced) or an external metric name, a `Pair` of counters shared
//!   by all its groups: a write to an existing series only touches these atomics;
//! - per (resource, namespace), the metrics that have a group there, for the per-object listing and
//!   `delete_object`: one lookup per metric of that resource in that namespace, instead of a walk of every group.
//!   It is kept per group rather than per series so that it costs no memory per series.
//!
//! Memory is accounted in bytes as series are added, relabelled and removed (see [`SERIES_BYTES`]) and bounded by
//! [`Limits::max_store_bytes`].
//!
//! Expiry (docs/architecture.md §9): expired samples are invisible at once (every read checks the deadline). Each
//! group keeps its series' deadlines ordered (`Series::deadlines`), and each kind keeps its groups ordered by a
//! deadline at or before their earliest one (`Kind::wake`). The expiry task, which [`MemoryStore::start`] spawns
//! and the last handle's drop stops, takes expired series from the front of both: the work is proportional to what
//! expired, never a walk of every series, and it takes the locks for one removal at a time. A group left empty (by
//! expiry or a delete) is dropped at once.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::Hash;
use std::hash::RandomState;
use std::ops::Deref;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use hashbrown::HashMap;
use tokio_util::task::AbortOnDropHandle;

use super::history::{History, quantity_f64};
use super::{
    CustomMetricDescriptor, CustomSeriesId, Limits, MetricStore, Put, Recent, Sample, SampleWrite, SeriesFilter,
    SeriesKind, SeriesLabels, SeriesPosition, StoreError, StoreStats, StoredSeries, check_custom_id, check_external_id,
    check_labels,
};
use crate::clock::{Clock, SystemClock};
use crate::quantity::Quantity;

/// Separates the parts of a group key; no part (resource, namespace, metric name) may contain it.
const KEY_SEPARATOR: char = '/';

/// How often the expiry task removes expired values from memory (they are invisible from the moment they expire);
/// docs/wire-contract.md promises at most this long for a discovery entry whose values all expired.
pub(crate) const PURGE_INTERVAL: Duration = Duration::from_secs(5);

/// Removals the expiry task makes before it lets other tasks on its worker run: a long purge never stalls requests.
const PURGE_BATCH: usize = 32;

/// Accounted bytes of one series besides its name and labels: its entry in the group's map, the sample, the name's
/// allocation, and the map's spare capacity. Calibrated on resident memory (`cargo run --release --example
/// store-bytes`, bench/store_bytes.rs): up to about 200 bytes beyond the name, depending on how full the maps are
/// (bench/README.md); rounded up so that the accounted bytes stay above what is resident.
pub const SERIES_BYTES: usize = 240;
/// Accounted bytes of one group besides its key: the sharded map's entry, the group's lock and first table, its
/// share of the discovery index and of the (resource, namespace) index, its entry in the expiry index. Measured: up
/// to about 780.
pub const GROUP_BYTES: usize = 880;
/// Accounted bytes of a non-empty label set besides its labels (the shared allocation's header).
pub const LABEL_SET_BYTES: usize = 48;
/// Accounted bytes of one label besides its key and value (two string allocations and their slot in the set).
pub const LABEL_BYTES: usize = 80;
/// Accounted bytes of a series' deadline, for a series that has one: its (deadline, key) entry in the group's
/// ordered set (the key shares the map's allocation). Measured with bench/store_bytes.rs like the others: about 50.
pub const DEADLINE_BYTES: usize = 64;
/// Accounted bytes of a group's deadline set while it is not empty: its first node, sized for 11 entries whatever
/// it holds, and the group's entry in the expiry index. Measured: about 340.
pub const DEADLINE_SET_BYTES: usize = 384;

/// The accounted bytes of a label set.
fn labels_bytes(labels: &SeriesLabels) -> usize {
    if labels.is_empty() {
        return 0;
    }
    LABEL_SET_BYTES + labels.iter().map(|(k, v)| LABEL_BYTES + k.len() + v.len()).sum::<usize>()
}

/// The accounted bytes of a group's deadline set holding `len` deadlines, besides [`DEADLINE_BYTES`] each.
fn deadline_set_bytes(len: usize) -> usize {
    if len == 0 { 0 } else { DEADLINE_SET_BYTES }
}

/// The accounted bytes of a deadline (`i64::MAX`: none).
fn deadline_bytes(deadline: i64) -> usize {
    if deadline == i64::MAX { 0 } else { DEADLINE_BYTES }
}

/// A key of a group's map, and the bytes it accounts for besides [`SERIES_BYTES`]. Cloning it is cheap (a reference
/// count): the deadline set holds a second handle to the same key.
trait SeriesKey: Hash + Eq + Ord + Clone + Unregister {
    fn bytes(&self) -> usize;
}

/// What dropping a group of one kind undoes in the store's indexes.
trait Unregister {
    fn unregister(inner: &Inner, group_key: &str, pair: &Pair);
}

/// Custom series: the object name.
impl SeriesKey for Arc<str> {
    fn bytes(&self) -> usize {
        self.len()
    }
}

/// External series: the labels (the stored sample carries none, see `put_external`).
impl SeriesKey for SeriesLabels {
    fn bytes(&self) -> usize {
        labels_bytes(self)
    }
}

/// The accounted bytes of one stored series.
fn series_bytes<K: SeriesKey>(key: &K, stored: &Stored) -> usize {
    SERIES_BYTES
        + key.bytes()
        + labels_bytes(&stored.labels)
        + deadline_bytes(stored.expires_at_millis)
        + stored.history.bytes()
}

/// One series as its group's map keeps it: the latest [`Sample`]'s parts and the history before it (80 bytes,
/// 16 more than a sample without kind and history; docs/architecture.md §9, "History").
struct Stored {
    value: Quantity,
    timestamp_millis: i64,
    expires_at_millis: i64,
    labels: SeriesLabels,
    history: History,
    kind: SeriesKind,
}

impl Stored {
    fn new(sample: Sample) -> Self {
        let Sample { value, timestamp_millis, expires_at_millis, labels, kind } = sample;
        Stored { value, timestamp_millis, expires_at_millis, labels, history: History::default(), kind }
    }

    fn is_live(&self, now_millis: i64) -> bool {
        now_millis < self.expires_at_millis
    }

    fn sample(&self) -> Sample {
        Sample {
            value: self.value,
            timestamp_millis: self.timestamp_millis,
            expires_at_millis: self.expires_at_millis,
            labels: self.labels.clone(),
            kind: self.kind,
        }
    }

    /// The series' recent values at `now`.
    fn recent(&self, now: i64, limits: &Limits) -> Recent {
        let latest = (self.timestamp_millis, quantity_f64(&self.value));
        Recent { kind: self.kind, samples: self.history.recent(self.kind, latest, now, &limits.rates) }
    }

    /// The bytes the history will account for once `sample` replaced the latest value.
    fn history_bytes_after(&self, sample: &Sample, limits: &Limits) -> usize {
        self.history.bytes_after(
            (self.kind, self.timestamp_millis),
            sample.kind,
            sample.timestamp_millis,
            &limits.rates,
        )
    }

    /// Replaces the latest value with `sample`, which the history keeps; gives the replaced one.
    fn replace(&mut self, sample: Sample, limits: &Limits) -> Sample {
        let before = (self.kind, self.timestamp_millis, quantity_f64(&self.value));
        self.history.push(before, sample.kind, sample.timestamp_millis, &limits.rates);
        let Sample { value, timestamp_millis, expires_at_millis, labels, kind } = sample;
        Sample {
            value: std::mem::replace(&mut self.value, value),
            timestamp_millis: std::mem::replace(&mut self.timestamp_millis, timestamp_millis),
            expires_at_millis: std::mem::replace(&mut self.expires_at_millis, expires_at_millis),
            labels: std::mem::replace(&mut self.labels, labels),
            kind: std::mem::replace(&mut self.kind, kind),
        }
    }
}

/// The in-memory [`MetricStore`]. Clones share the same data.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

/// Discovery index: (resource, metric, namespaced), sorted as discovery lists them -> the entry and its groups.
type CustomPairs = BTreeMap<(Box<str>, Box<str>, bool), (Arc<Pair>, usize)>;
/// Discovery index: external metric name -> the entry and its groups.
type ExternalPairs = BTreeMap<Box<str>, (Arc<Pair>, usize)>;

/// The groups of one kind of series and their expiry index.
struct Kind<K> {
    groups: DashMap<Arc<str>, Group<K>>,
    /// (wake-up time, group key): one entry per group that holds a deadline, at or before its earliest one
    /// ([`Series::wake`]). Lock order: a shard of `groups`, the group, then this.
    wake: Mutex<BTreeSet<(i64, Arc<str>)>>,
}

impl<K> Kind<K> {
    fn new() -> Self {
        Kind { groups: DashMap::new(), wake: Mutex::new(BTreeSet::new()) }
    }
}

struct Inner {
    /// `resource/namespace/metric` -> object name -> sample.
    custom: Kind<Arc<str>>,
    /// `namespace/metric` -> labels -> sample.
    external: Kind<SeriesLabels>,
    /// Changed only when a group is created or dropped. Lock order: a map's shard, then this.
    custom_pairs: Mutex<CustomPairs>,
    external_pairs: Mutex<ExternalPairs>,
    /// `resource/namespace` -> the metrics with a group there. Changed only when a group is created or dropped.
    /// Lock order: `custom`'s shard, then this.
    objects: DashMap<Box<str>, BTreeSet<Box<str>>>,
    /// Series held in both maps; kept exact under the group locks.
    series: AtomicUsize,
    /// Bytes accounted (see [`SERIES_BYTES`]); kept exact under the group locks.
    bytes: AtomicUsize,
    /// Series the expiry task removed, for `/metrics`.
    expired: AtomicU64,
    limits: Limits,
    clock: Arc<dyn Clock>,
    /// The expiry task of a store made by [`MemoryStore::start`]; dropping the last handle drops it, which stops it.
    expiry: OnceLock<AbortOnDropHandle<()>>,
}

/// One discovery entry's counters, shared by every group it covers, so that a write to an existing series updates
/// them without a map lookup. Changed under the lock of the group whose series changes.
struct Pair {
    /// Series in its groups, expired ones included until purged.
    series: AtomicUsize,
    /// Of which without a deadline.
    immortal: AtomicUsize,
    /// Of which counters (discovery lists their rates).
    counters: AtomicUsize,
    /// The latest deadline any write gave one of its series. It only grows: a value overwritten with a shorter TTL
    /// or deleted can leave it later than every remaining deadline, until the purge drops the expired series and
    /// with them the entry (see [`MetricStore::list_custom_metrics`]).
    max_deadline: AtomicI64,
    /// The metric name.
    metric: Box<str>,
}

impl Pair {
    fn new(metric: &str) -> Self {
        Pair {
            series: AtomicUsize::new(0),
            immortal: AtomicUsize::new(0),
            counters: AtomicUsize::new(0),
            max_deadline: AtomicI64::new(i64::MIN),
            metric: metric.into(),
        }
    }

    fn is_live(&self, now: i64) -> bool {
        self.series.load(Ordering::Acquire) > 0
            && (self.immortal.load(Ordering::Acquire) > 0 || self.max_deadline.load(Ordering::Acquire) > now)
    }

    /// Whether it is live and one of its series is a counter.
    fn has_counters(&self, now: i64) -> bool {
        self.counters.load(Ordering::Acquire) > 0 && self.is_live(now)
    }

    /// A series' kind went from `old` (`None`: the series is new, or was removed when `new` is `None`) to `new`.
    fn kind(&self, old: Option<SeriesKind>, new: Option<SeriesKind>) {
        let counter = |kind: Option<SeriesKind>| kind == Some(SeriesKind::Counter);
        match (counter(old), counter(new)) {
            (false, true) => {
                self.counters.fetch_add(1, Ordering::AcqRel);
            }
            (true, false) => {
                self.counters.fetch_sub(1, Ordering::AcqRel);
            }
            _ => {}
        }
    }

    /// A series' deadline went from `old` (`None`: the series is new) to `new`.
    fn wrote(&self, old: Option<i64>, new: i64) {
        if old.is_none() {
            self.series.fetch_add(1, Ordering::AcqRel);
        }
        match (old == Some(i64::MAX), new == i64::MAX) {
            (true, true) => {}
            (true, false) => {
                self.immortal.fetch_sub(1, Ordering::AcqRel);
            }
            (false, true) => {
                self.immortal.fetch_add(1, Ordering::AcqRel);
            }
            (false, false) => {}
        }
        if new != i64::MAX {
            self.max_deadline.fetch_max(new, Ordering::AcqRel);
        }
    }

    /// A series with deadline `deadline` was removed.
    fn removed(&self, deadline: i64) {
        self.series.fetch_sub(1, Ordering::AcqRel);
        if deadline == i64::MAX {
            self.immortal.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// The series of one group, under the group's lock. Reads see the map (through `Deref`); only the store's own
/// methods change it, so that the deadline set never drifts from it.
struct Series<K> {
    /// hashbrown's map for `get_key_value_mut`; std's SipHash, as the store's keys are the clients' names.
    map: HashMap<K, Stored, RandomState>,
    /// (deadline, key) of every series whose deadline is not `i64::MAX`, in deadline order.
    deadlines: BTreeSet<(i64, K)>,
    /// This group's entry in [`Kind::wake`]: at or before every deadline in `deadlines`; `i64::MAX` when the group
    /// has no entry there.
    wake: i64,
}

impl<K> Deref for Series<K> {
    type Target = HashMap<K, Stored, RandomState>;

    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

/// The series of one group. The std lock is right here: it is never held across an `.await`.
struct Group<K> {
    series: RwLock<Series<K>>,
    pair: Arc<Pair>,
}

impl<K: SeriesKey> Group<K> {
    fn new(pair: Arc<Pair>) -> Self {
        Group {
            series: RwLock::new(Series { map: HashMap::default(), deadlines: BTreeSet::new(), wake: i64::MAX }),
            pair,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Series<K>> {
        // A poisoned lock means a panic mid-insert of a plain map; the map itself is still consistent.
        self.series.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Series<K>> {
        self.series.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What [`Inner::put`] needs only when the series (or its group) does not exist yet.
struct Creation<P, M> {
    /// Registers a new group in the indexes; returns its discovery entry.
    pair: P,
    /// The owned key.
    key: M,
    /// The key's [`SeriesKey::bytes`], known before the key is built.
    key_bytes: usize,
}

impl MemoryStore {
    /// An empty store with the given limits, reading time from the system clock. Expired values are invisible, but
    /// only [`Self::purge_expired`] removes them: a server uses [`Self::start`].
    pub fn new(limits: Limits) -> Self {
        Self::with_clock(limits, Arc::new(SystemClock))
    }

    /// An empty store reading time from `clock`, without an expiry task (see [`Self::new`]).
    pub fn with_clock(limits: Limits, clock: Arc<dyn Clock>) -> Self {
        MemoryStore {
            inner: Arc::new(Inner {
                custom: Kind::new(),
                external: Kind::new(),
                custom_pairs: Mutex::new(BTreeMap::new()),
                external_pairs: Mutex::new(BTreeMap::new()),
                objects: DashMap::new(),
                series: AtomicUsize::new(0),
                bytes: AtomicUsize::new(0),
                expired: AtomicU64::new(0),
                limits,
                clock,
                expiry: OnceLock::new(),
            }),
        }
    }

    /// An empty store that removes expired values itself: its expiry task runs every few seconds and stops when the
    /// last handle to the store is dropped. Must be called within a tokio runtime.
    pub fn start(limits: Limits) -> Self {
        Self::start_with_clock(limits, Arc::new(SystemClock), PURGE_INTERVAL)
    }

    /// [`Self::start`] on another clock, with another purge interval: the Redis store's mirror runs on Redis time.
    pub(crate) fn start_with_clock(limits: Limits, clock: Arc<dyn Clock>, interval: Duration) -> Self {
        let store = Self::with_clock(limits, clock);
        let weak: Weak<Inner> = Arc::downgrade(&store.inner);
        let task = AbortOnDropHandle::new(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let mut removed = 0;
                loop {
                    // No strong handle is kept across an await: the store's last handle ends the task.
                    let Some(inner) = weak.upgrade() else { return };
                    let (count, more) = inner.purge(PURGE_BATCH);
                    drop(inner);
                    removed += count;
                    if !more {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
                if removed > 0 {
                    tracing::debug!(removed, "purged expired series");
                }
            }
        }));
        // Set once, right after creation: nothing else can have set it.
        let _ = store.inner.expiry.set(task);
        store
    }

    /// Removes every expired sample (and the groups left empty); returns how many samples were removed.
    pub fn purge_expired(&self) -> usize {
        self.inner.purge(usize::MAX).0
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Poisoned: a panic while a plain map was changed; the map itself is still consistent.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The outcome of one step of the expiry of a group.
enum Step {
    /// One series was removed; there may be more.
    Removed,
    /// Nothing more to do in this group now.
    Done,
}

impl Inner {
    fn now(&self) -> i64 {
        self.clock.now_millis()
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

    /// Reserves `needed` more bytes, or refuses.
    fn reserve_bytes(&self, needed: usize) -> Result<(), StoreError> {
        let limit = self.limits.max_store_bytes;
        self.bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| used.checked_add(needed).filter(|&t| t <= limit))
            .map(|_| ())
            .map_err(|used| StoreError::StoreBytesLimit { used, needed, limit })
    }

    fn release_bytes(&self, bytes: usize) {
        if bytes > 0 {
            self.bytes.fetch_sub(bytes, Ordering::AcqRel);
        }
    }

    /// Inserts or replaces the series `key` in the group `group_key`, creating the group when needed. What only a
    /// new series or group needs (`creation`) is not built otherwise, so an update allocates nothing.
    fn put<K, Q, P, M>(
        &self,
        kind: &Kind<K>,
        group_key: &str,
        key: &Q,
        sample: Sample,
        creation: Creation<P, M>,
    ) -> Result<Option<Sample>, StoreError>
    where
        K: SeriesKey + std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        P: FnOnce() -> Arc<Pair>,
        M: FnOnce() -> K,
    {
        let Creation { pair, key: make_key, key_bytes } = creation;
        let insert = |group_key: &Arc<str>, group: &Group<K>| {
            let mut guard = group.write();
            let series = &mut *guard;
            let deadline = sample.expires_at_millis;
            // One lookup for both the key (the deadline set's entry) and the value: every write of a batch, push or
            // export comes here, and hashing the key again showed in profiles.
            if let Some((existing_key, existing)) = series.map.get_key_value_mut(key) {
                let old_deadline = existing.expires_at_millis;
                let old_kind = existing.kind;
                let len = series.deadlines.len();
                let len_after = len + usize::from(old_deadline == i64::MAX && deadline != i64::MAX)
                    - usize::from(old_deadline != i64::MAX && deadline == i64::MAX);
                let old = labels_bytes(&existing.labels)
                    + deadline_bytes(old_deadline)
                    + deadline_set_bytes(len)
                    + existing.history.bytes();
                let new = labels_bytes(&sample.labels)
                    + deadline_bytes(deadline)
                    + deadline_set_bytes(len_after)
                    + existing.history_bytes_after(&sample, &self.limits);
                if new > old {
                    self.reserve_bytes(new - old)?;
                } else {
                    self.release_bytes(old - new);
                }
                let moved = (old_deadline != deadline).then(|| existing_key.clone());
                let new_kind = sample.kind;
                let replaced = existing.replace(sample, &self.limits);
                if let Some(existing_key) = moved {
                    // The deadline moves: the purge must find the series at its new deadline, never at the old.
                    if old_deadline != i64::MAX {
                        series.deadlines.remove(&(old_deadline, existing_key.clone()));
                    }
                    if deadline != i64::MAX {
                        series.deadlines.insert((deadline, existing_key));
                        self.schedule(kind, group_key, series, deadline);
                    }
                }
                group.pair.wrote(Some(old_deadline), deadline);
                group.pair.kind(Some(old_kind), Some(new_kind));
                return Ok(Some(replaced));
            }
            self.reserve_series()?;
            let mut needed = SERIES_BYTES + key_bytes + labels_bytes(&sample.labels) + deadline_bytes(deadline);
            if deadline != i64::MAX && series.deadlines.is_empty() {
                needed += DEADLINE_SET_BYTES;
            }
            if let Err(error) = self.reserve_bytes(needed) {
                self.release_series(1);
                return Err(error);
            }
            group.pair.wrote(None, deadline);
            group.pair.kind(None, Some(sample.kind));
            let key = make_key();
            if deadline != i64::MAX {
                series.deadlines.insert((deadline, key.clone()));
                self.schedule(kind, group_key, series, deadline);
            }
            series.map.insert(key, Stored::new(sample));
            Ok(None)
        };
        // Fast path: the group exists. The shard read guard is held while the group is written so that a group
        // left empty (dropped under the shard write lock) can never be dropped while we write into it.
        if let Some(group) = kind.groups.get(group_key) {
            return insert(group.key(), group.value());
        }
        let group = match kind.groups.entry(group_key.into()) {
            Entry::Occupied(group) => group.into_ref().downgrade(),
            Entry::Vacant(vacant) => {
                self.reserve_bytes(GROUP_BYTES + group_key.len())?;
                vacant.insert(Group::new(pair())).downgrade()
            }
        };
        let result = insert(group.key(), group.value());
        drop(group);
        if result.is_err() {
            // A group created for a refused write holds nothing.
            self.drop_if_empty(kind, group_key);
        }
        result
    }

    /// Registers `deadline`, just added to the group, in the kind's wake index if it is earlier than the group's
    /// entry there. Called under the group's write lock.
    fn schedule<K>(&self, kind: &Kind<K>, group_key: &Arc<str>, series: &mut Series<K>, deadline: i64) {
        if deadline >= series.wake {
            return;
        }
        let mut wake = lock(&kind.wake);
        if series.wake != i64::MAX {
            wake.remove(&(series.wake, Arc::clone(group_key)));
        }
        wake.insert((deadline, Arc::clone(group_key)));
        series.wake = deadline;
    }

    /// Accounts for the removal of one series.
    fn removed<K: SeriesKey>(&self, pair: &Pair, key: &K, stored: &Stored) {
        pair.removed(stored.expires_at_millis);
        pair.kind(Some(stored.kind), None);
        self.release_series(1);
        self.release_bytes(series_bytes(key, stored));
    }

    /// Registers one more group of the custom entry (resource, metric, namespaced).
    fn custom_pair(&self, resource: &str, namespace: &str, metric: &str) -> Arc<Pair> {
        let mut pairs = lock(&self.custom_pairs);
        let entry = pairs
            .entry((resource.into(), metric.into(), !namespace.is_empty()))
            .or_insert_with(|| (Arc::new(Pair::new(metric)), 0));
        entry.1 += 1;
        entry.0.clone()
    }

    /// Registers one more group of the external entry `metric`.
    fn external_pair(&self, metric: &str) -> Arc<Pair> {
        let mut pairs = lock(&self.external_pairs);
        let entry = pairs.entry(metric.into()).or_insert_with(|| (Arc::new(Pair::new(metric)), 0));
        entry.1 += 1;
        entry.0.clone()
    }

    /// Notes that `metric` has a group in `object_key` (`resource/namespace`).
    fn index_metric(&self, object_key: &str, metric: &str) {
        match self.objects.get_mut(object_key) {
            Some(mut metrics) => metrics.insert(metric.into()),
            None => self.objects.entry(object_key.into()).or_default().insert(metric.into()),
        };
    }

    /// Notes that the group of `metric` in `object_key` was dropped.
    fn unindex_metric(&self, object_key: &str, metric: &str) {
        let Some(mut metrics) = self.objects.get_mut(object_key) else {
            return;
        };
        metrics.remove(metric);
        let empty = metrics.is_empty();
        drop(metrics);
        if empty {
            self.objects.remove_if(object_key, |_, metrics| metrics.is_empty());
        }
    }

    /// The metrics with a group in `object_key`, sorted, copied out so that no index lock is held while groups
    /// are read.
    fn object_metrics(&self, object_key: &str) -> Vec<Box<str>> {
        self.objects.get(object_key).map(|metrics| metrics.iter().cloned().collect()).unwrap_or_default()
    }

    /// Removes `key` from group `group_key`: `None` if it was absent, else whether its sample was live. Drops the
    /// group if that left it empty.
    fn delete<K, Q>(&self, kind: &Kind<K>, group_key: &str, key: &Q) -> Option<bool>
    where
        K: SeriesKey + std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = self.now();
        let group = kind.groups.get(group_key)?;
        let mut series = group.write();
        let (key, sample) = series.map.remove_entry(key)?;
        if sample.expires_at_millis != i64::MAX {
            series.deadlines.remove(&(sample.expires_at_millis, key.clone()));
            if series.deadlines.is_empty() {
                self.release_bytes(DEADLINE_SET_BYTES);
            }
        }
        self.removed(&group.pair, &key, &sample);
        let empty = series.map.is_empty();
        drop(series);
        drop(group);
        if empty {
            self.drop_if_empty(kind, group_key);
        }
        Some(sample.is_live(now))
    }

    /// Drops the group `group_key` if it holds no series, with its entries in the indexes. The bookkeeping runs
    /// under the shard's write lock, so that a writer re-creating the group finds the indexes as they must be.
    fn drop_if_empty<K: SeriesKey>(&self, kind: &Kind<K>, group_key: &str) {
        kind.groups.remove_if(group_key, |group_key, group| {
            let series = group.read();
            if !series.map.is_empty() {
                return false;
            }
            if series.wake != i64::MAX {
                lock(&kind.wake).remove(&(series.wake, Arc::clone(group_key)));
            }
            self.release_bytes(GROUP_BYTES + group_key.len());
            K::unregister(self, group_key, &group.pair);
            true
        });
    }

    /// Removes expired series, at most `budget` of them, in deadline order; returns how many it removed and whether
    /// expired series may remain (the budget ran out).
    fn purge(&self, mut budget: usize) -> (usize, bool) {
        let now = self.now();
        let start = budget;
        let more = self.purge_kind(&self.custom, now, &mut budget) || self.purge_kind(&self.external, now, &mut budget);
        (start - budget, more)
    }

    fn purge_kind<K: SeriesKey>(&self, kind: &Kind<K>, now: i64, budget: &mut usize) -> bool {
        loop {
            if *budget == 0 {
                return true;
            }
            let (wake, group_key) = {
                let mut index = lock(&kind.wake);
                match index.first() {
                    Some((wake, _)) if *wake <= now => {}
                    _ => return false,
                }
                match index.pop_first() {
                    Some(entry) => entry,
                    None => return false,
                }
            };
            while let Step::Removed = self.expire_one(kind, &group_key, wake, now, budget) {}
        }
    }

    /// Removes the group's earliest series if it expired by `now`; otherwise puts the group back in the wake index
    /// at its earliest deadline and drops it if it is empty. Takes the shard's read lock and the group's write lock
    /// for this one step only. `wake` is the index entry the purge took: a writer that registered an earlier one
    /// since (see [`Inner::schedule`]) made this pass's work on the group someone else's.
    fn expire_one<K: SeriesKey>(
        &self,
        kind: &Kind<K>,
        group_key: &Arc<str>,
        wake: i64,
        now: i64,
        budget: &mut usize,
    ) -> Step {
        let Some(group) = kind.groups.get(&**group_key) else {
            return Step::Done;
        };
        let mut guard = group.write();
        let series = &mut *guard;
        if series.wake != wake {
            return Step::Done;
        }
        match series.deadlines.first() {
            Some(&(deadline, _)) if deadline <= now && *budget > 0 => {
                if let Some((_, key)) = series.deadlines.pop_first()
                    && let Some((key, sample)) = series.map.remove_entry(&key)
                {
                    self.removed(&group.pair, &key, &sample);
                    self.expired.fetch_add(1, Ordering::Relaxed);
                }
                if series.deadlines.is_empty() {
                    self.release_bytes(DEADLINE_SET_BYTES);
                }
                *budget -= 1;
                Step::Removed
            }
            next => {
                let next = next.map_or(i64::MAX, |(deadline, _)| *deadline);
                series.wake = next;
                if next != i64::MAX {
                    lock(&kind.wake).insert((next, Arc::clone(group_key)));
                }
                let empty = series.map.is_empty();
                drop(guard);
                drop(group);
                if empty {
                    self.drop_if_empty(kind, group_key);
                }
                Step::Done
            }
        }
    }
}

impl Unregister for Arc<str> {
    fn unregister(inner: &Inner, group_key: &str, pair: &Pair) {
        inner.unindex_metric(object_key(group_key, &pair.metric), &pair.metric);
        if let Some((resource, namespace, metric)) = split_custom_group_key(group_key) {
            let mut pairs = lock(&inner.custom_pairs);
            let pair_key = (resource.into(), metric.into(), !namespace.is_empty());
            if let Some(entry) = pairs.get_mut(&pair_key) {
                entry.1 -= 1;
                if entry.1 == 0 {
                    pairs.remove(&pair_key);
                }
            }
        }
    }
}

impl Unregister for SeriesLabels {
    fn unregister(inner: &Inner, _group_key: &str, pair: &Pair) {
        let mut pairs = lock(&inner.external_pairs);
        if let Some(entry) = pairs.get_mut(&*pair.metric) {
            entry.1 -= 1;
            if entry.1 == 0 {
                pairs.remove(&*pair.metric);
            }
        }
    }
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

/// The object index's key, `resource/namespace`: a custom group key without its metric.
fn object_key<'a>(group_key: &'a str, metric: &str) -> &'a str {
    group_key.get(..group_key.len().saturating_sub(metric.len() + 1)).unwrap_or(group_key)
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
        check_labels(&write.labels, &self.inner.limits)?;
        self.put_custom_sample(id, write.at(self.inner.now()))
    }

    async fn delete_custom(&self, id: CustomSeriesId<'_>) -> Result<bool, StoreError> {
        let inner = &self.inner;
        let group_key = custom_group_key(id.resource, id.namespace, id.metric);
        Ok(inner.delete(&inner.custom, &group_key, id.name) == Some(true))
    }

    async fn get_custom(&self, id: CustomSeriesId<'_>) -> Result<Option<Sample>, StoreError> {
        let now = self.inner.now();
        let group_key = custom_group_key(id.resource, id.namespace, id.metric);
        let Some(group) = self.inner.custom.groups.get(group_key.as_str()) else {
            return Ok(None);
        };
        let series = group.read();
        Ok(series.get(id.name).filter(|s| s.is_live(now)).map(Stored::sample))
    }

    async fn list_custom_objects(
        &self,
        resource: &str,
        namespace: &str,
        metric: &str,
    ) -> Result<Vec<(String, Sample)>, StoreError> {
        let now = self.inner.now();
        Ok(self.inner.custom_series((resource, namespace, metric), None, now, |name, s| (name.to_string(), s.sample())))
    }

    async fn get_custom_objects(
        &self,
        resource: &str,
        namespace: &str,
        metric: &str,
        names: &[String],
    ) -> Result<Vec<(String, Sample)>, StoreError> {
        let now = self.inner.now();
        let group = (resource, namespace, metric);
        Ok(self.inner.custom_series(group, Some(names), now, |name, s| (name.to_string(), s.sample())))
    }

    async fn list_object_metrics(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Vec<(String, Sample)>, StoreError> {
        let now = self.inner.now();
        // The index gives the metrics of this resource in this namespace, sorted; their groups give the samples.
        let mut group_key = custom_group_key(resource, namespace, "");
        let metrics = self.inner.object_metrics(object_key(&group_key, ""));
        let prefix = group_key.len();
        let mut items = Vec::with_capacity(metrics.len());
        for metric in metrics {
            group_key.truncate(prefix);
            group_key.push_str(&metric);
            let Some(group) = self.inner.custom.groups.get(group_key.as_str()) else {
                continue;
            };
            if let Some(sample) = group.read().get(name).filter(|s| s.is_live(now)) {
                items.push((metric.to_string(), sample.sample()));
            }
        }
        Ok(items)
    }

    async fn list_custom_metrics(&self) -> Result<Vec<CustomMetricDescriptor>, StoreError> {
        let now = self.inner.now();
        let pairs = lock(&self.inner.custom_pairs);
        Ok(pairs
            .iter()
            .filter(|(_, (pair, _))| pair.is_live(now))
            .map(|((resource, metric, namespaced), (pair, _))| CustomMetricDescriptor {
                resource: resource.to_string(),
                metric: metric.to_string(),
                namespaced: *namespaced,
                counter: pair.has_counters(now),
            })
            .collect())
    }

    async fn custom_objects(&self, resource: &str) -> Result<Vec<(String, String)>, StoreError> {
        let now = self.inner.now();
        let mut objects = Vec::new();
        for group in self.inner.custom.groups.iter() {
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
        let inner = &self.inner;
        let mut group_key = custom_group_key(resource, namespace, "");
        let object_key_len = group_key.len() - 1;
        let metrics = inner.object_metrics(&group_key[..object_key_len]);
        let mut removed = 0;
        for metric in metrics {
            group_key.truncate(object_key_len + 1);
            group_key.push_str(&metric);
            let deleted = inner.delete(&inner.custom, &group_key, name);
            // Every removal counts here, live or expired.
            removed += usize::from(deleted.is_some());
        }
        Ok(removed)
    }

    async fn put_external(&self, namespace: &str, metric: &str, write: SampleWrite) -> Result<(), StoreError> {
        check_external_id(namespace, metric)?;
        check_labels(&write.labels, &self.inner.limits)?;
        self.put_external_sample(namespace, metric, write.at(self.inner.now()))
    }

    /// Each write replaces in one step under its group's lock; the whole batch is stamped with one reading of the
    /// clock.
    async fn put_many(&self, writes: Vec<Put<'_>>) -> Vec<Result<Option<Sample>, StoreError>> {
        let now = self.inner.now();
        let live = |replaced: Option<Sample>| replaced.filter(|sample| sample.is_live(now));
        // A batch's, push's or export's writes come in runs of one group (one metric of many pods): the group's key
        // is built once a run, not once a write.
        let mut group = None;
        let mut group_key = String::new();
        writes
            .into_iter()
            .map(|put| match put {
                Put::Custom(id, write) => {
                    check_custom_id(&id)?;
                    check_labels(&write.labels, &self.inner.limits)?;
                    if group != Some((id.resource, id.namespace, id.metric)) {
                        group = Some((id.resource, id.namespace, id.metric));
                        group_key = custom_group_key(id.resource, id.namespace, id.metric);
                    }
                    self.replace_custom_in(&group_key, id, write.at(now)).map(live)
                }
                Put::External { namespace, metric, write } => {
                    check_external_id(namespace, metric)?;
                    check_labels(&write.labels, &self.inner.limits)?;
                    self.replace_external(namespace, metric, write.at(now)).map(live)
                }
            })
            .collect()
    }

    async fn delete_external(&self, namespace: &str, metric: &str, labels: &SeriesLabels) -> Result<bool, StoreError> {
        let inner = &self.inner;
        Ok(inner.delete(&inner.external, &external_group_key(namespace, metric), labels) == Some(true))
    }

    async fn list_external(&self, namespace: &str, metric: &str) -> Result<Vec<Sample>, StoreError> {
        let now = self.inner.now();
        Ok(self
            .inner
            .external_series(namespace, metric, now, |labels, s| Sample { labels: labels.clone(), ..s.sample() }))
    }

    async fn list_external_metrics(&self) -> Result<Vec<String>, StoreError> {
        let now = self.inner.now();
        let pairs = lock(&self.inner.external_pairs);
        Ok(pairs.iter().filter(|(_, (pair, _))| pair.is_live(now)).map(|(name, _)| name.to_string()).collect())
    }

    /// The group keys are collected and sorted on every call (the map is not ordered); then the groups from
    /// `after`'s on are read one at a time under their own read lock, each sorted, until the page is full.
    async fn series_page(
        &self,
        filter: &SeriesFilter,
        after: Option<&SeriesPosition>,
        limit: usize,
    ) -> Result<Vec<StoredSeries>, StoreError> {
        let now = self.inner.now();
        let start = after.map(|a| (a.namespace.as_str(), a.resource.as_deref(), a.metric.as_str()));
        let wanted =
            |group: (&str, Option<&str>, &str)| filter.admits(group.0, group.2) && start.is_none_or(|s| group >= s);
        // (namespace, resource, metric) of each group, with its key; `None` resource: external.
        let mut groups: Vec<(String, Option<String>, String, Arc<str>)> = Vec::new();
        for group in self.inner.custom.groups.iter() {
            if let Some((resource, namespace, metric)) = split_custom_group_key(group.key())
                && wanted((namespace, Some(resource), metric))
            {
                groups.push((namespace.into(), Some(resource.into()), metric.into(), Arc::clone(group.key())));
            }
        }
        for group in self.inner.external.groups.iter() {
            if let Some((namespace, metric)) = group.key().split_once(KEY_SEPARATOR)
                && wanted((namespace, None, metric))
            {
                groups.push((namespace.into(), None, metric.into(), Arc::clone(group.key())));
            }
        }
        groups.sort_unstable();
        let mut page = Vec::new();
        for (namespace, resource, metric, key) in groups {
            if page.len() >= limit {
                break;
            }
            let position = |name: &str, labels: SeriesLabels| SeriesPosition {
                namespace: namespace.clone(),
                resource: resource.clone(),
                metric: metric.clone(),
                name: name.to_string(),
                labels,
            };
            let mut found: Vec<StoredSeries> = if resource.is_some() {
                let Some(group) = self.inner.custom.groups.get(&key) else { continue };
                let series = group.read();
                series
                    .iter()
                    .filter(|(_, sample)| sample.is_live(now))
                    .map(|(name, sample)| StoredSeries {
                        position: position(name, SeriesLabels::empty()),
                        sample: sample.sample(),
                    })
                    .filter(|stored| after.is_none_or(|a| &stored.position > a))
                    .collect()
            } else {
                let Some(group) = self.inner.external.groups.get(&key) else { continue };
                let series = group.read();
                series
                    .iter()
                    .filter(|(_, sample)| sample.is_live(now))
                    .map(|(labels, sample)| StoredSeries {
                        position: position("", labels.clone()),
                        sample: Sample { labels: labels.clone(), ..sample.sample() },
                    })
                    .filter(|stored| after.is_none_or(|a| &stored.position > a))
                    .collect()
            };
            found.sort_unstable_by(|a, b| a.position.cmp(&b.position));
            found.truncate(limit - page.len());
            page.extend(found);
        }
        Ok(page)
    }

    async fn list_external_counters(&self) -> Result<Vec<String>, StoreError> {
        let now = self.inner.now();
        let pairs = lock(&self.inner.external_pairs);
        Ok(pairs.iter().filter(|(_, (pair, _))| pair.has_counters(now)).map(|(name, _)| name.to_string()).collect())
    }

    async fn recent_custom(
        &self,
        resource: &str,
        namespace: &str,
        metric: &str,
        names: Option<&[String]>,
    ) -> Result<Vec<(String, SeriesLabels, Recent)>, StoreError> {
        let (now, limits) = (self.inner.now(), &self.inner.limits);
        Ok(self.inner.custom_series((resource, namespace, metric), names, now, |name, s| {
            (name.to_string(), s.labels.clone(), s.recent(now, limits))
        }))
    }

    async fn recent_external(&self, namespace: &str, metric: &str) -> Result<Vec<(SeriesLabels, Recent)>, StoreError> {
        let (now, limits) = (self.inner.now(), &self.inner.limits);
        Ok(self.inner.external_series(namespace, metric, now, |labels, s| (labels.clone(), s.recent(now, limits))))
    }

    async fn health(&self) -> Result<(), StoreError> {
        // Nothing to reach: the store is this process's memory.
        Ok(())
    }

    fn series_count(&self) -> usize {
        self.inner.series.load(Ordering::Acquire)
    }

    fn bytes_used(&self) -> usize {
        self.inner.bytes.load(Ordering::Acquire)
    }

    fn stats(&self) -> Option<StoreStats> {
        // Counted at scrape time from the discovery entries, so that writes keep one counter to update.
        let external: usize =
            lock(&self.inner.external_pairs).values().map(|(pair, _)| pair.series.load(Ordering::Acquire)).sum();
        let total = self.inner.series.load(Ordering::Acquire);
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        Some(StoreStats {
            custom_series: count(total.saturating_sub(external)),
            external_series: count(external),
            expired_series: self.inner.expired.load(Ordering::Relaxed),
            replication: None,
        })
    }
}

/// What the Redis store's mirror needs beyond [`MetricStore`] (docs/architecture.md §10): samples stamped elsewhere
/// (by Redis time), the bytes a write would add before it is sent, and the metrics an object may have.
impl MemoryStore {
    /// Stores a custom sample as given (timestamp and deadline included), with the limits on series and bytes but
    /// without the name and label checks, which the caller made.
    pub(crate) fn put_custom_sample(&self, id: CustomSeriesId<'_>, sample: Sample) -> Result<(), StoreError> {
        self.replace_custom(id, sample).map(drop)
    }

    /// [`Self::put_custom_sample`], giving the sample it replaced (live or expired).
    fn replace_custom(&self, id: CustomSeriesId<'_>, sample: Sample) -> Result<Option<Sample>, StoreError> {
        self.replace_custom_in(&custom_group_key(id.resource, id.namespace, id.metric), id, sample)
    }

    /// [`Self::replace_custom`] with the series' group key (`custom_group_key`) built.
    fn replace_custom_in(
        &self,
        group_key: &str,
        id: CustomSeriesId<'_>,
        sample: Sample,
    ) -> Result<Option<Sample>, StoreError> {
        let inner = &self.inner;
        let object_key = object_key(group_key, id.metric);
        let creation = Creation {
            // Runs under the shard's write lock that creates the group.
            pair: || {
                inner.index_metric(object_key, id.metric);
                inner.custom_pair(id.resource, id.namespace, id.metric)
            },
            key: || Arc::from(id.name),
            key_bytes: id.name.len(),
        };
        inner.put(&inner.custom, group_key, id.name, sample, creation)
    }

    /// Stores an external sample as given; see [`Self::put_custom_sample`]. The sample's labels are the identity.
    pub(crate) fn put_external_sample(&self, namespace: &str, metric: &str, sample: Sample) -> Result<(), StoreError> {
        self.replace_external(namespace, metric, sample).map(drop)
    }

    /// [`Self::put_external_sample`], giving the sample it replaced (live or expired), its labels restored.
    fn replace_external(&self, namespace: &str, metric: &str, sample: Sample) -> Result<Option<Sample>, StoreError> {
        let inner = &self.inner;
        // The labels are the key; the stored sample carries none, so that they are held (and accounted) once.
        let mut sample = sample;
        let key = std::mem::take(&mut sample.labels);
        let creation =
            Creation { pair: || inner.external_pair(metric), key: || key.clone(), key_bytes: labels_bytes(&key) };
        let replaced = inner.put(&inner.external, &external_group_key(namespace, metric), &key, sample, creation)?;
        Ok(replaced.map(|sample| Sample { labels: key, ..sample }))
    }

    /// The bytes that `write` (its labels, a deadline or not, its kind) would add to the accounting now, the
    /// history it would keep included (as if written after the latest value); 0 when it would shrink it.
    pub(crate) fn custom_growth(&self, id: CustomSeriesId<'_>, write: &SampleWrite) -> usize {
        let group_key = custom_group_key(id.resource, id.namespace, id.metric);
        let new = (labels_bytes(&write.labels), write.ttl.is_some(), write.kind);
        self.inner.growth(&self.inner.custom, &group_key, id.name, id.name.len(), new)
    }

    /// [`Self::custom_growth`] for an external series.
    pub(crate) fn external_growth(&self, namespace: &str, metric: &str, write: &SampleWrite) -> usize {
        let group_key = external_group_key(namespace, metric);
        let new = (0, write.ttl.is_some(), write.kind);
        self.inner.growth(&self.inner.external, &group_key, &write.labels, labels_bytes(&write.labels), new)
    }

    /// The metrics that have values (live or expired) of `resource` in `namespace`, sorted.
    pub(crate) fn metrics_of(&self, resource: &str, namespace: &str) -> Vec<Box<str>> {
        let group_key = custom_group_key(resource, namespace, "");
        self.inner.object_metrics(object_key(&group_key, ""))
    }
}

/// The walks of one group that the value reads and the history reads share: each read is one of them with its own
/// projection of a stored series.
impl Inner {
    /// The series of the custom group (resource, namespace, metric) live at `now`, each as `project` makes it from
    /// its object name, under one read lock of the group: those of `names` in their order (absent ones skipped), or
    /// with `None` every one, sorted by object name.
    fn custom_series<T>(
        &self,
        (resource, namespace, metric): (&str, &str, &str),
        names: Option<&[String]>,
        now: i64,
        project: impl Fn(&str, &Stored) -> T,
    ) -> Vec<T> {
        let group_key = custom_group_key(resource, namespace, metric);
        let Some(group) = self.custom.groups.get(group_key.as_str()) else {
            return Vec::new();
        };
        let series = group.read();
        match names {
            Some(names) => names
                .iter()
                .filter_map(|name| series.get(name.as_str()).filter(|s| s.is_live(now)).map(|s| project(name, s)))
                .collect(),
            None => {
                let mut live: Vec<(&Arc<str>, &Stored)> = series.iter().filter(|(_, s)| s.is_live(now)).collect();
                live.sort_unstable_by(|a, b| a.0.cmp(b.0));
                live.into_iter().map(|(name, s)| project(name, s)).collect()
            }
        }
    }

    /// The series of the external group (namespace, metric) live at `now`, each as `project` makes it from its
    /// labels, under one read lock of the group, sorted by labels.
    fn external_series<T>(
        &self,
        namespace: &str,
        metric: &str,
        now: i64,
        project: impl Fn(&SeriesLabels, &Stored) -> T,
    ) -> Vec<T> {
        let group_key = external_group_key(namespace, metric);
        let Some(group) = self.external.groups.get(group_key.as_str()) else {
            return Vec::new();
        };
        let series = group.read();
        let mut live: Vec<(&SeriesLabels, &Stored)> = series.iter().filter(|(_, s)| s.is_live(now)).collect();
        live.sort_unstable_by(|a, b| a.0.cmp(b.0));
        live.into_iter().map(|(labels, s)| project(labels, s)).collect()
    }
}

impl Inner {
    /// What [`Inner::put`] would reserve for a sample with `new` = (bytes of labels, a deadline or not, kind),
    /// mirroring its accounting.
    fn growth<K, Q>(
        &self,
        kind: &Kind<K>,
        group_key: &str,
        key: &Q,
        key_bytes: usize,
        new: (usize, bool, SeriesKind),
    ) -> usize
    where
        K: SeriesKey + std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (new_labels, deadline, series_kind) = new;
        let new_deadline = if deadline { 0 } else { i64::MAX };
        let Some(group) = kind.groups.get(group_key) else {
            let set = if deadline { DEADLINE_SET_BYTES } else { 0 };
            return GROUP_BYTES
                + group_key.len()
                + SERIES_BYTES
                + key_bytes
                + new_labels
                + deadline_bytes(new_deadline)
                + set;
        };
        let series = group.read();
        let len = series.deadlines.len();
        match series.map.get(key) {
            Some(existing) => {
                let old_deadline = existing.expires_at_millis;
                let len_after = len + usize::from(old_deadline == i64::MAX && deadline)
                    - usize::from(old_deadline != i64::MAX && !deadline);
                let old = labels_bytes(&existing.labels)
                    + deadline_bytes(old_deadline)
                    + deadline_set_bytes(len)
                    + existing.history.bytes();
                let history = existing.history.bytes_after(
                    (existing.kind, existing.timestamp_millis),
                    series_kind,
                    existing.timestamp_millis.saturating_add(1),
                    &self.limits.rates,
                );
                let new = new_labels + deadline_bytes(new_deadline) + deadline_set_bytes(len_after) + history;
                new.saturating_sub(old)
            }
            None => {
                let set = if deadline && len == 0 { DEADLINE_SET_BYTES } else { 0 };
                SERIES_BYTES + key_bytes + new_labels + deadline_bytes(new_deadline) + set
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::clock::ManualClock;
    use crate::quantity::Quantity;

    #[async_trait]
    impl crate::store::conformance::Subject for MemoryStore {
        async fn create(limits: Limits, clock: Arc<dyn Clock>) -> Self {
            MemoryStore::with_clock(limits, clock)
        }

        async fn purge(&self) {
            self.purge_expired();
        }
    }

    crate::store_conformance!(MemoryStore);

    #[test]
    fn a_series_entry_holds_its_history_in_80_bytes() {
        // The figure docs/architecture.md §9 ("History") states; SERIES_BYTES is calibrated on it.
        assert_eq!(std::mem::size_of::<Stored>(), 80);
    }

    fn store(limits: Limits) -> (MemoryStore, ManualClock) {
        let clock = ManualClock::new(1_000_000);
        (MemoryStore::with_clock(limits, Arc::new(clock.clone())), clock)
    }

    fn write(value: &str, ttl: Option<Duration>) -> SampleWrite {
        SampleWrite {
            value: Quantity::parse(value).unwrap(),
            labels: SeriesLabels::empty(),
            ttl,
            kind: SeriesKind::Gauge,
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> SeriesLabels {
        SeriesLabels::from_map(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>())
    }

    fn pod(name: &str) -> CustomSeriesId<'_> {
        CustomSeriesId { resource: "pods", namespace: "default", name, metric: "m" }
    }

    #[tokio::test]
    async fn series_pages_list_every_live_series_in_order_with_filters_and_no_repeats() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let store = MemoryStore::with_clock(Limits::default(), clock.clone());
        let write = |value: i64, ttl: Option<u64>| SampleWrite {
            value: Quantity::from_i64(value, crate::quantity::Format::DecimalSI),
            labels: SeriesLabels::from_map(BTreeMap::from([("k".to_string(), value.to_string())])),
            ttl: ttl.map(Duration::from_secs),
            kind: SeriesKind::Gauge,
        };
        for (namespace, name, metric, value) in
            [("b", "web-2", "qps", 2), ("a", "web-1", "qps", 1), ("b", "web-1", "qps", 3), ("b", "web-1", "lat", 4)]
        {
            store
                .put_custom(CustomSeriesId { resource: "pods", namespace, name, metric }, write(value, None))
                .await
                .unwrap();
        }
        store.put_external("b", "queue", write(5, None)).await.unwrap();
        store.put_external("b", "queue", write(6, None)).await.unwrap();
        store
            .put_custom(
                CustomSeriesId { resource: "pods", namespace: "a", name: "gone", metric: "qps" },
                write(7, Some(1)),
            )
            .await
            .unwrap();
        clock.advance(2_000);
        let all = SeriesFilter::default();
        let mut seen = Vec::new();
        let mut after: Option<SeriesPosition> = None;
        loop {
            let page = store.series_page(&all, after.as_ref(), 2).await.unwrap();
            assert!(page.len() <= 2);
            let Some(last) = page.last() else { break };
            after = Some(last.position.clone());
            seen.extend(page.iter().map(|s| {
                (
                    s.position.namespace.clone(),
                    s.position.resource.clone(),
                    s.position.metric.clone(),
                    s.position.name.clone(),
                    s.sample.value.to_string(),
                )
            }));
        }
        let pods = || Some("pods".to_string());
        let row = |ns: &str, r: Option<String>, m: &str, n: &str, v: &str| {
            (ns.to_string(), r, m.to_string(), n.to_string(), v.to_string())
        };
        assert_eq!(
            seen,
            vec![
                row("a", pods(), "qps", "web-1", "1"),
                // External series (no resource) first within a namespace, ordered by labels.
                row("b", None, "queue", "", "5"),
                row("b", None, "queue", "", "6"),
                row("b", pods(), "lat", "web-1", "4"),
                row("b", pods(), "qps", "web-1", "3"),
                row("b", pods(), "qps", "web-2", "2"),
            ],
            "the expired series is left out"
        );
        let external = store.series_page(&all, None, 10).await.unwrap();
        assert_eq!(external[1].sample.labels.to_map()["k"], "5", "an external sample carries its labels");
        let filter = SeriesFilter { namespace: Some("b".into()), metric_contains: Some("q".into()) };
        let names: Vec<String> = store
            .series_page(&filter, None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|s| format!("{}/{}", s.position.metric, s.sample.value))
            .collect();
        assert_eq!(names, ["queue/5", "queue/6", "qps/3", "qps/2"]);
        assert!(
            store
                .series_page(&SeriesFilter { namespace: Some("c".into()), ..SeriesFilter::default() }, None, 10)
                .await
                .unwrap()
                .is_empty()
        );
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
        assert_eq!(store.inner.external.groups.len(), 0, "empty groups are dropped");
    }

    #[tokio::test]
    async fn the_stats_count_series_by_group_and_what_expiry_removed() {
        let (store, clock) = store(Limits::default());
        store.put_custom(pod("a"), write("1", Some(Duration::from_secs(10)))).await.unwrap();
        store.put_custom(pod("b"), write("2", None)).await.unwrap();
        store.put_external("default", "e", write("3", Some(Duration::from_secs(10)))).await.unwrap();
        let counts = |s: StoreStats| (s.custom_series, s.external_series, s.expired_series);
        assert_eq!(store.stats().map(counts), Some((2, 1, 0)));
        assert!(store.delete_custom(pod("b")).await.unwrap());
        clock.advance(10_000);
        assert_eq!(store.purge_expired(), 2);
        assert_eq!(store.stats().map(counts), Some((0, 0, 2)), "a delete is not an expiry");
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
        let (store, _) = store(Limits { max_series: 2, max_labels_per_series: 1, ..Limits::default() });
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
                CustomMetricDescriptor {
                    resource: "namespaces".into(),
                    metric: "w".into(),
                    namespaced: false,
                    counter: false,
                },
                CustomMetricDescriptor {
                    resource: "pods".into(),
                    metric: "m".into(),
                    namespaced: true,
                    counter: false
                },
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
        let (store, _) = store(Limits { max_series: 10_000, max_labels_per_series: 4, ..Limits::default() });
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
    async fn the_expiry_task_runs_on_its_interval_and_stops_with_the_last_handle() {
        let clock = ManualClock::new(1_000_000);
        let store = MemoryStore::start_with_clock(Limits::default(), Arc::new(clock.clone()), PURGE_INTERVAL);
        let tasks = tokio::runtime::Handle::current().metrics().num_alive_tasks();
        store.put_custom(pod("a"), write("1", Some(Duration::from_secs(1)))).await.unwrap();
        store.put_custom(pod("b"), write("1", Some(Duration::from_secs(60)))).await.unwrap();
        clock.advance(2_000);
        tokio::time::sleep(PURGE_INTERVAL + Duration::from_secs(1)).await;
        assert_eq!(store.series_count(), 1, "the expired series was purged, the live one kept");
        let weak = Arc::downgrade(&store.inner);
        drop(store);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(weak.upgrade().is_none(), "the task holds no handle to the store");
        assert_eq!(
            tokio::runtime::Handle::current().metrics().num_alive_tasks(),
            tasks - 1,
            "the expiry task ended with the last handle"
        );
    }

    fn big_labels(i: usize) -> SeriesLabels {
        let map = (0..16).map(|k| (format!("label-key-{k:02}-{i}"), format!("{:0>200}", i * 16 + k))).collect();
        SeriesLabels::from_map(map)
    }

    /// The bytes the store should account for, recomputed from what it holds.
    fn recount_bytes(store: &MemoryStore) -> usize {
        let custom: usize = store
            .inner
            .custom
            .groups
            .iter()
            .map(|g| {
                let series = g.read();
                GROUP_BYTES
                    + g.key().len()
                    + deadline_set_bytes(series.deadlines.len())
                    + series.iter().map(|(k, s)| series_bytes(k, s)).sum::<usize>()
            })
            .sum();
        let external: usize = store
            .inner
            .external
            .groups
            .iter()
            .map(|g| {
                let series = g.read();
                GROUP_BYTES
                    + g.key().len()
                    + deadline_set_bytes(series.deadlines.len())
                    + series.iter().map(|(k, s)| series_bytes(k, s)).sum::<usize>()
            })
            .sum();
        custom + external
    }

    /// Checks the expiry indexes against the series: each group's deadline set holds exactly its series' deadlines,
    /// and a group with deadlines has exactly one wake-up entry, at or before the earliest.
    fn check_expiry_index<K: SeriesKey + std::fmt::Debug>(kind: &Kind<K>, step: usize) {
        let wake = lock(&kind.wake).clone();
        let mut registered = 0;
        for group in kind.groups.iter() {
            let series = group.read();
            let expected: BTreeSet<(i64, K)> = series
                .map
                .iter()
                .filter(|(_, s)| s.expires_at_millis != i64::MAX)
                .map(|(k, s)| (s.expires_at_millis, k.clone()))
                .collect();
            assert_eq!(series.deadlines, expected, "deadlines of {} at step {step}", group.key());
            assert!(!series.map.is_empty(), "an empty group {} stayed at step {step}", group.key());
            if series.wake != i64::MAX {
                registered += 1;
                assert!(wake.contains(&(series.wake, group.key().clone())), "{} not in the wake index", group.key());
            }
            if let Some((first, _)) = series.deadlines.first() {
                assert!(series.wake <= *first, "{} wakes after its first deadline at step {step}", group.key());
            }
        }
        assert_eq!(wake.len(), registered, "wake entries without a group at step {step}");
    }

    #[tokio::test]
    async fn the_byte_budget_refuses_before_it_is_exceeded_and_removals_give_the_bytes_back() {
        let budget = 1 << 20;
        let limits = Limits { max_store_bytes: budget, ..Limits::default() };
        let (store, clock) = store(limits);
        let mut stored = 0;
        let refusal = loop {
            let name = format!("pod-{stored}");
            let ttl = (stored % 2 == 0).then(|| Duration::from_secs(10));
            let labelled = SampleWrite { labels: big_labels(stored), ..write("1", ttl) };
            match store.put_custom(pod(&name), labelled).await {
                Ok(()) => stored += 1,
                Err(error) => break error,
            }
            assert!(store.bytes_used() <= budget, "accounted {} > budget {budget}", store.bytes_used());
            let external = SampleWrite { labels: big_labels(stored), ..write("1", ttl) };
            if let Err(error) = store.put_external("default", "e", external).await {
                break error;
            }
            assert!(store.bytes_used() <= budget);
        };
        assert!(matches!(refusal, StoreError::StoreBytesLimit { limit, .. } if limit == budget), "{refusal:?}");
        assert!(refusal.to_string().contains("--max-store-bytes"), "{refusal}");
        // Each series holds over 16 * 200 bytes of labels: far fewer than 1 MiB / 3 KiB of them fit.
        assert!((100..400).contains(&stored), "{stored} series stored");
        assert_eq!(store.bytes_used(), recount_bytes(&store));
        let full = store.bytes_used();
        // A refused write changed nothing; an update that grows the labels is refused too.
        assert_eq!(store.get_custom(pod(&format!("pod-{stored}"))).await.unwrap(), None);
        let grown = SampleWrite { labels: big_labels(9_999), ..write("2", None) };
        let _ = store.put_custom(pod("pod-1"), grown).await;
        assert!(store.bytes_used() <= budget);
        // Deleting gives the bytes back, and the room is usable again.
        let before = store.bytes_used();
        assert!(store.delete_custom(pod("pod-1")).await.unwrap());
        assert!(store.bytes_used() < before);
        assert_eq!(store.bytes_used(), recount_bytes(&store));
        store.put_custom(pod("again"), SampleWrite { labels: big_labels(1), ..write("1", None) }).await.unwrap();
        // Expiry and purge give the bytes back.
        clock.advance(10_000);
        assert!(store.purge_expired() > 0);
        assert!(store.bytes_used() < full / 2 + 4096, "{} of {full}", store.bytes_used());
        assert_eq!(store.bytes_used(), recount_bytes(&store));
        assert_eq!(store.delete_object("pods", "default", "again").await.unwrap(), 1);
        for i in 0..=stored {
            store.delete_custom(pod(&format!("pod-{i}"))).await.unwrap();
            store.delete_external("default", "e", &big_labels(i)).await.unwrap();
        }
        store.purge_expired();
        assert_eq!(store.series_count(), 0);
        assert_eq!(store.bytes_used(), 0, "everything given back once the empty groups are purged");
    }

    #[tokio::test]
    async fn label_bytes_per_series_are_capped() {
        let (store, _) = store(Limits { max_label_bytes_per_series: 10, ..Limits::default() });
        let fits = SampleWrite { labels: labels(&[("abcd", "efghij")]), ..write("1", None) };
        store.put_custom(pod("a"), fits).await.unwrap();
        let over = SampleWrite { labels: labels(&[("abcd", "efghijk")]), ..write("1", None) };
        let error = store.put_custom(pod("b"), over.clone()).await.unwrap_err();
        assert_eq!(error, StoreError::LabelBytes { bytes: 11, limit: 10 });
        assert!(error.to_string().contains("--max-label-bytes-per-series"));
        assert_eq!(
            store.put_external("ns", "e", over).await.unwrap_err(),
            StoreError::LabelBytes { bytes: 11, limit: 10 }
        );
        assert_eq!(store.series_count(), 1);
    }

    #[tokio::test]
    async fn a_huge_ttl_saturates_the_deadline() {
        let (store, clock) = store(Limits::default());
        store.put_custom(pod("a"), write("1", Some(Duration::from_secs(u64::MAX)))).await.unwrap();
        store.put_custom(pod("b"), write("1", Some(Duration::from_secs(3_600_000_000_000)))).await.unwrap();
        clock.advance(1_000_000_000);
        assert_eq!(store.get_custom(pod("a")).await.unwrap().unwrap().expires_at_millis, i64::MAX);
        assert!(store.get_custom(pod("b")).await.unwrap().is_some());
        assert_eq!(store.list_custom_metrics().await.unwrap().len(), 1);
    }

    /// Discovery and the per-object listing the slow way: every group.
    async fn scanned(store: &MemoryStore) -> (Vec<CustomMetricDescriptor>, Vec<String>, Vec<(String, String)>) {
        let now = store.inner.now();
        let mut custom = Vec::new();
        let mut objects = Vec::new();
        for group in store.inner.custom.groups.iter() {
            let (resource, namespace, metric) = split_custom_group_key(group.key()).unwrap();
            for (name, sample) in group.read().iter().filter(|(_, s)| s.is_live(now)) {
                custom.push(CustomMetricDescriptor {
                    resource: resource.into(),
                    metric: metric.into(),
                    namespaced: !namespace.is_empty(),
                    counter: false,
                });
                objects.push((format!("{resource}/{namespace}/{name}"), format!("{metric}={}", sample.value)));
            }
        }
        custom.sort();
        custom.dedup();
        objects.sort();
        let mut external = Vec::new();
        for group in store.inner.external.groups.iter() {
            if group.read().values().any(|s| s.is_live(now)) {
                external.push(group.key().split_once('/').unwrap().1.to_string());
            }
        }
        external.sort();
        external.dedup();
        (custom, external, objects)
    }

    /// The same from the indexes.
    async fn indexed(
        store: &MemoryStore,
        resources: &[&str],
        namespaces: &[&str],
        names: &[&str],
    ) -> (Vec<CustomMetricDescriptor>, Vec<String>, Vec<(String, String)>) {
        let mut objects = Vec::new();
        for resource in resources {
            for namespace in namespaces {
                for name in names {
                    for (metric, sample) in store.list_object_metrics(resource, namespace, name).await.unwrap() {
                        objects.push((format!("{resource}/{namespace}/{name}"), format!("{metric}={}", sample.value)));
                    }
                }
            }
        }
        objects.sort();
        (store.list_custom_metrics().await.unwrap(), store.list_external_metrics().await.unwrap(), objects)
    }

    #[tokio::test]
    async fn the_indexes_agree_with_a_full_scan_after_random_operations() {
        let (store, clock) = store(Limits { max_series: 60, ..Limits::default() });
        let resources = ["pods", "namespaces"];
        let namespaces = ["a", "b", ""];
        let names = ["x", "y", "z"];
        let metrics = ["m1", "m2", "m3"];
        // A fixed linear congruential sequence: reproducible without a dependency.
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |n: usize| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            ((state >> 33) as usize) % n
        };
        for step in 0..5_000 {
            let id = CustomSeriesId {
                resource: resources[next(2)],
                namespace: namespaces[next(3)],
                name: names[next(3)],
                metric: metrics[next(3)],
            };
            let ttl = [None, Some(Duration::from_millis(5)), Some(Duration::from_millis(50))][next(3)];
            let value = (step % 7).to_string();
            let external_labels = labels(&[("k", names[next(3)])]);
            match next(10) {
                0..=3 => {
                    let _ = store.put_custom(id, write(&value, ttl)).await;
                }
                4 => {
                    store.delete_custom(id).await.unwrap();
                }
                5 => {
                    store.delete_object(id.resource, id.namespace, id.name).await.unwrap();
                }
                6 => {
                    let labelled = SampleWrite { labels: external_labels, ..write(&value, ttl) };
                    let _ = store.put_external(id.namespace, id.metric, labelled).await;
                }
                7 => {
                    store.delete_external(id.namespace, id.metric, &external_labels).await.unwrap();
                }
                8 => clock.advance(next(20) as i64),
                _ => {
                    store.purge_expired();
                }
            }
            let (custom, external, objects) = scanned(&store).await;
            let (index_custom, index_external, index_objects) = indexed(&store, &resources, &namespaces, &names).await;
            assert_eq!(index_objects, objects, "per-object listing at step {step}");
            assert_eq!(store.bytes_used(), recount_bytes(&store), "bytes at step {step}");
            check_expiry_index(&store.inner.custom, step);
            check_expiry_index(&store.inner.external, step);
            // Discovery may keep an entry whose values all expired after a longer-lived one was removed, until
            // the next purge; never the reverse.
            assert!(custom.iter().all(|c| index_custom.contains(c)), "custom discovery at step {step}");
            assert!(external.iter().all(|e| index_external.contains(e)), "external discovery at step {step}");
            store.purge_expired();
            let (index_custom, index_external, _) = indexed(&store, &resources, &namespaces, &names).await;
            assert_eq!(index_custom, custom, "custom discovery after a purge at step {step}");
            assert_eq!(index_external, external, "external discovery after a purge at step {step}");
            let held: usize = store.inner.custom.groups.iter().map(|g| g.read().len()).sum::<usize>()
                + store.inner.external.groups.iter().map(|g| g.read().len()).sum::<usize>();
            assert_eq!(store.series_count(), held);
        }
    }

    #[tokio::test]
    async fn a_purge_takes_expired_series_in_deadline_order_and_only_those() {
        let (store, clock) = store(Limits::default());
        for (name, ttl) in [("c", 3), ("a", 1), ("late", 60), ("b", 2)] {
            store.put_custom(pod(name), write("1", Some(Duration::from_secs(ttl)))).await.unwrap();
        }
        store.put_custom(pod("forever"), write("1", None)).await.unwrap();
        clock.advance(5_000);
        let left = |store: &MemoryStore| {
            let mut names: Vec<String> = store
                .inner
                .custom
                .groups
                .get("pods/default/m")
                .map_or(Vec::new(), |g| g.read().keys().map(|k| k.to_string()).collect());
            names.sort();
            names
        };
        // One removal at a time, the earliest deadline first; then nothing more is due.
        assert_eq!(store.inner.purge(1), (1, true));
        assert_eq!(left(&store), ["b", "c", "forever", "late"]);
        assert_eq!(store.inner.purge(1), (1, true));
        assert_eq!(left(&store), ["c", "forever", "late"]);
        assert_eq!(store.inner.purge(5), (1, false));
        assert_eq!(left(&store), ["forever", "late"]);
        assert_eq!(store.inner.purge(5), (0, false), "the live series are not due");
    }

    #[test]
    fn a_purge_never_waits_for_groups_without_expired_series() {
        // The old purge took every shard's write lock and every group's lock. Here a reader holds the shard and the
        // group of series that are not due, and the purge must still finish: it only visits what expired.
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (store, clock) = store(Limits::default());
        rt.block_on(async {
            store.put_custom(pod("forever"), write("1", None)).await.unwrap();
            store.put_custom(pod("late"), write("1", Some(Duration::from_secs(60)))).await.unwrap();
            let other = CustomSeriesId { metric: "n", ..pod("a") };
            store.put_custom(other, write("1", Some(Duration::from_secs(1)))).await.unwrap();
            store.put_custom(CustomSeriesId { metric: "n", ..pod("b") }, write("1", None)).await.unwrap();
            store.put_external("ns", "e", write("1", Some(Duration::from_secs(1)))).await.unwrap();
            store
                .put_external("ns", "e", SampleWrite { labels: labels(&[("k", "v")]), ..write("1", None) })
                .await
                .unwrap();
        });
        clock.advance(2_000);
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            let held = store.inner.custom.groups.get("pods/default/m").unwrap();
            let series = held.write();
            scope.spawn(|| done.send(store.purge_expired()).unwrap());
            // Only a deadlock reaches the bound; a passing run answers at once.
            let removed = finished.recv_timeout(Duration::from_secs(60));
            drop(series);
            drop(held);
            assert_eq!(removed, Ok(2), "the purge waited for a group with nothing due");
        });
        assert_eq!(store.series_count(), 4);
    }

    #[tokio::test]
    async fn a_deadline_is_accounted_and_a_group_left_empty_is_dropped_at_once() {
        let (store, _) = store(Limits::default());
        store.put_custom(pod("a"), write("1", None)).await.unwrap();
        let permanent = store.bytes_used();
        let first = DEADLINE_BYTES + DEADLINE_SET_BYTES;
        store.put_custom(pod("a"), write("1", Some(Duration::from_secs(10)))).await.unwrap();
        assert_eq!(store.bytes_used(), permanent + first, "the deadline and the group's deadline set are accounted");
        store.put_custom(pod("a"), write("1", Some(Duration::from_secs(20)))).await.unwrap();
        assert_eq!(store.bytes_used(), permanent + first, "a moved deadline costs the same");
        store.put_custom(pod("b"), write("1", Some(Duration::from_secs(20)))).await.unwrap();
        let two = store.bytes_used();
        assert!(store.delete_custom(pod("b")).await.unwrap());
        assert_eq!(
            two - store.bytes_used(),
            SERIES_BYTES + "b".len() + DEADLINE_BYTES,
            "the set stays: a deadline is in it"
        );
        store.put_custom(pod("a"), write("1", None)).await.unwrap();
        assert_eq!(store.bytes_used(), permanent, "no deadline left: the set's bytes are given back");
        // A budget that holds the series but not its deadline refuses the ttl and keeps the value as it was.
        let (tight, _) = store_with_budget(permanent + first - 1);
        tight.put_custom(pod("a"), write("1", None)).await.unwrap();
        let refused = tight.put_custom(pod("a"), write("2", Some(Duration::from_secs(10)))).await;
        assert!(matches!(refused, Err(StoreError::StoreBytesLimit { needed, .. }) if needed == first), "{refused:?}");
        assert_eq!(tight.get_custom(pod("a")).await.unwrap().unwrap().expires_at_millis, i64::MAX);
        // The last series of a group gone, the group and its bytes go with it, without waiting for a purge.
        assert!(store.delete_custom(pod("a")).await.unwrap());
        assert_eq!(store.inner.custom.groups.len(), 0);
        assert_eq!(store.bytes_used(), 0);
        store.put_external("ns", "e", write("1", Some(Duration::from_secs(10)))).await.unwrap();
        assert!(store.delete_external("ns", "e", &SeriesLabels::empty()).await.unwrap());
        assert_eq!((store.inner.external.groups.len(), lock(&store.inner.external.wake).len()), (0, 0));
        assert_eq!((store.series_count(), store.bytes_used()), (0, 0));
        assert!(store.list_external_metrics().await.unwrap().is_empty());
    }

    fn store_with_budget(max_store_bytes: usize) -> (MemoryStore, ManualClock) {
        store(Limits { max_store_bytes, ..Limits::default() })
    }

    #[tokio::test(start_paused = true)]
    async fn the_expiry_task_lets_other_tasks_run_while_it_purges() {
        let clock = ManualClock::new(1_000_000);
        let store = MemoryStore::start_with_clock(Limits::default(), Arc::new(clock.clone()), PURGE_INTERVAL);
        let count = 4 * PURGE_BATCH;
        for i in 0..count {
            store.put_custom(pod(&format!("p{i}")), write("1", Some(Duration::from_secs(1)))).await.unwrap();
        }
        clock.advance(2_000);
        // A task that runs whenever the worker is free, noting how many series it sees.
        let observer = tokio::spawn({
            let store = store.clone();
            async move {
                let mut seen = Vec::new();
                while store.series_count() > 0 {
                    seen.push(store.series_count());
                    tokio::task::yield_now().await;
                }
                seen
            }
        });
        tokio::time::sleep(PURGE_INTERVAL + Duration::from_secs(1)).await;
        let seen = observer.await.unwrap();
        assert!(
            seen.iter().any(|&n| n > 0 && n < count),
            "the purge of {count} series ran without letting another task run: {seen:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn writers_deleters_and_the_purge_at_once_leave_every_index_exact() {
        let (store, clock) = store(Limits::default());
        let mut tasks = Vec::new();
        for writer in 0..4u64 {
            let store = store.clone();
            let clock = clock.clone();
            tasks.push(tokio::spawn(async move {
                let mut state = 0x9e37_79b9_7f4a_7c15 ^ writer;
                for _ in 0..4_000 {
                    state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                    let r = (state >> 33) as usize;
                    let name = format!("p{}", r % 40);
                    let namespace = ["a", "b", "c"][r / 40 % 3];
                    let id = CustomSeriesId { resource: "pods", namespace, name: &name, metric: "m" };
                    let ttl = [None, Some(Duration::from_millis(3)), Some(Duration::from_millis(30))][r / 120 % 3];
                    match r / 360 % 8 {
                        0 => {
                            store.delete_custom(id).await.unwrap();
                        }
                        1 => {
                            store.delete_external(namespace, "e", &labels(&[("k", &name)])).await.unwrap();
                        }
                        2 => clock.advance(1),
                        3..=4 => {
                            let labelled = SampleWrite { labels: labels(&[("k", &name)]), ..write("1", ttl) };
                            store.put_external(namespace, "e", labelled).await.unwrap();
                        }
                        _ => store.put_custom(id, write("1", ttl)).await.unwrap(),
                    }
                }
            }));
        }
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let purger = tokio::spawn({
            let (store, done) = (store.clone(), Arc::clone(&done));
            async move {
                let mut rounds = 0;
                while !done.load(Ordering::Acquire) {
                    store.inner.purge(7);
                    rounds += 1;
                    tokio::task::yield_now().await;
                }
                rounds
            }
        });
        for task in tasks {
            task.await.unwrap();
        }
        done.store(true, Ordering::Release);
        assert!(purger.await.unwrap() > 0);
        check_expiry_index(&store.inner.custom, 0);
        check_expiry_index(&store.inner.external, 0);
        assert_eq!(store.bytes_used(), recount_bytes(&store));
        clock.advance(1_000);
        store.purge_expired();
        check_expiry_index(&store.inner.custom, 1);
        check_expiry_index(&store.inner.external, 1);
        assert_eq!(store.bytes_used(), recount_bytes(&store));
        let held: usize = store.inner.custom.groups.iter().map(|g| g.read().len()).sum::<usize>()
            + store.inner.external.groups.iter().map(|g| g.read().len()).sum::<usize>();
        assert_eq!(store.series_count(), held);
        let now = store.inner.now();
        assert!(store.inner.custom.groups.iter().all(|g| g.read().values().all(|s| s.is_live(now))));
    }
}
