//! Reading acknowledged writes back after the faults are healed.

use std::collections::HashMap;

use futures::StreamExt as _;
use scylla::client::session::Session;
use scylla::statement::Consistency;

use super::{is_cql_value, key_i64};
use crate::components::cassandra::TABLE;

/// What the read-back found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadBack {
    /// Key -> times found with its own value. Always 1 here (a key is one row); a count, so the
    /// ledger check is the same as for logs that can hold duplicates.
    pub found: HashMap<u64, u32>,
    /// Keys present with a value that is not theirs.
    pub mismatched: Vec<u64>,
    /// Keys asked for.
    pub checked: u64,
}

/// Reads `keys` back at `consistency` (ALL or QUORUM after healing), `concurrency` at a time.
/// Fails on the first key that cannot be read (an unreadable key proves nothing either way).
pub async fn read_back(
    session: &Session,
    keyspace: &str,
    consistency: Consistency,
    keys: impl Iterator<Item = u64>,
    concurrency: usize,
) -> Result<ReadBack, String> {
    crate::components::cassandra::check_keyspace(keyspace)?;
    let cql = format!("SELECT v FROM {keyspace}.{TABLE} WHERE k = ?");
    let mut statement = session
        .prepare(cql.as_str())
        .await
        .map_err(|e| format!("cannot prepare `{cql}`: {e}"))?;
    statement.set_consistency(consistency);
    let statement = &statement;
    let mut reads = futures::stream::iter(keys)
        .map(|k| async move {
            let result = session
                .execute_unpaged(statement, (key_i64(k),))
                .await
                .map_err(|e| format!("reading key `{k}` at {consistency:?}: {e}"))?;
            let rows = result
                .into_rows_result()
                .map_err(|e| format!("reading key `{k}`: {e}"))?;
            let row = rows
                .maybe_first_row::<(Option<Vec<u8>>,)>()
                .map_err(|e| format!("reading key `{k}`: {e}"))?;
            Ok::<_, String>((k, row.and_then(|(v,)| v)))
        })
        .buffer_unordered(concurrency.max(1));
    let mut back = ReadBack::default();
    while let Some(read) = reads.next().await {
        let (k, value) = read?;
        back.checked += 1;
        match value {
            Some(v) if is_cql_value(k, &v) => *back.found.entry(k).or_insert(0) += 1,
            Some(_) => back.mismatched.push(k),
            None => {}
        }
    }
    back.mismatched.sort_unstable();
    Ok(back)
}
