use std::collections::BTreeMap;

use super::{chart_file, render, render_timeline_charts};
use crate::journal::{Evidence, ExperimentInfo, FaultWindow, Journal, Outcome, RunInfo, SCHEMA};
use crate::load::{LatencySummary, WindowStats, WorkloadSummary};

/// One second of one workload: ops, errors, and the p99 in microseconds if any op succeeded.
type S = (u64, u64, Option<u64>);

/// A workload of the synthetic journal.
struct W {
    name: &'static str,
    dc: Option<&'static str>,
    /// The second its first window starts at.
    from_s: u64,
    /// `None`: the journal maps it to its DC but has no summary (the run stopped before load).
    seconds: Option<&'static [S]>,
}

const fn w(name: &'static str, dc: Option<&'static str>, seconds: &'static [S]) -> W {
    W {
        name,
        dc,
        from_s: 0,
        seconds: Some(seconds),
    }
}

fn window(from_s: u64, (ops, errors, p99_us): S) -> WindowStats {
    WindowStats {
        from_us: from_s * 1_000_000,
        to_us: (from_s + 1) * 1_000_000,
        ops,
        errors,
        error_rate: if ops == 0 {
            0.0
        } else {
            errors as f64 / ops as f64
        },
        latency: p99_us.map(|p99_us| LatencySummary {
            p50_us: p99_us / 2,
            p99_us,
            p999_us: p99_us,
            max_us: p99_us,
        }),
        tags: BTreeMap::new(),
        errors_by_kind: BTreeMap::new(),
    }
}

fn summary(w: &W, seconds: &[S]) -> WorkloadSummary {
    let per_second: Vec<WindowStats> = seconds
        .iter()
        .enumerate()
        .map(|(i, s)| window(w.from_s + i as u64, *s))
        .collect();
    WorkloadSummary {
        name: w.name.into(),
        intended_rate: 100.0,
        achieved_rate: 100.0,
        intended_ops: 0,
        dispatched_ops: 0,
        completed_ops: 0,
        sched_lag_p99_us: 0,
        sched_lag_max_us: 0,
        generator_valid: true,
        invalid_reason: None,
        cancelled: false,
        per_second,
        phases: Vec::new(),
        total: window(0, (0, 0, None)),
        error_samples: BTreeMap::new(),
        counters: BTreeMap::new(),
    }
}

/// A journal holding just what the timeline reads: workloads, their DCs and the fault windows.
fn journal(workloads: &[W], faults: &[(&str, i64, i64)]) -> Journal {
    Journal {
        schema: SCHEMA,
        faultline_version: "test".into(),
        experiment: ExperimentInfo {
            name: "timeline".into(),
            file: "timeline.yaml".into(),
            description: None,
            verifies: Vec::new(),
            faults: faults
                .iter()
                .map(|(name, start_ms, end_ms)| FaultWindow {
                    name: (*name).into(),
                    kind: "partition".into(),
                    target: "dc1, dc2".into(),
                    start_ms: *start_ms,
                    end_ms: *end_ms,
                })
                .collect(),
            assertions: Vec::new(),
            judged: Vec::new(),
            workload_dcs: workloads
                .iter()
                .filter_map(|w| Some((w.name.to_string(), w.dc?.to_string())))
                .collect(),
        },
        run: RunInfo {
            run_id: "run".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            outcome: Outcome::Passed,
            error: None,
            duration_ms: 0,
            setup_ms: 0,
            ready_ms: BTreeMap::new(),
            components: BTreeMap::new(),
            harness_peak_rss_kib: None,
        },
        verdicts: Vec::new(),
        timeline: workloads
            .iter()
            .filter_map(|w| Some(summary(w, w.seconds?)))
            .collect(),
        events: Vec::new(),
        evidence: Evidence::default(),
    }
}

/// Per DC heading in the section, its table rows.
fn sections(markdown: &str) -> Vec<(String, Vec<String>)> {
    markdown
        .split("\n### ")
        .skip(1)
        .map(|chunk| {
            let dc = chunk.lines().next().unwrap_or("").trim_matches('`');
            let rows = chunk
                .lines()
                .filter(|l| l.starts_with("| +") || l.starts_with("| -"))
                .map(String::from)
                .collect();
            (dc.to_string(), rows)
        })
        .collect()
}

