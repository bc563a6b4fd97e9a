//! The lab: one Linux network namespace per run, in which every node is a real process bound to
//! its own loopback address, with an intent log that lets `faultline lab clean` undo whatever a
//! killed run left behind.
//!
//! How it is used (the CLI, and tests on a dedicated thread):
//!
//! 1. `enter_new_lab(run_id)` on the MAIN thread, before the tokio runtime exists: it creates
//!    netns `faultline-<run_id>` and moves the calling thread into it, so every runtime thread
//!    and every child process is born inside the lab.
//! 2. `Lab::new(handle)`, then `start_node` / `kill_node` / `pause_node` / `partition` ... from
//!    async code.
//! 3. `Lab::copy_logs_to(dir)` if logs are wanted, then `Lab::shutdown()`. Dropping a `Lab`
//!    without shutting it down does the same teardown synchronously (SIGKILL, no grace), which
//!    covers panics.
//!
//! Inside the namespace the whole of 127.0.0.0/8 is local on `lo`: a node binds
//! `node_addr(group, n)` = 127.0.<group>.<n> without any address set-up.
//!
//! Needs root (CAP_SYS_ADMIN for `ip netns` and `setns`). Rootless labs through a user namespace
//! are out of scope for now: `enter_new_lab` says so instead of half-working.
//!
//! invariant: every intent (namespace, process, fault) is fsync'd to `<state dir>/intent.jsonl`
//! before the action it announces, except a process's line, written right after spawn because it
//! needs the pid (the process dies with its spawner through `PR_SET_PDEATHSIG` meanwhile).
//! invariant: nothing the lab creates outlives it: shutdown (or drop) kills every node, deletes
//! the namespace (taking every nftables rule and socket with it), and only then writes `closed`.
//! invariant: traffic stays on loopback addresses inside namespaces the run made.

mod clean;
pub mod intent;
mod netns;
mod node;
pub mod partition;
pub mod procfs;

use std::collections::BTreeMap;
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

pub use clean::{
    CleanOptions, CleanReport, CleanedLab, SkippedLab, clean_leftovers, clean_leftovers_with,
};
pub use intent::Intent;
pub use netns::{NETNS_PREFIX, NETNS_RUN_DIR};
pub use node::{NodeInfo, NodeSpec, Readiness, log_tail};
pub use partition::{Direction, PartitionHandle};

use crate::errors::LabError;
use intent::IntentLog;

// ---------------------------------------------------------------------------------------------
// Address plan
// ---------------------------------------------------------------------------------------------

/// Usual ports, each on the node's own address.
pub const REDIS_PORT: u16 = 6379;
pub const SENTINEL_PORT: u16 = 26379;
pub const TOXIPROXY_API_PORT: u16 = 8474;
pub const SERVICE_PORT: u16 = 8080;

/// Groups are `1..=MAX_GROUP`; 0 is reserved (127.0.0.1 is what unbound clients get) and
/// `PROXY_GROUP` belongs to the proxies.
pub const MAX_GROUP: u8 = 249;
pub const PROXY_GROUP: u8 = 250;

/// 127.0.<group>.<node>. Valid for group in `1..=MAX_GROUP` and node in `1..=254`; plans are
/// validated with `check_node_addr` before addresses are handed out.
pub const fn node_addr(group_index: u8, node_index: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, group_index, node_index)
}

/// The same as `node_addr`, refusing the reserved ranges.
pub fn check_node_addr(group_index: u8, node_index: u8) -> Result<Ipv4Addr, LabError> {
    if group_index == 0 || group_index > MAX_GROUP || node_index == 0 || node_index == 255 {
        return Err(LabError::InvalidName {
            what: "node address",
            value: format!("group {group_index}, node {node_index}"),
            detail: format!("groups are 1..={MAX_GROUP} and nodes 1..=254"),
        });
    }
    Ok(node_addr(group_index, node_index))
}

/// Where proxy `k` (1-based) listens: 127.0.250.<k>, on the port of what it fronts.
pub const fn proxy_listen_addr(k: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, PROXY_GROUP, k)
}

// ---------------------------------------------------------------------------------------------
// Tools and target binaries
// ---------------------------------------------------------------------------------------------

