//! Named network namespaces (through `ip netns`, so they show up in `ip netns list`) and the
//! per-lab liveness lock that tells `clean` a lab still has an owner.
//!
//! invariant: a lab's lock is taken BEFORE its namespace is created and released only after the
//! namespace is deleted; `clean` touches a namespace only while holding that lock, so a running
//! lab (in this process or another, whatever its state root) is never cleaned from under it.

use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sched::{CloneFlags, setns};

use crate::errors::LabError;

/// Where `ip netns` keeps its bind mounts (iproute2's `NETNS_RUN_DIR`).
pub const NETNS_RUN_DIR: &str = "/run/netns";
/// Every lab namespace is named with this prefix; `clean` only ever looks at these.
pub const NETNS_PREFIX: &str = "faultline-";
/// Machine-wide (not per state root) so that a lab is protected from a `clean` that uses a
/// different `FAULTLINE_STATE_DIR`.
pub const LOCK_DIR: &str = "/run/faultline/locks";

pub fn netns_path(name: &str) -> PathBuf {
    Path::new(NETNS_RUN_DIR).join(name)
}

pub fn exists(name: &str) -> bool {
    netns_path(name).exists()
}

/// Runs a short administrative command to completion, returning its stdout.
pub fn run(program: &str, args: &[&str]) -> Result<String, LabError> {
    let command = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LabError::Command {
            command: command.clone(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(LabError::Command {
            command,
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn add(name: &str) -> Result<(), LabError> {
    run("ip", &["netns", "add", name]).map(drop)
}

pub fn set_lo_up(name: &str) -> Result<(), LabError> {
    run("ip", &["-n", name, "link", "set", "lo", "up"]).map(drop)
}

/// Deletes the namespace's name. Returns false when it was already gone (idempotent teardown).
/// Threads and processes still inside keep the namespace alive, unnamed, until they exit.
pub fn delete(name: &str) -> Result<bool, LabError> {
    if !exists(name) {
        return Ok(false);
    }
    match run("ip", &["netns", "del", name]) {
        Ok(_) => Ok(true),
        // Lost a race with another teardown: the outcome is the one wanted.
        Err(_) if !exists(name) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Names of every `faultline-*` namespace on the machine.
pub fn list_ours() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(NETNS_RUN_DIR) else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(NETNS_PREFIX))
        .collect();
    names.sort();
    names
}

/// Pids of processes whose network namespace is `name`.
pub fn pids(name: &str) -> Result<Vec<u32>, LabError> {
    let out = run("ip", &["netns", "pids", name])?;
    Ok(out
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

/// Opens the namespace so that it can be entered (now, or by children in `pre_exec`).
pub fn open(name: &str) -> Result<File, LabError> {
    let path = netns_path(name);
    File::open(&path).map_err(|source| LabError::Io { path, source })
}

/// Moves the CALLING THREAD into the namespace (threads and processes it creates afterwards
/// inherit it; other threads are unaffected).
pub fn enter(ns: &File, name: &str) -> Result<(), LabError> {
    setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| LabError::Command {
        command: format!("setns(CLONE_NEWNET) into `{name}`"),
        detail: e.to_string(),
    })
}

/// An exclusive `flock` on `LOCK_DIR/<netns>.lock`, held for as long as the lab has an owner.
/// The kernel drops it when the owner dies, even by SIGKILL, which is what makes it a reliable
/// liveness signal.
#[derive(Debug)]
pub struct LabLock {
    path: PathBuf,
    _flock: Flock<File>,
}

pub fn lock_path(netns: &str) -> PathBuf {
    Path::new(LOCK_DIR).join(format!("{netns}.lock"))
}

/// `Ok(None)` when another owner holds the lock.
pub fn try_lock(netns: &str) -> Result<Option<LabLock>, LabError> {
    std::fs::create_dir_all(LOCK_DIR).map_err(|source| LabError::Io {
        path: PathBuf::from(LOCK_DIR),
        source,
    })?;
    let path = lock_path(netns);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| LabError::Io {
            path: path.clone(),
            source,
        })?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(flock) => Ok(Some(LabLock {
            path,
            _flock: flock,
        })),
        Err((_, Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, errno)) => Err(LabError::Io {
            path,
            source: std::io::Error::from(errno),
        }),
    }
}

impl LabLock {
    /// Removes the lock file, then unlocks. Must be the very last step of a teardown: a `clean`
    /// that opens the path afterwards finds nothing left to do.
    pub fn release(self) {
        let _ = std::fs::remove_file(&self.path);
        drop(self);
    }
}
