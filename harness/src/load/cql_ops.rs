//! The CQL workload (Cassandra): prepared INSERTs of unique keys or SELECTs by key through one
//! DC-aware, token-aware scylla session, and the read-back of acknowledged writes after healing.
//!
//! The session is what a careful production client would configure, so the experiment measures
//! Cassandra and not driver artefacts:
//! - load balancing prefers `local_dc` and never fails over to another DC (a LOCAL_* level means
//!   "this DC"; a client that silently crossed DCs would hide exactly the DC loss under test),
//!   token-aware, replicas shuffled;
//! - no retries (`FallthroughRetryPolicy`): the default policy retries an `Unavailable` on the
//!   next host and a timed-out idempotent request, so a failure would show up as extra latency
//!   instead of an error; every failure is recorded as what it was;
//! - the driver's request timeout is twice the op timeout: the generator's own timeout fires
//!   first and is what gets recorded (as for Redis).
//!
//! Data model: see `components::cassandra::schema` (`writes (k bigint PRIMARY KEY, v blob,
//! written_at timestamp)`); `v` starts with `k` as 8 big-endian bytes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use scylla::client::PoolSize;
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError, TranslationError};
use scylla::policies::address_translator::{AddressTranslator, UntranslatedPeer};
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::policies::retry::FallthroughRetryPolicy;
use scylla::statement::Consistency;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;

use super::outcome::{ErrorKind, Outcome, OutcomeCode, ServerError};
use super::tables::{ErrorSamples, TagTable};
use crate::components::cassandra::TABLE;

mod client;
mod read_back;

pub use client::CqlClient;
pub use read_back::{ReadBack, read_back};

/// One connection multiplexes 32k requests; a few spread the decoding over the runtime's threads.
const MAX_CONNECTIONS_PER_HOST: usize = 4;
/// The key is the first 8 bytes of every value, so values are at least that long.
pub const MIN_VALUE_SIZE: usize = 8;

/// What each op of a CQL workload does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CqlOp {
    /// INSERT of key `n` (the op index: unique per op), value `cql_value(n, value_size)`.
    Write,
    /// SELECT of key `n % keys`, tagged `hit` (the row holds that key's value), `miss` (no row)
    /// or `mismatch` (a row with another value).
    Read { keys: u64 },
    /// SELECT of the key a writing workload acknowledged last before this op started (its
    /// watermark), tagged `fresh` (the row is there), `stale` (no row, or another value: the
    /// read missed an acknowledged write) or `none` (nothing acknowledged yet; no query sent).
    ReadLatest,
}

/// Everything a CQL workload needs. The cluster is up when it is built.
#[derive(Debug, Clone)]
pub struct CqlConfig {
    /// Nodes (or their proxies) of `local_dc` to bootstrap the session from.
    pub contact_points: Vec<SocketAddr>,
    pub local_dc: String,
    pub keyspace: String,
    pub op: CqlOp,
    pub consistency: Consistency,
    pub value_size: usize,
    pub max_in_flight: usize,
    pub op_timeout: Duration,
    /// Node address (as the cluster reports it) -> where to connect instead (a Toxiproxy
    /// listener), for faults on one DC's client path. Nodes not listed are reached directly.
    pub address_translation: Option<HashMap<SocketAddr, SocketAddr>>,
    /// Write: raised to the last acknowledged key + 1 after every ack. ReadLatest: the writer's,
    /// read before every op.
    pub watermark: Option<Arc<AtomicU64>>,
}

/// A consistency level from its CQL spelling (`local_quorum`, case-insensitive).
pub fn parse_consistency(text: &str) -> Result<Consistency, String> {
    Ok(match text.to_ascii_lowercase().as_str() {
        "any" => Consistency::Any,
        "one" => Consistency::One,
        "two" => Consistency::Two,
        "three" => Consistency::Three,
        "quorum" => Consistency::Quorum,
        "all" => Consistency::All,
        "local_quorum" => Consistency::LocalQuorum,
        "each_quorum" => Consistency::EachQuorum,
        "local_one" => Consistency::LocalOne,
        other => return Err(format!("unknown consistency level `{other}`")),
    })
}