fn is_executable_file(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The directory the lab's components are installed in: `$FAULTLINE_TOOLS`, else
/// `$HOME/.cache/faultline/bin` (where `cargo xtask deps` puts them).
pub fn tools_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("FAULTLINE_TOOLS").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".cache/faultline/bin"))
}

/// Resolves a component binary (`toxiproxy-server`, `redis-server`, ...): the tools dir first,
/// then `PATH`. A name with a `/` is taken as a path.
pub fn find_tool(name: &str) -> Result<PathBuf, LabError> {
    let missing = || LabError::MissingBinary {
        binary: name.to_string(),
    };
    if name.is_empty() {
        return Err(missing());
    }
    if name.contains('/') {
        let p = PathBuf::from(name);
        return if is_executable_file(&p) {
            Ok(p)
        } else {
            Err(missing())
        };
    }
    let from_tools = tools_dir()
        .map(|d| d.join(name))
        .filter(|p| is_executable_file(p));
    let from_path = || {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| is_executable_file(p))
    };
    from_tools.or_else(from_path).ok_or_else(missing)
}

/// Resolves a binary built from this workspace (the reference services): `$FAULTLINE_TARGETS_DIR`,
/// else next to the running executable, else its parent directory (test executables live in
/// `target/<profile>/deps/`, the binaries in `target/<profile>/`).
pub fn find_target_binary(name: &str) -> Result<PathBuf, LabError> {
    let mut searched = Vec::new();
    if let Some(d) = std::env::var_os("FAULTLINE_TARGETS_DIR").filter(|d| !d.is_empty()) {
        searched.push(PathBuf::from(d));
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        if let Some(parent) = dir.parent() {
            searched.push(dir.clone());
            searched.push(parent.to_path_buf());
        } else {
            searched.push(dir);
        }
    }
    if let Some(found) = searched
        .iter()
        .map(|d| d.join(name))
        .find(|p| is_executable_file(p))
    {
        return Ok(found);
    }
    Err(LabError::MissingTarget {
        binary: name.to_string(),
        searched: searched
            .iter()
            .map(|d| format!("`{}`", d.display()))
            .collect::<Vec<_>>()
            .join(", "),
    })
}

// ---------------------------------------------------------------------------------------------
// Identity and options
// ---------------------------------------------------------------------------------------------

/// A fresh run id: 8 lowercase hex characters from the kernel's random source.
pub fn new_run_id() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 4];
    let random = File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok();
    if !random {
        // Good enough to avoid collisions between runs on one machine; not a secret.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        bytes = (nanos ^ std::process::id().rotate_left(16)).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The parent of `labs/`: `$FAULTLINE_STATE_DIR`, else `<temp dir>/faultline`.
pub fn default_state_root() -> PathBuf {
    std::env::var_os("FAULTLINE_STATE_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("faultline"))
}

/// `<state root>/labs/<run_id>`.
pub fn lab_state_dir(state_root: &Path, run_id: &str) -> PathBuf {
    state_root.join("labs").join(run_id)
}

/// Where a lab keeps its state, and whether it is kept afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabOptions {
    /// Parent of `labs/`.
    pub state_root: PathBuf,
    /// Keep the state dir (intent log, node logs and data) after shutdown.
    pub keep_state: bool,
}

impl LabOptions {
    /// `FAULTLINE_STATE_DIR` and `FAULTLINE_KEEP_LAB` (set and non-empty means keep).
    pub fn from_env() -> LabOptions {
        LabOptions {
            state_root: default_state_root(),
            keep_state: std::env::var_os("FAULTLINE_KEEP_LAB").is_some_and(|v| !v.is_empty()),
        }
    }
}

/// Names of one lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabId {
    pub run_id: String,
    /// `faultline-<run_id>`.
    pub netns: String,
    /// `<state root>/labs/<run_id>`.
    pub state_dir: PathBuf,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these leaves plain data behind, still fine to read.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------------------------------------
// The namespace-owning core, shared by LabHandle and Lab
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct LabCore {
    id: LabId,
    keep_state: bool,
    intent: Mutex<Option<IntentLog>>,
    /// Held open so children can `setns` into the lab whatever thread spawns them.
    netns_fd: Option<File>,
    /// `Some` until the lab is closed: closing is idempotent through `take()`.
    lock: Mutex<Option<netns::LabLock>>,
}

impl LabCore {
    fn log(&self, intent: &Intent) -> Result<(), LabError> {
        match lock(&self.intent).as_mut() {
            Some(log) => log.append(intent),
            None => Err(LabError::Other(format!(
                "lab `{}` is already shut down",
                self.id.run_id
            ))),
        }
    }

    fn raw_netns_fd(&self) -> Result<i32, LabError> {
        self.netns_fd
            .as_ref()
            .map(AsRawFd::as_raw_fd)
            .ok_or_else(|| LabError::Other(format!("lab `{}` has no namespace", self.id.run_id)))
    }

    /// Deletes the namespace, writes `closed`, removes the state dir (unless kept), releases the
    /// lock. Callers stop the nodes first. Idempotent.
    fn close(&self) -> Result<(), LabError> {
        let Some(lab_lock) = lock(&self.lock).take() else {
            return Ok(());
        };
        let deleted = netns::delete(&self.id.netns);
        let mut log = lock(&self.intent).take();
        if let Err(e) = deleted {
            // Not `closed`: the state dir stays so that `clean` can finish the job.
            lab_lock.release();
            return Err(e);
        }
        if let Some(log) = log.as_mut() {
            log.append(&Intent::Closed)?;
        }
        drop(log);
        if !self.keep_state {
            match std::fs::remove_dir_all(&self.id.state_dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    lab_lock.release();
                    return Err(LabError::Io {
                        path: self.id.state_dir.clone(),
                        source,
                    });
                }
            }
        }
        lab_lock.release();
        Ok(())
    }
}

