//! When the Cassandra cluster declared a node down or up, twice over: as pushed to Faultline's
//! own listeners (one native-protocol `STATUS_CHANGE` registration per node, for the whole
//! load), and as each node logged it (`InetAddress <addr> is now DOWN`). Both become cluster
//! events; every push is matched with the same node's log line about the same peer, and the gap
//! between the two is Faultline's timing accuracy against the server's own clock.
//!
//! invariant: events before t0 (the cluster's start-up, all UP) are left out.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::components::cassandra::{StatusChange, parse_gossip_line, watch_status};
use crate::journal::ClusterEvent;
use crate::lab::Lab;
use crate::plan::{NodeKind, Plan};
use crate::run::TimeBase;

use super::kafka_evidence::parse_stamp;
use super::redis_evidence::node_logs;

use crate::journal::{LOGGED_DOWN, LOGGED_UP, PUSHED_DOWN, PUSHED_UP};

/// A live node answers the handshake in milliseconds; a loaded JVM in well under this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

type Pushes = Arc<Mutex<Vec<(String, StatusChange)>>>;

/// The listeners of one run.
pub struct StatusWatch {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<Result<(), String>>>,
    pushes: Pushes,
}

/// One listener per Cassandra node of the plan; `None` when it has none.
pub fn start(plan: &Plan) -> Option<StatusWatch> {
    let nodes: Vec<_> = plan
        .nodes
        .iter()
        .filter(|n| n.kind == NodeKind::Cassandra)
        .collect();
    if nodes.is_empty() {
        return None;
    }
    let (stop, stopped) = watch::channel(false);
    let pushes: Pushes = Arc::default();
    let tasks = nodes
        .iter()
        .map(|node| {
            let (name, addr) = (node.name.clone(), node.socket());
            let (stopped, pushes) = (stopped.clone(), pushes.clone());
            tokio::spawn(async move {
                watch_status(addr, HANDSHAKE_TIMEOUT, stopped, |change| {
                    if let Ok(mut p) = pushes.lock() {
                        p.push((name.clone(), change));
                    }
                })
                .await
            })
        })
        .collect();
    Some(StatusWatch {
        stop,
        tasks,
        pushes,
    })
}

impl StatusWatch {
    /// Stops the listeners; the pushes as cluster events (`node` = the node that pushed),
    /// and why any listener could not listen.
    pub async fn finish(self, plan: &Plan, base: TimeBase) -> (Vec<ClusterEvent>, Vec<String>) {
        let _ = self.stop.send(true);
        let mut problems = Vec::new();
        for task in self.tasks {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(why)) => problems.push(why),
                Err(e) => problems.push(format!("a CQL event listener failed: {e}")),
            }
        }
        let pushes = self.pushes.lock().map(|p| p.clone()).unwrap_or_default();
        let events = pushes
            .into_iter()
            .filter_map(|(observer, change)| {
                let at_ms = base.offset_ms(crate::run::unix_us(change.received));
                (at_ms >= 0).then(|| ClusterEvent {
                    at_ms,
                    node: observer,
                    event: (if change.up { PUSHED_UP } else { PUSHED_DOWN }).into(),
                    detail: node_named(plan, change.peer),
                })
            })
            .collect();
        (events, problems)
    }
}

/// Every node's logged liveness changes of its peers since t0.
pub fn gossip_events(plan: &Plan, lab: &Lab, base: TimeBase) -> Vec<ClusterEvent> {
    let mut out = Vec::new();
    for (node, log) in node_logs(plan, lab, NodeKind::Cassandra) {
        for line in log.lines() {
            let Some((peer, up)) = parse_gossip_line(line) else {
                continue;
            };
            let Some(unix_ms) = line_stamp(line) else {
                continue;
            };
            let at_ms = base.offset_ms(unix_ms * 1000);
            if at_ms < 0 {
                continue;
            }
            out.push(ClusterEvent {
                at_ms,
                node: node.to_string(),
                event: (if up { LOGGED_UP } else { LOGGED_DOWN }).into(),
                detail: node_named(plan, IpAddr::V4(peer)),
            });
        }
    }
    out.sort_by(|a, b| (a.at_ms, &a.node).cmp(&(b.at_ms, &b.node)));
    out
}

/// `INFO  [GossipTasks:1] 2026-11-21 08:00:00,000 Gossiper.java:1200 - ...` -> unix ms (UTC).
fn line_stamp(line: &str) -> Option<u64> {
    let (_, rest) = line.split_once("] ")?;
    parse_stamp(rest.get(..23)?)
}

/// The plan's name for the node at `ip`, or the address when none has it.
fn node_named(plan: &Plan, ip: IpAddr) -> String {
    plan.nodes
        .iter()
        .find(|n| n.kind == NodeKind::Cassandra && IpAddr::V4(n.addr) == ip)
        .map_or_else(|| ip.to_string(), |n| n.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_log_stamp() {
        let line = "INFO  [GossipTasks:1] 2026-11-21 08:00:01,250 Gossiper.java:1200 - InetAddress /127.0.1.1:7000 is now DOWN";
        assert_eq!(line_stamp(line), Some(1_795_248_001_250));
        assert_eq!(line_stamp("INFO  [x] 2026-11-21"), None);
    }
}
