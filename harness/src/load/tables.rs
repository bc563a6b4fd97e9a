//! Small shared tables that concurrently completing operations write into: interned response tags
//! and the first error message seen per outcome code.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::outcome::OutcomeCode;

/// At most this many distinct tags per workload, slot 0 included. Services report a handful of
/// values (`live`, `fallback-open`, ...); a header that carries ids or timestamps instead must not
/// grow memory per op, so the last slot collects every further value.
pub(crate) const MAX_TAGS: usize = 64;
/// Longer values are cut: a tag is a category, not a payload.
pub(crate) const MAX_TAG_LEN: usize = 64;
pub(crate) const OVERFLOW_TAG: &str = "(other)";
const EMPTY_TAG: &str = "(empty)";
/// Error messages are kept for diagnosis only; a server's page-long error body is not needed.
const MAX_SAMPLE_LEN: usize = 300;

/// Interns tag values into `u8` indices.
///
/// Invariant: `names[0]` is the reserved empty name meaning "no tag"; every other entry is
/// distinct and non-empty, and `names.len() <= MAX_TAGS`. Clones share one table (an executor
/// that tags ops keeps a clone).
#[derive(Debug, Clone)]
pub(crate) struct TagTable {
    names: Arc<Mutex<Vec<String>>>,
}

impl TagTable {
    pub(crate) fn new() -> TagTable {
        TagTable {
            names: Arc::new(Mutex::new(vec![String::new()])),
        }
    }

    /// The index for `value`, adding it if new. Compares bytes first so the common case (a value
    /// already seen) allocates nothing.
    pub(crate) fn intern(&self, value: &[u8]) -> u8 {
        let value = &value[..value.len().min(MAX_TAG_LEN)];
        let value: &[u8] = if value.is_empty() {
            EMPTY_TAG.as_bytes()
        } else {
            value
        };
        let mut names = lock(&self.names);
        if let Some(index) = names
            .iter()
            .skip(1)
            .position(|name| name.as_bytes() == value)
        {
            return index_u8(index + 1);
        }
        if names.len() < MAX_TAGS - 1 {
            names.push(String::from_utf8_lossy(value).into_owned());
            return index_u8(names.len() - 1);
        }
        if names.len() == MAX_TAGS - 1 {
            names.push(OVERFLOW_TAG.to_owned());
        }
        index_u8(MAX_TAGS - 1)
    }

    pub(crate) fn names(&self) -> Vec<String> {
        lock(&self.names).clone()
    }
}

fn index_u8(index: usize) -> u8 {
    // MAX_TAGS <= 256 keeps every index representable.
    const _: () = assert!(MAX_TAGS <= 256);
    index as u8
}

/// The first message seen for each outcome code: enough to tell a report reader *which* connect
/// error it was, without storing a string per op.
#[derive(Debug, Default)]
pub(crate) struct ErrorSamples {
    first: Mutex<BTreeMap<OutcomeCode, String>>,
}

impl ErrorSamples {
    /// Records `message()` if `code` has no sample yet; the closure runs only then, so the hot
    /// path of a failing system does not format a string per op.
    pub(crate) fn note(&self, code: OutcomeCode, message: impl FnOnce() -> String) {
        if let std::collections::btree_map::Entry::Vacant(slot) = lock(&self.first).entry(code) {
            let mut text = message();
            if text.len() > MAX_SAMPLE_LEN {
                let mut cut = MAX_SAMPLE_LEN;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
                text.push('…');
            }
            slot.insert(text);
        }
    }

    pub(crate) fn snapshot(&self) -> BTreeMap<OutcomeCode, String> {
        lock(&self.first).clone()
    }
}

/// Poisoning cannot leave these tables inconsistent (each update is a single push/insert), so a
/// panic elsewhere must not turn into a second panic here.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interned(values: &[&[u8]]) -> (Vec<u8>, Vec<String>) {
        let table = TagTable::new();
        let indices = values.iter().map(|value| table.intern(value)).collect();
        (indices, table.names())
    }

    /// (values interned in order, expected indices, expected table)
    type Case<'a> = (&'a [&'a [u8]], &'a [u8], &'a [&'a str]);

    #[test]
    fn tags_intern_to_stable_small_indices() {
        let long = [b'x'; 100];
        let cases: [Case<'_>; 4] = [
            (
                &[b"live", b"fallback-open", b"live"],
                &[1, 2, 1],
                &["", "live", "fallback-open"],
            ),
            (&[b""], &[1], &["", "(empty)"]),
            (&[&long, &long[..70]], &[1, 1], &["", &"x".repeat(64)]),
            (&[b"\xffok"], &[1], &["", "\u{fffd}ok"]),
        ];
        for (values, expected_indices, expected_names) in cases {
            let (indices, names) = interned(values);
            assert_eq!(indices, expected_indices, "indices for {values:?}");
            assert_eq!(names, expected_names, "names for {values:?}");
        }
    }

    #[test]
    fn tag_table_overflows_into_one_slot() {
        let table = TagTable::new();
        let indices: Vec<u8> = (0..200)
            .map(|i| table.intern(format!("v{i}").as_bytes()))
            .collect();
        let names = table.names();
        assert_eq!(names.len(), MAX_TAGS);
        assert_eq!(names[MAX_TAGS - 1], OVERFLOW_TAG);
        assert_eq!(indices[0], 1);
        assert_eq!(indices[MAX_TAGS - 3], (MAX_TAGS - 2) as u8);
        assert!(
            indices[MAX_TAGS - 2..]
                .iter()
                .all(|&i| i == (MAX_TAGS - 1) as u8)
        );
    }

    #[test]
    fn error_samples_keep_the_first_message_per_code() {
        let samples = ErrorSamples::default();
        samples.note(OutcomeCode(2), || "refused".into());
        samples.note(OutcomeCode(2), || panic!("must not format a second sample"));
        samples.note(OutcomeCode(1), || "é".repeat(400));
        let map = samples.snapshot();
        assert_eq!(map[&OutcomeCode(2)], "refused");
        assert!(map[&OutcomeCode(1)].len() <= MAX_SAMPLE_LEN + '…'.len_utf8());
    }
}
