//! `timestamp-api cluster-create NODE...`: joins empty Redis nodes into a cluster once, and
//! leaves a cluster they already form as it is.
//!
//! `redis-cli --cluster create` does the joining, but it fails on nodes that already form a
//! cluster, and the compose profile `cluster` runs its one-shot creator at every `up`: a job
//! that fails every time after the first would hide the time it fails for a reason. The
//! images have no shell to wrap redis-cli in a check (docs/adr/0004-images-without-a-shell.md),
//! so, as with `seed-file`, the check and the joining are a command of the binary the
//! deployment already ships. It logs in as an ACL user with the CLUSTER commands (`admin`),
//! its password read from a file.
//!
//! The nodes are judged before anything is changed:
//! - every node knows only itself, serves no slot and holds no key: they are joined, the
//!   first `len / (replicas + 1)` as primaries with the slots split evenly, the others as
//!   their replicas in turn (what `redis-cli --cluster create` does, without its
//!   anti-affinity, which has nothing to go on for containers on one host);
//! - every node knows all the others and all 16384 slots are served: left as it is;
//! - anything else (half joined, a node replaced by an empty one, a different cluster): refused,
//!   naming the node, for an operator to finish by hand (docs/deployment.md, "Redis Cluster").

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, IntoConnectionInfo, RedisError};
use tokio::time::Instant;

use crate::config::HostPort;
use crate::cursor::SLOTS;

/// Between two looks at nodes that are still starting or still agreeing.
const POLL: Duration = Duration::from_millis(200);

/// What `create` found or did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The nodes were empty and are now one cluster, every slot served.
    Created { primaries: usize },
    /// The nodes already formed a cluster; nothing was sent that changes one.
    Exists,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("{nodes} nodes cannot make primaries with {replicas} replicas each")]
    Shape { nodes: usize, replicas: usize },
    #[error("{node}: {source}")]
    Redis {
        node: HostPort,
        #[source]
        source: RedisError,
    },
    #[error("{node}: cannot resolve its address: {reason}")]
    Resolve { node: HostPort, reason: String },
    #[error(
        "{node} knows {known} nodes, serves {slots} slots and holds {keys} keys: neither empty \
         nor one cluster with the others; finish or reset the cluster by hand"
    )]
    Mixed {
        node: HostPort,
        known: u64,
        slots: u64,
        keys: u64,
    },
    #[error("gave up after {within:?}: {waiting_for}")]
    Timeout {
        within: Duration,
        waiting_for: String,
    },
}

/// Who to log in as, and how long to wait for the nodes in all.
pub struct Login {
    pub username: Option<String>,
    pub password: Option<String>,
    pub within: Duration,
}

struct Node {
    address: HostPort,
    connection: MultiplexedConnection,
}

/// What a node says of itself in `CLUSTER INFO`, `DBSIZE` and `CLUSTER NODES`.
struct State {
    known: u64,
    slots: u64,
    keys: u64,
    ok: bool,
}

/// Joins `nodes` into a cluster with `replicas` replicas per primary, or finds that they
/// already are one.
pub async fn create(
    nodes: &[HostPort],
    replicas: usize,
    login: &Login,
) -> Result<Outcome, CreateError> {
    let primaries = nodes.len() / (replicas + 1);
    if primaries == 0 || !nodes.len().is_multiple_of(replicas + 1) {
        return Err(CreateError::Shape {
            nodes: nodes.len(),
            replicas,
        });
    }
    let deadline = Instant::now() + login.within;
    let mut connected = Vec::with_capacity(nodes.len());
    for address in nodes {
        connected.push(connect(address, login, deadline).await?);
    }
    let mut states = Vec::with_capacity(connected.len());
    for node in &mut connected {
        states.push(state(node).await?);
    }
    let total = nodes.len() as u64;
    if states
        .iter()
        .all(|state| state.known == total && state.slots == u64::from(SLOTS))
    {
        return Ok(Outcome::Exists);
    }
    if let Some((node, state)) = connected
        .iter()
        .zip(&states)
        .find(|(_, state)| state.known != 1 || state.slots != 0 || state.keys != 0)
    {
        return Err(CreateError::Mixed {
            node: node.address.clone(),
            known: state.known,
            slots: state.slots,
            keys: state.keys,
        });
    }
    join(&mut connected, primaries, deadline, login.within).await?;
    Ok(Outcome::Created { primaries })
}

