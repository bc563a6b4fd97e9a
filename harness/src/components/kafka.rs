//! Apache Kafka in KRaft mode: per-node configuration, storage formatting, readiness, admin queries.
//!
//! Every node is a combined broker + controller (`process.roles=broker,controller`) with a static
//! voter list, so N nodes are one N-voter metadata quorum and N brokers, the smallest shape in
//! which killing any one node exercises both a controller failover and a partition-leader
//! failover. The jars come from `cargo xtask deps` (xtask/src/deps/kafka.rs); every config file is
//! written here, per node, inside the node's lab directory.
//!
//! Start-up: `prepare` writes the files and formats each node's storage with one shared cluster
//! id (no network: `kafka.tools.StorageTool`), then the caller starts the returned specs
//! CONCURRENTLY: a node's broker only finishes starting once a quorum of controllers is up, so a
//! sequential start would wait on the first node forever.

mod admin;
mod config;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use admin::{
    MetadataReader, PartitionInfo, create_topic, describe_topic, partition_leaders,
    wait_fully_replicated,
};
pub use config::server_properties;

use config::{LOG4J_PROPERTIES, check_nodes, jvm_options};

use crate::errors::LabError;
use crate::lab::{NodeSpec, Readiness};

/// The Kafka the harness configures; keep in sync with `KAFKA_VERSION` in
/// xtask/src/deps/kafka.rs (the config keys and the readiness line below are 3.9's).
pub const KAFKA_VERSION: &str = "3.9.2";
/// Client (and, as the inter-broker listener, replication) port on each node's own address.
pub const CLIENT_PORT: u16 = 9092;
/// KRaft quorum port on each node's own address.
pub const CONTROLLER_PORT: u16 = 9093;
/// Inter-broker replication (never proxied).
pub const REPLICATION_PORT: u16 = 9094;

/// One node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaNode {
    /// The lab node name (also its directory name).
    pub name: String,
    /// `node.id`: broker id and controller voter id at once.
    pub node_id: u32,
    /// The node binds `addr:9092` (clients, replication) and `addr:9093` (controllers).
    pub addr: Ipv4Addr,
    /// What the node tells clients to connect to instead of `addr:9092`, e.g. its Toxiproxy
    /// listener. Replication has its own listener (`REPLICATION_PORT`), never proxied.
    pub advertised: Option<SocketAddr>,
}

/// Cluster-wide settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSettings {
    /// `-Xms` = `-Xmx`, MiB. 256 is plenty for lab traffic and keeps three brokers small.
    pub heap_mb: u32,
    /// `num.partitions` for topics created without a count.
    pub num_partitions: u32,
    /// `min.insync.replicas` default (topics may override it at creation).
    pub min_insync_replicas: u32,
    /// `unclean.leader.election.enable`: whether an out-of-sync replica may become leader
    /// (availability over durability). Off is Kafka's default and what the RPO seeds assume.
    pub unclean_leader_election: bool,
    /// `broker.session.timeout.ms`: how long the active controller waits without a heartbeat
    /// before fencing a broker, which is what moves leadership off a killed node.
    pub broker_session_timeout: Duration,
    /// Per-node readiness deadline: three JVMs starting at once on two busy cores are slow.
    pub ready_timeout: Duration,
}

impl Default for KafkaSettings {
    fn default() -> KafkaSettings {
        KafkaSettings {
            heap_mb: 256,
            num_partitions: 3,
            min_insync_replicas: 2,
            unclean_leader_election: false,
            // Kafka's default is 9 s; 5 s makes failover tests fast while leaving room for GC
            // pauses and CPU starvation on a shared 2-core machine (heartbeats go every 1 s).
            broker_session_timeout: Duration::from_secs(5),
            ready_timeout: Duration::from_secs(180),
        }
    }
}

/// The line `KafkaRaftServer` logs once the node's controller and broker are both started, i.e.
/// the broker has caught up with the metadata log, been unfenced, and is serving clients.
pub fn ready_line(node_id: u32) -> String {
    format!("[KafkaRaftServer nodeId={node_id}] Kafka Server started")
}

