//! custom.metrics.k8s.io reads: resolve the resource, select the objects, read the store, render the list in the
//! requested version (wire-contract §1.3, §2, §4.2, §10 items 1, 7, 8, 10).

use std::sync::Arc;

use http::StatusCode;

use super::ReadQuery;
use super::route::{CustomTarget, CustomVersion};
use super::types::{List, MetricIdentifier, MetricValueV1Beta1, MetricValueV1Beta2, ObjectReference, Timestamp};
use crate::cluster::{LabelIndex, ResourceInfo, ResourceMapper};
use crate::response::{self, HttpResponse, RequestError};
use crate::selector::LabelSelector;
use crate::store::{CustomSeriesId, MetricStore, Sample};

/// The values a read found, independent of the API version. What all items share is kept once.
#[derive(Debug)]
pub struct MetricItems {
    info: Arc<ResourceInfo>,
    namespace: String,
    selector: Option<LabelSelector>,
    /// (object name, metric name, sample).
    items: Vec<(String, String, Sample)>,
}

/// Reads what `target` asks for.
pub async fn read(
    store: &dyn MetricStore,
    mapper: &dyn ResourceMapper,
    labels: &dyn LabelIndex,
    target: &CustomTarget,
    query: &ReadQuery,
) -> Result<MetricItems, RequestError> {
    // Both selectors are validated on every route, used or not, as Kubernetes does.
    let object_selector = query.label_selector()?;
    let metric_selector = query.metric_label_selector()?;
    let rendered_selector = metric_selector.to_label_selector().map_err(RequestError::BadMetricLabelSelector)?;

    let (namespace, resource) = match target {
        CustomTarget::Object { namespace, resource, .. }
        | CustomTarget::AllObjects { namespace, resource, .. }
        | CustomTarget::ObjectMetrics { namespace, resource, .. } => (namespace.as_deref(), resource.as_str()),
    };
    let info = mapper.resolve(resource).await?;
    let namespace = store_namespace(&info, namespace)?;
    let group_resource = info.group_resource();

    let items = match target {
        CustomTarget::Object { name, metric, .. } => {
            let id = CustomSeriesId { resource: &group_resource, namespace, name, metric };
            let not_found = |selector| RequestError::MetricNotFound {
                metric: metric.clone(),
                resource: group_resource.clone(),
                name: name.clone(),
                selector,
            };
            let sample = store.get_custom(id).await?.ok_or_else(|| not_found(None))?;
            if !metric_selector.matches(&*sample.labels) {
                return Err(not_found(Some(metric_selector.to_string())));
            }
            vec![(name.clone(), metric.clone(), sample)]
        }
        CustomTarget::AllObjects { metric, .. } => {
            let values = match labels.matching_objects(&info, namespace, &object_selector).await? {
                None => store.list_custom_objects(&group_resource, namespace, metric).await?,
                Some(names) => store.get_custom_objects(&group_resource, namespace, metric, &names).await?,
            };
            values
                .into_iter()
                .filter(|(_, sample)| metric_selector.matches(&*sample.labels))
                .map(|(name, sample)| (name, metric.clone(), sample))
                .collect()
        }
        CustomTarget::ObjectMetrics { name, .. } => {
            let values = store.list_object_metrics(&group_resource, namespace, name).await?;
            values
                .into_iter()
                .filter(|(_, sample)| metric_selector.matches(&*sample.labels))
                .map(|(metric, sample)| (name.clone(), metric, sample))
                .collect()
        }
    };
    Ok(MetricItems { namespace: namespace.to_string(), selector: rendered_selector, info, items })
}

/// The namespace under which the store keeps the object's values: empty for cluster-scoped resources (HPA asks
/// for Object metrics under its own namespace even for cluster-scoped kinds, so a namespace in the path is then
/// ignored); required for namespaced ones.
fn store_namespace<'a>(info: &ResourceInfo, namespace: Option<&'a str>) -> Result<&'a str, RequestError> {
    match (info.namespaced, namespace) {
        (false, _) => Ok(""),
        (true, Some(namespace)) => Ok(namespace),
        (true, None) => Err(RequestError::WrongScope(format!(
            "{resource} is namespaced: read it under /namespaces/{{namespace}}/{resource}/...",
            resource = info.group_resource()
        ))),
    }
}

fn object<'a>(found: &'a MetricItems, api_version: &'a str, name: &'a str) -> ObjectReference<'a> {
    ObjectReference { kind: &found.info.kind, namespace: &found.namespace, name, api_version }
}

/// Renders items as a `MetricValueList` of `version`.
pub fn render(version: CustomVersion, found: &MetricItems, pretty: bool) -> HttpResponse {
    let api_version = found.info.api_version();
    match version {
        CustomVersion::V1Beta1 => {
            let items = found
                .items
                .iter()
                .map(|(name, metric, sample)| MetricValueV1Beta1 {
                    described_object: object(found, &api_version, name),
                    metric_name: metric,
                    timestamp: Timestamp(sample.timestamp_millis),
                    value: sample.value,
                    selector: found.selector.as_ref(),
                })
                .collect();
            response::json_response(
                StatusCode::OK,
                &List::new("MetricValueList", "custom.metrics.k8s.io/v1beta1", items),
                pretty,
            )
        }
        CustomVersion::V1Beta2 => {
            let items = found
                .items
                .iter()
                .map(|(name, metric, sample)| MetricValueV1Beta2 {
                    described_object: object(found, &api_version, name),
                    metric: MetricIdentifier { name: metric, selector: found.selector.as_ref() },
                    timestamp: Timestamp(sample.timestamp_millis),
                    value: sample.value,
                })
                .collect();
            response::json_response(
                StatusCode::OK,
                &List::new("MetricValueList", "custom.metrics.k8s.io/v1beta2", items),
                pretty,
            )
        }
    }
}
