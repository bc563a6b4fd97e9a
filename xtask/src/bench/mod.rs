//! `cargo xtask bench`: Faultline's load generator side by side with the tools people use, on real
//! servers on loopback, in alternation, with the medians, ratios and goals of the issue
//! "Load generator performance and measurement accuracy".
//!
//! | phase | Faultline (`harness/examples/loadgen.rs`) | reference |
//! |---|---|---|
//! | redis | SET, then GET, 50 in flight, rate 2x the reference's | `redis-benchmark -c 50 -n N -t set,get -P 1` |
//! | http-max | rate 2x wrk's, `max_in_flight` = C | `wrk -t1 -c C -d 10s` |
//! | http-fixed | 50% and 80% of wrk's median maximum, corrected percentiles | `oha --latency-correction -q RATE -z 10s -c C` |
//! | canary | 30 s at a fixed rate, the server SIGSTOPped for 1 s at 10 s | the same with oha |
//!
//! Every round runs the reference first (Faultline's "far above capacity" rate is twice what the
//! reference just measured) and then Faultline, with the same settings, `--rounds` times (B A B A
//! ...). HTTP runs each get a fresh `recommendations` server, so no run inherits another's state
//! (its arrival log, its connections). Every server and client is our own child: spawned with
//! `PR_SET_PDEATHSIG`, signalled by pid, reaped with `wait4` (which also gives its CPU time), and
//! killed on every path (drop guards; Ctrl-C and SIGTERM stop the bench between steps).
//!
//! Installs on demand, pinned, cached, idempotent, like `cargo xtask deps`: Debian `wrk` and
//! `redis-tools` (apt-get), `oha` (`cargo install --locked --version OHA_VERSION` into the cache
//! with `--root`). `redis-server` itself comes from `cargo xtask deps`.
//!
//! Writes `reports/bench/<date>-<rev>.md` and `.json` (raw numbers of every run); logs of every
//! run go to `target/bench/<date>-<rev>/`.

use std::time::{Duration, Instant};

use crate::Ctx;
use crate::proc::{human, io_err, query};

use canary::canary_phase;
use child::{catch_stop_signals, check_stop};
use cql::cql_phase;
use http::http_phases;
use installs::{
    Bins, LATTE_VERSION, OHA_FEATURES, OHA_VERSION, build, ensure_apt, ensure_latte, ensure_oha,
};
use kafka::kafka_phase;
use redis::redis_phase;
use report::{Meta, cpu_model, json_report, loadavg, markdown, table, today};
use results::Results;
use settings::{Phase, Settings};
use timing::timing_phase;

mod canary;
mod child;
mod clients;
mod cql;
mod http;
mod installs;
pub(crate) mod json;
mod kafka;
mod lab;
mod redis;
mod report;
mod results;
mod servers;
mod settings;
mod timing;

/// Connections (redis-benchmark, wrk, oha) and `max_in_flight` (Faultline) everywhere.
const CONNECTIONS: usize = 50;
/// `faultline::load::MAX_RATE_PER_SEC`: the generator refuses plans above it.
const MAX_RATE: f64 = 500_000.0;
/// Faultline's intended rate in a maximum run, as a multiple of the reference's result.
const OVERLOAD: f64 = 2.0;
/// The canary's fixed rate, far below capacity, so the backlog of the stall drains at once and
/// the tools' own capacities hardly touch the percentiles.
const CANARY_RATE: f64 = 1_000.0;
const FIXED_FRACTIONS: [f64; 2] = [0.5, 0.8];
const URL_PATH: &str = "/recommendations/u1";
/// How long a client may run past its nominal duration before it is killed.
const CLIENT_SLACK: Duration = Duration::from_secs(20);

const USAGE: &str = "\
usage: cargo xtask bench [--quick] [--rounds N] [--only PHASES] [--worker-threads N] [--strict]

  --quick              1 round, short runs (a smoke test of the bench, not a measurement)
  --rounds N           rounds of alternation per comparison (default 3)
  --only PHASES        comma-separated subset of: redis, http (max + fixed rates), canary,
                       cql (vs latte), kafka (vs ProducerPerformance), timing (failover
                       and liveness times vs the servers' logs)
  --worker-threads N   tokio worker threads for Faultline's generator (default 0: one per
                       core, as `faultline run` does)
  --strict             exit 1 if any goal is missed (default: report it and exit 0)
";

// ---------------------------------------------------------------------------------------------
// Entry point

