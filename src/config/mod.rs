//! Configuration: one typed `Config`, layered from built-in defaults, an optional TOML file and
//! `TSAPI_*` environment variables (`__` separates nesting levels), validated once at start-up.
//!
//! Every error names the key and where its value came from, so an operator can fix a bad
//! deployment from one log line. The Redis passwords (the data nodes' and the Sentinels') are
//! only ever read from files and are held in a `Secret`, which cannot be printed. The `[redis]`
//! section and its checks are in `redis.rs`.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::error::Kind;
use figment::providers::{Env, Format, Toml};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub mod describe;
mod duration;
mod redis;
mod secret;
#[cfg(test)]
mod tests;
mod traces;

pub use self::redis::{HostPort, RedisConfig, SentinelConfig, TlsConfig};
pub use describe::describe;
pub use secret::Secret;
use secret::read_secret_file;
pub use traces::{Sampler, TracesConfig};

use crate::api;

/// Prefix of every environment variable the service reads.
pub const ENV_PREFIX: &str = "TSAPI_";
/// Environment variable naming the optional TOML file (same as `--config`).
pub const CONFIG_FILE_ENV: &str = "TSAPI_CONFIG";

/// `TSAPI_*` variables that are not configuration keys: the file path itself, and the git
/// revision, which is read at build time (a CI job may still export it when running tests).
const NOT_KEYS: [&str; 2] = ["config", "git_sha"];

/// Shortest cursor key accepted: 256 bits, the size of HMAC-SHA256's output.
const CURSOR_KEY_MIN_BYTES: usize = 32;

/// Each connection costs a file descriptor and some buffers; past this a typo is likelier
/// than a plan.
const MAX_CONNECTIONS_LIMIT: usize = 100_000;

/// Largest `response_buffer_bytes`: a budget larger than this is larger than any container
/// this service is meant for, so likelier a typo.
const MAX_RESPONSE_BUFFER_BYTES: usize = 1024 * 1024 * 1024;

/// The whole configuration. The doc comments of its fields (and of `RedisConfig`'s) are the
/// reference: `timestamp-api config --describe` prints them with names, types, bounds and
/// defaults, and the table in docs/configuration.md and the NixOS module's options are
/// generated from that (`make generate`; a test fails while a copy is stale).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the API listener. Containers set `0.0.0.0:8080`.
    #[schemars(with = "String", extend("format" = "socket-address"))]
    pub listen: SocketAddr,
    /// Address of the admin listener (`/livez`, `/readyz`, `/metrics`, `/version`); must differ
    /// from `listen`. Never expose it publicly.
    #[schemars(with = "String", extend("format" = "socket-address"))]
    pub admin_listen: SocketAddr,
    /// Log filter in tracing's `EnvFilter` syntax, e.g. `warn,timestamp_api=debug`;
    /// `timestamp_api::access=warn` silences the access log.
    pub log: String,
    pub log_format: LogFormat,
    /// After SIGTERM/SIGINT, how long to keep serving while `/readyz` answers 503, so that load
    /// balancers stop sending traffic before the listener closes; at most `5m`. Deployments
    /// behind a load balancer set a few seconds.
    #[serde(with = "duration")]
    #[schemars(with = "String", extend("format" = "duration"))]
    pub drain_delay: Duration,
    /// Then, how long in-flight requests may take to finish before they are cut; above 0 and
    /// at most `5m`.
    #[serde(with = "duration")]
    #[schemars(with = "String", extend("format" = "duration"))]
    pub shutdown_timeout: Duration,
    /// Most client connections each listener (API and admin, separately) holds open. One more
    /// is answered `503` (`too-many-connections`, `Retry-After: 1`, `Connection: close`) if its
    /// socket takes the answer at once, then closed, and counted in
    /// `timestamp_api_connections_refused_total{listener}`. Each connection costs a file
    /// descriptor and at most 2 × 16 KiB of buffers (list pages are counted in
    /// `response_buffer_bytes` instead). The process raises its soft file limit to the hard
    /// one at start; if even that is below 2 × `max_connections` + 64, each listener serves
    /// what fits and says so in a start-up warning
    /// ([operations.md](operations.md#file-descriptors)).
    #[schemars(range(min = 1, max = MAX_CONNECTIONS_LIMIT))]
    pub max_connections: usize,
    /// A response write that makes no progress for this long (the client is not reading)
    /// closes the connection; counted in
    /// `timestamp_api_connections_timed_out_total{listener,timeout="write"}`. Any progress
    /// restarts the clock, so slow but reading clients are not cut. Above 0 and at most `5m`.
    #[serde(with = "duration")]
    #[schemars(with = "String", extend("format" = "duration"))]
    pub write_timeout: Duration,
    /// How long a connection may wait for (the rest of) its next request head: bounds idle
    /// keep-alive connections and clients that send headers slowly; counted in
    /// `timestamp_api_connections_timed_out_total{listener,timeout="idle"}`. A request body
    /// has its own 5 s bound (408). Above 0 and at most `5m`.
    #[serde(with = "duration")]
    #[schemars(with = "String", extend("format" = "duration"))]
    pub idle_timeout: Duration,
    /// Most bytes that list pages may hold in memory at once, across all connections: a
    /// listing reserves 1 KiB per item of its `limit` (plus 1 KiB) while it is built, then its
    /// body's allocation until the client has read it. A listing that finds no room waits up
    /// to `redis.command_timeout`, then answers `503 busy`. Held now:
    /// `timestamp_api_response_buffer_bytes`. The least is one page of 1,000 items, the most
    /// 1 GiB; how it bounds the process's memory:
    /// [operations.md](operations.md#memory).
    #[schemars(range(min = api::room_for(api::MAX_LIMIT), max = MAX_RESPONSE_BUFFER_BYTES))]
    pub response_buffer_bytes: usize,
    /// File holding the key that signs list cursors (HMAC-SHA256): at least 32 bytes, one
    /// trailing newline ignored. Every replica behind one load balancer needs the same key, or
    /// a cursor issued by one is a 400 at another. Unset, each process draws a random key at
    /// start (fine for a single replica; logged at start). Rotation:
    /// [operations.md](operations.md#cursor-key-rotation).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "secret-file"))]
    pub cursor_key_file: Option<PathBuf>,
    /// Read from `cursor_key_file` during `Config::load`; never serialised.
    #[serde(skip)]
    pub cursor_key: Option<Secret>,
    pub redis: RedisConfig,
    pub traces: TracesConfig,
}

