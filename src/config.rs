//! Configuration: one typed `Config`, layered from built-in defaults, an optional TOML file and
//! `TSAPI_*` environment variables (`__` separates nesting levels), validated once at start-up.
//!
//! Every error names the key and where its value came from, so an operator can fix a bad
//! deployment from one log line. The Redis password is only ever read from a file and is held
//! in a `Secret`, which cannot be printed.

use std::fmt;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::error::Kind;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};

/// Prefix of every environment variable the service reads.
pub const ENV_PREFIX: &str = "TSAPI_";
/// Environment variable naming the optional TOML file (same as `--config`).
pub const CONFIG_FILE_ENV: &str = "TSAPI_CONFIG";

/// `TSAPI_*` variables that are not configuration keys: the file path itself, and the git
/// revision, which is read at build time (a CI job may still export it when running tests).
const NOT_KEYS: [&str; 2] = ["config", "git_sha"];

/// Longest secret file accepted; a bigger file is a mistake, not a password or a key.
const SECRET_FILE_MAX_BYTES: u64 = 4096;

/// Shortest cursor key accepted: 256 bits, the size of HMAC-SHA256's output.
const CURSOR_KEY_MIN_BYTES: usize = 32;

/// Each connection costs a file descriptor and some buffers; past this a typo is likelier
/// than a plan.
const MAX_CONNECTIONS_LIMIT: usize = 100_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the API listener.
    pub listen: SocketAddr,
    /// Address of the admin listener (probes, metrics, version); keep it off public networks.
    pub admin_listen: SocketAddr,
    /// Log filter, in tracing's `EnvFilter` syntax (`info`, `warn,timestamp_api=debug`).
    pub log: String,
    pub log_format: LogFormat,
    /// After SIGTERM, how long to keep serving while /readyz says 503, so that load balancers
    /// stop sending traffic before the listener closes.
    #[serde(with = "duration")]
    pub drain_delay: Duration,
    /// Then, how long in-flight requests may take to finish before they are cut.
    #[serde(with = "duration")]
    pub shutdown_timeout: Duration,
    /// Most connections each listener holds open; a connection beyond them is answered 503 and
    /// closed at once.
    pub max_connections: usize,
    /// A response write that makes no progress for this long (a client that does not read)
    /// closes the connection.
    #[serde(with = "duration")]
    pub write_timeout: Duration,
    /// How long a connection may wait for (the rest of) its next request head: bounds idle
    /// keep-alive connections and clients that send headers slowly.
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// File holding the key that signs list cursors, shared by every replica so that each one
    /// accepts the others' cursors; without it each process draws a random key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor_key_file: Option<PathBuf>,
    /// Read from `cursor_key_file` during `Config::load`; never serialised.
    #[serde(skip)]
    pub cursor_key: Option<Secret>,
    pub redis: RedisConfig,
}

/// JSON lines for machines (the default), or a human-readable format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port/db` or `redis+unix:///path/to/socket`; never with credentials in it.
    pub url: String,
    /// ACL user to authenticate as; Redis' `default` user when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// File holding the password (trailing newline ignored). The only way to pass one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// Read from `password_file` during `Config::load`, never from a configuration source, and
    /// never serialised (so neither `config` output nor the start-up log can carry it).
    #[serde(skip)]
    pub password: Option<Secret>,
    /// Every key the service touches starts with this; the Redis ACL grants exactly `<prefix>*`.
    pub key_prefix: String,
    /// Bound on establishing a connection to Redis.
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    /// Bound on one API operation's work in Redis; past it the request answers 503.
    #[serde(with = "duration")]
    pub command_timeout: Duration,
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
            cursor_key_file: None,
            cursor_key: None,
            redis: RedisConfig::default(),
        }
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379/0".to_owned(),
            username: None,
            password_file: None,
            password: None,
            key_prefix: "ts:".to_owned(),
            connect_timeout: Duration::from_millis(250),
            command_timeout: Duration::from_millis(250),
        }
    }
}

