//! The open-model load generator: runs one bounded workload (HTTP or Redis) at a fixed intended
//! rate, records every op's latency from its intended start, and summarizes the record afterwards.
//!
//! Shape of a run: `run_workload` validates the plan, builds the client, and spawns the
//! scheduler (`schedule`), which dispatches op i at `t0 + start_offset + i / rate` regardless of
//! earlier ops, up to `max_in_flight` executing at once. Each op is measured from its intended
//! time, so waiting for a slot behind a stalled system counts (coordinated omission corrected).
//! The result is a `WorkloadRecord` of raw ops; `summarize` turns it into per-second, per-phase
//! and total statistics in one deterministic pass, so verdicts and reports can be recomputed
//! from a recorded run.
//!
//! Invariant: a workload is bounded in count (`floor(rate * duration)` ops) and in time (it
//! returns by `start + duration + op_timeout + GRACE`, or promptly after cancellation).

pub mod cql_ops;
mod http;
pub mod kafka_ops;

pub use kafka_ops::ProducerSettings;
mod live;
mod outcome;
mod redis_ops;
mod schedule;
mod summary;
mod tables;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

use crate::errors::LoadError;

pub use cql_ops::{
    CqlClient, CqlConfig, CqlOp, ReadBack, connect_cql, cql_value, is_cql_value, read_back,
};
pub use live::{LiveSnapshot, LiveStats};
pub use outcome::{ErrorKind, OpRecord, Outcome, OutcomeCode, ServerError};
pub use redis_ops::{primary_client, server_name, unique_key, unique_value_of};
pub use summary::{
    LatencySummary, MAX_SCHED_LAG_INTERVAL_FRACTION, MIN_DISPATCH_FRACTION, MIN_SCHED_LAG_LIMIT_US,
    PhaseWindow, WindowStats, WorkloadSummary, summarize,
};

/// Time after `duration + op_timeout` for the last ops' answers and task wake-ups to land
/// before the workload stops by itself.
pub const GRACE: Duration = Duration::from_millis(500);
/// Far above what the lab's few cores serve (the bench drove about 120,000 HTTP requests/s on
/// 2 cores, shared with the server): a plan above it could only measure the generator, so it
/// is refused rather than run invalid. Below it, the run's own lag check says whether the
/// generator kept up.
pub const MAX_RATE_PER_SEC: f64 = 500_000.0;
/// Every op is kept in memory (24 bytes each): 10 M ops is 240 MB per workload.
pub const MAX_OPS_PER_WORKLOAD: u64 = 10_000_000;
/// Each in-flight slot may hold a socket; this stays well inside default descriptor limits
/// once the lab's components have taken theirs.
pub const MAX_IN_FLIGHT: usize = 10_000;
/// Values are load, not a bandwidth test; large ones belong to a toxiproxy bandwidth fault.
pub const MAX_VALUE_SIZE: usize = 1 << 20;
/// Latencies above this are recorded as this (histograms need a bound).
const MAX_RECORDED_US: u64 = 3_600 * 1_000_000;

/// One workload of an experiment, as the planner resolved it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadPlan {
    pub name: String,
    pub kind: WorkloadKind,
    pub rate_per_sec: f64,
    pub duration: Duration,
    pub max_in_flight: usize,
    pub op_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WorkloadKind {
    /// GET (v1) of `url_template`, where `{n}` is replaced by the op index and `{n%K}` by index
    /// mod K. `tag_header`: if set, the value of this response header is recorded per op
    /// (interned into a small table); services under test report e.g.
    /// `x-faultline-source: live|fallback-open|fallback-error`.
    Http {
        url_template: String,
        tag_header: Option<String>,
    },
    /// Redis commands against `addr`; key = `faultline:{n % keyspace}` (for `SetGet`,
    /// `faultline:{(n / 2) % keyspace}`, so each GET reads what the SET before it wrote). GETs
    /// are tagged `hit` or `miss`.
    Redis {
        addr: SocketAddr,
        command: RedisCommand,
        keyspace: u64,
        value_size: usize,
        /// Find the primary through Sentinel instead of `addr` (which is then only where the
        /// primary was at plan time). Writes are tagged with the address that acknowledged them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sentinel: Option<SentinelTarget>,
    },
    /// One message per op (key = the op index), tagged with the partition that acknowledged it;
    /// every Kafka workload is a ledger workload, read back from the topic after healing.
    Kafka {
        target: KafkaTarget,
        producer: kafka_ops::ProducerSettings,
    },
    /// CQL writes (key = the op index: a ledger workload) or reads, at a consistency level,
    /// DC-aware (never leaving `local_dc`), token-aware, prepared.
    Cql { target: CqlTarget },
}

