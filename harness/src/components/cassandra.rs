//! Apache Cassandra: per-node configuration, cluster start-up order and readiness, schema.
//!
//! Every file a node reads is generated here (`cassandra.yaml`, `cassandra-rackdc.properties`,
//! `logback.xml`, under `<node dir>/conf/`); the jars come from `cargo xtask deps`. Nodes run one
//! JVM each (`CassandraDaemon` in the foreground) bound to their own lab address, with
//! `GossipingPropertyFileSnitch` so DC and rack come from the generated properties.
//!
//! Decisions, for a 2-core machine and a fresh cluster:
//! - Tokens are computed here (`initial_token`, `num_tokens` per node, evenly spaced and
//!   interleaved per DC, each DC shifted by a small offset) rather than by the allocator
//!   (`allocate_tokens_for_local_replication_factor`), which decides from the ring a node sees
//!   when it joins: nodes that start together see an empty one. Explicit tokens need no
//!   coordination between starting nodes, and make runs reproducible.
//! - `auto_bootstrap: false`: nothing to stream in a fresh cluster, so no node waits a ring
//!   delay to join; seeds start first, then the rest together (see `cluster`). Restarts reuse
//!   the data directory and its saved tokens.
//! - JMX listens on loopback only, one port per node (`JMX_PORT_BASE` + the node's index), for
//!   `nodetool repair` (`repair`); Cassandra binds its local JMX to 127.0.0.1 whatever the
//!   node's address, hence distinct ports.
//!
//! Sub-modules: `config` (rendering, tokens, JVM options), `cluster` (start-up order, cluster
//! readiness), `schema` (keyspace and table). The CQL client is `load::cql_ops`.

mod cluster;
mod config;
mod events;
mod hints;
mod repair;
mod schema;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::errors::LabError;
use crate::lab::{NodeSpec, Readiness};

pub use cluster::{
    CLUSTER_READY_TIMEOUT, ClusterReady, NodeReady, UpWatch, parse_gossip_line, restart_nodes,
    start_cluster,
};
pub use config::{render_logback, render_rackdc, render_yaml, tokens_for};
pub use events::{StatusChange, watch_status};
pub use hints::wait_hints_delivered;
pub use repair::repair_primary_ranges;
pub use schema::{TABLE, create_schema};
// The consistency levels callers pass to the CQL client (`load::CqlConfig`) and `read_back`.
pub use scylla::statement::Consistency;

/// Checks a keyspace name (an unquoted CQL identifier).
pub fn check_keyspace(name: &str) -> Result<(), String> {
    schema::check_identifier("keyspace", name)
}

/// The Cassandra the harness is written against; `cargo xtask deps` pins the same version
/// (xtask/src/deps/cassandra.rs).
pub const VERSION: &str = "5.0.9";
/// CQL (native protocol) and inter-node ports, each on the node's own address.
pub const CQL_PORT: u16 = 9042;
pub const STORAGE_PORT: u16 = 7000;
/// The daemon's last start-up line, logged after the native transport's socket is bound (the
/// earlier `Starting listening for CQL clients on ...` comes just before the bind).
pub const READY_LINE: &str = "Startup complete";
/// Local JMX (127.0.0.1) of the node at index i of the cluster: `JMX_PORT_BASE + i`.
pub const JMX_PORT_BASE: u16 = 7200;
/// The daemon's main class.
pub const MAIN_CLASS: &str = "org.apache.cassandra.service.CassandraDaemon";

/// One node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CassandraNode {
    /// The lab node name (also its directory name).
    pub name: String,
    pub addr: Ipv4Addr,
    pub dc: String,
    pub rack: String,
}

impl CassandraNode {
    pub fn cql_addr(&self) -> SocketAddr {
        SocketAddr::from((self.addr, CQL_PORT))
    }
}

/// Cluster-wide settings. `CassandraSettings::new(libs)` gives values sized for 6 nodes on a
/// 2-core, shared machine.
#[derive(Debug, Clone, PartialEq)]
pub struct CassandraSettings {
    pub cluster_name: String,
    /// The jars (`libs_dir()`).
    pub libs: PathBuf,
    /// `java` on PATH unless set; must be a JDK 17 (the module options below are for it).
    pub java: PathBuf,
    /// -Xms = -Xmx, MiB.
    pub heap_mb: u32,
    /// The first this many nodes of each DC (in the order given) are seeds.
    pub seeds_per_dc: usize,
    /// Tokens per node.
    pub num_tokens: u16,
    /// How long one node may take to reach `READY_LINE` (a node alone starts in ~7 s; six
    /// sharing two busy cores took up to 73 s).
    pub node_ready_timeout: Duration,
    /// `-Dcassandra.ring_delay_ms`: how long a node waits to hear the ring through gossip where
    /// it must (bootstrap, replace, the seeds' shadow round); Cassandra's 30 s default buys a
    /// fresh lab nothing.
    pub ring_delay: Duration,
    /// `hinted_handoff_enabled` (Cassandra's default: on).
    pub hinted_handoff: bool,
}

