//! The service against a Redis whose ACL allows exactly the commands the deployments allow it
//! (deploy/redis-acl: GET, SET, DEL, SCAN, MGET, PING; and INFO and WAIT for Sentinel with
//! replica acknowledgements) on the key prefix, with the default user off: the whole API works,
//! and Redis records no denied command.

use std::time::Duration;

use redis::Commands;

use crate::harness::app::TestApp;
use crate::harness::client::{Client, metric};
use crate::harness::redis_server::RedisServer;
use crate::harness::service_process::ServiceProcess;
use crate::harness::timing::{eventually, slack};
use crate::harness::topology::{ADMIN, MASTER, Topology};

/// The commands the deployments allow the service (deploy/redis-acl/README.md).
pub const SERVICE_COMMANDS: &str = include_str!("../../deploy/redis-acl/service.commands");
const SENTINEL_COMMANDS: &str = include_str!("../../deploy/redis-acl/service-sentinel.commands");

/// An ACL with the default user off, `app` (password `app-password`) allowed `commands` on the
/// `ts:` keys, and `admin`.
fn acl(commands: &[&str]) -> String {
    let commands: Vec<&str> = commands.iter().map(|list| list.trim()).collect();
    format!(
        "user default off\n\
         user app on >app-password ~ts:* resetchannels -@all {}\n\
         user admin on >admin-password ~* &* +@all\n",
        commands.join(" ")
    )
}

/// Every operation of the API, each of which must succeed.
pub async fn every_operation_succeeds(api: Client) {
    assert_eq!(api.put_empty("/v1/timestamps/a").await.status, 201);
    assert_eq!(
        api.put_json("/v1/timestamps/b", r#"{"epoch_ms": 7}"#)
            .await
            .status,
        201
    );
    assert_eq!(
        api.put_json("/v1/timestamps/b", r#"{"epoch_ms": 8}"#)
            .await
            .status,
        200
    );
    assert_eq!(api.get("/v1/timestamps/b").await.json()["epoch_ms"], 8);
    let listed = api.get("/v1/timestamps?limit=1").await.json();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    let cursor = listed["next_cursor"].as_str().unwrap();
    assert_eq!(
        api.get(&format!("/v1/timestamps?cursor={cursor}"))
            .await
            .status,
        200
    );
    assert_eq!(api.delete("/v1/timestamps/a").await.status, 204);
    api.get("/v1/timestamps/a")
        .await
        .assert_problem(404, "not-found");
}

/// A connection to the Redis on `port` as `user`.
fn connect_as(port: u16, user: &str, password: &str) -> redis::RedisResult<redis::Connection> {
    redis::Client::open(format!("redis://{user}:{password}@127.0.0.1:{port}/0"))
        .and_then(|client| client.get_connection())
}

/// Asserts that the Redis on `port` denied nothing (its `ACL LOG` is empty).
fn assert_nothing_denied(port: u16) {
    let mut admin = connect_as(port, ADMIN.0, ADMIN.1).unwrap();
    let denied: Vec<redis::Value> = redis::cmd("ACL").arg("LOG").query(&mut admin).unwrap();
    assert!(
        denied.is_empty(),
        "the service sent commands the ACL denies: {denied:?}"
    );
}

#[tokio::test]
async fn the_documented_command_set_is_all_the_service_needs() {
    let dir = tempfile::tempdir().unwrap();
    let acl_file = dir.path().join("users.acl");
    std::fs::write(&acl_file, acl(&[SERVICE_COMMANDS])).unwrap();
    let redis = RedisServer::start_with(&["--aclfile", acl_file.to_str().unwrap()]);

    let app = TestApp::spawn(redis, |config| {
        config.redis.username = Some("app".into());
        config.redis.password = Some(timestamp_api::Secret::new("app-password"));
    })
    .await;

    every_operation_succeeds(app.api).await;
    assert_nothing_denied(app.redis.port());

    // The ACL really is in force, so the check above could have failed.
    let mut as_app = connect_as(app.redis.port(), "app", "app-password").unwrap();
    let flush: redis::RedisResult<()> = redis::cmd("FLUSHALL").query(&mut as_app);
    assert_eq!(flush.unwrap_err().code(), Some("NOPERM"));
    let outside: redis::RedisResult<Option<String>> = as_app.get("other:key");
    assert_eq!(outside.unwrap_err().code(), Some("NOPERM"));
    let mut anonymous = redis::Client::open(app.redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let refused: redis::RedisResult<String> = redis::cmd("PING").query(&mut anonymous);
    assert_eq!(refused.unwrap_err().code(), Some("NOAUTH"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_sentinel_and_replica_acks_wait_and_info_are_all_the_service_adds() {
    let topology =
        Topology::start_with_acl(Some(&acl(&[SERVICE_COMMANDS, SENTINEL_COMMANDS]))).await;
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("redis_password");
    std::fs::write(&password_file, "app-password\n").unwrap();
    let addresses = topology.sentinel_addresses();
    let service = ServiceProcess::start(&[
        ("TSAPI_REDIS__SENTINEL__ADDRESSES", &addresses),
        ("TSAPI_REDIS__SENTINEL__MASTER", MASTER),
        ("TSAPI_REDIS__USERNAME", "app"),
        (
            "TSAPI_REDIS__PASSWORD_FILE",
            password_file.to_str().unwrap(),
        ),
        ("TSAPI_REDIS__MIN_REPLICA_ACKS", "1"),
        // This test is about what the ACL allows, not about time: on a loaded machine a
        // replica's acknowledgement can take longer than the 100 ms default, so the bounds are
        // the slack (the acknowledgement) and three times it (the whole request).
        (
            "TSAPI_REDIS__REPLICA_ACK_TIMEOUT",
            &humantime::format_duration(slack()).to_string(),
        ),
        (
            "TSAPI_REDIS__COMMAND_TIMEOUT",
            &humantime::format_duration(slack() * 3).to_string(),
        ),
    ]);
    eventually(Duration::from_secs(5), || async {
        service.admin.get("/readyz").await.status == 200
    })
    .await;

    every_operation_succeeds(service.api).await;
    // INFO replication was allowed: the gauges carry the primary's replicas.
    let text = service.admin.get("/metrics").await.text();
    assert_eq!(
        metric(&text, "timestamp_api_redis_replicas_connected"),
        Some(2.0),
        "{text}"
    );
    assert_nothing_denied(topology.nodes[0].port());
}
