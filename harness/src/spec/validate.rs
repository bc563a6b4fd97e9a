//! Semantic checks of a parsed experiment, resolving it into a [`Plan`] while collecting every
//! problem (unknown kinds, dangling references, misplaced fields, bad units, faults past the end).

use serde_saphyr::Location;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use super::parse::{decode, parse_str};
use super::{
    AssertionSpec, At, BreakerDocSpec, Diagnostic, Diagnostics, ExperimentFile, FaultSpec, Scalar,
    WorkloadSpec,
};
use crate::catalogue;
use crate::faults::FaultAction;
use crate::lab::Direction;
use crate::load::{RedisCommand, WorkloadKind, WorkloadPlan};
use crate::plan::*;
use crate::toxiproxy::{Stream, ToxicSpec};
use crate::units::{parse_duration, parse_percent, parse_rate};

/// Reads, parses and validates one experiment file.
pub fn load_file(path: &Path) -> Result<Plan, Vec<Diagnostic>> {
    let label = path.display().to_string();
    let mut diags = Diagnostics::new(&label);
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) => {
            diags.error_whole_file(format!("cannot read the file: {error}"), None);
            return Err(diags.into_sorted());
        }
    };
    let Some(source) = decode(&bytes, &mut diags) else {
        return Err(diags.into_sorted());
    };
    validate_str(&label, &source)
}

/// Parses and validates experiment text; `label` names it in messages.
pub fn validate_str(label: &str, source: &str) -> Result<Plan, Vec<Diagnostic>> {
    let mut diags = Diagnostics::new(label);
    let Some(file) = parse_str(source, &mut diags) else {
        return Err(diags.into_sorted());
    };
    let plan = Resolver { diags: &mut diags }.resolve(label, file);
    if diags.is_empty() {
        Ok(plan)
    } else {
        Err(diags.into_sorted())
    }
}

struct Resolver<'a> {
    diags: &'a mut Diagnostics,
}

/// Default per-operation timeout of workloads.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_MAX_IN_FLIGHT: u64 = 256;

