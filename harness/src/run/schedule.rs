//! Stage "load": the fault schedule and the once-a-second progress ticks, alongside the workloads.
//!
//! invariant: every applied fault is undone by the task that applied it, whether its time ran out
//! or the run was cancelled; an undo that fails is reported, and lab teardown is the backstop.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::events::{Progress, RunEvent, Tick, WorkloadTick};
use crate::faults::{self, FaultContext};
use crate::journal::{Event, EventKind, ResolvedFault};
use crate::load::LiveStats;
use crate::plan::{Plan, PlannedFault};

use super::breaker_watch::BreakerWatch;
use super::collect::TimeBase;

/// What the fault tasks and the ticker share.
#[derive(Default)]
pub struct Shared {
    pub events: Mutex<Vec<Event>>,
    pub active: Mutex<BTreeSet<String>>,
    /// Who each role-targeted fault hit.
    pub resolved: Mutex<Vec<ResolvedFault>>,
}

impl Shared {
    pub fn log(&self, t0: Instant, kind: EventKind, detail: String) {
        let at_ms = t0.elapsed().as_millis() as i64;
        if let Ok(mut events) = self.events.lock() {
            events.push(Event {
                at_ms,
                kind,
                detail,
            });
        }
    }
}

/// Waits until `deadline` unless the run is cancelled first; returns whether it was cancelled.
async fn wait_until(deadline: Instant, cancel: &mut watch::Receiver<bool>) -> bool {
    if *cancel.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep_until(deadline) => false,
        _ = cancel.wait_for(|c| *c) => true,
    }
}

/// Applies one fault at its time and heals it when it ends (or on cancellation).
pub async fn run_fault(
    fault: PlannedFault,
    ctx: FaultContext,
    t0: Instant,
    mut cancel: watch::Receiver<bool>,
    shared: Arc<Shared>,
    progress: Arc<dyn Progress>,
) {
    if wait_until(t0 + fault.at, &mut cancel).await {
        return;
    }
    let mut guard = match faults::apply(&ctx, &fault.name, &fault.action).await {
        Ok(guard) => guard,
        Err(error) => {
            fault_error(
                &shared,
                t0,
                progress.as_ref(),
                &fault.name,
                "applied",
                &error,
            );
            return;
        }
    };
    let mut target = fault.target.clone();
    if let Some(r) = guard.resolution() {
        target = format!("{target} = {}", r.nodes.join(", "));
        if let Ok(mut resolved) = shared.resolved.lock() {
            resolved.push(ResolvedFault {
                fault: fault.name.clone(),
                at_ms: t0.elapsed().as_millis() as i64,
                selector: r.selector.clone(),
                nodes: r.nodes.clone(),
                partitions: r.partitions.clone(),
            });
        }
    }
    shared.log(
        t0,
        EventKind::FaultApplied,
        format!("`{}` ({}) on {target}", fault.name, fault.kind),
    );
    progress.event(RunEvent::FaultApplied {
        name: fault.name.clone(),
        at: t0.elapsed(),
        target,
    });
    let Some(lasts) = fault.lasts else { return };
    if let Ok(mut active) = shared.active.lock() {
        active.insert(fault.name.clone());
    }
    let cancelled = wait_until(t0 + fault.at + lasts, &mut cancel).await;
    let result = guard.undo().await;
    if let Ok(mut active) = shared.active.lock() {
        active.remove(&fault.name);
    }
    match result {
        Ok(()) => {
            let why = if cancelled { " (run cancelled)" } else { "" };
            shared.log(
                t0,
                EventKind::FaultHealed,
                format!("`{}` healed{why}", fault.name),
            );
            progress.event(RunEvent::FaultHealed {
                name: fault.name.clone(),
                at: t0.elapsed(),
            });
        }
        Err(error) => fault_error(
            &shared,
            t0,
            progress.as_ref(),
            &fault.name,
            "healed",
            &error,
        ),
    }
}

/// A fault that could not be applied or healed: into the journal's events and the live view.
fn fault_error(
    shared: &Shared,
    t0: Instant,
    progress: &dyn Progress,
    name: &str,
    what: &str,
    error: &dyn std::fmt::Display,
) {
    shared.log(
        t0,
        EventKind::FaultError,
        format!("`{name}` could not be {what}: {error}"),
    );
    progress.event(RunEvent::FaultError {
        name: name.to_string(),
        error: error.to_string(),
    });
}

/// Emits a progress tick every second until the load ends.
pub async fn ticker(
    plan: Arc<Plan>,
    live: Vec<(String, Arc<LiveStats>)>,
    t0: Instant,
    shared: Arc<Shared>,
    progress: Arc<dyn Progress>,
    base: TimeBase,
    mut done: watch::Receiver<bool>,
) {
    let window = plan.fault_window();
    let mut breakers = BreakerWatch::new(&plan);
    let mut next = t0 + Duration::from_secs(1);
    loop {
        if wait_until(next, &mut done).await {
            return;
        }
        next += Duration::from_secs(1);
        let elapsed = t0.elapsed();
        let phase = match window {
            Some((start, _)) if elapsed < start => "before",
            Some((_, end)) if elapsed < end => "during",
            Some(_) => "after",
            None => "steady",
        };
        let workloads = live
            .iter()
            .map(|(name, stats)| {
                let s = stats.snapshot();
                WorkloadTick {
                    name: name.clone(),
                    rate: s.recent_rate,
                    ok: s.ok,
                    errors: s.errors,
                    p99: Duration::from_micros(s.recent_p99_us.unwrap_or(0)),
                }
            })
            .collect();
        let active_faults = shared
            .active
            .lock()
            .map(|a| a.iter().cloned().collect())
            .unwrap_or_default();
        if let Some(watch) = breakers.as_mut() {
            watch.poll(base, progress.as_ref()).await;
        }
        progress.event(RunEvent::Tick(Tick {
            elapsed,
            total: plan.duration,
            phase,
            workloads,
            active_faults,
        }));
    }
}
