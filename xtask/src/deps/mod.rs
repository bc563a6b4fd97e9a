//! `cargo xtask deps`: installs the lab's real components, pinned, cached and idempotent.
//!
//! | step | what | from | idempotence |
//! |---|---|---|---|
//! | 1 | redis-server, redis-sentinel, redis-tools, nftables, iproute2 | Debian (apt-get) | dpkg status |
//! | 2 | toxiproxy-server | Go module proxy (`go install`) | stamp file beside the binary |
//! | 3 | cargo-nextest | crates.io (`cargo install --locked`) | `cargo nextest --version` |
//! | 4 | cassandra 5.0.9 (`cassandra-all` + runtime jars) | Maven Central (`mvn`) | stamp: coordinates + sha256 per jar |
//! | 5 | kafka 3.9.2 (`kafka_2.13`, `kafka-tools`, `slf4j-reload4j` + runtime jars) | Maven Central (`mvn`) | stamp: coordinates + sha256 per jar |
//! | 6 | `libfaultline_bind.so` (source-address shim for JVM nodes) | `harness/shim/bind_source.c`, built with `cc` | stamp: sha256 of the source |
//!
//! Java components (Kafka, Cassandra) come from Maven Central through `maven::fetch`: their jars
//! under `<cache>/<name>-<version>/libs/`, their versions in `versions.json`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

mod bind_shim;
mod cassandra;
mod kafka;
mod maven;

use crate::Ctx;
use crate::proc::{self, human, io_err, query, run_logged};

pub const DEBIAN_PACKAGES: &[&str] = &[
    "redis-server",
    "redis-sentinel",
    "redis-tools",
    "nftables",
    "iproute2",
];
/// Accepted Redis series (Debian bookworm ships 7.0.15).
pub use kafka::{KAFKA, KAFKA_VERSION};

pub const REDIS_SERIES: &str = "7.0.";
pub const TOXIPROXY_VERSION: &str = "2.12.0";
pub const TOXIPROXY_MODULE: &str = "github.com/Shopify/toxiproxy/v2";
/// The newest cargo-nextest at the time of pinning; it needs rustc >= NEXTEST_MIN_RUST.
pub const NEXTEST_VERSION: &str = "0.9.151";
pub const NEXTEST_MIN_RUST: (u32, u32) = (1, 91);

const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

/// What one step found or installed, for versions.json: (key, value) pairs per component.
#[derive(Default)]
pub struct Record {
    components: Vec<(String, Vec<(String, String)>)>,
}

impl Record {
    fn add(&mut self, component: &str, fields: &[(&str, String)]) {
        let fields = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        self.components.push((component.to_owned(), fields));
    }

    fn to_json(&self, cache: &Path) -> String {
        let mut s = String::from("{\n");
        let _ = writeln!(s, "  \"generated_by\": \"cargo xtask deps\",");
        let _ = writeln!(s, "  \"cache\": {},", json_str(&cache.to_string_lossy()));
        s.push_str("  \"components\": {");
        for (i, (name, fields)) in self.components.iter().enumerate() {
            s.push_str(if i == 0 { "\n" } else { ",\n" });
            let _ = write!(s, "    {}: {{", json_str(name));
            for (j, (k, v)) in fields.iter().enumerate() {
                let _ = write!(
                    s,
                    "{}{}: {}",
                    if j == 0 { "" } else { ", " },
                    json_str(k),
                    json_str(v)
                );
            }
            s.push('}');
        }
        s.push_str("\n  }\n}\n");
        s
    }
}

/// A JSON string literal (the escaping lives with the bench's small JSON writer).
fn json_str(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    crate::bench::json::write_str(&mut s, v);
    s
}

enum Outcome {
    AlreadyInstalled(String),
    Installed(String),
}

type Step = fn(&Ctx, &mut Record) -> Result<Outcome, String>;

const STEPS: &[(&str, Step)] = &[
    ("debian packages", debian_packages),
    ("toxiproxy-server", toxiproxy),
    ("cargo-nextest", nextest),
    ("cassandra", cassandra::step),
    ("kafka", kafka::step),
    ("bind shim", bind_shim::step),
];

