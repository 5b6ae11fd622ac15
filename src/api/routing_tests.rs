//! The API's routing without a live Redis: 404 for unknown paths, 405 with `Allow`, 415 for a
//! body that is not JSON. The store points at a port where nothing listens, so each of these
//! answers was given before Redis was asked: one that needed Redis would be a 503, as the last
//! test shows.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tower_service::Service as _;
use warp::http::{HeaderMap, Method, Request, StatusCode, header};
use warp::reply::Response;

use super::{COLLECTION_ROUTE, ITEM_ROUTE, OPENAPI_ROUTE, ResponseBudget, routes};
use crate::config::RedisConfig;
use crate::cursor::CursorKey;
use crate::http::{PROBLEM_CONTENT_TYPE, Route};
use crate::metrics::Metrics;
use crate::store::Store;

/// The API routes' answer to `request`, through the same `warp::service` the listener uses.
async fn answer(request: Request<Full<Bytes>>) -> Response {
    let nobody_listens = RedisConfig {
        url: "redis://127.0.0.1:1/0".to_owned(),
        ..RedisConfig::default()
    };
    let metrics = Metrics::new();
    let store = Store::new(&nobody_listens, metrics.clone()).unwrap();
    let budget = ResponseBudget::new(
        crate::config::Config::default().response_buffer_bytes,
        nobody_listens.command_timeout,
        metrics.response_buffer_bytes(),
    );
    let routes = routes(store, CursorKey::new(None).unwrap(), budget);
    // Boxed: the route's whole future, inline in this one, is deeper than the compiler's query
    // depth allows for a layout (the cluster store's questions to every node at once made it so).
    let Ok(response) = Box::pin(warp::service(routes).call(request)).await;
    response
}

fn without_body(method: Method, path: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(path)
        .body(Full::default())
        .unwrap()
}

/// Asserts a problem document of `status` and type `slug`; returns the response's headers and
/// the route template it is tagged with.
async fn assert_problem(response: Response, status: StatusCode, slug: &str) -> (HeaderMap, Route) {
    let route = Route::of(&response);
    let (parts, body) = response.into_parts();
    assert_eq!(parts.status, status);
    assert_eq!(
        parts.headers.get(header::CONTENT_TYPE).unwrap(),
        PROBLEM_CONTENT_TYPE
    );
    let body = body.collect().await.unwrap().to_bytes();
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        problem["type"]
            .as_str()
            .is_some_and(|kind| kind.ends_with(&format!("#{slug}"))),
        "expected problem type {slug}: {problem}"
    );
    (parts.headers, route)
}

#[tokio::test]
async fn unknown_paths_and_a_trailing_slash_are_404() {
    for path in [
        "/",
        "/v2/timestamps/x",
        "/v1/timestamps/x/",
        "/v1/timestamps/x/y",
        "/openapi.json/",
    ] {
        let response = answer(without_body(Method::GET, path)).await;
        let (_, route) = assert_problem(response, StatusCode::NOT_FOUND, "no-route").await;
        assert_eq!(route, Route::UNMATCHED, "{path}");
    }
}

#[tokio::test]
async fn other_methods_are_405_with_allow_tagged_with_the_route() {
    for (method, path, allow, tagged) in [
        (
            Method::POST,
            "/v1/timestamps/x",
            "GET, HEAD, PUT, DELETE",
            ITEM_ROUTE,
        ),
        (
            Method::PATCH,
            "/v1/timestamps/x",
            "GET, HEAD, PUT, DELETE",
            ITEM_ROUTE,
        ),
        (
            Method::POST,
            "/v1/timestamps",
            "GET, HEAD",
            COLLECTION_ROUTE,
        ),
        (
            Method::DELETE,
            "/v1/timestamps",
            "GET, HEAD",
            COLLECTION_ROUTE,
        ),
        (Method::PUT, "/openapi.json", "GET, HEAD", OPENAPI_ROUTE),
    ] {
        let response = answer(without_body(method.clone(), path)).await;
        let (headers, route) = assert_problem(
            response,
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
        )
        .await;
        assert_eq!(
            headers.get(header::ALLOW).unwrap(),
            allow,
            "{method} {path}"
        );
        assert_eq!(route, tagged, "{method} {path}");
    }
}

#[tokio::test]
async fn a_put_body_that_is_not_json_is_415() {
    let body = r#"{"epoch_ms": 1}"#;
    for content_type in [None, Some("text/plain"), Some("application/xml")] {
        let mut request = Request::builder()
            .method(Method::PUT)
            .uri("/v1/timestamps/x")
            .header(header::CONTENT_LENGTH, body.len());
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let response = answer(request.body(Full::new(Bytes::from(body))).unwrap()).await;
        let (_, route) = assert_problem(
            response,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
        )
        .await;
        assert_eq!(route, ITEM_ROUTE, "{content_type:?}");
    }
}

#[tokio::test]
async fn a_request_that_needs_redis_is_503_here() {
    let response = answer(without_body(Method::GET, "/v1/timestamps/x")).await;
    assert_problem(response, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
}
