//! The parts of the OpenAPI document that state a bound the code enforces: the name's pattern
//! and length, the range of `epoch_ms`, the page size, and the error responses several
//! operations share. utoipa's attributes take only literals for patterns and bounds, so these
//! are built here from the constants the code checks against, and cannot drift from them.

use std::collections::BTreeMap;

use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{KnownFormat, SchemaFormat, Type};
use utoipa::openapi::{
    Components, Content, HeaderBuilder, Object, ObjectBuilder, Ref, RefOr, Required, Response,
    ResponseBuilder,
};
use utoipa::{IntoParams, IntoResponses};

use super::bounds::{DEFAULT_LIMIT, MAX_LIMIT};
use crate::domain::{NAME_MAX_LEN, NAME_PATTERN, TIMESTAMP_PATTERN, Timestamp};
use crate::http::limits::MAX_REQUEST_TARGET_BYTES;
use crate::http::{PROBLEM_CONTENT_TYPE, Problem};

pub fn name() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(format!(
            "1 to {NAME_MAX_LEN} characters of `[A-Za-z0-9._-]`, starting with a letter or digit."
        )))
        .pattern(Some(NAME_PATTERN))
        .min_length(Some(1))
        .max_length(Some(NAME_MAX_LEN))
        .build()
}

pub fn timestamp() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .description(Some(
            "RFC 3339 with any offset; normalised to UTC, truncated to milliseconds. The \
             pattern states the range: a local date from 1970-01-01 to 9999-12-31, and on \
             those two dates an offset that keeps the instant inside it (Z or a negative offset \
             on the first, Z or a positive one on the last); no leap second.",
        ))
        .pattern(Some(TIMESTAMP_PATTERN))
        .build()
}

pub fn epoch_ms() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .description(Some("Milliseconds since the Unix epoch."))
        .minimum(Some(Timestamp::MIN_EPOCH_MS))
        .maximum(Some(Timestamp::MAX_EPOCH_MS))
        .build()
}

/// The `{name}` path parameter.
pub enum NameParam {}

impl IntoParams for NameParam {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let mut schema = name();
        vec![
            ParameterBuilder::new()
                .name("name")
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(schema.description.take())
                .schema(Some(schema))
                .build(),
        ]
    }
}

/// The query parameters of a listing.
pub enum ListParams {}

impl IntoParams for ListParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let query = |name, description: String, schema: Object| {
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(description))
                .schema(Some(schema))
                .build()
        };
        let limit = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
            .minimum(Some(1))
            .maximum(Some(MAX_LIMIT))
            .build();
        vec![
            query(
                "limit",
                format!("Largest page wanted; default {DEFAULT_LIMIT}."),
                limit,
            ),
            query(
                "cursor",
                "`next_cursor` of the previous page, as is. Leave it out for the first page: an \
                 empty cursor is refused, so that a client that turns the last page's `null` \
                 into an empty string gets an error instead of the first page again."
                    .to_owned(),
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .build(),
            ),
        ]
    }
}

/// A response whose body is a problem document.
fn problem_response(description: impl Into<String>) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        PROBLEM_CONTENT_TYPE,
        Content::new(Some(Ref::from_schema_name(
            <Problem as utoipa::ToSchema>::name(),
        ))),
    )
}

/// The error responses several operations share: each is written once, under
/// `components.responses`, and the operations refer to it.
#[derive(Clone, Copy)]
enum Shared {
    InvalidName,
    NotFound,
    Unavailable,
    /// A write's 503: Redis did not answer or refused it, or too few replicas acknowledged it.
    WriteUnavailable,
    /// Any request's 414 (a path or query can be made that long whatever the operation).
    UriTooLong,
}

impl Shared {
    const ALL: [Self; 5] = [
        Self::InvalidName,
        Self::NotFound,
        Self::Unavailable,
        Self::WriteUnavailable,
        Self::UriTooLong,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::InvalidName => "InvalidName",
            Self::NotFound => "NotFound",
            Self::Unavailable => "Unavailable",
            Self::WriteUnavailable => "WriteUnavailable",
            Self::UriTooLong => "UriTooLong",
        }
    }

    fn status(self) -> &'static str {
        match self {
            Self::InvalidName => "400",
            Self::NotFound => "404",
            Self::UriTooLong => "414",
            Self::Unavailable | Self::WriteUnavailable => "503",
        }
    }

    fn response(self) -> Response {
        let retry_after = || {
            let seconds = ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
                .minimum(Some(0));
            HeaderBuilder::new()
                .schema(seconds)
                .description(Some("Seconds to wait before retrying."))
                .build()
        };
        match self {
            Self::InvalidName => problem_response("The name is not valid (`invalid-name`)."),
            Self::NotFound => problem_response("No timestamp has this name (`not-found`)."),
            Self::UriTooLong => problem_response(format!(
                "The request target is longer than {MAX_REQUEST_TARGET_BYTES} bytes \
                 (`uri-too-long`)."
            )),
            Self::Unavailable => problem_response(
                "Redis did not answer in time (`unavailable`) or refused the command \
                 (`store-refused`); a listing may also find no room in the service's memory \
                 budget for pages (`busy`).",
            )
            .header("Retry-After", retry_after()),
            Self::WriteUnavailable => problem_response(
                "Redis did not answer in time (`unavailable`: the outcome is unknown), refused \
                 the write (`store-refused`: not applied), or the write was applied but reached \
                 fewer replicas than `redis.min_replica_acks` in time (`not-replicated`).",
            )
            .header("Retry-After", retry_after()),
        }
        .build()
    }

    fn references(shared: &[Self]) -> BTreeMap<String, RefOr<Response>> {
        shared
            .iter()
            .map(|shared| {
                let reference = Ref::from_response_name(shared.name());
                (shared.status().to_owned(), reference.into())
            })
            .collect()
    }
}

/// Adds the shared responses to the document's components.
pub fn add_shared_responses(components: &mut Components) {
    for shared in Shared::ALL {
        let response = shared.response().into();
        components
            .responses
            .insert(shared.name().to_owned(), response);
    }
}

/// How reading one timestamp fails: a bad name (400), no such timestamp (404), or Redis down
/// or slow (503).
pub enum ItemErrors {}

impl IntoResponses for ItemErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        Shared::references(&[
            Shared::InvalidName,
            Shared::NotFound,
            Shared::UriTooLong,
            Shared::Unavailable,
        ])
    }
}

/// How removing one timestamp fails: as reading it, but a write's 503 (see `WriteErrors`).
pub enum ItemWriteErrors {}

impl IntoResponses for ItemWriteErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        Shared::references(&[
            Shared::InvalidName,
            Shared::NotFound,
            Shared::UriTooLong,
            Shared::WriteUnavailable,
        ])
    }
}

/// The failure every read shares: Redis down or slow (503, with `Retry-After`).
pub enum StoreErrors {}

impl IntoResponses for StoreErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        Shared::references(&[Shared::UriTooLong, Shared::Unavailable])
    }
}

/// The failure every write shares: Redis down or slow, or the write not replicated in time
/// (503, with `Retry-After`).
pub enum WriteErrors {}

impl IntoResponses for WriteErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        Shared::references(&[Shared::UriTooLong, Shared::WriteUnavailable])
    }
}
