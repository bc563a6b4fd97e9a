//! The resolved plan of a run: every node with its address, every proxy, the fault timeline,
//! the workloads and the assertions, all in absolute terms. `faultline plan` prints it.
//!
//! invariant: a `Plan` is only ever built by `spec::validate`, so it is internally consistent:
//! every reference resolves and every fault ends before the run does.

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::faults::FaultAction;
use crate::load::{RedisCommand, WorkloadKind, WorkloadPlan};
use crate::units::format_duration;

/// Where the implicit Toxiproxy server of a lab listens (its HTTP API).
pub const TOXIPROXY_API: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(127, 0, 249, 1)), 8474);

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub name: String,
    pub file: String,
    pub description: Option<String>,
    pub verifies: Vec<String>,
    pub duration: Duration,
    pub nodes: Vec<PlannedNode>,
    pub groups: BTreeMap<String, Vec<String>>,
    /// Toxiproxy proxies, one per `uses` link; the lab starts Toxiproxy only if there are any.
    pub proxies: Vec<PlannedProxy>,
    pub workloads: Vec<PlannedWorkload>,
    pub faults: Vec<PlannedFault>,
    pub assertions: Vec<Assertion>,
    /// The Kafka cluster of the `kafka` nodes, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaPlan>,
    /// The Cassandra cluster of the `cassandra` nodes, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cassandra: Option<CassandraPlan>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CassandraPlan {
    pub keyspace: String,
    /// (datacenter, replicas), in name order.
    pub replication: Vec<(String, u32)>,
    /// `hinted_handoff_enabled` on every node.
    pub hinted_handoff: bool,
    /// Before the ack ledger is read back, wait until no node holds hints any more.
    pub read_back_after_hints: bool,
    /// Before the ack ledger is read back (after the hints), repair the keyspace.
    pub read_back_after_repair: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KafkaPlan {
    pub topics: Vec<PlannedTopic>,
    pub unclean_leader_election: bool,
    pub session_timeout: Duration,
    /// `ip:port,...` of every kafka node.
    pub bootstrap: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedTopic {
    pub name: String,
    pub partitions: u32,
    pub replication_factor: u32,
    pub min_insync_replicas: u32,
}

impl Plan {
    /// Kafka node id -> node name (ids are 1.. in topology order).
    pub fn kafka_ids(&self) -> BTreeMap<i32, String> {
        self.nodes
            .iter()
            .filter(|n| n.kind == NodeKind::Kafka)
            .enumerate()
            .map(|(i, n)| (i as i32 + 1, n.name.clone()))
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    Redis,
    Sentinel,
    Kafka,
    Cassandra,
    Playback,
    Recommendations,
}

impl NodeKind {
    pub const ALL: &[(&str, NodeKind)] = &[
        ("redis", NodeKind::Redis),
        ("sentinel", NodeKind::Sentinel),
        ("kafka", NodeKind::Kafka),
        ("cassandra", NodeKind::Cassandra),
        ("playback", NodeKind::Playback),
        ("recommendations", NodeKind::Recommendations),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, kind)| *kind == self)
            .map_or("?", |(name, _)| name)
    }

    pub fn port(self) -> u16 {
        match self {
            NodeKind::Redis => 6379,
            NodeKind::Sentinel => 26379,
            NodeKind::Kafka => crate::components::kafka::CLIENT_PORT,
            NodeKind::Cassandra => crate::components::cassandra::CQL_PORT,
            NodeKind::Playback | NodeKind::Recommendations => 8080,
        }
    }

    /// The roles a service kind must be given in `uses`, and the node kind each must be.
    pub fn required_uses(self) -> &'static [(&'static str, NodeKind)] {
        match self {
            NodeKind::Playback => &[
                ("redis", NodeKind::Redis),
                ("recommendations", NodeKind::Recommendations),
            ],
            NodeKind::Redis
            | NodeKind::Sentinel
            | NodeKind::Kafka
            | NodeKind::Cassandra
            | NodeKind::Recommendations => &[],
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedNode {
    pub name: String,
    pub kind: NodeKind,
    pub addr: Ipv4Addr,
    pub port: u16,
    /// Final configuration handed to the node (services: JSON config with addresses filled in;
    /// redis: extra `--key value` options; sentinel: `quorum`, `down_after_ms`,
    /// `failover_timeout_ms`, `parallel_syncs`).
    pub config: serde_json::Value,
    /// redis: the node it starts as a replica of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_of: Option<String>,
    /// sentinel: the primary it monitors (also the master name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitors: Option<String>,
    /// cassandra: (datacenter, rack).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dc: Option<(String, String)>,
}

impl PlannedNode {
    pub fn socket(&self) -> SocketAddr {
        SocketAddr::new(self.addr.into(), self.port)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedProxy {
    /// `client->server`, as experiments write it.
    pub link: String,
    /// The proxy's name in Toxiproxy's API (no `>` in URLs).
    pub name: String,
    pub listen: SocketAddr,
    pub upstream: SocketAddr,
}

/// A workload and the node it drives.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedWorkload {
    pub target: String,
    pub plan: WorkloadPlan,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedFault {
    pub name: String,
    pub kind: String,
    pub at: Duration,
    /// `None` for instantaneous faults (`restart`).
    pub lasts: Option<Duration>,
    /// Human description of the target, e.g. `playback->recommendations (downstream, 70%)`.
    pub target: String,
    pub action: FaultAction,
}

impl PlannedFault {
    pub fn ends(&self) -> Duration {
        self.at + self.lasts.unwrap_or_default()
    }
}

/// The phases every workload summary and SLO is split by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseSel {
    Before,
    During,
    After,
    All,
}

impl PhaseSel {
    pub fn name(self) -> &'static str {
        match self {
            PhaseSel::Before => "before",
            PhaseSel::During => "during",
            PhaseSel::After => "after",
            PhaseSel::All => "all",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Assertion {
    Breaker(BreakerAssertion),
    Fallback(FallbackAssertion),
    Slo(SloAssertion),
    Failover(FailoverAssertion),
    Rpo(RpoAssertion),
    RejoinsAsReplica(RejoinAssertion),
    Rto(RtoAssertion),
    LocalQuorumSurvival(SurvivalAssertion),
    StaleReads(StaleReadsAssertion),
    Retries(RetriesAssertion),
}

/// The client retried: at least `min` messages were sent again after a failed attempt, by
/// the client library's own account (Kafka: librdkafka's log of failed batches).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct RetriesAssertion {
    pub name: String,
    pub workload: String,
    pub min: u64,
}

/// Reads of the key a writer acknowledged last (`reads_latest_of`) see it: the share that did
/// not (stale) stays under a bound, over the run or while a fault lasts.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct StaleReadsAssertion {
    pub name: String,
    pub workload: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    /// Percentage.
    pub max_stale_rate: f64,
}

/// Recovery time: from a fault's start until the workload's success ratio is above a threshold
/// for a sustained window (per-second windows).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct RtoAssertion {
    pub name: String,
    pub workload: String,
    pub fault: String,
    /// Percentage.
    pub success_above: f64,
    pub sustained: Duration,
    pub max: Duration,
}

/// A datacenter's workload keeps serving while a fault (another DC's loss) lasts: its error
/// rate within the fault's window stays under a bound.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct SurvivalAssertion {
    pub name: String,
    pub workload: String,
    pub fault: String,
    /// Percentage.
    pub max_error_rate: f64,
}

impl Assertion {
    pub fn name(&self) -> &str {
        match self {
            Assertion::Breaker(a) => &a.name,
            Assertion::Fallback(a) => &a.name,
            Assertion::Slo(a) => &a.name,
            Assertion::Failover(a) => &a.name,
            Assertion::Rpo(a) => &a.name,
            Assertion::RejoinsAsReplica(a) => &a.name,
            Assertion::Rto(a) => &a.name,
            Assertion::LocalQuorumSurvival(a) => &a.name,
            Assertion::StaleReads(a) => &a.name,
            Assertion::Retries(a) => &a.name,
        }
    }
}

/// The time from a fault's start until writes are acknowledged again by a new leader, from
/// the client's acknowledgements, cross-checked with the cluster's own log.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct FailoverAssertion {
    pub name: String,
    pub workload: String,
    pub fault: String,
    pub max: Duration,
    pub agree_within: Duration,
}