/// Runs every step in order; stops at the first failure with a message naming the step.
pub fn run(ctx: &Ctx) -> Result<(), String> {
    let mut record = Record::default();
    let n = STEPS.len();
    for (i, (name, step)) in STEPS.iter().enumerate() {
        let started = Instant::now();
        let tag = format!("[deps {}/{n}] {name}", i + 1);
        match step(ctx, &mut record) {
            Ok(Outcome::AlreadyInstalled(what)) => {
                println!(
                    "{tag}: already installed, {what} ({})",
                    human(started.elapsed())
                )
            }
            Ok(Outcome::Installed(what)) => {
                println!("{tag}: installed {what} in {}", human(started.elapsed()))
            }
            Err(e) => return Err(format!("step {}/{n} ({name}) failed: {e}", i + 1)),
        }
    }
    let path = ctx.cache.join("versions.json");
    let json = record.to_json(&ctx.cache);
    if std::fs::read_to_string(&path).ok().as_deref() != Some(json.as_str()) {
        std::fs::create_dir_all(&ctx.cache).map_err(|e| io_err("create", &ctx.cache, e))?;
        std::fs::write(&path, json).map_err(|e| io_err("write", &path, e))?;
    }
    println!("[deps] versions recorded in {}", path.display());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 1. Debian packages

/// (package, installed version) for each of `pkgs` that dpkg knows as installed.
fn dpkg_installed(pkgs: &[&str]) -> Option<Vec<(String, String)>> {
    // dpkg-query exits 1 when some package is unknown but still prints the others.
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Package}\t${Status}\t${Version}\n"])
        .args(pkgs)
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Some(
        text.lines()
            .filter_map(|l| {
                let mut f = l.split('\t');
                let (pkg, status, version) = (f.next()?, f.next()?, f.next()?);
                (status == "install ok installed").then(|| (pkg.to_owned(), version.to_owned()))
            })
            .collect(),
    )
}

fn debian_packages(ctx: &Ctx, record: &mut Record) -> Result<Outcome, String> {
    let Some(installed) = dpkg_installed(DEBIAN_PACKAGES) else {
        return Err(format!(
            "dpkg-query is not available: this step installs Debian packages; on another system install \
             Redis {REDIS_SERIES}x (server, sentinel, cli), nftables and iproute2 yourself"
        ));
    };
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|p| !installed.iter().any(|(q, _)| q == p))
        .collect();
    let did_install = !missing.is_empty();
    if did_install {
        println!(
            "[deps 1/{}] debian packages: installing {} with apt-get",
            STEPS.len(),
            missing.join(" ")
        );
        apt_install(ctx, &missing)?;
    }
    let installed = dpkg_installed(DEBIAN_PACKAGES).unwrap_or_default();
    if let Some(p) = DEBIAN_PACKAGES
        .iter()
        .find(|p| !installed.iter().any(|(q, _)| q == *p))
    {
        return Err(format!(
            "apt-get reported success but {p} is still not installed"
        ));
    }

    let redis = redis_version()?;
    let mut summary = format!("redis {redis}");
    for (pkg, version) in &installed {
        record.add(
            pkg,
            &[("package", version.clone()), ("source", "debian".into())],
        );
        if pkg == "nftables" || pkg == "iproute2" {
            let _ = write!(summary, ", {pkg} {version}");
        }
    }
    let path = proc::find_on_path("redis-server")
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    record.add("redis", &[("version", redis), ("path", path)]);
    Ok(if did_install {
        Outcome::Installed(format!("{} ({summary})", missing.join(" ")))
    } else {
        Outcome::AlreadyInstalled(summary)
    })
}

/// `redis-server --version` must report the pinned series.
fn redis_version() -> Result<String, String> {
    let out = query("redis-server", &["--version"])
        .ok_or("`redis-server --version` failed: is redis-server on PATH?")?;
    // "Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=..."
    let version = out
        .split_whitespace()
        .find_map(|w| w.strip_prefix("v="))
        .ok_or_else(|| format!("could not read a version from `redis-server --version`: {out}"))?;
    if !version.starts_with(REDIS_SERIES) {
        return Err(format!(
            "Redis {REDIS_SERIES}x is required (the experiments' assertions are taken from its documentation), \
             but redis-server on PATH is {version}"
        ));
    }
    Ok(version.to_owned())
}

