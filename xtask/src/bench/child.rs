//! Signals and child processes: every server and client is our own child, spawned with
//! `PR_SET_PDEATHSIG`, signalled by pid, reaped with `wait4` (std has no wait4, kill or prctl;
//! these are glibc's).

use std::fs::File;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::proc::{self, human, io_err};

pub(super) static STOP: AtomicBool = AtomicBool::new(false);

pub(super) const SIGINT: i32 = 2;
pub(super) const SIGKILL: i32 = 9;
pub(super) const SIGTERM: i32 = 15;
pub(super) const SIGCONT: i32 = 18;
pub(super) const SIGSTOP: i32 = 19;
pub(super) const WNOHANG: i32 = 1;
pub(super) const PR_SET_PDEATHSIG: i32 = 1;

#[repr(C)]
#[derive(Default)]
pub(super) struct TimeVal {
    pub(super) sec: i64,
    pub(super) usec: i64,
}

/// `struct rusage` on 64-bit Linux: two timevals and 14 longs.
#[repr(C)]
#[derive(Default)]
pub(super) struct RUsage {
    pub(super) utime: TimeVal,
    pub(super) stime: TimeVal,
    /// `ru_maxrss` (KiB) first, then 13 counters the bench does not read.
    pub(super) _rest: [i64; 14],
}

unsafe extern "C" {
    pub(super) fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
    pub(super) fn kill(pid: i32, sig: i32) -> i32;
    pub(super) fn wait4(pid: i32, status: *mut i32, options: i32, rusage: *mut RUsage) -> i32;
    pub(super) fn prctl(option: i32, ...) -> i32;
}

extern "C" fn on_stop_signal(_: i32) {
    STOP.store(true, Ordering::SeqCst);
}

/// From here on Ctrl-C and SIGTERM only set a flag: the bench stops at its next check and every
/// guard kills its process on the way out (std::process::exit would skip them).
pub(super) fn catch_stop_signals() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        signal(SIGINT, on_stop_signal);
        signal(SIGTERM, on_stop_signal);
    }
}

pub(super) fn check_stop() -> Result<(), String> {
    if STOP.load(Ordering::SeqCst) {
        Err("interrupted".into())
    } else {
        Ok(())
    }
}

/// Sleeps, waking early (with an error) if the bench is being stopped.
pub(super) fn pause(d: Duration) -> Result<(), String> {
    let until = Instant::now() + d;
    loop {
        check_stop()?;
        let now = Instant::now();
        if now >= until {
            return Ok(());
        }
        std::thread::sleep((until - now).min(Duration::from_millis(20)));
    }
}

/// How a child ended, with its own CPU time (all its threads; from wait4).
#[derive(Debug, Clone)]
pub(super) struct Finished {
    pub(super) status: ExitStatus,
    pub(super) user_s: f64,
    pub(super) sys_s: f64,
    pub(super) wall_s: f64,
    /// Peak resident set (`ru_maxrss`), KiB.
    pub(super) max_rss_kib: f64,
}

impl Finished {
    pub(super) fn cpu_s(&self) -> f64 {
        self.user_s + self.sys_s
    }
}

/// A child we started. Invariant: signalled only while not reaped, so its pid is still ours
/// (a dead, unreaped child is a zombie that keeps it). Dropping it SIGKILLs and reaps it.
pub(super) struct Child {
    pub(super) pid: i32,
    pub(super) name: String,
    pub(super) started: Instant,
    pub(super) reaped: bool,
    pub(super) stdout: PathBuf,
    pub(super) stderr: PathBuf,
}

