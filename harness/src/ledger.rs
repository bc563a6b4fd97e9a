//! The ack ledger: every write a workload made, classified by what the client was told
//! (acknowledged, refused, or no answer), compared with what a read-back after healing found.
//! Also the acknowledgement timeline (who acknowledged what, when) that failover verdicts use.
//!
//! The ledger needs no bookkeeping during the load: a ledger workload writes a distinct key (or
//! message) per op index, and the op index is recovered from each record's intended start
//! (`intended = start + n / rate`, exact for any rate the generator accepts: at most 100 k/s
//! means at least 10 µs between ops, against 1 µs of rounding).
//!
//! invariant: pure functions of a `WorkloadRecord` and a read-back; no I/O here.

use std::collections::HashMap;

use crate::journal::{AckEvidence, AckRun, LedgerEvidence};
use crate::load::{ErrorKind, OpRecord, Outcome, WorkloadRecord};

/// What a client learnt about one write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteStatus {
    Acked,
    /// Refused: known not to be applied.
    Failed,
    /// No answer: it may or may not have been applied.
    Indeterminate,
}

pub fn status(op: &OpRecord) -> WriteStatus {
    match op.outcome.outcome() {
        Outcome::Ok => WriteStatus::Acked,
        Outcome::Error(
            ErrorKind::Timeout
            | ErrorKind::Io
            | ErrorKind::Abandoned
            | ErrorKind::Protocol
            | ErrorKind::Other,
        ) => WriteStatus::Indeterminate,
        Outcome::Error(ErrorKind::Connect | ErrorKind::Status(_) | ErrorKind::Server(_)) => {
            WriteStatus::Failed
        }
    }
}

/// The op index of a record (see the module docs for why this is exact).
pub fn op_index(record: &WorkloadRecord, op: &OpRecord) -> u64 {
    let since_start = op.intended_us.saturating_sub(record.started_us) as f64;
    (since_start * record.rate_per_sec / 1e6).round() as u64
}

fn done_ms(op: &OpRecord) -> i64 {
    ((op.intended_us + op.latency_us) / 1000) as i64
}

/// The acknowledgement timeline. `default_by` names the acknowledging side for ops that carry
/// no tag (a workload with one fixed server).
pub fn ack_evidence(record: &WorkloadRecord, default_by: &str) -> AckEvidence {
    let mut ops: Vec<&OpRecord> = record.ops.iter().collect();
    ops.sort_by_key(|op| op.intended_us + op.latency_us);
    let mut runs: Vec<AckRun> = Vec::new();
    for op in ops {
        let by =
            (status(op) == WriteStatus::Acked).then(|| match record.tags.get(op.tag as usize) {
                Some(tag) if op.tag != 0 => tag.clone(),
                _ => default_by.to_string(),
            });
        let at = done_ms(op);
        match runs.last_mut() {
            Some(run) if run.by == by => {
                run.to_ms = at;
                run.ops += 1;
            }
            _ => runs.push(AckRun {
                from_ms: at,
                to_ms: at,
                by,
                ops: 1,
            }),
        }
    }
    AckEvidence {
        workload: record.plan_name.clone(),
        runs,
    }
}

/// Who acknowledged the last write that completed before `start_ms` (the leader a failover
/// replaces).
pub fn last_acker_before(acks: &AckEvidence, start_ms: i64) -> Option<String> {
    acks.runs
        .iter()
        .rev()
        .find(|r| r.by.is_some() && r.from_ms < start_ms)
        .and_then(|r| r.by.clone())
}

/// What a read-back found: op index -> how many times (1 for a key store; messages may repeat),
/// plus op indices found holding another op's value.
#[derive(Debug, Clone, Default)]
pub struct ReadBack {
    pub found: HashMap<u64, u32>,
    pub stale: u64,
    pub read_from: String,
}

/// Compares the ledger with the read-back.
pub fn compare(record: &WorkloadRecord, back: &ReadBack) -> LedgerEvidence {
    let mut out = LedgerEvidence {
        workload: record.plan_name.clone(),
        read_from: back.read_from.clone(),
        stale: back.stale,
        ..LedgerEvidence::default()
    };
    for op in &record.ops {
        let n = op_index(record, op);
        let seen = back.found.get(&n).copied().unwrap_or(0);
        if seen > 1 {
            out.duplicated += 1;
        }
        match status(op) {
            WriteStatus::Acked => {
                out.acked += 1;
                if seen == 0 {
                    out.lost += 1;
                    let at = done_ms(op);
                    out.lost_first_ms = Some(out.lost_first_ms.map_or(at, |t| t.min(at)));
                    out.lost_last_ms = Some(out.lost_last_ms.map_or(at, |t| t.max(at)));
                    if out.lost_sample.len() < 20 {
                        out.lost_sample.push(n);
                    }
                }
            }
            WriteStatus::Failed => {
                out.failed += 1;
                if seen > 0 {
                    out.failed_but_present += 1;
                }
            }
            WriteStatus::Indeterminate => {
                out.indeterminate += 1;
                if seen > 0 {
                    out.indeterminate_present += 1;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