/// `<node dir>/data`: the log dir, which also holds the metadata log (`__cluster_metadata-0`).
pub fn data_dir(node_dir: &Path) -> PathBuf {
    node_dir.join("data")
}

/// The directory holding Kafka's jars: `components.kafka.libs` of `<cache>/versions.json`, else
/// `<cache>/kafka-<version>/libs`, where `<cache>` is `$FAULTLINE_CACHE` or
/// `$HOME/.cache/faultline` (where `cargo xtask deps` installs it).
pub fn libs_dir() -> Result<PathBuf, LabError> {
    super::installed_jars(
        "kafka",
        KAFKA_VERSION,
        &format!("kafka_2.13-{KAFKA_VERSION}.jar"),
    )
}

/// Writes every node's `server.properties` and `log4j.properties` into `node_dir(name)`, formats
/// their storage with one fresh cluster id, and returns the specs to start (all at once).
///
/// Blocking (it runs one short JVM per node, concurrently): call it from `spawn_blocking` or
/// before the runtime. Fails if a node's storage is already formatted: a cluster is prepared
/// once, and restarts reuse the returned specs.
pub fn prepare(
    nodes: &[KafkaNode],
    settings: &KafkaSettings,
    node_dir: impl Fn(&str) -> PathBuf,
) -> Result<Vec<NodeSpec>, LabError> {
    check_nodes(nodes, settings)?;
    let libs = libs_dir()?;
    let java = java()?;
    let class_path = format!("{}/*", libs.display());
    // Every file first, so that a failure leaves no formatting JVM behind.
    let mut dirs = Vec::with_capacity(nodes.len());
    for node in nodes {
        let dir = node_dir(&node.name);
        let data = data_dir(&dir);
        create_dir(&data)?;
        write_file(
            &dir.join("server.properties"),
            &server_properties(node, nodes, settings, &data),
        )?;
        write_file(&dir.join("log4j.properties"), LOG4J_PROPERTIES)?;
        std::fs::File::create(dir.join("storage-format.log"))
            .map_err(io(&dir.join("storage-format.log")))?;
        dirs.push(dir);
    }
    let cluster_id = new_cluster_id()?;
    let log4j_opt = |dir: &Path| {
        format!(
            "-Dlog4j.configuration=file:{}",
            dir.join("log4j.properties").display()
        )
    };
    let mut formats: Vec<(String, PathBuf, Child)> = Vec::with_capacity(nodes.len());
    for (node, dir) in nodes.iter().zip(&dirs) {
        let format_log = dir.join("storage-format.log");
        let child = std::fs::OpenOptions::new()
            .append(true)
            .open(&format_log)
            .and_then(|out| Ok((out.try_clone()?, out)))
            .and_then(|(out, err)| {
                Command::new(&java)
                    // A throwaway JVM: small, interpreter-light, no shared perf file.
                    .args(["-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"])
                    .args(["-XX:-UsePerfData", &log4j_opt(dir), "-cp", &class_path])
                    .arg("kafka.tools.StorageTool")
                    .args(["format", "-t", &cluster_id, "-c"])
                    .arg(dir.join("server.properties"))
                    .current_dir(dir)
                    .stdin(Stdio::null())
                    .stdout(out)
                    .stderr(err)
                    .spawn()
            });
        match child {
            Ok(child) => formats.push((node.name.clone(), format_log, child)),
            Err(e) => {
                // The formats already running are reaped before the error is returned.
                let _ = wait_formats(formats);
                return Err(LabError::Command {
                    command: format!("{} kafka.tools.StorageTool format", java.display()),
                    detail: format!("cannot start it for `{}`: {e}", node.name),
                });
            }
        }
    }
    wait_formats(formats)?;
    Ok(nodes
        .iter()
        .zip(&dirs)
        .map(|(node, dir)| {
            NodeSpec::new(
                node.name.clone(),
                java.clone(),
                Readiness::LogLine(ready_line(node.node_id)),
            )
            .args(jvm_options(settings.heap_mb))
            .args([log4j_opt(dir), "-cp".into(), class_path.clone()])
            .arg("kafka.Kafka")
            .arg(dir.join("server.properties").display().to_string())
            .ready_timeout(settings.ready_timeout)
        })
        .collect())
}

