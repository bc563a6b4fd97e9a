//! Breaker behaviour as a table of scripted cases run through one helper, on a manual clock.

use super::*;
use crate::config::HumanDuration;

/// One scripted step. Calls are acquired and recorded at once unless held.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// `n` successful calls taking 1 ms.
    Succeed(u32),
    /// `n` failed calls taking 1 ms.
    Fail(u32),
    /// `n` successful calls taking this many ms.
    OkTaking(u32, u64),
    /// Move the clock.
    Wait(u64),
    Expect(State),
    /// The next acquire is rejected.
    Rejected,
    /// Acquire `n` permits and keep them (each must be granted).
    Hold(u32),
    /// Record the oldest held permit with this outcome.
    Release(Outcome),
}

use Outcome::{Failure, Success};
use State::{Closed, HalfOpen, Open};
use Step::*;

struct Case {
    name: &'static str,
    config: BreakerConfig,
    steps: Vec<Step>,
}

fn ms(ms: u64) -> HumanDuration {
    HumanDuration::from_millis(ms)
}

/// Runs the steps; returns the breaker for further inspection. Panics name the case and step.
fn run(case: &Case) -> (Breaker, Arc<ManualClock>) {
    assert_eq!(
        case.config.validate(),
        Ok(()),
        "case `{}` has an invalid config",
        case.name
    );
    let clock = Arc::new(ManualClock::new());
    let breaker = Breaker::with_clock("test", case.config.clone(), clock.clone());
    let mut held = VecDeque::new();
    for (index, step) in case.steps.iter().enumerate() {
        let at = format!("case `{}` step {index} `{step:?}`", case.name);
        let calls = |n: u32, outcome: Outcome, took: u64| {
            for call in 0..n {
                match breaker.try_acquire() {
                    Ok(permit) => breaker.record(permit, outcome, Duration::from_millis(took)),
                    Err(rejected) => {
                        panic!("{at}: call {call} rejected while {:?}", rejected.state)
                    }
                }
            }
        };
        match *step {
            Succeed(n) => calls(n, Success, 1),
            Fail(n) => calls(n, Failure, 1),
            OkTaking(n, took) => calls(n, Success, took),
            Wait(by) => clock.advance(Duration::from_millis(by)),
            Expect(state) => assert_eq!(breaker.state(), state, "{at}"),
            Rejected => assert!(breaker.try_acquire().is_err(), "{at}: expected a rejection"),
            Hold(n) => {
                for call in 0..n {
                    let permit = breaker.try_acquire();
                    assert!(permit.is_ok(), "{at}: held call {call} rejected");
                    held.extend(permit.ok());
                }
            }
            Release(outcome) => {
                let permit = held
                    .pop_front()
                    .unwrap_or_else(|| panic!("{at}: nothing held"));
                breaker.record(permit, outcome, Duration::from_millis(1));
            }
        }
    }
    (breaker, clock)
}

