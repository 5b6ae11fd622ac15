//! Problem documents (RFC 9457): the `application/problem+json` body of every error response,
//! with `type`, `title`, `status` and `detail`, whichever layer refused the request. Each error
//! type (`http::HttpError` for transport refusals, `api::ApiError` for the API's own) says
//! what it is by implementing `IntoProblem`; the body, its headers and its link into docs/api.md
//! are made here, once.

use std::fmt::Display;

use serde::Serialize;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

/// Seconds a client should wait before retrying after a 503.
pub const RETRY_AFTER_SECONDS: &str = "1";

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// Problem `type` URIs point at the section of docs/api.md that explains them.
const PROBLEM_DOCS: &str = concat!(env!("CARGO_PKG_REPOSITORY"), "/blob/main/docs/api.md#");

/// An error that is answered with a problem document; its `Display` is the `detail`.
pub trait IntoProblem: Display {
    /// Status, the slug of the problem type (a heading in docs/api.md), and its title.
    fn classify(&self) -> (StatusCode, &'static str, &'static str);

    /// Why the store could not be reached, when that is known: a `cause` label of
    /// `timestamp_api_redis_reconnection_failures_total`.
    fn cause(&self) -> Option<&'static str> {
        None
    }

    /// The problem document, with the current request's id.
    fn problem_json(&self) -> Vec<u8> {
        let (status, slug, title) = self.classify();
        let document = Problem {
            kind: format!("{PROBLEM_DOCS}{slug}"),
            title,
            status: status.as_u16(),
            detail: self.to_string(),
            cause: self.cause(),
            request_id: crate::telemetry::current_request_id(),
        };
        // A struct of strings and an integer always serialises.
        serde_json::to_vec(&document).unwrap_or_default()
    }

    /// The response: the status, the document and its content type; a 503 also says when to
    /// retry.
    fn problem_response(&self) -> Response {
        let status = self.classify().0;
        let mut response = Response::new(self.problem_json().into());
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
        );
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
        }
        response
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
    /// With a 503 `unavailable` while the service cannot connect to Redis: the class of
    /// failure (`tls_unknown_ca`, `refused`, …; docs/operations.md lists them).
    #[serde(skip_serializing_if = "Option::is_none")]
    cause: Option<&'static str>,
    /// The request's id (also in the `X-Request-Id` header): quote it when reporting a problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Status, body and headers of a problem response.
    pub(crate) fn body_of(
        response: Response,
    ) -> (StatusCode, serde_json::Value, warp::http::HeaderMap) {
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

    /// Checks that each error gives its status and a complete document linking to `slug`.
    pub(crate) fn assert_problems<E: IntoProblem>(
        cases: Vec<(E, u16, &str)>,
        respond: impl Fn(E) -> Response,
    ) {
        for (error, status, slug) in cases {
            let detail = error.to_string();
            let (code, body, headers) = body_of(respond(error));
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
}
