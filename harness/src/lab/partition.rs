//! Network partitions between address groups: nftables rules in the lab namespace, table
//! `inet faultline`, chain `partitions` on the `input` hook.
//!
//! Every lab address lives on `lo`, so every packet between nodes passes `output` on the way out
//! and `input` on the way back in, once each; dropping by source and destination address at
//! either is enough. `input` is used, not `output`: a drop in `output` is reported to the sender
//! (`sendto` fails with EPERM at once), which no real network does; a drop in `input` is silent
//! loss, so senders see what a partition looks like (timeouts). Measured on this kernel: TCP
//! connects time out either way, UDP sends fail only with `output`.
//! A `OneWay` partition drops only a->b packets; over TCP that still breaks connections in both
//! directions (b's SYN gets through, a's SYN-ACK does not), while datagrams b->a arrive.
//!
//! Caveat for callers: a client that does not bind its own node address gets source 127.0.0.1
//! from the kernel and escapes the partition. Components must source their outgoing connections
//! from their node address (redis: `bind-source-addr`; Cassandra/Kafka: `listen_address` /
//! listeners do this already).
//!
//! invariant: each partition's rules carry the comment `faultline-partition-<id>`, and `heal`
//! deletes exactly the rules with that comment that still exist, so healing is idempotent and
//! never touches another partition's rules. Deleting the namespace removes them all.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::os::fd::RawFd;
use std::process::Stdio;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::errors::LabError;

pub const TABLE: &str = "inet faultline";
pub const CHAIN: &str = "partitions";

/// Which traffic a partition drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// a->b and b->a.
    Both,
    /// a->b only.
    OneWay,
}

/// What `heal` needs to undo one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionHandle {
    pub id: u64,
    /// nftables rule handles, as reported when the rules were added (informational: `heal`
    /// finds the rules by their comment).
    pub rule_handles: Vec<u64>,
}

fn comment(id: u64) -> String {
    format!("faultline-partition-{id}")
}

fn set(addrs: &BTreeSet<Ipv4Addr>) -> String {
    let items: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    format!("{{ {} }}", items.join(", "))
}

fn describe(addrs: &[Ipv4Addr]) -> String {
    let items: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    format!("`[{}]`", items.join(", "))
}

/// The `nft -f -` script that adds one partition (creating the table and chain if needed).
pub fn script(
    id: u64,
    a: &[Ipv4Addr],
    b: &[Ipv4Addr],
    direction: Direction,
) -> Result<String, LabError> {
    let err = |detail: String| LabError::Partition {
        a: describe(a),
        b: describe(b),
        detail,
    };
    if a.is_empty() || b.is_empty() {
        return Err(err("both sides need at least one address".into()));
    }
    if let Some(bad) = a.iter().chain(b).find(|ip| !ip.is_loopback()) {
        return Err(err(format!(
            "`{bad}` is not a loopback address (hint: lab nodes live on 127.0.<group>.<n>)"
        )));
    }
    let sa: BTreeSet<Ipv4Addr> = a.iter().copied().collect();
    let sb: BTreeSet<Ipv4Addr> = b.iter().copied().collect();
    if let Some(both) = sa.intersection(&sb).next() {
        return Err(err(format!("`{both}` is on both sides")));
    }
    let c = comment(id);
    let mut s = String::new();
    // `add` (not `create`) is a no-op for an existing table/chain: every partition can carry it.
    let _ = writeln!(s, "add table {TABLE}");
    let _ = writeln!(
        s,
        "add chain {TABLE} {CHAIN} {{ type filter hook input priority 0; policy accept; }}"
    );
    let _ = writeln!(
        s,
        "add rule {TABLE} {CHAIN} ip saddr {} ip daddr {} drop comment \"{c}\"",
        set(&sa),
        set(&sb)
    );
    if direction == Direction::Both {
        let _ = writeln!(
            s,
            "add rule {TABLE} {CHAIN} ip saddr {} ip daddr {} drop comment \"{c}\"",
            set(&sb),
            set(&sa)
        );
    }
    Ok(s)
}

