//! Redis stopped, stalled, restarted, or not there at start-up: the service answers 503 fast,
//! never hangs or crashes, and serves again soon after Redis is back, without a restart.

use std::time::{Duration, Instant};

use crate::helpers::{Client, RedisServer, TestApp, TestResponse, eventually, spawn_app};

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

fn assert_all_unavailable_within_a_second(results: &[(&str, TestResponse, Duration)]) {
    for (what, response, took) in results {
        response.assert_problem(503, "unavailable");
        assert_eq!(response.header("retry-after"), Some("1"), "{what}");
        assert!(*took < Duration::from_secs(1), "{what} took {took:?}");
    }
}

async fn serves_again_within_two_seconds(api: Client) {
    let took = eventually(Duration::from_secs(2), || async {
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
    assert_all_unavailable_within_a_second(&every_endpoint(app.api).await);
    // Still 503s, not a wedged client, on a second round.
    assert_all_unavailable_within_a_second(&every_endpoint(app.api).await);

    app.redis.restart();
    serves_again_within_two_seconds(app.api).await;
}

#[tokio::test]
async fn a_stalled_redis_gives_503s_within_the_timeout() {
    let app = spawn_app().await;
    assert_eq!(app.api.put_empty("/v1/timestamps/a").await.status, 201);

    app.redis.pause();
    let results = every_endpoint(app.api).await;
    app.redis.resume();

    assert_all_unavailable_within_a_second(&results);
    serves_again_within_two_seconds(app.api).await;
}

#[tokio::test]
async fn the_service_starts_while_redis_is_down() {
    let mut redis = RedisServer::start();
    redis.stop();
    let mut app = TestApp::spawn(redis, |_| {}).await;

    assert_all_unavailable_within_a_second(&every_endpoint(app.api).await);

    app.redis.restart();
    serves_again_within_two_seconds(app.api).await;
}
