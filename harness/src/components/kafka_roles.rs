//! Kafka roles for role-targeted faults: the leader of a partition (or its followers), and the
//! active KRaft controller. Also which partitions the hit node led at that moment: the ones whose
//! failover the `failover` verdict measures.

use std::collections::BTreeMap;
use std::time::Duration;

use super::kafka::{self, PartitionInfo};
use crate::faults::RoleSelector;
use crate::lab::Lab;

const ASK_TIMEOUT: Duration = Duration::from_secs(10);

/// (nodes hit, partitions of the selector's topic that they led).
pub async fn resolve(
    selector: &RoleSelector,
    lab: &Lab,
) -> Result<(Vec<String>, Vec<i32>), String> {
    match selector {
        RoleSelector::KafkaLeader {
            topic,
            partition,
            bootstrap,
            nodes,
            followers,
        } => {
            let described = describe(bootstrap, topic).await?;
            let info = described
                .iter()
                .find(|p| p.partition == *partition)
                .ok_or_else(|| format!("topic `{topic}` has no partition {partition}"))?;
            if info.leader < 0 {
                return Err(format!(
                    "partition `{topic}/{partition}` has no leader right now"
                ));
            }
            if *followers {
                let hit: Vec<String> = info
                    .replicas
                    .iter()
                    .filter(|id| **id != info.leader)
                    .map(|id| name(nodes, *id))
                    .collect::<Result<_, _>>()?;
                return Ok((hit, Vec::new()));
            }
            Ok((
                vec![name(nodes, info.leader)?],
                led_by(&described, info.leader),
            ))
        }
        RoleSelector::KafkaController {
            nodes,
            bootstrap,
            topic,
        } => {
            let dirs: Vec<_> = nodes.values().map(|n| lab.node_dir(n)).collect();
            let id = kafka::active_controller(&dirs)
                .ok_or("no node's quorum state names an active controller")?;
            let id =
                i32::try_from(id).map_err(|_| format!("controller id `{id}` is out of range"))?;
            let described = describe(bootstrap, topic).await?;
            Ok((vec![name(nodes, id)?], led_by(&described, id)))
        }
        RoleSelector::Primary { .. } => Err("not a Kafka role".into()),
    }
}

async fn describe(bootstrap: &str, topic: &str) -> Result<Vec<PartitionInfo>, String> {
    kafka::describe_topic(bootstrap, topic, ASK_TIMEOUT)
        .await
        .map_err(|e| e.to_string())
}

fn name(nodes: &BTreeMap<i32, String>, id: i32) -> Result<String, String> {
    nodes
        .get(&id)
        .cloned()
        .ok_or_else(|| format!("Kafka names node id `{id}`, which is no node of the lab"))
}

fn led_by(partitions: &[PartitionInfo], leader: i32) -> Vec<i32> {
    partitions
        .iter()
        .filter(|p| p.leader == leader)
        .map(|p| p.partition)
        .collect()
}
