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

use super::HttpError;

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

impl Route {
    /// The part of the template before its first `{parameter}` (all of it if it has none).
    pub const fn prefix(self) -> &'static str {
        let bytes = self.0.as_bytes();
        let mut end = 0;
        while end < bytes.len() && bytes[end] != b'{' {
            end += 1;
        }
        self.0.split_at(end).0
    }
}

/// Matches exactly the route's path (a template without parameters).
pub fn exact(route: Route) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::path::full()
        .and_then(move |full: FullPath| async move {
            if full.as_str() == route.0 {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one()
}

/// Matches a route `<prefix>{parameter}` where the segment holds no `/` (it may be empty: an
/// empty name is a bad request, not another route), and extracts the segment as sent.
pub fn segment(route: Route) -> impl Filter<Extract = (String,), Error = Rejection> + Clone {
    let prefix = route.prefix();
    warp::path::full().and_then(move |full: FullPath| async move {
        match full.as_str().strip_prefix(prefix) {
            Some(segment) if !segment.contains('/') => Ok(segment.to_owned()),
            _ => Err(warp::reject::not_found()),
        }
    })
}

/// A route's answer to a request it matched.
pub trait Branch:
    Filter<Extract = (Response,), Error = Rejection> + Clone + Send + Sync + 'static
{
}

impl<F> Branch for F where
    F: Filter<Extract = (Response,), Error = Rejection> + Clone + Send + Sync + 'static
{
}

/// The methods one path answers, each a branch that also matches the path; built with
/// `Methods::get` and `put`/`delete`, finished by `or_not_allowed`. The `Allow` header of the
/// 405 lists exactly the methods added, so it cannot drift from the branches.
pub struct Methods<F> {
    allow: Vec<&'static str>,
    branches: F,
}

impl Methods<()> {
    /// `GET` and `HEAD` (hyper leaves the body out of a HEAD answer).
    pub fn get(handler: impl Branch) -> Methods<impl Branch> {
        // The method first: it is the cheaper test, so the path is matched once per request.
        Methods {
            allow: vec!["GET", "HEAD"],
            branches: warp::get().or(warp::head()).unify().and(handler),
        }
    }
}

impl<F: Branch> Methods<F> {
    pub fn put(self, handler: impl Branch) -> Methods<impl Branch> {
        self.or("PUT", warp::put().and(handler))
    }

    pub fn delete(self, handler: impl Branch) -> Methods<impl Branch> {
        self.or("DELETE", warp::delete().and(handler))
    }

    fn or(mut self, method: &'static str, branch: impl Branch) -> Methods<impl Branch> {
        self.allow.push(method);
        Methods {
            allow: self.allow,
            branches: self.branches.or(branch).unify(),
        }
    }

    /// The finished route: the methods, then 405 + `Allow` for any other method on `path`,
    /// every answer tagged with `route`.
    pub fn or_not_allowed<P>(self, route: Route, path: P) -> impl Branch
    where
        P: Filter<Extract = (), Error = Rejection> + Clone + Send + Sync + 'static,
    {
        let allow = self.allow.join(", ");
        let not_allowed = path.and(warp::method()).map(move |method: Method| {
            HttpError::MethodNotAllowed {
                method: method.to_string(),
                allow: allow.clone(),
            }
            .into_response()
        });
        self.branches
            .or(not_allowed)
            .unify()
            .map(move |response| route.tag(response))
    }
}

/// A path without parameters that `handler` serves for GET and HEAD; 405 for anything else.
pub fn get_route<H>(route: Route, handler: H) -> impl Branch
where
    H: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    Methods::get(exact(route).and(handler)).or_not_allowed(route, exact(route))
}

/// The last branch of a listener: 404 for every path no route matched.
pub fn fallback() -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    warp::path::full().map(|path: FullPath| {
        // The path is echoed to help the caller, but bounded: it is theirs, not ours.
        Route::UNMATCHED
            .tag(HttpError::NoRoute(path.as_str().chars().take(256).collect()).into_response())
    })
}

pub fn json_response<T: Serialize>(value: &T, status: StatusCode) -> Response {
    warp::reply::with_status(warp::reply::json(value), status).into_response()
}
