//! The live view of a run: on a terminal, one status line redrawn every second with events
//! printed above it; elsewhere (CI logs, pipes), plain lines, with a status line every 5 s.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use faultline::events::{Progress, RunEvent, Tick};
use faultline::units::format_duration;

pub struct LiveView {
    tty: bool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    status_shown: bool,
    last_plain_tick: Option<Duration>,
}

/// How often a status line is printed when not on a terminal.
const PLAIN_TICK_EVERY: Duration = Duration::from_secs(5);

impl LiveView {
    pub fn new() -> Self {
        Self {
            tty: std::io::stderr().is_terminal(),
            state: Mutex::new(State::default()),
        }
    }

    /// Clears the status line so the summary that follows starts clean.
    pub fn finish(&self) {
        if let Ok(mut state) = self.state.lock()
            && state.status_shown
        {
            eprint!("\r\x1b[2K");
            state.status_shown = false;
        }
    }

    fn line(&self, text: &str) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let mut err = std::io::stderr().lock();
        if state.status_shown {
            let _ = write!(err, "\r\x1b[2K");
            state.status_shown = false;
        }
        let _ = writeln!(err, "{text}");
    }

    fn tick(&self, tick: &Tick) {
        let status = status_line(tick);
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{status}");
            let _ = err.flush();
            state.status_shown = true;
        } else if state
            .last_plain_tick
            .is_none_or(|last| tick.elapsed >= last + PLAIN_TICK_EVERY)
        {
            state.last_plain_tick = Some(tick.elapsed);
            let _ = writeln!(err, "{status}");
        }
    }
}

fn status_line(tick: &Tick) -> String {
    let mut parts = vec![format!(
        "[{:>5} / {}] {:<6}",
        format_duration(Duration::from_secs(tick.elapsed.as_secs())),
        format_duration(tick.total),
        tick.phase
    )];
    for w in &tick.workloads {
        parts.push(format!(
            "{}: {:.0}/s ok {} err {} p99 {}",
            w.name,
            w.rate,
            w.ok,
            w.errors,
            format_duration(Duration::from_millis(w.p99.as_millis() as u64))
        ));
    }
    if !tick.active_faults.is_empty() {
        parts.push(format!("faults: {}", tick.active_faults.join(", ")));
    }
    parts.join(" | ")
}

impl Progress for LiveView {
    fn event(&self, event: RunEvent) {
        match event {
            RunEvent::Tick(tick) => self.tick(&tick),
            RunEvent::Stage(stage) => self.line(&format!("== {}", stage.name())),
            RunEvent::NodeReady { node, after } => {
                self.line(&format!("   ready: {node} in {}", format_duration(after)))
            }
            RunEvent::FaultApplied { name, at, target } => self.line(&format!(
                "   +{}: fault `{name}` applied to {target}",
                format_duration(at)
            )),
            RunEvent::FaultHealed { name, at } => self.line(&format!(
                "   +{}: fault `{name}` healed",
                format_duration(at)
            )),
            RunEvent::FaultError { name, error } => {
                self.line(&format!("   fault `{name}` failed: {error}"))
            }
            RunEvent::BreakerTransition {
                service,
                breaker,
                to,
                at,
            } => self.line(&format!(
                "   +{}: {service} breaker `{breaker}` -> {to}",
                format_duration(at)
            )),
            RunEvent::Note(text) => self.line(&format!("   {text}")),
        }
    }
}