fn apt_install(ctx: &Ctx, missing: &[&str]) -> Result<(), String> {
    if query("id", &["-u"]).as_deref() != Some("0") {
        return Err(format!(
            "packages missing and not running as root; install them with:\n  sudo apt-get install {}",
            missing.join(" ")
        ));
    }
    let _policy = PolicyRcD::install()?;
    let apt = |args: &[&str]| {
        let mut c = Command::new("apt-get");
        c.env("DEBIAN_FRONTEND", "noninteractive")
            .args(["-q", "-o", "DPkg::Lock::Timeout=300"])
            .args(args);
        c
    };
    run_logged(&mut apt(&["update"]), &ctx.log("apt-get-update"))?;
    let mut install = apt(&[
        "install",
        "-y",
        "--no-install-recommends",
        "-o",
        "Dpkg::Options::=--force-confdef",
        "-o",
        "Dpkg::Options::=--force-confold",
    ]);
    install.args(missing);
    run_logged(&mut install, &ctx.log("apt-get-install"))?;
    Ok(())
}

/// While it lives, `/usr/sbin/policy-rc.d` exits 101 so that package scripts start no service
/// (Debian's redis-server would otherwise start a system redis on 127.0.0.1:6379). Left alone if
/// the machine already has one; removed on drop if it is ours.
struct PolicyRcD {
    ours: bool,
}

impl PolicyRcD {
    fn install() -> Result<Self, String> {
        let path = Path::new(POLICY_RC_D);
        if path.symlink_metadata().is_ok() {
            return Ok(PolicyRcD { ours: false });
        }
        let body = "#!/bin/sh\n# written by `cargo xtask deps` for the length of an install: start no services\nexit 101\n";
        std::fs::write(path, body).map_err(|e| io_err("write", path, e))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| io_err("make executable", path, e))?;
        Ok(PolicyRcD { ours: true })
    }
}

