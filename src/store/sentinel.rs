//! Asking Sentinel which node is the primary: `SENTINEL GET-MASTER-ADDR-BY-NAME <master>`, one
//! Sentinel at a time, each bounded by `redis.connect_timeout` (to connect and to answer).
//!
//! redis-rs has a Sentinel client of its own; it is not used because it asks `SENTINEL
//! MASTERS`, connects to the answer to check it on every lookup, and offers no bound per
//! Sentinel. Here only the connector task (`link.rs`) asks, about once a second and after a
//! failure, so this keeps one connection per Sentinel and needs no locking.

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionInfo, IntoConnectionInfo, RedisError};

use super::dial::{ConnectFailure, DialError, Dialer};
use crate::config::{HostPort, SentinelConfig};

#[derive(Debug, thiserror::Error)]
pub enum SentinelError {
    #[error("Sentinel {sentinel}: {source}")]
    Dial {
        sentinel: HostPort,
        source: DialError,
    },
    #[error("Sentinel {sentinel}: {source}")]
    Redis {
        sentinel: HostPort,
        source: RedisError,
    },
    #[error("Sentinel {0} did not answer within the connect timeout")]
    Timeout(HostPort),
    #[error("Sentinel {sentinel} does not monitor a master named {master}")]
    UnknownMaster { sentinel: HostPort, master: String },
}

impl SentinelError {
    pub(super) fn cause(&self) -> ConnectFailure {
        match self {
            Self::Dial { source, .. } => source.cause,
            Self::Redis { .. } => ConnectFailure::Other,
            Self::Timeout(_) => ConnectFailure::Timeout,
            Self::UnknownMaster { .. } => ConnectFailure::UnknownMaster,
        }
    }
}

pub struct Sentinels {
    nodes: Vec<Node>,
    dialer: Dialer,
    master: String,
    /// The Sentinel asked first: the last one that answered.
    first: usize,
}

struct Node {
    address: HostPort,
    info: ConnectionInfo,
    /// Kept between questions; dropped after any failure, so the next one reconnects.
    connection: Option<MultiplexedConnection>,
}

impl Sentinels {
    /// Prepares a connection per Sentinel (with TLS if `dialer` speaks it); nothing is
    /// contacted yet. `None` without Sentinel.
    pub fn new(config: &SentinelConfig, dialer: Dialer) -> Result<Option<Self>, RedisError> {
        let Some((addresses, master)) = config.enabled() else {
            return Ok(None);
        };
        let nodes = addresses
            .iter()
            .map(|address| {
                let addr = dialer.address(address.host.clone(), address.port);
                let mut info = addr.into_connection_info()?;
                let mut settings = info.redis_settings().clone().set_skip_set_lib_name();
                if let Some(username) = &config.username {
                    settings = settings.set_username(username);
                }
                if let Some(password) = &config.password {
                    settings = settings.set_password(password.expose());
                }
                info = info.set_redis_settings(settings);
                Ok(Node {
                    address: address.clone(),
                    info,
                    connection: None,
                })
            })
            .collect::<Result<_, RedisError>>()?;
        Ok(Some(Self {
            nodes,
            dialer,
            master: master.to_owned(),
            first: 0,
        }))
    }

    pub fn master(&self) -> &str {
        &self.master
    }

    /// The primary's address, from the first Sentinel that knows it; the error is the last
    /// Sentinel's when none does.
    pub async fn primary(&mut self) -> Result<HostPort, SentinelError> {
        let count = self.nodes.len();
        let mut last_error = None;
        for offset in 0..count {
            let index = (self.first + offset) % count;
            match self.ask(index).await {
                Ok(address) => {
                    self.first = index;
                    return Ok(address);
                }
                Err(error) => {
                    tracing::debug!(%error, "a Sentinel did not name the primary");
                    last_error = Some(error);
                }
            }
        }
        // Invariant: `new` builds at least one node (`enabled()` is `None` for an empty list),
        // so the loop ran and set an error.
        Err(last_error.expect("at least one Sentinel was asked"))
    }

    /// Asks another Sentinel first next time: the last one named a node that is no primary
    /// (it has not heard of a failover yet, or is cut off from the others).
    pub fn distrust_last(&mut self) {
        self.first = (self.first + 1) % self.nodes.len().max(1);
    }

    async fn ask(&mut self, index: usize) -> Result<HostPort, SentinelError> {
        let timeout = self.dialer.timeout();
        let master = self.master.clone();
        let node = &mut self.nodes[index];
        let sentinel = node.address.clone();
        let dialer = &self.dialer;
        let question = async {
            let mut connection = match node.connection.take() {
                Some(connection) => connection,
                None => {
                    let config = AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(timeout))
                        .set_response_timeout(Some(timeout));
                    dialer
                        .open(&node.info, config)
                        .await
                        .map_err(|source| SentinelError::Dial {
                            sentinel: sentinel.clone(),
                            source,
                        })?
                }
            };
            let answer: Option<(String, u16)> = redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(&master)
                .query_async(&mut connection)
                .await
                .map_err(|source| SentinelError::Redis {
                    sentinel: sentinel.clone(),
                    source,
                })?;
            node.connection = Some(connection);
            Ok(answer)
        };
        match tokio::time::timeout(timeout, question).await {
            Err(_) => Err(SentinelError::Timeout(sentinel)),
            Ok(Err(error)) => Err(error),
            Ok(Ok(None)) => Err(SentinelError::UnknownMaster { sentinel, master }),
            Ok(Ok(Some((host, port)))) => Ok(HostPort { host, port }),
        }
    }
}
