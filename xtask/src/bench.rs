//! `cargo xtask bench`: Faultline's load generator side by side with the tools people use, on real
//! servers on loopback, in alternation, with the medians, ratios and goals of the issue
//! "Load generator performance and measurement accuracy".
//!
//! | phase | Faultline (`harness/examples/loadgen.rs`) | reference |
//! |---|---|---|
//! | redis | SET, then GET, 50 in flight, rate 2x the reference's | `redis-benchmark -c 50 -n N -t set,get -P 1` |
//! | http-max | rate 2x wrk's, `max_in_flight` = C | `wrk -t1 -c C -d 10s` |
//! | http-fixed | 50% and 80% of wrk's median maximum, corrected percentiles | `oha --latency-correction -q RATE -z 10s -c C` |
//! | canary | 30 s at a fixed rate, the server SIGSTOPped for 1 s at 10 s | the same with oha |
//!
//! Every round runs the reference first (Faultline's "far above capacity" rate is twice what the
//! reference just measured) and then Faultline, with the same settings, `--rounds` times (B A B A
//! ...). HTTP runs each get a fresh `recommendations` server, so no run inherits another's state
//! (its arrival log, its connections). Every server and client is our own child: spawned with
//! `PR_SET_PDEATHSIG`, signalled by pid, reaped with `wait4` (which also gives its CPU time), and
//! killed on every path (drop guards; Ctrl-C and SIGTERM stop the bench between steps).
//!
//! Installs on demand, pinned, cached, idempotent, like `cargo xtask deps`: Debian `wrk` and
//! `redis-tools` (apt-get), `oha` (`cargo install --locked --version OHA_VERSION` into the cache
//! with `--root`). `redis-server` itself comes from `cargo xtask deps`.
//!
//! Writes `reports/bench/<date>-<rev>.md` and `.json` (raw numbers of every run); logs of every
//! run go to `target/bench/<date>-<rev>/`.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::Ctx;
use crate::proc::{self, human, io_err, query, run_logged};

/// The newest oha at the time of pinning. Built without TLS (`--no-default-features`): the bench
/// speaks plain HTTP on loopback, and it spares compiling a TLS stack.
pub const OHA_VERSION: &str = "1.16.0";
/// Debian bookworm ships wrk 4.1.0.
pub const WRK_SERIES: &str = "4.1.0";
const APT_PACKAGES: &[&str] = &["wrk", "redis-tools"];

/// Connections (redis-benchmark, wrk, oha) and `max_in_flight` (Faultline) everywhere.
const CONNECTIONS: usize = 50;
/// `faultline::load::MAX_RATE_PER_SEC`: the generator refuses plans above it.
const MAX_RATE: f64 = 100_000.0;
/// Faultline's intended rate in a maximum run, as a multiple of the reference's result.
const OVERLOAD: f64 = 2.0;
/// The canary's fixed rate, far below capacity, so the backlog of the stall drains at once and
/// the tools' own capacities hardly touch the percentiles.
const CANARY_RATE: f64 = 1_000.0;
const FIXED_FRACTIONS: [f64; 2] = [0.5, 0.8];
const URL_PATH: &str = "/recommendations/u1";
/// How long a client may run past its nominal duration before it is killed.
const CLIENT_SLACK: Duration = Duration::from_secs(20);

const USAGE: &str = "\
usage: cargo xtask bench [--quick] [--rounds N] [--only PHASES] [--worker-threads N] [--strict]

  --quick              1 round, short runs (a smoke test of the bench, not a measurement)
  --rounds N           rounds of alternation per comparison (default 3)
  --only PHASES        comma-separated subset of: redis, http (max + fixed rates), canary
  --worker-threads N   tokio worker threads for Faultline's generator (default 0: one per
                       core, as `faultline run` does)
  --strict             exit 1 if any goal is missed (default: report it and exit 0)
";

// ---------------------------------------------------------------------------------------------
// Arguments

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Redis,
    Http,
    Canary,
}

#[derive(Debug, Clone)]
struct Settings {
    rounds: usize,
    phases: Vec<Phase>,
    worker_threads: usize,
    strict: bool,
    quick: bool,
    /// redis-benchmark's `-n` per test (SET and GET each).
    redis_requests: u64,
    redis_secs: u64,
    http_secs: u64,
    canary_secs: u64,
    stall_at: Duration,
    stall_for: Duration,
}

impl Settings {
    fn parse(args: &[String]) -> Result<Settings, String> {
        let mut s = Settings {
            rounds: 3,
            phases: vec![Phase::Redis, Phase::Http, Phase::Canary],
            worker_threads: 0,
            strict: false,
            quick: false,
            redis_requests: 300_000,
            redis_secs: 5,
            http_secs: 10,
            canary_secs: 30,
            stall_at: Duration::from_secs(10),
            stall_for: Duration::from_secs(1),
        };
        let mut rounds = None;
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("`{name}` needs a value"))
            };
            match arg.as_str() {
                "--quick" => s.quick = true,
                "--strict" => s.strict = true,
                "--rounds" => {
                    let v = value("--rounds")?;
                    let n: usize = v
                        .parse()
                        .map_err(|_| format!("`--rounds {v}`: expected a whole number"))?;
                    if !(1..=20).contains(&n) {
                        return Err(format!("`--rounds {n}`: expected 1..=20"));
                    }
                    rounds = Some(n);
                }
                "--worker-threads" => {
                    let v = value("--worker-threads")?;
                    s.worker_threads = v
                        .parse()
                        .map_err(|_| format!("`--worker-threads {v}`: expected a whole number"))?;
                }
                "--only" => {
                    let v = value("--only")?;
                    let mut phases = Vec::new();
                    for name in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                        let phase = match name {
                            "redis" => Phase::Redis,
                            "http" => Phase::Http,
                            "canary" => Phase::Canary,
                            other => {
                                return Err(format!(
                                    "unknown phase `{other}` (expected redis, http, canary)"
                                ));
                            }
                        };
                        if !phases.contains(&phase) {
                            phases.push(phase);
                        }
                    }
                    if phases.is_empty() {
                        return Err("`--only` names no phase".into());
                    }
                    s.phases = phases;
                }
                "-h" | "--help" => return Err(String::new()),
                other => return Err(format!("unknown argument `{other}`")),
            }
        }
        if s.quick {
            s.rounds = 1;
            s.redis_requests = 50_000;
            s.redis_secs = 2;
            s.http_secs = 3;
            s.canary_secs = 8;
            s.stall_at = Duration::from_secs(3);
        }
        if let Some(n) = rounds {
            s.rounds = n;
        }
        Ok(s)
    }
}

// ---------------------------------------------------------------------------------------------
// Signals and child processes (std has no wait4, kill or prctl; these are glibc's).

static STOP: AtomicBool = AtomicBool::new(false);

const SIGINT: i32 = 2;
const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;
const SIGCONT: i32 = 18;
const SIGSTOP: i32 = 19;
const WNOHANG: i32 = 1;
const PR_SET_PDEATHSIG: i32 = 1;

#[repr(C)]
#[derive(Default)]
struct TimeVal {
    sec: i64,
    usec: i64,
}

/// `struct rusage` on 64-bit Linux: two timevals and 14 longs.
#[repr(C)]
#[derive(Default)]
struct RUsage {
    utime: TimeVal,
    stime: TimeVal,
    _rest: [i64; 14],
}

unsafe extern "C" {
    fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
    fn kill(pid: i32, sig: i32) -> i32;
    fn wait4(pid: i32, status: *mut i32, options: i32, rusage: *mut RUsage) -> i32;
    fn prctl(option: i32, ...) -> i32;
}

extern "C" fn on_stop_signal(_: i32) {
    STOP.store(true, Ordering::SeqCst);
}

