//! timestamp-api: gets, sets and resets named timestamps stored in Redis, as JSON over HTTP.
//!
//! Where things live:
//! - `domain`: names and timestamps, parsed once at the edge; no I/O.
//! - `config`: the one typed configuration, its layers and its validation.
//! - `store`: everything that talks to Redis; `cursor`: the signed list cursors.
//! - `api`: the public routes and handlers; `api::problem` turns every error into HTTP, and
//!   `api::openapi` describes the routes.
//! - `admin`: probes, metrics and version on a separate listener.
//! - `server`: binds both listeners, serves them, and runs the shutdown sequence.
//! - `telemetry`, `metrics`, `shutdown`, `version`: what operators see and rely on.
//! - `cli` and `healthcheck`: the command line the binary dispatches on.
//!
//! Tests start the whole service in-process with `App::bind` on port 0, then `App::run`.

pub mod admin;
pub mod api;
pub mod cli;
pub mod config;
mod connection;
pub mod cursor;
pub mod domain;
pub mod healthcheck;
pub mod metrics;
pub mod server;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod version;

pub use config::Config;
pub use server::App;
