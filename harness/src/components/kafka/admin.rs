//! Kafka admin queries over rdkafka: create a topic and wait until it is fully replicated, and
//! read partition leaders and ISRs from the cluster metadata. Every call is bounded by its
//! timeout; librdkafka's blocking metadata call runs on the blocking pool.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tokio::time::Instant;

use crate::errors::LabError;

/// One partition as the cluster metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: i32,
    /// The leader's node id; `-1` while the partition has none (e.g. every replica fenced).
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

impl PartitionInfo {
    /// A leader, and every replica in sync.
    pub fn fully_replicated(&self) -> bool {
        self.leader >= 0
            && self.isr.len() == self.replicas.len()
            && self.replicas.iter().all(|r| self.isr.contains(r))
    }
}

type Admin = AdminClient<DefaultClientContext>;

fn admin(bootstrap: &str) -> Result<Admin, LabError> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "faultline-admin")
        // A broker that is down by design is retried at least every second, not every 10 s.
        .set("reconnect.backoff.max.ms", "1000")
        .create()
        .map_err(|e| {
            LabError::Other(format!(
                "cannot configure a kafka admin client for `{bootstrap}`: {e}"
            ))
        })
}

/// Creates `name` (`min.insync.replicas` set on the topic) and waits until every partition has a
/// leader and a full ISR, all within `timeout`.
pub async fn create_topic(
    bootstrap: &str,
    name: &str,
    partitions: i32,
    replication_factor: i32,
    min_isr: i32,
    timeout: Duration,
) -> Result<(), LabError> {
    let deadline = Instant::now() + timeout;
    let admin = Arc::new(admin(bootstrap)?);
    let min_isr_text = min_isr.to_string();
    let topic = NewTopic::new(
        name,
        partitions,
        TopicReplication::Fixed(replication_factor),
    )
    .set("min.insync.replicas", &min_isr_text);
    let options = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    // A cluster that has just logged "Kafka Server started" may still drop the first admin
    // request: librdkafka retires its bootstrap broker handle once the real brokers are known
    // (`DestroyBroker`), and a controller may not be elected yet. Such answers are retried until
    // the deadline; a retry that finds the topic already there has succeeded.
    let mut backoff = Duration::from_millis(50);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let why = match tokio::time::timeout_at(deadline, admin.create_topics([&topic], &options))
            .await
        {
            Err(_) => {
                return Err(LabError::Other(format!(
                    "creating kafka topic `{name}` took longer than {} ms ({attempt} attempt(s))",
                    timeout.as_millis()
                )));
            }
            Ok(Err(KafkaError::AdminOp(code))) if transient(code) => code.to_string(),
            Ok(Err(e)) => {
                return Err(LabError::Other(format!(
                    "creating kafka topic `{name}`: {e}"
                )));
            }
            Ok(Ok(created)) => match created.into_iter().find_map(Result::err) {
                None => break,
                Some((_, RDKafkaErrorCode::TopicAlreadyExists)) if attempt > 1 => break,
                Some((_, code)) if transient(code) => code.to_string(),
                Some((topic, code)) => {
                    return Err(LabError::Other(format!(
                        "creating kafka topic `{topic}`: the cluster answered `{code:?}` ({code})"
                    )));
                }
            },
        };
        if Instant::now() + backoff >= deadline {
            return Err(LabError::Other(format!(
                "creating kafka topic `{name}`: still failing after {attempt} attempt(s) in {} ms: {why}",
                timeout.as_millis()
            )));
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(500));
    }
    let left = deadline.saturating_duration_since(Instant::now());
    wait_fully_replicated(bootstrap, name, Some(partitions as usize), left).await?;
    Ok(())
}

