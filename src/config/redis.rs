//! The `[redis]` section: where the data lives (a URL, the primary that Sentinel names, or a
//! Redis Cluster found from its seed nodes), how to authenticate, the timeouts, and how many replicas must have a write before it is
//! acknowledged. Checked once at start-up, like the rest of the configuration.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::duration;
use super::secret::{Secret, read_secret_file};

/// Beyond this many replicas a typo is likelier than a topology.
pub const MAX_REPLICA_ACKS: u32 = 16;

/// The `[redis]` section.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port/db`, `rediss://host:port/db` (TLS, set up by `redis.tls`) or
    /// `redis+unix:///path/to/socket`. Must not contain a username or password. With Sentinel,
    /// only its scheme and database number are used: the address is the one Sentinel names,
    /// and `rediss://` means TLS to the Sentinels and to every data node. With
    /// `redis.cluster.addresses`, only its scheme is used, and the database must be 0.
    pub url: String,
    /// ACL user to authenticate as on the data nodes; unset, Redis' `default` user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// File holding the password; one trailing newline is ignored. **The only way to give a
    /// password.**
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "secret-file"))]
    pub password_file: Option<PathBuf>,
    /// Read from `password_file` during `Config::load`, never from a configuration source, and
    /// never serialised (so neither `config` output nor the start-up log can carry it).
    #[serde(skip)]
    pub password: Option<Secret>,
    /// Prefix of every key the service touches; 1 to 64 characters without `* ? [ ] \` or
    /// spaces. The Redis ACL grants exactly `~<prefix>*`.
    pub key_prefix: String,
    /// Bound on opening a connection to Redis (and on each question to a Sentinel); above 0
    /// and at most `60s`.
    #[serde(with = "duration")]
    #[schemars(with = "String", extend("format" = "duration"))]
    pub connect_timeout: Duration,
    /// Bound on one API operation's work in Redis, retries after a failover included
    /// ([architecture.md](architecture.md#sentinel-and-failover)); past it the request
    /// answers 503. Above 0 and at most `60s`.
    #[serde(with = "duration")]
    #[schemars(with = "String", extend("format" = "duration"))]
    pub command_timeout: Duration,
    pub sentinel: SentinelConfig,
    pub cluster: ClusterConfig,
    pub tls: TlsConfig,
    /// Above 0, a PUT or DELETE is acknowledged only once that many replicas have it (Redis
    /// `WAIT`, sent right after the write on the same connection); otherwise the answer is
    /// `503 not-replicated` ([api.md](api.md#not-replicated)): the write was applied on the
    /// primary, and may or may not survive a failover. At 0 no `WAIT` is sent. The Redis ACL
    /// must allow `+wait` when this is above 0.
    #[schemars(range(min = 0, max = MAX_REPLICA_ACKS))]
    pub min_replica_acks: u32,
    /// How long that `WAIT` may wait: 1 ms to 30 s, and, when `redis.min_replica_acks` is
    /// above 0, at most half of `redis.command_timeout`, so that the write itself keeps the
    /// other half of the request's deadline and a shortfall is answered as `not-replicated`
    /// rather than as a timeout. Writes then go on a connection of their own, where each
    /// queues behind the previous write's `WAIT` (Redis holds the connection), so keep it
    /// short; reads and readiness checks are not held up.
    #[serde(with = "duration")]
    #[schemars(with = "String", extend("format" = "duration"))]
    pub replica_ack_timeout: Duration,
}

/// The `[redis.sentinel]` section: Sentinels to ask for the current primary; both `addresses`
/// and `master`, or neither.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SentinelConfig {
    /// The Sentinels to ask for the primary: comma-separated `host:port`
    /// (`sentinel-0:26379,sentinel-1:26379`; an IPv6 host in brackets), or a TOML array of such
    /// strings. Set with `redis.sentinel.master`, or neither.
    #[serde(deserialize_with = "addresses", skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<String>", extend("format" = "host-port-list"))]
    pub addresses: Vec<HostPort>,
    /// The name the Sentinels monitor the primary under (`sentinel monitor <name> …`);
    /// non-empty, without spaces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    /// The Sentinels' password, read from `password_file` during `Config::load` and never
    /// serialised, like `redis.password`.
    #[serde(skip)]
    pub password: Option<Secret>,
    /// ACL user for the Sentinels themselves, if they require authentication (`requirepass`
    /// or an ACL on the Sentinels). The data nodes' credentials stay `redis.username` and
    /// `redis.password_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// File holding the Sentinels' password, read like `redis.password_file`. Only with
    /// `redis.sentinel.addresses`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "secret-file"))]
    pub password_file: Option<PathBuf>,
}

