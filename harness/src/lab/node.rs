//! Node processes: what to run (`NodeSpec`), how to know it is up (`Readiness`), spawning it
//! into the lab, and waiting for its declared readiness against a deadline.
//!
//! invariant: a node is ready only when its declared check passes; there is no fixed sleep. The
//! checks are polled with a short capped backoff until `ready_timeout`.
//! invariant: every node runs in its own process group (pgid = pid) with `PR_SET_PDEATHSIG =
//! SIGKILL`, so signals reach the whole node and a SIGKILLed harness takes its nodes along.

use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};

use crate::errors::LabError;

/// What to run for one node. The node's work directory (`Lab::node_dir`) is its current
/// directory and its data directory: a restart with the same spec finds the same data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeSpec {
    /// Unique in the lab; also a directory and file name, so `[A-Za-z0-9._-]` only.
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Added to (not replacing) the harness's environment.
    pub env: Vec<(String, String)>,
    pub readiness: Readiness,
    pub ready_timeout: Duration,
    /// Scheduling niceness (0 = the harness's own). Clusters of JVMs get a positive one so that
    /// on a small machine the load generator, which must keep its schedule to measure anything,
    /// is not starved by their start-up and compilation bursts.
    #[serde(default)]
    pub nice: i32,
}

/// How a node declares it is ready.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Readiness {
    /// A TCP connect to this address succeeds.
    TcpPort(SocketAddr),
    /// This substring appears in what the node writes to stdout/stderr during this start
    /// (earlier starts' output in the same log file does not count).
    LogLine(String),
    /// A GET answers with a 2xx status.
    Http { url: String },
    /// This command exits 0 (run inside the lab namespace).
    Command { program: PathBuf, args: Vec<String> },
}

/// A started, ready node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub pid: u32,
    /// From spawn to the readiness check passing.
    pub ready_after: Duration,
    pub log_path: PathBuf,
}

impl NodeSpec {
    /// A spec with no arguments or extra environment and a 30 s readiness deadline. Readiness
    /// has no default on purpose: every node declares how it is known to be up.
    pub fn new(
        name: impl Into<String>,
        program: impl Into<PathBuf>,
        readiness: Readiness,
    ) -> NodeSpec {
        NodeSpec {
            name: name.into(),
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            readiness,
            ready_timeout: Duration::from_secs(30),
            nice: 0,
        }
    }