/// Where a Kafka workload produces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KafkaTarget {
    /// `ip:port,...` of the brokers.
    pub bootstrap: String,
    pub topic: String,
    /// The topic's partition count: acknowledged messages are tagged `p0..p<N-1>`.
    pub partitions: u32,
    /// Messages carry their op index as key (the ack ledger's read-back needs it). `false` only
    /// in `cargo xtask bench`, to measure what the ledger costs.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub ledger: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// Where a CQL workload goes and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CqlTarget {
    /// The nodes of `local_dc`.
    pub contact_points: Vec<SocketAddr>,
    pub local_dc: String,
    pub keyspace: String,
    /// CQL spelling, e.g. `local_quorum`.
    pub consistency: String,
    /// `None`: writes (a new key per op: the ack ledger); `Some(k)`: reads of key `n % k`.
    pub read_keys: Option<u64>,
    pub value_size: usize,
    /// Writes use key `key_base + n`, so that several writing workloads never share a key (each
    /// gets its own range of 10^12).
    #[serde(default)]
    pub key_base: u64,
    /// Reads only: each op reads the key this writing workload acknowledged last before the op
    /// started (instead of `n % read_keys`), so a missing row is a stale read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reads_latest_of: Option<String>,
    /// (node address as the cluster reports it, its Toxiproxy listener): nodes the driver
    /// reaches through a proxy (`client_proxies`). Empty: every node directly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub address_translation: Vec<(SocketAddr, SocketAddr)>,
}

/// A Sentinel-monitored primary: its master name and the sentinels to ask.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentinelTarget {
    pub master: String,
    pub sentinels: Vec<SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RedisCommand {
    Get,
    Set,
    /// SET on even op indices, GET on odd ones.
    SetGet,
    /// SET of a key no other op writes (`faultline:u:{n}`, value `n`): every acknowledged op is
    /// an entry of the ack ledger, read back after the faults are healed.
    SetUnique,
}

impl WorkloadKind {
    /// The datacenter the workload is pinned to: a CQL workload's `local_dc` (it never leaves
    /// it); other kinds have none.
    pub fn datacenter(&self) -> Option<&str> {
        match self {
            WorkloadKind::Cql { target } => Some(&target.local_dc),
            WorkloadKind::Http { .. } | WorkloadKind::Redis { .. } | WorkloadKind::Kafka { .. } => {
                None
            }
        }
    }
}

impl WorkloadPlan {
    /// `floor(rate * duration)`. The small epsilon keeps products such as 0.7 * 10 s, which f64
    /// computes as 6.999..., from losing an op.
    pub fn intended_ops(&self) -> u64 {
        let ops = self.rate_per_sec * self.duration.as_secs_f64();
        if ops.is_finite() && ops > 0.0 {
            (ops + 1e-6).floor() as u64
        } else {
            0
        }
    }

    /// When, after the workload's start, it stops by itself at the latest.
    pub fn hard_deadline(&self) -> Duration {
        self.duration
            .saturating_add(self.op_timeout)
            .saturating_add(GRACE)
    }

