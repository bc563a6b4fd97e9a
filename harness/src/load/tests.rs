//! Tests for the load generator against real servers on 127.0.0.1: a tiny HTTP/1.1 responder
//! written here (with modes that delay, stall, hang or misbehave) and a real `redis-server`.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until};

use super::*;
use crate::errors::LoadError;

const TAG_HEADER: &str = "x-faultline-source";

// ---------------------------------------------------------------------------------------------
// A tiny HTTP/1.1 server (keep-alive, GET only) that counts concurrency and can misbehave.

/// How the server answers each request.
#[derive(Debug, Clone, Copy)]
enum Reply {
    /// 200, tagged `live` for even op indices and `fallback-open` for odd ones (the index is the
    /// last path segment), after the given delay.
    Ok(Duration),
    /// This status, tagged like `Ok`.
    Status(u16),
    /// Reads the request and never answers.
    Hang,
    /// Reads the request and closes the connection.
    Close,
    /// Answers with bytes that are not HTTP.
    Garbage,
}

/// Stall every answer for `length` once, starting when request number `after_requests` arrives.
#[derive(Debug, Clone, Copy)]
struct Stall {
    after_requests: u64,
    length: Duration,
}

#[derive(Debug, Default)]
struct ServerStats {
    requests: AtomicU64,
    active: AtomicU64,
    max_active: AtomicU64,
    /// Connections accepted.
    connections: AtomicU64,
    /// The stall as it happened: (start, end).
    stall: Mutex<Option<(Instant, Instant)>>,
}

struct TestServer {
    addr: SocketAddr,
    stats: Arc<ServerStats>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(reply: Reply, stall: Option<Stall>) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a test port");
    let addr = listener.local_addr().expect("test listener address");
    let stats = Arc::new(ServerStats::default());
    let task = {
        let stats = Arc::clone(&stats);
        tokio::spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                stats.connections.fetch_add(1, Ordering::SeqCst);
                connections.spawn(serve_connection(stream, reply, stall, Arc::clone(&stats)));
            }
        })
    };
    TestServer { addr, stats, task }
}

async fn serve_connection(
    mut stream: TcpStream,
    reply: Reply,
    stall: Option<Stall>,
    stats: Arc<ServerStats>,
) {
    let _ = stream.set_nodelay(true);
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(read) => buffer.extend_from_slice(&chunk[..read]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
        buffer.drain(..end + 4);
        let n: u64 = head
            .split_whitespace()
            .nth(1)
            .and_then(|path| path.rsplit('/').next())
            .and_then(|last| last.parse().ok())
            .unwrap_or(0);

        let count = stats.requests.fetch_add(1, Ordering::SeqCst) + 1;
        let active = stats.active.fetch_add(1, Ordering::SeqCst) + 1;
        stats.max_active.fetch_max(active, Ordering::SeqCst);
        let stall_until = {
            let mut window = stats.stall.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(stall) = stall
                && count == stall.after_requests
            {
                let now = Instant::now();
                *window = Some((now, now + stall.length));
            }
            window.map(|(_, until)| until)
        };
        if let Some(until) = stall_until {
            sleep_until(until).await;
        }
        let tag = if n.is_multiple_of(2) {
            "live"
        } else {
            "fallback-open"
        };
        let answer = match reply {
            Reply::Ok(delay) => {
                sleep(delay).await;
                format!("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n{TAG_HEADER}: {tag}\r\n\r\nok")
            }
            Reply::Status(status) => {
                format!(
                    "HTTP/1.1 {status} Whatever\r\ncontent-length: 4\r\n{TAG_HEADER}: {tag}\r\n\r\nnope"
                )
            }
            Reply::Hang => std::future::pending().await,
            Reply::Close => return,
            Reply::Garbage => "SSH-2.0-OpenSSH_9.6\r\n\r\n".to_owned(),
        };
        let written = stream.write_all(answer.as_bytes()).await;
        stats.active.fetch_sub(1, Ordering::SeqCst);
        if written.is_err() || matches!(reply, Reply::Garbage) {
            return;
        }
    }
}

/// A port that refuses connections and that no other test (or process) can take while the
/// returned socket lives: bound, never listening. SO_REUSEADDR still lets a server that also sets
/// it (redis-server does) bind and listen on it later.
fn reserved_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().expect("a probe socket");
    socket.set_reuseaddr(true).expect("SO_REUSEADDR");
    socket
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("bind a probe port");
    let port = socket.local_addr().expect("probe address").port();
    (socket, port)
}

// ---------------------------------------------------------------------------------------------
// Running workloads.

fn http_plan(
    addr: SocketAddr,
    rate: f64,
    duration: Duration,
    max_in_flight: usize,
    op_timeout: Duration,
) -> WorkloadPlan {
    WorkloadPlan {
        name: "http-test".into(),
        kind: WorkloadKind::Http {
            url_template: format!("http://{addr}/item/{{n%1000}}/{{n}}"),
            tag_header: Some(TAG_HEADER.into()),
        },
        rate_per_sec: rate,
        duration,
        max_in_flight,
        op_timeout,
    }
}

struct Ran {
    t0: Instant,
    record: WorkloadRecord,
    elapsed: Duration,
    live: Arc<LiveStats>,
}

/// Runs `plan` from now, cancelling after `cancel_after` if given.
async fn run(plan: &WorkloadPlan, start_offset: Duration, cancel_after: Option<Duration>) -> Ran {
    run_from(plan, Instant::now(), start_offset, cancel_after).await
}

