//! Every way an API request can fail, and the one place where each becomes an HTTP response:
//! an `application/problem+json` body (RFC 9457) with `type`, `title`, `status` and `detail`.
//!
//! Server-side failures are logged here too, so that no handler has to remember to: a 503 at
//! warn level (Redis is down or slow; operators see it in /readyz and the metrics as well), a
//! 500 at error level (a bug, or data in Redis the service did not write). Their bodies say
//! only what a client can act on; the cause (a Redis error, a key name) goes to that log line,
//! and the body's `request_id` leads from a client's report to it.

use serde::Serialize;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

use super::set_request::BODY_LIMIT;
use crate::domain::{NameError, TimestampError};
use crate::store::StoreError;

/// The service's own bounds on a request head, well below hyper's (100 fields, and the
/// connection's 16 KiB buffer for the whole head): a head between the two is answered with a
/// problem document here rather than hyper's empty 431. Together (the method, the target, the
/// fields and their line ends) they stay under those 16 KiB, so every head over one of them
/// gets the problem document.
pub const MAX_REQUEST_HEADERS: usize = 64;
/// The header fields, names and values with 4 bytes of separators each.
pub const MAX_REQUEST_HEAD_BYTES: usize = 8 * 1024;
/// The request target (path and query); longer is a 414 (RFC 9110, section 15.5.15).
pub const MAX_REQUEST_TARGET_BYTES: usize = 6 * 1024;
/// The method token; no method of this service is longer than 7 bytes, and a longer one is
/// neither echoed in a 405 nor logged as it is.
pub const MAX_METHOD_BYTES: usize = 32;

/// Seconds a client should wait before retrying after a 503.
pub const RETRY_AFTER_SECONDS: &str = "1";

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// Problem `type` URIs point at the section of docs/api.md that explains them.
const PROBLEM_DOCS: &str = concat!(env!("CARGO_PKG_REPOSITORY"), "/blob/main/docs/api.md#");

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidName(#[from] NameError),
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("{0}")]
    InvalidField(String),
    #[error("{0}")]
    OutOfRange(TimestampError),
    #[error("{0}")]
    InvalidQuery(String),
    #[error("no timestamp is named {0}")]
    NotFound(String),
    #[error("no route matches {0}")]
    NoRoute(String),
    #[error("method {method} is not allowed here; use {allow}")]
    MethodNotAllowed { method: String, allow: String },
    #[error("a chunked request body has no length; send the body with Content-Length")]
    LengthRequired,
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    #[error("request body is larger than {BODY_LIMIT} bytes")]
    PayloadTooLarge,
    #[error("request body must be application/json")]
    UnsupportedMediaType,
    #[error("{0}")]
    InvalidRequest(&'static str),
    #[error(
        "the request has more than {MAX_REQUEST_HEADERS} header fields or \
         {MAX_REQUEST_HEAD_BYTES} bytes of them"
    )]
    HeadersTooLarge,
    #[error("the request target is longer than {MAX_REQUEST_TARGET_BYTES} bytes")]
    UriTooLong,
    #[error(
        "the method is longer than {MAX_METHOD_BYTES} bytes; this API's methods are GET, HEAD, \
         PUT and DELETE"
    )]
    MethodTooLong,
    #[error(
        "the timestamp store did not answer in time; the outcome of a write is unknown, retry it"
    )]
    Unavailable(#[source] StoreError),
    #[error(
        "the write was applied on the primary but reached only {acked} of {wanted} replicas in \
         time, so it may or may not survive a failover"
    )]
    NotReplicated { acked: u32, wanted: u32 },
    #[error("the timestamp store refused the {operation} ({reason}); it was not applied")]
    Refused {
        operation: &'static str,
        reason: &'static str,
        #[source]
        source: StoreError,
    },
    #[error(
        "the service holds as many list pages as its memory budget (response_buffer_bytes) \
         allows; retry later"
    )]
    Busy,
    #[error("this listener has as many connections open as it serves; retry later")]
    TooManyConnections,
    /// The cause is logged, never shown to the client.
    #[error("the server failed to handle the request")]
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::CorruptValue { .. } => Self::Internal(error.to_string()),
            StoreError::NotReplicated { acked, wanted } => Self::NotReplicated { acked, wanted },
            StoreError::Refused { write, reason, .. } => Self::Refused {
                operation: if write { "write" } else { "read" },
                reason,
                source: error,
            },
            StoreError::Timeout(_) | StoreError::Redis(_) | StoreError::Disconnected => {
                Self::Unavailable(error)
            }
        }
    }
}

