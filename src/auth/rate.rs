//! Token buckets for the costs an unauthenticated client can cause: SubjectAccessReviews of anonymous requests
//! and the log line of every 401. On tokio's clock, so that tests run on paused time.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// A token bucket refilled at `per_second` tokens a second, holding at most one second's worth.
#[derive(Debug)]
pub struct TokenBucket {
    per_second: f64,
    /// (tokens available, when they were counted).
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// A full bucket; `per_second` is at least 1.
    pub fn new(per_second: u32) -> Self {
        let per_second = f64::from(per_second.max(1));
        TokenBucket { per_second, state: Mutex::new((per_second, Instant::now())) }
    }

    /// Takes a token, or says how long until one is available.
    pub fn try_take(&self) -> Result<(), Duration> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        let (tokens, counted) = *state;
        let refilled =
            (tokens + now.saturating_duration_since(counted).as_secs_f64() * self.per_second).min(self.per_second);
        if refilled >= 1.0 {
            *state = (refilled - 1.0, now);
            Ok(())
        } else {
            *state = (refilled, now);
            Err(Duration::from_secs_f64((1.0 - refilled) / self.per_second))
        }
    }
}

/// A wait as a `Retry-After` value: whole seconds, rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// At most `per_second` lines a second of one kind, with the count of the lines left out.
#[derive(Debug)]
pub struct LogLimiter {
    bucket: TokenBucket,
    suppressed: AtomicU64,
}

impl LogLimiter {
    /// A limiter for `per_second` lines a second (at least 1).
    pub fn new(per_second: u32) -> Self {
        LogLimiter { bucket: TokenBucket::new(per_second), suppressed: AtomicU64::new(0) }
    }

    /// `Some(n)` when a line may be written, `n` being how many were left out since the last one written;
    /// `None` when this one is to be left out (and is counted).
    pub fn admit(&self) -> Option<u64> {
        match self.bucket.try_take() {
            Ok(()) => Some(self.suppressed.swap(0, Ordering::Relaxed)),
            Err(_) => {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_bucket_allows_a_seconds_worth_then_refills_at_its_rate() {
        let bucket = TokenBucket::new(4);
        for _ in 0..4 {
            assert_eq!(bucket.try_take(), Ok(()));
        }
        assert_eq!(bucket.try_take(), Err(Duration::from_millis(250)));
        tokio::time::advance(Duration::from_millis(250)).await;
        assert_eq!(bucket.try_take(), Ok(()));
        assert!(bucket.try_take().is_err());
        tokio::time::advance(Duration::from_secs(60)).await;
        for _ in 0..4 {
            assert_eq!(bucket.try_take(), Ok(()), "never more than one second's worth");
        }
        assert!(bucket.try_take().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_log_limiter_counts_the_lines_it_leaves_out() {
        let limiter = LogLimiter::new(2);
        assert_eq!((limiter.admit(), limiter.admit()), (Some(0), Some(0)));
        assert_eq!((limiter.admit(), limiter.admit(), limiter.admit()), (None, None, None));
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(limiter.admit(), Some(3));
        assert_eq!(limiter.admit(), None);
    }
}
