//! Fast tests, no JVM and no network: configuration rendering, quorum-state reading, inputs.

use std::collections::BTreeMap;

use super::*;

fn nodes() -> Vec<KafkaNode> {
    (1..=3)
        .map(|i| KafkaNode {
            name: format!("kafka-{i}"),
            node_id: i,
            addr: Ipv4Addr::new(127, 0, 7, i as u8),
            advertised: None,
        })
        .collect()
}

fn props(text: &str) -> BTreeMap<&str, &str> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split_once('=').expect("key=value"))
        .collect()
}

#[test]
fn server_properties_describe_a_combined_kraft_node() {
    let nodes = nodes();
    let text = server_properties(
        &nodes[1],
        &nodes,
        &KafkaSettings::default(),
        Path::new("/lab/kafka-2/data"),
    );
    let p = props(&text);
    assert_eq!(p["process.roles"], "broker,controller");
    assert_eq!(p["node.id"], "2");
    assert_eq!(
        p["controller.quorum.voters"],
        "1@127.0.7.1:9093,2@127.0.7.2:9093,3@127.0.7.3:9093"
    );
    assert_eq!(
        p["listeners"],
        "PLAINTEXT://127.0.7.2:9092,REPLICATION://127.0.7.2:9094,CONTROLLER://127.0.7.2:9093"
    );
    assert_eq!(
        p["advertised.listeners"],
        "PLAINTEXT://127.0.7.2:9092,REPLICATION://127.0.7.2:9094"
    );
    assert_eq!(p["controller.listener.names"], "CONTROLLER");
    assert_eq!(p["log.dirs"], "/lab/kafka-2/data");
    assert_eq!(p["min.insync.replicas"], "2");
    assert_eq!(p["default.replication.factor"], "3");
    assert_eq!(p["unclean.leader.election.enable"], "false");
    assert_eq!(p["auto.create.topics.enable"], "false");
    assert_eq!(p["broker.session.timeout.ms"], "5000");
    assert_eq!(p["broker.heartbeat.interval.ms"], "1000");
    // Every key once: a duplicate would silently override the earlier value.
    let keys = text.lines().filter(|l| l.contains('=')).count();
    assert_eq!(keys, p.len(), "duplicate keys in:\n{text}");
}

#[test]
fn server_properties_follow_settings_and_advertised_proxies() {
    let mut nodes = nodes();
    nodes.truncate(2);
    nodes[0].advertised = Some("127.0.250.4:9092".parse().expect("addr"));
    let settings = KafkaSettings {
        min_insync_replicas: 1,
        unclean_leader_election: true,
        num_partitions: 6,
        broker_session_timeout: Duration::from_millis(2500),
        ..KafkaSettings::default()
    };
    let text = server_properties(&nodes[0], &nodes, &settings, Path::new("/d"));
    let p = props(&text);
    assert_eq!(
        p["advertised.listeners"],
        "PLAINTEXT://127.0.250.4:9092,REPLICATION://127.0.7.1:9094"
    );
    assert_eq!(
        p["listeners"],
        "PLAINTEXT://127.0.7.1:9092,REPLICATION://127.0.7.1:9094,CONTROLLER://127.0.7.1:9093"
    );
    assert_eq!(p["inter.broker.listener.name"], "REPLICATION");
    assert_eq!(p["unclean.leader.election.enable"], "true");
    assert_eq!(p["num.partitions"], "6");
    assert_eq!(p["default.replication.factor"], "2");
    assert_eq!(p["offsets.topic.replication.factor"], "2");
    assert_eq!(p["broker.session.timeout.ms"], "2500");
    assert_eq!(p["broker.heartbeat.interval.ms"], "500");
}

#[test]
fn bad_clusters_are_refused_before_anything_is_written() {
    let settings = KafkaSettings::default();
    assert!(check_nodes(&[], &settings).is_err());
    let mut dup = nodes();
    dup[2].node_id = 1;
    assert!(check_nodes(&dup, &settings).is_err());
    let mut bad_name = nodes();
    bad_name[0].name = "../escape".into();
    assert!(check_nodes(&bad_name, &settings).is_err());
    let too_strict = KafkaSettings {
        min_insync_replicas: 4,
        ..KafkaSettings::default()
    };
    assert!(check_nodes(&nodes(), &too_strict).is_err());
    assert!(check_nodes(&nodes(), &settings).is_ok());
}