/// Runs `nft` inside the lab namespace, feeding `stdin` when given.
async fn nft(netns_fd: RawFd, args: &[&str], stdin: Option<&str>) -> Result<String, LabError> {
    let shown = format!("nft {}", args.join(" "));
    let fail = |detail: String| LabError::Command {
        command: shown.clone(),
        detail,
    };
    let mut cmd = tokio::process::Command::new("nft");
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    super::node::confine(&mut cmd, netns_fd);
    let mut child = cmd.spawn().map_err(|e| fail(e.to_string()))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .await
            .map_err(|e| fail(format!("writing the script: {e}")))?;
        // Dropping the pipe closes it, which ends nft's input.
    }
    let out = tokio::time::timeout(std::time::Duration::from_secs(10), child.wait_with_output())
        .await
        .map_err(|_| fail("timed out after 10 s".into()))?
        .map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        let mut detail = format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        if let Some(text) = stdin {
            let _ = write!(detail, "\nscript:\n{text}");
        }
        return Err(fail(detail));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `# handle N` at the end of an nft line.
fn handle_of(line: &str) -> Option<u64> {
    line.rsplit_once("# handle ")?.1.trim().parse().ok()
}

pub(crate) async fn apply(
    netns_fd: RawFd,
    id: u64,
    a: &[Ipv4Addr],
    b: &[Ipv4Addr],
    direction: Direction,
) -> Result<PartitionHandle, LabError> {
    let text = script(id, a, b, direction)?;
    // --echo --handle: nft prints each added object with its handle.
    let out = nft(netns_fd, &["--echo", "--handle", "-f", "-"], Some(&text)).await?;
    let rule_handles = out
        .lines()
        .filter(|l| {
            l.starts_with("add rule ") && l.contains(&format!("comment \"{}\"", comment(id)))
        })
        .filter_map(handle_of)
        .collect();
    Ok(PartitionHandle { id, rule_handles })
}

/// Removes the partition's rules that still exist; returns how many were removed.
pub(crate) async fn heal(netns_fd: RawFd, handle: &PartitionHandle) -> Result<usize, LabError> {
    let listing = match nft(
        netns_fd,
        &["--handle", "list", "chain", "inet", "faultline", CHAIN],
        None,
    )
    .await
    {
        Ok(l) => l,
        // No table or chain: nothing of ours can be left.
        Err(LabError::Command { detail, .. }) if detail.contains("No such file or directory") => {
            return Ok(0);
        }
        Err(e) => return Err(e),
    };
    let marker = format!("comment \"{}\"", comment(handle.id));
    let doomed: Vec<u64> = listing
        .lines()
        .filter(|l| l.contains(&marker))
        .filter_map(handle_of)
        .collect();
    if doomed.is_empty() {
        return Ok(0);
    }
    let mut text = String::new();
    for h in &doomed {
        let _ = writeln!(text, "delete rule {TABLE} {CHAIN} handle {h}");
    }
    nft(netns_fd, &["-f", "-"], Some(&text)).await?;
    Ok(doomed.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_drops_both_ways_between_sorted_sets() {
        let a = [Ipv4Addr::new(127, 0, 1, 2), Ipv4Addr::new(127, 0, 1, 1)];
        let b = [Ipv4Addr::new(127, 0, 2, 1)];
        let s = script(7, &a, &b, Direction::Both).expect("valid");
        assert!(s.contains(
            "add rule inet faultline partitions ip saddr { 127.0.1.1, 127.0.1.2 } ip daddr { 127.0.2.1 } drop comment \"faultline-partition-7\""
        ), "{s}");
        assert!(
            s.contains("ip saddr { 127.0.2.1 } ip daddr { 127.0.1.1, 127.0.1.2 } drop"),
            "{s}"
        );
        let one = script(7, &a, &b, Direction::OneWay).expect("valid");
        assert_eq!(one.matches("add rule").count(), 1);
    }

    #[test]
    fn script_rejects_bad_groups() {
        let lo = Ipv4Addr::new(127, 0, 1, 1);
        assert!(script(1, &[], &[lo], Direction::Both).is_err());
        assert!(script(1, &[lo], &[lo], Direction::Both).is_err());
        let e = script(1, &[lo], &[Ipv4Addr::new(10, 0, 0, 1)], Direction::Both)
            .expect_err("not loopback");
        assert!(
            e.to_string()
                .contains("`10.0.0.1` is not a loopback address"),
            "{e}"
        );
    }

    #[test]
    fn reads_rule_handles() {
        assert_eq!(
            handle_of("ip saddr 127.0.2.1 drop comment \"x\" # handle 4"),
            Some(4)
        );
        assert_eq!(handle_of("table inet faultline {"), None);
    }
}
