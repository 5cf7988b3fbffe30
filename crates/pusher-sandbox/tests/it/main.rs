//! Integration tests of the mock providers: real TLS + HTTP/2 clients (reqwest) against
//! [`pusher_sandbox::apns_mock`] and [`pusher_sandbox::fcm_mock`], a PKI generated once per
//! test binary, and a smoke test of the `pusher-mock` binary; and (`adapters`) our own
//! `pusher_io` provider clients against the mocks.

mod adapters;
mod apns;
mod common;
mod fcm;
mod mock_bin;
mod pki;
