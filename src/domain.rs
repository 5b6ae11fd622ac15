//! The two values the API is about: a timestamp's `Name` and the `Timestamp` itself.
//!
//! Both are parsed once at the edge ("parse, don't validate"): a `Name` or `Timestamp` that
//! exists is valid, so handlers and the store never check again. Nothing here does I/O.

use std::fmt;
use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

use regex::Regex;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::rfc3339::Rfc3339Utc;

/// Longest name accepted, in bytes (names are ASCII, so also in characters).
pub const NAME_MAX_LEN: usize = 128;

/// What `Name::parse` accepts, as a regular expression (for the OpenAPI document).
pub const NAME_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$";

/// Pieces of the RFC 3339 `date-time` grammar (section 5.6; `T` and `Z` may be lower case).
macro_rules! rfc3339 {
    (month_day) => {
        "(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
    };
    (time) => {
        "[Tt](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]+)?"
    };
    (hours_minutes) => {
        "(?:[01][0-9]|2[0-3]):[0-5][0-9]"
    };
    (offset) => {
        concat!("(?:[Zz]|[+-]", rfc3339!(hours_minutes), ")")
    };
}

/// An RFC 3339 `date-time` with any four-digit year and no leap second: what
/// `Timestamp::parse_rfc3339` takes as syntax (the `time` crate alone would also take any
/// separator, a space say, and a leap second).
const RFC3339_GRAMMAR: &str = concat!(
    "^[0-9]{4}-",
    rfc3339!(month_day),
    rfc3339!(time),
    rfc3339!(offset),
    "$"
);

/// What `Timestamp::parse_rfc3339` accepts, as a regular expression (for the OpenAPI document,
/// where JSON Schema cannot compare instants): the grammar, with a local date from 1970-01-01 to
/// 9999-12-31, and on those two dates an offset that cannot carry the instant out of the range
/// (UTC or west of it on the first, UTC or east of it on the last). Every instant it admits is
/// in range, and it is also the service's rule, so the document and the service agree exactly.
pub const TIMESTAMP_PATTERN: &str = concat!(
    "^(?:",
    // 1971 to 9998, any day and offset.
    "(?:197[1-9]|19[89][0-9]|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])-",
    rfc3339!(month_day),
    rfc3339!(time),
    rfc3339!(offset),
    // 1970 after January 1st, and 9999 before December 31st, any offset.
    "|(?:1970-(?:01-(?:0[2-9]|[12][0-9]|3[01])|(?:0[2-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01]))",
    "|9999-(?:(?:0[1-9]|1[01])-(?:0[1-9]|[12][0-9]|3[01])|12-(?:0[1-9]|[12][0-9]|30)))",
    rfc3339!(time),
    rfc3339!(offset),
    "|1970-01-01",
    rfc3339!(time),
    "(?:[Zz]|-",
    rfc3339!(hours_minutes),
    "|\\+00:00)",
    "|9999-12-31",
    rfc3339!(time),
    "(?:[Zz]|\\+",
    rfc3339!(hours_minutes),
    "|-00:00)",
    ")$"
);

/// The two patterns above, compiled once.
static RFC3339_PATTERNS: LazyLock<(Regex, Regex)> = LazyLock::new(|| {
    // Both are constant and valid; `domain::tests` compiles them, so a mistake fails there.
    let compile = |pattern| Regex::new(pattern).expect("a valid constant pattern");
    (compile(RFC3339_GRAMMAR), compile(TIMESTAMP_PATTERN))
});

/// A timestamp's name: 1 to 128 characters of `[A-Za-z0-9._-]`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name must not be empty")]
    Empty,
    #[error("name is {0} characters long; at most {NAME_MAX_LEN} are allowed")]
    TooLong(usize),
    #[error("name must start with a letter or a digit")]
    BadStart,
    #[error("name may only contain letters, digits, '.', '_' and '-'")]
    BadCharacter,
}

impl Name {
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let bytes = raw.as_bytes();
        let first = bytes.first().ok_or(NameError::Empty)?;
        if bytes.len() > NAME_MAX_LEN {
            return Err(NameError::TooLong(raw.chars().count()));
        }
        if !first.is_ascii_alphanumeric() {
            return Err(NameError::BadStart);
        }
        if !bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(NameError::BadCharacter);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An instant with millisecond precision between 1970-01-01T00:00:00.000Z and
/// 9999-12-31T23:59:59.999Z, stored as milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    #[error("timestamp is not RFC 3339 (for example 2026-11-25T17:36:23.123Z): {0}")]
    Syntax(String),
    #[error(
        "timestamp is outside the accepted range 1970-01-01T00:00:00.000Z to \
         9999-12-31T23:59:59.999Z (a time on 1970-01-01 takes Z or a negative offset, one on \
         9999-12-31 Z or a positive offset)"
    )]
    OutOfRange,
}