/// The value written for key `k`: `k` big-endian, then a filler byte up to `size`.
pub fn cql_value(k: u64, size: usize) -> Vec<u8> {
    let mut v = k.to_be_bytes().to_vec();
    v.resize(size.max(MIN_VALUE_SIZE), b'x');
    v
}

/// Whether `v` is the value written for `k` (its first 8 bytes; the length is the writer's).
pub fn is_cql_value(k: u64, v: &[u8]) -> bool {
    v.len() >= MIN_VALUE_SIZE && v[..MIN_VALUE_SIZE] == k.to_be_bytes()
}

/// Translates the listed addresses, leaves the rest alone (scylla's `HashMap` translator fails
/// for unlisted nodes, which would break their pools for no reason).
struct PartialTranslation(HashMap<SocketAddr, SocketAddr>);

#[async_trait::async_trait]
impl AddressTranslator for PartialTranslation {
    async fn translate_address(
        &self,
        peer: &UntranslatedPeer,
    ) -> Result<SocketAddr, TranslationError> {
        let addr = peer.untranslated_address();
        Ok(self.0.get(&addr).copied().unwrap_or(addr))
    }
}

/// A session as described in the module docs, with `consistency` as its default level and
/// `request_timeout` as the driver's own limit per request.
pub async fn connect_cql(
    contact_points: &[SocketAddr],
    local_dc: &str,
    consistency: Consistency,
    request_timeout: Duration,
    address_translation: Option<&HashMap<SocketAddr, SocketAddr>>,
    connections_per_host: usize,
) -> Result<Session, String> {
    if contact_points.is_empty() {
        return Err("no contact points".into());
    }
    let policy = DefaultPolicy::builder()
        .prefer_datacenter(local_dc.to_string())
        .permit_dc_failover(false)
        .token_aware(true)
        .build();
    let profile = ExecutionProfile::builder()
        .consistency(consistency)
        .request_timeout(Some(request_timeout))
        .load_balancing_policy(policy)
        .retry_policy(Arc::new(FallthroughRetryPolicy::new()))
        .build();
    let per_host = NonZeroUsize::new(connections_per_host.clamp(1, MAX_CONNECTIONS_PER_HOST))
        .unwrap_or(NonZeroUsize::MIN);
    let mut builder = SessionBuilder::new()
        .known_nodes_addr(contact_points.iter().copied())
        .prefer_datacenter(local_dc.to_string())
        .default_execution_profile_handle(profile.into_handle())
        .connection_timeout(request_timeout.max(Duration::from_secs(2)))
        .pool_size(PoolSize::PerHost(per_host));
    if let Some(map) = address_translation {
        builder = builder.address_translator(Arc::new(PartialTranslation(map.clone())));
    }
    let session = builder.build().await.map_err(|e| {
        format!(
            "cannot connect to the cluster through {}: {e}",
            list(contact_points)
        )
    })?;
    // A typo in the DC name would otherwise make every op fail with an empty plan.
    let state = session.get_cluster_state();
    let dcs: Vec<String> = state
        .get_nodes_info()
        .iter()
        .filter_map(|n| n.datacenter.clone())
        .collect();
    if !dcs.iter().any(|dc| dc == local_dc) {
        return Err(format!(
            "no node of datacenter `{local_dc}` in the cluster (it has: {})",
            dcs.join(", ")
        ));
    }
    Ok(session)
}

fn list(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(|a| format!("`{a}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) struct CqlExec {
    session: Session,
    statement: PreparedStatement,
    op: CqlOp,
    value_size: usize,
    watermark: Option<Arc<AtomicU64>>,
    tags: ReadTags,
}

/// Tag ids of read outcomes; which ones apply depends on the op (`CqlOp`).
#[derive(Debug, Clone, Copy)]
struct ReadTags {
    hit: u8,
    miss: u8,
    mismatch: u8,
    none: u8,
}

impl std::fmt::Debug for CqlExec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CqlExec")
            .field("op", &self.op)
            .field("value_size", &self.value_size)
            .finish()
    }
}

