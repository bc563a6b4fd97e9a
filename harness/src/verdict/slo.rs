//! Judges error-rate and latency objectives per phase, and whether the load generator kept its
//! schedule (a run where it fell behind is invalid rather than a verdict on the system).

use super::Verdicts;
use crate::load::{WindowStats, WorkloadSummary};
use crate::plan::{PhaseSel, SloAssertion};
use crate::units::format_duration;
use std::time::Duration;

pub fn judge(a: &SloAssertion, summary: &WorkloadSummary, out: &mut Verdicts) {
    let phase = a.phase.name();
    let stats: Option<&WindowStats> = match a.phase {
        PhaseSel::All => Some(&summary.total),
        _ => summary
            .phases
            .iter()
            .find(|(name, _)| name == phase)
            .map(|(_, s)| s),
    };
    let Some(stats) = stats.filter(|s| s.ops > 0) else {
        out.fail(
            &a.name,
            &a.name,
            &format!("operations of `{}` in phase `{phase}`", a.workload),
            format!(
                "no operation of `{}` was intended in phase `{phase}`",
                a.workload
            ),
            None,
        );
        return;
    };
    if let Some(max) = a.max_error_rate {
        let rate = 100.0 * stats.errors as f64 / stats.ops as f64;
        let expected = format!(
            "error rate of `{}` in phase `{phase}` <= {max}%",
            a.workload
        );
        let observed = format!(
            "{rate:.2}% ({} errors of {} operations)",
            stats.errors, stats.ops
        );
        let id = format!("{}/error-rate", a.name);
        if rate <= max {
            out.pass(&id, &a.name, &expected, observed, None)
        } else {
            out.fail(&id, &a.name, &expected, observed, None)
        }
    }
    for (limit, label, pick) in [(a.max_p99, "p99", 0), (a.max_p50, "p50", 1)] {
        let Some(max) = limit else { continue };
        let id = format!("{}/{label}", a.name);
        let expected = format!(
            "{label} latency of successful `{}` operations in phase `{phase}` <= {}",
            a.workload,
            format_duration(max)
        );
        match &stats.latency {
            None => out.fail(
                &id,
                &a.name,
                &expected,
                "no operation succeeded, so there is no latency to judge".into(),
                None,
            ),
            Some(lat) => {
                let us = if pick == 0 { lat.p99_us } else { lat.p50_us };
                let observed = format!(
                    "{} (corrected for coordinated omission, {} operations)",
                    format_duration(Duration::from_micros(us)),
                    stats.ops - stats.errors
                );
                if us as u128 <= max.as_micros() {
                    out.pass(&id, &a.name, &expected, observed, None)
                } else {
                    out.fail(&id, &a.name, &expected, observed, None)
                }
            }
        }
    }
}

pub fn judge_generator(summary: &WorkloadSummary, out: &mut Verdicts) {
    let id = format!("generator/{}", summary.name);
    let expected = format!(
        "the load generator keeps its schedule for `{}` ({:.0}/s intended)",
        summary.name, summary.intended_rate
    );
    let observed = format!(
        "achieved {:.1}/s; {} of {} operations completed; scheduling lag p99 {} max {}{}",
        summary.achieved_rate,
        summary.completed_ops,
        summary.intended_ops,
        format_duration(Duration::from_micros(summary.sched_lag_p99_us)),
        format_duration(Duration::from_micros(summary.sched_lag_max_us)),
        summary
            .invalid_reason
            .as_ref()
            .map_or(String::new(), |r| format!(": {r}"))
    );
    if summary.generator_valid {
        out.pass(&id, &id, &expected, observed, None)
    } else {
        out.fail(&id, &id, &expected, observed, None)
    }
}
