//! Starting a cluster and knowing it is one: every node listening for CQL clients, every node
//! seeing every other node UP in gossip since their latest starts, and every node knowing every
//! other node's tokens (what `nodetool status` shows as `UN` everywhere).
//!
//! Start-up order: the first node of each DC (a seed), then all the others, each wave
//! concurrently (see `first_of_each_dc` for why). Precomputed tokens and `auto_bootstrap: false`
//! mean no node streams or waits for a ring delay before it serves. Measured for 2 DCs x 3 nodes
//! on 2 cores shared with other builds (load average 3-29): seeds in 10-25 s, cluster-ready in
//! 45-72 s (4 runs); all six at once was no faster (45-73 s, 4 runs) and races the shadow round.
//! A node alone starts in ~7 s: the rest is contention. `tests/cluster_cassandra.rs` prints the
//! numbers of each run.
//!
//! Cluster readiness comes from the nodes' own words, never from a sleep:
//! - gossip liveness: Cassandra logs `InetAddress <addr> is now UP` / `is now DOWN` each time its
//!   failure detector changes its mind about a peer. `UpWatch` reads those lines incrementally
//!   and counts a peer as seen only if the latest line about it is UP and was written after both
//!   the observer's and the peer's latest (re)start, so a line from before a kill can never make
//!   a restarted cluster look ready;
//! - ring membership: UP can precede a peer's NORMAL state, so each node's `system.peers_v2` is
//!   then read (through CQL, targeted at that node) until it lists every other node with tokens,
//!   which a node records only when it has seen that peer go NORMAL.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::load_balancing::{NodeIdentifier, SingleTargetLoadBalancingPolicy};
use scylla::statement::{Consistency, Statement};

use super::CassandraNode;
use crate::errors::LabError;
use crate::lab::{Lab, NodeSpec};

/// Polling backoff while waiting for gossip.
const MIN_POLL: Duration = Duration::from_millis(100);
const MAX_POLL: Duration = Duration::from_secs(1);
/// How long, after the last node is ready, every node may take to see every other UP and know
/// its tokens.
pub const CLUSTER_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// A started cluster.
#[derive(Debug)]
pub struct ClusterReady {
    /// From the call until every node saw every other UP and knew its tokens.
    pub ready_after: Duration,
    /// In the order given.
    pub nodes: Vec<NodeReady>,
    /// Keeps tracking gossip: call `starting` before restarting a node, then `wait_all_up`.
    pub watch: UpWatch,
}

/// One node of a started cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeReady {
    pub name: String,
    pub pid: u32,
    /// From the `start_cluster` call until the node's `READY_LINE`.
    pub ready_after: Duration,
}

/// Starts the first node of each DC (a seed, whatever `seeds_per_dc`), then all the others,
/// each wave concurrently; each `start_node` waits for its own `READY_LINE`. Then waits
/// (`CLUSTER_READY_TIMEOUT`) until every node sees every other UP and knows its tokens. `specs`
/// and `nodes` come from `prepare`, in the same order. A node that fails to start fails the call;
/// the lab's teardown stops the others.
pub async fn start_cluster(
    lab: &Lab,
    specs: &[NodeSpec],
    nodes: &[CassandraNode],
) -> Result<ClusterReady, LabError> {
    if specs.len() != nodes.len() || specs.iter().zip(nodes).any(|(s, n)| s.name != n.name) {
        return Err(LabError::Other(
            "cassandra cluster: `specs` and `nodes` differ (hint: pass what `prepare` returned with the same nodes)".into(),
        ));
    }
    let began = Instant::now();
    let mut watch = UpWatch::new(nodes);
    for node in nodes {
        watch.starting(lab, &node.name);
    }
    let first = first_of_each_dc(nodes);
    let mut ready = Vec::with_capacity(specs.len());
    for wave in [true, false] {
        let started = futures::future::join_all(
            specs
                .iter()
                .filter(|spec| first.contains(&spec.name.as_str()) == wave)
                .map(|spec| async move {
                    let info = lab.start_node(spec).await?;
                    Ok::<_, LabError>(NodeReady {
                        name: spec.name.clone(),
                        pid: info.pid,
                        ready_after: began.elapsed(),
                    })
                }),
        )
        .await;
        for result in started {
            ready.push(result?);
        }
    }
    // In the order given, as documented.
    ready.sort_by_key(|r| nodes.iter().position(|n| n.name == r.name));
    watch.wait_all_up(lab, CLUSTER_READY_TIMEOUT).await?;
    Ok(ClusterReady {
        ready_after: began.elapsed(),
        nodes: ready,
        watch,
    })
}

