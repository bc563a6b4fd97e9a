//! The report: the markdown tables and the JSON of raw numbers, and the machine's metadata.

use std::fmt::Write as _;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::json::J;
use super::results::{Goal, Results, Row};
use super::settings::Settings;
use super::{CONNECTIONS, MAX_RATE, OVERLOAD, URL_PATH};
use crate::proc::human;

pub(super) fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        "n/a".into()
    } else if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

pub(super) fn ratio_text(r: &Row) -> String {
    let ratio = r.ratio();
    if ratio.is_finite() {
        format!("{ratio:.2}x")
    } else {
        "n/a".into()
    }
}

pub(super) fn table(rows: &[Row]) -> String {
    let mut s = String::from(
        "| comparison | unit | Faultline | reference | ratio | goal | met |\n|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} ({}) | {} ({}) | {} | {} | {} |",
            r.what,
            r.unit,
            fmt_num(r.ours),
            r.ours_label,
            fmt_num(r.theirs),
            r.theirs_label,
            ratio_text(r),
            r.goal.text(),
            match (r.goal, r.goal.met(r.ratio())) {
                (Goal::Info, _) => "-",
                (_, true) => "yes",
                (_, false) => "**MISSED**",
            }
        );
    }
    s
}

pub(super) fn per_round_table(rows: &[Row]) -> String {
    let mut s =
        String::from("| comparison | Faultline per round | reference per round |\n|---|---|---|\n");
    let list = |v: &[f64]| v.iter().map(|x| fmt_num(*x)).collect::<Vec<_>>().join(", ");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            r.what,
            list(&r.ours_runs),
            list(&r.theirs_runs)
        );
    }
    s
}

pub(super) struct Meta {
    pub(super) date: String,
    pub(super) rev: String,
    pub(super) dirty: bool,
    pub(super) cores: usize,
    pub(super) cpu_model: String,
    pub(super) load_before: String,
    pub(super) load_after: String,
    pub(super) versions: Vec<(String, String)>,
    pub(super) started: Instant,
}

pub(super) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

pub(super) fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_default()
}

/// YYYY-MM-DD (UTC) from the system clock (Howard Hinnant's days-to-civil).
pub(super) fn today() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

pub(super) fn markdown(meta: &Meta, s: &Settings, res: &Results) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Load generator bench, {} ({})\n", meta.date, meta.rev);
    let _ = writeln!(
        md,
        "`cargo xtask bench{}` on {} core(s) ({}), load average {} before and {} after; \
         {} round(s) per comparison, reference first in each round; medians over the rounds. \
         Servers and clients share the machine's cores.{}\n",
        if s.quick { " --quick" } else { "" },
        meta.cores,
        meta.cpu_model,
        meta.load_before,
        meta.load_after,
        s.rounds,
        if meta.dirty {
            " The work tree had uncommitted changes."
        } else {
            ""
        }
    );
    md.push_str(&table(&res.rows));
    md.push_str(
        "\nRatio = Faultline / reference (the canary's last line: corrected / uncorrected). ",
    );
    md.push_str("Latencies are µs; oha's are corrected (`--latency-correction`), Faultline's corrected ones are from each op's intended start.\n\n");
    md.push_str("## Per round\n\n");
    md.push_str(&per_round_table(&res.rows));
    md.push_str("\n## Settings and versions\n\n");
    let _ = writeln!(
        md,
        "- connections / max_in_flight: {CONNECTIONS}; Faultline's rate in a maximum run: {OVERLOAD}x the reference's result of the same round (capped at {MAX_RATE:.0}/s, the generator's limit); its throughput counts ok ops completed within the scheduled duration."
    );
    let _ = writeln!(
        md,
        "- redis: {} requests per test for redis-benchmark (3-byte values); Faultline {} s per command, keyspace 10000, 3-byte values, op timeout 1 s.",
        s.redis_requests, s.redis_secs
    );
    let _ = writeln!(
        md,
        "- http: `recommendations` (fresh process per run) `GET {URL_PATH}`; maximum and fixed-rate runs {} s; canary {} s with SIGSTOP at {} for {}.",
        s.http_secs,
        s.canary_secs,
        human(s.stall_at),
        human(s.stall_for)
    );
    let _ = writeln!(
        md,
        "- Faultline tokio worker threads: {}.",
        if s.worker_threads == 0 {
            "default (one per core, as `faultline run`)".to_owned()
        } else {
            s.worker_threads.to_string()
        }
    );
    for (k, v) in &meta.versions {
        let _ = writeln!(md, "- {k}: {v}");
    }
    md.push_str("\n## How Faultline's Redis workload differs from redis-benchmark's\n\n");
    md.push_str(
        "redis-benchmark opens 50 connections with one request outstanding on each. Faultline's \
         `WorkloadKind::Redis` opens min(max_in_flight, 4) = 4 multiplexed connections and lets up to \
         50 ops be in flight across them, so each connection may carry several requests at once \
         (the client does not batch them, but the server may read several per read). \"50 connections \
         unpipelined\" is therefore not something the generator can do exactly: the comparison is \
         50 in flight vs 50 in flight.\n",
    );
    if !res.notes.is_empty() {
        md.push_str("\n## Notes from this run\n\n");
        for n in &res.notes {
            let _ = writeln!(md, "- {n}");
        }
    }
    md
}

