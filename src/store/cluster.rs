//! Redis Cluster: the slot map (`CLUSTER SLOTS`), a connection per node (two with replica
//! acks: a write's `WAIT`, which Redis answers late, never holds up a read), and the routing of
//! each command to the primary of its key's slot, following MOVED and ASK. A slow or dead shard
//! holds up only the requests for its own slots.
//!
//! The redis crate's cluster client is not used (ADR 0011): it saw a replica promoted by a
//! SIGKILL failover only about seven seconds after the promotion, when the service must serve
//! within one command timeout of it, and it sends a write again after a lost connection, which
//! the store never does (`mod.rs`). Connections here are made by the store's own `Dialer`, so
//! TLS, certificate renewal and the failure classes are the same as for one node.
//!
//! Listing walks the hash slots in order, not the nodes, because a slot is a property of the
//! key and a node's SCAN cursor means nothing on any other node (after a failover or a slot
//! migration); see `Cluster::list` and docs/architecture.md, "Listing a cluster".

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::future::try_join_all;
use futures_util::stream::FuturesUnordered;
use redis::aio::MultiplexedConnection;
use redis::{Cmd, ConnectionInfo, FromRedisValue, Pipeline, RedisError, Value};
use tokio::sync::OnceCell;

use super::dial::{DialError, Dialer};
use super::{RedisCommand, ReplicaAcks, Store, StoreError, command, is_connection_error};
use crate::config::{HostPort, RedisConfig};
use crate::cursor::{Cursor, SLOTS};
use crate::domain::Name;
use crate::metrics::{ClusterMetrics, Redirection};
use crate::telemetry::traces;

/// Slots read in the first round of a page (one pipeline per node); each further round reads
/// twice as many, up to `MAX_SLOTS_PER_ROUND`, so a dense key space reads little beyond the
/// page and an empty one is walked whole in seven rounds. The whole page is still bounded by
/// `redis.command_timeout`.
const FIRST_ROUND_SLOTS: u16 = 256;
const MAX_SLOTS_PER_ROUND: u16 = 4096;

/// `CLUSTER GETKEYSINSLOT` has no cursor, so a slot is read whole; beyond this many keys in one
/// slot (other applications' hash-tagged keys, say) the listing refuses rather than read them.
pub const MAX_KEYS_PER_SLOT: usize = 10_000;

/// Pause before trying again after TRYAGAIN, CLUSTERDOWN or a node that cannot be reached:
/// long enough for a slot migration step or a failover's new map to show, short against
/// `redis.command_timeout`.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// At most one new reading of the slot map per this long, however many requests fail.
const REFRESH_INTERVAL: Duration = Duration::from_millis(100);

/// A slot map older than this is read again by the next request (one `CLUSTER SLOTS` a second
/// under traffic): a primary that stops answering without closing its connections (frozen,
/// partitioned) causes no error to react to, only timeouts, and its shard's failover must
/// still reach the service.
const MAP_MAX_AGE: Duration = Duration::from_secs(1);

pub(super) struct Cluster {
    seeds: Vec<HostPort>,
    dialer: Dialer,
    /// Credentials and protocol settings for every node.
    node: ConnectionInfo,
    reads: Pool,
    /// With replica acks, writes and their `WAIT` on connections of their own.
    writes: Option<Pool>,
    /// The slot map as last read: commands are routed by it, and metrics name shards by it.
    map: RwLock<Option<Arc<SlotMap>>>,
    /// When the slot map was last read again after trouble, so that a hundred requests failing
    /// at once cause one `CLUSTER SLOTS`, not a hundred.
    refreshed: Mutex<Option<Instant>>,
    metrics: ClusterMetrics,
}

/// One connection per node, made by the first request that needs it (the others wait for
/// that attempt), and dropped when it fails.
#[derive(Default)]
struct Pool(Mutex<HashMap<HostPort, Arc<OnceCell<MultiplexedConnection>>>>);