/// The `[redis.cluster]` section: a Redis Cluster (or Valkey cluster) instead of one primary.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Seed nodes of a Redis Cluster, asked for the slot map at start and whenever it changes:
    /// comma-separated `host:port` (`redis-0:6379,redis-1:6379`), or a TOML array of such
    /// strings; any few nodes of the cluster will do. Set, the service runs in cluster mode
    /// ([architecture.md](architecture.md#redis-cluster)), with `redis.username`,
    /// `redis.password_file`, `redis.tls` and the timeouts as for one node; not with
    /// `redis.sentinel`.
    #[serde(deserialize_with = "addresses", skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<String>", extend("format" = "host-port-list"))]
    pub addresses: Vec<HostPort>,
}

/// The `[redis.tls]` section: whom to trust and what to show on the TLS connections a
/// `rediss://` URL makes (to the data nodes and the Sentinels). Every file is read again for
/// each new connection, so a renewed certificate is used at the next reconnect; one that no
/// longer parses is refused with a warning, and the last good set stays in use. There is no
/// switch that turns verification off.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the certificate authorities that sign the servers' certificates (a managed
    /// provider's CA bundle, or your own); unset, the platform's roots (`SSL_CERT_FILE`, or
    /// `/etc/ssl/certs`), which the service's image does not carry. Only with `rediss://`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "credential-file"))]
    pub ca_file: Option<PathBuf>,
    /// PEM file of the client certificate (and its chain) shown to servers that ask for one
    /// (`tls-auth-clients yes`); set with `redis.tls.client_key_file`, or neither.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "credential-file"))]
    pub client_cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key (PKCS#8, PKCS#1 or SEC1). A secret:
    /// read from the file, never logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "secret-file"))]
    pub client_key_file: Option<PathBuf>,
    /// The name to send as SNI and to verify the server's certificate against, when it differs
    /// from the host in the URL or the address Sentinel names (a DNS name or an IP address);
    /// unset, that host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

impl SentinelConfig {
    /// The Sentinels and the master name, when Sentinel is configured.
    pub fn enabled(&self) -> Option<(&[HostPort], &str)> {
        match (&self.addresses[..], &self.master) {
            ([], _) | (_, None) => None,
            (addresses, Some(master)) => Some((addresses, master)),
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
            sentinel: SentinelConfig::default(),
            cluster: ClusterConfig::default(),
            tls: TlsConfig::default(),
            min_replica_acks: 0,
            replica_ack_timeout: Duration::from_millis(100),
        }
    }
}

/// A `host:port` pair (an IPv6 host in brackets), as Sentinel addresses are written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl FromStr for HostPort {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` is not host:port");
        let (host, port) = text.trim().rsplit_once(':').ok_or_else(bad)?;
        let host = host
            .strip_prefix('[')
            .and_then(|inner| inner.strip_suffix(']'))
            .unwrap_or(host);
        let port = port.parse::<u16>().ok().filter(|port| *port > 0);
        match port {
            Some(port)
                if !host.is_empty()
                    && !host.contains(|c: char| c.is_whitespace() || c == '/' || c == '@') =>
            {
                Ok(Self {
                    host: host.to_owned(),
                    port,
                })
            }
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl Serialize for HostPort {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A list of `host:port`, from an array or from one comma-separated string.
fn addresses<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<HostPort>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        One(String),
        Many(Vec<String>),
    }
    let items = match Raw::deserialize(deserializer)? {
        Raw::One(text) => text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_owned)
            .collect(),
        Raw::Many(items) => items,
    };
    items
        .iter()
        .map(|item| item.parse().map_err(serde::de::Error::custom))
        .collect()
}

/// Makes a refusal that names a key (and, through the figment, its layer).
pub(super) type Refuse<'a> = &'a dyn Fn(&str, String) -> super::ConfigError;

