//! Handlers of the `/v1/timestamps` resource. Each turns raw request parts into domain values,
//! asks the store, and shapes the JSON answer; every failure is an `ApiError`, which
//! `problem.rs` turns into a response.
//!
//! The `utoipa::path` attributes on the handlers, and the `ToSchema` types here, are where the
//! OpenAPI document (`/openapi.json`, docs/openapi.json) comes from.

use bytes::Buf;
use futures_util::Stream;
use serde::Serialize;
use utoipa::ToSchema;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::{Reply, Response};

use super::bounds::{BODY_LIMIT, BODY_READ_TIMEOUT, DEFAULT_LIMIT, MAX_LIMIT};
use super::budget::ResponseBudget;
use super::problem::ApiError;
use super::schema::{
    self, ItemErrors, ItemWriteErrors, ListParams, NameParam, StoreErrors, WriteErrors,
};
use super::set_request::{BodyHeaders, SetRequest, requested_timestamp};
use crate::cursor::{Cursor, CursorKey};
use crate::domain::{Name, Timestamp};
use crate::http::json_response;
use crate::http::{PROBLEM_CONTENT_TYPE, Problem, Route};
use crate::store::{SetOutcome, Store};

pub const ITEM_ROUTE: Route = Route("/v1/timestamps/{name}");
pub const COLLECTION_ROUTE: Route = Route("/v1/timestamps");

/// The OpenAPI paths and schemas of these handlers, merged into the document by `openapi`: a
/// handler added here is documented here.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(put_one, get_one, delete_one, list),
    components(schemas(TimestampView, SetRequest, ListView))
)]
pub struct Paths;

/// A stored timestamp, as every endpoint shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({"name": "deploy", "timestamp": "2026-11-25T17:36:23.123Z", "epoch_ms": 1_795_628_183_123_i64}))]
pub struct TimestampView {
    #[schema(schema_with = schema::name)]
    pub name: String,
    /// RFC 3339 in UTC with exactly three fractional digits and a `Z`.
    #[schema(format = DateTime)]
    pub timestamp: String,
    /// The same instant.
    #[schema(schema_with = schema::epoch_ms)]
    pub epoch_ms: i64,
}

impl TimestampView {
    pub fn new(name: &Name, timestamp: Timestamp) -> Self {
        Self {
            name: name.as_str().to_owned(),
            timestamp: timestamp.to_rfc3339(),
            epoch_ms: timestamp.epoch_ms(),
        }
    }
}

/// One page of a listing.
#[derive(Serialize, ToSchema)]
pub struct ListView {
    /// At most `limit` values, in no particular order.
    items: Vec<TimestampView>,
    /// Pass as `cursor` to get the next page; `null` once every name has been visited.
    next_cursor: Option<String>,
}

/// Get one timestamp.
#[utoipa::path(
    get, path = ITEM_ROUTE.0, params(NameParam), tag = "timestamps",
    responses(
        (status = 200, description = "The stored value.", body = TimestampView),
        ItemErrors,
    )
)]
pub async fn get_one(raw_name: String, store: Store) -> Result<Response, ApiError> {
    let name = Name::parse(&raw_name)?;
    let timestamp = store
        .get(&name)
        .await?
        .ok_or(ApiError::NotFound(raw_name))?;
    Ok(json_response(
        &TimestampView::new(&name, timestamp),
        StatusCode::OK,
    ))
}

/// Set a timestamp: to now without a body, or to the instant the JSON body gives.
#[utoipa::path(
    put, path = ITEM_ROUTE.0, params(NameParam), tag = "timestamps",
    request_body(
        content = SetRequest,
        content_type = "application/json",
        description = format!("Optional, at most {BODY_LIMIT} bytes. No body (or an empty one) means now, on the server's clock."),
    ),
    responses(
        (status = 201, description = "The name did not exist; the stored value.", body = TimestampView,
            headers(("Location" = String, description = "The path of the created timestamp."))),
        (status = 200, description = "A value was replaced; the stored value.", body = TimestampView),
        (status = 400, description = "Bad name, JSON, field or range (`invalid-name`, `invalid-json`, `invalid-field`, `out-of-range`).", body = Problem, content_type = PROBLEM_CONTENT_TYPE),
        (status = 408, description = format!("The announced body did not arrive within {} s (`request-timeout`).", BODY_READ_TIMEOUT.as_secs()), body = Problem, content_type = PROBLEM_CONTENT_TYPE),
        (status = 411, description = "The body is chunked (`length-required`).", body = Problem, content_type = PROBLEM_CONTENT_TYPE),
        (status = 413, description = format!("The body is over {BODY_LIMIT} bytes (`payload-too-large`)."), body = Problem, content_type = PROBLEM_CONTENT_TYPE),
        (status = 415, description = "The body is not `application/json` (`unsupported-media-type`).", body = Problem, content_type = PROBLEM_CONTENT_TYPE),
        WriteErrors,
    )
)]
pub async fn put_one<S, B>(
    raw_name: String,
    headers: BodyHeaders,
    body: S,
    store: Store,
) -> Result<Response, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let name = Name::parse(&raw_name)?;
    let timestamp = requested_timestamp(headers, body).await?;
    let view = TimestampView::new(&name, timestamp);
    Ok(match store.set(&name, timestamp).await? {
        SetOutcome::Replaced => json_response(&view, StatusCode::OK),
        SetOutcome::Created => {
            let mut response = json_response(&view, StatusCode::CREATED);
            // Names are drawn from an alphabet that is valid in a header and a path as is.
            if let Ok(location) = HeaderValue::from_str(&format!("{}{name}", ITEM_ROUTE.prefix())) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
    })
}

