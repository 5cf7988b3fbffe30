//! The in-flight limit of one credential's pushes, and when a push stops waiting for it.
//!
//! A push holds a slot of the AMQP prefetch window for as long as it is handled. If the
//! pushes of one app could wait without bound for their app's in-flight limit, a stuck
//! app (a hung OAuth endpoint, a provider that never answers) would fill the whole window
//! with waiters and starve every other app. So a push waits for its app's limit only
//! briefly, and only while few others wait: otherwise it is deferred (the consumer hands
//! it to the deferral queue and acks it; it comes back a moment later, its deadline still
//! counting from its first sighting). One app then holds at most its in-flight limit
//! plus [`MAX_WAITING`] slots of the window.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Most pushes of one credential waiting for its limit at once; beyond, defer at once.
pub const MAX_WAITING: usize = 4;
/// How long a push waits for its credential's limit before it is deferred.
pub const PATIENCE: Duration = Duration::from_millis(200);

/// What a push got from [`Limit::enter`].
#[derive(Debug)]
pub enum Entry {
    /// A slot of the limit: send now (released on drop).
    Go(OwnedSemaphorePermit),
    /// The app is at its limit: defer the push.
    Defer,
    /// The limit was closed (shutting down).
    Closed,
}

/// One credential's in-flight limit and the pushes waiting for it.
#[derive(Debug)]
pub struct Limit {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
}

/// Decrements the waiting count however the wait ends (cancelled included).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Limit {
    /// A limit of `in_flight` concurrent pushes.
    pub fn new(in_flight: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(in_flight.max(1))),
            waiting: AtomicUsize::new(0),
        }
    }

    /// A slot now if one is free; else waits up to `patience` if fewer than
    /// `max_waiting` pushes already wait; else (or when the patience runs out) `Defer`.
    pub async fn enter(&self, patience: Duration, max_waiting: usize) -> Entry {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => return Entry::Go(permit),
            Err(tokio::sync::TryAcquireError::Closed) => return Entry::Closed,
            Err(tokio::sync::TryAcquireError::NoPermits) => {}
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Entry::Defer;
        }
        let _waiting = Waiting(&self.waiting);
        match tokio::time::timeout(patience, self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Entry::Go(permit),
            Ok(Err(_)) => Entry::Closed,
            Err(_) => Entry::Defer,
        }
    }

    /// Pushes waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_briefly_then_defers_and_caps_the_waiters() {
        let limit = Arc::new(Limit::new(1));
        let Entry::Go(held) = limit.enter(PATIENCE, 2).await else {
            panic!("a free slot");
        };
        // Two waiters are allowed; a third is deferred at once.
        let a = tokio::spawn({
            let l = limit.clone();
            async move { l.enter(PATIENCE, 2).await }
        });
        let b = tokio::spawn({
            let l = limit.clone();
            async move { l.enter(PATIENCE, 2).await }
        });
        while limit.waiting() < 2 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(limit.enter(PATIENCE, 2).await, Entry::Defer));
        // The patience runs out for both while the slot stays taken.
        assert!(matches!(a.await.expect("a"), Entry::Defer));
        assert!(matches!(b.await.expect("b"), Entry::Defer));
        assert_eq!(limit.waiting(), 0, "a deferred waiter is no longer counted");
        drop(held);
        assert!(matches!(limit.enter(PATIENCE, 2).await, Entry::Go(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_gets_the_slot_freed_within_its_patience() {
        let limit = Arc::new(Limit::new(1));
        let Entry::Go(held) = limit.enter(PATIENCE, 4).await else {
            panic!("a free slot");
        };
        let waiter = tokio::spawn({
            let l = limit.clone();
            async move { l.enter(PATIENCE, 4).await }
        });
        while limit.waiting() < 1 {
            tokio::task::yield_now().await;
        }
        drop(held);
        assert!(matches!(waiter.await.expect("waiter"), Entry::Go(_)));
    }
}