pub(super) fn json_report(meta: &Meta, s: &Settings, res: &Results) -> J {
    let rows = res
        .rows
        .iter()
        .map(|r| {
            J::obj([
                ("comparison", J::Str(r.what.clone())),
                ("unit", J::Str(r.unit.into())),
                ("faultline_label", J::Str(r.ours_label.into())),
                ("faultline_median", J::Num(r.ours)),
                ("reference", J::Str(r.theirs_label.clone())),
                ("reference_median", J::Num(r.theirs)),
                ("ratio", J::Num(r.ratio())),
                ("goal", J::Str(r.goal.text())),
                (
                    "met",
                    match r.goal {
                        Goal::Info => J::Null,
                        goal => J::Bool(goal.met(r.ratio())),
                    },
                ),
                (
                    "faultline_runs",
                    J::Arr(r.ours_runs.iter().map(|x| J::Num(*x)).collect()),
                ),
                (
                    "reference_runs",
                    J::Arr(r.theirs_runs.iter().map(|x| J::Num(*x)).collect()),
                ),
            ])
        })
        .collect();
    let runs = res
        .runs
        .iter()
        .map(|(phase, j)| {
            let mut j = j.clone();
            j.set("phase", J::Str(phase.clone()));
            j
        })
        .collect();
    J::obj([
        ("generated_by", J::Str("cargo xtask bench".into())),
        ("date", J::Str(meta.date.clone())),
        ("git_rev", J::Str(meta.rev.clone())),
        ("dirty", J::Bool(meta.dirty)),
        ("cores", J::Num(meta.cores as f64)),
        ("cpu_model", J::Str(meta.cpu_model.clone())),
        ("loadavg_before", J::Str(meta.load_before.clone())),
        ("loadavg_after", J::Str(meta.load_after.clone())),
        ("elapsed_s", J::Num(meta.started.elapsed().as_secs_f64())),
        (
            "versions",
            J::Obj(
                meta.versions
                    .iter()
                    .map(|(k, v)| (k.clone(), J::Str(v.clone())))
                    .collect(),
            ),
        ),
        (
            "settings",
            J::obj([
                ("quick", J::Bool(s.quick)),
                ("rounds", J::Num(s.rounds as f64)),
                ("connections", J::Num(CONNECTIONS as f64)),
                ("overload_factor", J::Num(OVERLOAD)),
                ("redis_requests_per_test", J::Num(s.redis_requests as f64)),
                ("redis_secs", J::Num(s.redis_secs as f64)),
                ("http_secs", J::Num(s.http_secs as f64)),
                ("canary_secs", J::Num(s.canary_secs as f64)),
                ("stall_at_s", J::Num(s.stall_at.as_secs_f64())),
                ("stall_for_s", J::Num(s.stall_for.as_secs_f64())),
                ("worker_threads", J::Num(s.worker_threads as f64)),
            ]),
        ),
        ("rows", J::Arr(rows)),
        (
            "notes",
            J::Arr(res.notes.iter().map(|n| J::Str(n.clone())).collect()),
        ),
        ("runs", J::Arr(runs)),
    ])
}
