//! What every provider connection shares: one way to build the HTTP client (timeouts and
//! the extra trusted roots of `PUSHER_EXTRA_CA_FILE`), one way to send a request and read
//! the answer ([`Response`]), a secret-free description of transport errors, and
//! [`CredentialTag`], which names the credential a request carried so that a refused one
//! is renewed exactly once however many requests saw the refusal.
//!
//! APNs sends, FCM sends and the OAuth token request all build their client here, so a
//! private CA or a TLS-inspecting proxy works for all three or for none; server TLS is
//! always verified.

use std::time::Duration;

/// Longest wait for a TCP connection and TLS handshake to a provider.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A reqwest client builder with the connect timeout, the whole-request `request_timeout`
/// and `extra_roots_pem` (PEM bundle) *added* to the system roots.
pub(crate) fn client_builder(
    extra_roots_pem: Option<&[u8]>,
    request_timeout: Duration,
) -> Result<reqwest::ClientBuilder, String> {
    crate::ensure_crypto_provider();
    let mut b = reqwest::Client::builder()
        .timeout(request_timeout)
        .connect_timeout(CONNECT_TIMEOUT.min(request_timeout));
    if let Some(pem) = extra_roots_pem {
        let roots = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| format!("extra CA file is not PEM: {e}"))?;
        if roots.is_empty() {
            return Err("extra CA file holds no certificate".into());
        }
        b = b.tls_certs_merge(roots);
    }
    Ok(b)
}

/// A transport error as one line, with its causes, without the URL (which holds the
/// device token).
pub(crate) fn describe(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "request"
    };
    let mut s = kind.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

/// Which credential (APNs provider JWT, FCM access token) a request carried: pass it back
/// to the client's `renew` after the provider refused it. Renewing a tag that is no
/// longer current does nothing, so a burst of refusals of one credential renews it once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CredentialTag(pub(crate) u64);

/// What a provider answered to a send: an HTTP error is an answer too, only a transport
/// failure is not. `C` names the credential the request carried: `Option<CredentialTag>`
/// for APNs (none with certificate auth), [`CredentialTag`] for FCM.
#[derive(Debug, Clone)]
pub struct Response<C> {
    /// HTTP status.
    pub status: u16,
    /// Body (JSON; APNs sends none on success).
    pub body: Vec<u8>,
    /// `Retry-After` header, if any.
    pub retry_after: Option<String>,
    /// The credential the request carried, to hand to the client's `renew` when the
    /// provider refused it (APNs 403 `ExpiredProviderToken`, FCM 401).
    pub credential: C,
}

/// Sends `request` (which carried `credential`) and reads the answer. `Err` is a
/// transport failure, described without the URL ([`describe`]).
pub(crate) async fn send<C>(
    request: reqwest::RequestBuilder,
    credential: C,
) -> Result<Response<C>, String> {
    let resp = request.send().await.map_err(|e| describe(&e))?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp.bytes().await.map_err(|e| describe(&e))?.to_vec();
    Ok(Response {
        status,
        body,
        retry_after,
        credential,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_roots_must_be_certificates() {
        assert!(client_builder(Some(b"not a pem"), Duration::from_secs(1)).is_err());
        assert!(client_builder(None, Duration::from_secs(1)).is_ok());
    }
}