pub fn run(ctx: &Ctx, args: &[String]) -> Result<i32, String> {
    let s = match Settings::parse(args) {
        Ok(s) => s,
        Err(e) if e.is_empty() => {
            print!("{USAGE}");
            return Ok(0);
        }
        Err(e) => {
            eprintln!("xtask bench: {e}\n\n{USAGE}");
            return Ok(2);
        }
    };
    catch_stop_signals();
    let started = Instant::now();

    let apt = ensure_apt(ctx)?;
    let oha = ensure_oha(ctx)?;
    check_stop()?;
    let needs_lab = s
        .phases
        .iter()
        .any(|p| matches!(p, Phase::Cql | Phase::Kafka | Phase::Timing));
    if needs_lab {
        // Cassandra, Kafka, Toxiproxy, Redis: pinned and cached, a no-op when installed.
        crate::deps::run(ctx)?;
    }
    let latte = s
        .phases
        .contains(&Phase::Cql)
        .then(|| ensure_latte(ctx))
        .transpose()?;
    check_stop()?;
    let (loadgen, recommendations, faultline) = build(ctx)?;
    let bins = Bins {
        loadgen,
        recommendations,
        faultline,
        oha,
        latte,
    };

    let rev = query(
        "git",
        &[
            "-C",
            &ctx.root.to_string_lossy(),
            "rev-parse",
            "--short",
            "HEAD",
        ],
    )
    .unwrap_or_else(|| "norev".into());
    let dirty = query(
        "git",
        &[
            "-C",
            &ctx.root.to_string_lossy(),
            "status",
            "--porcelain",
            "--untracked-files=no",
        ],
    )
    .is_some_and(|o| !o.is_empty());
    let date = today();
    let id = format!("{date}-{rev}");
    let logs = ctx.target_dir().join("bench").join(&id);
    std::fs::create_dir_all(&logs).map_err(|e| io_err("create", &logs, e))?;

    let mut versions: Vec<(String, String)> = apt
        .iter()
        .map(|(p, v)| (format!("{p} (debian)"), v.clone()))
        .collect();
    versions.push((
        "oha".into(),
        format!("{OHA_VERSION} (cargo install --locked, features {OHA_FEATURES})"),
    ));
    if let Some(v) = query("redis-server", &["--version"]) {
        versions.push(("redis-server".into(), v));
    }
    if bins.latte.is_some() {
        versions.push((
            "latte".into(),
            format!("{LATTE_VERSION} (latte-cli, cargo install --locked)"),
        ));
    }
    if s.phases.contains(&Phase::Kafka) {
        versions.push((
            "kafka (broker and ProducerPerformance)".into(),
            format!("{} (Maven Central)", crate::deps::KAFKA_VERSION),
        ));
    }
    if let Some(v) = query("rustc", &["--version"]) {
        versions.push(("rustc".into(), v));
    }
    let mut meta = Meta {
        date,
        rev,
        dirty,
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model: cpu_model(),
        load_before: loadavg(),
        load_after: String::new(),
        versions,
        started,
    };
    println!(
        "[bench] {} core(s), load average {}; logs of every run in {}",
        meta.cores,
        meta.load_before,
        logs.display()
    );

    let mut res = Results {
        rows: Vec::new(),
        runs: Vec::new(),
        notes: Vec::new(),
        http_max: None,
    };
    let measured = Instant::now();
    for phase in &s.phases {
        match phase {
            Phase::Redis => redis_phase(&bins, &s, &logs, &mut res)?,
            Phase::Http => http_phases(&bins, &s, &logs, &mut res)?,
            Phase::Canary => canary_phase(&bins, &s, &logs, &mut res)?,
            Phase::Kafka => kafka_phase(ctx, &bins, &s, &logs, &mut res)?,
            Phase::Cql => cql_phase(ctx, &bins, &s, &logs, &mut res)?,
            Phase::Timing => timing_phase(ctx, &bins, &s, &logs, &mut res)?,
        }
    }
    meta.load_after = loadavg();
    println!(
        "\n[bench] measured in {} (after installs and builds)",
        human(measured.elapsed())
    );

    let md = markdown(&meta, &s, &res);
    let mut json = String::new();
    json_report(&meta, &s, &res).write(&mut json, 0);
    json.push('\n');
    let dir = ctx.root.join("reports/bench");
    std::fs::create_dir_all(&dir).map_err(|e| io_err("create", &dir, e))?;
    // A second run of the same revision on the same day gets its own files, never overwrites.
    let stem = (1..)
        .map(|n| {
            if n == 1 {
                id.clone()
            } else {
                format!("{id}-{n}")
            }
        })
        .find(|stem| !dir.join(format!("{stem}.md")).exists())
        .unwrap_or_else(|| id.clone());
    let md_path = dir.join(format!("{stem}.md"));
    let json_path = dir.join(format!("{stem}.json"));
    std::fs::write(&md_path, &md).map_err(|e| io_err("write", &md_path, e))?;
    std::fs::write(&json_path, &json).map_err(|e| io_err("write", &json_path, e))?;
    println!("\n{}", table(&res.rows));
    for n in &res.notes {
        println!("note: {n}");
    }
    println!(
        "[bench] report: {} (raw numbers: {})",
        md_path.display(),
        json_path.display()
    );
    let missed = res.rows.iter().filter(|r| !r.goal.met(r.ratio())).count();
    if missed > 0 {
        println!("[bench] {missed} goal(s) missed (see the table)");
    }
    Ok(if s.strict && missed > 0 { 1 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::clients::num;
    use super::http::parse_wrk;
    use super::json::{J, parse_json};
    use super::redis::parse_redis_benchmark;
    use super::results::{Goal, median};
    use super::*;

    #[test]
    fn json_round_trips_and_reads_paths() {
        let text = r#"{"a": {"p99.9": 0.5, "n": -12, "e": 1.5e-3}, "s": "x\"\u00e9\ud83d\ude00", "l": [1, true, null], "o": {}}"#;
        let j = parse_json(text).expect("parses");
        assert_eq!(j.path(&["a", "p99.9"]).and_then(J::num), Some(0.5));
        assert_eq!(j.path(&["a", "n"]).and_then(J::num), Some(-12.0));
        assert_eq!(j.path(&["a", "e"]).and_then(J::num), Some(0.0015));
        assert_eq!(j.get("s"), Some(&J::Str("x\"é😀".into())));
        let mut out = String::new();
        j.write(&mut out, 0);
        assert_eq!(parse_json(&out).expect("re-parses"), j);
        for bad in ["{", "[1,]", "{\"a\" 1}", "\"abc", "01x", "{} x"] {
            assert!(parse_json(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn tool_outputs_parse() {
        let rb = "\"test\",\"rps\",\"avg_latency_ms\"\n\"SET\",\"81037.28\",\"0.347\"\n\"GET\",\"90009.00\",\"0.3\"\n";
        assert_eq!(parse_redis_benchmark(rb), Ok((81037.28, 90009.0)));
        assert!(parse_redis_benchmark("nothing").is_err());
        let wrk = "Running 10s test @ http://127.0.0.1:1/x\n  1 threads and 50 connections\n  \
                   301234 requests in 10.00s, 40.00MB read\n  Non-2xx or 3xx responses: 7\nRequests/sec:  30123.40\nTransfer/sec:      4.00MB\n";
        let j = parse_wrk(wrk).expect("wrk parses");
        assert_eq!(num(&j, &["requests_per_s"]), 30123.4);
        assert_eq!(num(&j, &["requests"]), 301234.0);
        assert_eq!(num(&j, &["non_2xx"]), 7.0);
    }

    #[test]
    fn medians_goals_and_dates() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[f64::NAN]).is_nan());
        assert!(Goal::AtLeast(0.9).met(0.95) && !Goal::AtLeast(0.9).met(0.89));
        assert!(Goal::AtMost(1.3).met(1.3) && !Goal::AtMost(1.3).met(f64::NAN));
        assert!(Goal::Within(0.15).met(1.14) && Goal::Within(0.15).met(0.86));
        assert!(!Goal::Within(0.15).met(1.16));
        let d = today();
        assert!(d.len() == 10 && d.starts_with("20"), "{d}");
    }

    #[test]
    fn arguments() {
        let s = Settings::parse(&["--quick".into(), "--only".into(), "http,redis".into()])
            .expect("parses");
        assert_eq!(
            (s.rounds, s.phases.clone()),
            (1, vec![Phase::Http, Phase::Redis])
        );
        let s = Settings::parse(&["--rounds".into(), "5".into()]).expect("parses");
        assert_eq!(s.rounds, 5);
        assert!(Settings::parse(&["--only".into(), "mongo".into()]).is_err());
        assert!(Settings::parse(&["--rounds".into(), "0".into()]).is_err());
    }
}
