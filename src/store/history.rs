//! The bounded history of a series' recent values (docs/architecture.md §9, "History"): what rates are computed from
//! (counters) and what the status page draws as a sparkline (every series).
//!
//! A series' latest value is its stored sample; the history keeps only the values before it, so a series written
//! once costs nothing here. A gauge keeps its [`SPARKLINE_VALUES`] latest values; a counter keeps the values written
//! within `--rate-window`, at most `--rate-max-samples` of them. Both are allocated at the second write.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::quantity::{Format, Quantity};

/// What a series is, as its last write said (`?kind=counter`, Prometheus `# TYPE … counter`): only counters have
/// a rate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SeriesKind {
    /// A value that goes up and down (the default).
    #[default]
    #[serde(rename = "g")]
    Gauge,
    /// A value that only grows, except when its source restarts and it starts again from 0.
    #[serde(rename = "c")]
    Counter,
}

impl SeriesKind {
    /// The name the write API and the status page use (`gauge`, `counter`).
    pub fn as_str(self) -> &'static str {
        match self {
            SeriesKind::Gauge => "gauge",
            SeriesKind::Counter => "counter",
        }
    }

    /// The kind named by the write API's `kind` parameter.
    pub fn parse(text: &str) -> Option<SeriesKind> {
        match text {
            "gauge" => Some(SeriesKind::Gauge),
            "counter" => Some(SeriesKind::Counter),
            _ => None,
        }
    }

    /// Whether this is the default kind (not written into the Redis store's payload).
    pub fn is_gauge(&self) -> bool {
        *self == SeriesKind::Gauge
    }
}

/// Values a gauge's history holds for the sparkline, its latest value included.
pub const SPARKLINE_VALUES: usize = 8;

/// Values a gauge keeps besides its latest.
const GAUGE_PREVIOUS: usize = SPARKLINE_VALUES - 1;

/// Accounted bytes of an allocated history besides a counter's samples: the boxed ring (64 bytes, an allocation of
/// 80 with the allocator's header and rounding). Measured with bench/store_bytes.rs (bench/README.md).
pub const HISTORY_BYTES: usize = 80;

/// Accounted bytes of one sample slot of a counter's history (16 bytes, its share of the allocation's header).
pub const COUNTER_SAMPLE_BYTES: usize = 16;

/// Accounted bytes of the allocation of a counter's samples besides the slots: the allocator's header and rounding,
/// and what its earlier, smaller allocations leave behind (measured: a counter of 9 samples costs about 300 bytes
/// beyond its series, bench/README.md, "Store bytes").
const COUNTER_BUFFER_BYTES: usize = 48;

/// The first capacity of a counter's samples; it doubles up to the bound.
const COUNTER_FIRST_CAPACITY: usize = 4;

/// The bounds of counters' histories: `--rate-window` and `--rate-max-samples`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Samples older than this before the latest one are dropped; rates are computed over this much time.
    pub window: Duration,
    /// Samples a counter keeps at most, its latest value included (at least 2).
    pub max_samples: usize,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits { window: Duration::from_secs(120), max_samples: 64 }
    }
}

impl RateLimits {
    fn window_millis(&self) -> i64 {
        i64::try_from(self.window.as_millis()).unwrap_or(i64::MAX)
    }

    /// Previous samples a counter keeps (its latest value is the stored sample).
    fn previous(&self) -> usize {
        self.max_samples.saturating_sub(1).max(1)
    }
}

/// A value as the history keeps it.
pub fn quantity_f64(value: &Quantity) -> f64 {
    value.mantissa() as f64 * 10f64.powi(value.exponent())
}

/// The history of one series, besides its latest value. Eight bytes while it holds nothing.
#[derive(Debug, Default)]
pub(crate) struct History(Option<Box<Ring>>);

#[derive(Debug)]
enum Ring {
    /// (milliseconds before the latest value, value), newest first; a NaN value marks an empty slot (no written
    /// value is NaN). Kept small: a sparkline needs neither the exact time nor the exact value.
    Gauge([(u32, f32); GAUGE_PREVIOUS]),
    /// (timestamp, value), oldest first, at most [`RateLimits::previous`], within the window before the latest.
    Counter(Vec<(i64, f64)>),
}

