//! Stage "collect" for Redis: the ack ledger read back from the current primary, the roles of
//! nodes after healing (an old primary back as a replica), and Sentinel's own event log.
//!
//! invariant: every wait here is bounded (deadline per poll loop, timeout per request).

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::collect::TimeBase;
use crate::journal::{ClusterEvent, RoleEvidence};
use crate::lab::Lab;
use crate::ledger::ReadBack;
use crate::load::{RedisCommand, WorkloadKind, WorkloadPlan, WorkloadRecord};
use crate::plan::{Assertion, NodeKind, Plan};

/// Keys per MGET: large enough to read 100 k keys in a second, small enough to stay well under
/// the op timeout per request.
const MGET_BATCH: usize = 1000;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The read-back of a `set_unique` workload, from the primary (found through Sentinel when the
/// workload uses it).
pub async fn read_back(
    w: &WorkloadPlan,
    record: &WorkloadRecord,
) -> Result<Option<ReadBack>, String> {
    let WorkloadKind::Redis {
        addr,
        command: RedisCommand::SetUnique,
        sentinel,
        value_size,
        ..
    } = &w.kind
    else {
        return Ok(None);
    };
    let client = match sentinel {
        Some(target) => crate::load::primary_client(target).await.map_err(|e| {
            format!(
                "asking the sentinels for the primary of `{}`: {e}",
                target.master
            )
        })?,
        None => {
            redis::Client::open((addr.ip().to_string(), addr.port())).map_err(|e| e.to_string())?
        }
    };
    let read_from = crate::load::server_name(&client);
    let mut conn = tokio::time::timeout(REQUEST_TIMEOUT, client.get_multiplexed_async_connection())
        .await
        .map_err(|_| format!("connecting to `{read_from}` timed out"))?
        .map_err(|e| format!("connecting to `{read_from}`: {e}"))?;
    let mut back = ReadBack {
        found: HashMap::new(),
        stale: 0,
        read_from,
    };
    let indices: Vec<u64> = record
        .ops
        .iter()
        .map(|op| crate::ledger::op_index(record, op))
        .collect();
    for chunk in indices.chunks(MGET_BATCH) {
        let keys: Vec<String> = chunk.iter().map(|n| crate::load::unique_key(*n)).collect();
        let values: Vec<Option<Vec<u8>>> = tokio::time::timeout(
            REQUEST_TIMEOUT,
            redis::cmd("MGET").arg(&keys).query_async(&mut conn),
        )
        .await
        .map_err(|_| format!("reading back from `{}` timed out", back.read_from))?
        .map_err(|e| format!("reading back from `{}`: {e}", back.read_from))?;
        for (n, value) in chunk.iter().zip(values) {
            match value {
                Some(v) if v == crate::load::unique_value_of(*n, *value_size) => {
                    back.found.insert(*n, 1);
                }
                Some(_) => back.stale += 1,
                None => {}
            }
        }
    }
    Ok(Some(back))
}

/// For each `rejoins_as_replica` assertion: polls the node's `ROLE` until it is a replica with
/// its link up, or until `within` after `healed_at`; returns the last observation.
pub async fn roles(plan: &Plan, healed_at: Instant, t0: Instant) -> Vec<RoleEvidence> {
    let mut out = Vec::new();
    for assertion in &plan.assertions {
        let Assertion::RejoinsAsReplica(a) = assertion else {
            continue;
        };
        let Some(node) = plan.node(&a.node) else {
            continue;
        };
        let deadline = healed_at + a.within;
        let mut backoff = Duration::from_millis(20);
        loop {
            let (role, following, link_up) = role_of(node.socket()).await;
            let done = role == "slave" && link_up;
            if done || Instant::now() >= deadline {
                out.push(RoleEvidence {
                    node: a.node.clone(),
                    role,
                    following,
                    link_up,
                    at_ms: t0.elapsed().as_millis() as i64,
                    reconfigured_ms: None,
                });
                break;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(200));
        }
    }
    out
}

/// (`master` | `slave` | `unreachable: ...`, followed primary, link up).
async fn role_of(addr: std::net::SocketAddr) -> (String, Option<String>, bool) {
    let ask = async {
        let client = redis::Client::open((addr.ip().to_string(), addr.port()))?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("ROLE")
            .query_async::<Vec<redis::Value>>(&mut conn)
            .await
    };
    let reply = match tokio::time::timeout(Duration::from_secs(2), ask).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(e)) => return (format!("unreachable: {e}"), None, false),
        Err(_) => return ("unreachable: no answer in 2 s".into(), None, false),
    };
    let text = |i: usize| match reply.get(i) {
        Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(redis::Value::SimpleString(s)) => s.clone(),
        Some(redis::Value::Int(n)) => n.to_string(),
        _ => String::new(),
    };
    match text(0).as_str() {
        "slave" => (
            "slave".into(),
            Some(format!("{}:{}", text(1), text(2))),
            text(3) == "connected",
        ),
        role => (role.to_string(), None, false),
    }
}

