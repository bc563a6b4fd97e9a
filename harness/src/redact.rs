//! Redaction for snapshot tests: wall-clock timestamps, durations and per-run identifiers become
//! placeholders, so a report's shape can be compared across runs.
//!
//! Hand-written rather than regex-based: two small token shapes do not justify a regex engine in
//! the engine's dependency tree.

use crate::journal::Journal;

/// Replaces RFC 3339 timestamps with `[timestamp]` and durations (`+7.25s`, `250ms`, `3us`, `2m`)
/// with `[duration]`. Rates (`100/s`), percentages and plain counts are kept.
pub fn redact_text(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let boundary = i == 0 || !is_word(chars[i - 1]);
        if boundary {
            if let Some(len) = timestamp_len(&chars[i..]) {
                out.push_str("[timestamp]");
                i += len;
                continue;
            }
            if let Some(len) = duration_len(&chars[i..]) {
                out.push_str("[duration]");
                i += len;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// Blanks the journal's per-run fields that are not durations in text (ids, set-up numbers).
pub fn redact_journal(journal: &Journal) -> Journal {
    let mut j = journal.clone();
    j.run.run_id = "[run-id]".into();
    j.run.started_at = "[timestamp]".into();
    j.run.setup_ms = 0;
    j.run.harness_peak_rss_kib = None;
    j.run.ready_ms.values_mut().for_each(|v| *v = 0);
    j.run
        .components
        .values_mut()
        .for_each(|v| *v = "[version]".into());
    j.faultline_version = "[version]".into();
    j
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '.'
}

fn digits(s: &[char]) -> usize {
    s.iter().take_while(|c| c.is_ascii_digit()).count()
}

/// `YYYY-MM-DDTHH:MM:SS(.fff)?(Z|+HH:MM)`
fn timestamp_len(s: &[char]) -> Option<usize> {
    let shape = "dddd-dd-ddTdd:dd:dd";
    if s.len() < shape.len() {
        return None;
    }
    for (c, want) in s.iter().zip(shape.chars()) {
        let ok = if want == 'd' {
            c.is_ascii_digit()
        } else {
            *c == want
        };
        if !ok {
            return None;
        }
    }
    let mut i = shape.len();
    if s.get(i) == Some(&'.') {
        i += 1 + digits(&s[i + 1..]);
    }
    match s.get(i) {
        Some('Z') => Some(i + 1),
        Some('+') | Some('-') if s.len() >= i + 6 => Some(i + 6),
        _ => Some(i),
    }
}

/// `[+-]?\d+(\.\d+)?(ns|us|µs|ms|s|m|h)` not followed by a word character or `/`.
fn duration_len(s: &[char]) -> Option<usize> {
    let mut i = 0;
    if matches!(s.first(), Some('+') | Some('-')) {
        i += 1;
    }
    let whole = digits(&s[i..]);
    if whole == 0 {
        return None;
    }
    i += whole;
    if s.get(i) == Some(&'.') && s.get(i + 1).is_some_and(char::is_ascii_digit) {
        i += 1 + digits(&s[i + 1..]);
    }
    let rest: String = s[i..s.len().min(i + 2)].iter().collect();
    let unit = ["ns", "us", "µs", "ms"]
        .iter()
        .find(|u| rest.starts_with(**u))
        .map(|u| u.chars().count())
        .or_else(|| matches!(s.get(i), Some('s') | Some('m') | Some('h')).then_some(1))?;
    let end = i + unit;
    match s.get(end) {
        Some(c) if c.is_alphanumeric() || *c == '/' || *c == '_' => None,
        _ => Some(end),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_text;

    #[test]
    fn cases() {
        let cases = [
            ("opened at +7.25s after", "opened at [duration] after"),
            ("p99 12.3ms, max 1.02s", "p99 [duration], max [duration]"),
            (
                "started 2026-11-21T05:30:10.123Z, load 95s",
                "started [timestamp], load [duration]",
            ),
            (
                "rate 100/s, 50% of 1200 calls",
                "rate 100/s, 50% of 1200 calls",
            ),
            ("t=-120ms and 3us", "t=[duration] and [duration]"),
            (
                "10s window, 2m run, 1h",
                "[duration] window, [duration] run, [duration]",
            ),
            ("p99 x5s and abc10ms", "p99 x5s and abc10ms"),
            ("5 sessions, 3 ms", "5 sessions, 3 ms"),
        ];
        for (input, expected) in cases {
            assert_eq!(redact_text(input), expected, "input: {input}");
        }
    }
}
