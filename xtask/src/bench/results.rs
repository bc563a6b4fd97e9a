//! What the phases collect: rows of the ratio table (medians over rounds) and goals.

use super::json::J;

#[derive(Debug, Clone, Copy)]
pub(super) enum Goal {
    /// ratio >= x
    AtLeast(f64),
    /// ratio <= x
    AtMost(f64),
    /// |ratio - 1| <= x
    Within(f64),
    /// No goal: shown for context.
    Info,
}

impl Goal {
    pub(super) fn met(self, ratio: f64) -> bool {
        ratio.is_finite()
            && match self {
                Goal::AtLeast(x) => ratio >= x,
                Goal::AtMost(x) => ratio <= x,
                Goal::Within(x) => (ratio - 1.0).abs() <= x,
                Goal::Info => true,
            }
    }

    pub(super) fn text(self) -> String {
        match self {
            Goal::AtLeast(x) => format!(">= {x}x"),
            Goal::AtMost(x) => format!("<= {x}x"),
            Goal::Within(x) => format!("within {:.0}%", x * 100.0),
            Goal::Info => "(info)".into(),
        }
    }
}

/// One line of the ratio table: medians over the rounds.
#[derive(Debug, Clone)]
pub(super) struct Row {
    pub(super) what: String,
    pub(super) unit: &'static str,
    pub(super) ours_label: &'static str,
    pub(super) ours: f64,
    pub(super) theirs_label: String,
    pub(super) theirs: f64,
    pub(super) goal: Goal,
    /// Per-round values, for the raw table.
    pub(super) ours_runs: Vec<f64>,
    pub(super) theirs_runs: Vec<f64>,
}

impl Row {
    pub(super) fn ratio(&self) -> f64 {
        self.ours / self.theirs
    }
}

pub(super) fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub(super) fn row(
    what: impl Into<String>,
    unit: &'static str,
    ours_label: &'static str,
    ours_runs: Vec<f64>,
    theirs_label: impl Into<String>,
    theirs_runs: Vec<f64>,
    goal: Goal,
) -> Row {
    Row {
        what: what.into(),
        unit,
        ours_label,
        ours: median(&ours_runs),
        theirs_label: theirs_label.into(),
        theirs: median(&theirs_runs),
        goal,
        ours_runs,
        theirs_runs,
    }
}

pub(super) struct Results {
    pub(super) rows: Vec<Row>,
    /// Every run, raw: (phase, JSON object).
    pub(super) runs: Vec<(String, J)>,
    pub(super) notes: Vec<String>,
    /// wrk's median maximum, the base of the fixed rates.
    pub(super) http_max: Option<f64>,
}
