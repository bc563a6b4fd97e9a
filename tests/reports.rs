//! Reports and checkers over recorded journals (journals of real runs, kept under
//! `fixtures/journals/`): rendering is deterministic and snapshot-tested after redaction, the
//! checkers reproduce the recorded verdicts from the recorded evidence, and tampered evidence
//! makes the right verdict fail.

use faultline::journal::{BreakerState, CallSeen, Journal, ObservedCall};
use faultline::redact::{redact_journal, redact_text};
use faultline::report::{read_journal, render_junit, render_markdown, write_all};
use faultline::verdict;
use faultline_tests::workspace_root;

fn fixture(name: &str) -> Journal {
    let path = workspace_root().join("tests/fixtures/journals").join(name);
    read_journal(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn rejudge(journal: &Journal) -> Vec<faultline::journal::Verdict> {
    verdict::judge(
        &journal.experiment.judged,
        &journal.timeline,
        &journal.evidence,
        &journal.experiment.faults,
    )
}

fn verdict<'j>(
    verdicts: &'j [faultline::journal::Verdict],
    suffix: &str,
) -> &'j faultline::journal::Verdict {
    verdicts
        .iter()
        .find(|v| v.id.ends_with(suffix))
        .unwrap_or_else(|| panic!("no verdict ending in `{suffix}`"))
}

#[test]
fn snapshots_of_recorded_journals() {
    insta::glob!("fixtures/journals/*.json", |path| {
        let journal = read_journal(path).unwrap_or_else(|e| panic!("{e}"));
        let redacted = redact_journal(&journal);
        insta::assert_snapshot!("markdown", redact_text(&render_markdown(&redacted)));
        insta::assert_snapshot!("junit", redact_text(&render_junit(&redacted)));
    });
}

#[test]
fn rendering_is_byte_identical_from_the_same_journal() {
    let journal = fixture("000-cb-pass.json");
    let base = std::env::temp_dir().join(format!("faultline-render-{}", std::process::id()));
    let (a, b) = (base.join("a"), base.join("b"));
    write_all(&journal, &a).expect("write a");
    let reread = read_journal(&a.join("journal.json")).expect("re-read");
    assert_eq!(reread, journal, "journal does not round-trip");
    write_all(&reread, &b).expect("write b");
    for file in ["journal.json", "report.md", "junit.xml"] {
        let (x, y) = (
            std::fs::read(a.join(file)).unwrap_or_default(),
            std::fs::read(b.join(file)).unwrap_or_default(),
        );
        assert!(!x.is_empty() && x == y, "{file} differs between renderings");
    }
    let _ = std::fs::remove_dir_all(&base);
}

/// Checkers are pure functions of journal data: re-judging reproduces the recorded verdicts.
#[test]
fn rejudging_recorded_evidence_reproduces_verdicts() {
    for name in [
        "000-cb-pass.json",
        "000-cb-single-probe.json",
        "001-redis-failover-pass.json",
    ] {
        let journal = fixture(name);
        assert_eq!(rejudge(&journal), journal.verdicts, "{name}");
    }
    let passing = fixture("000-cb-pass.json");
    assert!(passing.verdicts.iter().all(|v| v.passed));
    let control = fixture("000-cb-single-probe.json");
    assert!(!verdict(&control.verdicts, "/half-open-probes").passed);
}

/// Each breaker check fails when the evidence it reads is made wrong, one tampering per case.
#[test]
fn tampered_evidence_fails_the_matching_check() {
    type Tamper = fn(&mut Journal);
    let cases: Vec<(&str, Tamper)> = vec![
        ("/opens", |j| shift_first(j, BreakerState::Open, 5_000)),
        ("/stays-open", |j| {
            shift_first(j, BreakerState::HalfOpen, -8_000)
        }),
        ("/no-calls-while-open", |j| {
            let open = first(j, BreakerState::Open);
            j.evidence.breakers[0].arrivals_ms.push(open + 5_000);
            j.evidence.breakers[0].arrivals_ms.sort_unstable();
        }),
        ("/half-open-probes", |j| {
            let half = first(j, BreakerState::HalfOpen);
            let arrivals = &mut j.evidence.breakers[0].arrivals_ms;
            arrivals.extend([half + 1, half + 2]);
            arrivals.sort_unstable();
        }),
        ("/closes", |j| {
            let b = &mut j.evidence.breakers[0];
            b.transitions.pop();
        }),
        ("/responses-match-reports", |j| {
            let open = first(j, BreakerState::Open);
            j.evidence.breakers[0].calls.push(ObservedCall(
                open + 3_000,
                open + 3_001,
                CallSeen::Live,
                true,
            ));
        }),
        ("fallback/playback/recommendations", |j| {
            let open = first(j, BreakerState::Open);
            let calls = &mut j.evidence.breakers[0].calls;
            if let Some(c) = calls.iter_mut().find(|c| c.intended_ms() > open + 1_000) {
                c.3 = false;
            }
        }),
    ];
    let pristine = fixture("000-cb-pass.json");
    for (suffix, tamper) in cases {
        let mut journal = pristine.clone();
        tamper(&mut journal);
        let verdicts = rejudge(&journal);
        let v = verdict(&verdicts, suffix);
        assert!(!v.passed, "tampering for `{suffix}` was not caught: {v:?}");
        assert!(!v.expected.is_empty() && !v.observed.is_empty());
    }
}

