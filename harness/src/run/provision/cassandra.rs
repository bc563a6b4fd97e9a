//! The Cassandra cluster of a lab: per-node configuration (datacenter and rack from the
//! experiment), seeds first then the rest, ready when every node sees every other UP with its
//! tokens; then the keyspace (NetworkTopologyStrategy) and its `writes` table.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::components::cassandra::{self, CassandraNode, CassandraSettings};
use crate::events::Progress;
use crate::lab::Lab;
use crate::load::cql_ops;
use crate::plan::{CassandraPlan, NodeKind, Plan};

/// Schema changes wait for agreement; a loaded 2-core machine is slow at it.
const SCHEMA_TIMEOUT: Duration = Duration::from_secs(60);

pub(super) async fn start(
    plan: &Plan,
    cluster: &CassandraPlan,
    lab: &Lab,
    progress: &dyn Progress,
    ready_ms: &mut BTreeMap<String, u64>,
) -> Result<(), String> {
    let nodes: Vec<CassandraNode> = plan
        .nodes
        .iter()
        .filter(|n| n.kind == NodeKind::Cassandra)
        .filter_map(|n| {
            let (dc, rack) = n.dc.clone()?;
            Some(CassandraNode {
                name: n.name.clone(),
                addr: n.addr,
                dc,
                rack,
            })
        })
        .collect();
    let settings = CassandraSettings {
        hinted_handoff: cluster.hinted_handoff,
        ..CassandraSettings::new(cassandra::libs_dir().map_err(|e| e.to_string())?)
    };
    let specs = cassandra::prepare(&nodes, &settings, |name| lab.node_dir(name))
        .map_err(|e| e.to_string())?
        .into_iter()
        .zip(&nodes)
        .map(|(spec, node)| super::jvm_node(spec, node.addr))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let ready = cassandra::start_cluster(lab, &specs, &nodes)
        .await
        .map_err(|e| e.to_string())?;
    for node in &ready.nodes {
        super::ready(progress, ready_ms, &node.name, node.ready_after);
    }
    super::ready(progress, ready_ms, "cassandra-cluster", ready.ready_after);
    let first_dc = &nodes.first().ok_or("no cassandra node")?.dc;
    let contact: Vec<_> = nodes
        .iter()
        .filter(|n| &n.dc == first_dc)
        .map(|n| n.cql_addr())
        .collect();
    let session = cql_ops::connect_cql(
        &contact,
        first_dc,
        cql_ops::parse_consistency("all")?,
        SCHEMA_TIMEOUT,
        None,
        1,
    )
    .await?;
    let replication: Vec<(&str, u32)> = cluster
        .replication
        .iter()
        .map(|(dc, rf)| (dc.as_str(), *rf))
        .collect();
    let schema_started = Instant::now();
    tokio::time::timeout(
        SCHEMA_TIMEOUT,
        cassandra::create_schema(&session, &cluster.keyspace, &replication),
    )
    .await
    .map_err(|_| {
        format!(
            "creating keyspace `{}` took over {} s",
            cluster.keyspace,
            SCHEMA_TIMEOUT.as_secs()
        )
    })?
    .map_err(|e| e.to_string())?;
    super::ready(
        progress,
        ready_ms,
        "cassandra-schema",
        schema_started.elapsed(),
    );
    Ok(())
}
