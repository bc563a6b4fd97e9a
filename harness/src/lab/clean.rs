//! `faultline lab clean`: undoes what killed runs left behind, from their intent logs, and
//! deletes `faultline-*` namespaces nobody owns.
//!
//! A lab is left alone when its owner is alive: its lock (`/run/faultline/locks/<netns>.lock`)
//! is held, or its recorded harness pid still runs with the recorded start time.
//! Undoing a lab means: SIGKILL its recorded processes (only while their `/proc` start time still
//! matches: a reused pid is never killed), SIGKILL whatever else still runs in its namespace,
//! delete the namespace (which takes every nftables rule and socket with it, and with the
//! toxiproxy server gone, every proxy and toxic), then write `closed` and remove the state dir.
//!
//! invariant: `clean` holds a lab's lock while it undoes the lab, so two cleans never race, and a
//! lab created meanwhile (it takes its lock before its namespace exists) is never touched.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::intent::{self, Intent, IntentLog};
use super::netns;
use super::procfs;
use crate::errors::LabError;

/// What to clean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanOptions {
    /// Parent of `labs/` (as `LabOptions::state_root`).
    pub state_root: PathBuf,
    /// Also delete `faultline-*` namespaces that have no state dir under `state_root`.
    pub orphan_namespaces: bool,
    /// Only these run ids (tests use this to stay out of other labs' way); `None` = all.
    pub only_run_ids: Option<Vec<String>>,
    /// Keep state dirs after cleaning (as `FAULTLINE_KEEP_LAB`).
    pub keep_state: bool,
}

impl CleanOptions {
    /// Everything under the default state root (`FAULTLINE_STATE_DIR`), orphans included.
    pub fn from_env() -> CleanOptions {
        let lab = super::LabOptions::from_env();
        CleanOptions {
            state_root: lab.state_root,
            orphan_namespaces: true,
            only_run_ids: None,
            keep_state: lab.keep_state,
        }
    }

    fn wants(&self, run_id: &str) -> bool {
        self.only_run_ids
            .as_ref()
            .is_none_or(|ids| ids.iter().any(|i| i == run_id))
    }
}

/// One lab that was cleaned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanedLab {
    pub run_id: String,
    pub netns: String,
    /// `None` for an orphan namespace.
    pub state_dir: Option<PathBuf>,
    /// Pids that were SIGKILLed.
    pub killed: Vec<u32>,
    pub netns_deleted: bool,
    pub state_dir_removed: bool,
    /// Faults whose intent was logged without a matching `fault_undone` (undone by the above).
    pub outstanding_faults: Vec<String>,
}

/// One lab that was left alone, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedLab {
    pub run_id: String,
    pub state_dir: Option<PathBuf>,
    pub reason: String,
}

/// Everything `clean` did, for the CLI to print (`Display` renders it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanReport {
    pub cleaned: Vec<CleanedLab>,
    pub skipped: Vec<SkippedLab>,
    /// Per-lab failures; the other labs were still cleaned.
    pub errors: Vec<String>,
}

impl CleanReport {
    /// One line per lab cleaned, skipped or failed.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for c in &self.cleaned {
            let mut parts = Vec::new();
            if !c.killed.is_empty() {
                let pids: Vec<String> = c.killed.iter().map(ToString::to_string).collect();
                parts.push(format!("killed pid {}", pids.join(", ")));
            }
            if c.netns_deleted {
                parts.push(format!("deleted netns `{}`", c.netns));
            }
            if !c.outstanding_faults.is_empty() {
                parts.push(format!("undid fault {}", c.outstanding_faults.join(", ")));
            }
            match (&c.state_dir, c.state_dir_removed) {
                (Some(d), true) => parts.push(format!("removed `{}`", d.display())),
                (Some(d), false) => parts.push(format!("kept `{}`", d.display())),
                (None, _) => parts.push("no state dir (orphan namespace)".to_string()),
            }
            lines.push(format!("cleaned lab `{}`: {}", c.run_id, parts.join("; ")));
        }
        for s in &self.skipped {
            lines.push(format!("skipped lab `{}`: {}", s.run_id, s.reason));
        }
        for e in &self.errors {
            lines.push(format!("error: {e}"));
        }
        lines
    }
}

