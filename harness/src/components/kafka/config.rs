//! What a Kafka node reads at start, rendered as text: `server.properties` (every value that is
//! not Kafka's default says why), the JVM options and the console logging config; and the checks
//! on a cluster description that come before anything is written.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::{CLIENT_PORT, CONTROLLER_PORT, KafkaNode, KafkaSettings, REPLICATION_PORT};
use crate::errors::LabError;

pub(super) fn check_nodes(nodes: &[KafkaNode], settings: &KafkaSettings) -> Result<(), LabError> {
    let invalid = |value: String, detail: &str| LabError::InvalidName {
        what: "kafka cluster",
        value,
        detail: detail.to_owned(),
    };
    if nodes.is_empty() {
        return Err(invalid("[]".into(), "needs at least one node"));
    }
    for (i, node) in nodes.iter().enumerate() {
        let ok_name = !node.name.is_empty()
            && !node.name.starts_with('.')
            && node
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !ok_name {
            return Err(invalid(
                node.name.clone(),
                "node names use `A-Z a-z 0-9 . _ -`",
            ));
        }
        if nodes[..i]
            .iter()
            .any(|n| n.node_id == node.node_id || n.name == node.name)
        {
            return Err(invalid(
                format!("{} (node.id {})", node.name, node.node_id),
                "node names and ids must be unique",
            ));
        }
    }
    if settings.min_insync_replicas == 0 || settings.min_insync_replicas as usize > nodes.len() {
        return Err(invalid(
            format!("min.insync.replicas={}", settings.min_insync_replicas),
            "must be 1..=number of nodes",
        ));
    }
    if settings.heap_mb < 128 || settings.broker_session_timeout < Duration::from_millis(500) {
        return Err(invalid(
            format!(
                "heap {} MiB, session timeout {:?}",
                settings.heap_mb, settings.broker_session_timeout
            ),
            "heap must be >= 128 MiB and the session timeout >= 500 ms",
        ));
    }
    Ok(())
}

/// The broker's JVM options (Kafka's own start script uses G1 with 20 ms pauses too).
pub(super) fn jvm_options(heap_mb: u32) -> Vec<String> {
    let mut opts = vec![format!("-Xms{heap_mb}m"), format!("-Xmx{heap_mb}m")];
    opts.extend(
        [
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            // A broker that ran out of memory must die visibly, not limp on.
            "-XX:+ExitOnOutOfMemoryError",
            // No /tmp/hsperfdata files left behind by SIGKILLed nodes.
            "-XX:-UsePerfData",
            "-Djava.awt.headless=true",
            "-Djava.net.preferIPv4Stack=true",
            // Log timestamps in UTC, so `run::kafka_evidence` places them on the run's timeline
            // whatever the machine's zone.
            "-Duser.timezone=UTC",
        ]
        .map(String::from),
    );
    opts
}

