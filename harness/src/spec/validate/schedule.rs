//! Validation of `load` (workloads) and `faults` (the schedule): kinds, fields per kind, units,
//! targets, and faults that end before the run does.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::{Resolver, Topology};
use crate::faults::{FaultAction, RoleSelector};
use crate::lab::Direction;
use crate::load::{RedisCommand, SentinelTarget, WorkloadKind, WorkloadPlan};
use crate::plan::*;
use crate::spec::{At, FaultSpec, WorkloadSpec};
use crate::toxiproxy::{Stream, ToxicSpec};
use crate::units::{parse_percent, parse_rate};

/// Default per-operation timeout of workloads.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_MAX_IN_FLIGHT: u64 = 256;

impl Resolver<'_> {
    // ---- load -----------------------------------------------------------------------------

    pub(super) fn workload(
        &mut self,
        spec: &WorkloadSpec,
        run: Duration,
        topo: &Topology,
    ) -> Option<PlannedWorkload> {
        self.identifier(&spec.name, "workload");
        let kind = spec.kind.value.as_str();
        let (allowed, wanted_node): (&[&str], &[NodeKind]) = match kind {
            "http" => (
                &["path", "tag_header"],
                &[NodeKind::Playback, NodeKind::Recommendations],
            ),
            "redis" => (
                &["command", "keyspace", "value_size", "sentinels"],
                &[NodeKind::Redis],
            ),
            "kafka" => (
                &[
                    "topic",
                    "acks",
                    "retries",
                    "retry_backoff",
                    "retry_backoff_max",
                    "delivery_timeout",
                    "idempotence",
                    "linger",
                    "value_size",
                ],
                &[NodeKind::Kafka],
            ),
            "cql" => (
                &[
                    "op",
                    "consistency",
                    "dc",
                    "keyspace",
                    "value_size",
                    "reads_latest_of",
                ],
                &[NodeKind::Cassandra],
            ),
            _ => {
                self.unknown(
                    &spec.kind,
                    "workload kind",
                    &["http", "redis", "kafka", "cql"],
                );
                return None;
            }
        };
        let present = [
            ("path", spec.path.as_ref().map(|v| v.referenced)),
            ("tag_header", spec.tag_header.as_ref().map(|v| v.referenced)),
            ("command", spec.command.as_ref().map(|v| v.referenced)),
            ("keyspace", spec.keyspace.as_ref().map(|v| v.referenced)),
            ("value_size", spec.value_size.as_ref().map(|v| v.referenced)),
            ("sentinels", spec.sentinels.as_ref().map(|v| v.referenced)),
            ("topic", spec.topic.as_ref().map(|v| v.referenced)),
            ("acks", spec.acks.as_ref().map(|v| v.referenced)),
            ("retries", spec.retries.as_ref().map(|v| v.referenced)),
            (
                "retry_backoff",
                spec.retry_backoff.as_ref().map(|v| v.referenced),
            ),
            (
                "retry_backoff_max",
                spec.retry_backoff_max.as_ref().map(|v| v.referenced),
            ),
            (
                "delivery_timeout",
                spec.delivery_timeout.as_ref().map(|v| v.referenced),
            ),
            (
                "idempotence",
                spec.idempotence.as_ref().map(|v| v.referenced),
            ),
            ("linger", spec.linger.as_ref().map(|v| v.referenced)),
            ("op", spec.op.as_ref().map(|v| v.referenced)),
            (
                "consistency",
                spec.consistency.as_ref().map(|v| v.referenced),
            ),
            ("dc", spec.dc.as_ref().map(|v| v.referenced)),
            (
                "reads_latest_of",
                spec.reads_latest_of.as_ref().map(|v| v.referenced),
            ),
        ];
        self.misplaced(&present, allowed, &format!("`{kind}` workload"));
        let rate = self.unit(&spec.rate, "rate", parse_rate);
        let timeout = spec
            .timeout
            .as_ref()
            .and_then(|t| self.duration(t, "timeout"))
            .unwrap_or(DEFAULT_TIMEOUT);
        if timeout.is_zero() {
            self.diags.error(
                &spec.timeout.as_ref()?.referenced,
                "`timeout` must be above zero",
            );
        }
        let max_in_flight = spec
            .max_in_flight
            .as_ref()
            .map_or(DEFAULT_MAX_IN_FLIGHT, |m| m.value);
        if max_in_flight == 0 {
            self.diags.error(
                &spec.max_in_flight.as_ref()?.referenced,
                "`max_in_flight` must be at least 1",
            );
        }
        let node = self.node_of_kinds(&spec.target, wanted_node, topo)?;
        let kind = match kind {
            "http" => {
                let path = spec.path.as_ref().map_or("/", |p| p.value.as_str());
                if !path.starts_with('/') {
                    self.diags.error(
                        &spec.path.as_ref()?.referenced,
                        format!("`path` must start with `/`, got `{path}`"),
                    );
                }
                WorkloadKind::Http {
                    url_template: format!("http://{}{path}", node.socket()),
                    tag_header: spec.tag_header.as_ref().map(|h| h.value.clone()),
                }
            }
            "kafka" => self.kafka_workload(spec, timeout, topo)?,
            "cql" => self.cql_workload(spec, node, topo)?,
            _ => {
                let command = match spec.command.as_ref().map(|c| (c.value.as_str(), c)) {
                    None | Some(("get", _)) => RedisCommand::Get,
                    Some(("set", _)) => RedisCommand::Set,
                    Some(("set_get", _)) => RedisCommand::SetGet,
                    Some(("set_unique", _)) => RedisCommand::SetUnique,
                    Some((_, at)) => {
                        self.unknown(
                            at,
                            "redis command",
                            &["get", "set", "set_get", "set_unique"],
                        );
                        RedisCommand::Get
                    }
                };
                let sentinel = spec
                    .sentinels
                    .as_ref()
                    .and_then(|s| self.sentinel_target(s, node, topo));
                WorkloadKind::Redis {
                    addr: node.socket(),
                    command,
                    keyspace: spec.keyspace.as_ref().map_or(10_000, |k| k.value).max(1),
                    value_size: spec.value_size.as_ref().map_or(64, |v| v.value) as usize,
                    sentinel,
                }
            }
        };
        let plan = WorkloadPlan {
            name: spec.name.value.clone(),
            kind,
            rate_per_sec: rate?,
            duration: run,
            max_in_flight: max_in_flight as usize,
            op_timeout: timeout,
        };
        // The generator's own limits (rate, in-flight, value size), reported where the workload is.
        if let Err(error) = plan.validate() {
            self.diags.error(&spec.name.referenced, error.to_string());
        }
        Some(PlannedWorkload {
            target: node.name.clone(),
            plan,
        })
    }

    /// `sentinels: <group or node>`: every member a sentinel that monitors `primary`.
    fn sentinel_target(
        &mut self,
        sentinels: &At<String>,
        primary: &PlannedNode,
        topo: &Topology,
    ) -> Option<SentinelTarget> {
        let members = self.node_or_group(sentinels, topo)?;
        let mut addrs = Vec::new();
        for member in &members {
            let node = topo.node(member)?;
            if node.kind != NodeKind::Sentinel || node.monitors.as_deref() != Some(&primary.name) {
                self.diags.error_hint(
                    &sentinels.referenced,
                    format!("`{member}` is not a sentinel monitoring `{}`", primary.name),
                    format!(
                        "`sentinels` lists sentinel nodes with `monitors: {}`",
                        primary.name
                    ),
                );
                return None;
            }
            addrs.push(node.socket());
        }
        Some(SentinelTarget {
            master: primary.name.clone(),
            sentinels: addrs,
        })
    }

    // ---- faults ---------------------------------------------------------------------------

    pub(super) fn fault(
        &mut self,
        index: usize,
        spec: &FaultSpec,
        run: Duration,
        topo: &Topology,
    ) -> Option<PlannedFault> {
        const LINK: &[&str] = &[
            "latency",
            "bandwidth",
            "timeout",
            "reset_peer",
            "slicer",
            "link_down",
        ];
        const NODE: &[&str] = &["kill", "pause", "restart"];
        let kind = spec.kind.value.as_str();
        let allowed: &[&str] = match kind {
            "latency" => &["target", "stream", "toxicity", "latency", "jitter"],
            "bandwidth" => &["target", "stream", "toxicity", "rate_kb"],
            "timeout" | "reset_peer" => &["target", "stream", "toxicity", "after"],
            "slicer" => &["target", "stream", "toxicity", "slice_bytes", "slice_delay"],
            "link_down" | "kill" | "pause" | "restart" => &["target"],
            "partition" => &["between", "direction"],
            _ => {
                let all: Vec<&str> = LINK
                    .iter()
                    .chain(NODE)
                    .copied()
                    .chain(["partition"])
                    .collect();
                self.unknown(&spec.kind, "fault kind", &all);
                return None;
            }
        };
        let present = [
            ("target", spec.target.as_ref().map(|v| v.referenced)),
            ("between", spec.between.as_ref().map(|v| v.referenced)),
            ("direction", spec.direction.as_ref().map(|v| v.referenced)),
            ("stream", spec.stream.as_ref().map(|v| v.referenced)),
            ("toxicity", spec.toxicity.as_ref().map(|v| v.referenced)),
            ("latency", spec.latency.as_ref().map(|v| v.referenced)),
            ("jitter", spec.jitter.as_ref().map(|v| v.referenced)),
            ("rate_kb", spec.rate_kb.as_ref().map(|v| v.referenced)),
            ("after", spec.after.as_ref().map(|v| v.referenced)),
            (
                "slice_bytes",
                spec.slice_bytes.as_ref().map(|v| v.referenced),
            ),
            (
                "slice_delay",
                spec.slice_delay.as_ref().map(|v| v.referenced),
            ),
        ];
        self.misplaced(&present, allowed, &format!("`{kind}` fault"));
        let name = spec
            .name
            .as_ref()
            .map_or_else(|| format!("{kind}-{}", index + 1), |n| n.value.clone());
        let at = self.duration(&spec.at, "at");
        let lasts = match (&spec.lasts, kind) {
            (Some(lasts), "restart") => {
                self.diags.error_hint(
                    &lasts.referenced,
                    "a `restart` is instantaneous and takes no `for`",
                    "use `kill` with `for` to keep a node down for a while",
                );
                None
            }
            (Some(lasts), _) => {
                let d = self.duration(lasts, "for");
                if d == Some(Duration::ZERO) {
                    self.diags
                        .error(&lasts.referenced, "`for` must be above zero");
                }
                d
            }
            (None, "restart") => None,
            (None, _) => {
                self.diags.error_hint(
                    &spec.kind.referenced,
                    format!("`{kind}` fault `{name}` needs `for`"),
                    "say how long the fault lasts, e.g. `for: 30s`",
                );
                None
            }
        };
        if let Some(at) = at {
            let end = at + lasts.unwrap_or_default();
            if end >= run && !run.is_zero() {
                let where_ = spec
                    .lasts
                    .as_ref()
                    .map_or(spec.at.referenced, |l| l.referenced);
                self.diags.error_hint(
                    &where_,
                    format!(
                        "fault `{name}` ends at {} but the run lasts {}",
                        crate::units::format_duration(end),
                        crate::units::format_duration(run)
                    ),
                    "faults must be healed before the load ends, so recovery can be observed",
                );
            }
        }
        let (action, target) = if LINK.contains(&kind) {
            self.link_fault(kind, spec, topo)?
        } else if NODE.contains(&kind) {
            let target = self.require(&spec.target, &spec.kind.referenced, kind, "target")?;
            let (nodes, role) = match self.role_selector(target, topo) {
                Some(selector) => (Vec::new(), Some(selector?)),
                None => (self.node_or_group(target, topo)?, None),
            };
            let desc = target.value.clone();
            let action = match kind {
                "kill" => FaultAction::Kill { nodes, role },
                "pause" => FaultAction::Pause { nodes, role },
                _ => FaultAction::Restart { nodes, role },
            };
            (action, desc)
        } else {
            self.partition(spec, topo)?
        };
        Some(PlannedFault {
            name,
            kind: kind.to_string(),
            at: at?,
            lasts,
            target,
            action,
        })
    }

    /// `primary:<redis primary>` (the node Sentinel calls primary when the fault fires),
    /// `leader:<topic>/<partition>` and `controller` (Kafka). `None`: not a role target; `Some(None)`:
    /// a role target with a mistake, already reported.
    fn role_selector(
        &mut self,
        target: &At<String>,
        topo: &Topology,
    ) -> Option<Option<RoleSelector>> {
        let text = target.value.as_str();
        if let Some(master) = text.strip_prefix("primary:") {
            let sentinels: Vec<_> = topo
                .nodes
                .iter()
                .filter(|n| n.kind == NodeKind::Sentinel && n.monitors.as_deref() == Some(master))
                .map(|n| n.socket())
                .collect();
            if sentinels.is_empty() {
                self.diags.error_hint(
                    &target.referenced,
                    format!("no sentinel monitors `{master}`, so nothing says which node is its primary"),
                    "`primary:<node>` names the redis primary that `monitors:` of the sentinels names",
                );
                return Some(None);
            }
            let nodes = topo
                .nodes
                .iter()
                .filter(|n| n.name == master || n.replica_of.as_deref() == Some(master))
                .map(|n| (n.socket().to_string(), n.name.clone()))
                .collect();
            return Some(Some(RoleSelector::Primary {
                master: master.to_string(),
                sentinels,
                nodes,
            }));
        }
        if text.starts_with("leader:") || text.starts_with("followers:") || text == "controller" {
            return Some(self.kafka_role(target, topo));
        }
        None
    }

    /// The proxies (Toxiproxy names) of `link`: `a->b` itself, or `a->g` for a group `g`, every
    /// link from `a` to a member of `g` (all of them must exist).
    pub(super) fn link_fault(
        &mut self,
        kind: &str,
        spec: &FaultSpec,
        topo: &Topology,
    ) -> Option<(FaultAction, String)> {
        let target = self.require(&spec.target, &spec.kind.referenced, kind, "target")?;
        let link = target.value.replace(' ', "");
        let proxies = links_named(&link, topo);
        if proxies.is_empty() {
            let known: Vec<&str> = topo.proxies.iter().map(|p| p.link.as_str()).collect();
            self.diags.error_hint(
                &target.referenced,
                format!(
                    "no link `{}`: link faults target a `uses` link written `client->server`, \
                     or `client-><group>` for the load's links to a group of nodes",
                    target.value
                ),
                if known.is_empty() {
                    "no node `uses` another and `client_proxies` is empty, so there are no links"
                        .to_string()
                } else {
                    format!("links: {}", known.join(", "))
                },
            );
            return None;
        }
        if kind == "link_down" {
            return Some((FaultAction::LinkDown { proxies }, link));
        }
        let stream = match spec.stream.as_ref().map(|s| s.value.as_str()) {
            None | Some("downstream") => Stream::Downstream,
            Some("upstream") => Stream::Upstream,
            Some(_) => {
                self.unknown(spec.stream.as_ref()?, "stream", &["downstream", "upstream"]);
                Stream::Downstream
            }
        };
        let toxicity = spec
            .toxicity
            .as_ref()
            .map_or(Some(100.0), |t| self.unit(t, "toxicity", parse_percent))?
            / 100.0;
        let at = spec.kind.referenced;
        let ms = |d: Duration| d.as_millis() as u64;
        let toxic = match kind {
            "latency" => ToxicSpec::Latency {
                latency_ms: {
                    let latency = self.require(&spec.latency, &at, kind, "latency")?;
                    ms(self.duration(latency, "latency")?)
                },
                jitter_ms: ms(spec
                    .jitter
                    .as_ref()
                    .map_or(Some(Duration::ZERO), |j| self.duration(j, "jitter"))?),
            },
            "bandwidth" => ToxicSpec::Bandwidth {
                rate_kb_per_s: self.require(&spec.rate_kb, &at, kind, "rate_kb")?.value,
            },
            "timeout" => ToxicSpec::Timeout {
                timeout_ms: ms(spec
                    .after
                    .as_ref()
                    .map_or(Some(Duration::ZERO), |a| self.duration(a, "after"))?),
            },
            "reset_peer" => ToxicSpec::ResetPeer {
                timeout_ms: ms(spec
                    .after
                    .as_ref()
                    .map_or(Some(Duration::ZERO), |a| self.duration(a, "after"))?),
            },
            _ => ToxicSpec::Slicer {
                average_size: self
                    .require(&spec.slice_bytes, &at, kind, "slice_bytes")?
                    .value
                    .max(1),
                size_variation: 0,
                delay_us: spec
                    .slice_delay
                    .as_ref()
                    .map_or(Some(Duration::ZERO), |d| self.duration(d, "slice_delay"))?
                    .as_micros() as u64,
            },
        };
        let desc = format!(
            "{link} ({}, {}%)",
            stream.as_str(),
            (toxicity * 100.0).round()
        );
        Some((
            FaultAction::Toxic {
                proxies,
                spec: toxic,
                stream,
                toxicity,
            },
            desc,
        ))
    }

    pub(super) fn partition(
        &mut self,
        spec: &FaultSpec,
        topo: &Topology,
    ) -> Option<(FaultAction, String)> {
        let between = self.require(&spec.between, &spec.kind.referenced, "partition", "between")?;
        if between.value.len() != 2 {
            self.diags.error(
                &between.referenced,
                format!(
                    "`between` takes exactly two sides, got {}",
                    between.value.len()
                ),
            );
            return None;
        }
        let a = self.node_or_group(&between.value[0], topo);
        let b = self.node_or_group(&between.value[1], topo);
        let one_way = match spec.direction.as_ref().map(|d| d.value.as_str()) {
            None | Some("both") => false,
            Some("one-way") => true,
            Some(_) => {
                self.unknown(spec.direction.as_ref()?, "direction", &["both", "one-way"]);
                false
            }
        };
        let (a, b) = (a?, b?);
        if a.iter().any(|n| b.contains(n)) {
            self.diags.error(
                &between.referenced,
                "the two sides of a partition share a node",
            );
        }
        let desc = format!(
            "{} {} {}",
            between.value[0].value,
            if one_way { "-/->" } else { "<-/->" },
            between.value[1].value
        );
        // Nodes that source their connections from their own address (Redis and Sentinel with
        // `bind-source-addr`, Kafka and Cassandra through the preloaded shim) are cut by their
        // addresses directly: exactly the traffic between the two sides.
        let addressable = |side: &[String]| {
            side.iter().all(|n| {
                topo.node(n).is_some_and(|n| {
                    matches!(
                        n.kind,
                        NodeKind::Redis
                            | NodeKind::Sentinel
                            | NodeKind::Kafka
                            | NodeKind::Cassandra
                    )
                })
            })
        };
        if addressable(&a) && addressable(&b) {
            let addrs = |side: &[String]| -> Vec<Ipv4Addr> {
                side.iter()
                    .filter_map(|n| topo.node(n))
                    .map(|n| n.addr)
                    .collect()
            };
            return Some((
                FaultAction::Partition {
                    a: addrs(&a),
                    b: addrs(&b),
                    direction: if one_way {
                        Direction::OneWay
                    } else {
                        Direction::Both
                    },
                },
                desc,
            ));
        }
        // Services reach nodes through their own proxy listeners, and on the lab's shared
        // loopback every such client socket's source is 127.0.0.1; so a partition cuts the links'
        // proxy addresses (exact: only that client uses that proxy), not node source addresses.
        let links = |from: &[String], to: &[String]| -> Vec<Ipv4Addr> {
            topo.proxies
                .iter()
                .filter(|p| {
                    p.link.split_once("->").is_some_and(|(c, s)| {
                        from.iter().any(|n| n == c) && to.iter().any(|n| n == s)
                    })
                })
                .filter_map(|p| match p.listen.ip() {
                    std::net::IpAddr::V4(ip) => Some(ip),
                    std::net::IpAddr::V6(_) => None,
                })
                .collect()
        };
        let mut cut = links(&a, &b);
        if !one_way {
            cut.extend(links(&b, &a));
        }
        if cut.is_empty() {
            self.diags.error_hint(
                &between.referenced,
                "no `uses` link crosses this partition",
                "a partition cuts the links (through their proxies) from one side to the other",
            );
        }
        let loopback_source = vec![Ipv4Addr::LOCALHOST];
        Some((
            FaultAction::Partition {
                a: loopback_source,
                b: cut,
                direction: Direction::OneWay,
            },
            desc,
        ))
    }
}

/// See `Resolver::link_fault`; empty when the link (or one of a group's links) does not exist.
fn links_named(link: &str, topo: &Topology) -> Vec<String> {
    if let Some(p) = topo.proxies.iter().find(|p| p.link == link) {
        return vec![p.name.clone()];
    }
    let Some((client, group)) = link.split_once("->") else {
        return Vec::new();
    };
    let Some(members) = topo.groups.get(group) else {
        return Vec::new();
    };
    let names: Vec<String> = members
        .iter()
        .filter_map(|m| {
            let one = format!("{client}->{m}");
            topo.proxies
                .iter()
                .find(|p| p.link == one)
                .map(|p| p.name.clone())
        })
        .collect();
    if names.len() == members.len() {
        names
    } else {
        Vec::new()
    }
}
