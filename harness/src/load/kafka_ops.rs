//! The Kafka workload: one message per op through rdkafka's `FutureProducer`, tagged with the
//! partition that acknowledged it, and the read-back of a topic once the faults are healed (the
//! ack ledger's evidence: what was acknowledged must be in the log, once).
//!
//! Key and value: key = the op index `n` in decimal ASCII (so read-back maps every message to its
//! op), value = the same digits padded with `x` to `value_size`. Partition: chosen by Faultline,
//! not hashed from the key: ops take turns of about 10 ms of the schedule per partition, the way
//! librdkafka's sticky partitioner treats keyless messages. Hashing each key spread consecutive
//! messages over every partition, so batches were a partition-count times smaller; the bench
//! measured that at 25% of the maximum throughput, all of which looked like the ledger's cost.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use serde::{Deserialize, Serialize};

mod read_back;
mod retries;

pub use read_back::{ReadBack, read_back};

use super::outcome::{ErrorKind, Outcome, OutcomeCode, ServerError};
use super::tables::{ErrorSamples, TagTable};

/// The producer knobs an experiment sets (librdkafka's names and ranges).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerSettings {
    /// `all` (= `-1`), `1` or `0`.
    pub acks: String,
    /// `retries`: re-sends of a failed produce request within the delivery timeout.
    pub retries: u32,
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
    /// `delivery.timeout.ms`: how long a message may take, retries included, before it fails
    /// with a timeout. Keep it at or under the workload's `op_timeout`, or the op timeout is
    /// what ends the op (recorded the same, as an indeterminate timeout). Keep it above the
    /// failovers the experiment provokes if duplicates matter: when messages time out, the
    /// idempotent producer bumps its epoch and re-sends retried messages the old leader may
    /// already have written under new sequence numbers, which the broker cannot deduplicate
    /// (seen in `tests/cluster_kafka.rs` runs; librdkafka issue 4953).
    pub delivery_timeout: Duration,
    /// Retries never duplicate or reorder a message (needs `acks=all`).
    pub enable_idempotence: bool,
    pub linger: Duration,
    pub value_size: usize,
    /// `batch.size` in bytes; `None`: librdkafka's default (1 MB). Not in experiment YAML: the
    /// bench sets it to match a peer's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u32>,
}

impl Default for ProducerSettings {
    /// A durable producer: librdkafka's own defaults except a delivery timeout short enough
    /// for experiments (its default is 300 s) yet above a KRaft failover in the lab (5-10 s).
    fn default() -> ProducerSettings {
        ProducerSettings {
            acks: "all".into(),
            retries: i32::MAX as u32,
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_millis(1000),
            delivery_timeout: Duration::from_secs(30),
            enable_idempotence: true,
            linger: Duration::from_millis(5),
            value_size: 100,
            batch_size: None,
        }
    }
}

impl ProducerSettings {
    /// Checks what librdkafka would refuse at creation, with the field named.
    pub fn validate(&self) -> Result<(), String> {
        if !matches!(self.acks.as_str(), "all" | "-1" | "1" | "0") {
            return Err(format!("`acks` is `{}`: use `all`, `1` or `0`", self.acks));
        }
        if self.enable_idempotence && !matches!(self.acks.as_str(), "all" | "-1") {
            return Err("`enable_idempotence` needs `acks: all`".into());
        }
        if self.enable_idempotence && self.retries == 0 {
            return Err(
                "the idempotent producer needs `retries` >= 1 (or `idempotence: false`)".into(),
            );
        }
        if self.retries > i32::MAX as u32 {
            return Err(format!(
                "`retries` is `{}`: at most {}",
                self.retries,
                i32::MAX
            ));
        }
        let ms = |d: Duration| d.as_millis();
        if !(1..=300_000).contains(&ms(self.retry_backoff))
            || ms(self.retry_backoff_max) < ms(self.retry_backoff)
            || ms(self.retry_backoff_max) > 300_000
        {
            return Err("`retry_backoff` must be 1 ms..=`retry_backoff_max` <= 300 s".into());
        }
        if ms(self.delivery_timeout) == 0 || ms(self.delivery_timeout) > i32::MAX as u128 {
            return Err("`delivery_timeout` must be > 0 and fit in 2^31 ms".into());
        }
        if self.linger > Duration::from_secs(900) || self.linger >= self.delivery_timeout {
            return Err("`linger` must be < `delivery_timeout` and <= 900 s".into());
        }
        if self.value_size > super::MAX_VALUE_SIZE {
            return Err(format!(
                "`value_size` is `{}`: at most {} bytes",
                self.value_size,
                super::MAX_VALUE_SIZE
            ));
        }
        Ok(())
    }
}

