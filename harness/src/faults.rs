//! Faults as data: applying a `FaultAction` returns a `FaultGuard` whose `undo` reverses it
//! (paired verbs: add/remove toxic, disable/enable proxy, kill/restart, pause/resume,
//! partition/heal).
//!
//! invariant: a fault's intent is in the lab's intent log BEFORE it is applied, and
//! `fault_undone` is logged only after its undo completed.
//! invariant: `apply` is all-or-nothing: when it fails midway (the third of three nodes will not
//! die), what it already did is rolled back before the error is returned.
//! invariant: `undo` is idempotent; a failed undo can be retried and only redoes what is left.
//! Dropping an active guard does not undo it (undo is async); the lab's shutdown (or drop)
//! still removes every trace: nodes killed, namespace with its nftables rules deleted, the
//! toxiproxy server with its toxics gone.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::errors::{FaultError, LabError, ToxiproxyError};
use crate::lab::{Direction, Intent, Lab, PartitionHandle};
use crate::toxiproxy::{NewToxic, Stream, ToxicSpec, Toxiproxy};

/// One fault, as the schedule describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultAction {
    /// A toxiproxy toxic on each proxy (one link, or a client's links to a group of nodes);
    /// undo removes them.
    Toxic {
        #[serde(alias = "proxy", deserialize_with = "one_or_many")]
        proxies: Vec<String>,
        spec: ToxicSpec,
        stream: Stream,
        toxicity: f64,
    },
    /// The proxies are disabled (connections closed, nothing listens); undo re-enables them.
    LinkDown {
        #[serde(alias = "proxy", deserialize_with = "one_or_many")]
        proxies: Vec<String>,
    },
    /// SIGKILL; undo restarts each node with the same spec and data dir.
    Kill {
        nodes: Vec<String>,
        /// Chosen when the fault fires instead (then `nodes` is empty).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<RoleSelector>,
    },
    /// SIGSTOP; undo SIGCONTs.
    Pause {
        nodes: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<RoleSelector>,
    },
    /// Kill then start again, at once; nothing to undo.
    Restart {
        nodes: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<RoleSelector>,
    },
    /// Drop traffic between two address groups; undo heals.
    Partition {
        a: Vec<Ipv4Addr>,
        b: Vec<Ipv4Addr>,
        direction: Direction,
    },
}

/// Journals recorded before faults could span several links name one `proxy`.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}

/// A node chosen by the role it has when the fault fires (a leader moves during a run, so the
/// plan cannot name it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum RoleSelector {
    /// The current primary of a Sentinel-monitored set, as the sentinels report it.
    Primary {
        master: String,
        sentinels: Vec<SocketAddr>,
        /// `ip:port` -> node name, for every redis node of the set.
        nodes: BTreeMap<String, String>,
    },
    /// The leader of one Kafka partition (or, with `followers`, its other replicas), from the
    /// cluster's metadata.
    KafkaLeader {
        topic: String,
        partition: i32,
        bootstrap: String,
        /// Kafka node id -> node name.
        nodes: BTreeMap<i32, String>,
        #[serde(default)]
        followers: bool,
    },
    /// The active KRaft controller, from the quorum state a node keeps on disk.
    KafkaController {
        /// Kafka node id -> node name.
        nodes: BTreeMap<i32, String>,
        bootstrap: String,
        /// The topic whose partitions the controller's node leads are reported.
        topic: String,
    },
}

impl RoleSelector {
    /// As experiments write it: `primary:r1`, `leader:orders/0`, `controller`.
    pub fn describe(&self) -> String {
        match self {
            RoleSelector::Primary { master, .. } => format!("primary:{master}"),
            RoleSelector::KafkaLeader {
                topic,
                partition,
                followers,
                ..
            } => {
                let role = if *followers { "followers" } else { "leader" };
                format!("{role}:{topic}/{partition}")
            }
            RoleSelector::KafkaController { .. } => "controller".into(),
        }
    }
}

/// Who a role-targeted fault hit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    pub selector: String,
    pub nodes: Vec<String>,
    /// Kafka: every partition the hit node led at that moment (the ones that must fail over).
    pub partitions: Vec<i32>,
}