/// Restarts `names` (SIGKILL if still running, then the same spec and data) and waits, up to
/// `timeout`, until the whole cluster sees itself UP again; returns how long that took. When
/// `names` is the whole cluster the first node of each DC goes first (nobody else could answer
/// the others' shadow round); otherwise all at once, as the running nodes answer it.
pub async fn restart_nodes(
    lab: &Lab,
    watch: &mut UpWatch,
    names: &[&str],
    timeout: Duration,
) -> Result<Duration, LabError> {
    let began = Instant::now();
    if let Some(unknown) = names
        .iter()
        .find(|n| !watch.nodes.iter().any(|m| m.name == **n))
    {
        return Err(LabError::UnknownNode((*unknown).to_string()));
    }
    let whole = watch.nodes.iter().all(|n| names.contains(&n.name.as_str()));
    let first: Vec<String> = if whole {
        first_of_each_dc(&watch.nodes)
            .into_iter()
            .map(str::to_string)
            .collect()
    } else {
        Vec::new()
    };
    for name in names {
        watch.starting(lab, name);
    }
    for wave in [true, false] {
        let restarted = futures::future::join_all(
            names
                .iter()
                .filter(|name| first.iter().any(|f| f == *name) == wave)
                .map(|name| lab.restart_node(name)),
        )
        .await;
        for result in restarted {
            result?;
        }
    }
    watch.wait_all_up(lab, timeout).await?;
    Ok(began.elapsed())
}

/// Why seeds first: a non-seed node's first act is a gossip "shadow round" with the seeds (and
/// the peers it knew), and it gives up with `Unable to gossip with any peers` if none answers
/// within the ring delay; the seeds themselves go on alone. On 2 busy cores one JVM can lag
/// another by tens of seconds, so an all-at-once start would be a race.
fn first_of_each_dc(nodes: &[CassandraNode]) -> Vec<&str> {
    super::config::seeds(nodes, 1)
        .into_iter()
        .map(|n| n.name.as_str())
        .collect()
}

/// What one node's log said about its peers so far.
#[derive(Debug, Default)]
struct LogState {
    /// Bytes of the log consumed (complete lines only).
    read: u64,
    /// Peer address -> (offset of the latest UP/DOWN line about it, whether it said UP).
    last: BTreeMap<Ipv4Addr, (u64, bool)>,
}

/// Tracks, from the nodes' logs, which node sees which peer UP. See the module docs.
#[derive(Debug)]
pub struct UpWatch {
    nodes: Vec<CassandraNode>,
    /// marks[b][a]: the length of a's log when b was last (re)started.
    marks: BTreeMap<String, BTreeMap<String, u64>>,
    logs: BTreeMap<String, LogState>,
}

impl UpWatch {
    pub fn new(nodes: &[CassandraNode]) -> UpWatch {
        UpWatch {
            nodes: nodes.to_vec(),
            marks: BTreeMap::new(),
            logs: BTreeMap::new(),
        }
    }

    /// Call right before (re)starting `node`: from now on only lines written after this count
    /// as evidence about it, in its own log and in every other node's.
    pub fn starting(&mut self, lab: &Lab, node: &str) {
        let lengths = self
            .nodes
            .iter()
            .map(|n| {
                let len = std::fs::metadata(lab.log_path(&n.name)).map_or(0, |m| m.len());
                (n.name.clone(), len)
            })
            .collect();
        self.marks.insert(node.to_string(), lengths);
    }

    /// For each node, the peers it does not (yet) see UP since their latest starts.
    pub fn not_up(&mut self, lab: &Lab) -> BTreeMap<String, Vec<String>> {
        let mut missing = BTreeMap::new();
        for observer in &self.nodes {
            let state = self.logs.entry(observer.name.clone()).or_default();
            scan(&lab.log_path(&observer.name), state);
            let since_own = self
                .marks
                .get(&observer.name)
                .and_then(|m| m.get(&observer.name));
            let lacking: Vec<String> = self
                .nodes
                .iter()
                .filter(|peer| peer.name != observer.name)
                .filter(|peer| {
                    let since_peer = self
                        .marks
                        .get(&peer.name)
                        .and_then(|m| m.get(&observer.name));
                    let after = since_own
                        .copied()
                        .unwrap_or(0)
                        .max(since_peer.copied().unwrap_or(0));
                    !matches!(state.last.get(&peer.addr), Some(&(at, true)) if at >= after)
                })
                .map(|peer| peer.name.clone())
                .collect();
            if !lacking.is_empty() {
                missing.insert(observer.name.clone(), lacking);
            }
        }
        missing
    }

