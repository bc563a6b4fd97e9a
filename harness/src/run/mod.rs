//! One run of an experiment, stage by stage: provision the lab, drive the load while the fault
//! schedule runs, heal, collect evidence, judge, tear down. Always returns a journal.
//!
//! invariant: the lab is torn down on every path (success, failure, cancellation by SIGINT or
//! SIGTERM, and a panic inside the run), and a journal is produced on every path.
//! invariant: the calling thread enters the lab's network namespace before the runtime starts,
//! so every runtime thread and child process lives in the lab.

mod breaker_watch;
mod cassandra_evidence;
mod cassandra_settle;
mod collect;
mod kafka_evidence;
mod kafka_probe;
mod provision;
mod redis_evidence;
mod schedule;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::events::{Progress, RunEvent, Stage};
use crate::faults::FaultContext;
use crate::journal::*;
use crate::lab::{self, Lab};
use crate::load::{self, LiveStats, PhaseWindow, WorkloadRecord};
use crate::plan::{Plan, describe_assertion};
use crate::verdict;

use collect::TimeBase;
use schedule::Shared;

/// What the caller may choose about a run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Copy every node's log here before teardown (e.g. `<out>/logs`).
    pub logs_to: Option<PathBuf>,
    /// Keep the lab's state directory (intent log, node data) after teardown.
    pub keep_lab: bool,
}

/// Runs `plan` in a fresh lab. Synchronous: it creates the lab, enters it on this thread, then
/// builds its own runtime, so call it from a thread that is not inside another runtime.
pub fn run_experiment(plan: &Plan, options: &RunOptions, progress: Arc<dyn Progress>) -> Journal {
    let run_id = lab::new_run_id();
    let started = SystemTime::now();
    progress.event(RunEvent::Stage(Stage::Provision));
    let mut lab_options = lab::LabOptions::from_env();
    lab_options.keep_state |= options.keep_lab;
    let handle = match lab::enter_new_lab_with(&run_id, &lab_options) {
        Ok(handle) => handle,
        Err(error) => {
            return failed_journal(
                plan,
                &run_id,
                started,
                format!("the lab could not be made: {error}"),
            );
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = handle.close();
            return failed_journal(
                plan,
                &run_id,
                started,
                format!("the async runtime could not start: {error}"),
            );
        }
    };
    let plan = Arc::new(plan.clone());
    let options = options.clone();
    runtime.block_on(async move {
        let lab = Arc::new(Lab::new(handle));
        let (cancel_tx, cancel_rx) = watch::channel(false);
        let signals = tokio::spawn(cancel_on_signal(cancel_tx, progress.clone()));
        // The run is its own task so that a panic in it is caught here and the lab still goes.
        let task = tokio::spawn(execute(
            plan.clone(),
            lab.clone(),
            run_id.clone(),
            started,
            cancel_rx,
            progress.clone(),
        ));
        let mut journal = match task.await {
            Ok(journal) => journal,
            Err(error) => failed_journal(
                &plan,
                &run_id,
                started,
                format!("the run panicked: {error}"),
            ),
        };
        signals.abort();
        progress.event(RunEvent::Stage(Stage::Teardown));
        if let Some(dir) = &options.logs_to
            && let Err(error) = lab.copy_logs_to(dir)
        {
            progress.event(RunEvent::Note(format!("node logs not copied: {error}")));
        }
        if let Err(error) = lab.shutdown().await {
            journal.events.push(Event {
                at_ms: journal.run.duration_ms as i64,
                kind: EventKind::Note,
                detail: format!("teardown: {error}"),
            });
        }
        journal.run.harness_peak_rss_kib = peak_rss_kib();
        journal
    })
}

/// Brings the topology up and keeps it until SIGINT/SIGTERM (`faultline lab up`).
pub fn hold_lab(plan: &Plan, progress: Arc<dyn Progress>) -> Result<(), String> {
    let run_id = lab::new_run_id();
    let handle = lab::enter_new_lab(&run_id).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let lab = Lab::new(handle);
        let result = provision::provision(plan, &lab, progress.as_ref()).await;
        if result.is_ok() {
            let netns = lab.netns().to_string();
            progress.event(RunEvent::Note(format!("lab `{netns}` is up; enter it with `ip netns exec {netns} <command>`; Ctrl-C tears it down")));
            for node in &plan.nodes {
                progress.event(RunEvent::Note(format!("{:<18} {:<16} {}", node.name, node.kind.name(), node.socket())));
            }
            let (tx, mut rx) = watch::channel(false);
            tokio::spawn(cancel_on_signal(tx, progress.clone()));
            let _ = rx.wait_for(|c| *c).await;
        }
        progress.event(RunEvent::Stage(Stage::Teardown));
        let _ = lab.shutdown().await;
        result.map(|_| ())
    })
}

