//! The Redis store: the only module that knows key names, how values are encoded and which
//! commands are sent.
//!
//! A timestamp lives at `<key_prefix><name>` as an integer of epoch milliseconds, so any Redis
//! client can read it. The service only ever sends GET, SET, DEL, SCAN, MGET and PING (plus
//! AUTH while connecting), `WAIT` when `redis.min_replica_acks` is above 0, and `INFO
//! replication` with Sentinel; the deployment's ACL allows exactly these, and integration
//! tests run the whole API against such ACLs.
//!
//! One multiplexed connection to the primary carries every request: concurrent commands are
//! pipelined on it. `link.rs` keeps it (and finds the primary through Sentinel, `sentinel.rs`);
//! `list.rs` reads pages. On a Redis Cluster, `cluster.rs` does all of that instead, on
//! connections of its own to each node (ADR 0011), and also sends `CLUSTER SLOTS`, `CLUSTER
//! INFO`, `CLUSTER NODES` and `CLUSTER GETKEYSINSLOT`. Every operation is bounded by
//! `redis.command_timeout`, so a dead or stalled Redis costs a caller that long at most, never
//! a hang.
//!
//! Within that deadline an operation is tried again on a new connection when that cannot
//! change its outcome: after READONLY (the node refused the command without running it: it was
//! demoted), and, for reads, after a lost connection. A write whose connection was lost is not
//! sent again: it may have been applied, and a second `SET … GET` or `DEL` would answer
//! differently from the first (200 for 201, 404 for 204); the client gets a 503 and decides.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::aio::MultiplexedConnection;
use redis::{Cmd, FromRedisValue, IntoConnectionInfo, RedisError, ToRedisArgs};
use tracing::Instrument;

use crate::config::RedisConfig;
use crate::cursor::Cursor;
use crate::domain::{Name, Timestamp};
use crate::metrics::Metrics;
use crate::telemetry::traces;
use crate::tls::{MaterialError, Tls};

mod cluster;
mod connector;
mod dial;
mod link;
mod list;
mod replication;
mod sentinel;

use cluster::Cluster;
pub use cluster::MAX_KEYS_PER_SLOT;
pub use dial::ConnectFailure;
use dial::Dialer;
use link::{Connected, Link, Target, Timeouts, Trouble};
pub use list::Page;
use sentinel::Sentinels;

#[derive(Clone)]
pub struct Store {
    backend: Backend,
    prefix: Arc<str>,
    command_timeout: Duration,
    replica_acks: Option<ReplicaAcks>,
    metrics: Metrics,
}

/// What the data lives on.
#[derive(Clone)]
enum Backend {
    /// One primary, at a URL or where Sentinel says.
    Node(Link),
    Cluster(Arc<Cluster>),
}

/// `WAIT <count> <timeout>` after each write.
#[derive(Debug, Clone, Copy)]
struct ReplicaAcks {
    count: u32,
    timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("Redis did not complete the operation within {0:?}")]
    Timeout(Duration),
    /// The deadline passed without a connection, and the last attempt to make one failed.
    #[error("no connection to Redis within {after:?}: {} ({})", .cause.hint(), .cause.label())]
    Unreachable {
        after: Duration,
        cause: ConnectFailure,
    },
    #[error(transparent)]
    Tls(#[from] MaterialError),
    #[error("Redis command failed: {0}")]
    Redis(#[from] RedisError),
    #[error("key {key} does not hold a timestamp in epoch milliseconds")]
    CorruptValue { key: String },
    #[error("the write reached {acked} of {wanted} replicas in time")]
    NotReplicated { acked: u32, wanted: u32 },
    #[error("the task that keeps the Redis connection has stopped")]
    Disconnected,
    /// The cluster does not serve every slot, or a shard's primary does not answer.
    #[error("the Redis Cluster is not whole: {0}")]
    ClusterDegraded(String),
    #[error(
        "slot {slot} of the Redis Cluster holds more than {MAX_KEYS_PER_SLOT} keys, more than \
         a listing reads from one slot"
    )]
    SlotTooLarge { slot: u16 },
    /// Redis answered the command with an error reply (OOM at `maxmemory`, MISCONF when it
    /// cannot persist, NOPERM, …): it did not run it, so a refused write was not applied.
    #[error("Redis refused the command: {source}")]
    Refused {
        write: bool,
        /// `refusal_reason` of the error code.
        reason: &'static str,
        source: RedisError,
    },
}

