//! Judges that a service serves its fallback, successfully, whenever its breaker is not closed.

use super::{Verdicts, when};
use crate::journal::{BreakerEvidence, BreakerState, CallSeen, FaultWindow};
use crate::plan::FallbackAssertion;

pub fn judge(
    a: &FallbackAssertion,
    ev: &BreakerEvidence,
    faults: &[FaultWindow],
    out: &mut Verdicts,
) {
    let expected = format!(
        "while breaker `{}` is OPEN, every response of `{}` is a successful fallback (`fallback-open`)",
        a.breaker, a.workload
    );
    // OPEN periods as reported by the service.
    let mut open: Vec<(i64, i64)> = Vec::new();
    let end_ms = ev.calls.iter().map(|c| c.done_ms()).max().unwrap_or(0);
    for (i, t) in ev.transitions.iter().enumerate() {
        if t.to == BreakerState::Open {
            let to = ev.transitions.get(i + 1).map_or(end_ms, |next| next.at_ms);
            open.push((t.at_ms, to));
        }
    }
    if open.is_empty() {
        out.fail(
            &a.name,
            &a.name,
            &expected,
            "inconclusive: the breaker never opened, so no fallback was needed".into(),
            None,
        );
        return;
    }
    let during: Vec<_> = ev
        .calls
        .iter()
        .filter(|c| {
            open.iter()
                .any(|&(from, to)| c.intended_ms() >= from && c.done_ms() <= to)
        })
        .collect();
    let failed: Vec<_> = during
        .iter()
        .filter(|c| !c.ok() || c.seen() != CallSeen::FallbackOpen)
        .collect();
    match failed.first() {
        None if during.is_empty() => out.fail(
            &a.name,
            &a.name,
            &expected,
            "inconclusive: no request arrived while the breaker was OPEN".into(),
            None,
        ),
        None => out.pass(
            &a.name,
            &a.name,
            &expected,
            format!(
                "{} of {} responses while OPEN were successful fallbacks",
                during.len(),
                during.len()
            ),
            None,
        ),
        Some(first) => {
            let errors = failed.iter().filter(|c| !c.ok()).count();
            out.fail(
                &a.name,
                &a.name,
                &expected,
                format!(
                    "{} of {} responses while OPEN were not successful fallbacks ({errors} errors); the first {}",
                    failed.len(),
                    during.len(),
                    when(first.intended_ms(), faults)
                ),
                Some(first.intended_ms()),
            )
        }
    }
}