impl Timestamp {
    pub const MIN_EPOCH_MS: i64 = 0;
    /// 9999-12-31T23:59:59.999Z
    pub const MAX_EPOCH_MS: i64 = 253_402_300_799_999;

    pub fn from_epoch_ms(ms: i64) -> Result<Self, TimestampError> {
        if (Self::MIN_EPOCH_MS..=Self::MAX_EPOCH_MS).contains(&ms) {
            Ok(Self(ms))
        } else {
            Err(TimestampError::OutOfRange)
        }
    }

    /// Parses RFC 3339 with any offset. Sub-millisecond digits are dropped (truncation towards
    /// the past, so the stored instant never lies after the one given).
    pub fn parse_rfc3339(raw: &str) -> Result<Self, TimestampError> {
        let (grammar, in_range) = &*RFC3339_PATTERNS;
        // The range pattern holds the grammar: the grammar alone is asked only to tell a
        // syntax error from a range error, never on the way of a valid timestamp.
        let admitted = in_range.is_match(raw);
        if !admitted && !grammar.is_match(raw) {
            return Err(TimestampError::Syntax(
                "expected YYYY-MM-DDTHH:MM:SS[.fraction] and Z or ±HH:MM".into(),
            ));
        }
        let parsed = OffsetDateTime::parse(raw, &Rfc3339)
            .map_err(|error| TimestampError::Syntax(error.to_string()))?;
        if !admitted {
            return Err(TimestampError::OutOfRange);
        }
        let ms = parsed.unix_timestamp_nanos().div_euclid(1_000_000);
        let ms = i64::try_from(ms).map_err(|_| TimestampError::OutOfRange)?;
        Self::from_epoch_ms(ms)
    }

