//! timestamp-api: gets, sets and resets named timestamps stored in Redis, as JSON over HTTP.
//!
//! Where things live:
//! - `domain`: names and timestamps, parsed once at the edge; no I/O.
//! - `config`: the one typed configuration, its layers and its validation.
//! - `store`: everything that talks to Redis.
//! - `api`: warp routes and handlers; `api::problem` turns every error into HTTP.
//! - `server`: binds the listener and serves it until shutdown.
//! - `cli`: the command line the binary dispatches on.
//!
//! Tests start the whole service in-process with `App::bind` on port 0, then `App::run`.

pub mod api;
pub mod cli;
pub mod config;
pub mod domain;
pub mod server;
pub mod store;

pub use config::Config;
pub use server::App;
