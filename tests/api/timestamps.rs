//! The happy paths of every endpoint, and what ends up in Redis.

use std::collections::HashSet;

use redis::Commands;
use serde_json::json;

use crate::harness::app::{spawn_app, spawn_app_with};

#[tokio::test]
async fn put_without_a_body_sets_now_and_answers_201_with_location() {
    let app = spawn_app().await;
    let before = now_ms();

    let response = app.api.put_empty("/v1/timestamps/deploy").await;

    assert_eq!(response.status, 201);
    assert_eq!(response.header("location"), Some("/v1/timestamps/deploy"));
    assert_eq!(response.header("content-type"), Some("application/json"));
    let body = response.json();
    assert_eq!(body["name"], "deploy");
    let epoch_ms = body["epoch_ms"].as_i64().unwrap();
    assert!((before..=now_ms()).contains(&epoch_ms), "{body}");
    let text = body["timestamp"].as_str().unwrap();
    assert_eq!(text.len(), "2026-11-25T17:36:23.123Z".len(), "{text}");
    assert!(text.ends_with('Z'), "{text}");
}

#[tokio::test]
async fn put_with_an_empty_body_also_means_now() {
    let app = spawn_app().await;
    let response = app
        .api
        .send(
            hyper::Method::PUT,
            "/v1/timestamps/empty",
            &[("content-length", "0")],
            None,
        )
        .await;
    assert_eq!(response.status, 201);
    assert!(response.json()["epoch_ms"].as_i64().unwrap() > 1_700_000_000_000);
}

#[tokio::test]
async fn put_normalises_a_timestamp_to_utc_milliseconds() {
    let app = spawn_app().await;
    let response = app
        .api
        .put_json(
            "/v1/timestamps/release",
            r#"{"timestamp": "2026-11-25T18:36:23.123456+01:00"}"#,
        )
        .await;
    assert_eq!(response.status, 201);
    assert_eq!(
        response.json(),
        json!({"name": "release", "timestamp": "2026-11-25T17:36:23.123Z", "epoch_ms": 1_795_628_183_123_i64})
    );
}

#[tokio::test]
async fn put_accepts_epoch_milliseconds_and_the_range_ends() {
    let app = spawn_app().await;
    let low = app
        .api
        .put_json("/v1/timestamps/low", r#"{"epoch_ms": 0}"#)
        .await;
    assert_eq!(low.json()["timestamp"], "1970-01-01T00:00:00.000Z");
    let high = app
        .api
        .put_json(
            "/v1/timestamps/high",
            r#"{"timestamp": "9999-12-31T23:59:59.999Z"}"#,
        )
        .await;
    assert_eq!(high.json()["epoch_ms"], 253_402_300_799_999_i64);
}

#[tokio::test]
async fn a_second_put_replaces_and_answers_200() {
    let app = spawn_app().await;
    assert_eq!(
        app.api
            .put_json("/v1/timestamps/x", r#"{"epoch_ms": 1000}"#)
            .await
            .status,
        201
    );

    let replaced = app
        .api
        .put_json("/v1/timestamps/x", r#"{"epoch_ms": 2000}"#)
        .await;

    assert_eq!(replaced.status, 200);
    assert_eq!(replaced.header("location"), None);
    assert_eq!(replaced.json()["epoch_ms"], 2000);
    assert_eq!(
        app.api.get("/v1/timestamps/x").await.json()["epoch_ms"],
        2000
    );
}

#[tokio::test]
async fn get_returns_the_stored_value() {
    let app = spawn_app().await;
    app.api
        .put_json("/v1/timestamps/deploy", r#"{"epoch_ms": 1795628183123}"#)
        .await;

    let response = app.api.get("/v1/timestamps/deploy").await;

    assert_eq!(response.status, 200);
    assert_eq!(
        response.json(),
        json!({"name": "deploy", "timestamp": "2026-11-25T17:36:23.123Z", "epoch_ms": 1_795_628_183_123_i64})
    );
}

#[tokio::test]
async fn head_answers_like_get_without_a_body() {
    let app = spawn_app().await;
    app.api
        .put_json("/v1/timestamps/deploy", r#"{"epoch_ms": 1}"#)
        .await;
    let response = app
        .api
        .send(hyper::Method::HEAD, "/v1/timestamps/deploy", &[], None)
        .await;
    assert_eq!(response.status, 200);
    assert!(response.body.is_empty());
    assert_eq!(
        app.api
            .send(hyper::Method::HEAD, "/v1/timestamps/absent", &[], None)
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn delete_resets_a_timestamp() {
    let app = spawn_app().await;
    app.api.put_empty("/v1/timestamps/deploy").await;

    let deleted = app.api.delete("/v1/timestamps/deploy").await;
    assert_eq!(deleted.status, 204);
    assert!(deleted.body.is_empty());

    app.api
        .get("/v1/timestamps/deploy")
        .await
        .assert_problem(404, "not-found");
    app.api
        .delete("/v1/timestamps/deploy")
        .await
        .assert_problem(404, "not-found");
    // "Reset to now" is a PUT without a body: the name exists again.
    assert_eq!(app.api.put_empty("/v1/timestamps/deploy").await.status, 201);
}

#[tokio::test]
async fn values_are_integer_epoch_milliseconds_under_the_prefix() {
    let app = spawn_app_with(|config| config.redis.key_prefix = "team-a:ts:".into()).await;

    app.api
        .put_json(
            "/v1/timestamps/deploy",
            r#"{"timestamp": "2026-11-25T17:36:23.123Z"}"#,
        )
        .await;

    let mut direct = app.redis.client();
    let stored: String = direct.get("team-a:ts:deploy").unwrap();
    assert_eq!(stored, "1795628183123");
    let keys: Vec<String> = direct.keys("*").unwrap();
    assert_eq!(keys, ["team-a:ts:deploy"]);
    // And a value written by any other client is read back.
    let () = direct.set("team-a:ts:written-elsewhere", 0).unwrap();
    assert_eq!(
        app.api.get("/v1/timestamps/written-elsewhere").await.json()["epoch_ms"],
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_puts_create_exactly_once() {
    let app = spawn_app().await;
    for round in 0..5 {
        let path = format!("/v1/timestamps/race-{round}");
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let (api, path) = (app.api, path.clone());
                tokio::spawn(async move {
                    api.put_json(&path, r#"{"epoch_ms": 5}"#)
                        .await
                        .status
                        .as_u16()
                })
            })
            .collect();
        let mut statuses = Vec::new();
        for task in tasks {
            statuses.push(task.await.unwrap());
        }
        assert_eq!(
            statuses.iter().filter(|&&s| s == 201).count(),
            1,
            "{statuses:?}"
        );
        assert_eq!(
            statuses.iter().filter(|&&s| s == 200).count(),
            31,
            "{statuses:?}"
        );
        assert_eq!(statuses.iter().copied().collect::<HashSet<_>>().len(), 2);
    }
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(since.as_millis()).unwrap()
}
