//! The experiment schema: one NetworkTopologyStrategy keyspace and the `writes` table the CQL
//! workload writes and the read-back checks.
//!
//! ```cql
//! CREATE TABLE <keyspace>.writes (k bigint PRIMARY KEY, v blob, written_at timestamp)
//! ```
//! `k` is the op index (unique per write), `v` starts with `k` as 8 big-endian bytes (padded to
//! the workload's value size), `written_at` is the client's wall clock in ms.

use std::time::Duration;

use scylla::client::session::Session;

use crate::errors::LabError;

/// The table's name inside the keyspace.
pub const TABLE: &str = "writes";
/// Schema agreement on a loaded 2-core machine can take a few seconds per DDL statement.
const AGREEMENT_TIMEOUT: Duration = Duration::from_secs(60);

/// CQL identifiers we accept unquoted: a letter, then letters, digits, `_`, at most 48.
pub(crate) fn check_identifier(what: &str, name: &str) -> Result<(), String> {
    let ok = (1..=48).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid {what} `{name}`: use a letter then up to 47 of `A-Z a-z 0-9 _`"
        ))
    }
}

/// The `CREATE KEYSPACE` statement for `replication` = [(datacenter, replication factor)].
pub(crate) fn keyspace_cql(keyspace: &str, replication: &[(&str, u32)]) -> Result<String, String> {
    check_identifier("keyspace", keyspace)?;
    if replication.is_empty() {
        return Err("replication names no datacenter".into());
    }
    let mut dcs = Vec::with_capacity(replication.len());
    for (dc, rf) in replication {
        let dc_ok = !dc.is_empty()
            && dc
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !dc_ok || !(1..=16).contains(rf) {
            return Err(format!(
                "invalid replication `{dc}: {rf}` (hint: a datacenter name of `A-Z a-z 0-9 _ -` and a factor 1..=16)"
            ));
        }
        dcs.push(format!("'{dc}': {rf}"));
    }
    Ok(format!(
        "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = \
         {{'class': 'NetworkTopologyStrategy', {}}}",
        dcs.join(", ")
    ))
}

/// Creates the keyspace (NetworkTopologyStrategy, `replication` = [(dc, rf)]) and its `writes`
/// table if they do not exist, and waits until every node agrees on the schema.
pub async fn create_schema(
    session: &Session,
    keyspace: &str,
    replication: &[(&str, u32)],
) -> Result<(), LabError> {
    let fail = |what: &str, e: String| LabError::Other(format!("cassandra schema: {what}: {e}"));
    let create_ks = keyspace_cql(keyspace, replication).map_err(|e| fail("keyspace", e))?;
    let create_table = format!(
        "CREATE TABLE IF NOT EXISTS {keyspace}.{TABLE} \
         (k bigint PRIMARY KEY, v blob, written_at timestamp)"
    );
    for statement in [&create_ks, &create_table] {
        session
            .query_unpaged(statement.as_str(), &[])
            .await
            .map_err(|e| fail(&format!("`{statement}`"), e.to_string()))?;
    }
    match tokio::time::timeout(AGREEMENT_TIMEOUT, session.await_schema_agreement()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(fail("schema agreement", e.to_string())),
        Err(_) => Err(fail(
            "schema agreement",
            format!(
                "nodes still disagree after {} s",
                AGREEMENT_TIMEOUT.as_secs()
            ),
        )),
    }
}