/// librdkafka configuration for the producer (pure, for tests).
fn producer_config(
    bootstrap: &str,
    s: &ProducerSettings,
    max_in_flight: usize,
) -> Vec<(&'static str, String)> {
    let ms = |d: Duration| d.as_millis().to_string();
    let mut config = vec![
        ("bootstrap.servers", bootstrap.to_owned()),
        ("client.id", "faultline-load".into()),
        ("acks", s.acks.clone()),
        ("retries", s.retries.to_string()),
        ("retry.backoff.ms", ms(s.retry_backoff)),
        ("retry.backoff.max.ms", ms(s.retry_backoff_max)),
        ("delivery.timeout.ms", ms(s.delivery_timeout)),
        // `request.timeout.ms` stays librdkafka's 30 s on purpose: it is also how long the leader
        // holds an acks=all produce for the ISR, and a shorter one makes it answer
        // REQUEST_TIMED_OUT for messages it already appended; their retries are what an epoch
        // bump turns into duplicates (see `delivery_timeout`).
        ("enable.idempotence", s.enable_idempotence.to_string()),
        // Fractional milliseconds are allowed.
        ("linger.ms", (s.linger.as_secs_f64() * 1000.0).to_string()),
        // Ops abandoned by the op timeout stay queued until their delivery timeout: room for
        // several timeouts' worth of in-flight ops, so new ops never wait on a full queue.
        (
            "queue.buffering.max.messages",
            max_in_flight
                .saturating_mul(4)
                .clamp(100_000, 10_000_000)
                .to_string(),
        ),
        // A broker that is down by design is retried at least every second (default 10 s), so
        // a restarted one is used again promptly.
        ("reconnect.backoff.max.ms", "1000".into()),
    ];
    if let Some(bytes) = s.batch_size {
        config.push(("batch.size", bytes.to_string()));
    }
    config
}

/// Client-side counters from librdkafka's statistics, summed over brokers: `retries`
/// (`txretries`, produce requests re-sent to the same broker after a retriable error) and
/// `disconnects`. Kept per broker at the highest value seen, because a broker that leaves the
/// cluster's metadata also leaves the statistics, taking its counts along.
/// Finding: after a leader is SIGKILLed, librdkafka re-queues the in-flight messages for the new
/// leader without counting them in `txretries`; only broker error replies (NOT_ENOUGH_REPLICAS,
/// NOT_LEADER_OR_FOLLOWER, timeouts) do.
/// `retry_log` reads the producer's `msg` debug log for message retries (see `retries`).
pub(crate) struct ClientStats {
    per_broker: std::sync::Arc<std::sync::Mutex<BTreeMap<String, (u64, u64)>>>,
    retry_log: std::sync::Arc<retries::RetryLog>,
}

impl rdkafka::ClientContext for ClientStats {
    // Only read, never printed: the `msg` debug level logs every batch.
    fn log(&self, _level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.retry_log.observe(fac, log_message);
    }

    fn stats_raw(&self, statistics: &[u8]) {
        let Ok(json) = serde_json::from_slice::<serde_json::Value>(statistics) else {
            return;
        };
        let Some(brokers) = json["brokers"].as_object() else {
            return;
        };
        let Ok(mut seen) = self.per_broker.lock() else {
            return;
        };
        for (name, b) in brokers {
            let entry = seen.entry(name.clone()).or_default();
            entry.0 = entry.0.max(b["txretries"].as_u64().unwrap_or(0));
            entry.1 = entry.1.max(b["disconnects"].as_u64().unwrap_or(0));
        }
    }
}

/// How often librdkafka reports statistics (a last report comes when the producer flushes).
const STATS_INTERVAL_MS: &str = "500";

pub(crate) struct KafkaExec {
    producer: FutureProducer<ClientStats>,
    /// Shared with the producer's statistics callback.
    stats: std::sync::Arc<std::sync::Mutex<BTreeMap<String, (u64, u64)>>>,
    /// Shared with the producer's log callback.
    retry_log: std::sync::Arc<retries::RetryLog>,
    topic: String,
    value_size: usize,
    /// How long an op may wait for room in librdkafka's queue.
    queue_timeout: Duration,
    /// Tag of partition p at index p.
    partition_tags: Vec<u8>,
    /// For a partition beyond `partition_tags` (the topic grew): interned when first seen.
    tags: TagTable,
    /// Messages carry their op index as key, which read-back needs to map the log to ops (the
    /// ack ledger). Off only in the bench, to measure what the keys cost; keyless messages go
    /// where librdkafka's partitioner puts them.
    pub(crate) keyed: bool,
    /// Keyed messages: consecutive ops sent to one partition before the next partition's turn.
    pub(crate) turn_ops: u64,
}

