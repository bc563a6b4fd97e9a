//! Human units in experiment files: durations (`250ms`, `30s`, `2m`), rates (`2000/s`, `120/m`)
//! and percentages (`50%`, or a plain number read as a percentage).
//!
//! invariant: parsing never panics and every error message names the accepted forms.

use std::time::Duration;

/// Parses `250ms`, `30s`, `1m30s`, `2h` (humantime's grammar). A bare `0` is zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.starts_with('-') {
        return Err(format!("`{text}` is negative: durations are at least `0`"));
    }
    humantime::parse_duration(text).map_err(|error| {
        format!("`{text}` is not a duration ({error}; write e.g. `250ms`, `30s`, `2m`)")
    })
}

/// Parses `2000/s`, `120/m`, `10/ms`: operations per second. Zero and negative rates are errors.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let bad = || format!("`{text}` is not a rate (write e.g. `2000/s` or `120/m`)");
    let (count, unit) = text.split_once('/').ok_or_else(bad)?;
    let count: f64 = count.trim().parse().map_err(|_| bad())?;
    let per_second = match unit.trim() {
        "s" | "sec" => count,
        "m" | "min" => count / 60.0,
        "ms" => count * 1000.0,
        _ => return Err(bad()),
    };
    if !per_second.is_finite() || per_second <= 0.0 {
        return Err(format!("`{text}` must be a positive rate"));
    }
    Ok(per_second)
}

/// Parses `50%`, `0.5%` or a bare number, as a percentage in 0..=100.
pub fn parse_percent(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let number = text.strip_suffix('%').unwrap_or(text).trim();
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a percentage (write e.g. `50%`)"))?;
    if !(0.0..=100.0).contains(&value) {
        return Err(format!("`{text}` is outside 0%..=100%"));
    }
    Ok(value)
}

/// Formats a duration the way experiment files write them (`1.5s`, `250ms`, `2m`).
pub fn format_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    if duration.is_zero() {
        return "0s".to_string();
    }
    if ms == 0 {
        return format!("{}us", duration.as_micros());
    }
    if ms.is_multiple_of(60_000) {
        return format!("{}m", ms / 60_000);
    }
    if ms.is_multiple_of(1000) {
        return format!("{}s", ms / 1000);
    }
    if ms >= 1000 {
        let seconds = format!("{:.3}", duration.as_secs_f64());
        return format!("{}s", seconds.trim_end_matches('0'));
    }
    format!("{ms}ms")
}

/// Formats a signed offset in milliseconds relative to a reference (`+7.25s`, `-120ms`).
pub fn format_offset_ms(offset_ms: i64) -> String {
    let sign = if offset_ms < 0 { "-" } else { "+" };
    let magnitude = Duration::from_millis(offset_ms.unsigned_abs());
    format!("{sign}{}", format_duration(magnitude))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let cases: &[(&str, Result<u64, ()>)] = &[
            ("250ms", Ok(250)),
            ("30s", Ok(30_000)),
            ("2m", Ok(120_000)),
            ("1m30s", Ok(90_000)),
            ("0", Ok(0)),
            ("-1s", Err(())),
            ("ten", Err(())),
            ("", Err(())),
        ];
        for (text, expected) in cases {
            let got = parse_duration(text)
                .map(|d| d.as_millis() as u64)
                .map_err(|_| ());
            assert_eq!(&got, expected, "parse_duration({text:?})");
        }
    }

    #[test]
    fn rates() {
        let cases: &[(&str, Option<f64>)] = &[
            ("2000/s", Some(2000.0)),
            ("120/m", Some(2.0)),
            ("1/ms", Some(1000.0)),
            ("0/s", None),
            ("-5/s", None),
            ("5", None),
            ("5/h", None),
            ("NaN/s", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_rate(text).ok(), *expected, "parse_rate({text:?})");
        }
    }

    #[test]
    fn percents() {
        let cases: &[(&str, Option<f64>)] = &[
            ("50%", Some(50.0)),
            ("0.5", Some(0.5)),
            ("101%", None),
            ("x%", None),
        ];
        for (text, expected) in cases {
            assert_eq!(
                parse_percent(text).ok(),
                *expected,
                "parse_percent({text:?})"
            );
        }
    }

    #[test]
    fn formatting() {
        let cases: &[(u64, &str)] = &[
            (250, "250ms"),
            (30_000, "30s"),
            (120_000, "2m"),
            (1500, "1.5s"),
            (0, "0s"),
        ];
        for (ms, text) in cases {
            assert_eq!(format_duration(Duration::from_millis(*ms)), *text);
        }
        assert_eq!(format_offset_ms(-120), "-120ms");
        assert_eq!(format_offset_ms(7250), "+7.25s");
    }
}
