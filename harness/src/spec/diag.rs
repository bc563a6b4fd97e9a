//! Problems found in an experiment file, each with file:line:column and an optional hint.

use serde_saphyr::Location;
use std::fmt;

/// One problem in an experiment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    /// 1-based; 0 when the problem has no position (e.g. the file cannot be read).
    pub line: u64,
    pub column: u64,
    pub message: String,
    pub hint: Option<String>,
}

impl Diagnostic {
    /// Renders `file:line:col: error: message (hint: ...)` and, when the source is at hand, the
    /// offending line with a caret under the column.
    pub fn render(&self, source: Option<&str>) -> String {
        let mut out = self.to_string();
        let line_text = source
            .filter(|_| self.line > 0)
            .and_then(|source| source.lines().nth(self.line as usize - 1));
        if let Some(text) = line_text {
            // Very long lines (hostile input) are cut so the message stays readable.
            let shown: String = text.chars().take(160).collect();
            let gutter = self.line.to_string();
            let pad = " ".repeat(gutter.len());
            let caret_at = (self.column.saturating_sub(1) as usize).min(shown.chars().count());
            out.push_str(&format!(
                "\n{pad} |\n{gutter} | {shown}\n{pad} | {}^",
                " ".repeat(caret_at)
            ));
        }
        out
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(
                f,
                "{}:{}:{}: error: {}",
                self.file, self.line, self.column, self.message
            )?;
        } else {
            write!(f, "{}: error: {}", self.file, self.message)?;
        }
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

/// Collects the problems of one file.
#[derive(Debug, Default)]
pub struct Diagnostics {
    pub file: String,
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn new(file: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            items: Vec::new(),
        }
    }

    /// Records a problem at `at` (a value's location).
    pub fn error(&mut self, at: &Location, message: impl Into<String>) {
        self.push(at.line(), at.column(), message.into(), None);
    }

    /// Records a problem with a hint.
    pub fn error_hint(
        &mut self,
        at: &Location,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.push(at.line(), at.column(), message.into(), Some(hint.into()));
    }

    /// Records a problem with no position.
    pub fn error_whole_file(&mut self, message: impl Into<String>, hint: Option<String>) {
        self.push(0, 0, message.into(), hint);
    }

    pub fn push(&mut self, line: u64, column: u64, message: String, hint: Option<String>) {
        self.items.push(Diagnostic {
            file: self.file.clone(),
            line,
            column,
            message,
            hint,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Sorted by position so output reads top to bottom.
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.items.sort_by_key(|d| (d.line, d.column));
        self.items
    }
}