    /// Checks everything that can be checked without the network; `faultline validate` and
    /// `plan` can call this to report bad workloads before anything starts.
    pub fn validate(&self) -> Result<(), LoadError> {
        let invalid = |field: &'static str, detail: String| LoadError::InvalidPlan {
            workload: self.name.clone(),
            field,
            detail,
        };
        let rate = self.rate_per_sec;
        if !(rate.is_finite() && rate > 0.0 && rate <= MAX_RATE_PER_SEC) {
            return Err(invalid(
                "rate_per_sec",
                format!("`{rate}` must be > 0 and <= {MAX_RATE_PER_SEC}"),
            ));
        }
        if self.duration.is_zero() {
            return Err(invalid("duration", "must be > 0".into()));
        }
        let ops = self.intended_ops();
        if ops == 0 {
            return Err(invalid(
                "duration",
                format!(
                    "{rate}/s for {} ms is less than one op",
                    self.duration.as_millis()
                ),
            ));
        }
        if ops > MAX_OPS_PER_WORKLOAD {
            return Err(invalid(
                "duration",
                format!(
                    "{ops} ops exceed the limit of {MAX_OPS_PER_WORKLOAD} (hint: split the workload)"
                ),
            ));
        }
        if !(1..=MAX_IN_FLIGHT).contains(&self.max_in_flight) {
            return Err(invalid(
                "max_in_flight",
                format!("`{}` must be 1..={MAX_IN_FLIGHT}", self.max_in_flight),
            ));
        }
        if self.op_timeout.is_zero() {
            return Err(invalid("op_timeout", "must be > 0".into()));
        }
        match &self.kind {
            WorkloadKind::Http {
                url_template,
                tag_header,
            } => {
                let template = http::UrlTemplate::parse(url_template)
                    .map_err(|e| invalid("url_template", e))?;
                http::Target::of(&template).map_err(|e| invalid("url_template", e))?;
                if let Some(name) = tag_header {
                    http::parse_tag_header(name).map_err(|e| invalid("tag_header", e))?;
                }
            }
            WorkloadKind::Redis {
                keyspace,
                value_size,
                ..
            } => {
                if *keyspace == 0 {
                    return Err(invalid("keyspace", "must be >= 1".into()));
                }
                if *value_size > MAX_VALUE_SIZE {
                    return Err(invalid(
                        "value_size",
                        format!("`{value_size}` exceeds {MAX_VALUE_SIZE} bytes"),
                    ));
                }
            }
            WorkloadKind::Cql { target } => {
                cql_ops::parse_consistency(&target.consistency)
                    .map_err(|e| invalid("consistency", e))?;
                if target.contact_points.is_empty() {
                    return Err(invalid(
                        "contact_points",
                        "no node in the local datacenter".into(),
                    ));
                }
            }
            WorkloadKind::Kafka { target, producer } => {
                producer.validate().map_err(|e| invalid("producer", e))?;
                if target.partitions == 0 || target.partitions > 62 {
                    // One tag per partition, within the tag table's 64 slots.
                    return Err(invalid(
                        "partitions",
                        format!("`{}` must be 1..=62", target.partitions),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Everything one workload did, raw. Times are µs offsets from the run's t0.
#[derive(Debug, Clone)]
pub struct WorkloadRecord {
    pub plan_name: String,
    pub rate_per_sec: f64,
    /// Invariant: sorted by `intended_us`; one per dispatched op, except ops abandoned by
    /// cancellation, which are not recorded.
    pub ops: Vec<OpRecord>,
    /// Invariant: `tags[0] == ""` (no tag); `OpRecord::tag` indexes this table.
    pub tags: Vec<String>,
    /// The first error message seen per outcome code, for diagnosis.
    pub error_samples: BTreeMap<OutcomeCode, String>,
    /// Dispatch time minus intended time per op, µs: the generator's own lag.
    pub sched_lag: Histogram<u64>,
    pub intended_ops: u64,
    pub dispatched_ops: u64,
    /// The intended start of op 0 (= start_offset): windows are aligned to it.
    pub started_us: u64,
    /// `started_us + duration`: no op is intended at or after this.
    pub schedule_end_us: u64,
    /// When the last op finished and the workload returned.
    pub ended_us: u64,
    /// Set if the workload was cancelled; only ops intended before it exist.
    pub cancelled_at_us: Option<u64>,
    /// Client-side counters (Kafka: `retries`, produce requests re-sent).
    pub counters: BTreeMap<String, u64>,
}

/// Runs one workload to completion, deadline, or cancellation (`cancel` turning `true`).
///
/// Errors only for an invalid plan or a client that cannot be built: failing ops are
/// measurements, recorded per op. A Redis server that is down at start is such a measurement; the
/// pool keeps reconnecting with backoff.
///
/// Invariant: returns by `t0 + start_offset + plan.hard_deadline()` (plus scheduling slack).
pub async fn run_workload(
    plan: &WorkloadPlan,
    t0: Instant,
    start_offset: Duration,
    cancel: watch::Receiver<bool>,
    live: Arc<LiveStats>,
) -> Result<WorkloadRecord, LoadError> {
    prepare(plan, &AckWatermarks::default())
        .await?
        .run(t0, start_offset, cancel, live)
        .await
}

/// A workload with its client built (and, for clients that connect up front such as CQL,
/// connected), ready to start. Preparing before the run's t0 keeps connection set-up out of
/// the schedule: otherwise the first ops would be due before the client exists.
pub struct PreparedWorkload {
    plan: WorkloadPlan,
    exec: schedule::Executor,
    tags: tables::TagTable,
}

/// The last key each CQL writing workload had acknowledged, shared with the workloads that read
/// it (`CqlTarget::reads_latest_of`) within one run: read-after-acknowledged-write checks.
#[derive(Debug, Default)]
pub struct AckWatermarks(std::sync::Mutex<BTreeMap<String, Arc<std::sync::atomic::AtomicU64>>>);

impl AckWatermarks {
    /// The watermark of `workload`: 0 until it acknowledges something, then its last acked key + 1.
    pub fn of(&self, workload: &str) -> Arc<std::sync::atomic::AtomicU64> {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(workload.to_string()).or_default().clone()
    }
}

/// Validates the plan and builds its client. Errors only for an invalid plan or a client that
/// cannot be built. Workloads of one run share `watermarks`.
pub async fn prepare(
    plan: &WorkloadPlan,
    watermarks: &AckWatermarks,
) -> Result<PreparedWorkload, LoadError> {
    plan.validate()?;
    let setup = |detail: String| LoadError::Setup {
        workload: plan.name.clone(),
        detail,
    };
    let tags = tables::TagTable::new();
    let exec = match &plan.kind {
        WorkloadKind::Http {
            url_template,
            tag_header,
        } => {
            // Both parse: validate() just checked them.
            let target = http::UrlTemplate::parse(url_template)
                .and_then(|template| http::Target::of(&template))
                .map_err(&setup)?;
            let tag_header = tag_header
                .as_deref()
                .map(http::parse_tag_header)
                .transpose()
                .map_err(&setup)?;
            schedule::Executor::Http(http::HttpExec::new(target, tag_header, plan.max_in_flight))
        }
        WorkloadKind::Redis {
            addr,
            command,
            keyspace,
            value_size,
            sentinel,
        } => {
            let redis = redis_ops::RedisExec::new(
                *addr,
                sentinel.clone(),
                *command,
                *keyspace,
                *value_size,
                plan.max_in_flight,
                plan.op_timeout,
                &tags,
            )
            .map_err(|e| {
                setup(format!(
                    "cannot configure the Redis client for `{addr}`: {e}"
                ))
            })?;
            redis.warm_up();
            schedule::Executor::Redis(redis)
        }
        WorkloadKind::Kafka { target, producer } => {
            let mut kafka = kafka_ops::KafkaExec::new(
                target.bootstrap.clone(),
                target.topic.clone(),
                producer.clone(),
                target.partitions,
                plan.max_in_flight,
                plan.op_timeout,
                &tags,
            )
            .map_err(|e| {
                setup(format!(
                    "cannot build the Kafka producer for `{}`: {e}",
                    target.topic
                ))
            })?;
            kafka.keyed = target.ledger;
            kafka.turn_ops = kafka_ops::turn_ops(plan.rate_per_sec);
            schedule::Executor::Kafka(kafka)
        }
        WorkloadKind::Cql { target } => {
            let config = cql_ops::CqlConfig {
                contact_points: target.contact_points.clone(),
                local_dc: target.local_dc.clone(),
                keyspace: target.keyspace.clone(),
                op: match (target.read_keys, &target.reads_latest_of) {
                    (None, _) => cql_ops::CqlOp::Write,
                    (Some(_), Some(_)) => cql_ops::CqlOp::ReadLatest,
                    (Some(keys), None) => cql_ops::CqlOp::Read { keys },
                },
                watermark: match (target.read_keys, &target.reads_latest_of) {
                    (None, _) => Some(watermarks.of(&plan.name)),
                    (Some(_), Some(writer)) => Some(watermarks.of(writer)),
                    (Some(_), None) => None,
                },
                consistency: cql_ops::parse_consistency(&target.consistency).map_err(&setup)?,
                value_size: target.value_size,
                max_in_flight: plan.max_in_flight,
                op_timeout: plan.op_timeout,
                address_translation: (!target.address_translation.is_empty())
                    .then(|| target.address_translation.iter().copied().collect()),
            };
            let cql = cql_ops::CqlExec::new(&config, &tags).await.map_err(|e| {
                setup(format!(
                    "cannot connect to Cassandra in `{}`: {e}",
                    target.local_dc
                ))
            })?;
            schedule::Executor::Cql(cql, target.key_base)
        }
    };
    Ok(PreparedWorkload {
        plan: plan.clone(),
        exec,
        tags,
    })
}

impl PreparedWorkload {
    pub fn name(&self) -> &str {
        &self.plan.name
    }

    /// Runs the workload to completion, deadline, or cancellation (`cancel` turning `true`).
    pub async fn run(
        self,
        t0: Instant,
        start_offset: Duration,
        cancel: watch::Receiver<bool>,
        live: Arc<LiveStats>,
    ) -> Result<WorkloadRecord, LoadError> {
        let PreparedWorkload { plan, exec, tags } = self;
        let plan = &plan;
        drive_prepared(plan, exec, tags, t0, start_offset, cancel, live).await
    }
}

async fn drive_prepared(
    plan: &WorkloadPlan,
    exec: schedule::Executor,
    tags: tables::TagTable,
    t0: Instant,
    start_offset: Duration,
    cancel: watch::Receiver<bool>,
    live: Arc<LiveStats>,
) -> Result<WorkloadRecord, LoadError> {
    let start = t0 + start_offset;
    let schedule = schedule::Schedule {
        t0,
        start_offset,
        rate_per_sec: plan.rate_per_sec,
        intended_ops: plan.intended_ops(),
        hard_deadline: start + plan.hard_deadline(),
    };
    let shared = Arc::new(schedule::Shared {
        exec,
        tags,
        samples: tables::ErrorSamples::default(),
        live,
        slots: Arc::new(Semaphore::new(plan.max_in_flight)),
        op_timeout: plan.op_timeout,
        hard_deadline: schedule.hard_deadline,
        schedule,
        next: AtomicU64::new(0),
        dispatched: AtomicU64::new(0),
    });
    // Its own task, so the dispatch loop is not starved by whatever else the caller's task
    // polls; aborted if the caller drops this future.
    let mut driver = AbortOnDrop(tokio::spawn(schedule::drive(
        Arc::clone(&shared),
        schedule,
        cancel,
    )));
    let driven = (&mut driver.0).await.map_err(|e| LoadError::Generator {
        workload: plan.name.clone(),
        detail: e.to_string(),
    })?;
    let since_t0 = |at: Instant| schedule::micros(at.saturating_duration_since(t0));
    Ok(WorkloadRecord {
        plan_name: plan.name.clone(),
        rate_per_sec: plan.rate_per_sec,
        ops: driven.ops,
        tags: shared.tags.names(),
        error_samples: shared.samples.snapshot(),
        sched_lag: driven.sched_lag,
        intended_ops: schedule.intended_ops,
        dispatched_ops: driven.dispatched_ops,
        started_us: schedule::micros(start_offset),
        schedule_end_us: schedule::micros(start_offset.saturating_add(plan.duration)),
        ended_us: since_t0(driven.ended),
        cancelled_at_us: driven.cancelled_at.map(since_t0),
        counters: shared.exec.counters(),
    })
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A µs histogram for latencies and lags, 3 significant digits up to an hour.
pub(crate) fn latency_histogram() -> Histogram<u64> {
    // Invariant: constant bounds that satisfy hdrhistogram's rules (low >= 1, high >= 2 * low,
    // sigfig <= 5), so creation cannot fail; a unit test exercises it.
    Histogram::new_with_bounds(1, MAX_RECORDED_US, 3).expect("constant histogram bounds are valid")
}
