//! The journal: everything a run observed and concluded, as one serializable model. Reports are
//! rendered from it alone, so `faultline report journal.json` reproduces them byte for byte.
//!
//! Contract (relied on by users and CI): the top-level `verdicts` array holds objects with `id`,
//! `passed` (bool), `expected` and `observed`; `timeline` holds per-second workload stats; `events`
//! holds what happened when. Times are milliseconds relative to the load's start (`t0`).
//!
//! invariant: adding fields is fine; renaming or removing contract fields bumps `schema`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::load::WorkloadSummary;

pub const SCHEMA: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Journal {
    pub schema: u32,
    pub faultline_version: String,
    pub experiment: ExperimentInfo,
    pub run: RunInfo,
    pub verdicts: Vec<Verdict>,
    /// Per workload, per second: throughput, errors, latency percentiles.
    pub timeline: Vec<WorkloadSummary>,
    pub events: Vec<Event>,
    pub evidence: Evidence,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentInfo {
    pub name: String,
    pub file: String,
    pub description: Option<String>,
    pub verifies: Vec<String>,
    /// The planned fault windows, for reports: (name, kind, target, start ms, end ms).
    pub faults: Vec<FaultWindow>,
    /// One line per assertion, as `faultline plan` describes it.
    pub assertions: Vec<String>,
    /// The assertions as judged, so a journal can be re-judged offline.
    pub judged: Vec<crate::plan::Assertion>,
    /// Workload name -> the datacenter it is pinned to (CQL workloads), for the per-datacenter
    /// report sections. Empty (and absent from the JSON) when no workload has one.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub workload_dcs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultWindow {
    pub name: String,
    pub kind: String,
    pub target: String,
    pub start_ms: i64,
    pub end_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every assertion held.
    Passed,
    /// At least one assertion failed.
    Failed,
    /// The load generator could not keep its schedule: verdicts are not trustworthy.
    Invalid,
    /// The lab or a component failed before verdicts could be reached.
    InfrastructureError,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub run_id: String,
    /// RFC 3339 wall-clock time of t0.
    pub started_at: String,
    pub outcome: Outcome,
    /// Set when the run could not complete.
    pub error: Option<String>,
    /// Length of the load phase as run.
    pub duration_ms: u64,
    /// Lab set-up time, and per node the time it took to become ready.
    pub setup_ms: u64,
    pub ready_ms: BTreeMap<String, u64>,
    /// Component versions as installed (from `cargo xtask deps`), when known.
    pub components: BTreeMap<String, String>,
    /// Peak resident memory of the harness process, in KiB.
    pub harness_peak_rss_kib: Option<u64>,
}

/// One judged expectation. `expected`/`observed` are full sentences with times relative to the
/// relevant fault, so a failed verdict reads on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub id: String,
    pub assertion: String,
    pub passed: bool,
    pub expected: String,
    pub observed: String,
    /// When the decisive observation happened, ms from t0.
    pub at_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub at_ms: i64,
    pub kind: EventKind,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    LoadStarted,
    FaultApplied,
    FaultHealed,
    FaultError,
    BreakerTransition,
    /// A cluster's own account of a role change (Sentinel `+switch-master`, a Kafka leader
    /// election), read from its logs.
    ClusterEvent,
    LoadEnded,
    Note,
}

/// Raw observations that verdicts are computed from; kept so checkers can be re-run offline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub breakers: Vec<BreakerEvidence>,
    /// Per write workload: when writes were acknowledged, and by which server or partition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acks: Vec<AckEvidence>,
    /// Per ledger workload: what the read-back found.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ledgers: Vec<LedgerEvidence>,
    /// What the clusters logged about role changes (Sentinel, Kafka), on the run's time base.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_events: Vec<ClusterEvent>,
    /// Which nodes (and partitions) role-targeted faults hit when they fired.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolved_faults: Vec<ResolvedFault>,
    /// Roles of nodes after healing (e.g. an old primary back as a replica).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<RoleEvidence>,
}