impl CqlExec {
    /// Connects and prepares the op's statement; the cluster must be up (a DC that is down is
    /// fine, as long as a contact point answers).
    pub(crate) async fn new(config: &CqlConfig, tags: &TagTable) -> Result<CqlExec, String> {
        crate::components::cassandra::check_keyspace(&config.keyspace)?;
        if let CqlOp::Read { keys: 0 } = config.op {
            return Err("a read workload needs `keys` >= 1".into());
        }
        let session = connect_cql(
            &config.contact_points,
            &config.local_dc,
            config.consistency,
            config.op_timeout.saturating_mul(2),
            config.address_translation.as_ref(),
            config.max_in_flight.div_ceil(1024),
        )
        .await?;
        let ks = &config.keyspace;
        let cql = match config.op {
            CqlOp::Write => format!("INSERT INTO {ks}.{TABLE} (k, v, written_at) VALUES (?, ?, ?)"),
            CqlOp::Read { .. } | CqlOp::ReadLatest => {
                format!("SELECT v FROM {ks}.{TABLE} WHERE k = ?")
            }
        };
        if config.op == CqlOp::ReadLatest && config.watermark.is_none() {
            return Err(
                "a read of the latest acknowledged key needs the writer's watermark".into(),
            );
        }
        let statement = session
            .prepare(cql.as_str())
            .await
            .map_err(|e| format!("cannot prepare `{cql}`: {e}"))?;
        // Interned up front so the table's order does not depend on which answer came first.
        let intern = |names: [&[u8]; 4]| ReadTags {
            hit: tags.intern(names[0]),
            miss: tags.intern(names[1]),
            mismatch: tags.intern(names[2]),
            none: tags.intern(names[3]),
        };
        let tags = match config.op {
            CqlOp::Write => ReadTags {
                hit: 0,
                miss: 0,
                mismatch: 0,
                none: 0,
            },
            CqlOp::Read { .. } => intern([b"hit", b"miss", b"mismatch", b"none"]),
            // A row that is missing or different both mean the acknowledged write was not seen.
            CqlOp::ReadLatest => intern([b"fresh", b"stale", b"stale", b"none"]),
        };
        Ok(CqlExec {
            session,
            statement,
            op: config.op,
            value_size: config.value_size.max(MIN_VALUE_SIZE),
            watermark: config.watermark.clone(),
            tags,
        })
    }

    /// One op (see `CqlOp`); errors are classified by `classify` and their first message per
    /// outcome code kept in `samples`.
    pub(crate) async fn execute(&self, n: u64, samples: &ErrorSamples) -> (Outcome, u8) {
        let (key, result) = match self.op {
            CqlOp::Write => {
                let now_ms = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                let values = (
                    key_i64(n),
                    cql_value(n, self.value_size),
                    CqlTimestamp(now_ms),
                );
                (
                    n,
                    self.session.execute_unpaged(&self.statement, values).await,
                )
            }
            CqlOp::Read { .. } | CqlOp::ReadLatest => {
                let k = match (self.op, &self.watermark) {
                    (CqlOp::ReadLatest, Some(mark)) => match mark.load(Ordering::Acquire) {
                        0 => return (Outcome::Ok, self.tags.none),
                        next => next - 1,
                    },
                    (CqlOp::Read { keys }, _) => n % keys.max(1),
                    _ => return (Outcome::Ok, self.tags.none),
                };
                (
                    k,
                    self.session
                        .execute_unpaged(&self.statement, (key_i64(k),))
                        .await,
                )
            }
        };
        let result = match result {
            Ok(result) => result,
            Err(error) => {
                let outcome = Outcome::Error(classify(&error));
                samples.note(OutcomeCode::from(outcome), || error.to_string());
                return (outcome, 0);
            }
        };
        if self.op == CqlOp::Write {
            if let Some(mark) = &self.watermark {
                mark.fetch_max(key + 1, Ordering::Release);
            }
            return (Outcome::Ok, 0);
        }
        let row = result
            .into_rows_result()
            .map_err(|e| e.to_string())
            .and_then(|rows| {
                rows.maybe_first_row::<(Option<Vec<u8>>,)>()
                    .map_err(|e| e.to_string())
            });
        match row {
            Ok(None) | Ok(Some((None,))) => (Outcome::Ok, self.tags.miss),
            Ok(Some((Some(v),))) if is_cql_value(key, &v) => (Outcome::Ok, self.tags.hit),
            Ok(Some(_)) => (Outcome::Ok, self.tags.mismatch),
            Err(message) => {
                let outcome = Outcome::Error(ErrorKind::Protocol);
                samples.note(OutcomeCode::from(outcome), || message);
                (outcome, 0)
            }
        }
    }
}

