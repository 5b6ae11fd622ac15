//! The connection to the Redis primary, and the one background task, the connector, that makes
//! and remakes it.
//!
//! Requests never connect, ask Sentinel or back off themselves. They take the current
//! connection from a `watch` channel; when a command shows that the connection is no good (the
//! node answered READONLY, or the connection was lost) they report it and wait, within their
//! own deadline, for the next one. Reports are coalesced in another `watch` channel, so however
//! many requests fail at once, the connector sees one report and Redis and the Sentinels see one
//! reconnection: no stampede.
//!
//! The connector connects (to `redis.url`, or to the node Sentinel names, after checking with
//! `INFO replication` that it is a primary), publishes the connection, then checks it once a
//! second: with a URL, a PING; with Sentinel, whether Sentinel still names the same node, and
//! the node's replication state for the metrics. A broken connection is replaced at once if it
//! had served for a while, else after a back-off of 50 ms doubling to 400 ms, so that a node
//! that keeps answering READONLY is not hammered. Dropping the last `Store` ends the task.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, RedisError};
use tokio::sync::watch;

use super::replication::Replication;
use super::sentinel::{SentinelError, Sentinels};
use crate::metrics::{Metrics, ReplicationGauges};

/// How often the connector checks the connection and, with Sentinel, asks for the primary.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Back-off between connection attempts that fail, or connections that break at once.
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(50);
const RECONNECT_MAX_DELAY: Duration = Duration::from_millis(400);
/// A connection that served this long before it broke is replaced without waiting.
const STABLE_AFTER: Duration = Duration::from_secs(1);

/// What a request saw that the connector should act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Trouble {
    /// No answer within the deadline: with Sentinel, worth asking whether the primary moved.
    Slow,
    /// The node answered READONLY: it is a replica now.
    Readonly,
    /// The connection failed.
    Lost,
}

/// Where the primary is to be found.
pub enum Target {
    /// Always this address (`redis.url`); a fresh connection resolves its name again.
    Url(ConnectionInfo),
    /// Wherever Sentinel says; `node` holds the settings (credentials, database) for it.
    Sentinel {
        sentinels: Sentinels,
        node: ConnectionInfo,
    },
}

/// The requests' side: the current connection and the way to report trouble with it.
#[derive(Clone)]
pub struct Link {
    current: watch::Receiver<Current>,
    reports: Arc<watch::Sender<Report>>,
}

#[derive(Clone, Default)]
struct Current {
    /// Counts publications, so that a request can wait for one newer than a bad connection.
    generation: u64,
    connection: Option<MultiplexedConnection>,
    primary: Option<Arc<str>>,
}

#[derive(Clone, Copy, Default)]
struct Report {
    generation: u64,
    trouble: Option<Trouble>,
}

/// A connection to use, and its generation (for a report about it).
pub struct Connected {
    pub generation: u64,
    pub connection: MultiplexedConnection,
}

impl Link {
    /// Starts the connector; it connects in the background at once.
    pub fn start(
        target: Target,
        connect_timeout: Duration,
        command_timeout: Duration,
        metrics: Metrics,
    ) -> Self {
        let (current_tx, current) = watch::channel(Current::default());
        let (reports, reports_rx) = watch::channel(Report::default());
        let replication = matches!(target, Target::Sentinel { .. }).then(|| metrics.replication());
        let connector = Connector {
            target,
            connect_timeout,
            command_timeout,
            current: current_tx,
            reports: reports_rx,
            metrics,
            replication,
            generation: 0,
            primary: None,
            demoted: false,
        };
        tokio::spawn(connector.run());
        Self {
            current,
            reports: Arc::new(reports),
        }
    }

    /// The current connection once there is one newer than generation `after`; `None` only
    /// if the connector has stopped. Callers bound the wait with their deadline.
    pub async fn connected(&self, after: u64) -> Option<Connected> {
        let mut current = self.current.clone();
        let current = current
            .wait_for(|current| current.generation > after && current.connection.is_some())
            .await
            .ok()?;
        Some(Connected {
            generation: current.generation,
            connection: current.connection.clone()?,
        })
    }

    /// Tells the connector about trouble with connection `generation`. Only the first report
    /// of the worst trouble for the newest generation wakes it.
    pub fn report(&self, generation: u64, trouble: Trouble) {
        self.reports.send_if_modified(|pending| {
            let newer = generation > pending.generation;
            let worse = generation == pending.generation && Some(trouble) > pending.trouble;
            if newer || worse {
                *pending = Report {
                    generation,
                    trouble: Some(trouble),
                };
            }
            newer || worse
        });
    }

