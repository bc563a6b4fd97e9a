//! Validation of `topology`: nodes, kinds, groups, address blocks, `uses` links (proxies) and
//! each node's configuration, checked with the services' own types.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use super::Resolver;
use crate::plan::*;
use crate::spec::{At, ExperimentFile};

impl Resolver<'_> {
    // ---- topology -------------------------------------------------------------------------

    pub(super) fn topology(
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
                None => {
                    self.reported.insert(node.name.value.clone());
                    self.unknown(
                        &node.kind,
                        "node kind",
                        &NodeKind::ALL.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
                    )
                }
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
            let replica_of = self.follows(
                node.replica_of.as_ref(),
                "replica_of",
                kind,
                NodeKind::Redis,
                &kinds,
                &file.topology.nodes,
            );
            let monitors = self.follows(
                node.monitors.as_ref(),
                "monitors",
                kind,
                NodeKind::Sentinel,
                &kinds,
                &file.topology.nodes,
            );
            let mut config = self.node_config(kind, node.config.as_ref(), &role_urls);
            if kind == NodeKind::Sentinel {
                let watchers = file
                    .topology
                    .nodes
                    .iter()
                    .filter(|n| n.monitors.as_ref().map(|m| &m.value) == monitors.as_ref())
                    .count() as u64;
                config = self.sentinel_config(node, &config, watchers);
            }
            let dc = self.datacenter(node, kind);
            nodes.push(PlannedNode {
                name: node.name.value.clone(),
                kind,
                addr,
                port: kind.port(),
                config,
                replica_of,
                monitors,
                dc,
            });
        }
        self.client_proxies(file, &nodes, &groups, &mut proxies);
        (nodes, groups, proxies)
    }

    /// `client_proxies`: one proxy per listed node (or group member) between the load and the
    /// node, link `client-><node>`. Only clients that can be told to use a proxy qualify: CQL
    /// (address translation) and Kafka (advertised listeners).
    fn client_proxies(
        &mut self,
        file: &ExperimentFile,
        nodes: &[PlannedNode],
        groups: &BTreeMap<String, Vec<String>>,
        proxies: &mut Vec<PlannedProxy>,
    ) {
        let Some(listed) = &file.topology.client_proxies else {
            return;
        };
        for name in &listed.value {
            let members = match groups.get(&name.value) {
                Some(members) => members.clone(),
                None => vec![name.value.clone()],
            };
            for member in members {
                let Some(node) = nodes.iter().find(|n| n.name == member) else {
                    let known = nodes.iter().map(|n| &n.name).chain(groups.keys());
                    self.dangling(&name.referenced, "node or group", &name.value, known);
                    break;
                };
                if !matches!(node.kind, NodeKind::Cassandra | NodeKind::Kafka) {
                    self.diags.error_hint(
                        &name.referenced,
                        format!(
                            "`{}` is a `{}` node: client proxies are for `cassandra` and `kafka` nodes",
                            node.name,
                            node.kind.name()
                        ),
                        "services reach each other through proxies by `uses`",
                    );
                    break;
                }
                let link = format!("client->{}", node.name);
                if proxies.iter().any(|p| p.link == link) {
                    continue;
                }
                let index = proxies.len() as u8 + 1;
                proxies.push(PlannedProxy {
                    link,
                    name: format!("client_to_{}", node.name),
                    listen: SocketAddr::new(Ipv4Addr::new(127, 0, 250, index).into(), node.port),
                    upstream: node.socket(),
                });
            }
        }
    }

    /// `dc` and `rack`: required on cassandra nodes, refused elsewhere.
    fn datacenter(
        &mut self,
        node: &crate::spec::NodeSpec,
        kind: NodeKind,
    ) -> Option<(String, String)> {
        if kind != NodeKind::Cassandra {
            for field in [&node.dc, &node.rack].into_iter().flatten() {
                self.diags.error_hint(
                    &field.referenced,
                    "`dc` and `rack` apply to `cassandra` nodes only",
                    "remove it",
                );
            }
            return None;
        }
        let Some(dc) = &node.dc else {
            self.diags.error_hint(
                &node.name.referenced,
                format!("cassandra node `{}` needs `dc`", node.name.value),
                "add `dc: dc1` (its datacenter)",
            );
            return None;
        };
        self.identifier(dc, "datacenter");
        let rack = node
            .rack
            .as_ref()
            .map_or("rack1".to_string(), |r| r.value.clone());
        Some((dc.value.clone(), rack))
    }

    /// `replica_of` (on redis nodes) and `monitors` (on sentinels) both name a redis node that
    /// is itself no replica: the primary of a Sentinel-managed set.
    fn follows(
        &mut self,
        field: Option<&At<String>>,
        label: &str,
        kind: NodeKind,
        allowed_on: NodeKind,
        kinds: &BTreeMap<String, NodeKind>,
        specs: &[crate::spec::NodeSpec],
    ) -> Option<String> {
        let field = field?;
        if kind != allowed_on {
            self.diags.error_hint(
                &field.referenced,
                format!("`{label}` applies to `{}` nodes only", allowed_on.name()),
                "remove it",
            );
            return None;
        }
        match kinds.get(&field.value) {
            None => {
                self.dangling(&field.referenced, "node", &field.value, kinds.keys());
                None
            }
            Some(NodeKind::Redis) => {
                let is_replica = specs
                    .iter()
                    .any(|n| n.name.value == field.value && n.replica_of.is_some());
                if is_replica {
                    self.diags.error_hint(
                        &field.referenced,
                        format!("`{}` is itself a replica", field.value),
                        "name the primary of the set",
                    );
                    return None;
                }
                Some(field.value.clone())
            }
            Some(other) => {
                self.diags.error(
                    &field.referenced,
                    format!(
                        "`{label}` must name a `redis` node, but `{}` is a `{}`",
                        field.value,
                        other.name()
                    ),
                );
                None
            }
        }
    }

    /// A sentinel's settings, with defaults: quorum = a majority of the sentinels monitoring
    /// the same primary, `down_after` 5 s (Redis' default is 30 s; the seeds promise a failover
    /// within 10 s), `failover_timeout` 10 s, `parallel_syncs` 1.
    fn sentinel_config(
        &mut self,
        node: &crate::spec::NodeSpec,
        given: &serde_json::Value,
        watchers: u64,
    ) -> serde_json::Value {
        if node.monitors.is_none() {
            self.diags.error_hint(
                &node.name.referenced,
                format!("sentinel `{}` needs `monitors`", node.name.value),
                "add `monitors: <the primary redis node>`",
            );
        }
        let at = node.config.as_ref().map(|c| c.referenced);
        let text = |key: &str| {
            given.get(key).map(|v| match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        };
        let mut duration_ms = |key: &str, default_ms: u64| -> u64 {
            let Some(value) = text(key) else {
                return default_ms;
            };
            match crate::units::parse_duration(&value) {
                Ok(d) if !d.is_zero() => d.as_millis() as u64,
                _ => {
                    if let Some(at) = at {
                        self.diags.error(
                            &at,
                            format!("sentinel `config.{key}` must be a duration above zero such as `5s`, got `{value}`"),
                        );
                    }
                    default_ms
                }
            }
        };
        let down_after_ms = duration_ms("down_after", 5_000);
        let failover_timeout_ms = duration_ms("failover_timeout", 10_000);
        let mut count = |key: &str, default: u64| -> u64 {
            match given.get(key) {
                None => default,
                Some(v) => {
                    match v.as_u64().filter(|n| *n >= 1) {
                        Some(n) => n,
                        None => {
                            if let Some(at) = at {
                                self.diags.error(
                                &at,
                                format!("sentinel `config.{key}` must be a whole number >= 1, got `{v}`"),
                            );
                            }
                            default
                        }
                    }
                }
            }
        };
        let quorum = count("quorum", watchers / 2 + 1);
        let parallel_syncs = count("parallel_syncs", 1);
        if let Some(object) = given.as_object() {
            let known = ["quorum", "down_after", "failover_timeout", "parallel_syncs"];
            if let (Some(key), Some(at)) =
                (object.keys().find(|k| !known.contains(&k.as_str())), at)
            {
                self.diags.error_hint(
                    &at,
                    format!("unknown sentinel setting `{key}`"),
                    format!("sentinels take: {}", known.join(", ")),
                );
            }
        }
        serde_json::json!({
            "quorum": quorum,
            "down_after_ms": down_after_ms,
            "failover_timeout_ms": failover_timeout_ms,
            "parallel_syncs": parallel_syncs,
        })
    }

    /// Validates a node's `config` against the type its kind takes, and fills in addresses.
    pub(super) fn node_config(
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
                    if object.contains_key(field)
                        && let Some(at) = at
                    {
                        self.diags.error_hint(
                            &at,
                            format!("`config.{field}` is set by the harness"),
                            "remove it: `uses` decides where the service connects",
                        );
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
            // Checked by `sentinel_config`.
            NodeKind::Sentinel => Ok(()),
            NodeKind::Kafka | NodeKind::Cassandra if object.is_empty() => Ok(()),
            NodeKind::Kafka | NodeKind::Cassandra => Err(format!(
                "{} nodes take no `config`; cluster settings go in `topology.{}`",
                kind.name(),
                kind.name()
            )),
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
}

/// Deserializes a service config into the type the service itself parses, for early errors.
fn check_config<T: serde::de::DeserializeOwned>(value: &serde_json::Value) -> Result<T, String> {
    serde_json::from_value::<T>(value.clone()).map_err(|e| e.to_string())
}