    pub fn arg(mut self, arg: impl Into<String>) -> NodeSpec {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> NodeSpec
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> NodeSpec {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn nice(mut self, nice: i32) -> NodeSpec {
        self.nice = nice;
        self
    }

    pub fn ready_timeout(mut self, timeout: Duration) -> NodeSpec {
        self.ready_timeout = timeout;
        self
    }
}

/// Node names become directory and file names: keep them boring.
pub fn validate_name(what: &'static str, name: &str) -> Result<(), LabError> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if name.is_empty() || name.len() > 64 || !ok_chars || name.starts_with('.') {
        return Err(LabError::InvalidName {
            what,
            value: name.to_string(),
            detail: "use 1 to 64 of `A-Z a-z 0-9 . _ -`, not starting with `.`".to_string(),
        });
    }
    Ok(())
}

/// A spawned node process, not yet known to be ready.
pub(crate) struct Spawned {
    pub child: Child,
    pub pid: u32,
    pub start_time: u64,
    /// Length of the log before this start: readiness and the early-exit tail look only after it.
    pub log_offset: u64,
    pub started_at: Instant,
}

/// Makes a child join the lab's network namespace and die with its spawning thread.
///
/// Caveat: `PR_SET_PDEATHSIG` fires when the spawning THREAD exits, not the process. Nodes are
/// spawned from tokio runtime threads (worker threads, or the thread in `block_on`), which live
/// as long as the runtime, so this only matters if a node is spawned from a short-lived thread
/// (e.g. inside `spawn_blocking`, whose threads exit after idling): don't.
///
/// # Safety
/// Only async-signal-safe calls (raw syscalls, errno reads) happen in the closure.
pub(crate) fn confine(cmd: &mut Command, netns_fd: RawFd) {
    let parent = std::process::id();
    // SAFETY: the closure only makes raw syscalls (setns, prctl, getppid) and reads errno, all
    // async-signal-safe; it touches no locks or allocations.
    unsafe {
        cmd.pre_exec(move || {
            // Explicitly, rather than relying on the calling thread's namespace: a child must
            // never land outside the lab even if spawned from a thread that never entered it.
            if libc::setns(netns_fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then no signal will ever come.
            if libc::getppid() as u32 != parent {
                return Err(std::io::Error::other("harness exited while spawning"));
            }
            Ok(())
        });
    }
}

/// Spawns the node with stdout+stderr appended to `log_path`, cwd `node_dir`.
pub(crate) fn spawn(
    spec: &NodeSpec,
    node_dir: &Path,
    log_path: &Path,
    netns_fd: RawFd,
) -> Result<Spawned, LabError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LabError::Io { path, source }
    };
    std::fs::create_dir_all(node_dir).map_err(io_err(node_dir))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .map_err(io_err(log_path))?;
    let log_offset = log.metadata().map_err(io_err(log_path))?.len();
    let log_err = log.try_clone().map_err(io_err(log_path))?;

    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(node_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        // Its own group, so SIGSTOP/SIGKILL reach helpers it forks (e.g. redis' BGSAVE child).
        .process_group(0)
        // The lab owns the lifecycle explicitly (kill/stop/shutdown); a dropped handle must not
        // kill a node mid-fault.
        .kill_on_drop(false);
    confine(&mut cmd, netns_fd);
    if spec.nice != 0 {
        let nice = spec.nice;
        // SAFETY: one raw syscall, async-signal-safe; it touches no locks or allocations.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setpriority(libc::PRIO_PROCESS, 0, nice) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let started_at = Instant::now();
    let child = cmd.spawn().map_err(|e| LabError::Command {
        command: format!("{} {}", spec.program.display(), spec.args.join(" ")),
        detail: format!("cannot start node `{}`: {e}", spec.name),
    })?;
    let pid = child
        .id()
        .ok_or_else(|| LabError::Other(format!("node `{}` has no pid", spec.name)))?;
    // Field 22 is fixed at fork, so it is readable even while the child is still exec'ing. A
    // child that already exited and was reaped has no /proc entry: 0 never matches a process.
    let start_time = super::procfs::start_time(pid).unwrap_or(0);
    Ok(Spawned {
        child,
        pid,
        start_time,
        log_offset,
        started_at,
    })
}

/// Scans a log file incrementally for a substring that may straddle two reads.
struct LogScanner {
    path: PathBuf,
    offset: u64,
    carry: Vec<u8>,
}

impl LogScanner {
    fn found(&mut self, needle: &str) -> Result<bool, String> {
        let needle = needle.as_bytes();
        let mut file = std::fs::File::open(&self.path).map_err(|e| e.to_string())?;
        file.seek(SeekFrom::Start(self.offset))
            .map_err(|e| e.to_string())?;
        let mut fresh = Vec::new();
        file.read_to_end(&mut fresh).map_err(|e| e.to_string())?;
        self.offset += fresh.len() as u64;
        self.carry.extend_from_slice(&fresh);
        if needle.is_empty() || self.carry.windows(needle.len()).any(|w| w == needle) {
            return Ok(true);
        }
        // Keep only what could still be the start of a match.
        let keep = needle.len().saturating_sub(1).min(self.carry.len());
        self.carry.drain(..self.carry.len() - keep);
        Ok(false)
    }
}

/// The last `lines` lines written to the log since `offset` (bounded to the last 64 KiB).
pub fn log_tail(path: &Path, offset: u64, lines: usize) -> String {
    let read = || -> std::io::Result<String> {
        let mut file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        let from = offset.max(len.saturating_sub(64 * 1024));
        file.seek(SeekFrom::Start(from))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) if text.trim().is_empty() => "(the node wrote nothing)".to_string(),
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read `{}`: {e})", path.display()),
    }
}

