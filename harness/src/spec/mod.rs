//! Experiment files: the YAML schema (v1), parsing with spans, and validation into a [`Plan`].
//!
//! The schema is deliberately flat: each fault, workload and assertion is one mapping with a
//! `kind` and the fields that kind takes, rather than a tagged enum. serde's tagged enums buffer
//! their content and lose source positions; flat structs keep a line:column on every value, so
//! `validate` can report every problem at once, each where it is. The reference for every field
//! is `docs/experiment-reference.md` (a test keeps it complete).
//!
//! invariant: nothing here panics on any input; hostile input is bounded by [`parse::limits`].
//! invariant: units (durations, rates, percentages) are kept as text here and parsed during
//! validation, so that all unit mistakes are reported together rather than the first one only.

mod diag;
mod parse;
mod validate;

pub use diag::{Diagnostic, Diagnostics};
pub use parse::{MAX_FILE_BYTES, parse_str};
pub use validate::{load_file, validate_str};

use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;

/// A scalar kept as its text (`30s`, `100/s`, `0.7`, `50%`), whatever YAML type it has.
#[derive(Debug, Clone, PartialEq)]
pub struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a scalar such as `30s`, `100/s` or `50%`")
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// A value with where it was written.
pub type At<T> = Spanned<T>;

/// One experiment file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentFile {
    /// Short name, used in reports and test names.
    pub name: At<String>,
    /// What the experiment shows, in a sentence or two.
    #[serde(default)]
    pub description: Option<String>,
    /// Catalogue ids (`shared/seeds/CATALOGUE.md`) this experiment verifies.
    pub verifies: Vec<At<String>>,
    /// The components and services to bring up.
    pub topology: TopologySpec,
    /// The traffic driven through the whole run.
    pub load: LoadSpec,
    /// The fault schedule.
    #[serde(default)]
    pub faults: Vec<FaultSpec>,
    /// What must hold.
    pub assertions: Vec<AssertionSpec>,
}

/// The nodes of the lab and named groups of them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologySpec {
    /// Every process the lab starts (Toxiproxy is implicit: one per lab).
    pub nodes: Vec<NodeSpec>,
    /// Named sets of nodes, used as fault targets (`target: backend`) and as address blocks.
    #[serde(default)]
    pub groups: BTreeMap<String, At<Vec<At<String>>>>,
    /// Nodes (or groups) the load reaches through Toxiproxy, one proxy each, so that link faults
    /// can target `client-><node>` or `client-><group>` (e.g. latency on one datacenter's
    /// client path). `cassandra` nodes: the CQL driver connects through the proxies (address
    /// translation). `kafka` nodes: the brokers advertise their proxies to clients and
    /// replicate on a separate listener that no proxy slows.
    #[serde(default)]
    pub client_proxies: Option<At<Vec<At<String>>>>,
    /// The Kafka cluster that the `kafka` nodes form (one per lab): topics and settings.
    #[serde(default)]
    pub kafka: Option<KafkaSpec>,
    /// The Cassandra cluster that the `cassandra` nodes form (one per lab): the keyspace.
    #[serde(default)]
    pub cassandra: Option<CassandraSpec>,
}

/// The keyspace the harness creates (NetworkTopologyStrategy), with table `writes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CassandraSpec {
    pub keyspace: At<String>,
    /// Replicas per datacenter, e.g. `{ dc1: 3, dc2: 3 }`.
    pub replication: BTreeMap<String, At<u64>>,
    /// Keep writes for a replica that is down as hints and replay them when it returns
    /// (`hinted_handoff_enabled`, default `true`).
    #[serde(default)]
    pub hinted_handoff: Option<At<bool>>,
    /// What happens after healing and before the ack ledger is read back, in this order:
    /// `hints` (wait until no node holds hints, `system_views.pending_hints`, at most 2
    /// minutes) and `repair` (`nodetool repair -full -pr` of the keyspace on every node in
    /// turn). Each outcome is a cluster event in the journal. Default `[]`: read back at once.
    #[serde(default)]
    pub read_back_after: Option<At<Vec<At<String>>>>,
}

