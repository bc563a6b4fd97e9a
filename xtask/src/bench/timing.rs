//! The timing phase: failover and liveness times as Faultline measures them, against the servers'
//! own log timestamps, from real experiments run with `faultline run`:
//!
//! | experiment | Faultline's view | the server's log |
//! |---|---|---|
//! | 001-redis/sentinel-failover | first write acknowledged by the new primary | Sentinel `+switch-master` |
//! | 001-kafka/leader-failover | the leader probe's first sighting of each new leader | the broker's `starts at leader epoch` |
//! | 000-cassandra/dc-loss-local-quorum | each `STATUS_CHANGE` DOWN a node pushed | the same node's `is now DOWN` |
//!
//! The goal is agreement within max(2 x the probe interval, 100 ms): the Redis workload's op
//! interval is a few ms and pushes have none, so 100 ms; Kafka's leader probe asks every 100 ms,
//! so 200 ms. (The Kafka producer's own first ack waits out its retry backoff, up to 1 s: the
//! verdict reports it, but it measures the client's configuration, not the failover.) One run
//! per experiment whatever `--rounds` says (each is a cluster).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::child::run_client;
use super::installs::Bins;
use super::json::{J, parse_json};
use super::results::{Goal, Results, row};
use super::settings::Settings;
use crate::Ctx;

/// (experiment, what is compared, the agreement goal in ms)
const EXPERIMENTS: [(&str, &str, f64); 3] = [
    (
        "001-redis/sentinel-failover",
        "Redis failover: first ack by the new primary vs Sentinel `+switch-master`",
        100.0,
    ),
    (
        "001-kafka/leader-failover",
        "Kafka failover: leader probe (every 100 ms) vs the broker's leader election",
        200.0,
    ),
    (
        "000-cassandra/dc-loss-local-quorum",
        "Cassandra liveness: STATUS_CHANGE DOWN pushed vs the node's `is now DOWN`",
        100.0,
    ),
];

pub(super) fn timing_phase(
    ctx: &Ctx,
    bins: &Bins,
    _s: &Settings,
    logs: &Path,
    out: &mut Results,
) -> Result<(), String> {
    println!("\n== timing: Faultline's failover and liveness times vs the servers' own logs");
    for (experiment, what, agree_ms) in EXPERIMENTS {
        let dir = logs.join(experiment.replace('/', "-"));
        let mut c = Command::new(&bins.faultline);
        c.arg("run")
            .arg(
                ctx.root
                    .join("experiments")
                    .join(format!("{experiment}.yaml")),
            )
            .arg("--out")
            .arg(&dir);
        // Exit 1 (an assertion failed) still leaves a journal with the evidence; only a run
        // that could not run is an error here.
        let name = format!("faultline-run-{}", experiment.replace('/', "-"));
        let ran = run_client(&mut c, &name, logs, Duration::from_secs(600));
        let journal = dir.join("journal.json");
        let text = std::fs::read_to_string(&journal).map_err(|e| {
            format!(
                "`faultline run {experiment}` left no journal at {} ({e}); {}",
                journal.display(),
                ran.err().unwrap_or_default()
            )
        })?;
        let j = parse_json(&text).map_err(|e| format!("{}: {e}", journal.display()))?;
        let gaps = if experiment.starts_with("000-cassandra") {
            let report = std::fs::read_to_string(dir.join("report.md")).unwrap_or_default();
            liveness_gaps(&report)
        } else {
            failover_gaps(&j)
        };
        let shown: Vec<String> = gaps.iter().map(|g| format!("{g:+.0}")).collect();
        println!(
            "   {experiment}: gaps (ms, Faultline minus the log) {}",
            shown.join(", ")
        );
        if gaps.is_empty() {
            out.notes.push(format!(
                "timing {experiment}: no pair of Faultline's time and the server's log was found (see {})",
                dir.display()
            ));
        }
        let worst = gaps.iter().map(|g| g.abs()).fold(f64::NAN, f64::max);
        out.runs.push((
            "timing".into(),
            J::obj([
                ("experiment", J::Str(experiment.into())),
                ("gaps_ms", J::Arr(gaps.iter().map(|g| J::Num(*g)).collect())),
            ]),
        ));
        out.rows.push(row(
            format!("{what}, largest absolute gap of {}", gaps.len()),
            "ms",
            "faultline",
            vec![worst],
            "max(2 x probe interval, 100 ms)",
            vec![agree_ms],
            Goal::AtMost(1.0),
        ));
    }
    Ok(())
}