/// A value that must never reach a log, an error message or `timestamp-api config` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
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
    /// Loads the layers (defaults, then `file`, then the process environment), validates the
    /// result and reads the password file.
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
        Self::from_figment(&figment.merge(environment))
    }

    /// Extracts and validates a configuration from already layered sources.
    pub fn from_figment(figment: &Figment) -> Result<Self, ConfigError> {
        let mut config: Self = figment
            .extract()
            .map_err(|error| describe_figment_error(figment, error))?;
        config.validate(figment)?;
        Ok(config)
    }

    fn validate(&mut self, figment: &Figment) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: key.to_owned(),
            origin: origin_of(figment, key),
            message,
        };
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
        for (key, value, max, max_text) in [
            ("write_timeout", self.write_timeout, 300, "5m"),
            ("idle_timeout", self.idle_timeout, 300, "5m"),
            (
                "redis.connect_timeout",
                self.redis.connect_timeout,
                60,
                "60s",
            ),
            (
                "redis.command_timeout",
                self.redis.command_timeout,
                60,
                "60s",
            ),
        ] {
            if value.is_zero() || value > Duration::from_secs(max) {
                return Err(invalid(
                    key,
                    format!("must be more than 0 and at most {max_text}"),
                ));
            }
        }
        if let Some(path) = &self.cursor_key_file {
            let key = read_secret_file(path)
                .and_then(|key| {
                    if key.expose().len() < CURSOR_KEY_MIN_BYTES {
                        Err(format!("shorter than {CURSOR_KEY_MIN_BYTES} bytes"))
                    } else {
                        Ok(key)
                    }
                })
                .map_err(|message| {
                    invalid("cursor_key_file", format!("{}: {message}", path.display()))
                })?;
            self.cursor_key = Some(key);
        }

        let redis = &mut self.redis;

        let url = redis::IntoConnectionInfo::into_connection_info(redis.url.as_str())
            // The URL is not echoed: a rejected one may well hold a password.
            .map_err(|error| invalid("redis.url", format!("not a usable Redis URL: {error}")))?;
        let settings = url.redis_settings();
        if settings.username().is_some() || settings.password().is_some() {
            return Err(invalid(
                "redis.url",
                "must not carry credentials; set redis.username and redis.password_file".into(),
            ));
        }

        if let Some(username) = &redis.username
            && (username.is_empty()
                || username.contains(|c: char| c.is_whitespace() || c.is_control()))
        {
            return Err(invalid(
                "redis.username",
                "must be non-empty, without spaces or control characters".into(),
            ));
        }

        let prefix = &redis.key_prefix;
        if prefix.is_empty()
            || prefix.len() > 64
            || prefix
                .contains(|c: char| "*?[]\\".contains(c) || c.is_whitespace() || c.is_control())
        {
            return Err(invalid(
                "redis.key_prefix",
                "must be 1 to 64 characters, without glob characters (* ? [ ] \\) or spaces".into(),
            ));
        }

        if let Some(path) = &redis.password_file {
            let password = read_secret_file(path).map_err(|message| {
                invalid(
                    "redis.password_file",
                    format!("{}: {message}", path.display()),
                )
            })?;
            redis.password = Some(password);
        }
        Ok(())
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
        if self.cursor_key.is_some() {
            text.push_str("# cursor key: [redacted], read from cursor_key_file\n");
        }
        text
    }
}

/// Reads a one-line secret (a password, the cursor key); a trailing newline is not part of it.
fn read_secret_file(path: &Path) -> Result<Secret, String> {
    let metadata = fs::metadata(path).map_err(|error| error.to_string())?;
    if !metadata.is_file() {
        return Err("not a regular file".into());
    }
    if metadata.len() > SECRET_FILE_MAX_BYTES {
        return Err(format!("larger than {SECRET_FILE_MAX_BYTES} bytes"));
    }
    let raw = fs::read_to_string(path).map_err(|error| error.to_string())?;
    let password = raw.strip_suffix('\n').unwrap_or(&raw);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        return Err("is empty".into());
    }
    if password.contains(['\n', '\r']) {
        return Err("holds more than one line".into());
    }
    Ok(Secret::new(password))
}

