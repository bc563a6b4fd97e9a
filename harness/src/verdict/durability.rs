//! Judges what survives: acknowledged writes lost (RPO, from the ack ledger's read-back) and an
//! old primary's return as a replica.

use super::{Verdicts, when};
use crate::journal::{FaultWindow, LedgerEvidence, RoleEvidence};
use crate::plan::{RejoinAssertion, RpoAssertion};
use crate::units::{format_duration, format_offset_ms};

pub fn judge_rpo(a: &RpoAssertion, l: &LedgerEvidence, faults: &[FaultWindow], out: &mut Verdicts) {
    let mut limits = Vec::new();
    if let Some(n) = a.max_lost {
        limits.push(format!("at most {n} acknowledged writes lost"));
    }
    if let Some(w) = a.max_lost_window {
        limits.push(format!(
            "lost writes acknowledged within a span of at most {}",
            format_duration(w)
        ));
    }
    let expected = format!(
        "`{}` read back after healing: {}",
        a.workload,
        limits.join(", ")
    );
    let span_ms = match (l.lost_first_ms, l.lost_last_ms) {
        (Some(first), Some(last)) => Some(last - first),
        _ => None,
    };
    let mut observed = format!("{} of {} acknowledged writes lost", l.lost, l.acked);
    if let (Some(first), Some(span)) = (l.lost_first_ms, span_ms) {
        observed.push_str(&format!(
            ", acknowledged over a span of {} starting {} (e.g. ops {:?})",
            format_duration(std::time::Duration::from_millis(span as u64)),
            when(first, faults),
            &l.lost_sample[..l.lost_sample.len().min(5)]
        ));
    }
    observed.push_str(&format!(
        "; {} refused ({} present anyway), {} unanswered ({} applied), {} duplicated, {} stale; read from {}",
        l.failed, l.failed_but_present, l.indeterminate, l.indeterminate_present, l.duplicated, l.stale, l.read_from
    ));
    if l.acked == 0 {
        observed.push_str("; nothing was acknowledged, so the ledger proves nothing");
    }
    let count_ok = a.max_lost.is_none_or(|n| l.lost <= n);
    let window_ok = a
        .max_lost_window
        .is_none_or(|w| span_ms.is_none_or(|s| s as u128 <= w.as_millis()));
    let at = l.lost_first_ms;
    if count_ok && window_ok && l.acked > 0 {
        out.pass(&a.name, &a.name, &expected, observed, at);
    } else {
        out.fail(&a.name, &a.name, &expected, observed, at);
    }
}

pub fn judge_rejoin(
    a: &RejoinAssertion,
    r: &RoleEvidence,
    faults: &[FaultWindow],
    out: &mut Verdicts,
) {
    let healed = faults.iter().map(|f| f.end_ms).max().unwrap_or(0);
    let expected = format!(
        "`{}` is a replica with its link to the primary up within {} after the last fault healed",
        a.node,
        format_duration(a.within)
    );
    let following = r.following.as_deref().unwrap_or("nothing");
    let mut observed = format!(
        "role `{}`, following {following}, link {} when checked {} after the last fault healed",
        r.role,
        if r.link_up { "up" } else { "down" },
        format_offset_ms(r.at_ms - healed)
    );
    // The check runs once the load is over; the cluster's log dates the change itself.
    let since = match r.reconfigured_ms {
        Some(at) => {
            observed.push_str(&format!(
                "; the cluster logged converting it to a replica {} after the heal",
                format_offset_ms(at - healed)
            ));
            at
        }
        None => r.at_ms,
    };
    let in_time = (since - healed) as u128 <= a.within.as_millis();
    if r.role == "slave" && r.link_up && in_time {
        out.pass(&a.name, &a.name, &expected, observed, Some(r.at_ms));
    } else {
        out.fail(&a.name, &a.name, &expected, observed, Some(r.at_ms));
    }
}
