//! Build identity: the crate version from Cargo.toml, and the git revision that the build
//! passes in `TSAPI_GIT_SHA` (the Nix flake sets it; a plain `cargo build` leaves it unknown).
//! `/version`, the `timestamp_api_build_info` metric and the start-up log all read these.

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub const GIT_SHA: &str = match option_env!("TSAPI_GIT_SHA") {
    Some(sha) if !sha.is_empty() => sha,
    _ => "unknown",
};