/// Cluster-wide Kafka settings and the topics the harness creates before the load.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSpec {
    /// Topics to create, each with every partition led and fully in sync before the load.
    pub topics: Vec<TopicSpec>,
    /// `unclean.leader.election.enable` (default `false`).
    #[serde(default)]
    pub unclean_leader_election: Option<At<bool>>,
    /// `broker.session.timeout.ms`: silence after which a broker is fenced (default `5s`).
    #[serde(default)]
    pub session_timeout: Option<At<Scalar>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSpec {
    pub name: At<String>,
    /// Default 3.
    #[serde(default)]
    pub partitions: Option<At<u64>>,
    /// Default: the number of kafka nodes, at most 3.
    #[serde(default)]
    pub replication_factor: Option<At<u64>>,
    /// Default 2 (1 with a replication factor of 1).
    #[serde(default)]
    pub min_insync_replicas: Option<At<u64>>,
}

/// One node: a real component or a reference service.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Unique node name.
    pub name: At<String>,
    /// `redis`, `sentinel`, `kafka`, `cassandra`, `playback` or `recommendations`.
    pub kind: At<String>,
    /// redis: start as a replica of this redis node (`replicaof`).
    #[serde(default)]
    pub replica_of: Option<At<String>>,
    /// sentinel: the redis primary it monitors; the node's name is the master name clients ask
    /// for. Settings go in `config`: `quorum`, `down_after`, `failover_timeout`, `parallel_syncs`.
    #[serde(default)]
    pub monitors: Option<At<String>>,
    /// cassandra: its datacenter (GossipingPropertyFileSnitch).
    #[serde(default)]
    pub dc: Option<At<String>>,
    /// cassandra: its rack (default `rack1`).
    #[serde(default)]
    pub rack: Option<At<String>>,
    /// For services: role -> node it calls, e.g. `{ redis: cache, recommendations: recs }`.
    /// Every such link goes through a Toxiproxy proxy named `<node>-><used node>`.
    #[serde(default)]
    pub uses: BTreeMap<String, At<String>>,
    /// Kind-specific configuration (the reference services' config, Redis options).
    #[serde(default)]
    pub config: Option<At<serde_json::Value>>,
}

/// The load: one or more open-model workloads.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadSpec {
    /// Length of the whole run (`90s`, `3m`). Faults must end before it does.
    pub duration: At<Scalar>,
    /// The workloads, all running at once.
    pub workloads: Vec<WorkloadSpec>,
}

