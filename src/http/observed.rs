//! The per-request wrapper both listeners serve through: request id, span, access log,
//! metrics, and the answers to requests no route can serve.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use hyper::body::Incoming;
use tower_service::Service as _;
use tracing::Instrument;
use warp::Filter;
use warp::http::{Request, Version, header};
use warp::reply::Response;

use super::limits::{
    MAX_METHOD_BYTES, MAX_REQUEST_HEAD_BYTES, MAX_REQUEST_HEADERS, MAX_REQUEST_TARGET_BYTES,
};
use super::{HttpError, Route};
use crate::metrics::Metrics;
use crate::telemetry::{self, REQUEST_ID_HEADER, traces};

/// Where a listener's access-log lines go: the API's at info, the admin listener's (probes and
/// scrapes, every few seconds) at debug.
#[derive(Debug, Clone, Copy)]
pub enum AccessLog {
    Info,
    Debug,
}

/// Wraps a listener's warp routes with what every request gets: a request id (kept from a
/// well-formed `X-Request-Id`, else generated, and echoed), a span carrying it, one access-log
/// event, and the HTTP metrics. Requests no route can serve (no path, no `Host`, a head over
/// the service's own limits) are answered here, before routing.
#[derive(Clone)]
pub struct Observed<F> {
    pub routes: F,
    pub metrics: Metrics,
    pub access_log: AccessLog,
    /// Whether its requests are traced when tracing is on: the API's are, the admin
    /// listener's probes and scrapes are not.
    pub traced: bool,
}

impl<F> hyper::service::Service<Request<Incoming>> for Observed<F>
where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
    F::Future: Send,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let start = Instant::now();
        let request_id = telemetry::request_id(request.headers());
        let method = request.method().clone();
        let recorded = self
            .traced
            .then(|| {
                traces::request_span(
                    request_id.to_str().unwrap_or_default(),
                    &method,
                    request.version(),
                    request.headers(),
                )
            })
            .flatten();
        let span = recorded.clone().unwrap_or_else(|| {
            tracing::info_span!(
                "request",
                request_id = request_id.to_str().unwrap_or_default()
            )
        });
        let routes = self.routes.clone();
        let (metrics, access_log) = (self.metrics.clone(), self.access_log);
        let handled = async move {
            let response = match unroutable(&request) {
                Some(problem) => Route::UNMATCHED.tag(problem.into_response()),
                None => {
                    let Ok(response) = warp::service(routes).call(request).await;
                    response
                }
            };
            let elapsed = start.elapsed();
            let route = Route::of(&response).0;
            let status = response.status();
            metrics.observe_request(&method, route, status, elapsed);
            if let Some(recorded) = &recorded {
                let template = (route != Route::UNMATCHED.0).then_some(route);
                traces::finish_request(recorded, &method, template, status);
            }
            // Microsecond resolution is plenty, and keeps the log lines short.
            let latency_ms = elapsed.as_micros() as f64 / 1000.0;
            // A method over the limit was refused; it is logged cut to the limit, never whole.
            let method = method
                .as_str()
                .get(..MAX_METHOD_BYTES)
                .unwrap_or(method.as_str());
            match access_log {
                AccessLog::Info => tracing::info!(
                    target: "timestamp_api::access", method, route, status = status.as_u16(), latency_ms, "request"
                ),
                AccessLog::Debug => tracing::debug!(
                    target: "timestamp_api::access", method, route, status = status.as_u16(), latency_ms, "request"
                ),
            }
            response
        };
        // hyper drops this future when the client goes away mid-request (a reset, or a close
        // hyper does not wait out). The request runs in a task of its own, so that what it
        // started (a write sent to Redis) still ends in its access-log line and its metrics.
        // Boxed first: the routes' future is several KiB, and every move of an unboxed one
        // (into the wrappers, into the task, the task's output read back) copied all of it.
        let handling = tokio::spawn(telemetry::with_request_id(
            request_id.clone(),
            Box::pin(handled).instrument(span),
        ));
        Box::pin(async move {
            let mut response = handling.await.unwrap_or_else(|_| {
                // The panic itself is counted and logged by the panic hook (telemetry).
                HttpError::Internal("the request's task panicked").into_response()
            });
            response.headers_mut().insert(REQUEST_ID_HEADER, request_id);
            Ok(response)
        })
    }
}

/// Why a request cannot be routed at all, if it cannot: its method, target or header fields
/// are over this service's own limits (below hyper's, so that the answer is a problem document
/// rather than hyper's empty 431), its target is not a path (the authority form of `CONNECT
/// host:port`, the asterisk form of `OPTIONS *`), or it is HTTP/1.1 without exactly one `Host`
/// (RFC 9112, section 3.2).
fn unroutable<B>(request: &Request<B>) -> Option<HttpError> {
    if request.method().as_str().len() > MAX_METHOD_BYTES {
        return Some(HttpError::MethodTooLong);
    }
    let uri = request.uri();
    let target_bytes = uri
        .path_and_query()
        .map_or(0, |target| target.as_str().len())
        + uri
            .authority()
            .map_or(0, |authority| authority.as_str().len());
    if target_bytes > MAX_REQUEST_TARGET_BYTES {
        return Some(HttpError::UriTooLong);
    }
    if !request.uri().path().starts_with('/') {
        return Some(HttpError::InvalidRequest(
            "the request target must be a path such as /v1/timestamps",
        ));
    }
    let headers = request.headers();
    if headers.len() > MAX_REQUEST_HEADERS {
        return Some(HttpError::HeadersTooLarge);
    }
    let field_bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if field_bytes > MAX_REQUEST_HEAD_BYTES {
        return Some(HttpError::HeadersTooLarge);
    }
    if request.version() == Version::HTTP_11 && headers.get_all(header::HOST).iter().count() != 1 {
        return Some(HttpError::InvalidRequest(
            "an HTTP/1.1 request must carry exactly one Host header",
        ));
    }
    None
}
