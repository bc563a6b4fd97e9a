//! The Redis workload: GET/SET over a small pool of multiplexed connections that reconnect on
//! their own, because the server being down is often exactly what the experiment is about.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::RedisCommand;
use super::outcome::{ErrorKind, Outcome, OutcomeCode, ServerError};
use super::tables::{ErrorSamples, TagTable};

/// More connections than this buys nothing: one multiplexed connection pipelines hundreds of
/// requests, and Redis serves them on one thread. A few spread the client-side decoding and let
/// one broken connection fail a fraction of the ops rather than all.
const MAX_POOL: usize = 4;
/// Reconnect backoff after a failed attempt: quick enough to see a restarted server within a
/// tenth of a second, capped so a server that is down by design sees ~1 attempt/s per slot.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

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

/// One pooled connection and its reconnect state machine.
struct Slot {
    client: redis::Client,
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
    Up(MultiplexedConnection),
    /// An attempt is running (at most one per slot); ops wait for it within their timeout.
    Connecting,
    /// The last attempt failed or the connection broke; ops fail fast until `retry_at`.
    Down {
        retry_at: Instant,
        error: String,
    },
}

impl RedisExec {
    /// Builds the pool without connecting: connecting happens in the background (`warm_up`) so a
    /// server that is down at start costs errors, not the run.
    pub(crate) fn new(
        addr: SocketAddr,
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
            slots.push(Arc::new(Slot {
                client: redis::Client::open((addr.ip().to_string(), addr.port()))?,
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
        let Some((mut conn, generation)) = connection(slot, samples).await else {
            return (Outcome::Error(ErrorKind::Connect), 0);
        };
        let key = format!("faultline:{key_index}");
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
                    .arg(&self.value[..])
                    .query_async::<redis::Value>(&mut conn)
                    .await
            }
        };
        match result {
            Ok(value) => {
                let tag = match (op, value) {
                    (Op::Get, redis::Value::Nil) => self.miss,
                    (Op::Get, _) => self.hit,
                    (Op::Set, _) => 0,
                };
                (Outcome::Ok, tag)
            }
            Err(error) => {
                if breaks_connection(&error) {
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
        if state.generation == generation && matches!(state.conn, Conn::Up(_)) {
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
) -> Option<(MultiplexedConnection, u64)> {
    loop {
        // Registered before reading the state, so an attempt finishing in between still wakes us.
        let notified = slot.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let mut state = slot.lock();
            match &state.conn {
                Conn::Up(conn) => return Some((conn.clone(), state.generation)),
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
    let attempt = slot
        .client
        .get_multiplexed_async_connection_with_config(&slot.config);
    let result = match tokio::time::timeout(limit, attempt).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!(
            "connecting took longer than {} ms",
            limit.as_millis()
        )),
    };
    {
        let mut state = slot.lock();
        match result {
            Ok(conn) => {
                state.conn = Conn::Up(conn);
                state.generation += 1;
                state.backoff = MIN_BACKOFF;
            }
            Err(error) => {
                let wait = state.backoff;
                state.backoff = wait.saturating_mul(2).min(MAX_BACKOFF);
                state.conn = Conn::Down {
                    retry_at: Instant::now() + wait,
                    error,
                };
            }
        }
    }
    slot.changed.notify_waiters();
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
