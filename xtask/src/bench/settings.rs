//! The command line of `cargo xtask bench`: which phases, how many rounds, how long each run.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Redis,
    Http,
    Canary,
    Cql,
    Kafka,
    Timing,
}

impl Phase {
    const ALL: [(&'static str, Phase); 6] = [
        ("redis", Phase::Redis),
        ("http", Phase::Http),
        ("canary", Phase::Canary),
        ("cql", Phase::Cql),
        ("kafka", Phase::Kafka),
        ("timing", Phase::Timing),
    ];
}

#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) rounds: usize,
    pub(super) phases: Vec<Phase>,
    pub(super) worker_threads: usize,
    pub(super) strict: bool,
    pub(super) quick: bool,
    /// redis-benchmark's `-n` per test (SET and GET each).
    pub(super) redis_requests: u64,
    pub(super) redis_secs: u64,
    pub(super) http_secs: u64,
    pub(super) canary_secs: u64,
    pub(super) stall_at: Duration,
    pub(super) stall_for: Duration,
    /// Faultline's CQL runs and latte's, each.
    pub(super) cql_secs: u64,
    /// Faultline's Kafka runs, each.
    pub(super) kafka_secs: u64,
    /// ProducerPerformance's `--num-records` (it has no duration).
    pub(super) kafka_records: u64,
}

impl Settings {
    pub(super) fn parse(args: &[String]) -> Result<Settings, String> {
        let mut s = Settings {
            rounds: 3,
            phases: Phase::ALL.iter().map(|(_, p)| *p).collect(),
            worker_threads: 0,
            strict: false,
            quick: false,
            redis_requests: 300_000,
            redis_secs: 5,
            http_secs: 10,
            canary_secs: 30,
            stall_at: Duration::from_secs(10),
            stall_for: Duration::from_secs(1),
            cql_secs: 10,
            kafka_secs: 10,
            kafka_records: 1_000_000,
        };
        let mut rounds = None;
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("`{name}` needs a value"))
            };
            match arg.as_str() {
                "--quick" => s.quick = true,
                "--strict" => s.strict = true,
                "--rounds" => {
                    let v = value("--rounds")?;
                    let n: usize = v
                        .parse()
                        .map_err(|_| format!("`--rounds {v}`: expected a whole number"))?;
                    if !(1..=20).contains(&n) {
                        return Err(format!("`--rounds {n}`: expected 1..=20"));
                    }
                    rounds = Some(n);
                }
                "--worker-threads" => {
                    let v = value("--worker-threads")?;
                    s.worker_threads = v
                        .parse()
                        .map_err(|_| format!("`--worker-threads {v}`: expected a whole number"))?;
                }
                "--only" => {
                    let v = value("--only")?;
                    let mut phases = Vec::new();
                    for name in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                        let Some((_, phase)) = Phase::ALL.iter().find(|(n, _)| *n == name) else {
                            let known: Vec<&str> = Phase::ALL.iter().map(|(n, _)| *n).collect();
                            return Err(format!(
                                "unknown phase `{name}` (expected one of {})",
                                known.join(", ")
                            ));
                        };
                        let phase = *phase;
                        if !phases.contains(&phase) {
                            phases.push(phase);
                        }
                    }
                    if phases.is_empty() {
                        return Err("`--only` names no phase".into());
                    }
                    s.phases = phases;
                }
                "-h" | "--help" => return Err(String::new()),
                other => return Err(format!("unknown argument `{other}`")),
            }
        }
        if s.quick {
            s.rounds = 1;
            s.redis_requests = 50_000;
            s.redis_secs = 2;
            s.http_secs = 3;
            s.canary_secs = 8;
            s.stall_at = Duration::from_secs(3);
            s.cql_secs = 4;
            s.kafka_secs = 4;
            s.kafka_records = 200_000;
        }
        if let Some(n) = rounds {
            s.rounds = n;
        }
        Ok(s)
    }
}