/// What happens to the history when a series' latest value `(kind_before, t_before)` is replaced by a write of
/// `kind` at `t`.
enum Step {
    /// The kind changed or time went back: the earlier values say nothing about the new ones.
    Clear,
    /// The same instant: the value is replaced, the history stays.
    Keep,
    /// The replaced value joins the history.
    Push,
}

fn step(kind_before: SeriesKind, t_before: i64, kind: SeriesKind, t: i64) -> Step {
    if kind_before != kind || t < t_before {
        Step::Clear
    } else if t == t_before {
        Step::Keep
    } else {
        Step::Push
    }
}

impl History {
    /// The bytes this history accounts for.
    pub(crate) fn bytes(&self) -> usize {
        match self.0.as_deref() {
            None => 0,
            Some(Ring::Gauge(_)) => HISTORY_BYTES,
            Some(Ring::Counter(samples)) => HISTORY_BYTES + counter_buffer_bytes(samples.capacity()),
        }
    }

    /// The bytes this history would account for after [`Self::push`] with the same arguments.
    pub(crate) fn bytes_after(
        &self,
        before: (SeriesKind, i64),
        kind: SeriesKind,
        t: i64,
        limits: &RateLimits,
    ) -> usize {
        match step(before.0, before.1, kind, t) {
            Step::Clear => 0,
            Step::Keep => self.bytes(),
            Step::Push => match (kind, self.0.as_deref()) {
                (SeriesKind::Gauge, _) => HISTORY_BYTES,
                (SeriesKind::Counter, Some(Ring::Counter(samples))) => {
                    let kept = retained(samples, t, limits) + 1;
                    HISTORY_BYTES + counter_buffer_bytes(grown(samples.capacity(), kept, limits.previous()))
                }
                (SeriesKind::Counter, _) => HISTORY_BYTES + counter_buffer_bytes(grown(0, 1, limits.previous())),
            },
        }
    }

    /// The series' latest value `before` = (kind, timestamp, value) is replaced by a write of `kind` at `t`: keeps
    /// the replaced value, drops what falls out of the bounds. A change of kind, or a write earlier than the one it
    /// replaces (a clock that stepped back), starts the history again.
    pub(crate) fn push(&mut self, before: (SeriesKind, i64, f64), kind: SeriesKind, t: i64, limits: &RateLimits) {
        let (kind_before, t_before, value_before) = before;
        match step(kind_before, t_before, kind, t) {
            Step::Clear => self.0 = None,
            Step::Keep => {}
            Step::Push => match kind {
                SeriesKind::Gauge => {
                    let ring = self.0.get_or_insert_with(|| Box::new(Ring::Gauge([(0, f32::NAN); GAUGE_PREVIOUS])));
                    if let Ring::Counter(_) = **ring {
                        **ring = Ring::Gauge([(0, f32::NAN); GAUGE_PREVIOUS]);
                    }
                    if let Ring::Gauge(slots) = &mut **ring {
                        let delta = t - t_before;
                        slots.rotate_right(1);
                        slots[0] = (0, value_before as f32);
                        for slot in slots.iter_mut() {
                            // Ages count from the new latest value; one beyond u32 milliseconds (49 days) is dropped.
                            match i64::from(slot.0).checked_add(delta).and_then(|age| u32::try_from(age).ok()) {
                                Some(age) if !slot.1.is_nan() => slot.0 = age,
                                _ => *slot = (0, f32::NAN),
                            }
                        }
                    }
                }
                SeriesKind::Counter => {
                    let ring = self.0.get_or_insert_with(|| Box::new(Ring::Counter(Vec::new())));
                    if let Ring::Gauge(_) = **ring {
                        **ring = Ring::Counter(Vec::new());
                    }
                    if let Ring::Counter(samples) = &mut **ring {
                        let kept = retained(samples, t, limits);
                        samples.drain(..samples.len() - kept);
                        let capacity = grown(samples.capacity(), kept + 1, limits.previous());
                        if capacity != samples.capacity() {
                            // Exactly this capacity, so that the accounting is exact: `Vec::with_capacity` promises it.
                            let mut bigger = Vec::with_capacity(capacity);
                            bigger.append(samples);
                            *samples = bigger;
                        }
                        if samples.len() == capacity {
                            samples.remove(0);
                        }
                        samples.push((t_before, value_before));
                    }
                }
            },
        }
    }