impl Resolver<'_> {
    fn resolve(&mut self, label: &str, file: ExperimentFile) -> Plan {
        if file.name.value.trim().is_empty() {
            self.diags.error(&file.name.referenced, "`name` is empty");
        }
        if file.verifies.is_empty() {
            self.diags.error_hint(
                &file.name.referenced,
                "`verifies` lists no catalogue id",
                "name the rows of shared/seeds/CATALOGUE.md this experiment holds a system to",
            );
        }
        for id in &file.verifies {
            if !catalogue::contains(&id.value) {
                let hint = match catalogue::closest(&id.value) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None => "ids are listed in shared/seeds/CATALOGUE.md".into(),
                };
                self.diags.error_hint(
                    &id.referenced,
                    format!("unknown catalogue id `{}`", id.value),
                    hint,
                );
            }
        }
        let duration = self
            .duration(&file.load.duration, "load duration")
            .unwrap_or_default();
        if duration.is_zero() && self.diags.is_empty() {
            self.diags.error(
                &file.load.duration.referenced,
                "the run's duration must be above zero",
            );
        }

        let (nodes, groups, proxies) = self.topology(&file);
        let topo = Topology {
            nodes: &nodes,
            groups: &groups,
            proxies: &proxies,
        };

        let mut workloads = Vec::new();
        let mut names = BTreeSet::new();
        for spec in &file.load.workloads {
            if !names.insert(spec.name.value.clone()) {
                self.diags.error(
                    &spec.name.referenced,
                    format!("workload `{}` is defined twice", spec.name.value),
                );
            }
            if let Some(w) = self.workload(spec, duration, &topo) {
                workloads.push(w);
            }
        }
        if file.load.workloads.is_empty() {
            self.diags.error(
                &file.load.duration.referenced,
                "`load.workloads` is empty: an experiment needs traffic",
            );
        }

        let mut faults = Vec::new();
        for (index, spec) in file.faults.iter().enumerate() {
            if let Some(f) = self.fault(index, spec, duration, &topo) {
                faults.push(f);
            }
        }

        let mut assertions = Vec::new();
        for spec in &file.assertions {
            if let Some(a) = self.assertion(spec, &topo, &names) {
                assertions.push(a);
            }
        }
        if file.assertions.is_empty() {
            self.diags.error(
                &file.name.referenced,
                "`assertions` is empty: an experiment must judge something",
            );
        }

        Plan {
            name: file.name.value,
            file: label.to_string(),
            description: file.description,
            verifies: file.verifies.into_iter().map(|id| id.value).collect(),
            duration,
            nodes,
            groups,
            proxies,
            workloads,
            faults,
            assertions,
        }
    }

    // ---- topology -------------------------------------------------------------------------

    fn topology(
        &mut self,
        file: &ExperimentFile,
    ) -> (
        Vec<PlannedNode>,
        BTreeMap<String, Vec<String>>,
        Vec<PlannedProxy>,
    ) {
        let mut kinds: BTreeMap<String, NodeKind> = BTreeMap::new();
        for node in &file.topology.nodes {
            self.identifier(&node.name, "node");
            let kind = NodeKind::ALL
                .iter()
                .find(|(name, _)| *name == node.kind.value)
                .map(|(_, k)| *k);
            match kind {
                Some(kind) => {
                    if kinds.insert(node.name.value.clone(), kind).is_some() {
                        self.diags.error(
                            &node.name.referenced,
                            format!("node `{}` is defined twice", node.name.value),
                        );
                    }
                }
                None => self.unknown(
                    &node.kind,
                    "node kind",
                    &NodeKind::ALL.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
                ),
            }
        }
        if file.topology.nodes.is_empty() {
            self.diags
                .error_whole_file("`topology.nodes` is empty", None);
        }

        // Groups: members must exist; names must not shadow nodes (targets may be either).
        let mut groups = BTreeMap::new();
        for (group, members) in &file.topology.groups {
            if kinds.contains_key(group) {
                self.diags.error(
                    &members.referenced,
                    format!("group `{group}` has the name of a node"),
                );
            }
            let mut resolved = Vec::new();
            for member in &members.value {
                if kinds.contains_key(&member.value) {
                    resolved.push(member.value.clone());
                } else {
                    self.dangling(&member.referenced, "node", &member.value, kinds.keys());
                }
            }
            groups.insert(group.clone(), resolved);
        }

        // Addresses: a node's first group is its address block (127.0.<block>.<n>); ungrouped
        // nodes get a block each. Blocks 249/250 are reserved for Toxiproxy.
        let mut block_of_group: BTreeMap<&str, (u8, u8)> = BTreeMap::new();
        let mut next_block: u8 = 1;
        let mut addrs: BTreeMap<String, Ipv4Addr> = BTreeMap::new();
        for node in &file.topology.nodes {
            if !kinds.contains_key(&node.name.value) || addrs.contains_key(&node.name.value) {
                continue;
            }
            let first_group = groups
                .iter()
                .find(|(_, m)| m.contains(&node.name.value))
                .map(|(g, _)| g.as_str());
            let (block, host) = match first_group {
                Some(group) => {
                    let entry = block_of_group.entry(group).or_insert_with(|| {
                        let block = next_block;
                        next_block = next_block.saturating_add(1);
                        (block, 0)
                    });
                    entry.1 += 1;
                    *entry
                }
                None => {
                    let block = next_block;
                    next_block = next_block.saturating_add(1);
                    (block, 1)
                }
            };
            if block >= 249 {
                self.diags.error(
                    &node.name.referenced,
                    "too many nodes: the lab has room for 248 address blocks",
                );
            }
            addrs.insert(node.name.value.clone(), Ipv4Addr::new(127, 0, block, host));
        }

        // Links through Toxiproxy, and each node's final configuration.
        let mut proxies = Vec::new();
        let mut nodes = Vec::new();
        for node in &file.topology.nodes {
            let Some(&kind) = kinds.get(&node.name.value) else {
                continue;
            };
            let Some(&addr) = addrs.get(&node.name.value) else {
                continue;
            };
            let mut role_urls: BTreeMap<String, SocketAddr> = BTreeMap::new();
            for (role, used) in &node.uses {
                let Some(&used_kind) = kinds.get(&used.value) else {
                    self.dangling(&used.referenced, "node", &used.value, kinds.keys());
                    continue;
                };
                match kind.required_uses().iter().find(|(r, _)| r == role) {
                    None => {
                        let roles: Vec<&str> =
                            kind.required_uses().iter().map(|(r, _)| *r).collect();
                        self.diags.error_hint(
                            &used.referenced,
                            format!("a `{}` node takes no `{role}` in `uses`", kind.name()),
                            if roles.is_empty() {
                                "this kind uses no other node".to_string()
                            } else {
                                format!("it takes: {}", roles.join(", "))
                            },
                        );
                        continue;
                    }
                    Some((_, wanted)) if *wanted != used_kind => {
                        self.diags.error(
                            &used.referenced,
                            format!(
                                "`{role}` must be a `{}` node, but `{}` is a `{}`",
                                wanted.name(),
                                used.value,
                                used_kind.name()
                            ),
                        );
                        continue;
                    }
                    Some(_) => {}
                }
                let index = proxies.len() as u8 + 1;
                let upstream = SocketAddr::new(addrs[&used.value].into(), used_kind.port());
                let listen =
                    SocketAddr::new(Ipv4Addr::new(127, 0, 250, index).into(), used_kind.port());
                proxies.push(PlannedProxy {
                    link: format!("{}->{}", node.name.value, used.value),
                    name: format!("{}_to_{}", node.name.value, used.value),
                    listen,
                    upstream,
                });
                role_urls.insert(role.clone(), listen);
            }
            for (role, _) in kind.required_uses() {
                if !node.uses.contains_key(*role) {
                    self.diags.error_hint(
                        &node.name.referenced,
                        format!(
                            "`{}` node `{}` needs `uses.{role}`",
                            kind.name(),
                            node.name.value
                        ),
                        format!("add `uses: {{ {role}: <node> }}`"),
                    );
                }
            }
            let config = self.node_config(kind, node.config.as_ref(), &role_urls);
            nodes.push(PlannedNode {
                name: node.name.value.clone(),
                kind,
                addr,
                port: kind.port(),
                config,
            });
        }
        (nodes, groups, proxies)
    }

    /// Validates a node's `config` against the type its kind takes, and fills in addresses.
    fn node_config(
        &mut self,
        kind: NodeKind,
        config: Option<&At<serde_json::Value>>,
        uses: &BTreeMap<String, SocketAddr>,
    ) -> serde_json::Value {
        let at = config.map(|c| c.referenced);
        let mut value = config
            .map(|c| c.value.clone())
            .unwrap_or(serde_json::json!({}));
        if value.is_null() {
            value = serde_json::json!({});
        }
        let Some(object) = value.as_object_mut() else {
            if let Some(at) = at {
                self.diags.error(&at, "`config` must be a mapping");
            }
            return serde_json::Value::Null;
        };
        let result = match kind {
            NodeKind::Playback => {
                for field in ["redis", "recommendations_url"] {
                    if object.contains_key(field) {
                        if let Some(at) = at {
                            self.diags.error_hint(
                                &at,
                                format!("`config.{field}` is set by the harness"),
                                "remove it: `uses` decides where the service connects",
                            );
                        }
                    }
                }
                let redis = uses
                    .get("redis")
                    .map_or("127.0.0.1:1".to_string(), |a| a.to_string());
                let recs = uses
                    .get("recommendations")
                    .map_or("http://127.0.0.1:1".to_string(), |a| format!("http://{a}"));
                object.insert("redis".into(), redis.into());
                object.insert("recommendations_url".into(), recs.into());
                check_config::<faultline_targets::config::PlaybackConfig>(&value)
                    .and_then(|config| config.validate())
            }
            NodeKind::Recommendations => {
                check_config::<faultline_targets::config::RecommendationsConfig>(&value).map(|_| ())
            }
            NodeKind::Redis => {
                // Redis options pass through as `--key value`; only scalars make sense there.
                match object.iter().find(|(_, v)| v.is_object() || v.is_array()) {
                    Some((key, _)) => Err(format!("redis option `{key}` must be a scalar")),
                    None => Ok(()),
                }
            }
        };
        if let (Err(message), Some(at)) = (result, at) {
            self.diags.error_hint(
                &at,
                format!("invalid `config` for a `{}` node: {message}", kind.name()),
                "see docs/experiment-reference.md, section \"Service configuration\"",
            );
        }
        value
    }

    // ---- load -----------------------------------------------------------------------------

    fn workload(
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
            "redis" => (&["command", "keyspace", "value_size"], &[NodeKind::Redis]),
            _ => {
                self.unknown(&spec.kind, "workload kind", &["http", "redis"]);
                return None;
            }
        };
        let present = [
            ("path", spec.path.as_ref().map(|v| v.referenced)),
            ("tag_header", spec.tag_header.as_ref().map(|v| v.referenced)),
            ("command", spec.command.as_ref().map(|v| v.referenced)),
            ("keyspace", spec.keyspace.as_ref().map(|v| v.referenced)),
            ("value_size", spec.value_size.as_ref().map(|v| v.referenced)),
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
            _ => {
                let command = match spec.command.as_ref().map(|c| (c.value.as_str(), c)) {
                    None | Some(("get", _)) => RedisCommand::Get,
                    Some(("set", _)) => RedisCommand::Set,
                    Some(("set_get", _)) => RedisCommand::SetGet,
                    Some((_, at)) => {
                        self.unknown(at, "redis command", &["get", "set", "set_get"]);
                        RedisCommand::Get
                    }
                };
                WorkloadKind::Redis {
                    addr: node.socket(),
                    command,
                    keyspace: spec.keyspace.as_ref().map_or(10_000, |k| k.value).max(1),
                    value_size: spec.value_size.as_ref().map_or(64, |v| v.value) as usize,
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

    // ---- faults ---------------------------------------------------------------------------

    fn fault(
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
            let nodes = self.node_or_group(target, topo)?;
            let desc = target.value.clone();
            let action = match kind {
                "kill" => FaultAction::Kill { nodes },
                "pause" => FaultAction::Pause { nodes },
                _ => FaultAction::Restart { nodes },
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

    fn link_fault(
        &mut self,
        kind: &str,
        spec: &FaultSpec,
        topo: &Topology,
    ) -> Option<(FaultAction, String)> {
        let target = self.require(&spec.target, &spec.kind.referenced, kind, "target")?;
        let link = target.value.replace(' ', "");
        let Some(proxy) = topo.proxies.iter().find(|p| p.link == link) else {
            let known: Vec<&str> = topo.proxies.iter().map(|p| p.link.as_str()).collect();
            self.diags.error_hint(
                &target.referenced,
                format!(
                    "no link `{}`: link faults target a `uses` link written `client->server`",
                    target.value
                ),
                if known.is_empty() {
                    "no node `uses` another, so there are no links".to_string()
                } else {
                    format!("links: {}", known.join(", "))
                },
            );
            return None;
        };
        if kind == "link_down" {
            return Some((
                FaultAction::LinkDown {
                    proxy: proxy.name.clone(),
                },
                link,
            ));
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
                proxy: proxy.name.clone(),
                spec: toxic,
                stream,
                toxicity,
            },
            desc,
        ))
    }

    fn partition(&mut self, spec: &FaultSpec, topo: &Topology) -> Option<(FaultAction, String)> {
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
        // Every node-to-node link goes through its own proxy listener, and on the lab's shared
        // loopback every client socket's source is 127.0.0.1; so a partition cuts the links'
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
        let desc = format!(
            "{} {} {}",
            between.value[0].value,
            if one_way { "-/->" } else { "<-/->" },
            between.value[1].value
        );
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

    // ---- assertions -----------------------------------------------------------------------

    fn assertion(
        &mut self,
        spec: &AssertionSpec,
        topo: &Topology,
        workloads: &BTreeSet<String>,
    ) -> Option<Assertion> {
        let kind = spec.kind.value.as_str();
        let allowed: &[&str] = match kind {
            "breaker" => &[
                "service",
                "breaker",
                "downstream",
                "workload",
                "documented",
                "tolerance",
            ],
            "fallback" => &["service", "breaker", "workload"],
            "slo" => &["workload", "phase", "max_error_rate", "max_p99", "max_p50"],
            _ => {
                self.unknown(
                    &spec.kind,
                    "assertion kind",
                    &["breaker", "fallback", "slo"],
                );
                return None;
            }
        };
        let present = [
            ("service", spec.service.as_ref().map(|v| v.referenced)),
            ("breaker", spec.breaker.as_ref().map(|v| v.referenced)),
            ("downstream", spec.downstream.as_ref().map(|v| v.referenced)),
            ("workload", spec.workload.as_ref().map(|v| v.referenced)),
            (
                "documented",
                spec.documented.as_ref().map(|v| v.open_for.referenced),
            ),
            ("tolerance", spec.tolerance.as_ref().map(|v| v.referenced)),
            ("phase", spec.phase.as_ref().map(|v| v.referenced)),
            (
                "max_error_rate",
                spec.max_error_rate.as_ref().map(|v| v.referenced),
            ),
            ("max_p99", spec.max_p99.as_ref().map(|v| v.referenced)),
            ("max_p50", spec.max_p50.as_ref().map(|v| v.referenced)),
        ];
        self.misplaced(&present, allowed, &format!("`{kind}` assertion"));
        let at = spec.kind.referenced;
        let workload = self
            .require(&spec.workload, &at, kind, "workload")
            .and_then(|w| {
                if workloads.contains(&w.value) {
                    Some(w.value.clone())
                } else {
                    self.dangling(&w.referenced, "workload", &w.value, workloads.iter());
                    None
                }
            });
        match kind {
            "slo" => {
                let phase = match spec.phase.as_ref().map(|p| p.value.as_str()) {
                    None | Some("all") => PhaseSel::All,
                    Some("before") => PhaseSel::Before,
                    Some("during") => PhaseSel::During,
                    Some("after") => PhaseSel::After,
                    Some(_) => {
                        self.unknown(
                            spec.phase.as_ref()?,
                            "phase",
                            &["before", "during", "after", "all"],
                        );
                        PhaseSel::All
                    }
                };
                let max_error_rate = match &spec.max_error_rate {
                    Some(r) => Some(self.unit(r, "max_error_rate", parse_percent)?),
                    None => None,
                };
                let max_p99 = match &spec.max_p99 {
                    Some(d) => Some(self.duration(d, "max_p99")?),
                    None => None,
                };
                let max_p50 = match &spec.max_p50 {
                    Some(d) => Some(self.duration(d, "max_p50")?),
                    None => None,
                };
                if max_error_rate.is_none() && max_p99.is_none() && max_p50.is_none() {
                    self.diags.error_hint(
                        &at,
                        "this `slo` sets no limit",
                        "give `max_error_rate`, `max_p99` or `max_p50`",
                    );
                }
                let workload = workload?;
                let name = spec.name.as_ref().map_or_else(
                    || format!("slo/{workload}/{}", phase.name()),
                    |n| n.value.clone(),
                );
                Some(Assertion::Slo(SloAssertion {
                    name,
                    workload,
                    phase,
                    max_error_rate,
                    max_p99,
                    max_p50,
                }))
            }
            _ => {
                let service = self
                    .require(&spec.service, &at, kind, "service")
                    .and_then(|s| {
                        self.node_of_kinds(s, &[NodeKind::Playback], topo)
                            .map(|n| n.name.clone())
                    });
                let breaker = self
                    .require(&spec.breaker, &at, kind, "breaker")
                    .map(|b| b.value.clone());
                if kind == "fallback" {
                    let (service, breaker, workload) = (service?, breaker?, workload?);
                    let name = spec.name.as_ref().map_or_else(
                        || format!("fallback/{service}/{breaker}"),
                        |n| n.value.clone(),
                    );
                    return Some(Assertion::Fallback(FallbackAssertion {
                        name,
                        service,
                        breaker,
                        workload,
                    }));
                }
                let downstream = self
                    .require(&spec.downstream, &at, kind, "downstream")
                    .and_then(|d| {
                        self.node_of_kinds(d, &[NodeKind::Recommendations], topo)
                            .map(|n| n.name.clone())
                    });
                let documented = match &spec.documented {
                    Some(doc) => self.breaker_doc(doc),
                    None => {
                        self.diags.error_hint(&at, "a `breaker` assertion needs `documented`", "state the catalogue's numbers: failure_rate_above, window, open_for, half_open_calls, close_after_successes");
                        None
                    }
                };
                let tolerance = spec
                    .tolerance
                    .as_ref()
                    .map_or(Some(Duration::from_secs(1)), |t| {
                        self.duration(t, "tolerance")
                    });
                let (service, breaker, downstream, workload) =
                    (service?, breaker?, downstream?, workload?);
                let name = spec.name.as_ref().map_or_else(
                    || format!("breaker/{service}/{breaker}"),
                    |n| n.value.clone(),
                );
                Some(Assertion::Breaker(BreakerAssertion {
                    name,
                    service,
                    breaker,
                    downstream,
                    workload,
                    documented: documented?,
                    tolerance: tolerance?,
                }))
            }
        }
    }

    fn breaker_doc(&mut self, doc: &BreakerDocSpec) -> Option<BreakerDoc> {
        let failure_rate_above =
            self.unit(&doc.failure_rate_above, "failure_rate_above", parse_percent);
        let window = match (&doc.window, &doc.window_calls) {
            (Some(w), None) => self.duration(w, "window").map(BreakerWindow::Time),
            (None, Some(n)) if n.value > 0 => Some(BreakerWindow::Calls(n.value)),
            (None, Some(n)) => {
                self.diags
                    .error(&n.referenced, "`window_calls` must be at least 1");
                None
            }
            (Some(w), Some(_)) => {
                self.diags.error(
                    &w.referenced,
                    "give either `window` (time) or `window_calls` (count), not both",
                );
                None
            }
            (None, None) => {
                self.diags.error_hint(
                    &doc.open_for.referenced,
                    "`documented` needs a window",
                    "`window: 10s` or `window_calls: 100`",
                );
                None
            }
        };
        let open_for = self.duration(&doc.open_for, "open_for");
        for (value, field) in [
            (&doc.half_open_calls, "half_open_calls"),
            (&doc.close_after_successes, "close_after_successes"),
        ] {
            if value.value == 0 {
                self.diags
                    .error(&value.referenced, format!("`{field}` must be at least 1"));
            }
        }
        if doc.close_after_successes.value > doc.half_open_calls.value {
            self.diags.error(&doc.close_after_successes.referenced, "`close_after_successes` cannot exceed `half_open_calls`: the breaker could never close");
        }
        Some(BreakerDoc {
            failure_rate_above: failure_rate_above?,
            window: window?,
            minimum_calls: doc.minimum_calls.as_ref().map_or(1, |m| m.value),
            minimum_failures: doc.minimum_failures.as_ref().map_or(0, |m| m.value),
            open_for: open_for?,
            half_open_calls: doc.half_open_calls.value,
            close_after_successes: doc.close_after_successes.value,
        })
    }

    // ---- helpers --------------------------------------------------------------------------

    fn duration(&mut self, value: &At<Scalar>, field: &str) -> Option<Duration> {
        self.unit(value, field, parse_duration)
    }

    fn unit<T>(
        &mut self,
        value: &At<Scalar>,
        field: &str,
        parse: fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        match parse(&value.value.0) {
            Ok(parsed) => Some(parsed),
            Err(message) => {
                self.diags
                    .error(&value.referenced, format!("`{field}`: {message}"));
                None
            }
        }
    }

    fn require<'s, T>(
        &mut self,
        value: &'s Option<At<T>>,
        at: &Location,
        kind: &str,
        field: &str,
    ) -> Option<&'s At<T>> {
        if value.is_none() {
            self.diags.error(at, format!("`{kind}` needs `{field}`"));
        }
        value.as_ref()
    }

    /// Reports every optional field that is set but does not apply to this kind.
    fn misplaced(&mut self, present: &[(&str, Option<Location>)], allowed: &[&str], what: &str) {
        for (field, at) in present {
            if let Some(at) = at {
                if !allowed.contains(field) {
                    self.diags.error_hint(
                        at,
                        format!("`{field}` does not apply to a {what}"),
                        format!("it takes: {}", allowed.join(", ")),
                    );
                }
            }
        }
    }

    fn unknown(&mut self, value: &At<String>, what: &str, known: &[&str]) {
        self.diags.error_hint(
            &value.referenced,
            format!("unknown {what} `{}`", value.value),
            format!("known: {}", known.join(", ")),
        );
    }

    fn dangling<'k>(
        &mut self,
        at: &Location,
        what: &str,
        name: &str,
        known: impl Iterator<Item = &'k String>,
    ) {
        let known: Vec<&str> = known.map(String::as_str).collect();
        self.diags.error_hint(
            at,
            format!("no {what} named `{name}`"),
            format!("defined: {}", known.join(", ")),
        );
    }

    fn identifier(&mut self, name: &At<String>, what: &str) {
        let ok = !name.value.is_empty()
            && name.value.len() <= 48
            && name
                .value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            self.diags.error_hint(
                &name.referenced,
                format!("{what} name `{}` is not a simple name", name.value),
                "use letters, digits, `-` and `_` (at most 48)",
            );
        }
    }

    fn node_of_kinds<'t>(
        &mut self,
        name: &At<String>,
        kinds: &[NodeKind],
        topo: &Topology<'t>,
    ) -> Option<&'t PlannedNode> {
        let Some(node) = topo.node(&name.value) else {
            self.dangling(
                &name.referenced,
                "node",
                &name.value,
                topo.nodes.iter().map(|n| &n.name),
            );
            return None;
        };
        if !kinds.contains(&node.kind) {
            let wanted: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
            self.diags.error(
                &name.referenced,
                format!(
                    "`{}` is a `{}` node; this needs a {} node",
                    name.value,
                    node.kind.name(),
                    wanted.join(" or ")
                ),
            );
            return None;
        }
        Some(node)
    }

    fn node_or_group(&mut self, name: &At<String>, topo: &Topology) -> Option<Vec<String>> {
        if let Some(members) = topo.groups.get(&name.value) {
            return Some(members.clone());
        }
        if topo.node(&name.value).is_some() {
            return Some(vec![name.value.clone()]);
        }
        let known = topo.nodes.iter().map(|n| &n.name).chain(topo.groups.keys());
        self.dangling(&name.referenced, "node or group", &name.value, known);
        None
    }
}

struct Topology<'a> {
    nodes: &'a [PlannedNode],
    groups: &'a BTreeMap<String, Vec<String>>,
    proxies: &'a [PlannedProxy],
}

impl<'a> Topology<'a> {
    fn node(&self, name: &str) -> Option<&'a PlannedNode> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

/// Deserializes a service config into the type the service itself parses, for early errors.
fn check_config<T: serde::de::DeserializeOwned>(value: &serde_json::Value) -> Result<T, String> {
    serde_json::from_value::<T>(value.clone()).map_err(|e| e.to_string())
}
