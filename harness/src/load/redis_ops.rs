//! The Redis workload: GET/SET over a small pool of multiplexed connections that reconnect on
//! their own, because the server being down is often exactly what the experiment is about.
//! With a Sentinel target, every (re)connection asks the sentinels where the primary is, and a
//! timeout or a READONLY answer sends the slot back to ask again: what a Sentinel-aware
//! production client does, so failover is measured as such a client sees it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::outcome::{ErrorKind, Outcome, OutcomeCode, ServerError};
use super::tables::{ErrorSamples, TagTable};
use super::{RedisCommand, SentinelTarget};

/// More connections than this buys nothing: one multiplexed connection pipelines hundreds of
/// requests, and Redis serves them on one thread. A few spread the client-side decoding and let
/// one broken connection fail a fraction of the ops rather than all.
const MAX_POOL: usize = 4;
/// Reconnect backoff after a failed attempt: quick enough to see a restarted server within a
/// tenth of a second, capped so a server that is down by design sees ~1 attempt/s per slot.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// With Sentinel, an attempt is a question to the sentinels, which answer even while the old
/// primary is gone: asking every 100 ms keeps the measured failover within 100 ms of when the
/// sentinels switched, at a cost of ten small requests a second per slot.
const MAX_BACKOFF_SENTINEL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Get,
    Set,
}

pub(crate) struct RedisExec {
    slots: Vec<Arc<Slot>>,
    command: RedisCommand,
    keyspace: u64,
    value: Vec<u8>,
    hit: u8,
    miss: u8,
    /// Sentinel mode: acknowledged writes are tagged with the server that acknowledged them.
    tags: Option<TagTable>,
}

impl std::fmt::Debug for RedisExec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisExec")
            .field("slots", &self.slots.len())
            .field("command", &self.command)
            .field("keyspace", &self.keyspace)
            .field("value_size", &self.value.len())
            .finish()
    }
}

/// Where a slot connects.
enum Target {
    Direct(redis::Client),
    Sentinel(SentinelTarget),
}

/// One pooled connection and its reconnect state machine.
struct Slot {
    target: Target,
    max_backoff: Duration,
    config: redis::AsyncConnectionConfig,
    /// Outer bound on one attempt: the config's connection timeout covers the TCP connect only,
    /// not the handshake (HELLO / CLIENT SETINFO) that follows it.
    connect_bound: Duration,
    state: Mutex<SlotState>,
    /// Woken whenever a connection attempt finishes, for ops waiting on it.
    changed: Notify,
}

struct SlotState {
    conn: Conn,
    /// Bumped on every new connection, so a stale op cannot tear down its successor.
    generation: u64,
    /// Wait before the next attempt if this one fails.
    backoff: Duration,
}

enum Conn {
    /// Connected, to this server (`ip:port`).
    Up(MultiplexedConnection, Arc<str>),
    /// An attempt is running (at most one per slot); ops wait for it within their timeout.
    Connecting,
    /// The last attempt failed or the connection broke; ops fail fast until `retry_at`.
    Down { retry_at: Instant, error: String },
}

