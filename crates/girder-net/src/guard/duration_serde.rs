//! Durations in config files: `"250ms"`, `"10s"`, `"5m"`, `"1h"` (also `"us"`, `"ns"`),
//! or a bare number of seconds (`10`, `0.25`). Written back as the largest whole unit.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};

pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*d))
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(DurationVisitor)
}

fn format(d: Duration) -> String {
    let ns = d.as_nanos();
    const UNITS: [(u128, &str); 6] = [
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
        (1, "ns"),
    ];
    for (size, unit) in UNITS {
        if ns != 0 && ns % size == 0 {
            return format!("{}{unit}", ns / size);
        }
    }
    "0s".to_owned()
}

/// Parses `"<number><unit>"`; the number may have a fraction.
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration: write e.g. \"250ms\", \"10s\", \"5m\""))?;
    let scale_ns = match unit.trim() {
        "h" => 3_600e9,
        "m" | "min" => 60e9,
        "s" | "" => 1e9,
        "ms" => 1e6,
        "us" | "µs" => 1e3,
        "ns" => 1.0,
        other => {
            return Err(format!(
                "`{other}` is not a duration unit: use h, m, s, ms, us or ns"
            ))
        }
    };
    nanos(number * scale_ns)
}

/// Whole nanoseconds (rounded), so "250ms" is exactly 250 ms.
fn nanos(ns: f64) -> Result<Duration, String> {
    if ns.is_finite() && (0.0..=u64::MAX as f64).contains(&ns) {
        Ok(Duration::from_nanos(ns.round() as u64))
    } else {
        Err(format!("{} s is not a valid duration", ns / 1e9))
    }
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"250ms\", \"10s\", \"5m\", or a number of seconds")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Ok(Duration::from_secs(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        u64::try_from(v)
            .map(Duration::from_secs)
            .map_err(|_| E::custom(format!("{v} s: a duration cannot be negative")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        nanos(v * 1e9).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_bare_seconds() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3_600)));
        assert_eq!(parse("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse("0.1s"), Ok(Duration::from_millis(100)));
        assert!(parse("ten").unwrap_err().contains("not a duration"));
        assert!(parse("5 days").unwrap_err().contains("unit"));
    }

    #[test]
    fn formats_the_largest_whole_unit() {
        assert_eq!(format(Duration::from_secs(120)), "2m");
        assert_eq!(format(Duration::from_millis(1_500)), "1500ms");
        assert_eq!(format(Duration::ZERO), "0s");
    }
}
