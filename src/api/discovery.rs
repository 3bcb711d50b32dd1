//! Discovery documents: `/apis`, the groups, and the group-versions' resource lists, built from what the store
//! holds (docs/wire-contract.md §1.2, §10 items 2-4).

use std::collections::BTreeSet;

use super::group_versions::{self, CustomVersion, EXTERNAL_V1BETA1, GROUPS, GroupVersion};
use super::rates;
use super::types::{ApiGroup, ApiGroupList, ApiResource, ApiResourceList, GroupVersionForDiscovery};
use crate::store::{MetricStore, StoreError};

/// Listed by a custom group-version while nothing is stored: discovery is never empty, because client-go warns
/// about empty resource lists (kubernetes-sigs/custom-metrics-apiserver#146). The same placeholder as the Go
/// reference adapter.
pub const CUSTOM_PLACEHOLDER: &str = "/custommetrics";
/// Listed by external discovery while nothing is stored.
pub const EXTERNAL_PLACEHOLDER: &str = "externalmetrics";

fn for_discovery(served: &GroupVersion) -> GroupVersionForDiscovery {
    GroupVersionForDiscovery { group_version: served.api_version, version: served.version }
}

/// An `APIGroup`: the group's served versions, preferred first (custom metrics: v1beta2, then v1beta1).
fn api_group(name: &'static str, top_level: bool) -> ApiGroup {
    let versions: Vec<GroupVersionForDiscovery> = group_versions::versions_of(name).map(for_discovery).collect();
    ApiGroup {
        kind: top_level.then_some("APIGroup"),
        api_version: top_level.then_some("v1"),
        name,
        preferred_version: versions.first().cloned(),
        versions,
    }
}

/// `GET /apis`. Also the answer to a request for aggregated discovery: the legacy list as `application/json`
/// makes kube-apiserver's aggregator fall back to the per-version documents (docs/wire-contract.md §10 item 4).
pub fn group_list() -> ApiGroupList {
    ApiGroupList {
        kind: "APIGroupList",
        api_version: "v1",
        groups: GROUPS.iter().map(|group| api_group(group, false)).collect(),
    }
}

/// `GET /apis/<group>`.
pub fn group(name: &'static str) -> ApiGroup {
    api_group(name, true)
}

fn resource(name: String, namespaced: bool, kind: &'static str) -> ApiResource {
    ApiResource { name, singular_name: "", namespaced, kind, verbs: ["get"] }
}

/// `GET /apis/custom.metrics.k8s.io/<version>`: one entry per stored (resource, metric), at most `limit`.
pub async fn custom_resources(
    store: &dyn MetricStore,
    version: CustomVersion,
    limit: usize,
) -> Result<ApiResourceList, StoreError> {
    // Each counter metric's rate is listed beside it (docs/wire-contract.md §4.6); a name both stored and a rate is
    // listed once.
    let mut listed: BTreeSet<(String, String, bool)> = BTreeSet::new();
    for m in store.list_custom_metrics().await? {
        if m.counter {
            listed.insert((m.resource.clone(), rates::rate_name(&m.metric), m.namespaced));
        }
        listed.insert((m.resource, m.metric, m.namespaced));
    }
    let mut resources: Vec<ApiResource> = listed
        .into_iter()
        .take(limit)
        .map(|(resource_name, metric, namespaced)| {
            resource(format!("{resource_name}/{metric}"), namespaced, "MetricValueList")
        })
        .collect();
    if resources.is_empty() {
        resources.push(resource(CUSTOM_PLACEHOLDER.to_string(), false, "MetricValueList"));
    }
    Ok(ApiResourceList {
        kind: "APIResourceList",
        api_version: "v1",
        group_version: version.group_version().api_version,
        resources,
    })
}

/// `GET /apis/external.metrics.k8s.io/v1beta1`: one entry per stored external metric name, at most `limit`.
pub async fn external_resources(store: &dyn MetricStore, limit: usize) -> Result<ApiResourceList, StoreError> {
    let mut listed: BTreeSet<String> = store.list_external_metrics().await?.into_iter().collect();
    listed.extend(store.list_external_counters().await?.iter().map(|metric| rates::rate_name(metric)));
    let mut resources: Vec<ApiResource> =
        listed.into_iter().take(limit).map(|name| resource(name, true, "ExternalMetricValueList")).collect();
    if resources.is_empty() {
        resources.push(resource(EXTERNAL_PLACEHOLDER.to_string(), true, "ExternalMetricValueList"));
    }
    Ok(ApiResourceList {
        kind: "APIResourceList",
        api_version: "v1",
        group_version: EXTERNAL_V1BETA1.api_version,
        resources,
    })
}