/// Acknowledgements of one workload in completion order, run-length encoded: consecutive ops
/// with the same result and the same acknowledging server (or partition) form one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AckEvidence {
    pub workload: String,
    pub runs: Vec<AckRun>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckRun {
    /// Completion of the first and last op of the run, ms from t0.
    pub from_ms: i64,
    pub to_ms: i64,
    /// Who acknowledged (`ip:port`, or `p<N>` for a partition); `None` for failed ops.
    pub by: Option<String>,
    pub ops: u64,
}

/// The ack ledger of one workload, read back after healing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LedgerEvidence {
    pub workload: String,
    /// Where it was read back from (server, topic, table).
    pub read_from: String,
    /// Writes acknowledged as successful.
    pub acked: u64,
    /// Writes refused (connection refused, READONLY, ...): known not applied.
    pub failed: u64,
    /// Writes without an answer (timeout, broken connection): may or may not be applied.
    pub indeterminate: u64,
    /// Acknowledged but not found: the RPO.
    pub lost: u64,
    /// Acknowledgement times of the first and last lost write, ms from t0.
    pub lost_first_ms: Option<i64>,
    pub lost_last_ms: Option<i64>,
    /// Up to 20 lost op indices, for diagnosis.
    pub lost_sample: Vec<u64>,
    /// Refused, yet present: the system applied a write it reported as failed.
    pub failed_but_present: u64,
    /// Indeterminate writes that turned out to be applied.
    pub indeterminate_present: u64,
    /// Found more than once (message logs only).
    pub duplicated: u64,
    /// Found with another value than written (stale or overwritten).
    pub stale: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterEvent {
    pub at_ms: i64,
    /// The node whose log said it.
    pub node: String,
    /// `+switch-master`, `+sdown`, `+odown`, `+promoted-slave`, `+convert-to-slave`, ...
    pub event: String,
    pub detail: String,
}

/// Cassandra liveness, as a node pushed it to Faultline's listener (`STATUS_CHANGE`) and as the
/// same node logged it (`InetAddress <addr> is now DOWN`); `detail` names the peer.
pub const PUSHED_DOWN: &str = "pushed DOWN";
pub const PUSHED_UP: &str = "pushed UP";
pub const LOGGED_DOWN: &str = "is now DOWN";
pub const LOGGED_UP: &str = "is now UP";

/// A partition's new leader as Faultline's own metadata probe saw it (`node` = the new leader,
/// `detail` = `topic/partition ...`), beside the broker's `leader-elected` log line.
pub const LEADER_SEEN: &str = "leader-seen";

/// One push paired with the pushing node's own log line about the same peer and change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushGap {
    pub node: String,
    pub peer: String,
    pub up: bool,
    pub pushed_ms: i64,
    /// Push time minus log time.
    pub gap_ms: i64,
}