/// The report's lines, newline-separated without a trailing newline (for `println!`).
impl fmt::Display for CleanReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines = self.lines();
        if lines.is_empty() {
            return write!(f, "nothing to clean");
        }
        write!(f, "{}", lines.join("\n"))
    }
}

/// `clean_leftovers_with(&CleanOptions::from_env())`.
pub fn clean_leftovers() -> Result<CleanReport, LabError> {
    clean_leftovers_with(&CleanOptions::from_env())
}

/// Cleans every abandoned lab under `options.state_root` and (optionally) every orphan
/// `faultline-*` namespace. Fails only when the state root cannot be listed; per-lab problems
/// land in `CleanReport::errors`.
pub fn clean_leftovers_with(options: &CleanOptions) -> Result<CleanReport, LabError> {
    let mut report = CleanReport::default();
    let labs_dir = options.state_root.join("labs");
    let mut seen_netns = BTreeSet::new();
    let mut state_dirs = Vec::new();
    match std::fs::read_dir(&labs_dir) {
        Ok(entries) => {
            for entry in entries.filter_map(|e| e.ok()) {
                let path = entry.path();
                if path.is_dir()
                    && let Some(run_id) = entry.file_name().to_str()
                {
                    state_dirs.push((run_id.to_string(), path));
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(LabError::Io {
                path: labs_dir,
                source,
            });
        }
    }
    state_dirs.sort();
    for (run_id, dir) in state_dirs {
        if !options.wants(&run_id) {
            continue;
        }
        let netns_name = clean_state_dir(&run_id, &dir, options, &mut report);
        seen_netns.insert(netns_name);
    }
    if options.orphan_namespaces {
        for name in netns::list_ours() {
            let run_id = name.trim_start_matches(netns::NETNS_PREFIX).to_string();
            if seen_netns.contains(&name) || !options.wants(&run_id) {
                continue;
            }
            clean_orphan(&run_id, &name, &mut report);
        }
    }
    Ok(report)
}

/// What a lab's intent log says.
#[derive(Default)]
struct LabRecord {
    netns: Option<String>,
    harness: Option<(u32, u64)>,
    processes: Vec<(u32, u64)>,
    outstanding_faults: Vec<String>,
    closed: bool,
}

fn summarize(intents: &[Intent]) -> LabRecord {
    let mut r = LabRecord::default();
    for i in intents {
        match i {
            Intent::Lab {
                netns,
                harness_pid,
                harness_start_time,
                ..
            } => {
                r.netns = Some(netns.clone());
                r.harness = Some((*harness_pid, *harness_start_time));
            }
            Intent::Netns { name } => r.netns = Some(name.clone()),
            Intent::Process {
                pid, start_time, ..
            } => r.processes.push((*pid, *start_time)),
            Intent::Fault { id, .. } => r.outstanding_faults.push(id.clone()),
            Intent::FaultUndone { id } => r.outstanding_faults.retain(|f| f != id),
            Intent::Closed => r.closed = true,
            Intent::Unknown => {}
        }
    }
    r
}

/// Returns the lab's namespace name (so the orphan pass skips it).
fn clean_state_dir(
    run_id: &str,
    dir: &Path,
    options: &CleanOptions,
    report: &mut CleanReport,
) -> String {
    let log_path = dir.join(IntentLog::FILE_NAME);
    let record = match intent::read(&log_path) {
        Ok((intents, _torn)) => summarize(&intents),
        // A state dir without a log: the lab died before writing anything; its namespace, if
        // any, can only be `faultline-<run_id>`.
        Err(_) => LabRecord::default(),
    };
    let netns_name = record
        .netns
        .clone()
        .unwrap_or_else(|| format!("{}{run_id}", netns::NETNS_PREFIX));
    let skip = |report: &mut CleanReport, reason: String| {
        report.skipped.push(SkippedLab {
            run_id: run_id.to_string(),
            state_dir: Some(dir.to_path_buf()),
            reason,
        });
    };
    if record.closed {
        skip(
            report,
            format!(
                "already closed; its state dir `{}` was kept on purpose",
                dir.display()
            ),
        );
        return netns_name;
    }
    let lab_lock = match netns::try_lock(&netns_name) {
        Ok(Some(l)) => l,
        Ok(None) => {
            skip(
                report,
                "its harness is still running (it holds the lab's lock)".to_string(),
            );
            return netns_name;
        }
        Err(e) => {
            report.errors.push(format!("lab `{run_id}`: {e}"));
            return netns_name;
        }
    };
    if let Some((pid, start)) = record.harness
        && procfs::is_same_process_alive(pid, start)
    {
        lab_lock.release();
        skip(report, format!("its harness (pid {pid}) is still running"));
        return netns_name;
    }
    let mut killed: Vec<u32> = record
        .processes
        .iter()
        .filter(|(pid, start)| procfs::kill_if_same(*pid, *start))
        .map(|(pid, _)| *pid)
        .collect();
    let mut cleaned = CleanedLab {
        run_id: run_id.to_string(),
        netns: netns_name.clone(),
        state_dir: Some(dir.to_path_buf()),
        killed: Vec::new(),
        netns_deleted: false,
        state_dir_removed: false,
        outstanding_faults: record.outstanding_faults.clone(),
    };
    match empty_and_delete(&netns_name) {
        Ok((more, deleted)) => {
            killed.extend(more);
            cleaned.netns_deleted = deleted;
        }
        Err(e) => {
            report.errors.push(format!("lab `{run_id}`: {e}"));
            cleaned.killed = killed;
            report.cleaned.push(cleaned);
            lab_lock.release();
            return netns_name;
        }
    }
    killed.sort_unstable();
    killed.dedup();
    cleaned.killed = killed;
    let closed = IntentLog::open(dir).and_then(|mut log| log.append(&Intent::Closed));
    if let Err(e) = closed {
        report.errors.push(format!("lab `{run_id}`: {e}"));
    } else if !options.keep_state {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => cleaned.state_dir_removed = true,
            Err(e) => report
                .errors
                .push(format!("lab `{run_id}`: removing `{}`: {e}", dir.display())),
        }
    }
    report.cleaned.push(cleaned);
    lab_lock.release();
    netns_name
}

fn clean_orphan(run_id: &str, name: &str, report: &mut CleanReport) {
    let lab_lock = match netns::try_lock(name) {
        Ok(Some(l)) => l,
        Ok(None) => {
            report.skipped.push(SkippedLab {
                run_id: run_id.to_string(),
                state_dir: None,
                reason: format!(
                    "netns `{name}` belongs to a running harness (it holds the lab's lock)"
                ),
            });
            return;
        }
        Err(e) => {
            report.errors.push(format!("netns `{name}`: {e}"));
            return;
        }
    };
    match empty_and_delete(name) {
        Ok((killed, deleted)) => report.cleaned.push(CleanedLab {
            run_id: run_id.to_string(),
            netns: name.to_string(),
            state_dir: None,
            killed,
            netns_deleted: deleted,
            state_dir_removed: false,
            outstanding_faults: Vec::new(),
        }),
        Err(e) => report.errors.push(format!("netns `{name}`: {e}")),
    }
    lab_lock.release();
}

/// SIGKILLs every process left in the namespace, waits (bounded) for them to die, deletes it.
/// Everything inside a lab namespace was started by that lab, so no start-time check is needed
/// here; the caller holds the lab's lock, so its owner is gone.
pub(super) fn empty_and_delete(name: &str) -> Result<(Vec<u32>, bool), LabError> {
    let mut killed = Vec::new();
    if netns::exists(name) {
        let me = std::process::id();
        // Snapshot first: killing a group leader takes its whole group with it, so a member
        // visited later would already be dead and missing from the report.
        let running: Vec<(u32, procfs::ProcStat)> = netns::pids(name)?
            .into_iter()
            .filter(|p| *p != me)
            .filter_map(|p| {
                procfs::stat(p)
                    .filter(|st| st.is_running())
                    .map(|st| (p, st))
            })
            .collect();
        let mut groups_killed = Vec::new();
        for (pid, st) in &running {
            if procfs::kill_if_same(*pid, st.start_time) {
                if st.pgid == *pid {
                    groups_killed.push(*pid);
                }
                killed.push(*pid);
            } else if groups_killed.contains(&st.pgid) {
                killed.push(*pid);
            }
        }
        // Declared, bounded wait: every killed pid gone (or a zombie) within 5 s.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut backoff = Duration::from_millis(5);
        while killed.iter().any(|p| procfs::is_alive(*p)) && Instant::now() < deadline {
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_millis(100));
        }
    }
    let deleted = netns::delete(name)?;
    Ok((killed, deleted))
}
