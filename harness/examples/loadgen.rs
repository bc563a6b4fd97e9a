//! `loadgen`: drives ONE workload of Faultline's open-model load generator (`faultline::load`)
//! against a given address and prints one JSON line of results. `cargo xtask bench` runs it side
//! by side with redis-benchmark, wrk and oha (see xtask/src/bench.rs).
//!
//! ```text
//! loadgen http  --url 'http://127.0.0.1:8080/recommendations/u{n%1000}' --rate 2000 --duration 10s --max-in-flight 50
//! loadgen redis --addr 127.0.0.1:6379 --command set --rate 100000 --duration 5s --max-in-flight 50
//! loadgen cql   --node 127.0.1.1:9042 --dc dc1 --keyspace bench --rate 20000 --duration 10s --max-in-flight 50
//! loadgen kafka --bootstrap 127.0.1.1:9092 --topic bench --partitions 3 --rate 100000 --duration 10s --max-in-flight 10000
//! ```
//!
//! CQL and Kafka run against a lab that `faultline lab up` holds (the schema and topics are
//! its own); the bench runs this inside the lab's namespace with `ip netns exec`.
//!
//! It runs the library exactly as `faultline run` does (a multi-threaded tokio runtime, one
//! `run_workload` from t0), then reads the raw per-op record:
//!
//! - `corrected_us`: latency from each op's INTENDED start (what verdicts use);
//! - `uncorrected_us`: from the moment the op got its in-flight slot and was sent, which is what
//!   a closed-loop tool reports (`OpRecord::service_us`);
//! - `throughput_ops_per_s`: ok ops that COMPLETED inside the schedule `[start, start+duration]`,
//!   per second. With a rate far above capacity this is the generator's closed-loop maximum at
//!   `max_in_flight` (the backlog still queued at the end is not counted, nor what drains after);
//! - `cpu_user_s` / `cpu_sys_s`: this process's own CPU (getrusage), set-up included.
//!
//! Exit codes: 0 ran (whatever the ops' outcomes), 2 invalid arguments or plan, 1 anything else.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use faultline::load::{
    AckWatermarks, CqlTarget, KafkaTarget, LatencySummary, LiveStats, ProducerSettings,
    RedisCommand, WorkloadKind, WorkloadPlan, WorkloadRecord, prepare, summarize,
};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