/// From here on Ctrl-C and SIGTERM only set a flag: the bench stops at its next check and every
/// guard kills its process on the way out (std::process::exit would skip them).
fn catch_stop_signals() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        signal(SIGINT, on_stop_signal);
        signal(SIGTERM, on_stop_signal);
    }
}

fn check_stop() -> Result<(), String> {
    if STOP.load(Ordering::SeqCst) {
        Err("interrupted".into())
    } else {
        Ok(())
    }
}

/// Sleeps, waking early (with an error) if the bench is being stopped.
fn pause(d: Duration) -> Result<(), String> {
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
struct Finished {
    status: ExitStatus,
    user_s: f64,
    sys_s: f64,
    wall_s: f64,
}

impl Finished {
    fn cpu_s(&self) -> f64 {
        self.user_s + self.sys_s
    }
}

/// A child we started. Invariant: signalled only while not reaped, so its pid is still ours
/// (a dead, unreaped child is a zombie that keeps it). Dropping it SIGKILLs and reaps it.
struct Child {
    pid: i32,
    name: String,
    started: Instant,
    reaped: bool,
    stdout: PathBuf,
    stderr: PathBuf,
}

fn spawn(cmd: &mut Command, name: &str, logs: &Path) -> Result<Child, String> {
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
    fn signal(&self, sig: i32) {
        if !self.reaped {
            // SAFETY: plain syscall on our own unreaped child.
            unsafe {
                kill(self.pid, sig);
            }
        }
    }

    fn try_reap(&mut self) -> Option<Finished> {
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
        })
    }

    /// Waits for it to end by itself within `limit` of its start; kills it otherwise.
    fn wait(&mut self, limit: Duration) -> Result<Finished, String> {
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
    fn stop(&mut self) {
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

    fn kill_now(&mut self) {
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

    fn output(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    fn errors(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// Runs a client to completion within `limit`; fails unless it exits 0.
fn run_client(cmd: &mut Command, name: &str, logs: &Path, limit: Duration) -> Result<Ran, String> {
    check_stop()?;
    let shown = proc::display(cmd);
    let mut child = spawn(cmd, name, logs)?;
    let done = child.wait(limit)?;
    finish_client(&child, done, &shown)
}

struct Ran {
    done: Finished,
    stdout: String,
}

fn finish_client(child: &Child, done: Finished, shown: &str) -> Result<Ran, String> {
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

// ---------------------------------------------------------------------------------------------
// Servers

fn free_port() -> Result<u16, String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free loopback port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

fn redis_answers_ping(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 16];
    stream.write_all(b"PING\r\n").is_ok()
        && stream
            .read(&mut buf)
            .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
}

fn start_redis(logs: &Path, name: &str) -> Result<(Child, u16), String> {
    let port = free_port()?;
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .args(["--logfile", ""])
        .arg("--dir")
        .arg(logs);
    let mut child = spawn(&mut cmd, name, logs)?;
    let until = Instant::now() + Duration::from_secs(10);
    while !redis_answers_ping(port) {
        check_stop()?;
        if let Some(done) = child.try_reap() {
            return Err(format!(
                "redis-server {} before answering PING (log: {})",
                proc::describe(done.status),
                child.stdout.display()
            ));
        }
        if Instant::now() > until {
            return Err(format!(
                "redis-server did not answer PING on 127.0.0.1:{port} within 10 s (log: {})",
                child.stdout.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((child, port))
}

/// A fresh `recommendations` on a free loopback port; returns it and its base URL.
fn start_recommendations(bins: &Bins, logs: &Path, name: &str) -> Result<(Child, String), String> {
    let mut cmd = Command::new(&bins.recommendations);
    cmd.args(["--listen", "127.0.0.1:0"]);
    let mut child = spawn(&mut cmd, name, logs)?;
    let until = Instant::now() + Duration::from_secs(10);
    let addr = loop {
        check_stop()?;
        if let Some(addr) = child
            .output()
            .lines()
            .find_map(|l| l.strip_prefix("listening on "))
            .and_then(|a| a.trim().parse::<SocketAddr>().ok())
        {
            break addr;
        }
        if let Some(done) = child.try_reap() {
            return Err(format!(
                "recommendations {} before listening: {}",
                proc::describe(done.status),
                child.errors().trim()
            ));
        }
        if Instant::now() > until {
            return Err("recommendations did not announce its address within 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // One real request, so the first measured one is not the process's first.
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("cannot connect to recommendations at {addr}: {e}"))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET {URL_PATH} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    let mut answer = Vec::new();
    stream
        .write_all(request.as_bytes())
        .and_then(|()| stream.read_to_end(&mut answer))
        .map_err(|e| format!("recommendations at {addr} did not answer: {e}"))?;
    if !answer.starts_with(b"HTTP/1.0 200") && !answer.starts_with(b"HTTP/1.1 200") {
        return Err(format!(
            "recommendations answered `GET {URL_PATH}` with {:?}",
            String::from_utf8_lossy(&answer[..answer.len().min(40)])
        ));
    }
    Ok((child, format!("http://{addr}{URL_PATH}")))
}

// ---------------------------------------------------------------------------------------------
// Installs and builds

/// (package, version) of each of `pkgs` dpkg has installed.
fn dpkg_versions(pkgs: &[&str]) -> Vec<(String, String)> {
    let Ok(out) = Command::new("dpkg-query")
        .args(["-W", "-f=${Package}\t${Status}\t${Version}\n"])
        .args(pkgs)
        .stdin(Stdio::null())
        .output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let (pkg, status, version) = (f.next()?, f.next()?, f.next()?);
            (status == "install ok installed").then(|| (pkg.to_owned(), version.to_owned()))
        })
        .collect()
}

fn ensure_apt(ctx: &Ctx) -> Result<Vec<(String, String)>, String> {
    let missing: Vec<&str> = {
        let have = dpkg_versions(APT_PACKAGES);
        APT_PACKAGES
            .iter()
            .copied()
            .filter(|p| !have.iter().any(|(q, _)| q == p))
            .collect()
    };
    if !missing.is_empty() {
        if query("id", &["-u"]).as_deref() != Some("0") {
            return Err(format!(
                "missing and not running as root; install with:\n  sudo apt-get install {}",
                missing.join(" ")
            ));
        }
        println!("[bench] installing {} with apt-get", missing.join(" "));
        let apt = |args: &[&str]| {
            let mut c = Command::new("apt-get");
            c.env("DEBIAN_FRONTEND", "noninteractive")
                .args(["-q", "-o", "DPkg::Lock::Timeout=300"])
                .args(args);
            c
        };
        run_logged(&mut apt(&["update"]), &ctx.log("bench-apt-get-update"))?;
        let mut install = apt(&["install", "-y", "--no-install-recommends"]);
        install.args(&missing);
        run_logged(&mut install, &ctx.log("bench-apt-get-install"))?;
    }
    let have = dpkg_versions(APT_PACKAGES);
    for pkg in APT_PACKAGES {
        let Some((_, version)) = have.iter().find(|(q, _)| q == pkg) else {
            return Err(format!("{pkg} is still not installed after apt-get"));
        };
        // Debian versions: [epoch:]upstream-revision.
        let upstream = version.split_once(':').map_or(version.as_str(), |(_, v)| v);
        let series = if *pkg == "wrk" {
            WRK_SERIES
        } else {
            crate::deps::REDIS_SERIES
        };
        if !upstream.starts_with(series) {
            return Err(format!(
                "{pkg} {version} is installed; the bench is pinned to {series}x"
            ));
        }
    }
    if proc::find_on_path("redis-server").is_none() {
        return Err("redis-server is not on PATH: run `cargo xtask deps` first".into());
    }
    Ok(have)
}

fn oha_version(bin: &Path) -> Option<String> {
    // "oha 1.16.0"
    query(bin, &["--version"])?
        .split_whitespace()
        .nth(1)
        .map(str::to_owned)
}

fn ensure_oha(ctx: &Ctx) -> Result<PathBuf, String> {
    let bin = ctx.tools().join("oha");
    if oha_version(&bin).as_deref() == Some(OHA_VERSION) {
        return Ok(bin);
    }
    let started = Instant::now();
    println!(
        "[bench] oha {OHA_VERSION}: compiling it with `cargo install` into {} (several minutes on 2 cores)",
        ctx.cache.display()
    );
    let mut install = Command::new(&ctx.cargo);
    install
        .args(["install", "oha", "--locked", "--version", OHA_VERSION])
        .args(["--no-default-features", "--root"])
        .arg(&ctx.cache);
    run_logged(&mut install, &ctx.log("bench-oha-install"))?;
    match oha_version(&bin) {
        Some(v) if v == OHA_VERSION => {
            println!(
                "[bench] oha {OHA_VERSION}: installed in {}",
                human(started.elapsed())
            );
            Ok(bin)
        }
        other => Err(format!(
            "after `cargo install`, {} --version reports {other:?}, not {OHA_VERSION}",
            bin.display()
        )),
    }
}

struct Bins {
    loadgen: PathBuf,
    recommendations: PathBuf,
    oha: PathBuf,
}

fn build(ctx: &Ctx) -> Result<(PathBuf, PathBuf), String> {
    let steps: [&[&str]; 2] = [
        &[
            "build",
            "--release",
            "--example",
            "loadgen",
            "-p",
            "faultline",
        ],
        &[
            "build",
            "--release",
            "-p",
            "faultline-targets",
            "--bin",
            "recommendations",
        ],
    ];
    for args in steps {
        let mut c = Command::new(&ctx.cargo);
        c.current_dir(&ctx.root).args(args);
        println!("[bench] $ cargo {}", args.join(" "));
        let status = proc::run_inherited(&mut c)?;
        check_stop()?;
        if !status.success() {
            return Err(format!(
                "`cargo {}` {}",
                args.join(" "),
                proc::describe(status)
            ));
        }
    }
    let release = ctx.target_dir().join("release");
    Ok((
        release.join("examples/loadgen"),
        release.join("recommendations"),
    ))
}

// ---------------------------------------------------------------------------------------------
// Results

#[derive(Debug, Clone, Copy)]
enum Goal {
    /// ratio >= x
    AtLeast(f64),
    /// ratio <= x
    AtMost(f64),
    /// |ratio - 1| <= x
    Within(f64),
    /// No goal: shown for context.
    Info,
}

impl Goal {
    fn met(self, ratio: f64) -> bool {
        ratio.is_finite()
            && match self {
                Goal::AtLeast(x) => ratio >= x,
                Goal::AtMost(x) => ratio <= x,
                Goal::Within(x) => (ratio - 1.0).abs() <= x,
                Goal::Info => true,
            }
    }

    fn text(self) -> String {
        match self {
            Goal::AtLeast(x) => format!(">= {x}x"),
            Goal::AtMost(x) => format!("<= {x}x"),
            Goal::Within(x) => format!("within {:.0}%", x * 100.0),
            Goal::Info => "(info)".into(),
        }
    }
}

/// One line of the ratio table: medians over the rounds.
#[derive(Debug, Clone)]
struct Row {
    what: String,
    unit: &'static str,
    ours_label: &'static str,
    ours: f64,
    theirs_label: String,
    theirs: f64,
    goal: Goal,
    /// Per-round values, for the raw table.
    ours_runs: Vec<f64>,
    theirs_runs: Vec<f64>,
}

impl Row {
    fn ratio(&self) -> f64 {
        self.ours / self.theirs
    }
}

fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn row(
    what: impl Into<String>,
    unit: &'static str,
    ours_label: &'static str,
    ours_runs: Vec<f64>,
    theirs_label: impl Into<String>,
    theirs_runs: Vec<f64>,
    goal: Goal,
) -> Row {
    Row {
        what: what.into(),
        unit,
        ours_label,
        ours: median(&ours_runs),
        theirs_label: theirs_label.into(),
        theirs: median(&theirs_runs),
        goal,
        ours_runs,
        theirs_runs,
    }
}

struct Results {
    rows: Vec<Row>,
    /// Every run, raw: (phase, JSON object).
    runs: Vec<(String, J)>,
    notes: Vec<String>,
    /// wrk's median maximum, the base of the fixed rates.
    http_max: Option<f64>,
}

// ---------------------------------------------------------------------------------------------
// The phases

fn loadgen_cmd(bins: &Bins) -> Command {
    Command::new(&bins.loadgen)
}

fn common_args(c: &mut Command, rate: f64, secs: u64, op_timeout: &str, s: &Settings) {
    c.args(["--rate", &format!("{rate:.0}")])
        .args(["--duration", &format!("{secs}s")])
        .args(["--max-in-flight", &CONNECTIONS.to_string()])
        .args(["--op-timeout", op_timeout])
        .args(["--worker-threads", &s.worker_threads.to_string()]);
}

/// Runs loadgen and parses its JSON line, with the CPU wait4 saw added.
fn run_loadgen(mut c: Command, name: &str, logs: &Path, secs: u64) -> Result<J, String> {
    let ran = run_client(&mut c, name, logs, Duration::from_secs(secs) + CLIENT_SLACK)?;
    loadgen_json(&ran)
}

fn loadgen_json(ran: &Ran) -> Result<J, String> {
    let line = ran
        .stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or("loadgen printed no JSON line")?;
    let mut j = parse_json(line).map_err(|e| format!("loadgen's JSON: {e}"))?;
    j.set("child_cpu_user_s", J::Num(ran.done.user_s));
    j.set("child_cpu_sys_s", J::Num(ran.done.sys_s));
    j.set("child_wall_s", J::Num(ran.done.wall_s));
    Ok(j)
}

fn num(j: &J, path: &[&str]) -> f64 {
    j.path(path).and_then(J::num).unwrap_or(f64::NAN)
}

fn redis_phase(bins: &Bins, s: &Settings, logs: &Path, out: &mut Results) -> Result<(), String> {
    println!(
        "\n== redis: redis-benchmark -c {CONNECTIONS} -n {} -t set,get -P 1 vs Faultline SET+GET, {} round(s)",
        s.redis_requests, s.rounds
    );
    let (mut server, port) = start_redis(logs, "redis-server")?;
    let (mut rb_set, mut rb_get, mut rb_cpu) = (vec![], vec![], vec![]);
    let (mut fl_set, mut fl_get, mut fl_cpu) = (vec![], vec![], vec![]);
    for round in 1..=s.rounds {
        let mut c = Command::new("redis-benchmark");
        c.args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-c", &CONNECTIONS.to_string()])
            .args(["-n", &s.redis_requests.to_string()])
            .args(["-t", "set,get", "-P", "1", "--csv"]);
        let ran = run_client(
            &mut c,
            &format!("redis-benchmark-r{round}"),
            logs,
            Duration::from_secs(60),
        )?;
        let (set, get) = parse_redis_benchmark(&ran.stdout)?;
        let cpu_per_op_us = ran.done.cpu_s() / (2 * s.redis_requests) as f64 * 1e6;
        println!(
            "   r{round} redis-benchmark: SET {set:.0}/s GET {get:.0}/s, {cpu_per_op_us:.2} µs CPU/op"
        );
        rb_set.push(set);
        rb_get.push(get);
        rb_cpu.push(cpu_per_op_us);
        out.runs.push((
            "redis".into(),
            J::obj([
                ("round", J::Num(round as f64)),
                ("tool", J::Str("redis-benchmark".into())),
                ("set_ops_per_s", J::Num(set)),
                ("get_ops_per_s", J::Num(get)),
                ("requests_per_test", J::Num(s.redis_requests as f64)),
                ("child_cpu_user_s", J::Num(ran.done.user_s)),
                ("child_cpu_sys_s", J::Num(ran.done.sys_s)),
                ("child_wall_s", J::Num(ran.done.wall_s)),
                ("cpu_us_per_op", J::Num(cpu_per_op_us)),
            ]),
        ));
        pause(Duration::from_millis(300))?;

        let (mut cpu, mut ops) = (0.0, 0.0);
        for (command, reference) in [("set", set), ("get", get)] {
            let rate = (OVERLOAD * reference).clamp(1_000.0, MAX_RATE);
            let mut c = loadgen_cmd(bins);
            c.args(["redis", "--addr", &format!("127.0.0.1:{port}")])
                .args([
                    "--command",
                    command,
                    "--keyspace",
                    "10000",
                    "--value-size",
                    "3",
                ]);
            common_args(&mut c, rate, s.redis_secs, "1s", s);
            let mut j = run_loadgen(
                c,
                &format!("faultline-redis-{command}-r{round}"),
                logs,
                s.redis_secs,
            )?;
            let tput = num(&j, &["throughput_ops_per_s"]);
            let ok = num(&j, &["ok_ops"]);
            let this_cpu = num(&j, &["child_cpu_user_s"]) + num(&j, &["child_cpu_sys_s"]);
            println!(
                "   r{round} faultline {command}: {tput:.0}/s (intended {rate:.0}/s), {:.2} µs CPU/op, errors {}",
                this_cpu / ok * 1e6,
                num(&j, &["errors"])
            );
            if tput > 0.9 * rate {
                out.notes.push(format!(
                    "redis {command} r{round}: Faultline reached {tput:.0}/s of the {rate:.0}/s intended: the intended rate, not the system, may have been the limit"
                ));
            }
            cpu += this_cpu;
            ops += ok;
            if command == "set" {
                fl_set.push(tput);
            } else {
                fl_get.push(tput);
            }
            j.set("round", J::Num(round as f64));
            j.set("command", J::Str(command.into()));
            out.runs.push(("redis".into(), j));
            pause(Duration::from_millis(300))?;
        }
        fl_cpu.push(cpu / ops * 1e6);
    }
    server.stop();
    let theirs = format!("redis-benchmark -c {CONNECTIONS} -P 1");
    out.rows.push(row(
        format!("Redis SET max, {CONNECTIONS} in flight, unpipelined"),
        "ops/s",
        "faultline",
        fl_set,
        theirs.clone(),
        rb_set,
        Goal::AtLeast(0.9),
    ));
    out.rows.push(row(
        format!("Redis GET max, {CONNECTIONS} in flight, unpipelined"),
        "ops/s",
        "faultline",
        fl_get,
        theirs.clone(),
        rb_get,
        Goal::AtLeast(0.9),
    ));
    out.rows.push(row(
        "Redis client CPU per op (SET+GET at max)",
        "µs/op",
        "faultline",
        fl_cpu,
        theirs,
        rb_cpu,
        Goal::AtMost(1.3),
    ));
    Ok(())
}

fn http_phases(bins: &Bins, s: &Settings, logs: &Path, out: &mut Results) -> Result<(), String> {
    println!(
        "\n== http-max: wrk -t1 -c {CONNECTIONS} -d {}s vs Faultline (rate {OVERLOAD}x wrk's, max_in_flight {CONNECTIONS}), {} round(s)",
        s.http_secs, s.rounds
    );
    let (mut wrk_rps, mut fl_rps, mut wrk_cpu, mut fl_cpu) = (vec![], vec![], vec![], vec![]);
    for round in 1..=s.rounds {
        let (mut server, url) = start_recommendations(bins, logs, &format!("recs-wrk-r{round}"))?;
        let mut c = Command::new("wrk");
        c.args(["-t1", "-c", &CONNECTIONS.to_string()])
            .args(["-d", &format!("{}s", s.http_secs)])
            .arg(&url);
        let ran = run_client(
            &mut c,
            &format!("wrk-r{round}"),
            logs,
            Duration::from_secs(s.http_secs) + CLIENT_SLACK,
        )?;
        server.stop();
        let w = parse_wrk(&ran.stdout)?;
        let rps = num(&w, &["requests_per_s"]);
        let requests = num(&w, &["requests"]);
        println!(
            "   r{round} wrk: {rps:.0} req/s, {:.2} µs CPU/req",
            ran.done.cpu_s() / requests * 1e6
        );
        wrk_rps.push(rps);
        wrk_cpu.push(ran.done.cpu_s() / requests * 1e6);
        let mut w = w;
        w.set("round", J::Num(round as f64));
        w.set("tool", J::Str("wrk".into()));
        w.set("child_cpu_user_s", J::Num(ran.done.user_s));
        w.set("child_cpu_sys_s", J::Num(ran.done.sys_s));
        out.runs.push(("http-max".into(), w));
        pause(Duration::from_millis(300))?;

        let rate = (OVERLOAD * rps).clamp(1_000.0, MAX_RATE);
        let (mut server, url) =
            start_recommendations(bins, logs, &format!("recs-fl-max-r{round}"))?;
        let mut c = loadgen_cmd(bins);
        c.args(["http", "--url", &url]);
        common_args(&mut c, rate, s.http_secs, "1s", s);
        let mut j = run_loadgen(
            c,
            &format!("faultline-http-max-r{round}"),
            logs,
            s.http_secs,
        )?;
        server.stop();
        let tput = num(&j, &["throughput_ops_per_s"]);
        let cpu = (num(&j, &["child_cpu_user_s"]) + num(&j, &["child_cpu_sys_s"]))
            / num(&j, &["ok_ops"])
            * 1e6;
        println!(
            "   r{round} faultline: {tput:.0} req/s (intended {rate:.0}/s), {cpu:.2} µs CPU/req, errors {}",
            num(&j, &["errors"])
        );
        if tput > 0.9 * rate {
            out.notes.push(format!(
                "http-max r{round}: Faultline reached {tput:.0}/s of the {rate:.0}/s intended: the intended rate may have been the limit"
            ));
        }
        fl_rps.push(tput);
        fl_cpu.push(cpu);
        j.set("round", J::Num(round as f64));
        out.runs.push(("http-max".into(), j));
        pause(Duration::from_millis(300))?;
    }
    let max = median(&wrk_rps);
    out.http_max = Some(max);
    out.rows.push(row(
        format!("HTTP closed-loop max, C={CONNECTIONS}"),
        "req/s",
        "faultline",
        fl_rps,
        format!("wrk -t1 -c {CONNECTIONS}"),
        wrk_rps,
        Goal::AtLeast(0.9),
    ));
    out.rows.push(row(
        "HTTP client CPU per request at max",
        "µs/req",
        "faultline",
        fl_cpu,
        "wrk -t1",
        wrk_cpu,
        Goal::Info,
    ));

    for fraction in FIXED_FRACTIONS {
        let rate = (fraction * max).round();
        if !rate.is_finite() || rate < 1.0 {
            return Err(format!("wrk's maximum {max} gives no usable fixed rate"));
        }
        println!(
            "\n== http-fixed {:.0}%: {rate:.0}/s for {}s, oha --latency-correction -c {CONNECTIONS} vs Faultline, {} round(s)",
            fraction * 100.0,
            s.http_secs,
            s.rounds
        );
        let mut theirs: [Vec<f64>; 3] = Default::default();
        let mut ours: [Vec<f64>; 3] = Default::default();
        for round in 1..=s.rounds {
            let tag = format!("{:.0}pct-r{round}", fraction * 100.0);
            let o = run_oha(bins, logs, &format!("oha-{tag}"), rate, s.http_secs, None)?;
            let o_p = oha_percentiles(&o);
            let mut j = run_faultline_http(
                bins,
                s,
                logs,
                &format!("faultline-{tag}"),
                rate,
                s.http_secs,
                "2s",
                None,
            )?;
            let f_p = corrected(&j);
            println!(
                "   r{round} corrected p50/p99/p99.9 µs: oha {:.0}/{:.0}/{:.0}  faultline {:.0}/{:.0}/{:.0} (uncorrected p99 {:.0})",
                o_p[0],
                o_p[1],
                o_p[2],
                f_p[0],
                f_p[1],
                f_p[2],
                num(&j, &["uncorrected_us", "p99_us"])
            );
            for k in 0..3 {
                theirs[k].push(o_p[k]);
                ours[k].push(f_p[k]);
            }
            let mut o = o;
            o.set("round", J::Num(round as f64));
            o.set("rate", J::Num(rate));
            out.runs
                .push((format!("http-fixed-{:.0}", fraction * 100.0), o));
            j.set("round", J::Num(round as f64));
            out.runs
                .push((format!("http-fixed-{:.0}", fraction * 100.0), j));
        }
        for (k, name) in ["p50", "p99", "p99.9"].iter().enumerate() {
            out.rows.push(row(
                format!(
                    "HTTP {:.0}% of max ({rate:.0}/s), corrected {name}",
                    fraction * 100.0
                ),
                "µs",
                "faultline",
                std::mem::take(&mut ours[k]),
                "oha --latency-correction",
                std::mem::take(&mut theirs[k]),
                Goal::Within(0.15),
            ));
        }
    }
    Ok(())
}

/// A stall of the server during a client run: SIGSTOP at `at` after the client's start, SIGCONT
/// `length` later (and on every path: the server's guard continues it before killing it).
#[derive(Debug, Clone, Copy)]
struct Stall {
    at: Duration,
    length: Duration,
}

/// Runs a client against a fresh server, stalling the server if asked; returns the client's run
/// and when the stall really began and ended, in seconds from the client's start.
fn run_against_recs(
    bins: &Bins,
    logs: &Path,
    name: &str,
    build: impl FnOnce(&str) -> Command,
    secs: u64,
    stall: Option<Stall>,
) -> Result<(Ran, Option<(f64, f64)>), String> {
    let (mut server, url) = start_recommendations(bins, logs, &format!("recs-{name}"))?;
    let mut cmd = build(&url);
    check_stop()?;
    let shown = proc::display(&cmd);
    let mut client = spawn(&mut cmd, name, logs)?;
    let mut window = None;
    if let Some(stall) = stall {
        pause(stall.at)?;
        let from = client.started.elapsed().as_secs_f64();
        server.signal(SIGSTOP);
        let stalled = pause(stall.length);
        server.signal(SIGCONT);
        stalled?;
        window = Some((from, client.started.elapsed().as_secs_f64()));
    }
    let done = client.wait(Duration::from_secs(secs) + CLIENT_SLACK)?;
    let ran = finish_client(&client, done, &shown)?;
    server.stop();
    Ok((ran, window))
}

#[allow(clippy::too_many_arguments)]
fn run_faultline_http(
    bins: &Bins,
    s: &Settings,
    logs: &Path,
    name: &str,
    rate: f64,
    secs: u64,
    op_timeout: &str,
    stall: Option<Stall>,
) -> Result<J, String> {
    let (ran, window) = run_against_recs(
        bins,
        logs,
        name,
        |url| {
            let mut c = loadgen_cmd(bins);
            c.args(["http", "--url", url]);
            common_args(&mut c, rate, secs, op_timeout, s);
            c
        },
        secs,
        stall,
    )?;
    let mut j = loadgen_json(&ran)?;
    if let Some((from, to)) = window {
        j.set("stall_s", J::Arr(vec![J::Num(from), J::Num(to)]));
    }
    Ok(j)
}

fn run_oha(
    bins: &Bins,
    logs: &Path,
    name: &str,
    rate: f64,
    secs: u64,
    stall: Option<Stall>,
) -> Result<J, String> {
    let (ran, window) = run_against_recs(
        bins,
        logs,
        name,
        |url| {
            let mut c = Command::new(&bins.oha);
            c.args([
                "--no-tui",
                "--output-format",
                "json",
                "--latency-correction",
            ])
            .args(["-q", &format!("{rate:.0}")])
            .args(["-z", &format!("{secs}s")])
            .args(["-c", &CONNECTIONS.to_string()])
            .arg(url);
            c
        },
        secs,
        stall,
    )?;
    let mut j = parse_json(ran.stdout.trim()).map_err(|e| format!("oha's JSON: {e}"))?;
    // Keep what the comparison reads; the histograms are long.
    for key in [
        "responseTimeHistogram",
        "firstByteHistogram",
        "firstBytePercentiles",
        "details",
        "rps",
    ] {
        j.remove(key);
    }
    j.set("tool", J::Str("oha".into()));
    j.set("child_cpu_user_s", J::Num(ran.done.user_s));
    j.set("child_cpu_sys_s", J::Num(ran.done.sys_s));
    j.set("child_wall_s", J::Num(ran.done.wall_s));
    if let Some((from, to)) = window {
        j.set("stall_s", J::Arr(vec![J::Num(from), J::Num(to)]));
    }
    Ok(j)
}

/// oha's corrected p50, p99, p99.9 in µs (it reports seconds).
fn oha_percentiles(j: &J) -> [f64; 3] {
    ["p50", "p99", "p99.9"].map(|p| num(j, &["latencyPercentiles", p]) * 1e6)
}

fn corrected(j: &J) -> [f64; 3] {
    ["p50_us", "p99_us", "p999_us"].map(|p| num(j, &["corrected_us", p]))
}

fn canary_phase(bins: &Bins, s: &Settings, logs: &Path, out: &mut Results) -> Result<(), String> {
    let rate = match out.http_max {
        Some(max) if max.is_finite() => CANARY_RATE.min((0.5 * max).round()).max(1.0),
        _ => CANARY_RATE,
    };
    let stall = Stall {
        at: s.stall_at,
        length: s.stall_for,
    };
    println!(
        "\n== canary: {rate:.0}/s for {}s, server SIGSTOPped for {} at {}, oha vs Faultline, {} round(s)",
        s.canary_secs,
        human(stall.length),
        human(stall.at),
        s.rounds
    );
    let (mut oha_p99, mut fl_p99, mut fl_unc_p99) = (vec![], vec![], vec![]);
    for round in 1..=s.rounds {
        let mut o = run_oha(
            bins,
            logs,
            &format!("oha-canary-r{round}"),
            rate,
            s.canary_secs,
            Some(stall),
        )?;
        let o99 = num(&o, &["latencyPercentiles", "p99"]) * 1e6;
        let mut j = run_faultline_http(
            bins,
            s,
            logs,
            &format!("faultline-canary-r{round}"),
            rate,
            s.canary_secs,
            "5s",
            Some(stall),
        )?;
        let f99 = num(&j, &["corrected_us", "p99_us"]);
        let u99 = num(&j, &["uncorrected_us", "p99_us"]);
        println!(
            "   r{round} p99 µs: oha corrected {o99:.0}, faultline corrected {f99:.0}, faultline uncorrected {u99:.0} (errors: oha {}, faultline {})",
            oha_errors(&o),
            num(&j, &["errors"])
        );
        oha_p99.push(o99);
        fl_p99.push(f99);
        fl_unc_p99.push(u99);
        o.set("round", J::Num(round as f64));
        o.set("rate", J::Num(rate));
        out.runs.push(("canary".into(), o));
        j.set("round", J::Num(round as f64));
        out.runs.push(("canary".into(), j));
    }
    out.rows.push(row(
        format!("CO canary ({rate:.0}/s, 1 s SIGSTOP), corrected p99"),
        "µs",
        "faultline",
        fl_p99.clone(),
        "oha --latency-correction",
        oha_p99,
        Goal::Within(0.10),
    ));
    out.rows.push(row(
        "CO canary, Faultline corrected p99 / its uncorrected p99",
        "µs",
        "corrected",
        fl_p99,
        "faultline uncorrected",
        fl_unc_p99,
        Goal::AtLeast(50.0),
    ));
    Ok(())
}

fn oha_errors(j: &J) -> f64 {
    match j.get("errorDistribution") {
        Some(J::Obj(fields)) => fields.iter().filter_map(|(_, v)| v.num()).sum(),
        _ => 0.0,
    }
}

// ---------------------------------------------------------------------------------------------
// Tool output parsers

/// `--csv`: `"SET","81037.28",...` and `"GET",...`.
fn parse_redis_benchmark(out: &str) -> Result<(f64, f64), String> {
    let rps = |test: &str| {
        out.lines().find_map(|l| {
            let mut f = l.split(',').map(|x| x.trim().trim_matches('"'));
            (f.next()? == test).then(|| f.next()?.parse::<f64>().ok())?
        })
    };
    match (rps("SET"), rps("GET")) {
        (Some(set), Some(get)) => Ok((set, get)),
        _ => Err(format!(
            "could not read SET and GET rates from redis-benchmark's output:\n{out}"
        )),
    }
}

fn parse_wrk(out: &str) -> Result<J, String> {
    let field = |prefix: &str| {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_owned()))
    };
    let rps = field("Requests/sec:")
        .and_then(|v| v.parse::<f64>().ok())
        .ok_or_else(|| format!("no `Requests/sec:` in wrk's output:\n{out}"))?;
    // "  123456 requests in 10.00s, 12.34MB read"
    let requests = out
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(f64::NAN);
    let non_2xx = field("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    Ok(J::obj([
        ("requests_per_s", J::Num(rps)),
        ("requests", J::Num(requests)),
        ("non_2xx", J::Num(non_2xx)),
        (
            "socket_errors",
            J::Str(field("Socket errors:").unwrap_or_default()),
        ),
    ]))
}

// ---------------------------------------------------------------------------------------------
// The report

fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        "n/a".into()
    } else if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn ratio_text(r: &Row) -> String {
    let ratio = r.ratio();
    if ratio.is_finite() {
        format!("{ratio:.2}x")
    } else {
        "n/a".into()
    }
}

fn table(rows: &[Row]) -> String {
    let mut s = String::from(
        "| comparison | unit | Faultline | reference | ratio | goal | met |\n|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} ({}) | {} ({}) | {} | {} | {} |",
            r.what,
            r.unit,
            fmt_num(r.ours),
            r.ours_label,
            fmt_num(r.theirs),
            r.theirs_label,
            ratio_text(r),
            r.goal.text(),
            match (r.goal, r.goal.met(r.ratio())) {
                (Goal::Info, _) => "-",
                (_, true) => "yes",
                (_, false) => "**MISSED**",
            }
        );
    }
    s
}

fn per_round_table(rows: &[Row]) -> String {
    let mut s =
        String::from("| comparison | Faultline per round | reference per round |\n|---|---|---|\n");
    let list = |v: &[f64]| v.iter().map(|x| fmt_num(*x)).collect::<Vec<_>>().join(", ");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            r.what,
            list(&r.ours_runs),
            list(&r.theirs_runs)
        );
    }
    s
}

struct Meta {
    date: String,
    rev: String,
    dirty: bool,
    cores: usize,
    cpu_model: String,
    load_before: String,
    load_after: String,
    versions: Vec<(String, String)>,
    started: Instant,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_default()
}

/// YYYY-MM-DD (UTC) from the system clock (Howard Hinnant's days-to-civil).
fn today() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn markdown(meta: &Meta, s: &Settings, res: &Results) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Load generator bench, {} ({})\n", meta.date, meta.rev);
    let _ = writeln!(
        md,
        "`cargo xtask bench{}` on {} core(s) ({}), load average {} before and {} after; \
         {} round(s) per comparison, reference first in each round; medians over the rounds. \
         Servers and clients share the machine's cores.{}\n",
        if s.quick { " --quick" } else { "" },
        meta.cores,
        meta.cpu_model,
        meta.load_before,
        meta.load_after,
        s.rounds,
        if meta.dirty {
            " The work tree had uncommitted changes."
        } else {
            ""
        }
    );
    md.push_str(&table(&res.rows));
    md.push_str(
        "\nRatio = Faultline / reference (the canary's last line: corrected / uncorrected). ",
    );
    md.push_str("Latencies are µs; oha's are corrected (`--latency-correction`), Faultline's corrected ones are from each op's intended start.\n\n");
    md.push_str("## Per round\n\n");
    md.push_str(&per_round_table(&res.rows));
    md.push_str("\n## Settings and versions\n\n");
    let _ = writeln!(
        md,
        "- connections / max_in_flight: {CONNECTIONS}; Faultline's rate in a maximum run: {OVERLOAD}x the reference's result of the same round (capped at {MAX_RATE:.0}/s, the generator's limit); its throughput counts ok ops completed within the scheduled duration."
    );
    let _ = writeln!(
        md,
        "- redis: {} requests per test for redis-benchmark (3-byte values); Faultline {} s per command, keyspace 10000, 3-byte values, op timeout 1 s.",
        s.redis_requests, s.redis_secs
    );
    let _ = writeln!(
        md,
        "- http: `recommendations` (fresh process per run) `GET {URL_PATH}`; maximum and fixed-rate runs {} s; canary {} s with SIGSTOP at {} for {}.",
        s.http_secs,
        s.canary_secs,
        human(s.stall_at),
        human(s.stall_for)
    );
    let _ = writeln!(
        md,
        "- Faultline tokio worker threads: {}.",
        if s.worker_threads == 0 {
            "default (one per core, as `faultline run`)".to_owned()
        } else {
            s.worker_threads.to_string()
        }
    );
    for (k, v) in &meta.versions {
        let _ = writeln!(md, "- {k}: {v}");
    }
    md.push_str("\n## How Faultline's Redis workload differs from redis-benchmark's\n\n");
    md.push_str(
        "redis-benchmark opens 50 connections with one request outstanding on each. Faultline's \
         `WorkloadKind::Redis` opens min(max_in_flight, 4) = 4 multiplexed connections and lets up to \
         50 ops be in flight across them, so each connection may carry several requests at once \
         (the client does not batch them, but the server may read several per read). \"50 connections \
         unpipelined\" is therefore not something the generator can do exactly: the comparison is \
         50 in flight vs 50 in flight.\n",
    );
    if !res.notes.is_empty() {
        md.push_str("\n## Notes from this run\n\n");
        for n in &res.notes {
            let _ = writeln!(md, "- {n}");
        }
    }
    md
}

