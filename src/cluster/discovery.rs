//! Resource mapping from the cluster's discovery.
//!
//! [`DiscoveryMapper`] reads every served resource of every API group at its group's preferred version (custom
//! resources included, subresources such as `pods/status` left out) into a [`ResourceTable`], which resolves names
//! with the rules of [`super::mapper`]. The table is replaced whole (an [`ArcSwap`]), so readers never wait for a
//! refresh.
//!
//! Discovery asks `/api` and `/apis` for the aggregated form (`apidiscovery.k8s.io/v2`, two requests) and accepts
//! the legacy form in the same request; with a legacy answer it then reads one `APIResourceList` per group. Each
//! group is parsed on its own and leniently (a `null` list is empty, fields the mapper does not read are ignored):
//! a group that cannot be read or parsed is left out rather than failing the whole discovery, and the metrics
//! groups are not read at all. The groups left out are logged when they change and listed by `/readyz?verbose`.
//!
//! The table is refreshed every `refresh`. A name that is not found triggers one more refresh, at most once per
//! `miss_min_interval` (concurrent misses share it), so that a CRD created a moment ago resolves without letting a
//! stream of bad names hammer kube-apiserver.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{APIGroupList, APIVersions};
use serde::Deserialize;
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;

use super::mapper::ResourceTable;
use super::{MapperError, ResourceInfo, ResourceMapper};
use crate::server::health::Check;

/// Accept header for discovery: the aggregated form, else the legacy one (as kubectl asks).
const DISCOVERY_ACCEPT: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";

/// Groups whose resources no metric is ever written on: the metrics APIs, ours included. kube-apiserver publishes
/// them with synthesized entries (a resource per stored `resource.group`, with `"verbs": null`) and they are often
/// unavailable, so they are not read at all.
const NOT_NEEDED_GROUPS: [&str; 3] = ["custom.metrics.k8s.io", "external.metrics.k8s.io", "metrics.k8s.io"];

/// A group left out of the resource table, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedGroup {
    /// The group's name.
    pub group: String,
    /// Why it was left out.
    pub reason: SkipReason,
}

/// Why a group was left out of the resource table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// One of `NOT_NEEDED_GROUPS`.
    NotNeeded,
    /// Its discovery could not be read or parsed; the message says why.
    Unreadable(String),
}

impl std::fmt::Display for SkippedGroup {
    /// The group and the reason's class only, as `/readyz?verbose` shows it; the log has the details.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let class = match self.reason {
            SkipReason::NotNeeded => "not needed",
            SkipReason::Unreadable(_) => "unreadable",
        };
        write!(f, "{} ({class})", self.group)
    }
}

/// What one discovery found.
#[derive(Debug, Default)]
struct Discovered {
    resources: Vec<ResourceInfo>,
    /// Sorted by group.
    skipped: Vec<SkippedGroup>,
}

/// A [`ResourceMapper`] over the cluster's discovery; see the module documentation.
pub struct DiscoveryMapper {
    client: kube::Client,
    table: ArcSwap<ResourceTable>,
    /// The groups the last successful discovery left out.
    skipped: ArcSwap<Vec<SkippedGroup>>,
    /// Counts successful refreshes, so that a miss can tell whether the table changed while it waited.
    generation: AtomicU64,
    miss_min_interval: Duration,
    /// When the last miss-triggered refresh started. The async lock makes concurrent misses share one refresh.
    last_miss_refresh: tokio::sync::Mutex<Option<Instant>>,
}

/// Stops the periodic refresh when dropped.
pub type RefreshGuard = AbortOnDropHandle<()>;

