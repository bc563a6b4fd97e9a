//! Cluster tier: a real Apache Kafka 3.9 KRaft cluster of 3 combined broker+controller nodes in
//! a lab. 2,000 acks=all messages read back exactly once; then the leader of partition 0 is
//! SIGKILLed while producing goes on, produces to partition 0 succeed again within 30 s, and
//! nothing acknowledged is lost (duplicates across the failover are reported, see below); the
//! killed node then restarts on its own data and rejoins every ISR.
//!
//! Skips (passes, saying why) only when the Kafka jars are not installed and
//! `FAULTLINE_REQUIRE_CLUSTER` is unset; CI sets it so a missing install fails loudly. Needs root
//! (the lab is a network namespace) and JDK 17 as `java`. About a minute on 2 cores.
//! `FAULTLINE_KEEP_LAB=1` keeps the nodes' logs and data under the lab's state dir.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use faultline::components::kafka::{self, KafkaNode, KafkaSettings};
use faultline::lab::{self, Lab};
use faultline::load::Outcome;
use faultline::load::kafka_ops::{KafkaProducer, ProducerSettings, read_back};
use tokio::task::JoinSet;

const TOPIC: &str = "faultline-failover";
const PARTITIONS: i32 = 3;
const MESSAGES: u64 = 2_000;
const IN_FLIGHT: usize = 100;
/// Above the producer's 30 s delivery timeout, so librdkafka's own timeout is what ends an op.
const OP_TIMEOUT: Duration = Duration::from_secs(35);
const FAILOVER_LIMIT: Duration = Duration::from_secs(30);
/// One op every 5 ms during the failover phase.
const FAILOVER_INTERVAL: Duration = Duration::from_millis(5);

#[test]
fn partition_leader_kill_fails_over_within_30s_and_loses_nothing_acknowledged() {
    if faultline_tests::cluster_jars_or_skip(kafka::libs_dir()).is_none() {
        return;
    }
    faultline_tests::in_new_lab(Box::new(|lab| {
        Box::pin(async move { scenario(&lab).await })
    }));
}

fn nodes() -> Vec<KafkaNode> {
    (1..=3)
        .map(|i| KafkaNode {
            name: format!("kafka-{i}"),
            node_id: u32::from(i),
            addr: lab::node_addr(1, i),
            advertised: None,
        })
        .collect()
}

/// One produced op: index, outcome, acknowledging partition, completion time.
type Sent = (u64, Outcome, Option<i32>, Instant);

