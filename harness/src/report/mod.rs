//! Reports rendered from a journal alone: Markdown for people (with an SVG timeline chart per
//! datacenter), JUnit XML for CI, and the journal itself as JSON. Same journal in, same bytes out.

mod durability;
mod junit;
mod markdown;
mod timeline;

pub use junit::render_junit;
pub use markdown::render_markdown;
pub use timeline::render_timeline_charts;

use crate::journal::Journal;
use std::path::Path;

/// Writes `journal.json`, `report.md`, `junit.xml` and the per-datacenter charts the report links
/// (`timeline-<dc>.svg`) into `dir` (created if needed).
pub fn write_all(journal: &Journal, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(journal).map_err(std::io::Error::other)?;
    write_atomic(&dir.join("journal.json"), json.as_bytes())?;
    write_atomic(&dir.join("report.md"), render_markdown(journal).as_bytes())?;
    write_atomic(&dir.join("junit.xml"), render_junit(journal).as_bytes())?;
    for (file, svg) in render_timeline_charts(journal) {
        write_atomic(&dir.join(file), svg.as_bytes())?;
    }
    Ok(())
}

/// Reads a journal back (for `faultline report`).
pub fn read_journal(path: &Path) -> Result<Journal, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        format!(
            "`{}` is not a faultline journal: {e} (line {}, column {})",
            path.display(),
            e.line(),
            e.column()
        )
    })
}

/// A half-written report is worse than none: write to a temporary file, then rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
