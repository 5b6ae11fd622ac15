//! Handlers of the `/v1/timestamps` resource. Each turns raw request parts into domain values,
//! asks the store, and shapes the JSON answer; every failure is an `ApiError`, which
//! `problem.rs` turns into a response.
//!
//! The `utoipa::path` attributes on the handlers, and the `ToSchema` types here, are where the
//! OpenAPI document (`/openapi.json`, docs/openapi.json) comes from.

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;
use warp::http::{HeaderMap, HeaderValue, StatusCode, header};
use warp::reply::{Reply, Response};

use super::problem::{ApiError, BODY_LIMIT, Problem};
use super::routing::json_response;
use crate::cursor::{Cursor, CursorKey};
use crate::domain::{Name, Timestamp};
use crate::store::{SetOutcome, Store};

pub const DEFAULT_LIMIT: usize = 100;
/// How long a request body (at most 1 KiB) may take to arrive after the headers.
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
pub const MAX_LIMIT: usize = 1000;

/// A stored timestamp, as every endpoint shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({"name": "deploy", "timestamp": "2026-11-25T17:36:23.123Z", "epoch_ms": 1_795_628_183_123_i64}))]
pub struct TimestampView {
    /// 1 to 128 characters of `[A-Za-z0-9._-]`, starting with a letter or digit.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    pub name: String,
    /// RFC 3339 in UTC with exactly three fractional digits and a `Z`.
    #[schema(format = DateTime)]
    pub timestamp: String,
    /// The same instant in milliseconds since the Unix epoch.
    #[schema(minimum = 0, maximum = 253_402_300_799_999_i64)]
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

/// Body of a PUT: exactly one of the two fields, with a value (`null` is none); unknown fields
/// are refused.
//
// A field given as `null` counts as given, so `{"timestamp": null, "epoch_ms": 5}` gives two
// fields, not one. The fields are kept as raw JSON text, so that each is judged by what the
// client wrote: `-0` is the integer 0, and an integer too large for any number type is out of
// range, not "not an integer".
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"timestamp": "2026-11-25T18:36:23.123+01:00"}))]
pub struct SetRequest {
    /// RFC 3339 with any offset; normalised to UTC, truncated to milliseconds.
    #[schema(value_type = Option<String>, format = DateTime)]
    #[serde(default, deserialize_with = "given")]
    timestamp: Option<Box<RawValue>>,
    /// Milliseconds since the Unix epoch.
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 253_402_300_799_999_i64)]
    #[serde(default, deserialize_with = "given")]
    epoch_ms: Option<Box<RawValue>>,
}

/// A field that is present, whatever it holds (`Option`'s own deserialiser reads `null` as
/// absent).
fn given<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(deserializer).map(Some)
}

impl TryFrom<SetRequest> for Timestamp {
    type Error = ApiError;

    fn try_from(request: SetRequest) -> Result<Self, ApiError> {
        match (request.timestamp, request.epoch_ms) {
            (Some(text), None) => {
                let text: String = serde_json::from_str(text.get()).map_err(|_| {
                    ApiError::InvalidField(format!(
                        "timestamp must be an RFC 3339 string, not {}",
                        text.get()
                    ))
                })?;
                Ok(Self::parse_rfc3339(&text)?)
            }
            (None, Some(number)) => Ok(Self::from_epoch_ms(epoch_ms(number.get())?)?),
            _ => Err(ApiError::InvalidField(
                "give exactly one of `timestamp` and `epoch_ms`".into(),
            )),
        }
    }
}

/// `epoch_ms` as written: an integer literal (JSON allows a leading `-`, so `-0` is 0), else
/// a 400. An integer beyond `i64` is returned as `i64::MIN` or `MAX`, which every range check
/// then refuses as out of range, whatever the number's size.
fn epoch_ms(raw: &str) -> Result<i64, ApiError> {
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::InvalidField(format!(
            "epoch_ms must be an integer, not {raw}"
        )));
    }
    Ok(raw.parse().unwrap_or(if raw.starts_with('-') {
        i64::MIN
    } else {
        i64::MAX
    }))
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
    get,
    path = "/v1/timestamps/{name}",
    tag = "timestamps",
    params(NameParam),
    responses(
        (status = 200, description = "The stored value.", body = TimestampView),
        (status = 400, description = "The name is not valid (`invalid-name`).", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No timestamp has this name (`not-found`).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Redis did not answer in time (`unavailable`).", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying."))),
    )
)]
pub async fn get_one(raw_name: String, store: Store) -> Result<Response, ApiError> {
    let name = Name::parse(&raw_name)?;
    match store.get(&name).await? {
        Some(timestamp) => Ok(json_response(
            &TimestampView::new(&name, timestamp),
            StatusCode::OK,
        )),
        None => Err(ApiError::NotFound(raw_name)),
    }
}