#[test]
fn ready_line_names_the_node() {
    assert_eq!(
        ready_line(3),
        "[KafkaRaftServer nodeId=3] Kafka Server started"
    );
}

#[test]
fn quorum_state_files_of_both_formats_parse() {
    // data_version 1 (Kafka 3.9, KIP-853) and 0 (earlier 3.x).
    let v1 = r#"{"leaderId":2,"leaderEpoch":7,"votedId":-1,"votedDirectoryId":"AAAAAAAAAAAAAAAAAAAAAA","data_version":1}"#;
    let v0 = r#"{"clusterId":"","leaderId":1,"leaderEpoch":3,"votedId":-1,"appliedOffset":0,"currentVoters":[{"voterId":1},{"voterId":2}],"data_version":0}"#;
    let electing = r#"{"leaderId":-1,"leaderEpoch":8,"votedId":3,"data_version":1}"#;
    assert_eq!(parse_quorum_state(v1), Some((7, Some(2))));
    assert_eq!(parse_quorum_state(v0), Some((3, Some(1))));
    assert_eq!(parse_quorum_state(electing), Some((8, None)));
    assert_eq!(parse_quorum_state("not json"), None);
    assert_eq!(parse_quorum_state(r#"{"leaderId":1}"#), None);
}

#[test]
fn active_controller_is_the_leader_of_the_newest_epoch() {
    let root = std::env::temp_dir().join(format!("faultline-kafka-qs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let write = |node: &str, json: &str| {
        let dir = data_dir(&root.join(node)).join("__cluster_metadata-0");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("quorum-state"), json).expect("write");
    };
    let dirs: Vec<PathBuf> = ["a", "b", "c", "missing"]
        .iter()
        .map(|n| root.join(n))
        .collect();
    // `a` was the leader at epoch 4 and died; `b` and `c` elected `c` at epoch 5.
    write(
        "a",
        r#"{"leaderId":1,"leaderEpoch":4,"votedId":-1,"data_version":1}"#,
    );
    write(
        "b",
        r#"{"leaderId":-1,"leaderEpoch":5,"votedId":3,"data_version":1}"#,
    );
    assert_eq!(active_controller(&dirs), None, "epoch 5 has no leader yet");
    write(
        "c",
        r#"{"leaderId":3,"leaderEpoch":5,"votedId":3,"data_version":1}"#,
    );
    assert_eq!(active_controller(&dirs), Some(3));
    assert_eq!(active_controller(&dirs[..1]), Some(1));
    assert_eq!(active_controller::<PathBuf>(&[]), None);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn cluster_ids_look_like_kafkas() {
    // Kafka's Uuid.toString of 16 zero bytes / of 0xfb..: base64url without padding.
    assert_eq!(base64url(&[0; 16]), "AAAAAAAAAAAAAAAAAAAAAA");
    // 0xfbfbfb = 111110 111111 101111 111011 = 62, 63, 47, 59.
    assert_eq!(base64url(&[0xfb; 3]), "-_v7");
    assert_eq!(base64url(b"Ma"), "TWE");
    let id = new_cluster_id().expect("urandom");
    assert_eq!(id.len(), 22);
    assert!(!id.starts_with('-'));
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
}

#[test]
fn versions_json_names_the_libs() {
    let json = r#"{"generated_by": "cargo xtask deps", "cache": "/c", "components": {
        "redis": {"version": "7.0.15"},
        "kafka": {"version": "3.9.2", "libs": "/c/kafka-3.9.2/libs", "source": "maven x"}}}"#;
    assert_eq!(
        crate::components::recorded_libs(json, "kafka"),
        Some(("3.9.2".into(), PathBuf::from("/c/kafka-3.9.2/libs")))
    );
    assert_eq!(
        crate::components::recorded_libs(r#"{"components": {}}"#, "kafka"),
        None
    );
    assert_eq!(crate::components::recorded_libs("{", "kafka"), None);
}

#[test]
fn jvm_options_pin_the_heap() {
    let opts = jvm_options(256);
    assert_eq!(&opts[..2], ["-Xms256m", "-Xmx256m"]);
    assert!(opts.iter().any(|o| o == "-XX:+ExitOnOutOfMemoryError"));
}
