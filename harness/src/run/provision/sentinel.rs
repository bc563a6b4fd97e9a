//! Redis Sentinel in the lab: each sentinel's config file, and the wait until every sentinel
//! knows every replica and every other sentinel (before that, a failover could not be judged).
//!
//! invariant: a sentinel's log is in UTC (`TZ=UTC`), so its event times (`+switch-master`) can be
//! placed on the run's timeline without knowing the machine's zone.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::errors::LabError;
use crate::lab::{NodeSpec, Readiness, find_tool};
use crate::plan::{NodeKind, Plan, PlannedNode};

/// Sentinel needs a writable config file: it records what it learns (replicas, other
/// sentinels, the current epoch) there.
pub(super) fn node_spec(plan: &Plan, dir: &Path, node: &PlannedNode) -> Result<NodeSpec, LabError> {
    let primary = node
        .monitors
        .as_deref()
        .and_then(|p| plan.node(p))
        .ok_or_else(|| {
            LabError::Other(format!("sentinel `{}` monitors no known node", node.name))
        })?;
    let setting = |key: &str| node.config.get(key).and_then(|v| v.as_u64()).unwrap_or(1);
    let master = &primary.name;
    let conf = format!(
        "# written by faultline for sentinel `{name}`\n\
         port {port}\nbind {addr}\nprotected-mode no\ndaemonize no\nlogfile \"\"\ndir \"{dir}\"\n\
         # Announce and connect from the node's own address: on the lab's shared loopback the\n\
         # kernel would otherwise pick 127.0.0.1, and all sentinels would look like one.\n\
         sentinel announce-ip {addr}\nbind-source-addr {addr}\n\
         sentinel monitor {master} {paddr} {pport} {quorum}\n\
         sentinel down-after-milliseconds {master} {down}\n\
         sentinel failover-timeout {master} {failover}\n\
         sentinel parallel-syncs {master} {syncs}\n",
        name = node.name,
        port = node.port,
        addr = node.addr,
        dir = dir.display(),
        paddr = primary.addr,
        pport = primary.port,
        quorum = setting("quorum"),
        down = setting("down_after_ms"),
        failover = setting("failover_timeout_ms"),
        syncs = setting("parallel_syncs"),
    );
    std::fs::create_dir_all(dir).map_err(|source| LabError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let path = dir.join("sentinel.conf");
    // Written once: a restarted sentinel keeps what it learned, as a real one would.
    if !path.exists() {
        std::fs::write(&path, conf).map_err(|source| LabError::Io {
            path: path.clone(),
            source,
        })?;
    }
    let ready = Readiness::LogLine(format!("+monitor master {master}"));
    Ok(NodeSpec::new(&node.name, find_tool("redis-server")?, ready)
        .args([path.display().to_string(), "--sentinel".into()])
        .env("TZ", "UTC"))
}

/// Waits until each sentinel reports, for its master, as many replicas and other sentinels as
/// the plan has. Polls `SENTINEL MASTER <name>`; no fixed wait.
pub(super) async fn wait_settled(plan: &Plan, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    for sentinel in plan.nodes.iter().filter(|n| n.kind == NodeKind::Sentinel) {
        let Some(master) = sentinel.monitors.as_deref() else {
            continue;
        };
        let replicas = plan
            .nodes
            .iter()
            .filter(|n| n.replica_of.as_deref() == Some(master))
            .count() as u64;
        let others = plan
            .nodes
            .iter()
            .filter(|n| n.kind == NodeKind::Sentinel && n.monitors.as_deref() == Some(master))
            .count() as u64
            - 1;
        let mut backoff = Duration::from_millis(20);
        loop {
            let last = match master_counts(sentinel, master).await {
                Ok((r, o)) if r >= replicas && o >= others => break,
                Ok((r, o)) => {
                    format!("{r} of {replicas} replicas, {o} of {others} other sentinels")
                }
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(format!(
                    "sentinel `{}` did not learn the set of `{master}` within {} s: {last}",
                    sentinel.name,
                    timeout.as_secs()
                ));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(250));
        }
    }
    Ok(())
}

/// (`num-slaves`, `num-other-sentinels`) as one sentinel reports them.
async fn master_counts(sentinel: &PlannedNode, master: &str) -> redis::RedisResult<(u64, u64)> {
    let client = redis::Client::open((sentinel.addr.to_string(), sentinel.port))?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let fields: Vec<String> = redis::cmd("SENTINEL")
        .arg("MASTER")
        .arg(master)
        .query_async(&mut conn)
        .await?;
    let get = |key: &str| {
        fields
            .chunks(2)
            .find(|kv| kv[0] == key)
            .and_then(|kv| kv.get(1)?.parse().ok())
            .unwrap_or(0)
    };
    Ok((get("num-slaves"), get("num-other-sentinels")))
}
