//! The ids of the documented behaviours that experiments may name in `verifies:`.
//!
//! The list mirrors the rows of `shared/seeds/CATALOGUE.md` (ids only: the prose stays there).
//! It is compiled in so that `faultline validate` works outside this repository's layout; a test
//! checks it against the catalogue file whenever that file is present.

/// Every catalogue id, in the catalogue's order.
pub const IDS: &[&str] = &[
    "000-CASS",
    "003-CASS",
    "004-CASS",
    "004-CACHE-LOSS",
    "000-KAFKA",
    "001-KAFKA",
    "001-REDIS",
    "001-REDIS-AOF",
    "000-CB",
    "001-CB",
    "002-CB",
    "003-CB",
    "004-CB",
    "000-RETRY",
    "002-RETRY",
    "003-RETRY",
    "004-RETRY",
    "000-DEGRADE",
    "001-DEGRADE",
    "002-DEGRADE",
    "003-DEGRADE",
    "004-DEGRADE",
    "000-BULKHEAD",
    "004-BULKHEAD",
    "000-RPO-RTO",
    "000-FAILOVER",
    "001-FAILOVER",
    "002-DR",
    "003-TIERS",
    "004-HEALTH",
    "004-RPO-RTO",
    "000-SEV",
    "000-SCALE",
    "003-COALESCE",
    "004-DR-DETECT",
];

/// Whether `id` is a catalogue row.
pub fn contains(id: &str) -> bool {
    IDS.contains(&id)
}

/// The closest known id to a misspelt one, for a `(hint: ...)`.
pub fn closest(id: &str) -> Option<&'static str> {
    let wanted = id.to_ascii_uppercase();
    IDS.iter()
        .copied()
        .find(|known| *known == wanted)
        .or_else(|| {
            let prefix = wanted.get(..3)?;
            IDS.iter()
                .copied()
                .find(|known| known.starts_with(prefix) && wanted.contains(&known[4..]))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards against the compiled-in list drifting from the catalogue file.
    #[test]
    fn matches_catalogue_file_when_present() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/seeds/CATALOGUE.md"
        );
        let Ok(text) = std::fs::read_to_string(path) else {
            eprintln!("catalogue file not found at {path}; skipping the drift check");
            return;
        };
        let in_file: Vec<&str> = text
            .lines()
            .filter_map(|line| line.strip_prefix("| "))
            .filter_map(|rest| rest.split_whitespace().next())
            .filter(|cell| cell.len() > 4 && cell.as_bytes()[..3].iter().all(u8::is_ascii_digit))
            .collect();
        assert_eq!(
            in_file, IDS,
            "harness/src/catalogue.rs is out of date with {path}"
        );
    }

    #[test]
    fn hints() {
        assert_eq!(closest("000-cb"), Some("000-CB"));
        assert_eq!(closest("000-CBX"), Some("000-CB"));
        assert_eq!(closest("999-NOPE"), None);
    }
}
