//! Request counting on the hot path (docs/architecture.md §2, `metrics.rs`): every answered request adds to one slot
//! keyed by a packed integer, in a shard of its own thread, and the scrape sums the shards. No label is hashed as a
//! string, no lock is shared between threads that serve requests, and no cache line is written by two cores per
//! request: counting a request costs one uncontended lock, one integer-keyed lookup and a few additions.

use std::cell::Cell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// The counts of one kind of request (one key) in one shard, or summed over the shards.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Slot {
    pub count: u64,
    /// Observations per bucket (not cumulative); the last bucket is +Inf.
    pub buckets: Vec<u64>,
    pub sum: f64,
}

impl Slot {
    fn new(bucket_count: usize) -> Self {
        Slot { count: 0, buckets: vec![0; bucket_count], sum: 0.0 }
    }

    /// Adds `other`'s counts (same bounds).
    pub fn add(&mut self, other: &Slot) {
        self.count += other.count;
        self.sum += other.sum;
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine += theirs;
        }
    }
}

/// Whether a request only reads (`apiserver_current_inflight_requests{request_kind="readOnly"}`) or mutates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RequestKind {
    ReadOnly = 0,
    Mutating = 1,
}

/// The keys are small packed integers: hashing them is one multiplication.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = (key ^ (key >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type Slots = HashMap<u64, Slot, BuildHasherDefault<KeyHasher>>;

/// One thread's share, on cache lines of its own so that two cores never write the same line.
#[repr(align(128))]
struct Shard {
    slots: Mutex<Slots>,
    inflight: [AtomicI64; 2],
}

/// Numbers the threads that count, so that each picks its shard once.
static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THREAD_NUMBER: Cell<Option<usize>> = const { Cell::new(None) };
}

fn thread_number() -> usize {
    THREAD_NUMBER.with(|number| match number.get() {
        Some(n) => n,
        None => {
            let n = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
            number.set(Some(n));
            n
        }
    })
}

/// Counts, durations and in-flight requests by key; see the module documentation.
pub(super) struct RequestCounts {
    shards: Box<[Shard]>,
    /// Upper bounds of the duration buckets, without the final +Inf.
    bounds: &'static [f64],
}

impl std::fmt::Debug for RequestCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestCounts").field("shards", &self.shards.len()).finish_non_exhaustive()
    }
}

impl RequestCounts {
    /// One shard per available core (a thread beyond that shares a shard, correctly, behind its lock).
    pub fn new(bounds: &'static [f64]) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        Self::with_shards(bounds, cores.clamp(1, 64))
    }

    fn with_shards(bounds: &'static [f64], shards: usize) -> Self {
        let shards = (0..shards)
            .map(|_| Shard { slots: Mutex::new(Slots::default()), inflight: [AtomicI64::new(0), AtomicI64::new(0)] })
            .collect();
        RequestCounts { shards, bounds }
    }

    fn shard(&self) -> &Shard {
        &self.shards[thread_number() % self.shards.len()]
    }

    /// A request of `kind` started; the returned token ends it ([`Self::ended`]).
    pub fn started(&self, kind: RequestKind) -> InFlight {
        let shard = thread_number() % self.shards.len();
        self.shards[shard].inflight[kind as usize].fetch_add(1, Ordering::Relaxed);
        InFlight { shard, kind }
    }

    /// The request that `started` returned `token` for is no longer in flight (possibly on another thread).
    pub fn ended(&self, token: &InFlight) {
        self.shards[token.shard].inflight[token.kind as usize].fetch_sub(1, Ordering::Relaxed);
    }

    /// Counts one answered request under `key` that took `seconds`.
    pub fn record(&self, key: u64, seconds: f64) {
        let bucket = self.bounds.iter().position(|bound| seconds <= *bound).unwrap_or(self.bounds.len());
        let mut slots = self.shard().slots.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = slots.entry(key).or_insert_with(|| Slot::new(self.bounds.len() + 1));
        slot.count += 1;
        slot.sum += seconds;
        slot.buckets[bucket] += 1;
    }

    /// The requests in flight now, by kind.
    pub fn in_flight(&self, kind: RequestKind) -> i64 {
        self.shards.iter().map(|shard| shard.inflight[kind as usize].load(Ordering::Relaxed)).sum()
    }

    /// Every key's counts, summed over the shards.
    pub fn snapshot(&self) -> HashMap<u64, Slot> {
        let mut total = HashMap::new();
        for shard in self.shards.iter() {
            let slots = shard.slots.lock().unwrap_or_else(PoisonError::into_inner);
            for (key, slot) in slots.iter() {
                total.entry(*key).or_insert_with(|| Slot::new(self.bounds.len() + 1)).add(slot);
            }
        }
        total
    }

    /// The bucket bounds, +Inf last, for encoding.
    pub fn bucket_bounds(&self) -> impl Iterator<Item = f64> + '_ {
        self.bounds.iter().copied().chain(std::iter::once(f64::INFINITY))
    }
}

/// A request in flight: which shard's gauge to decrement.
#[derive(Debug)]
pub(super) struct InFlight {
    shard: usize,
    kind: RequestKind,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const BOUNDS: &[f64] = &[0.1, 1.0];

    #[test]
    fn counts_from_many_threads_add_up_in_the_snapshot() {
        // Fewer shards than threads: threads share a shard, behind its lock.
        let counts = Arc::new(RequestCounts::with_shards(BOUNDS, 2));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let counts = Arc::clone(&counts);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        counts.record(7, 0.05);
                        counts.record(9, 5.0);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let snapshot = counts.snapshot();
        assert_eq!(snapshot[&7].count, 4000);
        assert_eq!(snapshot[&7].buckets, vec![4000, 0, 0]);
        assert!((snapshot[&7].sum - 200.0).abs() < 1e-6);
        assert_eq!(snapshot[&9].buckets, vec![0, 0, 4000], "above the last bound: +Inf");
        assert_eq!(snapshot.len(), 2);
    }

    #[test]
    fn a_bound_is_inclusive_as_in_prometheus() {
        let counts = RequestCounts::with_shards(BOUNDS, 1);
        counts.record(1, 0.1);
        counts.record(1, 1.0);
        assert_eq!(counts.snapshot()[&1].buckets, vec![1, 1, 0]);
    }

    #[test]
    fn in_flight_is_decremented_on_the_shard_it_was_counted_on() {
        let counts = Arc::new(RequestCounts::with_shards(BOUNDS, 4));
        let token = counts.started(RequestKind::Mutating);
        let read = counts.started(RequestKind::ReadOnly);
        assert_eq!((counts.in_flight(RequestKind::ReadOnly), counts.in_flight(RequestKind::Mutating)), (1, 1));
        // Ended on another thread, as a request whose task moved.
        let other = Arc::clone(&counts);
        std::thread::spawn(move || other.ended(&token)).join().unwrap();
        counts.ended(&read);
        assert_eq!((counts.in_flight(RequestKind::ReadOnly), counts.in_flight(RequestKind::Mutating)), (0, 0));
    }
}
