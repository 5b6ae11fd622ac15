//! The admin listener: what operators and orchestrators need, kept off the API port.
//!
//! - `GET /livez`: 200 while the process serves; never touches Redis, so a Redis outage does
//!   not get healthy pods restarted.
//! - `GET /readyz`: 200 only if Redis answers PING within `redis.command_timeout` and the
//!   service is not shutting down, with the primary's address (`"primary": "host:port"`);
//!   otherwise 503 with a JSON reason (`redis: cannot connect (<cause>)` when no connection
//!   can be made, with the cause of `timestamp_api_redis_reconnection_failures_total`).
//! - `GET /metrics`: Prometheus text format.
//! - `GET /version`: `{"version", "git_sha"}`.

use std::convert::Infallible;

use serde_json::json;
use warp::Filter;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::{Reply, Response};

use crate::http::{Route, fallback, get_route, json_response};
use crate::metrics::{Metrics, TEXT_CONTENT_TYPE};
use crate::shutdown::Draining;
use crate::store::{Store, StoreError};
use crate::version;

pub fn routes(
    store: Store,
    metrics: Metrics,
    draining: Draining,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let livez = get_route(
        Route("/livez"),
        warp::any().map(|| json_response(&json!({"status": "ok"}), StatusCode::OK)),
    );
    let readiness_metrics = metrics.clone();
    let readyz = get_route(
        Route("/readyz"),
        warp::any()
            .map(move || (store.clone(), draining.clone(), readiness_metrics.clone()))
            .untuple_one()
            .then(readiness),
    );
    let metrics = get_route(
        Route("/metrics"),
        warp::any().map(move || {
            let mut response = metrics.render().into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(TEXT_CONTENT_TYPE),
            );
            response
        }),
    );
    let version = get_route(
        Route("/version"),
        warp::any().map(|| {
            json_response(
                &json!({"version": version::VERSION, "git_sha": version::GIT_SHA}),
                StatusCode::OK,
            )
        }),
    );
    livez
        .or(readyz)
        .unify()
        .or(metrics)
        .unify()
        .or(version)
        .unify()
        .or(fallback())
        .unify()
}

async fn readiness(store: Store, draining: Draining, metrics: Metrics) -> Response {
    let outcome = if draining.is_draining() {
        Err("shutting down".to_owned())
    } else {
        // The error goes to the log; probes and whoever can reach them need only the verdict,
        // and the class of failure when the service cannot connect.
        store.ping().await.map_err(|error| {
            tracing::warn!(%error, "not ready: Redis did not answer the readiness check");
            match error {
                StoreError::Unreachable { cause, .. } => {
                    format!("redis: cannot connect ({})", cause.label())
                }
                StoreError::ClusterDegraded(detail) => format!("redis cluster: {detail}"),
                _ => "redis: no answer to PING in time".to_owned(),
            }
        })
    };
    metrics.set_ready(outcome.is_ok());
    match outcome {
        // The admin listener is internal, so the address may be shown; it is the node that just
        // answered, or the one reconnected to since.
        Ok(()) => json_response(
            &json!({"status": "ready", "primary": store.primary().as_deref()}),
            StatusCode::OK,
        ),
        Err(reason) => json_response(
            &json!({"status": "not ready", "reason": reason}),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
    }
}
