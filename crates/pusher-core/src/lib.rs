//! Pure logic of the Kazoo `pusher` replacement: no I/O, no async, no clocks.
//!
//! The service (`pusher`) and its adapters (`pusher-io`) call into these modules to
//! turn wire messages into decisions:
//!
//! - [`envelope`] classifies a message body (`reg_success`, `push_req`, other).
//! - [`reg_success`] reads a `reg_success` and decides the device `push` update
//!   (spec §5.1), using [`ua_rules`] (the `User-Agents` config), [`contact`] (SIP
//!   Contact parsing, URL decoding) and [`account`] (account database names).
//! - [`kapps_config`] resolves `system_config` documents the way Kazoo's
//!   `kapps_config` does (spec §8), and edits them for the CLI; [`app_config`] resolves
//!   the per-app settings and credentials of one push from that doc.
//! - [`push_req`] reads a `push_req` (spec §1.4, §5.2); [`apns`] and [`fcm`] turn it
//!   into an APNs request or an FCM v1 message (spec §6.1, §6.4), and [`outcome`]
//!   classifies the provider's answer and times retries (providers.md §1, §2).
//! - [`endpoint_push`] reads Kazoo 5's `endpoint_push_req`, maps it to APNs and FCM v1
//!   for each device of the endpoint, and builds the `endpoint_push_resp` (K5 spec).
//! - [`legacy_resp`] keeps the `push_req`s a 2015 `kazoo_query` Kamailio waits on, for
//!   the opt-in legacy `push_resp` (spec §3.6), bounded in memory.
//! - [`credentials`] checks APNs certificates, `.p8` keys and service accounts.
//! - [`amqp_uri`] reads broker URIs (`amqp://`, `amqps://` and their TLS options).
//!
//! Every function is total: malformed input yields an error value or a warning,
//! never a panic.

pub mod account;
pub mod amqp_uri;
pub mod apns;
pub mod app_config;
pub mod contact;
pub mod credentials;
pub mod der;
pub mod endpoint_push;
pub mod envelope;
pub mod fcm;
pub mod kapps_config;
pub mod kazoo_ini;
pub mod legacy_resp;
pub mod outcome;
pub mod push_req;
pub mod redelivery;
pub mod reg_success;
pub mod secret;
pub mod ua_rules;
