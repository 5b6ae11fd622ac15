//! Every way an API request can fail, and the one place where each becomes an HTTP status and
//! problem type (the document itself is made by `http::IntoProblem`, as for the refusals of the
//! HTTP layer, `http::HttpError`).
//!
//! Server-side failures are logged here too, so that no handler has to remember to: a 503 at
//! warn level (Redis is down or slow; operators see it in /readyz and the metrics as well), a
//! 500 at error level (a bug, or data in Redis the service did not write). Their bodies say
//! only what a client can act on; the cause (a Redis error, a key name) goes to that log line,
//! and the body's `request_id` leads from a client's report to it.

use warp::http::StatusCode;
use warp::reply::Response;

use super::bounds::BODY_LIMIT;
use crate::domain::{NameError, TimestampError};
use crate::http::IntoProblem;
use crate::store::StoreError;

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
    #[error("a chunked request body has no length; send the body with Content-Length")]
    LengthRequired,
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    #[error("request body is larger than {BODY_LIMIT} bytes")]
    PayloadTooLarge,
    #[error("request body must be application/json")]
    UnsupportedMediaType,
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
    /// The cause is logged, never shown to the client.
    #[error("the server failed to handle the request")]
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::CorruptValue { .. } | StoreError::SlotTooLarge { .. } => {
                Self::Internal(error.to_string())
            }
            StoreError::NotReplicated { acked, wanted } => Self::NotReplicated { acked, wanted },
            StoreError::Refused { write, reason, .. } => Self::Refused {
                operation: if write { "write" } else { "read" },
                reason,
                source: error,
            },
            StoreError::Timeout(_)
            | StoreError::Unreachable { .. }
            | StoreError::Redis(_)
            | StoreError::Tls(_)
            | StoreError::Disconnected
            | StoreError::ClusterDegraded(_) => Self::Unavailable(error),
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

impl IntoProblem for ApiError {
    fn cause(&self) -> Option<&'static str> {
        match self {
            Self::Unavailable(StoreError::Unreachable { cause, .. }) => Some(cause.label()),
            _ => None,
        }
    }

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
            Self::Refused { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "store-refused",
                "Store refused the command",
            ),
            Self::Busy => (StatusCode::SERVICE_UNAVAILABLE, "busy", "Server busy"),
            Self::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
        }
    }
}

impl ApiError {
    pub fn into_response(self) -> Response {
        match &self {
            Self::Unavailable(source) => tracing::warn!(error = %source, "answering 503"),
            Self::NotReplicated { .. } => tracing::warn!(error = %self, "answering 503"),
            Self::Refused { source, .. } => tracing::warn!(error = %source, "answering 503"),
            Self::Internal(detail) => tracing::error!(error = %detail, "answering 500"),
            _ => {}
        }
        self.problem_response()
    }
}

#[cfg(test)]
mod tests {
    use warp::http::header;

    use super::*;
    use crate::http::problem_tests::{assert_problems, body_of};

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
            (ApiError::LengthRequired, 411, "length-required"),
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
        assert_problems(cases, ApiError::into_response);
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