impl RedisConfig {
    /// Refuses values that parse but cannot work.
    pub(super) fn check(&self, refuse: Refuse<'_>) -> Result<(), super::ConfigError> {
        for (key, value) in [
            ("redis.connect_timeout", self.connect_timeout),
            ("redis.command_timeout", self.command_timeout),
        ] {
            if value.is_zero() || value > Duration::from_secs(60) {
                return Err(refuse(key, "must be more than 0 and at most 60s".into()));
            }
        }

        let url = ::redis::IntoConnectionInfo::into_connection_info(self.url.as_str())
            // The URL is not echoed: a rejected one may well hold a password.
            .map_err(|error| refuse("redis.url", format!("not a usable Redis URL: {error}")))?;
        let settings = url.redis_settings();
        if settings.username().is_some() || settings.password().is_some() {
            return Err(refuse(
                "redis.url",
                "must not carry credentials; set redis.username and redis.password_file".into(),
            ));
        }
        check_username("redis.username", self.username.as_deref(), refuse)?;
        if let ::redis::ConnectionAddr::TcpTls { insecure: true, .. } = url.addr() {
            return Err(refuse(
                "redis.url",
                "#insecure is not supported: certificates are always verified; set \
                 redis.tls.ca_file (and redis.tls.server_name) to what the server shows"
                    .into(),
            ));
        }
        self.check_tls(
            matches!(url.addr(), ::redis::ConnectionAddr::TcpTls { .. }),
            refuse,
        )?;

        let prefix = &self.key_prefix;
        if prefix.is_empty()
            || prefix.len() > 64
            || prefix
                .contains(|c: char| "*?[]\\".contains(c) || c.is_whitespace() || c.is_control())
        {
            return Err(refuse(
                "redis.key_prefix",
                "must be 1 to 64 characters, without glob characters (* ? [ ] \\) or spaces".into(),
            ));
        }

        self.check_sentinel(refuse)?;
        self.check_cluster(url.redis_settings().db(), refuse)?;
        self.check_replica_acks(refuse)
    }

    fn check_cluster(&self, database: i64, refuse: Refuse<'_>) -> Result<(), super::ConfigError> {
        if self.cluster.addresses.is_empty() {
            return Ok(());
        }
        refuse_if_set(
            &[
                (
                    "redis.sentinel.addresses",
                    !self.sentinel.addresses.is_empty(),
                ),
                ("redis.tls.server_name", self.tls.server_name.is_some()),
            ],
            "cannot be used with redis.cluster.addresses (a cluster names its own nodes)",
            refuse,
        )?;
        if database != 0 {
            return Err(refuse(
                "redis.url",
                "must name database 0 (or none) with redis.cluster.addresses: a cluster has no \
                 other"
                    .into(),
            ));
        }
        // A hash tag in the prefix would hash every key by the tag alone: one slot, one shard.
        if let Some(open) = self.key_prefix.find('{')
            && self.key_prefix[open + 1..]
                .find('}')
                .is_some_and(|len| len > 0)
        {
            return Err(refuse(
                "redis.key_prefix",
                "must not hold a {hash tag} with redis.cluster.addresses: every key would land \
                 in one slot, on one shard"
                    .into(),
            ));
        }
        Ok(())
    }

    fn check_sentinel(&self, refuse: Refuse<'_>) -> Result<(), super::ConfigError> {
        let sentinel = &self.sentinel;
        both_or_neither(
            ("redis.sentinel.addresses", !sentinel.addresses.is_empty()),
            ("redis.sentinel.master", sentinel.master.is_some()),
            refuse,
        )?;
        match &sentinel.master {
            None => refuse_if_set(
                &[
                    ("redis.sentinel.username", sentinel.username.is_some()),
                    (
                        "redis.sentinel.password_file",
                        sentinel.password_file.is_some(),
                    ),
                ],
                "is only used with redis.sentinel.addresses and redis.sentinel.master",
                refuse,
            )?,
            Some(master) => {
                if master.is_empty()
                    || master.contains(|c: char| c.is_whitespace() || c.is_control())
                {
                    return Err(refuse(
                        "redis.sentinel.master",
                        "must be non-empty, without spaces or control characters".into(),
                    ));
                }
            }
        }
        check_username(
            "redis.sentinel.username",
            sentinel.username.as_deref(),
            refuse,
        )
    }

