//! The two values the API is about: a timestamp's `Name` and the `Timestamp` itself.
//!
//! Both are parsed once at the edge ("parse, don't validate"): a `Name` or `Timestamp` that
//! exists is valid, so handlers and the store never check again. Nothing here does I/O.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Longest name accepted, in bytes (names are ASCII, so also in characters).
pub const NAME_MAX_LEN: usize = 128;

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
        "timestamp is outside the accepted range 1970-01-01T00:00:00.000Z to 9999-12-31T23:59:59.999Z"
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
        let parsed = OffsetDateTime::parse(raw, &Rfc3339)
            .map_err(|error| TimestampError::Syntax(error.to_string()))?;
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
        const MS_PER_DAY: i64 = 86_400_000;
        let (days, ms_of_day) = (self.0.div_euclid(MS_PER_DAY), self.0.rem_euclid(MS_PER_DAY));
        let (year, month, day) = civil_from_days(days);
        let (seconds, ms) = (ms_of_day / 1000, ms_of_day % 1000);
        format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
            seconds / 3600,
            seconds / 60 % 60,
            seconds % 60
        )
    }
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`). Formatting by hand keeps the hot path free of fallible conversions:
/// every value in the accepted range has a four-digit year.
pub(crate) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
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
        let parse = |s| Timestamp::parse_rfc3339(s).map(Timestamp::to_rfc3339);
        assert_eq!(
            parse("2026-11-25T18:36:23.123+01:00").unwrap(),
            "2026-11-25T17:36:23.123Z"
        );
        assert_eq!(
            parse("2026-11-25T12:06:23.123-05:30").unwrap(),
            "2026-11-25T17:36:23.123Z"
        );
        assert_eq!(
            parse("2026-11-25T17:36:23Z").unwrap(),
            "2026-11-25T17:36:23.000Z"
        );
        assert_eq!(
            parse("2026-11-25t17:36:23z").unwrap(),
            "2026-11-25T17:36:23.000Z"
        );
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
    fn hand_formatting_agrees_with_the_time_crate() {
        let step = Timestamp::MAX_EPOCH_MS / 9_973;
        for ms in (0..=Timestamp::MAX_EPOCH_MS).step_by(usize::try_from(step).unwrap()) {
            let ours = Timestamp::from_epoch_ms(ms).unwrap().to_rfc3339();
            let theirs = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                .unwrap()
                .format(&Rfc3339)
                .unwrap();
            assert_eq!(Timestamp::parse_rfc3339(&ours).unwrap().epoch_ms(), ms);
            assert_eq!(ours[..19], theirs[..19], "{ms}");
        }
    }

    #[test]
    fn now_is_in_range_and_whole_milliseconds() {
        let now = Timestamp::now();
        assert!(now.epoch_ms() > 1_700_000_000_000);
        assert!(now.to_rfc3339().ends_with('Z'));
    }
}