impl Drop for LabCore {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// A lab whose namespace exists and which the creating thread has entered; no runtime needed
/// yet. Turn it into a `Lab` once the runtime is up. Dropping it deletes the namespace.
#[derive(Debug)]
pub struct LabHandle {
    core: LabCore,
}

impl LabHandle {
    pub fn id(&self) -> &LabId {
        &self.core.id
    }

    /// Tears the lab down without ever having started a node (e.g. the runtime failed to build).
    pub fn close(self) -> Result<(), LabError> {
        self.core.close()
    }
}

/// Creates the lab's namespace and moves the CALLING THREAD into it. See `enter_new_lab_with`.
pub fn enter_new_lab(run_id: &str) -> Result<LabHandle, LabError> {
    enter_new_lab_with(run_id, &LabOptions::from_env())
}

/// Creates netns `faultline-<run_id>` (intent logged first), brings `lo` up in it and `setns`es
/// the calling thread into it. Synchronous on purpose: call it before building the runtime so
/// every runtime thread inherits the namespace. On error nothing is left behind.
///
/// The calling thread is never moved back: after shutdown it stays in the (then unnamed)
/// namespace until it exits. Use a thread that lives as long as the lab (the CLI's main thread,
/// or a dedicated test thread).
pub fn enter_new_lab_with(run_id: &str, options: &LabOptions) -> Result<LabHandle, LabError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Err(LabError::NotRoot { euid });
    }
    if run_id.is_empty()
        || run_id.len() > 32
        || !run_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(LabError::InvalidName {
            what: "run id",
            value: run_id.to_string(),
            detail: "use 1 to 32 of `A-Z a-z 0-9 -`".to_string(),
        });
    }
    let id = LabId {
        run_id: run_id.to_string(),
        netns: format!("{NETNS_PREFIX}{run_id}"),
        state_dir: lab_state_dir(&options.state_root, run_id),
    };
    let taken = || {
        LabError::Other(format!(
            "a lab with run id `{run_id}` already exists (hint: pick another run id)"
        ))
    };
    let lab_lock = netns::try_lock(&id.netns)?.ok_or_else(taken)?;
    if netns::exists(&id.netns) || id.state_dir.exists() {
        lab_lock.release();
        return Err(taken());
    }
    let labs_dir = options.state_root.join("labs");
    let made = std::fs::create_dir_all(&labs_dir)
        .map_err(|source| LabError::Io {
            path: labs_dir.clone(),
            source,
        })
        .and_then(|()| {
            std::fs::create_dir(&id.state_dir).map_err(|source| LabError::Io {
                path: id.state_dir.clone(),
                source,
            })
        })
        .and_then(|()| IntentLog::open(&id.state_dir));
    let log = match made {
        Ok(log) => log,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&id.state_dir);
            lab_lock.release();
            return Err(e);
        }
    };
    // From here on, dropping `core` (on any error below) undoes everything done so far.
    let mut core = LabCore {
        id: id.clone(),
        keep_state: options.keep_state,
        intent: Mutex::new(Some(log)),
        netns_fd: None,
        lock: Mutex::new(Some(lab_lock)),
    };
    let me = std::process::id();
    core.log(&Intent::Lab {
        run_id: id.run_id.clone(),
        netns: id.netns.clone(),
        harness_pid: me,
        harness_start_time: procfs::start_time(me).unwrap_or(0),
    })?;
    core.log(&Intent::Netns {
        name: id.netns.clone(),
    })?;
    netns::add(&id.netns)?;
    netns::set_lo_up(&id.netns)?;
    let ns = netns::open(&id.netns)?;
    netns::enter(&ns, &id.netns)?;
    core.netns_fd = Some(ns);
    Ok(LabHandle { core })
}