/// Everything the node reads at start; pure, for tests. Values are commented where they are not
/// Kafka's defaults (see <https://kafka.apache.org/39/documentation.html#brokerconfigs>).
pub fn server_properties(
    node: &KafkaNode,
    nodes: &[KafkaNode],
    settings: &KafkaSettings,
    data_dir: &Path,
) -> String {
    let voters: Vec<String> = nodes
        .iter()
        .map(|n| format!("{}@{}:{CONTROLLER_PORT}", n.node_id, n.addr))
        .collect();
    let advertised = node
        .advertised
        .unwrap_or(SocketAddr::from((node.addr, CLIENT_PORT)));
    let rf = nodes.len().min(3);
    let internal_min_isr = rf.min(2);
    let session_ms = settings.broker_session_timeout.as_millis();
    let mut p =
        String::from("# written by faultline: Kafka 3.9, KRaft combined broker + controller\n");
    let mut set = |key: &str, value: &dyn std::fmt::Display| {
        let _ = writeln!(p, "{key}={value}");
    };
    set("process.roles", &"broker,controller");
    set("node.id", &node.node_id);
    set("controller.quorum.voters", &voters.join(","));
    // Clients use PLAINTEXT, which may be advertised as a Toxiproxy listener; brokers replicate
    // over REPLICATION, always direct, so a fault on the clients' path does not also slow
    // replication (a partition between nodes still cuts it: same addresses).
    set(
        "listeners",
        &format!(
            "PLAINTEXT://{0}:{CLIENT_PORT},REPLICATION://{0}:{REPLICATION_PORT},CONTROLLER://{0}:{CONTROLLER_PORT}",
            node.addr
        ),
    );
    set(
        "advertised.listeners",
        &format!(
            "PLAINTEXT://{advertised},REPLICATION://{}:{REPLICATION_PORT}",
            node.addr
        ),
    );
    set(
        "listener.security.protocol.map",
        &"PLAINTEXT:PLAINTEXT,REPLICATION:PLAINTEXT,CONTROLLER:PLAINTEXT",
    );
    set("inter.broker.listener.name", &"REPLICATION");
    set("controller.listener.names", &"CONTROLLER");
    set("log.dirs", &data_dir.display());
    set("num.partitions", &settings.num_partitions);
    set("default.replication.factor", &rf);
    set("min.insync.replicas", &settings.min_insync_replicas);
    set(
        "unclean.leader.election.enable",
        &settings.unclean_leader_election,
    );
    // Experiments create their topics explicitly: a typo must not silently make a 1-replica topic.
    set("auto.create.topics.enable", &false);
    // Leadership moves only because of faults, never because a 5-minute timer fired mid-run.
    set("auto.leader.rebalance.enable", &false);
    // Internal topics replicated like user topics, with few partitions: the default 50
    // partitions x 3 replicas of __consumer_offsets would dominate a lab cluster's start-up.
    set("offsets.topic.replication.factor", &rf);
    set("offsets.topic.num.partitions", &3);
    set("transaction.state.log.replication.factor", &rf);
    set("transaction.state.log.min.isr", &internal_min_isr);
    set("transaction.state.log.num.partitions", &3);
    set("group.initial.rebalance.delay.ms", &0);
    // Failover timing. A SIGKILLed broker loses leadership when the active controller fences
    // it: `broker.session.timeout.ms` after its last heartbeat (Kafka default 9 s, heartbeat 2 s;
    // the heartbeat stays at a fifth of the session, as in the defaults' ratio of ~1:4.5).
    set("broker.session.timeout.ms", &session_ms);
    set("broker.heartbeat.interval.ms", &(session_ms / 5).max(100));
    // A killed controller is replaced after the followers miss its fetches for
    // `controller.quorum.fetch.timeout.ms` plus an election: Kafka's defaults (2 s, 1 s) are
    // already fast, stated here so the report of a run shows them.
    set("controller.quorum.fetch.timeout.ms", &2000);
    set("controller.quorum.election.timeout.ms", &1000);
    // A follower that stops fetching (paused, partitioned) leaves the ISR after this long; 10 s
    // (the pre-2.5 default) instead of 30 s, without shrinking the ISR on every GC pause.
    set("replica.lag.time.max.ms", &10_000);
    // Small thread pools and cleaner buffer: two cores and a 256 MiB heap are shared by three
    // brokers (the cleaner's default 128 MiB dedupe buffer would take half the heap).
    set("num.network.threads", &2);
    set("num.io.threads", &2);
    set("num.replica.fetchers", &1);
    set("background.threads", &2);
    set("log.cleaner.threads", &1);
    set("log.cleaner.dedupe.buffer.size", &(8 * 1024 * 1024));
    p
}

/// Logs go to the console, which the lab appends to the node log (Kafka's own config writes
/// files under `kafka.logs.dir` instead).
pub(super) const LOG4J_PROPERTIES: &str = "\
# written by faultline: everything to stdout, which the lab appends to the node's log
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.kafka.authorizer.logger=WARN
";
