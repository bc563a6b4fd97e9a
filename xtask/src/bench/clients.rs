//! Running the clients: Faultline's loadgen and oha, against fresh servers, stalled if asked.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::child::{
    Finished, Ran, SIGCONT, SIGSTOP, check_stop, finish_client, pause, run_client, spawn,
};
use super::installs::Bins;
use super::json::{J, parse_json};
use super::servers::start_recommendations;
use super::settings::Settings;
use super::{CLIENT_SLACK, CONNECTIONS};
use crate::proc;

pub(super) fn loadgen_cmd(bins: &Bins) -> Command {
    Command::new(&bins.loadgen)
}

pub(super) fn common_args(c: &mut Command, rate: f64, secs: u64, op_timeout: &str, s: &Settings) {
    limits_args(c, rate, secs, CONNECTIONS, op_timeout, s);
}

/// `common_args` with a `max_in_flight` of its own (Kafka's batching needs thousands).
pub(super) fn limits_args(
    c: &mut Command,
    rate: f64,
    secs: u64,
    max_in_flight: usize,
    op_timeout: &str,
    s: &Settings,
) {
    c.args(["--rate", &format!("{rate:.0}")])
        .args(["--duration", &format!("{secs}s")])
        .args(["--max-in-flight", &max_in_flight.to_string()])
        .args(["--op-timeout", op_timeout])
        .args(["--worker-threads", &s.worker_threads.to_string()]);
}

/// Runs loadgen and parses its JSON line, with the CPU wait4 saw added.
pub(super) fn run_loadgen(mut c: Command, name: &str, logs: &Path, secs: u64) -> Result<J, String> {
    let ran = run_client(&mut c, name, logs, Duration::from_secs(secs) + CLIENT_SLACK)?;
    loadgen_json(&ran)
}

pub(super) fn loadgen_json(ran: &Ran) -> Result<J, String> {
    let line = ran
        .stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or("loadgen printed no JSON line")?;
    let mut j = parse_json(line).map_err(|e| format!("loadgen's JSON: {e}"))?;
    set_child_times(&mut j, &ran.done);
    Ok(j)
}

pub(super) fn num(j: &J, path: &[&str]) -> f64 {
    j.path(path).and_then(J::num).unwrap_or(f64::NAN)
}

/// One Faultline run at a maximum, as every phase measures it.
pub(super) struct MaxRun {
    /// loadgen's JSON line, with `round` set.
    pub(super) j: J,
    /// Ok ops per second within the schedule.
    pub(super) tput: f64,
    /// Client CPU µs per ok op.
    pub(super) cpu_us: f64,
}

/// Runs loadgen at `intended` (far above capacity), prints its round line as `label`, and notes
/// when Faultline reached 90% of the intended rate: then the rate, not the system, may have
/// been the limit. `secs` bounds the run (see `run_loadgen`).
#[allow(clippy::too_many_arguments)]
pub(super) fn run_max_round(
    c: Command,
    name: &str,
    label: &str,
    unit: &str,
    round: usize,
    intended: f64,
    logs: &Path,
    secs: u64,
    notes: &mut Vec<String>,
) -> Result<MaxRun, String> {
    let mut j = run_loadgen(c, name, logs, secs)?;
    let tput = num(&j, &["throughput_ops_per_s"]);
    let cpu_us = child_cpu_s(&j) / num(&j, &["ok_ops"]) * 1e6;
    println!(
        "   r{round} {label}: {tput:.0} {unit}/s (intended {intended:.0}/s), {cpu_us:.2} µs CPU/{unit}, peak RSS {:.1} MiB, errors {}",
        num(&j, &["child_max_rss_kib"]) / 1024.0,
        num(&j, &["errors"])
    );
    if tput > 0.9 * intended {
        notes.push(format!(
            "{name}: Faultline reached {tput:.0}/s of the {intended:.0}/s intended: the intended rate, not the system, may have been the limit"
        ));
    }
    j.set("round", J::Num(round as f64));
    Ok(MaxRun { j, tput, cpu_us })
}

/// The client's CPU time (user + system, seconds) as loadgen_json recorded it.
pub(super) fn child_cpu_s(j: &J) -> f64 {
    num(j, &["child_cpu_user_s"]) + num(j, &["child_cpu_sys_s"])
}

/// A reference tool's run for the raw report: round, tool, its own numbers, and what wait4 saw.
pub(super) fn reference_run(
    round: usize,
    tool: &str,
    numbers: &[(&str, f64)],
    done: &Finished,
) -> J {
    let mut fields = vec![
        ("round".to_owned(), J::Num(round as f64)),
        ("tool".to_owned(), J::Str(tool.to_owned())),
    ];
    fields.extend(numbers.iter().map(|(k, v)| ((*k).to_owned(), J::Num(*v))));
    let mut j = J::Obj(fields);
    set_child_times(&mut j, done);
    j
}

