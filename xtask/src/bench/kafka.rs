//! The kafka phase: Kafka's own `ProducerPerformance` vs Faultline's Kafka workload against one
//! real broker (`xtask/bench-labs/kafka.yaml`, held by `faultline lab up`), at the same acks,
//! batch size, linger and message size; and Faultline with and without the ack ledger's keys.
//!
//! ProducerPerformance has no duration, only a record count, and no in-flight limit but its
//! 32 MB buffer; Faultline runs for `kafka_secs` at twice ProducerPerformance's rate with up to
//! `MAX_IN_FLIGHT` messages in flight, and counts what completed inside its schedule.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::child::{pause, run_client};
use super::clients::{limits_args, reference_run, run_loadgen, run_max_round};
use super::installs::Bins;
use super::json::J;
use super::lab::HeldLab;
use super::results::{Goal, Results, row};
use super::settings::Settings;
use super::{MAX_RATE, OVERLOAD};
use crate::Ctx;

const TOPIC: &str = "bench";
const PARTITIONS: u32 = 3;
const VALUE_SIZE: usize = 100;
/// Java's default is 16 KiB; librdkafka's 1 MB. One value for both.
const BATCH_SIZE: u32 = 65_536;
const LINGER_MS: u32 = 5;
/// `faultline::load::MAX_IN_FLIGHT`.
const MAX_IN_FLIGHT: usize = 10_000;
/// Messages still queued when the schedule ends get their op timeout (30 s) to finish.
const QUEUED_SLACK_S: u64 = 30;

pub(super) fn kafka_phase(
    ctx: &Ctx,
    bins: &Bins,
    s: &Settings,
    logs: &Path,
    out: &mut Results,
) -> Result<(), String> {
    println!(
        "\n== kafka: ProducerPerformance vs Faultline, acks=all, {VALUE_SIZE}-byte messages, batch.size {BATCH_SIZE}, linger.ms {LINGER_MS}, {} round(s)",
        s.rounds
    );
    let libs = crate::deps::KAFKA.libs(ctx);
    let java = java();
    let lab = HeldLab::up(
        bins,
        &ctx.root.join("xtask/bench-labs/kafka.yaml"),
        logs,
        "lab-kafka",
    )?;
    let addr = lab.addr("k1")?.to_owned();
    println!("   lab {} is up; broker k1 at {addr}", lab.netns);

    // The broker's JIT warms up on someone's run: on neither tool's measured one.
    let warm = loadgen(bins, &lab, &addr, 20_000.0, 3, true, s);
    run_loadgen(warm, "faultline-kafka-warmup", logs, 3 + QUEUED_SLACK_S)?;

    let (mut pp_rate, mut pp_cpu) = (vec![], vec![]);
    let (mut on_rate, mut off_rate, mut on_cpu) = (vec![], vec![], vec![]);
    for round in 1..=s.rounds {
        let mut c = lab.command(&java);
        c.arg("-Xmx512m")
            .arg("-cp")
            .arg(libs.join("*"))
            .arg("org.apache.kafka.tools.ProducerPerformance")
            .args(["--topic", TOPIC])
            .args(["--num-records", &s.kafka_records.to_string()])
            .args(["--record-size", &VALUE_SIZE.to_string()])
            .args(["--throughput", "-1", "--producer-props"])
            .arg(format!("bootstrap.servers={addr}"))
            .args(["acks=all", "enable.idempotence=true"])
            .arg(format!("batch.size={BATCH_SIZE}"))
            .arg(format!("linger.ms={LINGER_MS}"));
        let ran = run_client(
            &mut c,
            &format!("producer-performance-r{round}"),
            logs,
            Duration::from_secs(120),
        )?;
        let rate = parse_producer_performance(&ran.stdout)?;
        let cpu_us = ran.done.cpu_s() / s.kafka_records as f64 * 1e6;
        println!(
            "   r{round} ProducerPerformance: {rate:.0} msgs/s, {cpu_us:.2} µs CPU/msg (JVM included), peak RSS {:.0} MiB",
            ran.done.max_rss_kib / 1024.0
        );
        pp_rate.push(rate);
        pp_cpu.push(cpu_us);
        out.runs.push((
            "kafka".into(),
            reference_run(
                round,
                "ProducerPerformance",
                &[
                    ("msgs_per_s", rate),
                    ("records", s.kafka_records as f64),
                    ("cpu_us_per_msg", cpu_us),
                ],
                &ran.done,
            ),
        ));
        pause(Duration::from_millis(500))?;

        let intended = (OVERLOAD * rate).clamp(1_000.0, MAX_RATE);
        for ledger in [true, false] {
            let which = if ledger { "ledger" } else { "no-ledger" };
            let c = loadgen(bins, &lab, &addr, intended, s.kafka_secs, ledger, s);
            let name = format!("faultline-kafka-{which}-r{round}");
            let label = format!("faultline ({which})");
            let secs = s.kafka_secs + QUEUED_SLACK_S;
            let run = run_max_round(
                c,
                &name,
                &label,
                "msg",
                round,
                intended,
                logs,
                secs,
                &mut out.notes,
            )?;
            if ledger {
                on_rate.push(run.tput);
                on_cpu.push(run.cpu_us);
            } else {
                off_rate.push(run.tput);
            }
            let mut j = run.j;
            j.set("ledger", J::Bool(ledger));
            out.runs.push(("kafka".into(), j));
            pause(Duration::from_millis(500))?;
        }
    }
    drop(lab);
    let theirs = "ProducerPerformance, acks=all";
    out.rows.push(row(
        "Kafka produce max, acks=all, 100-byte messages",
        "msgs/s",
        "faultline",
        on_rate.clone(),
        theirs,
        pp_rate,
        Goal::AtLeast(0.9),
    ));
    out.rows.push(row(
        "Kafka client CPU per message at max",
        "µs/msg",
        "faultline",
        on_cpu,
        theirs,
        pp_cpu,
        Goal::Info,
    ));
    out.rows.push(row(
        "Kafka ack ledger on vs off (message keys)",
        "msgs/s",
        "faultline",
        on_rate,
        "faultline, ledger off",
        off_rate,
        Goal::AtLeast(0.9),
    ));
    Ok(())
}

