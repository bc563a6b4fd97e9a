//! The Kafka cluster of a lab: storage formatted, every node started at once (a KRaft node only
//! finishes starting once a quorum of controllers is up), then the topics created and waited for
//! until every partition has a leader and a full ISR.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::components::kafka::{self, KafkaNode, KafkaSettings};
use crate::events::Progress;
use crate::lab::Lab;
use crate::plan::{KafkaPlan, NodeKind, Plan};

/// Topic creation waits for leaders and full ISRs; on two busy cores that can take a while.
const TOPIC_TIMEOUT: Duration = Duration::from_secs(60);

pub(super) async fn start(
    plan: &Plan,
    cluster: &KafkaPlan,
    lab: &Lab,
    progress: &dyn Progress,
    ready_ms: &mut BTreeMap<String, u64>,
) -> Result<(), String> {
    let started = Instant::now();
    let nodes: Vec<KafkaNode> = plan
        .nodes
        .iter()
        .filter(|n| n.kind == NodeKind::Kafka)
        .enumerate()
        .map(|(i, n)| KafkaNode {
            name: n.name.clone(),
            node_id: i as u32 + 1,
            addr: n.addr,
            // `client_proxies`: clients are sent to the node's proxy.
            advertised: plan
                .proxies
                .iter()
                .find(|p| p.link == format!("client->{}", n.name))
                .map(|p| p.listen),
        })
        .collect();
    let settings = KafkaSettings {
        unclean_leader_election: cluster.unclean_leader_election,
        broker_session_timeout: cluster.session_timeout,
        min_insync_replicas: cluster.topics.first().map_or(2, |t| t.min_insync_replicas),
        ..KafkaSettings::default()
    };
    let dirs: Vec<(String, std::path::PathBuf)> = nodes
        .iter()
        .map(|n| (n.name.clone(), lab.node_dir(&n.name)))
        .collect();
    let prepared = {
        let nodes = nodes.clone();
        tokio::task::spawn_blocking(move || {
            kafka::prepare(&nodes, &settings, |name| {
                dirs.iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, d)| d.clone())
                    .unwrap_or_default()
            })
        })
        .await
        .map_err(|e| format!("formatting Kafka storage: {e}"))?
        .map_err(|e| e.to_string())?
    };
    let prepared: Vec<_> = prepared
        .into_iter()
        .map(|s| s.nice(super::JVM_NICE))
        .collect();
    let starts = prepared.iter().map(|spec| lab.start_node(spec));
    for (node, result) in nodes.iter().zip(futures::future::join_all(starts).await) {
        let info = result.map_err(|e| e.to_string())?;
        super::ready(progress, ready_ms, &node.name, info.ready_after);
    }
    for topic in &cluster.topics {
        kafka::create_topic(
            &cluster.bootstrap,
            &topic.name,
            topic.partitions as i32,
            topic.replication_factor as i32,
            topic.min_insync_replicas as i32,
            TOPIC_TIMEOUT,
        )
        .await
        .map_err(|e| format!("creating topic `{}`: {e}", topic.name))?;
    }
    super::ready(progress, ready_ms, "kafka-cluster", started.elapsed());
    Ok(())
}