/// Set a timestamp: to now without a body, or to the instant the JSON body gives.
#[utoipa::path(
    put,
    path = "/v1/timestamps/{name}",
    tag = "timestamps",
    params(NameParam),
    request_body(
        content = SetRequest,
        content_type = "application/json",
        description = "Optional, at most 1 KiB. No body (or an empty one) means now, on the server's clock.",
    ),
    responses(
        (status = 201, description = "The name did not exist; the stored value.", body = TimestampView,
            headers(("Location" = String, description = "`/v1/timestamps/{name}`"))),
        (status = 200, description = "A value was replaced; the stored value.", body = TimestampView),
        (status = 400, description = "Bad name, JSON, field or range (`invalid-name`, `invalid-json`, `invalid-field`, `out-of-range`).", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "The announced body did not arrive within 5 s (`request-timeout`).", body = Problem, content_type = "application/problem+json"),
        (status = 411, description = "The body is chunked (`length-required`).", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is over 1 KiB (`payload-too-large`).", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/json` (`unsupported-media-type`).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Redis did not answer in time (`unavailable`).", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying."))),
    )
)]
pub async fn put_one<S, B>(
    raw_name: String,
    headers: HeaderMap,
    body: S,
    store: Store,
) -> Result<Response, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let name = Name::parse(&raw_name)?;
    let timestamp = match read_body(&headers, body).await? {
        None => Timestamp::now(),
        Some(body) => parse_set_request(&headers, &body)?,
    };
    let view = TimestampView::new(&name, timestamp);
    Ok(match store.set(&name, timestamp).await? {
        SetOutcome::Replaced => json_response(&view, StatusCode::OK),
        SetOutcome::Created => {
            let mut response = json_response(&view, StatusCode::CREATED);
            // Names are drawn from an alphabet that is valid in a header and a path as is.
            if let Ok(location) = HeaderValue::from_str(&format!("/v1/timestamps/{name}")) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
    })
}

/// Reset a timestamp: remove it. (To reset it to now, PUT without a body.)
#[utoipa::path(
    delete,
    path = "/v1/timestamps/{name}",
    tag = "timestamps",
    params(NameParam),
    responses(
        (status = 204, description = "The value was removed."),
        (status = 400, description = "The name is not valid (`invalid-name`).", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "There was nothing to remove (`not-found`).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Redis did not answer in time (`unavailable`).", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying."))),
    )
)]
pub async fn delete_one(raw_name: String, store: Store) -> Result<Response, ApiError> {
    let name = Name::parse(&raw_name)?;
    if store.delete(&name).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::NotFound(raw_name))
    }
}

/// List timestamps, a page at a time (Redis SCAN underneath).
#[utoipa::path(
    get,
    path = "/v1/timestamps",
    tag = "timestamps",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Largest page wanted; default 100."),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page, as is."),
    ),
    responses(
        (status = 200, description = "One page; follow `next_cursor` until it is `null`.", body = ListView),
        (status = 400, description = "Bad `limit` or `cursor`, or an unknown parameter (`invalid-query`).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Redis did not answer in time (`unavailable`).", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying."))),
    )
)]
pub async fn list(
    raw_query: String,
    store: Store,
    cursor_key: CursorKey,
) -> Result<Response, ApiError> {
    let (limit, cursor) = parse_list_query(&raw_query, &cursor_key)?;
    let page = store.list(limit, cursor).await?;
    let view = ListView {
        items: page
            .items
            .iter()
            .map(|(name, timestamp)| TimestampView::new(name, *timestamp))
            .collect(),
        next_cursor: page.next.as_ref().map(|next| cursor_key.encode(next)),
    };
    Ok(json_response(&view, StatusCode::OK))
}

/// `None` when the request has no body: neither Content-Length nor Transfer-Encoding, as
/// `curl -X PUT` sends, or a Content-Length of 0.
async fn read_body<S, B>(headers: &HeaderMap, body: S) -> Result<Option<Bytes>, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return Err(ApiError::LengthRequired);
    }
    // hyper has already refused a malformed Content-Length with its own 400.
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok())
        .unwrap_or(0);
    if length == 0 {
        return Ok(None);
    }
    if length > BODY_LIMIT {
        return Err(ApiError::PayloadTooLarge);
    }
    let collect = async {
        let mut body = std::pin::pin!(body);
        let mut collected = BytesMut::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|error| {
                ApiError::InvalidJson(format!("the body could not be read: {error}"))
            })?;
            collected.extend_from_slice(chunk.chunk());
        }
        Ok(Some(collected.freeze()))
    };
    // hyper bounds the wait for headers; this bounds the wait for the (small) body, so a client
    // that announces a length and then stalls does not hold the request open.
    tokio::time::timeout(BODY_READ_TIMEOUT, collect)
        .await
        .map_err(|_| ApiError::RequestTimeout)?
}