async fn join(
    nodes: &mut [Node],
    primaries: usize,
    deadline: Instant,
    within: Duration,
) -> Result<(), CreateError> {
    let mut ids = Vec::with_capacity(nodes.len());
    let mut meet = Vec::with_capacity(nodes.len());
    for (index, node) in nodes.iter_mut().enumerate() {
        ids.push(ask::<String>(node, redis::cmd("CLUSTER").arg("MYID")).await?);
        meet.push((resolve(&node.address).await?, bus_port(node).await?));
        // Distinct epochs from the start, so that no two primaries first claim their slots
        // with the same one (redis-cli does the same).
        ask::<()>(
            node,
            redis::cmd("CLUSTER").arg("SET-CONFIG-EPOCH").arg(index + 1),
        )
        .await?;
    }
    let slots = usize::from(SLOTS);
    for (index, node) in nodes.iter_mut().take(primaries).enumerate() {
        let first = index * slots / primaries;
        let last = (index + 1) * slots / primaries - 1;
        ask::<()>(
            node,
            redis::cmd("CLUSTER")
                .arg("ADDSLOTSRANGE")
                .arg(first)
                .arg(last),
        )
        .await?;
    }
    let (first, others) = nodes.split_at_mut(1);
    for (other, (ip, bus)) in others.iter().zip(&meet[1..]) {
        ask::<()>(
            &mut first[0],
            redis::cmd("CLUSTER")
                .arg("MEET")
                .arg(ip.to_string())
                .arg(other.address.port)
                .arg(*bus),
        )
        .await?;
    }
    let total = nodes.len() as u64;
    wait(
        nodes,
        deadline,
        within,
        "every node to know the others",
        |state| state.known == total,
    )
    .await?;
    for index in primaries..nodes.len() {
        let primary = ids[(index - primaries) % primaries].clone();
        // A node learns of the primary by gossip, possibly a moment after it was counted.
        loop {
            match ask::<()>(
                &mut nodes[index],
                redis::cmd("CLUSTER").arg("REPLICATE").arg(&primary),
            )
            .await
            {
                Ok(()) => break,
                Err(error) if Instant::now() < deadline => {
                    tracing::debug!(%error, "CLUSTER REPLICATE refused; trying again");
                    tokio::time::sleep(POLL).await;
                }
                Err(error) => return Err(error),
            }
        }
    }
    wait(
        nodes,
        deadline,
        within,
        "every node to report cluster_state:ok",
        |state| state.ok,
    )
    .await
}

/// Polls every node until `done` holds for all of them.
async fn wait(
    nodes: &mut [Node],
    deadline: Instant,
    within: Duration,
    waiting_for: &str,
    done: impl Fn(&State) -> bool,
) -> Result<(), CreateError> {
    loop {
        let mut all = true;
        for node in nodes.iter_mut() {
            all &= done(&state(node).await?);
        }
        if all {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(CreateError::Timeout {
                within,
                waiting_for: waiting_for.to_owned(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Connects and logs in, trying again until `deadline`: the nodes may still be starting.
async fn connect(
    address: &HostPort,
    login: &Login,
    deadline: Instant,
) -> Result<Node, CreateError> {
    let redis_error = |source| CreateError::Redis {
        node: address.clone(),
        source,
    };
    let mut info = ConnectionAddr::Tcp(address.host.clone(), address.port)
        .into_connection_info()
        .map_err(redis_error)?;
    let mut settings = info.redis_settings().clone().set_skip_set_lib_name();
    if let Some(username) = &login.username {
        settings = settings.set_username(username);
    }
    if let Some(password) = &login.password {
        settings = settings.set_password(password);
    }
    info = info.set_redis_settings(settings);
    let client = Client::open(info).map_err(redis_error)?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(POLL * 5))
        .set_response_timeout(Some(POLL * 5));
    loop {
        match client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Ok(connection) => {
                return Ok(Node {
                    address: address.clone(),
                    connection,
                });
            }
            Err(error) if Instant::now() < deadline && !is_refusal(&error) => {
                tracing::debug!(%error, node = %address, "not answering yet");
                tokio::time::sleep(POLL).await;
            }
            Err(error) => return Err(redis_error(error)),
        }
    }
}

/// A login refused: trying again would not help.
fn is_refusal(error: &RedisError) -> bool {
    error.kind() == redis::ErrorKind::AuthenticationFailed
}

async fn ask<T: redis::FromRedisValue>(
    node: &mut Node,
    command: &mut redis::Cmd,
) -> Result<T, CreateError> {
    command
        .query_async(&mut node.connection)
        .await
        .map_err(|source| CreateError::Redis {
            node: node.address.clone(),
            source,
        })
}

async fn state(node: &mut Node) -> Result<State, CreateError> {
    let info: String = ask(node, redis::cmd("CLUSTER").arg("INFO")).await?;
    let fields: HashMap<&str, &str> = info
        .lines()
        .filter_map(|line| line.trim_end().split_once(':'))
        .collect();
    let number = |field: &str| {
        fields
            .get(field)
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    };
    let (known, slots, ok) = (
        number("cluster_known_nodes"),
        number("cluster_slots_assigned"),
        fields.get("cluster_state") == Some(&"ok"),
    );
    let keys = ask(node, &mut redis::cmd("DBSIZE")).await?;
    Ok(State {
        known,
        slots,
        keys,
        ok,
    })
}

/// The node's cluster bus port, from its own line of `CLUSTER NODES` (`ip:port@bus`): not
/// always port + 10000.
async fn bus_port(node: &mut Node) -> Result<u16, CreateError> {
    let nodes: String = ask(node, redis::cmd("CLUSTER").arg("NODES")).await?;
    nodes
        .lines()
        .find(|line| {
            line.split(' ')
                .nth(2)
                .is_some_and(|flags| flags.contains("myself"))
        })
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|address| address.split_once('@'))
        .and_then(|(_, bus)| bus.split(',').next())
        .and_then(|bus| bus.parse().ok())
        .ok_or_else(|| CreateError::Redis {
            node: node.address.clone(),
            source: RedisError::from((
                redis::ErrorKind::Parse,
                "no bus port in its own line of CLUSTER NODES",
                nodes.clone(),
            )),
        })
}

/// `CLUSTER MEET` takes an address, not a name.
async fn resolve(node: &HostPort) -> Result<IpAddr, CreateError> {
    let resolve_error = |reason: String| CreateError::Resolve {
        node: node.clone(),
        reason,
    };
    tokio::net::lookup_host((node.host.as_str(), node.port))
        .await
        .map_err(|error| resolve_error(error.to_string()))?
        .next()
        .map(|address| address.ip())
        .ok_or_else(|| resolve_error("no address".to_owned()))
}