impl DiscoveryMapper {
    /// Runs a first discovery and starts the periodic refresh every `refresh`. A miss refreshes at most once per
    /// `miss_min_interval`.
    ///
    /// # Errors
    ///
    /// The first discovery's error: without it no resource name could be resolved.
    pub async fn start(
        client: kube::Client,
        refresh: Duration,
        miss_min_interval: Duration,
    ) -> Result<(Arc<Self>, RefreshGuard), kube::Error> {
        let discovered = discover(&client).await?;
        log_skipped(&[], &discovered.skipped);
        let mapper = Arc::new(DiscoveryMapper {
            client,
            table: ArcSwap::from_pointee(ResourceTable::new(discovered.resources)),
            skipped: ArcSwap::from_pointee(discovered.skipped),
            generation: AtomicU64::new(0),
            miss_min_interval,
            last_miss_refresh: tokio::sync::Mutex::new(None),
        });
        let weak: Weak<Self> = Arc::downgrade(&mapper);
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval_at(Instant::now() + refresh, refresh);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(mapper) = weak.upgrade() else { return };
                if let Err(error) = mapper.refresh().await {
                    tracing::warn!(%error, "periodic API discovery failed; keeping the previous resource table");
                }
            }
        });
        Ok((mapper, AbortOnDropHandle::new(task)))
    }

    /// Runs discovery and swaps the new table in.
    async fn refresh(&self) -> Result<(), kube::Error> {
        let discovered = discover(&self.client).await?;
        self.table.store(Arc::new(ResourceTable::new(discovered.resources)));
        let previous = self.skipped.swap(Arc::new(discovered.skipped));
        log_skipped(&previous, &self.skipped.load());
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// The groups the last discovery left out, as `group (reason)`, sorted.
    pub fn skipped_groups(&self) -> Vec<String> {
        self.skipped.load().iter().map(ToString::to_string).collect()
    }

    /// An informational `/readyz` check, `discovery`, that never fails (the previous table is kept when discovery
    /// fails) and whose verbose line names the groups left out.
    pub fn readiness_check(self: &Arc<Self>) -> Check {
        let mapper = Arc::downgrade(self);
        Check::readiness("discovery", || Ok(())).with_note(move || {
            let skipped = mapper.upgrade()?.skipped_groups();
            (!skipped.is_empty()).then(|| format!("skipped groups: {}", skipped.join(", ")))
        })
    }
}

/// Logs the skipped groups when the set of their names changed (not at every refresh): a warning when some are
/// unreadable, else at info.
fn log_skipped(previous: &[SkippedGroup], current: &[SkippedGroup]) {
    let names = |groups: &[SkippedGroup]| groups.iter().map(|g| g.to_string()).collect::<Vec<_>>();
    if names(previous) == names(current) {
        return;
    }
    let unreadable: Vec<String> = current
        .iter()
        .filter_map(|g| match &g.reason {
            SkipReason::Unreadable(why) => Some(format!("{}: {why}", g.group)),
            SkipReason::NotNeeded => None,
        })
        .collect();
    let skipped = names(current).join(", ");
    if unreadable.is_empty() {
        tracing::info!(%skipped, "API discovery: groups left out of the resource table");
    } else {
        let unreadable = unreadable.join("; ");
        tracing::warn!(%skipped, %unreadable, "API discovery: groups left out of the resource table");
    }
}

#[async_trait]
impl ResourceMapper for DiscoveryMapper {
    async fn resolve(&self, name: &str) -> Result<Arc<ResourceInfo>, MapperError> {
        let seen = self.generation.load(Ordering::Acquire);
        if let Ok(info) = self.table.load().resolve(name) {
            return Ok(info);
        }
        let mut last = self.last_miss_refresh.lock().await;
        // Another miss (or the periodic refresh) refreshed while this one waited: its table is as fresh as ours
        // would be.
        if self.generation.load(Ordering::Acquire) != seen {
            return self.table.load().resolve(name);
        }
        if last.is_some_and(|at| at.elapsed() < self.miss_min_interval) {
            return self.table.load().resolve(name);
        }
        *last = Some(Instant::now());
        if let Err(error) = self.refresh().await {
            tracing::warn!(%error, resource = name, "API discovery after an unknown resource name failed");
        }
        self.table.load().resolve(name)
    }
}

/// Reads every served resource, core group first, then the groups in the order `/apis` lists them. Only a failure
/// to read `/api` or `/apis` as a whole fails; a group that cannot be read is skipped.
async fn discover(client: &kube::Client) -> Result<Discovered, kube::Error> {
    let mut discovered = Discovered::default();
    let core = get_json(client, "/api").await?;
    if is_aggregated(&core) {
        from_aggregated(&core, &mut discovered);
    } else {
        let versions: APIVersions = serde_json::from_value(core).map_err(kube::Error::SerdeError)?;
        // The core group has a single version in practice; the first is the preferred one.
        if let Some(version) = versions.versions.first() {
            let list = get_json(client, &format!("/api/{version}")).await?;
            discovered.resources.extend(from_resource_list("", version, &list));
        }
    }
    let groups = get_json(client, "/apis").await?;
    if is_aggregated(&groups) {
        from_aggregated(&groups, &mut discovered);
    } else {
        let groups: APIGroupList = serde_json::from_value(groups).map_err(kube::Error::SerdeError)?;
        for group in groups.groups {
            if NOT_NEEDED_GROUPS.contains(&group.name.as_str()) {
                discovered.skipped.push(SkippedGroup { group: group.name, reason: SkipReason::NotNeeded });
                continue;
            }
            let Some(preferred) = group.preferred_version.as_ref().or(group.versions.first()) else {
                continue;
            };
            match get_json(client, &format!("/apis/{}", preferred.group_version)).await {
                Ok(list) => discovered.resources.extend(from_resource_list(&group.name, &preferred.version, &list)),
                Err(error) => discovered
                    .skipped
                    .push(SkippedGroup { group: group.name, reason: SkipReason::Unreadable(error.to_string()) }),
            }
        }
    }
    discovered.skipped.sort_by(|a, b| a.group.cmp(&b.group));
    Ok(discovered)
}

