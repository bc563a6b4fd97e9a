//! Apache Cassandra 5.0.x from Maven Central: `cassandra-all` and its runtime dependencies, the
//! jars the lab puts on each node's class path (the harness generates every config file itself).
//!
//! Pinned to the newest 5.0.x on Maven Central at the time of pinning. `cassandra-all` declares
//! logback (classic and core) as runtime dependencies, so no logging binding is added; the jamm
//! agent jar the harness passes as `-javaagent` comes along the same way.

use super::maven;
use super::{Outcome, Record};
use crate::Ctx;

pub const CASSANDRA: maven::Artifact = maven::Artifact {
    name: "cassandra",
    version: "5.0.9",
    coordinates: &["org.apache.cassandra:cassandra-all:5.0.9"],
};

/// Cassandra 5.0 runs on JDK 11 or 17; the harness passes the JDK 17 module options.
const JAVA_MAJOR: u32 = 17;

pub fn step(ctx: &Ctx, record: &mut Record) -> Result<Outcome, String> {
    let java = java_major()?;
    if java != JAVA_MAJOR {
        return Err(format!(
            "Cassandra {} is run with JDK {JAVA_MAJOR} options, but `java` on PATH is version `{java}` \
             (hint: install openjdk-17-jre-headless and put it first on PATH)",
            CASSANDRA.version
        ));
    }
    let (jars, fetched) = maven::fetch(ctx, &CASSANDRA)?;
    let libs = CASSANDRA.libs(ctx);
    // The main class must be there: a stamp over an empty or foreign directory is no install.
    let main_jar = libs.join(format!("cassandra-all-{}.jar", CASSANDRA.version));
    if !main_jar.is_file() {
        return Err(format!(
            "Maven finished but `{}` is missing (hint: see {})",
            main_jar.display(),
            ctx.log("cassandra-maven").display()
        ));
    }
    record.add(
        "cassandra",
        &[
            ("version", CASSANDRA.version.to_owned()),
            ("libs", libs.display().to_string()),
            ("java", java.to_string()),
            (
                "source",
                format!("maven {}", CASSANDRA.coordinates.join(" ")),
            ),
        ],
    );
    let what = format!("{} ({jars} jars in {})", CASSANDRA.version, libs.display());
    Ok(if fetched {
        Outcome::Installed(what)
    } else {
        Outcome::AlreadyInstalled(what)
    })
}

/// The major version of `java` on PATH, from the `java.specification.version` property (`17`;
/// `1.8` for Java 8, which reads as 1 and is refused like any other mismatch).
fn java_major() -> Result<u32, String> {
    // Both `-version` and `-XshowSettings` write to stderr.
    let out = std::process::Command::new("java")
        .args(["-XshowSettings:properties", "-version"])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `java`: {e} (hint: install openjdk-17-jre-headless)"))?;
    let text = String::from_utf8_lossy(&out.stderr);
    let spec = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("java.specification.version = "))
        .ok_or_else(|| {
            format!("`java -XshowSettings:properties -version` printed no `java.specification.version`: {}", text.trim())
        })?;
    spec.split('.')
        .next()
        .and_then(|m| m.trim().parse().ok())
        .ok_or_else(|| format!("could not read a Java version from `{spec}`"))
}