impl Pool {
    fn slot_for(&self, node: &HostPort) -> Arc<OnceCell<MultiplexedConnection>> {
        let mut nodes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        nodes.entry(node.clone()).or_default().clone()
    }

    /// Forgets `node`'s connection if it is still `failed`, so the next request makes a new one.
    fn forget(&self, node: &HostPort, failed: &Arc<OnceCell<MultiplexedConnection>>) {
        let mut nodes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if nodes
            .get(node)
            .is_some_and(|cell| Arc::ptr_eq(cell, failed))
        {
            nodes.remove(node);
        }
    }
}

/// A command that could not be sent, or was answered with an error.
enum Failure {
    Dial(DialError),
    Redis(RedisError),
}

impl Failure {
    /// As the store reports it to a caller: no connection within `after`, or the reply's error
    /// (for a read).
    fn into_store_error(self, store: &Store, after: Duration) -> StoreError {
        match self {
            Self::Dial(error) => StoreError::Unreachable {
                after,
                cause: error.cause,
            },
            Self::Redis(error) => store.refusal_or_failure(error, false),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dial(error) => error.fmt(f),
            Self::Redis(error) => error.fmt(f),
        }
    }
}

/// Who serves which slots, as one node sees it (`CLUSTER SLOTS`).
#[derive(PartialEq)]
struct SlotMap(Vec<(u16, u16, HostPort)>);

impl SlotMap {
    fn owner(&self, slot: u16) -> Option<&HostPort> {
        self.0
            .iter()
            .find(|(first, last, _)| (*first..=*last).contains(&slot))
            .map(|(_, _, node)| node)
    }

    /// Each primary once, in slot order.
    fn primaries(&self) -> Vec<HostPort> {
        let mut primaries: Vec<HostPort> = Vec::new();
        for (_, _, node) in &self.0 {
            if !primaries.contains(node) {
                primaries.push(node.clone());
            }
        }
        primaries
    }
}

/// Why the slot map is read again.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Refresh {
    /// A MOVED, or a node that could not be reached.
    Trouble,
    /// It is older than `MAP_MAX_AGE`.
    Routine,
}

/// Where the next try of a keyed command goes.
enum Target {
    /// The primary of the key's slot, in the last slot map read.
    Slot,
    /// The node a MOVED named.
    Moved(HostPort),
    /// The node an ASK named, with `ASKING` first.
    Asked(HostPort),
}

impl Cluster {
    /// Prepares the cluster's connections; nothing connects until the first operation (or the
    /// warm-up that `Store::new` starts), so the service starts while the cluster is down.
    pub(super) fn new(
        config: &RedisConfig,
        node: ConnectionInfo,
        dialer: Dialer,
        metrics: ClusterMetrics,
    ) -> Self {
        Self {
            seeds: config.cluster.addresses.clone(),
            dialer,
            node,
            reads: Pool::default(),
            writes: (config.min_replica_acks > 0).then(Pool::default),
            map: RwLock::new(None),
            refreshed: Mutex::new(None),
            metrics,
        }
    }

    pub(super) async fn warm_up(&self, store: &Store) {
        if let Err(error) = self.slot_map(store).await {
            tracing::warn!(%error, "cannot reach the Redis Cluster yet; requests will retry");
        }
    }