/// Waits (bounded) for every `StorageTool format`; the first failure wins, with its output.
fn wait_formats(mut formats: Vec<(String, PathBuf, Child)>) -> Result<(), LabError> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut backoff = Duration::from_millis(20);
    let mut failure = None;
    while !formats.is_empty() {
        let mut i = 0;
        while i < formats.len() {
            let (name, log, child) = &mut formats[i];
            match child.try_wait() {
                Ok(None) => i += 1,
                Ok(Some(status)) => {
                    if !status.success() && failure.is_none() {
                        failure = Some(format!(
                            "formatting `{name}` exited with {status}: {}",
                            crate::lab::log_tail(log, 0, 10)
                        ));
                    }
                    formats.swap_remove(i);
                }
                Err(e) => {
                    failure.get_or_insert(format!("cannot wait for formatting `{name}`: {e}"));
                    let _ = child.kill();
                    let _ = child.wait();
                    formats.swap_remove(i);
                }
            }
        }
        if !formats.is_empty() && Instant::now() >= deadline {
            for (_, _, child) in &mut formats {
                let _ = child.kill();
                let _ = child.wait();
            }
            failure.get_or_insert("formatting took longer than 120 s".into());
            break;
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_millis(200));
    }
    match failure {
        None => Ok(()),
        Some(detail) => Err(LabError::Command {
            command: "kafka.tools.StorageTool format".into(),
            detail,
        }),
    }
}

/// `$JAVA_HOME/bin/java` if there is one, else `java` from the tools dir or PATH.
fn java() -> Result<PathBuf, LabError> {
    if let Some(home) = std::env::var_os("JAVA_HOME").filter(|h| !h.is_empty()) {
        let java = PathBuf::from(home).join("bin/java");
        if java.is_file() {
            return Ok(java);
        }
    }
    crate::lab::find_tool("java")
}

/// A cluster id as Kafka writes them: 16 random bytes, base64url without padding (22 chars). A
/// leading `-` would read as an option on a command line, so that byte is redrawn.
fn new_cluster_id() -> Result<String, LabError> {
    use std::io::Read;
    let path = Path::new("/dev/urandom");
    let mut bytes = [0u8; 16];
    let mut urandom = std::fs::File::open(path).map_err(io(path))?;
    loop {
        urandom.read_exact(&mut bytes).map_err(io(path))?;
        let id = base64url(&bytes);
        if !id.starts_with('-') {
            return Ok(id);
        }
    }
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// The node id the KRaft quorum currently follows, from the `quorum-state` files the nodes keep
/// in `<data dir>/__cluster_metadata-0/` (no JVM, no network: a dead node's file is still
/// readable). The file with the highest epoch wins; `None` while that epoch has no leader (an
/// election in progress) or when no file can be read.
pub fn active_controller<P: AsRef<Path>>(node_dirs: &[P]) -> Option<u32> {
    node_dirs
        .iter()
        .filter_map(|dir| {
            let path = data_dir(dir.as_ref()).join("__cluster_metadata-0/quorum-state");
            parse_quorum_state(&std::fs::read_to_string(path).ok()?)
        })
        // Same epoch: a file that knows the leader beats one that does not yet.
        .max_by_key(|(epoch, leader)| (*epoch, leader.is_some()))
        .and_then(|(_, leader)| leader)
}

/// (leaderEpoch, leaderId if there is one) from a `quorum-state` file's JSON.
fn parse_quorum_state(text: &str) -> Option<(i64, Option<u32>)> {
    let json: serde_json::Value = serde_json::from_str(text).ok()?;
    let epoch = json.get("leaderEpoch")?.as_i64()?;
    let leader = json
        .get("leaderId")
        .and_then(serde_json::Value::as_i64)
        .and_then(|id| u32::try_from(id).ok());
    Some((epoch, leader))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LabError + '_ {
    move |source| LabError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn create_dir(path: &Path) -> Result<(), LabError> {
    std::fs::create_dir_all(path).map_err(io(path))
}

fn write_file(path: &Path, text: &str) -> Result<(), LabError> {
    std::fs::write(path, text).map_err(io(path))
}

#[cfg(test)]
mod tests;
