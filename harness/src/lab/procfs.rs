//! Reading `/proc/<pid>/stat` and signalling processes without ever hitting a reused pid.
//!
//! invariant: a pid recorded in an intent log is only signalled while its `/proc` start time
//! (field 22 of `/proc/<pid>/stat`) still equals the recorded one.

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// The fields of `/proc/<pid>/stat` the lab needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 3: `R`, `S`, `D`, `T`, `Z`, ...
    pub state: char,
    /// Field 4.
    pub ppid: u32,
    /// Field 5.
    pub pgid: u32,
    /// Field 22: clock ticks since boot at which the process started.
    pub start_time: u64,
}

impl ProcStat {
    /// A zombie or dead process no longer runs anything; for liveness it counts as gone.
    pub fn is_running(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses the text of `/proc/<pid>/stat`. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted from the LAST `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // fields[0] is field 3 of the stat line, so field N is fields[N - 3].
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgid: fields.get(2)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// `None` when the process does not exist (or cannot be read).
pub fn stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

pub fn start_time(pid: u32) -> Option<u64> {
    stat(pid).map(|s| s.start_time)
}

/// True when `pid` is a running (not zombie) process that started at `start_time`.
pub fn is_same_process_alive(pid: u32, start_time: u64) -> bool {
    stat(pid).is_some_and(|s| s.start_time == start_time && s.is_running())
}

pub fn is_alive(pid: u32) -> bool {
    stat(pid).is_some_and(|s| s.is_running())
}

fn as_pid(pid: u32) -> Option<Pid> {
    // pid 0 and values beyond i32 would address process groups or nothing at all.
    i32::try_from(pid)
        .ok()
        .filter(|p| *p > 1)
        .map(Pid::from_raw)
}

/// Signals the process group led by `pid` (nodes are always spawned as group leaders). Errors
/// (group already gone) are ignored: callers reap or verify. No fallback to `kill(pid)`: after a
/// reap the bare pid may already belong to someone else.
pub fn signal_group(pid: u32, signal: Signal) {
    if let Some(p) = as_pid(pid) {
        let _ = killpg(p, signal);
    }
}

/// SIGKILLs `pid` (and its group when it leads one) only if it is still the process that started
/// at `start_time`. Returns whether a signal was sent.
pub fn kill_if_same(pid: u32, start_time: u64) -> bool {
    let Some(st) = stat(pid) else { return false };
    if st.start_time != start_time || !st.is_running() || pid == std::process::id() {
        return false;
    }
    let Some(p) = as_pid(pid) else { return false };
    if st.pgid == pid {
        let _ = killpg(p, Signal::SIGKILL);
    } else {
        let _ = kill(p, Signal::SIGKILL);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_command_names() {
        let line = "1234 (my (odd) prog) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        let st = parse_stat(line).expect("parses");
        assert_eq!(
            st,
            ProcStat {
                state: 'S',
                ppid: 1,
                pgid: 1234,
                start_time: 987654
            }
        );
        assert!(parse_stat("garbage").is_none());
        assert!(parse_stat("1 (x) S 1").is_none());
    }

    #[test]
    fn reads_own_start_time() {
        let me = std::process::id();
        let st = start_time(me).expect("own stat");
        assert!(is_same_process_alive(me, st));
        assert!(!is_same_process_alive(me, st + 1));
    }
}