fn json_report(meta: &Meta, s: &Settings, res: &Results) -> J {
    let rows = res
        .rows
        .iter()
        .map(|r| {
            J::obj([
                ("comparison", J::Str(r.what.clone())),
                ("unit", J::Str(r.unit.into())),
                ("faultline_label", J::Str(r.ours_label.into())),
                ("faultline_median", J::Num(r.ours)),
                ("reference", J::Str(r.theirs_label.clone())),
                ("reference_median", J::Num(r.theirs)),
                ("ratio", J::Num(r.ratio())),
                ("goal", J::Str(r.goal.text())),
                (
                    "met",
                    match r.goal {
                        Goal::Info => J::Null,
                        goal => J::Bool(goal.met(r.ratio())),
                    },
                ),
                (
                    "faultline_runs",
                    J::Arr(r.ours_runs.iter().map(|x| J::Num(*x)).collect()),
                ),
                (
                    "reference_runs",
                    J::Arr(r.theirs_runs.iter().map(|x| J::Num(*x)).collect()),
                ),
            ])
        })
        .collect();
    let runs = res
        .runs
        .iter()
        .map(|(phase, j)| {
            let mut j = j.clone();
            j.set("phase", J::Str(phase.clone()));
            j
        })
        .collect();
    J::obj([
        ("generated_by", J::Str("cargo xtask bench".into())),
        ("date", J::Str(meta.date.clone())),
        ("git_rev", J::Str(meta.rev.clone())),
        ("dirty", J::Bool(meta.dirty)),
        ("cores", J::Num(meta.cores as f64)),
        ("cpu_model", J::Str(meta.cpu_model.clone())),
        ("loadavg_before", J::Str(meta.load_before.clone())),
        ("loadavg_after", J::Str(meta.load_after.clone())),
        ("elapsed_s", J::Num(meta.started.elapsed().as_secs_f64())),
        (
            "versions",
            J::Obj(
                meta.versions
                    .iter()
                    .map(|(k, v)| (k.clone(), J::Str(v.clone())))
                    .collect(),
            ),
        ),
        (
            "settings",
            J::obj([
                ("quick", J::Bool(s.quick)),
                ("rounds", J::Num(s.rounds as f64)),
                ("connections", J::Num(CONNECTIONS as f64)),
                ("overload_factor", J::Num(OVERLOAD)),
                ("redis_requests_per_test", J::Num(s.redis_requests as f64)),
                ("redis_secs", J::Num(s.redis_secs as f64)),
                ("http_secs", J::Num(s.http_secs as f64)),
                ("canary_secs", J::Num(s.canary_secs as f64)),
                ("stall_at_s", J::Num(s.stall_at.as_secs_f64())),
                ("stall_for_s", J::Num(s.stall_for.as_secs_f64())),
                ("worker_threads", J::Num(s.worker_threads as f64)),
            ]),
        ),
        ("rows", J::Arr(rows)),
        (
            "notes",
            J::Arr(res.notes.iter().map(|n| J::Str(n.clone())).collect()),
        ),
        ("runs", J::Arr(runs)),
    ])
}

