//! The public HTTP API: routing of `/v1/timestamps` with warp filters.
//!
//! Handlers never reject: every outcome, error or not, is a response, so that warp's `or`
//! only falls through to the next route when the path or the method did not match. The last
//! branch of each path answers 405 with an `Allow` header, and a final catch-all answers 404.

mod problem;
mod timestamps;

use std::convert::Infallible;

use warp::Filter;
use warp::http::Method;
use warp::path::FullPath;
use warp::reply::Response;

pub use problem::{ApiError, BODY_LIMIT, PROBLEM_CONTENT_TYPE};
pub use timestamps::{DEFAULT_LIMIT, MAX_LIMIT};

use crate::store::Store;

const ITEM_METHODS: &str = "GET, HEAD, PUT, DELETE";
const COLLECTION_METHODS: &str = "GET, HEAD";

/// Every route of the API listener.
pub fn routes(store: Store) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let store = warp::any().map(move || store.clone());
    let item = warp::path!("v1" / "timestamps" / String);
    let collection = warp::path!("v1" / "timestamps");
    let get_or_head = warp::get().or(warp::head()).unify();

    let get_one = item
        .and(get_or_head)
        .and(store.clone())
        .then(timestamps::get_one)
        .map(finish);
    let put_one = item
        .and(warp::put())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .and(store.clone())
        .then(timestamps::put_one)
        .map(finish);
    let delete_one = item
        .and(warp::delete())
        .and(store.clone())
        .then(timestamps::delete_one)
        .map(finish);
    let list = collection
        .and(get_or_head)
        .and(optional_raw_query())
        .and(store)
        .then(timestamps::list)
        .map(finish);
    let no_route = warp::path::full().map(|path: FullPath| {
        // The path is echoed to help the caller, but bounded: it is theirs, not ours.
        ApiError::NoRoute(path.as_str().chars().take(256).collect()).into_response()
    });

    get_one
        .or(put_one)
        .unify()
        .or(delete_one)
        .unify()
        .or(item
            .and(method_not_allowed(ITEM_METHODS))
            .map(|_name: String, response| response))
        .unify()
        .or(list)
        .unify()
        .or(collection.and(method_not_allowed(COLLECTION_METHODS)))
        .unify()
        .or(no_route)
        .unify()
}

fn finish(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(ApiError::into_response)
}

fn method_not_allowed(
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

/// The query string, or an empty one; warp's own `query::raw` rejects a request without one.
fn optional_raw_query() -> impl Filter<Extract = (String,), Error = Infallible> + Clone {
    warp::query::raw().or(warp::any().map(String::new)).unify()
}