async fn cancel_on_signal(cancel: watch::Sender<bool>, progress: Arc<dyn Progress>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    let name = tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    };
    progress.event(RunEvent::Note(format!(
        "{name} received: healing faults and tearing the lab down"
    )));
    let _ = cancel.send(true);
}

async fn execute(
    plan: Arc<Plan>,
    lab: Arc<Lab>,
    run_id: String,
    started: SystemTime,
    cancel: watch::Receiver<bool>,
    progress: Arc<dyn Progress>,
) -> Journal {
    let setup_started = Instant::now();
    let provisioned = match provision::provision(&plan, &lab, progress.as_ref()).await {
        Ok(p) => p,
        Err(error) => {
            return failed_journal(
                &plan,
                &run_id,
                started,
                format!("provisioning failed: {error}"),
            );
        }
    };
    let setup_ms = setup_started.elapsed().as_millis() as u64;
    if *cancel.borrow() {
        return failed_journal(
            &plan,
            &run_id,
            started,
            "cancelled during provisioning".into(),
        );
    }

    // Clients are built (and CQL sessions connected) before t0, so that set-up does not eat
    // into the schedule.
    let mut prepared = Vec::new();
    let watermarks = load::AckWatermarks::default();
    for w in &plan.workloads {
        match load::prepare(&w.plan, &watermarks).await {
            Ok(p) => prepared.push(p),
            Err(error) => {
                return failed_journal(
                    &plan,
                    &run_id,
                    started,
                    format!("workload `{}` could not start: {error}", w.plan.name),
                );
            }
        }
    }

    // Listening before t0: a node pushes liveness changes only to clients already registered.
    let status_watch = cassandra_evidence::start(&plan);
    let leader_probe = kafka_probe::start(&plan);
    progress.event(RunEvent::Stage(Stage::Load));
    let t0 = Instant::now();
    let base = TimeBase {
        t0_unix_us: unix_us(SystemTime::now()),
    };
    let shared = Arc::new(Shared::default());
    shared.log(
        t0,
        EventKind::LoadStarted,
        format!(
            "{} workloads for {}",
            plan.workloads.len(),
            crate::units::format_duration(plan.duration)
        ),
    );
    let mut live = Vec::new();
    let mut workload_tasks = Vec::new();
    for workload in prepared {
        let stats = Arc::new(LiveStats::new());
        live.push((workload.name().to_string(), stats.clone()));
        let cancel = cancel.clone();
        workload_tasks.push(tokio::spawn(async move {
            workload.run(t0, Duration::ZERO, cancel, stats).await
        }));
    }
    let ctx = FaultContext::new(lab.clone(), provisioned.toxiproxy.clone());
    let fault_tasks: Vec<_> = plan
        .faults
        .iter()
        .map(|f| {
            tokio::spawn(schedule::run_fault(
                f.clone(),
                ctx.clone(),
                t0,
                cancel.clone(),
                shared.clone(),
                progress.clone(),
            ))
        })
        .collect();
    let (done_tx, done_rx) = watch::channel(false);
    let ticker = tokio::spawn(schedule::ticker(
        plan.clone(),
        live,
        t0,
        shared.clone(),
        progress.clone(),
        base,
        done_rx,
    ));

    let mut records: Vec<WorkloadRecord> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    for task in workload_tasks {
        match task.await {
            Ok(Ok(record)) => records.push(record),
            Ok(Err(error)) => errors.push(error.to_string()),
            Err(error) => errors.push(format!("a workload task failed: {error}")),
        }
    }
    let _ = done_tx.send(true);
    let _ = ticker.await;
    shared.log(t0, EventKind::LoadEnded, "all workloads finished".into());

    // Heal: each fault task undoes its own fault; wait for all of them.
    progress.event(RunEvent::Stage(Stage::Heal));
    for task in fault_tasks {
        if let Err(error) = task.await {
            errors.push(format!("a fault task failed: {error}"));
        }
    }
    let duration_ms = t0.elapsed().as_millis() as u64;
    // After healing, so the UP pushes of restarted nodes are in.
    let pushes = match status_watch {
        Some(w) => {
            let (pushes, problems) = w.finish(&plan, base).await;
            for p in problems {
                shared.log(
                    t0,
                    EventKind::Note,
                    format!("Cassandra liveness not heard: {p}"),
                );
            }
            pushes
        }
        None => Vec::new(),
    };
    let leaders_seen = match leader_probe {
        Some(probe) => probe.finish(&plan, base).await,
        None => Vec::new(),
    };

    progress.event(RunEvent::Stage(Stage::Collect));
    let healed_at = Instant::now();
    let mut evidence = match collect::breaker_evidence(&plan, &records, base).await {
        Ok(breakers) => Evidence {
            breakers,
            ..Evidence::default()
        },
        Err(error) => {
            errors.push(format!("evidence could not be collected: {error}"));
            Evidence::default()
        }
    };
    // Roles first: waiting for an old primary to rejoin also lets replication settle before
    // the ledger is read back.
    evidence.roles = redis_evidence::roles(&plan, healed_at, t0).await;
    let hint_events = cassandra_settle::settle(&plan, t0, lab.state_dir()).await;
    // The experiment asked for a repair before the read-back: without it the read-back is not
    // the one the experiment describes.
    for e in hint_events.iter().filter(|e| e.event == "repair failed") {
        errors.push(format!("repair of `{}` failed: {}", e.node, e.detail));
    }
    for w in &plan.workloads {
        let Some(record) = records.iter().find(|r| r.plan_name == w.plan.name) else {
            continue;
        };
        match ledger_read_back(&w.plan, record).await {
            Ok(Some(back)) => {
                let target = plan.node(&w.target).map(|n| n.socket().to_string());
                evidence.acks.push(crate::ledger::ack_evidence(
                    record,
                    target.as_deref().unwrap_or(&w.target),
                ));
                evidence.ledgers.push(crate::ledger::compare(record, &back));
            }
            Ok(None) => {}
            Err(error) => errors.push(format!(
                "the ledger of `{}` could not be read back: {error}",
                w.plan.name
            )),
        }
    }
    evidence.resolved_faults = shared
        .resolved
        .lock()
        .map(|r| r.clone())
        .unwrap_or_default();
    evidence.cluster_events = redis_evidence::sentinel_events(&plan, &lab, base);
    evidence.cluster_events.extend(hint_events);
    evidence
        .cluster_events
        .extend(kafka_evidence::leader_events(&plan, &lab, base));
    evidence.cluster_events.extend(pushes);
    evidence.cluster_events.extend(leaders_seen);
    evidence
        .cluster_events
        .extend(cassandra_evidence::gossip_events(&plan, &lab, base));
    evidence
        .cluster_events
        .sort_by(|a, b| (a.at_ms, &a.node).cmp(&(b.at_ms, &b.node)));
    redis_evidence::reconfiguration_times(&plan, &mut evidence.roles, &evidence.cluster_events);
    if let Ok(mut events) = shared.events.lock() {
        for e in &evidence.cluster_events {
            events.push(Event {
                at_ms: e.at_ms,
                kind: EventKind::ClusterEvent,
                detail: format!("{} {} {}", e.node, e.event, e.detail),
            });
        }
        for b in &evidence.breakers {
            for t in &b.transitions {
                events.push(Event {
                    at_ms: t.at_ms,
                    kind: EventKind::BreakerTransition,
                    detail: format!(
                        "{} breaker `{}`: {:?} -> {:?} ({})",
                        b.service, b.breaker, t.from, t.to, t.reason
                    ),
                });
            }
        }
    }

    progress.event(RunEvent::Stage(Stage::Judge));
    let phases = phase_windows(&plan);
    let timeline: Vec<_> = records
        .iter()
        .map(|r| load::summarize(r, &phases))
        .collect();
    let faults = fault_windows(&plan);
    let verdicts = verdict::judge(&plan.assertions, &timeline, &evidence, &faults);
    let cancelled = *cancel.borrow();
    if cancelled {
        errors.push("the run was cancelled by a signal: faults were healed and the lab torn down; verdicts cover the partial run".into());
    }
    let mut events = shared.events.lock().map(|e| e.clone()).unwrap_or_default();
    events.sort_by_key(|e| e.at_ms);

    let mut journal = base_journal(&plan, &run_id, started);
    journal.run.outcome = outcome(&verdicts, !errors.is_empty());
    journal.run.error = (!errors.is_empty()).then(|| errors.join("; "));
    journal.run.duration_ms = duration_ms;
    journal.run.setup_ms = setup_ms;
    journal.run.ready_ms = provisioned.ready_ms;
    journal.verdicts = verdicts;
    journal.timeline = timeline;
    journal.events = events;
    journal.evidence = evidence;
    journal
}