    /// The series' recent values, oldest first, its latest value (`kind`, `latest`) last. A counter's are those
    /// within `limits.window` before `now` (none when its latest value is older); a gauge's are all it keeps.
    pub(crate) fn recent(
        &self,
        kind: SeriesKind,
        latest: (i64, f64),
        now: i64,
        limits: &RateLimits,
    ) -> Vec<(i64, f64)> {
        let mut values = Vec::new();
        match (kind, self.0.as_deref()) {
            (SeriesKind::Gauge, Some(Ring::Gauge(slots))) => {
                values.extend(
                    slots
                        .iter()
                        .rev()
                        .filter(|slot| !slot.1.is_nan())
                        .map(|&(age, v)| (latest.0 - i64::from(age), f64::from(v))),
                );
                values.push(latest);
            }
            (SeriesKind::Gauge, _) => values.push(latest),
            (SeriesKind::Counter, ring) => {
                let since = now.saturating_sub(limits.window_millis());
                if let Some(Ring::Counter(samples)) = ring {
                    values.extend(samples.iter().copied().filter(|&(t, _)| t >= since));
                }
                if latest.0 >= since {
                    values.push(latest);
                }
            }
        }
        values
    }
}

/// How many of a counter's samples stay when a value written at `t` joins them: those within the window before `t`,
/// and room for the new one.
fn retained(samples: &[(i64, f64)], t: i64, limits: &RateLimits) -> usize {
    let since = t.saturating_sub(limits.window_millis());
    samples.iter().filter(|&&(ts, _)| ts >= since).count().min(limits.previous())
}

/// The capacity a counter's samples need to hold `needed` (doubling from [`COUNTER_FIRST_CAPACITY`], never beyond
/// `max`, never shrinking).
fn grown(capacity: usize, needed: usize, max: usize) -> usize {
    let needed = needed.min(max);
    if capacity >= needed {
        return capacity;
    }
    let mut grown = capacity.max(COUNTER_FIRST_CAPACITY.min(max));
    while grown < needed {
        grown = (grown * 2).min(max);
    }
    grown
}

fn counter_buffer_bytes(capacity: usize) -> usize {
    if capacity == 0 { 0 } else { COUNTER_BUFFER_BYTES + capacity * COUNTER_SAMPLE_BYTES }
}

/// A series' recent values, as [`super::MetricStore::recent_custom`] and [`super::MetricStore::recent_external`]
/// give them.
#[derive(Debug, Clone, PartialEq)]
pub struct Recent {
    /// The series' kind.
    pub kind: SeriesKind,
    /// (timestamp in milliseconds, value), oldest first, the latest value last. A gauge: its last
    /// [`SPARKLINE_VALUES`] values (as `f32`, except the latest). A counter: its values within `--rate-window`
    /// before the read, as written (resets included).
    pub samples: Vec<(i64, f64)>,
}

/// A per-second rate over a span of samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// The increase per second.
    pub per_second: f64,
    /// The time between the first and the last sample, in milliseconds (> 0).
    pub span_millis: i64,
    /// The timestamp of the last sample.
    pub last_millis: i64,
}

impl Rate {
    /// The rate as a quantity, in thousandths (prometheus-adapter's precision), rounded to the nearest.
    pub fn quantity(&self) -> Quantity {
        let milli = (self.per_second * 1000.0).round();
        // `as` saturates: a rate beyond i64 thousandths is not a meaningful one anyway.
        Quantity::from_milli(milli as i64, Format::DecimalSI)
    }

    /// The span in whole seconds, rounded up so that a span under a second is not 0 (`windowSeconds`).
    pub fn window_seconds(&self) -> i64 {
        (self.span_millis + 999) / 1000
    }
}

