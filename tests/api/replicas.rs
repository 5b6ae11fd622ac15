//! Replication without Sentinel: `redis.min_replica_acks` (WAIT) against a primary with and
//! without a replica, and a node behind `redis.url` that is demoted to a replica and promoted
//! again, as a managed primary endpoint's node is in a failover.

use std::time::Duration;

use crate::helpers::{RedisServer, TestApp, eventually, metric, spawn_app};

/// The service reconnects at most 400 ms after a failed attempt (src/store/link.rs), and a
/// write waits up to `redis.command_timeout` (250 ms); with a margin, 2 s.
const RECOVERS_WITHIN: Duration = Duration::from_secs(2);

#[tokio::test]
async fn a_write_too_few_replicas_acknowledge_is_applied_but_answered_503_not_replicated() {
    // A replica attaching later syncs at once, not after the default 5 s wait for others.
    let primary = RedisServer::start_with(&["--repl-diskless-sync-delay", "0"]);
    let app = TestApp::spawn(primary, |config| {
        config.redis.min_replica_acks = 1;
    })
    .await;

    let response = app
        .api
        .put_json("/v1/timestamps/a", r#"{"epoch_ms": 7}"#)
        .await;
    let problem = response.assert_problem(503, "not-replicated");
    assert_eq!(response.header("retry-after"), Some("1"));
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("applied on the primary"), "{detail}");
    assert!(detail.contains("only 0 of 1 replicas"), "{detail}");
    // As the detail says, the primary has it; the same goes for a DELETE.
    assert_eq!(app.api.get("/v1/timestamps/a").await.json()["epoch_ms"], 7);
    let deleted = app.api.delete("/v1/timestamps/a").await;
    deleted.assert_problem(503, "not-replicated");
    assert_eq!(app.api.get("/v1/timestamps/a").await.status, 404);

    // With a replica attached, the same writes are acknowledged.
    let port = app.redis.port().to_string();
    let _replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port]);
    eventually(Duration::from_secs(5), || async {
        app.api
            .put_empty("/v1/timestamps/b")
            .await
            .status
            .is_success()
    })
    .await;
    let deleted = app.api.delete("/v1/timestamps/b").await;
    assert_eq!(deleted.status, 204, "{:?}", deleted.body);
}

#[tokio::test]
async fn a_demoted_node_behind_the_url_answers_503s_never_500s_and_serves_once_promoted() {
    let app = spawn_app().await;
    let other = RedisServer::start();
    assert_eq!(app.api.put_empty("/v1/timestamps/a").await.status, 201);

    // The node behind the URL becomes a replica: writes to it answer READONLY.
    let mut node = app.redis.client();
    let port = other.port();
    let () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(port)
        .query(&mut node)
        .unwrap();
    for _ in 0..10 {
        app.api
            .put_json("/v1/timestamps/a", r#"{"epoch_ms": 1}"#)
            .await
            .assert_problem(503, "unavailable");
    }
    let text = app.admin.get("/metrics").await.text();
    let readonly = r#"timestamp_api_redis_reconnections_total{cause="readonly"}"#;
    assert!(
        metric(&text, readonly).is_some_and(|count| count >= 1.0),
        "{text}"
    );
    // However many READONLY answers, one demotion is one failover.
    assert_eq!(
        metric(&text, "timestamp_api_redis_failovers_total"),
        Some(1.0),
        "{text}"
    );

    // Promoted again: the service reconnects to the same URL and writes succeed.
    let () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut node)
        .unwrap();
    let took = eventually(RECOVERS_WITHIN, || async {
        let response = app
            .api
            .put_json("/v1/timestamps/a", r#"{"epoch_ms": 2}"#)
            .await;
        assert_ne!(response.status, 500, "{:?}", response.body);
        response.status.is_success()
    })
    .await;
    println!("writes succeed again {took:?} after the promotion");
    assert_eq!(app.api.get("/v1/timestamps/a").await.json()["epoch_ms"], 2);
}
