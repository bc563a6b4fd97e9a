//! Kafka roles for role-targeted faults: the leader of a partition, the active controller.

use crate::faults::RoleSelector;
use crate::lab::Lab;

/// (nodes, partitions they lead) for a Kafka role.
pub async fn resolve(
    selector: &RoleSelector,
    _lab: &Lab,
) -> Result<(Vec<String>, Vec<i32>), String> {
    Err(format!(
        "`{}`: Kafka roles are not wired yet",
        selector.describe()
    ))
}
