//! The lab's intent log: an append-only JSON-lines file, one fsync'd line per intent, so that
//! `faultline lab clean` can undo what a killed run left behind.
//!
//! invariant: an intent is written (and synced) BEFORE the action it announces; an action whose
//! intent cannot be written is not taken.
//! invariant: the first line is always the `lab` line naming the owning harness process.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::errors::LabError;

/// One line of `intent.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Intent {
    /// Always the first line: who owns the lab. `harness_start_time` is field 22 of
    /// `/proc/<pid>/stat`, so a reused pid is never mistaken for the harness.
    Lab {
        run_id: String,
        netns: String,
        harness_pid: u32,
        harness_start_time: u64,
    },
    /// About to create this network namespace.
    Netns { name: String },
    /// A node process was spawned (logged right after spawn: the pid is needed; the process dies
    /// with its spawner anyway through `PR_SET_PDEATHSIG`).
    Process {
        node: String,
        pid: u32,
        start_time: u64,
    },
    /// About to apply a fault.
    Fault {
        id: String,
        detail: serde_json::Value,
    },
    /// A fault's undo completed.
    FaultUndone { id: String },
    /// Everything the lab made is gone (or `clean` made it so).
    Closed,
    /// A line written by a newer harness: kept readable rather than failing `clean`.
    #[serde(other)]
    Unknown,
}

/// Appends intents to `<state dir>/intent.jsonl`.
#[derive(Debug)]
pub struct IntentLog {
    path: PathBuf,
    file: File,
}

impl IntentLog {
    pub const FILE_NAME: &'static str = "intent.jsonl";

    /// Opens (creating if needed) the log in `state_dir` for appending.
    pub fn open(state_dir: &Path) -> Result<IntentLog, LabError> {
        let path = state_dir.join(Self::FILE_NAME);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| LabError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(IntentLog { path, file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one line and syncs it to disk before returning.
    pub fn append(&mut self, intent: &Intent) -> Result<(), LabError> {
        let mut line = serde_json::to_string(intent)
            .map_err(|e| LabError::Other(format!("cannot encode intent: {e}")))?;
        line.push('\n');
        // One write_all per line on an O_APPEND file: a crash can tear at most the last line,
        // which `read` tolerates.
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|source| LabError::Io {
                path: self.path.clone(),
                source,
            })
    }
}

/// Reads every intent in a log. A torn or unparsable line (a crash mid-write) is skipped and
/// counted rather than failing, because `clean` must make progress on whatever is there.
pub fn read(path: &Path) -> Result<(Vec<Intent>, usize), LabError> {
    let text = std::fs::read_to_string(path).map_err(|source| LabError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut intents = Vec::new();
    let mut bad = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Intent>(line) {
            Ok(i) => intents.push(i),
            Err(_) => bad += 1,
        }
    }
    Ok((intents, bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_the_documented_shape_and_round_trip() {
        let dir =
            std::env::temp_dir().join(format!("faultline-intent-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut log = IntentLog::open(&dir).expect("open");
        let all = vec![
            Intent::Lab {
                run_id: "ab".into(),
                netns: "faultline-ab".into(),
                harness_pid: 1,
                harness_start_time: 2,
            },
            Intent::Netns {
                name: "faultline-ab".into(),
            },
            Intent::Process {
                node: "r1".into(),
                pid: 10,
                start_time: 11,
            },
            Intent::Fault {
                id: "f1".into(),
                detail: serde_json::json!({"kill": ["r1"]}),
            },
            Intent::FaultUndone { id: "f1".into() },
            Intent::Closed,
        ];
        for i in &all {
            log.append(i).expect("append");
        }
        let text = std::fs::read_to_string(log.path()).expect("read");
        assert!(
            text.contains(r#"{"op":"netns","name":"faultline-ab"}"#),
            "{text}"
        );
        assert!(text.contains(r#"{"op":"closed"}"#), "{text}");
        // A torn last line and a line from the future are tolerated.
        std::fs::write(
            log.path(),
            format!("{text}{{\"op\":\"martian\"}}\n{{\"op\":\"proc"),
        )
        .expect("write");
        let (read_back, bad) = read(log.path()).expect("read");
        assert_eq!(bad, 1);
        assert_eq!(&read_back[..all.len()], &all[..]);
        assert_eq!(read_back[all.len()], Intent::Unknown);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