    /// The server's clock, truncated to milliseconds.
    pub fn now() -> Self {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis());
        // A clock before 1970 or after 9999 is clamped rather than failing every PUT.
        Self(
            i64::try_from(ms)
                .unwrap_or(i64::MAX)
                .clamp(Self::MIN_EPOCH_MS, Self::MAX_EPOCH_MS),
        )
    }

    pub fn epoch_ms(self) -> i64 {
        self.0
    }

    /// RFC 3339 in UTC with exactly three fractional digits and a `Z`.
    pub fn to_rfc3339(self) -> String {
        // Every `Timestamp` lies within the years 1970 to 9999, which `time` represents.
        let instant = OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000)
            .expect("a Timestamp is within the range time represents");
        Rfc3339Utc::new(instant, 3).as_str().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_accept_the_documented_alphabet() {
        for ok in [
            "a",
            "0",
            "deploy",
            "Deploy-2026.11_25",
            &"x".repeat(NAME_MAX_LEN),
        ] {
            assert_eq!(Name::parse(ok).map(|n| n.to_string()), Ok(ok.to_owned()));
        }
    }

    #[test]
    fn names_reject_everything_else() {
        assert_eq!(Name::parse(""), Err(NameError::Empty));
        assert_eq!(Name::parse(&"x".repeat(129)), Err(NameError::TooLong(129)));
        for bad_start in [".hidden", "-x", "_x"] {
            assert_eq!(Name::parse(bad_start), Err(NameError::BadStart));
        }
        for bad in ["a b", "a/b", "a:b", "a%20", "aü", "a\u{0}"] {
            assert_eq!(Name::parse(bad), Err(NameError::BadCharacter), "{bad:?}");
        }
    }

    #[test]
    fn formats_utc_with_exactly_three_fraction_digits() {
        let ts = Timestamp::from_epoch_ms(1_795_628_183_123).unwrap();
        assert_eq!(ts.to_rfc3339(), "2026-11-25T17:36:23.123Z");
        assert_eq!(
            Timestamp::from_epoch_ms(0).unwrap().to_rfc3339(),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(
            Timestamp::from_epoch_ms(1_000).unwrap().to_rfc3339(),
            "1970-01-01T00:00:01.000Z"
        );
    }

    #[test]
    fn parses_any_offset_into_utc() {
        for (given, utc) in [
            ("2026-11-25T18:36:23.123+01:00", "2026-11-25T17:36:23.123Z"),
            ("2026-11-25T12:06:23.123-05:30", "2026-11-25T17:36:23.123Z"),
            ("2026-11-25T17:36:23Z", "2026-11-25T17:36:23.000Z"),
            ("2026-11-25t17:36:23z", "2026-11-25T17:36:23.000Z"),
        ] {
            let parsed = Timestamp::parse_rfc3339(given).map(Timestamp::to_rfc3339);
            assert_eq!(parsed.as_deref(), Ok(utc), "{given}");
        }
    }

    #[test]
    fn truncates_below_a_millisecond() {
        let parse = |s| Timestamp::parse_rfc3339(s).unwrap().to_rfc3339();
        assert_eq!(
            parse("2026-11-25T17:36:23.123999999Z"),
            "2026-11-25T17:36:23.123Z"
        );
        assert_eq!(parse("2026-11-25T17:36:23.1Z"), "2026-11-25T17:36:23.100Z");
    }

    #[test]
    fn range_ends_are_inclusive() {
        let parse = Timestamp::parse_rfc3339;
        assert_eq!(parse("1970-01-01T00:00:00.000Z").unwrap().epoch_ms(), 0);
        assert_eq!(
            parse("9999-12-31T23:59:59.999Z").unwrap().epoch_ms(),
            Timestamp::MAX_EPOCH_MS
        );
        assert_eq!(
            parse("9999-12-31T23:59:59.999999Z").unwrap().epoch_ms(),
            Timestamp::MAX_EPOCH_MS
        );
        assert_eq!(
            Timestamp::from_epoch_ms(Timestamp::MAX_EPOCH_MS)
                .unwrap()
                .to_rfc3339(),
            "9999-12-31T23:59:59.999Z"
        );
    }

    #[test]
    fn outside_the_range_is_rejected() {
        let parse = Timestamp::parse_rfc3339;
        assert_eq!(
            parse("1969-12-31T23:59:59.999Z"),
            Err(TimestampError::OutOfRange)
        );
        assert_eq!(
            parse("1969-12-31T23:59:59.9999Z"),
            Err(TimestampError::OutOfRange)
        );
        // In range as written, out of range once normalised to UTC.
        assert_eq!(
            parse("1970-01-01T00:30:00+01:00"),
            Err(TimestampError::OutOfRange)
        );
        assert_eq!(
            parse("9999-12-31T23:30:00-01:00"),
            Err(TimestampError::OutOfRange)
        );
        assert_eq!(
            Timestamp::from_epoch_ms(-1),
            Err(TimestampError::OutOfRange)
        );
        assert_eq!(
            Timestamp::from_epoch_ms(Timestamp::MAX_EPOCH_MS + 1),
            Err(TimestampError::OutOfRange)
        );
    }

    #[test]
    fn rejects_what_is_not_rfc_3339() {
        for bad in [
            "",
            "yesterday",
            "2026-11-25",
            "2026-11-25T17:36:23",
            "2026-13-01T00:00:00Z",
            "1795628183123",
        ] {
            assert!(
                matches!(
                    Timestamp::parse_rfc3339(bad),
                    Err(TimestampError::Syntax(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_timestamp_pattern_is_exactly_what_parsing_accepts() {
        let (_, pattern) = &*RFC3339_PATTERNS;
        let mut checked = 0;
        for date in [
            "1969-12-31",
            "1970-01-01",
            "1970-01-02",
            "1970-02-01",
            "1971-06-15",
            "2026-11-25",
            "2024-02-29",
            "9998-12-31",
            "9999-12-30",
            "9999-12-31",
            "0040-01-30",
        ] {
            for time in [
                "T00:00:00",
                "t12:30:59.5",
                "T23:59:59.9999",
                "T23:59:60",
                " 12:00:00",
            ] {
                for offset in [
                    "Z", "z", "+00:00", "-00:00", "+01:00", "-01:00", "+23:59", "",
                ] {
                    let raw = format!("{date}{time}{offset}");
                    assert_eq!(
                        pattern.is_match(&raw),
                        Timestamp::parse_rfc3339(&raw).is_ok(),
                        "{raw}"
                    );
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 440);
        // A day the calendar does not have fits the pattern; the document's `format: date-time`
        // excludes it, and parsing refuses it.
        assert!(matches!(
            Timestamp::parse_rfc3339("2026-02-29T00:00:00Z"),
            Err(TimestampError::Syntax(_))
        ));
        for refused_in_range in ["1970-01-01T05:00:00+01:00", "1969-12-31T23:30:00-01:00"] {
            assert_eq!(
                Timestamp::parse_rfc3339(refused_in_range),
                Err(TimestampError::OutOfRange)
            );
        }
    }

    #[test]
    fn the_pattern_states_the_length_limit() {
        assert!(NAME_PATTERN.ends_with(&format!("{{0,{}}}$", NAME_MAX_LEN - 1)));
    }

    #[test]
    fn now_is_in_range_and_whole_milliseconds() {
        let now = Timestamp::now();
        assert!(now.epoch_ms() > 1_700_000_000_000);
        assert!(now.to_rfc3339().ends_with('Z'));
    }
}
