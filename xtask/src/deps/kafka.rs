//! Apache Kafka 3.9.x (KRaft) from Maven Central: the broker (`kafka_2.13`), the tools
//! (`kafka-tools`, for `ProducerPerformance`) and a logging binding, all jars in one `libs/`
//! directory that the harness puts on each node's class path (it writes every config itself).
//!
//! Pinned to the newest 3.9 patch on Maven Central at the time of pinning: 3.9 is the last line
//! that runs KRaft with a static `controller.quorum.voters` list exactly as 3.x clusters in the
//! field do, and it runs on the JDK 17 the lab already has. 4.x brings nothing the experiments
//! need yet.
//!
//! Logging: the broker logs through slf4j 1.7; `kafka_2.13` declares only `slf4j-api`, so without
//! a binding it would log nothing. `slf4j-reload4j` (what Kafka's own distribution ships in
//! `libs/`) routes it to reload4j, which the harness points at the console, hence the node log.

use super::maven;
use super::{Outcome, Record};
use crate::Ctx;

pub const KAFKA_VERSION: &str = "3.9.2";

pub const KAFKA: maven::Artifact = maven::Artifact {
    name: "kafka",
    version: KAFKA_VERSION,
    coordinates: &[
        "org.apache.kafka:kafka_2.13:3.9.2",
        "org.apache.kafka:kafka-tools:3.9.2",
        // The versions Kafka 3.9 itself builds against and ships (its slf4j-api is 1.7.36).
        // reload4j is named too: slf4j-reload4j alone would win Maven's nearest-first mediation
        // with its own older reload4j 1.2.19.
        "org.slf4j:slf4j-reload4j:1.7.36",
        "ch.qos.reload4j:reload4j:1.2.25",
    ],
};

/// Jars whose absence means the install is unusable, however the stamp looks: the broker (and
/// `kafka.tools.StorageTool`), `ProducerPerformance`, and the logging binding.
fn required_jars() -> [String; 4] {
    [
        format!("kafka_2.13-{KAFKA_VERSION}.jar"),
        format!("kafka-tools-{KAFKA_VERSION}.jar"),
        "slf4j-reload4j-1.7.36.jar".to_owned(),
        "reload4j-1.2.25.jar".to_owned(),
    ]
}

pub fn step(ctx: &Ctx, record: &mut Record) -> Result<Outcome, String> {
    let (jars, fetched) = maven::fetch(ctx, &KAFKA)?;
    let libs = KAFKA.libs(ctx);
    if let Some(missing) = required_jars()
        .into_iter()
        .find(|jar| !libs.join(jar).is_file())
    {
        return Err(format!(
            "Maven finished but `{}` is missing (hint: see {})",
            libs.join(missing).display(),
            ctx.log("kafka-maven").display()
        ));
    }
    record.add(
        "kafka",
        &[
            ("version", KAFKA_VERSION.to_owned()),
            ("libs", libs.display().to_string()),
            ("source", format!("maven {}", KAFKA.coordinates.join(" "))),
        ],
    );
    let what = format!("{KAFKA_VERSION} ({jars} jars in {})", libs.display());
    Ok(if fetched {
        Outcome::Installed(what)
    } else {
        Outcome::AlreadyInstalled(what)
    })
}
