//! Tools for tests, benchmarks and `make demo` — never used by the service itself.
//!
//! - `pusher-replay`: publishes a Kamailio message (from the captured fixtures or a file)
//!   to the broker exactly as Kamailio's `kazoo_publish` would, with fields overridden.
//! - [`pki`]: a throw-away test PKI (CA, server cert, Kazoo-style APNs client PEMs in every
//!   format admins produce, an APNs `.p8` key, a Google service account).
//! - [`apns_mock`]: mock APNs — HTTP/2 + TLS, client certificate or ES256 token required.
//! - [`fcm_mock`]: mock FCM HTTP v1 + OAuth2 token endpoint checking the RS256 assertion,
//!   on plain HTTP or (opt-in) HTTPS with the PKI's server certificate.
//! - [`couch_front`]: an HTTP front of pouchdb-server that adds CouchDB's `_db_updates`.
//! - `pusher-mock`: both mocks in one process for `make demo` and manual runs.

pub mod apns_mock;
pub mod couch_front;
pub mod fcm_mock;
mod mock_util;
pub mod pki;
pub mod replay;
