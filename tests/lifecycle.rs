//! Nothing is left behind: after a run that completes, one interrupted by SIGINT or SIGTERM while
//! faults are active, and one SIGKILLed (followed by `faultline lab clean`), no lab namespace and
//! no node process remains, and interrupted runs still write a journal that says so.
//!
//! Each run keeps its intent log (FAULTLINE_KEEP_LAB) in a private state dir, so the test knows
//! exactly which namespace and which processes the run made.

use faultline_tests::{built_binary, workspace_root};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const EXPERIMENT: &str = "tests/fixtures/experiments/lifecycle.yaml";
/// Printed by the live view once the last fault of the schedule is in effect.
const ALL_FAULTS_ACTIVE: &str = "fault `dead-cache` applied";

#[derive(Clone, Copy, Debug)]
enum Ending {
    Completes,
    Signal(Signal),
    KilledThenCleaned,
}

struct Outcome {
    code: Option<i32>,
    stderr: String,
    out: PathBuf,
    /// What the run's intent log recorded, read as soon as it exited.
    labs: Vec<(String, Vec<(u32, u64)>)>,
}

fn run(name: &str, ending: Ending) -> Outcome {
    let base =
        std::env::temp_dir().join(format!("faultline-lifecycle-{}-{name}", std::process::id()));
    let (state, out) = (base.join("state"), base.join("out"));
    let _ = std::fs::remove_dir_all(&base);
    let mut child = Command::new(built_binary("faultline"))
        .args(["run", EXPERIMENT, "--out", out.to_str().unwrap_or_default()])
        .current_dir(workspace_root())
        .env("FAULTLINE_STATE_DIR", &state)
        .env("FAULTLINE_KEEP_LAB", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("faultline starts");
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    if !matches!(ending, Ending::Completes) {
        // Wait (bounded) until every fault is active, then interrupt.
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(ALL_FAULTS_ACTIVE) => break,
                Ok(_) => continue,
                Err(_) => panic!("{name}: faults never became active"),
            }
        }
        let signal = match ending {
            Ending::Signal(signal) => signal,
            _ => Signal::SIGKILL,
        };
        kill(Pid::from_raw(child.id() as i32), signal).expect("signal delivered");
    }
    let status = child.wait().expect("faultline exits");
    let stderr = reader.join().unwrap_or_default();
    let labs = recorded(&state);
    if matches!(ending, Ending::KilledThenCleaned) {
        assert!(
            labs.iter().any(|(ns, _)| netns_exists(ns)),
            "{name}: a SIGKILLed run should leave its namespace for `lab clean`"
        );
        let clean = Command::new(built_binary("faultline"))
            .args(["lab", "clean"])
            .env("FAULTLINE_STATE_DIR", &state)
            .output()
            .expect("lab clean runs");
        assert_eq!(
            clean.status.code(),
            Some(0),
            "{name}: lab clean failed: {}",
            String::from_utf8_lossy(&clean.stderr)
        );
    }
    Outcome {
        code: status.code(),
        stderr,
        out,
        labs,
    }
}

/// (netns, [(pid, start_time)]) recorded by every lab under `state`.
fn recorded(state: &Path) -> Vec<(String, Vec<(u32, u64)>)> {
    let mut labs = Vec::new();
    for lab in std::fs::read_dir(state.join("labs"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(text) = std::fs::read_to_string(lab.path().join("intent.jsonl")) else {
            continue;
        };
        let mut netns = String::new();
        let mut processes = Vec::new();
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            match v["op"].as_str() {
                Some("netns") => netns = v["name"].as_str().unwrap_or_default().to_string(),
                Some("process") => processes.push((
                    v["pid"].as_u64().unwrap_or(0) as u32,
                    v["start_time"].as_u64().unwrap_or(0),
                )),
                _ => {}
            }
        }
        labs.push((netns, processes));
    }
    labs
}

/// Running (not a zombie) and still the same process (start time matches).
fn process_alive(pid: u32, start_time: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // Fields after `(comm)`, which may contain spaces: state is field 3, start time field 22.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let dead = matches!(fields.first(), Some(&"Z") | Some(&"X"));
    !dead && fields.get(19).and_then(|f| f.parse::<u64>().ok()) == Some(start_time)
}

/// Orphans of a SIGKILLed harness are reparented to the nearest subreaper; make this test process
/// one, so it can reap them (on machines whose PID 1 never reaps, they would stay zombies).
fn become_subreaper() {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) only sets a flag on this process.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

fn reap_orphans() {
    use nix::sys::wait::{WaitPidFlag, waitpid};
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == nix::sys::wait::WaitStatus::StillAlive {
            break;
        }
    }
}

fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

fn assert_nothing_left(outcome: &Outcome, name: &str) {
    assert!(
        !outcome.labs.is_empty(),
        "{name}: no intent log was recorded"
    );
    for (netns, processes) in &outcome.labs {
        assert!(!netns.is_empty(), "{name}: intent log names no namespace");
        assert!(
            !netns_exists(netns),
            "{name}: namespace `{netns}` was left behind"
        );
        assert!(
            processes.len() >= 4,
            "{name}: expected the lab's node processes in the intent log, got {processes:?}"
        );
        for &(pid, start) in processes {
            assert!(
                !process_alive(pid, start),
                "{name}: node process {pid} was left running"
            );
        }
    }
}

fn journal(outcome: &Outcome) -> serde_json::Value {
    let text = std::fs::read_to_string(outcome.out.join("journal.json"))
        .unwrap_or_else(|e| panic!("no journal: {e}\n{}", outcome.stderr));
    serde_json::from_str(&text).expect("journal is JSON")
}

#[test]
fn completed_run_leaves_nothing() {
    let outcome = run("completes", Ending::Completes);
    assert!(
        matches!(outcome.code, Some(0) | Some(1)),
        "exit {:?}\n{}",
        outcome.code,
        outcome.stderr
    );
    assert_nothing_left(&outcome, "completes");
    let journal = journal(&outcome);
    let healed = journal["events"].as_array().map_or(0, |e| {
        e.iter().filter(|e| e["kind"] == "fault_healed").count()
    });
    assert_eq!(
        healed, 4,
        "every fault heals by itself: {}",
        journal["events"]
    );
}

#[test]
fn interrupted_runs_heal_faults_and_leave_nothing() {
    for (name, signal) in [("sigint", Signal::SIGINT), ("sigterm", Signal::SIGTERM)] {
        let outcome = run(name, Ending::Signal(signal));
        assert_eq!(
            outcome.code,
            Some(3),
            "{name}: interrupted runs exit 3\n{}",
            outcome.stderr
        );
        assert_nothing_left(&outcome, name);
        let journal = journal(&outcome);
        assert!(
            journal["run"]["error"]
                .as_str()
                .unwrap_or_default()
                .contains("cancelled"),
            "{name}: {}",
            journal["run"]
        );
        let healed: Vec<_> = journal["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["kind"] == "fault_healed")
            .collect();
        assert_eq!(
            healed.len(),
            4,
            "{name}: every active fault is healed on interruption: {}",
            journal["events"]
        );
    }
}

#[test]
fn sigkilled_run_is_cleaned_by_lab_clean() {
    become_subreaper();
    let outcome = run("sigkill", Ending::KilledThenCleaned);
    reap_orphans();
    assert_eq!(outcome.code, None, "SIGKILL leaves no exit code");
    assert_nothing_left(&outcome, "sigkill");
}
