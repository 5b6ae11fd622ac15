//! The connector: the one background task that makes and remakes the connection to the Redis
//! primary for `Link`. It connects (to `redis.url`, or to the node Sentinel names, after checking with
//! `INFO replication` that it is a primary; a node it cannot use makes it ask another Sentinel
//! first next time), publishes the connection (two when writes wait for replicas: Redis holds a
//! connection during `WAIT`), then checks it once a second: with a URL, a PING (two in a row
//! unanswered, and the connection is replaced: the node may be gone without closing it); with
//! Sentinel, whether Sentinel still names the same node, and the node's replication state for
//! the metrics. A broken connection is replaced at once if it had served for a while, else
//! after a back-off of 50 ms doubling to 400 ms, so that a node that keeps answering READONLY
//! is not hammered. Dropping the last `Store` ends the task.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis::RedisError;
use redis::aio::MultiplexedConnection;
use tokio::sync::watch;

use super::dial::{ConnectFailure, DialError, Dialer};
use super::link::{Connections, Current, Report, Target, Timeouts, Trouble};
use super::replication::Replication;
use super::sentinel::SentinelError;
use crate::metrics::{Metrics, Reconnection, ReplicationGauges};

/// How often the connector checks the connection and, with Sentinel, asks for the primary.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Back-off between connection attempts that fail, or connections that break at once.
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(50);
const RECONNECT_MAX_DELAY: Duration = Duration::from_millis(400);
/// A connection that served this long before it broke is replaced without waiting.
const STABLE_AFTER: Duration = Duration::from_secs(1);
/// With a URL: checks in a row without an answer to PING before the connection is replaced.
const UNANSWERED_PINGS: u32 = 2;

#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error(transparent)]
    Sentinel(#[from] SentinelError),
    #[error("{primary}: {source}")]
    Dial { primary: String, source: DialError },
    #[error("{primary}: {source}")]
    Check { primary: String, source: RedisError },
    #[error("{0}: Sentinel names it, but it is not a primary (yet)")]
    NotPrimary(String),
}

impl ConnectError {
    fn cause(&self) -> ConnectFailure {
        match self {
            Self::Sentinel(error) => error.cause(),
            Self::Dial { source, .. } => source.cause,
            Self::Check { .. } => ConnectFailure::Other,
            Self::NotPrimary(_) => ConnectFailure::NotPrimary,
        }
    }
}

pub(super) struct Connector {
    target: Target,
    dialer: Dialer,
    timeouts: Timeouts,
    separate_writes: bool,
    current: watch::Sender<Current>,
    reports: watch::Receiver<Report>,
    metrics: Metrics,
    replication: Option<ReplicationGauges>,
    generation: u64,
    /// The primary of the last connection, to see changes.
    primary: Option<Arc<str>>,
    /// Set by requests when a write succeeded, taken back here at a READONLY: with a URL, a
    /// demotion is counted as a failover once, however many writes then see READONLY.
    wrote: Arc<AtomicBool>,
    /// With a URL: checks in a row whose PING got no answer in time.
    unanswered_pings: u32,
}

impl Connector {
    /// Starts the connector on `channels` (the current connection it publishes, the reports
    /// it hears); it connects at once.
    pub(super) fn spawn(
        target: Target,
        dialer: Dialer,
        timeouts: Timeouts,
        separate_writes: bool,
        metrics: Metrics,
        channels: (watch::Sender<Current>, watch::Receiver<Report>),
        wrote: Arc<AtomicBool>,
    ) {
        let replication = matches!(target, Target::Sentinel { .. }).then(|| metrics.replication());
        let (current, reports) = channels;
        let connector = Self {
            target,
            dialer,
            timeouts,
            separate_writes,
            current,
            reports,
            metrics,
            replication,
            generation: 0,
            primary: None,
            wrote,
            unanswered_pings: 0,
        };
        tokio::spawn(connector.run());
    }

    async fn run(mut self) {
        let mut pause = Duration::ZERO;
        let mut cause = None;
        // Of the failed attempts since the last connection: a new cause is logged at warn
        // level once, not at every retry.
        let mut failing = None;
        let requests = self.current.clone();
        loop {
            let attempt = tokio::select! {
                attempt = async {
                    tokio::time::sleep(pause).await;
                    self.connect().await
                } => attempt,
                () = requests.closed() => return,
            };
            let (primary, connections) = match attempt {
                Ok(connected) => connected,
                Err(error) => {
                    let failure = error.cause();
                    self.metrics.count_reconnection_failure(failure);
                    if failing.replace(failure) == Some(failure) {
                        tracing::debug!(%error, "cannot connect to the Redis primary; retrying");
                    } else {
                        tracing::warn!(
                            %error,
                            cause = failure.label(),
                            fix = failure.hint(),
                            "cannot connect to the Redis primary; retrying"
                        );
                    }
                    self.current.send_if_modified(|current| {
                        let changed = current.failure != Some(failure);
                        current.failure = Some(failure);
                        changed
                    });
                    pause = (pause * 2).clamp(RECONNECT_MIN_DELAY, RECONNECT_MAX_DELAY);
                    continue;
                }
            };
            failing = None;
            self.publish(primary.clone(), Some(connections.clone()), cause);
            let since = Instant::now();
            let Some(trouble) = self.watch(&connections.shared).await else {
                return;
            };
            drop(connections);
            // Requests wait for the next connection rather than use this one again.
            self.publish(primary.clone(), None, None);
            if since.elapsed() >= STABLE_AFTER {
                pause = Duration::ZERO;
                tracing::warn!(%primary, cause = trouble.label(), "reconnecting to the Redis primary");
            } else {
                pause = (pause * 2).clamp(RECONNECT_MIN_DELAY, RECONNECT_MAX_DELAY);
                tracing::debug!(%primary, cause = trouble.label(), "reconnecting to the Redis primary");
            }
            if trouble == Reconnection::Readonly
                && matches!(self.target, Target::Url(_))
                && self.wrote.swap(false, Ordering::Relaxed)
            {
                // Behind a URL a failover shows only as this: a node that took writes was
                // demoted.
                self.metrics.count_failover();
                tracing::warn!(%primary, "the Redis node behind redis.url answered READONLY");
            }
            cause = Some(trouble);
        }
    }

