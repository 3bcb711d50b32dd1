//! Write rates and refusals over the last minutes for the status page (docs/architecture.md §14): a bounded ring of
//! per-minute snapshots of the write counts that `/metrics` keeps ([`crate::metrics::Metrics::write_counts`]), and
//! the differences between them. Nothing is counted twice: the request path is untouched.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;

/// Minutes the ring covers.
pub const MINUTES: usize = 15;

/// Cumulative write counts: (metric group, status code) → answered writes since the start.
pub type Counts = Vec<(&'static str, u16, u64)>;

/// The snapshots, oldest first; at most [`MINUTES`] + 1 (the differences of `MINUTES` minutes).
#[derive(Debug, Default)]
pub struct Ring {
    snapshots: Mutex<VecDeque<(i64, Counts)>>,
}

/// The writes of one interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Interval {
    /// Start, in milliseconds since the Unix epoch.
    pub start_millis: i64,
    /// End (the snapshot's time, or now for the minute under way).
    pub end_millis: i64,
    /// Writes answered with a 2xx.
    pub accepted: u64,
    /// Writes refused, by status code and what it means, most frequent first.
    pub refused: Vec<Refusal>,
}

/// Refused writes of one status code.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Refusal {
    /// The HTTP status code.
    pub code: u16,
    /// What it means for a write (docs/wire-contract.md §4).
    pub reason: &'static str,
    /// How many.
    pub count: u64,
}

/// What a refused write's status code means (docs/wire-contract.md §4, §9).
pub fn reason(code: u16) -> &'static str {
    match code {
        400 => "bad request",
        401 => "not authenticated",
        403 => "forbidden or over a store limit",
        404 => "no such route",
        405 => "method not allowed",
        408 => "body too slow",
        413 => "body or batch too large",
        415 => "unsupported media type",
        422 => "invalid name, value or labels",
        429 => "rate limited",
        500 => "internal error",
        503 => "store unavailable",
        _ => "other",
    }
}

impl Ring {
    /// Records the counts at `now_millis`, forgetting the oldest snapshot beyond [`MINUTES`] + 1.
    pub fn record(&self, now_millis: i64, counts: Counts) {
        let mut snapshots = self.snapshots.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        snapshots.push_back((now_millis, counts));
        while snapshots.len() > MINUTES + 1 {
            snapshots.pop_front();
        }
    }

    /// The intervals between the snapshots, newest first, beginning with the one from the last snapshot to `now`
    /// (with `current`, the counts now).
    pub fn intervals(&self, now_millis: i64, current: &Counts) -> Vec<Interval> {
        let snapshots = self.snapshots.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut intervals = Vec::with_capacity(snapshots.len());
        if let Some((start, last)) = snapshots.back() {
            intervals.push(difference(*start, last, now_millis, current));
        }
        let all: Vec<&(i64, Counts)> = snapshots.iter().collect();
        for pair in all.windows(2).rev() {
            let ((start, before), (end, after)) = (pair[0], pair[1]);
            intervals.push(difference(*start, before, *end, after));
        }
        intervals
    }
}

/// The writes from `before` (at `start`) to `after` (at `end`).
fn difference(start: i64, before: &Counts, end: i64, after: &Counts) -> Interval {
    let earlier: BTreeMap<(&str, u16), u64> = before.iter().map(|(g, c, n)| ((*g, *c), *n)).collect();
    let mut accepted = 0;
    let mut refused = BTreeMap::<u16, u64>::new();
    for (group, code, count) in after {
        let added = count.saturating_sub(earlier.get(&(*group, *code)).copied().unwrap_or(0));
        if added == 0 {
            continue;
        }
        if (200..300).contains(code) {
            accepted += added;
        } else {
            *refused.entry(*code).or_default() += added;
        }
    }
    let mut refused: Vec<Refusal> =
        refused.into_iter().map(|(code, count)| Refusal { code, reason: reason(code), count }).collect();
    refused.sort_by(|a, b| b.count.cmp(&a.count).then(a.code.cmp(&b.code)));
    Interval { start_millis: start, end_millis: end, accepted, refused }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: &str = "custom.metrics.k8s.io";
    const E: &str = "external.metrics.k8s.io";

    #[test]
    fn intervals_are_the_differences_between_snapshots_newest_first() {
        let ring = Ring::default();
        ring.record(0, vec![]);
        ring.record(60_000, vec![(C, 200, 10), (C, 422, 1)]);
        ring.record(120_000, vec![(C, 200, 15), (C, 422, 1), (E, 200, 2), (E, 503, 3), (C, 413, 3)]);
        let now = vec![(C, 200, 16), (C, 422, 3), (E, 200, 2), (E, 503, 3), (C, 413, 3)];
        let intervals = ring.intervals(130_000, &now);
        assert_eq!(intervals.len(), 3);
        // The minute under way.
        assert_eq!((intervals[0].start_millis, intervals[0].end_millis, intervals[0].accepted), (120_000, 130_000, 1));
        assert_eq!(intervals[0].refused, vec![Refusal { code: 422, reason: reason(422), count: 2 }]);
        // Both groups summed; refusals by code, most frequent first, ties by code.
        assert_eq!(intervals[1].accepted, 7);
        let codes: Vec<(u16, u64)> = intervals[1].refused.iter().map(|r| (r.code, r.count)).collect();
        assert_eq!(codes, [(413, 3), (503, 3)]);
        assert_eq!((intervals[2].start_millis, intervals[2].accepted, intervals[2].refused.len()), (0, 10, 1));
    }

    #[test]
    fn the_ring_keeps_a_bounded_number_of_minutes() {
        let ring = Ring::default();
        for minute in 0..100 {
            ring.record(minute * 60_000, vec![(C, 200, u64::try_from(minute).unwrap())]);
        }
        let intervals = ring.intervals(100 * 60_000, &vec![(C, 200, 100)]);
        assert_eq!(intervals.len(), MINUTES + 1, "the minutes kept and the one under way");
        assert!(intervals.iter().all(|i| i.accepted == 1));
        assert_eq!(intervals.last().unwrap().start_millis, (99 - MINUTES as i64) * 60_000);
        assert!(Ring::default().intervals(0, &vec![]).is_empty());
    }
}
