//! A histogram that many threads observe into without a lock, and its reading: components count with it (the
//! store's round trips, the read API's freshness) and `/metrics` renders its snapshot at scrape time, so that the
//! components know nothing of the Prometheus registry.

use std::sync::atomic::{AtomicU64, Ordering};

/// A histogram read at scrape time: per-bucket counts (not cumulative) by upper bound, the last `f64::INFINITY`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramSnapshot {
    /// (upper bound, observations in this bucket only).
    pub buckets: Vec<(f64, u64)>,
    /// Sum of the observations.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

/// Observations counted per bucket with atomics; see the module documentation.
#[derive(Debug)]
pub struct AtomicHistogram {
    /// Upper bounds, without the final +Inf.
    bounds: &'static [f64],
    /// Per bucket, not cumulative; the last is +Inf.
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    /// The sum's f64 bits.
    sum_bits: AtomicU64,
}

impl AtomicHistogram {
    /// An empty histogram with these upper bounds (ascending; +Inf is added).
    pub fn new(bounds: &'static [f64]) -> Self {
        AtomicHistogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_bits: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// Counts `value` in the first bucket whose bound is at least `value` (bounds are inclusive, as Prometheus').
    pub fn observe(&self, value: f64) {
        let bucket = self.bounds.iter().position(|bound| value <= *bound).unwrap_or(self.bounds.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        // The closure always returns Some: the update cannot fail.
        let _ = self
            .sum_bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| Some((f64::from_bits(bits) + value).to_bits()));
    }

    /// The counts now. Read while others observe, the figures may be a few observations apart from each other.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let buckets = self
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.buckets.iter().map(|bucket| bucket.load(Ordering::Relaxed)))
            .collect();
        HistogramSnapshot {
            buckets,
            sum: f64::from_bits(self.sum_bits.load(Ordering::Relaxed)),
            count: self.count.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const BOUNDS: &[f64] = &[0.1, 1.0];

    #[test]
    fn every_observation_from_every_thread_is_counted_in_its_bucket() {
        let histogram = Arc::new(AtomicHistogram::new(BOUNDS));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let histogram = Arc::clone(&histogram);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        histogram.observe(0.5);
                        histogram.observe(7.0);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count, 8000);
        assert!((snapshot.sum - 30_000.0).abs() < 1e-6, "{}", snapshot.sum);
        assert_eq!(snapshot.buckets, vec![(0.1, 0), (1.0, 4000), (f64::INFINITY, 4000)]);
    }

    #[test]
    fn a_bound_is_inclusive_as_in_prometheus() {
        let histogram = AtomicHistogram::new(BOUNDS);
        histogram.observe(0.1);
        histogram.observe(1.0);
        assert_eq!(histogram.snapshot().buckets, vec![(0.1, 1), (1.0, 1), (f64::INFINITY, 0)]);
    }
}
