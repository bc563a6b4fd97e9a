//! Validation of the Cassandra parts: `topology.cassandra` (the keyspace and its per-DC
//! replication) and `cql` workloads.

use std::net::SocketAddr;

use super::{Resolver, Topology};
use crate::load::{CqlTarget, WorkloadKind};
use crate::plan::*;
use crate::spec::{ExperimentFile, WorkloadSpec};

/// Consistency levels a workload may name (the driver's, in CQL spelling).
pub const CONSISTENCY_LEVELS: &[&str] = &[
    "any",
    "one",
    "two",
    "three",
    "quorum",
    "all",
    "local_quorum",
    "each_quorum",
    "local_one",
];

/// Each writing CQL workload writes keys `[i * CQL_KEY_RANGE, (i + 1) * CQL_KEY_RANGE)`: far
/// more than the generator's 10 M ops per workload.
pub const CQL_KEY_RANGE: u64 = 1_000_000_000_000;

impl Resolver<'_> {
    pub(super) fn cassandra_cluster(
        &mut self,
        file: &ExperimentFile,
        nodes: &[PlannedNode],
    ) -> Option<CassandraPlan> {
        let dcs: std::collections::BTreeMap<&str, usize> = nodes
            .iter()
            .filter_map(|n| n.dc.as_ref().map(|(dc, _)| dc.as_str()))
            .fold(Default::default(), |mut m, dc| {
                *m.entry(dc).or_default() += 1;
                m
            });
        let Some(spec) = &file.topology.cassandra else {
            if let Some(first) = file
                .topology
                .nodes
                .iter()
                .find(|n| n.kind.value == "cassandra")
            {
                self.diags.error_hint(
                    &first.kind.referenced,
                    "cassandra nodes need `topology.cassandra` with the keyspace to create",
                    "add `cassandra: { keyspace: shop, replication: { dc1: 3 } }` under `topology`",
                );
            }
            return None;
        };
        if dcs.is_empty() {
            self.diags.error(
                &spec.keyspace.referenced,
                "`topology.cassandra` is set but no node is of kind `cassandra`",
            );
            return None;
        }
        if let Err(e) = crate::components::cassandra::check_keyspace(&spec.keyspace.value) {
            self.diags.error(&spec.keyspace.referenced, e);
        }
        let mut replication = Vec::new();
        for (dc, rf) in &spec.replication {
            match dcs.get(dc.as_str()) {
                None => {
                    let known: Vec<String> = dcs.keys().map(|k| k.to_string()).collect();
                    self.dangling(&rf.referenced, "datacenter", dc, known.iter())
                }
                Some(&n) if rf.value == 0 || rf.value as usize > n => self.diags.error(
                    &rf.referenced,
                    format!("datacenter `{dc}` has {n} nodes: its replication must be 1..={n}"),
                ),
                Some(_) => replication.push((dc.clone(), rf.value as u32)),
            }
        }
        if spec.replication.is_empty() {
            self.diags.error(
                &spec.keyspace.referenced,
                "`replication` names no datacenter",
            );
        }
        let hinted_handoff = spec.hinted_handoff.as_ref().is_none_or(|h| h.value);
        let (mut read_back_after_hints, mut read_back_after_repair) = (false, false);
        for step in spec.read_back_after.iter().flat_map(|s| &s.value) {
            match step.value.as_str() {
                "hints" if !hinted_handoff => self.diags.error_hint(
                    &step.referenced,
                    "`read_back_after: [hints]` waits for hints, but `hinted_handoff` is off",
                    "turn `hinted_handoff` on, or leave `hints` out",
                ),
                "hints" => read_back_after_hints = true,
                "repair" => read_back_after_repair = true,
                _ => self.unknown(step, "read_back_after step", &["hints", "repair"]),
            }
        }
        Some(CassandraPlan {
            keyspace: spec.keyspace.value.clone(),
            replication,
            hinted_handoff,
            read_back_after_hints,
            read_back_after_repair,
        })
    }

    /// Every `reads_latest_of` names a CQL writing workload of the same file.
    pub(super) fn check_reads_latest_of(
        &mut self,
        specs: &[WorkloadSpec],
        workloads: &[PlannedWorkload],
    ) {
        let writers: Vec<&str> = workloads
            .iter()
            .filter(|w| {
                matches!(&w.plan.kind, WorkloadKind::Cql { target } if target.read_keys.is_none())
            })
            .map(|w| w.plan.name.as_str())
            .collect();
        for of in specs.iter().filter_map(|s| s.reads_latest_of.as_ref()) {
            if !writers.contains(&of.value.as_str()) {
                self.diags.error_hint(
                    &of.referenced,
                    format!("`{}` is not a cql workload that writes", of.value),
                    if writers.is_empty() {
                        "this file has no cql writing workload".to_string()
                    } else {
                        format!("writing workloads: {}", writers.join(", "))
                    },
                );
            }
        }
    }

    pub(super) fn cql_workload(
        &mut self,
        spec: &WorkloadSpec,
        target: &PlannedNode,
        topo: &Topology,
    ) -> Option<WorkloadKind> {
        let cluster = topo.cassandra?;
        let local_dc = match &spec.dc {
            Some(dc) => dc.value.clone(),
            None => target.dc.as_ref()?.0.clone(),
        };
        // Proxied nodes (`client_proxies`) are reached through their proxies: the contact points
        // directly, every other node by the driver's address translation.
        let address_translation: Vec<(SocketAddr, SocketAddr)> = topo
            .nodes
            .iter()
            .filter(|n| n.kind == NodeKind::Cassandra)
            .filter_map(|n| {
                let link = format!("client->{}", n.name);
                let proxy = topo.proxies.iter().find(|p| p.link == link)?;
                Some((n.socket(), proxy.listen))
            })
            .collect();
        let contact_points: Vec<_> = topo
            .nodes
            .iter()
            .filter(|n| n.dc.as_ref().is_some_and(|(dc, _)| *dc == local_dc))
            .map(|n| {
                address_translation
                    .iter()
                    .find(|(node, _)| *node == n.socket())
                    .map_or(n.socket(), |(_, proxy)| *proxy)
            })
            .collect();
        if contact_points.is_empty() {
            let at = spec
                .dc
                .as_ref()
                .map_or(spec.target.referenced, |d| d.referenced);
            self.diags.error(
                &at,
                format!("no cassandra node is in datacenter `{local_dc}`"),
            );
            return None;
        }
        // Both checked before giving up, so both mistakes are reported at once.
        let consistency = match &spec.consistency {
            None => Some("local_quorum".to_string()),
            Some(c) if CONSISTENCY_LEVELS.contains(&c.value.to_lowercase().as_str()) => {
                Some(c.value.to_lowercase())
            }
            Some(c) => {
                self.unknown(c, "consistency level", CONSISTENCY_LEVELS);
                None
            }
        };
        let read = match spec.op.as_ref().map(|o| o.value.as_str()) {
            None | Some("write") => Some(false),
            Some("read") => Some(true),
            Some(_) => {
                self.unknown(spec.op.as_ref()?, "cql op", &["write", "read"]);
                None
            }
        };
        let (consistency, read) = (consistency?, read?);
        if let (false, Some(of)) = (read, &spec.reads_latest_of) {
            self.diags.error_hint(
                &of.referenced,
                "`reads_latest_of` is for reads",
                "add `op: read`",
            );
            return None;
        }
        Some(WorkloadKind::Cql {
            target: CqlTarget {
                contact_points,
                local_dc,
                keyspace: cluster.keyspace.clone(),
                consistency,
                read_keys: read.then(|| spec.keyspace.as_ref().map_or(10_000, |k| k.value.max(1))),
                value_size: spec.value_size.as_ref().map_or(64, |v| v.value as usize),
                key_base: if read {
                    0
                } else {
                    self.next_cql_writer() * CQL_KEY_RANGE
                },
                reads_latest_of: spec.reads_latest_of.as_ref().map(|w| w.value.clone()),
                address_translation,
            },
        })
    }
}