/// What faults act on. Cheap to clone; guards keep a clone so `undo` needs no arguments.
#[derive(Debug, Clone)]
pub struct FaultContext {
    pub lab: Arc<Lab>,
    /// Needed by `Toxic` and `LinkDown` only.
    pub toxiproxy: Option<Toxiproxy>,
}

impl FaultContext {
    pub fn new(lab: Arc<Lab>, toxiproxy: Option<Toxiproxy>) -> FaultContext {
        FaultContext { lab, toxiproxy }
    }
}

/// How to reverse an applied fault; lists shrink as parts are undone (retry-safe).
#[derive(Debug)]
enum Undo {
    /// The proxies still carrying the toxic.
    RemoveToxic {
        proxies: Vec<String>,
        toxic: String,
    },
    /// The proxies still disabled.
    Enable {
        proxies: Vec<String>,
    },
    Start {
        nodes: Vec<String>,
    },
    Resume {
        nodes: Vec<String>,
    },
    Heal(PartitionHandle),
    Nothing,
}

/// An applied fault. Call `undo` (on every path: success, failure, cancellation).
#[must_use = "an applied fault stays in effect until `undo` (or lab shutdown)"]
#[derive(Debug)]
pub struct FaultGuard {
    ctx: FaultContext,
    id: String,
    undo: Undo,
    active: bool,
    resolution: Option<Resolution>,
}

/// Toxic names become URL segments: derive a safe, unique one from the fault id.
fn toxic_name(id: &str) -> String {
    let safe: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("faultline_{safe}")
}

fn lab_err(id: &str) -> impl Fn(LabError) -> FaultError + '_ {
    move |source| FaultError::Lab {
        fault: id.to_string(),
        source,
    }
}

fn tp_err(id: &str) -> impl Fn(ToxiproxyError) -> FaultError + '_ {
    move |source| FaultError::Toxiproxy {
        fault: id.to_string(),
        source,
    }
}

fn validate(id: &str, action: &FaultAction, ctx: &FaultContext) -> Result<(), FaultError> {
    let invalid = |detail: &str| {
        Err(FaultError::Invalid {
            fault: id.to_string(),
            detail: detail.to_string(),
        })
    };
    match action {
        FaultAction::Toxic { toxicity, .. } if !(0.0..=1.0).contains(toxicity) => {
            return invalid(&format!("toxicity `{toxicity}` is not within 0..=1"));
        }
        FaultAction::Kill { nodes, role: None }
        | FaultAction::Pause { nodes, role: None }
        | FaultAction::Restart { nodes, role: None }
            if nodes.is_empty() =>
        {
            return invalid("no nodes named");
        }
        FaultAction::Toxic { .. } | FaultAction::LinkDown { .. } if ctx.toxiproxy.is_none() => {
            return Err(FaultError::NoToxiproxy {
                fault: id.to_string(),
            });
        }
        _ => {}
    }
    Ok(())
}

/// Logs the intent, applies the fault, returns its guard. See the module invariants. A
/// role-targeted fault is first resolved to the node that has the role now.
pub async fn apply(
    ctx: &FaultContext,
    id: &str,
    action: &FaultAction,
) -> Result<FaultGuard, FaultError> {
    let (resolved, resolution) = match role_of(action) {
        Some(selector) => {
            let resolution = crate::roles::resolve(selector, &ctx.lab)
                .await
                .map_err(|detail| FaultError::Invalid {
                    fault: id.to_string(),
                    detail: format!(
                        "cannot tell which node is `{}`: {detail}",
                        selector.describe()
                    ),
                })?;
            (
                with_nodes(action, resolution.nodes.clone()),
                Some(resolution),
            )
        }
        None => (action.clone(), None),
    };
    let mut guard = apply_resolved(ctx, id, &resolved).await?;
    guard.resolution = resolution;
    Ok(guard)
}

fn role_of(action: &FaultAction) -> Option<&RoleSelector> {
    match action {
        FaultAction::Kill { role, .. }
        | FaultAction::Pause { role, .. }
        | FaultAction::Restart { role, .. } => role.as_ref(),
        _ => None,
    }
}

