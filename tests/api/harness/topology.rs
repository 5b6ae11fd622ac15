//! A replicated Redis watched by Sentinel, for the failover tests: one primary and two replicas
//! (AOF with `appendfsync always`), and three Sentinels (quorum 2, `down-after-milliseconds`
//! `DOWN_AFTER`). Each is a redis-server on an ephemeral loopback port with a temporary
//! directory, killed on drop (`RedisServer`).
//!
//! Waits here are async (the writers of a test run on the same runtime) and bounded; the
//! direct Redis connections they use have a short timeout, so a killed node costs a poll, not a
//! hang.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::certs::{Pki, ServerTls};
use super::redis_server::{RedisServer, open_client};

/// The name the Sentinels monitor the primary under.
pub const MASTER: &str = "tsapi";
/// How long the primary must be unreachable before a Sentinel calls it down.
pub const DOWN_AFTER: Duration = Duration::from_millis(1000);
/// Sentinel's failover timeout; also what it waits before retrying a failover.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(3);
/// Bound on each direct question to a node or a Sentinel.
const DIRECT_TIMEOUT: Duration = Duration::from_secs(1);

/// With an ACL, replicas and Sentinels authenticate as this user, which may do everything.
pub const ADMIN: (&str, &str) = ("admin", "admin-password");

pub struct Topology {
    /// The data nodes; the first is the primary at the start.
    pub nodes: Vec<RedisServer>,
    pub sentinels: Vec<RedisServer>,
    acl: bool,
    /// With TLS on every link: the data nodes' and Sentinels' settings (client certificates
    /// required), which the harness's direct connections use too.
    tls: Option<ServerTls>,
    _acl_dir: TempDir,
}

impl Topology {
    /// With `acl`, a users file that must define `ADMIN` with every permission: the data
    /// nodes load it, and replication and the Sentinels use `ADMIN`.
    pub async fn start_with_acl(acl: Option<&str>) -> Self {
        Self::start_with(acl, None).await
    }

    /// With `pki`, TLS on every link: the service's, replication (`tls-replication yes`) and
    /// the Sentinels' (to the data nodes, to each other, and their own port), each side
    /// showing a certificate of `pki`'s and requiring one.
    pub async fn start_with(acl: Option<&str>, pki: Option<&Pki>) -> Self {
        let tls = pki.map(|pki| ServerTls::from(pki, true));
        let acl_dir = tempfile::tempdir().expect("a directory for the ACL file");
        let acl_file = acl_dir.path().join("users.acl");
        // A replica (or a returning old primary) syncs at once, not after the default 5 s
        // wait for others to join the same diskless transfer.
        let mut node_args = [
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--repl-diskless-sync-delay",
            "0",
        ]
        .map(str::to_owned)
        .to_vec();
        if let Some(acl) = acl {
            std::fs::write(&acl_file, acl).expect("writing the ACL file");
            node_args.extend(
                [
                    "--aclfile",
                    acl_file.to_str().expect("a UTF-8 path"),
                    "--masteruser",
                    ADMIN.0,
                    "--masterauth",
                    ADMIN.1,
                ]
                .map(str::to_owned),
            );
        }
        let args = |extra: &[String]| {
            let mut all = node_args.clone();
            all.extend_from_slice(extra);
            all
        };
        let start = |args: Vec<String>| {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            match &tls {
                Some(tls) => RedisServer::start_tls(tls.clone(), &args),
                None => RedisServer::start_with(&args),
            }
        };
        let primary = start(args(&[]));
        let replica_of = [
            "--replicaof".to_owned(),
            "127.0.0.1".to_owned(),
            primary.port().to_string(),
        ];
        let replicas = [start(args(&replica_of)), start(args(&replica_of))];
        let mut topology = Self {
            nodes: std::iter::once(primary).chain(replicas).collect(),
            sentinels: Vec::new(),
            acl: acl.is_some(),
            tls,
            _acl_dir: acl_dir,
        };
        // Sentinels learn the replicas from the primary's INFO: have them attached first, and
        // done with their initial sync (`state=online`): until then a replica acknowledges no
        // write, and a `WAIT` for one would fail (seen on a loaded machine, where
        // `connected_slaves` counts a replica still loading the primary's snapshot).
        let primary_port = topology.nodes[0].port();
        topology
            .until("both replicas are in sync", Duration::from_secs(10), |t| {
                t.info(primary_port).is_some_and(|info| {
                    let online = info
                        .lines()
                        .filter(|line| line.starts_with("slave") && line.contains("state=online"))
                        .count();
                    online == 2
                })
            })
            .await;
        let mut config = format!(
            "sentinel monitor {MASTER} 127.0.0.1 {primary_port} 2\n\
             sentinel down-after-milliseconds {MASTER} {}\n\
             sentinel failover-timeout {MASTER} {}\n",
            DOWN_AFTER.as_millis(),
            FAILOVER_TIMEOUT.as_millis(),
        );
        if acl.is_some() {
            config.push_str(&format!(
                "sentinel auth-user {MASTER} {}\nsentinel auth-pass {MASTER} {}\n",
                ADMIN.0, ADMIN.1
            ));
        }
        topology.sentinels = (0..3)
            .map(|_| RedisServer::start_sentinel(&config, topology.tls.clone()))
            .collect();
        topology
    }

