//! Live counters for a progress line while a workload runs. Never used for verdicts: those come
//! from the recorded ops after the run (see `summary`), so this view may be approximate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::latency_histogram;

/// Shared by the scheduler and every op task; one per workload, or one per run if the caller
/// wants totals (everything here is additive).
#[derive(Debug)]
pub struct LiveStats {
    ok: AtomicU64,
    errors: AtomicU64,
    in_flight: AtomicU64,
    queued: AtomicU64,
    base: Instant,
    recent: Mutex<Recent>,
}

/// A point-in-time view for a progress line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveSnapshot {
    pub ok: u64,
    pub errors: u64,
    /// Ops holding an in-flight slot (executing).
    pub in_flight: u64,
    /// Ops dispatched but waiting for an in-flight slot.
    pub queued: u64,
    /// Completions (ok or error) during the last full second.
    pub recent_rate: f64,
    /// p99 latency of ok ops completed during the last full second (the current, partial second
    /// when no full one has data yet); `None` when there is none.
    pub recent_p99_us: Option<u64>,
}

/// Two one-second histograms: `current` fills, `previous` is the last full second. Rotating is a
/// swap and a reset, so the lock is held for O(1) per completion.
///
/// Invariant: `previous` holds completions of second `second - 1` only, `current` of `second`.
#[derive(Debug)]
struct Recent {
    second: u64,
    current: Histogram<u64>,
    current_count: u64,
    previous: Histogram<u64>,
    previous_count: u64,
}

impl Recent {
    fn roll_to(&mut self, second: u64) {
        if second <= self.second {
            return;
        }
        if second == self.second + 1 {
            std::mem::swap(&mut self.current, &mut self.previous);
            self.previous_count = self.current_count;
        } else {
            // A silent gap: the last full second saw nothing.
            self.previous.reset();
            self.previous_count = 0;
        }
        self.current.reset();
        self.current_count = 0;
        self.second = second;
    }
}

impl Default for LiveStats {
    fn default() -> Self {
        LiveStats::new()
    }
}

impl LiveStats {
    pub fn new() -> LiveStats {
        LiveStats {
            ok: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            base: Instant::now(),
            recent: Mutex::new(Recent {
                second: 0,
                current: latency_histogram(),
                current_count: 0,
                previous: latency_histogram(),
                previous_count: 0,
            }),
        }
    }

    pub fn snapshot(&self) -> LiveSnapshot {
        self.snapshot_at(self.second_now())
    }

    fn snapshot_at(&self, second: u64) -> LiveSnapshot {
        let (recent_rate, recent_p99_us) = {
            let mut recent = self.lock_recent();
            recent.roll_to(second);
            let window = if recent.previous_count > 0 || recent.current.is_empty() {
                &recent.previous
            } else {
                &recent.current
            };
            let p99 =
                (!window.is_empty()).then(|| window.value_at_quantile(0.99).min(window.max()));
            (recent.previous_count as f64, p99)
        };
        LiveSnapshot {
            ok: self.ok.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            queued: self.queued.load(Ordering::Relaxed),
            recent_rate,
            recent_p99_us,
        }
    }

    pub(crate) fn complete(&self, ok: bool, latency_us: u64) {
        self.complete_in(self.second_now(), ok, latency_us);
    }

    /// `complete` for an op that ended at `done` (saves reading the clock again).
    pub(crate) fn complete_at(&self, done: Instant, ok: bool, latency_us: u64) {
        let second = done.saturating_duration_since(self.base).as_secs();
        self.complete_in(second, ok, latency_us);
    }

    fn complete_in(&self, second: u64, ok: bool, latency_us: u64) {
        let counter = if ok { &self.ok } else { &self.errors };
        counter.fetch_add(1, Ordering::Relaxed);
        let mut recent = self.lock_recent();
        recent.roll_to(second);
        recent.current_count += 1;
        if ok {
            recent.current.saturating_record(latency_us);
        }
    }