fn loadgen(
    bins: &Bins,
    lab: &HeldLab,
    addr: &str,
    rate: f64,
    secs: u64,
    ledger: bool,
    s: &Settings,
) -> std::process::Command {
    let mut c = lab.command(&bins.loadgen);
    c.args(["kafka", "--bootstrap", addr, "--topic", TOPIC])
        .args(["--partitions", &PARTITIONS.to_string()])
        .args(["--value-size", &VALUE_SIZE.to_string()])
        .args(["--batch-size", &BATCH_SIZE.to_string()])
        .args(["--linger", &format!("{LINGER_MS}ms")])
        .args(["--ledger", if ledger { "on" } else { "off" }]);
    limits_args(&mut c, rate, secs, MAX_IN_FLIGHT, "30s", s);
    c
}

/// `$JAVA_HOME/bin/java` when set, else `java` from PATH (as the harness finds it).
fn java() -> PathBuf {
    std::env::var_os("JAVA_HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join("bin/java"))
        .filter(|j| j.is_file())
        .unwrap_or_else(|| PathBuf::from("java"))
}

/// Its last line: `1000000 records sent, 84324.142002 records/sec (8.04 MB/sec), ...`.
pub(super) fn parse_producer_performance(out: &str) -> Result<f64, String> {
    out.lines()
        .rev()
        .find_map(|l| {
            let (_, rest) = l.split_once(" records sent, ")?;
            rest.split_once(" records/sec")?
                .0
                .trim()
                .parse::<f64>()
                .ok()
        })
        .ok_or_else(|| format!("no `records/sec` in ProducerPerformance's output:\n{out}"))
}