async fn scenario(lab: &Lab) -> Result<(), String> {
    let nodes = nodes();
    let settings = KafkaSettings::default();
    let specs =
        tokio::task::block_in_place(|| kafka::prepare(&nodes, &settings, |n| lab.node_dir(n)))
            .map_err(|e| e.to_string())?;
    // Concurrently: no node's broker finishes starting before a quorum of controllers is up.
    let began = Instant::now();
    let started = tokio::join!(
        lab.start_node(&specs[0]),
        lab.start_node(&specs[1]),
        lab.start_node(&specs[2])
    );
    let mut pids = HashMap::new();
    for (node, info) in nodes.iter().zip([started.0, started.1, started.2]) {
        let info = info.map_err(|e| format!("starting {}: {e}", node.name))?;
        eprintln!(
            "  {} (pid {}) ready after {:.1} s",
            node.name,
            info.pid,
            info.ready_after.as_secs_f64()
        );
        pids.insert(node.name.clone(), info.pid);
    }
    eprintln!("cluster ready after {:.1} s", began.elapsed().as_secs_f64());

    let bootstrap: Vec<String> = nodes
        .iter()
        .map(|n| format!("{}:{}", n.addr, kafka::CLIENT_PORT))
        .collect();
    let bootstrap = bootstrap.join(",");
    let began = Instant::now();
    kafka::create_topic(&bootstrap, TOPIC, PARTITIONS, 3, 2, Duration::from_secs(60))
        .await
        .map_err(|e| e.to_string())?;
    eprintln!(
        "topic fully replicated after {:.1} s",
        began.elapsed().as_secs_f64()
    );

    let producer = Arc::new(KafkaProducer::new(
        &bootstrap,
        TOPIC,
        ProducerSettings {
            value_size: 64,
            ..ProducerSettings::default()
        },
        PARTITIONS as u32,
        IN_FLIGHT,
        OP_TIMEOUT,
    )?);

    // Healthy: every message acknowledged, and each read back exactly once.
    let began = Instant::now();
    let healthy = produce_all(&producer, 0..MESSAGES).await;
    let failed: Vec<&Sent> = healthy.iter().filter(|s| !s.1.is_ok()).collect();
    if !failed.is_empty() {
        return Err(format!(
            "{} of {MESSAGES} healthy produces failed, e.g. {:?}; samples: {:?}",
            failed.len(),
            failed[0],
            producer.error_samples()
        ));
    }
    eprintln!(
        "{MESSAGES} messages acknowledged in {:.2} s",
        began.elapsed().as_secs_f64()
    );
    let read = read_back(&bootstrap, TOPIC, Duration::from_secs(60)).await?;
    assert_eq!(read.messages, MESSAGES, "messages in the topic");
    assert_eq!(read.found.len() as u64, MESSAGES, "distinct ops read back");
    assert!(
        read.found.values().all(|&c| c == 1),
        "a message read back twice"
    );
    for (name, pid) in &pids {
        eprintln!(
            "  {name} RSS {} MiB",
            faultline_tests::rss_mib(*pid).unwrap_or(0)
        );
    }

    // Failover: SIGKILL the leader of partition 0 while a steady stream of produces goes on.
    let dirs: Vec<_> = nodes.iter().map(|n| lab.node_dir(&n.name)).collect();
    let leaders = kafka::partition_leaders(&bootstrap, TOPIC, Duration::from_secs(10))
        .await
        .map_err(|e| e.to_string())?;
    let victim = leaders
        .get(&0)
        .copied()
        .filter(|&id| id > 0)
        .ok_or("partition 0 has no leader")?;
    let controller = kafka::active_controller(&dirs);
    eprintln!(
        "partition leaders {leaders:?}; active controller {controller:?}; killing kafka-{victim}"
    );
    let killed_at = Instant::now();
    lab.kill_node(&format!("kafka-{victim}"))
        .await
        .map_err(|e| e.to_string())?;

    let mut tasks = JoinSet::new();
    let mut next = MESSAGES;
    let mut ticker = tokio::time::interval(FAILOVER_INTERVAL);
    let mut done: Vec<Sent> = Vec::new();
    let mut recovered: Option<Duration> = None;
    let mut extra_after_recovery = 0;
    while killed_at.elapsed() < FAILOVER_LIMIT && extra_after_recovery < 400 {
        ticker.tick().await;
        let p = Arc::clone(&producer);
        let n = next;
        next += 1;
        tasks.spawn(async move {
            let (outcome, partition) = p.send(n).await;
            (n, outcome, partition, Instant::now())
        });
        while let Some(joined) = tasks.try_join_next() {
            let sent = joined.map_err(|e| format!("produce task: {e}"))?;
            if recovered.is_none() && sent.1.is_ok() && sent.2 == Some(0) {
                recovered = Some(sent.3.duration_since(killed_at));
            }
            done.push(sent);
        }
        if recovered.is_some() {
            extra_after_recovery += 1;
        }
    }
    while let Some(joined) = tasks.join_next().await {
        let sent = joined.map_err(|e| format!("produce task: {e}"))?;
        if recovered.is_none() && sent.1.is_ok() && sent.2 == Some(0) {
            recovered = Some(sent.3.duration_since(killed_at));
        }
        done.push(sent);
    }
    let after = kafka::partition_leaders(&bootstrap, TOPIC, Duration::from_secs(10))
        .await
        .map_err(|e| e.to_string())?;
    eprintln!(
        "after the kill: leaders {after:?}, active controller {:?}; {} produces, {} failed ({:?})",
        kafka::active_controller(&dirs),
        done.len(),
        done.iter().filter(|s| !s.1.is_ok()).count(),
        producer.error_samples()
    );
    let recovered = recovered.ok_or_else(|| {
        format!(
            "no produce to partition 0 succeeded within {} s of the kill",
            FAILOVER_LIMIT.as_secs()
        )
    })?;
    eprintln!(
        "partition 0 failover: first acknowledged produce {:.2} s after the kill",
        recovered.as_secs_f64()
    );
    assert!(recovered <= FAILOVER_LIMIT, "failover took {recovered:?}");

    // Nothing acknowledged lost. Duplicates are reported, not failed: librdkafka's idempotent
    // producer can write a message twice across a leader change (librdkafka issue 4953; seen
    // here when the killed node was also the active controller), which is the client's
    // behaviour under test, not the harness's.
    let read = read_back(&bootstrap, TOPIC, Duration::from_secs(60)).await?;
    let acked: Vec<u64> = healthy
        .iter()
        .chain(&done)
        .filter(|s| s.1.is_ok())
        .map(|s| s.0)
        .collect();
    let lost: Vec<u64> = acked
        .iter()
        .copied()
        .filter(|n| !read.found.contains_key(n))
        .collect();
    let duplicated: Vec<(&u64, &u32)> = read.found.iter().filter(|(_, c)| **c > 1).collect();
    eprintln!(
        "read back {} messages; {} acknowledged, {} lost, {} duplicated",
        read.messages,
        acked.len(),
        lost.len(),
        duplicated.len()
    );
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");

    // The killed node restarts on its own data dir and catches up into every ISR.
    let began = Instant::now();
    let info = lab
        .restart_node(&format!("kafka-{victim}"))
        .await
        .map_err(|e| e.to_string())?;
    kafka::wait_fully_replicated(
        &bootstrap,
        TOPIC,
        Some(PARTITIONS as usize),
        Duration::from_secs(60),
    )
    .await
    .map_err(|e| e.to_string())?;
    eprintln!(
        "kafka-{victim} restarted: ready after {:.1} s, back in every ISR after {:.1} s",
        info.ready_after.as_secs_f64(),
        began.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Produces ops `range` with at most `IN_FLIGHT` at once.
async fn produce_all(producer: &Arc<KafkaProducer>, range: std::ops::Range<u64>) -> Vec<Sent> {
    let mut tasks = JoinSet::new();
    let mut out = Vec::new();
    for n in range {
        if tasks.len() >= IN_FLIGHT
            && let Some(Ok(sent)) = tasks.join_next().await
        {
            out.push(sent);
        }
        let p = Arc::clone(producer);
        tasks.spawn(async move {
            let (outcome, partition) = p.send(n).await;
            (n, outcome, partition, Instant::now())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        if let Ok(sent) = joined {
            out.push(sent);
        }
    }
    out
}
