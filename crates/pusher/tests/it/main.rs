//! Integration tests of the pusher against a real RabbitMQ and a real CouchDB-API server
//! (one test binary for the crate; see `helpers` for isolation).

mod amqps;
mod binary;
mod cache;
mod config_reload;
mod ctl;
mod db_updates;
mod endpoint;
mod faults;
mod helpers;
mod hostile;
mod isolation;
mod kamailio;
mod legacy;
mod lifecycle;
mod perf_rev;
mod push;
mod redelivery;
mod reg_success;
mod schemas;
mod settings_cli;
mod topology;
