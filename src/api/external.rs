//! external.metrics.k8s.io reads: the series of one metric in a namespace, filtered by their labels
//! (docs/wire-contract.md §1.4, §10 item 11).

use std::collections::BTreeMap;

use super::group_versions::EXTERNAL_V1BETA1;
use super::list::{self, ListFormat, ListItems};
use super::types::{ExternalMetricValue, Timestamp};
use crate::response::{HttpResponse, RequestError};
use crate::selector::Selector;
use crate::store::{MetricStore, Sample};

/// The live series of `metric` in `namespace` whose labels match `selector`; more than `max_items` are refused.
pub async fn read(
    store: &dyn MetricStore,
    namespace: &str,
    metric: &str,
    selector: &Selector,
    max_items: usize,
) -> Result<Vec<Sample>, RequestError> {
    let mut samples = store.list_external(namespace, metric).await?;
    samples.retain(|sample| selector.matches(&*sample.labels));
    if samples.len() > max_items {
        return Err(RequestError::TooManyItems { count: samples.len(), limit: max_items });
    }
    Ok(samples)
}

/// The timestamps (milliseconds) of `samples`, for `metrics_apiserver_metric_freshness_seconds`.
pub fn timestamps(samples: &[Sample]) -> impl Iterator<Item = i64> + '_ {
    samples.iter().map(|sample| sample.timestamp_millis)
}

/// The samples of one metric, as list items.
struct Samples {
    metric: String,
    samples: Vec<Sample>,
}

impl ListItems for Samples {
    type Item<'a> = ExternalMetricValue<'a>;

    fn len(&self) -> usize {
        self.samples.len()
    }

    fn item(&self, index: usize) -> ExternalMetricValue<'_> {
        let sample = &self.samples[index];
        ExternalMetricValue {
            metric_name: &self.metric,
            metric_labels: sample.labels.iter().map(|(k, v)| (&**k, &**v)).collect::<BTreeMap<_, _>>(),
            timestamp: Timestamp(sample.timestamp_millis),
            value: sample.value,
        }
    }
}

/// Renders samples as an `ExternalMetricValueList` (possibly empty: an unknown metric is not an error); refused
/// when its body would be longer than `max_bytes`.
pub fn render(
    metric: &str,
    samples: Vec<Sample>,
    pretty: bool,
    max_bytes: usize,
) -> Result<HttpResponse, RequestError> {
    let format = ListFormat { kind: EXTERNAL_V1BETA1.list_kind, api_version: EXTERNAL_V1BETA1.api_version, pretty };
    list::respond(Samples { metric: metric.to_string(), samples }, format, max_bytes)
}
