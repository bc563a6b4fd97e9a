//! Java components from Maven Central: one artifact and its runtime dependencies copied into
//! `<cache>/<name>-<version>/libs/`, checked against a stamp so a second run does nothing.
//!
//! Maven resolves the dependency tree (that is what it is for); we only write a throwaway pom
//! naming the pinned coordinates and ask `dependency:copy-dependencies` for the jars.
//!
//! invariant: the libs directory is complete or absent: jars are copied into a temporary
//! directory that is renamed into place only after Maven succeeded, and the stamp (coordinates
//! plus the sha256 of every jar) is written last.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Ctx;
use crate::proc::{io_err, query, run_logged};

/// A pinned Java component.
pub struct Artifact {
    /// Directory and versions.json name, e.g. `kafka`.
    pub name: &'static str,
    pub version: &'static str,
    /// `group:artifact:version` of every root artifact; their runtime dependencies come along.
    pub coordinates: &'static [&'static str],
}

impl Artifact {
    pub fn home(&self, ctx: &Ctx) -> PathBuf {
        ctx.cache.join(format!("{}-{}", self.name, self.version))
    }

    pub fn libs(&self, ctx: &Ctx) -> PathBuf {
        self.home(ctx).join("libs")
    }

    fn stamp_header(&self) -> String {
        format!(
            "{} {}\n{}\n",
            self.name,
            self.version,
            self.coordinates.join("\n")
        )
    }
}

/// Fetches `artifact` unless its stamp matches; returns (jar count, whether it was fetched now).
pub fn fetch(ctx: &Ctx, artifact: &Artifact) -> Result<(usize, bool), String> {
    let home = artifact.home(ctx);
    let libs = artifact.libs(ctx);
    let stamp = home.join("stamp");
    if let Ok(text) = std::fs::read_to_string(&stamp)
        && libs.is_dir()
        && text == stamp_text(artifact, &libs)?
    {
        return Ok((jars(&libs)?.len(), false));
    }
    let mvn = crate::proc::find_on_path("mvn").ok_or(
        "`mvn` is not on PATH: Maven 3 is needed to fetch Java components from Maven Central",
    )?;
    std::fs::create_dir_all(&home).map_err(|e| io_err("create", &home, e))?;
    let pom = home.join("pom.xml");
    std::fs::write(&pom, pom_xml(artifact)).map_err(|e| io_err("write", &pom, e))?;
    let tmp = home.join(".libs.tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    let mut cmd = Command::new(mvn);
    cmd.current_dir(&home).args([
        "-B",
        "-q",
        "-f",
        "pom.xml",
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
    ]);
    cmd.arg(format!("-DoutputDirectory={}", tmp.display()));
    run_logged(&mut cmd, &ctx.log(&format!("{}-maven", artifact.name)))?;
    let _ = std::fs::remove_dir_all(&libs);
    std::fs::rename(&tmp, &libs).map_err(|e| io_err("move into place", &libs, e))?;
    let text = stamp_text(artifact, &libs)?;
    std::fs::write(&stamp, text).map_err(|e| io_err("write", &stamp, e))?;
    Ok((jars(&libs)?.len(), true))
}

/// The stamp: the coordinates, then `sha256 name` per jar in name order.
fn stamp_text(artifact: &Artifact, libs: &Path) -> Result<String, String> {
    let mut text = artifact.stamp_header();
    for jar in jars(libs)? {
        let sum = query("sha256sum", &[&jar])
            .and_then(|out| out.split_whitespace().next().map(str::to_owned))
            .ok_or_else(|| format!("`sha256sum {}` failed", jar.display()))?;
        let name = jar.file_name().unwrap_or_default().to_string_lossy();
        let _ = writeln!(text, "{sum} {name}");
    }
    Ok(text)
}

fn jars(libs: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(libs).map_err(|e| io_err("list", libs, e))?;
    let mut jars: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jar"))
        .collect();
    jars.sort();
    Ok(jars)
}

fn pom_xml(artifact: &Artifact) -> String {
    let mut deps = String::new();
    for coordinate in artifact.coordinates {
        let mut parts = coordinate.split(':');
        let (g, a, v) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        let _ = write!(
            deps,
            "\n    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version></dependency>"
        );
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- written by `cargo xtask deps`: the pinned {name} {version} and its runtime dependencies -->\n\
         <project xmlns=\"http://maven.apache.org/POM/4.0.0\">\n  <modelVersion>4.0.0</modelVersion>\n  \
         <groupId>faultline.deps</groupId><artifactId>{name}</artifactId><version>{version}</version>\n  \
         <packaging>pom</packaging>\n  <dependencies>{deps}\n  </dependencies>\n</project>\n",
        name = artifact.name,
        version = artifact.version,
    )
}