/// Turns figment's error into one line naming the key and the layer its value came from.
fn describe_figment_error(figment: &Figment, error: figment::Error) -> ConfigError {
    // For an unknown field, figment's path already ends with the field's name.
    let message = match &error.kind {
        Kind::UnknownField(field, _) if field == "password" => {
            "is not accepted: the password is read only from the file named by \
             redis.password_file"
                .to_owned()
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
        _ => format!(
            "environment variable {ENV_PREFIX}{}",
            key.replace('.', "__").to_ascii_uppercase()
        ),
    }
}

/// Durations are written with a unit: `250ms`, `10s` or `2m`.
mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        let ms = value.as_millis();
        if ms.is_multiple_of(1000) {
            serializer.serialize_str(&format!("{}s", ms / 1000))
        } else {
            serializer.serialize_str(&format!("{ms}ms"))
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(u64),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Text(text) => parse(&text).map_err(D::Error::custom),
            Raw::Number(0) => Ok(Duration::ZERO),
            Raw::Number(n) => Err(D::Error::custom(format!(
                "a duration needs a unit: \"{n}ms\", \"{n}s\" or \"{n}m\""
            ))),
        }
    }

    pub fn parse(text: &str) -> Result<Duration, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: u64 = number.parse().map_err(|_| {
            format!("\"{text}\" is not a duration such as \"250ms\", \"10s\" or \"2m\"")
        })?;
        let ms = match unit {
            "ms" => Some(number),
            "s" => number.checked_mul(1000),
            "m" => number.checked_mul(60_000),
            "" if number == 0 => Some(0),
            _ => return Err(format!("\"{text}\" has no unit; use ms, s or m")),
        };
        ms.map(Duration::from_millis)
            .ok_or_else(|| format!("\"{text}\" is too long"))
    }
}

#[cfg(test)]
// figment's `Jail` fixes the closures' error type; its size does not matter in tests.
#[allow(clippy::result_large_err)]
mod tests {
    use figment::Jail;

    use super::*;

    fn load_in(jail: &Jail, file: Option<&str>) -> Result<Config, ConfigError> {
        let path = file.map(|name| jail.directory().join(name));
        Config::load(path.as_deref().map(|path| (path, FileOrigin::CommandLine)))
    }

