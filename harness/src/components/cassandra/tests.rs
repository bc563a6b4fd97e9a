//! Config rendering, the token plan, seeds, node specs and gossip-line parsing: no JVM, no network.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::cluster::parse_gossip_line;
use super::schema::keyspace_cql;
use super::*;

fn node(name: &str, group: u8, n: u8, dc: &str) -> CassandraNode {
    CassandraNode {
        name: name.into(),
        addr: Ipv4Addr::new(127, 0, group, n),
        dc: dc.into(),
        rack: "rack1".into(),
    }
}

fn two_dcs() -> Vec<CassandraNode> {
    let mut nodes = Vec::new();
    for (g, dc) in [(1, "dc1"), (2, "dc2")] {
        for n in 1..=3 {
            nodes.push(node(&format!("{dc}-n{n}"), g, n, dc));
        }
    }
    nodes
}

fn settings() -> CassandraSettings {
    CassandraSettings::new("/opt/cassandra/libs")
}

#[test]
fn tokens_are_unique_evenly_spaced_and_interleaved() {
    let nodes = two_dcs();
    let mut all = BTreeSet::new();
    for n in &nodes {
        let tokens = tokens_for(&nodes, n, 4);
        assert_eq!(tokens.len(), 4);
        for t in tokens {
            assert!(all.insert(t), "token {t} given twice");
        }
    }
    let dc1: Vec<i64> = nodes[..3]
        .iter()
        .flat_map(|n| tokens_for(&nodes, n, 4))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(dc1[0], i64::MIN);
    let step = (1i128 << 64) / 12;
    for pair in dc1.windows(2) {
        assert_eq!(i128::from(pair[1]) - i128::from(pair[0]), step);
    }
    // Node 0 of dc1 owns slots 0, 3, 6, 9: consecutive ring positions belong to other nodes.
    let first = tokens_for(&nodes, &nodes[0], 4);
    assert_eq!(i128::from(first[1]) - i128::from(first[0]), 3 * step);
    // dc2 is shifted by a small offset, not a slot.
    assert_eq!(tokens_for(&nodes, &nodes[3], 4)[0], i64::MIN + 1000);
}

#[test]
fn one_token_per_node_stays_in_range() {
    let nodes = vec![node("solo", 1, 1, "dc1")];
    assert_eq!(tokens_for(&nodes, &nodes[0], 1), vec![i64::MIN]);
    let nodes = two_dcs();
    for n in &nodes {
        for t in tokens_for(&nodes, n, 256) {
            assert!(t < i64::MAX);
        }
    }
}

