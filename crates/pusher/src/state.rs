//! Shared liveness/readiness state, written by the consumer and read by `/ready`.

use std::sync::atomic::{AtomicBool, Ordering};

/// Process-wide state flags.
#[derive(Debug, Default)]
pub struct State {
    consuming: AtomicBool,
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
}