    /// The primary's address while connected to it.
    pub fn primary(&self) -> Option<Arc<str>> {
        let current = self.current.borrow();
        current.connection.as_ref().and(current.primary.clone())
    }
}

#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error(transparent)]
    Sentinel(#[from] SentinelError),
    #[error("{primary}: {source}")]
    Redis { primary: String, source: RedisError },
    #[error("{0}: no answer within the connect timeout")]
    Timeout(String),
    #[error("{0}: Sentinel names it, but it is not a primary (yet)")]
    NotPrimary(String),
}

struct Connector {
    target: Target,
    connect_timeout: Duration,
    command_timeout: Duration,
    current: watch::Sender<Current>,
    reports: watch::Receiver<Report>,
    metrics: Metrics,
    replication: Option<ReplicationGauges>,
    generation: u64,
    /// The primary of the last connection, to see changes.
    primary: Option<Arc<str>>,
    /// With a URL: the node answered READONLY, and no connection has served for long since; a
    /// demotion is counted as a failover once.
    demoted: bool,
}

impl Connector {
    async fn run(mut self) {
        let mut pause = Duration::ZERO;
        let mut cause = None;
        let requests = self.current.clone();
        loop {
            let attempt = tokio::select! {
                attempt = async {
                    tokio::time::sleep(pause).await;
                    self.connect().await
                } => attempt,
                () = requests.closed() => return,
            };
            let (primary, connection) = match attempt {
                Ok(connected) => connected,
                Err(error) => {
                    tracing::debug!(%error, "cannot connect to the Redis primary; retrying");
                    pause = (pause * 2).clamp(RECONNECT_MIN_DELAY, RECONNECT_MAX_DELAY);
                    continue;
                }
            };
            self.publish(primary.clone(), Some(connection.clone()), cause);
            let since = Instant::now();
            let Some(trouble) = self.watch(&connection).await else {
                return;
            };
            drop(connection);
            // Requests wait for the next connection rather than use this one again.
            self.publish(primary.clone(), None, None);
            let stable = since.elapsed() >= STABLE_AFTER;
            if stable {
                pause = Duration::ZERO;
                self.demoted = false;
                tracing::warn!(%primary, cause = trouble, "reconnecting to the Redis primary");
            } else {
                pause = (pause * 2).clamp(RECONNECT_MIN_DELAY, RECONNECT_MAX_DELAY);
                tracing::debug!(%primary, cause = trouble, "reconnecting to the Redis primary");
            }
            if trouble == "readonly" && matches!(self.target, Target::Url(_)) && !self.demoted {
                // Behind a URL a failover shows only as this: the node was demoted.
                self.demoted = true;
                self.metrics.count_failover();
                tracing::warn!(%primary, "the Redis node behind redis.url answered READONLY");
            }
            cause = Some(trouble);
        }
    }