    /// Sends `pipeline` to `node` on its read or write connection; a connection that fails is
    /// dropped.
    async fn send<T: FromRedisValue>(
        &self,
        store: &Store,
        node: &HostPort,
        write: bool,
        name: &'static str,
        pipeline: &Pipeline,
    ) -> Result<T, Failure> {
        let pool = match (&self.writes, write) {
            (Some(writes), true) => writes,
            _ => &self.reads,
        };
        let cell = pool.slot_for(node);
        let dialled = cell
            .get_or_try_init(|| {
                let info = self
                    .node
                    .clone()
                    .set_addr(self.dialer.address(node.host.clone(), node.port));
                async move { self.dialer.open_for_commands(&info).await }
            })
            .await;
        let mut connection = match dialled {
            Ok(connection) => connection.clone(),
            Err(error) => {
                store.metrics.count_reconnection_failure(error.cause);
                pool.forget(node, &cell);
                return Err(Failure::Dial(error));
            }
        };
        let node_name = || Some(Arc::from(node.to_string()));
        let sent = store
            .observed(name, node_name, pipeline.query_async(&mut connection))
            .await;
        if let Err(error) = &sent
            && is_connection_error(error)
        {
            pool.forget(node, &cell);
        }
        sent.map_err(Failure::Redis)
    }

    /// The primary of `key`'s slot in the last slot map read.
    fn owner_of(&self, key: &str) -> Option<HostPort> {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        map.as_ref()?.owner(slot_of(key)).cloned()
    }

    /// A keyed read.
    pub(super) async fn read<T: FromRedisValue>(
        &self,
        store: &Store,
        key: &str,
        read: RedisCommand,
    ) -> Result<T, StoreError> {
        let [reply] = self.keyed(store, false, key, read.name, [read.cmd]).await?;
        parsed(reply)
    }

    /// A keyed write on the primary of `key`'s slot, then, with replica acks, `WAIT` on the
    /// same connection in the same pipeline, so that it counts the replicas that have this
    /// write.
    pub(super) async fn write<T: FromRedisValue>(
        &self,
        store: &Store,
        key: &str,
        write: RedisCommand,
    ) -> Result<T, StoreError> {
        let Some(ReplicaAcks { count, timeout }) = store.replica_acks else {
            let [reply] = self
                .keyed(store, true, key, write.name, [write.cmd])
                .await?;
            return parsed(reply);
        };
        // At most 30 s by the configuration check, so the milliseconds fit.
        let millis = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let wait = command("WAIT").arg(count).arg(millis).cmd;
        let [reply, acked] = self
            .keyed(store, true, key, write.name, [write.cmd, wait])
            .await?;
        let reply = parsed(reply)?;
        let acked: u32 = parsed(acked)?;
        if acked < count {
            return Err(StoreError::NotReplicated {
                acked,
                wanted: count,
            });
        }
        Ok(reply)
    }

