//! Durations are written as humantime reads them: `250ms`, `10s`, `2m` or `1m 30s` (`0` needs
//! no unit). A bare number other than 0 is refused: `10` could mean seconds or milliseconds.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer, de::Error};

pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&humantime::format_duration(*value))
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    // figment reads an environment value that looks like a number as one.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Number(u64),
    }
    match Raw::deserialize(deserializer)? {
        Raw::Text(text) => parse(&text).map_err(D::Error::custom),
        Raw::Number(0) => Ok(Duration::ZERO),
        Raw::Number(n) => Err(D::Error::custom(format!(
            "a duration needs a unit: \"{n}ms\", \"{n}s\" or \"{n}m\""
        ))),
    }
}

pub fn parse(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|error| {
        format!("\"{text}\" is not a duration such as \"250ms\", \"10s\" or \"2m\" ({error})")
    })
}
