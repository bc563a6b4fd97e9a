//! Stage "provision": Toxiproxy and its proxies, then every node with declared readiness.
//!
//! invariant: nodes start in dependency order (stores, then the services that use them), so a
//! service's readiness check runs against dependencies that are already up.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::errors::LabError;
use crate::events::{Progress, RunEvent};
use crate::lab::{Lab, NodeSpec, Readiness, find_target_binary, find_tool};
use crate::plan::{NodeKind, Plan, PlannedNode, TOXIPROXY_API};
use crate::toxiproxy::{NewProxy, Toxiproxy};

mod cassandra;
mod kafka;
mod sentinel;

/// Niceness of Kafka and Cassandra JVMs (see `NodeSpec::nice`): on 2 cores, six Cassandra JVMs
/// starting or restarting together otherwise take the CPU from the load generator in bursts.
const JVM_NICE: i32 = 10;

/// A Kafka or Cassandra node's spec made lab-ready: niced (see `JVM_NICE`), and with the
/// source-address shim preloaded so its outgoing connections come from `addr` and partitions
/// between address groups apply to them (harness/shim/bind_source.c).
pub(super) fn jvm_node(
    spec: crate::lab::NodeSpec,
    addr: std::net::Ipv4Addr,
) -> Result<crate::lab::NodeSpec, LabError> {
    let shim = find_tool("libfaultline_bind.so").map_err(|_| {
        LabError::Other(
            "the source-address shim `libfaultline_bind.so` is not installed (hint: run `cargo xtask deps`)"
                .into(),
        )
    })?;
    Ok(spec
        .nice(JVM_NICE)
        .env("LD_PRELOAD", shim.display().to_string())
        .env("FAULTLINE_BIND_ADDR", addr.to_string()))
}

/// Readiness deadlines: generous for a loaded 2-core machine, never a sleep.
const NODE_READY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Provisioned {
    pub toxiproxy: Option<Toxiproxy>,
    pub ready_ms: BTreeMap<String, u64>,
}

pub async fn provision(
    plan: &Plan,
    lab: &Lab,
    progress: &dyn Progress,
) -> Result<Provisioned, String> {
    let mut ready_ms = BTreeMap::new();
    let toxiproxy = if plan.proxies.is_empty() {
        None
    } else {
        let (client, info) = Toxiproxy::start_server(lab, "toxiproxy", TOXIPROXY_API)
            .await
            .map_err(|e| e.to_string())?;
        ready(progress, &mut ready_ms, "toxiproxy", info.ready_after);
        for proxy in &plan.proxies {
            let new = NewProxy {
                name: proxy.name.clone(),
                listen: proxy.listen.to_string(),
                upstream: proxy.upstream.to_string(),
                enabled: true,
            };
            client
                .create_proxy(&new)
                .await
                .map_err(|e| format!("creating proxy `{}`: {e}", proxy.link))?;
        }
        Some(client)
    };
    if let Some(cluster) = &plan.kafka {
        kafka::start(plan, cluster, lab, progress, &mut ready_ms).await?;
    }
    if let Some(cluster) = &plan.cassandra {
        cassandra::start(plan, cluster, lab, progress, &mut ready_ms).await?;
    }
    let mut order: Vec<&PlannedNode> = plan
        .nodes
        .iter()
        .filter(|n| !matches!(n.kind, NodeKind::Kafka | NodeKind::Cassandra))
        .collect();
    order.sort_by_key(|n| start_rank(n));
    for node in order {
        let spec = node_spec(plan, lab, node).map_err(|e| e.to_string())?;
        let info = lab.start_node(&spec).await.map_err(|e| e.to_string())?;
        ready(progress, &mut ready_ms, &node.name, info.ready_after);
    }
    let settled = std::time::Instant::now();
    sentinel::wait_settled(plan, NODE_READY_TIMEOUT).await?;
    if plan.nodes.iter().any(|n| n.kind == NodeKind::Sentinel) {
        ready(
            progress,
            &mut ready_ms,
            "sentinels-settled",
            settled.elapsed(),
        );
    }
    Ok(Provisioned {
        toxiproxy,
        ready_ms,
    })
}