/// How much of the schedule one partition's turn lasts (librdkafka's
/// `sticky.partitioning.linger.ms` default).
pub(crate) const PARTITION_TURN: Duration = Duration::from_millis(10);

/// Ops per partition turn at `rate_per_sec`: at least one.
pub(crate) fn turn_ops(rate_per_sec: f64) -> u64 {
    (rate_per_sec * PARTITION_TURN.as_secs_f64()).max(1.0) as u64
}

impl std::fmt::Debug for KafkaExec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaExec")
            .field("topic", &self.topic)
            .field("partitions", &self.partition_tags.len())
            .field("value_size", &self.value_size)
            .finish()
    }
}

impl KafkaExec {
    /// Builds the producer without waiting for a broker (librdkafka connects in the background),
    /// and interns `p0`..`p{partitions-1}` so tag indices do not depend on which ack came first.
    pub(crate) fn new(
        bootstrap: String,
        topic: String,
        settings: ProducerSettings,
        partitions: u32,
        max_in_flight: usize,
        op_timeout: Duration,
        tags: &TagTable,
    ) -> Result<KafkaExec, String> {
        settings.validate()?;
        let mut config = ClientConfig::new();
        for (key, value) in producer_config(&bootstrap, &settings, max_in_flight) {
            config.set(key, value);
        }
        config.set("statistics.interval.ms", STATS_INTERVAL_MS);
        // Batches that failed and the actions taken, for `retries::RetryLog`.
        config.set("debug", "msg");
        // rdkafka sets librdkafka's log level from the `log` crate's (`Error` when no logger is
        // installed), which would drop the debug lines before they reach the callback.
        config.set_log_level(rdkafka::config::RDKafkaLogLevel::Debug);
        let retry_log = std::sync::Arc::new(retries::RetryLog::new(settings.retries > 0));
        let context = ClientStats {
            per_broker: Default::default(),
            retry_log: retry_log.clone(),
        };
        let stats = context.per_broker.clone();
        let producer: FutureProducer<ClientStats> = config
            .create_with_context(context)
            .map_err(|e| format!("cannot create the kafka producer for `{bootstrap}`: {e}"))?;
        Ok(KafkaExec {
            producer,
            stats,
            retry_log,
            topic,
            value_size: settings.value_size,
            queue_timeout: op_timeout,
            partition_tags: intern_partitions(tags, partitions),
            tags: tags.clone(),
            keyed: true,
            turn_ops: 1,
        })
    }

    /// Client-side counters for the journal: `retries` and `disconnects` (see `ClientStats`),
    /// `message_retries` and `failed_batches` (see `retries`).
    pub(crate) fn counters(&self) -> std::collections::BTreeMap<String, u64> {
        use rdkafka::producer::Producer;
        // Statistics arrive on librdkafka's schedule; a flush makes the last ones current.
        let _ = self
            .producer
            .flush(Timeout::After(Duration::from_millis(500)));
        let seen = self.stats.lock().map(|s| s.clone()).unwrap_or_default();
        let (retries, disconnects) = seen
            .values()
            .fold((0, 0), |(r, d), (br, bd)| (r + br, d + bd));
        let logged = self.retry_log.counts();
        let mut counters: BTreeMap<String, u64> = [
            ("retries".to_string(), retries),
            ("disconnects".to_string(), disconnects),
            ("message_retries".to_string(), logged.messages),
            (
                "failed_batches".to_string(),
                logged.errors.values().sum::<u64>(),
            ),
        ]
        .into();
        for (error, n) in logged.errors {
            counters.insert(format!("failed_batches: {error}"), n);
        }
        counters
    }

    /// Produces message `n`; tags the outcome with the partition that acknowledged it.
    pub(crate) async fn execute(&self, n: u64, samples: &ErrorSamples) -> (Outcome, u8) {
        let key = n.to_string();
        let value = payload(&key, self.value_size);
        let mut record = FutureRecord::to(&self.topic).payload(&value);
        if self.keyed {
            record = record.key(&key).partition(self.partition_of(n));
        }
        match self
            .producer
            .send(record, Timeout::After(self.queue_timeout))
            .await
        {
            Ok(delivery) => (Outcome::Ok, self.partition_tag(delivery.partition)),
            Err((error, _)) => {
                let outcome = Outcome::Error(classify(&error));
                samples.note(OutcomeCode::from(outcome), || error.to_string());
                (outcome, 0)
            }
        }
    }