/// The read-back of a ledger workload (`set_unique` Redis, every Kafka workload); `None` for
/// workloads without a ledger.
async fn ledger_read_back(
    w: &load::WorkloadPlan,
    record: &WorkloadRecord,
) -> Result<Option<crate::ledger::ReadBack>, String> {
    /// Healing may still be moving partitions back in sync (or nodes rejoining); the read-back
    /// waits this long for them, then reads whatever is there.
    const KAFKA_SETTLE: Duration = Duration::from_secs(60);
    /// Concurrent reads of the CQL read-back: enough to read 10 k keys in seconds.
    const CQL_READ_CONCURRENCY: usize = 64;
    if let load::WorkloadKind::Cql { target } = &w.kind {
        if target.read_keys.is_some() {
            return Ok(None);
        }
        // QUORUM across datacenters after healing: a majority of all replicas vouches for
        // every key, whichever DC wrote it.
        let consistency = load::cql_ops::parse_consistency("quorum")?;
        let session = load::cql_ops::connect_cql(
            &target.contact_points,
            &target.local_dc,
            consistency,
            KAFKA_SETTLE,
            None,
            1,
        )
        .await?;
        // Collected first: a borrowing iterator held across the awaits would tie the spawned
        // run's future to this stack frame's lifetimes.
        let base = target.key_base;
        let keys: Vec<u64> = record
            .ops
            .iter()
            .map(|op| base + crate::ledger::op_index(record, op))
            .collect();
        let back = load::cql_ops::read_back(
            &session,
            &target.keyspace,
            consistency,
            keys.into_iter(),
            CQL_READ_CONCURRENCY,
        )
        .await?;
        return Ok(Some(crate::ledger::ReadBack {
            stale: back.mismatched.len() as u64,
            // Back to op indices, which the ledger compares by.
            found: back.found.into_iter().map(|(k, n)| (k - base, n)).collect(),
            read_from: format!(
                "keyspace `{}` at QUORUM via `{}` ({} keys checked)",
                target.keyspace, target.local_dc, back.checked
            ),
        }));
    }
    let load::WorkloadKind::Kafka { target, .. } = &w.kind else {
        return redis_evidence::read_back(w, record).await;
    };
    crate::components::kafka::wait_fully_replicated(
        &target.bootstrap,
        &target.topic,
        None,
        KAFKA_SETTLE,
    )
    .await
    .map_err(|e| format!("topic `{}` did not settle after healing: {e}", target.topic))?;
    let back = load::kafka_ops::read_back(&target.bootstrap, &target.topic, KAFKA_SETTLE).await?;
    Ok(Some(crate::ledger::ReadBack {
        found: back.found,
        stale: 0,
        read_from: format!("topic `{}` ({} messages)", target.topic, back.messages),
    }))
}

