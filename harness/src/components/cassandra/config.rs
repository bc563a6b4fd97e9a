//! Rendering a node's files (`cassandra.yaml`, `cassandra-rackdc.properties`, `logback.xml`),
//! the token plan, and the JVM options. Pure functions, so they are unit-tested without a JVM.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use super::{CQL_PORT, CassandraNode, CassandraSettings, STORAGE_PORT};
use crate::errors::LabError;

/// JVM options besides heap, agent, config paths and class path.
///
/// The module options are those of Cassandra 5.0's `conf/jvm17-server.options` (its code reaches
/// into JDK internals: without them start-up fails with `IllegalAccessError`). GC and compiler
/// threads are capped because six JVMs share two cores; G1 picks its own region size for the
/// small heap (the shipped 16m regions assume a large one).
pub const JVM_OPTIONS: &[&str] = &[
    "-XX:+UseG1GC",
    "-XX:+ParallelRefProcEnabled",
    "-XX:MaxGCPauseMillis=300",
    "-XX:ParallelGCThreads=2",
    "-XX:ConcGCThreads=1",
    "-XX:CICompilerCount=2",
    // No mmap'd hsperfdata file per JVM (and no pauses writing it).
    "-XX:+PerfDisableSharedMem",
    // A node that runs out of heap dies visibly instead of limping.
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.net.preferIPv4Stack=true",
    // Log times in UTC, so `is now DOWN` lines compare with the run's clock whatever the host's
    // zone (`run::cassandra_evidence`).
    "-Duser.timezone=UTC",
    "-Dcassandra-foreground=yes",
    // Start-up does not wait for gossip to settle: readiness is judged by `UpWatch` instead.
    "-Dcassandra.skip_wait_for_gossip_to_settle=0",
    "-Djdk.attach.allowAttachSelf=true",
    "--add-exports=java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-exports=java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.server=ALL-UNNAMED",
    "--add-exports=java.sql/java.sql=ALL-UNNAMED",
    "--add-exports=java.base/java.lang.ref=ALL-UNNAMED",
    "--add-exports=jdk.unsupported/sun.misc=ALL-UNNAMED",
    "--add-exports=jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED",
    "--add-exports=jdk.attach/sun.tools.attach=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.module=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.loader=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.reflect=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.math=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.module=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.util.jar=ALL-UNNAMED",
    "--add-opens=jdk.management/com.sun.management.internal=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens=jdk.compiler/com.sun.tools.javac=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--add-opens=java.base/java.util=ALL-UNNAMED",
    // Netty direct buffers through Unsafe, and the allocator defaults Cassandra ships.
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dio.netty.allocator.useCacheForAllThreads=true",
    "-Dio.netty.allocator.maxOrder=11",
];

/// Names end up in YAML, properties files and CQL: keep them to identifier characters.
fn plain(what: &str, value: &str) -> Result<(), LabError> {
    let ok = !value.is_empty()
        && value.len() <= 48
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(LabError::InvalidName {
            what: "cassandra name",
            value: value.to_string(),
            detail: format!("{what}: use 1 to 48 of `A-Z a-z 0-9 _ -`"),
        })
    }
}

