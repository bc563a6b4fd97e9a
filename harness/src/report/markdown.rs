//! The Markdown report: outcome first, then every verdict with expected vs observed, the fault
//! timeline, the per-datacenter timelines, and per-workload phase and per-second tables with
//! fault windows marked.

use std::fmt::Write as _;
use std::time::Duration;

use crate::journal::{FaultWindow, Journal, Outcome};
use crate::load::{WindowStats, WorkloadSummary};
use crate::units::{format_duration, format_offset_ms};

pub fn render_markdown(j: &Journal) -> String {
    let mut out = String::new();
    let held = j.verdicts.iter().filter(|v| v.passed).count();
    let outcome = match j.run.outcome {
        Outcome::Passed => "PASSED",
        Outcome::Failed => "FAILED",
        Outcome::Invalid => "INVALID (the load generator fell behind; no verdict on the system)",
        Outcome::InfrastructureError => "INFRASTRUCTURE ERROR",
    };
    let _ = writeln!(out, "# Faultline report: {}\n", j.experiment.name);
    let _ = writeln!(
        out,
        "**Outcome: {outcome}**: {held} of {} verdicts held.\n",
        j.verdicts.len()
    );
    let _ = writeln!(out, "- experiment: `{}`", j.experiment.file);
    let _ = writeln!(out, "- verifies: {}", j.experiment.verifies.join(", "));
    let _ = writeln!(
        out,
        "- run: `{}`, started {}, load {}",
        j.run.run_id,
        j.run.started_at,
        ms(j.run.duration_ms)
    );
    if let Some(description) = &j.experiment.description {
        let _ = writeln!(out, "\n{}", description.trim());
    }
    if let Some(error) = &j.run.error {
        let _ = writeln!(out, "\n> **error:** {}", error.replace('\n', "\n> "));
    }

    let _ = writeln!(out, "\n## Verdicts\n");
    let _ = writeln!(
        out,
        "| | verdict | expected | observed |\n|---|---|---|---|"
    );
    for v in &j.verdicts {
        let mark = if v.passed { "pass" } else { "**FAIL**" };
        let _ = writeln!(
            out,
            "| {mark} | `{}` | {} | {} |",
            v.id,
            cell(&v.expected),
            cell(&v.observed)
        );
    }

    let _ = writeln!(out, "\n## Assertions as planned\n");
    for a in &j.experiment.assertions {
        let _ = writeln!(out, "- {}", cell(a));
    }

    if !j.experiment.faults.is_empty() {
        let _ = writeln!(
            out,
            "\n## Faults\n\n| fault | kind | target | from | to |\n|---|---|---|---|---|"
        );
        for f in &j.experiment.faults {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} |",
                f.name,
                f.kind,
                cell(&f.target),
                format_offset_ms(f.start_ms),
                format_offset_ms(f.end_ms)
            );
        }
    }

    if !j.events.is_empty() {
        let _ = writeln!(out, "\n## Events\n\n| t | event | detail |\n|---|---|---|");
        for e in &j.events {
            let _ = writeln!(
                out,
                "| {} | {:?} | {} |",
                format_offset_ms(e.at_ms),
                e.kind,
                cell(&e.detail)
            );
        }
    }

    super::durability::render(&mut out, j);
    super::timeline::render(&mut out, j);

    for w in &j.timeline {
        workload_section(&mut out, j, w);
    }

    let _ = writeln!(out, "\n## Lab\n");
    let _ = writeln!(out, "- set-up: {}", ms(j.run.setup_ms));
    for (node, ready) in &j.run.ready_ms {
        let _ = writeln!(out, "- `{node}` ready in {}", ms(*ready));
    }
    for (component, version) in &j.run.components {
        let _ = writeln!(out, "- {component}: {version}");
    }
    if let Some(rss) = j.run.harness_peak_rss_kib {
        let _ = writeln!(out, "- harness peak RSS: {} MiB", rss / 1024);
    }
    let _ = writeln!(out, "- faultline {}", j.faultline_version);
    out
}

