//! The API's route templates: the paths it serves, as the router matches them, the OpenAPI
//! document names them and the metrics label them.

use crate::http::Route;

pub const ITEM_ROUTE: Route = Route("/v1/timestamps/{name}");
pub const COLLECTION_ROUTE: Route = Route("/v1/timestamps");
pub const OPENAPI_ROUTE: Route = Route("/openapi.json");
