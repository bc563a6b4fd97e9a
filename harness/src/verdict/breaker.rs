//! Judges a circuit breaker against its documented behaviour, from evidence on both sides: the
//! transitions the service reports, the calls the downstream actually received, and what every
//! response said. The documented rule is replayed over the observed call outcomes (an oracle),
//! so "when should it have opened" is computed, not assumed.
//!
//! invariant: the oracle uses only the experiment's documented numbers, never the service's own
//! configuration: a deliberately misconfigured service must fail here.
//! invariant: the evidence assumes the named workload is the only traffic through the breaker.

use std::collections::VecDeque;

use super::{Verdicts, when};
use crate::journal::{BreakerEvidence, BreakerState, CallSeen, FaultWindow, ObservedCall};
use crate::plan::{BreakerAssertion, BreakerDoc, BreakerWindow};
use crate::units::format_duration;

/// Calls permitted just before a transition may reach the downstream shortly after it.
pub const CALL_GRACE_MS: i64 = 250;

/// A stretch of time in one reported state.
#[derive(Debug, Clone, Copy)]
struct Period {
    state: BreakerState,
    from_ms: i64,
    /// `None` when the run ended in this state.
    to_ms: Option<i64>,
    next: Option<BreakerState>,
}

fn periods(evidence: &BreakerEvidence, start_ms: i64) -> Vec<Period> {
    let mut out = Vec::new();
    let mut state = evidence
        .transitions
        .first()
        .map_or(BreakerState::Closed, |t| t.from);
    let mut from_ms = start_ms;
    for t in &evidence.transitions {
        out.push(Period {
            state,
            from_ms,
            to_ms: Some(t.at_ms),
            next: Some(t.to),
        });
        state = t.to;
        from_ms = t.at_ms;
    }
    out.push(Period {
        state,
        from_ms,
        to_ms: None,
        next: None,
    });
    out
}

/// The first moment the documented rule says "open" among `calls` (sorted by completion), and
/// the peak failure rate seen with enough calls.
#[derive(Debug, Clone, Copy, Default)]
struct Crossing {
    at_ms: Option<i64>,
    rate: f64,
    calls: usize,
    peak_rate: f64,
}

fn first_crossing(doc: &BreakerDoc, calls: &[&ObservedCall]) -> Crossing {
    let mut window: VecDeque<(i64, bool)> = VecDeque::new();
    let mut failures = 0usize;
    let mut result = Crossing::default();
    for call in calls {
        let failed = call.seen() == CallSeen::FallbackError;
        window.push_back((call.done_ms(), failed));
        failures += failed as usize;
        // Count windows keep the last N outcomes; time windows those completed in the last W.
        while let Some(&(done, _)) = window.front() {
            let expired = match doc.window {
                BreakerWindow::Calls(n) => window.len() as u64 > n,
                BreakerWindow::Time(w) => done <= call.done_ms() - w.as_millis() as i64,
            };
            if !expired {
                break;
            }
            failures -= window.pop_front().map_or(0, |(_, f)| f as usize);
        }
        let n = window.len();
        if (n as u64) < doc.minimum_calls.max(1) {
            continue;
        }
        let rate = 100.0 * failures as f64 / n as f64;
        result.peak_rate = result.peak_rate.max(rate);
        if rate > doc.failure_rate_above && failures as u64 >= doc.minimum_failures {
            return Crossing {
                at_ms: Some(call.done_ms()),
                rate,
                calls: n,
                peak_rate: result.peak_rate,
            };
        }
    }
    result
}

