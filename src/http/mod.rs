//! The HTTP layer both listeners share: every request goes through `Observed` (request id,
//! span, access log, metrics, refusals before routing), and each listener's warp routes are
//! built from the pieces in `routing` (exact paths, GET/HEAD-only routes, 405 with `Allow`, the
//! 404 fallback, route-template tags). `api` and `admin` use it; neither uses the other.

mod observed;
mod routing;

pub use observed::{AccessLog, Observed};
pub use routing::{Methods, Route, fallback, get_route, json_response, respond, segment};