/// Drive one Faultline workload and print one JSON line of results.
#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Debug, Subcommand)]
enum Workload {
    /// GET a templated URL (`{n}` is the op index, `{n%K}` the index mod K).
    Http {
        #[arg(long)]
        url: String,
        #[command(flatten)]
        common: Common,
    },
    /// Redis GET/SET; key `faultline:{n % keyspace}`.
    Redis {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, value_enum)]
        command: RedisOp,
        /// At least the pool size (4), or every op lands on one connection.
        #[arg(long, default_value_t = 10_000)]
        keyspace: u64,
        /// Bytes per SET value (redis-benchmark's default `-d` is 3).
        #[arg(long, default_value_t = 3)]
        value_size: usize,
        #[command(flatten)]
        common: Common,
    },
    /// CQL INSERTs of new keys into `<keyspace>.writes` (the experiments' ledger workload).
    Cql {
        /// A node of the local datacenter (the driver learns the others).
        #[arg(long)]
        node: SocketAddr,
        #[arg(long)]
        dc: String,
        #[arg(long)]
        keyspace: String,
        #[arg(long, default_value = "local_quorum")]
        consistency: String,
        #[arg(long, default_value_t = 100)]
        value_size: usize,
        #[command(flatten)]
        common: Common,
    },
    /// Kafka produce, one message per op, acknowledged per `--acks`.
    Kafka {
        #[arg(long)]
        bootstrap: String,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        partitions: u32,
        #[arg(long, default_value = "all")]
        acks: String,
        #[arg(long, default_value_t = 100)]
        value_size: usize,
        /// `batch.size` in bytes (librdkafka's default when absent).
        #[arg(long)]
        batch_size: Option<u32>,
        #[arg(long, value_parser = humantime::parse_duration, default_value = "5ms")]
        linger: Duration,
        /// `off`: messages without keys, so no ack ledger could be read back (what it costs).
        #[arg(long, value_enum, default_value_t = Ledger::On)]
        ledger: Ledger,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Ledger {
    On,
    Off,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RedisOp {
    Get,
    Set,
    Setget,
}

#[derive(Debug, Args)]
struct Common {
    /// Intended ops per second (open model: op i is due at i / rate whatever happened before).
    #[arg(long)]
    rate: f64,
    /// e.g. `10s`, `500ms`.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Duration,
    #[arg(long)]
    max_in_flight: usize,
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    op_timeout: Duration,
    /// Tokio worker threads; 0 = tokio's default (one per core), as `faultline run` uses.
    #[arg(long, default_value_t = 0)]
    worker_threads: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (plan, common) = match &cli.workload {
        Workload::Http { url, common } => (
            plan_of(
                "loadgen-http",
                WorkloadKind::Http {
                    url_template: url.clone(),
                    tag_header: None,
                },
                common,
            ),
            common,
        ),
        Workload::Redis {
            addr,
            command,
            keyspace,
            value_size,
            common,
        } => (
            plan_of(
                "loadgen-redis",
                WorkloadKind::Redis {
                    addr: *addr,
                    command: match command {
                        RedisOp::Get => RedisCommand::Get,
                        RedisOp::Set => RedisCommand::Set,
                        RedisOp::Setget => RedisCommand::SetGet,
                    },
                    keyspace: *keyspace,
                    value_size: *value_size,
                    sentinel: None,
                },
                common,
            ),
            common,
        ),
        Workload::Cql {
            node,
            dc,
            keyspace,
            consistency,
            value_size,
            common,
        } => (
            plan_of(
                "loadgen-cql",
                WorkloadKind::Cql {
                    target: CqlTarget {
                        contact_points: vec![*node],
                        local_dc: dc.clone(),
                        keyspace: keyspace.clone(),
                        consistency: consistency.clone(),
                        read_keys: None,
                        value_size: *value_size,
                        key_base: 0,
                        reads_latest_of: None,
                        address_translation: Vec::new(),
                    },
                },
                common,
            ),
            common,
        ),
        Workload::Kafka {
            bootstrap,
            topic,
            partitions,
            acks,
            value_size,
            batch_size,
            linger,
            ledger,
            common,
        } => (
            plan_of(
                "loadgen-kafka",
                WorkloadKind::Kafka {
                    target: KafkaTarget {
                        bootstrap: bootstrap.clone(),
                        topic: topic.clone(),
                        partitions: *partitions,
                        ledger: *ledger == Ledger::On,
                    },
                    producer: ProducerSettings {
                        enable_idempotence: acks == "all",
                        acks: acks.clone(),
                        linger: *linger,
                        value_size: *value_size,
                        batch_size: *batch_size,
                        ..ProducerSettings::default()
                    },
                },
                common,
            ),
            common,
        ),
    };
    if let Err(error) = plan.validate() {
        eprintln!("loadgen: {error}");
        return ExitCode::from(2);
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if common.worker_threads > 0 {
        builder.worker_threads(common.worker_threads);
    }
    let runtime = match builder.build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("loadgen: the async runtime could not start: {error}");
            return ExitCode::FAILURE;
        }
    };
    let wall = std::time::Instant::now();
    let record = runtime.block_on(async {
        // Never cancelled: the workload is bounded by its plan (count and hard deadline).
        let (_keep, cancel) = watch::channel(false);
        // Connections first (a CQL session, a Kafka producer), then t0: set-up is not load.
        let prepared = prepare(&plan, &AckWatermarks::default()).await?;
        prepared
            .run(
                Instant::now(),
                Duration::ZERO,
                cancel,
                Arc::new(LiveStats::new()),
            )
            .await
    });
    let wall_s = wall.elapsed().as_secs_f64();
    // Runtime threads are joined before the CPU is read, so it is all in.
    drop(runtime);
    let record = match record {
        Ok(record) => record,
        Err(error) => {
            eprintln!("loadgen: {error}");
            return ExitCode::FAILURE;
        }
    };
    let (cpu_user_s, cpu_sys_s, max_rss_kib) = rusage_self();
    let mut line = results(&plan, &record);
    line["worker_threads"] = json!(common.worker_threads);
    line["wall_s"] = json!(wall_s);
    line["cpu_user_s"] = json!(cpu_user_s);
    line["cpu_sys_s"] = json!(cpu_sys_s);
    line["max_rss_kib"] = json!(max_rss_kib);
    println!("{line}");
    ExitCode::SUCCESS
}

fn plan_of(name: &str, kind: WorkloadKind, common: &Common) -> WorkloadPlan {
    WorkloadPlan {
        name: name.into(),
        kind,
        rate_per_sec: common.rate,
        duration: common.duration,
        max_in_flight: common.max_in_flight,
        op_timeout: common.op_timeout,
    }
}

fn results(plan: &WorkloadPlan, record: &WorkloadRecord) -> Value {
    let summary = summarize(record, &[]);
    let (from_us, to_us) = (record.started_us, record.schedule_end_us);
    let window_s = (to_us - from_us) as f64 / 1e6;
    let mut uncorrected = hdr();
    let mut ok_ops = 0u64;
    let mut ok_in_window = 0u64;
    let mut max_uncorrected = 0u64;
    for op in record.ops.iter().filter(|op| op.outcome.is_ok()) {
        ok_ops += 1;
        let done_us = op.intended_us.saturating_add(op.latency_us);
        if (from_us..=to_us).contains(&done_us) {
            ok_in_window += 1;
        }
        let service_us = u64::from(op.service_us);
        uncorrected.saturating_record(service_us);
        max_uncorrected = max_uncorrected.max(service_us);
    }
    let uncorrected = (!uncorrected.is_empty()).then(|| {
        let at = |q: f64| uncorrected.value_at_quantile(q).min(max_uncorrected);
        LatencySummary {
            p50_us: at(0.50),
            p99_us: at(0.99),
            p999_us: at(0.999),
            max_us: max_uncorrected,
        }
    });
    let throughput = if window_s > 0.0 {
        ok_in_window as f64 / window_s
    } else {
        0.0
    };
    let kind = match plan.kind {
        WorkloadKind::Http { .. } => "http",
        WorkloadKind::Redis { .. } => "redis",
        WorkloadKind::Kafka { .. } => "kafka",
        WorkloadKind::Cql { .. } => "cql",
    };
    json!({
        "tool": "faultline",
        "kind": kind,
        "intended_rate": plan.rate_per_sec,
        "duration_s": plan.duration.as_secs_f64(),
        "max_in_flight": plan.max_in_flight,
        "intended_ops": record.intended_ops,
        "dispatched_ops": record.dispatched_ops,
        "recorded_ops": record.ops.len(),
        "ok_ops": ok_ops,
        "errors": summary.total.errors,
        "errors_by_kind": summary.total.errors_by_kind,
        "error_samples": summary.error_samples,
        "ok_in_window": ok_in_window,
        "throughput_ops_per_s": throughput,
        "achieved_rate": summary.achieved_rate,
        "corrected_us": summary.total.latency,
        "uncorrected_us": uncorrected,
        "sched_lag_p99_us": summary.sched_lag_p99_us,
        "sched_lag_max_us": summary.sched_lag_max_us,
        "generator_valid": summary.generator_valid,
        "invalid_reason": summary.invalid_reason,
        "tags": summary.total.tags,
    })
}

/// Same bounds as the library's latency histograms: 1 µs to an hour, 3 significant digits.
fn hdr() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600 * 1_000_000, 3).expect("constant histogram bounds")
}

/// This process's user and system CPU seconds so far (all threads, joined ones included) and
/// its peak resident set in KiB.
fn rusage_self() -> (f64, f64, i64) {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return (f64::NAN, f64::NAN, -1);
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(usage.ru_utime), secs(usage.ru_stime), usage.ru_maxrss)
}
