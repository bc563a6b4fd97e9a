//! Validation of the Kafka parts: `topology.kafka` (topics, settings), `kafka` workloads, and the
//! Kafka role targets of faults (`leader:<topic>/<p>`, `followers:<topic>/<p>`, `controller`).

use std::time::Duration;

use super::{Resolver, Topology};
use crate::faults::RoleSelector;
use crate::load::{KafkaTarget, ProducerSettings, WorkloadKind};
use crate::plan::*;
use crate::spec::{At, ExperimentFile, WorkloadSpec};

/// Broker session timeout unless the experiment says (see `components::kafka::KafkaSettings`).
const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(5);

impl Resolver<'_> {
    pub(super) fn kafka_cluster(
        &mut self,
        file: &ExperimentFile,
        nodes: &[PlannedNode],
    ) -> Option<KafkaPlan> {
        let brokers: Vec<&PlannedNode> =
            nodes.iter().filter(|n| n.kind == NodeKind::Kafka).collect();
        let Some(spec) = &file.topology.kafka else {
            if let Some(first) = file.topology.nodes.iter().find(|n| n.kind.value == "kafka") {
                self.diags.error_hint(
                    &first.kind.referenced,
                    "kafka nodes need `topology.kafka` with the topics to create",
                    "add `kafka: { topics: [{ name: events, partitions: 3 }] }` under `topology`",
                );
            }
            return None;
        };
        if brokers.is_empty() {
            let at = spec.topics.first().map(|t| t.name.referenced);
            if let Some(at) = at {
                self.diags.error(
                    &at,
                    "`topology.kafka` is set but no node is of kind `kafka`",
                );
            }
            return None;
        }
        let max_rf = brokers.len() as u64;
        let mut topics = Vec::new();
        for t in &spec.topics {
            self.identifier(&t.name, "topic");
            let partitions = t.partitions.as_ref().map_or(3, |p| p.value);
            let rf = t
                .replication_factor
                .as_ref()
                .map_or(max_rf.min(3), |r| r.value);
            let min_isr = t
                .min_insync_replicas
                .as_ref()
                .map_or(rf.min(2), |m| m.value);
            if !(1..=1000).contains(&partitions)
                && let Some(p) = &t.partitions
            {
                self.diags
                    .error(&p.referenced, "`partitions` must be 1..=1000");
            }
            if (rf == 0 || rf > max_rf)
                && let Some(r) = &t.replication_factor
            {
                self.diags.error(
                    &r.referenced,
                    format!("`replication_factor` must be 1..={max_rf} (the kafka nodes)"),
                );
            }
            if (min_isr == 0 || min_isr > rf)
                && let Some(m) = &t.min_insync_replicas
            {
                self.diags.error(
                    &m.referenced,
                    format!("`min_insync_replicas` must be 1..={rf} (the replication factor)"),
                );
            }
            topics.push(PlannedTopic {
                name: t.name.value.clone(),
                partitions: partitions as u32,
                replication_factor: rf as u32,
                min_insync_replicas: min_isr as u32,
            });
        }
        if topics.is_empty() {
            self.diags
                .error_whole_file("`topology.kafka.topics` is empty", None);
        }
        let session_timeout = match &spec.session_timeout {
            Some(d) => self.duration(d, "session_timeout")?,
            None => DEFAULT_SESSION_TIMEOUT,
        };
        let bootstrap = brokers
            .iter()
            .map(|n| n.socket().to_string())
            .collect::<Vec<_>>()
            .join(",");
        Some(KafkaPlan {
            topics,
            unclean_leader_election: spec
                .unclean_leader_election
                .as_ref()
                .is_some_and(|u| u.value),
            session_timeout,
            bootstrap,
        })
    }

    pub(super) fn kafka_workload(
        &mut self,
        spec: &WorkloadSpec,
        op_timeout: Duration,
        topo: &Topology,
    ) -> Option<WorkloadKind> {
        let cluster = topo.kafka?;
        let at = spec.kind.referenced;
        let topic = self.require(&spec.topic, &at, "kafka", "topic")?;
        let Some(planned) = cluster.topics.iter().find(|t| t.name == topic.value) else {
            self.dangling(
                &topic.referenced,
                "topic",
                &topic.value,
                cluster.topics.iter().map(|t| &t.name),
            );
            return None;
        };
        let defaults = ProducerSettings::default();
        let acks = match spec.acks.as_ref().map(|a| a.value.0.as_str()) {
            None => defaults.acks.clone(),
            Some(a @ ("all" | "-1" | "1" | "0")) => a.replace("-1", "all"),
            Some(other) => {
                self.diags.error_hint(
                    &spec.acks.as_ref()?.referenced,
                    format!("unknown acks `{other}`"),
                    "known: all, 1, 0",
                );
                return None;
            }
        };
        let mut duration =
            |field: &Option<At<crate::spec::Scalar>>, name: &str, default: Duration| {
                field
                    .as_ref()
                    .map_or(Some(default), |d| self.duration(d, name))
            };
        let retry_backoff = duration(&spec.retry_backoff, "retry_backoff", defaults.retry_backoff)?;
        let retry_backoff_max = duration(
            &spec.retry_backoff_max,
            "retry_backoff_max",
            defaults.retry_backoff_max,
        )?;
        let delivery_timeout = duration(&spec.delivery_timeout, "delivery_timeout", op_timeout)?;
        let linger = duration(&spec.linger, "linger", defaults.linger)?;
        let idempotence = spec.idempotence.as_ref().map_or(acks == "all", |i| i.value);
        if idempotence && acks != "all" {
            self.diags.error_hint(
                &spec.idempotence.as_ref().map_or(at, |i| i.referenced),
                "the idempotent producer needs `acks: all`",
                "set `idempotence: false` for `acks: 1` or `0`",
            );
        }
        let producer = ProducerSettings {
            acks,
            retries: spec
                .retries
                .as_ref()
                .map_or(defaults.retries, |r| r.value.min(i32::MAX as u64) as u32),
            retry_backoff,
            retry_backoff_max,
            delivery_timeout,
            enable_idempotence: idempotence,
            linger,
            value_size: spec
                .value_size
                .as_ref()
                .map_or(defaults.value_size, |v| v.value as usize),
            batch_size: defaults.batch_size,
        };
        if let Err(e) = producer.validate() {
            self.diags
                .error(&at, format!("invalid producer settings: {e}"));
        }
        Some(WorkloadKind::Kafka {
            target: KafkaTarget {
                bootstrap: cluster.bootstrap.clone(),
                topic: planned.name.clone(),
                partitions: planned.partitions,
                ledger: true,
            },
            producer,
        })
    }

    /// `leader:<topic>/<p>`, `followers:<topic>/<p>` or `controller`.
    pub(super) fn kafka_role(
        &mut self,
        target: &At<String>,
        topo: &Topology,
    ) -> Option<RoleSelector> {
        let Some(cluster) = topo.kafka else {
            self.diags.error(
                &target.referenced,
                format!("`{}` needs kafka nodes and `topology.kafka`", target.value),
            );
            return None;
        };
        let nodes: std::collections::BTreeMap<i32, String> = topo
            .nodes
            .iter()
            .filter(|n| n.kind == NodeKind::Kafka)
            .enumerate()
            .map(|(i, n)| (i as i32 + 1, n.name.clone()))
            .collect();
        let first_topic = cluster
            .topics
            .first()
            .map(|t| t.name.clone())
            .unwrap_or_default();
        if target.value == "controller" {
            return Some(RoleSelector::KafkaController {
                nodes,
                bootstrap: cluster.bootstrap.clone(),
                topic: first_topic,
            });
        }
        let (role, rest) = target.value.split_once(':')?;
        let parsed = rest
            .rsplit_once('/')
            .and_then(|(t, p)| Some((t.to_string(), p.parse::<i32>().ok()?)));
        let Some((topic, partition)) = parsed else {
            self.diags.error_hint(
                &target.referenced,
                format!("cannot read `{}`", target.value),
                format!("write `{role}:<topic>/<partition>`, e.g. `{role}:{first_topic}/0`"),
            );
            return None;
        };
        match cluster.topics.iter().find(|t| t.name == topic) {
            None => {
                self.dangling(
                    &target.referenced,
                    "topic",
                    &topic,
                    cluster.topics.iter().map(|t| &t.name),
                );
                None
            }
            Some(t) if partition < 0 || partition as u32 >= t.partitions => {
                self.diags.error(
                    &target.referenced,
                    format!(
                        "topic `{topic}` has partitions 0..{}, not {partition}",
                        t.partitions
                    ),
                );
                None
            }
            Some(_) => Some(RoleSelector::KafkaLeader {
                topic,
                partition,
                bootstrap: cluster.bootstrap.clone(),
                nodes,
                followers: role == "followers",
            }),
        }
    }
}
