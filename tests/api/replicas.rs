//! Replication without Sentinel: `redis.min_replica_acks` (WAIT) against a primary with and
//! without a replica, and a node behind `redis.url` that is demoted to a replica and promoted
//! again, as a managed primary endpoint's node is in a failover.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use timestamp_api::Config;

use crate::harness::app::{TestApp, spawn_app};
use crate::harness::client::{Client, metric};
use crate::harness::redis_server::RedisServer;
use crate::harness::timing::{eventually, reconnects_within, slack};

/// The service reconnects at most 400 ms after a failed attempt (src/store/link.rs), and a
/// write waits up to `redis.command_timeout`.
fn recovers_within() -> Duration {
    reconnects_within() + Config::default().redis.command_timeout
}

/// Makes `node` a replica of `primary`, or a primary again (`REPLICAOF NO ONE`).
fn replica_of(node: &RedisServer, primary: Option<&RedisServer>) {
    let mut command = redis::cmd("REPLICAOF");
    match primary {
        Some(primary) => command.arg("127.0.0.1").arg(primary.port()),
        None => command.arg("NO").arg("ONE"),
    };
    let () = command.query(&mut node.client()).unwrap();
}

/// The service behind a node that took a write and was then made a replica of another (also
/// returned): the node answers writes with READONLY.
async fn app_behind_a_demoted_url() -> (TestApp, RedisServer) {
    let app = spawn_app().await;
    let other = RedisServer::start();
    assert_eq!(app.api.put_empty("/v1/timestamps/a").await.status, 201);
    replica_of(&app.redis, Some(&other));
    (app, other)
}

/// Waits, up to `recovers_within`, for a PUT of `path` to succeed.
async fn until_writes_succeed(api: Client, path: &str) {
    eventually(recovers_within(), || async {
        api.put_empty(path).await.status.is_success()
    })
    .await;
}

#[tokio::test]
async fn a_write_too_few_replicas_acknowledge_is_applied_but_answered_503_not_replicated() {
    // A replica attaching later syncs at once, not after the default 5 s wait for others.
    let primary = RedisServer::start_with(&["--repl-diskless-sync-delay", "0"]);
    // The replica's acknowledgement is a time the service keeps (`replica_ack_timeout`), so
    // the test gives it the slack too: a loaded machine once took over the default 100 ms for
    // the DELETE below, with the replica attached. The command timeout keeps the bound that
    // the ack timeout is at most half of it.
    let app = TestApp::spawn(primary, |config| {
        config.redis.min_replica_acks = 1;
        config.redis.replica_ack_timeout += slack();
        config.redis.command_timeout = 2 * config.redis.replica_ack_timeout;
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
    until_writes_succeed(app.api, "/v1/timestamps/b").await;
    let deleted = app.api.delete("/v1/timestamps/b").await;
    assert_eq!(deleted.status, 204, "{:?}", deleted.body);
}

#[tokio::test]
async fn a_demoted_node_behind_the_url_answers_503s_never_500s_and_serves_once_promoted() {
    let (app, _other) = app_behind_a_demoted_url().await;
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
    replica_of(&app.redis, None);
    let took = eventually(recovers_within(), || async {
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

/// Found in review: every request shared one connection, which Redis holds during `WAIT`, so
/// with a replica missing, reads and `/readyz` queued behind the writes' WAITs and answered 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_waiting_for_a_missing_replica_hold_up_no_read_and_no_readiness_check() {
    let app = TestApp::spawn(RedisServer::start(), |config| {
        config.redis.min_replica_acks = 1;
    })
    .await;
    app.api
        .put_json("/v1/timestamps/read-me", r#"{"epoch_ms": 7}"#)
        .await
        .assert_problem(503, "not-replicated");

    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let (api, stop) = (app.api, stop.clone());
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let name = format!("/v1/timestamps/w{writer}-{n}");
                    statuses.push(api.put_empty(&name).await.status.as_u16());
                }
                statuses
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..10 {
        let read = app.api.get("/v1/timestamps/read-me").await;
        assert_eq!(read.status, 200, "{:?}", read.body);
        assert_eq!(app.admin.get("/readyz").await.status, 200);
    }
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        // Each write was applied but not acknowledged: 503, whether `not-replicated` or, queued
        // behind another write's WAIT, `unavailable`.
        let statuses = writer.await.unwrap();
        assert!(!statuses.is_empty());
        assert!(statuses.iter().all(|status| *status == 503), "{statuses:?}");
    }
}

/// Found in review: a connection to a demoted node still answers PING and reads, so it lasted
/// long enough to count as a new one, and each write that then met READONLY counted another
/// failover.
#[tokio::test]
async fn a_demoted_node_behind_the_url_counts_one_failover_however_spaced_the_writes() {
    let (app, _other) = app_behind_a_demoted_url().await;
    for _ in 0..3 {
        app.api
            .put_json("/v1/timestamps/a", r#"{"epoch_ms": 1}"#)
            .await
            .assert_problem(503, "unavailable");
        // Longer than a connection must serve to count as stable (1 s, src/store/link.rs).
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let text = app.admin.get("/metrics").await.text();
    assert_eq!(
        metric(&text, "timestamp_api_redis_failovers_total"),
        Some(1.0),
        "{text}"
    );
}

/// Found in review: behind a URL, a node that stops answering (crashed or cut off without
/// closing the connection) kept its connection until the kernel gave up on it, minutes later.
/// A paused Redis stands in for it: two checks in a row without an answer replace the
/// connection, and service resumes once the node answers again.
#[tokio::test]
async fn a_node_behind_the_url_that_stops_answering_gets_a_new_connection() {
    let app = spawn_app().await;
    assert_eq!(app.api.put_empty("/v1/timestamps/a").await.status, 201);
    app.redis.pause();
    // Two checks a second apart, each waiting up to the command timeout for its PING.
    let checks = 2 * (Duration::from_secs(1) + Config::default().redis.command_timeout);
    // The old connection is given up, and new ones fail while the node is frozen: the kernel
    // takes the TCP connection, but nothing answers the PING every new connection sends.
    let failed = r#"timestamp_api_redis_reconnection_failures_total{cause="timeout"}"#;
    eventually(checks + slack(), || async {
        let text = app.admin.get("/metrics").await.text();
        metric(&text, failed).is_some_and(|count| count >= 1.0)
    })
    .await;
    app.redis.resume();
    until_writes_succeed(app.api, "/v1/timestamps/a").await;
    let text = app.admin.get("/metrics").await.text();
    let replaced = r#"timestamp_api_redis_reconnections_total{cause="unresponsive"}"#;
    assert_eq!(metric(&text, replaced), Some(1.0), "{text}");
}