    /// Sends `commands` (about `key`) as one pipeline to the primary of its slot, following
    /// MOVED and ASK, and trying again when the node surely did not run them: TRYAGAIN,
    /// CLUSTERDOWN, or no connection to it (the slot map is read again, as the shard may have
    /// failed over). After a lost connection a read is sent again and a write is not, as on one
    /// node (`Store::run`). The caller bounds the whole by `redis.command_timeout`.
    async fn keyed<const N: usize>(
        &self,
        store: &Store,
        write: bool,
        key: &str,
        name: &'static str,
        commands: [Cmd; N],
    ) -> Result<[Value; N], StoreError> {
        let mut target = Target::Slot;
        self.refresh_map(store, Refresh::Routine).await;
        loop {
            let mut pipeline = redis::pipe();
            let node = match &target {
                Target::Slot => match self.owner_of(key) {
                    Some(owner) => owner,
                    None => {
                        self.slot_map(store).await?;
                        self.owner_of(key).ok_or_else(|| {
                            StoreError::ClusterDegraded(format!(
                                "slot {} has no node",
                                slot_of(key)
                            ))
                        })?
                    }
                },
                Target::Moved(node) => node.clone(),
                Target::Asked(node) => {
                    pipeline.cmd("ASKING").ignore();
                    node.clone()
                }
            };
            for command in &commands {
                pipeline.add_command(command.clone());
            }
            // Each reply as it came, error or not: a MOVED, ASK or TRYAGAIN for the first
            // command is acted on here (the rest of the pipeline failed with it), any other
            // error reply is the caller's.
            pipeline.ignore_errors();
            let shard = node.to_string();
            let sent = self
                .send::<Vec<Value>>(store, &node, write, name, &pipeline)
                .await
                .and_then(|replies| match replies.first() {
                    Some(Value::ServerError(first))
                        if matches!(first.code(), "MOVED" | "ASK" | "TRYAGAIN" | "CLUSTERDOWN") =>
                    {
                        Err(Failure::Redis(RedisError::from(first.clone())))
                    }
                    _ => Ok(replies),
                });
            let error = match sent {
                Ok(replies) => {
                    self.metrics.count_command(&shard, true);
                    let replies = replies
                        .into_iter()
                        .map(|reply| {
                            reply
                                .extract_error()
                                .map_err(|error| store.refusal_or_failure(error, write))
                        })
                        .collect::<Result<Vec<Value>, StoreError>>()?;
                    return replies.try_into().map_err(|_| {
                        StoreError::Redis(RedisError::from((
                            redis::ErrorKind::Parse,
                            "a pipeline did not get one reply per command",
                        )))
                    });
                }
                Err(error) => error,
            };
            self.metrics.count_command(&shard, false);
            let error = match error {
                Failure::Dial(_) => {
                    self.refresh_map(store, Refresh::Trouble).await;
                    tokio::time::sleep(RETRY_PAUSE).await;
                    target = Target::Slot;
                    continue;
                }
                Failure::Redis(error) => error,
            };
            if let Some((address, _)) = error.redirect_node() {
                let to: HostPort = address
                    .parse()
                    .map_err(|_| StoreError::Redis(error.clone()))?;
                target = if error.code() == Some("ASK") {
                    self.metrics.count_redirection(&shard, Redirection::Ask);
                    Target::Asked(to)
                } else {
                    self.metrics.count_redirection(&shard, Redirection::Moved);
                    self.refresh_map(store, Refresh::Trouble).await;
                    Target::Moved(to)
                };
                continue;
            }
            let busy = matches!(error.code(), Some("TRYAGAIN" | "CLUSTERDOWN"));
            let lost = is_connection_error(&error);
            if busy || (lost && !write) {
                traces::event("redis.retried", || {
                    vec![("error.type", error.code().unwrap_or("io").to_owned().into())]
                });
                if lost {
                    self.refresh_map(store, Refresh::Trouble).await;
                }
                tokio::time::sleep(RETRY_PAUSE).await;
                target = Target::Slot;
                continue;
            }
            return Err(store.refusal_or_failure(error, write));
        }
    }

    /// Reads the slot map again, unless that was done within the interval `why` allows (one
    /// caller does it, the others go on with the map they have); a failure is left to the next
    /// try, which will say what is wrong.
    async fn refresh_map(&self, store: &Store, why: Refresh) {
        let within = match why {
            Refresh::Trouble => REFRESH_INTERVAL,
            Refresh::Routine => MAP_MAX_AGE,
        };
        {
            let mut refreshed = self
                .refreshed
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if refreshed.is_some_and(|at| at.elapsed() < within) {
                return;
            }
            *refreshed = Some(Instant::now());
        }
        if why == Refresh::Trouble {
            self.metrics.count_slot_map_refresh();
        }
        let _ = self.slot_map(store).await;
    }

    /// The values of `keys`: one GET each, sent together (each node's connection pipelines
    /// them). Not MGET: the names of a page rarely share a slot, the server refuses an MGET
    /// across slots, and one within a slot being migrated answers TRYAGAIN until the slot has
    /// moved, where a GET follows the ASK.
    pub(super) async fn values(
        &self,
        store: &Store,
        keys: &[String],
    ) -> Result<Vec<Option<String>>, StoreError> {
        try_join_all(
            keys.iter()
                .map(|key| self.read(store, key, command("GET").arg(key))),
        )
        .await
    }