/// The `cause` label of `timestamp_api_redis_refusals_total` (and the reason a problem document
/// gives) for a Redis error code: a fixed set, so that an unknown code cannot add series.
fn refusal_reason(code: &str) -> &'static str {
    match code {
        "OOM" => "oom",
        "MISCONF" => "misconf",
        "NOPERM" => "noperm",
        "NOAUTH" | "WRONGPASS" => "noauth",
        "NOREPLICAS" => "noreplicas",
        "LOADING" => "loading",
        "BUSY" => "busy",
        "MASTERDOWN" => "masterdown",
        "WRONGTYPE" => "wrongtype",
        "CLUSTERDOWN" => "clusterdown",
        _ => "other",
    }
}

/// Whether a SET created the name or replaced an existing value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOutcome {
    Created,
    Replaced,
}

/// Whether an operation may be sent again after its connection was lost mid-way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resend {
    /// A read: sending it twice changes nothing.
    Always,
    /// A write: only when Redis surely did not apply it (READONLY).
    IfNotApplied,
}

impl Store {
    /// Starts the background connection task and returns at once: the service starts (and
    /// answers 503) while Redis is still down, and serves as soon as the primary is there.
    pub fn new(config: &RedisConfig, metrics: Metrics) -> Result<Self, StoreError> {
        let mut info = config.url.as_str().into_connection_info()?;
        let mut settings = info.redis_settings().clone().set_skip_set_lib_name();
        if let Some(username) = &config.username {
            settings = settings.set_username(username);
        }
        if let Some(password) = &config.password {
            settings = settings.set_password(password.expose());
        }
        info = info
            .set_redis_settings(settings)
            .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
        let tls = match config.tls_enabled() {
            true => Some(Arc::new(Tls::new(&config.tls, metrics.clone())?)),
            false => None,
        };
        let dialer = Dialer::new(tls, config.connect_timeout);
        let backend = if config.cluster.addresses.is_empty() {
            let target = match Sentinels::new(&config.sentinel, dialer.clone())? {
                Some(sentinels) => Target::Sentinel {
                    sentinels,
                    node: info,
                },
                None => Target::Url(info),
            };
            Backend::Node(Link::start(
                target,
                dialer,
                Timeouts {
                    command: config.command_timeout,
                },
                config.min_replica_acks > 0,
                metrics.clone(),
            ))
        } else {
            Backend::Cluster(Arc::new(Cluster::new(
                config,
                info,
                dialer,
                metrics.cluster(),
            )))
        };
        let store = Self {
            backend,
            prefix: config.key_prefix.as_str().into(),
            command_timeout: config.command_timeout,
            replica_acks: (config.min_replica_acks > 0).then_some(ReplicaAcks {
                count: config.min_replica_acks,
                timeout: config.replica_ack_timeout,
            }),
            metrics,
        };
        if let Backend::Cluster(cluster) = &store.backend {
            tokio::spawn({
                let (cluster, store) = (cluster.clone(), store.clone());
                async move { cluster.warm_up(&store).await }
            });
        }
        Ok(store)
    }

    fn key(&self, name: &Name) -> String {
        format!("{}{}", self.prefix, name.as_str())
    }

    pub async fn get(&self, name: &Name) -> Result<Option<Timestamp>, StoreError> {
        let key = self.key(name);
        let value: Option<String> = self
            .read(&key, || command("GET").arg(&key))
            .await
            .map_err(|error| corrupt_if_wrong_type(error, &key))?;
        value.map(|value| decode_value(&key, &value)).transpose()
    }

