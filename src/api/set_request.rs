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

use super::bounds::{BODY_LIMIT, BODY_READ_TIMEOUT};
use super::problem::ApiError;
use crate::domain::Timestamp;

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
    #[schema(schema_with = super::schema::timestamp)]
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

/// `epoch_ms` as JSON Schema reads `type: integer`: any JSON number whose value is whole, so
/// `1795628183123`, `1795628183123.0` and `1.795628183123e12` are the same instant and `-0` is
/// 0; a fraction (`1.5`, `1e-3`) or anything but a number is a 400. The value is worked out on
/// the digits as written, never through a float, so no digit is rounded away. A whole number
/// beyond `i64` is returned as `i64::MIN` or `MAX`, which the range check then refuses as out of
/// range, whatever its size.
fn epoch_ms(raw: &str) -> Result<i64, ApiError> {
    let not_whole = || ApiError::InvalidField(format!("epoch_ms must be an integer, not {raw}"));
    let (negative, unsigned) = match raw.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, raw),
    };
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, Some(exponent)),
        None => (unsigned, None),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
    if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) {
        return Err(not_whole());
    }
    // The exponent moves the decimal point; one beyond any i64 moves it past every digit.
    let shift = match exponent {
        None => 0,
        Some(exponent) => {
            let digits = exponent.trim_start_matches(['+', '-']);
            if digits.is_empty() || !all_digits(digits) || exponent.len() - digits.len() > 1 {
                return Err(not_whole());
            }
            let size = digits.parse::<i64>().unwrap_or(i64::MAX);
            if exponent.starts_with('-') {
                -size
            } else {
                size
            }
        }
    };
    let digits: String = [whole, fraction].concat();
    let significant = digits.trim_start_matches('0');
    if significant.is_empty() {
        return Ok(0);
    }
    // Where the decimal point falls in `significant`, after the exponent has moved it.
    let point = i64::try_from(significant.len())
        .unwrap_or(i64::MAX)
        .saturating_sub(i64::try_from(fraction.len()).unwrap_or(i64::MAX))
        .saturating_add(shift);
    let kept = usize::try_from(point.max(0)).unwrap_or(usize::MAX);
    if kept < significant.len() && !significant[kept..].bytes().all(|byte| byte == b'0') {
        return Err(not_whole());
    }
    let out_of_range = if negative { i64::MIN } else { i64::MAX };
    // 19 digits is the longest i64; a value with more is out of range whatever its digits.
    if kept > 19 {
        return Ok(out_of_range);
    }
    let value = format!(
        "{}{}",
        &significant[..kept.min(significant.len())],
        "0".repeat(kept.saturating_sub(significant.len()))
    );
    // At most 19 digits: an i128 holds it, and its sign, exactly.
    let value: i128 = value.parse().map_err(|_| not_whole())?;
    let value = if negative { -value } else { value };
    Ok(i64::try_from(value).unwrap_or(out_of_range))
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
    let invalid = |error: serde_json::Error| match error.classify() {
        serde_json::error::Category::Data => ApiError::InvalidField(error.to_string()),
        _ => ApiError::InvalidJson(error.to_string()),
    };
    // serde's derived struct also takes the sequence form (`["…"]` for `{"timestamp": "…"}`);
    // the contract is an object, so anything else that is valid JSON is refused as such.
    let body: &RawValue = serde_json::from_slice(body).map_err(invalid)?;
    if !body.get().starts_with('{') {
        return Err(ApiError::InvalidField(format!(
            "the body must be a JSON object such as {{\"epoch_ms\": 1795628183123}}, not {}",
            body.get().chars().take(32).collect::<String>()
        )));
    }
    Timestamp::try_from(serde_json::from_str::<SetRequest>(body.get()).map_err(invalid)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::IntoProblem;

    fn parse(body: &str) -> Result<i64, String> {
        super::parse(body.as_bytes())
            .map(Timestamp::epoch_ms)
            .map_err(|error| format!("{}: {error}", error.classify().0.as_u16()))
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
                r#"["2026-11-25T17:36:23Z"]"#,
                "400: the body must be a JSON object",
            ),
            (
                "[1795628183123, null]",
                "400: the body must be a JSON object",
            ),
            (
                r#""2026-11-25T17:36:23Z""#,
                "400: the body must be a JSON object",
            ),
            ("  42 ", "400: the body must be a JSON object"),
            (
                r#"{"epoch_ms": 1, "extra": 2}"#,
                "400: unknown field `extra`",
            ),
            (r#"{"epoch_ms": 1.5}"#, "400: epoch_ms must be an integer"),
            (r#"{"epoch_ms": "1"}"#, "400: epoch_ms must be an integer"),
            (r#"{"epoch_ms": 1e-3}"#, "400: epoch_ms must be an integer"),
            (
                r#"{"epoch_ms": 1.25e1}"#,
                "400: epoch_ms must be an integer",
            ),
            (r#"{"epoch_ms": true}"#, "400: epoch_ms must be an integer"),
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
        assert_eq!(parse(r#"{"epoch_ms": -0.0e5}"#), Ok(0));
    }

    #[test]
    fn a_whole_number_is_an_integer_however_it_is_written() {
        for written in [
            "1795628183123",
            "1795628183123.0",
            "1795628183123.000e0",
            "1.795628183123e12",
            "1.795628183123E+12",
            "17956281831230e-1",
            "0.1795628183123e13",
            "0.00001795628183123e17",
        ] {
            assert_eq!(
                parse(&format!(r#"{{"epoch_ms": {written}}}"#)),
                Ok(1_795_628_183_123),
                "{written}"
            );
        }
        assert_eq!(parse(r#"{"epoch_ms": 130.0}"#), Ok(130));
        assert_eq!(parse(r#"{"epoch_ms": 1e3}"#), Ok(1000));
        for out_of_range in [
            "1e19",
            "9999999999999999999",
            "-9999999999999999999",
            "1e400",
            "1e99999999999999999999",
            "-1.0",
            "-1e3",
        ] {
            assert!(
                parse(&format!(r#"{{"epoch_ms": {out_of_range}}}"#))
                    .is_err_and(|error| error.contains("outside the accepted range")),
                "{out_of_range}"
            );
        }
        assert!(
            parse(r#"{"epoch_ms": 1e-99999999999999999999}"#)
                .is_err_and(|error| error.contains("must be an integer"))
        );
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
