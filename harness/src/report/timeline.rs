//! The per-datacenter timeline: per second from t0, the throughput, errors and worst p99 of the
//! workloads pinned to each datacenter, beside the faults active then, as a Markdown table and
//! an SVG chart (`timeline-<dc>.svg`, next to `report.md`).

mod svg;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::markdown::{active_faults, cell, error_percent, us};
use crate::journal::Journal;
use crate::units::format_offset_ms;

const US_PER_SEC: u64 = 1_000_000;

/// One datacenter's workloads, added up per second.
struct DcTimeline<'j> {
    dc: &'j str,
    /// In journal order.
    workloads: Vec<&'j str>,
    /// The seconds at least one of the workloads recorded, in order (never empty).
    seconds: Vec<Second>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Second {
    /// Whole seconds from t0.
    at_s: u64,
    /// Ops intended in this second (ok and failed).
    ops: u64,
    errors: u64,
    /// The highest p99 of the workloads with ok ops in this second: percentiles of different
    /// workloads neither add nor average, and the worst is what that DC's worst client saw.
    worst_p99_us: Option<u64>,
}

impl Second {
    fn ok(&self) -> u64 {
        self.ops.saturating_sub(self.errors)
    }

    fn start_ms(&self) -> i64 {
        i64::try_from(self.at_s.saturating_mul(1000)).unwrap_or(i64::MAX)
    }

    fn end_ms(&self) -> i64 {
        self.start_ms().saturating_add(1000)
    }
}

/// The report section: nothing unless some workload is pinned to a datacenter and recorded a
/// second.
pub(super) fn render(out: &mut String, j: &Journal) {
    let timelines = timelines(j);
    if timelines.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n## Timeline per datacenter\n\n\
         Per second from t0, the workloads pinned to each datacenter added up. Percentiles do not \
         add, so p99 is the worst workload's p99 in that second. Faults are all of the \
         experiment's faults active in that second, whatever they target."
    );
    for t in &timelines {
        let names: Vec<String> = t.workloads.iter().map(|w| format!("`{w}`")).collect();
        let _ = writeln!(out, "\n### `{}`\n", t.dc);
        let _ = writeln!(out, "- workloads: {}", names.join(", "));
        let _ = writeln!(out, "\n![{} timeline]({})", cell(t.dc), chart_file(t.dc));
        let _ = writeln!(out, "\n<details><summary>per second</summary>\n");
        let _ = writeln!(
            out,
            "| t | ops/s | errors | error % | worst workload's p99 | faults |\n|---|---|---|---|---|---|"
        );
        for s in &t.seconds {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.2}% | {} | {} |",
                format_offset_ms(s.start_ms()),
                s.ops,
                s.errors,
                error_percent(s.ops, s.errors),
                s.worst_p99_us.map_or_else(|| "-".to_string(), us),
                cell(&active_faults(
                    &j.experiment.faults,
                    s.start_ms(),
                    s.end_ms()
                ))
            );
        }
        let _ = writeln!(out, "\n</details>");
    }
}

/// The charts the section links, as (file name, SVG), one per datacenter in the section.
pub fn render_timeline_charts(j: &Journal) -> Vec<(String, String)> {
    timelines(j)
        .iter()
        .map(|t| (chart_file(t.dc), svg::render(t, &j.experiment.faults)))
        .collect()
}

/// `timeline-<dc>.svg`. Datacenter names are simple names once validated; a hand-edited journal
/// must still not write outside the report's directory, so anything else becomes `_`.
fn chart_file(dc: &str) -> String {
    let safe: String = dc
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("timeline-{safe}.svg")
}

/// Per datacenter in name order, its workloads' seconds added up; datacenters whose workloads
/// recorded no second are left out.
fn timelines(j: &Journal) -> Vec<DcTimeline<'_>> {
    type Seconds = BTreeMap<u64, Second>;
    let mut by_dc: BTreeMap<&str, (Vec<&str>, Seconds)> = BTreeMap::new();
    for w in &j.timeline {
        let Some(dc) = j.experiment.workload_dcs.get(&w.name) else {
            continue;
        };
        let (workloads, seconds) = by_dc.entry(dc.as_str()).or_default();
        workloads.push(w.name.as_str());
        for window in &w.per_second {
            // The run starts every workload at t0, so their one-second windows line up; one
            // started off a whole second would count in the second its window starts in.
            let at_s = window.from_us / US_PER_SEC;
            let second = seconds.entry(at_s).or_insert(Second {
                at_s,
                ..Second::default()
            });
            second.ops = second.ops.saturating_add(window.ops);
            second.errors = second.errors.saturating_add(window.errors);
            if let Some(latency) = &window.latency {
                second.worst_p99_us = second.worst_p99_us.max(Some(latency.p99_us));
            }
        }
    }
    by_dc
        .into_iter()
        .filter(|(_, (_, seconds))| !seconds.is_empty())
        .map(|(dc, (workloads, seconds))| DcTimeline {
            dc,
            workloads,
            seconds: seconds.into_values().collect(),
        })
        .collect()
}
