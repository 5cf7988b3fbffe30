//! Adapters of the pusher: the only code that talks to RabbitMQ, CouchDB, APNs and FCM.
//!
//! - [`amqp`]: Kazoo's topology (exchanges, the shared `pusher_shared_listener` queue,
//!   bindings), a manual-ack consumer, body decoding, and a confirming publisher.
//! - [`apns`]: APNs HTTP/2 client (certificate or ES256 token auth, extra roots).
//! - [`fcm`]: FCM HTTP v1 client with its own OAuth2 service-account token source
//!   (single flight, bounded by the request timeout, refusals told apart from outages).
//! - [`provider`]: what the provider clients share: timeouts, extra roots for APNs, FCM
//!   and the OAuth token endpoint alike, transport error text, credential tags.
//! - [`couch`]: a thin CouchDB client with correct path encoding, secret-free errors and
//!   read-modify-write with 409 retry.
//!
//! Each adapter has its own `Error` with an `is_transient`-style classification so the
//! service can decide between "retry later" and "settle now". Settings (URLs, timeouts)
//! are injected; nothing here reads the environment.

pub mod amqp;
pub mod apns;
pub mod couch;
pub mod fcm;
pub mod provider;

/// Installs rustls' `ring` provider as the process default (idempotent). reqwest is built
/// without a provider of its own, so this must run before any HTTP client is created;
/// [`couch::CouchClient::new`] calls it.
pub fn ensure_crypto_provider() {
    // Err means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
