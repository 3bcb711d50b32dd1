//! custom.metrics.k8s.io reads: resolve the resource, select the objects, read the store, render the list in the
//! requested version (docs/wire-contract.md §1.3, §2, §4.2, §10 items 1, 7, 8, 10).

use std::sync::Arc;

use serde_json::value::RawValue;

use super::group_versions::CustomVersion;
use super::list::{self, ListFormat, ListItems};
use super::route::CustomTarget;
use super::types::{MetricIdentifier, MetricValueV1Beta1, MetricValueV1Beta2, ObjectReference, Timestamp};
use super::{ReadLimits, ReadQuery, rates};
use crate::cluster::{LabelIndex, ResourceInfo, ResourceMapper};
use crate::response::{self, HttpResponse, RequestError};
use crate::selector::LabelSelector;
use crate::store::{CustomSeriesId, MetricStore, Sample, SeriesKind};

/// The values a read found, independent of the API version. What all items share is kept once.
#[derive(Debug)]
pub struct MetricItems {
    info: Arc<ResourceInfo>,
    namespace: String,
    selector: Option<LabelSelector>,
    /// (object name, metric name, sample, `windowSeconds` of a rate).
    items: Vec<(String, String, Sample, Option<i64>)>,
}

impl MetricItems {
    /// The timestamps (milliseconds) of the values found, for `metrics_apiserver_metric_freshness_seconds`.
    pub fn timestamps(&self) -> impl Iterator<Item = i64> + '_ {
        self.items.iter().map(|(_, _, sample, _)| sample.timestamp_millis)
    }
}

/// Reads what `target` asks for; a list of more than `max_items` is refused.
pub async fn read(
    store: &dyn MetricStore,
    mapper: &dyn ResourceMapper,
    labels: &dyn LabelIndex,
    target: &CustomTarget,
    query: &ReadQuery,
    max_items: usize,
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
            let (sample, window) = match store.get_custom(id).await? {
                Some(sample) => (sample, None),
                None => {
                    let (rate, window) = object_rate(store, id).await?.ok_or_else(|| not_found(None))?;
                    (rate, Some(window))
                }
            };
            if !metric_selector.matches(&*sample.labels) {
                return Err(not_found(Some(metric_selector.to_string())));
            }
            vec![(name.clone(), metric.clone(), sample, window)]
        }
        CustomTarget::AllObjects { metric, .. } => {
            let names = labels.matching_objects(&info, namespace, &object_selector).await?;
            let read = |metric: String| {
                let names = names.as_deref();
                let group_resource = &group_resource;
                async move {
                    match names {
                        None => store.list_custom_objects(group_resource, namespace, &metric).await,
                        Some(names) => store.get_custom_objects(group_resource, namespace, &metric, names).await,
                    }
                }
            };
            let mut values: Vec<(String, Sample, Option<i64>)> =
                read(metric.clone()).await?.into_iter().map(|(name, sample)| (name, sample, None)).collect();
            // A stored series of the name wins: the rate is read only where none answers (docs/wire-contract.md §4.6).
            if values.is_empty()
                && let Some(counters) = rates::counters_of(metric)
            {
                for counter in counters {
                    // One read gives each object's labels and history (docs/wire-contract.md §4.6).
                    let recent = store.recent_custom(&group_resource, namespace, &counter, names.as_deref()).await?;
                    if !recent.iter().any(|(_, _, recent)| recent.kind == SeriesKind::Counter) {
                        continue;
                    }
                    values = recent
                        .iter()
                        .filter_map(|(name, labels, recent)| {
                            let (sample, window) = rates::rate_value(labels, recent)?;
                            Some((name.clone(), sample, Some(window)))
                        })
                        .collect();
                    break;
                }
            }
            values
                .into_iter()
                .filter(|(_, sample, _)| metric_selector.matches(&*sample.labels))
                .map(|(name, sample, window)| (name, metric.clone(), sample, window))
                .collect()
        }
        CustomTarget::ObjectMetrics { name, .. } => {
            let values = store.list_object_metrics(&group_resource, namespace, name).await?;
            values
                .into_iter()
                .filter(|(_, sample)| metric_selector.matches(&*sample.labels))
                .map(|(metric, sample)| (name.clone(), metric, sample, None))
                .collect()
        }
    };
    if items.len() > max_items {
        return Err(RequestError::TooManyItems { count: items.len(), limit: max_items });
    }
    Ok(MetricItems { namespace: namespace.to_string(), selector: rendered_selector, info, items })
}

