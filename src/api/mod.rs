//! The public HTTP API: `/v1/timestamps` and `/openapi.json`, routed with warp filters.
//!
//! Each path is one group of branches: its methods, then a 405 branch with `Allow`, tagged with
//! the path's route template (metrics and the access log use it, never the raw path). A final
//! catch-all answers 404.

mod bounds;
mod budget;
pub mod openapi;
mod problem;
#[cfg(test)]
mod routing_tests;
mod schema;
mod set_request;
mod timestamps;

use std::convert::Infallible;

use bytes::Bytes;
use warp::Filter;
use warp::http::{HeaderValue, header};
use warp::reply::Response;

pub use bounds::{BODY_READ_TIMEOUT, MAX_LIMIT, room_for};
pub use budget::ResponseBudget;
pub use openapi::OPENAPI_ROUTE;
pub use problem::ApiError;
pub use timestamps::{COLLECTION_ROUTE, ITEM_ROUTE};

use crate::cursor::CursorKey;
use crate::http::{Methods, fallback, get_route, segment};
use crate::store::Store;

/// Every route of the API listener.
pub fn routes(
    store: Store,
    cursor_key: CursorKey,
    budget: ResponseBudget,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let cursor_key = warp::any().map(move || cursor_key.clone());
    let budget = warp::any().map(move || budget.clone());
    let store = warp::any().map(move || store.clone());
    let item = segment(ITEM_ROUTE);

    let item_routes = Methods::get(
        item.clone()
            .and(store.clone())
            .then(timestamps::get_one)
            .map(respond),
    )
    .put(
        item.clone()
            .and(set_request::body_headers())
            .and(warp::body::stream())
            .and(store.clone())
            .then(timestamps::put_one)
            .map(respond),
    )
    .delete(
        item.clone()
            .and(store.clone())
            .then(timestamps::delete_one)
            .map(respond),
    )
    .or_not_allowed(ITEM_ROUTE, item.map(drop).untuple_one());

    let list = get_route(
        COLLECTION_ROUTE,
        optional_raw_query()
            .and(store)
            .and(cursor_key)
            .and(budget)
            .then(timestamps::list)
            .map(respond),
    );

    let document = Bytes::from(openapi::document());
    let openapi = get_route(
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

/// Turns a handler's result into a response: errors become problem documents.
fn respond(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(ApiError::into_response)
}
