//! The open-model scheduler: dispatches op i at `start + i / rate` whether or not earlier ops
//! have finished, and measures every op from that intended time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::{JoinError, JoinSet};
use tokio::time::{Instant, sleep_until, timeout_at};

use super::http::HttpExec;
use super::latency_histogram;
use super::live::LiveStats;
use super::outcome::{ErrorKind, OpRecord, Outcome, OutcomeCode};
use super::redis_ops::RedisExec;
use super::tables::{ErrorSamples, TagTable};

/// After the hard deadline every op task ends by itself (it races the deadline); this extra
/// slack only guards against a task that does not, so the drain loop cannot hang.
const DRAIN_SLACK: Duration = Duration::from_secs(1);

#[derive(Debug)]
// One executor per workload (not per op): the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Executor {
    Http(HttpExec),
    Redis(RedisExec),
    Kafka(super::kafka_ops::KafkaExec),
    /// With the key base of a writing workload.
    Cql(super::cql_ops::CqlExec, u64),
}

impl Executor {
    /// Client-side counters worth a journal entry (Kafka: produce retries).
    pub(crate) fn counters(&self) -> BTreeMap<String, u64> {
        match self {
            Executor::Kafka(kafka) => kafka.counters(),
            Executor::Http(_) | Executor::Redis(_) | Executor::Cql(..) => BTreeMap::new(),
        }
    }

    /// Boxed: an op task is spawned, and so moved, with its future inline, which would otherwise
    /// be as large as the largest client's (the CQL driver's); the HTTP bench saw 4.5% of the
    /// generator's CPU in those copies.
    async fn execute(&self, n: u64, tags: &TagTable, samples: &ErrorSamples) -> (Outcome, u8) {
        match self {
            Executor::Http(http) => Box::pin(http.execute(n, tags, samples)).await,
            Executor::Redis(redis) => Box::pin(redis.execute(n, samples)).await,
            Executor::Kafka(kafka) => Box::pin(kafka.execute(n, samples)).await,
            Executor::Cql(cql, key_base) => Box::pin(cql.execute(key_base + n, samples)).await,
        }
    }
}

/// Everything an op task needs, shared by all of them.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) exec: Executor,
    pub(crate) tags: TagTable,
    pub(crate) samples: ErrorSamples,
    pub(crate) live: Arc<LiveStats>,
    /// One permit per in-flight slot (`max_in_flight`), taken by the dispatcher in intended
    /// order before it spawns the op.
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) op_timeout: Duration,
    pub(crate) hard_deadline: Instant,
    pub(crate) schedule: Schedule,
    /// The next op index nobody has claimed yet. The dispatcher claims ops at their intended
    /// time; an op task that finishes while later ops are already due claims the next one itself
    /// (keeping its slot), so a saturated system is driven closed-loop, without a hand-over
    /// through the dispatcher per op. Either way an op is measured from its intended start.
    pub(crate) next: AtomicU64,
    /// Ops claimed so far, by the dispatcher and by op tasks.
    pub(crate) dispatched: AtomicU64,
}

impl Shared {
    /// Claims op `i` if it is still the next one.
    fn claim(&self, i: u64) -> bool {
        let claimed = self
            .next
            .compare_exchange(i, i + 1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if claimed {
            self.dispatched.fetch_add(1, Ordering::Relaxed);
        }
        claimed
    }
}

/// When each op is due. All times derive from `t0` and the op index, never from the previous
/// op, so a late dispatch cannot shift the ones after it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    pub(crate) t0: Instant,
    pub(crate) start_offset: Duration,
    pub(crate) rate_per_sec: f64,
    pub(crate) intended_ops: u64,
    pub(crate) hard_deadline: Instant,
}

impl Schedule {
    /// Op i's intended start as an offset from the workload's start, in ns (exact for the
    /// integral rates experiments use; rounded otherwise).
    fn offset_ns(&self, i: u64) -> u64 {
        (i as f64 * 1e9 / self.rate_per_sec).round() as u64
    }

    /// How many ops are due by `now` (intended at or before it).
    fn due_by(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.t0 + self.start_offset);
        let due = (since.as_secs_f64() * self.rate_per_sec).floor() as u64 + 1;
        due.min(self.intended_ops)
    }

    fn intended(&self, i: u64) -> Instant {
        self.t0 + self.start_offset + Duration::from_nanos(self.offset_ns(i))
    }

    /// Op i's intended start as an offset from the run's t0, in µs.
    fn intended_us(&self, i: u64) -> u64 {
        let ns = self
            .start_offset
            .as_nanos()
            .saturating_add(u128::from(self.offset_ns(i)));
        u64::try_from(ns / 1_000).unwrap_or(u64::MAX)
    }
}