impl RedisExec {
    /// Builds the pool without connecting: connecting happens in the background (`warm_up`) so a
    /// server that is down at start costs errors, not the run.
    // The workload's settings, passed as they are planned; a struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        addr: SocketAddr,
        sentinel: Option<SentinelTarget>,
        command: RedisCommand,
        keyspace: u64,
        value_size: usize,
        max_in_flight: usize,
        op_timeout: Duration,
        tags: &TagTable,
    ) -> Result<RedisExec, redis::RedisError> {
        let pool = max_in_flight.clamp(1, MAX_POOL);
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(op_timeout))
            // Our own per-op timeout fires first and is what gets recorded; the library's (twice
            // as long) only clears abandoned requests out of the pipeline.
            .set_response_timeout(Some(op_timeout.saturating_mul(2)))
            // Room for every in-flight op of this slot, or ops would queue inside the client
            // where we cannot see it.
            .set_pipeline_buffer_size(max_in_flight.div_ceil(pool).max(50));
        let mut slots = Vec::with_capacity(pool);
        for _ in 0..pool {
            let target = match &sentinel {
                Some(target) => Target::Sentinel(target.clone()),
                None => Target::Direct(redis::Client::open((addr.ip().to_string(), addr.port()))?),
            };
            slots.push(Arc::new(Slot {
                max_backoff: if sentinel.is_some() {
                    MAX_BACKOFF_SENTINEL
                } else {
                    MAX_BACKOFF
                },
                target,
                config: config.clone(),
                connect_bound: op_timeout.saturating_mul(2),
                state: Mutex::new(SlotState {
                    conn: Conn::Down {
                        retry_at: Instant::now(),
                        error: "not connected yet".into(),
                    },
                    generation: 0,
                    backoff: MIN_BACKOFF,
                }),
                changed: Notify::new(),
            }));
        }
        // Interned up front so the table's order does not depend on which answer came first.
        let (hit, miss) = (tags.intern(b"hit"), tags.intern(b"miss"));
        Ok(RedisExec {
            slots,
            command,
            keyspace,
            value: vec![b'x'; value_size],
            hit,
            miss,
            tags: sentinel.is_some().then(|| tags.clone()),
        })
    }

    /// Starts connecting every slot; returns at once.
    pub(crate) fn warm_up(&self) {
        for slot in &self.slots {
            let mut state = slot.lock();
            if matches!(state.conn, Conn::Down { .. }) {
                state.conn = Conn::Connecting;
                drop(state);
                tokio::spawn(connect(Arc::clone(slot)));
            }
        }
    }

    /// One command. `SetGet` alternates SET (even n) and GET (odd n) on key `(n / 2) % keyspace`,
    /// so each GET reads the key the SET before it wrote; a key always maps to the same
    /// connection, so that SET is ahead of it in the pipeline.
    pub(crate) async fn execute(&self, n: u64, samples: &ErrorSamples) -> (Outcome, u8) {
        let (op, key_index) = match self.command {
            RedisCommand::Get => (Op::Get, n % self.keyspace),
            RedisCommand::Set => (Op::Set, n % self.keyspace),
            RedisCommand::SetUnique => (Op::Set, n),
            RedisCommand::SetGet => (
                if n.is_multiple_of(2) {
                    Op::Set
                } else {
                    Op::Get
                },
                (n / 2) % self.keyspace,
            ),
        };
        let slot = &self.slots[(key_index % self.slots.len() as u64) as usize];
        let Some((mut conn, generation, server)) = connection(slot, samples).await else {
            return (Outcome::Error(ErrorKind::Connect), 0);
        };
        let (key, unique_value);
        let value: &[u8] = if self.command == RedisCommand::SetUnique {
            key = unique_key(n);
            unique_value = unique_value_of(n, self.value.len());
            &unique_value
        } else {
            key = format!("faultline:{key_index}");
            &self.value
        };
        let result = match op {
            Op::Get => {
                redis::cmd("GET")
                    .arg(&key)
                    .query_async::<redis::Value>(&mut conn)
                    .await
            }
            Op::Set => {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(value)
                    .query_async::<redis::Value>(&mut conn)
                    .await
            }
        };
        match result {
            Ok(value) => {
                let tag = match (op, value) {
                    (Op::Get, redis::Value::Nil) => self.miss,
                    (Op::Get, _) => self.hit,
                    (Op::Set, _) => self
                        .tags
                        .as_ref()
                        .map_or(0, |t| t.intern(server.as_bytes())),
                };
                (Outcome::Ok, tag)
            }
            Err(error) => {
                let rediscover = matches!(slot.target, Target::Sentinel(_))
                    && (error.is_timeout() || error.code() == Some("READONLY"));
                if breaks_connection(&error) || rediscover {
                    slot.mark_broken(generation, &error);
                }
                let outcome = Outcome::Error(classify(&error));
                samples.note(OutcomeCode::from(outcome), || error.to_string());
                (outcome, 0)
            }
        }
    }
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, SlotState> {
        // Every transition is a single assignment: a poisoned state is still a valid one.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn mark_broken(&self, generation: u64, error: &redis::RedisError) {
        let mut state = self.lock();
        if state.generation == generation && matches!(state.conn, Conn::Up(..)) {
            // Retry at once: only failed *attempts* back off.
            state.conn = Conn::Down {
                retry_at: Instant::now(),
                error: error.to_string(),
            };
        }
    }
}