// ---------------------------------------------------------------------------------------------
// Entry point

pub fn run(ctx: &Ctx, args: &[String]) -> Result<i32, String> {
    let s = match Settings::parse(args) {
        Ok(s) => s,
        Err(e) if e.is_empty() => {
            print!("{USAGE}");
            return Ok(0);
        }
        Err(e) => {
            eprintln!("xtask bench: {e}\n\n{USAGE}");
            return Ok(2);
        }
    };
    catch_stop_signals();
    let started = Instant::now();

    let apt = ensure_apt(ctx)?;
    let oha = ensure_oha(ctx)?;
    check_stop()?;
    let (loadgen, recommendations) = build(ctx)?;
    let bins = Bins {
        loadgen,
        recommendations,
        oha,
    };

    let rev = query(
        "git",
        &[
            "-C",
            &ctx.root.to_string_lossy(),
            "rev-parse",
            "--short",
            "HEAD",
        ],
    )
    .unwrap_or_else(|| "norev".into());
    let dirty = query(
        "git",
        &[
            "-C",
            &ctx.root.to_string_lossy(),
            "status",
            "--porcelain",
            "--untracked-files=no",
        ],
    )
    .is_some_and(|o| !o.is_empty());
    let date = today();
    let id = format!("{date}-{rev}");
    let logs = ctx.target_dir().join("bench").join(&id);
    std::fs::create_dir_all(&logs).map_err(|e| io_err("create", &logs, e))?;

    let mut versions: Vec<(String, String)> = apt
        .iter()
        .map(|(p, v)| (format!("{p} (debian)"), v.clone()))
        .collect();
    versions.push(("oha".into(), format!("{OHA_VERSION} (no TLS)")));
    if let Some(v) = query("redis-server", &["--version"]) {
        versions.push(("redis-server".into(), v));
    }
    if let Some(v) = query("rustc", &["--version"]) {
        versions.push(("rustc".into(), v));
    }
    let mut meta = Meta {
        date,
        rev,
        dirty,
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model: cpu_model(),
        load_before: loadavg(),
        load_after: String::new(),
        versions,
        started,
    };
    println!(
        "[bench] {} core(s), load average {}; logs of every run in {}",
        meta.cores,
        meta.load_before,
        logs.display()
    );

    let mut res = Results {
        rows: Vec::new(),
        runs: Vec::new(),
        notes: Vec::new(),
        http_max: None,
    };
    let measured = Instant::now();
    for phase in &s.phases {
        match phase {
            Phase::Redis => redis_phase(&bins, &s, &logs, &mut res)?,
            Phase::Http => http_phases(&bins, &s, &logs, &mut res)?,
            Phase::Canary => canary_phase(&bins, &s, &logs, &mut res)?,
        }
    }
    meta.load_after = loadavg();
    println!(
        "\n[bench] measured in {} (after installs and builds)",
        human(measured.elapsed())
    );

    let md = markdown(&meta, &s, &res);
    let mut json = String::new();
    json_report(&meta, &s, &res).write(&mut json, 0);
    json.push('\n');
    let dir = ctx.root.join("reports/bench");
    std::fs::create_dir_all(&dir).map_err(|e| io_err("create", &dir, e))?;
    let md_path = dir.join(format!("{id}.md"));
    let json_path = dir.join(format!("{id}.json"));
    std::fs::write(&md_path, &md).map_err(|e| io_err("write", &md_path, e))?;
    std::fs::write(&json_path, &json).map_err(|e| io_err("write", &json_path, e))?;
    println!("\n{}", table(&res.rows));
    for n in &res.notes {
        println!("note: {n}");
    }
    println!(
        "[bench] report: {} (raw numbers: {})",
        md_path.display(),
        json_path.display()
    );
    let missed = res.rows.iter().filter(|r| !r.goal.met(r.ratio())).count();
    if missed > 0 {
        println!("[bench] {missed} goal(s) missed (see the table)");
    }
    Ok(if s.strict && missed > 0 { 1 } else { 0 })
}