struct Case {
    name: &'static str,
    workloads: Vec<W>,
    faults: &'static [(&'static str, i64, i64)],
    /// Per DC in order, its rows exactly; none: no section and no chart.
    want: &'static [(&'static str, &'static [&'static str])],
}

fn cases() -> Vec<Case> {
    const FIVE: &[S] = &[
        (100, 0, Some(4_000)),
        (100, 0, Some(5_000)),
        (100, 20, Some(900_000)),
        (100, 50, Some(1_500_000)),
        (100, 0, Some(6_000)),
    ];
    vec![
        Case {
            name: "two DCs, faults shown in the seconds they overlap",
            workloads: vec![
                w("writes-dc1", Some("dc1"), FIVE),
                w(
                    "writes-dc2",
                    Some("dc2"),
                    &[(50, 0, Some(800)), (50, 50, None)],
                ),
            ],
            faults: &[("dcs-split", 2_000, 4_000), ("dc2-down", 3_500, 4_200)],
            want: &[
                (
                    "dc1",
                    &[
                        "| +0s | 100 | 0 | 0.00% | 4.0ms |  |",
                        "| +1s | 100 | 0 | 0.00% | 5.0ms |  |",
                        "| +2s | 100 | 20 | 20.00% | 900.0ms | dcs-split |",
                        "| +3s | 100 | 50 | 50.00% | 1.50s | dcs-split, dc2-down |",
                        "| +4s | 100 | 0 | 0.00% | 6.0ms | dc2-down |",
                    ],
                ),
                (
                    "dc2",
                    &[
                        "| +0s | 50 | 0 | 0.00% | 800us |  |",
                        "| +1s | 50 | 50 | 100.00% | - |  |",
                    ],
                ),
            ],
        },
        Case {
            name: "zero ops and no latency divide by nothing",
            workloads: vec![w("reads", Some("dc1"), &[(0, 0, None), (0, 0, None)])],
            faults: &[],
            want: &[(
                "dc1",
                &[
                    "| +0s | 0 | 0 | 0.00% | - |  |",
                    "| +1s | 0 | 0 | 0.00% | - |  |",
                ],
            )],
        },
        Case {
            name: "no workload pinned to a DC: no section",
            workloads: vec![w("play", None, FIVE), w("cache", None, FIVE)],
            faults: &[("dcs-split", 2_000, 4_000)],
            want: &[],
        },
        Case {
            name: "a DC workload without seconds: no section",
            workloads: vec![w("writes", Some("dc1"), &[]), w("play", None, FIVE)],
            faults: &[],
            want: &[],
        },
        Case {
            name: "a DC workload without a summary: no section",
            workloads: vec![W {
                seconds: None,
                ..w("writes", Some("dc1"), &[])
            }],
            faults: &[],
            want: &[],
        },
        Case {
            name: "a DC's workloads add up, p99 is the worst, other workloads stay out",
            workloads: vec![
                w(
                    "writes",
                    Some("dc1"),
                    &[(100, 1, Some(3_000)), (100, 0, None)],
                ),
                w(
                    "reads",
                    Some("dc1"),
                    &[(200, 3, Some(7_000)), (200, 0, Some(2_000))],
                ),
                w("play", None, &[(9_999, 9_999, Some(99_000_000))]),
            ],
            faults: &[],
            want: &[(
                "dc1",
                &[
                    "| +0s | 300 | 4 | 1.33% | 7.0ms |  |",
                    "| +1s | 300 | 0 | 0.00% | 2.0ms |  |",
                ],
            )],
        },
        Case {
            name: "a workload starting later joins the seconds it recorded",
            workloads: vec![
                w(
                    "early",
                    Some("dc1"),
                    &[(10, 0, Some(1_000)), (10, 0, Some(1_000))],
                ),
                W {
                    from_s: 1,
                    ..w("late", Some("dc1"), &[(5, 5, None), (5, 0, Some(2_000))])
                },
            ],
            faults: &[],
            want: &[(
                "dc1",
                &[
                    "| +0s | 10 | 0 | 0.00% | 1.0ms |  |",
                    "| +1s | 15 | 5 | 33.33% | 1.0ms |  |",
                    "| +2s | 5 | 0 | 0.00% | 2.0ms |  |",
                ],
            )],
        },
        Case {
            name: "an instantaneous fault shows in the second it happens",
            workloads: vec![w("writes", Some("dc1"), &[(1, 0, None); 3])],
            faults: &[("restart-a1", 1_000, 1_000), ("after-load", 9_000, 12_000)],
            want: &[(
                "dc1",
                &[
                    "| +0s | 1 | 0 | 0.00% | - |  |",
                    "| +1s | 1 | 0 | 0.00% | - | restart-a1 |",
                    "| +2s | 1 | 0 | 0.00% | - |  |",
                ],
            )],
        },
    ]
}