/// Acknowledged writes lost, from the ack ledger's read-back after healing.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct RpoAssertion {
    pub name: String,
    pub workload: String,
    pub max_lost: Option<u64>,
    pub max_lost_window: Option<Duration>,
}

/// A node (an old primary) is a connected replica again after healing.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct RejoinAssertion {
    pub name: String,
    pub node: String,
    pub within: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct BreakerAssertion {
    pub name: String,
    pub service: String,
    pub breaker: String,
    pub downstream: String,
    pub workload: String,
    pub documented: BreakerDoc,
    pub tolerance: Duration,
}

/// A breaker's documented behaviour: the oracle the observed run is compared with.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct BreakerDoc {
    pub failure_rate_above: f64,
    pub window: BreakerWindow,
    pub minimum_calls: u64,
    pub minimum_failures: u64,
    pub open_for: Duration,
    pub half_open_calls: u64,
    pub close_after_successes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerWindow {
    Time(Duration),
    Calls(u64),
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct FallbackAssertion {
    pub name: String,
    pub service: String,
    pub breaker: String,
    pub workload: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct SloAssertion {
    pub name: String,
    pub workload: String,
    pub phase: PhaseSel,
    pub max_error_rate: Option<f64>,
    pub max_p99: Option<Duration>,
    pub max_p50: Option<Duration>,
}

impl Plan {
    /// `[first fault start, last fault end)`, or `None` without faults.
    pub fn fault_window(&self) -> Option<(Duration, Duration)> {
        let start = self.faults.iter().map(|f| f.at).min()?;
        let end = self.faults.iter().map(PlannedFault::ends).max()?;
        Some((start, end))
    }

    pub fn node(&self, name: &str) -> Option<&PlannedNode> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The text `faultline plan` prints.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "experiment: {} ({})", self.name, self.file);
        let _ = writeln!(out, "verifies:   {}", self.verifies.join(", "));
        let _ = writeln!(out, "duration:   {}", format_duration(self.duration));
        let _ = writeln!(out, "\ntopology:");
        for node in &self.nodes {
            let _ = writeln!(
                out,
                "  {:<18} {:<16} {}",
                node.name,
                node.kind.name(),
                node.socket()
            );
        }
        for (group, members) in &self.groups {
            let _ = writeln!(out, "  group {group}: {}", members.join(", "));
        }
        if !self.proxies.is_empty() {
            let _ = writeln!(out, "  toxiproxy api      {TOXIPROXY_API}");
            for proxy in &self.proxies {
                let _ = writeln!(
                    out,
                    "  proxy {:<26} {} -> {}",
                    proxy.link, proxy.listen, proxy.upstream
                );
            }
        }
        let _ = writeln!(out, "\nload:");
        for PlannedWorkload { plan: w, .. } in &self.workloads {
            let what = match &w.kind {
                WorkloadKind::Http { url_template, .. } => format!("GET {url_template}"),
                WorkloadKind::Redis {
                    addr,
                    command,
                    sentinel: None,
                    ..
                } => format!("redis {} at {addr}", redis_command_name(*command)),
                WorkloadKind::Cql { target } => format!(
                    "cql {} at {} from `{}` ({} contact points{}), keyspace `{}`",
                    match (target.read_keys, &target.reads_latest_of) {
                        (None, _) => "writes (a new key per op)".to_string(),
                        (Some(_), Some(w)) => format!("reads of the key `{w}` acknowledged last"),
                        (Some(k), None) => format!("reads of {k} keys"),
                    },
                    target.consistency.to_uppercase(),
                    target.local_dc,
                    target.contact_points.len(),
                    match target.address_translation.len() {
                        0 => String::new(),
                        n => format!("; {n} nodes through their proxies"),
                    },
                    target.keyspace
                ),
                WorkloadKind::Kafka { target, producer } => format!(
                    "kafka produce to `{}` ({} partitions), acks={}, idempotence {}, delivery timeout {}",
                    target.topic,
                    target.partitions,
                    producer.acks,
                    if producer.enable_idempotence {
                        "on"
                    } else {
                        "off"
                    },
                    format_duration(producer.delivery_timeout)
                ),
                WorkloadKind::Redis {
                    command,
                    sentinel: Some(s),
                    ..
                } => format!(
                    "redis {} at the primary of `{}` (via {} sentinels)",
                    redis_command_name(*command),
                    s.master,
                    s.sentinels.len()
                ),
            };
            let _ = writeln!(
                out,
                "  {:<18} {:.0}/s for {} (max {} in flight, timeout {}): {what}",
                w.name,
                w.rate_per_sec,
                format_duration(w.duration),
                w.max_in_flight,
                format_duration(w.op_timeout)
            );
        }
        let _ = writeln!(out, "\ntimeline:");
        let _ = writeln!(out, "  {:>8}  load starts", "0s");
        let mut marks: Vec<(Duration, String)> = Vec::new();
        for f in &self.faults {
            marks.push((
                f.at,
                format!("apply {} `{}` on {}", f.kind, f.name, f.target),
            ));
            if let Some(lasts) = f.lasts {
                marks.push((f.at + lasts, format!("heal  {} `{}`", f.kind, f.name)));
            }
        }
        marks.sort_by_key(|(at, _)| *at);
        for (at, text) in marks {
            let _ = writeln!(out, "  {:>8}  {text}", format_duration(at));
        }
        let _ = writeln!(
            out,
            "  {:>8}  load ends; heal everything; judge",
            format_duration(self.duration)
        );
        let _ = writeln!(out, "\nassertions:");
        for a in &self.assertions {
            let _ = writeln!(out, "  {}", describe_assertion(a));
        }
        out
    }
}

