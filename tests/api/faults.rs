//! Redis stopped, stalled, restarted, or not there at start-up: the service answers 503 fast,
//! never hangs or crashes, and serves again soon after Redis is back, without a restart.

use std::time::{Duration, Instant};

use timestamp_api::Config;

use crate::harness::app::{TestApp, spawn_app};
use crate::harness::client::{Client, TestResponse};
use crate::harness::redis_server::RedisServer;
use crate::harness::timing::{eventually, reconnects_within, slack};

/// Sends every API operation that needs Redis, one after another: what each was, its
/// response, and how long the response took.
async fn every_endpoint(api: Client) -> Vec<(&'static str, TestResponse, Duration)> {
    let mut results = Vec::new();
    for (what, response) in [
        (
            "GET item",
            Box::pin(api.get("/v1/timestamps/a"))
                as std::pin::Pin<Box<dyn Future<Output = TestResponse>>>,
        ),
        (
            "PUT item",
            Box::pin(api.put_json("/v1/timestamps/a", r#"{"epoch_ms": 1}"#)),
        ),
        ("PUT now", Box::pin(api.put_empty("/v1/timestamps/a"))),
        ("DELETE item", Box::pin(api.delete("/v1/timestamps/a"))),
        ("GET list", Box::pin(api.get("/v1/timestamps?limit=10"))),
    ] {
        let start = Instant::now();
        let response = response.await;
        results.push((what, response, start.elapsed()));
    }
    results
}

/// Each a 503 within the default `redis.command_timeout`, which the harness keeps.
fn assert_all_unavailable_within_the_command_timeout(results: &[(&str, TestResponse, Duration)]) {
    let bound = Config::default().redis.command_timeout + slack();
    for (what, response, took) in results {
        response.assert_problem(503, "unavailable");
        assert_eq!(response.header("retry-after"), Some("1"), "{what}");
        assert!(*took < bound, "{what} took {took:?}");
    }
}

async fn serves_again_soon(api: Client) {
    let took = eventually(reconnects_within(), || async {
        api.put_json("/v1/timestamps/back", r#"{"epoch_ms": 2}"#)
            .await
            .status
            .is_success()
    })
    .await;
    println!("serving again {took:?} after Redis came back");
    assert_eq!(api.get("/v1/timestamps/back").await.status, 200);
}

#[tokio::test]
async fn redis_stopped_mid_test_gives_503s_then_service_resumes() {
    let mut app = spawn_app().await;
    assert_eq!(app.api.put_empty("/v1/timestamps/a").await.status, 201);

    app.redis.stop();
    assert_all_unavailable_within_the_command_timeout(&every_endpoint(app.api).await);
    // Still 503s, not a wedged client, on a second round.
    assert_all_unavailable_within_the_command_timeout(&every_endpoint(app.api).await);

    app.redis.restart();
    serves_again_soon(app.api).await;
}

#[tokio::test]
async fn a_stalled_redis_gives_503s_within_the_timeout() {
    let app = spawn_app().await;
    assert_eq!(app.api.put_empty("/v1/timestamps/a").await.status, 201);

    app.redis.pause();
    let results = every_endpoint(app.api).await;
    app.redis.resume();

    assert_all_unavailable_within_the_command_timeout(&results);
    serves_again_soon(app.api).await;
}

#[tokio::test]
async fn the_service_starts_while_redis_is_down() {
    let mut redis = RedisServer::start();
    redis.stop();
    let mut app = TestApp::spawn(redis, |_| {}).await;

    assert_all_unavailable_within_the_command_timeout(&every_endpoint(app.api).await);

    app.redis.restart();
    serves_again_soon(app.api).await;
}

#[tokio::test]
async fn a_write_redis_refuses_is_a_503_that_says_so_while_reads_and_readiness_go_on() {
    let app = spawn_app().await;
    let api = app.api;
    assert_eq!(
        api.put_json("/v1/timestamps/kept", r#"{"epoch_ms": 5}"#)
            .await
            .status,
        201
    );
    // Any memory in use is over a 1-byte maxmemory: with noeviction, Redis refuses every
    // command that could grow the data set (OOM) and still serves reads, PING and DEL.
    let mut redis = app.redis.client();
    let () = redis::cmd("CONFIG")
        .arg(&["SET", "maxmemory-policy", "noeviction", "maxmemory", "1"])
        .query(&mut redis)
        .unwrap();

    let refused = api
        .put_json("/v1/timestamps/refused", r#"{"epoch_ms": 6}"#)
        .await;
    let body = refused.assert_problem(503, "store-refused");
    assert_eq!(refused.header("retry-after"), Some("1"));
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("refused the write (oom)") && detail.contains("not applied"),
        "{detail}"
    );
    assert!(
        !detail.contains("maxmemory"),
        "the body names no internals: {detail}"
    );
    let now = api.put_empty("/v1/timestamps/kept").await;
    now.assert_problem(503, "store-refused");
    let stored: Option<i64> = redis::cmd("GET")
        .arg("ts:refused")
        .query(&mut redis)
        .unwrap();
    assert_eq!(stored, None, "a refused write is not applied");

    assert_eq!(api.get("/v1/timestamps/kept").await.status, 200);
    assert_eq!(api.get("/v1/timestamps?limit=10").await.status, 200);
    assert_eq!(app.admin.get("/readyz").await.status, 200);
    let metrics = app.admin.get("/metrics").await.text();
    assert_eq!(
        crate::harness::client::metric(
            &metrics,
            r#"timestamp_api_redis_refusals_total{cause="oom"}"#
        ),
        Some(2.0),
        "{metrics}"
    );
}
