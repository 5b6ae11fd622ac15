//! timestamp-api: gets, sets and resets named timestamps stored in Redis, as JSON over HTTP.
//!
//! The module map, and the path of a request through the modules, are in
//! docs/architecture.md. Everything is private to the crate except what the binary (`main`)
//! and the tests need: tests start the whole service in-process with `App::bind` on port 0,
//! then `App::run`, from a `Config` they build (the Redis password as a `Secret`).

mod admin;
mod api;
mod cli;
mod cluster_create;
mod config;
mod connection;
mod cursor;
mod descriptors;
mod domain;
#[cfg(test)]
mod generated;
mod healthcheck;
mod http;
mod metrics;
mod rfc3339;
mod seed;
mod server;
mod shutdown;
mod store;
mod telemetry;
mod tls;
mod version;

pub use api::BODY_READ_TIMEOUT;
pub use cli::main;
pub use config::{Config, HostPort, Secret};
pub use server::App;