/// Runs `plan` with the given t0 (in the past: the first ops are overdue at once).
async fn run_from(
    plan: &WorkloadPlan,
    t0: Instant,
    start_offset: Duration,
    cancel_after: Option<Duration>,
) -> Ran {
    let (stop, cancel) = watch::channel(false);
    let live = Arc::new(LiveStats::new());
    if cancel_after == Some(Duration::ZERO) {
        // Cancelled before it starts: nothing is due, whatever the machine's load.
        let _ = stop.send(true);
    } else if let Some(after) = cancel_after {
        tokio::spawn(async move {
            sleep(after).await;
            let _ = stop.send(true);
        });
    } else {
        // Dropping the sender must not cancel: the workload stops by itself.
        drop(stop);
    }
    let record = run_workload(plan, t0, start_offset, cancel, Arc::clone(&live))
        .await
        .unwrap_or_else(|e| panic!("workload `{}` failed to start: {e}", plan.name));
    Ran {
        t0,
        record,
        elapsed: t0.elapsed(),
        live,
    }
}

fn labels(record: &WorkloadRecord) -> Vec<String> {
    record
        .ops
        .iter()
        .map(|op| match op.outcome.outcome() {
            Outcome::Ok => "ok".to_owned(),
            Outcome::Error(kind) => kind.label(),
        })
        .collect()
}

fn us_since(t0: Instant, at: Instant) -> u64 {
    at.saturating_duration_since(t0).as_micros() as u64
}

/// The generator's own lag on a shared 2-core machine is tokio's 1 ms timer plus whatever other
/// processes cost (a parallel `cargo build` alone pushes its p99 past the 5 ms validity limit).
/// The tests assert a generous bound that is still far below the stalls and queues they inject,
/// which shows those are charged to the system, not to the generator; the exact validity rule is
/// tested on synthetic records.
const TEST_LAG_BOUND_US: u64 = 150_000;

fn assert_generator_kept_up(summary: &WorkloadSummary, case: &str) {
    assert!(
        summary.sched_lag_p99_us < TEST_LAG_BOUND_US,
        "{case}: scheduler lag p99 {} µs (max {} µs)",
        summary.sched_lag_p99_us,
        summary.sched_lag_max_us
    );
    let reason = summary.invalid_reason.as_deref().unwrap_or("");
    assert!(!reason.contains("dispatched"), "{case}: {reason}");
}

