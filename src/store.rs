//! The Redis store: the only module that knows key names, how values are encoded and which
//! commands are sent.
//!
//! A timestamp lives at `<key_prefix><name>` as an integer of epoch milliseconds, so any Redis
//! client can read it. The service only ever sends GET, SET, DEL, SCAN, MGET and PING (plus
//! AUTH while connecting); the deployment's ACL allows exactly these, and an integration test
//! runs the whole API against such an ACL.
//!
//! One multiplexed connection carries every request: concurrent commands are pipelined on it,
//! and redis-rs' `ConnectionManager` reconnects in the background after a failure. Every
//! operation is bounded by `redis.command_timeout`, so a dead or stalled Redis costs a caller
//! that long at most, never a hang.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, FromRedisValue, IntoConnectionInfo, ToRedisArgs};

use crate::config::RedisConfig;
use crate::cursor::{Cursor, ScanPosition};
use crate::domain::{Name, Timestamp};
use crate::metrics::Metrics;

/// Upper bound on SCAN round trips for one page, so that a database full of other keys cannot
/// make one list request loop for long; the page then comes back short, with a cursor.
const MAX_SCAN_CALLS_PER_PAGE: usize = 32;

/// How the reconnect loop backs off: quick first retries, then at most `RECONNECT_MAX_DELAY`
/// (plus jitter), so that service resumes within about a second of Redis coming back.
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(50);
const RECONNECT_MAX_DELAY: Duration = Duration::from_millis(400);

#[derive(Clone)]
pub struct Store {
    connection: ConnectionManager,
    prefix: Arc<str>,
    command_timeout: Duration,
    metrics: Metrics,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("Redis did not complete the operation within {0:?}")]
    Timeout(Duration),
    #[error("Redis command failed: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("key {key} does not hold a timestamp in epoch milliseconds")]
    CorruptValue { key: String },
}

/// Whether a SET created the name or replaced an existing value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOutcome {
    Created,
    Replaced,
}

/// One page of a listing; `next` is `None` once every key has been visited.
#[derive(Debug)]
pub struct Page {
    pub items: Vec<(Name, Timestamp)>,
    pub next: Option<Cursor>,
}

