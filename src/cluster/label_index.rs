//! The label index: metadata-only watches of the resource types that have stored metrics.
//!
//! [`WatchLabelIndex`] keeps, per watched resource type, a map (namespace, name) -> labels, maintained from a
//! `watcher` over `PartialObjectMeta` (only metadata crosses the wire). Pods are watched from the start, since HPA
//! reads pod metrics by selector; any other type is watched only while the store holds metrics for it, from the
//! first time it is needed: a wildcard read ([`LabelIndex::matching_objects`]) of a type with stored metrics, or
//! the sweep below finding stored metrics for it. A wildcard read of a type without stored metrics answers that no
//! object matches, without a watch, and each sweep stops the watches of types whose metrics are all gone, so
//! that reads cannot leave watches (retried forever when RBAC refuses them) behind. A re-list replaces the map
//! whole when it completes (`InitDone`), so an object missing from the re-list is gone. Reads answer from memory:
//! no request reaches kube-apiserver per read. A read first waits, at most `sync_timeout`, for the type's initial
//! list; a watch that cannot list (403 from RBAC, for example) makes reads fail with the watch's error while the
//! watch keeps retrying with back-off.
//!
//! # Deleted objects
//!
//! Values written for an object stay after the object is deleted until the sweep removes them. Every
//! `sweep_interval`, for each resource type that has stored custom metrics and whose watch has completed its
//! initial list, every stored object (namespace, name) that the index does not hold is remembered with the time it
//! was first seen absent. Once it has been absent for at least `deleted_object_grace`, every stored series of that
//! object is removed from the store. An object that reappears (or whose values are gone) is forgotten. The grace
//! period covers an object written before the watch has seen it created. A type whose watch has failed since its
//! last completed list (it keeps its view for reads while it retries) is not swept until the watch delivers again:
//! objects created meanwhile are missing from that view, and their values must not go. Namespace objects (the cluster-scoped
//! `namespaces` resource) are handled the same way; the values of objects inside a deleted namespace go when those
//! objects' own deletions are seen. Resource types are named in the store by `ResourceInfo::group_resource()`
//! (`pods`, `deployments.apps`) and resolved through the resource mapper; a name the mapper no longer knows is
//! skipped.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::discovery::ApiResource;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::{LabelIndex, LabelIndexError, ResourceInfo, ResourceMapper};
use crate::selector::Selector;
use crate::store::MetricStore;

/// How the index waits for watches and cleans up after deleted objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelIndexOptions {
    /// How long a stored object must be absent from the index before its values are removed.
    pub deleted_object_grace: Duration,
    /// How often the sweep for deleted objects runs.
    pub sweep_interval: Duration,
    /// How long a read waits for a resource type's initial list before failing.
    pub sync_timeout: Duration,
}

/// A [`LabelIndex`] over metadata-only watches; see the module documentation.
pub struct WatchLabelIndex {
    client: kube::Client,
    store: Arc<dyn MetricStore>,
    mapper: Arc<dyn ResourceMapper>,
    options: LabelIndexOptions,
    /// Group-qualified resource -> its watch. The std lock is never held across an `.await`.
    watches: Mutex<HashMap<String, Arc<ResourceWatch>>>,
    pods: Arc<ResourceWatch>,
    tasks: Arc<Tasks>,
    counters: Arc<Counters>,
}

/// What `/metrics` counts of the index (docs/wire-contract.md §11).
#[derive(Debug, Default)]
struct Counters {
    /// Watch failures, each followed by a restart with back-off.
    watch_restarts: AtomicU64,
    /// Series the sweep removed with their deleted objects.
    swept_series: AtomicU64,
    /// Passes of the sweep completed.
    sweeps: AtomicU64,
}

/// The index's figures for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LabelIndexStats {
    /// Objects held, all watched types together.
    pub objects: u64,
    /// Resource types watched.
    pub watches: u64,
    /// Watch failures, each followed by a restart with back-off, since the start.
    pub watch_restarts: u64,
    /// Series removed by the deleted-object sweep since the start.
    pub swept_series: u64,
    /// Passes of the sweep completed since the start (not shown by `/metrics`; tests wait on it).
    pub sweeps: u64,
}

/// One watched resource type as the status page shows it ([`WatchLabelIndex::watch_states`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchState {
    /// The group-qualified resource.
    pub resource: String,
    /// Whether an initial list completed.
    pub synced: bool,
    /// Whether the watch has delivered since its last failure (the sweep waits for it).
    pub current: bool,
    /// Why the initial list failed, while it does.
    pub error: Option<String>,
    /// Objects held.
    pub objects: u64,
}

/// Stops every watch and the sweep when dropped.
pub struct IndexGuard(Arc<Tasks>);

impl std::fmt::Debug for IndexGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexGuard").finish_non_exhaustive()
    }
}

impl Drop for IndexGuard {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// The background tasks of one index; `None` once closed, so that a watch started later is stopped at once.
struct Tasks(Mutex<Option<Vec<AbortHandle>>>);

impl Tasks {
    /// Spawns `task`; its handle aborts it alone.
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) -> AbortHandle {
        let handle = tokio::spawn(task).abort_handle();
        let mut tasks = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match tasks.as_mut() {
            Some(handles) => {
                // Stopped watches leave finished handles behind.
                handles.retain(|h| !h.is_finished());
                handles.push(handle.clone());
            }
            None => handle.abort(),
        }
        handle
    }

    fn close(&self) {
        let handles = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        for handle in handles.into_iter().flatten() {
            handle.abort();
        }
    }
}

