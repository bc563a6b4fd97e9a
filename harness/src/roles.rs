//! Which node has a role right now: the primary of a Sentinel-monitored Redis set, the leader of
//! a Kafka partition, the active KRaft controller. Faults that target a role resolve it when
//! they fire, because failovers earlier in the run move roles.
//!
//! invariant: every question is bounded by `ASK_TIMEOUT`; a role nobody can vouch for is an
//! error, never a guess.

use std::time::Duration;

use crate::faults::{Resolution, RoleSelector};
use crate::lab::Lab;

const ASK_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn resolve(selector: &RoleSelector, lab: &Lab) -> Result<Resolution, String> {
    let (nodes, partitions) = match selector {
        RoleSelector::Primary {
            master,
            sentinels,
            nodes,
        } => {
            let addr = sentinel_primary(master, sentinels).await?;
            let node = nodes.get(&addr).ok_or_else(|| {
                format!("the sentinels name `{addr}`, which is no node of the set")
            })?;
            (vec![node.clone()], Vec::new())
        }
        RoleSelector::KafkaLeader { .. } | RoleSelector::KafkaController { .. } => {
            crate::components::kafka_roles::resolve(selector, lab).await?
        }
    };
    Ok(Resolution {
        selector: selector.describe(),
        nodes,
        partitions,
    })
}

/// `ip:port` of the primary, as the first sentinel that answers reports it.
async fn sentinel_primary(
    master: &str,
    sentinels: &[std::net::SocketAddr],
) -> Result<String, String> {
    let mut last = String::from("no sentinel listed");
    for sentinel in sentinels {
        let ask = async {
            let client = redis::Client::open((sentinel.ip().to_string(), sentinel.port()))?;
            let mut conn = client.get_multiplexed_async_connection().await?;
            redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(master)
                .query_async::<Option<(String, u16)>>(&mut conn)
                .await
        };
        match tokio::time::timeout(ASK_TIMEOUT, ask).await {
            Ok(Ok(Some((ip, port)))) => return Ok(format!("{ip}:{port}")),
            Ok(Ok(None)) => last = format!("sentinel {sentinel} does not know `{master}`"),
            Ok(Err(e)) => last = format!("sentinel {sentinel}: {e}"),
            Err(_) => last = format!("sentinel {sentinel} did not answer within 5 s"),
        }
    }
    Err(last)
}