/// Everything `prepare` needs to hold before it writes a file.
pub(super) fn check(nodes: &[CassandraNode], settings: &CassandraSettings) -> Result<(), LabError> {
    let bad = |detail: String| Err(LabError::Other(format!("cassandra cluster: {detail}")));
    if nodes.is_empty() {
        return bad("no nodes".into());
    }
    plain("cluster name", &settings.cluster_name)?;
    let (mut names, mut addrs) = (BTreeSet::new(), BTreeSet::new());
    for node in nodes {
        // The lab checks names too, but only when starting: these become directories first.
        let name_ok = (1..=64).contains(&node.name.len())
            && !node.name.starts_with('.')
            && node
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !name_ok {
            return Err(LabError::InvalidName {
                what: "node name",
                value: node.name.clone(),
                detail: "use 1 to 64 of `A-Z a-z 0-9 . _ -`, not starting with `.`".into(),
            });
        }
        plain("datacenter", &node.dc)?;
        plain("rack", &node.rack)?;
        if !names.insert(&node.name) {
            return bad(format!("node `{}` is listed twice", node.name));
        }
        if !addrs.insert(node.addr) {
            return bad(format!("address `{}` is used by two nodes", node.addr));
        }
    }
    if !(1..=256).contains(&settings.num_tokens) {
        return bad(format!(
            "num_tokens `{}` must be 1..=256",
            settings.num_tokens
        ));
    }
    if settings.seeds_per_dc == 0 {
        return bad("seeds_per_dc must be >= 1".into());
    }
    if settings.heap_mb < 256 {
        return bad(format!(
            "heap `{}` MiB is too small for Cassandra (hint: 512 or more)",
            settings.heap_mb
        ));
    }
    Ok(())
}

/// Datacenters in order of first appearance.
fn dcs(nodes: &[CassandraNode]) -> Vec<&str> {
    let mut dcs: Vec<&str> = Vec::new();
    for node in nodes {
        if !dcs.contains(&node.dc.as_str()) {
            dcs.push(&node.dc);
        }
    }
    dcs
}

/// The first `per_dc` nodes of each DC, in the order given.
pub(super) fn seeds(nodes: &[CassandraNode], per_dc: usize) -> Vec<&CassandraNode> {
    dcs(nodes)
        .into_iter()
        .flat_map(|dc| nodes.iter().filter(move |n| n.dc == dc).take(per_dc))
        .collect()
}

/// `node`'s tokens on the Murmur3 ring: each DC's `n * num_tokens` tokens are evenly spaced and
/// dealt round-robin to its `n` nodes (node i gets slots i, i + n, ...), and DC number d is
/// shifted by d * 1000 so no two nodes of the cluster share a token.
pub fn tokens_for(nodes: &[CassandraNode], node: &CassandraNode, num_tokens: u16) -> Vec<i64> {
    let dc_index = dcs(nodes).iter().position(|d| *d == node.dc).unwrap_or(0) as i128;
    let in_dc: Vec<&CassandraNode> = nodes.iter().filter(|n| n.dc == node.dc).collect();
    let n = in_dc.len().max(1) as i128;
    let i = in_dc.iter().position(|m| m.name == node.name).unwrap_or(0) as i128;
    let slots = n * i128::from(num_tokens.max(1));
    let step = (1i128 << 64) / slots;
    (0..i128::from(num_tokens.max(1)))
        .map(|j| {
            let t = i128::from(i64::MIN) + (j * n + i) * step + dc_index * 1000;
            // In range: slots * step <= 2^64 and the shift is far below one step.
            t.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
        })
        .collect()
}

