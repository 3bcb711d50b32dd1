//! external.metrics.k8s.io reads: the series of one metric in a namespace, filtered by their labels
//! (wire-contract §1.4, §10 item 11).

use std::collections::BTreeMap;

use http::StatusCode;

use super::types::{ExternalMetricValue, List, Timestamp};
use crate::response::{self, HttpResponse, RequestError};
use crate::selector::Selector;
use crate::store::{MetricStore, Sample};

/// The live series of `metric` in `namespace` whose labels match `selector`.
pub async fn read(
    store: &dyn MetricStore,
    namespace: &str,
    metric: &str,
    selector: &Selector,
) -> Result<Vec<Sample>, RequestError> {
    let mut samples = store.list_external(namespace, metric).await?;
    samples.retain(|sample| selector.matches(&*sample.labels));
    Ok(samples)
}

/// Renders samples as an `ExternalMetricValueList` (possibly empty: an unknown metric is not an error).
pub fn render(metric: &str, samples: &[Sample], pretty: bool) -> HttpResponse {
    let items = samples
        .iter()
        .map(|sample| ExternalMetricValue {
            metric_name: metric,
            metric_labels: sample.labels.iter().map(|(k, v)| (&**k, &**v)).collect::<BTreeMap<_, _>>(),
            timestamp: Timestamp(sample.timestamp_millis),
            value: sample.value,
        })
        .collect();
    let list = List::new("ExternalMetricValueList", "external.metrics.k8s.io/v1beta1", items);
    response::json_response(StatusCode::OK, &list, pretty)
}