/// Records the CPU and wall time wait4 saw for the client.
fn set_child_times(j: &mut J, done: &Finished) {
    j.set("child_cpu_user_s", J::Num(done.user_s));
    j.set("child_cpu_sys_s", J::Num(done.sys_s));
    j.set("child_wall_s", J::Num(done.wall_s));
    j.set("child_max_rss_kib", J::Num(done.max_rss_kib));
}

/// Records when the server's stall really began and ended, if it was stalled.
fn set_stall(j: &mut J, window: Option<(f64, f64)>) {
    if let Some((from, to)) = window {
        j.set("stall_s", J::Arr(vec![J::Num(from), J::Num(to)]));
    }
}

/// A stall of the server during a client run: SIGSTOP at `at` after the client's start, SIGCONT
/// `length` later (and on every path: the server's guard continues it before killing it).
#[derive(Debug, Clone, Copy)]
pub(super) struct Stall {
    pub(super) at: Duration,
    pub(super) length: Duration,
}

/// Runs a client against a fresh server, stalling the server if asked; returns the client's run
/// and when the stall really began and ended, in seconds from the client's start.
pub(super) fn run_against_recs(
    bins: &Bins,
    logs: &Path,
    name: &str,
    build: impl FnOnce(&str) -> Command,
    secs: u64,
    stall: Option<Stall>,
) -> Result<(Ran, Option<(f64, f64)>), String> {
    let (mut server, url) = start_recommendations(bins, logs, &format!("recs-{name}"))?;
    let mut cmd = build(&url);
    check_stop()?;
    let shown = proc::display(&cmd);
    let mut client = spawn(&mut cmd, name, logs)?;
    let mut window = None;
    if let Some(stall) = stall {
        pause(stall.at)?;
        let from = client.started.elapsed().as_secs_f64();
        server.signal(SIGSTOP);
        let stalled = pause(stall.length);
        server.signal(SIGCONT);
        stalled?;
        window = Some((from, client.started.elapsed().as_secs_f64()));
    }
    let done = client.wait(Duration::from_secs(secs) + CLIENT_SLACK)?;
    let ran = finish_client(&client, done, &shown)?;
    server.stop();
    Ok((ran, window))
}

#[allow(clippy::too_many_arguments)]
pub(super) fn run_faultline_http(
    bins: &Bins,
    s: &Settings,
    logs: &Path,
    name: &str,
    rate: f64,
    secs: u64,
    op_timeout: &str,
    stall: Option<Stall>,
) -> Result<J, String> {
    let (ran, window) = run_against_recs(
        bins,
        logs,
        name,
        |url| {
            let mut c = loadgen_cmd(bins);
            c.args(["http", "--url", url]);
            common_args(&mut c, rate, secs, op_timeout, s);
            c
        },
        secs,
        stall,
    )?;
    let mut j = loadgen_json(&ran)?;
    set_stall(&mut j, window);
    Ok(j)
}

pub(super) fn run_oha(
    bins: &Bins,
    logs: &Path,
    name: &str,
    rate: f64,
    secs: u64,
    stall: Option<Stall>,
) -> Result<J, String> {
    let (ran, window) = run_against_recs(
        bins,
        logs,
        name,
        |url| {
            let mut c = Command::new(&bins.oha);
            c.args([
                "--no-tui",
                "--output-format",
                "json",
                "--latency-correction",
            ])
            .args(["-q", &format!("{rate:.0}")])
            .args(["-z", &format!("{secs}s")])
            .args(["-c", &CONNECTIONS.to_string()])
            .arg(url);
            c
        },
        secs,
        stall,
    )?;
    let mut j = parse_json(ran.stdout.trim()).map_err(|e| format!("oha's JSON: {e}"))?;
    // Keep what the comparison reads; the histograms are long.
    for key in [
        "responseTimeHistogram",
        "firstByteHistogram",
        "firstBytePercentiles",
        "details",
        "rps",
    ] {
        j.remove(key);
    }
    j.set("tool", J::Str("oha".into()));
    set_child_times(&mut j, &ran.done);
    set_stall(&mut j, window);
    Ok(j)
}

/// oha's corrected p50, p99, p99.9 in µs (it reports seconds).
pub(super) fn oha_percentiles(j: &J) -> [f64; 3] {
    ["p50", "p99", "p99.9"].map(|p| num(j, &["latencyPercentiles", p]) * 1e6)
}

pub(super) fn corrected(j: &J) -> [f64; 3] {
    ["p50_us", "p99_us", "p999_us"].map(|p| num(j, &["corrected_us", p]))
}

pub(super) fn oha_errors(j: &J) -> f64 {
    match j.get("errorDistribution") {
        Some(J::Obj(fields)) => fields.iter().filter_map(|(_, v)| v.num()).sum::<f64>() + 0.0,
        _ => 0.0,
    }
}