/// Where a watch stands on its way to a complete view.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SyncState {
    /// The initial list has not finished yet.
    Pending,
    /// The initial list failed (the watch retries); the error text.
    Failed(String),
    /// An initial list completed; the view is kept current from then on, even across later errors.
    Synced,
}

/// One watched resource type.
struct ResourceWatch {
    info: ResourceInfo,
    objects: RwLock<ObjectMap>,
    state: watch::Sender<SyncState>,
    /// When the watch was started: a sweep only stops watches older than its look at the store.
    started: Instant,
    /// Stops the watch's task.
    task: Mutex<Option<AbortHandle>>,
    /// Whether the watch has delivered since its last failure (or its list completed): a view that is not current
    /// may lack objects created since, so the sweep leaves the type alone until it is (module documentation).
    current: AtomicBool,
}

impl ResourceWatch {
    fn new(info: ResourceInfo) -> Self {
        ResourceWatch {
            info,
            objects: RwLock::new(ObjectMap::default()),
            state: watch::Sender::new(SyncState::Pending),
            started: Instant::now(),
            task: Mutex::new(None),
            current: AtomicBool::new(false),
        }
    }

    fn stop(&self) {
        if let Some(task) = self.task.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take() {
            task.abort();
        }
    }

    fn is_synced(&self) -> bool {
        *self.state.borrow() == SyncState::Synced
    }

    fn objects(&self) -> std::sync::RwLockReadGuard<'_, ObjectMap> {
        // A poisoned lock means a panic while applying one event to plain maps; the maps are still usable.
        self.objects.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn objects_mut(&self) -> std::sync::RwLockWriteGuard<'_, ObjectMap> {
        self.objects.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The core pod resource, watched from the start.
fn pods_info() -> ResourceInfo {
    ResourceInfo {
        group: String::new(),
        version: "v1".into(),
        plural: "pods".into(),
        singular: "pod".into(),
        kind: "Pod".into(),
        namespaced: true,
    }
}

fn api_resource(info: &ResourceInfo) -> ApiResource {
    ApiResource {
        group: info.group.clone(),
        version: info.version.clone(),
        api_version: if info.group.is_empty() {
            info.version.clone()
        } else {
            format!("{}/{}", info.group, info.version)
        },
        kind: info.kind.clone(),
        plural: info.plural.clone(),
    }
}

impl WatchLabelIndex {
    /// Starts the pods watch and the sweep for deleted objects. Must be called within a tokio runtime.
    pub fn start(
        client: kube::Client,
        store: Arc<dyn MetricStore>,
        mapper: Arc<dyn ResourceMapper>,
        options: LabelIndexOptions,
    ) -> (Arc<Self>, IndexGuard) {
        let tasks = Arc::new(Tasks(Mutex::new(Some(Vec::new()))));
        let pods = Arc::new(ResourceWatch::new(pods_info()));
        let index = Arc::new(WatchLabelIndex {
            client,
            store,
            mapper,
            options,
            watches: Mutex::new(HashMap::new()),
            pods: Arc::clone(&pods),
            tasks: Arc::clone(&tasks),
            counters: Arc::default(),
        });
        index.watch_for(&pods.info);
        let weak: Weak<Self> = Arc::downgrade(&index);
        let sweep_interval = options.sweep_interval;
        tasks.spawn(async move {
            let mut absent: HashMap<String, AbsentTracker> = HashMap::new();
            let mut ticker = tokio::time::interval_at(Instant::now() + sweep_interval, sweep_interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(index) = weak.upgrade() else { return };
                index.sweep(&mut absent, Instant::now()).await;
            }
        });
        (index, IndexGuard(tasks))
    }

    /// The figures `/metrics` shows; counts the objects of every watch.
    pub fn stats(&self) -> LabelIndexStats {
        let watches: Vec<Arc<ResourceWatch>> =
            self.watches.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).values().cloned().collect();
        let objects: usize = watches.iter().map(|watch| watch.objects().len()).sum();
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        LabelIndexStats {
            objects: count(objects),
            watches: count(watches.len()),
            watch_restarts: self.counters.watch_restarts.load(Ordering::Relaxed),
            swept_series: self.counters.swept_series.load(Ordering::Relaxed),
            sweeps: self.counters.sweeps.load(Ordering::Relaxed),
        }
    }

