//! Rates of counters (docs/wire-contract.md §4.6): a counter series `x_total` (or `x`) is also served as
//! `x_per_second`, its per-second increase over `--rate-window`, computed from the history the store keeps
//! (`store::history`, docs/architecture.md §9). A stored series named `x_per_second` wins over the rate: the rate is
//! read only where no stored series of that name answers.

use crate::store::{Recent, Sample, SeriesKind, history};

/// What a rate's name ends with.
pub const SUFFIX: &str = "_per_second";

/// The name under which the rate of the counter `metric` is served: `x_total` → `x_per_second`, `x` →
/// `x_per_second`.
pub fn rate_name(metric: &str) -> String {
    let stem = metric.strip_suffix("_total").filter(|stem| !stem.is_empty()).unwrap_or(metric);
    format!("{stem}{SUFFIX}")
}

/// The counter metrics whose rate `metric` names, in the order they are tried: `x_per_second` → `x_total`, `x`.
/// `None` when `metric` is not a rate's name.
pub fn counters_of(metric: &str) -> Option<[String; 2]> {
    let stem = metric.strip_suffix(SUFFIX).filter(|stem| !stem.is_empty())?;
    Some([format!("{stem}_total"), stem.to_string()])
}

/// A rate as a value to serve: the counter's labels, the rate's value and the time of its last sample, and the span
/// in whole seconds (rounded up). `None` for a series that is not a counter or has fewer than two samples within the
/// window: a rate is never made up.
pub fn rate_value(labels: &crate::store::SeriesLabels, recent: &Recent) -> Option<(Sample, i64)> {
    if recent.kind != SeriesKind::Counter {
        return None;
    }
    let rate = history::rate(&recent.samples)?;
    let sample = Sample {
        value: rate.quantity(),
        timestamp_millis: rate.last_millis,
        expires_at_millis: i64::MAX,
        labels: labels.clone(),
        kind: SeriesKind::Gauge,
    };
    Some((sample, rate.window_seconds()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SeriesLabels;

    #[test]
    fn names_follow_prometheus_adapter() {
        assert_eq!(rate_name("http_requests_total"), "http_requests_per_second");
        assert_eq!(rate_name("jobs"), "jobs_per_second");
        assert_eq!(rate_name("_total"), "_total_per_second");
        assert_eq!(
            counters_of("http_requests_per_second"),
            Some(["http_requests_total".to_string(), "http_requests".to_string()])
        );
        assert_eq!(counters_of("_per_second"), None);
        assert_eq!(counters_of("queue_length"), None);
        for counter in ["a_total", "a", "b_per_second_total"] {
            let rate = rate_name(counter);
            assert!(counters_of(&rate).unwrap().contains(&counter.to_string()), "{counter} -> {rate}");
        }
    }

    #[test]
    fn only_a_counter_with_two_samples_has_a_rate() {
        let labels = SeriesLabels::empty();
        let counter = |samples: Vec<(i64, f64)>| Recent { kind: SeriesKind::Counter, samples };
        let (sample, window) = rate_value(&labels, &counter(vec![(1_000, 1.0), (31_000, 46.0)])).unwrap();
        assert_eq!((sample.value.to_string(), sample.timestamp_millis, window), ("1500m".to_string(), 31_000, 30));
        assert_eq!(rate_value(&labels, &counter(vec![(1_000, 1.0)])), None);
        assert_eq!(rate_value(&labels, &counter(vec![])), None);
        let gauge = Recent { kind: SeriesKind::Gauge, samples: vec![(1_000, 1.0), (31_000, 46.0)] };
        assert_eq!(rate_value(&labels, &gauge), None);
    }
}
