//! The public HTTP API: `/v1/timestamps` and `/openapi.json`, routed with warp filters.
//!
//! Each path is one group of branches: its methods, then a 405 branch with `Allow`, tagged with
//! the path's route template (metrics and the access log use it, never the raw path). A final
//! catch-all answers 404.

pub mod openapi;
mod problem;
#[cfg(test)]
mod routing_tests;
mod set_request;
mod timestamps;

use std::convert::Infallible;

use bytes::Bytes;
use warp::Filter;
use warp::http::{HeaderValue, header};
use warp::reply::Response;

pub use problem::{
    ApiError, MAX_REQUEST_HEAD_BYTES, MAX_REQUEST_HEADERS, PROBLEM_CONTENT_TYPE,
    RETRY_AFTER_SECONDS,
};

pub use set_request::BODY_READ_TIMEOUT;

use crate::cursor::CursorKey;
use crate::http::{
    Route, exact, fallback, get_or_head, get_route, method_not_allowed, respond, segment_after,
};
use crate::store::Store;

pub const ITEM_ROUTE: Route = Route("/v1/timestamps/{name}");
pub const COLLECTION_ROUTE: Route = Route("/v1/timestamps");
pub const OPENAPI_ROUTE: Route = Route("/openapi.json");

/// Every route of the API listener.
pub fn routes(
    store: Store,
    cursor_key: CursorKey,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let cursor_key = warp::any().map(move || cursor_key.clone());
    let store = warp::any().map(move || store.clone());
    let item = segment_after("/v1/timestamps/");

    // The method first: it is the cheaper test, so the path is matched once per request.
    let get_one = get_or_head()
        .and(item.clone())
        .and(store.clone())
        .then(timestamps::get_one)
        .map(respond);
    let put_one = warp::put()
        .and(item.clone())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .and(store.clone())
        .then(timestamps::put_one)
        .map(respond);
    let delete_one = warp::delete()
        .and(item.clone())
        .and(store.clone())
        .then(timestamps::delete_one)
        .map(respond);
    let other_method = item
        .and(method_not_allowed("GET, HEAD, PUT, DELETE"))
        .map(|_name: String, response| response);
    let item_routes = get_one
        .or(put_one)
        .unify()
        .or(delete_one)
        .unify()
        .or(other_method)
        .unify()
        .map(move |response| ITEM_ROUTE.tag(response));

    let list = get_route(
        exact("/v1/timestamps"),
        COLLECTION_ROUTE,
        optional_raw_query()
            .and(store)
            .and(cursor_key)
            .then(timestamps::list)
            .map(respond),
    );

    let document = Bytes::from(openapi::document());
    let openapi = get_route(
        exact("/openapi.json"),
        OPENAPI_ROUTE,
        warp::any().map(move || {
            let mut response = Response::new(document.clone().into());
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }),
    );

    item_routes
        .or(list)
        .unify()
        .or(openapi)
        .unify()
        .or(fallback())
        .unify()
}

/// The query string, or an empty one; warp's own `query::raw` rejects a request without one.
fn optional_raw_query() -> impl Filter<Extract = (String,), Error = Infallible> + Clone {
    warp::query::raw().or(warp::any().map(String::new)).unify()
}