/// The same action on concrete nodes.
fn with_nodes(action: &FaultAction, nodes: Vec<String>) -> FaultAction {
    match action {
        FaultAction::Kill { .. } => FaultAction::Kill { nodes, role: None },
        FaultAction::Pause { .. } => FaultAction::Pause { nodes, role: None },
        FaultAction::Restart { .. } => FaultAction::Restart { nodes, role: None },
        other => other.clone(),
    }
}

async fn apply_resolved(
    ctx: &FaultContext,
    id: &str,
    action: &FaultAction,
) -> Result<FaultGuard, FaultError> {
    validate(id, action, ctx)?;
    let lab = &ctx.lab;
    let detail = serde_json::to_value(action).map_err(|e| FaultError::Invalid {
        fault: id.to_string(),
        detail: e.to_string(),
    })?;
    lab.record(&Intent::Fault {
        id: id.to_string(),
        detail,
    })
    .map_err(lab_err(id))?;
    let undone = || {
        lab.record(&Intent::FaultUndone { id: id.to_string() })
            .map_err(lab_err(id))
    };
    let tp = || {
        ctx.toxiproxy
            .as_ref()
            .ok_or_else(|| FaultError::NoToxiproxy {
                fault: id.to_string(),
            })
    };

    let undo = match action {
        FaultAction::Toxic {
            proxies,
            spec,
            stream,
            toxicity,
        } => {
            let toxic = NewToxic {
                name: toxic_name(id),
                stream: *stream,
                toxicity: *toxicity,
                spec: spec.clone(),
            };
            let tp = tp()?;
            let mut done: Vec<String> = Vec::new();
            for proxy in proxies {
                if let Err(e) = tp.add_toxic(proxy, &toxic).await {
                    // Half a DC's links slowed is not the fault the plan describes: take back
                    // what was added before reporting.
                    for added in &done {
                        let _ = tp.remove_toxic(added, &toxic.name).await;
                    }
                    return Err(tp_err(id)(e));
                }
                done.push(proxy.clone());
            }
            Undo::RemoveToxic {
                proxies: done,
                toxic: toxic.name,
            }
        }
        FaultAction::LinkDown { proxies } => {
            let tp = tp()?;
            let mut done: Vec<String> = Vec::new();
            for proxy in proxies {
                if let Err(e) = tp.set_enabled(proxy, false).await {
                    for disabled in &done {
                        let _ = tp.set_enabled(disabled, true).await;
                    }
                    return Err(tp_err(id)(e));
                }
                done.push(proxy.clone());
            }
            Undo::Enable { proxies: done }
        }
        FaultAction::Kill { nodes, .. } => {
            // All at once: a datacenter dies at one instant, not one JVM teardown after another.
            let results = futures::future::join_all(nodes.iter().map(|n| lab.kill_node(n))).await;
            if let Some(position) = results.iter().position(Result::is_err) {
                for (node, result) in nodes.iter().zip(&results) {
                    if result.is_ok() {
                        let _ = lab.restart_node(node).await;
                    }
                }
                let _ = undone();
                let error = results.into_iter().nth(position).and_then(Result::err);
                return Err(lab_err(id)(error.unwrap_or_else(|| {
                    LabError::Other("a node could not be killed".into())
                })));
            }
            Undo::Start {
                nodes: nodes.clone(),
            }
        }
        FaultAction::Pause { nodes, .. } => {
            for (i, node) in nodes.iter().enumerate() {
                if let Err(e) = lab.pause_node(node).await {
                    for done in &nodes[..i] {
                        let _ = lab.resume_node(done).await;
                    }
                    let _ = undone();
                    return Err(lab_err(id)(e));
                }
            }
            Undo::Resume {
                nodes: nodes.clone(),
            }
        }
        FaultAction::Restart { nodes, .. } => {
            for node in nodes {
                lab.restart_node(node).await.map_err(lab_err(id))?;
            }
            // Nothing stays in effect: the log says so at once.
            undone()?;
            return Ok(FaultGuard {
                ctx: ctx.clone(),
                id: id.to_string(),
                undo: Undo::Nothing,
                active: false,
                resolution: None,
            });
        }
        FaultAction::Partition { a, b, direction } => {
            Undo::Heal(lab.partition(a, b, *direction).await.map_err(lab_err(id))?)
        }
    };
    Ok(FaultGuard {
        ctx: ctx.clone(),
        id: id.to_string(),
        undo,
        active: true,
        resolution: None,
    })
}

