//! Anti-entropy repair after healing (004-CASS: "repair on recovery"): `nodetool repair -full
//! -pr <keyspace>` on every node in turn, so that each token range is repaired once, by its
//! primary owner, across all its replicas. nodetool is Cassandra's own (`NodeTool` in
//! `cassandra-all`), talking to each node's local JMX port.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use tokio::time::Instant;

/// What one node's repair did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairOutcome {
    pub node: String,
    pub took: Duration,
    /// `Err`: nodetool's exit status and the tail of what it printed.
    pub result: Result<(), String>,
}

/// Repairs `keyspace` from each node (name, JMX port) in turn, each bounded by `timeout`.
pub async fn repair_primary_ranges(
    java: &Path,
    libs: &Path,
    nodes: &[(String, u16)],
    keyspace: &str,
    timeout: Duration,
) -> Vec<RepairOutcome> {
    let mut out = Vec::with_capacity(nodes.len());
    for (node, port) in nodes {
        let started = Instant::now();
        let result = nodetool_repair(java, libs, *port, keyspace, timeout).await;
        out.push(RepairOutcome {
            node: node.clone(),
            took: started.elapsed(),
            result,
        });
    }
    out
}

async fn nodetool_repair(
    java: &Path,
    libs: &Path,
    port: u16,
    keyspace: &str,
    timeout: Duration,
) -> Result<(), String> {
    let mut command = Command::new(java);
    command
        // A short-lived client JVM: small and quick to start.
        .args(["-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"])
        .args(["-XX:-UsePerfData", "-Djava.net.preferIPv4Stack=true"])
        .arg("-cp")
        .arg(format!("{}/*", libs.display()))
        .arg("org.apache.cassandra.tools.NodeTool")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["repair", "-full", "-pr", keyspace])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Dropped on timeout: the JVM must not outlive the wait.
        .kill_on_drop(true);
    let child = command
        .spawn()
        .map_err(|e| format!("cannot start `{}` for nodetool: {e}", java.display()))?;
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| format!("nodetool repair took longer than {} s", timeout.as_secs()))?
        .map_err(|e| format!("nodetool repair: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let tail: Vec<&str> = text.lines().rev().take(3).collect();
    Err(format!(
        "nodetool repair exited with {}: {}",
        output.status,
        tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
    ))
}