    /// Ready when the cluster says it is ok, every slot is served, and every shard's primary
    /// answers; otherwise the shard at fault is named.
    pub(super) async fn check(&self, store: &Store) -> Result<(), StoreError> {
        let checked = self.check_whole(store).await;
        self.metrics.set_ok(checked.is_ok());
        checked
    }

    async fn check_whole(&self, store: &Store) -> Result<(), StoreError> {
        let info: String = parsed(self.ask_any(store, command("CLUSTER").arg("INFO")).await?)?;
        let map = self.slot_map(store).await?;
        let pings = map.0.iter().map(|(first, last, node)| async move {
            let ping = redis::pipe().add_command(command("PING").cmd).clone();
            match self.send::<Value>(store, node, false, "PING", &ping).await {
                Ok(_) => Ok(()),
                Err(failure) => Err(StoreError::ClusterDegraded(format!(
                    "shard of slots {first}-{last} at {node}: {failure}"
                ))),
            }
        });
        try_join_all(pings).await?;
        let field = |name: &str| {
            info.lines()
                .find_map(|line| line.trim().strip_prefix(name)?.strip_prefix(':'))
                .unwrap_or("?")
                .to_owned()
        };
        let (state, served) = (field("cluster_state"), field("cluster_slots_ok"));
        if state != "ok" || served != SLOTS.to_string() {
            let unserved = (0..SLOTS).find(|slot| map.owner(*slot).is_none());
            return Err(StoreError::ClusterDegraded(match unserved {
                Some(slot) => format!("cluster_state {state}; slot {slot} has no node"),
                None => format!("cluster_state {state}, {served} of {SLOTS} slots served"),
            }));
        }
        Ok(())
    }

    /// Sends a command that any node can answer to the primaries of the last slot map and to
    /// the seeds, all at once, and takes the first answer. A shard that is down must not fail
    /// questions about the whole cluster, and a node that hangs (frozen, or gone without
    /// closing its connections) must not delay them: asked in turn, it took a request's whole
    /// budget whenever it came first, and the map was not read again until its replica had
    /// long taken over (`cluster::a_frozen_primary_…` in tests/api).
    async fn ask_any(&self, store: &Store, question: RedisCommand) -> Result<Value, StoreError> {
        let mut nodes = {
            let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
            map.as_ref().map(|map| map.primaries()).unwrap_or_default()
        };
        for seed in &self.seeds {
            if !nodes.contains(seed) {
                nodes.push(seed.clone());
            }
        }
        let name = question.name;
        let mut pipeline = redis::pipe();
        pipeline.add_command(question.cmd);
        let pipeline = &pipeline;
        let mut asked: FuturesUnordered<_> = nodes
            .iter()
            .map(|node| async move {
                // A node that does not answer in a connect timeout is passed over like one
                // that refuses.
                let asked = self.send::<(Value,)>(store, node, false, name, pipeline);
                tokio::time::timeout(self.dialer.timeout(), asked)
                    .await
                    .unwrap_or_else(|_| {
                        Err(Failure::Redis(RedisError::from(std::io::Error::from(
                            std::io::ErrorKind::TimedOut,
                        ))))
                    })
            })
            .collect();
        let (mut refused, mut failed) = (None, None);
        while let Some(answered) = asked.next().await {
            match answered {
                Ok((answer,)) => return Ok(answer),
                Err(Failure::Redis(error)) if !is_connection_error(&error) => {
                    refused = Some(error);
                }
                Err(failure) => failed = Some(failure),
            }
        }
        Err(match (refused, failed) {
            (Some(error), _) => store.refusal_or_failure(error, false),
            (None, Some(failure)) => failure.into_store_error(store, self.dialer.timeout()),
            (None, None) => StoreError::ClusterDegraded("no seed node is configured".to_owned()),
        })
    }