    /// One attempt: the address, and connections to it that are ready for requests. With
    /// Sentinel, a node that cannot be reached or is not a primary makes the next attempt ask
    /// another Sentinel first: the one that named it may be cut off and out of date.
    async fn connect(&mut self) -> Result<(Arc<str>, Connections), ConnectError> {
        let attempt = self.connect_to_primary().await;
        if let (
            Err(
                ConnectError::Dial { .. }
                | ConnectError::Check { .. }
                | ConnectError::NotPrimary(_),
            ),
            Target::Sentinel { sentinels, .. },
        ) = (&attempt, &mut self.target)
        {
            sentinels.distrust_last();
        }
        attempt
    }

    async fn connect_to_primary(&mut self) -> Result<(Arc<str>, Connections), ConnectError> {
        // The primary is named as Sentinel names it (an IPv6 host in brackets), so that a
        // check can compare the two.
        let (info, primary) = match &mut self.target {
            Target::Url(info) => (info.clone(), info.addr().to_string()),
            Target::Sentinel { sentinels, node } => {
                let address = sentinels.primary().await?;
                let primary = address.to_string();
                let addr = self.dialer.address(address.host, address.port);
                (node.clone().set_addr(addr), primary)
            }
        };
        let shared = self.open(&info, &primary).await?;
        if matches!(self.target, Target::Sentinel { .. })
            && !self
                .replication_of(&shared)
                .await
                .map_err(|source| ConnectError::Check {
                    primary: primary.clone(),
                    source,
                })?
                .is_primary
        {
            return Err(ConnectError::NotPrimary(primary));
        }
        let writes = match self.separate_writes {
            true => self.open(&info, &primary).await?,
            false => shared.clone(),
        };
        Ok((primary.into(), Connections { shared, writes }))
    }

    async fn open(
        &self,
        info: &redis::ConnectionInfo,
        primary: &str,
    ) -> Result<MultiplexedConnection, ConnectError> {
        self.dialer
            .open_for_commands(info)
            .await
            .map_err(|source| ConnectError::Dial {
                primary: primary.to_owned(),
                source,
            })
    }

    /// Waits until the connection must be replaced, and says why; `None` when the store is
    /// gone.
    async fn watch(&mut self, connection: &MultiplexedConnection) -> Option<Reconnection> {
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
                        Some(Trouble::Readonly) => return Some(Reconnection::Readonly),
                        Some(Trouble::Lost) => return Some(Reconnection::ConnectionLost),
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
    async fn check(&mut self, connection: &MultiplexedConnection) -> Option<Reconnection> {
        let outcome = match &mut self.target {
            Target::Url(_) => {
                let ping = redis::cmd("PING");
                let mut connection = connection.clone();
                let pong = ping.query_async::<String>(&mut connection);
                match tokio::time::timeout(self.timeouts.command, pong).await {
                    Ok(result) => {
                        self.unanswered_pings = 0;
                        result.map(|_| ())
                    }
                    // Once may be a stalled Redis, which a new connection would not help; twice
                    // in a row may as well be a node gone without closing the connection (a
                    // crash, a partition), which only a new connection finds out about, and
                    // whose name may lead elsewhere by now.
                    Err(_) => {
                        self.unanswered_pings += 1;
                        if self.unanswered_pings < UNANSWERED_PINGS {
                            return None;
                        }
                        self.unanswered_pings = 0;
                        return Some(Reconnection::Unresponsive);
                    }
                }
            }
            Target::Sentinel { sentinels, .. } => {
                match sentinels.primary().await {
                    Ok(address) => {
                        let named = address.to_string();
                        if self.primary.as_deref() != Some(named.as_str()) {
                            return Some(Reconnection::PrimaryMoved);
                        }
                    }
                    Err(error) => tracing::debug!(%error, "no Sentinel named the primary"),
                }
                match self.replication_of(connection).await {
                    Ok(replication) if !replication.is_primary => {
                        return Some(Reconnection::Readonly);
                    }
                    Ok(_) => Ok(()),
                    Err(error) => Err(error),
                }
            }
        };
        match outcome {
            Err(error) if super::is_connection_error(&error) => Some(Reconnection::ConnectionLost),
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
            self.timeouts.command,
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
        connections: Option<Connections>,
        cause: Option<Reconnection>,
    ) {
        if connections.is_none() {
            // Only the primary in use is 1; between connections there is none.
            self.metrics.unset_primary(&primary);
        } else {
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
            connections,
            primary: Some(primary),
            failure: None,
        });
    }
}
