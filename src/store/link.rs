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
//!
//! The connector itself is in `connector.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::ConnectionInfo;
use redis::aio::MultiplexedConnection;
use tokio::sync::watch;

use super::connector::Connector;
use super::dial::{ConnectFailure, Dialer};
use super::sentinel::Sentinels;
use crate::metrics::Metrics;

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

impl Trouble {
    /// The span event a request that saw it records.
    pub fn event_name(self) -> &'static str {
        match self {
            Self::Slow => "redis.no_answer_in_time",
            Self::Readonly => "redis.primary_moved",
            Self::Lost => "redis.connection_lost",
        }
    }
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
    wrote: Arc<AtomicBool>,
}

#[derive(Clone, Default)]
pub(super) struct Current {
    /// Counts publications, so that a request can wait for one newer than a bad connection.
    pub(super) generation: u64,
    pub(super) connections: Option<Connections>,
    pub(super) primary: Option<Arc<str>>,
    /// Why the last attempt to connect failed, until one succeeds.
    pub(super) failure: Option<ConnectFailure>,
}

/// The connections to one primary.
#[derive(Clone)]
pub(super) struct Connections {
    pub(super) shared: MultiplexedConnection,
    /// Where writes go: a connection of their own when each is followed by `WAIT`, because
    /// Redis blocks a connection during `WAIT`, and reads and readiness checks must not queue
    /// behind it; otherwise the shared one.
    pub(super) writes: MultiplexedConnection,
}

#[derive(Clone, Copy, Default)]
pub(super) struct Report {
    pub(super) generation: u64,
    pub(super) trouble: Option<Trouble>,
}

/// The connections to use, and their generation (for a report about them).
pub struct Connected {
    pub generation: u64,
    pub connection: MultiplexedConnection,
    pub writes: MultiplexedConnection,
}

impl Link {
    /// Starts the connector; it connects in the background at once.
    pub fn start(
        target: Target,
        dialer: Dialer,
        timeouts: Timeouts,
        separate_writes: bool,
        metrics: Metrics,
    ) -> Self {
        let (current_tx, current) = watch::channel(Current::default());
        let (reports, reports_rx) = watch::channel(Report::default());
        let wrote = Arc::new(AtomicBool::new(false));
        Connector::spawn(
            target,
            dialer,
            timeouts,
            separate_writes,
            metrics,
            (current_tx, reports_rx),
            wrote.clone(),
        );
        Self {
            current,
            reports: Arc::new(reports),
            wrote,
        }
    }

    /// The current connection once there is one newer than generation `after`; `None` only
    /// if the connector has stopped. Callers bound the wait with their deadline.
    pub async fn connected(&self, after: u64) -> Option<Connected> {
        let mut current = self.current.clone();
        let current = current
            .wait_for(|current| current.generation > after && current.connections.is_some())
            .await
            .ok()?;
        let connections = current.connections.clone()?;
        Some(Connected {
            generation: current.generation,
            connection: connections.shared,
            writes: connections.writes,
        })
    }

    /// Notes that a write succeeded: the node took writes, so a READONLY from it later is a
    /// demotion (with a URL, the only sign of a failover).
    pub fn wrote(&self) {
        self.wrote.store(true, Ordering::Relaxed);
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

    /// Why there is no connection, when the last attempt to make one failed.
    pub fn failure(&self) -> Option<ConnectFailure> {
        let current = self.current.borrow();
        current
            .connections
            .is_none()
            .then_some(current.failure)
            .flatten()
    }

    /// The primary's address while connected to it.
    pub fn primary(&self) -> Option<Arc<str>> {
        let current = self.current.borrow();
        current.connections.as_ref().and(current.primary.clone())
    }
}

/// `redis.command_timeout` (`redis.connect_timeout` is the dialer's).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub command: Duration,
}