    /// Where each watch stands, sorted by resource type, for the status page (docs/architecture.md §14).
    pub fn watch_states(&self) -> Vec<WatchState> {
        let watches: Vec<Arc<ResourceWatch>> =
            self.watches.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).values().cloned().collect();
        let mut states: Vec<WatchState> = watches
            .iter()
            .map(|watch| {
                let (synced, error) = match &*watch.state.borrow() {
                    SyncState::Pending => (false, None),
                    SyncState::Failed(error) => (false, Some(error.clone())),
                    SyncState::Synced => (true, None),
                };
                WatchState {
                    resource: watch.info.group_resource(),
                    synced,
                    current: watch.current.load(Ordering::Acquire),
                    error,
                    objects: u64::try_from(watch.objects().len()).unwrap_or(u64::MAX),
                }
            })
            .collect();
        states.sort_unstable_by(|a, b| a.resource.cmp(&b.resource));
        states
    }

    /// True once the pods watch has completed its initial list (for /readyz "informer-sync").
    pub fn is_initially_synced(&self) -> bool {
        self.pods.is_synced()
    }

    /// The watch of `info`'s resource type, started now if it was not yet.
    fn watch_for(&self, info: &ResourceInfo) -> Arc<ResourceWatch> {
        let key = info.group_resource();
        let mut watches = self.watches.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(existing) = watches.get(&key) {
            return Arc::clone(existing);
        }
        let created = if key == self.pods.info.group_resource() {
            Arc::clone(&self.pods)
        } else {
            Arc::new(ResourceWatch::new(info.clone()))
        };
        watches.insert(key, Arc::clone(&created));
        drop(watches);
        tracing::info!(resource = %created.info.group_resource(), "starting metadata watch");
        let task = self.tasks.spawn(run_watch(self.client.clone(), Arc::clone(&created), Arc::clone(&self.counters)));
        *created.task.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(task);
        created
    }

    /// The watch of the resource type named `key`, if one runs.
    fn existing_watch(&self, key: &str) -> Option<Arc<ResourceWatch>> {
        self.watches.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(key).cloned()
    }

    /// Stops the watches, pods' aside, of types not in `resources` (sorted) that were started before `listed`.
    fn stop_unneeded_watches(&self, resources: &[String], listed: Instant) {
        let pods = self.pods.info.group_resource();
        let mut stopped = Vec::new();
        self.watches.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).retain(|key, watch| {
            let keep = *key == pods || watch.started >= listed || resources.binary_search(key).is_ok();
            if !keep {
                stopped.push(Arc::clone(watch));
            }
            keep
        });
        for watch in stopped {
            watch.stop();
            tracing::info!(resource = %watch.info.group_resource(), "stopped metadata watch: no stored metrics left");
        }
    }

    /// Whether the store holds a custom metric of the resource type named `key`; `true` when the store cannot
    /// tell, so that a read is answered as before.
    async fn has_stored_metrics(&self, key: &str) -> bool {
        match self.store.list_custom_metrics().await {
            Ok(descriptors) => descriptors.iter().any(|d| d.resource == key),
            Err(error) => {
                tracing::warn!(%error, resource = key, "label index: listing stored metrics failed");
                true
            }
        }
    }

    /// One pass of the sweep described in the module documentation.
    async fn sweep(&self, absent: &mut HashMap<String, AbsentTracker>, now: Instant) {
        let listed = Instant::now();
        let descriptors = match self.store.list_custom_metrics().await {
            Ok(descriptors) => descriptors,
            Err(error) => {
                tracing::warn!(%error, "deleted-object sweep: listing stored metrics failed");
                return;
            }
        };
        let mut resources: Vec<String> = descriptors.into_iter().map(|d| d.resource).collect();
        resources.sort_unstable();
        resources.dedup();
        absent.retain(|resource, _| resources.binary_search(resource).is_ok());
        self.stop_unneeded_watches(&resources, listed);
        for resource in resources {
            let info = match self.mapper.resolve(&resource).await {
                Ok(info) => info,
                Err(error) => {
                    tracing::debug!(%error, resource, "deleted-object sweep: skipping an unknown resource");
                    continue;
                }
            };
            let watch = self.watch_for(&info);
            if !watch.is_synced() {
                continue;
            }
            if !watch.current.load(Ordering::Acquire) {
                tracing::debug!(resource, "deleted-object sweep: skipped until the watch follows the cluster again");
                continue;
            }
            let stored = match self.store.custom_objects(&resource).await {
                Ok(stored) => stored,
                Err(error) => {
                    tracing::warn!(%error, resource, "deleted-object sweep: listing stored objects failed");
                    continue;
                }
            };
            let gone = {
                let objects = watch.objects();
                let tracker = absent.entry(resource.clone()).or_default();
                tracker.update(
                    stored,
                    |namespace, name| objects.contains(namespace, name),
                    now,
                    self.options.deleted_object_grace,
                )
            };
            for (namespace, name) in gone {
                match self.store.delete_object(&resource, &namespace, &name).await {
                    Ok(removed) => {
                        let swept = u64::try_from(removed).unwrap_or(u64::MAX);
                        self.counters.swept_series.fetch_add(swept, Ordering::Relaxed);
                        tracing::info!(resource, namespace, name, removed, "removed the values of a deleted object")
                    }
                    Err(error) => {
                        tracing::warn!(%error, resource, namespace, name, "removing a deleted object's values failed")
                    }
                }
            }
        }
        self.counters.sweeps.fetch_add(1, Ordering::Relaxed);
    }
}

#[async_trait]
impl LabelIndex for WatchLabelIndex {
    async fn matching_objects(
        &self,
        resource: &ResourceInfo,
        namespace: &str,
        selector: &Selector,
    ) -> Result<Option<Vec<String>>, LabelIndexError> {
        let key = resource.group_resource();
        let watch = match self.existing_watch(&key) {
            Some(watch) => watch,
            // Without stored metrics no object of the type can be in the answer: no watch needed.
            None if !self.has_stored_metrics(&key).await => return Ok(Some(Vec::new())),
            None => self.watch_for(resource),
        };
        let mut state = watch.state.subscribe();
        let timeout = self.options.sync_timeout;
        let settled = tokio::time::timeout(timeout, state.wait_for(|s| *s != SyncState::Pending)).await;
        let failure = match settled {
            Err(_) => Some(LabelIndexError::SyncTimeout {
                resource: resource.group_resource(),
                timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            }),
            // The sender lives as long as the watch entry, which outlives this call; be safe anyway.
            Ok(Err(_)) => Some(LabelIndexError::WatchFailed {
                resource: resource.group_resource(),
                cause: "the watch has stopped".into(),
            }),
            Ok(Ok(state)) => match &*state {
                SyncState::Failed(cause) => {
                    Some(LabelIndexError::WatchFailed { resource: resource.group_resource(), cause: cause.clone() })
                }
                SyncState::Synced | SyncState::Pending => None,
            },
        };
        if let Some(error) = failure {
            return Err(error);
        }
        let scope = if resource.namespaced { Some(namespace) } else { None };
        Ok(Some(watch.objects().matching(scope, selector)))
    }
}