/// Keys are op indices; CQL's bigint is signed. Indices never reach 2^63 (a workload is bounded
/// to millions of ops), and the cast keeps distinct indices distinct anyway.
fn key_i64(n: u64) -> i64 {
    n as i64
}

/// How a failed request is recorded.
///
/// - `Timeout` (indeterminate: the write may be applied): the driver's own request timeout, and
///   a coordinator's `WriteTimeout` / `ReadTimeout` (replicas did not answer in time).
/// - `Connect`: no connection to any node of the local DC (empty plan, broken pools).
/// - `Io`: the connection broke mid-request (a node killed under it).
/// - `Server(Other)`: what the coordinator refused: `Unavailable` (too few live replicas known:
///   nothing was written), overloaded, bootstrapping, write/read failures, and the rest.
/// - `Protocol`: an answer that could not be parsed.
pub(crate) fn classify(error: &ExecutionError) -> ErrorKind {
    match error {
        ExecutionError::RequestTimeout(_) => ErrorKind::Timeout,
        ExecutionError::EmptyPlan | ExecutionError::ConnectionPoolError(_) => ErrorKind::Connect,
        ExecutionError::LastAttemptError(attempt) => match attempt {
            RequestAttemptError::DbError(db, _) => match db {
                DbError::WriteTimeout { .. } | DbError::ReadTimeout { .. } => ErrorKind::Timeout,
                _ => ErrorKind::Server(ServerError::Other),
            },
            RequestAttemptError::BrokenConnectionError(_) => ErrorKind::Io,
            RequestAttemptError::CqlResultParseError(_)
            | RequestAttemptError::CqlErrorParseError(_)
            | RequestAttemptError::BodyExtensionsParseError(_)
            | RequestAttemptError::UnexpectedResponse(_) => ErrorKind::Protocol,
            _ => ErrorKind::Other,
        },
        _ => ErrorKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_carry_their_key() {
        assert_eq!(cql_value(1, 10), [0, 0, 0, 0, 0, 0, 0, 1, b'x', b'x']);
        assert_eq!(cql_value(7, 0).len(), MIN_VALUE_SIZE);
        assert!(is_cql_value(300, &cql_value(300, 64)));
        assert!(!is_cql_value(301, &cql_value(300, 64)));
        assert!(!is_cql_value(0, &[0, 0]));
    }

    #[test]
    fn timeouts_are_indeterminate_and_refusals_are_server_errors() {
        let timeout = ExecutionError::RequestTimeout(Duration::from_millis(5));
        assert_eq!(classify(&timeout), ErrorKind::Timeout);
        assert_eq!(classify(&ExecutionError::EmptyPlan), ErrorKind::Connect);
        let db = |e: DbError| {
            ExecutionError::LastAttemptError(RequestAttemptError::DbError(e, String::new()))
        };
        let unavailable = DbError::Unavailable {
            consistency: Consistency::LocalQuorum,
            required: 2,
            alive: 1,
        };
        assert_eq!(
            classify(&db(unavailable)),
            ErrorKind::Server(ServerError::Other)
        );
        let write_timeout = DbError::WriteTimeout {
            consistency: Consistency::LocalQuorum,
            received: 1,
            required: 2,
            write_type: scylla::errors::WriteType::Simple,
        };
        assert_eq!(classify(&db(write_timeout)), ErrorKind::Timeout);
    }
}
