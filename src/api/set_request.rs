//! The body of a PUT: read within its size and time bounds, checked for its media type, and
//! turned into a `Timestamp` (`TryFrom<SetRequest>`), each failure an `ApiError`.

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::convert::Infallible;
use utoipa::ToSchema;

use warp::Filter;
use warp::http::HeaderValue;

use super::problem::ApiError;
use crate::domain::Timestamp;

/// Largest request body accepted, in bytes.
pub const BODY_LIMIT: u64 = 1024;

/// How long a request body may take to arrive after the headers.
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Body of a PUT: exactly one of the two fields; unknown fields are refused.
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
    #[schema(value_type = String, format = DateTime)]
    #[serde(default, deserialize_with = "given")]
    timestamp: Option<Box<RawValue>>,
    #[schema(schema_with = super::schema::epoch_ms)]
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

/// The headers that say how a PUT's body is framed and what it holds: all a PUT reads of the
/// request head.
pub struct BodyHeaders {
    transfer_encoding: Option<HeaderValue>,
    content_length: Option<HeaderValue>,
    content_type: Option<HeaderValue>,
}

pub fn body_headers() -> impl Filter<Extract = (BodyHeaders,), Error = Infallible> + Clone {
    optional("transfer-encoding")
        .and(optional("content-length"))
        .and(optional("content-type"))
        .map(
            |transfer_encoding, content_length, content_type| BodyHeaders {
                transfer_encoding,
                content_length,
                content_type,
            },
        )
}

fn optional(
    name: &'static str,
) -> impl Filter<Extract = (Option<HeaderValue>,), Error = Infallible> + Clone {
    warp::header::value(name)
        .map(Some)
        .or(warp::any().map(|| None))
        .unify()
}

/// The instant a PUT asks for, checked in the order that costs least: the framing
/// (`Transfer-Encoding`, `Content-Length`), the media type, then the body itself. No body
/// (neither header, as `curl -X PUT` sends, or a `Content-Length` of 0) means now.
pub async fn requested_timestamp<S, B>(headers: BodyHeaders, body: S) -> Result<Timestamp, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    if headers.transfer_encoding.is_some() {
        return Err(ApiError::LengthRequired);
    }
    // hyper has already refused a malformed Content-Length with its own 400.
    let length = headers
        .content_length
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok())
        .unwrap_or(0);
    if length == 0 {
        return Ok(Timestamp::now());
    }
    if length > BODY_LIMIT {
        return Err(ApiError::PayloadTooLarge);
    }
    check_media_type(headers.content_type)?;
    parse(&read(body).await?)
}

fn check_media_type(content_type: Option<HeaderValue>) -> Result<(), ApiError> {
    let is_json = content_type
        .as_ref()
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media_type| media_type.trim().eq_ignore_ascii_case("application/json"));
    if is_json {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType)
    }
}

/// The whole (small) body. hyper bounds the wait for headers; this bounds the wait for the
/// body, so a client that announces a length and then stalls does not hold the request open.
async fn read<S, B>(body: S) -> Result<Bytes, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let collect = async {
        let mut body = std::pin::pin!(body);
        let mut collected = BytesMut::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|error| {
                ApiError::InvalidJson(format!("the body could not be read: {error}"))
            })?;
            collected.extend_from_slice(chunk.chunk());
        }
        Ok(collected.freeze())
    };
    tokio::time::timeout(BODY_READ_TIMEOUT, collect)
        .await
        .map_err(|_| ApiError::RequestTimeout)?
}

fn parse(body: &[u8]) -> Result<Timestamp, ApiError> {
    let request: SetRequest =
        serde_json::from_slice(body).map_err(|error| match error.classify() {
            serde_json::error::Category::Data => ApiError::InvalidField(error.to_string()),
            _ => ApiError::InvalidJson(error.to_string()),
        })?;
    Timestamp::try_from(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<i64, String> {
        super::parse(body.as_bytes())
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
            let error = super::parse(body.as_bytes()).unwrap_err();
            assert!(matches!(error, ApiError::OutOfRange(_)), "{body}: {error}");
        }
    }

    #[test]
    fn minus_zero_is_the_integer_zero() {
        assert_eq!(parse(r#"{"epoch_ms": -0}"#), Ok(0));
    }

    #[test]
    fn only_json_bodies_are_accepted() {
        for refused in [None, Some("text/plain"), Some("application/jsonx")] {
            assert!(
                matches!(
                    check_media_type(refused.map(HeaderValue::from_static)),
                    Err(ApiError::UnsupportedMediaType)
                ),
                "{refused:?}"
            );
        }
        for accepted in ["application/json", "Application/JSON; charset=utf-8"] {
            assert!(check_media_type(Some(HeaderValue::from_static(accepted))).is_ok());
        }
    }
}