/// One open-model workload: operations start at a fixed rate whatever the system does.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    /// Unique workload name.
    pub name: At<String>,
    /// `http` or `redis`.
    pub kind: At<String>,
    /// The node the operations go to.
    pub target: At<String>,
    /// Arrival rate, e.g. `100/s`.
    pub rate: At<Scalar>,
    /// At most this many operations executing at once (default 256).
    #[serde(default)]
    pub max_in_flight: Option<At<u64>>,
    /// Per-operation timeout (default `2s`).
    #[serde(default)]
    pub timeout: Option<At<Scalar>>,
    /// http: the request path; `{n}` is the operation index, `{n%K}` the index modulo K.
    #[serde(default)]
    pub path: Option<At<String>>,
    /// http: a response header whose value is recorded per operation (services under test
    /// report e.g. `x-faultline-source`).
    #[serde(default)]
    pub tag_header: Option<At<String>>,
    /// redis: `get`, `set`, `set_get` (alternating) or `set_unique` (every op writes its own key;
    /// acknowledged writes form the ack ledger, read back after healing).
    #[serde(default)]
    pub command: Option<At<String>>,
    /// redis: a group (or list) of sentinel nodes; the client asks them where the primary of
    /// `target` is, before every (re)connection.
    #[serde(default)]
    pub sentinels: Option<At<String>>,
    /// cql: `write` (a new key per op, the ack ledger) or `read` (key `n % keyspace`).
    #[serde(default)]
    pub op: Option<At<String>>,
    /// cql reads: read the key that this (CQL writing) workload acknowledged last before each
    /// read starts, instead of `n % keyspace`; reads are tagged `fresh`, `stale` (the
    /// acknowledged row was not there) or `none` (nothing acknowledged yet). For `stale_reads`.
    #[serde(default)]
    pub reads_latest_of: Option<At<String>>,
    /// cql: consistency level, e.g. `local_quorum`, `quorum`, `each_quorum`, `one`, `all`.
    #[serde(default)]
    pub consistency: Option<At<String>>,
    /// cql: the client's local datacenter (default: the target node's); the driver never
    /// leaves it.
    #[serde(default)]
    pub dc: Option<At<String>>,
    /// kafka: the topic produced to (one of `topology.kafka.topics`).
    #[serde(default)]
    pub topic: Option<At<String>>,
    /// kafka: `all` (default), `1` or `0`.
    #[serde(default)]
    pub acks: Option<At<Scalar>>,
    /// kafka: produce retries within the delivery timeout (default: unbounded).
    #[serde(default)]
    pub retries: Option<At<u64>>,
    /// kafka: first retry backoff, doubling up to `retry_backoff_max` (default `100ms`).
    #[serde(default)]
    pub retry_backoff: Option<At<Scalar>>,
    /// kafka: longest retry backoff (default `1s`).
    #[serde(default)]
    pub retry_backoff_max: Option<At<Scalar>>,
    /// kafka: how long a message may take, retries included (default: the op `timeout`).
    #[serde(default)]
    pub delivery_timeout: Option<At<Scalar>>,
    /// kafka: the idempotent producer (default `true`; needs `acks: all`).
    #[serde(default)]
    pub idempotence: Option<At<bool>>,
    /// kafka: `linger.ms` (default `5ms`).
    #[serde(default)]
    pub linger: Option<At<Scalar>>,
    /// redis: number of distinct keys (default 10000).
    #[serde(default)]
    pub keyspace: Option<At<u64>>,
    /// redis, kafka: value size in bytes for writes (default 64, kafka 100).
    #[serde(default)]
    pub value_size: Option<At<u64>>,
}

/// One scheduled fault.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Name used in reports (default: `<kind>-<index>`).
    #[serde(default)]
    pub name: Option<At<String>>,
    /// `latency`, `bandwidth`, `timeout`, `reset_peer`, `slicer`, `link_down`, `kill`, `pause`,
    /// `restart` or `partition`.
    pub kind: At<String>,
    /// When it starts, from the start of the load (`15s`).
    pub at: At<Scalar>,
    /// How long it lasts before it is healed (all kinds but `restart`).
    #[serde(default, rename = "for")]
    pub lasts: Option<At<Scalar>>,
    /// Link faults: `client->server` (a `uses` link); node faults: a node or a group.
    #[serde(default)]
    pub target: Option<At<String>>,
    /// partition: the two sides, each a node or a group.
    #[serde(default)]
    pub between: Option<At<Vec<At<String>>>>,
    /// partition: `both` (default) or `one-way` (first side cannot reach the second).
    #[serde(default)]
    pub direction: Option<At<String>>,
    /// Link faults: `downstream` (responses, default) or `upstream` (requests).
    #[serde(default)]
    pub stream: Option<At<String>>,
    /// Link faults: share of connections affected (`70%`, default `100%`).
    #[serde(default)]
    pub toxicity: Option<At<Scalar>>,
    /// latency: added delay (`1s`).
    #[serde(default)]
    pub latency: Option<At<Scalar>>,
    /// latency: random variation added or removed (`50ms`, default `0ms`).
    #[serde(default)]
    pub jitter: Option<At<Scalar>>,
    /// bandwidth: limit in KB/s.
    #[serde(default)]
    pub rate_kb: Option<At<u64>>,
    /// timeout / reset_peer: close the connection after this long (`0` = never for timeout).
    #[serde(default)]
    pub after: Option<At<Scalar>>,
    /// slicer: average slice size in bytes.
    #[serde(default)]
    pub slice_bytes: Option<At<u64>>,
    /// slicer: delay between slices.
    #[serde(default)]
    pub slice_delay: Option<At<Scalar>>,
}