/// Waits until every partition of `topic` has a leader and a full ISR (and, if given, the topic
/// has `partitions` partitions): after creating it, or after healing a fault and before a
/// read-back that must see every replica. Returns the final description.
pub async fn wait_fully_replicated(
    bootstrap: &str,
    topic: &str,
    partitions: Option<usize>,
    timeout: Duration,
) -> Result<Vec<PartitionInfo>, LabError> {
    let deadline = Instant::now() + timeout;
    let admin = Arc::new(admin(bootstrap)?);
    let mut backoff = Duration::from_millis(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let why = match describe(&admin, topic, left.max(Duration::from_millis(100))).await {
            Ok(parts)
                if partitions.is_none_or(|n| parts.len() == n)
                    && !parts.is_empty()
                    && parts.iter().all(PartitionInfo::fully_replicated) =>
            {
                return Ok(parts);
            }
            Ok(parts) => format!("partitions are {parts:?}"),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(LabError::Other(format!(
                "kafka topic `{topic}` has no leader or full ISR on every partition after {} ms: {why}",
                timeout.as_millis()
            )));
        }
        tokio::time::sleep(backoff.min(deadline.saturating_duration_since(Instant::now()))).await;
        backoff = (backoff * 2).min(Duration::from_millis(500));
    }
}

/// Answers that a young or changing cluster gives before it settles; worth asking again.
fn transient(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::DestroyBroker
            | C::BrokerTransportFailure
            | C::AllBrokersDown
            | C::RequestTimedOut
            | C::OperationTimedOut
            | C::NotController
            | C::LeaderNotAvailable
            | C::BrokerNotAvailable
            | C::NotCoordinator
    )
}

/// Every partition of `topic`, sorted by partition.
pub async fn describe_topic(
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<PartitionInfo>, LabError> {
    let admin = Arc::new(admin(bootstrap)?);
    describe(&admin, topic, timeout).await
}

/// partition -> leader node id (`-1`: no leader).
pub async fn partition_leaders(
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
) -> Result<BTreeMap<i32, i32>, LabError> {
    MetadataReader::new(bootstrap)?
        .leaders(topic, timeout)
        .await
}

/// One admin client kept for repeated metadata questions (a new client per question would
/// reconnect to the brokers each time).
pub struct MetadataReader(Arc<Admin>);

impl MetadataReader {
    pub fn new(bootstrap: &str) -> Result<MetadataReader, LabError> {
        Ok(MetadataReader(Arc::new(admin(bootstrap)?)))
    }

    /// partition -> leader node id (`-1`: no leader).
    pub async fn leaders(
        &self,
        topic: &str,
        timeout: Duration,
    ) -> Result<BTreeMap<i32, i32>, LabError> {
        Ok(describe(&self.0, topic, timeout)
            .await?
            .into_iter()
            .map(|p| (p.partition, p.leader))
            .collect())
    }
}

async fn describe(
    admin: &Arc<Admin>,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<PartitionInfo>, LabError> {
    let client = Arc::clone(admin);
    let name = topic.to_owned();
    // rd_kafka_metadata blocks for up to `timeout`; the blocking pool's threads were spawned from
    // runtime threads, so they are inside the lab's namespace too.
    let fetched =
        tokio::task::spawn_blocking(move || client.inner().fetch_metadata(Some(&name), timeout))
            .await
            .map_err(|e| LabError::Other(format!("kafka metadata task failed: {e}")))?
            .map_err(|e| LabError::Other(format!("kafka metadata for `{topic}`: {e}")))?;
    let meta = fetched
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| LabError::Other(format!("kafka metadata has no topic `{topic}`")))?;
    if let Some(error) = meta.error() {
        return Err(LabError::Other(format!(
            "kafka metadata for `{topic}`: the broker answered `{:?}`",
            rdkafka::types::RDKafkaErrorCode::from(error)
        )));
    }
    let mut parts: Vec<PartitionInfo> = meta
        .partitions()
        .iter()
        .map(|p| PartitionInfo {
            partition: p.id(),
            leader: p.leader(),
            replicas: p.replicas().to_vec(),
            isr: p.isr().to_vec(),
        })
        .collect();
    parts.sort_by_key(|p| p.partition);
    Ok(parts)
}