/// From each failover verdict's observation: `... (client +41ms after it)`.
fn failover_gaps(journal: &J) -> Vec<f64> {
    let Some(J::Arr(verdicts)) = journal.get("verdicts") else {
        return Vec::new();
    };
    verdicts
        .iter()
        .filter_map(|v| match v.get("observed") {
            Some(J::Str(text)) => view_gap(text),
            _ => None,
        })
        .collect()
}

/// Faultline's failover time against the log: the leader probe's where the verdict has one
/// (Kafka), else the client's (Redis).
fn view_gap(text: &str) -> Option<f64> {
    gap(text, "probe").or_else(|| gap(text, "client"))
}

/// `(client +41ms after it)` -> 41; `(probe -1.2s after it)` -> -1200.
fn gap(text: &str, view: &str) -> Option<f64> {
    let (_, rest) = text.split_once(&format!("({view} "))?;
    let (offset, _) = rest.split_once(" after it)")?;
    offset_ms(offset)
}

/// `+41ms`, `-1.2s`, `+0s` -> ms.
fn offset_ms(text: &str) -> Option<f64> {
    let (sign, magnitude) = match text.as_bytes().first()? {
        b'-' => (-1.0, &text[1..]),
        b'+' => (1.0, &text[1..]),
        _ => (1.0, text),
    };
    let ms = if let Some(ms) = magnitude.strip_suffix("ms") {
        ms.parse::<f64>().ok()?
    } else {
        magnitude.strip_suffix('s')?.parse::<f64>().ok()? * 1000.0
    };
    Some(sign * ms)
}

/// The report's liveness table, DOWN rows: `| `a1` | `b1` | DOWN | +12.3s | 4 ms |` -> 4. UP rows
/// are left out: Cassandra holds a peer's UP event back until its native transport should be
/// ready (measured 0.5-1.4 s after the `is now UP` line), which is the server's choice, not a
/// measurement error.
fn liveness_gaps(report: &str) -> Vec<f64> {
    let Some((_, table)) = report.split_once("## Cassandra liveness") else {
        return Vec::new();
    };
    table
        .lines()
        .skip_while(|l| !l.starts_with("|---"))
        .skip(1)
        .take_while(|l| l.starts_with('|'))
        .filter(|l| l.contains("| DOWN |"))
        .filter_map(|l| {
            let cell = l.trim_end_matches('|').rsplit('|').next()?.trim();
            cell.strip_suffix(" ms")?.parse::<f64>().ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_gaps_from_verdicts_and_reports() {
        let verdict = "client view: +4.4s after `leader-dies` started (slowest of partitions [0]: partition 0); cluster log: `leader-elected` (plays/0 epoch 1) by `k1` at +4.359s (client +41ms after it)";
        assert_eq!(view_gap(verdict), Some(41.0));
        let probed =
            format!("{verdict}; leader probe: new leader seen at +4.43s (probe +71ms after it)");
        assert_eq!(view_gap(&probed), Some(71.0));
        assert_eq!(view_gap("(client -1.25s after it)"), Some(-1250.0));
        assert_eq!(view_gap("client view only"), None);
        let report = "# r\n\n## Cassandra liveness: pushed to Faultline vs logged by the node\n\n| node | peer | change | pushed at | push minus the node's log line |\n|---|---|---|---|---|\n| `a1` | `b1` | DOWN | +12.3s | 4 ms |\n| `a2` | `b1` | DOWN | +12.4s | -3 ms |\n| `a1` | `b1` | UP | +40s | 900 ms |\n\n## Next\n| x | 9 ms |\n";
        assert_eq!(liveness_gaps(report), vec![4.0, -3.0]);
        assert!(liveness_gaps("# nothing").is_empty());
    }
}