impl Store {
    /// Prepares the connection without touching the network: the service starts (and answers
    /// 503) while Redis is still down, and connects as soon as Redis is there.
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
        let client = redis::Client::open(info)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.command_timeout))
            .set_min_delay(RECONNECT_MIN_DELAY)
            .set_max_delay(RECONNECT_MAX_DELAY)
            // Never give up: each failed attempt is cheap, and giving up would leave the
            // manager holding a failed connection until a request happened to retrigger it.
            .set_number_of_retries(usize::MAX);
        Ok(Self {
            connection: ConnectionManager::new_lazy_with_config(client, manager_config)?,
            prefix: config.key_prefix.as_str().into(),
            command_timeout: config.command_timeout,
            metrics,
        })
    }

    fn key(&self, name: &Name) -> String {
        format!("{}{}", self.prefix, name.as_str())
    }

    pub async fn get(&self, name: &Name) -> Result<Option<Timestamp>, StoreError> {
        let key = self.key(name);
        let value: Option<String> = self
            .bounded(self.query(command("GET").arg(&key)))
            .await
            .map_err(|error| corrupt_if_wrong_type(error, &key))?;
        value.map(|value| decode_value(&key, &value)).transpose()
    }

    /// Stores `timestamp`; `SET … GET` returns the previous value in the same atomic step, so
    /// concurrent writers can tell creation from replacement without a read-then-write race.
    pub async fn set(&self, name: &Name, timestamp: Timestamp) -> Result<SetOutcome, StoreError> {
        let key = self.key(name);
        let previous: Option<String> = self
            .bounded(
                self.query(
                    command("SET")
                        .arg(&key)
                        .arg(timestamp.epoch_ms())
                        .arg("GET"),
                ),
            )
            .await
            .map_err(|error| corrupt_if_wrong_type(error, &key))?;
        Ok(match previous {
            None => SetOutcome::Created,
            Some(_) => SetOutcome::Replaced,
        })
    }

    /// Removes the name; `true` when there was something to remove.
    pub async fn delete(&self, name: &Name) -> Result<bool, StoreError> {
        let removed: u64 = self
            .bounded(self.query(command("DEL").arg(self.key(name))))
            .await?;
        Ok(removed > 0)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let _: String = self.bounded(self.query(command("PING"))).await?;
        Ok(())
    }

    /// Up to `limit` values, walking the key space with SCAN (never KEYS). Like SCAN itself, a
    /// listing may show a name twice, and may miss names created or removed while it runs.
    pub async fn list(&self, limit: usize, cursor: Cursor) -> Result<Page, StoreError> {
        self.bounded(self.scan_page(limit, cursor)).await
    }

    async fn scan_page(&self, limit: usize, cursor: Cursor) -> Result<Page, StoreError> {
        let Cursor {
            scan: mut position,
            mut pending,
        } = cursor;
        let take = limit.min(pending.len());
        let mut names: Vec<Name> = pending.drain(..take).collect();
        // SCAN may return a key twice; a page and what it carries over never hold a name twice.
        let mut seen: HashSet<Name> = names.iter().chain(&pending).cloned().collect();
        let pattern = format!("{}*", self.prefix);

        let mut calls = 0;
        while names.len() < limit
            && position != ScanPosition::Finished
            && calls < MAX_SCAN_CALLS_PER_PAGE
        {
            let from = match position {
                ScanPosition::At(at) => at,
                ScanPosition::Start | ScanPosition::Finished => 0,
            };
            let (next, keys): (u64, Vec<String>) = self
                .query(
                    command("SCAN")
                        .arg(from)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(limit - names.len()),
                )
                .await?;
            calls += 1;
            position = if next == 0 {
                ScanPosition::Finished
            } else {
                ScanPosition::At(next)
            };
            for key in keys {
                // Keys under the prefix that are not valid names were not written by this
                // service; they are skipped rather than failing the whole listing.
                let Some(name) = key
                    .strip_prefix(&*self.prefix)
                    .and_then(|raw| Name::parse(raw).ok())
                else {
                    continue;
                };
                if !seen.insert(name.clone()) {
                    continue;
                }
                if names.len() < limit {
                    names.push(name);
                } else {
                    pending.push_back(name);
                }
            }
        }

        let items = self.values_of(names).await?;
        let next = (position != ScanPosition::Finished || !pending.is_empty()).then_some(Cursor {
            scan: position,
            pending,
        });
        Ok(Page { items, next })
    }

    /// Reads the values of `names` with one MGET; names removed meanwhile are left out.
    async fn values_of(&self, names: Vec<Name>) -> Result<Vec<(Name, Timestamp)>, StoreError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = names.iter().map(|name| self.key(name)).collect();
        let values: Vec<Option<String>> = self.query(command("MGET").arg(&keys)).await?;
        let mut items = Vec::with_capacity(names.len());
        for ((name, key), value) in names.into_iter().zip(&keys).zip(values) {
            let Some(value) = value else { continue };
            match decode_value(key, &value) {
                Ok(timestamp) => items.push((name, timestamp)),
                Err(error) => tracing::warn!(%error, "skipping a value that is not a timestamp"),
            }
        }
        Ok(items)
    }

    /// Sends one command, timing it by name (the metric label) and counting failures.
    async fn query<T: FromRedisValue>(&self, command: RedisCommand) -> Result<T, StoreError> {
        let timer = self.metrics.time_redis(command.name);
        let mut connection = self.connection.clone();
        let result = command.cmd.query_async(&mut connection).await;
        timer.finish(result.is_ok());
        Ok(result?)
    }

    async fn bounded<T>(
        &self,
        operation: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.command_timeout, operation)
            .await
            .map_err(|_| StoreError::Timeout(self.command_timeout))?
    }
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
        StoreError::Redis(redis_error) if redis_error.code() == Some("WRONGTYPE") => {
            StoreError::CorruptValue {
                key: key.to_owned(),
            }
        }
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