// ---------------------------------------------------------------------------------------------
// Scheduling.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatches_exactly_the_intended_ops_on_schedule_and_stops_by_itself() {
    let server = serve(Reply::Ok(Duration::ZERO), None).await;
    // (rate, duration, start offset)
    let cases = [
        (200.0, Duration::from_secs(1), Duration::ZERO),
        (50.0, Duration::from_millis(500), Duration::from_millis(150)),
        (7.0, Duration::from_millis(450), Duration::ZERO),
    ];
    let mut runs = JoinSet::new();
    for (rate, duration, offset) in cases {
        let plan = http_plan(server.addr, rate, duration, 64, Duration::from_secs(2));
        runs.spawn(async move { (rate, duration, offset, run(&plan, offset, None).await) });
    }
    while let Some(done) = runs.join_next().await {
        let (rate, duration, offset, ran) = done.expect("run task");
        let case = format!("{rate}/s for {duration:?} from {offset:?}");
        let record = &ran.record;
        let expected = (rate * duration.as_secs_f64()).floor() as u64;
        assert_eq!(record.intended_ops, expected, "{case}");
        assert_eq!(record.dispatched_ops, expected, "{case}");
        assert_eq!(record.ops.len() as u64, expected, "{case}");
        let intended: Vec<u64> = record.ops.iter().map(|op| op.intended_us).collect();
        let want: Vec<u64> = (0..expected)
            .map(|i| offset.as_micros() as u64 + (i as f64 * 1e6 / rate).round() as u64)
            .collect();
        assert_eq!(intended, want, "{case}: intended starts");
        assert!(
            labels(record).iter().all(|l| l == "ok"),
            "{case}: {:?}",
            labels(record)
        );
        // Stopped by itself once the last op finished, long before the hard deadline.
        let last_intended = Duration::from_micros(*want.last().expect("at least one op"));
        assert!(
            ran.elapsed >= last_intended,
            "{case}: ended before the last op was due"
        );
        assert!(
            ran.elapsed < offset + duration + Duration::from_millis(500),
            "{case}: took {:?}",
            ran.elapsed
        );
        let summary = summarize(record, &[]);
        assert_generator_kept_up(&summary, &case);
        assert_eq!(
            summary.per_second.len(),
            duration.as_secs_f64().ceil() as usize,
            "{case}"
        );
        assert_eq!(
            summary.total.tags["live"],
            expected.div_ceil(2),
            "{case}: even ops are tagged live"
        );
        assert_eq!(
            summary
                .total
                .tags
                .get("fallback-open")
                .copied()
                .unwrap_or(0),
            expected / 2,
            "{case}"
        );
        let live = ran.live.snapshot();
        assert_eq!(
            (live.ok, live.errors, live.in_flight, live.queued),
            (expected, 0, 0, 0),
            "{case}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_counts_from_the_intended_start_through_a_stall() {
    let stall_length = Duration::from_millis(300);
    let server = serve(
        Reply::Ok(Duration::ZERO),
        Some(Stall {
            after_requests: 100,
            length: stall_length,
        }),
    )
    .await;
    let plan = http_plan(
        server.addr,
        200.0,
        Duration::from_millis(1500),
        256,
        Duration::from_secs(2),
    );
    let ran = run(&plan, Duration::ZERO, None).await;
    let record = &ran.record;
    assert_eq!(record.ops.len(), 300);
    assert!(labels(record).iter().all(|l| l == "ok"));

    let (stall_start, stall_end) = server
        .stats
        .stall
        .lock()
        .expect("stall lock")
        .expect("the stall happened");
    let (from_us, to_us) = (us_since(ran.t0, stall_start), us_since(ran.t0, stall_end));
    // Every op intended during the stall (and reaching the server before it ended) waited out
    // the rest of it: completion >= stall end, so latency >= stall end - intended start.
    let margin_us = 20_000;
    let during: Vec<&OpRecord> = record
        .ops
        .iter()
        .filter(|op| op.intended_us >= from_us && op.intended_us + margin_us < to_us)
        .collect();
    assert!(
        during.len() >= 40,
        "only {} ops intended during the stall",
        during.len()
    );
    for op in &during {
        assert!(
            op.latency_us + 1 >= to_us - op.intended_us,
            "op intended at {} µs finished {} µs later, before the stall ended at {to_us} µs",
            op.intended_us,
            op.latency_us
        );
    }

    // An op intended just before the stall may reach the server after it began, and rightly
    // waits it out; "before" stops short of the stall by the same margin.
    let phases = [
        PhaseWindow {
            name: "before".into(),
            from_us: 0,
            to_us: from_us - margin_us,
        },
        PhaseWindow {
            name: "during".into(),
            from_us,
            to_us,
        },
        PhaseWindow {
            name: "after".into(),
            from_us: to_us,
            to_us: record.schedule_end_us,
        },
    ];
    let summary = summarize(record, &phases);
    let stall_us = to_us - from_us;
    let latency = |phase: usize| {
        summary.phases[phase]
            .1
            .latency
            .clone()
            .expect("ok ops in phase")
    };
    assert!(
        latency(1).p99_us >= stall_us * 2 / 3,
        "during p99 {} vs stall {stall_us}",
        latency(1).p99_us
    );
    assert!(
        latency(1).p50_us >= stall_us / 4,
        "during p50 {} vs stall {stall_us}",
        latency(1).p50_us
    );
    // Before the stall, ops were fast (a loaded machine may add tens of ms; the stall adds 300).
    assert!(
        latency(0).p50_us < stall_us / 3 && latency(0).p99_us < stall_us * 2 / 3,
        "before {:?} vs stall {stall_us}",
        latency(0)
    );
    let total = summary.total.latency.clone().expect("ok ops");
    assert!(
        total.p99_us >= stall_us * 2 / 3,
        "total p99 {} hides the stall of {stall_us}",
        total.p99_us
    );
    // The stall was the system's, not the generator's.
    assert_generator_kept_up(&summary, "stall");
    assert!(summary.sched_lag_p99_us < stall_us / 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_cap_is_respected_and_queueing_counts_in_latency() {
    let service = Duration::from_millis(50);
    let cap = 4;
    // How long before the run's start t0 lies: 0 runs on schedule; 100 ms makes the first 20
    // ops overdue at once, a burst like the one a scheduler hiccup causes.
    let cases = [Duration::ZERO, Duration::from_millis(100)];
    let mut runs = JoinSet::new();
    for t0_ago in cases {
        runs.spawn(async move {
            let server = serve(Reply::Ok(service), None).await;
            // 200/s offered, 4 slots x 20/s = 80/s served: a queue builds.
            let plan = http_plan(
                server.addr,
                200.0,
                Duration::from_millis(500),
                cap,
                Duration::from_secs(3),
            );
            let ran = run_from(&plan, Instant::now() - t0_ago, Duration::ZERO, None).await;
            let stats = &server.stats;
            let seen = [&stats.max_active, &stats.connections].map(|n| n.load(Ordering::SeqCst));
            (t0_ago, seen, ran)
        });
    }
    while let Some(done) = runs.join_next().await {
        let (t0_ago, [max_active, connections], ran) = done.expect("run task");
        let case = format!("t0 {t0_ago:?} ago");
        let record = &ran.record;
        assert_eq!(record.ops.len(), 100, "{case}");
        assert_eq!(record.dispatched_ops, 100, "{case}");
        // Behind schedule, finished ops claim the next due ones in their own slots: each op
        // must still run exactly once.
        assert!(
            record
                .ops
                .windows(2)
                .all(|w| w[0].intended_us < w[1].intended_us),
            "{case}: an op was recorded twice"
        );
        assert!(labels(record).iter().all(|l| l == "ok"), "{case}");
        assert_eq!(
            max_active, cap as u64,
            "{case}: the server saw more or fewer than the cap"
        );
        assert_eq!(
            connections, cap as u64,
            "{case}: keep-alive connections were not reused (or more than the cap were opened)"
        );
        // Slots are taken in intended order, even within a burst: op i cannot finish before
        // round floor(i / cap) + 1 of service after the run began.
        for (i, op) in record.ops.iter().enumerate() {
            let earliest_done_us = t0_ago.as_micros() as u64
                + (i as u64 / cap as u64 + 1) * service.as_micros() as u64;
            assert!(
                op.latency_us + op.intended_us + 1 >= earliest_done_us,
                "{case}: op {i} finished at {} µs, before {earliest_done_us} µs: queueing left out",
                op.latency_us + op.intended_us,
            );
        }
        // Uncorrected (from the send) each op took about one service time; queueing is only in
        // the corrected latency. A loaded machine may add tens of ms; the queue adds 700.
        for (i, op) in record.ops.iter().enumerate() {
            let service_us = u64::from(op.service_us);
            assert!(
                service_us + 1_000 >= service.as_micros() as u64
                    && service_us < 400_000
                    && service_us <= op.latency_us,
                "{case}: op {i} took {service_us} µs from its send, {} µs from its intended start",
                op.latency_us
            );
        }
        let summary = summarize(record, &[]);
        assert!(
            summary.total.latency.as_ref().expect("ok ops").max_us >= 700_000,
            "{case}"
        );
        if t0_ago.is_zero() {
            // The queue was the system's to impose, not the scheduler's lag.
            assert_generator_kept_up(&summary, &case);
        } else {
            // Ops dispatched 100 ms late: the generator, not the system, shaped the start.
            let reason = summary.invalid_reason.clone().unwrap_or_default();
            assert!(
                !summary.generator_valid && reason.contains("lag p99"),
                "{case}: {reason:?}"
            );
        }
        let live = ran.live.snapshot();
        assert_eq!(
            (live.in_flight, live.queued, live.ok),
            (0, 0, 100),
            "{case}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_recorded_per_op_by_kind() {
    // (server reply, or None for no server; op timeout; the label every op must get)
    let cases: [(Option<Reply>, u64, &str); 6] = [
        (Some(Reply::Status(503)), 1_000, "status:503"),
        (Some(Reply::Status(302)), 1_000, "status:302"),
        (Some(Reply::Hang), 150, "timeout"),
        (Some(Reply::Close), 1_000, "io"),
        (Some(Reply::Garbage), 1_000, "protocol"),
        (None, 1_000, "connect"),
    ];
    let mut runs = JoinSet::new();
    for (reply, timeout_ms, label) in cases {
        runs.spawn(async move {
            let server = match reply {
                Some(reply) => Some(serve(reply, None).await),
                None => None,
            };
            let refusing = reserved_port();
            let addr = server.as_ref().map_or_else(
                || SocketAddr::from(([127, 0, 0, 1], refusing.1)),
                |s| s.addr,
            );
            let plan = http_plan(
                addr,
                40.0,
                Duration::from_millis(250),
                16,
                Duration::from_millis(timeout_ms),
            );
            (reply, label, run(&plan, Duration::ZERO, None).await)
        });
    }
    while let Some(done) = runs.join_next().await {
        let (reply, label, ran) = done.expect("run task");
        let record = &ran.record;
        assert_eq!(record.ops.len(), 10, "{reply:?}");
        assert!(
            labels(record).iter().all(|l| l == label),
            "{reply:?}: {:?}",
            labels(record)
        );
        let summary = summarize(record, &[]);
        assert_eq!(
            summary.total.errors_by_kind,
            BTreeMap::from([(label.to_owned(), 10)]),
            "{reply:?}"
        );
        assert_eq!(summary.total.error_rate, 1.0, "{reply:?}");
        assert!(
            summary.total.latency.is_none(),
            "{reply:?}: latency is of ok ops only"
        );
        assert!(
            summary.error_samples.contains_key(label),
            "{reply:?}: {:?}",
            summary.error_samples
        );
        // An error answer still carries the service's tag.
        let tagged = summary.total.tags.values().sum::<u64>();
        assert_eq!(
            tagged,
            if matches!(reply, Some(Reply::Status(_))) {
                10
            } else {
                0
            },
            "{reply:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hard_deadline_bounds_a_workload_against_a_hung_server() {
    let server = serve(Reply::Hang, None).await;
    let op_timeout = Duration::from_millis(100);
    // One slot, 100 ms per (timed-out) op, 20 ops: only about half can get a slot in time.
    let plan = http_plan(server.addr, 50.0, Duration::from_millis(400), 1, op_timeout);
    let ran = run(&plan, Duration::ZERO, None).await;
    let deadline = plan.hard_deadline();
    assert!(
        ran.elapsed >= deadline,
        "returned at {:?}, before the deadline {deadline:?}",
        ran.elapsed
    );
    assert!(
        ran.elapsed < deadline + Duration::from_millis(400),
        "returned at {:?}",
        ran.elapsed
    );
    let record = &ran.record;
    assert_eq!(record.ops.len(), 20, "every dispatched op is recorded");
    let labels = labels(record);
    let timeouts = labels.iter().filter(|l| *l == "timeout").count();
    let abandoned = labels.iter().filter(|l| *l == "abandoned").count();
    assert_eq!(timeouts + abandoned, 20, "{labels:?}");
    assert!(
        (5..=11).contains(&timeouts),
        "{timeouts} timeouts: {labels:?}"
    );
    let deadline_us = deadline.as_micros() as u64;
    for op in record
        .ops
        .iter()
        .filter(|op| op.outcome.outcome() == Outcome::Error(ErrorKind::Abandoned))
    {
        assert!(
            op.latency_us + 1 >= deadline_us - op.intended_us,
            "abandoned op {op:?} ended before the deadline"
        );
    }
    assert_eq!(summarize(record, &[]).completed_ops, timeouts as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_stops_a_workload_promptly() {
    // (reply, cancel after; a 10 s workload each)
    let cases = [
        (Reply::Ok(Duration::ZERO), Duration::from_millis(300)),
        (Reply::Hang, Duration::from_millis(300)),
        (Reply::Ok(Duration::ZERO), Duration::ZERO),
    ];
    let mut runs = JoinSet::new();
    for (reply, after) in cases {
        runs.spawn(async move {
            let server = serve(reply, None).await;
            let plan = http_plan(
                server.addr,
                100.0,
                Duration::from_secs(10),
                64,
                Duration::from_secs(5),
            );
            (
                reply,
                after,
                run(&plan, Duration::from_millis(10), Some(after)).await,
            )
        });
    }
    while let Some(done) = runs.join_next().await {
        let (reply, after, ran) = done.expect("run task");
        let case = format!("{reply:?} cancelled after {after:?}");
        let record = &ran.record;
        assert!(
            ran.elapsed < after + Duration::from_millis(300),
            "{case}: took {:?}",
            ran.elapsed
        );
        let cancelled_at = record.cancelled_at_us.expect("cancellation recorded");
        assert!(
            record.ops.iter().all(|op| op.intended_us <= cancelled_at),
            "{case}"
        );
        // Ops intended every 10 ms from 10 ms on, until the cancel.
        let due = (after.as_millis() as u64).saturating_sub(10) / 10;
        assert!(
            record.dispatched_ops.abs_diff(due) <= 3,
            "{case}: dispatched {}",
            record.dispatched_ops
        );
        match reply {
            // Answered ops are recorded; hung ones are dropped unrecorded (they measure nothing).
            Reply::Hang => assert!(record.ops.is_empty(), "{case}"),
            _ => assert!(
                record.ops.len() as u64 + 3 >= record.dispatched_ops,
                "{case}"
            ),
        }
        let summary = summarize(record, &[]);
        assert!(summary.cancelled, "{case}");
        // Not dispatching after the cancel is not the generator falling behind.
        assert_generator_kept_up(&summary, &case);
        let live = ran.live.snapshot();
        assert_eq!(
            (live.in_flight, live.queued),
            (0, 0),
            "{case}: aborted ops left gauges up"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_plans_are_refused_with_the_field() {
    let base = http_plan(
        SocketAddr::from(([127, 0, 0, 1], 9)),
        10.0,
        Duration::from_secs(1),
        4,
        Duration::from_secs(1),
    );
    let redis = WorkloadPlan {
        kind: WorkloadKind::Redis {
            addr: SocketAddr::from(([127, 0, 0, 1], 9)),
            command: RedisCommand::Get,
            keyspace: 10,
            value_size: 10,
            sentinel: None,
        },
        ..base.clone()
    };
    let with_url = |url: &str| WorkloadPlan {
        kind: WorkloadKind::Http {
            url_template: url.into(),
            tag_header: None,
        },
        ..base.clone()
    };
    let cases: Vec<(&str, WorkloadPlan, &str)> = vec![
        (
            "zero rate",
            WorkloadPlan {
                rate_per_sec: 0.0,
                ..base.clone()
            },
            "rate_per_sec",
        ),
        (
            "NaN rate",
            WorkloadPlan {
                rate_per_sec: f64::NAN,
                ..base.clone()
            },
            "rate_per_sec",
        ),
        (
            "huge rate",
            WorkloadPlan {
                rate_per_sec: 1e9,
                ..base.clone()
            },
            "rate_per_sec",
        ),
        (
            "zero duration",
            WorkloadPlan {
                duration: Duration::ZERO,
                ..base.clone()
            },
            "duration",
        ),
        (
            "under one op",
            WorkloadPlan {
                duration: Duration::from_millis(50),
                ..base.clone()
            },
            "duration",
        ),
        (
            "too many ops",
            WorkloadPlan {
                rate_per_sec: 100_000.0,
                duration: Duration::from_secs(101),
                ..base.clone()
            },
            "duration",
        ),
        (
            "no slots",
            WorkloadPlan {
                max_in_flight: 0,
                ..base.clone()
            },
            "max_in_flight",
        ),
        (
            "zero timeout",
            WorkloadPlan {
                op_timeout: Duration::ZERO,
                ..base.clone()
            },
            "op_timeout",
        ),
        (
            "bad placeholder",
            with_url("http://127.0.0.1/{id}"),
            "url_template",
        ),
        ("tls", with_url("https://127.0.0.1/{n}"), "url_template"),
        (
            "bad header",
            WorkloadPlan {
                kind: WorkloadKind::Http {
                    url_template: "http://127.0.0.1/".into(),
                    tag_header: Some("a b".into()),
                },
                ..base.clone()
            },
            "tag_header",
        ),
        (
            "empty keyspace",
            WorkloadPlan {
                kind: WorkloadKind::Redis {
                    addr: SocketAddr::from(([127, 0, 0, 1], 9)),
                    command: RedisCommand::Get,
                    keyspace: 0,
                    value_size: 1,
                    sentinel: None,
                },
                ..redis.clone()
            },
            "keyspace",
        ),
    ];
    for (name, plan, field) in cases {
        let (_stop, cancel) = watch::channel(false);
        let result = run_workload(
            &plan,
            Instant::now(),
            Duration::ZERO,
            cancel,
            Arc::new(LiveStats::new()),
        )
        .await;
        match result {
            Err(LoadError::InvalidPlan { field: got, .. }) => assert_eq!(got, field, "{name}"),
            other => panic!("{name}: expected an invalid `{field}`, got {other:?}"),
        }
    }
    assert!(base.validate().is_ok() && redis.validate().is_ok());
}

// ---------------------------------------------------------------------------------------------
// Redis, against a real redis-server.

struct RedisServer {
    child: Child,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // By pid: this child only.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn redis_server_binary() -> std::path::PathBuf {
    let fixed = std::path::PathBuf::from("/usr/bin/redis-server");
    if fixed.exists() {
        return fixed;
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("redis-server"))
                .find(|p| p.exists())
        })
        .unwrap_or_else(|| {
            panic!("`redis-server` not found in /usr/bin or PATH (hint: run `cargo xtask deps`)")
        })
}

async fn start_redis(port: u16) -> RedisServer {
    let child = Command::new(redis_server_binary())
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--daemonize", "no", "--logfile", ""])
        .arg("--dir")
        .arg(std::env::temp_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start redis-server: {e}"));
    let server = RedisServer { child };
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "redis-server did not listen on port {port} within 5 s"
        );
        sleep(Duration::from_millis(10)).await;
    }
    server
}

fn redis_plan(
    port: u16,
    command: RedisCommand,
    rate: f64,
    duration: Duration,
    op_timeout: Duration,
) -> WorkloadPlan {
    WorkloadPlan {
        name: "redis-test".into(),
        kind: WorkloadKind::Redis {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            command,
            keyspace: 10,
            value_size: 32,
            sentinel: None,
        },
        rate_per_sec: rate,
        duration,
        max_in_flight: 32,
        op_timeout,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_set_get_workload_against_a_real_server() {
    let (_reservation, port) = reserved_port();
    let _server = start_redis(port).await;
    let plan = redis_plan(
        port,
        RedisCommand::SetGet,
        200.0,
        Duration::from_secs(1),
        Duration::from_secs(1),
    );
    let ran = run(&plan, Duration::ZERO, None).await;
    let record = &ran.record;
    assert_eq!(record.ops.len(), 200);
    assert!(
        labels(record).iter().all(|l| l == "ok"),
        "{:?} {:?}",
        labels(record),
        record.error_samples
    );
    let summary = summarize(record, &[]);
    let tag = |name: &str| summary.total.tags.get(name).copied().unwrap_or(0);
    assert_eq!(tag("hit") + tag("miss"), 100, "every GET is tagged");
    assert!(
        tag("hit") >= 90,
        "GETs follow their SET on the same connection: {:?}",
        summary.total.tags
    );
    assert_generator_kept_up(&summary, "redis");

    // What the workload wrote is really there.
    let client = redis::Client::open(("127.0.0.1".to_owned(), port)).expect("redis client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the test redis");
    let value: Vec<u8> = redis::cmd("GET")
        .arg("faultline:3")
        .query_async(&mut conn)
        .await
        .expect("GET");
    assert_eq!(value, vec![b'x'; 32]);
    let keys: u64 = redis::cmd("DBSIZE")
        .query_async(&mut conn)
        .await
        .expect("DBSIZE");
    assert_eq!(keys, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_start_is_measured_then_reconnected() {
    let (_reservation, port) = reserved_port();
    let up_at = Duration::from_millis(500);
    let starter = tokio::spawn(async move {
        sleep(up_at).await;
        start_redis(port).await
    });
    let plan = redis_plan(
        port,
        RedisCommand::Set,
        100.0,
        Duration::from_millis(1800),
        Duration::from_millis(200),
    );
    let ran = run(&plan, Duration::ZERO, None).await;
    let _server = starter.await.expect("redis starter");
    let record = &ran.record;
    assert_eq!(
        record.ops.len(),
        180,
        "a down server costs errors, not the run"
    );
    let up_at_us = up_at.as_micros() as u64;
    let outcomes = |from_us: u64, to_us: u64| -> Vec<String> {
        record
            .ops
            .iter()
            .zip(labels(record))
            .filter(|(op, _)| (from_us..to_us).contains(&op.intended_us))
            .map(|(_, label)| label)
            .collect()
    };
    let before = outcomes(0, up_at_us - 50_000);
    assert!(
        !before.is_empty() && before.iter().all(|l| l == "connect"),
        "{before:?}"
    );
    // Backoff is capped at 1 s per slot, so within ~1 s of the server coming up all ops succeed.
    let after = outcomes(up_at_us + 1_100_000, u64::MAX);
    assert!(
        !after.is_empty() && after.iter().all(|l| l == "ok"),
        "{after:?}"
    );
    assert!(
        record
            .error_samples
            .contains_key(&OutcomeCode::from(Outcome::Error(ErrorKind::Connect)))
    );
}

// ---------------------------------------------------------------------------------------------
// summarize(), over synthetic records.

fn op(intended_ms: u64, latency_ms: u64, outcome: Outcome, tag: u8) -> OpRecord {
    OpRecord {
        intended_us: intended_ms * 1_000,
        latency_us: latency_ms * 1_000,
        outcome: OutcomeCode::from(outcome),
        tag,
        service_us: 0,
    }
}

const OK: Outcome = Outcome::Ok;
const TIMEOUT: Outcome = Outcome::Error(ErrorKind::Timeout);
const S503: Outcome = Outcome::Error(ErrorKind::Status(503));
const ABANDONED: Outcome = Outcome::Error(ErrorKind::Abandoned);

/// A synthetic record: `rate` ops/s from t0 + 0 for `duration_ms`, with the given ops and lags.
struct Synthetic {
    rate: f64,
    duration_ms: u64,
    dispatched: Option<u64>,
    cancelled_at_ms: Option<u64>,
    lags_us: Vec<u64>,
    ops: Vec<OpRecord>,
}

impl Synthetic {
    fn new(rate: f64, duration_ms: u64, ops: Vec<OpRecord>) -> Synthetic {
        Synthetic {
            rate,
            duration_ms,
            dispatched: None,
            cancelled_at_ms: None,
            lags_us: vec![500],
            ops,
        }
    }

    fn record(self) -> WorkloadRecord {
        let mut sched_lag = latency_histogram();
        for lag in &self.lags_us {
            sched_lag.saturating_record(*lag);
        }
        let intended_ops = (self.rate * self.duration_ms as f64 / 1e3).floor() as u64;
        WorkloadRecord {
            plan_name: "synthetic".into(),
            rate_per_sec: self.rate,
            ops: self.ops,
            tags: vec![String::new(), "live".into(), "fallback-open".into()],
            error_samples: BTreeMap::new(),
            sched_lag,
            intended_ops,
            dispatched_ops: self.dispatched.unwrap_or(intended_ops),
            started_us: 0,
            schedule_end_us: self.duration_ms * 1_000,
            ended_us: self.duration_ms * 1_000 + 100_000,
            cancelled_at_us: self.cancelled_at_ms.map(|ms| ms * 1_000),
            counters: Default::default(),
        }
    }
}

/// (ops, errors, p99 ms of ok ops) of one window.
type Brief = (u64, u64, Option<u64>);
/// (name, record, phases, expected digest, fragments of invalid_reason)
type SummaryCase = (
    &'static str,
    Synthetic,
    Vec<PhaseWindow>,
    Digest,
    Vec<String>,
);
/// (rate, duration ms, cancelled at ms, ops as (intended ms, outcome), expected achieved rate)
type RateCase = (f64, u64, Option<u64>, &'static [(u64, Outcome)], f64);

/// The parts of a summary the cases pin down.
#[derive(Debug, PartialEq)]
struct Digest {
    valid: bool,
    /// (ops, errors, p99 ms of ok ops) in total, per second, per phase.
    total: Brief,
    per_second: Vec<Brief>,
    phases: Vec<(String, Brief)>,
    tags: Vec<(String, u64)>,
    errors_by_kind: Vec<(String, u64)>,
    completed: u64,
}

impl Digest {
    /// A run in which no op completed (one empty per-second window), valid or not.
    fn no_ops(valid: bool) -> Digest {
        Digest {
            valid,
            total: (0, 0, None),
            per_second: vec![(0, 0, None)],
            phases: vec![],
            tags: vec![],
            errors_by_kind: vec![],
            completed: 0,
        }
    }
}

fn brief(stats: &WindowStats) -> Brief {
    (
        stats.ops,
        stats.errors,
        stats.latency.as_ref().map(|l| l.p99_us / 1_000),
    )
}

fn digest(summary: &WorkloadSummary) -> Digest {
    Digest {
        valid: summary.generator_valid,
        total: brief(&summary.total),
        per_second: summary.per_second.iter().map(brief).collect(),
        phases: summary
            .phases
            .iter()
            .map(|(name, stats)| (name.clone(), brief(stats)))
            .collect(),
        tags: summary
            .total
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        errors_by_kind: summary
            .total
            .errors_by_kind
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        completed: summary.completed_ops,
    }
}

fn phases_ms(phases: &[(&str, u64, u64)]) -> Vec<PhaseWindow> {
    phases
        .iter()
        .map(|(name, from, to)| PhaseWindow {
            name: (*name).into(),
            from_us: from * 1_000,
            to_us: to * 1_000,
        })
        .collect()
}

fn strings(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

#[test]
fn summaries_of_synthetic_records() {
    // Validity cases derive from the thresholds, so they hold whatever values those are tuned to.
    let floor = MIN_SCHED_LAG_LIMIT_US;
    let slow_rate = 1e6 * MAX_SCHED_LAG_INTERVAL_FRACTION / (4 * floor) as f64;
    let ms = |us: u64| format!("{:.2} ms", us as f64 / 1e3);
    // A valid record without ops, `seconds` long.
    let empty = |seconds: usize| Digest {
        valid: true,
        total: (0, 0, None),
        per_second: vec![(0, 0, None); seconds],
        phases: vec![],
        tags: vec![],
        errors_by_kind: vec![],
        completed: 0,
    };
    let three_phases = [
        ("before", 0, 1_000),
        ("during", 1_000, 2_000),
        ("after", 2_000, 3_000),
    ];
    let cases: Vec<SummaryCase> = vec![
        (
            "ops belong to the phase of their intended start, however late they finish",
            Synthetic::new(
                2.0,
                3_000,
                vec![
                    op(0, 5, OK, 1),
                    op(500, 10, OK, 1),
                    op(999, 1_500, OK, 2),
                    op(1_000, 900, OK, 2),
                    op(1_500, 1_200, TIMEOUT, 0),
                    op(2_000, 7, OK, 1),
                    op(2_500, 8, S503, 2),
                ],
            ),
            phases_ms(&three_phases),
            Digest {
                valid: true,
                total: (7, 2, Some(1_500)),
                per_second: vec![(3, 0, Some(1_500)), (2, 1, Some(900)), (2, 1, Some(7))],
                phases: vec![
                    ("before".into(), (3, 0, Some(1_500))),
                    ("during".into(), (2, 1, Some(900))),
                    ("after".into(), (2, 1, Some(7))),
                ],
                tags: strings(&[("fallback-open", 3), ("live", 3)]),
                errors_by_kind: strings(&[("status:503", 1), ("timeout", 1)]),
                completed: 7,
            },
            vec![],
        ),
        (
            "a partial last second, overlapping and empty phases, abandoned ops",
            Synthetic::new(
                2.0,
                2_500,
                vec![
                    op(0, 1, OK, 0),
                    op(1_200, 2, ABANDONED, 0),
                    op(2_400, 3, OK, 0),
                ],
            ),
            phases_ms(&[
                ("all", 0, 10_000),
                ("overlap", 1_000, 2_500),
                ("empty", 5_000, 6_000),
            ]),
            Digest {
                valid: true,
                total: (3, 1, Some(3)),
                per_second: vec![(1, 0, Some(1)), (1, 1, None), (1, 0, Some(3))],
                phases: vec![
                    ("all".into(), (3, 1, Some(3))),
                    ("overlap".into(), (2, 1, Some(3))),
                    ("empty".into(), (0, 0, None)),
                ],
                tags: vec![],
                errors_by_kind: strings(&[("abandoned", 1)]),
                completed: 2,
            },
            vec![],
        ),
        (
            "the generator dispatched too few ops",
            Synthetic {
                dispatched: Some(90),
                ..Synthetic::new(100.0, 1_000, vec![])
            },
            vec![],
            Digest::no_ops(false),
            vec!["dispatched 90 of 100 intended ops (90.0%, below the 95% floor)".into()],
        ),
        (
            "95% dispatched is enough",
            Synthetic {
                dispatched: Some(95),
                ..Synthetic::new(100.0, 1_000, vec![])
            },
            vec![],
            Digest::no_ops(true),
            vec![],
        ),
        (
            "scheduler lag above the floor at 200/s (where 10% of the gap is only 0.5 ms)",
            Synthetic {
                lags_us: vec![floor + 2_000; 10],
                ..Synthetic::new(200.0, 1_000, vec![])
            },
            vec![],
            Digest {
                valid: false,
                ..empty(1)
            },
            vec![
                "the scheduler's lag p99 was".into(),
                format!("above the {} limit", ms(floor)),
                "10% of the 5.00 ms inter-arrival time".into(),
            ],
        ),
        (
            "the same lag is fine at a rate where 10% of the gap is 4x the floor",
            Synthetic {
                lags_us: vec![floor + 2_000; 10],
                ..Synthetic::new(slow_rate, 10_000, vec![])
            },
            vec![],
            empty(10),
            vec![],
        ),
        (
            "at that rate a lag above 10% of the gap is not",
            Synthetic {
                lags_us: vec![5 * floor; 10],
                ..Synthetic::new(slow_rate, 10_000, vec![])
            },
            vec![],
            Digest {
                valid: false,
                ..empty(10)
            },
            vec![format!("above the {} limit", ms(4 * floor))],
        ),
        (
            "a cancelled run is judged on what was due before the cancel (1.3 s at 20/s: 26)",
            Synthetic {
                dispatched: Some(26),
                cancelled_at_ms: Some(1_300),
                ..Synthetic::new(
                    20.0,
                    10_000,
                    (0..26).map(|i| op(i * 50, 2, OK, 0)).collect(),
                )
            },
            vec![],
            Digest {
                valid: true,
                total: (26, 0, Some(2)),
                per_second: vec![(20, 0, Some(2)), (6, 0, Some(2))],
                phases: vec![],
                tags: vec![],
                errors_by_kind: vec![],
                completed: 26,
            },
            vec![],
        ),
        (
            "an op due just before the cancel, within the allowed lag, is not missed",
            Synthetic {
                dispatched: Some(0),
                cancelled_at_ms: Some(3),
                ..Synthetic::new(10.0, 10_000, vec![])
            },
            vec![],
            Digest::no_ops(true),
            vec![],
        ),
        (
            "a cancelled run that fell behind before the cancel",
            Synthetic {
                dispatched: Some(20),
                cancelled_at_ms: Some(1_300),
                ..Synthetic::new(
                    20.0,
                    10_000,
                    (0..20).map(|i| op(i * 50, 2, OK, 0)).collect(),
                )
            },
            vec![],
            Digest {
                valid: false,
                total: (20, 0, Some(2)),
                per_second: vec![(20, 0, Some(2)), (0, 0, None)],
                phases: vec![],
                tags: vec![],
                errors_by_kind: vec![],
                completed: 20,
            },
            vec!["dispatched 20 of 26 intended ops".into()],
        ),
        (
            "unsorted ops are attributed all the same",
            Synthetic::new(
                3.0,
                1_000,
                vec![op(600, 4, OK, 1), op(0, 2, OK, 1), op(300, 3, OK, 1)],
            ),
            phases_ms(&[("first-half", 0, 500)]),
            Digest {
                valid: true,
                total: (3, 0, Some(4)),
                per_second: vec![(3, 0, Some(4))],
                phases: vec![("first-half".into(), (2, 0, Some(3)))],
                tags: strings(&[("live", 3)]),
                errors_by_kind: vec![],
                completed: 3,
            },
            vec![],
        ),
    ];
    for (name, synthetic, phases, want, reason) in cases {
        let record = synthetic.record();
        let summary = summarize(&record, &phases);
        assert_eq!(digest(&summary), want, "{name}");
        let got_reason = summary.invalid_reason.clone().unwrap_or_default();
        assert_eq!(
            summary.invalid_reason.is_some(),
            !reason.is_empty(),
            "{name}: {got_reason}"
        );
        for fragment in reason {
            assert!(
                got_reason.contains(&fragment),
                "{name}: {got_reason:?} lacks {fragment:?}"
            );
        }
        // Deterministic, and the journal can carry it (floats compared by digest: serde_json's
        // default float parsing may differ in the last bit).
        assert_eq!(
            summarize(&record, &phases),
            summary,
            "{name}: not deterministic"
        );
        let json = serde_json::to_string(&summary).unwrap_or_else(|e| panic!("{name}: {e}"));
        let back: WorkloadSummary =
            serde_json::from_str(&json).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(digest(&back), digest(&summary), "{name}: JSON round trip");
    }
}

#[test]
fn achieved_rate_counts_completed_ops_per_active_second() {
    let cases: [RateCase; 4] = [
        (
            4.0,
            1_000,
            None,
            &[(0, OK), (250, OK), (500, TIMEOUT), (750, OK)],
            4.0,
        ),
        (
            4.0,
            1_000,
            None,
            &[(0, OK), (250, OK), (500, ABANDONED), (750, ABANDONED)],
            2.0,
        ),
        (4.0, 2_000, Some(500), &[(0, OK), (250, OK)], 4.0),
        (4.0, 1_000, Some(0), &[], 0.0),
    ];
    for (rate, duration_ms, cancelled_at_ms, ops, expected) in cases {
        let ops = ops
            .iter()
            .map(|(at, outcome)| op(*at, 1, *outcome, 0))
            .collect();
        let record = Synthetic {
            cancelled_at_ms,
            ..Synthetic::new(rate, duration_ms, ops)
        }
        .record();
        let summary = summarize(&record, &[]);
        assert_eq!(
            summary.achieved_rate, expected,
            "{rate}/s {duration_ms} ms cancelled {cancelled_at_ms:?}"
        );
        assert!(summary.total.error_rate.is_finite());
    }
}

#[test]
fn latency_histogram_bounds_are_valid() {
    let mut histogram = latency_histogram();
    histogram.saturating_record(0);
    histogram.saturating_record(u64::MAX);
    assert_eq!(histogram.len(), 2);
}
