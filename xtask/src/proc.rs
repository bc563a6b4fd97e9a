//! Running commands: printing them, capturing their output into a log, telling how they failed,
//! and keeping `xtask` alive on Ctrl-C so it can report how its child ended.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How many lines of a failed command's output are shown.
const TAIL_LINES: usize = 25;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

unsafe extern "C" {
    // glibc's signal(2) has BSD semantics (SA_RESTART), so waiting on a child is not disturbed.
    fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
}

const SIGINT: i32 = 2;

extern "C" fn on_sigint(_: i32) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Ctrl-C reaches the whole foreground process group: the child (cargo, nextest, faultline) gets
/// it and cleans up. `xtask` only notes it, waits for the child and then stops. A caught signal
/// is reset to its default in every exec'd child, so children behave as usual.
pub fn catch_interrupts() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        signal(SIGINT, on_sigint);
    }
}

/// After a child ended: if Ctrl-C was pressed, stop here instead of starting the next step.
pub fn exit_if_interrupted() {
    if INTERRUPTED.load(Ordering::SeqCst) {
        eprintln!("xtask: interrupted");
        std::process::exit(130);
    }
}

/// A command as a shell would need it typed, with the environment it was given.
pub fn display(cmd: &Command) -> String {
    let mut s = String::new();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            let _ = write!(s, "{}={} ", k.to_string_lossy(), quote(v));
        }
    }
    s.push_str(&quote(cmd.get_program()));
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&quote(a));
    }
    s
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@,+%^~".contains(c));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => format!("ended with {status}"),
    }
}

/// The exit code a shell would report for this status.
pub fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(sig)) => 128 + sig,
        _ => 1,
    }
}

pub struct Captured {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a quick query (`--version` and the like) with no stdin; `None` if it could not start or
/// failed. Its stdout is returned trimmed.
pub fn query<S: AsRef<OsStr>>(program: impl AsRef<OsStr>, args: &[S]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Runs `cmd` with no stdin, its output captured and written to `log`. Fails with the command
/// line, how it ended, the tail of its stderr (or stdout if stderr is empty) and the log path.
pub fn run_logged(cmd: &mut Command, log: &Path) -> Result<Captured, String> {
    let shown = display(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not start `{shown}`: {e}"))?;
    exit_if_interrupted();
    let c = Captured {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    let body = format!(
        "$ {shown}\n# {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n",
        describe(c.status),
        c.stdout,
        c.stderr
    );
    let logged = log
        .parent()
        .map(std::fs::create_dir_all)
        .transpose()
        .and_then(|_| std::fs::write(log, body));
    if c.status.success() {
        return Ok(c);
    }
    let (label, text) = if c.stderr.trim().is_empty() {
        ("stdout", &c.stdout)
    } else {
        ("stderr", &c.stderr)
    };
    let mut msg = format!("`{shown}` {}\n{}", describe(c.status), tail(label, text));
    match logged {
        Ok(()) => {
            let _ = write!(msg, "\nfull output: {}", log.display());
        }
        Err(e) => {
            let _ = write!(msg, "\n(could not write the log {}: {e})", log.display());
        }
    }
    Err(msg)
}

fn tail(label: &str, text: &str) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    if lines.is_empty() {
        return format!("(no {label} output)");
    }
    let from = lines.len().saturating_sub(TAIL_LINES);
    let mut s = format!("--- last {} lines of {label} ---", lines.len() - from);
    for l in &lines[from..] {
        s.push_str("\n  ");
        s.push_str(l);
    }
    s
}

/// Runs `cmd` with inherited stdio and returns how it ended.
pub fn run_inherited(cmd: &mut Command) -> Result<ExitStatus, String> {
    let shown = display(cmd);
    let status = cmd
        .status()
        .map_err(|e| format!("could not start `{shown}`: {e}"))?;
    exit_if_interrupted();
    Ok(status)
}

/// The first executable called `name` on PATH.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}

pub fn io_err(what: &str, path: &Path, e: io::Error) -> String {
    format!("could not {what} {}: {e}", path.display())
}