pub fn judge(
    a: &BreakerAssertion,
    ev: &BreakerEvidence,
    faults: &[FaultWindow],
    out: &mut Verdicts,
) {
    let doc = &a.documented;
    let tol = a.tolerance.as_millis() as i64;
    let start_ms = ev.calls.first().map_or(0, |c| c.intended_ms()).min(0);
    let end_ms = ev.calls.iter().map(|c| c.done_ms()).max().unwrap_or(0);
    let periods = periods(ev, start_ms);
    let mut calls: Vec<&ObservedCall> = ev
        .calls
        .iter()
        .filter(|c| matches!(c.seen(), CallSeen::Live | CallSeen::FallbackError))
        .collect();
    calls.sort_by_key(|c| c.done_ms());
    let window_text = match doc.window {
        BreakerWindow::Time(w) => format!("a {} window", format_duration(w)),
        BreakerWindow::Calls(n) => format!("the last {n} calls"),
    };
    let rule = format!(
        "opens when more than {}% of calls fail over {window_text} (at least {} calls{})",
        doc.failure_rate_above,
        doc.minimum_calls,
        if doc.minimum_failures > 0 {
            format!(", {} failures", doc.minimum_failures)
        } else {
            String::new()
        }
    );
    let id = |check: &str| format!("{}/{check}", a.name);

    // 1. Opens when, and only when, the documented rule says so.
    let mut opened_any = false;
    let mut problem: Option<(String, Option<i64>)> = None;
    let mut openings = Vec::new();
    for p in periods.iter().filter(|p| p.state == BreakerState::Closed) {
        let in_period: Vec<&ObservedCall> = calls
            .iter()
            .copied()
            .filter(|c| {
                c.done_ms() >= p.from_ms && p.to_ms.is_none_or(|to| c.done_ms() <= to + tol)
            })
            .collect();
        let crossing = first_crossing(doc, &in_period);
        let opened_at = p.to_ms.filter(|_| p.next == Some(BreakerState::Open));
        opened_any |= opened_at.is_some();
        let verdict = match (crossing.at_ms, opened_at) {
            (Some(expected), Some(observed)) if (observed - expected).abs() <= tol => {
                openings.push(format!(
                    "opened {} (rule crossed {}, {:.1}% of {} calls)",
                    when(observed, faults),
                    when(expected, faults),
                    crossing.rate,
                    crossing.calls
                ));
                None
            }
            (Some(expected), Some(observed)) => Some((
                format!(
                    "opened {}, but the documented rule crossed {} ({:.1}% of {} calls failed): off by {}",
                    when(observed, faults),
                    when(expected, faults),
                    crossing.rate,
                    crossing.calls,
                    format_duration(std::time::Duration::from_millis(
                        (observed - expected).unsigned_abs()
                    ))
                ),
                Some(observed),
            )),
            (Some(expected), None) => Some((
                format!(
                    "never opened, although the documented rule crossed {} ({:.1}% of {} calls failed)",
                    when(expected, faults),
                    crossing.rate,
                    crossing.calls
                ),
                Some(expected),
            )),
            (None, Some(observed)) => Some((
                format!(
                    "opened {}, but the failure rate never exceeded {}% (peak {:.1}%)",
                    when(observed, faults),
                    doc.failure_rate_above,
                    crossing.peak_rate
                ),
                Some(observed),
            )),
            (None, None) => None,
        };
        if problem.is_none() {
            problem = verdict;
        }
    }
    let peak = first_crossing(doc, &calls).peak_rate;
    match problem {
        Some((observed, at)) => out.fail(&id("opens"), &a.name, &rule, observed, at),
        None if !opened_any => out.fail(
            &id("opens"),
            &a.name,
            &rule,
            format!("inconclusive: the breaker never opened and the failure rate peaked at {peak:.1}%, so the faults did not exercise it"),
            None,
        ),
        None => out.pass(&id("opens"), &a.name, &format!("{rule}, within {}", format_duration(a.tolerance)), openings.join("; "), None),
    }
    if !opened_any {
        return;
    }

    // 2. Stays open for the documented time.
    let expected = format!(
        "stays open {} (within {}) before letting probes through",
        format_duration(doc.open_for),
        format_duration(a.tolerance)
    );
    let open_ms = doc.open_for.as_millis() as i64;
    let mut seen = Vec::new();
    let mut bad = None;
    for p in periods.iter().filter(|p| p.state == BreakerState::Open) {
        let lasted = p.to_ms.unwrap_or(end_ms) - p.from_ms;
        let text = format!(
            "open {} for {}",
            when(p.from_ms, faults),
            format_duration(std::time::Duration::from_millis(lasted.max(0) as u64))
        );
        let wrong = match p.to_ms {
            Some(_) => (lasted - open_ms).abs() > tol,
            None => lasted > open_ms + tol,
        };
        if wrong && bad.is_none() {
            bad = Some((
                format!(
                    "{text}{}",
                    if p.to_ms.is_none() {
                        " until the run ended"
                    } else {
                        ""
                    }
                ),
                p.from_ms,
            ));
        }
        seen.push(text);
    }
    match bad {
        Some((text, at)) => out.fail(&id("stays-open"), &a.name, &expected, text, Some(at)),
        None => out.pass(&id("stays-open"), &a.name, &expected, seen.join("; "), None),
    }

    // 3. While OPEN the downstream receives nothing (black-box side).
    let arrivals_in = |from: i64, to: i64| {
        ev.arrivals_ms
            .iter()
            .filter(|&&t| t >= from && t <= to)
            .count()
    };
    let expected = format!(
        "`{}` receives no call while the breaker is OPEN (after a {CALL_GRACE_MS} ms grace for calls already under way)",
        a.downstream
    );
    let mut bad = None;
    let mut total_open_ms = 0;
    for p in periods.iter().filter(|p| p.state == BreakerState::Open) {
        let (from, to) = (p.from_ms + CALL_GRACE_MS, p.to_ms.unwrap_or(end_ms));
        total_open_ms += (to - from).max(0);
        let n = arrivals_in(from, to);
        if n > 0 && bad.is_none() {
            let first = ev
                .arrivals_ms
                .iter()
                .copied()
                .find(|&t| t >= from && t <= to);
            bad = Some((
                format!(
                    "{n} calls reached `{}` while OPEN {}, the first {}",
                    a.downstream,
                    when(p.from_ms, faults),
                    first.map_or(String::new(), |t| when(t, faults))
                ),
                first,
            ));
        }
    }
    match bad {
        Some((text, at)) => out.fail(&id("no-calls-while-open"), &a.name, &expected, text, at),
        None => out.pass(
            &id("no-calls-while-open"),
            &a.name,
            &expected,
            format!(
                "0 calls reached `{}` in {} of OPEN time",
                a.downstream,
                format_duration(std::time::Duration::from_millis(total_open_ms as u64))
            ),
            None,
        ),
    }

    // 4. HALF_OPEN lets exactly the permitted probes through.
    let expected = format!(
        "HALF_OPEN lets through at most {} calls: exactly {} (or all offered, if fewer) when the probes fail, and {}..={} when {} consecutive successes close it",
        doc.half_open_calls,
        doc.half_open_calls,
        doc.close_after_successes,
        doc.half_open_calls,
        doc.close_after_successes
    );
    let mut seen = Vec::new();
    let mut bad = None;
    for p in periods.iter().filter(|p| p.state == BreakerState::HalfOpen) {
        let to = p.to_ms.unwrap_or(end_ms);
        let n = arrivals_in(p.from_ms, to) as u64;
        let offered = ev
            .calls
            .iter()
            .filter(|c| c.done_ms() >= p.from_ms && c.intended_ms() <= to)
            .count() as u64;
        let (ok, ending) = match p.next {
            Some(BreakerState::Open) => (n == doc.half_open_calls.min(offered), "reopened"),
            Some(BreakerState::Closed) => (
                n >= doc.close_after_successes && n <= doc.half_open_calls,
                "closed",
            ),
            _ => (n <= doc.half_open_calls, "still half-open at the end"),
        };
        let text = format!(
            "HALF_OPEN {}: {n} calls reached `{}` ({offered} offered), then {ending}",
            when(p.from_ms, faults),
            a.downstream
        );
        if !ok && bad.is_none() {
            bad = Some((text.clone(), p.from_ms));
        }
        seen.push(text);
    }
    match (bad, seen.is_empty()) {
        (Some((text, at)), _) => {
            out.fail(&id("half-open-probes"), &a.name, &expected, text, Some(at))
        }
        (None, true) => out.fail(
            &id("half-open-probes"),
            &a.name,
            &expected,
            "the breaker never entered HALF_OPEN".into(),
            None,
        ),
        (None, false) => out.pass(
            &id("half-open-probes"),
            &a.name,
            &expected,
            seen.join("; "),
            None,
        ),
    }

    // 5. Closes once the fault is healed, and traffic returns.
    let healed_ms = faults.iter().map(|f| f.end_ms).max().unwrap_or(0);
    let expected = format!(
        "after the faults are healed ({}), the breaker closes again and calls reach `{}` again",
        when(healed_ms, faults),
        a.downstream
    );
    let last = periods.last().copied();
    let closed_after = periods.iter().rev().find(|p| {
        p.state == BreakerState::Closed && p.from_ms >= healed_ms && p.from_ms > start_ms
    });
    match (last, closed_after) {
        (Some(last), Some(p)) if last.state == BreakerState::Closed => {
            let n = arrivals_in(p.from_ms, end_ms);
            if n > 0 {
                out.pass(
                    &id("closes"),
                    &a.name,
                    &expected,
                    format!(
                        "closed {}; {n} calls reached `{}` afterwards",
                        when(p.from_ms, faults),
                        a.downstream
                    ),
                    Some(p.from_ms),
                );
            } else {
                out.fail(
                    &id("closes"),
                    &a.name,
                    &expected,
                    format!(
                        "closed {} but no call reached `{}` afterwards",
                        when(p.from_ms, faults),
                        a.downstream
                    ),
                    Some(p.from_ms),
                );
            }
        }
        (Some(last), _) => out.fail(
            &id("closes"),
            &a.name,
            &expected,
            format!(
                "the run ended with the breaker {:?} (since {})",
                last.state,
                when(last.from_ms, faults)
            ),
            Some(last.from_ms),
        ),
        (None, _) => {}
    }

    // 6. What responses say agrees with the reported states.
    let expected = "responses agree with the reported states: `fallback-open` only while not CLOSED, no `live` response completes while OPEN".to_string();
    let in_state = |t: i64, states: &[BreakerState], grace: i64| {
        periods.iter().any(|p| {
            states.contains(&p.state)
                && t >= p.from_ms - grace
                && p.to_ms.is_none_or(|to| t <= to + grace)
        })
    };
    let wrong_open = ev
        .calls
        .iter()
        .filter(|c| {
            c.seen() == CallSeen::FallbackOpen
                && !in_state(
                    c.done_ms(),
                    &[BreakerState::Open, BreakerState::HalfOpen],
                    CALL_GRACE_MS,
                )
        })
        .count();
    let wrong_live = ev
        .calls
        .iter()
        .filter(|c| {
            c.seen() == CallSeen::Live
                && in_state(c.done_ms(), &[BreakerState::Open], -CALL_GRACE_MS)
        })
        .count();
    if wrong_open + wrong_live == 0 {
        out.pass(
            &id("responses-match-reports"),
            &a.name,
            &expected,
            format!("all {} responses agree", ev.calls.len()),
            None,
        );
    } else {
        out.fail(&id("responses-match-reports"), &a.name, &expected, format!("{wrong_open} `fallback-open` responses outside OPEN/HALF_OPEN, {wrong_live} `live` responses inside OPEN"), None);
    }
}
