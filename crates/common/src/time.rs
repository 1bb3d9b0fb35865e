//! Time and duration parameters as the upstream HTTP APIs accept them. All results are in
//! milliseconds (Prometheus) or nanoseconds (Loki) since the Unix epoch.

use chrono::DateTime;

use crate::Error;

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Prometheus' `minTime`/`maxTime` literals (what its clients send for "unbounded").
pub const PROM_MIN_TIME_STR: &str = "-292273086-05-16T16:47:06Z";
/// See [`PROM_MIN_TIME_STR`].
pub const PROM_MAX_TIME_STR: &str = "292277025-08-18T07:12:54.999999999Z";

/// Parses a Prometheus time parameter: float unix seconds or RFC3339, to milliseconds.
pub fn parse_prom_time(s: &str) -> Result<i64, Error> {
    let bad = || Error::InvalidTime {
        value: s.to_string(),
        kind: "time",
    };
    if s == PROM_MIN_TIME_STR {
        return Ok(i64::MIN / 1000);
    }
    if s == PROM_MAX_TIME_STR {
        return Ok(i64::MAX / 1000);
    }
    if let Ok(f) = s.parse::<f64>() {
        if !f.is_finite() {
            return Err(bad());
        }
        let ms = (f * 1000.0).round();
        if ms.abs() > 9.2e15 {
            return Err(bad());
        }
        return Ok(ms as i64);
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| bad())
}

/// Parses a Prometheus duration (`1h30m`, `500ms`, `2d`) or float seconds, to milliseconds.
pub fn parse_prom_duration(s: &str) -> Result<i64, Error> {
    let bad = || Error::InvalidTime {
        value: s.to_string(),
        kind: "duration",
    };
    if let Ok(f) = s.parse::<f64>() {
        if !f.is_finite() || f.abs() > 9.2e15 {
            return Err(bad());
        }
        return Ok((f * 1000.0).round() as i64);
    }
    parse_duration_units(s).ok_or_else(bad)
}

/// Parses a unit-suffixed duration such as `1h30m` or `250ms` to milliseconds. Units: ms s m h d w y.
/// Units must appear from largest to smallest, each at most once (as in Prometheus).
pub fn parse_duration_units(s: &str) -> Option<i64> {
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    if s.is_empty() {
        return None;
    }
    let b = s.as_bytes();
    let mut i = 0;
    let mut total: i64 = 0;
    let mut last_unit = 0usize;
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let n: i64 = s[start..i].parse().ok()?;
        let ustart = i;
        while i < b.len() && b[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = &s[ustart..i];
        let pos = UNITS.iter().position(|(u, _)| *u == unit)?;
        if pos < last_unit || (total != 0 && pos == last_unit) {
            return None;
        }
        last_unit = pos;
        total = total.checked_add(n.checked_mul(UNITS[pos].1)?)?;
    }
    Some(total)
}

/// Formats milliseconds as Prometheus' JSON timestamp (unix seconds with up to 3 decimals).
pub fn format_prom_ts(ms: i64) -> serde_json::Value {
    if ms % 1000 == 0 {
        serde_json::Value::from(ms / 1000)
    } else {
        serde_json::Number::from_f64(ms as f64 / 1000.0)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prom_times() {
        assert_eq!(
            parse_prom_time("1435781451.781").unwrap(),
            1_435_781_451_781
        );
        assert_eq!(parse_prom_time("4").unwrap(), 4000);
        assert_eq!(
            parse_prom_time("2015-07-01T20:10:51.781Z").unwrap(),
            1_435_781_451_781
        );
        assert!(parse_prom_time("yesterday").is_err());
        assert!(parse_prom_time("NaN").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_prom_duration("1h30m").unwrap(), 5_400_000);
        assert_eq!(parse_prom_duration("500ms").unwrap(), 500);
        assert_eq!(parse_prom_duration("15").unwrap(), 15_000);
        assert_eq!(parse_prom_duration("0.5").unwrap(), 500);
        assert!(parse_prom_duration("5x").is_err());
        assert!(parse_prom_duration("1m1h").is_err());
        assert!(parse_prom_duration("").is_err());
    }

    #[test]
    fn ts_format() {
        assert_eq!(format_prom_ts(1000).to_string(), "1");
        assert_eq!(
            format_prom_ts(1_435_781_451_781).to_string(),
            "1435781451.781"
        );
    }
}
