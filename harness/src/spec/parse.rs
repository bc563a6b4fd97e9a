//! Reading experiment YAML safely: size, encoding, nesting and alias budgets first, then serde.
//!
//! invariant: hostile files (binary, huge, alias bombs, deep nesting) are rejected in bounded time
//! and memory, with a message, never a panic.

use super::{Diagnostics, ExperimentFile};

/// Experiment files are hand-written; anything larger is a mistake or an attack.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;

/// Budgets far above any real experiment and far below what could hurt.
mod limits {
    pub const MAX_DEPTH: usize = 64;
    pub const MAX_EVENTS: usize = 200_000;
    pub const MAX_ALIASES: usize = 1_000;
    pub const MAX_NODES: usize = 100_000;
    pub const MAX_SCALAR_BYTES: usize = 4 * 1024 * 1024;
}

/// Parses one experiment file's text; problems go to `diags`.
pub fn parse_str(source: &str, diags: &mut Diagnostics) -> Option<ExperimentFile> {
    if source.len() > MAX_FILE_BYTES {
        diags.error_whole_file(
            format!(
                "file is {} bytes, above the limit of {MAX_FILE_BYTES}",
                source.len()
            ),
            Some("experiment files are small YAML documents".into()),
        );
        return None;
    }
    if source.contains('\0') {
        diags.error_whole_file("file contains NUL bytes: it is not a YAML text file", None);
        return None;
    }
    if source.trim().is_empty() {
        diags.error_whole_file(
            "file is empty",
            Some("an experiment needs at least `name`, `verifies`, `topology`, `load` and `assertions`".into()),
        );
        return None;
    }
    match serde_saphyr::from_str_with_options::<ExperimentFile>(source, options()) {
        Ok(file) => Some(file),
        Err(error) => {
            let (line, column) = error
                .location()
                .map(|at| (at.line(), at.column()))
                .unwrap_or((0, 0));
            let message = first_line(&error.to_string());
            let hint = hint_for(&message);
            diags.push(line, column, message, hint);
            None
        }
    }
}

/// Decodes raw bytes, rejecting binary content with a clear message.
pub fn decode(bytes: &[u8], diags: &mut Diagnostics) -> Option<String> {
    if bytes.len() > MAX_FILE_BYTES {
        diags.error_whole_file(
            format!(
                "file is {} bytes, above the limit of {MAX_FILE_BYTES}",
                bytes.len()
            ),
            Some("experiment files are small YAML documents".into()),
        );
        return None;
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Some(text.to_string()),
        Err(error) => {
            let offset = error.valid_up_to();
            let line = bytes[..offset].iter().filter(|&&b| b == b'\n').count() as u64 + 1;
            let column = bytes[..offset]
                .iter()
                .rev()
                .take_while(|&&b| b != b'\n')
                .count() as u64
                + 1;
            diags.push(line, column, "file is not UTF-8 text".into(), None);
            None
        }
    }
}

fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = limits::MAX_DEPTH;
    budget.max_events = limits::MAX_EVENTS;
    budget.max_aliases = limits::MAX_ALIASES;
    budget.max_nodes = limits::MAX_NODES;
    budget.max_total_scalar_bytes = limits::MAX_SCALAR_BYTES;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.with_snippet = false;
    options
}

/// serde-saphyr's messages can span lines (snippets); the location is reported separately.
fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or("invalid YAML").trim();
    // Strip a trailing " at line X column Y" if the library appended one: we print our own.
    match line.find(" at line ") {
        Some(cut) => line[..cut].to_string(),
        None => line.to_string(),
    }
}

fn hint_for(message: &str) -> Option<String> {
    if message.contains("unknown field") {
        Some("see docs/experiment-reference.md for the fields each section takes".into())
    } else if message.contains("missing field") {
        Some("this section requires it; see docs/experiment-reference.md".into())
    } else if message.contains("budget") || message.contains("depth") || message.contains("alias") {
        Some("experiment files are limited in nesting depth and alias use".into())
    } else {
        None
    }
}
