//! Single-flight access tokens of one service account, cached until shortly before
//! they expire.
//!
//! How a token is obtained, so that nothing waits beyond its own deadline:
//! - **Single flight.** At most one token request per client is in flight. It runs in a
//!   task of its own, bounded by the request timeout; every caller that needs a token
//!   meanwhile waits for that one result. A caller that gives up (its push's deadline
//!   fired) simply stops waiting: it holds no lock, and the request goes on for the
//!   others and still fills the cache.
//! - **No wait while a token is still valid.** Within [`EXPIRY_MARGIN`] of expiry the
//!   refresh starts in the background and callers keep using the current token.
//! - **Refusals are final.** A 4xx from the token endpoint (`invalid_grant`,
//!   `unauthorized_client`, …: a revoked or deleted key) is [`Error::TokenRefused`]: the
//!   push is settled at once, and for [`REFUSAL_HOLD`] further pushes are refused without
//!   asking again. No answer, a timeout, 408, 429 or 5xx is [`Error::Token`]: transient.
//! - **401 from FCM.** The caller passes the refused token's [`CredentialTag`] to
//!   [`super::Client::renew`] and retries once; many pushes refused with the same token cause one
//!   token request.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use pusher_core::secret::Secret;
use reqwest::header::CONTENT_TYPE;
use tokio::sync::watch;

use super::grant::{Account, TokenAnswer, read_token_answer, token_request_body};
use super::{CredentialTag, EXPIRY_MARGIN, Error, REFUSAL_HOLD, Result};
use crate::provider::describe;

/// An access token and what the cache needs to know about it.
#[derive(Clone)]
pub(super) struct AccessToken {
    pub(super) value: Secret<String>,
    /// From here on a refresh starts (in the background while it is still valid).
    renew_at: Instant,
    /// From here on it is not used.
    expires_at: Instant,
    pub(super) tag: CredentialTag,
}

/// The result every waiting caller gets.
type Fetched = Result<AccessToken>;

#[derive(Default)]
pub(super) struct TokenState {
    current: Option<AccessToken>,
    /// Reason and end of the hold of the last refusal.
    refused: Option<(String, Instant)>,
    /// The token request in flight: its result appears here.
    fetch: Option<watch::Receiver<Option<Fetched>>>,
    /// Token requests started (also the source of tags).
    pub(super) started: u64,
}

/// Single-flight access tokens of one service account.
pub(super) struct TokenSource {
    pub(super) http: reqwest::Client,
    pub(super) account: Account,
    pub(super) fetch_timeout: Duration,
    pub(super) state: Mutex<TokenState>,
}

impl TokenSource {
    pub(super) fn state(&self) -> MutexGuard<'_, TokenState> {
        // Every critical section below is a few assignments; no await inside.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn renew(&self, refused: CredentialTag) -> bool {
        let mut st = self.state();
        match &st.current {
            Some(t) if t.tag == refused => {
                st.current = None;
                true
            }
            _ => false,
        }
    }

    /// A valid access token: the cached one, or the result of the one token request in
    /// flight (started here if there is none). Cancel-safe: dropping the future only
    /// stops this caller's wait.
    pub(super) async fn access_token(self: &Arc<Self>) -> Result<AccessToken> {
        let mut done = {
            let mut st = self.state();
            let now = Instant::now();
            let current = st.current.clone().filter(|t| now < t.expires_at);
            if let Some(t) = &current
                && now < t.renew_at
            {
                return Ok(t.clone());
            }
            if current.is_none()
                && let Some((reason, until)) = &st.refused
                && now < *until
            {
                return Err(Error::TokenRefused(reason.clone()));
            }
            let rx = match &st.fetch {
                Some(rx) => rx.clone(),
                None => self.start_fetch(&mut st),
            };
            if let Some(t) = current {
                // Still valid: use it while the refresh runs.
                return Ok(t);
            }
            rx
        };
        let fetched = done
            .wait_for(Option::is_some)
            .await
            .map_err(|_| Error::Token("the token request was abandoned".into()))?
            .clone();
        fetched.unwrap_or_else(|| Err(Error::Token("the token request was abandoned".into())))
    }

    /// Starts the token request in a task of its own (so no caller's cancellation can
    /// stop it half-way) and records it as the one in flight.
    fn start_fetch(self: &Arc<Self>, st: &mut TokenState) -> watch::Receiver<Option<Fetched>> {
        let (tx, rx) = watch::channel(None);
        st.started += 1;
        let tag = CredentialTag(st.started);
        st.fetch = Some(rx.clone());
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let result = tokio::time::timeout(this.fetch_timeout, this.fetch(tag))
                .await
                .unwrap_or_else(|_| {
                    Err(Error::Token(format!(
                        "timeout: no answer from the token endpoint within {} ms",
                        this.fetch_timeout.as_millis()
                    )))
                });
            {
                let mut st = this.state();
                st.fetch = None;
                match &result {
                    Ok(token) => {
                        st.current = Some(token.clone());
                        st.refused = None;
                    }
                    Err(Error::TokenRefused(reason)) => {
                        st.current = None;
                        st.refused = Some((reason.clone(), Instant::now() + REFUSAL_HOLD));
                    }
                    Err(_) => {}
                }
            }
            tx.send_replace(Some(result));
        });
        rx
    }

    /// One token request.
    async fn fetch(&self, tag: CredentialTag) -> Fetched {
        let assertion = self
            .account
            .assertion(SystemTime::now())
            .map_err(Error::ServiceAccount)?;
        let sent = Instant::now();
        let resp = self
            .http
            .post(&self.account.token_uri)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(token_request_body(&assertion))
            .send()
            .await
            .map_err(|e| Error::Token(describe(&e)))?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| Error::Token(describe(&e)))?;
        match read_token_answer(status, &body) {
            TokenAnswer::Issued {
                access_token,
                expires_in,
            } => Ok(AccessToken {
                value: Secret::new(access_token),
                renew_at: sent + expires_in.saturating_sub(EXPIRY_MARGIN),
                expires_at: sent + expires_in,
                tag,
            }),
            TokenAnswer::Refused {
                reason,
                description,
            } => {
                tracing::warn!(client_email = %self.account.client_email, reason = %reason,
                    description = %description,
                    "the OAuth token endpoint refused the service account (revoked or deleted key?)");
                Err(Error::TokenRefused(reason))
            }
            TokenAnswer::Failed(why) => Err(Error::Token(why)),
        }
    }
}