    fn check_tls(&self, url_is_tls: bool, refuse: Refuse<'_>) -> Result<(), super::ConfigError> {
        let tls = &self.tls;
        if !url_is_tls {
            refuse_if_set(
                &[
                    ("redis.tls.ca_file", tls.ca_file.is_some()),
                    ("redis.tls.client_cert_file", tls.client_cert_file.is_some()),
                    ("redis.tls.client_key_file", tls.client_key_file.is_some()),
                    ("redis.tls.server_name", tls.server_name.is_some()),
                ],
                "is only used with a rediss:// redis.url (TLS)",
                refuse,
            )?;
        }
        both_or_neither(
            ("redis.tls.client_cert_file", tls.client_cert_file.is_some()),
            ("redis.tls.client_key_file", tls.client_key_file.is_some()),
            refuse,
        )?;
        if let Some(name) = &tls.server_name
            && crate::tls::server_name(name).is_err()
        {
            return Err(refuse(
                "redis.tls.server_name",
                "must be a DNS name or an IP address".into(),
            ));
        }
        Ok(())
    }

    fn check_replica_acks(&self, refuse: Refuse<'_>) -> Result<(), super::ConfigError> {
        if self.min_replica_acks > MAX_REPLICA_ACKS {
            return Err(refuse(
                "redis.min_replica_acks",
                format!("must be from 0 to {MAX_REPLICA_ACKS}"),
            ));
        }
        // WAIT counts in whole milliseconds, and 0 would mean "wait forever".
        if self.replica_ack_timeout < Duration::from_millis(1)
            || self.replica_ack_timeout > Duration::from_secs(30)
        {
            return Err(refuse(
                "redis.replica_ack_timeout",
                "must be at least 1ms and at most 30s".into(),
            ));
        }
        // Checked only when WAIT is sent, so that lowering command_timeout alone never stops
        // a service that does not use it.
        if self.min_replica_acks > 0 && self.replica_ack_timeout > self.command_timeout / 2 {
            return Err(refuse(
                "redis.replica_ack_timeout",
                format!(
                    "must be at most half of redis.command_timeout ({}) when \
                     redis.min_replica_acks is above 0",
                    humantime::format_duration(self.command_timeout)
                ),
            ));
        }
        Ok(())
    }

    /// Reads the data nodes' and the Sentinels' password files.
    pub(super) fn read_secrets(&mut self, refuse: Refuse<'_>) -> Result<(), super::ConfigError> {
        let read = |key: &str, path: &Path| {
            read_secret_file(path)
                .map_err(|message| refuse(key, format!("{}: {message}", path.display())))
        };
        if let Some(path) = &self.password_file {
            self.password = Some(read("redis.password_file", path)?);
        }
        if let Some(path) = &self.sentinel.password_file {
            self.sentinel.password = Some(read("redis.sentinel.password_file", path)?);
        }
        // Read once here so that a bad file stops the start with its key named; later reads
        // (at each new connection) keep the last good set instead.
        if self.tls_enabled() {
            crate::tls::Material::read(&self.tls)
                .map_err(|error| refuse(error.key, error.message))?;
        }
        Ok(())
    }
}

impl RedisConfig {
    /// Whether the URL asks for TLS (`rediss://`).
    pub fn tls_enabled(&self) -> bool {
        ::redis::IntoConnectionInfo::into_connection_info(self.url.as_str())
            .is_ok_and(|info| matches!(info.addr(), ::redis::ConnectionAddr::TcpTls { .. }))
    }
}

/// Refuses the first of `keys` that is set, with `message`.
fn refuse_if_set(
    keys: &[(&str, bool)],
    message: &str,
    refuse: Refuse<'_>,
) -> Result<(), super::ConfigError> {
    match keys.iter().find(|(_, set)| *set) {
        Some((key, _)) => Err(refuse(key, message.into())),
        None => Ok(()),
    }
}

/// Refuses one of two keys set without the other, naming the one that is set (whose origin the
/// message can then show).
fn both_or_neither(
    first: (&str, bool),
    second: (&str, bool),
    refuse: Refuse<'_>,
) -> Result<(), super::ConfigError> {
    match (first, second) {
        ((set, true), (unset, false)) | ((unset, false), (set, true)) => Err(refuse(
            set,
            format!("is set but {unset} is not; set both or neither"),
        )),
        _ => Ok(()),
    }
}

fn check_username(
    key: &str,
    username: Option<&str>,
    refuse: Refuse<'_>,
) -> Result<(), super::ConfigError> {
    match username {
        Some(username)
            if username.is_empty()
                || username.contains(|c: char| c.is_whitespace() || c.is_control()) =>
        {
            Err(refuse(
                key,
                "must be non-empty, without spaces or control characters".into(),
            ))
        }
        _ => Ok(()),
    }
}