impl From<TimestampError> for ApiError {
    fn from(error: TimestampError) -> Self {
        match error {
            TimestampError::Syntax(_) => Self::InvalidField(format!("timestamp: {error}")),
            TimestampError::OutOfRange => Self::OutOfRange(error),
        }
    }
}

/// An RFC 9457 problem document: the body of every error response.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "type": "https://github.com/timestamp-api/timestamp-api/blob/main/docs/api.md#not-found",
    "title": "Timestamp not found",
    "status": 404,
    "detail": "no timestamp is named deploy"
}))]
pub struct Problem {
    /// Identifies the kind of problem; links to its explanation in docs/api.md.
    #[serde(rename = "type")]
    #[schema(format = "uri")]
    kind: String,
    /// Short summary of the kind of problem.
    title: &'static str,
    /// The HTTP status code.
    status: u16,
    /// What went wrong with this request.
    detail: String,
    /// The request's id (also in the `X-Request-Id` header): quote it when reporting a problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
}

impl ApiError {
    /// Status, the slug of the problem type (a heading in docs/api.md), and its title.
    fn classify(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::InvalidName(_) => (StatusCode::BAD_REQUEST, "invalid-name", "Invalid name"),
            Self::InvalidJson(_) => (StatusCode::BAD_REQUEST, "invalid-json", "Invalid JSON"),
            Self::InvalidField(_) => (StatusCode::BAD_REQUEST, "invalid-field", "Invalid field"),
            Self::OutOfRange(_) => (
                StatusCode::BAD_REQUEST,
                "out-of-range",
                "Timestamp out of range",
            ),
            Self::InvalidQuery(_) => (StatusCode::BAD_REQUEST, "invalid-query", "Invalid query"),
            Self::InvalidRequest(_) | Self::MethodTooLong => (
                StatusCode::BAD_REQUEST,
                "invalid-request",
                "Invalid request",
            ),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Timestamp not found"),
            Self::NoRoute(_) => (StatusCode::NOT_FOUND, "no-route", "No such route"),
            Self::MethodNotAllowed { .. } => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            Self::RequestTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "request-timeout",
                "Request timeout",
            ),
            Self::LengthRequired => (
                StatusCode::LENGTH_REQUIRED,
                "length-required",
                "Length required",
            ),
            Self::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
            ),
            Self::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            Self::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Store unavailable",
            ),
            Self::NotReplicated { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "not-replicated",
                "Write not replicated in time",
            ),
            Self::HeadersTooLarge => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers-too-large",
                "Request header fields too large",
            ),
            Self::UriTooLong => (StatusCode::URI_TOO_LONG, "uri-too-long", "URI too long"),
            Self::Refused { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "store-refused",
                "Store refused the command",
            ),
            Self::Busy => (StatusCode::SERVICE_UNAVAILABLE, "busy", "Server busy"),
            Self::TooManyConnections => (
                StatusCode::SERVICE_UNAVAILABLE,
                "too-many-connections",
                "Too many connections",
            ),
            Self::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.classify().0
    }

    /// The problem document of this error, with the current request's id.
    pub fn problem_json(&self) -> Vec<u8> {
        let (status, slug, title) = self.classify();
        let problem = Problem {
            kind: format!("{PROBLEM_DOCS}{slug}"),
            title,
            status: status.as_u16(),
            detail: self.to_string(),
            request_id: crate::telemetry::current_request_id(),
        };
        // A struct of strings and an integer always serialises.
        serde_json::to_vec(&problem).unwrap_or_default()
    }

    pub fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            Self::Unavailable(source) => tracing::warn!(error = %source, "answering 503"),
            Self::NotReplicated { .. } => tracing::warn!(error = %self, "answering 503"),
            Self::Refused { source, .. } => tracing::warn!(error = %source, "answering 503"),
            Self::Internal(detail) => tracing::error!(error = %detail, "answering 500"),
            _ => {}
        }
        let mut response = Response::new(self.problem_json().into());
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
        );
        match self {
            Self::MethodNotAllowed { allow, .. } => {
                // Method names are tokens, valid in a header value as they are.
                if let Ok(allow) = HeaderValue::from_str(&allow) {
                    headers.insert(header::ALLOW, allow);
                }
            }
            Self::Unavailable(_)
            | Self::NotReplicated { .. }
            | Self::Refused { .. }
            | Self::Busy
            | Self::TooManyConnections => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(RETRY_AFTER_SECONDS),
                );
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(response: Response) -> (StatusCode, serde_json::Value, warp::http::HeaderMap) {
        let (parts, body) = response.into_parts();
        let bytes = futures_util::FutureExt::now_or_never(http_body_util::BodyExt::collect(body))
            .expect("a problem body is ready at once")
            .expect("a problem body cannot fail")
            .to_bytes();
        (
            parts.status,
            serde_json::from_slice(&bytes).unwrap(),
            parts.headers,
        )
    }

    #[test]
    fn each_error_maps_to_its_status() {
        let cases: Vec<(ApiError, u16, &str)> = vec![
            (NameError::Empty.into(), 400, "invalid-name"),
            (ApiError::InvalidJson("eof".into()), 400, "invalid-json"),
            (ApiError::InvalidField("x".into()), 400, "invalid-field"),
            (TimestampError::OutOfRange.into(), 400, "out-of-range"),
            (
                TimestampError::Syntax("x".into()).into(),
                400,
                "invalid-field",
            ),
            (ApiError::InvalidQuery("x".into()), 400, "invalid-query"),
            (ApiError::NotFound("a".into()), 404, "not-found"),
            (ApiError::NoRoute("/x".into()), 404, "no-route"),
            (
                ApiError::MethodNotAllowed {
                    method: "POST".into(),
                    allow: "GET".into(),
                },
                405,
                "method-not-allowed",
            ),
            (ApiError::LengthRequired, 411, "length-required"),
            (ApiError::InvalidRequest("x"), 400, "invalid-request"),
            (ApiError::HeadersTooLarge, 431, "headers-too-large"),
            (ApiError::UriTooLong, 414, "uri-too-long"),
            (ApiError::MethodTooLong, 400, "invalid-request"),
            (ApiError::TooManyConnections, 503, "too-many-connections"),
            (ApiError::Busy, 503, "busy"),
            (ApiError::RequestTimeout, 408, "request-timeout"),
            (ApiError::PayloadTooLarge, 413, "payload-too-large"),
            (
                ApiError::UnsupportedMediaType,
                415,
                "unsupported-media-type",
            ),
            (
                StoreError::Timeout(std::time::Duration::from_millis(1)).into(),
                503,
                "unavailable",
            ),
            (
                StoreError::CorruptValue { key: "ts:a".into() }.into(),
                500,
                "internal",
            ),
            (
                StoreError::NotReplicated {
                    acked: 0,
                    wanted: 1,
                }
                .into(),
                503,
                "not-replicated",
            ),
        ];
        for (error, status, slug) in cases {
            let detail = error.to_string();
            let (code, body, headers) = body_of(error.into_response());
            assert_eq!(code.as_u16(), status, "{slug}");
            assert_eq!(headers[header::CONTENT_TYPE], PROBLEM_CONTENT_TYPE);
            assert_eq!(body["status"], status);
            assert_eq!(body["detail"], detail.as_str());
            assert!(
                body["title"]
                    .as_str()
                    .is_some_and(|title| !title.is_empty())
            );
            assert!(
                body["type"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("docs/api.md#{slug}"))
            );
        }
    }

    #[test]
    fn method_not_allowed_names_the_allowed_methods() {
        let error = ApiError::MethodNotAllowed {
            method: "POST".into(),
            allow: "GET, HEAD".into(),
        };
        let (_, _, headers) = body_of(error.into_response());
        assert_eq!(headers[header::ALLOW], "GET, HEAD");
    }

    #[test]
    fn unavailable_tells_when_to_retry_without_leaking_the_cause() {
        let cause = redis::RedisError::from((
            redis::ErrorKind::Io,
            "connection refused",
            "10.0.0.7:6379".into(),
        ));
        let (_, body, headers) = body_of(ApiError::from(StoreError::Redis(cause)).into_response());
        assert_eq!(headers[header::RETRY_AFTER], "1");
        assert!(!body.to_string().contains("10.0.0.7"), "{body}");

        let shortfall = ApiError::from(StoreError::NotReplicated {
            acked: 1,
            wanted: 2,
        });
        let (_, body, headers) = body_of(shortfall.into_response());
        assert_eq!(headers[header::RETRY_AFTER], "1");
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains("1 of 2 replicas"), "{detail}");
        assert!(
            detail.contains("may or may not survive a failover"),
            "{detail}"
        );
    }
}
