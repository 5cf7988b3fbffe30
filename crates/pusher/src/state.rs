//! Shared liveness/readiness state and the metrics registry: written by the consumer,
//! the handlers and the CouchDB check; read by `/ready` and `/metrics`.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::metrics::Metrics;

/// Process-wide state flags and metrics.
#[derive(Debug, Default)]
pub struct State {
    consuming: AtomicBool,
    couch_reachable: AtomicBool,
    /// Every metric of the service.
    pub metrics: Metrics,
}

impl State {
    /// Whether a consumer is currently attached to the shared queue.
    pub fn consuming(&self) -> bool {
        self.consuming.load(Ordering::Acquire)
    }

    /// Set by the consumer supervisor.
    pub fn set_consuming(&self, on: bool) {
        self.consuming.store(on, Ordering::Release);
    }

    /// Whether the last CouchDB check succeeded.
    pub fn couch_reachable(&self) -> bool {
        self.couch_reachable.load(Ordering::Acquire)
    }

    /// Set by the CouchDB check (and by CouchDB calls that succeed or fail).
    pub fn set_couch_reachable(&self, on: bool) {
        self.couch_reachable.store(on, Ordering::Release);
    }
}