async fn get_json(client: &kube::Client, path: &str) -> Result<serde_json::Value, kube::Error> {
    let request = http::Request::get(path)
        .header(http::header::ACCEPT, DISCOVERY_ACCEPT)
        .body(Vec::new())
        .map_err(kube::Error::HttpError)?;
    let text = client.request_text(request).await?;
    serde_json::from_str(&text).map_err(kube::Error::SerdeError)
}

/// Whether a discovery document is the aggregated form. The kind is checked because a legacy document would
/// also deserialize, as an empty list, into the aggregated type.
fn is_aggregated(document: &serde_json::Value) -> bool {
    document.get("kind").and_then(|k| k.as_str()) == Some("APIGroupDiscoveryList")
}

// Lenient views of the discovery documents: only the fields the mapper reads, every list optional (`null` and
// absent are empty), so that a field the mapper does not need (`verbs`) or a newer server's additions cannot fail
// a group. Each group, and each resource of a group, is parsed on its own.

#[derive(Deserialize)]
struct AggregatedGroup {
    #[serde(default)]
    versions: Option<Vec<AggregatedVersion>>,
}

#[derive(Deserialize)]
struct AggregatedVersion {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    resources: Option<Vec<serde_json::Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AggregatedResource {
    resource: String,
    #[serde(default)]
    response_kind: Option<ResponseKind>,
    #[serde(default)]
    singular_resource: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

#[derive(Deserialize)]
struct ResponseKind {
    #[serde(default)]
    kind: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LegacyResource {
    name: String,
    #[serde(default)]
    singular_name: Option<String>,
    kind: String,
    #[serde(default)]
    namespaced: bool,
}

/// The resources of an aggregated discovery document at each group's preferred version (listed first); groups
/// that are not needed or cannot be parsed go to `discovered.skipped`.
fn from_aggregated(document: &serde_json::Value, discovered: &mut Discovered) {
    let Some(items) = document.get("items").and_then(|items| items.as_array()) else {
        return;
    };
    for item in items {
        let name = item.pointer("/metadata/name").and_then(|n| n.as_str()).unwrap_or_default();
        if NOT_NEEDED_GROUPS.contains(&name) {
            discovered.skipped.push(SkippedGroup { group: name.to_string(), reason: SkipReason::NotNeeded });
            continue;
        }
        match AggregatedGroup::deserialize(item) {
            Ok(group) => discovered.resources.extend(group_from_aggregated(name, group)),
            Err(error) => discovered
                .skipped
                .push(SkippedGroup { group: name.to_string(), reason: SkipReason::Unreadable(error.to_string()) }),
        }
    }
}

fn group_from_aggregated(name: &str, group: AggregatedGroup) -> Vec<ResourceInfo> {
    let Some(preferred) = group.versions.unwrap_or_default().into_iter().next() else {
        return Vec::new();
    };
    let version = preferred.version.unwrap_or_default();
    preferred
        .resources
        .unwrap_or_default()
        .iter()
        .filter_map(|r| {
            // A resource that cannot be read is left out alone; its group's others still count.
            let r = AggregatedResource::deserialize(r).ok()?;
            let kind = r.response_kind.and_then(|k| k.kind).filter(|k| !k.is_empty())?;
            let singular = r.singular_resource.filter(|s| !s.is_empty()).unwrap_or_else(|| kind.to_lowercase());
            Some(ResourceInfo {
                group: name.to_string(),
                version: version.clone(),
                plural: r.resource,
                singular,
                kind,
                namespaced: r.scope.as_deref() == Some("Namespaced"),
            })
        })
        .collect()
}

/// The resources of a legacy `APIResourceList`, subresources (`pods/status`) left out.
fn from_resource_list(group: &str, version: &str, list: &serde_json::Value) -> Vec<ResourceInfo> {
    let Some(resources) = list.get("resources").and_then(|r| r.as_array()) else {
        return Vec::new();
    };
    resources
        .iter()
        .filter_map(|r| LegacyResource::deserialize(r).ok())
        .filter(|r| !r.name.contains('/'))
        .map(|r| ResourceInfo {
            group: group.to_string(),
            version: version.to_string(),
            // Older servers leave singularName empty; kubectl falls back to the lower-cased kind too.
            singular: r.singular_name.filter(|s| !s.is_empty()).unwrap_or_else(|| r.kind.to_lowercase()),
            plural: r.name,
            kind: r.kind,
            namespaced: r.namespaced,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::fake_apiserver::FakeApiServer;
    use http_body_util::BodyExt;

    #[test]
    fn aggregated_documents_give_the_preferred_version_without_subresources() {
        let document = serde_json::json!({
            "kind": "APIGroupDiscoveryList",
            "apiVersion": "apidiscovery.k8s.io/v2",
            "items": [{
                "metadata": {"name": "example.com"},
                "versions": [
                    {"version": "v2", "resources": [
                        {"resource": "widgets", "singularResource": "widget", "scope": "Namespaced",
                         "responseKind": {"group": "example.com", "version": "v2", "kind": "Widget"},
                         "verbs": ["get", "list", "watch"],
                         "subresources": [{"subresource": "status", "verbs": ["get"]}]},
                        {"resource": "gadgets", "scope": "Cluster",
                         "responseKind": {"group": "example.com", "version": "v2", "kind": "Gadget"}}
                    ]},
                    {"version": "v1", "resources": [
                        {"resource": "oldthings", "singularResource": "oldthing", "scope": "Namespaced",
                         "responseKind": {"kind": "OldThing"}}
                    ]}
                ]
            }]
        });
        assert!(is_aggregated(&document));
        let mut discovered = Discovered::default();
        from_aggregated(&document, &mut discovered);
        let names: Vec<_> = discovered
            .resources
            .iter()
            .map(|r| (r.group_resource(), r.version.as_str(), r.singular.as_str(), r.kind.as_str(), r.namespaced))
            .collect();
        assert_eq!(
            names,
            [
                ("widgets.example.com".to_string(), "v2", "widget", "Widget", true),
                ("gadgets.example.com".to_string(), "v2", "gadget", "Gadget", false),
            ]
        );
    }

    fn resource(name: &str, singular: &str, kind: &str, namespaced: bool) -> serde_json::Value {
        serde_json::json!({"name": name, "singularName": singular, "kind": kind, "namespaced": namespaced,
            "verbs": ["get", "list", "watch"]})
    }

    fn group(name: &str, version: &str) -> serde_json::Value {
        let gv = serde_json::json!({"groupVersion": format!("{name}/{version}"), "version": version});
        serde_json::json!({"name": name, "versions": [gv], "preferredVersion": gv})
    }

    fn resource_list(group_version: &str, resources: Vec<serde_json::Value>) -> serde_json::Value {
        serde_json::json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
            "resources": resources})
    }

    /// A fake cluster with the core group, apps and one CRD group, in the legacy discovery form.
    async fn cluster() -> FakeApiServer {
        let server = FakeApiServer::start().await;
        server.set_document(
            "/api",
            serde_json::json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
        );
        server.set_document(
            "/api/v1",
            resource_list(
                "v1",
                vec![
                    resource("pods", "pod", "Pod", true),
                    resource("pods/status", "", "Pod", true),
                    resource("namespaces", "namespace", "Namespace", false),
                    resource("events", "event", "Event", true),
                ],
            ),
        );
        server.set_document(
            "/apis/apps/v1",
            resource_list("apps/v1", vec![resource("deployments", "deployment", "Deployment", true)]),
        );
        server.set_document(
            "/apis/stable.example.com/v1",
            resource_list("stable.example.com/v1", vec![resource("crontabs", "crontab", "CronTab", true)]),
        );
        server.set_document(
            "/apis/events.k8s.io/v1",
            resource_list("events.k8s.io/v1", vec![resource("events", "event", "Event", true)]),
        );
        set_groups(&server, &[("apps", "v1"), ("events.k8s.io", "v1"), ("stable.example.com", "v1")]);
        server
    }

    fn set_groups(server: &FakeApiServer, groups: &[(&str, &str)]) {
        let groups: Vec<_> = groups.iter().map(|(name, version)| group(name, version)).collect();
        server.set_document("/apis", serde_json::json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}));
    }

