//! Discovery documents: `/apis`, the groups, and the group-versions' resource lists, built from what the store
//! holds (docs/wire-contract.md §1.2, §10 items 2-4).

use super::route::CustomVersion;
use super::types::{ApiGroup, ApiGroupList, ApiResource, ApiResourceList, CUSTOM_GROUP, EXTERNAL_GROUP, GroupVersion};
use crate::store::{MetricStore, StoreError};

/// Listed by a custom group-version while nothing is stored: discovery is never empty, because client-go warns
/// about empty resource lists (kubernetes-sigs/custom-metrics-apiserver#146). The same placeholder as the Go
/// reference adapter.
pub const CUSTOM_PLACEHOLDER: &str = "/custommetrics";
/// Listed by external discovery while nothing is stored.
pub const EXTERNAL_PLACEHOLDER: &str = "externalmetrics";

fn group_version(group: &str, version: &'static str) -> GroupVersion {
    GroupVersion { group_version: format!("{group}/{version}"), version }
}

/// An `APIGroup`; custom metrics advertise v1beta2 (preferred) and v1beta1.
fn api_group(name: &'static str, top_level: bool) -> ApiGroup {
    let versions = if name == CUSTOM_GROUP {
        vec![group_version(name, "v1beta2"), group_version(name, "v1beta1")]
    } else {
        vec![group_version(name, "v1beta1")]
    };
    ApiGroup {
        kind: top_level.then_some("APIGroup"),
        api_version: top_level.then_some("v1"),
        name,
        preferred_version: versions[0].clone(),
        versions,
    }
}

/// `GET /apis`. Also the answer to a request for aggregated discovery: the legacy list as `application/json`
/// makes kube-apiserver's aggregator fall back to the per-version documents (docs/wire-contract.md §10 item 4).
pub fn group_list() -> ApiGroupList {
    ApiGroupList {
        kind: "APIGroupList",
        api_version: "v1",
        groups: vec![api_group(CUSTOM_GROUP, false), api_group(EXTERNAL_GROUP, false)],
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
    let mut resources: Vec<ApiResource> = store
        .list_custom_metrics()
        .await?
        .into_iter()
        .take(limit)
        .map(|m| resource(format!("{}/{}", m.resource, m.metric), m.namespaced, "MetricValueList"))
        .collect();
    if resources.is_empty() {
        resources.push(resource(CUSTOM_PLACEHOLDER.to_string(), false, "MetricValueList"));
    }
    Ok(ApiResourceList {
        kind: "APIResourceList",
        api_version: "v1",
        group_version: format!("{CUSTOM_GROUP}/{}", version.as_str()),
        resources,
    })
}

/// `GET /apis/external.metrics.k8s.io/v1beta1`: one entry per stored external metric name, at most `limit`.
pub async fn external_resources(store: &dyn MetricStore, limit: usize) -> Result<ApiResourceList, StoreError> {
    let mut resources: Vec<ApiResource> = store
        .list_external_metrics()
        .await?
        .into_iter()
        .take(limit)
        .map(|name| resource(name, true, "ExternalMetricValueList"))
        .collect();
    if resources.is_empty() {
        resources.push(resource(EXTERNAL_PLACEHOLDER.to_string(), true, "ExternalMetricValueList"));
    }
    Ok(ApiResourceList {
        kind: "APIResourceList",
        api_version: "v1",
        group_version: format!("{EXTERNAL_GROUP}/v1beta1"),
        resources,
    })
}