    /// Reads the slot map (`CLUSTER SLOTS`) and keeps it for routing and for metrics.
    async fn slot_map(&self, store: &Store) -> Result<Arc<SlotMap>, StoreError> {
        let reply = self.ask_any(store, command("CLUSTER").arg("SLOTS")).await?;
        let map = Arc::new(parse_slots(reply).map_err(StoreError::Redis)?);
        let previous = self
            .map
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(map.clone());
        // The cluster's topology changing is what an operator looks for after a failover or a
        // reshard, as a change of primary is with Sentinel.
        if previous.is_some_and(|previous| previous != map) {
            let primaries: Vec<String> = map.primaries().iter().map(ToString::to_string).collect();
            tracing::info!(
                ranges = map.0.len(),
                primaries = primaries.join(","),
                "the Redis Cluster slot map changed"
            );
        }
        Ok(map)
    }

    /// One page: the names in slot order, and within a slot in byte order, from the cursor's
    /// position on. Every name that exists for the whole listing is returned once: it stays in
    /// its slot whichever node serves it, and a slot is read whole, on the node that serves it
    /// and, while it is being migrated or has just moved, on the other node too.
    pub(super) async fn list(
        &self,
        store: &Store,
        limit: usize,
        cursor: Cursor,
    ) -> Result<(Vec<Name>, Option<Cursor>), StoreError> {
        // A one-node cursor, brought over a change of topology, starts the listing again.
        let (mut slot, mut after) = match cursor {
            Cursor::Slots { slot, after } => (slot, after),
            Cursor::Scan { .. } => (0, None),
        };
        let map = self.slot_map(store).await?;
        let mut names = Vec::new();
        let mut round = FIRST_ROUND_SLOTS;
        while slot < SLOTS {
            let round_end = slot.saturating_add(round).min(SLOTS);
            round = (round * 2).min(MAX_SLOTS_PER_ROUND);
            let mut keys = self.keys_in_slots(store, &map, slot..round_end).await?;
            for current in slot..round_end {
                let mut in_slot: Vec<Name> = keys
                    .remove(&current)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|key| Name::parse(key.strip_prefix(&*store.prefix)?).ok())
                    .filter(|name| after.as_ref().is_none_or(|after| name > after))
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let room = limit - names.len();
                if in_slot.len() > room {
                    in_slot.truncate(room);
                    names.extend(in_slot);
                    let last = names.last().cloned();
                    return Ok((
                        names,
                        Some(Cursor::Slots {
                            slot: current,
                            after: last,
                        }),
                    ));
                }
                names.extend(in_slot);
                after = None;
                if names.len() == limit && current + 1 < SLOTS {
                    return Ok((
                        names,
                        Some(Cursor::Slots {
                            slot: current + 1,
                            after: None,
                        }),
                    ));
                }
            }
            slot = round_end;
        }
        Ok((names, None))
    }

    /// The keys of each slot in `slots`, read on the node `map` names, then checked against
    /// that node's own view (`CLUSTER NODES`, asked after the keys, in the same pipeline): a
    /// slot it is migrating, or no longer serves, is read again on the other node, and the two
    /// readings are joined. A key moves from the old node to the new one, never back, so a key
    /// that existed throughout is in one of the two readings.
    async fn keys_in_slots(
        &self,
        store: &Store,
        map: &SlotMap,
        slots: std::ops::Range<u16>,
    ) -> Result<HashMap<u16, Vec<String>>, StoreError> {
        let mut by_node: HashMap<HostPort, Vec<u16>> = HashMap::new();
        for slot in slots {
            let node = map
                .owner(slot)
                .ok_or_else(|| StoreError::ClusterDegraded(format!("slot {slot} has no node")))?;
            by_node.entry(node.clone()).or_default().push(slot);
        }
        let readings = try_join_all(
            by_node
                .iter()
                .map(|(node, slots)| self.read_slots(store, node, slots, true)),
        )
        .await?;
        let mut keys: HashMap<u16, Vec<String>> = HashMap::new();
        let mut again: HashMap<HostPort, Vec<u16>> = HashMap::new();
        for ((node, slots), (found, view)) in by_node.iter().zip(readings) {
            let view = view.unwrap_or_default();
            for (slot, slot_keys) in slots.iter().zip(found) {
                if let Some(other) = view.elsewhere(*slot)
                    && other != *node
                {
                    again.entry(other).or_default().push(*slot);
                }
                keys.insert(*slot, slot_keys);
            }
        }
        let second = try_join_all(
            again
                .iter()
                .map(|(node, slots)| self.read_slots(store, node, slots, false)),
        )
        .await?;
        for ((_, slots), (found, _)) in again.iter().zip(second) {
            for (slot, slot_keys) in slots.iter().zip(found) {
                keys.entry(*slot).or_default().extend(slot_keys);
            }
        }
        Ok(keys)
    }

    /// `CLUSTER GETKEYSINSLOT` for each of `slots` on `node`, in one pipeline, ending with
    /// `CLUSTER NODES` when `with_view`.
    async fn read_slots(
        &self,
        store: &Store,
        node: &HostPort,
        slots: &[u16],
        with_view: bool,
    ) -> Result<(Vec<Vec<String>>, Option<NodeView>), StoreError> {
        let mut pipeline = redis::pipe();
        for slot in slots {
            pipeline.add_command(
                command("CLUSTER")
                    .arg("GETKEYSINSLOT")
                    .arg(*slot)
                    .arg(MAX_KEYS_PER_SLOT + 1)
                    .cmd,
            );
        }
        if with_view {
            pipeline.add_command(command("CLUSTER").arg("NODES").cmd);
        }
        let mut replies: Vec<Value> = self
            .send(store, node, false, "CLUSTER", &pipeline)
            .await
            .map_err(|failure| failure.into_store_error(store, self.dialer.timeout()))?;
        let view = match with_view {
            true => {
                let text: Option<String> = replies.pop().map(parsed).transpose()?;
                text.map(|text| NodeView::parse(&text))
            }
            false => None,
        };
        let mut found = Vec::with_capacity(slots.len());
        for (slot, reply) in slots.iter().zip(replies) {
            let keys: Vec<String> = parsed(reply)?;
            if keys.len() > MAX_KEYS_PER_SLOT {
                return Err(StoreError::SlotTooLarge { slot: *slot });
            }
            found.push(keys);
        }
        Ok((found, view))
    }
}