// ---------------------------------------------------------------------------------------------
// The running lab
// ---------------------------------------------------------------------------------------------

/// A node's live process.
struct Running {
    child: tokio::process::Child,
    pid: u32,
    paused: bool,
}

struct NodeSlot {
    spec: NodeSpec,
    run: Option<Running>,
}

/// How long `shutdown` lets nodes exit on SIGTERM before SIGKILL.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// A lab in use: nodes, partitions, the intent log. Methods take `&self` so it can be shared
/// (`Arc<Lab>`) between the engine and fault guards; operations on one node are serialized,
/// operations on different nodes run concurrently.
pub struct Lab {
    core: LabCore,
    nodes: Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<NodeSlot>>>>,
    next_partition: AtomicU64,
    shutting_down: AtomicBool,
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab")
            .field("id", &self.core.id)
            .field("nodes", &self.node_names())
            .finish()
    }
}

impl Lab {
    /// Takes over an entered lab. Needs no runtime; the async methods do.
    pub fn new(handle: LabHandle) -> Lab {
        Lab {
            core: handle.core,
            nodes: Mutex::new(BTreeMap::new()),
            next_partition: AtomicU64::new(1),
            shutting_down: AtomicBool::new(false),
        }
    }

    pub fn id(&self) -> &LabId {
        &self.core.id
    }

    pub fn run_id(&self) -> &str {
        &self.core.id.run_id
    }

    pub fn netns(&self) -> &str {
        &self.core.id.netns
    }

    pub fn state_dir(&self) -> &Path {
        &self.core.id.state_dir
    }

