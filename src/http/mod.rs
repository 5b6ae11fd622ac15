//! The HTTP layer both listeners share: every request goes through `Observed` (request id,
//! span, access log, metrics, refusals before routing), and each listener's warp routes are
//! built from the pieces in `routing` (exact paths, GET/HEAD-only routes, 405 with `Allow`, the
//! 404 fallback, route-template tags). Its own refusals are `HttpError`s, and every error of
//! any layer is answered as a problem document made in `problem`. `api` and `admin` use it;
//! it uses neither, and neither uses the other.

mod error;
pub mod limits;
mod observed;
mod problem;
mod routing;

pub use error::HttpError;
pub use observed::{AccessLog, Observed};
#[cfg(test)]
pub(crate) use problem::tests as problem_tests;
pub use problem::{IntoProblem, PROBLEM_CONTENT_TYPE, Problem, RETRY_AFTER_SECONDS};
pub use routing::{Methods, Route, fallback, get_route, json_response, segment};