fn outcome(verdicts: &[Verdict], infrastructure_error: bool) -> Outcome {
    if infrastructure_error {
        Outcome::InfrastructureError
    } else if verdicts
        .iter()
        .any(|v| !v.passed && v.id.starts_with("generator/"))
    {
        Outcome::Invalid
    } else if verdicts.iter().all(|v| v.passed) {
        Outcome::Passed
    } else {
        Outcome::Failed
    }
}

/// before: until the first fault; during: first fault start to last fault end; after: the rest.
pub fn phase_windows(plan: &Plan) -> Vec<PhaseWindow> {
    let end = plan.duration.as_micros() as u64;
    let window = |name: &str, from: Duration, to_us: u64| PhaseWindow {
        name: name.into(),
        from_us: from.as_micros() as u64,
        to_us,
    };
    match plan.fault_window() {
        None => vec![window("before", Duration::ZERO, end)],
        Some((start, stop)) => vec![
            window("before", Duration::ZERO, start.as_micros() as u64),
            window("during", start, stop.as_micros() as u64),
            window("after", stop, end),
        ],
    }
}

fn fault_windows(plan: &Plan) -> Vec<FaultWindow> {
    plan.faults
        .iter()
        .map(|f| FaultWindow {
            name: f.name.clone(),
            kind: f.kind.clone(),
            target: f.target.clone(),
            start_ms: f.at.as_millis() as i64,
            end_ms: f.ends().as_millis() as i64,
        })
        .collect()
}