fn workload_section(out: &mut String, j: &Journal, w: &WorkloadSummary) {
    let _ = writeln!(out, "\n## Workload `{}`\n", w.name);
    let _ = writeln!(
        out,
        "- rate: intended {:.1}/s, achieved {:.1}/s ({} of {} operations completed)",
        w.intended_rate, w.achieved_rate, w.completed_ops, w.intended_ops
    );
    let _ = writeln!(
        out,
        "- generator scheduling lag: p99 {}, max {}: {}",
        us(w.sched_lag_p99_us),
        us(w.sched_lag_max_us),
        if w.generator_valid {
            "kept its schedule".to_string()
        } else {
            format!(
                "**fell behind**: {}",
                w.invalid_reason.as_deref().unwrap_or("")
            )
        }
    );
    if !w.counters.is_empty() {
        let counters: Vec<String> = w.counters.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(out, "- client counters: {}", counters.join(", "));
    }
    let _ = writeln!(
        out,
        "\n| phase | ops | errors | error rate | p50 | p99 | p99.9 | max | responses |\n|---|---|---|---|---|---|---|---|---|"
    );
    for (name, s) in w
        .phases
        .iter()
        .map(|(n, s)| (n.as_str(), s))
        .chain([("all", &w.total)])
    {
        let _ = writeln!(out, "| {name} | {} |", stats_cells(s));
    }
    let _ = writeln!(out, "\n<details><summary>per second</summary>\n");
    let _ = writeln!(
        out,
        "| t | faults | ops | errors | error rate | p50 | p99 | p99.9 | max | responses |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    for s in &w.per_second {
        let (from_ms, to_ms) = ((s.from_us / 1000) as i64, (s.to_us / 1000) as i64);
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            format_offset_ms(from_ms),
            active_faults(&j.experiment.faults, from_ms, to_ms),
            stats_cells(s)
        );
    }
    let _ = writeln!(out, "\n</details>");
}

fn stats_cells(s: &WindowStats) -> String {
    let rate = error_percent(s.ops, s.errors);
    let (p50, p99, p999, max) = match &s.latency {
        Some(l) => (us(l.p50_us), us(l.p99_us), us(l.p999_us), us(l.max_us)),
        None => ("-".into(), "-".into(), "-".into(), "-".into()),
    };
    let tags: Vec<String> = s
        .tags
        .iter()
        .map(|(tag, n)| format!("{tag}: {n}"))
        .collect();
    format!(
        "{} | {} | {rate:.2}% | {p50} | {p99} | {p999} | {max} | {}",
        s.ops,
        s.errors,
        tags.join(", ")
    )
}

/// The names of the faults active in `[from_ms, to_ms)`, comma-separated. An instantaneous fault
/// (a restart: it ends when it starts) counts in the window it happens in.
pub(super) fn active_faults(faults: &[FaultWindow], from_ms: i64, to_ms: i64) -> String {
    let active: Vec<&str> = faults
        .iter()
        .filter(|f| f.start_ms < to_ms && (f.end_ms > from_ms || f.start_ms >= from_ms))
        .map(|f| f.name.as_str())
        .collect();
    active.join(", ")
}

/// Errors as a percentage of ops; 0 when there were no ops (nothing failed).
pub(super) fn error_percent(ops: u64, errors: u64) -> f64 {
    if ops == 0 {
        0.0
    } else {
        100.0 * errors as f64 / ops as f64
    }
}

pub(super) fn us(micros: u64) -> String {
    if micros < 1000 {
        return format!("{micros}us");
    }
    let millis = micros as f64 / 1000.0;
    if millis < 1000.0 {
        format!("{millis:.1}ms")
    } else {
        format!("{:.2}s", millis / 1000.0)
    }
}

fn ms(millis: u64) -> String {
    format_duration(Duration::from_millis(millis))
}

/// Table cells cannot hold pipes or newlines.
pub(super) fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}
