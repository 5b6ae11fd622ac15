//! Routing pieces shared by the API and admin listeners: exact path matching, method dispatch
//! with 405 + `Allow`, the 404 catch-all, route-template tagging and JSON responses.
//!
//! Handlers never reject: every outcome, error or not, is a response, so warp's `or` only falls
//! through to the next branch when the path or the method did not match.
//!
//! Paths are matched exactly, byte for byte: warp's `path!` also accepts a trailing slash
//! (`/v1/timestamps/deploy/` would be `deploy`), which would give one resource two URLs.

use std::convert::Infallible;

use serde::Serialize;
use warp::http::{Method, StatusCode};
use warp::path::FullPath;
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

use crate::api::ApiError;

/// The route template a response was produced by, for metric labels and the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route(pub &'static str);

impl Route {
    /// Requests that matched no route.
    pub const UNMATCHED: Self = Self("unmatched");

    pub fn of(response: &Response) -> Self {
        response
            .extensions()
            .get::<Self>()
            .copied()
            .unwrap_or(Self::UNMATCHED)
    }

    /// Labels a response with this route.
    pub fn tag(self, mut response: Response) -> Response {
        response.extensions_mut().insert(self);
        response
    }
}

/// Matches exactly `path`.
pub fn exact(path: &'static str) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::path::full()
        .and_then(move |full: FullPath| async move {
            if full.as_str() == path {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one()
}

/// Matches `<prefix><segment>` where the segment holds no `/` (it may be empty: an empty name
/// is a bad request, not another route), and extracts the segment as sent.
pub fn segment_after(
    prefix: &'static str,
) -> impl Filter<Extract = (String,), Error = Rejection> + Clone {
    warp::path::full().and_then(move |full: FullPath| async move {
        match full.as_str().strip_prefix(prefix) {
            Some(segment) if !segment.contains('/') => Ok(segment.to_owned()),
            _ => Err(warp::reject::not_found()),
        }
    })
}

/// `GET` or `HEAD` (hyper leaves the body out of a HEAD answer).
pub fn get_or_head() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::get().or(warp::head()).unify()
}

/// Answers any method with 405 and the `Allow` header; the last branch of a path.
pub fn method_not_allowed(
    allow: &'static str,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    warp::method().map(move |method: Method| {
        ApiError::MethodNotAllowed {
            method: method.to_string(),
            allow,
        }
        .into_response()
    })
}

/// A path served by `handler` for GET and HEAD, 405 for anything else, tagged with `route`.
pub fn get_route<P, H>(
    path: P,
    route: Route,
    handler: H,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone
where
    P: Filter<Extract = (), Error = Rejection> + Clone + Send + Sync + 'static,
    H: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    path.and(
        get_or_head()
            .and(handler)
            .or(method_not_allowed("GET, HEAD"))
            .unify(),
    )
    .map(move |response| route.tag(response))
}

/// The last branch of a listener: 404 for every path no route matched.
pub fn fallback() -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    warp::path::full().map(|path: FullPath| {
        // The path is echoed to help the caller, but bounded: it is theirs, not ours.
        Route::UNMATCHED
            .tag(ApiError::NoRoute(path.as_str().chars().take(256).collect()).into_response())
    })
}

pub fn json_response<T: Serialize>(value: &T, status: StatusCode) -> Response {
    warp::reply::with_status(warp::reply::json(value), status).into_response()
}

/// Turns a handler's result into a response: errors become problem documents.
pub fn respond(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(ApiError::into_response)
}
