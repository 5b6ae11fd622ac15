//! Asking Sentinel which node is the primary: `SENTINEL GET-MASTER-ADDR-BY-NAME <master>`, one
//! Sentinel at a time, each bounded by `redis.connect_timeout` (to connect and to answer).
//!
//! redis-rs has a Sentinel client of its own; it is not used because it asks `SENTINEL
//! MASTERS`, connects to the answer to check it on every lookup, and offers no bound per
//! Sentinel. Here only the connector task (`link.rs`) asks, about once a second and after a
//! failure, so this keeps one connection per Sentinel and needs no locking.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, IntoConnectionInfo, RedisError};

use crate::config::{HostPort, SentinelConfig};

#[derive(Debug, thiserror::Error)]
pub enum SentinelError {
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

pub struct Sentinels {
    nodes: Vec<Node>,
    master: String,
    /// The Sentinel asked first: the last one that answered.
    first: usize,
    timeout: Duration,
}

struct Node {
    address: HostPort,
    client: Client,
    /// Kept between questions; dropped after any failure, so the next one reconnects.
    connection: Option<MultiplexedConnection>,
}

impl Sentinels {
    /// Prepares a client per Sentinel; nothing is contacted yet. `None` without Sentinel.
    pub fn new(config: &SentinelConfig, timeout: Duration) -> Result<Option<Self>, RedisError> {
        let Some((addresses, master)) = config.enabled() else {
            return Ok(None);
        };
        let nodes = addresses
            .iter()
            .map(|address| {
                let addr = ConnectionAddr::Tcp(address.host.clone(), address.port);
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
                    client: Client::open(info)?,
                    connection: None,
                })
            })
            .collect::<Result<_, RedisError>>()?;
        Ok(Some(Self {
            nodes,
            master: master.to_owned(),
            first: 0,
            timeout,
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
        let timeout = self.timeout;
        let master = self.master.clone();
        let node = &mut self.nodes[index];
        let sentinel = node.address.clone();
        let question = async {
            let mut connection = match node.connection.take() {
                Some(connection) => connection,
                None => {
                    let config = AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(timeout))
                        .set_response_timeout(Some(timeout));
                    node.client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?
                }
            };
            let answer: Option<(String, u16)> = redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(&master)
                .query_async(&mut connection)
                .await?;
            node.connection = Some(connection);
            Ok::<_, RedisError>(answer)
        };
        match tokio::time::timeout(timeout, question).await {
            Err(_) => Err(SentinelError::Timeout(sentinel)),
            Ok(Err(source)) => Err(SentinelError::Redis { sentinel, source }),
            Ok(Ok(None)) => Err(SentinelError::UnknownMaster { sentinel, master }),
            Ok(Ok(Some((host, port)))) => Ok(HostPort { host, port }),
        }
    }
}