#[test]
fn sections_rows_and_charts() {
    for case in cases() {
        let j = journal(&case.workloads, case.faults);
        let mut out = String::new();
        render(&mut out, &j);
        let got = sections(&out);
        let want: Vec<(String, Vec<String>)> = case
            .want
            .iter()
            .map(|(dc, rows)| (dc.to_string(), rows.iter().map(|r| r.to_string()).collect()))
            .collect();
        assert_eq!(got, want, "{}:\n{out}", case.name);
        assert_eq!(
            out.contains("## Timeline per datacenter"),
            !want.is_empty(),
            "{}",
            case.name
        );

        let charts = render_timeline_charts(&j);
        let files: Vec<&str> = charts.iter().map(|(file, _)| file.as_str()).collect();
        let want_files: Vec<String> = case.want.iter().map(|(dc, _)| chart_file(dc)).collect();
        assert_eq!(files, want_files, "{}", case.name);
        for (file, svg) in &charts {
            assert!(
                out.contains(&format!("]({file})")),
                "{}: {file} not linked",
                case.name
            );
            assert!(
                svg.starts_with("<svg ") && svg.ends_with("</svg>\n"),
                "{}",
                case.name
            );
            assert!(
                !svg.contains("NaN") && !svg.contains("inf"),
                "{}: {svg}",
                case.name
            );
            assert_eq!(svg.matches(r##"fill="none" stroke="#888888""##).count(), 3);
            for (fault, _, _) in case.faults {
                assert!(svg.contains(&format!(">{fault}</text>")), "{}", case.name);
            }
        }

        // Same journal in, same bytes out.
        let mut again = String::new();
        render(&mut again, &j);
        assert_eq!(out, again, "{}", case.name);
        assert_eq!(charts, render_timeline_charts(&j), "{}", case.name);
    }
}

#[test]
fn chart_files_stay_in_the_report_directory() {
    for (dc, want) in [
        ("dc1", "timeline-dc1.svg"),
        ("eu-west_2", "timeline-eu-west_2.svg"),
        ("../etc/x", "timeline-___etc_x.svg"),
        ("", "timeline-.svg"),
    ] {
        assert_eq!(chart_file(dc), want);
    }
}

#[test]
fn names_are_escaped_in_charts() {
    let j = journal(
        &[w("a&b", Some("dc<1>"), &[(1, 0, Some(10))])],
        &[("x<y", 0, 500)],
    );
    let charts = render_timeline_charts(&j);
    assert_eq!(charts.len(), 1);
    let (file, svg) = &charts[0];
    assert_eq!(file, "timeline-dc_1_.svg");
    assert!(svg.contains(">x&lt;y</text>") && svg.contains("dc&lt;1&gt;: a&amp;b"));
    assert!(!svg.contains("x<y"));
}

#[test]
fn write_all_writes_the_linked_charts_only_when_there_are_dcs() {
    let base = std::env::temp_dir().join(format!("faultline-timeline-{}", std::process::id()));
    let cases: [(&str, Journal, &[&str]); 2] = [
        (
            "dcs",
            journal(
                &[
                    w("w1", Some("dc1"), &[(1, 0, None)]),
                    w("w2", Some("dc2"), &[(1, 0, None)]),
                ],
                &[],
            ),
            &["timeline-dc1.svg", "timeline-dc2.svg"],
        ),
        (
            "none",
            journal(&[w("play", None, &[(1, 0, None)])], &[]),
            &[],
        ),
    ];
    for (name, j, want) in cases {
        let dir = base.join(name);
        crate::report::write_all(&j, &dir).expect("write_all");
        let mut charts: Vec<String> = std::fs::read_dir(&dir)
            .expect("read dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|f| f.ends_with(".svg") || f.ends_with(".tmp"))
            .collect();
        charts.sort();
        assert_eq!(charts, want, "{name}");
    }
    let _ = std::fs::remove_dir_all(&base);
}
