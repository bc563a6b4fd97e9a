use super::*;
use crate::load::{OutcomeCode, WorkloadRecord};

/// A 100/s workload started at t=1 s whose ops are given as (outcome, tag, latency ms).
fn record(ops: &[(Outcome, u8, u64)]) -> WorkloadRecord {
    let started_us = 1_000_000;
    WorkloadRecord {
        plan_name: "writes".into(),
        rate_per_sec: 100.0,
        ops: ops
            .iter()
            .enumerate()
            .map(|(i, &(outcome, tag, latency_ms))| OpRecord {
                // The generator truncates to whole µs; 10 ms apart.
                intended_us: started_us + i as u64 * 10_000,
                latency_us: latency_ms * 1000,
                outcome: OutcomeCode::from(outcome),
                tag,
                service_us: 0,
            })
            .collect(),
        tags: vec![
            String::new(),
            "127.0.1.1:6379".into(),
            "127.0.1.2:6379".into(),
        ],
        error_samples: Default::default(),
        sched_lag: crate::load::latency_histogram(),
        intended_ops: ops.len() as u64,
        dispatched_ops: ops.len() as u64,
        started_us,
        schedule_end_us: started_us + ops.len() as u64 * 10_000,
        ended_us: started_us + ops.len() as u64 * 10_000,
        cancelled_at_us: None,
        counters: Default::default(),
    }
}

const OK: Outcome = Outcome::Ok;
const TIMEOUT: Outcome = Outcome::Error(ErrorKind::Timeout);
const REFUSED: Outcome = Outcome::Error(ErrorKind::Connect);

fn back(found: &[(u64, u32)]) -> ReadBack {
    ReadBack {
        found: found.iter().copied().collect(),
        stale: 0,
        read_from: "127.0.1.2:6379".into(),
    }
}

#[test]
fn op_index_is_recovered_from_intended_times_at_every_rate() {
    for rate in [1.0, 3.0, 7.0, 100.0, 333.0, 99_999.0, 100_000.0] {
        let mut r = record(&[]);
        r.rate_per_sec = rate;
        for n in [0u64, 1, 2, 999, 123_457, 9_999_999] {
            let offset_ns = (n as f64 * 1e9 / rate).round() as u64;
            let op = OpRecord {
                intended_us: r.started_us + offset_ns / 1000,
                latency_us: 0,
                outcome: OutcomeCode::from(OK),
                tag: 0,
                service_us: 0,
            };
            assert_eq!(op_index(&r, &op), n, "rate {rate}, op {n}");
        }
    }
}

#[test]
fn lost_failed_and_indeterminate_writes_are_told_apart() {
    // op 0 acked+found, 1 acked+lost, 2 refused+absent, 3 refused but present, 4 timeout+present,
    // 5 timeout+absent, 6 acked+found twice, 7 acked+lost.
    let r = record(&[
        (OK, 1, 1),
        (OK, 1, 1),
        (REFUSED, 0, 1),
        (REFUSED, 0, 1),
        (TIMEOUT, 0, 500),
        (TIMEOUT, 0, 500),
        (OK, 2, 1),
        (OK, 2, 1),
    ]);
    let ledger = compare(&r, &back(&[(0, 1), (3, 1), (4, 1), (6, 2)]));
    assert_eq!(
        (ledger.acked, ledger.failed, ledger.indeterminate),
        (4, 2, 2)
    );
    assert_eq!(ledger.lost, 2);
    assert_eq!(ledger.lost_sample, vec![1, 7]);
    // Acknowledged at 1.010 s + 1 ms and 1.070 s + 1 ms.
    assert_eq!(
        (ledger.lost_first_ms, ledger.lost_last_ms),
        (Some(1011), Some(1071))
    );
    assert_eq!(ledger.failed_but_present, 1);
    assert_eq!(ledger.indeterminate_present, 1);
    assert_eq!(ledger.duplicated, 1);
}

#[test]
fn nothing_lost_when_everything_acked_is_found() {
    let r = record(&[(OK, 1, 1), (OK, 1, 1), (REFUSED, 0, 1)]);
    let ledger = compare(&r, &back(&[(0, 1), (1, 1)]));
    assert_eq!((ledger.lost, ledger.lost_first_ms), (0, None));
}

#[test]
fn acks_are_run_length_encoded_in_completion_order_by_acknowledger() {
    // Op 2 is slow (timeout at 500 ms) and completes after ops 3 and 4.
    let r = record(&[
        (OK, 1, 1),
        (OK, 1, 1),
        (TIMEOUT, 0, 500),
        (REFUSED, 0, 1),
        (OK, 2, 1),
        (OK, 0, 1),
    ]);
    let acks = ack_evidence(&r, "fixed");
    let runs: Vec<(i64, i64, Option<&str>, u64)> = acks
        .runs
        .iter()
        .map(|a| (a.from_ms, a.to_ms, a.by.as_deref(), a.ops))
        .collect();
    assert_eq!(
        runs,
        vec![
            (1001, 1011, Some("127.0.1.1:6379"), 2),
            (1031, 1031, None, 1),
            (1041, 1041, Some("127.0.1.2:6379"), 1),
            (1051, 1051, Some("fixed"), 1),
            (1520, 1520, None, 1),
        ]
    );
}