    fn error_in(jail: &Jail, file: Option<&str>) -> String {
        match load_in(jail, file) {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn defaults_listen_locally() {
        Jail::expect_with(|jail| {
            let config = load_in(jail, None).unwrap();
            assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
            assert_eq!(config.admin_listen.to_string(), "127.0.0.1:9090");
            assert_eq!(config.log, "info");
            assert_eq!(config.log_format, LogFormat::Json);
            assert_eq!(config.drain_delay, Duration::ZERO);
            assert_eq!(config.shutdown_timeout, Duration::from_secs(10));
            assert_eq!(config.redis.url, "redis://127.0.0.1:6379/0");
            assert_eq!(config.redis.key_prefix, "ts:");
            assert!(config.redis.command_timeout < Duration::from_secs(1));
            assert!(config.redis.connect_timeout < Duration::from_secs(1));
            assert!(config.redis.password.is_none());
            Ok(())
        });
    }

    #[test]
    fn environment_overrides_file_overrides_defaults() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "tsapi.toml",
                r#"
                listen = "0.0.0.0:9000"
                [redis]
                url = "redis://file-host:6379/0"
                key_prefix = "file:"
                "#,
            )?;
            jail.set_env("TSAPI_REDIS__URL", "redis://env-host:6380/0");
            jail.set_env("TSAPI_REDIS__COMMAND_TIMEOUT", "400ms");
            let config = load_in(jail, Some("tsapi.toml")).unwrap();
            assert_eq!(config.listen.to_string(), "0.0.0.0:9000");
            assert_eq!(config.redis.url, "redis://env-host:6380/0");
            assert_eq!(config.redis.key_prefix, "file:");
            assert_eq!(config.redis.command_timeout, Duration::from_millis(400));
            Ok(())
        });
    }

    #[test]
    fn a_bad_environment_value_names_the_variable() {
        Jail::expect_with(|jail| {
            jail.set_env("TSAPI_LISTEN", "not-an-address");
            let error = error_in(jail, None);
            assert!(
                error.starts_with("listen (from environment variable TSAPI_LISTEN)"),
                "{error}"
            );
            Ok(())
        });
    }

    #[test]
    fn a_bad_file_value_names_the_file() {
        Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "[redis]\nconnect_timeout = \"soon\"\n")?;
            let error = error_in(jail, Some("bad.toml"));
            assert!(
                error.starts_with("redis.connect_timeout (from file "),
                "{error}"
            );
            assert!(error.contains("bad.toml"), "{error}");
            assert!(error.contains("\"soon\""), "{error}");
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_refused_wherever_they_come_from() {
        Jail::expect_with(|jail| {
            jail.set_env("TSAPI_REDIS__HOST", "x");
            let error = error_in(jail, None);
            assert!(
                error.starts_with(
                    "redis.host (from environment variable TSAPI_REDIS__HOST): unknown key"
                ),
                "{error}"
            );
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.create_file("typo.toml", "lisen = \"127.0.0.1:1\"\n")?;
            let error = error_in(jail, Some("typo.toml"));
            assert!(error.starts_with("lisen (from file "), "{error}");
            Ok(())
        });
    }

    #[test]
    fn the_config_path_and_git_sha_variables_are_not_keys() {
        Jail::expect_with(|jail| {
            jail.set_env("TSAPI_CONFIG", "/nonexistent.toml");
            jail.set_env("TSAPI_GIT_SHA", "abc123");
            load_in(jail, None).unwrap();
            Ok(())
        });
    }

    #[test]
    fn a_password_from_the_environment_is_refused_with_a_hint() {
        Jail::expect_with(|jail| {
            jail.set_env("TSAPI_REDIS__PASSWORD", "hunter2");
            let error = error_in(jail, None);
            assert!(
                error.starts_with("redis.password (from environment variable"),
                "{error}"
            );
            assert!(error.contains("redis.password_file"), "{error}");
            assert!(!error.contains("hunter2"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn credentials_in_the_url_are_refused_without_echoing_them() {
        Jail::expect_with(|jail| {
            jail.set_env("TSAPI_REDIS__URL", "redis://app:hunter2@redis:6379/0");
            let error = error_in(jail, None);
            assert!(error.starts_with("redis.url (from environment variable TSAPI_REDIS__URL)"));
            assert!(!error.contains("hunter2"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn the_password_comes_from_its_file_and_is_never_printed() {
        Jail::expect_with(|jail| {
            jail.create_file("password", "s3cr3t-value\n")?;
            jail.set_env("TSAPI_REDIS__USERNAME", "app");
            jail.set_env(
                "TSAPI_REDIS__PASSWORD_FILE",
                jail.directory().join("password").display(),
            );
            let config = load_in(jail, None).unwrap();
            assert_eq!(
                config.redis.password.as_ref().map(Secret::expose),
                Some("s3cr3t-value")
            );
            for shown in [format!("{config:?}"), config.to_redacted_toml()] {
                assert!(!shown.contains("s3cr3t"), "{shown}");
                assert!(shown.contains("[redacted]"), "{shown}");
            }
            Ok(())
        });
    }

    #[test]
    fn the_cursor_key_comes_from_its_file_is_long_enough_and_is_never_printed() {
        Jail::expect_with(|jail| {
            let key = "k".repeat(40);
            jail.create_file("cursor_key", &format!("{key}\n"))?;
            jail.create_file("short_key", "sixteen-bytes-ok\n")?;
            jail.set_env(
                "TSAPI_CURSOR_KEY_FILE",
                jail.directory().join("cursor_key").display(),
            );
            let config = load_in(jail, None).unwrap();
            assert_eq!(
                config.cursor_key.as_ref().map(Secret::expose),
                Some(key.as_str())
            );
            for shown in [format!("{config:?}"), config.to_redacted_toml()] {
                assert!(!shown.contains(&key), "{shown}");
                assert!(shown.contains("[redacted]"), "{shown}");
            }
            jail.set_env(
                "TSAPI_CURSOR_KEY_FILE",
                jail.directory().join("short_key").display(),
            );
            let error = error_in(jail, None);
            assert!(error.contains("shorter than 32 bytes"), "{error}");
            assert!(!error.contains("sixteen"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn unreadable_or_empty_password_files_are_refused() {
        Jail::expect_with(|jail| {
            jail.set_env("TSAPI_REDIS__PASSWORD_FILE", "/nonexistent/password");
            let error = error_in(jail, None);
            assert!(
                error.starts_with("redis.password_file (from environment variable TSAPI_REDIS__PASSWORD_FILE): /nonexistent/password: "),
                "{error}"
            );
            jail.create_file("empty", "\n")?;
            jail.set_env(
                "TSAPI_REDIS__PASSWORD_FILE",
                jail.directory().join("empty").display(),
            );
            assert!(error_in(jail, None).ends_with("is empty"));
            Ok(())
        });
    }

    #[test]
    fn a_missing_config_file_is_an_error_when_named() {
        Jail::expect_with(|jail| {
            let error = error_in(jail, Some("absent.toml"));
            assert!(error.starts_with("configuration file "), "{error}");
            assert!(error.contains("absent.toml (named by --config)"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn the_key_prefix_cannot_hold_glob_characters() {
        Jail::expect_with(|jail| {
            jail.set_env("TSAPI_REDIS__KEY_PREFIX", "ts*");
            assert!(error_in(jail, None).starts_with("redis.key_prefix (from environment"));
            Ok(())
        });
    }

    #[test]
    fn timeouts_must_be_positive_and_bounded() {
        Jail::expect_with(|jail| {
            jail.set_env("TSAPI_REDIS__COMMAND_TIMEOUT", "0ms");
            assert!(error_in(jail, None).starts_with("redis.command_timeout"));
            jail.set_env("TSAPI_REDIS__COMMAND_TIMEOUT", "5m");
            assert!(error_in(jail, None).starts_with("redis.command_timeout"));
            jail.set_env("TSAPI_REDIS__COMMAND_TIMEOUT", "250");
            assert!(error_in(jail, None).contains("needs a unit"));
            Ok(())
        });
    }

    #[test]
    fn operability_keys_come_from_the_documented_variables() {
        Jail::expect_with(|jail| {
            jail.set_env("TSAPI_ADMIN_LISTEN", "0.0.0.0:9191");
            jail.set_env("TSAPI_LOG", "warn,timestamp_api=debug");
            jail.set_env("TSAPI_LOG_FORMAT", "text");
            jail.set_env("TSAPI_DRAIN_DELAY", "5s");
            jail.set_env("TSAPI_SHUTDOWN_TIMEOUT", "20s");
            let config = load_in(jail, None).unwrap();
            assert_eq!(config.admin_listen.to_string(), "0.0.0.0:9191");
            assert_eq!(config.log, "warn,timestamp_api=debug");
            assert_eq!(config.log_format, LogFormat::Text);
            assert_eq!(config.drain_delay, Duration::from_secs(5));
            assert_eq!(config.shutdown_timeout, Duration::from_secs(20));
            Ok(())
        });
    }

    #[test]
    fn operability_values_are_checked() {
        for (variable, value, key) in [
            ("TSAPI_LOG_FORMAT", "xml", "log_format"),
            ("TSAPI_LOG", "info,[", "log"),
            ("TSAPI_ADMIN_LISTEN", "127.0.0.1:8080", "admin_listen"),
            ("TSAPI_SHUTDOWN_TIMEOUT", "0s", "shutdown_timeout"),
            ("TSAPI_DRAIN_DELAY", "10m", "drain_delay"),
            ("TSAPI_MAX_CONNECTIONS", "0", "max_connections"),
            ("TSAPI_MAX_CONNECTIONS", "1000000", "max_connections"),
            ("TSAPI_WRITE_TIMEOUT", "0s", "write_timeout"),
            ("TSAPI_IDLE_TIMEOUT", "6m", "idle_timeout"),
            (
                "TSAPI_CURSOR_KEY_FILE",
                "/nonexistent/cursor_key",
                "cursor_key_file",
            ),
        ] {
            Jail::expect_with(|jail| {
                jail.set_env(variable, value);
                let error = error_in(jail, None);
                assert!(
                    error.starts_with(&format!("{key} (from environment variable {variable})")),
                    "{error}"
                );
                Ok(())
            });
        }
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(duration::parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(duration::parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(duration::parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration::parse("0"), Ok(Duration::ZERO));
        assert!(duration::parse("10").is_err());
        assert!(duration::parse("1h").is_err());
        assert!(duration::parse("-1s").is_err());
        assert!(duration::parse("s").is_err());
    }

    #[test]
    fn the_redacted_rendering_reads_back_as_the_same_configuration() {
        let mut config = Config::default();
        config.redis.password_file = Some("/run/secrets/redis_password".into());
        config.redis.password = Some(Secret::new("s3cr3t"));
        let shown = config.to_redacted_toml();
        assert!(!shown.contains("s3cr3t"), "{shown}");
        let mut again: Config = toml::from_str(&shown).unwrap();
        again.redis.password = config.redis.password.clone();
        assert_eq!(again.to_redacted_toml(), shown);
    }
}
