//! Judges availability through a fault from the per-second windows of a workload (by intended
//! time): recovery time (RTO), a datacenter's survival of another's loss, and stale reads of
//! acknowledged writes.

use super::Verdicts;
use crate::journal::FaultWindow;
use crate::load::{WindowStats, WorkloadSummary};
use crate::plan::{RtoAssertion, StaleReadsAssertion, SurvivalAssertion};
use crate::units::{format_duration, format_offset_ms};

fn success_pct(w: &WindowStats) -> f64 {
    if w.ops == 0 {
        100.0
    } else {
        100.0 * (w.ops - w.errors) as f64 / w.ops as f64
    }
}

/// RTO: the first second at or after the fault's start from which the success ratio stays above
/// the threshold for `sustained`; its start minus the fault's start.
pub fn judge_rto(a: &RtoAssertion, s: &WorkloadSummary, fault: &FaultWindow, out: &mut Verdicts) {
    let start_us = fault.start_ms.max(0) as u64 * 1000;
    let need = (a.sustained.as_secs_f64().ceil() as usize).max(1);
    let expected = format!(
        "after `{}` starts, `{}` succeeds above {}% for {} straight within {}",
        a.fault,
        a.workload,
        a.success_above,
        format_duration(a.sustained),
        format_duration(a.max)
    );
    let windows: Vec<&WindowStats> = s.per_second.iter().filter(|w| w.to_us > start_us).collect();
    let dipped = windows
        .iter()
        .position(|w| success_pct(w) <= a.success_above);
    let worst = windows
        .iter()
        .map(|w| success_pct(w))
        .fold(100.0_f64, f64::min);
    let Some(first_dip) = dipped else {
        out.pass(
            &a.name,
            &a.name,
            &expected,
            format!(
                "RTO 0s: the success ratio never fell to {}% (lowest {worst:.2}%)",
                a.success_above
            ),
            Some(fault.start_ms),
        );
        return;
    };
    let recovered = (first_dip..windows.len()).find(|&i| {
        windows.len() - i >= need
            && windows[i..i + need]
                .iter()
                .all(|w| success_pct(w) > a.success_above)
    });
    match recovered {
        Some(i) => {
            let at_ms = (windows[i].from_us / 1000) as i64;
            let rto_ms = (at_ms - fault.start_ms).max(0);
            let observed = format!(
                "RTO {}: success fell to {worst:.2}% and stayed above {}% from {} on",
                format_offset_ms(rto_ms),
                a.success_above,
                format_offset_ms(at_ms)
            );
            if rto_ms as u128 <= a.max.as_millis() {
                out.pass(&a.name, &a.name, &expected, observed, Some(at_ms));
            } else {
                out.fail(&a.name, &a.name, &expected, observed, Some(at_ms));
            }
        }
        None => out.fail(
            &a.name,
            &a.name,
            &expected,
            format!(
                "never recovered before the run ended: success fell to {worst:.2}% at {} and did not stay above {}% for {}",
                format_offset_ms((windows[first_dip].from_us / 1000) as i64),
                a.success_above,
                format_duration(a.sustained)
            ),
            Some(fault.start_ms),
        ),
    }
}

/// The per-second windows wholly inside the fault's window (all of them without a fault).
fn within<'s>(
    s: &'s WorkloadSummary,
    fault: Option<&FaultWindow>,
) -> impl Iterator<Item = &'s WindowStats> {
    let (from, to) = fault.map_or((0, u64::MAX), |f| {
        (
            f.start_ms.max(0) as u64 * 1000,
            f.end_ms.max(0) as u64 * 1000,
        )
    });
    s.per_second
        .iter()
        .filter(move |w| w.from_us >= from && w.to_us <= to)
}

/// The share of completed reads of the last acknowledged key (tags `fresh` / `stale`) that
/// did not see it, over the run or while the fault lasted.
pub fn judge_stale_reads(
    a: &StaleReadsAssertion,
    s: &WorkloadSummary,
    fault: Option<&FaultWindow>,
    out: &mut Verdicts,
) {
    let count = |tag: &str| -> u64 { within(s, fault).filter_map(|w| w.tags.get(tag)).sum() };
    let (fresh, stale) = (count("fresh"), count("stale"));
    let errors: u64 = within(s, fault).map(|w| w.errors).sum();
    let span = fault.map_or(String::new(), |f| {
        format!(
            " while `{}` lasts ({} to {})",
            f.name,
            format_offset_ms(f.start_ms),
            format_offset_ms(f.end_ms)
        )
    });
    let expected = format!(
        "at most {}% of the reads of `{}`{span} miss the last acknowledged write",
        a.max_stale_rate, a.workload
    );
    let at = fault.map(|f| f.start_ms);
    let reads = fresh + stale;
    if reads == 0 {
        out.fail(
            &a.name,
            &a.name,
            &expected,
            format!("inconclusive: no read of an acknowledged key completed ({errors} failed)"),
            at,
        );
        return;
    }
    let rate = 100.0 * stale as f64 / reads as f64;
    let observed = format!(
        "{rate:.2}% stale ({stale} of {reads} reads did not see the acknowledged row; {errors} reads failed)"
    );
    if rate <= a.max_stale_rate {
        out.pass(&a.name, &a.name, &expected, observed, at);
    } else {
        out.fail(&a.name, &a.name, &expected, observed, at);
    }
}

/// The error rate of the workload's ops intended while the fault lasted.
pub fn judge_survival(
    a: &SurvivalAssertion,
    s: &WorkloadSummary,
    fault: &FaultWindow,
    out: &mut Verdicts,
) {
    let (ops, errors) = within(s, Some(fault)).fold((0, 0), |(o, e), w| (o + w.ops, e + w.errors));
    let expected = format!(
        "error rate of `{}` while `{}` lasts ({} to {}) <= {}%",
        a.workload,
        a.fault,
        format_offset_ms(fault.start_ms),
        format_offset_ms(fault.end_ms),
        a.max_error_rate
    );
    if ops == 0 {
        out.fail(
            &a.name,
            &a.name,
            &expected,
            "no operation was intended while the fault lasted".into(),
            Some(fault.start_ms),
        );
        return;
    }
    let rate = 100.0 * errors as f64 / ops as f64;
    let kinds: Vec<String> = within(s, Some(fault))
        .flat_map(|w| w.errors_by_kind.iter())
        .fold(
            std::collections::BTreeMap::<&str, u64>::new(),
            |mut m, (k, v)| {
                *m.entry(k.as_str()).or_default() += v;
                m
            },
        )
        .into_iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let observed = format!(
        "{rate:.2}% ({errors} errors of {ops} operations{})",
        if kinds.is_empty() {
            String::new()
        } else {
            format!(": {}", kinds.join(", "))
        }
    );
    if rate <= a.max_error_rate {
        out.pass(&a.name, &a.name, &expected, observed, Some(fault.start_ms));
    } else {
        out.fail(&a.name, &a.name, &expected, observed, Some(fault.start_ms));
    }
}
