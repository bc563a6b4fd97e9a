//! Reading a topic back after the faults are healed: every partition from its beginning up to
//! its high watermark at the time of the call, each message mapped to its op by its key.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

/// What a topic holds: every message up to each partition's high watermark at the time of the
/// call. `messages` counts all of them, `found` only those whose key is an op index, so
/// `messages - sum(found)` is what some other producer wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadBack {
    /// Op index -> how many times its message is in the topic (2+ is a duplicate).
    pub found: HashMap<u64, u32>,
    pub messages: u64,
}

/// Reads `topic` from the beginning of every partition up to its high watermark at call time
/// (messages are only visible there once the ISR has them), within `timeout`. An error means the
/// read-back is incomplete, never that messages are lost.
pub async fn read_back(
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
) -> Result<ReadBack, String> {
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || read_back_blocking(&bootstrap, &topic, timeout))
        .await
        .map_err(|e| format!("the kafka read-back task failed: {e}"))?
}

fn read_back_blocking(bootstrap: &str, topic: &str, timeout: Duration) -> Result<ReadBack, String> {
    let deadline = Instant::now() + timeout;
    let left = || deadline.saturating_duration_since(Instant::now());
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "faultline-readback")
        // librdkafka assigns partitions only to a consumer with a group; it is never joined
        // (manual assignment) and nothing is committed.
        .set("group.id", "faultline-readback")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_uncommitted")
        .set("reconnect.backoff.max.ms", "1000")
        .create()
        .map_err(|e| format!("cannot create a kafka consumer for `{bootstrap}`: {e}"))?;
    let mut last_error = String::from("none");
    let targets = loop {
        match high_watermarks(&consumer, topic, left().min(Duration::from_secs(5))) {
            Ok(targets) => break targets,
            Err(e) if left().is_zero() => {
                return Err(format!("reading back `{topic}`: {e}"));
            }
            // A partition without a leader right now (failing over): ask again.
            Err(e) => last_error = e,
        }
    };
    let mut assignment = TopicPartitionList::new();
    for &partition in targets.keys() {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .map_err(|e| format!("assigning `{topic}` partition {partition}: {e}"))?;
    }
    consumer
        .assign(&assignment)
        .map_err(|e| format!("assigning `{topic}`: {e}"))?;
    let mut pending = targets.clone();
    // Per partition, the offset after the last message counted: a message the consumer hands
    // over again (a fetch retried after a leader change) is one log entry, not a duplicate.
    let mut next_offset: BTreeMap<i32, i64> = BTreeMap::new();
    let mut read = ReadBack::default();
    while !pending.is_empty() {
        if left().is_zero() {
            return Err(format!(
                "reading back `{topic}` took longer than {} ms; partitions short of their high \
                 watermark (partition: high watermark): {pending:?}; last error: {last_error}",
                timeout.as_millis()
            ));
        }
        match consumer.poll(left().min(Duration::from_millis(200))) {
            Some(Ok(msg)) => {
                let high = targets.get(&msg.partition()).copied().unwrap_or(0);
                let next = next_offset.entry(msg.partition()).or_insert(0);
                if msg.offset() < high && msg.offset() >= *next {
                    *next = msg.offset() + 1;
                    read.messages += 1;
                    if let Some(n) = msg.key().and_then(parse_key) {
                        *read.found.entry(n).or_insert(0) += 1;
                    }
                }
                if msg.offset() + 1 >= high {
                    pending.remove(&msg.partition());
                }
            }
            Some(Err(e)) => last_error = e.to_string(),
            // Nothing new: a partition may end on offsets that are never delivered (control
            // records), so its position, not its last message, says it is done.
            None => {
                if let Ok(positions) = consumer.position() {
                    for elem in positions.elements_for_topic(topic) {
                        if let Offset::Offset(at) = elem.offset()
                            && pending
                                .get(&elem.partition())
                                .is_some_and(|&high| at >= high)
                        {
                            pending.remove(&elem.partition());
                        }
                    }
                }
            }
        }
    }
    Ok(read)
}

/// partition -> high watermark, for partitions holding any message.
fn high_watermarks(
    consumer: &BaseConsumer,
    topic: &str,
    timeout: Duration,
) -> Result<BTreeMap<i32, i64>, String> {
    let meta = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| format!("metadata: {e}"))?;
    let partitions: Vec<i32> = meta
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(format!("the cluster reports no partitions for `{topic}`"));
    }
    let mut targets = BTreeMap::new();
    for partition in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, timeout)
            .map_err(|e| format!("watermarks of partition {partition}: {e}"))?;
        if high > low {
            targets.insert(partition, high);
        }
    }
    Ok(targets)
}

/// An op index key: plain decimal digits, no sign, no leading zero (so `"07"` and `"7"` can
/// never both count as op 7).
pub(super) fn parse_key(key: &[u8]) -> Option<u64> {
    let canonical =
        !key.is_empty() && key.iter().all(u8::is_ascii_digit) && (key.len() == 1 || key[0] != b'0');
    if !canonical {
        return None;
    }
    std::str::from_utf8(key).ok()?.parse().ok()
}
