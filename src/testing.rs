//! Helpers shared by the crate's unit tests.

use std::time::{Duration, Instant};

/// Polls `condition` every 10 ms until it holds; panics with `what` after 10 s (a hang, not a timing claim).
pub(crate) async fn eventually(what: &str, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