/// One line per assertion, as plans and reports show it.
pub fn describe_assertion(assertion: &Assertion) -> String {
    match assertion {
        Assertion::Breaker(b) => {
            let d = &b.documented;
            let window = match d.window {
                BreakerWindow::Time(t) => format!("{} window", format_duration(t)),
                BreakerWindow::Calls(n) => format!("last {n} calls"),
            };
            format!(
                "{}: breaker `{}` of `{}` opens when failures > {}% over {window} (min {} calls, {} failures), \
                 stays open {}, lets {} probes through, closes after {} successes; evidence: calls received by `{}`, \
                 responses of `{}`; tolerance {}",
                b.name,
                b.breaker,
                b.service,
                d.failure_rate_above,
                d.minimum_calls,
                d.minimum_failures,
                format_duration(d.open_for),
                d.half_open_calls,
                d.close_after_successes,
                b.downstream,
                b.workload,
                format_duration(b.tolerance)
            )
        }
        Assertion::Fallback(f) => format!(
            "{}: while breaker `{}` of `{}` is OPEN, every response of `{}` is a successful fallback",
            f.name, f.breaker, f.service, f.workload
        ),
        Assertion::Failover(f) => format!(
            "{}: after `{}` starts, `{}` is acknowledged again by a new leader within {} (client view), \
             and the cluster's own log agrees within {}",
            f.name,
            f.fault,
            f.workload,
            format_duration(f.max),
            format_duration(f.agree_within)
        ),
        Assertion::Rpo(r) => {
            let mut limits = Vec::new();
            if let Some(n) = r.max_lost {
                limits.push(format!("at most {n} lost"));
            }
            if let Some(w) = r.max_lost_window {
                limits.push(format!("lost writes span at most {}", format_duration(w)));
            }
            format!(
                "{}: acknowledged writes of `{}` read back after healing: {}",
                r.name,
                r.workload,
                limits.join(", ")
            )
        }
        Assertion::Rto(r) => format!(
            "{}: after `{}` starts, the success ratio of `{}` is back above {}% for {} within {}",
            r.name,
            r.fault,
            r.workload,
            r.success_above,
            format_duration(r.sustained),
            format_duration(r.max)
        ),
        Assertion::LocalQuorumSurvival(r) => format!(
            "{}: while `{}` lasts, the error rate of `{}` stays <= {}%",
            r.name, r.fault, r.workload, r.max_error_rate
        ),
        Assertion::Retries(r) => format!(
            "{}: the client of `{}` retried at least {} message(s)",
            r.name, r.workload, r.min
        ),
        Assertion::StaleReads(r) => format!(
            "{}: reads of `{}` see the last acknowledged write{}: at most {}% stale",
            r.name,
            r.workload,
            r.fault
                .as_ref()
                .map_or(String::new(), |f| format!(" while `{f}` lasts")),
            r.max_stale_rate
        ),
        Assertion::RejoinsAsReplica(r) => format!(
            "{}: `{}` is a connected replica within {} after healing",
            r.name,
            r.node,
            format_duration(r.within)
        ),
        Assertion::Slo(s) => {
            let mut limits = Vec::new();
            if let Some(rate) = s.max_error_rate {
                limits.push(format!("error rate <= {rate}%"));
            }
            if let Some(p99) = s.max_p99 {
                limits.push(format!("p99 <= {}", format_duration(p99)));
            }
            if let Some(p50) = s.max_p50 {
                limits.push(format!("p50 <= {}", format_duration(p50)));
            }
            format!(
                "{}: `{}` in phase {}: {}",
                s.name,
                s.workload,
                s.phase.name(),
                limits.join(", ")
            )
        }
    }
}

fn redis_command_name(command: RedisCommand) -> &'static str {
    match command {
        RedisCommand::Get => "GET",
        RedisCommand::Set => "SET",
        RedisCommand::SetGet => "SET/GET",
        RedisCommand::SetUnique => "SET (unique keys, ledger)",
    }
}
