//! Verdicts: each assertion of the plan judged from the run's evidence. Every check can fail, and
//! a failed verdict states what was expected and what was observed, with times relative to the
//! faults.
//!
//! invariant: checkers read only journal data (summaries, evidence, fault windows), so a recorded
//! journal can be re-judged offline and in tests.

mod availability;
mod breaker;
mod durability;
mod failover;
mod fallback;
mod slo;

pub use breaker::CALL_GRACE_MS;

use crate::journal::{Evidence, FaultWindow, Verdict};
use crate::load::WorkloadSummary;
use crate::plan::Assertion;
use crate::units::format_offset_ms;

/// Judges every assertion; assertions whose evidence is missing fail with that as the reason.
pub fn judge(
    assertions: &[Assertion],
    timeline: &[WorkloadSummary],
    evidence: &Evidence,
    faults: &[FaultWindow],
) -> Vec<Verdict> {
    let mut out = Verdicts::default();
    for summary in timeline {
        slo::judge_generator(summary, &mut out);
    }
    for assertion in assertions {
        match assertion {
            Assertion::Breaker(a) => match breaker_evidence(evidence, &a.service, &a.breaker) {
                Some(ev) => breaker::judge(a, ev, faults, &mut out),
                None => out.missing(&a.name, "breaker evidence"),
            },
            Assertion::Fallback(a) => match breaker_evidence(evidence, &a.service, &a.breaker) {
                Some(ev) => fallback::judge(a, ev, faults, &mut out),
                None => out.missing(&a.name, "breaker evidence"),
            },
            Assertion::Slo(a) => match timeline.iter().find(|s| s.name == a.workload) {
                Some(summary) => slo::judge(a, summary, &mut out),
                None => out.missing(&a.name, "workload summary"),
            },
            Assertion::Failover(a) => {
                match (
                    evidence.acks.iter().find(|e| e.workload == a.workload),
                    faults.iter().find(|f| f.name == a.fault),
                ) {
                    (Some(acks), Some(fault)) => {
                        failover::judge(a, acks, fault, evidence, &mut out)
                    }
                    (None, _) => out.missing(&a.name, "acknowledgement timeline"),
                    (_, None) => out.missing(&a.name, "fault window"),
                }
            }
            Assertion::Rpo(a) => match evidence.ledgers.iter().find(|l| l.workload == a.workload) {
                Some(ledger) => durability::judge_rpo(a, ledger, faults, &mut out),
                None => out.missing(&a.name, "ledger read-back"),
            },
            Assertion::Rto(a) => match summary_and_fault(timeline, faults, &a.workload, &a.fault) {
                Ok((summary, fault)) => availability::judge_rto(a, summary, fault, &mut out),
                Err(what) => out.missing(&a.name, what),
            },
            Assertion::LocalQuorumSurvival(a) => {
                match summary_and_fault(timeline, faults, &a.workload, &a.fault) {
                    Ok((summary, fault)) => {
                        availability::judge_survival(a, summary, fault, &mut out)
                    }
                    Err(what) => out.missing(&a.name, what),
                }
            }
            Assertion::StaleReads(a) => match timeline.iter().find(|s| s.name == a.workload) {
                Some(summary) => {
                    let fault = a
                        .fault
                        .as_ref()
                        .map(|f| faults.iter().find(|w| &w.name == f));
                    match fault {
                        Some(None) => out.missing(&a.name, "fault window"),
                        Some(Some(window)) => {
                            availability::judge_stale_reads(a, summary, Some(window), &mut out)
                        }
                        None => availability::judge_stale_reads(a, summary, None, &mut out),
                    }
                }
                None => out.missing(&a.name, "workload summary"),
            },
            Assertion::Retries(a) => match timeline.iter().find(|s| s.name == a.workload) {
                Some(summary) => failover::judge_retries(a, summary, &mut out),
                None => out.missing(&a.name, "workload summary"),
            },
            Assertion::RejoinsAsReplica(a) => {
                match evidence.roles.iter().find(|r| r.node == a.node) {
                    Some(role) => durability::judge_rejoin(a, role, faults, &mut out),
                    None => out.missing(&a.name, "role observation"),
                }
            }
        }
    }
    out.items
}

/// The workload's summary and the fault's window an availability assertion reads, or what is
/// missing.
fn summary_and_fault<'t>(
    timeline: &'t [WorkloadSummary],
    faults: &'t [FaultWindow],
    workload: &str,
    fault: &str,
) -> Result<(&'t WorkloadSummary, &'t FaultWindow), &'static str> {
    let summary = timeline
        .iter()
        .find(|s| s.name == workload)
        .ok_or("workload summary")?;
    let window = faults
        .iter()
        .find(|f| f.name == fault)
        .ok_or("fault window")?;
    Ok((summary, window))
}

fn breaker_evidence<'e>(
    evidence: &'e Evidence,
    service: &str,
    breaker: &str,
) -> Option<&'e crate::journal::BreakerEvidence> {
    evidence
        .breakers
        .iter()
        .find(|b| b.service == service && b.breaker == breaker)
}

/// Collects verdicts.
#[derive(Default)]
pub struct Verdicts {
    pub items: Vec<Verdict>,
}

impl Verdicts {
    fn push(
        &mut self,
        id: &str,
        assertion: &str,
        passed: bool,
        expected: &str,
        observed: String,
        at_ms: Option<i64>,
    ) {
        self.items.push(Verdict {
            id: id.to_string(),
            assertion: assertion.to_string(),
            passed,
            expected: expected.to_string(),
            observed,
            at_ms,
        });
    }
    fn pass(
        &mut self,
        id: &str,
        assertion: &str,
        expected: &str,
        observed: String,
        at_ms: Option<i64>,
    ) {
        self.push(id, assertion, true, expected, observed, at_ms);
    }
    fn fail(
        &mut self,
        id: &str,
        assertion: &str,
        expected: &str,
        observed: String,
        at_ms: Option<i64>,
    ) {
        self.push(id, assertion, false, expected, observed, at_ms);
    }
    fn missing(&mut self, assertion: &str, what: &str) {
        self.fail(
            assertion,
            assertion,
            &format!("{what} recorded by the run"),
            format!("no {what} was recorded"),
            None,
        );
    }
}

/// `at +7.2s after `slow` started` when a fault had started by then, else `at t=+5s`.
pub fn when(at_ms: i64, faults: &[FaultWindow]) -> String {
    match faults
        .iter()
        .filter(|f| f.start_ms <= at_ms)
        .max_by_key(|f| f.start_ms)
    {
        Some(f) => format!(
            "at {} after `{}` started (t={})",
            format_offset_ms(at_ms - f.start_ms),
            f.name,
            format_offset_ms(at_ms)
        ),
        None => format!("at t={}", format_offset_ms(at_ms)),
    }
}
