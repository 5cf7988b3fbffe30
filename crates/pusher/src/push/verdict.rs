//! What became of one push: the [`PushOutcome`] every path ends in, its labels for logs,
//! metrics and the `push_resp` reply, and the one log line per push.

use pusher_core::outcome;
use pusher_core::push_req::Provider;

/// What became of one push request (for logs, metrics and the `push_resp` reply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// The provider accepted it.
    Delivered,
    /// The provider says the token is dead (the `push` object may have been removed).
    DeadToken {
        /// Provider reason.
        reason: String,
        /// Whether the device's `push` object was removed.
        removed: bool,
    },
    /// The request itself is unusable (missing token fields, bad token, payload too big).
    Dropped(String),
    /// The app has no usable credentials for this push type (none, unreadable, or only
    /// the legacy FCM key).
    NoCredentials(String),
    /// The provider refused the push for good (bad topic, refused credentials, …).
    Rejected(String),
    /// `<type>.enabled` is false for the app.
    Disabled,
    /// Not delivered within the push deadline.
    TimedOut(String),
    /// Not sent: the request came (back) after its deadline, so the call is over.
    Expired(String),
    /// Not sent: this process already gave the same request a verdict.
    Duplicate,
    /// Not attempted to the end: shutting down, or the config could not be loaded.
    Failed(String),
    /// Not sent yet: the app was at its in-flight limit; handed to the deferral queue to
    /// come back a moment later (no verdict yet, no reply).
    Deferred,
}

impl PushOutcome {
    /// Stable label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            PushOutcome::Delivered => "delivered",
            PushOutcome::DeadToken { .. } => "dead_token",
            PushOutcome::Dropped(_) => "dropped",
            PushOutcome::NoCredentials(_) => "no_credentials",
            PushOutcome::Rejected(_) => "rejected",
            PushOutcome::Disabled => "disabled",
            PushOutcome::TimedOut(_) => "timeout",
            PushOutcome::Expired(_) => "expired",
            PushOutcome::Duplicate => "duplicate",
            PushOutcome::Failed(_) => "failed",
            PushOutcome::Deferred => "deferred",
        }
    }

    /// The `Status` of a `push_resp`: the label, except that refused credentials are
    /// `auth_error` and an unusable request is `rejected`.
    pub fn status(&self) -> &'static str {
        match self {
            PushOutcome::Rejected(r) if outcome::is_auth_reason(r) => "auth_error",
            PushOutcome::Dropped(_) => "rejected",
            other => other.label(),
        }
    }

    /// The reason, or `""` (delivered, disabled).
    pub fn reason(&self) -> &str {
        match self {
            PushOutcome::Delivered
            | PushOutcome::Disabled
            | PushOutcome::Duplicate
            | PushOutcome::Deferred => "",
            PushOutcome::DeadToken { reason, .. } => reason,
            PushOutcome::Dropped(r)
            | PushOutcome::NoCredentials(r)
            | PushOutcome::Rejected(r)
            | PushOutcome::TimedOut(r)
            | PushOutcome::Expired(r)
            | PushOutcome::Failed(r) => r,
        }
    }

    /// Whether this is the request's last word here: a redelivered copy is then not sent
    /// again. Only an interrupted push (`failed`) may be tried once more.
    pub fn is_final(&self) -> bool {
        !matches!(self, PushOutcome::Failed(_) | PushOutcome::Deferred)
    }

    /// Whether a provider was asked (metrics label the provider only then).
    pub fn reached_provider(&self) -> bool {
        !matches!(
            self,
            PushOutcome::Dropped(_)
                | PushOutcome::NoCredentials(_)
                | PushOutcome::Disabled
                | PushOutcome::Expired(_)
                | PushOutcome::Duplicate
                | PushOutcome::Deferred
        )
    }

    /// The one log line of a finished push (inside the push's span).
    pub fn log(&self, elapsed_ms: u64) {
        match self {
            PushOutcome::Delivered => tracing::info!(elapsed_ms, "push delivered"),
            PushOutcome::DeadToken { reason, removed } => {
                tracing::warn!(elapsed_ms, reason = %reason, push_removed = removed, "device token is dead")
            }
            PushOutcome::Dropped(why) => {
                tracing::error!(reason = %why, "push_req unusable; dropped")
            }
            PushOutcome::NoCredentials(why) => {
                tracing::error!(reason = %why, "no usable credentials for this app; push not sent")
            }
            PushOutcome::Rejected(why) => {
                tracing::error!(elapsed_ms, reason = %why, "provider rejected the push")
            }
            PushOutcome::TimedOut(why) => {
                tracing::error!(elapsed_ms, reason = %why, "push not delivered within its deadline")
            }
            PushOutcome::Disabled => {
                tracing::info!("app disabled for this push type; not sent")
            }
            PushOutcome::Expired(why) => {
                tracing::warn!(reason = %why, "push_req arrived after its deadline; not sent (the call is over)")
            }
            PushOutcome::Duplicate => {
                tracing::info!("push_req already handled by this pusherd; not sent again")
            }
            PushOutcome::Failed(why) => {
                tracing::error!(elapsed_ms, reason = %why, "push not completed")
            }
            PushOutcome::Deferred => {
                tracing::debug!(elapsed_ms, "app at its in-flight limit; push_req deferred")
            }
        }
    }
}

/// Metric and `push_resp` label of a provider.
pub fn provider_label(p: Provider) -> &'static str {
    match p {
        Provider::Apple => "apns",
        Provider::Firebase => "fcm",
    }
}

/// A short, log-safe form of a device token (first 8 characters).
pub fn short_token(t: &str) -> String {
    let head: String = t.chars().take(8).collect();
    if t.chars().count() > 8 {
        format!("{head}…")
    } else {
        head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_token_keeps_eight_chars() {
        assert_eq!(short_token("0123456789abcdef"), "01234567…");
        assert_eq!(short_token("abc"), "abc");
    }

    #[test]
    fn status_maps_auth_and_unusable() {
        assert_eq!(
            PushOutcome::Rejected("BadCertificate".into()).status(),
            "auth_error"
        );
        assert_eq!(
            PushOutcome::Rejected("BadTopic".into()).status(),
            "rejected"
        );
        assert_eq!(PushOutcome::Dropped("x".into()).status(), "rejected");
        assert_eq!(PushOutcome::TimedOut("x".into()).status(), "timeout");
        assert!(!PushOutcome::Disabled.reached_provider());
        assert!(PushOutcome::Failed("x".into()).reached_provider());
    }
}
