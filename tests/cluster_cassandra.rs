//! Cluster tier: a real Apache Cassandra 5.0 cluster of 2 DCs x 3 nodes in a lab. Writes at
//! LOCAL_QUORUM from dc1 keep succeeding while all of dc2 is SIGKILLed, and after dc2 is
//! restarted every acknowledged write reads back at ALL: nothing acknowledged is lost.
//!
//! Skips (passes, saying why) only when the Cassandra jars are not installed and
//! `FAULTLINE_REQUIRE_CLUSTER` is unset; CI sets it so a missing install fails loudly. Needs root
//! (the lab is a network namespace) and JDK 17 as `java`. Takes a few minutes on 2 cores.
//! `FAULTLINE_KEEP_LAB=1` keeps the nodes' logs and data under the lab's state dir.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use faultline::components::cassandra::{
    self, CassandraNode, CassandraSettings, Consistency, create_schema, prepare, restart_nodes,
    start_cluster,
};
use faultline::lab::{self, Lab};
use faultline::load::{CqlClient, CqlConfig, CqlOp, Outcome, connect_cql, read_back};
use futures::future::join_all;

const KEYSPACE: &str = "faultline";
const WRITES_PER_PHASE: u64 = 2_000;
const IN_FLIGHT: usize = 32;
const OP_TIMEOUT: Duration = Duration::from_secs(5);

#[test]
fn dc2_loss_keeps_local_quorum_writes_and_loses_nothing_acknowledged() {
    let Some(libs) = faultline_tests::cluster_jars_or_skip(cassandra::libs_dir()) else {
        return;
    };
    faultline_tests::in_new_lab(Box::new(move |lab| {
        Box::pin(async move { scenario(&lab, libs).await })
    }));
}

fn nodes() -> Vec<CassandraNode> {
    let mut nodes = Vec::new();
    for (group, dc) in [(1, "dc1"), (2, "dc2")] {
        for n in 1..=3 {
            nodes.push(CassandraNode {
                name: format!("cass-{dc}-{n}"),
                addr: lab::node_addr(group, n),
                dc: dc.into(),
                rack: "rack1".into(),
            });
        }
    }
    nodes
}

async fn scenario(lab: &Lab, libs: std::path::PathBuf) -> Result<(), String> {
    let nodes = nodes();
    let settings = CassandraSettings::new(libs);
    let specs = prepare(&nodes, &settings, |n| lab.node_dir(n)).map_err(|e| e.to_string())?;
    let mut cluster = start_cluster(lab, &specs, &nodes)
        .await
        .map_err(|e| format!("cluster start: {e}"))?;
    eprintln!(
        "cluster ready (every node sees every other UP, with its tokens) after {:.1} s",
        cluster.ready_after.as_secs_f64()
    );
    for node in &cluster.nodes {
        eprintln!(
            "  {} (pid {}) started after {:.1} s",
            node.name,
            node.pid,
            node.ready_after.as_secs_f64()
        );
    }

    let dc1: Vec<SocketAddr> = nodes[..3].iter().map(CassandraNode::cql_addr).collect();
    let admin = connect_cql(&dc1, "dc1", Consistency::LocalQuorum, OP_TIMEOUT, None, 1).await?;
    let began = Instant::now();
    create_schema(&admin, KEYSPACE, &[("dc1", 3), ("dc2", 3)])
        .await
        .map_err(|e| e.to_string())?;
    eprintln!("schema agreed in {:.1} s", began.elapsed().as_secs_f64());

    let client = Arc::new(
        CqlClient::new(&CqlConfig {
            contact_points: dc1.clone(),
            local_dc: "dc1".into(),
            keyspace: KEYSPACE.into(),
            op: CqlOp::Write,
            consistency: Consistency::LocalQuorum,
            value_size: 64,
            max_in_flight: IN_FLIGHT,
            op_timeout: OP_TIMEOUT,
            address_translation: None,
            watermark: None,
        })
        .await?,
    );

    let mut acked = write_phase(&client, 0, "healthy").await?;
    for node in &cluster.nodes {
        eprintln!(
            "  {} RSS {} MiB",
            node.name,
            faultline_tests::rss_mib(node.pid).unwrap_or(0)
        );
    }

    // Lose dc2 whole: every node SIGKILLed at once.
    let began = Instant::now();
    let kills = join_all(nodes[3..].iter().map(|n| lab.kill_node(&n.name))).await;
    for kill in kills {
        kill.map_err(|e| format!("kill: {e}"))?;
    }
    eprintln!("dc2 killed in {} ms", began.elapsed().as_millis());
    acked.extend(write_phase(&client, WRITES_PER_PHASE, "dc2 down").await?);

    // Bring dc2 back with its data, and wait until the whole cluster sees itself UP again.
    let dc2: Vec<&str> = nodes[3..].iter().map(|n| n.name.as_str()).collect();
    let back_after = restart_nodes(lab, &mut cluster.watch, &dc2, Duration::from_secs(180))
        .await
        .map_err(|e| format!("dc2 restart: {e}"))?;
    eprintln!(
        "dc2 back and seen UP by all in {:.1} s",
        back_after.as_secs_f64()
    );

    let began = Instant::now();
    let back = read_back(
        &admin,
        KEYSPACE,
        Consistency::All,
        acked.iter().copied(),
        16,
    )
    .await?;
    eprintln!(
        "read back {} keys at ALL in {:.1} s: {} found, {} mismatched",
        back.checked,
        began.elapsed().as_secs_f64(),
        back.found.len(),
        back.mismatched.len()
    );
    let lost: Vec<u64> = acked
        .iter()
        .copied()
        .filter(|k| !back.found.contains_key(k))
        .collect();
    if !lost.is_empty() || !back.mismatched.is_empty() {
        return Err(format!(
            "{} of {} acknowledged writes lost (first: {:?}), {} mismatched",
            lost.len(),
            acked.len(),
            &lost[..lost.len().min(10)],
            back.mismatched.len()
        ));
    }
    Ok(())
}

/// Writes keys `first..first + WRITES_PER_PHASE`, `IN_FLIGHT` at a time; every write must be
/// acknowledged. Returns the acknowledged keys.
async fn write_phase(client: &Arc<CqlClient>, first: u64, phase: &str) -> Result<Vec<u64>, String> {
    let began = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut acked = Vec::new();
    let mut failed = Vec::new();
    let mut record = |done: Result<(u64, Outcome), tokio::task::JoinError>| match done {
        Ok((k, outcome)) if outcome.is_ok() => acked.push(k),
        Ok((k, outcome)) => failed.push(format!("key {k}: {outcome:?}")),
        Err(e) => failed.push(format!("a write task failed: {e}")),
    };
    for k in first..first + WRITES_PER_PHASE {
        if tasks.len() >= IN_FLIGHT
            && let Some(done) = tasks.join_next().await
        {
            record(done);
        }
        let client = Arc::clone(client);
        tasks.spawn(async move { (k, client.execute(k).await.0) });
    }
    while let Some(done) = tasks.join_next().await {
        record(done);
    }
    let secs = began.elapsed().as_secs_f64();
    eprintln!(
        "{phase}: {} of {WRITES_PER_PHASE} writes acknowledged at LOCAL_QUORUM in {secs:.1} s ({:.0}/s)",
        acked.len(),
        WRITES_PER_PHASE as f64 / secs
    );
    if !failed.is_empty() {
        return Err(format!(
            "{phase}: {} writes failed at LOCAL_QUORUM from dc1, e.g. {}; errors seen: {:?}",
            failed.len(),
            failed[0],
            client.error_samples()
        ));
    }
    Ok(acked)
}
