//! Message retries as librdkafka itself reports them: its statistics count re-sent requests
//! (`txretries`) but not messages re-queued after a failed produce (a leader killed under
//! in-flight batches, NOT_LEADER_OR_FOLLOWER, NOT_ENOUGH_REPLICAS), so the producer's `msg`
//! debug log is read instead: every failed batch is logged as
//! `<topic> [<p>]: MessageSet with <n> message(s) (MsgId .., BaseSeq ..) encountered error:
//! <error> (actions <actions>)`. With `Retry` or `Refresh` among the actions the batch's messages
//! go back to the partition queue to be sent again (librdkafka's `rd_kafka_handle_Produce_error`).
//! A transport failure or a `Retry` error spends one of each message's `retries`, so with
//! `retries: 0` those messages fail instead; a `Refresh` for any other error (a leader change
//! bounced the batch) is re-sent without spending one.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Retries seen so far; shared between the producer's log callback and the workload.
#[derive(Debug, Default)]
pub(crate) struct RetryLog {
    /// The producer may retry at all (`retries` > 0): otherwise every failed batch fails.
    pub(crate) enabled: bool,
    seen: Mutex<RetryCounts>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct RetryCounts {
    /// Messages handed back for another attempt (one message retried twice counts twice).
    pub(crate) messages: u64,
    /// Failed batches, by librdkafka's error text.
    pub(crate) errors: BTreeMap<String, u64>,
}

impl RetryLog {
    pub(crate) fn new(enabled: bool) -> RetryLog {
        RetryLog {
            enabled,
            seen: Mutex::default(),
        }
    }

    /// Reads one librdkafka log line (facility `MSGSET`); other lines are ignored.
    pub(crate) fn observe(&self, facility: &str, message: &str) {
        if facility != "MSGSET" {
            return;
        }
        let Some(failed) = parse_failed_batch(message) else {
            return;
        };
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        *seen.errors.entry(failed.error.to_string()).or_default() += 1;
        let spends_a_retry = failed.retry || failed.error == TRANSPORT_FAILURE;
        if (failed.retry || failed.refresh) && (self.enabled || !spends_a_retry) {
            seen.messages += failed.messages;
        }
    }

    pub(crate) fn counts(&self) -> RetryCounts {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// librdkafka's text for `RD_KAFKA_RESP_ERR__TRANSPORT`.
const TRANSPORT_FAILURE: &str = "Local: Broker transport failure";

#[derive(Debug, PartialEq, Eq)]
struct FailedBatch<'m> {
    messages: u64,
    error: &'m str,
    retry: bool,
    refresh: bool,
}

fn parse_failed_batch(message: &str) -> Option<FailedBatch<'_>> {
    let (_, rest) = message.split_once("MessageSet with ")?;
    let (count, rest) = rest.split_once(" message(s)")?;
    let (_, rest) = rest.split_once("encountered error: ")?;
    let (error, rest) = rest.rsplit_once(" (actions ")?;
    let actions = rest.split(')').next().unwrap_or("");
    let has = |name: &str| actions.split(',').any(|a| a.trim() == name);
    Some(FailedBatch {
        messages: count.trim().parse().ok()?,
        error,
        retry: has("Retry"),
        refresh: has("Refresh"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_batches_are_read_from_librdkafka_lines() {
        /// (messages, error, Retry, Refresh)
        type Parsed<'a> = Option<(u64, &'a str, bool, bool)>;
        let cases: &[(&str, Parsed)] = &[
            (
                "plays [2]: MessageSet with 14 message(s) (MsgId 1201, BaseSeq 1200) encountered error: Local: Broker transport failure (actions Refresh,MsgPossiblyPersisted)",
                Some((14, "Local: Broker transport failure", false, true)),
            ),
            (
                "plays [0]: MessageSet with 3 message(s) (MsgId 9, BaseSeq 8) encountered error: Broker: Not leader for partition (actions Refresh,MsgNotPersisted,Retry) [NOT LEADER]",
                Some((3, "Broker: Not leader for partition", true, true)),
            ),
            (
                "plays [1]: MessageSet with 2 message(s) (MsgId 5, BaseSeq 4) encountered error: Broker: Invalid message (actions Permanent,MsgNotPersisted)",
                Some((2, "Broker: Invalid message", false, false)),
            ),
            (
                "plays [1]: MessageSet with 20 message(s) (MsgId 5, BaseSeq 4) delivered",
                None,
            ),
            ("garbage", None),
        ];
        for (line, want) in cases {
            let got = parse_failed_batch(line).map(|f| (f.messages, f.error, f.retry, f.refresh));
            assert_eq!(got, *want, "{line}");
        }
    }

    #[test]
    fn retries_that_spend_the_budget_count_only_when_there_is_one() {
        let line = |error: &str, actions: &str| {
            format!(
                "t [0]: MessageSet with 4 message(s) (MsgId 1, BaseSeq 0) encountered error: {error} (actions {actions})"
            )
        };
        let transport = line(TRANSPORT_FAILURE, "Refresh,MsgPossiblyPersisted");
        let not_leader = line(
            "Broker: Not leader for partition",
            "Refresh,MsgNotPersisted",
        );
        let replicas = line(
            "Broker: Not enough in-sync replicas",
            "Retry,MsgNotPersisted",
        );
        // (retries allowed, line, messages counted after two such lines)
        let cases = [
            (true, &transport, 8),
            (false, &transport, 0),
            (true, &not_leader, 8),
            (false, &not_leader, 8),
            (true, &replicas, 8),
            (false, &replicas, 0),
        ];
        for (enabled, line, messages) in cases {
            let log = RetryLog::new(enabled);
            log.observe("MSGSET", line);
            log.observe("MSGSET", line);
            log.observe("PRODUCE", line);
            let counts = log.counts();
            assert_eq!(
                counts.messages, messages,
                "{line} (retries allowed: {enabled})"
            );
            assert_eq!(counts.errors.values().sum::<u64>(), 2);
        }
    }
}
