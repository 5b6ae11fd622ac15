//! The service in-process: `spawn_app()` starts a private `RedisServer` and the library's `App`
//! on ephemeral ports against it; the `TestApp` it returns owns both.

use std::net::SocketAddr;

use timestamp_api::{App, Config};
use tokio::task::JoinHandle;

use super::client::Client;
use super::redis_server::RedisServer;

/// The service, running in-process on ephemeral ports against a Redis of its own; dropping it
/// aborts the server task, then stops the Redis.
pub struct TestApp {
    /// A client of the API listener.
    pub api: Client,
    /// A client of the admin listener.
    pub admin: Client,
    /// The Redis the service uses: stop, pause or restart it, or look at what was stored.
    pub redis: RedisServer,
    server: JoinHandle<std::time::Instant>,
}

/// The service, configured as `TestApp::spawn` says, against a Redis of its own.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// `spawn_app`, with `configure` changing the configuration before the service binds.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    TestApp::spawn(RedisServer::start(), configure).await
}

impl TestApp {
    /// The service against `redis` as the test prepared it (started with extra arguments, or
    /// already stopped). Its configuration is the default one with both listeners on
    /// 127.0.0.1 port 0 and `redis` as the store, then changed by `configure`.
    pub async fn spawn(redis: RedisServer, configure: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..Config::default()
        };
        config.redis.url = redis.url();
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
