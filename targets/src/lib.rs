//! Reference services under test, built on the seeds' patterns: a playback service guarding its
//! recommendations call with a circuit breaker and caching in Redis, and the recommendations
//! service it depends on.

pub mod breaker;
pub mod config;
pub mod errors;
pub mod playback;
pub mod recommendations;
pub mod server;

mod metrics;