/// The per-second rate of a counter over `samples` (oldest first): (last − first + the value before each drop) /
/// (t_last − t_first). A drop means the counter restarted from 0, as Prometheus reads it. Fewer than two samples,
/// or no time between them: no rate.
pub fn rate(samples: &[(i64, f64)]) -> Option<Rate> {
    let (&(first_t, first_v), &(last_t, last_v)) = (samples.first()?, samples.last()?);
    let span_millis = last_t - first_t;
    if samples.len() < 2 || span_millis <= 0 {
        return None;
    }
    let corrections: f64 = samples.windows(2).filter(|pair| pair[1].1 < pair[0].1).map(|pair| pair[0].1).sum();
    let increase = last_v - first_v + corrections;
    Some(Rate { per_second: increase * 1000.0 / span_millis as f64, span_millis, last_millis: last_t })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: RateLimits = RateLimits { window: Duration::from_secs(120), max_samples: 64 };

    /// Writes `values` at the given times into a fresh history as the store does; returns it and the latest value.
    fn written(kind: SeriesKind, values: &[(i64, f64)], limits: &RateLimits) -> (History, (i64, f64)) {
        let mut history = History::default();
        let mut latest = values[0];
        for &(t, v) in &values[1..] {
            let expected = history.bytes_after((kind, latest.0), kind, t, limits);
            history.push((kind, latest.0, latest.1), kind, t, limits);
            assert_eq!(history.bytes(), expected, "bytes_after predicts the bytes after a push");
            latest = (t, v);
        }
        (history, latest)
    }

    #[test]
    fn a_steady_counter_has_its_rate_over_the_actual_span() {
        let rate = rate(&[(0, 10.0), (15_000, 40.0), (30_000, 70.0)]).unwrap();
        assert_eq!(rate.per_second, 2.0);
        assert_eq!((rate.span_millis, rate.last_millis, rate.window_seconds()), (30_000, 30_000, 30));
        assert_eq!(rate.quantity().to_string(), "2");
    }

    #[test]
    fn a_drop_is_a_restart_from_zero_and_adds_the_value_before_it() {
        // 100 → 130 (+30), restart, 0 → 5 (+5), 5 → 20 (+15): 50 over 30 s.
        let rate = rate(&[(0, 100.0), (10_000, 130.0), (20_000, 5.0), (30_000, 20.0)]).unwrap();
        assert_eq!(rate.per_second * 30.0, 50.0);
        assert_eq!(rate.quantity().to_string(), "1667m");
        // Two restarts in a row.
        let rate = super::rate(&[(0, 50.0), (1_000, 10.0), (2_000, 3.0)]).unwrap();
        assert_eq!(rate.per_second, (3.0 - 50.0 + 50.0 + 10.0) / 2.0);
    }

    #[test]
    fn fewer_than_two_samples_or_no_time_between_them_is_no_rate() {
        assert_eq!(rate(&[]), None);
        assert_eq!(rate(&[(1_000, 5.0)]), None);
        assert_eq!(rate(&[(1_000, 5.0), (1_000, 6.0)]), None);
    }

    #[test]
    fn the_rate_is_rounded_to_thousandths_and_the_span_up_to_seconds() {
        let rate = rate(&[(0, 0.0), (1_500, 1.0)]).unwrap();
        assert_eq!(rate.quantity().to_string(), "667m");
        assert_eq!(rate.window_seconds(), 2);
        let slow = super::rate(&[(0, 0.0), (120_000, 1.0)]).unwrap();
        assert_eq!(slow.quantity().to_string(), "8m");
        let tiny = super::rate(&[(0, 0.0), (400, 0.0001)]).unwrap();
        assert_eq!((tiny.quantity().to_string().as_str(), tiny.window_seconds()), ("0", 1));
    }

    #[test]
    fn a_counter_keeps_the_samples_of_the_window_and_reads_only_those_before_now() {
        let values: Vec<(i64, f64)> = (0..20).map(|i| (i * 15_000, i as f64 * 30.0)).collect();
        let (history, latest) = written(SeriesKind::Counter, &values, &LIMITS);
        assert_eq!(latest, (285_000, 570.0));
        let recent = history.recent(SeriesKind::Counter, latest, 285_000, &LIMITS);
        // 165 s to 285 s: the samples older than the window before the latest were dropped.
        assert_eq!(recent.first(), Some(&(165_000, 330.0)));
        assert_eq!(recent.len(), 9);
        assert_eq!(rate(&recent).unwrap().per_second, 2.0);
        // Read a minute later: only what is within the window before the read counts.
        let later = history.recent(SeriesKind::Counter, latest, 345_000, &LIMITS);
        assert_eq!(later.first(), Some(&(225_000, 450.0)));
        assert_eq!(rate(&later).unwrap().span_millis, 60_000);
        // Read when the latest is older than the window: nothing, hence no rate.
        assert!(history.recent(SeriesKind::Counter, latest, 285_000 + 120_001, &LIMITS).is_empty());
    }

    #[test]
    fn a_counter_keeps_at_most_max_samples_its_latest_included() {
        let limits = RateLimits { window: Duration::from_secs(3600), max_samples: 5 };
        let values: Vec<(i64, f64)> = (0..40).map(|i| (i * 1_000, i as f64)).collect();
        let (history, latest) = written(SeriesKind::Counter, &values, &limits);
        let recent = history.recent(SeriesKind::Counter, latest, latest.0, &limits);
        assert_eq!(recent, [(35_000, 35.0), (36_000, 36.0), (37_000, 37.0), (38_000, 38.0), (39_000, 39.0)]);
        assert_eq!(history.bytes(), HISTORY_BYTES + COUNTER_BUFFER_BYTES + 4 * COUNTER_SAMPLE_BYTES);
    }

    #[test]
    fn a_gauge_keeps_its_last_sparkline_values_and_a_series_written_once_keeps_nothing() {
        let (history, latest) = written(SeriesKind::Gauge, &[(5_000, 1.0)], &LIMITS);
        assert_eq!(history.bytes(), 0);
        assert_eq!(history.recent(SeriesKind::Gauge, latest, 0, &LIMITS), [(5_000, 1.0)]);
        let values: Vec<(i64, f64)> = (0..12).map(|i| (i * 10_000, i as f64 * 0.5)).collect();
        let (history, latest) = written(SeriesKind::Gauge, &values, &LIMITS);
        assert_eq!(history.bytes(), HISTORY_BYTES);
        let recent = history.recent(SeriesKind::Gauge, latest, i64::MAX, &LIMITS);
        assert_eq!(recent, values[12 - SPARKLINE_VALUES..]);
        assert_eq!(std::mem::size_of::<Ring>(), 64, "HISTORY_BYTES is this allocation with the allocator's header");
    }

    #[test]
    fn a_change_of_kind_or_a_step_back_in_time_starts_again() {
        let (mut history, latest) = written(SeriesKind::Counter, &[(0, 1.0), (1_000, 2.0), (2_000, 3.0)], &LIMITS);
        assert_eq!(history.recent(SeriesKind::Counter, latest, 2_000, &LIMITS).len(), 3);
        history.push((SeriesKind::Counter, latest.0, latest.1), SeriesKind::Gauge, 3_000, &LIMITS);
        assert_eq!(history.bytes(), 0);
        assert_eq!(history.recent(SeriesKind::Gauge, (3_000, 7.0), 3_000, &LIMITS), [(3_000, 7.0)]);
        let (mut history, latest) = written(SeriesKind::Counter, &[(0, 1.0), (1_000, 2.0), (2_000, 3.0)], &LIMITS);
        history.push((SeriesKind::Counter, latest.0, latest.1), SeriesKind::Counter, 500, &LIMITS);
        assert_eq!(history.recent(SeriesKind::Counter, (500, 4.0), 500, &LIMITS), [(500, 4.0)]);
        // The same instant replaces the latest value: no sample is added.
        let (history, latest) = written(SeriesKind::Counter, &[(0, 1.0), (1_000, 2.0), (1_000, 3.0)], &LIMITS);
        assert_eq!(history.recent(SeriesKind::Counter, latest, 1_000, &LIMITS), [(0, 1.0), (1_000, 3.0)]);
    }

    #[test]
    fn values_convert_exactly_enough() {
        assert_eq!(quantity_f64(&Quantity::parse("1500m").unwrap()), 1.5);
        assert_eq!(quantity_f64(&Quantity::parse("12k").unwrap()), 12_000.0);
        assert_eq!(quantity_f64(&Quantity::parse("123456789012").unwrap()), 123_456_789_012.0);
    }
}
