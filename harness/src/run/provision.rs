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
    let mut order: Vec<&PlannedNode> = plan.nodes.iter().collect();
    order.sort_by_key(|n| n.kind.required_uses().len());
    for node in order {
        let spec = node_spec(lab, node).map_err(|e| e.to_string())?;
        let info = lab.start_node(&spec).await.map_err(|e| e.to_string())?;
        ready(progress, &mut ready_ms, &node.name, info.ready_after);
    }
    Ok(Provisioned {
        toxiproxy,
        ready_ms,
    })
}

fn ready(
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

/// How each kind of node runs in the lab.
fn node_spec(lab: &Lab, node: &PlannedNode) -> Result<NodeSpec, LabError> {
    let dir = lab.node_dir(&node.name);
    let spec = match node.kind {
        NodeKind::Redis => {
            // Not `TcpPort`: after a restart Redis accepts connections while still loading its data
            // (answering `LOADING`); this line is printed once it serves.
            let ready = Readiness::LogLine("Ready to accept connections".into());
            let mut spec = NodeSpec::new(&node.name, find_tool("redis-server")?, ready).args([
                "--bind".to_string(),
                node.addr.to_string(),
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