#[test]
fn seeds_are_the_first_nodes_of_each_dc() {
    let nodes = two_dcs();
    let names = |k| {
        config::seeds(&nodes, k)
            .iter()
            .map(|n| n.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(1), ["dc1-n1", "dc2-n1"]);
    assert_eq!(names(2), ["dc1-n1", "dc1-n2", "dc2-n1", "dc2-n2"]);
    assert_eq!(names(9).len(), 6);
}

#[test]
fn yaml_names_the_node_its_seeds_tokens_and_dirs() {
    let nodes = two_dcs();
    let seeds = config::seeds(&nodes, 1);
    let tokens = tokens_for(&nodes, &nodes[4], 4);
    let yaml = render_yaml(
        &nodes[4],
        &settings(),
        &seeds,
        &tokens,
        Path::new("/lab/dc2-n2/data"),
    );
    for line in [
        "cluster_name: 'faultline'",
        "num_tokens: 4",
        "auto_bootstrap: false",
        "endpoint_snitch: GossipingPropertyFileSnitch",
        "      - seeds: '127.0.1.1:7000,127.0.2.1:7000'",
        "listen_address: 127.0.2.2",
        "rpc_address: 127.0.2.2",
        "native_transport_port: 9042",
        "  - '/lab/dc2-n2/data/data'",
        "commitlog_directory: '/lab/dc2-n2/data/commitlog'",
        "hints_directory: '/lab/dc2-n2/data/hints'",
        "partitioner: org.apache.cassandra.dht.Murmur3Partitioner",
        "commitlog_sync: periodic",
    ] {
        assert!(
            yaml.lines().any(|l| l == line),
            "missing `{line}` in:\n{yaml}"
        );
    }
    let joined: Vec<String> = tokens.iter().map(i64::to_string).collect();
    assert!(yaml.contains(&format!("initial_token: '{}'", joined.join(","))));
    // Every line is `key: value`, a list item or an indented mapping line: no tabs, no blanks.
    assert!(
        yaml.lines()
            .all(|l| !l.contains('\t') && !l.trim().is_empty())
    );
}

#[test]
fn rackdc_and_logback() {
    let text = render_rackdc(&node("dc2-n1", 2, 1, "dc2"));
    assert!(text.lines().any(|l| l == "dc=dc2"));
    assert!(text.lines().any(|l| l == "rack=rack1"));
    let logback = render_logback();
    assert!(logback.contains("ConsoleAppender") && logback.contains("<root level=\"INFO\">"));
}

#[test]
fn prepare_writes_files_and_specs() {
    let root = std::env::temp_dir().join(format!("faultline-cass-prepare-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let nodes = two_dcs();
    let specs = prepare(&nodes, &settings(), |n| root.join(n)).expect("prepare");
    assert_eq!(specs.len(), 6);
    let spec = &specs[1];
    assert_eq!(spec.name, "dc1-n2");
    assert_eq!(spec.program, PathBuf::from("java"));
    assert_eq!(
        spec.readiness,
        crate::lab::Readiness::LogLine(READY_LINE.into())
    );
    let args = spec.args.join(" ");
    for want in [
        "-Xms512M",
        "-Xmx512M",
        "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
        "-Dcassandra-foreground=yes",
        &format!(
            "-Dcassandra.config=file://{}",
            root.join("dc1-n2/conf/cassandra.yaml").display()
        ),
        "-cp /opt/cassandra/libs/*",
    ] {
        assert!(args.contains(want), "missing `{want}` in {args}");
    }
    assert_eq!(spec.args.last().map(String::as_str), Some(MAIN_CLASS));
    for file in [
        "cassandra.yaml",
        "cassandra-rackdc.properties",
        "logback.xml",
    ] {
        assert!(root.join("dc2-n3/conf").join(file).is_file(), "{file}");
    }
    assert!(root.join("dc2-n3/data/commitlog").is_dir());
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn prepare_refuses_bad_clusters() {
    let dir = |n: &str| std::env::temp_dir().join("faultline-never-written").join(n);
    let mut dup = two_dcs();
    dup[1].name = dup[0].name.clone();
    let mut same_addr = two_dcs();
    same_addr[1].addr = same_addr[0].addr;
    let mut bad_dc = two_dcs();
    bad_dc[0].dc = "dc 1'".into();
    let mut traversal = two_dcs();
    traversal[0].name = "../x".into();
    for (case, nodes) in [
        ("duplicate name", dup),
        ("shared address", same_addr),
        ("bad dc", bad_dc),
        ("path in name", traversal),
        ("empty", Vec::new()),
    ] {
        assert!(
            prepare(&nodes, &settings(), dir).is_err(),
            "{case} accepted"
        );
    }
    let mut small = settings();
    small.heap_mb = 64;
    assert!(prepare(&two_dcs(), &small, dir).is_err());
    assert!(
        !std::env::temp_dir()
            .join("faultline-never-written")
            .exists()
    );
}

#[test]
fn gossip_lines_parse_and_others_do_not() {
    let up = "INFO  [GossipStage:1] 2026-11-21 08:00:00,000 Gossiper.java:1400 - InetAddress /127.0.2.3:7000 is now UP";
    assert_eq!(
        parse_gossip_line(up),
        Some((Ipv4Addr::new(127, 0, 2, 3), true))
    );
    let down = "INFO  [GossipTasks:1] 2026-11-21 08:00:00,000 Gossiper.java:1200 - InetAddress /127.0.1.1:7000 is now DOWN\n";
    assert_eq!(
        parse_gossip_line(down),
        Some((Ipv4Addr::new(127, 0, 1, 1), false))
    );
    assert_eq!(
        parse_gossip_line("Node /127.0.1.1:7000 state jump to NORMAL"),
        None
    );
    assert_eq!(parse_gossip_line("garbage is now UP"), None);
}

#[test]
fn keyspace_statement_uses_network_topology() {
    let cql = keyspace_cql("faultline", &[("dc1", 3), ("dc2", 3)]).expect("valid");
    assert_eq!(
        cql,
        "CREATE KEYSPACE IF NOT EXISTS faultline WITH replication = \
         {'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 3}"
    );
    assert!(keyspace_cql("x; DROP", &[("dc1", 3)]).is_err());
    assert!(keyspace_cql("ks", &[]).is_err());
    assert!(keyspace_cql("ks", &[("dc1", 0)]).is_err());
    assert!(keyspace_cql("ks", &[("dc'1", 3)]).is_err());
}

#[test]
fn version_matches_the_xtask_pin() {
    let xtask = include_str!("../../../../xtask/src/deps/cassandra.rs");
    assert!(
        xtask.contains(&format!("version: \"{VERSION}\"")),
        "xtask/src/deps/cassandra.rs pins another Cassandra than components::cassandra::VERSION `{VERSION}`"
    );
}
