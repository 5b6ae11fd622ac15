//! A private Redis Cluster: three primaries with a replica each, six `RedisServer`s started
//! with `--cluster-enabled yes` on loopback ports (the cluster bus on another free port, as
//! port + 10000 may not be free or may not exist), joined by `redis-cli --cluster create`.
//! Dropping it kills every node. It hands out cluster connections for looking at what the
//! service stored, asks nodes `CLUSTER` questions, and waits for the cluster to agree. With
//! `ServerTls` every node speaks only TLS, on the cluster bus and for replication too.

use std::process::Command;
use std::time::{Duration, Instant};

use redis::cluster::ClusterConnection;

use super::certs::ServerTls;
use super::redis_server::{RedisServer, free_port};
use super::timing::slack;

/// `cluster-node-timeout`: how long a primary must be unreachable before the others call it
/// failed and its replica takes over.
pub const NODE_TIMEOUT: Duration = Duration::from_millis(1000);

/// Bound on each direct question to a node.
const DIRECT_TIMEOUT: Duration = Duration::from_secs(1);

pub struct RedisCluster {
    /// The first three are the primaries at the start, each followed later by its replica
    /// (`redis-cli --cluster create` pairs them itself).
    pub nodes: Vec<RedisServer>,
}

/// `REDIS_CLI_BIN`, or `redis-cli` on PATH.
fn redis_cli() -> Command {
    Command::new(std::env::var_os("REDIS_CLI_BIN").unwrap_or_else(|| "redis-cli".into()))
}

impl RedisCluster {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    pub fn start_with(tls: Option<&ServerTls>) -> Self {
        let cluster = Self::unjoined(tls);
        let mut create = redis_cli();
        if let Some(tls) = tls {
            create
                .arg("--tls")
                .arg("--cacert")
                .arg(&tls.harness_ca)
                .arg("--cert")
                .arg(&tls.harness_client.cert)
                .arg("--key")
                .arg(&tls.harness_client.key);
        }
        let output = create
            .arg("--cluster")
            .arg("create")
            .args(
                cluster
                    .nodes
                    .iter()
                    .map(|node| format!("127.0.0.1:{}", node.port())),
            )
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .unwrap_or_else(|error| {
                panic!(
                    "running redis-cli --cluster create: {error}; the cluster tests need \
                     redis-cli (Debian: apt-get install redis-tools) or REDIS_CLI_BIN"
                )
            });
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        cluster.wait_until_whole(Duration::from_secs(10) + slack());
        cluster
    }

    /// Six cluster-enabled nodes that know only themselves, for a test of joining them.
    pub fn unjoined(tls: Option<&ServerTls>) -> Self {
        let node_timeout = NODE_TIMEOUT.as_millis().to_string();
        let nodes: Vec<RedisServer> = (0..6)
            .map(|_| {
                let bus = free_port().to_string();
                let mut args = vec![
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    &node_timeout,
                    "--cluster-port",
                    &bus,
                    "--appendonly",
                    "yes",
                    // A shard that is down fails its own slots only, as docs/architecture.md
                    // advises for production.
                    "--cluster-require-full-coverage",
                    "no",
                    // A replica syncs at once, not after the default 5 s wait for others to
                    // join the same diskless transfer: until it has, its shard cannot fail over.
                    "--repl-diskless-sync-delay",
                    "0",
                ];
                if tls.is_some() {
                    args.extend(["--tls-cluster", "yes"]);
                }
                match tls {
                    Some(tls) => RedisServer::start_tls(tls.clone(), &args),
                    None => RedisServer::start_with(&args),
                }
            })
            .collect();
        Self { nodes }
    }

    /// The seed addresses for `redis.cluster.addresses`: every node.
    pub fn seeds(&self) -> Vec<timestamp_api::HostPort> {
        self.nodes
            .iter()
            .map(|node| timestamp_api::HostPort {
                host: "127.0.0.1".to_owned(),
                port: node.port(),
            })
            .collect()
    }

    /// A direct cluster connection, for looking at what the service stored.
    pub fn client(&self) -> ClusterConnection {
        redis::cluster::ClusterClientBuilder::new(
            self.nodes
                .iter()
                .filter(|node| node.is_running())
                .map(|node| node.url()),
        )
        .connection_timeout(DIRECT_TIMEOUT)
        .response_timeout(DIRECT_TIMEOUT)
        .build()
        .and_then(|client| client.get_connection())
        .expect("direct connection to the test cluster")
    }

    /// What `node` answers to `CLUSTER <subcommand> <args>`.
    pub fn ask<T: redis::FromRedisValue>(&self, node: usize, subcommand: &[&str]) -> T {
        redis::cmd("CLUSTER")
            .arg(subcommand)
            .query(&mut self.nodes[node].client())
            .unwrap_or_else(|error| panic!("CLUSTER {subcommand:?} on node {node}: {error}"))
    }

    /// Polls every running node until each says `cluster_state:ok`, sees every slot served and
    /// a replica for each primary, and, if a replica, has synced with its primary
    /// (`master_link_status:up`).
    pub fn wait_until_whole(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let whole = self.nodes.iter().enumerate().all(|(index, node)| {
                !node.is_running() || {
                    let info: String = self.ask(index, &["INFO"]);
                    let replication: String = redis::cmd("INFO")
                        .arg("replication")
                        .query(&mut node.client())
                        .unwrap_or_default();
                    // Every node also knows each replica as one, so that any node's
                    // `CLUSTER NODES` shows the whole topology.
                    let nodes: String = self.ask(index, &["NODES"]);
                    let replicas = nodes.lines().filter(|line| line.contains("slave")).count();
                    info.contains("cluster_state:ok")
                        && info.contains("cluster_slots_ok:16384")
                        && replicas == self.nodes.len() / 2
                        && (replication.contains("role:master")
                            || replication.contains("master_link_status:up"))
                }
            });
            if whole {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not become whole within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