/// How many log lines an early-exit error carries.
const TAIL_LINES: usize = 20;

/// Waits until `spec.readiness` passes, the process exits, or `spec.ready_timeout` elapses.
pub(crate) async fn wait_ready(
    spec: &NodeSpec,
    spawned: &mut Spawned,
    log_path: &Path,
    netns_fd: RawFd,
) -> Result<Duration, LabError> {
    let deadline = spawned.started_at + spec.ready_timeout;
    let mut scanner = LogScanner {
        path: log_path.to_path_buf(),
        offset: spawned.log_offset,
        carry: Vec::new(),
    };
    let http = match &spec.readiness {
        Readiness::Http { .. } => Some(
            reqwest::Client::builder()
                // Lab traffic stays on loopback: never route a probe through an HTTP(S)_PROXY.
                .no_proxy()
                .build()
                .map_err(|e| LabError::Other(format!("cannot build an http client: {e}")))?,
        ),
        _ => None,
    };
    let mut backoff = Duration::from_millis(10);
    let mut last = String::from("no check has run yet");
    loop {
        let exited = spawned.child.try_wait().map_err(|e| {
            LabError::Other(format!(
                "cannot poll node `{}` (pid {}): {e}",
                spec.name, spawned.pid
            ))
        })?;
        if let Some(status) = exited {
            return Err(LabError::ExitedEarly {
                node: spec.name.clone(),
                status: status.to_string(),
                log_tail: log_tail(log_path, spawned.log_offset, TAIL_LINES),
            });
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(LabError::NotReady {
                node: spec.name.clone(),
                timeout_ms: u64::try_from(spec.ready_timeout.as_millis()).unwrap_or(u64::MAX),
                detail: format!(
                    "last check: {last}; last log lines:\n{}",
                    log_tail(log_path, spawned.log_offset, TAIL_LINES)
                ),
            });
        }
        // A single check may not outlive the deadline, nor hog it (so early exit is noticed).
        let budget = (deadline - now).min(Duration::from_secs(2));
        match check(
            &spec.readiness,
            &mut scanner,
            http.as_ref(),
            budget,
            netns_fd,
        )
        .await
        {
            Ok(()) => return Ok(spawned.started_at.elapsed()),
            Err(why) => last = why,
        }
        let pause = backoff.min(deadline.saturating_duration_since(Instant::now()));
        tokio::time::sleep(pause).await;
        backoff = (backoff * 2).min(Duration::from_millis(200));
    }
}

/// One readiness check. `Err` carries why it is not ready yet.
async fn check(
    readiness: &Readiness,
    scanner: &mut LogScanner,
    http: Option<&reqwest::Client>,
    budget: Duration,
    netns_fd: RawFd,
) -> Result<(), String> {
    match readiness {
        Readiness::TcpPort(addr) => {
            match tokio::time::timeout(budget, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("connect to {addr}: {e}")),
                Err(_) => Err(format!("connect to {addr}: timed out")),
            }
        }
        Readiness::LogLine(needle) => match scanner.found(needle) {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!("`{needle}` not in the log yet")),
            Err(e) => Err(format!("reading the log: {e}")),
        },
        Readiness::Http { url } => {
            let client = http.ok_or("no http client")?;
            match client.get(url).timeout(budget).send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("GET {url}: status {}", r.status())),
                Err(e) => Err(format!("GET {url}: {e}")),
            }
        }
        Readiness::Command { program, args } => {
            let mut cmd = Command::new(program);
            cmd.args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            cmd.kill_on_drop(true);
            confine(&mut cmd, netns_fd);
            let shown = format!("{} {}", program.display(), args.join(" "));
            match tokio::time::timeout(budget, cmd.output()).await {
                Ok(Ok(out)) if out.status.success() => Ok(()),
                Ok(Ok(out)) => Err(format!(
                    "`{shown}` {}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
                Ok(Err(e)) => Err(format!("`{shown}`: {e}")),
                Err(_) => Err(format!("`{shown}` timed out")),
            }
        }
    }
}
