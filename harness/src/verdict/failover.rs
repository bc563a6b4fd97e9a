//! Judges failover time: from a fault's start until writes are acknowledged again by a new
//! leader, as the client saw it (its acknowledgement timeline), cross-checked with the
//! cluster's own log (Sentinel's `+switch-master`, a Kafka leader election).
//! Also: whether the client retried (a producer's own count of messages sent again).
//!
//! Two shapes of evidence:
//! - servers (Redis): acks name the server that gave them; the old leader is the server of the
//!   last ack before the fault, and failover ends at the first ack by another server. An ack by
//!   the old leader after the fault means no failover happened (it came back instead).
//! - partitions (Kafka): acks name a partition; the fault's resolution lists the partitions the
//!   killed node led, and failover ends, per partition, at its first ack after the fault. The
//!   verdict takes the slowest.

use super::Verdicts;
use crate::journal::{AckEvidence, ClusterEvent, Evidence, FaultWindow, LEADER_SEEN};
use crate::load::WorkloadSummary;
use crate::plan::{FailoverAssertion, RetriesAssertion};
use crate::units::{format_duration, format_offset_ms};

/// Cluster log events that mark the end of a failover.
pub const FAILOVER_EVENTS: &[&str] = &["+switch-master", "leader-elected"];

pub fn judge(
    a: &FailoverAssertion,
    acks: &AckEvidence,
    fault: &FaultWindow,
    evidence: &Evidence,
    out: &mut Verdicts,
) {
    // A role-targeted fault takes effect after its role is resolved (a metadata round trip
    // after the planned time); measure from when the node was actually hit.
    let resolved = evidence.resolved_faults.iter().find(|r| r.fault == a.fault);
    let start = resolved.map_or(fault.start_ms, |r| r.at_ms.max(fault.start_ms));
    let max_ms = a.max.as_millis() as i64;
    let expected = format!(
        "writes of `{}` acknowledged by a new leader within {} of `{}` starting (client view), \
         the cluster's log agreeing within {}",
        a.workload,
        format_duration(a.max),
        a.fault,
        format_duration(a.agree_within)
    );
    let partitions: Vec<i32> = resolved.map(|r| r.partitions.clone()).unwrap_or_default();
    let client = if partitions.is_empty() {
        by_server(acks, start, fault.end_ms)
    } else {
        by_partition(acks, start, &partitions)
    };
    let client_ms = match client {
        Ok(ms) => ms,
        Err(observed) => {
            out.fail(&a.name, &a.name, &expected, observed, Some(start));
            return;
        }
    };
    let mut observed = format!(
        "client view: {} after `{}` started",
        format_offset_ms(client_ms.0),
        a.fault
    );
    observed = format!("{observed} ({})", client_ms.1);
    let mut passed = client_ms.0 <= max_ms;
    let topic = resolved.and_then(|r| selector_topic(&r.selector));
    let events = &evidence.cluster_events;
    let logged = if partitions.is_empty() {
        log_failover(events, start)
    } else {
        slowest_first(events, "leader-elected", start, topic, &partitions)
    };
    // Faultline's own sighting of the new leaders, free of the producer's retry backoff.
    let probed = slowest_first(events, LEADER_SEEN, start, topic, &partitions);
    match logged {
        Some(event) => {
            let log_ms = event.at_ms - start;
            let gap = client_ms.0 - log_ms;
            let what = match event.event.as_str() {
                "leader-elected" => format!("`{}` ({})", event.event, event.detail),
                _ => format!("`{}`", event.event),
            };
            observed.push_str(&format!(
                "; cluster log: {what} by `{}` at {} (client {} after it)",
                event.node,
                format_offset_ms(log_ms),
                format_offset_ms(gap)
            ));
            passed &= log_ms <= max_ms && gap.unsigned_abs() as u128 <= a.agree_within.as_millis();
            if let Some(seen) = probed {
                observed.push_str(&format!(
                    "; leader probe: new leader seen at {} (probe {} after it)",
                    format_offset_ms(seen.at_ms - start),
                    format_offset_ms(seen.at_ms - event.at_ms)
                ));
            }
        }
        None if evidence.cluster_events.is_empty() => {
            observed.push_str("; no cluster log was read for this system (client view only)");
        }
        None => {
            observed.push_str(&format!(
                "; the cluster logged no {} after the fault",
                FAILOVER_EVENTS.join(" / ")
            ));
            passed = false;
        }
    }
    let at = Some(start + client_ms.0);
    if passed {
        out.pass(&a.name, &a.name, &expected, observed, at);
    } else {
        out.fail(&a.name, &a.name, &expected, observed, at);
    }
}