fn parse_set_request(headers: &HeaderMap, body: &[u8]) -> Result<Timestamp, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media_type| media_type.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    let request: SetRequest =
        serde_json::from_slice(body).map_err(|error| match error.classify() {
            serde_json::error::Category::Data => ApiError::InvalidField(error.to_string()),
            _ => ApiError::InvalidJson(error.to_string()),
        })?;
    Timestamp::try_from(request)
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

/// The `{name}` path parameter.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Only its derived description is used, by the OpenAPI document.
struct NameParam {
    /// 1 to 128 characters of `[A-Za-z0-9._-]`, starting with a letter or digit.
    #[param(
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$",
        min_length = 1,
        max_length = 128
    )]
    name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        headers
    }

    fn parse(body: &str) -> Result<i64, String> {
        parse_set_request(&json_headers(), body.as_bytes())
            .map(Timestamp::epoch_ms)
            .map_err(|error| format!("{}: {error}", error.status().as_u16()))
    }

    #[test]
    fn a_body_sets_either_field() {
        assert_eq!(
            parse(r#"{"epoch_ms": 1795628183123}"#),
            Ok(1_795_628_183_123)
        );
        assert_eq!(
            parse(r#"{"timestamp": "2026-11-25T18:36:23.123+01:00"}"#),
            Ok(1_795_628_183_123)
        );
    }

    #[test]
    fn bad_bodies_are_400s_of_the_right_kind() {
        for (body, expect) in [
            ("{", "400: request body is not valid JSON"),
            ("not json", "400: request body is not valid JSON"),
            (
                r#"{"epoch_ms": 1, "timestamp": "2026-01-01T00:00:00Z"}"#,
                "400: give exactly one",
            ),
            ("{}", "400: give exactly one"),
            (
                r#"{"epoch_ms": 1, "extra": 2}"#,
                "400: unknown field `extra`",
            ),
            (r#"{"epoch_ms": 1.5}"#, "400: epoch_ms must be an integer"),
            (r#"{"epoch_ms": "1"}"#, "400: epoch_ms must be an integer"),
            (r#"{"epoch_ms": 1e3}"#, "400: epoch_ms must be an integer"),
            (r#"{"epoch_ms": null}"#, "400: epoch_ms must be an integer"),
            (
                r#"{"timestamp": 5}"#,
                "400: timestamp must be an RFC 3339 string",
            ),
            (
                r#"{"timestamp": null}"#,
                "400: timestamp must be an RFC 3339 string",
            ),
            (
                r#"{"timestamp": null, "epoch_ms": 5}"#,
                "400: give exactly one",
            ),
            (
                r#"{"timestamp": "2026-01-01T00:00:00Z", "epoch_ms": null}"#,
                "400: give exactly one",
            ),
            (
                r#"{"timestamp": "tomorrow"}"#,
                "400: timestamp: timestamp is not RFC 3339",
            ),
            (
                r#"{"epoch_ms": -1}"#,
                "400: timestamp is outside the accepted range",
            ),
            (
                r#"{"epoch_ms": 18446744073709551615}"#,
                "400: timestamp is outside the accepted range",
            ),
            (
                r#"{"epoch_ms": 18446744073709551616}"#,
                "400: timestamp is outside the accepted range",
            ),
            (
                r#"{"epoch_ms": -99999999999999999999999999}"#,
                "400: timestamp is outside the accepted range",
            ),
        ] {
            let got = parse(body).unwrap_err();
            assert!(got.starts_with(expect), "{body}: {got}");
        }
    }

    #[test]
    fn a_too_large_integer_is_out_of_range_whatever_its_size() {
        for body in [
            r#"{"epoch_ms": 253402300800000}"#,
            r#"{"epoch_ms": 18446744073709551616}"#,
            &format!(r#"{{"epoch_ms": {}}}"#, "9".repeat(400)),
        ] {
            let error = parse_set_request(&json_headers(), body.as_bytes()).unwrap_err();
            assert!(matches!(error, ApiError::OutOfRange(_)), "{body}: {error}");
        }
    }

    #[test]
    fn minus_zero_is_the_integer_zero() {
        assert_eq!(parse(r#"{"epoch_ms": -0}"#), Ok(0));
    }

    #[test]
    fn only_json_bodies_are_accepted() {
        let mut headers = HeaderMap::new();
        let err = |headers: &HeaderMap| {
            parse_set_request(headers, b"{}")
                .unwrap_err()
                .status()
                .as_u16()
        };
        assert_eq!(err(&headers), 415);
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert_eq!(err(&headers), 415);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Application/JSON"),
        );
        assert_eq!(err(&headers), 400);
    }

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