/// What one node says of itself in `CLUSTER NODES`: the slots it serves, those it is migrating
/// and to whom, and who serves the rest.
#[derive(Default)]
struct NodeView {
    serves: Vec<(u16, u16)>,
    migrating: HashMap<u16, HostPort>,
    others: Vec<(u16, u16, HostPort)>,
}

impl NodeView {
    /// Lines are `<id> <ip:port@bus[,hostname]> <flags> <master> <ping> <pong> <epoch> <link>
    /// <slot or range>...`; a migrating slot is `[<slot>->-<target id>]`.
    fn parse(text: &str) -> Self {
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|line| line.split_whitespace().collect())
            .filter(|fields: &Vec<&str>| fields.len() >= 8)
            .collect();
        let address = |fields: &[&str]| {
            let (host_port, _) = fields[1].split_once('@')?;
            let (host, port) = host_port.rsplit_once(':')?;
            Some(HostPort {
                host: host.trim_matches(['[', ']']).to_owned(),
                port: port.parse().ok()?,
            })
        };
        let ids: HashMap<&str, HostPort> = lines
            .iter()
            .filter_map(|fields| Some((fields[0], address(fields)?)))
            .collect();
        let mut view = Self::default();
        for fields in &lines {
            let myself = fields[2].split(',').any(|flag| flag == "myself");
            let Some(node) = address(fields) else {
                continue;
            };
            for entry in &fields[8..] {
                if let Some(migration) = entry.strip_prefix('[').and_then(|e| e.strip_suffix(']')) {
                    if myself
                        && let Some((slot, target)) = migration.split_once("->-")
                        && let (Ok(slot), Some(target)) = (slot.parse(), ids.get(target))
                    {
                        view.migrating.insert(slot, target.clone());
                    }
                    continue;
                }
                let (first, last) = entry.split_once('-').unwrap_or((entry, entry));
                let (Ok(first), Ok(last)) = (first.parse(), last.parse()) else {
                    continue;
                };
                match myself {
                    true => view.serves.push((first, last)),
                    false => view.others.push((first, last, node.clone())),
                }
            }
        }
        view
    }

    /// The other node that holds keys of `slot`: the one it is migrating to, or, when this node
    /// no longer serves it, the one that does.
    fn elsewhere(&self, slot: u16) -> Option<HostPort> {
        if let Some(target) = self.migrating.get(&slot) {
            return Some(target.clone());
        }
        let within = |first: &u16, last: &u16| (*first..=*last).contains(&slot);
        if self.serves.iter().any(|(first, last)| within(first, last)) {
            return None;
        }
        self.others
            .iter()
            .find(|(first, last, _)| within(first, last))
            .map(|(_, _, node)| node.clone())
    }
}

