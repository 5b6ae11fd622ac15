//! The admin listener (probes, metrics, version), what each listener refuses to serve, and the
//! request id every response carries.

use crate::harness::app::spawn_app;
use crate::harness::timing::{eventually, reconnects_within};

#[tokio::test]
async fn livez_never_depends_on_redis() {
    let mut app = spawn_app().await;
    assert_eq!(app.admin.get("/livez").await.json()["status"], "ok");
    app.redis.stop();
    assert_eq!(app.admin.get("/livez").await.status, 200);
}

#[tokio::test]
async fn readyz_follows_redis() {
    let mut app = spawn_app().await;
    let ready = app.admin.get("/readyz").await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["status"], "ready");

    let gauge = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("timestamp_api_ready "))
            .map(str::to_owned)
    };
    let metrics = app.admin.get("/metrics").await.text();
    assert_eq!(gauge(&metrics).as_deref(), Some("timestamp_api_ready 1"));

    app.redis.stop();
    let not_ready = app.admin.get("/readyz").await;
    assert_eq!(not_ready.status, 503);
    assert_eq!(not_ready.header("content-type"), Some("application/json"));
    let body = not_ready.json();
    assert_eq!(body["status"], "not ready");
    // The verdict and the class of failure only: Redis' own error text (addresses, "Connection
    // refused (os error 111)") goes to the log.
    assert_eq!(body["reason"], "redis: cannot connect (refused)", "{body}");
    let metrics = app.admin.get("/metrics").await.text();
    assert_eq!(gauge(&metrics).as_deref(), Some("timestamp_api_ready 0"));

    app.redis.restart();
    eventually(reconnects_within(), || async {
        app.admin.get("/readyz").await.status == 200
    })
    .await;
}

#[tokio::test]
async fn version_reports_the_build() {
    let app = spawn_app().await;
    let body = app.admin.get("/version").await.json();
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        body["git_sha"],
        option_env!("TSAPI_GIT_SHA").unwrap_or("unknown")
    );
}

#[tokio::test]
async fn metrics_use_route_templates_and_count_redis_commands() {
    let app = spawn_app().await;
    app.api
        .put_empty("/v1/timestamps/secret-looking-name")
        .await;
    app.api.get("/v1/timestamps/secret-looking-name").await;
    app.api.get("/v1/timestamps/absent").await;
    app.api.get("/no/such/route").await;

    let response = app.admin.get("/metrics").await;
    assert_eq!(response.status, 200);
    assert!(
        response
            .header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text();
    for expected in [
        r#"http_requests_total{method="PUT",route="/v1/timestamps/{name}",status="201"} 1"#,
        r#"http_requests_total{method="GET",route="/v1/timestamps/{name}",status="200"} 1"#,
        r#"http_requests_total{method="GET",route="/v1/timestamps/{name}",status="404"} 1"#,
        r#"http_requests_total{method="GET",route="unmatched",status="404"} 1"#,
        r#"http_request_duration_seconds_count{method="PUT",route="/v1/timestamps/{name}"} 1"#,
        r#"timestamp_api_redis_command_duration_seconds_count{command="SET"} 1"#,
        r#"timestamp_api_redis_command_duration_seconds_count{command="GET"} 2"#,
        "timestamp_api_build_info{",
        "process_resident_memory_bytes ",
    ] {
        assert!(text.contains(expected), "missing {expected} in:\n{text}");
    }
    assert!(
        !text.contains("secret-looking-name"),
        "raw names leaked into labels"
    );
    assert!(
        !text.contains("/no/such/route"),
        "raw paths leaked into labels"
    );
}

#[tokio::test]
async fn redis_errors_are_counted_by_command() {
    let mut app = spawn_app().await;
    app.api.put_empty("/v1/timestamps/a").await;
    app.redis.stop();
    app.api
        .get("/v1/timestamps/a")
        .await
        .assert_problem(503, "unavailable");
    let text = app.admin.get("/metrics").await.text();
    assert!(
        text.contains(r#"timestamp_api_redis_command_errors_total{command="GET"} "#),
        "{text}"
    );
    assert!(text.contains(
        r#"http_requests_total{method="GET",route="/v1/timestamps/{name}",status="503"} 1"#
    ));
}

#[tokio::test]
async fn each_listener_serves_only_its_own_routes() {
    let app = spawn_app().await;
    for path in ["/livez", "/readyz", "/metrics", "/version"] {
        app.api.get(path).await.assert_problem(404, "no-route");
    }
    for path in ["/v1/timestamps", "/v1/timestamps/a", "/openapi.json"] {
        app.admin.get(path).await.assert_problem(404, "no-route");
    }
    let response = app
        .admin
        .send(hyper::Method::POST, "/readyz", &[], None)
        .await;
    response.assert_problem(405, "method-not-allowed");
    assert_eq!(response.header("allow"), Some("GET, HEAD"));
}

#[tokio::test]
async fn request_ids_are_kept_when_well_formed_and_generated_otherwise() {
    let app = spawn_app().await;
    let kept = app
        .api
        .send(
            hyper::Method::GET,
            "/v1/timestamps",
            &[("x-request-id", "edge-7f3a:1")],
            None,
        )
        .await;
    assert_eq!(kept.header("x-request-id"), Some("edge-7f3a:1"));

    let too_long = "x".repeat(65);
    for sent in [Some("bad id"), Some(too_long.as_str()), None] {
        let headers: Vec<(&str, &str)> = sent.iter().map(|id| ("x-request-id", *id)).collect();
        let response = app
            .api
            .send(hyper::Method::GET, "/v1/timestamps/nope", &headers, None)
            .await;
        let id = response.header("x-request-id").unwrap();
        assert_eq!(id.len(), 32, "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    }
    // Errors and admin responses carry one too.
    assert!(app.api.get("/nope").await.header("x-request-id").is_some());
    assert!(
        app.admin
            .get("/livez")
            .await
            .header("x-request-id")
            .is_some()
    );
}

#[tokio::test]
async fn the_served_openapi_document_is_the_committed_one() {
    let app = spawn_app().await;
    let response = app.api.get("/openapi.json").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let committed =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json")).unwrap();
    assert!(
        response.body == committed,
        "regenerate docs/openapi.json with `make openapi`"
    );
    assert_eq!(response.json()["openapi"], "3.1.0");
}
