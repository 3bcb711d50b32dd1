//! external.metrics.k8s.io reads: the series of one metric in a namespace, filtered by their labels
//! (docs/wire-contract.md §1.4, §10 item 11).

use std::collections::BTreeMap;

use super::group_versions::EXTERNAL_V1BETA1;
use super::list::{self, ListFormat, ListItems};
use super::rates;
use super::types::{ExternalMetricValue, Timestamp};
use crate::response::{HttpResponse, RequestError};
use crate::selector::Selector;
use crate::store::{MetricStore, Sample, SeriesKind};

/// One value to serve: a stored sample, or a rate with its `windowSeconds` (docs/wire-contract.md §4.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// The value, its labels and time.
    pub sample: Sample,
    /// The span of a rate, in seconds.
    pub window_seconds: Option<i64>,
}

/// The live series of `metric` in `namespace` whose labels match `selector`; more than `max_items` are refused.
/// When no series of `metric` is stored and it names the rate of a counter metric (`x_per_second` of `x_total`,
/// then `x`), the rates of that metric's counter series.
pub async fn read(
    store: &dyn MetricStore,
    namespace: &str,
    metric: &str,
    selector: &Selector,
    max_items: usize,
) -> Result<Vec<Value>, RequestError> {
    let stored = store.list_external(namespace, metric).await?;
    let mut values: Vec<Value> = if stored.is_empty() {
        rates(store, namespace, metric).await?
    } else {
        stored.into_iter().map(|sample| Value { sample, window_seconds: None }).collect()
    };
    values.retain(|value| selector.matches(&*value.sample.labels));
    if values.len() > max_items {
        return Err(RequestError::TooManyItems { count: values.len(), limit: max_items });
    }
    Ok(values)
}

/// The rates `metric` names, from the first of its counter metrics that has counter series; sorted by labels.
async fn rates(store: &dyn MetricStore, namespace: &str, metric: &str) -> Result<Vec<Value>, RequestError> {
    let Some(counters) = rates::counters_of(metric) else {
        return Ok(Vec::new());
    };
    for counter in &counters {
        let recent = store.recent_external(namespace, counter).await?;
        if !recent.iter().any(|(_, recent)| recent.kind == SeriesKind::Counter) {
            continue;
        }
        return Ok(recent
            .iter()
            .filter_map(|(labels, recent)| {
                let (sample, window) = rates::rate_value(labels, recent)?;
                Some(Value { sample, window_seconds: Some(window) })
            })
            .collect());
    }
    Ok(Vec::new())
}

/// The timestamps (milliseconds) of `values`, for `metrics_apiserver_metric_freshness_seconds`.
pub fn timestamps(values: &[Value]) -> impl Iterator<Item = i64> + '_ {
    values.iter().map(|value| value.sample.timestamp_millis)
}

/// The values of one metric, as list items.
struct Samples {
    metric: String,
    samples: Vec<Value>,
}

impl ListItems for Samples {
    type Item<'a> = ExternalMetricValue<'a>;

    fn len(&self) -> usize {
        self.samples.len()
    }

    fn item(&self, index: usize) -> ExternalMetricValue<'_> {
        let Value { sample, window_seconds } = &self.samples[index];
        ExternalMetricValue {
            metric_name: &self.metric,
            metric_labels: sample.labels.iter().map(|(k, v)| (&**k, &**v)).collect::<BTreeMap<_, _>>(),
            timestamp: Timestamp(sample.timestamp_millis),
            window_seconds: *window_seconds,
            value: sample.value,
        }
    }
}

/// Renders samples as an `ExternalMetricValueList` (possibly empty: an unknown metric is not an error); refused
/// when its body would be longer than `max_bytes`.
pub fn render(metric: &str, samples: Vec<Value>, pretty: bool, max_bytes: usize) -> Result<HttpResponse, RequestError> {
    let format = ListFormat { kind: EXTERNAL_V1BETA1.list_kind, api_version: EXTERNAL_V1BETA1.api_version, pretty };
    list::respond(Samples { metric: metric.to_string(), samples }, format, max_bytes)
}