// ---------------------------------------------------------------------------------------------
// A small JSON value: enough to read loadgen's and oha's output and write the report (xtask is
// std-only).

#[derive(Debug, Clone, PartialEq)]
enum J {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl J {
    fn obj<const N: usize>(fields: [(&str, J); N]) -> J {
        J::Obj(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    fn get(&self, key: &str) -> Option<&J> {
        match self {
            J::Obj(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn path(&self, keys: &[&str]) -> Option<&J> {
        keys.iter().try_fold(self, |j, k| j.get(k))
    }

    fn num(&self) -> Option<f64> {
        match self {
            J::Num(x) => Some(*x),
            _ => None,
        }
    }

    /// Sets (or replaces) a field of an object; no-op on anything else.
    fn set(&mut self, key: &str, value: J) {
        if let J::Obj(fields) = self {
            match fields.iter_mut().find(|(k, _)| k == key) {
                Some((_, v)) => *v = value,
                None => fields.push((key.to_owned(), value)),
            }
        }
    }

    fn remove(&mut self, key: &str) {
        if let J::Obj(fields) = self {
            fields.retain(|(k, _)| k != key);
        }
    }

    /// Pretty-printed, two spaces per level; non-finite numbers as null.
    fn write(&self, out: &mut String, indent: usize) {
        let pad = |out: &mut String, n: usize| out.extend(std::iter::repeat_n(' ', n));
        match self {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Num(x) if !x.is_finite() => out.push_str("null"),
            J::Num(x) if x.fract() == 0.0 && x.abs() < 1e15 => {
                let _ = write!(out, "{}", *x as i64);
            }
            J::Num(x) => {
                let _ = write!(out, "{x}");
            }
            J::Str(s) => write_str(out, s),
            J::Arr(items) if items.iter().all(|i| !matches!(i, J::Arr(_) | J::Obj(_))) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.write(out, indent);
                }
                out.push(']');
            }
            J::Arr(items) => {
                out.push_str("[\n");
                for (i, item) in items.iter().enumerate() {
                    pad(out, indent + 2);
                    item.write(out, indent + 2);
                    out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
                }
                pad(out, indent);
                out.push(']');
            }
            J::Obj(fields) if fields.is_empty() => out.push_str("{}"),
            J::Obj(fields) => {
                out.push_str("{\n");
                for (i, (k, v)) in fields.iter().enumerate() {
                    pad(out, indent + 2);
                    write_str(out, k);
                    out.push_str(": ");
                    v.write(out, indent + 2);
                    out.push_str(if i + 1 < fields.len() { ",\n" } else { "\n" });
                }
                pad(out, indent);
                out.push('}');
            }
        }
    }
}

fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn parse_json(text: &str) -> Result<J, String> {
    let mut p = JsonParser {
        s: text.as_bytes(),
        i: 0,
    };
    let v = p.value(0)?;
    p.ws();
    if p.i != p.s.len() {
        return Err(format!("trailing characters at byte {}", p.i));
    }
    Ok(v)
}

struct JsonParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn err<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("{what} at byte {}", self.i))
    }