pub(super) fn ready(
    progress: &dyn Progress,
    ready_ms: &mut BTreeMap<String, u64>,
    node: &str,
    after: Duration,
) {
    ready_ms.insert(node.to_string(), after.as_millis() as u64);
    progress.event(RunEvent::NodeReady {
        node: node.to_string(),
        after,
    });
}

/// Primaries before their replicas, replicas before the sentinels that must find them, stores
/// before the services that use them.
fn start_rank(node: &PlannedNode) -> usize {
    match node.kind {
        NodeKind::Redis if node.replica_of.is_none() => 0,
        NodeKind::Redis => 1,
        NodeKind::Sentinel => 2,
        NodeKind::Kafka | NodeKind::Cassandra => 0,
        kind => 3 + kind.required_uses().len(),
    }
}

/// How each kind of node runs in the lab.
fn node_spec(plan: &Plan, lab: &Lab, node: &PlannedNode) -> Result<NodeSpec, LabError> {
    let dir = lab.node_dir(&node.name);
    let spec = match node.kind {
        NodeKind::Redis => {
            // Not `TcpPort`: after a restart Redis accepts connections while still loading its data
            // (answering `LOADING`); this line is printed once it serves. A replica is ready once
            // its first sync with the primary finished.
            let primary = node.replica_of.as_deref().and_then(|p| plan.node(p));
            let ready = Readiness::LogLine(match primary {
                None => "Ready to accept connections".into(),
                Some(_) => "MASTER <-> REPLICA sync: Finished with success".into(),
            });
            let mut spec = NodeSpec::new(&node.name, find_tool("redis-server")?, ready).args([
                "--bind".to_string(),
                node.addr.to_string(),
                // Outgoing connections (replication) from the node's own address, so partitions
                // between addresses apply to them and the primary sees the replica's real address.
                "--bind-source-addr".into(),
                node.addr.to_string(),
                "--replica-announce-ip".into(),
                node.addr.to_string(),
                // A replica's first sync starts at once rather than after the default 5 s wait
                // for more replicas to share one diskless transfer.
                "--repl-diskless-sync-delay".into(),
                "0".into(),
                "--port".into(),
                node.port.to_string(),
                "--dir".into(),
                dir.display().to_string(),
                "--save".into(),
                String::new(),
                "--appendonly".into(),
                "no".into(),
                "--protected-mode".into(),
                "no".into(),
            ]);
            if let Some(primary) = primary {
                spec = spec.args([
                    "--replicaof".to_string(),
                    primary.addr.to_string(),
                    primary.port.to_string(),
                ]);
            }
            // Experiment-given options come last so they override the defaults above.
            if let Some(options) = node.config.as_object() {
                for (key, value) in options {
                    let value = value
                        .as_str()
                        .map_or_else(|| value.to_string(), str::to_string);
                    spec = spec.args([format!("--{key}"), value]);
                }
            }
            spec
        }
        NodeKind::Sentinel => sentinel::node_spec(plan, &dir, node)?,
        NodeKind::Kafka | NodeKind::Cassandra => {
            return Err(LabError::Other(format!(
                "{} node `{}` is started with its cluster, not alone",
                node.kind.name(),
                node.name
            )));
        }
        NodeKind::Playback | NodeKind::Recommendations => {
            let binary = find_target_binary(node.kind.name())?;
            std::fs::create_dir_all(&dir).map_err(|source| LabError::Io {
                path: dir.clone(),
                source,
            })?;
            let config = dir.join("config.json");
            let json = serde_json::to_vec_pretty(&node.config)
                .map_err(|e| LabError::Other(e.to_string()))?;
            std::fs::write(&config, json).map_err(|source| LabError::Io {
                path: config.clone(),
                source,
            })?;
            let health = format!("http://{}/health", node.socket());
            NodeSpec::new(&node.name, binary, Readiness::Http { url: health }).args([
                "--listen".to_string(),
                node.socket().to_string(),
                "--config".into(),
                config.display().to_string(),
            ])
        }
    };
    Ok(spec.ready_timeout(NODE_READY_TIMEOUT))
}
