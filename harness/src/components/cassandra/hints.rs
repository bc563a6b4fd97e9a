//! Hints still held for other replicas, per node (`system_views.pending_hints`, node-local),
//! and a bounded wait until no node holds any: every hinted write has reached its replica.

use std::net::SocketAddr;
use std::time::Duration;

use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use tokio::time::Instant;

use super::cluster::on_node;

/// Waits until no node in `nodes` (name, CQL address) lists pending hints. `Ok` with how long
/// that took; `Err` with what was still pending (or unreachable) at the deadline.
pub async fn wait_hints_delivered(
    nodes: &[(String, SocketAddr)],
    timeout: Duration,
) -> Result<Duration, String> {
    let started = Instant::now();
    let deadline = started + timeout;
    let session = tokio::time::timeout(
        timeout,
        SessionBuilder::new()
            .known_nodes_addr(nodes.iter().map(|(_, a)| *a))
            .build(),
    )
    .await
    .map_err(|_| "hints: no connection to the cluster".to_string())?
    .map_err(|e| format!("hints: cannot connect: {e}"))?;
    let mut backoff = Duration::from_millis(250);
    loop {
        let pending = pending(&session, nodes).await;
        if pending.is_empty() {
            return Ok(started.elapsed());
        }
        if Instant::now() + backoff >= deadline {
            return Err(format!(
                "after {} s: {}",
                timeout.as_secs(),
                pending.join("; ")
            ));
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// `<node>: N hint file(s)` for every node with hints, or the error asking it.
async fn pending(session: &Session, nodes: &[(String, SocketAddr)]) -> Vec<String> {
    let mut out = Vec::new();
    for (name, addr) in nodes {
        let statement = on_node("SELECT files FROM system_views.pending_hints", *addr);
        let files: Result<i64, String> = async {
            let rows = session
                .query_unpaged(statement, ())
                .await
                .map_err(|e| e.to_string())?
                .into_rows_result()
                .map_err(|e| e.to_string())?;
            let mut files = 0_i64;
            for row in rows.rows::<(Option<i32>,)>().map_err(|e| e.to_string())? {
                files += i64::from(row.map_err(|e| e.to_string())?.0.unwrap_or(1));
            }
            Ok(files)
        }
        .await;
        match files {
            Ok(0) => {}
            Ok(n) => out.push(format!("`{name}` holds {n} hint file(s)")),
            Err(e) => out.push(format!("`{name}` cannot be asked: {e}")),
        }
    }
    out
}