    /// Stores `timestamp`; `SET … GET` returns the previous value in the same atomic step, so
    /// concurrent writers can tell creation from replacement without a read-then-write race.
    pub async fn set(&self, name: &Name, timestamp: Timestamp) -> Result<SetOutcome, StoreError> {
        let key = self.key(name);
        let set = || {
            command("SET")
                .arg(&key)
                .arg(timestamp.epoch_ms())
                .arg("GET")
        };
        let previous: Option<String> = self
            .write(&key, set)
            .await
            .map_err(|error| corrupt_if_wrong_type(error, &key))?;
        Ok(match previous {
            None => SetOutcome::Created,
            Some(_) => SetOutcome::Replaced,
        })
    }

    /// Removes the name; `true` when there was something to remove.
    pub async fn delete(&self, name: &Name) -> Result<bool, StoreError> {
        let key = self.key(name);
        let removed: u64 = self.write(&key, || command("DEL").arg(&key)).await?;
        Ok(removed > 0)
    }

    /// The readiness check: PING on one primary; on a cluster, `Cluster::check`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Node(link) => {
                self.run(link, Resend::Always, |mut attempt| async move {
                    attempt.query::<String>(command("PING")).await.map(drop)
                })
                .await
            }
            Backend::Cluster(cluster) => self.on_cluster(cluster.check(self)).await,
        }
    }

    /// The primary's address (`host:port`) while connected to it; on a cluster, none.
    pub fn primary(&self) -> Option<Arc<str>> {
        match &self.backend {
            Backend::Node(link) => link.primary(),
            Backend::Cluster(_) => None,
        }
    }

    /// Up to `limit` values (see `list.rs`, and `cluster.rs` for a cluster). On one node, like
    /// SCAN itself, a listing may show a name twice, and may miss names created or removed
    /// while it runs; on a cluster it shows each name once.
    pub async fn list(&self, limit: usize, cursor: Cursor) -> Result<Page, StoreError> {
        match &self.backend {
            Backend::Node(link) => {
                self.run(link, Resend::Always, |mut attempt| {
                    let cursor = cursor.clone();
                    async move { attempt.scan_page(limit, cursor).await }
                })
                .await
            }
            Backend::Cluster(cluster) => {
                self.on_cluster(async {
                    let (names, next) = cluster.list(self, limit, cursor).await?;
                    if names.is_empty() {
                        return Ok(Page {
                            items: Vec::new(),
                            next,
                        });
                    }
                    let keys: Vec<String> = names.iter().map(|name| self.key(name)).collect();
                    let values = cluster.values(self, &keys).await?;
                    Ok(Page {
                        items: list::listed_items(names, &keys, values),
                        next,
                    })
                })
                .await
            }
        }
    }

    /// A read of `key` that sending twice cannot change.
    async fn read<T: FromRedisValue + Send>(
        &self,
        key: &str,
        read: impl Fn() -> RedisCommand,
    ) -> Result<T, StoreError> {
        match &self.backend {
            Backend::Node(link) => {
                self.run(link, Resend::Always, |mut attempt| {
                    let read = read();
                    async move { attempt.query(read).await }
                })
                .await
            }
            Backend::Cluster(cluster) => self.on_cluster(cluster.read(self, key, read())).await,
        }
    }

    /// A cluster operation: `work`, or a timeout once `redis.command_timeout` has passed.
    ///
    /// Boxed, because a future holds the futures it awaits: the cluster's are many times the
    /// size of the one-node path's, and inline they made every request's future that large on
    /// one node too. warp and hyper move a request's future a dozen times before it is pinned,
    /// and the copies took a one-node GET from 49,000 to 231,000 instructions
    /// (bench/instructions).
    fn on_cluster<'s, T: Send + 's>(
        &'s self,
        work: impl Future<Output = Result<T, StoreError>> + Send + 's,
    ) -> BoxFuture<'s, Result<T, StoreError>> {
        Box::pin(async move {
            tokio::time::timeout(self.command_timeout, work)
                .await
                .unwrap_or(Err(StoreError::Timeout(self.command_timeout)))
        })
    }

    /// Times one command (or pipeline) by name (the metric label), counting failures, and
    /// sends it in a span of its own when tracing is on.
    async fn observed<T>(
        &self,
        name: &'static str,
        node: impl FnOnce() -> Option<Arc<str>>,
        sent: impl Future<Output = redis::RedisResult<T>>,
    ) -> redis::RedisResult<T> {
        let span = traces::redis_span(name, node);
        let timer = self.metrics.time_redis(name);
        let result = sent.instrument(span.clone()).await;
        timer.finish(result.is_ok());
        if result.is_err() {
            traces::failed(&span);
        }
        result
    }

    /// An error reply is a refusal (counted by its code): Redis did not run the command. Any
    /// other failure is the connection's.
    fn refusal_or_failure(&self, error: RedisError, write: bool) -> StoreError {
        match error.code() {
            Some(code) if !is_connection_error(&error) => {
                let reason = refusal_reason(code);
                self.metrics.count_refusal(reason);
                StoreError::Refused {
                    write,
                    reason,
                    source: error,
                }
            }
            _ => StoreError::Redis(error),
        }
    }

    /// A write, then, with `redis.min_replica_acks` above 0, `WAIT` on the same connection:
    /// WAIT counts the replicas that have every write this connection sent so far, ours
    /// included. On another connection it would count none of ours. Writes have a connection
    /// of their own then (`link.rs`), as Redis holds the connection during `WAIT`.
    async fn write<T: FromRedisValue + Send>(
        &self,
        key: &str,
        write: impl Fn() -> RedisCommand,
    ) -> Result<T, StoreError> {
        let link = match &self.backend {
            Backend::Node(link) => link,
            Backend::Cluster(cluster) => {
                return self.on_cluster(cluster.write(self, key, write())).await;
            }
        };
        let written = self
            .run(link, Resend::IfNotApplied, |mut attempt| {
                let write = write();
                async move {
                    let reply = attempt.query(write).await?;
                    let Some(acks) = attempt.store.replica_acks else {
                        return Ok(reply);
                    };
                    // At most 30 s by the configuration check, so the milliseconds fit.
                    let millis = u64::try_from(acks.timeout.as_millis()).unwrap_or(u64::MAX);
                    let wait = command("WAIT").arg(acks.count).arg(millis);
                    let acked: u32 = attempt.query(wait).await?;
                    if acked < acks.count {
                        return Err(StoreError::NotReplicated {
                            acked,
                            wanted: acks.count,
                        });
                    }
                    Ok(reply)
                }
            })
            .await;
        // Applied, replicated or not: the node takes writes.
        if matches!(written, Ok(_) | Err(StoreError::NotReplicated { .. })) {
            link.wrote();
        }
        written
    }

    /// Runs `attempt` on the current connection until it succeeds, fails for good, or
    /// `redis.command_timeout` passes; see the module's comment for what is tried again.
    async fn run<'s, T, F, Fut>(
        &'s self,
        link: &Link,
        resend: Resend,
        mut attempt: F,
    ) -> Result<T, StoreError>
    where
        F: FnMut(Attempt<'s>) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        // The newest connection known to be bad, and the one the last try used.
        let (mut bad, mut used) = (0, None);
        let tries = async {
            loop {
                let Connected {
                    generation,
                    connection,
                    writes,
                } = link.connected(bad).await.ok_or(StoreError::Disconnected)?;
                if bad != 0 {
                    traces::event("redis.reconnected", || {
                        vec![
                            ("redis.connection.generation", (generation as i64).into()),
                            (
                                "server.address",
                                link.primary().as_deref().unwrap_or("").to_owned().into(),
                            ),
                        ]
                    });
                }
                used = Some(generation);
                // Reads on the shared connection, writes on theirs (the same one unless each
                // write waits for replicas).
                let connection = match resend {
                    Resend::Always => connection,
                    Resend::IfNotApplied => writes,
                };
                let error = match attempt(Attempt {
                    store: self,
                    connection,
                })
                .await
                {
                    Err(StoreError::Redis(error)) => error,
                    done => return done,
                };
                let trouble = if error.code() == Some("READONLY") {
                    Trouble::Readonly
                } else if is_connection_error(&error) {
                    Trouble::Lost
                } else if error.code().is_some() {
                    return Err(self.refusal_or_failure(error, resend == Resend::IfNotApplied));
                } else {
                    return Err(error.into());
                };
                link.report(generation, trouble);
                traces::event(trouble.event_name(), || {
                    vec![("redis.connection.generation", (generation as i64).into())]
                });
                if trouble == Trouble::Lost && resend == Resend::IfNotApplied {
                    return Err(error.into());
                }
                bad = generation;
            }
        };
        let outcome = tokio::time::timeout(self.command_timeout, tries).await;
        outcome.unwrap_or_else(|_| {
            if let Some(generation) = used {
                link.report(generation, Trouble::Slow);
                traces::event(Trouble::Slow.event_name(), || {
                    vec![("redis.connection.generation", (generation as i64).into())]
                });
            }
            match link.failure() {
                Some(cause) => Err(StoreError::Unreachable {
                    after: self.command_timeout,
                    cause,
                }),
                None => Err(StoreError::Timeout(self.command_timeout)),
            }
        })
    }
}

