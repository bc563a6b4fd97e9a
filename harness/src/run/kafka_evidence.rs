//! Kafka's own account of leader changes, from the brokers' logs: a broker that becomes a
//! partition's leader logs `[<UTC time>] INFO [Broker id=N] Leader <topic>-<p> with topic id ...
//! starts at leader epoch E ...`. Every such line with E >= 1 (epoch 0 is the topic's creation)
//! becomes a `leader-elected` cluster event, which the failover verdict compares with the
//! client's first acknowledgement on that partition.

use crate::journal::ClusterEvent;
use crate::lab::Lab;
use crate::plan::{NodeKind, Plan};
use crate::run::TimeBase;

use super::redis_evidence::{days_from_civil, node_logs};

/// Every broker's leader elections, on the run's time base, in time order.
pub fn leader_events(plan: &Plan, lab: &Lab, base: TimeBase) -> Vec<ClusterEvent> {
    let mut out = Vec::new();
    for (node, log) in node_logs(plan, lab, NodeKind::Kafka) {
        for line in log.lines() {
            let Some(e) = parse_leader_line(line) else {
                continue;
            };
            if e.epoch == 0 {
                continue;
            }
            out.push(ClusterEvent {
                at_ms: base.offset_ms(e.unix_ms * 1000),
                node: node.to_string(),
                event: "leader-elected".into(),
                detail: format!("{}/{} epoch {}", e.topic, e.partition, e.epoch),
            });
        }
    }
    out.sort_by(|a, b| (a.at_ms, &a.node).cmp(&(b.at_ms, &b.node)));
    out
}

#[derive(Debug, PartialEq, Eq)]
struct LeaderLine<'l> {
    unix_ms: u64,
    topic: &'l str,
    partition: i32,
    epoch: u32,
}

fn parse_leader_line(line: &str) -> Option<LeaderLine<'_>> {
    let rest = line.strip_prefix('[')?;
    let (stamp, rest) = rest.split_once(']')?;
    let (_, rest) = rest.split_once("] Leader ")?;
    let (topic_partition, rest) = rest.split_once(' ')?;
    let (_, rest) = rest.split_once("starts at leader epoch ")?;
    let epoch = rest.split(' ').next()?.parse().ok()?;
    let (topic, partition) = topic_partition.rsplit_once('-')?;
    Some(LeaderLine {
        unix_ms: parse_stamp(stamp)?,
        topic,
        partition: partition.parse().ok()?,
        epoch,
    })
}

/// `2026-11-21 11:30:57,998` (log4j's default, UTC here) -> unix ms.
pub(super) fn parse_stamp(stamp: &str) -> Option<u64> {
    let (date, time) = stamp.split_once(' ')?;
    let mut ymd = date.split('-');
    let (y, m, d) = (ymd.next()?, ymd.next()?, ymd.next()?);
    let (hms, millis) = time.split_once(',')?;
    let mut hms = hms.split(':').map(|p| p.parse::<u64>().ok());
    let (h, min, s) = (hms.next()??, hms.next()??, hms.next()??);
    if h >= 24 || min >= 60 || s >= 61 {
        return None;
    }
    let days = days_from_civil(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)?;
    Some((((days * 24 + h) * 60 + min) * 60 + s) * 1000 + millis.parse::<u64>().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_lines_parse_with_their_partition_and_epoch() {
        /// (unix ms, topic, partition, epoch)
        type Parsed<'a> = Option<(u64, &'a str, i32, u32)>;
        let cases: &[(&str, Parsed)] = &[
            (
                "[2026-11-21 11:30:57,998] INFO [Broker id=3] Leader plays-0 with topic id Some(j5Zea98MTVOpJRvCK2ukmw) starts at leader epoch 1 from offset 997 with partition epoch 1, high watermark 992, ISR [3,1], adding replicas [] and removing replicas [] . (state.change.logger)",
                Some((1_795_260_657_998, "plays", 0, 1)),
            ),
            (
                "[2026-11-21 11:30:42,772] INFO [Broker id=1] Leader my-topic-12 with topic id Some(x) starts at leader epoch 0 from offset 0",
                Some((1_795_260_642_772, "my-topic", 12, 0)),
            ),
            (
                "[2026-11-21 11:30:58,268] INFO [Broker id=1] Follower plays-0 starts at leader epoch 1 from offset 997",
                None,
            ),
            ("garbage", None),
        ];
        for (line, want) in cases {
            let got = parse_leader_line(line).map(|l| (l.unix_ms, l.topic, l.partition, l.epoch));
            assert_eq!(got, *want, "{line}");
        }
    }
}