/// Follows one resource type's metadata watch until the index is stopped.
async fn run_watch(client: kube::Client, watch: Arc<ResourceWatch>, counters: Arc<Counters>) {
    let resource = watch.info.group_resource();
    let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client, &api_resource(&watch.info));
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
    let mut stream = std::pin::pin!(stream);
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => {
                let (completed, relisting) = {
                    let mut objects = watch.objects_mut();
                    let completed = objects.apply(event);
                    (completed, objects.relist.is_some())
                };
                if completed && !watch.is_synced() {
                    tracing::info!(resource, "metadata watch synced");
                    watch.state.send_replace(SyncState::Synced);
                }
                // Events flow again on a view that a completed list started: it follows the cluster once more.
                if !relisting && watch.is_synced() && !watch.current.swap(true, Ordering::AcqRel) {
                    tracing::debug!(resource, "metadata watch current again");
                }
            }
            Err(error) => {
                watch.current.store(false, Ordering::Release);
                counters.watch_restarts.fetch_add(1, Ordering::Relaxed);
                // Once synced, the view stays usable (and is corrected by the next re-list); before, reads must
                // learn why there is no view.
                let cause = error.to_string();
                let repeated = *watch.state.borrow() == SyncState::Failed(cause.clone());
                // A watch refused by RBAC fails the same way at every retry: said once, then at debug level.
                if repeated {
                    tracing::debug!(%error, resource, "metadata watch failed again; retrying with back-off");
                } else {
                    tracing::warn!(%error, resource, "metadata watch failed; retrying with back-off");
                }
                watch.state.send_if_modified(|state| {
                    if *state == SyncState::Synced || *state == SyncState::Failed(cause.clone()) {
                        return false;
                    }
                    *state = SyncState::Failed(cause);
                    true
                });
            }
        }
    }
}

/// Labels of one object.
type Labels = BTreeMap<String, String>;

/// The objects of one resource type with their labels, kept from watcher events: the pure part of a watch.
#[derive(Debug, Default)]
struct ObjectMap {
    /// Namespace (empty for cluster-scoped objects) -> name -> labels.
    objects: HashMap<String, HashMap<String, Labels>>,
    /// The re-list in progress (between `Init` and `InitDone`); it replaces `objects` whole when complete.
    relist: Option<HashMap<String, HashMap<String, Labels>>>,
}

impl ObjectMap {
    /// Applies one watcher event; true when it completes a (re-)list.
    fn apply(&mut self, event: Event<PartialObjectMeta<DynamicObject>>) -> bool {
        match event {
            Event::Init => self.relist = Some(HashMap::new()),
            Event::InitApply(object) => {
                let (namespace, name, labels) = key_and_labels(object);
                // An `InitApply` without `Init` does not happen; keeping the object is the safe reading.
                let target = self.relist.as_mut().unwrap_or(&mut self.objects);
                target.entry(namespace).or_default().insert(name, labels);
            }
            Event::InitDone => {
                if let Some(listed) = self.relist.take() {
                    self.objects = listed;
                }
                return true;
            }
            Event::Apply(object) => {
                let (namespace, name, labels) = key_and_labels(object);
                self.objects.entry(namespace).or_default().insert(name, labels);
            }
            Event::Delete(object) => {
                let (namespace, name, _) = key_and_labels(object);
                if let Some(names) = self.objects.get_mut(&namespace) {
                    names.remove(&name);
                    if names.is_empty() {
                        self.objects.remove(&namespace);
                    }
                }
            }
        }
        false
    }

    /// Objects held.
    fn len(&self) -> usize {
        self.objects.values().map(HashMap::len).sum()
    }

    fn contains(&self, namespace: &str, name: &str) -> bool {
        self.objects.get(namespace).is_some_and(|names| names.contains_key(name))
    }

    /// Sorted names of the objects in `namespace` (every namespace when `None`) whose labels match `selector`.
    fn matching(&self, namespace: Option<&str>, selector: &Selector) -> Vec<String> {
        let namespaces: Vec<&HashMap<String, Labels>> = match namespace {
            Some(namespace) => self.objects.get(namespace).into_iter().collect(),
            None => self.objects.values().collect(),
        };
        let mut names: Vec<String> = namespaces
            .into_iter()
            .flat_map(|names| names.iter())
            .filter(|(_, labels)| selector.matches(*labels))
            .map(|(name, _)| name.clone())
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }
}

fn key_and_labels(object: PartialObjectMeta<DynamicObject>) -> (String, String, Labels) {
    let metadata = object.metadata;
    (metadata.namespace.unwrap_or_default(), metadata.name.unwrap_or_default(), metadata.labels.unwrap_or_default())
}

/// Stored objects of one resource type that the index does not hold, with when each was first seen absent.
///
/// Keyed by a 64-bit hash of (namespace, name) rather than the names themselves, and updated in place rather than
/// rebuilt, because there can be very many absent objects (values written for objects that never existed).
/// Two objects whose hashes collide share one clock, which can only delay a removal.
#[derive(Debug, Default)]
struct AbsentTracker {
    /// Object hash -> (first seen absent, number of the last update that saw it absent).
    since: HashMap<u64, (Instant, u64)>,
    updates: u64,
}

