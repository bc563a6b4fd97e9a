//! Real Cassandra and Kafka for the bench: `faultline lab up <file>` brings a topology up in its
//! own network namespace and holds it; both tools under comparison run inside that namespace
//! (`ip netns exec`), against the same node, one after the other.
//!
//! invariant: a held lab is torn down by its own `faultline` process (SIGTERM, which it answers
//! by healing and stopping every node), on every path: `HeldLab` does it when dropped.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::child::{Child, SIGTERM, check_stop, spawn};
use super::installs::Bins;
use crate::proc;

/// A JVM cluster on a shared 2-core machine: the 2 x 3 Cassandra lab is ready in 40-70 s; one
/// node or one broker in 15-40 s. Far above both, still bounded.
const READY_LIMIT: Duration = Duration::from_secs(300);
/// Teardown stops JVMs one by one (each given its own grace period by the harness).
const TEARDOWN_LIMIT: Duration = Duration::from_secs(90);

pub(super) struct HeldLab {
    child: Child,
    pub(super) netns: String,
    /// (node name, its socket address) as `lab up` listed them.
    nodes: Vec<(String, String)>,
}

impl HeldLab {
    /// Brings the experiment file's topology up and waits for `lab up` to say it is.
    pub(super) fn up(bins: &Bins, file: &Path, logs: &Path, name: &str) -> Result<HeldLab, String> {
        let mut cmd = Command::new(&bins.faultline);
        cmd.args(["lab", "up"]).arg(file);
        let mut child = spawn(&mut cmd, name, logs)?;
        let started = Instant::now();
        loop {
            check_stop()?;
            // `lab up` reports on stderr (the live view); the status line rewrites itself with
            // `\r`, so split on both.
            let said = child.errors();
            let lines: Vec<&str> = said.split(['\n', '\r']).map(str::trim).collect();
            if let Some(netns) = lines.iter().find_map(|l| {
                l.strip_prefix("lab `")
                    .and_then(|rest| rest.split_once("` is up"))
                    .map(|(ns, _)| ns.to_owned())
            }) {
                let nodes = lines
                    .iter()
                    .filter_map(|l| node_line(l))
                    .collect::<Vec<_>>();
                return Ok(HeldLab {
                    child,
                    netns,
                    nodes,
                });
            }
            if let Some(done) = child.try_reap() {
                let tail: Vec<&str> = lines.iter().rev().take(6).copied().collect();
                return Err(format!(
                    "`faultline lab up {}` {} before the lab was up:\n  {}",
                    file.display(),
                    proc::describe(done.status),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n  ")
                ));
            }
            if started.elapsed() > READY_LIMIT {
                return Err(format!(
                    "`faultline lab up {}` did not report the lab up within {} (its output: {})",
                    file.display(),
                    proc::human(READY_LIMIT),
                    child.stderr.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The socket address `lab up` listed for `node`.
    pub(super) fn addr(&self, node: &str) -> Result<&str, String> {
        self.nodes
            .iter()
            .find(|(n, _)| n == node)
            .map(|(_, a)| a.as_str())
            .ok_or_else(|| {
                format!(
                    "the bench lab has no node `{node}` (it has {:?})",
                    self.nodes
                )
            })
    }

    /// `program` run inside the lab's namespace.
    pub(super) fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.netns]).arg(program);
        c
    }

    /// SIGTERM, and the lab's own teardown, bounded.
    pub(super) fn tear_down(&mut self) {
        self.child.signal(SIGTERM);
        let until = Instant::now() + TEARDOWN_LIMIT;
        while Instant::now() < until && self.child.try_reap().is_none() && !self.child.reaped {
            std::thread::sleep(Duration::from_millis(50));
        }
        // Still there: the guard kills it, and `faultline lab clean` undoes what it left.
        self.child.kill_now();
    }
}

impl Drop for HeldLab {
    fn drop(&mut self) {
        self.tear_down();
    }
}

/// `   k1                 kafka            127.0.1.1:9092` -> (`k1`, `127.0.1.1:9092`).
fn node_line(line: &str) -> Option<(String, String)> {
    let mut words = line.split_whitespace();
    let (name, _kind, addr) = (words.next()?, words.next()?, words.next()?);
    if words.next().is_some() || addr.parse::<std::net::SocketAddr>().is_err() {
        return None;
    }
    Some((name.to_owned(), addr.to_owned()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_node_lines() {
        assert_eq!(
            super::node_line("k1                 kafka            127.0.1.1:9092"),
            Some(("k1".into(), "127.0.1.1:9092".into()))
        );
        assert_eq!(super::node_line("ready: k1 in 13.44s"), None);
    }
}