    /// `host:port,host:port,…` of the Sentinels, as `redis.sentinel.addresses` takes them.
    pub fn sentinel_addresses(&self) -> String {
        self.sentinels
            .iter()
            .map(|sentinel| format!("127.0.0.1:{}", sentinel.port()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Waits until every Sentinel sees both replicas and the other two Sentinels: only then
    /// can they agree that the primary is down and elect one of them to fail it over. Hellos
    /// go out every 2 s, so this takes a few seconds.
    pub async fn until_watched(&self) {
        self.until(
            "the Sentinels see everything",
            Duration::from_secs(20),
            |t| {
                (0..t.sentinels.len()).all(|index| {
                    t.sentinel_master(index).is_some_and(|master| {
                        master.get("num-slaves").map(String::as_str) == Some("2")
                            && master.get("num-other-sentinels").map(String::as_str) == Some("2")
                            && master.get("flags").map(String::as_str) == Some("master")
                    })
                })
            },
        )
        .await;
    }

    /// The port of the primary the first Sentinel that answers names.
    pub fn primary_port(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|sentinel| {
            let (_, port): (String, u16) = self.direct(
                sentinel.port(),
                None,
                redis::cmd("SENTINEL")
                    .arg("GET-MASTER-ADDR-BY-NAME")
                    .arg(MASTER),
            )?;
            Some(port)
        })
    }

    /// The data node listening on `port`.
    pub fn node(&mut self, port: u16) -> &mut RedisServer {
        self.nodes
            .iter_mut()
            .find(|node| node.port() == port)
            .unwrap_or_else(|| panic!("no data node on port {port}"))
    }

    /// `INFO replication` of the data node on `port`, if it answers.
    pub fn info(&self, port: u16) -> Option<String> {
        let credentials = self.acl.then_some(ADMIN);
        self.direct(port, credentials, redis::cmd("INFO").arg("replication"))
    }

    /// Whether the node on `port` is a replica with its link to the primary up.
    pub fn is_attached_replica(&self, port: u16) -> bool {
        self.info(port).is_some_and(|info| {
            field(&info, "role") == Some("slave")
                && field(&info, "master_link_status") == Some("up")
        })
    }

    /// Sends `SENTINEL FAILOVER` to the first Sentinel.
    pub fn manual_failover(&self) {
        let reply: Option<String> = self.direct(
            self.sentinels[0].port(),
            None,
            redis::cmd("SENTINEL").arg("FAILOVER").arg(MASTER),
        );
        assert_eq!(reply.as_deref(), Some("OK"), "SENTINEL FAILOVER refused");
    }

    /// A direct connection to the data node on `port` (as `ADMIN` with an ACL).
    pub fn client(&self, port: u16) -> redis::Connection {
        open_client(
            &self.url(port, self.acl.then_some(ADMIN)),
            self.tls.as_ref(),
        )
        .and_then(|client| client.get_connection_with_timeout(DIRECT_TIMEOUT))
        .expect("a direct connection to a data node")
    }

    /// The URL of the node or Sentinel on `port`, with `credentials` if given.
    fn url(&self, port: u16, credentials: Option<(&str, &str)>) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        match credentials {
            Some((user, password)) => format!("{scheme}://{user}:{password}@127.0.0.1:{port}/0"),
            None => format!("{scheme}://127.0.0.1:{port}/0"),
        }
    }

    /// One command to `port` on a fresh connection bounded by `DIRECT_TIMEOUT`; `None` on any
    /// failure (a killed node, a Sentinel that does not know yet).
    fn direct<T: redis::FromRedisValue>(
        &self,
        port: u16,
        credentials: Option<(&str, &str)>,
        command: &redis::Cmd,
    ) -> Option<T> {
        let mut connection = open_client(&self.url(port, credentials), self.tls.as_ref())
            .ok()?
            .get_connection_with_timeout(DIRECT_TIMEOUT)
            .ok()?;
        connection.set_read_timeout(Some(DIRECT_TIMEOUT)).ok()?;
        command.query(&mut connection).ok()
    }

    /// The TLS settings of every link, when the topology uses TLS.
    pub fn tls(&self) -> Option<&ServerTls> {
        self.tls.as_ref()
    }

    /// Starts recording the failovers the Sentinels announce (`+switch-master`); returns once
    /// subscribed to every Sentinel, so that no later announcement is missed.
    pub fn watch_switches(&self) -> Switches {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (subscribed, subscriptions) = std::sync::mpsc::channel();
        for sentinel in &self.sentinels {
            let client =
                open_client(&sentinel.url(), self.tls.as_ref()).expect("a client of a Sentinel");
            let (seen, subscribed) = (seen.clone(), subscribed.clone());
            // The thread ends when its Sentinel is killed (the topology's drop) and the read
            // fails.
            std::thread::spawn(move || {
                let mut connection = Ok(client)
                    .and_then(|client| client.get_connection_with_timeout(DIRECT_TIMEOUT))
                    .expect("a connection to a Sentinel");
                let mut pubsub = connection.as_pubsub();
                let _ = subscribed.send(pubsub.subscribe("+switch-master"));
                while let Ok(message) = pubsub.get_message() {
                    let at = Instant::now();
                    let payload: String = message.get_payload().unwrap_or_default();
                    // "<master> <old ip> <old port> <new ip> <new port>"
                    let ports: Vec<u16> = payload
                        .split(' ')
                        .filter_map(|word| word.parse().ok())
                        .collect();
                    if let [from, to] = ports[..] {
                        let mut seen = seen.lock().unwrap();
                        // Every Sentinel announces each failover, the first one telling when;
                        // a failover starts from the primary of the one before, so a late
                        // repeat of an older one does not, and a node failed back to counts
                        // again.
                        let current = seen.last().map(|last: &Switch| last.to);
                        if current.is_none_or(|current| current == from) {
                            seen.push(Switch { at, from, to });
                        }
                    }
                }
            });
        }
        for _ in &self.sentinels {
            subscriptions
                .recv_timeout(DIRECT_TIMEOUT * 5)
                .expect("a Sentinel subscription in time")
                .expect("subscribing to +switch-master");
        }
        Switches { seen }
    }

    fn sentinel_master(&self, index: usize) -> Option<std::collections::HashMap<String, String>> {
        self.direct(
            self.sentinels[index].port(),
            None,
            redis::cmd("SENTINEL").arg("MASTER").arg(MASTER),
        )
    }

    /// Polls `check` every 50 ms until it holds; panics after `within`, naming `what`.
    pub async fn until(
        &self,
        what: &str,
        within: Duration,
        check: impl Fn(&Self) -> bool,
    ) -> Duration {
        let start = Instant::now();
        loop {
            if check(self) {
                return start.elapsed();
            }
            assert!(start.elapsed() < within, "not within {within:?}: {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// One failover as the Sentinels announced it: when the first of them did, and the ports of
/// the old and the new primary.
#[derive(Debug, Clone, Copy)]
pub struct Switch {
    pub at: Instant,
    pub from: u16,
    pub to: u16,
}

/// The failovers announced since `Topology::watch_switches`.
pub struct Switches {
    seen: Arc<Mutex<Vec<Switch>>>,
}

impl Switches {
    /// Oldest first.
    pub fn seen(&self) -> Vec<Switch> {
        self.seen.lock().unwrap().clone()
    }
}

/// The value of `name:` in an INFO text.
pub fn field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|line| line.trim_end().strip_prefix(name)?.strip_prefix(':'))
}

impl Drop for Topology {
    /// A failing failover test says what the Sentinels decided: their logs hold the elections,
    /// promotions and aborts that explain an unexpected primary or error window.
    fn drop(&mut self) {
        if std::thread::panicking() {
            for sentinel in &self.sentinels {
                eprintln!(
                    "--- Sentinel on port {} ---\n{}",
                    sentinel.port(),
                    sentinel.log()
                );
            }
        }
    }
}
