//! Installs (apt packages, oha) and release builds of the generator and the target server.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use super::child::check_stop;
use crate::Ctx;
use crate::proc::{self, human, query, run_logged};

/// The newest oha at the time of pinning. Built with the system's OpenSSL (`native-tls`) rather
/// than its default rustls + aws-lc, which compiles a C crypto library for minutes; it does not
/// build without a TLS feature. The bench itself speaks plain HTTP on loopback.
pub const OHA_VERSION: &str = "1.16.0";
pub(super) const OHA_FEATURES: &str = "native-tls";
/// Debian bookworm ships wrk 4.1.0.
pub const WRK_SERIES: &str = "4.1.0";
/// wrk and redis-benchmark, and what oha's `native-tls` builds against.
pub(super) const APT_PACKAGES: &[&str] = &["wrk", "redis-tools", "libssl-dev", "pkg-config"];
/// (package, accepted upstream version prefix)
pub(super) const APT_PINS: &[(&str, &str)] = &[
    ("wrk", WRK_SERIES),
    ("redis-tools", crate::deps::REDIS_SERIES),
];

/// (package, version) of each of `pkgs` dpkg has installed.
pub(super) fn dpkg_versions(pkgs: &[&str]) -> Vec<(String, String)> {
    let Ok(out) = Command::new("dpkg-query")
        .args(["-W", "-f=${Package}\t${Status}\t${Version}\n"])
        .args(pkgs)
        .stdin(Stdio::null())
        .output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let (pkg, status, version) = (f.next()?, f.next()?, f.next()?);
            (status == "install ok installed").then(|| (pkg.to_owned(), version.to_owned()))
        })
        .collect()
}

pub(super) fn ensure_apt(ctx: &Ctx) -> Result<Vec<(String, String)>, String> {
    let missing: Vec<&str> = {
        let have = dpkg_versions(APT_PACKAGES);
        APT_PACKAGES
            .iter()
            .copied()
            .filter(|p| !have.iter().any(|(q, _)| q == p))
            .collect()
    };
    if !missing.is_empty() {
        if query("id", &["-u"]).as_deref() != Some("0") {
            return Err(format!(
                "missing and not running as root; install with:\n  sudo apt-get install {}",
                missing.join(" ")
            ));
        }
        println!("[bench] installing {} with apt-get", missing.join(" "));
        let apt = |args: &[&str]| {
            let mut c = Command::new("apt-get");
            c.env("DEBIAN_FRONTEND", "noninteractive")
                .args(["-q", "-o", "DPkg::Lock::Timeout=300"])
                .args(args);
            c
        };
        run_logged(&mut apt(&["update"]), &ctx.log("bench-apt-get-update"))?;
        let mut install = apt(&["install", "-y", "--no-install-recommends"]);
        install.args(&missing);
        run_logged(&mut install, &ctx.log("bench-apt-get-install"))?;
    }
    let have = dpkg_versions(APT_PACKAGES);
    if let Some(pkg) = APT_PACKAGES
        .iter()
        .find(|p| !have.iter().any(|(q, _)| q == *p))
    {
        return Err(format!("{pkg} is still not installed after apt-get"));
    }
    for (pkg, series) in APT_PINS {
        let Some((_, version)) = have.iter().find(|(q, _)| q == pkg) else {
            continue;
        };
        // Debian versions: [epoch:]upstream-revision.
        let upstream = version.split_once(':').map_or(version.as_str(), |(_, v)| v);
        if !upstream.starts_with(series) {
            return Err(format!(
                "{pkg} {version} is installed; the bench is pinned to {series}x"
            ));
        }
    }
    if proc::find_on_path("redis-server").is_none() {
        return Err("redis-server is not on PATH: run `cargo xtask deps` first".into());
    }
    Ok(have)
}

/// The newest latte-cli at the time of pinning (crates.io).
pub const LATTE_VERSION: &str = "0.29.0";

