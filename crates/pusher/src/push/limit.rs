//! The in-flight limit of one credential's pushes, and when a push stops waiting for it.
//!
//! A push holds a slot of the AMQP prefetch window for as long as it is handled. If the
//! pushes of one app could wait without bound for their app's in-flight limit, a stuck
//! app (a hung OAuth endpoint, a provider that never answers) would fill the whole window
//! with waiters and starve every other app. So once an app is *stalled* (every slot of
//! its limit taken and no provider answer for [`STALL`]; pushes that only time out are
//! no progress), its pushes wait only briefly and
//! only while few others wait: otherwise they are deferred (the consumer hands the push
//! to the deferral queue and acks it; it comes back a moment later, its deadline still
//! counting from its first sighting). A stalled app then holds at most its in-flight
//! limit plus [`MAX_WAITING`] slots of the window. An app that is merely busy (answers
//! coming back all the time) keeps its pushes waiting in order: deferring them would only
//! add traffic to the shared queue, whose `x-max-length` would then drop messages.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Most pushes of one credential waiting for its limit at once while it is stalled;
/// beyond, defer at once.
pub const MAX_WAITING: usize = 4;
/// How long a push waits for its credential's limit before it checks for a stall.
pub const PATIENCE: Duration = Duration::from_millis(200);
/// A credential whose pushes are all in flight and none finished for this long is
/// stalled (a hung token endpoint, a provider that does not answer).
pub const STALL: Duration = Duration::from_secs(3);

/// What a push got from [`Limit::enter`].
#[derive(Debug)]
pub enum Entry {
    /// A slot of the limit: send now (released on drop).
    Go(Permit),
    /// The credential is stalled: defer the push.
    Defer,
    /// The limit was closed (shutting down).
    Closed,
}

/// One slot of a [`Limit`], given back on drop.
#[derive(Debug)]
pub struct Permit {
    _permit: OwnedSemaphorePermit,
    limit: Arc<Limit>,
}

impl Permit {
    /// The provider answered this push (whatever it said): the credential is alive. A
    /// push that only timed out is no progress.
    pub fn progressed(&self) {
        self.limit.last_progress_ms.store(
            self.limit.epoch.elapsed().as_millis() as u64,
            Ordering::Release,
        );
    }
}

/// One credential's in-flight limit, the pushes waiting for it, and when one last
/// finished.
#[derive(Debug)]
pub struct Limit {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    epoch: Instant,
    /// Milliseconds since `epoch` when the provider last answered a push of ours.
    last_progress_ms: AtomicU64,
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
            epoch: Instant::now(),
            last_progress_ms: AtomicU64::new(0),
        }
    }

    /// A slot now if one is free. Else, while the credential makes progress (a push
    /// finished within [`STALL`]), waits for one as long as it takes (the deadline
    /// around the push bounds it): a busy app only queues its own pushes. Once it is
    /// stalled, a push defers at once when [`MAX_WAITING`] others already wait, and a
    /// waiter defers when its [`PATIENCE`] runs out.
    pub async fn enter(self: &Arc<Self>, patience: Duration, max_waiting: usize) -> Entry {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => return self.go(permit),
            Err(tokio::sync::TryAcquireError::Closed) => return Entry::Closed,
            Err(tokio::sync::TryAcquireError::NoPermits) => {}
        }
        let queued = self.waiting.fetch_add(1, Ordering::AcqRel);
        let _waiting = Waiting(&self.waiting);
        if queued >= max_waiting && self.stalled() {
            return Entry::Defer;
        }
        loop {
            match tokio::time::timeout(patience, self.permits.clone().acquire_owned()).await {
                Ok(Ok(permit)) => return self.go(permit),
                Ok(Err(_)) => return Entry::Closed,
                Err(_) if self.stalled() => return Entry::Defer,
                Err(_) => {}
            }
        }
    }

    /// Every slot taken and no provider answer within [`STALL`].
    pub fn stalled(&self) -> bool {
        let last = Duration::from_millis(self.last_progress_ms.load(Ordering::Acquire));
        self.permits.available_permits() == 0 && self.epoch.elapsed().saturating_sub(last) >= STALL
    }

    /// Pushes waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    fn go(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Entry {
        Entry::Go(Permit {
            _permit: permit,
            limit: self.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn wait_for_waiters(limit: &Limit, n: usize) {
        while limit.waiting() < n {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_app_queues_its_pushes_a_stalled_one_defers_them() {
        let limit = Arc::new(Limit::new(1));
        let Entry::Go(held) = limit.enter(PATIENCE, 2).await else {
            panic!("a free slot");
        };
        // Not stalled yet: a waiter keeps waiting past its patience.
        let a = tokio::spawn({
            let l = limit.clone();
            async move { l.enter(PATIENCE, 2).await }
        });
        wait_for_waiters(&limit, 1).await;
        tokio::time::sleep(PATIENCE * 2).await;
        assert!(!a.is_finished(), "a busy (not stalled) app's push waits");
        // No slot given back for STALL: stalled. The waiter defers at its next check,
        // and beyond max_waiting a newcomer defers at once.
        tokio::time::sleep(STALL).await;
        assert!(limit.stalled());
        assert!(matches!(a.await.expect("a"), Entry::Defer));
        let b = tokio::spawn({
            let l = limit.clone();
            async move { l.enter(PATIENCE, 1).await }
        });
        wait_for_waiters(&limit, 1).await;
        assert!(matches!(limit.enter(PATIENCE, 1).await, Entry::Defer));
        assert!(matches!(b.await.expect("b"), Entry::Defer));
        assert_eq!(limit.waiting(), 0, "a deferred waiter is no longer counted");
        held.progressed();
        assert!(!limit.stalled(), "a provider answer is progress");
        drop(held);
        assert!(matches!(limit.enter(PATIENCE, 1).await, Entry::Go(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_gets_the_slot_freed_while_it_waits() {
        let limit = Arc::new(Limit::new(1));
        let Entry::Go(held) = limit.enter(PATIENCE, 4).await else {
            panic!("a free slot");
        };
        let waiter = tokio::spawn({
            let l = limit.clone();
            async move { l.enter(PATIENCE, 4).await }
        });
        wait_for_waiters(&limit, 1).await;
        tokio::time::sleep(PATIENCE / 2).await;
        drop(held);
        assert!(matches!(waiter.await.expect("waiter"), Entry::Go(_)));
    }
}