    /// `<state dir>/nodes/<node>/`: the node's cwd and data directory (kept across restarts).
    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.core.id.state_dir.join("nodes").join(node)
    }

    /// `<node dir>/<node>.log`: the node's stdout and stderr, appended across restarts.
    pub fn log_path(&self, node: &str) -> PathBuf {
        self.node_dir(node).join(format!("{node}.log"))
    }

    /// Every node ever started in this lab, sorted.
    pub fn node_names(&self) -> Vec<String> {
        lock(&self.nodes).keys().cloned().collect()
    }

    /// The node's spec, as last started.
    pub async fn node_spec(&self, node: &str) -> Result<NodeSpec, LabError> {
        Ok(self.slot(node)?.lock().await.spec.clone())
    }

    /// The pid of the node's process, if it is running (or paused).
    pub async fn node_pid(&self, node: &str) -> Option<u32> {
        let slot = self.slot(node).ok()?;
        let mut slot = slot.lock().await;
        reap_if_exited(&mut slot);
        slot.run.as_ref().map(|r| r.pid)
    }

    /// Appends an intent (faults log theirs through this, before applying).
    pub fn record(&self, intent: &Intent) -> Result<(), LabError> {
        self.core.log(intent)
    }

    fn slot(&self, node: &str) -> Result<Arc<tokio::sync::Mutex<NodeSlot>>, LabError> {
        lock(&self.nodes)
            .get(node)
            .cloned()
            .ok_or_else(|| LabError::UnknownNode(node.to_string()))
    }

    fn ensure_open(&self) -> Result<(), LabError> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(LabError::Other(format!(
                "lab `{}` is shutting down",
                self.run_id()
            )));
        }
        Ok(())
    }

    /// Spawns the node (own process group, PDEATHSIG, output appended to its log), logs the
    /// process intent and waits for its declared readiness. Fails with `ExitedEarly` (with the
    /// log's last lines) if it exits first, or `NotReady` (after killing it) at the deadline.
    pub async fn start_node(&self, spec: &NodeSpec) -> Result<NodeInfo, LabError> {
        self.ensure_open()?;
        node::validate_name("node name", &spec.name)?;
        let slot = {
            let mut nodes = lock(&self.nodes);
            nodes
                .entry(spec.name.clone())
                .or_insert_with(|| {
                    Arc::new(tokio::sync::Mutex::new(NodeSlot {
                        spec: spec.clone(),
                        run: None,
                    }))
                })
                .clone()
        };
        let mut slot = slot.lock().await;
        reap_if_exited(&mut slot);
        if slot.run.is_some() {
            return Err(LabError::AlreadyRunning(spec.name.clone()));
        }
        slot.spec = spec.clone();
        self.launch(&mut slot).await
    }

    async fn launch(&self, slot: &mut NodeSlot) -> Result<NodeInfo, LabError> {
        self.ensure_open()?;
        let spec = slot.spec.clone();
        let fd = self.core.raw_netns_fd()?;
        let log_path = self.log_path(&spec.name);
        let mut spawned = node::spawn(&spec, &self.node_dir(&spec.name), &log_path, fd)?;
        let pid = spawned.pid;
        let logged = self.core.log(&Intent::Process {
            node: spec.name.clone(),
            pid,
            start_time: spawned.start_time,
        });
        let outcome = match logged {
            Ok(()) => node::wait_ready(&spec, &mut spawned, &log_path, fd).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(ready_after) => {
                slot.run = Some(Running {
                    child: spawned.child,
                    pid,
                    paused: false,
                });
                Ok(NodeInfo {
                    pid,
                    ready_after,
                    log_path,
                })
            }
            Err(e) => {
                // A node that is not ready is not left half-running.
                procfs::signal_group(pid, Signal::SIGKILL);
                let _ = spawned.child.wait().await;
                Err(e)
            }
        }
    }

    /// SIGKILLs the node's process group and reaps it. The spec stays for `restart_node`.
    pub async fn kill_node(&self, node: &str) -> Result<(), LabError> {
        let slot = self.slot(node)?;
        let mut slot = slot.lock().await;
        let Some(mut run) = slot.run.take() else {
            return Err(LabError::NotRunning(node.to_string()));
        };
        kill_and_reap(&mut run).await;
        Ok(())
    }

    /// SIGSTOPs the node's process group: sockets stay open, nothing answers.
    pub async fn pause_node(&self, node: &str) -> Result<(), LabError> {
        self.stop_or_continue(node, true).await
    }

    /// SIGCONTs the node's process group.
    pub async fn resume_node(&self, node: &str) -> Result<(), LabError> {
        self.stop_or_continue(node, false).await
    }

    async fn stop_or_continue(&self, node: &str, pause: bool) -> Result<(), LabError> {
        let slot = self.slot(node)?;
        let mut slot = slot.lock().await;
        reap_if_exited(&mut slot);
        let run = slot
            .run
            .as_mut()
            .ok_or_else(|| LabError::NotRunning(node.to_string()))?;
        procfs::signal_group(
            run.pid,
            if pause {
                Signal::SIGSTOP
            } else {
                Signal::SIGCONT
            },
        );
        run.paused = pause;
        Ok(())
    }

    /// Starts the node again from its last spec (same data dir), killing it first if it is still
    /// running, and waits until it is ready.
    pub async fn restart_node(&self, node: &str) -> Result<NodeInfo, LabError> {
        self.ensure_open()?;
        let slot = self.slot(node)?;
        let mut slot = slot.lock().await;
        if let Some(mut run) = slot.run.take() {
            kill_and_reap(&mut run).await;
        }
        self.launch(&mut slot).await
    }

    /// SIGTERM (and SIGCONT, in case it is paused), then SIGKILL if it has not exited by `grace`.
    pub async fn stop_node(&self, node: &str, grace: Duration) -> Result<(), LabError> {
        let slot = self.slot(node)?;
        let mut slot = slot.lock().await;
        let Some(mut run) = slot.run.take() else {
            return Err(LabError::NotRunning(node.to_string()));
        };
        begin_terminate(&run);
        finish_terminate(&mut run, Instant::now() + grace).await;
        Ok(())
    }

    /// Drops traffic between two address groups (see `partition` module docs).
    pub async fn partition(
        &self,
        a: &[Ipv4Addr],
        b: &[Ipv4Addr],
        direction: Direction,
    ) -> Result<PartitionHandle, LabError> {
        self.ensure_open()?;
        let id = self.next_partition.fetch_add(1, Ordering::SeqCst);
        partition::apply(self.core.raw_netns_fd()?, id, a, b, direction).await
    }

    /// Removes a partition's rules. Idempotent; returns how many rules were removed.
    pub async fn heal(&self, handle: &PartitionHandle) -> Result<usize, LabError> {
        partition::heal(self.core.raw_netns_fd()?, handle).await
    }

    /// Copies every node's log to `<dir>/<node>.log` (call before `shutdown`, which removes the
    /// state dir). Returns the copies made.
    pub fn copy_logs_to(&self, dir: &Path) -> Result<Vec<PathBuf>, LabError> {
        std::fs::create_dir_all(dir).map_err(|source| LabError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut copied = Vec::new();
        for node in self.node_names() {
            let from = self.log_path(&node);
            if !from.exists() {
                continue;
            }
            let to = dir.join(format!("{node}.log"));
            std::fs::copy(&from, &to).map_err(|source| LabError::Io {
                path: from.clone(),
                source,
            })?;
            copied.push(to);
        }
        Ok(copied)
    }

    /// Stops every node (SIGTERM, SIGKILL after `SHUTDOWN_GRACE`), deletes the namespace, writes
    /// `closed`, removes the state dir unless kept. Idempotent; safe after a partial start-up.
    /// The calling thread stays in the (now unnamed) namespace until it exits.
    pub async fn shutdown(&self) -> Result<(), LabError> {
        self.shutting_down.store(true, Ordering::SeqCst);
        let slots: Vec<_> = lock(&self.nodes).values().cloned().collect();
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        let mut guards = Vec::with_capacity(slots.len());
        for slot in &slots {
            let guard = slot.lock().await;
            if let Some(run) = guard.run.as_ref() {
                // Every node gets its SIGTERM first, so the grace period runs for all at once.
                begin_terminate(run);
            }
            guards.push(guard);
        }
        for guard in &mut guards {
            if let Some(mut run) = guard.run.take() {
                finish_terminate(&mut run, deadline).await;
            }
        }
        drop(guards);
        self.core.close()
    }
}

