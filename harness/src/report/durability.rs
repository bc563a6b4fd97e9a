//! Report sections for durability and failover evidence: the ack ledgers, and per role-changing
//! fault the failover timeline (fault, detection, promotion, switch, first acknowledged write).

use std::fmt::Write as _;

use crate::journal::{Evidence, FaultWindow, Journal, push_gaps};
use crate::units::format_offset_ms;

/// Cluster events that mark the stages of a failover, in the order they happen.
const STAGES: &[(&str, &str)] = &[
    ("+sdown", "detection: one sentinel calls it down"),
    ("+odown", "detection: quorum agrees it is down"),
    ("+elected-leader", "a sentinel is elected to fail over"),
    ("+promoted-slave", "promotion: a replica is primary"),
    ("+switch-master", "the sentinels switch clients to it"),
    ("leader-elected", "a new partition leader is elected"),
    ("+convert-to-slave", "the old primary is made a replica"),
];

pub fn render(out: &mut String, j: &Journal) {
    let e = &j.evidence;
    if !e.ledgers.is_empty() {
        let _ = writeln!(
            out,
            "\n## Ack ledgers\n\n| workload | read from | acked | lost | lost span | refused (present) | unanswered (present) | duplicated | stale |\n|---|---|---|---|---|---|---|---|---|"
        );
        for l in &e.ledgers {
            let span = match (l.lost_first_ms, l.lost_last_ms) {
                (Some(a), Some(b)) => format!("{} .. {}", format_offset_ms(a), format_offset_ms(b)),
                _ => "none".into(),
            };
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {span} | {} ({}) | {} ({}) | {} | {} |",
                l.workload,
                l.read_from,
                l.acked,
                l.lost,
                l.failed,
                l.failed_but_present,
                l.indeterminate,
                l.indeterminate_present,
                l.duplicated,
                l.stale
            );
        }
    }
    for fault in &j.experiment.faults {
        failover_timeline(out, e, fault);
    }
    liveness(out, e);
}

/// Cassandra: each liveness change a node pushed to Faultline, next to that node's log line.
fn liveness(out: &mut String, e: &Evidence) {
    let gaps = push_gaps(&e.cluster_events);
    if gaps.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n## Cassandra liveness: pushed to Faultline vs logged by the node\n\n| node | peer | change | pushed at | push minus the node's log line |\n|---|---|---|---|---|"
    );
    for g in &gaps {
        let _ = writeln!(
            out,
            "| `{}` | `{}` | {} | {} | {} ms |",
            g.node,
            g.peer,
            if g.up { "UP" } else { "DOWN" },
            format_offset_ms(g.pushed_ms),
            g.gap_ms
        );
    }
}

/// The stages after one fault, each the earliest matching event logged after it started.
fn failover_timeline(out: &mut String, e: &Evidence, fault: &FaultWindow) {
    let start = fault.start_ms;
    let mut rows: Vec<(i64, String, String)> = Vec::new();
    for (event, meaning) in STAGES {
        if let Some(found) = e
            .cluster_events
            .iter()
            .filter(|c| c.at_ms >= start && c.event == *event)
            .min_by_key(|c| c.at_ms)
        {
            rows.push((
                found.at_ms,
                (*meaning).to_string(),
                format!("`{}` {} {}", found.node, found.event, found.detail),
            ));
        }
    }
    if rows.is_empty() {
        return;
    }
    for acks in &e.acks {
        let before = crate::ledger::last_acker_before(acks, start);
        if let Some(run) = acks
            .runs
            .iter()
            .find(|r| r.from_ms >= start && r.by.is_some() && r.by != before)
        {
            rows.push((
                run.from_ms,
                "first write acknowledged by a new leader".into(),
                format!(
                    "`{}` by {}",
                    acks.workload,
                    run.by.as_deref().unwrap_or("?")
                ),
            ));
        }
    }
    rows.sort_by_key(|r| r.0);
    let _ = writeln!(
        out,
        "\n## Failover after `{}`\n\n| t | since the fault | stage | evidence |\n|---|---|---|---|",
        fault.name
    );
    let _ = writeln!(
        out,
        "| {} | +0s | fault applied | {} on {} |",
        format_offset_ms(start),
        fault.kind,
        fault.target
    );
    for (at, stage, evidence) in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {stage} | {} |",
            format_offset_ms(at),
            format_offset_ms(at - start),
            evidence.replace('|', "\\|")
        );
    }
}
