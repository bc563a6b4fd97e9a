//! Clustered real components (Kafka, Cassandra): their per-node configuration, how a cluster of
//! them is formatted, started and known to be ready, and their admin queries (topic leaders,
//! schema). Single-process kinds (Redis, the reference services) live in `run::provision`.

pub mod cassandra;
pub mod kafka;
pub mod kafka_roles;

use std::path::PathBuf;

use crate::errors::LabError;

/// Where `cargo xtask deps` installed a Java component's jars: `components.<name>.libs` of
/// `<cache>/versions.json` (which must record `version`), else `<cache>/<name>-<version>/libs`,
/// where `<cache>` is `$FAULTLINE_CACHE` or `$HOME/.cache/faultline`. Fails, with a hint, unless
/// the directory holds `main_jar`.
pub fn installed_jars(name: &str, version: &str, main_jar: &str) -> Result<PathBuf, LabError> {
    let hint = "(hint: run `cargo xtask deps`)";
    let cache = std::env::var_os("FAULTLINE_CACHE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".cache/faultline"))
        })
        .ok_or_else(|| {
            LabError::Other(format!(
                "cannot locate {name}: neither `FAULTLINE_CACHE` nor `HOME` is set {hint}"
            ))
        })?;
    let versions = cache.join("versions.json");
    let recorded = std::fs::read_to_string(&versions)
        .ok()
        .and_then(|text| recorded_libs(&text, name));
    let libs = match recorded {
        Some((recorded, _)) if recorded != version => {
            return Err(LabError::Other(format!(
                "`{}` records {name} `{recorded}` but this harness configures `{version}` {hint}",
                versions.display()
            )));
        }
        Some((_, libs)) => libs,
        None => cache.join(format!("{name}-{version}")).join("libs"),
    };
    if !libs.join(main_jar).is_file() {
        return Err(LabError::Other(format!(
            "{name} {version} is not installed: no `{main_jar}` in `{}` {hint}",
            libs.display()
        )));
    }
    Ok(libs)
}

/// (version, libs) of `components.<name>` in a versions.json text.
pub fn recorded_libs(text: &str, name: &str) -> Option<(String, PathBuf)> {
    let json: serde_json::Value = serde_json::from_str(text).ok()?;
    let component = json.get("components")?.get(name)?;
    let version = component.get("version")?.as_str()?.to_owned();
    let libs = component.get("libs")?.as_str()?;
    Some((version, PathBuf::from(libs)))
}