/// A minimal `cassandra.yaml` (Cassandra 5.0 names and units); everything else keeps its
/// default. Sized for several nodes on a small machine: few threads, small memtables and caches.
pub fn render_yaml(
    node: &CassandraNode,
    settings: &CassandraSettings,
    seeds: &[&CassandraNode],
    tokens: &[i64],
    data: &Path,
) -> String {
    let seed_list: Vec<String> = seeds
        .iter()
        .map(|s| format!("{}:{STORAGE_PORT}", s.addr))
        .collect();
    let token_list: Vec<String> = tokens.iter().map(i64::to_string).collect();
    let dir = |sub: &str| yaml_str(&data.join(sub).display().to_string());
    let mut y = String::new();
    let _ = writeln!(y, "# written by faultline for node `{}`", node.name);
    let _ = writeln!(y, "cluster_name: {}", yaml_str(&settings.cluster_name));
    let _ = writeln!(y, "num_tokens: {}", tokens.len());
    let _ = writeln!(y, "initial_token: {}", yaml_str(&token_list.join(",")));
    let _ = writeln!(
        y,
        "partitioner: org.apache.cassandra.dht.Murmur3Partitioner"
    );
    let _ = writeln!(y, "auto_bootstrap: false");
    let _ = writeln!(y, "endpoint_snitch: GossipingPropertyFileSnitch");
    let _ = writeln!(y, "seed_provider:");
    let _ = writeln!(
        y,
        "  - class_name: org.apache.cassandra.locator.SimpleSeedProvider"
    );
    let _ = writeln!(y, "    parameters:");
    let _ = writeln!(y, "      - seeds: {}", yaml_str(&seed_list.join(",")));
    let _ = writeln!(y, "listen_address: {}", node.addr);
    let _ = writeln!(y, "rpc_address: {}", node.addr);
    let _ = writeln!(y, "storage_port: {STORAGE_PORT}");
    let _ = writeln!(y, "native_transport_port: {CQL_PORT}");
    let _ = writeln!(y, "start_native_transport: true");
    let _ = writeln!(y, "data_file_directories:\n  - {}", dir("data"));
    let _ = writeln!(y, "commitlog_directory: {}", dir("commitlog"));
    let _ = writeln!(y, "saved_caches_directory: {}", dir("saved_caches"));
    let _ = writeln!(y, "hints_directory: {}", dir("hints"));
    let _ = writeln!(y, "cdc_raw_directory: {}", dir("cdc_raw"));
    // Writes for a replica that is down are kept as hints and replayed when it is back.
    let _ = writeln!(y, "hinted_handoff_enabled: {}", settings.hinted_handoff);
    // Cassandra's defaults: acknowledged writes reach the commit log's page cache at once and
    // disk every 10 s, so a SIGKILL loses nothing the OS already has.
    y.push_str(
        "commitlog_sync: periodic\n\
         commitlog_sync_period: 10000ms\n\
         commitlog_segment_size: 8MiB\n\
         commitlog_total_space: 256MiB\n\
         disk_failure_policy: stop\n\
         commit_failure_policy: stop\n\
         concurrent_reads: 8\n\
         concurrent_writes: 16\n\
         concurrent_counter_writes: 4\n\
         concurrent_materialized_view_writes: 4\n\
         concurrent_compactors: 1\n\
         compaction_throughput: 16MiB/s\n\
         memtable_allocation_type: heap_buffers\n\
         memtable_heap_space: 64MiB\n\
         memtable_offheap_space: 64MiB\n\
         memtable_flush_writers: 1\n\
         file_cache_size: 32MiB\n\
         key_cache_size: 8MiB\n\
         counter_cache_size: 2MiB\n\
         native_transport_max_threads: 32\n\
         auto_snapshot: false\n\
         snapshot_before_compaction: false\n\
         max_hint_window: 3h\n\
         read_request_timeout: 5000ms\n\
         range_request_timeout: 10000ms\n\
         write_request_timeout: 2000ms\n\
         counter_write_request_timeout: 5000ms\n\
         cas_contention_timeout: 1000ms\n\
         truncate_request_timeout: 60000ms\n\
         request_timeout: 10000ms\n\
         authenticator: AllowAllAuthenticator\n\
         authorizer: AllowAllAuthorizer\n",
    );
    y
}

/// Single-quoted YAML scalar (a quote inside is doubled).
fn yaml_str(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

pub fn render_rackdc(node: &CassandraNode) -> String {
    format!(
        "# written by faultline for node `{}`\ndc={}\nrack={}\nprefer_local=false\n",
        node.name, node.dc, node.rack
    )
}

/// INFO and above to stdout (the lab appends it to the node's log), which is where the readiness
/// line and the gossip `is now UP` / `is now DOWN` lines are looked for.
pub fn render_logback() -> String {
    "<!-- written by faultline: everything to stdout, which the lab keeps as the node's log -->\n\
     <configuration scan=\"false\">\n  \
     <appender name=\"STDOUT\" class=\"ch.qos.logback.core.ConsoleAppender\">\n    \
     <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>\n  \
     </appender>\n  \
     <root level=\"INFO\"><appender-ref ref=\"STDOUT\"/></root>\n\
     </configuration>\n"
        .to_string()
}