/// (failover ms, how it was found) by acknowledging server.
fn by_server(acks: &AckEvidence, start: i64, end: i64) -> Result<(i64, String), String> {
    let old = crate::ledger::last_acker_before(acks, start).ok_or(
        "no write was acknowledged before the fault, so there is no old leader to replace",
    )?;
    for run in acks.runs.iter().filter(|r| r.to_ms >= start) {
        match &run.by {
            Some(by) if *by != old => {
                let at = run.from_ms.max(start);
                return Ok((
                    at - start,
                    format!("first acknowledged by `{by}`; before the fault by `{old}`"),
                ));
            }
            Some(_) if run.from_ms > start => {
                let when = if run.from_ms >= end {
                    "after the fault was healed"
                } else {
                    "during the fault"
                };
                return Err(format!(
                    "no new leader: the old leader `{old}` acknowledged writes again at {} ({when}), and no other server did before",
                    format_offset_ms(run.from_ms - start)
                ));
            }
            _ => {}
        }
    }
    Err(format!(
        "no server but the old leader `{old}` acknowledged a write after the fault started"
    ))
}

/// The slowest affected partition's failover.
fn by_partition(
    acks: &AckEvidence,
    start: i64,
    partitions: &[i32],
) -> Result<(i64, String), String> {
    let mut worst: Option<(i64, i32)> = None;
    for p in partitions {
        let tag = format!("p{p}");
        let first = acks
            .runs
            .iter()
            // Strictly after the hit: acks completing in the same millisecond were the old
            // leader's, already on the wire.
            .find(|r| r.by.as_deref() == Some(tag.as_str()) && r.from_ms > start)
            .map(|r| r.from_ms - start)
            .ok_or_else(|| format!("partition {p} (led by the killed node) acknowledged no write after the fault started"))?;
        if worst.is_none_or(|(ms, _)| first > ms) {
            worst = Some((first, *p));
        }
    }
    let (ms, p) = worst.ok_or("the fault hit no partition")?;
    Ok((
        ms,
        format!("slowest of partitions {partitions:?}: partition {p}"),
    ))
}

/// The earliest failover event the cluster logged after `start`.
/// Kafka: per affected partition, the first leader election the brokers logged after the
/// fault; the slowest of them (`None` if a partition has none).
/// Of `partitions`, the one whose first `event` (a `leader-elected` log line, or a `leader-seen`
/// probe answer) after `start` came last.
fn slowest_first<'e>(
    events: &'e [ClusterEvent],
    event: &str,
    start: i64,
    topic: Option<&str>,
    partitions: &[i32],
) -> Option<&'e ClusterEvent> {
    let mut slowest: Option<&ClusterEvent> = None;
    for &p in partitions {
        let first = events
            .iter()
            .filter(|e| e.at_ms >= start && e.event == event)
            .filter(|e| {
                elected_partition(&e.detail)
                    .is_some_and(|(t, q)| q == p && topic.is_none_or(|want| want == t))
            })
            .min_by_key(|e| e.at_ms)?;
        if slowest.is_none_or(|s| first.at_ms > s.at_ms) {
            slowest = Some(first);
        }
    }
    slowest
}