impl Drop for PolicyRcD {
    fn drop(&mut self) {
        if self.ours
            && let Err(e) = std::fs::remove_file(POLICY_RC_D)
        {
            eprintln!("xtask: warning: could not remove {POLICY_RC_D}: {e}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Toxiproxy

pub(crate) fn sha256(path: &Path) -> Result<String, String> {
    let out = query("sha256sum", &[path])
        .ok_or_else(|| format!("`sha256sum {}` failed", path.display()))?;
    out.split_whitespace()
        .next()
        .map(str::to_owned)
        .ok_or_else(|| format!("sha256sum printed nothing for {}", path.display()))
}

fn toxiproxy(ctx: &Ctx, record: &mut Record) -> Result<Outcome, String> {
    let bin_dir = ctx.tools();
    let bin = bin_dir.join("toxiproxy-server");
    let stamp = bin_dir.join("toxiproxy-server.version");
    let label = format!("toxiproxy-server {TOXIPROXY_VERSION}");
    let done = format!("{TOXIPROXY_VERSION} at {}", bin.display());
    let source = format!("{TOXIPROXY_MODULE}/cmd/server@v{TOXIPROXY_VERSION}");

    // The stamp holds the pinned version and the checksum of the binary it was written for.
    if let Ok(text) = std::fs::read_to_string(&stamp) {
        let mut lines = text.lines();
        if lines.next() == Some(TOXIPROXY_VERSION) && bin.is_file() {
            let want = lines.next().and_then(|l| l.strip_prefix("sha256 "));
            let have = sha256(&bin)?;
            if want == Some(have.as_str()) {
                record.add("toxiproxy-server", &toxi_fields(&bin, &have, &source));
                return Ok(Outcome::AlreadyInstalled(done));
            }
        }
    }

    let go = proc::find_on_path("go")
        .or_else(|| Some(PathBuf::from("/usr/local/go/bin/go")).filter(|p| p.is_file()))
        .ok_or("`go` is not on PATH (nor in /usr/local/go/bin): Go >= 1.23 is needed to build Toxiproxy")?;
    println!(
        "[deps 2/{}] {label}: building with `go install` (about a minute the first time)",
        STEPS.len()
    );
    let gobin = ctx.cache.join("gobin");
    let mut install = Command::new(&go);
    install
        .env("GOBIN", &gobin)
        .arg("install")
        .arg("-trimpath")
        .arg(format!(
            "-ldflags=-X {TOXIPROXY_MODULE}.Version={TOXIPROXY_VERSION}"
        ))
        .arg(&source);
    run_logged(&mut install, &ctx.log("toxiproxy-go-install"))?;

    std::fs::create_dir_all(&bin_dir).map_err(|e| io_err("create", &bin_dir, e))?;
    let tmp = bin_dir.join(".toxiproxy-server.tmp");
    let built = gobin.join("server");
    std::fs::copy(&built, &tmp).map_err(|e| io_err("copy", &built, e))?;
    std::fs::rename(&tmp, &bin).map_err(|e| io_err("move into place", &bin, e))?;

    let reported = query(&bin, &["-version"]).unwrap_or_default();
    if !reported.ends_with(&format!("version {TOXIPROXY_VERSION}")) {
        return Err(format!(
            "{} -version reported {reported:?}, expected version {TOXIPROXY_VERSION}",
            bin.display()
        ));
    }
    let sum = sha256(&bin)?;
    std::fs::write(&stamp, format!("{TOXIPROXY_VERSION}\nsha256 {sum}\n"))
        .map_err(|e| io_err("write", &stamp, e))?;
    record.add("toxiproxy-server", &toxi_fields(&bin, &sum, &source));
    Ok(Outcome::Installed(done))
}

fn toxi_fields(bin: &Path, sha: &str, source: &str) -> [(&'static str, String); 4] {
    [
        ("version", TOXIPROXY_VERSION.to_owned()),
        ("path", bin.display().to_string()),
        ("sha256", sha.to_owned()),
        ("source", format!("go install {source}")),
    ]
}

// ---------------------------------------------------------------------------------------------
// 3. cargo-nextest

/// The version `cargo nextest --version` reports, if it runs.
fn nextest_version(ctx: &Ctx) -> Option<String> {
    // "cargo-nextest 0.9.151 (<hash> <date>)"
    let out = query(&ctx.cargo, &["nextest", "--version"])?;
    out.split_whitespace().nth(1).map(str::to_owned)
}

fn rustc_version() -> Option<(u32, u32, String)> {
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let out = query("rustc", &["--version"])?;
    let v = out.split_whitespace().nth(1)?.to_owned();
    let mut parts = v.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?, v))
}

fn nextest(ctx: &Ctx, record: &mut Record) -> Result<Outcome, String> {
    let label = format!("cargo-nextest {NEXTEST_VERSION}");
    let fields = [
        ("version", NEXTEST_VERSION.to_owned()),
        ("source", "crates.io (cargo install --locked)".into()),
    ];
    let found = nextest_version(ctx);
    if found.as_deref() == Some(NEXTEST_VERSION) {
        record.add("cargo-nextest", &fields);
        return Ok(Outcome::AlreadyInstalled(NEXTEST_VERSION.to_owned()));
    }
    if let Some((major, minor, v)) = rustc_version()
        && (major, minor) < NEXTEST_MIN_RUST
    {
        return Err(format!(
            "{label} needs rustc >= {}.{}, this machine has {v}: update the toolchain (rustup update)",
            NEXTEST_MIN_RUST.0, NEXTEST_MIN_RUST.1
        ));
    }
    let replacing = found
        .map(|v| format!(" (replacing {v})"))
        .unwrap_or_default();
    println!(
        "[deps 3/{}] {label}: compiling it with `cargo install`{replacing}; this takes several minutes on 2 cores",
        STEPS.len()
    );
    let mut install = Command::new(&ctx.cargo);
    // No self-update feature: the pin is what we want, and it spares a TLS stack to compile.
    install.args([
        "install",
        "cargo-nextest",
        "--locked",
        "--version",
        NEXTEST_VERSION,
        "--no-default-features",
        "--features",
        "default-no-update",
    ]);
    run_logged(&mut install, &ctx.log("cargo-nextest-install"))?;
    match nextest_version(ctx) {
        Some(v) if v == NEXTEST_VERSION => {}
        other => {
            return Err(format!(
                "after `cargo install`, `cargo nextest --version` reports {other:?}, not {NEXTEST_VERSION}: \
                 is ~/.cargo/bin (CARGO_HOME/bin) shadowed by another cargo-nextest on PATH?"
            ));
        }
    }
    record.add("cargo-nextest", &fields);
    Ok(Outcome::Installed(NEXTEST_VERSION.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_json_escapes_and_keeps_order() {
        let mut r = Record::default();
        r.add("b", &[("version", "1\"2\\3\n".into())]);
        r.add("a", &[("x", "y".into()), ("z", "\u{1}".into())]);
        let json = r.to_json(Path::new("/c"));
        assert_eq!(
            json,
            "{\n  \"generated_by\": \"cargo xtask deps\",\n  \"cache\": \"/c\",\n  \"components\": {\n    \
             \"b\": {\"version\": \"1\\\"2\\\\3\\n\"},\n    \"a\": {\"x\": \"y\", \"z\": \"\\u0001\"}\n  }\n}\n"
        );
    }
}
