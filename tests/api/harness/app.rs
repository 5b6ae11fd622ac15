//! The service in-process: `spawn_app()` starts a private `RedisServer` (or, with
//! `TSAPI_TEST_REDIS=cluster`, a private `RedisCluster`) and the library's `App` on ephemeral
//! ports against it; the `TestApp` it returns owns both.
//!
//! The cluster pass (`make test` runs it after the rest) runs the API's contract cases, the
//! modules that only use the API and `TestApp::redis.client()`, once more against a cluster,
//! unchanged. A test of those modules that needs one node's process (to stop or pause it)
//! fails in that pass with a message saying so, rather than test a cluster by mistake.

use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};

use timestamp_api::{App, Config};
use tokio::task::JoinHandle;

use super::client::Client;
use super::cluster::RedisCluster;
use super::redis_server::RedisServer;

/// What a `TestApp` stores its data on.
pub enum Backing {
    Node(Box<RedisServer>),
    Cluster(RedisCluster),
}

impl Backing {
    /// One node, or with `TSAPI_TEST_REDIS=cluster` a cluster.
    fn from_env() -> Self {
        match std::env::var("TSAPI_TEST_REDIS").as_deref() {
            Err(_) | Ok("" | "node") => Self::Node(Box::new(RedisServer::start())),
            Ok("cluster") => Self::Cluster(RedisCluster::start()),
            Ok(other) => panic!("TSAPI_TEST_REDIS={other:?}: expected node or cluster"),
        }
    }

    /// A direct connection (to the node, or to the cluster), for looking at what the service
    /// stored.
    pub fn client(&self) -> Direct {
        match self {
            Self::Node(node) => Direct::Node(node.client()),
            Self::Cluster(cluster) => Direct::Cluster(Box::new(cluster.client())),
        }
    }
}

impl Deref for Backing {
    type Target = RedisServer;

    fn deref(&self) -> &RedisServer {
        match self {
            Self::Node(node) => node,
            Self::Cluster(_) => panic!("{ONE_NODE_ONLY}"),
        }
    }
}

impl DerefMut for Backing {
    fn deref_mut(&mut self) -> &mut RedisServer {
        match self {
            Self::Node(node) => node,
            Self::Cluster(_) => panic!("{ONE_NODE_ONLY}"),
        }
    }
}

const ONE_NODE_ONLY: &str = "this test works on one redis-server's process, which a cluster \
                             does not have: leave its module out of the cluster pass";

/// A direct connection: Redis commands (`redis::Commands`) on one node or on a cluster.
pub enum Direct {
    Node(redis::Connection),
    Cluster(Box<redis::cluster::ClusterConnection>),
}

impl redis::ConnectionLike for Direct {
    fn req_packed_command(&mut self, cmd: &[u8]) -> redis::RedisResult<redis::Value> {
        match self {
            Self::Node(node) => node.req_packed_command(cmd),
            Self::Cluster(cluster) => cluster.req_packed_command(cmd),
        }
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> redis::RedisResult<Vec<redis::Value>> {
        match self {
            Self::Node(node) => node.req_packed_commands(cmd, offset, count),
            Self::Cluster(cluster) => cluster.req_packed_commands(cmd, offset, count),
        }
    }

    fn req_command(&mut self, cmd: &redis::Cmd) -> redis::RedisResult<redis::Value> {
        match self {
            Self::Node(node) => node.req_command(cmd),
            Self::Cluster(cluster) => cluster.req_command(cmd),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Node(node) => node.get_db(),
            Self::Cluster(cluster) => cluster.get_db(),
        }
    }

    fn check_connection(&mut self) -> bool {
        match self {
            Self::Node(node) => node.check_connection(),
            Self::Cluster(cluster) => cluster.check_connection(),
        }
    }

    fn is_open(&self) -> bool {
        match self {
            Self::Node(node) => node.is_open(),
            Self::Cluster(cluster) => cluster.is_open(),
        }
    }
}

/// The service, running in-process on ephemeral ports against a Redis of its own; dropping it
/// aborts the server task, then stops the Redis.
pub struct TestApp {
    /// A client of the API listener.
    pub api: Client,
    /// A client of the admin listener.
    pub admin: Client,
    /// The Redis the service uses: stop, pause or restart it (one node only), or look at what
    /// was stored.
    pub redis: Backing,
    server: JoinHandle<std::time::Instant>,
}

/// The service, configured as `TestApp::spawn` says, against a Redis of its own.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// `spawn_app`, with `configure` changing the configuration before the service binds.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    TestApp::spawn_on(Backing::from_env(), configure).await
}

impl TestApp {
    /// The service against `redis` as the test prepared it (started with extra arguments, or
    /// already stopped). Its configuration is the default one with both listeners on
    /// 127.0.0.1 port 0 and `redis` as the store, then changed by `configure`.
    pub async fn spawn(redis: RedisServer, configure: impl FnOnce(&mut Config)) -> Self {
        Self::spawn_on(Backing::Node(Box::new(redis)), configure).await
    }

    /// `spawn`, on a node or on a cluster (`redis.cluster.addresses`, every node a seed).
    pub async fn spawn_on(redis: Backing, configure: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..Config::default()
        };
        match &redis {
            Backing::Node(node) => config.redis.url = node.url(),
            Backing::Cluster(cluster) => config.redis.cluster.addresses = cluster.seeds(),
        }
        configure(&mut config);
        let app = App::bind(&config).await.expect("binding the service");
        let (api, admin) = (
            Client {
                addr: app.api_addr(),
            },
            Client {
                addr: app.admin_addr(),
            },
        );
        // Graceful shutdown is the binary's to show (process.rs): here the drop aborts the task.
        let server = tokio::spawn(app.run(std::future::pending()));
        Self {
            api,
            admin,
            redis,
            server,
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}
