//! The refusals of the HTTP layer, shared by both listeners: requests that reach no handler
//! (no route, a method the path does not answer, a head over the limits, a malformed request),
//! connections beyond the limit, and a request whose task panicked. The API's own errors are
//! `api::ApiError`; both become problem documents through `IntoProblem`.

use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

use super::limits::{
    MAX_METHOD_BYTES, MAX_REQUEST_HEAD_BYTES, MAX_REQUEST_HEADERS, MAX_REQUEST_TARGET_BYTES,
};
use super::problem::IntoProblem;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("no route matches {0}")]
    NoRoute(String),
    #[error("method {method} is not allowed here; use {allow}")]
    MethodNotAllowed { method: String, allow: String },
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
    #[error("this listener has as many connections open as it serves; retry later")]
    TooManyConnections,
    /// The cause is logged, never shown to the client.
    #[error("the server failed to handle the request")]
    Internal(&'static str),
}

impl IntoProblem for HttpError {
    fn classify(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::NoRoute(_) => (StatusCode::NOT_FOUND, "no-route", "No such route"),
            Self::MethodNotAllowed { .. } => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            Self::InvalidRequest(_) | Self::MethodTooLong => (
                StatusCode::BAD_REQUEST,
                "invalid-request",
                "Invalid request",
            ),
            Self::HeadersTooLarge => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers-too-large",
                "Request header fields too large",
            ),
            Self::UriTooLong => (StatusCode::URI_TOO_LONG, "uri-too-long", "URI too long"),
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
}

impl HttpError {
    pub fn into_response(self) -> Response {
        if let Self::Internal(cause) = &self {
            tracing::error!(error = cause, "answering 500");
        }
        let mut response = self.problem_response();
        if let Self::MethodNotAllowed { allow, .. } = self {
            // Method names are tokens, valid in a header value as they are.
            if let Ok(allow) = HeaderValue::from_str(&allow) {
                response.headers_mut().insert(header::ALLOW, allow);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::problem::tests::{assert_problems, body_of};

    #[test]
    fn each_refusal_maps_to_its_status() {
        assert_problems(
            vec![
                (HttpError::NoRoute("/x".into()), 404, "no-route"),
                (
                    HttpError::MethodNotAllowed {
                        method: "POST".into(),
                        allow: "GET".into(),
                    },
                    405,
                    "method-not-allowed",
                ),
                (HttpError::InvalidRequest("x"), 400, "invalid-request"),
                (HttpError::HeadersTooLarge, 431, "headers-too-large"),
                (HttpError::UriTooLong, 414, "uri-too-long"),
                (HttpError::MethodTooLong, 400, "invalid-request"),
                (HttpError::TooManyConnections, 503, "too-many-connections"),
            ],
            HttpError::into_response,
        );
    }

    #[test]
    fn method_not_allowed_names_the_allowed_methods() {
        let error = HttpError::MethodNotAllowed {
            method: "POST".into(),
            allow: "GET, HEAD".into(),
        };
        let (_, _, headers) = body_of(error.into_response());
        assert_eq!(headers[header::ALLOW], "GET, HEAD");
    }
}
