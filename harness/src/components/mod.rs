//! Clustered real components (Kafka, Cassandra): their per-node configuration, how a cluster of
//! them is formatted, started and known to be ready, and their admin queries (topic leaders,
//! schema). Single-process kinds (Redis, the reference services) live in `run::provision`.

pub mod cassandra;
pub mod kafka;
pub mod kafka_roles;