/// What the scheduler hands back; `run_workload` adds the tables to make a `WorkloadRecord`.
#[derive(Debug)]
pub(crate) struct Driven {
    /// Sorted by `intended_us`.
    pub(crate) ops: Vec<OpRecord>,
    pub(crate) sched_lag: Histogram<u64>,
    pub(crate) dispatched_ops: u64,
    pub(crate) cancelled_at: Option<Instant>,
    pub(crate) ended: Instant,
}

pub(crate) fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// Resolves when `cancel` turns true; never if its sender is dropped without cancelling (the
/// workload is bounded anyway, so an orchestrator that forgets its sender cannot hang it).
async fn cancelled(mut cancel: watch::Receiver<bool>) {
    if cancel.wait_for(|&stop| stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

pub(crate) async fn drive(
    shared: Arc<Shared>,
    schedule: Schedule,
    cancel: watch::Receiver<bool>,
) -> Driven {
    // The dispatch loop runs on a thread of its own (tokio's blocking pool) and waits with the
    // OS's high-resolution sleep: tokio's timer rounds every deadline up to its next 1 ms tick and
    // fires it at the driver's next turn, which dispatched ops about 1 ms late on average (p99
    // ~2 ms) even on an idle machine, all of it added to every op's corrected latency.
    let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
    let dispatcher = {
        let (shared, cancel, stop) = (Arc::clone(&shared), cancel.clone(), Arc::clone(&stop.0));
        tokio::task::spawn_blocking(move || dispatch(&shared, schedule, &cancel, &stop))
    };
    let Dispatched {
        mut tasks,
        mut ops,
        sched_lag,
        mut cancelled_at,
    } = match dispatcher.await {
        Ok(dispatched) => dispatched,
        // Only a panic (a bug) or a runtime shutting down gets here; either ends the workload,
        // and run_workload reports it as a generator failure.
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => panic!("the dispatcher did not finish: {error}"),
    };
    drop(stop);
    let cancel = cancelled(cancel);
    tokio::pin!(cancel);

    // Cancelled: ops still running are abandoned unrecorded; they measure nothing about the
    // system, only that we stopped.
    if cancelled_at.is_some() {
        tasks.abort_all();
    }
    let safety = sleep_until(schedule.hard_deadline + DRAIN_SLACK);
    tokio::pin!(safety);
    let mut aborted = cancelled_at.is_some();
    loop {
        tokio::select! {
            biased;
            () = &mut cancel, if cancelled_at.is_none() => {
                cancelled_at = Some(Instant::now());
                tasks.abort_all();
                aborted = true;
            }
            () = &mut safety, if !aborted => {
                tasks.abort_all();
                aborted = true;
            }
            done = tasks.join_next() => match done {
                Some(done) => collect(done, &mut ops),
                None => break,
            },
        }
    }
    // Completion order is arbitrary; intended order makes the record deterministic.
    ops.sort_by_key(|op| op.intended_us);
    Driven {
        ops,
        sched_lag,
        dispatched_ops: shared.dispatched.load(Ordering::Relaxed),
        cancelled_at,
        ended: Instant::now(),
    }
}

/// What the dispatch loop hands to the drain: ops still running stay in `tasks`.
struct Dispatched {
    tasks: JoinSet<Chain>,
    ops: Vec<OpRecord>,
    sched_lag: Histogram<u64>,
    cancelled_at: Option<Instant>,
}

/// Waits longer than this are slept in slices, so a cancel is seen within one.
const WAIT_SLICE: Duration = Duration::from_millis(5);

/// Set when `drive` is dropped (its caller gave up on the workload): the dispatch thread, which
/// an abort cannot reach, stops at its next check.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The dispatch loop, on a blocking-pool thread (which has the runtime's context, so op tasks
/// are spawned onto the runtime as before). Op i goes out at its intended time or, if the loop
/// is late, at once; never early.
fn dispatch(
    shared: &Arc<Shared>,
    schedule: Schedule,
    cancel: &watch::Receiver<bool>,
    stop: &AtomicBool,
) -> Dispatched {
    let mut sched_lag = latency_histogram();
    // Capacity is a hint only; validation caps intended_ops, so this cannot be absurd.
    let mut ops = Vec::with_capacity(usize::try_from(schedule.intended_ops).unwrap_or(0));
    let mut tasks = JoinSet::new();
    let mut cancelled_at = None;
    let stopped = || *cancel.borrow() || stop.load(Ordering::Relaxed);
    let total = schedule.intended_ops;
    // Cancelled before it began (e.g. Ctrl-C during set-up): it stopped at its start at the
    // latest, whenever this task got to notice, so no op counts as due.
    if *cancel.borrow() {
        cancelled_at = Some(Instant::now().min(schedule.intended(0)));
        shared.next.store(total, Ordering::Release);
    }

    let runtime = tokio::runtime::Handle::current();
    // When the dispatcher last got a slot after waiting for one. Lateness before then is the
    // system's backpressure (every op waits its turn for a slot, measured from its intended
    // start all the same), not the generator's lag.
    let mut slot_came: Option<Instant> = None;
    loop {
        let i = shared.next.load(Ordering::Acquire);
        if i >= total {
            break;
        }
        let intended = schedule.intended(i);
        if !wait_until(intended, &stopped) {
            cancelled_at = Some(Instant::now());
            break;
        }
        let permit = match Arc::clone(&shared.slots).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => match wait_for_slot(&runtime, shared, &schedule, &stopped) {
                SlotWait::Got(permit) => {
                    slot_came = Some(Instant::now());
                    permit
                }
                SlotWait::Stopped => {
                    cancelled_at = Some(Instant::now());
                    break;
                }
                SlotWait::Deadline => {
                    // No slot came before the hard deadline: every op not yet sent missed its
                    // chance, as the system's doing (they were due: the schedule ended before).
                    // Op tasks claim nothing after the deadline, so these are nobody's.
                    let from = shared.next.swap(total, Ordering::AcqRel);
                    for j in from..total {
                        ops.push(abandoned_op(shared, &schedule, j));
                    }
                    shared
                        .dispatched
                        .fetch_add(total.saturating_sub(from), Ordering::Relaxed);
                    break;
                }
            },
        };
        let now = Instant::now();
        if now >= schedule.hard_deadline {
            // So far behind that nothing dispatched now could finish in time; the shortfall
            // shows as dispatched_ops < intended_ops and invalidates the run.
            break;
        }
        if !shared.claim(i) {
            // An op task that finished meanwhile took op i (and kept its own slot).
            continue;
        }
        // The generator's own lateness: from when op i could have gone (its intended time, or
        // the slot it waited for), so it measures us, not the system.
        let ready = slot_came.map_or(intended, |came| came.max(intended));
        sched_lag.saturating_record(micros(now.saturating_duration_since(ready)));
        tasks.spawn(run_chain(Arc::clone(shared), permit, i));
        while let Some(done) = tasks.try_join_next() {
            collect(done, &mut ops);
        }
    }
    shared.live.set_queued(0);
    Dispatched {
        tasks,
        ops,
        sched_lag,
        cancelled_at,
    }
}

/// Blocks this thread until `deadline` (at once if it has passed), checking `stopped` at least
/// every `WAIT_SLICE`; false if stopped first.
fn wait_until(deadline: Instant, stopped: &impl Fn() -> bool) -> bool {
    loop {
        if stopped() {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        std::thread::sleep((deadline - now).min(WAIT_SLICE));
    }
}

enum SlotWait {
    Got(OwnedSemaphorePermit),
    Stopped,
    Deadline,
}

/// Blocks the dispatcher until an in-flight slot frees up, the hard deadline passes, or the
/// workload is stopped. Ops waiting their turn are not tasks (a run far above capacity would
/// hold hundreds of thousands of them, each the size of its executor's future: over a GB for
/// CQL); they are the dispatcher's backlog, published as the `queued` gauge.
fn wait_for_slot(
    runtime: &tokio::runtime::Handle,
    shared: &Shared,
    schedule: &Schedule,
    stopped: &impl Fn() -> bool,
) -> SlotWait {
    loop {
        if stopped() {
            return SlotWait::Stopped;
        }
        let now = Instant::now();
        if now >= schedule.hard_deadline {
            return SlotWait::Deadline;
        }
        let next = shared.next.load(Ordering::Relaxed);
        shared
            .live
            .set_queued(schedule.due_by(now).saturating_sub(next));
        let slice = (schedule.hard_deadline - now).min(WAIT_SLICE);
        let acquire = tokio::time::timeout(slice, Arc::clone(&shared.slots).acquire_owned());
        match runtime.block_on(acquire) {
            // A slot freed by an op the hard deadline ended comes too late to use.
            Ok(Ok(_)) if Instant::now() >= schedule.hard_deadline => return SlotWait::Deadline,
            Ok(Ok(permit)) => return SlotWait::Got(permit),
            // The semaphore is never closed; if it were, no op could run.
            Ok(Err(_)) => return SlotWait::Stopped,
            Err(_) => {}
        }
    }
}

/// The record of an op that never got a slot before the hard deadline.
fn abandoned_op(shared: &Shared, schedule: &Schedule, n: u64) -> OpRecord {
    let outcome = abandoned(shared);
    let latency_us = micros(
        schedule
            .hard_deadline
            .saturating_duration_since(schedule.intended(n)),
    );
    shared.live.complete(false, latency_us);
    OpRecord {
        intended_us: schedule.intended_us(n),
        latency_us,
        outcome: OutcomeCode::from(outcome),
        tag: 0,
        service_us: 0,
    }
}

fn collect(done: Result<Chain, JoinError>, ops: &mut Vec<OpRecord>) {
    // An Err is an op aborted by cancellation: deliberately unrecorded. A panic cannot come from
    // op code (it returns every failure as an outcome); it would show as dispatched > recorded.
    if let Ok(chain) = done {
        ops.push(chain.first);
        ops.extend(chain.more);
    }
}

/// The ops one task ran, in order: the one it was spawned for, then those it claimed.
#[derive(Debug)]
struct Chain {
    first: OpRecord,
    more: Vec<OpRecord>,
}

/// Runs op `first` in its slot, then, while later ops are already due (the system is behind
/// its schedule), claims and runs them in the same slot, until none is due.
async fn run_chain(shared: Arc<Shared>, permit: OwnedSemaphorePermit, first: u64) -> Chain {
    let schedule = &shared.schedule;
    let (first, mut now) = run_op(&shared, first, Instant::now()).await;
    let mut chain = Chain {
        first,
        more: Vec::new(),
    };
    loop {
        let next = shared.next.load(Ordering::Acquire);
        let due = next < schedule.intended_ops && schedule.intended(next) <= now;
        if !due || now >= shared.hard_deadline || !shared.claim(next) {
            break;
        }
        // Sent as the previous op ended: one clock read serves both (they cost ~9% of the
        // generator's CPU at 280k Kafka messages/s).
        let (op, done) = run_op(&shared, next, now).await;
        chain.more.push(op);
        now = done;
    }
    drop(permit);
    chain
}

/// One op, holding its in-flight slot: execute within the op timeout, and record the latency from
/// the INTENDED start, so time spent queued behind a stalled system is counted (coordinated
/// omission corrected).
///
/// The hard deadline bounds the whole workload: an op still running then has missed its chance.
/// One timer per op: the earlier of the op timeout and the hard deadline.
///
/// `sent` is now (what a closed-loop tool would measure from: `OpRecord::service_us`); returns
/// the record and when the op ended.
async fn run_op(shared: &Shared, n: u64, sent: Instant) -> (OpRecord, Instant) {
    let intended = shared.schedule.intended(n);
    let running = shared.live.running();
    let op_deadline = sent
        .checked_add(shared.op_timeout)
        .unwrap_or(shared.hard_deadline);
    let (outcome, tag) = match timeout_at(
        op_deadline.min(shared.hard_deadline),
        shared.exec.execute(n, &shared.tags, &shared.samples),
    )
    .await
    {
        Ok(done) => done,
        Err(_) if op_deadline <= shared.hard_deadline => {
            let outcome = Outcome::Error(ErrorKind::Timeout);
            shared.samples.note(OutcomeCode::from(outcome), || {
                format!(
                    "no answer within the op timeout of {} ms",
                    shared.op_timeout.as_millis()
                )
            });
            (outcome, 0)
        }
        Err(_) => (abandoned(shared), 0),
    };
    let done = Instant::now();
    drop(running);
    let latency_us = micros(done.saturating_duration_since(intended));
    let service_us =
        u32::try_from(micros(done.saturating_duration_since(sent))).unwrap_or(u32::MAX);
    shared.live.complete_at(done, outcome.is_ok(), latency_us);
    let op = OpRecord {
        intended_us: shared.schedule.intended_us(n),
        latency_us,
        outcome: OutcomeCode::from(outcome),
        tag,
        service_us,
    };
    (op, done)
}

fn abandoned(shared: &Shared) -> Outcome {
    let outcome = Outcome::Error(ErrorKind::Abandoned);
    shared.samples.note(OutcomeCode::from(outcome), || {
        "still waiting for an in-flight slot or an answer at the workload's hard deadline".into()
    });
    outcome
}