/// Fills in when Sentinel logged reconfiguring each observed node as a replica (the last
/// `+convert-to-slave` naming its address).
pub fn reconfiguration_times(plan: &Plan, roles: &mut [RoleEvidence], events: &[ClusterEvent]) {
    for role in roles {
        let Some(node) = plan.node(&role.node) else {
            continue;
        };
        let addr = node.socket().to_string();
        role.reconfigured_ms = events
            .iter()
            .filter(|e| e.event == "+convert-to-slave" && e.detail.contains(&addr))
            .map(|e| e.at_ms)
            .max();
    }
}

/// Sentinel events worth a timeline: detection, election, promotion, switch, reconfiguration.
const SENTINEL_EVENTS: &[&str] = &[
    "+sdown",
    "-sdown",
    "+odown",
    "+try-failover",
    "+elected-leader",
    "+selected-slave",
    "+promoted-slave",
    "+failover-end",
    "+switch-master",
    "+convert-to-slave",
];

/// The log of every node of `kind` that has one, with the node's name.
pub(super) fn node_logs<'p>(plan: &'p Plan, lab: &Lab, kind: NodeKind) -> Vec<(&'p str, String)> {
    plan.nodes
        .iter()
        .filter(|n| n.kind == kind)
        .filter_map(|n| {
            Some((
                n.name.as_str(),
                std::fs::read_to_string(lab.log_path(&n.name)).ok()?,
            ))
        })
        .collect()
}

/// Every sentinel's events of interest, on the run's time base.
pub fn sentinel_events(plan: &Plan, lab: &Lab, base: TimeBase) -> Vec<ClusterEvent> {
    let mut out = Vec::new();
    for (node, log) in node_logs(plan, lab, NodeKind::Sentinel) {
        for line in log.lines() {
            let Some((unix_ms, event, detail)) = parse_sentinel_line(line) else {
                continue;
            };
            if SENTINEL_EVENTS.contains(&event) {
                out.push(ClusterEvent {
                    at_ms: base.offset_ms(unix_ms * 1000),
                    node: node.to_string(),
                    event: event.to_string(),
                    detail: detail.to_string(),
                });
            }
        }
    }
    out.sort_by(|a, b| (a.at_ms, &a.node).cmp(&(b.at_ms, &b.node)));
    out
}

/// `1234:X 21 Nov 2026 08:30:01.123 # +switch-master r1 127.0.1.1 6379 127.0.1.2 6379` ->
/// (unix ms, `+switch-master`, `r1 127.0.1.1 6379 127.0.1.2 6379`). The log is in UTC.
pub fn parse_sentinel_line(line: &str) -> Option<(u64, &str, &str)> {
    let mut parts = line.splitn(7, ' ');
    let _pid_role = parts.next()?;
    let day: u32 = parts.next()?.parse().ok()?;
    let month = parts.next()?;
    let year: i32 = parts.next()?.parse().ok()?;
    let time = parts.next()?;
    let _level = parts.next()?;
    let rest = parts.next()?;
    let (event, detail) = rest.split_once(' ').unwrap_or((rest, ""));
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == month)? as u32 + 1;
    let (hms, millis) = time.split_once('.')?;
    let mut hms = hms.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    let millis: u64 = millis.parse().ok()?;
    let days = days_from_civil(year, month, day)?;
    if h >= 24 || m >= 60 || s >= 61 {
        return None;
    }
    Some((
        (((days * 24 + h) * 60 + m) * 60 + s) * 1000 + millis,
        event,
        detail,
    ))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(super) fn days_from_civil(year: i32, month: u32, day: u32) -> Option<u64> {
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(month) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    u64::try_from(era * 146_097 + doe - 719_468).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_lines_parse_to_utc_milliseconds() {
        type Parsed<'a> = Option<(u64, &'a str, &'a str)>;
        let cases: &[(&str, Parsed)] = &[
            (
                "3217:X 21 Nov 2026 09:10:07.532 # +switch-master r1 127.0.1.1 6379 127.0.1.2 6379",
                Some((
                    1_795_252_207_532,
                    "+switch-master",
                    "r1 127.0.1.1 6379 127.0.1.2 6379",
                )),
            ),
            (
                "1:X 01 Jan 1970 00:00:00.000 # +sdown",
                Some((0, "+sdown", "")),
            ),
            (
                "1:X 29 Feb 2028 23:59:59.999 * +odown x",
                Some((1_835_481_599_999, "+odown", "x")),
            ),
            ("1:X 21 Foo 2026 09:10:07.532 # +sdown", None),
            ("1:X 21 Nov 2026 25:10:07.532 # +sdown", None),
            ("garbage", None),
            ("", None),
        ];
        for (line, want) in cases {
            assert_eq!(parse_sentinel_line(line), *want, "{line}");
        }
    }
}