pub(super) fn spawn(cmd: &mut Command, name: &str, logs: &Path) -> Result<Child, String> {
    let stdout = logs.join(format!("{name}.out"));
    let stderr = logs.join(format!("{name}.err"));
    let out = File::create(&stdout).map_err(|e| io_err("create", &stdout, e))?;
    let err = File::create(&stderr).map_err(|e| io_err("create", &stderr, e))?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            // If xtask dies (even by SIGKILL), the kernel kills this child.
            prctl(PR_SET_PDEATHSIG, SIGKILL as std::ffi::c_ulong);
            Ok(())
        });
    }
    let shown = proc::display(cmd);
    let child = cmd
        .spawn()
        .map_err(|e| format!("could not start `{shown}`: {e}"))?;
    let pid = i32::try_from(child.id()).map_err(|_| "pid out of range".to_owned())?;
    // `child` is dropped without waiting: we reap it ourselves with wait4.
    drop(child);
    Ok(Child {
        pid,
        name: name.to_owned(),
        started: Instant::now(),
        reaped: false,
        stdout,
        stderr,
    })
}

impl Child {
    pub(super) fn signal(&self, sig: i32) {
        if !self.reaped {
            // SAFETY: plain syscall on our own unreaped child.
            unsafe {
                kill(self.pid, sig);
            }
        }
    }

    pub(super) fn try_reap(&mut self) -> Option<Finished> {
        if self.reaped {
            return None;
        }
        let mut status = 0;
        let mut usage = RUsage::default();
        // SAFETY: both pointers are to live locals of the right layout.
        let r = unsafe { wait4(self.pid, &mut status, WNOHANG, &mut usage) };
        if r != self.pid {
            return None;
        }
        self.reaped = true;
        let secs = |t: &TimeVal| t.sec as f64 + t.usec as f64 / 1e6;
        Some(Finished {
            status: ExitStatus::from_raw(status),
            user_s: secs(&usage.utime),
            sys_s: secs(&usage.stime),
            wall_s: self.started.elapsed().as_secs_f64(),
            max_rss_kib: usage._rest[0] as f64,
        })
    }

    /// Waits for it to end by itself within `limit` of its start; kills it otherwise.
    pub(super) fn wait(&mut self, limit: Duration) -> Result<Finished, String> {
        loop {
            if let Some(done) = self.try_reap() {
                return Ok(done);
            }
            if STOP.load(Ordering::SeqCst) {
                self.kill_now();
                return Err("interrupted".into());
            }
            if self.started.elapsed() > limit {
                self.kill_now();
                return Err(format!(
                    "`{}` did not finish within {}: killed (its output: {})",
                    self.name,
                    human(limit),
                    self.stdout.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM (after SIGCONT, in case it is stopped), SIGKILL after 3 s.
    pub(super) fn stop(&mut self) {
        self.signal(SIGCONT);
        self.signal(SIGTERM);
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            if self.try_reap().is_some() || self.reaped {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill_now();
    }

    pub(super) fn kill_now(&mut self) {
        if self.reaped {
            return;
        }
        self.signal(SIGCONT);
        self.signal(SIGKILL);
        // SIGKILL cannot be ignored; the bound only guards against the impossible.
        let until = Instant::now() + Duration::from_secs(5);
        while !self.reaped && Instant::now() < until {
            if self.try_reap().is_none() {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    pub(super) fn output(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub(super) fn errors(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// Runs a client to completion within `limit`; fails unless it exits 0.
pub(super) fn run_client(
    cmd: &mut Command,
    name: &str,
    logs: &Path,
    limit: Duration,
) -> Result<Ran, String> {
    check_stop()?;
    let shown = proc::display(cmd);
    let mut child = spawn(cmd, name, logs)?;
    let done = child.wait(limit)?;
    finish_client(&child, done, &shown)
}

pub(super) struct Ran {
    pub(super) done: Finished,
    pub(super) stdout: String,
}

pub(super) fn finish_client(child: &Child, done: Finished, shown: &str) -> Result<Ran, String> {
    if !done.status.success() {
        let err = child.errors();
        let tail: Vec<&str> = err.lines().rev().take(8).collect();
        return Err(format!(
            "`{shown}` {}:\n  {}\n(full output: {})",
            proc::describe(done.status),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n  "),
            child.stderr.display()
        ));
    }
    Ok(Ran {
        stdout: child.output(),
        done,
    })
}
