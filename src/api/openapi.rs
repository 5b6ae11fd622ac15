//! The OpenAPI 3.1 document of the API listener, generated from the handlers' `utoipa::path`
//! attributes and the request and response types. Served at `/openapi.json`; a copy is committed
//! at docs/openapi.json (regenerate with `make openapi`), and a test fails when they differ.

use utoipa::OpenApi;
use utoipa::openapi::path::{HttpMethod, OperationBuilder};
use utoipa::openapi::{Content, Object, RefOr, Required, ResponseBuilder, Schema};

use super::schema::add_shared_responses;
use super::timestamps::{self, ITEM_ROUTE};
use crate::http::{Problem, Route};

pub const OPENAPI_ROUTE: Route = Route("/openapi.json");

#[derive(OpenApi)]
#[openapi(
    info(
        title = "timestamp-api",
        description = "Gets, sets and resets named timestamps stored in Redis. Errors are RFC 9457 \
                       problem documents (`application/problem+json`); see docs/api.md.",
        license(name = "MIT", identifier = "MIT"),
    ),
    components(schemas(Problem)),
    tags((name = "timestamps", description = "Named timestamps")),
)]
struct ApiDoc;

/// The document as pretty-printed JSON with a trailing newline, as committed.
pub fn document() -> String {
    let mut doc = ApiDoc::openapi().merge_from(timestamps::Paths::openapi());
    add_shared_responses(doc.components.get_or_insert_default());
    // The document's own route has no handler function to carry an attribute.
    let own_route = OperationBuilder::new()
        .tag("meta")
        .summary(Some("This document"))
        .response(
            "200",
            ResponseBuilder::new()
                .description("The OpenAPI 3.1 document of this API.")
                .content("application/json", Content::new(Some(Object::new()))),
        );
    doc.paths
        .add_path_operation(OPENAPI_ROUTE.0, vec![HttpMethod::Get], own_route);
    // A PUT without a body is valid (it means now); utoipa has no attribute for an optional
    // body that is not also nullable.
    if let Some(body) = doc
        .paths
        .paths
        .get_mut(ITEM_ROUTE.0)
        .and_then(|item| item.put.as_mut())
        .and_then(|put| put.request_body.as_mut())
    {
        body.required = Some(Required::False);
    }
    // "Exactly one of the two fields", as the schema can say it: with no other properties
    // allowed, one property at least and at most. Set here because utoipa 5.5's derive writes
    // a `min_properties` attribute into `maxProperties`.
    if let Some(RefOr::T(Schema::Object(set_request))) = doc
        .components
        .as_mut()
        .and_then(|components| components.schemas.get_mut("SetRequest"))
    {
        set_request.min_properties = Some(1);
        set_request.max_properties = Some(1);
    }
    // Serialising the generated document cannot fail: it is built from plain data types.
    let mut text = doc.to_pretty_json().unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_committed_copy_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == super::document(),
            "docs/openapi.json is not what the code generates; regenerate it with `make openapi`"
        );
    }
}