/// Every push that has a log line of its node about the same peer and change, paired with the
/// nearest such line in time.
pub fn push_gaps(events: &[ClusterEvent]) -> Vec<PushGap> {
    events
        .iter()
        .filter_map(|push| {
            let (logged, up) = match push.event.as_str() {
                PUSHED_DOWN => (LOGGED_DOWN, false),
                PUSHED_UP => (LOGGED_UP, true),
                _ => return None,
            };
            let nearest = events
                .iter()
                .filter(|l| l.event == logged && l.node == push.node && l.detail == push.detail)
                .min_by_key(|l| (l.at_ms - push.at_ms).abs())?;
            Some(PushGap {
                node: push.node.clone(),
                peer: push.detail.clone(),
                up,
                pushed_ms: push.at_ms,
                gap_ms: push.at_ms - nearest.at_ms,
            })
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedFault {
    pub fault: String,
    pub at_ms: i64,
    /// How the target was written, e.g. `primary:r1` or `leader:orders/0`.
    pub selector: String,
    pub nodes: Vec<String>,
    /// Kafka: the partitions the hit node led when the fault fired.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleEvidence {
    pub node: String,
    /// `master`, `slave`, or `unreachable`.
    pub role: String,
    /// For a replica: the primary it follows (`ip:port`) and whether its link is up.
    pub following: Option<String>,
    pub link_up: bool,
    /// When this was observed, ms from t0.
    pub at_ms: i64,
    /// When the cluster logged turning it into a replica (Sentinel's `+convert-to-slave`), if
    /// it did; observation starts only after the load ends, so this is the sharper time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconfigured_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreakerEvidence {
    pub service: String,
    pub breaker: String,
    pub downstream: String,
    pub workload: String,
    /// As the service reported them.
    pub transitions: Vec<ObservedTransition>,
    /// When the downstream received each call, as the downstream recorded it.
    pub arrivals_ms: Vec<i64>,
    /// Every operation of the workload, with what its response said about the downstream call.
    pub calls: Vec<ObservedCall>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservedTransition {
    pub at_ms: i64,
    pub from: BreakerState,
    pub to: BreakerState,
    pub reason: String,
}

/// What one response said about the downstream call behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallSeen {
    /// The downstream call succeeded.
    Live,
    /// The call was made and failed; a fallback (or an error) was returned.
    FallbackError,
    /// The breaker rejected the call: no call was made.
    FallbackOpen,
    /// The response carried no usable tag (timeout, connection error, unknown value).
    Untagged,
}

/// `[intended_ms, done_ms, seen, ok]` in JSON, to keep journals compact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedCall(pub i64, pub i64, pub CallSeen, pub bool);

impl ObservedCall {
    pub fn intended_ms(&self) -> i64 {
        self.0
    }
    pub fn done_ms(&self) -> i64 {
        self.1
    }
    pub fn seen(&self) -> CallSeen {
        self.2
    }
    /// Whether the end user got a successful response.
    pub fn ok(&self) -> bool {
        self.3
    }
}

impl Journal {
    pub fn failed_verdicts(&self) -> impl Iterator<Item = &Verdict> {
        self.verdicts.iter().filter(|v| !v.passed)
    }

    /// The process exit code this journal stands for.
    pub fn exit_code(&self) -> i32 {
        match self.run.outcome {
            Outcome::Passed => crate::exit_code::OK,
            Outcome::Failed => crate::exit_code::ASSERTION_FAILED,
            Outcome::Invalid | Outcome::InfrastructureError => crate::exit_code::INFRASTRUCTURE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(at_ms: i64, node: &str, event: &str, detail: &str) -> ClusterEvent {
        ClusterEvent {
            at_ms,
            node: node.into(),
            event: event.into(),
            detail: detail.into(),
        }
    }

    #[test]
    fn pairs_each_push_with_the_same_nodes_nearest_log_line() {
        let events = [
            event(1_000, "a1", LOGGED_DOWN, "a3"),
            event(1_004, "a1", PUSHED_DOWN, "a3"),
            event(1_900, "a2", LOGGED_DOWN, "a3"),
            event(1_890, "a2", PUSHED_DOWN, "a3"),
            event(9_000, "a1", LOGGED_UP, "a3"),
            event(9_150, "a1", PUSHED_UP, "a3"),
            // A push with no log line of its node: no pair.
            event(5_000, "b1", PUSHED_DOWN, "a3"),
        ];
        let gaps: Vec<(&str, bool, i64, i64)> = push_gaps(&events)
            .iter()
            .map(|g| {
                assert_eq!(g.peer, "a3");
                (
                    if g.node == "a1" { "a1" } else { "a2" },
                    g.up,
                    g.pushed_ms,
                    g.gap_ms,
                )
            })
            .collect();
        assert_eq!(
            gaps,
            vec![
                ("a1", false, 1_004, 4),
                ("a2", false, 1_890, -10),
                ("a1", true, 9_150, 150)
            ]
        );
    }
}