impl Drop for Lab {
    /// The panic path: no grace, no awaiting. Children are SIGKILLed (tokio reaps them later, or
    /// they are reaped at exit); `core`'s own drop then deletes the namespace.
    fn drop(&mut self) {
        for slot in lock(&self.nodes).values() {
            if let Ok(mut slot) = slot.try_lock()
                && let Some(run) = slot.run.take()
            {
                procfs::signal_group(run.pid, Signal::SIGKILL);
            }
        }
    }
}

/// Forgets a node process that exited by itself (a crash), reaping it.
fn reap_if_exited(slot: &mut NodeSlot) {
    if let Some(run) = slot.run.as_mut()
        && !matches!(run.child.try_wait(), Ok(None))
    {
        slot.run = None;
    }
}

async fn kill_and_reap(run: &mut Running) {
    procfs::signal_group(run.pid, Signal::SIGKILL);
    let _ = run.child.wait().await;
}

/// SIGTERM, plus SIGCONT for a paused node (a stopped process only acts on signals once
/// continued).
fn begin_terminate(run: &Running) {
    procfs::signal_group(run.pid, Signal::SIGTERM);
    if run.paused {
        procfs::signal_group(run.pid, Signal::SIGCONT);
    }
}

/// Waits for the exit `begin_terminate` asked for until `deadline`, then SIGKILLs; always reaps.
async fn finish_terminate(run: &mut Running, deadline: Instant) {
    let left = deadline.saturating_duration_since(Instant::now());
    if tokio::time::timeout(left, run.child.wait()).await.is_err() {
        kill_and_reap(run).await;
    } else {
        // The leader exited; whatever it forked into its group goes too.
        procfs::signal_group(run.pid, Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests;
