//! Kafka's partition leaders as Faultline itself sees them: one metadata client asks the cluster
//! every `PROBE_INTERVAL` for the whole load, and each partition's change to a new leader becomes
//! a `leader-seen` cluster event. A producer's first ack after a failover comes only when its
//! retry backoff lets it (up to `retry_backoff_max` later); the probe measures the failover
//! itself, to within one interval, which the failover verdict sets beside the broker's log.
//!
//! invariant: the probe only reads metadata; it produces nothing and never blocks the load (each
//! question is bounded by `ASK_TIMEOUT`, and a failed one is skipped).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::components::kafka::MetadataReader;
use crate::journal::{ClusterEvent, LEADER_SEEN};
use crate::plan::Plan;
use crate::run::TimeBase;

/// How often the probe asks; the timing goal is agreement within max(2 x this, 100 ms).
pub const PROBE_INTERVAL: Duration = Duration::from_millis(100);
/// A question to a cluster that lost a broker may wait for a dead connection; the next tick asks
/// again rather than fall behind.
const ASK_TIMEOUT: Duration = Duration::from_millis(500);

/// (when the answer came, topic, partition, new leader id)
type Sighting = (SystemTime, String, i32, i32);

/// The probe of one run.
pub struct LeaderProbe {
    stop: watch::Sender<bool>,
    task: JoinHandle<Vec<Sighting>>,
}

/// A probe of every topic of the plan's Kafka cluster; `None` when it has none (or no client
/// can be made, which the run's own Kafka set-up reports better).
pub fn start(plan: &Plan) -> Option<LeaderProbe> {
    let kafka = plan.kafka.as_ref()?;
    let topics: Vec<String> = kafka.topics.iter().map(|t| t.name.clone()).collect();
    if topics.is_empty() {
        return None;
    }
    let reader = MetadataReader::new(&kafka.bootstrap).ok()?;
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut sightings = Vec::new();
        let mut leaders: BTreeMap<(String, i32), i32> = BTreeMap::new();
        let mut ticks = tokio::time::interval(PROBE_INTERVAL);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stopped.wait_for(|&stop| stop) => break,
                _ = ticks.tick() => {}
            }
            for topic in &topics {
                let Ok(now) = reader.leaders(topic, ASK_TIMEOUT).await else {
                    continue;
                };
                let seen = SystemTime::now();
                for (partition, leader) in now {
                    let before = leaders.insert((topic.clone(), partition), leader);
                    // The first answer is the starting state, not a change; `-1` (no leader
                    // for now) is the failover under way, not its end.
                    if before.is_some_and(|b| b != leader) && leader >= 0 {
                        sightings.push((seen, topic.clone(), partition, leader));
                    }
                }
            }
        }
        sightings
    });
    Some(LeaderProbe { stop, task })
}

impl LeaderProbe {
    /// Stops the probe; its sightings as cluster events (`node` = the new leader).
    pub async fn finish(self, plan: &Plan, base: TimeBase) -> Vec<ClusterEvent> {
        let _ = self.stop.send(true);
        let names = plan.kafka_ids();
        let sightings = self.task.await.unwrap_or_default();
        sightings
            .into_iter()
            .map(|(seen, topic, partition, leader)| ClusterEvent {
                at_ms: base.offset_ms(crate::run::unix_us(seen)),
                node: names
                    .get(&leader)
                    .cloned()
                    .unwrap_or_else(|| format!("id {leader}")),
                event: LEADER_SEEN.into(),
                detail: format!(
                    "{topic}/{partition} (probed every {} ms)",
                    PROBE_INTERVAL.as_millis()
                ),
            })
            .collect()
    }
}