impl AbsentTracker {
    /// Records the sweep's view at `now`: `stored` (namespace, name) pairs, `present` telling which the index
    /// holds. Returns the objects absent for at least `grace`, whose values are to be removed. Objects no longer
    /// stored or present again are forgotten.
    fn update(
        &mut self,
        stored: Vec<(String, String)>,
        present: impl Fn(&str, &str) -> bool,
        now: Instant,
        grace: Duration,
    ) -> Vec<(String, String)> {
        self.updates += 1;
        let update = self.updates;
        let mut gone = Vec::new();
        for (namespace, name) in stored {
            if present(&namespace, &name) {
                continue;
            }
            // Kept even when due: if the removal fails, the next sweep retries at once.
            let entry = self.since.entry(object_hash(&namespace, &name)).or_insert((now, update));
            entry.1 = update;
            if now.saturating_duration_since(entry.0) >= grace {
                gone.push((namespace, name));
            }
        }
        self.since.retain(|_, (_, seen)| *seen == update);
        gone
    }
}

/// A hash of an object's identity, for [`AbsentTracker`].
fn object_hash(namespace: &str, name: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (namespace, name).hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::BuiltinMapper;
    use crate::cluster::fake_apiserver::{FakeApiServer, RecordedRequest};
    use crate::logging::testing::Captured;
    use crate::quantity::Quantity;
    use crate::response::RequestError;
    use crate::store::{CustomSeriesId, MemoryStore, SampleWrite, SeriesLabels};
    use crate::testing::eventually;

    fn meta(namespace: &str, name: &str, labels: &[(&str, &str)]) -> PartialObjectMeta<DynamicObject> {
        let metadata = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.into()),
            namespace: (!namespace.is_empty()).then(|| namespace.to_string()),
            labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..Default::default()
        };
        PartialObjectMeta { types: None, metadata, _phantom: std::marker::PhantomData }
    }

    fn selector(s: &str) -> Selector {
        Selector::parse(s).unwrap()
    }

    #[test]
    fn the_object_map_follows_events_and_matches_selectors_per_namespace() {
        let mut map = ObjectMap::default();
        assert!(!map.apply(Event::Init));
        map.apply(Event::InitApply(meta("default", "web-2", &[("app", "web")])));
        map.apply(Event::InitApply(meta("default", "db-1", &[("app", "db")])));
        map.apply(Event::InitApply(meta("other", "web-9", &[("app", "web")])));
        assert!(map.matching(Some("default"), &Selector::everything()).is_empty(), "nothing before InitDone");
        assert!(map.apply(Event::InitDone));
        map.apply(Event::Apply(meta("default", "web-1", &[("app", "web"), ("tier", "front")])));
        assert_eq!(map.matching(Some("default"), &selector("app=web")), ["web-1", "web-2"]);
        assert_eq!(map.matching(Some("default"), &Selector::everything()), ["db-1", "web-1", "web-2"]);
        assert_eq!(map.matching(Some("default"), &selector("app=web,tier!=front")), ["web-2"]);
        assert_eq!(map.matching(Some("nowhere"), &Selector::everything()), Vec::<String>::new());
        assert_eq!(map.matching(None, &selector("app in (web)")), ["web-1", "web-2", "web-9"]);
        // A relabelled object matches by its new labels.
        map.apply(Event::Apply(meta("default", "web-2", &[("app", "api")])));
        assert_eq!(map.matching(Some("default"), &selector("app=web")), ["web-1"]);
        map.apply(Event::Delete(meta("default", "web-1", &[])));
        assert!(!map.contains("default", "web-1"));
        assert!(map.contains("other", "web-9"));
    }

    #[test]
    fn a_relist_replaces_the_view_when_complete_and_drops_what_it_missed() {
        let mut map = ObjectMap::default();
        map.apply(Event::Init);
        map.apply(Event::InitApply(meta("ns", "a", &[])));
        map.apply(Event::InitApply(meta("ns", "b", &[])));
        map.apply(Event::InitDone);
        map.apply(Event::Init);
        map.apply(Event::InitApply(meta("ns", "b", &[])));
        map.apply(Event::InitApply(meta("ns", "c", &[])));
        assert!(map.contains("ns", "a") && !map.contains("ns", "c"), "the old view answers during the re-list");
        map.apply(Event::InitDone);
        assert_eq!(map.matching(Some("ns"), &Selector::everything()), ["b", "c"]);
        assert!(!map.contains("ns", "a"), "missing from the re-list means deleted");
    }

    #[test]
    fn an_absent_object_is_due_after_the_grace_period_and_forgotten_when_back() {
        let grace = Duration::from_secs(10);
        let t0 = Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        let stored = || vec![("ns".to_string(), "a".to_string()), ("ns".to_string(), "b".to_string())];
        let mut tracker = AbsentTracker::default();
        let only_b = |_: &str, name: &str| name == "b";
        assert!(tracker.update(stored(), only_b, at(0), grace).is_empty());
        assert!(tracker.update(stored(), only_b, at(9), grace).is_empty(), "not before the grace period");
        assert_eq!(tracker.update(stored(), only_b, at(10), grace), [("ns".to_string(), "a".to_string())]);

        let mut tracker = AbsentTracker::default();
        tracker.update(stored(), only_b, at(0), grace);
        tracker.update(stored(), |_, _| true, at(5), grace);
        assert!(tracker.update(stored(), only_b, at(12), grace).is_empty(), "reappearing restarts the clock");
        assert_eq!(tracker.update(stored(), only_b, at(22), grace).len(), 1);
        tracker.update(Vec::new(), only_b, at(23), grace);
        assert!(tracker.since.is_empty(), "objects no longer stored are forgotten");
    }

    fn options(grace_ms: u64, sweep_ms: u64) -> LabelIndexOptions {
        LabelIndexOptions {
            deleted_object_grace: Duration::from_millis(grace_ms),
            sweep_interval: Duration::from_millis(sweep_ms),
            sync_timeout: Duration::from_secs(5),
        }
    }

    const PODS: &str = "/api/v1/pods";

    fn is_list(path: &'static str) -> impl Fn(&RecordedRequest) -> bool {
        move |r: &RecordedRequest| r.path == path && !r.is_watch()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_answer_from_the_watch_without_listing_and_follow_added_and_deleted_events() {
        let server = FakeApiServer::start().await;
        server.add_object(PODS, "default", "web-1", &[("app", "web")]);
        server.add_object(PODS, "default", "db-1", &[("app", "db")]);
        server.add_object(PODS, "other", "web-9", &[("app", "web")]);
        let store = Arc::new(MemoryStore::new(Default::default()));
        let (index, _guard) =
            WatchLabelIndex::start(server.client(), store, Arc::new(BuiltinMapper::default()), options(60_000, 60_000));
        let pods = pods_info();

        let web = selector("app=web");
        assert_eq!(index.matching_objects(&pods, "default", &web).await, Ok(Some(vec!["web-1".into()])));
        assert!(index.is_initially_synced());
        let all = index.matching_objects(&pods, "default", &Selector::everything()).await;
        assert_eq!(all, Ok(Some(vec!["db-1".into(), "web-1".into()])));
        let stats = index.stats();
        assert_eq!((stats.objects, stats.watches, stats.watch_restarts), (3, 1, 0), "the pods of every namespace");

        eventually("the watch is open", async || server.is_watched(PODS)).await;
        server.add_object(PODS, "default", "web-2", &[("app", "web")]);
        eventually("web-2 is indexed", async || {
            index.matching_objects(&pods, "default", &web).await == Ok(Some(vec!["web-1".into(), "web-2".into()]))
        })
        .await;
        server.delete_object(PODS, "default", "web-1");
        eventually("web-1 is gone", async || {
            index.matching_objects(&pods, "default", &web).await == Ok(Some(vec!["web-2".into()]))
        })
        .await;
        assert_eq!(server.count(is_list(PODS)), 1, "one initial list, none per read");
        let accepts: Vec<String> = server.requests().into_iter().filter(|r| r.path == PODS).map(|r| r.accept).collect();
        assert!(
            !accepts.is_empty() && accepts.iter().all(|a| a.contains("as=PartialObjectMetadata")),
            "metadata only: {accepts:?}"
        );
    }

    fn one() -> SampleWrite {
        SampleWrite {
            value: Quantity::parse("1").unwrap(),
            labels: SeriesLabels::empty(),
            ttl: None,
            kind: Default::default(),
        }
    }

    fn service<'a>(name: &'a str, metric: &'a str) -> CustomSeriesId<'a> {
        CustomSeriesId { resource: "services", namespace: "default", name, metric }
    }

    const SERVICES: &str = "/api/v1/services";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wildcard_read_of_a_type_without_stored_metrics_starts_no_watch() {
        let server = FakeApiServer::start().await;
        server.add_collection(PODS);
        server.forbid("/api/v1/secrets");
        server.add_collection(SERVICES);
        let store = Arc::new(MemoryStore::new(Default::default()));
        store.put_custom(service("web", "m"), one()).await.unwrap();
        let mapper = Arc::new(BuiltinMapper::default());
        let (index, _guard) = WatchLabelIndex::start(server.client(), store, mapper.clone(), options(60_000, 60_000));
        let secrets = mapper.resolve("secrets").await.unwrap();
        for _ in 0..3 {
            let answer = index.matching_objects(&secrets, "default", &Selector::everything()).await;
            assert_eq!(answer, Ok(Some(vec![])), "no stored metrics: no object can match");
        }
        assert!(index.existing_watch("secrets").is_none());
        assert_eq!(server.count(|r| r.path == "/api/v1/secrets"), 0, "kube-apiserver was not asked");
        // A type with stored metrics is watched as before.
        let services = mapper.resolve("services").await.unwrap();
        assert_eq!(index.matching_objects(&services, "default", &Selector::everything()).await, Ok(Some(vec![])));
        assert!(index.existing_watch("services").is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_sweep_stops_the_watch_of_a_type_whose_metrics_are_gone() {
        let server = FakeApiServer::start().await;
        server.add_collection(PODS);
        server.add_object(SERVICES, "default", "web", &[("app", "web")]);
        let store = Arc::new(MemoryStore::new(Default::default()));
        store.put_custom(service("web", "m"), one()).await.unwrap();
        store.put_custom(service("web", "n"), one()).await.unwrap();
        let mapper = Arc::new(BuiltinMapper::default());
        let (index, _guard) =
            WatchLabelIndex::start(server.client(), store.clone(), mapper.clone(), options(60_000, 50));
        let services = mapper.resolve("services").await.unwrap();
        let web = Ok(Some(vec!["web".to_string()]));
        assert_eq!(index.matching_objects(&services, "default", &Selector::everything()).await, web);
        eventually("the services watch is open", async || server.is_watched(SERVICES)).await;

        // One metric left: the watch stays through several sweeps.
        store.delete_custom(service("web", "m")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(index.existing_watch("services").is_some() && server.is_watched(SERVICES));

        store.delete_custom(service("web", "n")).await.unwrap();
        eventually("the services watch is stopped", async || {
            index.existing_watch("services").is_none() && !server.is_watched(SERVICES)
        })
        .await;
        assert!(index.existing_watch("pods").is_some(), "the pods watch always runs");

        // A new value brings the watch back on the next read.
        store.put_custom(service("web", "m"), one()).await.unwrap();
        assert_eq!(index.matching_objects(&services, "default", &Selector::everything()).await, web);
        assert!(index.existing_watch("services").is_some());
    }

    /// One thread, so that the thread-local subscriber sees the watch task's lines.
    #[tokio::test(flavor = "current_thread")]
    async fn a_watch_refused_again_and_again_is_warned_about_once() {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(crate::logging::filter(0))
            .with_writer(captured.clone())
            .with_ansi(false)
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);
        let server = FakeApiServer::start().await;
        server.add_collection(PODS);
        server.forbid(SERVICES);
        let store = Arc::new(MemoryStore::new(Default::default()));
        store.put_custom(service("web", "m"), one()).await.unwrap();
        let mapper = Arc::new(BuiltinMapper::default());
        let (index, _guard) = WatchLabelIndex::start(server.client(), store, mapper.clone(), options(60_000, 60_000));
        let services = mapper.resolve("services").await.unwrap();
        assert!(index.matching_objects(&services, "default", &Selector::everything()).await.is_err());
        eventually("the watch has retried twice", async || server.count(|r| r.path == SERVICES) >= 3).await;
        assert!(index.stats().watch_restarts >= 2, "{:?}", index.stats());
        let lines = captured.text();
        let warnings = lines.lines().filter(|l| l.contains("metadata watch failed")).count();
        assert_eq!(warnings, 1, "{lines}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_resource_the_adapter_may_not_list_is_a_clear_503() {
        let server = FakeApiServer::start().await;
        server.add_collection(PODS);
        server.forbid("/api/v1/services");
        let store = Arc::new(MemoryStore::new(Default::default()));
        store.put_custom(service("web", "m"), one()).await.unwrap();
        let mapper = Arc::new(BuiltinMapper::default());
        let (index, _guard) = WatchLabelIndex::start(server.client(), store, mapper.clone(), options(60_000, 60_000));
        let services = mapper.resolve("services").await.unwrap();
        let error = index.matching_objects(&services, "default", &Selector::everything()).await.unwrap_err();
        let LabelIndexError::WatchFailed { resource, cause } = &error else { panic!("unexpected {error:?}") };
        assert_eq!(resource, "services");
        assert!(cause.contains("forbidden"), "{cause}");
        assert!(error.to_string().contains("listing services from kube-apiserver failed"), "{error}");
        let response = RequestError::from(error).into_response(false);
        assert_eq!(response.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_waits_for_the_initial_list_only_up_to_the_sync_timeout() {
        let server = FakeApiServer::start().await;
        server.add_collection(PODS);
        server.stall("/apis/apps/v1/deployments");
        let store = Arc::new(MemoryStore::new(Default::default()));
        let id = CustomSeriesId { resource: "deployments.apps", namespace: "default", name: "web", metric: "m" };
        store.put_custom(id, one()).await.unwrap();
        let mapper = Arc::new(BuiltinMapper::default());
        let options = LabelIndexOptions { sync_timeout: Duration::from_millis(200), ..options(60_000, 60_000) };
        let (index, _guard) = WatchLabelIndex::start(server.client(), store, mapper.clone(), options);
        let deployments = mapper.resolve("deployments").await.unwrap();
        let started = Instant::now();
        let answer = index.matching_objects(&deployments, "default", &Selector::everything()).await;
        assert_eq!(answer, Err(LabelIndexError::SyncTimeout { resource: "deployments.apps".into(), timeout_ms: 200 }));
        assert!(started.elapsed() >= Duration::from_millis(200));
        let response = RequestError::from(answer.unwrap_err()).into_response(false);
        assert_eq!(response.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        // The pods watch is not held up by another resource's.
        assert_eq!(index.matching_objects(&pods_info(), "default", &Selector::everything()).await, Ok(Some(vec![])));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_sweep_removes_values_of_deleted_objects_after_the_grace_period_only() {
        const NAMESPACES: &str = "/api/v1/namespaces";
        let server = FakeApiServer::start().await;
        server.add_object(PODS, "default", "web-1", &[]);
        server.add_object(NAMESPACES, "", "default", &[]);
        let store = Arc::new(MemoryStore::new(Default::default()));
        let one = || SampleWrite {
            value: Quantity::parse("1").unwrap(),
            labels: SeriesLabels::empty(),
            ttl: None,
            kind: Default::default(),
        };
        let pod = |name| CustomSeriesId { resource: "pods", namespace: "default", name, metric: "m" };
        let namespace = |name| CustomSeriesId { resource: "namespaces", namespace: "", name, metric: "m" };
        for id in [pod("web-1"), pod("ghost"), CustomSeriesId { metric: "n", ..pod("ghost") }] {
            store.put_custom(id, one()).await.unwrap();
        }
        for id in [namespace("default"), namespace("gone")] {
            store.put_custom(id, one()).await.unwrap();
        }
        let grace = Duration::from_millis(800);
        let started = Instant::now();
        let (index, _guard) = WatchLabelIndex::start(
            server.client(),
            store.clone(),
            Arc::new(BuiltinMapper::default()),
            options(800, 50),
        );
        eventually("the namespaces watch started by the sweep is open", async || server.is_watched(NAMESPACES)).await;
        assert!(store.get_custom(pod("ghost")).await.unwrap().is_some());
        eventually("ghost's values are removed", async || {
            store.list_object_metrics("pods", "default", "ghost").await.unwrap().is_empty()
        })
        .await;
        assert!(started.elapsed() >= grace, "removed after {:?}, before the grace period", started.elapsed());
        eventually("the gone namespace's value is removed", async || {
            store.get_custom(namespace("gone")).await.unwrap().is_none()
        })
        .await;
        assert!(store.get_custom(pod("web-1")).await.unwrap().is_some(), "existing objects keep their values");
        assert!(store.get_custom(namespace("default")).await.unwrap().is_some());
        assert_eq!(store.series_count(), 2);
        // ghost's two series and the gone namespace's one, counted once the removals have returned.
        eventually("the sweep has counted what it removed", async || index.stats().swept_series == 3).await;
    }

    /// A pass count `n` passes after now; the sweep interval times `n` exceeds the grace period in the tests below.
    async fn wait_for_sweeps(index: &WatchLabelIndex, n: u64) {
        let from = index.stats().sweeps;
        eventually("the sweep has run again", async || index.stats().sweeps >= from + n).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_watch_that_failed_since_its_last_list_is_not_swept_until_it_lists_again() {
        let server = FakeApiServer::start().await;
        server.add_object(PODS, "default", "web-1", &[]);
        let store = Arc::new(MemoryStore::new(Default::default()));
        let one = || SampleWrite {
            value: Quantity::parse("1").unwrap(),
            labels: SeriesLabels::empty(),
            ttl: None,
            kind: Default::default(),
        };
        let pod = |name| CustomSeriesId { resource: "pods", namespace: "default", name, metric: "m" };
        store.put_custom(pod("web-1"), one()).await.unwrap();
        let (index, _guard) = WatchLabelIndex::start(
            server.client(),
            store.clone(),
            Arc::new(BuiltinMapper::default()),
            options(200, 20),
        );
        eventually("the pods watch is open", async || server.is_watched(PODS)).await;
        wait_for_sweeps(&index, 2).await;

        // The watch breaks and cannot come back (RBAC): the view stays as it was, without what is created now.
        server.forbid(PODS);
        server.break_watches(PODS);
        eventually("the watch has failed", async || index.stats().watch_restarts >= 1).await;
        server.add_object(PODS, "default", "late", &[]);
        store.put_custom(pod("late"), one()).await.unwrap();
        store.put_custom(pod("ghost"), one()).await.unwrap();
        // 25 passes of 20 ms: more than the 200 ms grace period.
        wait_for_sweeps(&index, 25).await;
        assert!(
            store.get_custom(pod("late")).await.unwrap().is_some(),
            "a stale view must not remove a new object's values"
        );
        assert!(store.get_custom(pod("ghost")).await.unwrap().is_some(), "nothing is swept from a stale view");

        // The watch comes back and lists again: the sweep resumes with a view that has `late`.
        server.unforbid(PODS);
        // The watcher's back-off after the refusals can exceed `eventually`'s 5 s; the bound only stops a hang.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !server.is_watched(PODS) {
            assert!(Instant::now() < deadline, "the watch never opened again");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server.expire_watches(PODS);
        eventually("ghost's value is removed", async || store.get_custom(pod("ghost")).await.unwrap().is_none()).await;
        wait_for_sweeps(&index, 25).await;
        assert!(store.get_custom(pod("late")).await.unwrap().is_some());
        assert!(store.get_custom(pod("web-1")).await.unwrap().is_some());
    }

    /// Several replicas on one Redis store each run the sweep (docs/architecture.md §10): they decide alike from
    /// their own watches, and a removal is one atomic script in Redis, so each gone object's values are removed once
    /// and what exists is kept.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_replicas_sweeping_one_redis_store_remove_each_series_once() {
        use crate::store::redis::{RedisStore, TimeSource};
        let server = FakeApiServer::start().await;
        server.add_object(PODS, "default", "web-1", &[]);
        let redis = crate::store::redis_testing::RedisServer::start();
        let replica = async || {
            let since = std::time::Instant::now();
            let store =
                RedisStore::connect(&redis.options(Duration::from_secs(30)), Default::default(), TimeSource::Redis)
                    .unwrap();
            store.wait_synced_since(since).await;
            Arc::new(store)
        };
        let (a, b) = (replica().await, replica().await);
        let one = || SampleWrite {
            value: Quantity::parse("1").unwrap(),
            labels: SeriesLabels::empty(),
            ttl: None,
            kind: Default::default(),
        };
        let pod = |name| CustomSeriesId { resource: "pods", namespace: "default", name, metric: "m" };
        a.put_custom(pod("web-1"), one()).await.unwrap();
        a.put_custom(pod("ghost"), one()).await.unwrap();
        a.put_custom(CustomSeriesId { metric: "n", ..pod("ghost") }, one()).await.unwrap();
        eventually("B's copy has the three series", async || b.series_count() == 3).await;
        let mapper: Arc<dyn ResourceMapper> = Arc::new(BuiltinMapper::default());
        let (index_a, _guard_a) = WatchLabelIndex::start(server.client(), a.clone(), mapper.clone(), options(200, 20));
        let (index_b, _guard_b) = WatchLabelIndex::start(server.client(), b.clone(), mapper, options(200, 20));
        eventually("ghost's values are gone from both copies", async || a.series_count() == 1 && b.series_count() == 1)
            .await;
        wait_for_sweeps(&index_a, 25).await;
        wait_for_sweeps(&index_b, 25).await;
        let swept = index_a.stats().swept_series + index_b.stats().swept_series;
        assert_eq!(swept, 2, "ghost's two series, removed once between both replicas");
        assert!(a.get_custom(pod("web-1")).await.unwrap().is_some());
        assert!(b.get_custom(pod("web-1")).await.unwrap().is_some());
    }
}
