//! Fast tests, no broker: error mapping, keys and values, settings, partition tags.

use super::read_back::parse_key;
use super::*;

#[test]
fn delivery_errors_map_to_outcome_kinds() {
    use RDKafkaErrorCode as C;
    let cases = [
        (C::MessageTimedOut, ErrorKind::Timeout),
        (C::RequestTimedOut, ErrorKind::Timeout),
        (C::NotEnoughReplicasAfterAppend, ErrorKind::Timeout),
        (C::AllBrokersDown, ErrorKind::Connect),
        (C::BrokerTransportFailure, ErrorKind::Io),
        (C::NetworkException, ErrorKind::Io),
        (C::InvalidMessage, ErrorKind::Protocol),
        (C::NotEnoughReplicas, ErrorKind::Server(ServerError::Other)),
        (
            C::NotLeaderForPartition,
            ErrorKind::Server(ServerError::Other),
        ),
        (
            C::MessageSizeTooLarge,
            ErrorKind::Server(ServerError::Other),
        ),
        (C::QueueFull, ErrorKind::Other),
        (C::Fatal, ErrorKind::Other),
    ];
    for (code, expected) in cases {
        assert_eq!(classify_code(code), expected, "{code:?}");
        assert_eq!(
            classify(&KafkaError::MessageProduction(code)),
            expected,
            "{code:?} as a delivery error"
        );
    }
    assert_eq!(
        classify(&KafkaError::ClientCreation("x".into())),
        ErrorKind::Other
    );
}

#[test]
fn keys_parse_only_as_canonical_op_indices() {
    assert_eq!(parse_key(b"0"), Some(0));
    assert_eq!(parse_key(b"1999"), Some(1999));
    assert_eq!(parse_key(u64::MAX.to_string().as_bytes()), Some(u64::MAX));
    for bad in [
        &b""[..],
        b"07",
        b"+7",
        b"-7",
        b"7 ",
        b"x",
        b"18446744073709551616",
        b"\xff",
    ] {
        assert_eq!(parse_key(bad), None, "{:?}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn values_start_with_the_key_and_are_padded_never_cut() {
    assert_eq!(payload("42", 6), b"42xxxx");
    assert_eq!(payload("123456", 3), b"123456");
    assert_eq!(payload("0", 0), b"0");
    let key = 2_000_u64.to_string();
    assert_eq!(parse_key(&payload(&key, 100)[..key.len()]), Some(2_000));
}

#[test]
fn producer_settings_are_checked() {
    assert_eq!(ProducerSettings::default().validate(), Ok(()));
    let with = |f: fn(&mut ProducerSettings)| {
        let mut s = ProducerSettings::default();
        f(&mut s);
        s.validate()
    };
    assert!(with(|s| s.acks = "2".into()).is_err());
    assert!(
        with(|s| s.acks = "1".into()).is_err(),
        "idempotence needs acks=all"
    );
    assert!(
        with(|s| {
            s.acks = "1".into();
            s.enable_idempotence = false;
        })
        .is_ok()
    );
    assert!(with(|s| s.retry_backoff = Duration::ZERO).is_err());
    assert!(with(|s| s.retry_backoff_max = Duration::from_millis(50)).is_err());
    assert!(with(|s| s.delivery_timeout = Duration::ZERO).is_err());
    assert!(
        with(|s| s.linger = Duration::from_secs(40)).is_err(),
        "linger >= delivery timeout"
    );
    assert!(with(|s| s.value_size = usize::MAX).is_err());
    assert!(with(|s| s.retries = u32::MAX).is_err());
}

#[test]
fn producer_config_uses_librdkafka_names() {
    let settings = ProducerSettings {
        linger: Duration::from_micros(500),
        delivery_timeout: Duration::from_secs(60),
        ..ProducerSettings::default()
    };
    let config: BTreeMap<&str, String> = producer_config("127.0.1.1:9092", &settings, 64)
        .into_iter()
        .collect();
    assert_eq!(config["bootstrap.servers"], "127.0.1.1:9092");
    assert_eq!(config["acks"], "all");
    assert_eq!(config["enable.idempotence"], "true");
    assert_eq!(config["linger.ms"], "0.5");
    assert!(
        !config.contains_key("batch.size"),
        "librdkafka's default unless set"
    );
    let batched = ProducerSettings {
        batch_size: Some(65_536),
        ..ProducerSettings::default()
    };
    let batched: BTreeMap<&str, String> = producer_config("127.0.1.1:9092", &batched, 64)
        .into_iter()
        .collect();
    assert_eq!(batched["batch.size"], "65536");
    assert_eq!(config["delivery.timeout.ms"], "60000");
    assert!(
        !config.contains_key("request.timeout.ms"),
        "librdkafka's 30 s stays"
    );
    assert_eq!(config["retry.backoff.ms"], "100");
    assert_eq!(config["retry.backoff.max.ms"], "1000");
    assert_eq!(config["queue.buffering.max.messages"], "100000");
}

#[test]
fn partitions_are_tagged_in_order() {
    let tags = TagTable::new();
    let before = tags.intern(b"other");
    let indices = intern_partitions(&tags, 3);
    assert_eq!(before, 1);
    assert_eq!(indices, [2, 3, 4]);
    assert_eq!(tags.names(), ["", "other", "p0", "p1", "p2"]);
    // Interning again (a second executor on the same table) finds the same tags.
    assert_eq!(intern_partitions(&tags, 2), [2, 3]);
}

#[test]
fn keyed_ops_take_turns_of_about_ten_ms_per_partition() {
    // (rate, ops per turn)
    for (rate, turn) in [(50.0, 1), (300.0, 3), (1_000.0, 10), (400_000.0, 4_000)] {
        assert_eq!(turn_ops(rate), turn, "{rate}/s");
    }
    let settings = ProducerSettings::default();
    let mut exec = KafkaExec::new(
        "127.0.0.1:1".into(),
        "t".into(),
        settings,
        3,
        10,
        Duration::from_secs(1),
        &TagTable::new(),
    )
    .expect("a producer builds without a broker");
    exec.turn_ops = turn_ops(300.0);
    let partitions: Vec<i32> = (0..10).map(|n| exec.partition_of(n)).collect();
    assert_eq!(partitions, [0, 0, 0, 1, 1, 1, 2, 2, 2, 0]);
}