    /// Op `n`'s partition: turns of `turn_ops` ops, partition after partition.
    fn partition_of(&self, n: u64) -> i32 {
        let partitions = self.partition_tags.len().max(1) as u64;
        // Below 62 (validated): the cast cannot truncate.
        ((n / self.turn_ops.max(1)) % partitions) as i32
    }

    fn partition_tag(&self, partition: i32) -> u8 {
        usize::try_from(partition)
            .ok()
            .and_then(|p| self.partition_tags.get(p).copied())
            .unwrap_or_else(|| self.tags.intern(format!("p{partition}").as_bytes()))
    }
}

/// A `KafkaExec` outside a workload, for integration tests and tools: the same producer, tags and
/// error mapping, each send bounded by the op timeout as the scheduler bounds an op.
pub struct KafkaProducer {
    exec: KafkaExec,
    tags: TagTable,
    samples: ErrorSamples,
    op_timeout: Duration,
}

impl KafkaProducer {
    pub fn new(
        bootstrap: &str,
        topic: &str,
        settings: ProducerSettings,
        partitions: u32,
        max_in_flight: usize,
        op_timeout: Duration,
    ) -> Result<KafkaProducer, String> {
        let tags = TagTable::new();
        let exec = KafkaExec::new(
            bootstrap.to_owned(),
            topic.to_owned(),
            settings,
            partitions,
            max_in_flight,
            op_timeout,
            &tags,
        )?;
        Ok(KafkaProducer {
            exec,
            tags,
            samples: ErrorSamples::default(),
            op_timeout,
        })
    }

    /// Produces message `n`: the outcome, and the partition that acknowledged it if it was.
    pub async fn send(&self, n: u64) -> (Outcome, Option<i32>) {
        let sent = tokio::time::timeout(self.op_timeout, self.exec.execute(n, &self.samples));
        let Ok((outcome, tag)) = sent.await else {
            return (Outcome::Error(ErrorKind::Timeout), None);
        };
        let partition = self
            .tags
            .names()
            .get(usize::from(tag))
            .and_then(|name| name.strip_prefix('p')?.parse().ok());
        (outcome, partition)
    }

    /// The first error message seen per outcome code.
    pub fn error_samples(&self) -> BTreeMap<OutcomeCode, String> {
        self.samples.snapshot()
    }
}

fn intern_partitions(tags: &TagTable, partitions: u32) -> Vec<u8> {
    (0..partitions)
        .map(|p| tags.intern(format!("p{p}").as_bytes()))
        .collect()
}

/// The key's digits, padded with `x` to `value_size` (never cut: the value always names its op).
fn payload(key: &str, value_size: usize) -> Vec<u8> {
    let mut value = key.as_bytes().to_vec();
    value.resize(value_size.max(key.len()), b'x');
    value
}

fn classify(error: &KafkaError) -> ErrorKind {
    error
        .rdkafka_error_code()
        .map_or(ErrorKind::Other, classify_code)
}

/// Maps a delivery error. Indeterminate ones (the message may be in the log) become `Timeout`,
/// which the ack ledger treats as indeterminate.
fn classify_code(code: RDKafkaErrorCode) -> ErrorKind {
    use RDKafkaErrorCode as C;
    match code {
        // No delivery report within `delivery.timeout.ms`: possibly persisted.
        C::MessageTimedOut => ErrorKind::Timeout,
        // The leader appended it but the ISR did not confirm in time (or shrank under
        // min.insync.replicas after the append): in the leader's log, maybe in the others'.
        C::RequestTimedOut | C::NotEnoughReplicasAfterAppend => ErrorKind::Timeout,
        C::AllBrokersDown | C::Resolve | C::BrokerNotAvailable => ErrorKind::Connect,
        // The connection broke with the request possibly sent: like an HTTP reset, `Io`.
        C::BrokerTransportFailure | C::NetworkException => ErrorKind::Io,
        C::BadMessage | C::InvalidMessage | C::BadCompression => ErrorKind::Protocol,
        // Broker error replies (NotEnoughReplicas, NotLeaderForPartition after the retries,
        // MessageSizeTooLarge, an idempotence fault, ...): positive codes come from the broker.
        other if other as i32 > 0 => ErrorKind::Server(ServerError::Other),
        // Local conditions (queue full, fatal client state, purged, ...).
        _ => ErrorKind::Other,
    }
}

#[cfg(test)]
mod tests;