impl CassandraSettings {
    pub fn new(libs: impl Into<PathBuf>) -> CassandraSettings {
        CassandraSettings {
            cluster_name: "faultline".into(),
            libs: libs.into(),
            java: PathBuf::from("java"),
            heap_mb: 512,
            seeds_per_dc: 1,
            num_tokens: 4,
            node_ready_timeout: Duration::from_secs(180),
            ring_delay: Duration::from_secs(5),
            hinted_handoff: true,
        }
    }
}

/// The jars `cargo xtask deps` installed: `components.cassandra.libs` of
/// `$FAULTLINE_CACHE/versions.json` (default cache `$HOME/.cache/faultline`), else
/// `<cache>/cassandra-<VERSION>/libs`. Fails unless the directory holds `cassandra-all`.
pub fn libs_dir() -> Result<PathBuf, LabError> {
    super::installed_jars(
        "cassandra",
        VERSION,
        &format!("cassandra-all-{VERSION}.jar"),
    )
}

/// Checks the nodes, writes each node's configuration under `node_dir(name)/conf/` (and makes
/// its data directories), and returns the specs to start, in the order given.
pub fn prepare(
    nodes: &[CassandraNode],
    settings: &CassandraSettings,
    node_dir: impl Fn(&str) -> PathBuf,
) -> Result<Vec<NodeSpec>, LabError> {
    config::check(nodes, settings)?;
    let seeds = config::seeds(nodes, settings.seeds_per_dc);
    let jamm = find_jamm(&settings.libs);
    let mut specs = Vec::with_capacity(nodes.len());
    for (index, node) in nodes.iter().enumerate() {
        let dir = node_dir(&node.name);
        let conf = dir.join("conf");
        let data = dir.join("data");
        for sub in [
            conf.clone(),
            data.join("data"),
            data.join("commitlog"),
            data.join("saved_caches"),
            data.join("hints"),
            data.join("cdc_raw"),
            dir.join("triggers"),
        ] {
            std::fs::create_dir_all(&sub).map_err(|source| LabError::Io { path: sub, source })?;
        }
        let tokens = tokens_for(nodes, node, settings.num_tokens);
        write(
            &conf.join("cassandra.yaml"),
            &render_yaml(node, settings, &seeds, &tokens, &data),
        )?;
        write(
            &conf.join("cassandra-rackdc.properties"),
            &render_rackdc(node),
        )?;
        write(&conf.join("logback.xml"), &render_logback())?;
        specs.push(node_spec(
            node,
            settings,
            &dir,
            jamm.as_deref(),
            jmx_port(index),
        ));
    }
    Ok(specs)
}

/// The local JMX port of the node at `index` in the order `prepare` was given.
pub fn jmx_port(index: usize) -> u16 {
    JMX_PORT_BASE.saturating_add(u16::try_from(index).unwrap_or(u16::MAX))
}

fn write(path: &Path, text: &str) -> Result<(), LabError> {
    std::fs::write(path, text).map_err(|source| LabError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The jamm agent (`jamm-*.jar`) measures object sizes for memtable accounting; Cassandra's own
/// scripts always pass it. Without it Cassandra falls back to estimates, so it is optional.
fn find_jamm(libs: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(libs)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("jamm-") && n.ends_with(".jar"))
        })
        .collect();
    found.sort();
    found.pop()
}

fn node_spec(
    node: &CassandraNode,
    settings: &CassandraSettings,
    dir: &Path,
    jamm: Option<&Path>,
    jmx_port: u16,
) -> NodeSpec {
    let conf = dir.join("conf");
    let heap = settings.heap_mb;
    let mut spec = NodeSpec::new(
        node.name.clone(),
        settings.java.clone(),
        Readiness::LogLine(READY_LINE.into()),
    )
    .ready_timeout(settings.node_ready_timeout)
    .args([
        format!("-Xms{heap}M"),
        format!("-Xmx{heap}M"),
        "-Xss256k".into(),
    ])
    .args(config::JVM_OPTIONS.iter().copied());
    if let Some(jamm) = jamm {
        spec = spec.arg(format!("-javaagent:{}", jamm.display()));
    }
    spec.args([
        format!(
            "-Dcassandra.config=file://{}",
            conf.join("cassandra.yaml").display()
        ),
        format!(
            "-Dcassandra-rackdc.properties=file://{}",
            conf.join("cassandra-rackdc.properties").display()
        ),
        format!(
            "-Dlogback.configurationFile={}",
            conf.join("logback.xml").display()
        ),
        format!("-Dcassandra.storagedir={}", dir.join("data").display()),
        format!("-Dcassandra.logdir={}", dir.display()),
        format!(
            "-Dcassandra.triggers_dir={}",
            dir.join("triggers").display()
        ),
        format!(
            "-Dcassandra.ring_delay_ms={}",
            settings.ring_delay.as_millis()
        ),
        format!("-Dcassandra.jmx.local.port={jmx_port}"),
        "-cp".into(),
        format!("{}/*", settings.libs.display()),
        MAIN_CLASS.into(),
    ])
}

#[cfg(test)]
mod tests;