    fn eat(&mut self, lit: &str) -> bool {
        if self.s[self.i..].starts_with(lit.as_bytes()) {
            self.i += lit.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<J, String> {
        if depth > 64 {
            return self.err("nesting too deep");
        }
        self.ws();
        let Some(&c) = self.s.get(self.i) else {
            return self.err("unexpected end");
        };
        match c {
            b'{' => {
                self.i += 1;
                let mut fields = Vec::new();
                self.ws();
                if self.eat("}") {
                    return Ok(J::Obj(fields));
                }
                loop {
                    self.ws();
                    if self.s.get(self.i) != Some(&b'"') {
                        return self.err("expected a key");
                    }
                    let key = self.string()?;
                    self.ws();
                    if !self.eat(":") {
                        return self.err("expected `:`");
                    }
                    let v = self.value(depth + 1)?;
                    fields.push((key, v));
                    self.ws();
                    if self.eat(",") {
                        continue;
                    }
                    if self.eat("}") {
                        return Ok(J::Obj(fields));
                    }
                    return self.err("expected `,` or `}`");
                }
            }
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.eat("]") {
                    return Ok(J::Arr(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    if self.eat(",") {
                        continue;
                    }
                    if self.eat("]") {
                        return Ok(J::Arr(items));
                    }
                    return self.err("expected `,` or `]`");
                }
            }
            b'"' => self.string().map(J::Str),
            b't' if self.eat("true") => Ok(J::Bool(true)),
            b'f' if self.eat("false") => Ok(J::Bool(false)),
            b'n' if self.eat("null") => Ok(J::Null),
            b'-' | b'0'..=b'9' => {
                let start = self.i;
                while self.i < self.s.len()
                    && matches!(
                        self.s[self.i],
                        b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                    )
                {
                    self.i += 1;
                }
                let text = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
                text.parse::<f64>()
                    .map(J::Num)
                    .or_else(|_| self.err("bad number"))
            }
            _ => self.err("unexpected character"),
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self
            .s
            .get(self.i..self.i + 4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u32::from_str_radix(d, 16).ok());
        match digits {
            Some(v) => {
                self.i += 4;
                Ok(v)
            }
            None => self.err("bad \\u escape"),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.i += 1; // the opening quote
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.i) else {
                return self.err("unterminated string");
            };
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else {
                        return self.err("unterminated escape");
                    };
                    self.i += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi) && self.eat("\\u") {
                                let lo = self.hex4()?;
                                0x10000 + ((hi - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF)
                            } else {
                                hi
                            };
                            char::from_u32(code).unwrap_or('\u{fffd}')
                        }
                        _ => return self.err("bad escape"),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                c => out.push(c),
            }
        }
        String::from_utf8(out).or_else(|_| self.err("invalid UTF-8 in string"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_and_reads_paths() {
        let text = r#"{"a": {"p99.9": 0.5, "n": -12, "e": 1.5e-3}, "s": "x\"\u00e9\ud83d\ude00", "l": [1, true, null], "o": {}}"#;
        let j = parse_json(text).expect("parses");
        assert_eq!(j.path(&["a", "p99.9"]).and_then(J::num), Some(0.5));
        assert_eq!(j.path(&["a", "n"]).and_then(J::num), Some(-12.0));
        assert_eq!(j.path(&["a", "e"]).and_then(J::num), Some(0.0015));
        assert_eq!(j.get("s"), Some(&J::Str("x\"é😀".into())));
        let mut out = String::new();
        j.write(&mut out, 0);
        assert_eq!(parse_json(&out).expect("re-parses"), j);
        for bad in ["{", "[1,]", "{\"a\" 1}", "\"abc", "01x", "{} x"] {
            assert!(parse_json(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn tool_outputs_parse() {
        let rb = "\"test\",\"rps\",\"avg_latency_ms\"\n\"SET\",\"81037.28\",\"0.347\"\n\"GET\",\"90009.00\",\"0.3\"\n";
        assert_eq!(parse_redis_benchmark(rb), Ok((81037.28, 90009.0)));
        assert!(parse_redis_benchmark("nothing").is_err());
        let wrk = "Running 10s test @ http://127.0.0.1:1/x\n  1 threads and 50 connections\n  \
                   301234 requests in 10.00s, 40.00MB read\n  Non-2xx or 3xx responses: 7\nRequests/sec:  30123.40\nTransfer/sec:      4.00MB\n";
        let j = parse_wrk(wrk).expect("wrk parses");
        assert_eq!(num(&j, &["requests_per_s"]), 30123.4);
        assert_eq!(num(&j, &["requests"]), 301234.0);
        assert_eq!(num(&j, &["non_2xx"]), 7.0);
    }

    #[test]
    fn medians_goals_and_dates() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[f64::NAN]).is_nan());
        assert!(Goal::AtLeast(0.9).met(0.95) && !Goal::AtLeast(0.9).met(0.89));
        assert!(Goal::AtMost(1.3).met(1.3) && !Goal::AtMost(1.3).met(f64::NAN));
        assert!(Goal::Within(0.15).met(1.14) && Goal::Within(0.15).met(0.86));
        assert!(!Goal::Within(0.15).met(1.16));
        let d = today();
        assert!(d.len() == 10 && d.starts_with("20"), "{d}");
    }

    #[test]
    fn arguments() {
        let s = Settings::parse(&["--quick".into(), "--only".into(), "http,redis".into()])
            .expect("parses");
        assert_eq!(
            (s.rounds, s.phases.clone()),
            (1, vec![Phase::Http, Phase::Redis])
        );
        let s = Settings::parse(&["--rounds".into(), "5".into()]).expect("parses");
        assert_eq!(s.rounds, 5);
        assert!(Settings::parse(&["--only".into(), "kafka".into()]).is_err());
        assert!(Settings::parse(&["--rounds".into(), "0".into()]).is_err());
    }
}