/// Reset a timestamp: remove it. (To reset it to now, PUT without a body.)
#[utoipa::path(
    delete, path = ITEM_ROUTE.0, params(NameParam), tag = "timestamps",
    responses(
        (status = 204, description = "The value was removed."),
        ItemWriteErrors,
    )
)]
pub async fn delete_one(raw_name: String, store: Store) -> Result<Response, ApiError> {
    let name = Name::parse(&raw_name)?;
    if !store.delete(&name).await? {
        return Err(ApiError::NotFound(raw_name));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// List timestamps, a page at a time (Redis SCAN underneath).
#[utoipa::path(
    get, path = COLLECTION_ROUTE.0, params(ListParams), tag = "timestamps",
    responses(
        (status = 200, description = "One page; follow `next_cursor` until it is `null`.", body = ListView),
        (status = 400, description = "Bad `limit` or `cursor`, or an unknown parameter (`invalid-query`).", body = Problem, content_type = PROBLEM_CONTENT_TYPE),
        StoreErrors,
    )
)]
pub async fn list(
    raw_query: String,
    store: Store,
    cursor_key: CursorKey,
    budget: ResponseBudget,
) -> Result<Response, ApiError> {
    let (limit, cursor) = parse_list_query(&raw_query, &cursor_key)?;
    let reservation = budget.reserve(limit).await?;
    let page = store.list(limit, cursor).await?;
    let view = ListView {
        items: page
            .items
            .iter()
            .map(|(name, timestamp)| TimestampView::new(name, *timestamp))
            .collect(),
        next_cursor: page.next.as_ref().map(|next| cursor_key.encode(next)),
    };
    drop(page);
    // A struct of strings and integers always serialises.
    let body = serde_json::to_vec(&view).unwrap_or_default();
    drop(view);
    let mut response = Response::new(reservation.hold(body).into());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

fn parse_list_query(raw: &str, cursor_key: &CursorKey) -> Result<(usize, Cursor), ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw)
        .map_err(|error| ApiError::InvalidQuery(error.to_string()))?;
    let (mut limit, mut cursor) = (None, None);
    for (key, value) in pairs {
        match key.as_str() {
            "limit" if limit.is_none() => {
                limit = Some(
                    value
                        .parse::<usize>()
                        .ok()
                        .filter(|limit| (1..=MAX_LIMIT).contains(limit))
                        .ok_or_else(|| {
                            ApiError::InvalidQuery(format!(
                                "limit must be an integer from 1 to {MAX_LIMIT}"
                            ))
                        })?,
                );
            }
            "cursor" if cursor.is_none() => {
                cursor = Some(
                    cursor_key
                        .decode(&value)
                        .map_err(|error| ApiError::InvalidQuery(format!("cursor: {error}")))?,
                );
            }
            "limit" | "cursor" => {
                return Err(ApiError::InvalidQuery(format!(
                    "{key} is given more than once"
                )));
            }
            _ => {
                return Err(ApiError::InvalidQuery(format!(
                    "unknown query parameter `{key}`"
                )));
            }
        }
    }
    Ok((
        limit.unwrap_or(DEFAULT_LIMIT),
        cursor.unwrap_or_else(Cursor::start),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_queries_are_checked() {
        let key = CursorKey::new(None).unwrap();
        let parse_list_query = |raw| parse_list_query(raw, &key);
        assert_eq!(parse_list_query("").unwrap().0, DEFAULT_LIMIT);
        assert_eq!(parse_list_query("limit=1000").unwrap().0, 1000);
        for bad in [
            "limit=0",
            "limit=1001",
            "limit=x",
            "limit=",
            "limit=1&limit=2",
            "cursor=",
            "cursor=zz",
            "page=2",
        ] {
            assert!(
                matches!(parse_list_query(bad), Err(ApiError::InvalidQuery(_))),
                "{bad}"
            );
        }
    }
}