/// The slot's connection, starting an attempt if it is down and due; waits for a running attempt
/// (the caller's op timeout bounds the wait). `None` means down: the op fails as `Connect`.
async fn connection(
    slot: &Arc<Slot>,
    samples: &ErrorSamples,
) -> Option<(MultiplexedConnection, u64, Arc<str>)> {
    loop {
        // Registered before reading the state, so an attempt finishing in between still wakes us.
        let notified = slot.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let mut state = slot.lock();
            match &state.conn {
                Conn::Up(conn, server) => {
                    return Some((conn.clone(), state.generation, server.clone()));
                }
                Conn::Connecting => {}
                Conn::Down { retry_at, error } => {
                    if Instant::now() < *retry_at {
                        samples.note(
                            OutcomeCode::from(Outcome::Error(ErrorKind::Connect)),
                            || error.clone(),
                        );
                        return None;
                    }
                    state.conn = Conn::Connecting;
                    tokio::spawn(connect(Arc::clone(slot)));
                }
            }
        }
        notified.await;
    }
}

/// One connection attempt, bounded by the connection timeout (and our own, in case the
/// handshake after the TCP connect hangs). Detached on purpose: it ends within that bound even
/// if the workload is gone, and the slot is freed when the last `Arc` drops.
async fn connect(slot: Arc<Slot>) {
    let limit = slot.connect_bound;
    let attempt = async {
        let client = match &slot.target {
            Target::Direct(client) => client.clone(),
            Target::Sentinel(target) => primary_client(target).await?,
        };
        let server: Arc<str> = server_name(&client).into();
        let conn = client
            .get_multiplexed_async_connection_with_config(&slot.config)
            .await?;
        Ok::<_, redis::RedisError>((conn, server))
    };
    let result = match tokio::time::timeout(limit, attempt).await {
        Ok(Ok(up)) => Ok(up),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!(
            "connecting took longer than {} ms",
            limit.as_millis()
        )),
    };
    {
        let mut state = slot.lock();
        match result {
            Ok((conn, server)) => {
                state.conn = Conn::Up(conn, server);
                state.generation += 1;
                state.backoff = MIN_BACKOFF;
            }
            Err(error) => {
                let wait = state.backoff;
                state.backoff = wait.saturating_mul(2).min(slot.max_backoff);
                state.conn = Conn::Down {
                    retry_at: Instant::now() + wait,
                    error,
                };
            }
        }
    }
    slot.changed.notify_waiters();
}

/// Asks the sentinels for the current primary; the library checks with `ROLE` that the node it
/// names considers itself primary before handing out a client.
pub async fn primary_client(target: &SentinelTarget) -> redis::RedisResult<redis::Client> {
    use redis::sentinel::{SentinelClient, SentinelServerType};
    let sentinels: Vec<_> = target
        .sentinels
        .iter()
        .map(|a| (a.ip().to_string(), a.port()))
        .collect();
    let mut sentinel = SentinelClient::build(
        sentinels,
        target.master.clone(),
        None,
        SentinelServerType::Master,
    )?;
    sentinel.async_get_client().await
}

/// `ip:port` of the server a client connects to.
pub fn server_name(client: &redis::Client) -> String {
    match client.get_connection_info().addr() {
        redis::ConnectionAddr::Tcp(host, port) => format!("{host}:{port}"),
        other => other.to_string(),
    }
}

/// The key of op `n` of a `SetUnique` workload.
pub fn unique_key(n: u64) -> String {
    format!("faultline:u:{n}")
}

/// The value of op `n`: its index, padded with `.` to `size` bytes (never shorter than the
/// index itself), so a read-back can tell whose value it found.
pub fn unique_value_of(n: u64, size: usize) -> Vec<u8> {
    let mut value = n.to_string().into_bytes();
    if value.len() < size {
        value.resize(size, b'.');
    }
    value
}

/// Errors after which the connection cannot be trusted: the socket is gone or the stream is out
/// of sync. Timeouts are not among them (a paused server keeps its connections).
fn breaks_connection(error: &redis::RedisError) -> bool {
    !error.is_timeout()
        && (error.is_io_error() || error.is_connection_dropped() || error.is_unrecoverable_error())
}

fn classify(error: &redis::RedisError) -> ErrorKind {
    if error.is_timeout() {
        ErrorKind::Timeout
    } else if error.is_connection_refusal() {
        ErrorKind::Connect
    } else if let Some(code) = error.code() {
        ErrorKind::Server(ServerError::from_code(code))
    } else if error.is_io_error() || error.is_connection_dropped() {
        ErrorKind::Io
    } else {
        match error.kind() {
            redis::ErrorKind::Parse | redis::ErrorKind::UnexpectedReturnType => ErrorKind::Protocol,
            _ => ErrorKind::Other,
        }
    }
}
