//! The cql phase: latte vs Faultline's CQL write workload against one real Cassandra node
//! (`xtask/bench-labs/cassandra.yaml`, held by `faultline lab up`), 50 requests in flight each,
//! the same prepared INSERT (`xtask/bench-labs/cassandra-write.rn`), LOCAL_QUORUM.

use std::path::Path;
use std::time::Duration;

use super::child::{pause, run_client};
use super::clients::{common_args, num, reference_run, run_loadgen, run_max_round};
use super::installs::Bins;
use super::json::parse_json;
use super::lab::HeldLab;
use super::results::{Goal, Results, row};
use super::settings::Settings;
use super::{CLIENT_SLACK, CONNECTIONS, MAX_RATE, OVERLOAD};
use crate::Ctx;

/// Intended rate of the unmeasured warm-up: above what one node takes, so it runs at capacity.
const WARM_UP_RATE: f64 = 60_000.0;

pub(super) fn cql_phase(
    ctx: &Ctx,
    bins: &Bins,
    s: &Settings,
    logs: &Path,
    out: &mut Results,
) -> Result<(), String> {
    let latte = bins
        .latte
        .as_ref()
        .ok_or("the cql phase needs latte, which was not installed")?;
    println!(
        "\n== cql: latte -t 1 -p {CONNECTIONS} vs Faultline, {CONNECTIONS} in flight, INSERT at LOCAL_QUORUM, {} round(s)",
        s.rounds
    );
    let labs = ctx.root.join("xtask/bench-labs");
    let lab = HeldLab::up(bins, &labs.join("cassandra.yaml"), logs, "lab-cassandra")?;
    let addr = lab.addr("c1")?.to_owned();
    let host = addr.split(':').next().unwrap_or(&addr).to_owned();
    println!("   lab {} is up; node c1 at {addr}", lab.netns);

    // Cassandra's JIT and memtables warm up on an unmeasured run near capacity: with a short
    // one at 5,000/s, latte (which goes first in each round) still climbed from 29k to 52k ops/s
    // over the three rounds, and the ratio measured the warm-up, not the clients.
    let warm_secs = 2 * s.cql_secs;
    let warm = loadgen(bins, &lab, &addr, WARM_UP_RATE, warm_secs, s);
    run_loadgen(warm, "faultline-cql-warmup", logs, warm_secs)?;

    let (mut l_rate, mut l_cpu, mut l_rss) = (vec![], vec![], vec![]);
    let (mut f_rate, mut f_cpu, mut f_rss) = (vec![], vec![], vec![]);
    for round in 1..=s.rounds {
        let report = logs.join(format!("latte-r{round}.json"));
        let mut c = lab.command(latte);
        // latte writes a log file into its working directory.
        c.current_dir(logs)
            .arg("run")
            .arg(labs.join("cassandra-write.rn"))
            .args(["-q", "-t", "1", "-p", &CONNECTIONS.to_string()])
            .args(["-d", &format!("{}s", s.cql_secs), "-w", "1"])
            .args(["--consistency", "LOCAL_QUORUM", "-o"])
            .arg(&report)
            .arg(&host);
        let limit = Duration::from_secs(s.cql_secs) + CLIENT_SLACK;
        let ran = run_client(&mut c, &format!("latte-r{round}"), logs, limit)?;
        let text = std::fs::read_to_string(&report)
            .map_err(|e| format!("latte wrote no report at {}: {e}", report.display()))?;
        let j = parse_json(&text).map_err(|e| format!("latte's report: {e}"))?;
        let rate = num(&j, &["result", "cycle_throughput", "value"]);
        let cycles = num(&j, &["result", "cycle_count"]);
        let errors = num(&j, &["result", "error_count"]);
        let cpu_us = ran.done.cpu_s() / cycles * 1e6;
        println!(
            "   r{round} latte: {rate:.0} ops/s, {cpu_us:.2} µs CPU/op, peak RSS {:.1} MiB, errors {errors}",
            ran.done.max_rss_kib / 1024.0
        );
        l_rate.push(rate);
        l_cpu.push(cpu_us);
        l_rss.push(ran.done.max_rss_kib / 1024.0);
        out.runs.push((
            "cql".into(),
            reference_run(
                round,
                "latte",
                &[
                    ("ops_per_s", rate),
                    ("cycles", cycles),
                    ("errors", errors),
                    ("cpu_us_per_op", cpu_us),
                ],
                &ran.done,
            ),
        ));
        pause(Duration::from_millis(500))?;

        let intended = (OVERLOAD * rate).clamp(1_000.0, MAX_RATE);
        let c = loadgen(bins, &lab, &addr, intended, s.cql_secs, s);
        let run = run_max_round(
            c,
            &format!("faultline-cql-r{round}"),
            "faultline",
            "op",
            round,
            intended,
            logs,
            s.cql_secs,
            &mut out.notes,
        )?;
        f_rate.push(run.tput);
        f_cpu.push(run.cpu_us);
        f_rss.push(num(&run.j, &["child_max_rss_kib"]) / 1024.0);
        let j = run.j;
        out.runs.push(("cql".into(), j));
        pause(Duration::from_millis(500))?;
    }
    drop(lab);
    let theirs = format!("latte -t 1 -p {CONNECTIONS}");
    for (what, unit, ours, theirs_runs, goal) in [
        (
            format!("CQL INSERT max, {CONNECTIONS} in flight, LOCAL_QUORUM"),
            "ops/s",
            f_rate,
            l_rate,
            Goal::AtLeast(1.0),
        ),
        (
            "CQL client CPU per op at max".into(),
            "µs/op",
            f_cpu,
            l_cpu,
            Goal::AtMost(1.5),
        ),
        (
            "CQL client peak RSS".into(),
            "MiB",
            f_rss,
            l_rss,
            Goal::AtMost(2.0),
        ),
    ] {
        out.rows.push(row(
            what,
            unit,
            "faultline",
            ours,
            theirs.clone(),
            theirs_runs,
            goal,
        ));
    }
    Ok(())
}

fn loadgen(
    bins: &Bins,
    lab: &HeldLab,
    addr: &str,
    rate: f64,
    secs: u64,
    s: &Settings,
) -> std::process::Command {
    let mut c = lab.command(&bins.loadgen);
    c.args(["cql", "--node", addr, "--dc", "dc1", "--keyspace", "bench"])
        .args(["--consistency", "local_quorum", "--value-size", "100"]);
    common_args(&mut c, rate, secs, "5s", s);
    c
}