/// One try of an operation, on one connection.
struct Attempt<'s> {
    store: &'s Store,
    connection: MultiplexedConnection,
}

impl Attempt<'_> {
    /// Sends one command, timing it by name (the metric label), counting failures, and in a
    /// span of its own when tracing is on.
    async fn query<T: FromRedisValue>(&mut self, command: RedisCommand) -> Result<T, StoreError> {
        let store = self.store;
        let sent = command.cmd.query_async(&mut self.connection);
        Ok(store
            .observed(command.name, || store.primary(), sent)
            .await?)
    }
}

/// A failure of the connection itself (as opposed to an error reply): it must be replaced.
fn is_connection_error(error: &RedisError) -> bool {
    error.is_io_error() || error.is_unrecoverable_error()
}

/// A Redis command that keeps its name, for the metrics label.
struct RedisCommand {
    name: &'static str,
    cmd: Cmd,
}

fn command(name: &'static str) -> RedisCommand {
    RedisCommand {
        name,
        cmd: redis::cmd(name),
    }
}

impl RedisCommand {
    fn arg(mut self, arg: impl ToRedisArgs) -> Self {
        self.cmd.arg(arg);
        self
    }
}

fn decode_value(key: &str, value: &str) -> Result<Timestamp, StoreError> {
    value
        .parse::<i64>()
        .ok()
        .and_then(|ms| Timestamp::from_epoch_ms(ms).ok())
        .ok_or_else(|| StoreError::CorruptValue {
            key: key.to_owned(),
        })
}

/// A key of another Redis type (a hash, say) is corrupt data, not an outage.
fn corrupt_if_wrong_type(error: StoreError, key: &str) -> StoreError {
    match &error {
        StoreError::Refused {
            reason: "wrongtype",
            ..
        } => StoreError::CorruptValue {
            key: key.to_owned(),
        },
        _ => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_must_be_epoch_milliseconds_in_range() {
        assert_eq!(
            decode_value("ts:a", "1795628183123").unwrap().epoch_ms(),
            1_795_628_183_123
        );
        for bad in ["", "x", "1.5", "-1", "253402300800000", " 1"] {
            assert!(
                matches!(
                    decode_value("ts:a", bad),
                    Err(StoreError::CorruptValue { .. })
                ),
                "{bad:?}"
            );
        }
    }
}