impl FaultGuard {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Who a role-targeted fault hit.
    pub fn resolution(&self) -> Option<&Resolution> {
        self.resolution.as_ref()
    }

    /// True until `undo` has completed.
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// Reverses the fault and logs `fault_undone`. A second call is a no-op; after an error,
    /// calling again retries only what is left.
    pub async fn undo(&mut self) -> Result<(), FaultError> {
        if !self.active {
            return Ok(());
        }
        let id = self.id.clone();
        let lab = self.ctx.lab.clone();
        match &mut self.undo {
            Undo::RemoveToxic { proxies, toxic } => {
                let tp = self
                    .ctx
                    .toxiproxy
                    .as_ref()
                    .ok_or_else(|| FaultError::NoToxiproxy { fault: id.clone() })?;
                while let Some(proxy) = proxies.last() {
                    match tp.remove_toxic(proxy, toxic).await {
                        // Already gone (a `/reset`, or a retried undo): the wanted outcome.
                        Ok(()) | Err(ToxiproxyError::Status { status: 404, .. }) => {
                            proxies.pop();
                        }
                        Err(e) => return Err(tp_err(&id)(e)),
                    }
                }
            }
            Undo::Enable { proxies } => {
                let tp = self
                    .ctx
                    .toxiproxy
                    .as_ref()
                    .ok_or_else(|| FaultError::NoToxiproxy { fault: id.clone() })?;
                while let Some(proxy) = proxies.last() {
                    tp.set_enabled(proxy, true).await.map_err(tp_err(&id))?;
                    proxies.pop();
                }
            }
            Undo::Start { nodes } => {
                // Concurrently, as a recovering datacenter comes back; the nodes that failed to
                // start stay listed, so a retried undo restarts only those.
                let lab = &lab;
                let results = futures::future::join_all(nodes.iter().map(|node| async move {
                    // Someone (a later restart) may have brought it back already.
                    if lab.node_pid(node).await.is_none() {
                        lab.restart_node(node).await.map(|_| ())
                    } else {
                        Ok(())
                    }
                }))
                .await;
                let mut first_error = None;
                let mut left = Vec::new();
                for (node, result) in nodes.iter().zip(results) {
                    if let Err(e) = result {
                        left.push(node.clone());
                        first_error.get_or_insert(e);
                    }
                }
                *nodes = left;
                if let Some(e) = first_error {
                    return Err(lab_err(&id)(e));
                }
            }
            Undo::Resume { nodes } => {
                while let Some(node) = nodes.first().cloned() {
                    match lab.resume_node(&node).await {
                        // Killed meanwhile: nothing is paused any more.
                        Ok(()) | Err(LabError::NotRunning(_)) => {}
                        Err(e) => return Err(lab_err(&id)(e)),
                    }
                    nodes.remove(0);
                }
            }
            Undo::Heal(handle) => {
                lab.heal(handle).await.map_err(lab_err(&id))?;
            }
            Undo::Nothing => {}
        }
        lab.record(&Intent::FaultUndone { id: id.clone() })
            .map_err(lab_err(&id))?;
        self.active = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_serialize_as_data() {
        let a = FaultAction::Toxic {
            proxies: vec!["redis".into()],
            spec: ToxicSpec::Latency {
                latency_ms: 200,
                jitter_ms: 0,
            },
            stream: Stream::Downstream,
            toxicity: 1.0,
        };
        let v = serde_json::to_value(&a).expect("encodes");
        assert_eq!(v["kind"], "toxic");
        assert_eq!(v["spec"]["type"], "latency");
        let p = FaultAction::Partition {
            a: vec![Ipv4Addr::new(127, 0, 1, 1)],
            b: vec![Ipv4Addr::new(127, 0, 2, 1)],
            direction: Direction::OneWay,
        };
        let back: FaultAction =
            serde_json::from_value(serde_json::to_value(&p).expect("encodes")).expect("decodes");
        assert_eq!(back, p);
    }

    #[test]
    fn toxic_names_are_url_safe() {
        assert_eq!(toxic_name("dc1/latency 2"), "faultline_dc1_latency_2");
    }
}