/// `json` (one object per line, for machines) or `text` (for humans).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Text,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            log: "info".to_owned(),
            log_format: LogFormat::Json,
            drain_delay: Duration::ZERO,
            shutdown_timeout: Duration::from_secs(10),
            max_connections: 1024,
            write_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10),
            response_buffer_bytes: 16 * 1024 * 1024,
            cursor_key_file: None,
            cursor_key: None,
            redis: RedisConfig::default(),
            traces: TracesConfig::default(),
        }
    }
}

/// Why the configuration was refused. `Display` is one line naming the key and its origin.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{key} (from {origin}): {message}")]
    Invalid {
        key: String,
        origin: String,
        message: String,
    },
    #[error("configuration file {} ({origin}): {source}", path.display())]
    File {
        path: PathBuf,
        origin: &'static str,
        source: std::io::Error,
    },
}

/// Where the optional configuration file was named, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileOrigin {
    CommandLine,
    Environment,
}

impl FileOrigin {
    fn describe(self) -> &'static str {
        match self {
            Self::CommandLine => "named by --config",
            Self::Environment => "named by TSAPI_CONFIG",
        }
    }
}

impl Config {
    /// Loads the layers (defaults, then `file`, then the `OTEL_*` variables of
    /// `traces::OTEL_VARIABLES`, then the `TSAPI_*` ones), checks the result and reads the
    /// secret files.
    pub fn load(file: Option<(&Path, FileOrigin)>) -> Result<Self, ConfigError> {
        let mut figment = Figment::new();
        if let Some((path, origin)) = file {
            // figment treats a missing file as empty; a file the operator named must exist.
            fs::File::open(path).map_err(|source| ConfigError::File {
                path: path.to_owned(),
                origin: origin.describe(),
                source,
            })?;
            figment = figment.merge(Toml::file_exact(path));
        }
        let environment = Env::prefixed(ENV_PREFIX).split("__").ignore(&NOT_KEYS);
        Self::from_figment(&figment.merge(traces::OtelEnvironment).merge(environment))
    }

    /// Extracts a configuration from already layered sources, checks it and reads its secrets.
    pub fn from_figment(figment: &Figment) -> Result<Self, ConfigError> {
        let mut config: Self = figment
            .extract()
            .map_err(|error| describe_figment_error(figment, error))?;
        config.check(figment)?;
        config.read_secrets(figment)?;
        Ok(config)
    }

