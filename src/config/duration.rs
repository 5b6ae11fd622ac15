//! Durations are written with a unit: `250ms`, `10s` or `2m` (`0` needs none).

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer, de::Error};

pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    let ms = value.as_millis();
    if ms.is_multiple_of(1000) {
        serializer.serialize_str(&format!("{}s", ms / 1000))
    } else {
        serializer.serialize_str(&format!("{ms}ms"))
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
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
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| {
        format!("\"{text}\" is not a duration such as \"250ms\", \"10s\" or \"2m\"")
    })?;
    let ms = match unit {
        "ms" => Some(number),
        "s" => number.checked_mul(1000),
        "m" => number.checked_mul(60_000),
        "" if number == 0 => Some(0),
        _ => return Err(format!("\"{text}\" has no unit; use ms, s or m")),
    };
    ms.map(Duration::from_millis)
        .ok_or_else(|| format!("\"{text}\" is too long"))
}
