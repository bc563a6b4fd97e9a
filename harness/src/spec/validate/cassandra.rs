//! Validation of the Cassandra parts: `topology.cassandra` (the keyspace and its per-DC
//! replication) and `cql` workloads.

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
        Some(CassandraPlan {
            keyspace: spec.keyspace.value.clone(),
            replication,
        })
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
        let contact_points: Vec<_> = topo
            .nodes
            .iter()
            .filter(|n| n.dc.as_ref().is_some_and(|(dc, _)| *dc == local_dc))
            .map(|n| n.socket())
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
            },
        })
    }
}