#[rustfmt::skip] // one case per block, steps on a line: a table, not code
fn cases() -> Vec<Case> {
    let default = BreakerConfig::default();
    let slow = BreakerConfig {
        minimum_calls: 100,
        slow_call_duration: Some(ms(40)),
        slow_call_rate_threshold: Some(80.0),
        ..default.clone()
    };
    let quick = BreakerConfig { minimum_calls: 2, ..default.clone() };
    vec![
        Case {
            name: "opens strictly above the threshold, not at exactly 50%",
            config: default.clone(),
            steps: vec![Succeed(5), Fail(5), Expect(Closed), Fail(1), Expect(Open), Rejected],
        },
        Case {
            name: "exactly 50% over many calls stays closed",
            config: default.clone(),
            steps: vec![Succeed(10), Fail(10), Expect(Closed)],
        },
        Case {
            name: "no decision below minimum_calls",
            config: default.clone(),
            steps: vec![Fail(9), Expect(Closed), Fail(1), Expect(Open)],
        },
        Case {
            name: "minimum_failures holds it closed (001-CB)",
            config: BreakerConfig { minimum_failures: 10, ..default.clone() },
            steps: vec![Succeed(1), Fail(9), Expect(Closed), Fail(1), Expect(Open)],
        },
        Case {
            name: "count window forgets calls older than the last N (004-CB)",
            config: BreakerConfig { window: BreakerWindow::Calls(10), ..default.clone() },
            steps: vec![Fail(5), Succeed(20), Fail(5), Expect(Closed), Fail(1), Expect(Open)],
        },
        Case {
            name: "time window forgets calls completed before it",
            config: default.clone(),
            // Without expiry, 6 failures + 4 successes would be 60% over 10 calls.
            steps: vec![Fail(6), Wait(10_001), Succeed(4), Expect(Closed), Fail(5), Expect(Closed), Fail(1), Expect(Open)],
        },
        Case {
            name: "calls at the window's edge still count",
            config: default.clone(),
            steps: vec![Fail(6), Wait(10_000), Succeed(4), Expect(Open)],
        },
        Case {
            name: "slow calls alone open it at the slow threshold (003-CB)",
            config: slow.clone(),
            steps: vec![Succeed(20), OkTaking(79, 41), Expect(Closed), OkTaking(1, 41), Expect(Open)],
        },
        Case {
            name: "a call exactly at slow_call_duration is not slow",
            config: slow.clone(),
            steps: vec![OkTaking(100, 40), Expect(Closed)],
        },
        Case {
            name: "slow calls do not open it without a slow threshold",
            config: BreakerConfig { slow_call_duration: Some(ms(40)), ..default.clone() },
            steps: vec![OkTaking(50, 1000), Expect(Closed)],
        },
        Case {
            name: "stays open for open_for, then half-opens on the next call",
            config: quick.clone(),
            steps: vec![Fail(2), Expect(Open), Wait(29_999), Rejected, Expect(Open), Wait(1), Hold(1), Expect(HalfOpen)],
        },
        Case {
            name: "half-open permits exactly half_open_max_calls",
            config: quick.clone(),
            steps: vec![Fail(2), Wait(30_000), Hold(5), Rejected, Rejected, Expect(HalfOpen)],
        },
        Case {
            name: "closes after close_after_successes consecutive successes, with a clean window",
            config: quick.clone(),
            steps: vec![
                Fail(2), Wait(30_000), Hold(5),
                Release(Success), Release(Success), Expect(HalfOpen), Release(Success), Expect(Closed),
                // The remaining half-open permits are stale now.
                Release(Failure), Release(Failure), Fail(1), Expect(Closed),
            ],
        },
        Case {
            name: "a failure in half-open reopens for a new open period",
            config: quick.clone(),
            steps: vec![
                Fail(2), Wait(30_000), Hold(3), Release(Success), Release(Success), Release(Failure),
                Expect(Open), Rejected, Wait(29_999), Rejected, Wait(1), Hold(1), Expect(HalfOpen),
            ],
        },
        Case {
            name: "a slow call in half-open reopens when slowness counts",
            config: BreakerConfig { minimum_calls: 2, ..slow.clone() },
            steps: vec![Fail(2), Wait(30_000), Succeed(1), OkTaking(1, 41), Expect(Open)],
        },
        Case {
            name: "outcomes of permits from an earlier state are ignored",
            config: quick.clone(),
            steps: vec![
                Hold(1), Fail(2), Expect(Open),
                Release(Success), Expect(Open), // closed-era permit
                Wait(30_000), Hold(1), Expect(HalfOpen),
                Release(Failure), Expect(Open), // half-open permit: counts
            ],
        },
        Case {
            name: "a closed-era failure cannot reopen a half-open breaker",
            config: quick.clone(),
            steps: vec![Hold(1), Fail(2), Wait(30_000), Succeed(1), Release(Failure), Expect(HalfOpen), Succeed(2), Expect(Closed)],
        },
    ]
}

#[test]
fn scripted_cases() {
    for case in cases() {
        run(&case);
    }
}

#[test]
fn transitions_are_recorded_with_reasons_and_times() {
    let case = Case {
        name: "full cycle",
        config: BreakerConfig::default(),
        steps: vec![
            Succeed(15),
            Fail(16),
            Wait(30_000),
            Succeed(3),
            Expect(Closed),
        ],
    };
    let (breaker, _clock) = run(&case);
    let snapshot = breaker.snapshot();
    let seen: Vec<_> = snapshot
        .transitions
        .iter()
        .map(|t| (t.from, t.to, t.reason.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (
                Closed,
                Open,
                "failure rate 51.61% > 50% over 31 calls (16 failed) in 10s window"
            ),
            (Open, HalfOpen, "open for 30s elapsed"),
            (HalfOpen, Closed, "3 consecutive successes in half-open"),
        ]
    );
    let start = ManualClock::START_UNIX_US;
    let times: Vec<_> = snapshot
        .transitions
        .iter()
        .map(|t| t.at_unix_us - start)
        .collect();
    assert_eq!(times, [0, 30_000_000, 30_000_000]);
}

#[test]
fn snapshot_serializes_in_the_documented_shape() {
    let case = Case {
        name: "open",
        config: BreakerConfig::default(),
        steps: vec![Fail(10)],
    };
    let (breaker, _clock) = run(&case);
    let json = serde_json::to_value(breaker.snapshot()).expect("serializes");
    assert_eq!(json["state"], "open");
    assert_eq!(json["config"]["window"]["time"], "10s");
    assert_eq!(json["transitions"][0]["from"], "closed");
    assert_eq!(json["transitions"][0]["to"], "open");
    assert_eq!(
        json["transitions"][0]["at_unix_us"],
        ManualClock::START_UNIX_US
    );
}

#[test]
fn transition_hook_sees_every_transition() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let clock = Arc::new(ManualClock::new());
    let config = BreakerConfig {
        minimum_calls: 1,
        ..BreakerConfig::default()
    };
    let breaker =
        Breaker::with_clock("hooked", config, clock.clone()).on_transition(Box::new(move |t| {
            sink.lock().unwrap_or_else(|p| p.into_inner()).push(t.to);
        }));
    if let Ok(permit) = breaker.try_acquire() {
        breaker.record(permit, Failure, Duration::ZERO);
    }
    clock.advance(Duration::from_secs(30));
    assert!(breaker.try_acquire().is_ok());
    assert_eq!(
        *seen.lock().unwrap_or_else(|p| p.into_inner()),
        [Open, HalfOpen]
    );
}
