//! Every class of bad input, over real HTTP: the status, and an RFC 9457 problem body.

use hyper::Method;
use redis::Commands;

use crate::harness::app::spawn_app;

#[tokio::test]
async fn bad_names_are_400() {
    let app = spawn_app().await;
    let too_long = format!("/v1/timestamps/{}", "a".repeat(129));
    for path in [
        "/v1/timestamps/-dash-first",
        "/v1/timestamps/has%20space",
        "/v1/timestamps/a:b",
        &too_long,
    ] {
        app.api.get(path).await.assert_problem(400, "invalid-name");
        app.api
            .put_empty(path)
            .await
            .assert_problem(400, "invalid-name");
        app.api
            .delete(path)
            .await
            .assert_problem(400, "invalid-name");
    }
    let body = app
        .api
        .get(&too_long)
        .await
        .assert_problem(400, "invalid-name");
    assert!(body["detail"].as_str().unwrap().contains("129"), "{body}");
}

#[tokio::test]
async fn bad_json_is_400() {
    let app = spawn_app().await;
    for body in ["{", "not json", r#"{"epoch_ms": 1"#] {
        app.api
            .put_json("/v1/timestamps/x", body)
            .await
            .assert_problem(400, "invalid-json");
    }
}

#[tokio::test]
async fn bad_fields_are_400() {
    let app = spawn_app().await;
    for body in [
        "{}",
        r#"{"epoch_ms": 1, "timestamp": "2026-01-01T00:00:00Z"}"#,
        r#"{"epoch_ms": 1, "note": "unknown fields are refused"}"#,
        r#"{"epoch_ms": "1"}"#,
        r#"{"epoch_ms": 1.5}"#,
        r#"{"timestamp": "2026-11-25"}"#,
        r#"{"timestamp": 17}"#,
        "[]",
        // The sequence form serde's derive would also take for the object: not the contract.
        r#"["2026-11-25T17:36:23Z"]"#,
        r#"["2026-11-25T17:36:23Z", null]"#,
        r#""2026-11-25T17:36:23Z""#,
        "1795628183123",
    ] {
        app.api
            .put_json("/v1/timestamps/x", body)
            .await
            .assert_problem(400, "invalid-field");
    }
    app.api
        .get("/v1/timestamps/x")
        .await
        .assert_problem(404, "not-found");
}

#[tokio::test]
async fn times_outside_the_range_are_400() {
    let app = spawn_app().await;
    for body in [
        r#"{"epoch_ms": -1}"#,
        r#"{"epoch_ms": 253402300800000}"#,
        r#"{"timestamp": "1969-12-31T23:59:59.999Z"}"#,
        r#"{"timestamp": "9999-12-31T23:59:59.999-00:01"}"#,
    ] {
        app.api
            .put_json("/v1/timestamps/x", body)
            .await
            .assert_problem(400, "out-of-range");
    }
}

#[tokio::test]
async fn bad_queries_are_400() {
    let app = spawn_app().await;
    for query in [
        "limit=0",
        "limit=1001",
        "limit=ten",
        "cursor=not-ours",
        "limit=5&limit=6",
        "sort=name",
    ] {
        app.api
            .get(&format!("/v1/timestamps?{query}"))
            .await
            .assert_problem(400, "invalid-query");
    }
}

#[tokio::test]
async fn unknown_routes_are_404_problems() {
    let app = spawn_app().await;
    for path in [
        "/",
        "/v1",
        "/v2/timestamps/x",
        "/v1/timestamps/a/b",
        "/v1/timestampsx",
    ] {
        app.api.get(path).await.assert_problem(404, "no-route");
    }
}

#[tokio::test]
async fn wrong_methods_are_405_with_allow() {
    let app = spawn_app().await;
    for method in [Method::POST, Method::PATCH, Method::OPTIONS] {
        let response = app
            .api
            .send(method.clone(), "/v1/timestamps/x", &[], None)
            .await;
        response.assert_problem(405, "method-not-allowed");
        assert_eq!(response.header("allow"), Some("GET, HEAD, PUT, DELETE"));
    }
    for method in [Method::PUT, Method::DELETE, Method::POST] {
        let response = app.api.send(method, "/v1/timestamps", &[], None).await;
        response.assert_problem(405, "method-not-allowed");
        assert_eq!(response.header("allow"), Some("GET, HEAD"));
    }
}

#[tokio::test]
async fn bodies_over_one_kib_are_413() {
    let app = spawn_app().await;
    let padding = " ".repeat(1100);
    let body = format!(r#"{{"epoch_ms": 1}}{padding}"#);
    app.api
        .put_json("/v1/timestamps/x", &body)
        .await
        .assert_problem(413, "payload-too-large");
    // Exactly the limit is still accepted.
    let body = format!("{:<1024}", r#"{"epoch_ms": 1}"#);
    assert_eq!(
        app.api.put_json("/v1/timestamps/x", &body).await.status,
        201
    );
}

#[tokio::test]
async fn chunked_bodies_are_411() {
    let app = spawn_app().await;
    let chunk = r#"{"epoch_ms": 1}"#;
    let request = format!(
        "PUT /v1/timestamps/x HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    app.api
        .raw(&request)
        .await
        .assert_problem(411, "length-required");
}

#[tokio::test]
async fn bodies_that_are_not_json_are_415() {
    let app = spawn_app().await;
    let body = Some(r#"{"epoch_ms": 1}"#);
    for headers in [
        &[][..],
        &[("content-type", "text/plain")][..],
        &[("content-type", "application/xml")][..],
    ] {
        app.api
            .send(Method::PUT, "/v1/timestamps/x", headers, body)
            .await
            .assert_problem(415, "unsupported-media-type");
    }
}

#[tokio::test]
async fn a_value_the_service_did_not_write_is_a_500_not_a_crash() {
    let app = spawn_app().await;
    let mut direct = app.redis.client();
    let () = direct.set("ts:garbled", "yesterday").unwrap();
    let () = direct.hset("ts:a-hash", "field", 1).unwrap();

    app.api
        .get("/v1/timestamps/garbled")
        .await
        .assert_problem(500, "internal");
    app.api
        .get("/v1/timestamps/a-hash")
        .await
        .assert_problem(500, "internal");
    // Overwriting a garbled string value repairs it.
    assert_eq!(
        app.api
            .put_json("/v1/timestamps/garbled", r#"{"epoch_ms": 1}"#)
            .await
            .status,
        200
    );
    assert_eq!(app.api.get("/v1/timestamps/garbled").await.status, 200);
}

#[tokio::test]
async fn a_body_that_never_arrives_is_408_after_the_timeout() {
    let app = spawn_app().await;
    let started = std::time::Instant::now();
    // 15 bytes announced, 1 sent; the connection stays open.
    let response = app
        .api
        .raw("PUT /v1/timestamps/x HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{")
        .await;
    response.assert_problem(408, "request-timeout");
    let waited = started.elapsed();
    assert!(waited >= timestamp_api::BODY_READ_TIMEOUT, "{waited:?}");
    app.api
        .get("/v1/timestamps/x")
        .await
        .assert_problem(404, "not-found");
}
