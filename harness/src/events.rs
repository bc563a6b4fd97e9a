//! Progress events the engine emits while running; the CLI decides how to show them.
//!
//! invariant: the engine never writes to the terminal; everything a user sees goes through here.

use std::time::Duration;

/// The stages of a run, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Provision,
    Load,
    Heal,
    Collect,
    Judge,
    Teardown,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Provision => "provision",
            Stage::Load => "load",
            Stage::Heal => "heal",
            Stage::Collect => "collect",
            Stage::Judge => "judge",
            Stage::Teardown => "teardown",
        }
    }
}

#[derive(Debug, Clone)]
pub enum RunEvent {
    Stage(Stage),
    NodeReady {
        node: String,
        after: Duration,
    },
    FaultApplied {
        name: String,
        at: Duration,
        target: String,
    },
    FaultHealed {
        name: String,
        at: Duration,
    },
    FaultError {
        name: String,
        error: String,
    },
    BreakerTransition {
        service: String,
        breaker: String,
        to: String,
        at: Duration,
    },
    Tick(Tick),
    Note(String),
}

/// Once a second during the load.
#[derive(Debug, Clone)]
pub struct Tick {
    pub elapsed: Duration,
    pub total: Duration,
    /// `before`, `during` or `after` the faults.
    pub phase: &'static str,
    pub workloads: Vec<WorkloadTick>,
    pub active_faults: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct WorkloadTick {
    pub name: String,
    pub rate: f64,
    pub ok: u64,
    pub errors: u64,
    pub p99: Duration,
}

/// Receives events. Implementations must be cheap: they are called from the run's tasks.
pub trait Progress: Send + Sync {
    fn event(&self, event: RunEvent);
}

/// Discards events (library use, tests).
pub struct Silent;

impl Progress for Silent {
    fn event(&self, _: RunEvent) {}
}