    fn apis_requests(server: &FakeApiServer) -> usize {
        server.count(|r| r.path == "/apis" && r.query.is_empty())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn custom_and_group_qualified_names_resolve_from_the_clusters_discovery() {
        let server = cluster().await;
        let hour = Duration::from_secs(3600);
        let (mapper, _guard) = DiscoveryMapper::start(server.client(), hour, hour).await.unwrap();
        for name in ["crontabs", "crontab", "CronTab", "crontabs.stable.example.com", "crontabs.stable"] {
            let info = mapper.resolve(name).await.unwrap();
            assert_eq!((info.group_resource(), info.kind.as_str()), ("crontabs.stable.example.com".into(), "CronTab"));
        }
        assert_eq!(mapper.resolve("deployments.apps").await.unwrap().api_version(), "apps/v1");
        assert_eq!(mapper.resolve("events").await.unwrap().group_resource(), "events", "the core group comes first");
        assert_eq!(mapper.resolve("events.events.k8s.io").await.unwrap().group_resource(), "events.events.k8s.io");
        assert!(!mapper.resolve("namespace").await.unwrap().namespaced);
        assert!(mapper.table.load().resolve("pods/status").is_err(), "subresources are not resources");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_miss_refreshes_at_most_once_per_interval_and_then_finds_new_resources() {
        let server = cluster().await;
        let interval = Duration::from_millis(500);
        let (mapper, _guard) =
            DiscoveryMapper::start(server.client(), Duration::from_secs(3600), interval).await.unwrap();
        assert_eq!(apis_requests(&server), 1);
        let started = Instant::now();

        // A miss refreshes once; a second miss within the interval does not.
        assert_eq!(mapper.resolve("gadgets").await, Err(MapperError::UnknownResource("gadgets".into())));
        assert_eq!(apis_requests(&server), 2);
        server.set_document(
            "/apis/toys.example.com/v1",
            resource_list("toys.example.com/v1", vec![resource("gadgets", "gadget", "Gadget", false)]),
        );
        set_groups(&server, &[("apps", "v1"), ("stable.example.com", "v1"), ("toys.example.com", "v1")]);
        assert!(mapper.resolve("gadget").await.is_err());
        assert!(started.elapsed() < interval, "the test machine was too slow for this check");
        assert_eq!(apis_requests(&server), 2, "rate-limited");

        tokio::time::sleep(interval).await;
        let gadgets = mapper.resolve("gadgets.toys").await.unwrap();
        assert_eq!((gadgets.group_resource(), gadgets.namespaced), ("gadgets.toys.example.com".into(), false));
        assert_eq!(apis_requests(&server), 3);

        // Concurrent misses share one refresh.
        tokio::time::sleep(interval).await;
        let misses: Vec<_> = (0..5)
            .map(|_| {
                let mapper = Arc::clone(&mapper);
                tokio::spawn(async move { mapper.resolve("nothings").await })
            })
            .collect();
        for miss in misses {
            assert!(miss.await.unwrap().is_err());
        }
        assert_eq!(apis_requests(&server), 4);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_table_is_refreshed_periodically() {
        let server = cluster().await;
        let period = Duration::from_millis(100);
        let (mapper, guard) = DiscoveryMapper::start(server.client(), period, Duration::from_secs(3600)).await.unwrap();
        server.set_document(
            "/apis/toys.example.com/v1",
            resource_list("toys.example.com/v1", vec![resource("gadgets", "gadget", "Gadget", false)]),
        );
        set_groups(&server, &[("toys.example.com", "v1")]);
        tokio::time::sleep(period * 4).await;
        assert!(mapper.table.load().resolve("gadgets").is_ok(), "found without a miss");
        assert!(mapper.table.load().resolve("crontabs").is_err(), "removed groups go");
        drop(guard);
        tokio::time::sleep(period).await;
        let after_drop = apis_requests(&server);
        tokio::time::sleep(period * 3).await;
        assert_eq!(apis_requests(&server), after_drop, "no refresh after the guard is dropped");
    }

    /// `/apis` as kube-apiserver serves it once a value is stored on `deployments.apps/queue_depth`: the metrics
    /// group lists a synthesized parent resource whose `verbs` is `null`.
    fn aggregated_apis_with_a_null_verbs_group() -> serde_json::Value {
        serde_json::json!({
            "kind": "APIGroupDiscoveryList",
            "apiVersion": "apidiscovery.k8s.io/v2",
            "metadata": {},
            "items": [
                {"metadata": {"name": "apps", "creationTimestamp": null}, "versions": [{"version": "v1", "resources": [
                    {"resource": "deployments", "responseKind": {"group": "", "version": "", "kind": "Deployment"},
                     "scope": "Namespaced", "singularResource": "deployment",
                     "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                     "subresources": [{"subresource": "status", "verbs": ["get", "patch", "update"]}]}
                ], "freshness": "Current"}]},
                {"metadata": {"name": "custom.metrics.k8s.io", "creationTimestamp": null}, "versions": [
                    {"version": "v1beta2", "resources": [
                        {"resource": "deployments.apps", "responseKind": {"group": "", "version": "", "kind": ""},
                         "scope": "Namespaced", "singularResource": "", "verbs": null,
                         "subresources": [{"subresource": "queue_depth",
                            "responseKind": {"group": "", "version": "", "kind": "MetricValueList"},
                            "verbs": ["get"]}]}
                    ], "freshness": "Current"}
                ]},
                {"metadata": {"name": "stable.example.com", "creationTimestamp": null}, "versions": [
                    {"version": "v1", "resources": [
                        {"resource": "crontabs", "responseKind": {"group": "", "version": "", "kind": "CronTab"},
                         "scope": "Namespaced", "singularResource": "crontab", "verbs": null, "subresources": null}
                    ], "freshness": "Current"}
                ]},
                {"metadata": {"name": "broken.example.com"}, "versions": "not a list"}
            ]
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_group_with_null_verbs_or_a_malformed_group_does_not_fail_discovery() {
        let server = FakeApiServer::start().await;
        server.set_document(
            "/api",
            serde_json::json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "items": [
                {"metadata": {"name": ""}, "versions": [{"version": "v1", "resources": [
                    {"resource": "pods", "responseKind": {"kind": "Pod"}, "scope": "Namespaced",
                     "singularResource": "pod", "verbs": ["get", "list", "watch"]}
                ]}]}
            ]}),
        );
        server.set_document("/apis", aggregated_apis_with_a_null_verbs_group());
        let hour = Duration::from_secs(3600);
        let (mapper, _guard) = DiscoveryMapper::start(server.client(), hour, hour).await.unwrap();
        assert_eq!(mapper.resolve("pods").await.unwrap().kind, "Pod");
        assert_eq!(mapper.resolve("deployments.apps").await.unwrap().kind, "Deployment");
        assert_eq!(mapper.resolve("crontabs").await.unwrap().kind, "CronTab", "a null verbs list is empty");
        assert!(mapper.table.load().resolve("deployments.apps.custom.metrics.k8s.io").is_err());

        // A periodic refresh of the same document succeeds too, and sees a CRD added since.
        let mut apis = aggregated_apis_with_a_null_verbs_group();
        apis["items"].as_array_mut().unwrap().push(serde_json::json!(
            {"metadata": {"name": "toys.example.com"}, "versions": [{"version": "v1", "resources": [
                {"resource": "gadgets", "responseKind": {"kind": "Gadget"}, "scope": "Cluster", "verbs": null}
            ]}]}
        ));
        server.set_document("/apis", apis);
        mapper.refresh().await.unwrap();
        assert!(!mapper.table.load().resolve("gadgets").unwrap().namespaced);
        assert_eq!(
            mapper.skipped_groups(),
            ["broken.example.com (unreadable)", "custom.metrics.k8s.io (not needed)"],
            "skipped groups are reported"
        );
        let (_trigger, shutdown) = crate::server::shutdown::channel();
        let health = crate::server::health::Health::new(shutdown, vec![mapper.readiness_check()]);
        let body = health.handle("/readyz", Some("verbose")).into_body().collect().await.unwrap().to_bytes();
        let report = String::from_utf8(body.to_vec()).unwrap();
        assert!(
            report.contains(
                "[+]discovery ok: skipped groups: broken.example.com (unreadable), custom.metrics.k8s.io (not needed)\n"
            ),
            "{report}"
        );
    }

    #[test]
    fn legacy_documents_are_not_taken_for_aggregated_ones() {
        let legacy = serde_json::json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []});
        assert!(!is_aggregated(&legacy));
    }
}
