//! Every way an API request can fail, and the one place where each becomes an HTTP response:
//! an `application/problem+json` body (RFC 9457) with `type`, `title`, `status` and `detail`.
//!
//! Server-side failures are logged here too, so that no handler has to remember to: a 503 at
//! warn level (Redis is down or slow; operators see it in /readyz and the metrics as well), a
//! 500 at error level (a bug, or data in Redis the service did not write).

use serde::Serialize;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

use crate::domain::{NameError, TimestampError};
use crate::store::StoreError;

/// Largest request body accepted, in bytes.
pub const BODY_LIMIT: u64 = 1024;

/// Seconds a client should wait before retrying after a 503.
const RETRY_AFTER_SECONDS: &str = "1";

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
    MethodNotAllowed { method: String, allow: &'static str },
    #[error("a chunked request body has no length; send the body with Content-Length")]
    LengthRequired,
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    #[error("request body is larger than {BODY_LIMIT} bytes")]
    PayloadTooLarge,
    #[error("request body must be application/json")]
    UnsupportedMediaType,
    #[error("the timestamp store did not answer in time; retry later")]
    Unavailable(#[source] StoreError),
    #[error("the server failed to handle the request: {0}")]
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::CorruptValue { .. } => Self::Internal(error.to_string()),
            StoreError::Timeout(_) | StoreError::Redis(_) => Self::Unavailable(error),
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

    pub fn into_response(self) -> Response {
        let (status, slug, title) = self.classify();
        match &self {
            Self::Unavailable(source) => tracing::warn!(error = %source, "answering 503"),
            Self::Internal(detail) => tracing::error!(error = %detail, "answering 500"),
            _ => {}
        }
        let problem = Problem {
            kind: format!("{PROBLEM_DOCS}{slug}"),
            title,
            status: status.as_u16(),
            detail: self.to_string(),
        };
        // A struct of strings and an integer always serialises.
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = Response::new(body.into());
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
        );
        match self {
            Self::MethodNotAllowed { allow, .. } => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            Self::Unavailable(_) => {
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
                    allow: "GET",
                },
                405,
                "method-not-allowed",
            ),
            (ApiError::LengthRequired, 411, "length-required"),
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
            allow: "GET, HEAD",
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
    }
}