    /// Ops due but not yet sent: the dispatcher's backlog while it waits for an in-flight slot.
    pub(crate) fn set_queued(&self, n: u64) {
        self.queued.store(n, Ordering::Relaxed);
    }

    /// Counts an op as in flight until the guard drops.
    pub(crate) fn running(&self) -> Gauge<'_> {
        Gauge::enter(&self.in_flight)
    }

    fn second_now(&self) -> u64 {
        self.base.elapsed().as_secs()
    }

    fn lock_recent(&self) -> MutexGuard<'_, Recent> {
        // A histogram left half-updated by a panic is still a valid histogram.
        self.recent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Increments a gauge now and decrements it on drop, so aborted ops cannot leak counts.
#[derive(Debug)]
pub(crate) struct Gauge<'a>(&'a AtomicU64);

impl<'a> Gauge<'a> {
    fn enter(gauge: &'a AtomicU64) -> Gauge<'a> {
        gauge.fetch_add(1, Ordering::Relaxed);
        Gauge(gauge)
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (second, ok, latency_us) completions, then a snapshot at `at`.
    fn snapshot_after(completions: &[(u64, bool, u64)], at: u64) -> LiveSnapshot {
        let live = LiveStats::new();
        for &(second, ok, latency_us) in completions {
            live.complete_in(second, ok, latency_us);
        }
        live.snapshot_at(at)
    }

    /// (name, completions as (second, ok, latency µs), snapshot second, rate, p99 µs)
    type Case = (&'static str, Vec<(u64, bool, u64)>, u64, f64, Option<u64>);

    #[test]
    fn recent_view_reports_the_last_full_second() {
        let slow_second_1: Vec<_> = (0..100)
            .map(|i| (1, true, if i < 98 { 1_000 } else { 50_000 }))
            .collect();
        let cases: Vec<Case> = vec![
            ("nothing yet", vec![], 0, 0.0, None),
            (
                "partial first second falls back to current",
                vec![(0, true, 700)],
                0,
                0.0,
                Some(700),
            ),
            (
                "full second",
                vec![(0, true, 700), (0, false, 9_000), (1, true, 5)],
                1,
                2.0,
                Some(700),
            ),
            (
                "p99 of the last second",
                slow_second_1,
                2,
                100.0,
                Some(50_000),
            ),
            (
                "a gap forgets old seconds",
                vec![(0, true, 700)],
                5,
                0.0,
                None,
            ),
            (
                "errors count in rate, not latency",
                vec![(3, false, 1), (3, false, 1)],
                4,
                2.0,
                None,
            ),
        ];
        for (name, completions, at, rate, p99) in cases {
            let snapshot = snapshot_after(&completions, at);
            assert_eq!(snapshot.recent_rate, rate, "{name}: rate");
            let p99_ok = match (snapshot.recent_p99_us, p99) {
                // hdr rounds to 3 significant digits
                (Some(got), Some(want)) => got.abs_diff(want) <= want / 500,
                (got, want) => got == want,
            };
            assert!(
                p99_ok,
                "{name}: p99 {:?}, expected {p99:?}",
                snapshot.recent_p99_us
            );
            let oks = completions.iter().filter(|c| c.1).count() as u64;
            assert_eq!(
                (snapshot.ok, snapshot.errors),
                (oks, completions.len() as u64 - oks),
                "{name}"
            );
        }
    }

    #[test]
    fn gauges_return_to_zero_when_guards_drop() {
        let live = LiveStats::new();
        live.set_queued(1);
        let running = [live.running(), live.running()];
        let snapshot = live.snapshot();
        assert_eq!((snapshot.queued, snapshot.in_flight), (1, 2));
        live.set_queued(0);
        drop(running);
        let snapshot = live.snapshot();
        assert_eq!((snapshot.queued, snapshot.in_flight), (0, 0));
    }
}
