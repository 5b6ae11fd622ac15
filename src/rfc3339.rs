//! RFC 3339 in UTC with a fixed number of fractional digits, written digit by digit. Every
//! access-log line and every timestamp answer carries one, and `time`'s format descriptions,
//! interpreted item by item, cost several times what the digits do (docs/performance.md).

use time::OffsetDateTime;

/// `YYYY-MM-DDTHH:MM:SS.` then 1 to 9 fractional digits (truncated, as `time` does) and `Z`.
pub struct Rfc3339Utc {
    bytes: [u8; 30],
    len: usize,
}

impl Rfc3339Utc {
    /// `instant` in UTC, for the years 0 to 9999 (a `Timestamp`, or the clock's now).
    pub fn new(instant: OffsetDateTime, fraction_digits: usize) -> Self {
        let instant = instant.to_offset(time::UtcOffset::UTC);
        let digits = fraction_digits.clamp(1, 9);
        let mut bytes = *b"0000-00-00T00:00:00.000000000Z";
        let year = u32::try_from(instant.year()).unwrap_or(0).min(9999);
        put(&mut bytes[0..4], year);
        put(&mut bytes[5..7], u32::from(u8::from(instant.month())));
        put(&mut bytes[8..10], u32::from(instant.day()));
        put(&mut bytes[11..13], u32::from(instant.hour()));
        put(&mut bytes[14..16], u32::from(instant.minute()));
        put(&mut bytes[17..19], u32::from(instant.second()));
        let exponent = u32::try_from(9 - digits).unwrap_or(0);
        put(
            &mut bytes[20..20 + digits],
            instant.nanosecond() / 10_u32.pow(exponent),
        );
        bytes[20 + digits] = b'Z';
        Self {
            bytes,
            len: 21 + digits,
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits and separators were written; the fallback is unreachable.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

/// Writes `value` into `out` as decimal digits, zero-padded to its length.
fn put(out: &mut [u8], mut value: u32) {
    for digit in out.iter_mut().rev() {
        // `value % 10` is below 10, so the cast cannot truncate.
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

#[cfg(test)]
mod tests {
    use time::format_description::well_known::Rfc3339 as Standard;

    use super::*;

    #[test]
    fn writes_what_time_writes() {
        for text in [
            "1970-01-01T00:00:00.000000000Z",
            "2026-11-25T17:36:23.123456789Z",
            "9999-12-31T23:59:59.999999999Z",
            "2000-02-29T01:02:03.000004000Z",
        ] {
            let instant = OffsetDateTime::parse(text, &Standard).unwrap();
            for digits in [3, 6, 9] {
                let expected = format!("{}Z", &text[..20 + digits]);
                assert_eq!(Rfc3339Utc::new(instant, digits).as_str(), expected);
            }
        }
        let offset = OffsetDateTime::parse("2026-11-25T18:36:23.5+01:00", &Standard).unwrap();
        assert_eq!(
            Rfc3339Utc::new(offset, 3).as_str(),
            "2026-11-25T17:36:23.500Z"
        );
    }
}
