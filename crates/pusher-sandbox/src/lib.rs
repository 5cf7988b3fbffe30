//! Tools for tests, benchmarks and `make demo` — never used by the service itself.
//!
//! - `pusher-replay`: publishes a Kamailio message (from the captured fixtures or a file)
//!   to the broker exactly as Kamailio's `kazoo_publish` would, with fields overridden.

pub mod replay;
