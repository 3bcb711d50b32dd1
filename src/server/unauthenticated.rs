//! The connections of a listener that have not yet completed an authenticated request, oldest first.
//!
//! Anyone who can reach the port can open connections; only these are capped, so that an attacker who opens
//! many and does nothing with them pushes out their own oldest connections, never the authenticated ones of
//! kube-apiserver and the writers.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::task::AbortHandle;

/// The unauthenticated connections of one listener, by accept order.
#[derive(Debug)]
pub struct Unauthenticated {
    cap: usize,
    /// Connection id (increasing with accept order) to the task serving it.
    open: Mutex<BTreeMap<u64, AbortHandle>>,
}

impl Unauthenticated {
    /// At most `cap` unauthenticated connections.
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(Unauthenticated { cap, open: Mutex::new(BTreeMap::new()) })
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, AbortHandle>> {
        // The map is consistent after every operation, so a panic elsewhere leaves it usable.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes room for one more connection: closes the oldest ones while the cap is reached.
    pub fn make_room(&self) {
        while let Some(oldest) = self.pop_oldest_if(|len| len >= self.cap) {
            oldest.abort();
        }
    }

    /// Closes the oldest unauthenticated connection, if there is one; `false` if there is none.
    pub fn close_oldest(&self) -> bool {
        match self.pop_oldest_if(|len| len > 0) {
            Some(oldest) => {
                oldest.abort();
                true
            }
            None => false,
        }
    }

    /// The lock is released before the task is aborted.
    fn pop_oldest_if(&self, full: impl Fn(usize) -> bool) -> Option<AbortHandle> {
        let mut open = self.lock();
        if !full(open.len()) {
            return None;
        }
        let (id, handle) = open.pop_first()?;
        tracing::debug!(connection = id, "closing the oldest unauthenticated connection to make room");
        Some(handle)
    }

    /// Runs `serve` as the task of connection `id`, counted as unauthenticated until [`Self::authenticated`] or
    /// until it ends.
    pub fn spawn<F>(self: &Arc<Self>, id: u64, serve: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let registration = Registration { set: Arc::clone(self), id };
        // Held while spawning, so that the task cannot deregister before it is registered.
        let mut open = self.lock();
        let task = tokio::spawn(async move {
            let _registration = registration;
            serve.await;
        });
        open.insert(id, task.abort_handle());
    }

    /// Connection `id` completed an authenticated request: it is no longer counted, and never closed to make room.
    pub fn authenticated(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Unauthenticated connections open.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Removes a connection when its task ends (or is aborted).
struct Registration {
    set: Arc<Unauthenticated>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.set.authenticated(self.id);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A task that runs until aborted; the receiver reports when it is gone.
    fn pending(set: &Arc<Unauthenticated>, id: u64) -> tokio::sync::oneshot::Receiver<()> {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        set.spawn(id, async move {
            let _tx = tx;
            std::future::pending::<()>().await;
        });
        rx
    }

    #[tokio::test]
    async fn the_oldest_connections_make_room_and_authenticated_ones_are_never_closed() {
        let set = Unauthenticated::new(2);
        let first = pending(&set, 1);
        let second = pending(&set, 2);
        let third = pending(&set, 3);
        set.authenticated(2);
        assert_eq!(set.len(), 2);
        // Full: the oldest unauthenticated one (1) goes, not the authenticated one (2).
        set.make_room();
        assert_eq!(set.len(), 1);
        assert!(first.await.is_err(), "the oldest connection was closed");
        let fourth = pending(&set, 4);
        set.make_room();
        assert!(third.await.is_err());
        assert!(set.close_oldest());
        assert!(fourth.await.is_err());
        assert!(!set.close_oldest());
        let mut second = second;
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut second).await.is_err(),
            "closed after authenticating"
        );
    }

    #[tokio::test]
    async fn a_finished_connection_is_no_longer_counted() {
        let set = Unauthenticated::new(10);
        set.spawn(1, async {});
        tokio::time::timeout(Duration::from_secs(5), async {
            while !set.is_empty() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
    }
}