    /// One attempt: the address, and a connection to it that is ready for requests.
    async fn connect(&mut self) -> Result<(Arc<str>, MultiplexedConnection), ConnectError> {
        let info = match &mut self.target {
            Target::Url(info) => info.clone(),
            Target::Sentinel { sentinels, node } => {
                let address = sentinels.primary().await?;
                node.clone()
                    .set_addr(ConnectionAddr::Tcp(address.host, address.port))
            }
        };
        let primary = info.addr().to_string();
        let failed = |source| ConnectError::Redis {
            primary: primary.clone(),
            source,
        };
        // No response timeout on the connection: every use of it has a deadline of its own,
        // and a timeout inside redis-rs would look like a lost connection.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(None);
        let client = Client::open(info).map_err(failed)?;
        let connection = tokio::time::timeout(
            self.connect_timeout,
            client.get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .map_err(|_| ConnectError::Timeout(primary.clone()))?
        .map_err(failed)?;
        if matches!(self.target, Target::Sentinel { .. })
            && !self
                .replication_of(&connection)
                .await
                .map_err(failed)?
                .is_primary
        {
            if let Target::Sentinel { sentinels, .. } = &mut self.target {
                sentinels.distrust_last();
            }
            return Err(ConnectError::NotPrimary(primary));
        }
        Ok((primary.into(), connection))
    }

    /// Waits until the connection must be replaced, and says why (a `cause` label of
    /// `timestamp_api_redis_reconnections_total`); `None` when the store is gone.
    async fn watch(&mut self, connection: &MultiplexedConnection) -> Option<&'static str> {
        let mut tick = tokio::time::interval(CHECK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // The first tick is now, and the connection was just checked.
        loop {
            let check = tokio::select! {
                changed = self.reports.changed() => {
                    changed.ok()?;
                    let report = *self.reports.borrow_and_update();
                    match report.trouble {
                        _ if report.generation != self.generation => false,
                        Some(Trouble::Readonly) => return Some("readonly"),
                        Some(Trouble::Lost) => return Some("connection_lost"),
                        Some(Trouble::Slow) => matches!(self.target, Target::Sentinel { .. }),
                        None => false,
                    }
                }
                _ = tick.tick() => true,
                () = self.current.closed() => return None,
            };
            if check && let Some(cause) = self.check(connection).await {
                return Some(cause);
            }
        }
    }

    /// With a URL, PINGs; with Sentinel, asks whether the primary moved and reads the node's
    /// replication state. A cause when the connection must be replaced.
    async fn check(&mut self, connection: &MultiplexedConnection) -> Option<&'static str> {
        let outcome = match &mut self.target {
            Target::Url(_) => {
                let ping = redis::cmd("PING");
                let mut connection = connection.clone();
                let pong = ping.query_async::<String>(&mut connection);
                match tokio::time::timeout(self.command_timeout, pong).await {
                    Ok(result) => result.map(|_| ()),
                    // A stalled Redis: nothing a new connection would change.
                    Err(_) => return None,
                }
            }
            Target::Sentinel { sentinels, .. } => {
                match sentinels.primary().await {
                    Ok(address) => {
                        let named = address.to_string();
                        if self.primary.as_deref() != Some(named.as_str()) {
                            return Some("primary_moved");
                        }
                    }
                    Err(error) => tracing::debug!(%error, "no Sentinel named the primary"),
                }
                match self.replication_of(connection).await {
                    Ok(replication) if !replication.is_primary => return Some("readonly"),
                    Ok(_) => Ok(()),
                    Err(error) => Err(error),
                }
            }
        };
        match outcome {
            Err(error) if super::is_connection_error(&error) => Some("connection_lost"),
            Err(error) => {
                tracing::warn!(%error, "checking the Redis primary failed");
                None
            }
            Ok(()) => None,
        }
    }

    /// `INFO replication` of the node, also copied into the replication gauges.
    async fn replication_of(
        &self,
        connection: &MultiplexedConnection,
    ) -> Result<Replication, RedisError> {
        let mut connection = connection.clone();
        let mut info = redis::cmd("INFO");
        info.arg("replication");
        let info = tokio::time::timeout(
            self.command_timeout,
            info.query_async::<String>(&mut connection),
        )
        .await
        .map_err(|_| {
            RedisError::from((
                redis::ErrorKind::Client,
                "no answer to INFO replication in time",
            ))
        })??;
        let replication = Replication::parse(&info);
        if let Some(gauges) = &self.replication
            && replication.is_primary
        {
            gauges.replicas_connected.set(replication.replicas);
            gauges.replica_lag_seconds.set(replication.max_lag_seconds);
        }
        Ok(replication)
    }

    /// Publishes a connection (or its absence) to the requests; logs and counts a new primary.
    fn publish(
        &mut self,
        primary: Arc<str>,
        connection: Option<MultiplexedConnection>,
        cause: Option<&'static str>,
    ) {
        if connection.is_some() {
            match self.primary.as_deref() {
                None => {
                    let sentinel_master = match &self.target {
                        Target::Sentinel { sentinels, .. } => Some(sentinels.master().to_owned()),
                        Target::Url(_) => None,
                    };
                    tracing::info!(%primary, sentinel_master, "connected to the Redis primary");
                }
                Some(previous) if *previous != *primary => {
                    tracing::warn!(from = previous, to = %primary, "the Redis primary changed");
                    self.metrics.count_failover();
                }
                Some(_) => {}
            }
            self.metrics.set_primary(self.primary.as_deref(), &primary);
            if let Some(cause) = cause {
                self.metrics.count_reconnection(cause);
            }
            self.primary = Some(primary.clone());
        }
        self.generation += 1;
        self.current.send_replace(Current {
            generation: self.generation,
            connection,
            primary: Some(primary),
        });
    }
}