/// `CLUSTER SLOTS`: `[[first, last, [host, port, id, ...], replicas...], ...]`.
fn parse_slots(reply: Value) -> Result<SlotMap, RedisError> {
    let malformed =
        || RedisError::from((redis::ErrorKind::Parse, "unexpected CLUSTER SLOTS reply"));
    let ranges = Vec::<Value>::from_redis_value(reply)?;
    let mut map = Vec::with_capacity(ranges.len());
    for range in ranges {
        let fields = Vec::<Value>::from_redis_value(range)?;
        let [first, last, primary, ..] = &fields[..] else {
            return Err(malformed());
        };
        let primary = Vec::<Value>::from_redis_value(primary.clone())?;
        let [host, port, ..] = &primary[..] else {
            return Err(malformed());
        };
        map.push((
            u16::from_redis_value(first.clone())?,
            u16::from_redis_value(last.clone())?,
            HostPort {
                host: String::from_redis_value(host.clone())?,
                port: u16::from_redis_value(port.clone())?,
            },
        ));
    }
    Ok(SlotMap(map))
}

/// Redis Cluster's slot of a key: CRC16 (XMODEM) of it, modulo 16384. The service's keys hold
/// no hash tag (the configuration refuses one in the prefix, and names cannot hold braces), so
/// the whole key counts.
fn slot_of(key: &str) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(key.as_bytes()) % SLOTS
}

fn parsed<T: FromRedisValue>(reply: Value) -> Result<T, StoreError> {
    T::from_redis_value(reply).map_err(|error| StoreError::Redis(error.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_the_servers_own() {
        // As `CLUSTER KEYSLOT` answers (Redis 7.0).
        assert_eq!(slot_of("ts:a"), 7941);
        assert_eq!(slot_of("foo"), 12182);
        assert_eq!(slot_of(""), 0);
    }

    #[test]
    fn a_node_names_the_slots_it_migrates_and_who_serves_the_rest() {
        let text = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 2 connected 5461-10922 [7941->-b2]
b2 127.0.0.1:7000@17000 master - 0 1 1 connected 0-5460
c3 127.0.0.1:7002@17002,redis-2 master - 0 1 3 connected 10923-16383
d4 127.0.0.1:7003@17003 slave a1 0 1 2 connected
";
        let view = NodeView::parse(text);
        let node = |port| HostPort {
            host: "127.0.0.1".into(),
            port,
        };
        assert_eq!(view.elsewhere(7941), Some(node(7000)));
        assert_eq!(view.elsewhere(7942), None);
        assert_eq!(view.elsewhere(12000), Some(node(7002)));
        assert_eq!(view.elsewhere(0), Some(node(7000)));
    }
}
