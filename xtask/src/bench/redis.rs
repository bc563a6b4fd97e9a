//! The redis phase: redis-benchmark vs Faultline, SET and GET at maximum rate.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::child::{pause, run_client};
use super::clients::{common_args, loadgen_cmd, num, reference_run, run_max_round};
use super::installs::Bins;
use super::json::J;
use super::results::{Goal, Results, row};
use super::servers::start_redis;
use super::settings::Settings;
use super::{CONNECTIONS, MAX_RATE, OVERLOAD};

pub(super) fn redis_phase(
    bins: &Bins,
    s: &Settings,
    logs: &Path,
    out: &mut Results,
) -> Result<(), String> {
    println!(
        "\n== redis: redis-benchmark -c {CONNECTIONS} -n {} -t set,get -P 1 vs Faultline SET+GET, {} round(s)",
        s.redis_requests, s.rounds
    );
    let (mut server, port) = start_redis(logs, "redis-server")?;
    let (mut rb_set, mut rb_get, mut rb_cpu) = (vec![], vec![], vec![]);
    let (mut fl_set, mut fl_get, mut fl_cpu) = (vec![], vec![], vec![]);
    for round in 1..=s.rounds {
        let mut c = Command::new("redis-benchmark");
        c.args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-c", &CONNECTIONS.to_string()])
            .args(["-n", &s.redis_requests.to_string()])
            .args(["-t", "set,get", "-P", "1", "--csv"]);
        let ran = run_client(
            &mut c,
            &format!("redis-benchmark-r{round}"),
            logs,
            Duration::from_secs(60),
        )?;
        let (set, get) = parse_redis_benchmark(&ran.stdout)?;
        let cpu_per_op_us = ran.done.cpu_s() / (2 * s.redis_requests) as f64 * 1e6;
        println!(
            "   r{round} redis-benchmark: SET {set:.0}/s GET {get:.0}/s, {cpu_per_op_us:.2} µs CPU/op"
        );
        rb_set.push(set);
        rb_get.push(get);
        rb_cpu.push(cpu_per_op_us);
        out.runs.push((
            "redis".into(),
            reference_run(
                round,
                "redis-benchmark",
                &[
                    ("set_ops_per_s", set),
                    ("get_ops_per_s", get),
                    ("requests_per_test", s.redis_requests as f64),
                    ("cpu_us_per_op", cpu_per_op_us),
                ],
                &ran.done,
            ),
        ));
        pause(Duration::from_millis(300))?;

        let (mut cpu, mut ops) = (0.0, 0.0);
        for (command, reference) in [("set", set), ("get", get)] {
            let rate = (OVERLOAD * reference).clamp(1_000.0, MAX_RATE);
            let mut c = loadgen_cmd(bins);
            c.args(["redis", "--addr", &format!("127.0.0.1:{port}")])
                .args([
                    "--command",
                    command,
                    "--keyspace",
                    "10000",
                    "--value-size",
                    "3",
                ]);
            common_args(&mut c, rate, s.redis_secs, "1s", s);
            let run = run_max_round(
                c,
                &format!("faultline-redis-{command}-r{round}"),
                &format!("faultline {command}"),
                "op",
                round,
                rate,
                logs,
                s.redis_secs,
                &mut out.notes,
            )?;
            let ok = num(&run.j, &["ok_ops"]);
            cpu += run.cpu_us * ok;
            ops += ok;
            if command == "set" {
                fl_set.push(run.tput);
            } else {
                fl_get.push(run.tput);
            }
            let mut j = run.j;
            j.set("command", J::Str(command.into()));
            out.runs.push(("redis".into(), j));
            pause(Duration::from_millis(300))?;
        }
        fl_cpu.push(cpu / ops);
    }
    server.stop();
    let theirs = format!("redis-benchmark -c {CONNECTIONS} -P 1");
    out.rows.push(row(
        format!("Redis SET max, {CONNECTIONS} in flight, unpipelined"),
        "ops/s",
        "faultline",
        fl_set,
        theirs.clone(),
        rb_set,
        Goal::AtLeast(0.9),
    ));
    out.rows.push(row(
        format!("Redis GET max, {CONNECTIONS} in flight, unpipelined"),
        "ops/s",
        "faultline",
        fl_get,
        theirs.clone(),
        rb_get,
        Goal::AtLeast(0.9),
    ));
    out.rows.push(row(
        "Redis client CPU per op (SET+GET at max)",
        "µs/op",
        "faultline",
        fl_cpu,
        theirs,
        rb_cpu,
        Goal::AtMost(1.3),
    ));
    Ok(())
}

/// `--csv`: `"SET","81037.28",...` and `"GET",...`.
pub(super) fn parse_redis_benchmark(out: &str) -> Result<(f64, f64), String> {
    let rps = |test: &str| {
        out.lines().find_map(|l| {
            let mut f = l.split(',').map(|x| x.trim().trim_matches('"'));
            (f.next()? == test).then(|| f.next()?.parse::<f64>().ok())?
        })
    };
    match (rps("SET"), rps("GET")) {
        (Some(set), Some(get)) => Ok((set, get)),
        _ => Err(format!(
            "could not read SET and GET rates from redis-benchmark's output:\n{out}"
        )),
    }
}