/// One assertion. `kind` decides which fields apply.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssertionSpec {
    /// `breaker`, `fallback`, `slo`, `failover`, `rpo`, `rejoins_as_replica`, `rto`,
    /// `local_quorum_survival`, `stale_reads` or `retries`.
    pub kind: At<String>,
    /// Name used in verdict ids (default: derived from the kind and targets).
    #[serde(default)]
    pub name: Option<At<String>>,
    /// breaker, fallback: the service node that owns the breaker.
    #[serde(default)]
    pub service: Option<At<String>>,
    /// breaker, fallback: the breaker's name in the service's `/state`.
    #[serde(default)]
    pub breaker: Option<At<String>>,
    /// breaker: the node the breaker protects; its received calls are the black-box evidence.
    #[serde(default)]
    pub downstream: Option<At<String>>,
    /// The workload whose operations are judged.
    #[serde(default)]
    pub workload: Option<At<String>>,
    /// breaker: the documented behaviour (the catalogue's numbers).
    #[serde(default)]
    pub documented: Option<BreakerDocSpec>,
    /// breaker: allowed timing error of each transition (default `1s`).
    #[serde(default)]
    pub tolerance: Option<At<Scalar>>,
    /// slo: `before`, `during`, `after` or `all` (default `all`).
    #[serde(default)]
    pub phase: Option<At<String>>,
    /// slo: highest acceptable error rate (`1%`).
    #[serde(default)]
    pub max_error_rate: Option<At<Scalar>>,
    /// slo: highest acceptable p99 latency (`300ms`).
    #[serde(default)]
    pub max_p99: Option<At<Scalar>>,
    /// slo: highest acceptable p50 latency.
    #[serde(default)]
    pub max_p50: Option<At<Scalar>>,
    /// failover, rto, local_quorum_survival: the fault whose start the time is measured from
    /// (or whose window is judged); stale_reads: judge only reads intended while it lasts.
    #[serde(default)]
    pub fault: Option<At<String>>,
    /// failover: the documented bound on the failover time (`10s`).
    #[serde(default)]
    pub max: Option<At<Scalar>>,
    /// failover: how far the client's view and the cluster's own log may disagree (default `1s`).
    #[serde(default)]
    pub agree_within: Option<At<Scalar>>,
    /// rpo: most acknowledged writes that may be lost (`0`).
    #[serde(default)]
    pub max_lost: Option<At<u64>>,
    /// rpo: longest span of acknowledgement times the lost writes may cover (`1s`).
    #[serde(default)]
    pub max_lost_window: Option<At<Scalar>>,
    /// rto, local_quorum_survival: success ratio that counts as recovered / error bound.
    #[serde(default)]
    pub success_above: Option<At<Scalar>>,
    /// rto: how long the success ratio must stay above `success_above` (default `5s`).
    #[serde(default)]
    pub sustained: Option<At<Scalar>>,
    /// retries: fewest messages the client must have retried (default 1).
    #[serde(default)]
    pub min_retries: Option<At<u64>>,
    /// stale_reads: highest acceptable share of reads that missed an acknowledged write (`0%`).
    #[serde(default)]
    pub max_stale_rate: Option<At<Scalar>>,
    /// rejoins_as_replica: the node that must come back as a replica.
    #[serde(default)]
    pub node: Option<At<String>>,
    /// rejoins_as_replica: how long after healing it may take (default `30s`).
    #[serde(default)]
    pub within: Option<At<Scalar>>,
}

/// A circuit breaker's documented behaviour.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerDocSpec {
    /// Opens when the failure rate in the window is above this (`50%`).
    pub failure_rate_above: At<Scalar>,
    /// Time-based window length (`10s`); give this or `window_calls`.
    #[serde(default)]
    pub window: Option<At<Scalar>>,
    /// Count-based window: the last N calls.
    #[serde(default)]
    pub window_calls: Option<At<u64>>,
    /// No decision with fewer calls than this in the window (default 1).
    #[serde(default)]
    pub minimum_calls: Option<At<u64>>,
    /// Also needs at least this many failures in the window (default 0).
    #[serde(default)]
    pub minimum_failures: Option<At<u64>>,
    /// How long it stays open before letting probes through (`30s`).
    pub open_for: At<Scalar>,
    /// How many calls HALF_OPEN lets through.
    pub half_open_calls: At<u64>,
    /// Consecutive successful probes that close it.
    pub close_after_successes: At<u64>,
}

pub use crate::plan::Plan;