    /// Polls (100 ms doubling to 1 s) until every node sees every other UP and knows its tokens;
    /// returns how long it waited, or `NotReady` naming who lacks whom.
    pub async fn wait_all_up(
        &mut self,
        lab: &Lab,
        timeout: Duration,
    ) -> Result<Duration, LabError> {
        let began = Instant::now();
        let mut poll = MIN_POLL;
        let mut session: Option<Session> = None;
        loop {
            let missing = self.not_up(lab);
            let lacking = if missing.is_empty() {
                match ring_gaps(&mut session, &self.nodes).await {
                    Ok(gaps) if gaps.is_empty() => return Ok(began.elapsed()),
                    Ok(gaps) => describe(&gaps, "has no tokens of"),
                    Err(e) => e,
                }
            } else {
                format!("gossip: {} UP", describe(&missing, "does not see"))
            };
            if began.elapsed() >= timeout {
                return Err(LabError::NotReady {
                    node: "cassandra cluster".into(),
                    timeout_ms: timeout.as_millis() as u64,
                    detail: format!("{lacking} (hint: see the nodes' logs)"),
                });
            }
            tokio::time::sleep(poll.min(timeout.saturating_sub(began.elapsed()))).await;
            poll = (poll * 2).min(MAX_POLL);
        }
    }
}

fn describe(gaps: &BTreeMap<String, Vec<String>>, verb: &str) -> String {
    gaps.iter()
        .map(|(observer, peers)| format!("`{observer}` {verb} {}", peers.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A statement that only `node` answers: for node-local tables (`system.peers_v2`,
/// `system_views.*`).
pub(super) fn on_node(cql: &str, node: SocketAddr) -> Statement {
    let mut statement = Statement::new(cql);
    let profile = ExecutionProfile::builder()
        .load_balancing_policy(SingleTargetLoadBalancingPolicy::new(
            NodeIdentifier::NodeAddress(node),
            None,
        ))
        .consistency(Consistency::One)
        .request_timeout(Some(Duration::from_secs(5)))
        .build();
    statement.set_execution_profile_handle(Some(profile.into_handle()));
    statement
}

/// For each node, the peers missing from its `system.peers_v2` or listed there without tokens.
/// Connects `session` on first use; an error means "not yet" to the caller.
async fn ring_gaps(
    session: &mut Option<Session>,
    nodes: &[CassandraNode],
) -> Result<BTreeMap<String, Vec<String>>, String> {
    if session.is_none() {
        let built = SessionBuilder::new()
            .known_nodes_addr(nodes.iter().map(CassandraNode::cql_addr))
            .build()
            .await
            .map_err(|e| format!("ring check: cannot connect: {e}"))?;
        *session = Some(built);
    }
    let Some(session) = session.as_ref() else {
        return Err("ring check: no session".into());
    };
    let mut gaps = BTreeMap::new();
    for observer in nodes {
        let fail = |e: String| format!("ring check on `{}`: {e}", observer.name);
        let statement = on_node(
            "SELECT peer, tokens FROM system.peers_v2",
            observer.cql_addr(),
        );
        let rows = session
            .query_unpaged(statement, ())
            .await
            .map_err(|e| fail(e.to_string()))?
            .into_rows_result()
            .map_err(|e| fail(e.to_string()))?;
        let mut known = Vec::new();
        for row in rows
            .rows::<(IpAddr, Option<Vec<String>>)>()
            .map_err(|e| fail(e.to_string()))?
        {
            let (peer, tokens) = row.map_err(|e| fail(e.to_string()))?;
            if tokens.is_some_and(|t| !t.is_empty()) {
                known.push(peer);
            }
        }
        let lacking: Vec<String> = nodes
            .iter()
            .filter(|p| p.name != observer.name && !known.contains(&IpAddr::V4(p.addr)))
            .map(|p| p.name.clone())
            .collect();
        if !lacking.is_empty() {
            gaps.insert(observer.name.clone(), lacking);
        }
    }
    Ok(gaps)
}

/// Reads the complete lines added to `path` since the last scan and records UP/DOWN lines.
fn scan(path: &std::path::Path, state: &mut LogState) {
    let Ok(mut file) = std::fs::File::open(path) else {
        return;
    };
    if file.seek(SeekFrom::Start(state.read)).is_err() {
        return;
    }
    let mut fresh = Vec::new();
    if file.read_to_end(&mut fresh).is_err() {
        return;
    }
    let Some(end) = fresh.iter().rposition(|&b| b == b'\n') else {
        return;
    };
    let mut at = state.read;
    for line in fresh[..=end].split(|&b| b == b'\n') {
        if let Some((peer, up)) = parse_gossip_line(&String::from_utf8_lossy(line)) {
            state.last.insert(peer, (at, up));
        }
        at += line.len() as u64 + 1;
    }
    state.read += end as u64 + 1;
}

/// `... InetAddress /127.0.1.2:7000 is now UP` -> (127.0.1.2, true); DOWN -> false.
pub fn parse_gossip_line(line: &str) -> Option<(Ipv4Addr, bool)> {
    let line = line.trim_end();
    let (before, up) = if let Some(before) = line.strip_suffix(" is now UP") {
        (before, true)
    } else if let Some(before) = line.strip_suffix(" is now DOWN") {
        (before, false)
    } else {
        return None;
    };
    let word = before.rsplit(' ').next()?;
    let addr = word.trim_start_matches('/');
    let host = addr.split(':').next()?;
    host.parse().ok().map(|ip| (ip, up))
}
