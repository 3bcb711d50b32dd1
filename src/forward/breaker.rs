//! The circuit breaker of one neighbour (docs/architecture.md §13): closed, it lets every request through and
//! counts consecutive failures; after `threshold` of them it opens and refuses at once for `cool_down`; then the
//! next request is let through alone as a probe (half-open): its success closes the circuit, its failure opens it
//! for another `cool_down`. Time is tokio's, so tests move it with paused time.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The state a health snapshot shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Requests go through.
    Closed,
    /// Requests are refused until the cool-down ends.
    Open,
    /// One probe is in flight, or the cool-down ended and the next request will be one.
    HalfOpen,
}

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    Probing,
}

/// One neighbour's breaker.
#[derive(Debug)]
pub struct Breaker {
    state: Mutex<State>,
    threshold: u32,
    cool_down: Duration,
}

/// Why a request was not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The circuit is open for this long still.
    Open(Duration),
    /// Half-open, and another request is the probe.
    Probing,
}

/// A request let through: report its outcome with [`Admission::succeeded`] or [`Admission::failed`]. Dropped
/// without either (the request was cancelled), it counts as neither, and a probe lets the next request probe.
#[derive(Debug)]
pub struct Admission<'a> {
    breaker: &'a Breaker,
    probe: bool,
    reported: bool,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(threshold: u32, cool_down: Duration) -> Self {
        Breaker { state: Mutex::new(State::Closed { failures: 0 }), threshold: threshold.max(1), cool_down }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a few integers, written whole: one left by a panicking thread is still consistent.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Lets a request through, or says why not.
    pub fn admit(&self) -> Result<Admission<'_>, Refusal> {
        let mut state = self.lock();
        let probe = match *state {
            State::Closed { .. } => false,
            State::Open { until } => {
                let now = Instant::now();
                if now < until {
                    return Err(Refusal::Open(until - now));
                }
                *state = State::Probing;
                true
            }
            State::Probing => return Err(Refusal::Probing),
        };
        Ok(Admission { breaker: self, probe, reported: false })
    }

    /// The state, for the health snapshot and `/metrics`, and the consecutive failures counted while closed.
    pub fn state(&self) -> (CircuitState, u32) {
        match *self.lock() {
            State::Closed { failures } => (CircuitState::Closed, failures),
            State::Open { until } if Instant::now() < until => (CircuitState::Open, self.threshold),
            State::Open { .. } | State::Probing => (CircuitState::HalfOpen, self.threshold),
        }
    }

    fn report(&self, probe: bool, success: bool) {
        let mut state = self.lock();
        let open = State::Open { until: Instant::now() + self.cool_down };
        *state = match (&*state, success) {
            (_, true) => State::Closed { failures: 0 },
            // A probe failed: open again.
            (State::Probing, false) if probe => open,
            (State::Closed { failures }, false) if failures + 1 >= self.threshold => open,
            (State::Closed { failures }, false) => State::Closed { failures: failures + 1 },
            // A request let through before the circuit opened failed late: the circuit is already open.
            (State::Open { until }, false) => State::Open { until: *until },
            (State::Probing, false) => State::Probing,
        };
    }

    fn cancelled(&self) {
        let mut state = self.lock();
        if matches!(*state, State::Probing) {
            *state = State::Open { until: Instant::now() };
        }
    }
}

impl Admission<'_> {
    /// The neighbour answered.
    pub fn succeeded(mut self) {
        self.reported = true;
        self.breaker.report(self.probe, true);
    }

    /// The neighbour failed.
    pub fn failed(mut self) {
        self.reported = true;
        self.breaker.report(self.probe, false);
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if !self.reported && self.probe {
            self.breaker.cancelled();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOL_DOWN: Duration = Duration::from_secs(10);

    fn fail(breaker: &Breaker) {
        breaker.admit().unwrap().failed();
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_the_threshold_of_consecutive_failures_and_a_success_resets_the_count() {
        let breaker = Breaker::new(3, COOL_DOWN);
        fail(&breaker);
        fail(&breaker);
        breaker.admit().unwrap().succeeded();
        assert_eq!(breaker.state(), (CircuitState::Closed, 0));
        fail(&breaker);
        fail(&breaker);
        assert_eq!(breaker.state(), (CircuitState::Closed, 2));
        fail(&breaker);
        assert_eq!(breaker.state().0, CircuitState::Open);
        assert_eq!(breaker.admit().unwrap_err(), Refusal::Open(COOL_DOWN));
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_cool_down_one_probe_goes_through_and_decides() {
        let breaker = Breaker::new(1, COOL_DOWN);
        fail(&breaker);
        tokio::time::advance(COOL_DOWN - Duration::from_secs(1)).await;
        assert_eq!(breaker.admit().unwrap_err(), Refusal::Open(Duration::from_secs(1)));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(breaker.state().0, CircuitState::HalfOpen);
        let probe = breaker.admit().unwrap();
        // Only the probe: the others are refused while it is in flight.
        assert_eq!(breaker.admit().unwrap_err(), Refusal::Probing);
        probe.failed();
        assert_eq!(breaker.admit().unwrap_err(), Refusal::Open(COOL_DOWN));
        tokio::time::advance(COOL_DOWN).await;
        breaker.admit().unwrap().succeeded();
        assert_eq!(breaker.state(), (CircuitState::Closed, 0));
        assert!(breaker.admit().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_probe_lets_the_next_request_probe() {
        let breaker = Breaker::new(1, COOL_DOWN);
        fail(&breaker);
        tokio::time::advance(COOL_DOWN).await;
        drop(breaker.admit().unwrap());
        assert!(breaker.admit().is_ok(), "the circuit stayed half-open without a probe");
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_failure_does_not_extend_an_open_circuit() {
        let breaker = Breaker::new(1, COOL_DOWN);
        let late = breaker.admit().unwrap();
        fail(&breaker);
        tokio::time::advance(COOL_DOWN / 2).await;
        late.failed();
        assert_eq!(breaker.admit().unwrap_err(), Refusal::Open(COOL_DOWN / 2));
    }
}