    /// Refuses values that parse but cannot work, naming the key and its layer.
    fn check(&self, figment: &Figment) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| invalid(figment, key, message);
        if self.listen == self.admin_listen && self.listen.port() != 0 {
            return Err(invalid(
                "admin_listen",
                format!("must differ from listen ({})", self.listen),
            ));
        }
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&self.log) {
            return Err(invalid("log", format!("not a log filter: {error}")));
        }
        if self.drain_delay > Duration::from_secs(300) {
            return Err(invalid("drain_delay", "must be at most 5m".into()));
        }
        if self.shutdown_timeout.is_zero() || self.shutdown_timeout > Duration::from_secs(300) {
            return Err(invalid(
                "shutdown_timeout",
                "must be more than 0 and at most 5m".into(),
            ));
        }

        if !(1..=MAX_CONNECTIONS_LIMIT).contains(&self.max_connections) {
            return Err(invalid(
                "max_connections",
                format!("must be from 1 to {MAX_CONNECTIONS_LIMIT}"),
            ));
        }
        let budget = api::room_for(api::MAX_LIMIT)..=MAX_RESPONSE_BUFFER_BYTES;
        if !budget.contains(&self.response_buffer_bytes) {
            return Err(invalid(
                "response_buffer_bytes",
                format!(
                    "must be from {} (room to build the largest page) to {} (1 GiB)",
                    budget.start(),
                    budget.end()
                ),
            ));
        }
        for (key, value, max, max_text) in [
            ("write_timeout", self.write_timeout, 300, "5m"),
            ("idle_timeout", self.idle_timeout, 300, "5m"),
        ] {
            if value.is_zero() || value > Duration::from_secs(max) {
                return Err(invalid(
                    key,
                    format!("must be more than 0 and at most {max_text}"),
                ));
            }
        }
        self.redis.check(&invalid)?;
        self.traces.check(&invalid)
    }

    /// Reads the files named by `cursor_key_file`, `redis.password_file` and
    /// `redis.sentinel.password_file` into the configuration (only here: never from a
    /// configuration source).
    fn read_secrets(&mut self, figment: &Figment) -> Result<(), ConfigError> {
        let unreadable = |key: &str, path: &Path, message: String| {
            invalid(figment, key, format!("{}: {message}", path.display()))
        };
        if let Some(path) = &self.cursor_key_file {
            let key = read_secret_file(path)
                .and_then(|key| {
                    if key.expose().len() < CURSOR_KEY_MIN_BYTES {
                        Err(format!("shorter than {CURSOR_KEY_MIN_BYTES} bytes"))
                    } else {
                        Ok(key)
                    }
                })
                .map_err(|message| unreadable("cursor_key_file", path, message))?;
            self.cursor_key = Some(key);
        }
        self.redis
            .read_secrets(&|key, message| invalid(figment, key, message))
    }

    /// The effective configuration as TOML, secrets left out: the output is itself a valid
    /// configuration file. A comment says whether a password was read.
    pub fn to_redacted_toml(&self) -> String {
        // Serialising plain structs of strings, numbers and tables cannot fail.
        let mut text = toml::to_string_pretty(self)
            .unwrap_or_else(|error| format!("# cannot render: {error}\n"));
        if self.redis.password.is_some() {
            text.push_str("# redis.password: [redacted], read from redis.password_file\n");
        }
        if self.redis.sentinel.password.is_some() {
            text.push_str(
                "# redis.sentinel.password: [redacted], read from redis.sentinel.password_file\n",
            );
        }
        if self.cursor_key.is_some() {
            text.push_str("# cursor key: [redacted], read from cursor_key_file\n");
        }
        text
    }
}

fn invalid(figment: &Figment, key: &str, message: String) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        origin: origin_of(figment, key),
        message,
    }
}

/// Turns figment's error into one line naming the key and the layer its value came from.
fn describe_figment_error(figment: &Figment, error: figment::Error) -> ConfigError {
    // For an unknown field, figment's path already ends with the field's name.
    let message = match &error.kind {
        Kind::UnknownField(field, _) if field == "password" => {
            // `redis.password` or `redis.sentinel.password`: the path names the section.
            let section = error.path[..error.path.len().saturating_sub(1)].join(".");
            format!(
                "is not accepted: the password is read only from the file named by \
                 {section}.password_file"
            )
        }
        Kind::UnknownField(_, expected) => {
            format!("unknown key; expected one of {}", expected.join(", "))
        }
        kind => kind.to_string(),
    };
    let key = if error.path.is_empty() {
        "(top level)".to_owned()
    } else {
        error.path.join(".")
    };
    ConfigError::Invalid {
        origin: origin_of(figment, &key),
        key,
        message,
    }
}

/// Names the layer that supplied `key`: an environment variable, a file, or the defaults.
fn origin_of(figment: &Figment, key: &str) -> String {
    let Some(metadata) = figment.find_metadata(key) else {
        return "built-in defaults".to_owned();
    };
    match &metadata.source {
        Some(figment::Source::File(path)) => format!("file {}", path.display()),
        _ if metadata.name == traces::OTEL_LAYER_NAME => format!(
            "environment variable {}",
            traces::otel_variable(key).unwrap_or("OTEL_*")
        ),
        _ => format!("environment variable {}", env_variable(key)),
    }
}

/// The `TSAPI_*` variable that sets `key` (`redis.tls.ca_file` is
/// `TSAPI_REDIS__TLS__CA_FILE`), as `Env::prefixed(ENV_PREFIX).split("__")` reads it.
pub fn env_variable(key: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        key.replace('.', "__").to_ascii_uppercase()
    )
}