/// The partition (`topic/p`) a `leader-elected` or `leader-seen` event's detail names
/// (`plays/0 epoch 1`).
fn elected_partition(detail: &str) -> Option<(&str, i32)> {
    let (name, _) = detail.split_once(' ')?;
    let (topic, p) = name.rsplit_once('/')?;
    Some((topic, p.parse().ok()?))
}

/// `leader:plays/0` or `followers:plays/0` -> `plays`.
fn selector_topic(selector: &str) -> Option<&str> {
    let (_, target) = selector.split_once(':')?;
    Some(target.rsplit_once('/')?.0)
}

fn log_failover(events: &[ClusterEvent], start: i64) -> Option<&ClusterEvent> {
    events
        .iter()
        .filter(|e| e.at_ms >= start && FAILOVER_EVENTS.contains(&e.event.as_str()))
        .min_by_key(|e| e.at_ms)
}

/// The client library's count of messages sent again (`message_retries`), against the bound.
pub fn judge_retries(a: &RetriesAssertion, s: &WorkloadSummary, out: &mut Verdicts) {
    let expected = format!(
        "the client of `{}` retries at least {} message(s) after failed attempts",
        a.workload, a.min
    );
    let Some(&retried) = s.counters.get("message_retries") else {
        out.fail(
            &a.name,
            &a.name,
            &expected,
            "this workload's client reports no retries (only Kafka producers do)".into(),
            None,
        );
        return;
    };
    let failed_batches: Vec<String> = s
        .counters
        .iter()
        .filter_map(|(k, v)| Some(format!("{} {v}", k.strip_prefix("failed_batches: ")?)))
        .collect();
    let observed = format!(
        "{retried} message(s) retried; failed batches: {}; {} op(s) failed",
        if failed_batches.is_empty() {
            "none".to_string()
        } else {
            failed_batches.join(", ")
        },
        s.total.errors
    );
    if retried >= a.min {
        out.pass(&a.name, &a.name, &expected, observed, None);
    } else {
        out.fail(&a.name, &a.name, &expected, observed, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elected(at_ms: i64, detail: &str) -> ClusterEvent {
        event(at_ms, "leader-elected", detail)
    }

    fn event(at_ms: i64, event: &str, detail: &str) -> ClusterEvent {
        ClusterEvent {
            at_ms,
            node: "k3".into(),
            event: event.into(),
            detail: detail.into(),
        }
    }

    #[test]
    fn the_slowest_affected_partition_election_after_the_fault_is_the_cluster_view() {
        let events = [
            elected(-500, "plays/0 epoch 1"),
            elected(4_000, "plays/0 epoch 2"),
            event(4_050, LEADER_SEEN, "plays/0 (probed every 100 ms)"),
            elected(4_500, "other/1 epoch 1"),
            elected(5_000, "plays/1 epoch 1"),
            event(5_090, LEADER_SEEN, "plays/1 (probed every 100 ms)"),
            elected(6_000, "plays/1 epoch 2"),
        ];
        // (topic, partitions, expected election time, expected probe sighting time)
        type Case<'c> = (Option<&'c str>, &'c [i32], Option<i64>, Option<i64>);
        let cases: &[Case] = &[
            (Some("plays"), &[0], Some(4_000), Some(4_050)),
            (Some("plays"), &[0, 1], Some(5_000), Some(5_090)),
            (None, &[1], Some(4_500), Some(5_090)),
            (Some("plays"), &[2], None, None),
            (Some("plays"), &[0, 2], None, None),
        ];
        for (topic, partitions, elected_at, seen_at) in cases {
            let got = slowest_first(&events, "leader-elected", 0, *topic, partitions);
            assert_eq!(
                got.map(|e| e.at_ms),
                *elected_at,
                "{topic:?} {partitions:?}"
            );
            let seen = slowest_first(&events, LEADER_SEEN, 0, *topic, partitions);
            assert_eq!(seen.map(|e| e.at_ms), *seen_at, "{topic:?} {partitions:?}");
        }
        assert_eq!(selector_topic("leader:plays/0"), Some("plays"));
        assert_eq!(selector_topic("controller"), None);
    }
}
