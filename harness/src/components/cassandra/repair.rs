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
    pub finished: Instant,
    /// `Err`: nodetool's exit status and the tail of what it printed.
    pub result: Result<(), String>,
}

/// nodetool's own logging: warnings and errors only, to stderr (without a configuration logback
/// logs every DEBUG line of the client's libraries).
const LOGBACK: &str = r#"<configuration>
  <appender name="STDERR" class="ch.qos.logback.core.ConsoleAppender">
    <target>System.err</target>
    <encoder><pattern>%-5level %msg%n</pattern></encoder>
  </appender>
  <root level="WARN"><appender-ref ref="STDERR"/></root>
</configuration>
"#;

/// Repairs `keyspace` from each node (name, JMX port) in turn, each bounded by `timeout`.
/// `work_dir` receives nodetool's logging configuration.
pub async fn repair_primary_ranges(
    java: &Path,
    libs: &Path,
    work_dir: &Path,
    nodes: &[(String, u16)],
    keyspace: &str,
    timeout: Duration,
) -> Vec<RepairOutcome> {
    let logback = work_dir.join("nodetool-logback.xml");
    let written = std::fs::write(&logback, LOGBACK)
        .map_err(|e| format!("cannot write `{}`: {e}", logback.display()));
    let mut out = Vec::with_capacity(nodes.len());
    for (node, port) in nodes {
        let started = Instant::now();
        let result = match &written {
            Ok(()) => nodetool_repair(java, libs, &logback, *port, keyspace, timeout).await,
            Err(e) => Err(e.clone()),
        };
        out.push(RepairOutcome {
            node: node.clone(),
            took: started.elapsed(),
            finished: Instant::now(),
            result,
        });
    }
    out
}

async fn nodetool_repair(
    java: &Path,
    libs: &Path,
    logback: &Path,
    port: u16,
    keyspace: &str,
    timeout: Duration,
) -> Result<(), String> {
    let mut command = Command::new(java);
    command
        // A short-lived client JVM: small and quick to start.
        .args(["-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"])
        .args(["-XX:-UsePerfData", "-Djava.net.preferIPv4Stack=true"])
        .arg(format!("-Dlogback.configurationFile={}", logback.display()))
        // Cassandra's classes reach into JDK internals in the client too (`FileUtils`).
        .args(
            super::config::JVM_OPTIONS
                .iter()
                .filter(|o| o.starts_with("--add-")),
        )
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
    // The message, not the Java stack under it.
    let said: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("at ") && !l.starts_with("..."))
        .take(3)
        .collect();
    Err(format!(
        "nodetool repair exited with {}: {}",
        output.status,
        said.join(" / ")
    ))
}