/// The SLO and generator checks fail, with expected vs observed, when the recorded run does not
/// meet them: a latency limit below the recorded p99, an error budget below the recorded errors
/// (the no-fallback control's), and a generator that fell behind.
#[test]
fn slo_and_generator_checks_can_fail() {
    use faultline::plan::Assertion;
    let mut journal = fixture("000-cb-pass.json");
    for a in &mut journal.experiment.judged {
        if let Assertion::Slo(slo) = a {
            if slo.max_p99.is_some() {
                slo.max_p99 = Some(std::time::Duration::from_micros(1));
            }
            slo.max_error_rate = slo.max_error_rate.map(|_| -1.0);
        }
    }
    journal.timeline[0].generator_valid = false;
    journal.timeline[0].invalid_reason = Some("tampered".into());
    let verdicts = rejudge(&journal);
    for suffix in [
        "slo/play/before/p99",
        "slo/play/during/p99",
        "slo/play/before/error-rate",
        "generator/play",
    ] {
        let v = verdict(&verdicts, suffix);
        assert!(
            !v.passed,
            "`{suffix}` passed against an impossible limit: {v:?}"
        );
        assert!(
            v.expected.contains("<=") || v.id.starts_with("generator/"),
            "{v:?}"
        );
        assert!(!v.observed.is_empty());
    }
}

fn first(journal: &Journal, to: BreakerState) -> i64 {
    journal.evidence.breakers[0]
        .transitions
        .iter()
        .find(|t| t.to == to)
        .map(|t| t.at_ms)
        .expect("transition present")
}

fn shift_first(journal: &mut Journal, to: BreakerState, by_ms: i64) {
    let transitions = &mut journal.evidence.breakers[0].transitions;
    if let Some(t) = transitions.iter_mut().find(|t| t.to == to) {
        t.at_ms += by_ms;
    }
}

/// Failover, RPO and rejoin checks fail, with expected vs observed, when the recorded Sentinel
/// failover is made wrong one way at a time.
#[test]
fn failover_rpo_and_rejoin_checks_can_fail() {
    type Tamper = fn(&mut Journal);
    let cases: Vec<(&str, &str, Tamper)> = vec![
        ("failover/", "no +switch-master logged", |j| {
            j.evidence
                .cluster_events
                .retain(|e| e.event != "+switch-master");
        }),
        ("failover/", "the log disagrees by 5 s", |j| {
            for e in &mut j.evidence.cluster_events {
                if e.event == "+switch-master" {
                    e.at_ms += 5_000;
                }
            }
        }),
        ("failover/", "the old primary answers again first", |j| {
            let start = j.experiment.faults[0].start_ms;
            let old = j.evidence.acks[0]
                .runs
                .iter()
                .rev()
                .find(|r| r.by.is_some() && r.from_ms < start)
                .and_then(|r| r.by.clone());
            for r in j.evidence.acks[0]
                .runs
                .iter_mut()
                .filter(|r| r.from_ms >= start && r.by.is_some())
            {
                r.by = old.clone();
            }
        }),
        (
            "failover/",
            "the bound is tighter than the measured failover",
            |j| {
                for a in &mut j.experiment.judged {
                    if let faultline::plan::Assertion::Failover(f) = a {
                        f.max = std::time::Duration::from_secs(1);
                    }
                }
            },
        ),
        ("rpo/", "acknowledged writes went missing over 2 s", |j| {
            let l = &mut j.evidence.ledgers[0];
            l.lost = 3;
            l.lost_first_ms = Some(9_000);
            l.lost_last_ms = Some(11_000);
        }),
        ("rejoin/", "the old primary stayed a primary", |j| {
            let r = &mut j.evidence.roles[0];
            r.role = "master".into();
            r.following = None;
            r.link_up = false;
            r.reconfigured_ms = None;
        }),
    ];
    let pristine = fixture("001-redis-failover-pass.json");
    assert!(rejudge(&pristine).iter().all(|v| v.passed));
    for (prefix, what, tamper) in cases {
        let mut journal = pristine.clone();
        tamper(&mut journal);
        let verdicts = rejudge(&journal);
        let v = verdicts
            .iter()
            .find(|v| v.id.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` verdict"));
        assert!(!v.passed, "`{what}` was not caught: {v:?}");
        assert!(!v.expected.is_empty() && !v.observed.is_empty(), "{what}");
    }
}
