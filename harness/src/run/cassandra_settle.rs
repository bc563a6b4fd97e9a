//! `topology.cassandra.read_back_after`: between healing and the ack ledger's read-back, wait
//! (bounded) until no node holds hints, then repair the keyspace, so the read-back sees what
//! hinted handoff and repair delivered. Each outcome becomes a cluster event of the journal;
//! a step that fails is recorded and the read-back goes ahead (it shows the consequences).

use std::time::Duration;

use tokio::time::Instant;

use crate::components::cassandra;
use crate::journal::ClusterEvent;
use crate::plan::{NodeKind, Plan};
use crate::units::format_duration;

const HINTS_TIMEOUT: Duration = Duration::from_secs(120);
/// Per node: a few thousand rows repair in seconds, even on a busy machine.
const REPAIR_TIMEOUT: Duration = Duration::from_secs(120);

/// `work_dir`: where nodetool's configuration goes (the lab's state directory).
pub async fn settle(plan: &Plan, t0: Instant, work_dir: &std::path::Path) -> Vec<ClusterEvent> {
    let Some(cluster) = plan.cassandra.as_ref() else {
        return Vec::new();
    };
    let nodes: Vec<_> = plan
        .nodes
        .iter()
        .filter(|n| n.kind == NodeKind::Cassandra)
        .collect();
    let now_ms = || t0.elapsed().as_millis() as i64;
    let event = |at_ms: i64, node: &str, event: &str, detail: String| ClusterEvent {
        at_ms,
        node: node.into(),
        event: event.into(),
        detail,
    };
    let mut events = Vec::new();
    if cluster.read_back_after_hints {
        let addrs: Vec<_> = nodes.iter().map(|n| (n.name.clone(), n.socket())).collect();
        events.push(
            match cassandra::wait_hints_delivered(&addrs, HINTS_TIMEOUT).await {
                Ok(took) => event(
                    now_ms(),
                    "cassandra",
                    "hints delivered",
                    format!(
                        "no node holds hints, {} after healing",
                        format_duration(took)
                    ),
                ),
                Err(left) => event(now_ms(), "cassandra", "hints pending", left),
            },
        );
    }
    if cluster.read_back_after_repair {
        // Same order as provisioning handed the nodes to `cassandra::prepare`.
        let ports: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), cassandra::jmx_port(i)))
            .collect();
        let libs = match cassandra::libs_dir() {
            Ok(libs) => libs,
            Err(e) => {
                events.push(event(now_ms(), "cassandra", "repair failed", e.to_string()));
                return events;
            }
        };
        let java = cassandra::CassandraSettings::new(&libs).java;
        let outcomes = cassandra::repair_primary_ranges(
            &java,
            &libs,
            work_dir,
            &ports,
            &cluster.keyspace,
            REPAIR_TIMEOUT,
        )
        .await;
        for outcome in outcomes {
            let took = format_duration(outcome.took);
            let at_ms = outcome.finished.duration_since(t0).as_millis() as i64;
            events.push(match outcome.result {
                Ok(()) => event(
                    at_ms,
                    &outcome.node,
                    "repaired",
                    format!(
                        "`{}`: full repair of its primary ranges in {took}",
                        cluster.keyspace
                    ),
                ),
                Err(e) => event(
                    at_ms,
                    &outcome.node,
                    "repair failed",
                    format!("after {took}: {e}"),
                ),
            });
        }
    }
    events
}