/// `<tool> --version` -> its version, the last word (`oha 1.16.0`, `Cassandra Latency and
/// Throughput Tester 0.29.0`).
pub(super) fn tool_version(bin: &Path) -> Option<String> {
    query(bin, &["--version"])?
        .split_whitespace()
        .last()
        .map(str::to_owned)
}

/// A peer from crates.io, pinned: `cargo install --locked --version V <krate> <extra>` into the
/// cache (`--root`), skipped when `<cache>/bin/<bin> --version` already says V.
struct CargoTool {
    krate: &'static str,
    bin: &'static str,
    version: &'static str,
    extra: &'static [&'static str],
}

const OHA: CargoTool = CargoTool {
    krate: "oha",
    bin: "oha",
    version: OHA_VERSION,
    extra: &["--no-default-features", "--features", OHA_FEATURES],
};

const LATTE: CargoTool = CargoTool {
    krate: "latte-cli",
    bin: "latte",
    version: LATTE_VERSION,
    extra: &[],
};

pub(super) fn ensure_oha(ctx: &Ctx) -> Result<PathBuf, String> {
    ensure_cargo_tool(ctx, &OHA)
}

pub(super) fn ensure_latte(ctx: &Ctx) -> Result<PathBuf, String> {
    ensure_cargo_tool(ctx, &LATTE)
}

fn ensure_cargo_tool(ctx: &Ctx, tool: &CargoTool) -> Result<PathBuf, String> {
    let (name, version) = (tool.bin, tool.version);
    let bin = ctx.tools().join(name);
    if tool_version(&bin).as_deref() == Some(version) {
        return Ok(bin);
    }
    let started = Instant::now();
    println!(
        "[bench] {name} {version}: compiling it with `cargo install` into {} (several minutes on 2 cores)",
        ctx.cache.display()
    );
    let mut install = Command::new(&ctx.cargo);
    install
        .args(["install", tool.krate, "--locked", "--version", version])
        .args(tool.extra)
        .arg("--root")
        .arg(&ctx.cache);
    run_logged(&mut install, &ctx.log(&format!("bench-{name}-install")))?;
    match tool_version(&bin) {
        Some(v) if v == version => {
            println!(
                "[bench] {name} {version}: installed in {}",
                human(started.elapsed())
            );
            Ok(bin)
        }
        other => Err(format!(
            "after `cargo install`, {} --version reports {other:?}, not {version}",
            bin.display()
        )),
    }
}

pub(super) struct Bins {
    pub(super) loadgen: PathBuf,
    pub(super) recommendations: PathBuf,
    /// Holds the Cassandra and Kafka labs (`faultline lab up`) and runs the timing experiments.
    pub(super) faultline: PathBuf,
    pub(super) oha: PathBuf,
    /// Only when a CQL phase runs.
    pub(super) latte: Option<PathBuf>,
}

/// Release builds of loadgen, `recommendations` and `faultline`: (loadgen, recommendations,
/// faultline).
pub(super) fn build(ctx: &Ctx) -> Result<(PathBuf, PathBuf, PathBuf), String> {
    let steps: [&[&str]; 3] = [
        &[
            "build",
            "--release",
            "--example",
            "loadgen",
            "-p",
            "faultline",
        ],
        &[
            "build",
            "--release",
            "-p",
            "faultline-targets",
            "--bin",
            "recommendations",
        ],
        &[
            "build",
            "--release",
            "-p",
            "faultline",
            "--bin",
            "faultline",
        ],
    ];
    for args in steps {
        let mut c = Command::new(&ctx.cargo);
        c.current_dir(&ctx.root).args(args);
        println!("[bench] $ cargo {}", args.join(" "));
        let status = proc::run_inherited(&mut c)?;
        check_stop()?;
        if !status.success() {
            return Err(format!(
                "`cargo {}` {}",
                args.join(" "),
                proc::describe(status)
            ));
        }
    }
    let release = ctx.target_dir().join("release");
    Ok((
        release.join("examples/loadgen"),
        release.join("recommendations"),
        release.join("faultline"),
    ))
}