fn base_journal(plan: &Plan, run_id: &str, started: SystemTime) -> Journal {
    Journal {
        schema: SCHEMA,
        faultline_version: env!("CARGO_PKG_VERSION").to_string(),
        experiment: ExperimentInfo {
            name: plan.name.clone(),
            file: plan.file.clone(),
            description: plan.description.clone(),
            verifies: plan.verifies.clone(),
            faults: fault_windows(plan),
            assertions: plan.assertions.iter().map(describe_assertion).collect(),
            judged: plan.assertions.clone(),
            workload_dcs: plan
                .workloads
                .iter()
                .filter_map(|w| Some((w.plan.name.clone(), w.plan.kind.datacenter()?.to_string())))
                .collect(),
        },
        run: RunInfo {
            run_id: run_id.to_string(),
            started_at: humantime::format_rfc3339_millis(started).to_string(),
            outcome: Outcome::InfrastructureError,
            error: None,
            duration_ms: 0,
            setup_ms: 0,
            ready_ms: BTreeMap::new(),
            components: component_versions(),
            harness_peak_rss_kib: None,
        },
        verdicts: Vec::new(),
        timeline: Vec::new(),
        events: Vec::new(),
        evidence: Evidence::default(),
    }
}

/// The journal of a run that could not reach verdicts.
fn failed_journal(plan: &Plan, run_id: &str, started: SystemTime, error: String) -> Journal {
    let mut journal = base_journal(plan, run_id, started);
    journal.run.error = Some(error);
    journal
}

/// Versions recorded by `cargo xtask deps` (`$FAULTLINE_CACHE/versions.json`, shaped
/// `{"components": {"<name>": {"version" | "package": ...}}}`), when present.
fn component_versions() -> BTreeMap<String, String> {
    #[derive(serde::Deserialize)]
    struct Recorded {
        components: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
    }
    let cache = std::env::var_os("FAULTLINE_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/faultline")));
    let Some(recorded) = cache
        .and_then(|dir| std::fs::read_to_string(dir.join("versions.json")).ok())
        .and_then(|text| serde_json::from_str::<Recorded>(&text).ok())
    else {
        return BTreeMap::new();
    };
    recorded
        .components
        .into_iter()
        .filter_map(|(name, fields)| {
            let version = fields.get("version").or_else(|| fields.get("package"))?;
            Some((name, version.as_str()?.to_string()))
        })
        .collect()
}

fn unix_us(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The harness's own peak resident memory (`VmHWM`), for reports.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The journal keeps which datacenter each workload is pinned to: the per-datacenter report
    /// sections read it, and the plan is not in the journal.
    #[test]
    fn journals_record_workload_datacenters() {
        let experiments = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../experiments");
        let cases: &[(&str, &[(&str, &str)])] = &[
            (
                "000-cassandra/dc-partition-then-loss.yaml",
                &[("writes-dc1", "dc1"), ("writes-dc2", "dc2")],
            ),
            ("000-music-streaming/circuit-breaker.yaml", &[]),
        ];
        for (file, want) in cases {
            let plan = crate::spec::load_file(&experiments.join(file))
                .unwrap_or_else(|diags| panic!("{file}: {diags:?}"));
            let journal = base_journal(&plan, "run", UNIX_EPOCH);
            let want: BTreeMap<String, String> = want
                .iter()
                .map(|(w, dc)| (w.to_string(), dc.to_string()))
                .collect();
            assert_eq!(journal.experiment.workload_dcs, want, "{file}");
        }
    }
}