/// The rate served as `id.metric` when that names the rate of a counter of the object (`x_total`, then `x`):
/// the rate and its `windowSeconds`, or `None` (no such counter, or fewer than two samples in the window).
async fn object_rate(store: &dyn MetricStore, id: CustomSeriesId<'_>) -> Result<Option<(Sample, i64)>, RequestError> {
    let Some(counters) = rates::counters_of(id.metric) else {
        return Ok(None);
    };
    let names = [id.name.to_string()];
    for counter in &counters {
        let recent = store.recent_custom(id.resource, id.namespace, counter, Some(&names)).await?;
        if let Some((_, labels, recent)) = recent.first().filter(|(_, _, recent)| recent.kind == SeriesKind::Counter) {
            return Ok(rates::rate_value(labels, recent));
        }
    }
    Ok(None)
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

/// A read's items as one version prints them, with what they share serialized once.
struct Rendered {
    found: MetricItems,
    api_version: String,
    selector: Option<Box<RawValue>>,
}

impl Rendered {
    fn object<'a>(&'a self, name: &'a str) -> ObjectReference<'a> {
        let info = &self.found.info;
        ObjectReference { kind: &info.kind, namespace: &self.found.namespace, name, api_version: &self.api_version }
    }
}

struct V1Beta1(Rendered);
struct V1Beta2(Rendered);

impl ListItems for V1Beta1 {
    type Item<'a> = MetricValueV1Beta1<'a>;

    fn len(&self) -> usize {
        self.0.found.items.len()
    }

    fn item(&self, index: usize) -> MetricValueV1Beta1<'_> {
        let (name, metric, sample, window) = &self.0.found.items[index];
        MetricValueV1Beta1 {
            described_object: self.0.object(name),
            metric_name: metric,
            timestamp: Timestamp(sample.timestamp_millis),
            window_seconds: *window,
            value: sample.value,
            selector: self.0.selector.as_deref(),
        }
    }
}

impl ListItems for V1Beta2 {
    type Item<'a> = MetricValueV1Beta2<'a>;

    fn len(&self) -> usize {
        self.0.found.items.len()
    }

    fn item(&self, index: usize) -> MetricValueV1Beta2<'_> {
        let (name, metric, sample, window) = &self.0.found.items[index];
        MetricValueV1Beta2 {
            described_object: self.0.object(name),
            metric: MetricIdentifier { name: metric, selector: self.0.selector.as_deref() },
            timestamp: Timestamp(sample.timestamp_millis),
            window_seconds: *window,
            value: sample.value,
        }
    }
}

/// Renders items as a `MetricValueList` of `version`; refused when its body would be longer than
/// [`ReadLimits::max_response_bytes`].
pub fn render(
    version: CustomVersion,
    found: MetricItems,
    pretty: bool,
    limits: &ReadLimits,
) -> Result<HttpResponse, RequestError> {
    let max_bytes = limits.max_response_bytes;
    // The selector sits at `selector` (one level into an item) in v1beta1, at `metric.selector` in v1beta2.
    let depth = match version {
        CustomVersion::V1Beta1 => 1,
        CustomVersion::V1Beta2 => 2,
    };
    let selector = match found.selector.as_ref().map(|selector| list::raw_json(selector, pretty, depth)).transpose() {
        Ok(selector) => selector,
        Err(error) => return Ok(response::serialization_failed(&error)),
    };
    // Every item repeats the selector: a long selector over many items is refused before any item is serialized.
    if let Some(selector) = &selector
        && found.items.len().saturating_mul(selector.get().len()) > max_bytes
    {
        return Err(RequestError::ResponseTooLarge { limit: max_bytes });
    }
    let rendered = Rendered { api_version: found.info.api_version(), found, selector };
    let served = version.group_version();
    let format = ListFormat { kind: served.list_kind, api_version: served.api_version, pretty };
    match version {
        CustomVersion::V1Beta1 => list::respond(V1Beta1(rendered), format, max_bytes),
        CustomVersion::V1Beta2 => list::respond(V1Beta2(rendered), format, max_bytes),
    }
}
