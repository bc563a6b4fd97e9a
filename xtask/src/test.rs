//! `cargo xtask test` (the test tiers) and `cargo xtask demo`.

use std::path::Path;
use std::time::Instant;

use crate::Ctx;
use crate::deps;
use crate::proc::{describe, display, exit_code, human, run_inherited};

/// nextest's exit code when no test matched (`NextestExitCode::NO_TESTS_RUN`).
const NEXTEST_NO_TESTS_RUN: i32 = 4;

/// One tier of tests. Tiers run in the order of [`TIERS`]; the first failing tier stops the run.
struct Tier {
    name: &'static str,
    /// The nextest filterset of the tests this tier owns. `None`: everything no other tier owns.
    owns: Option<&'static str>,
    /// `Some(why)` for a tier that is not wired yet: it is reported as skipped.
    pending: Option<&'static str>,
    what: &'static str,
}

const TIERS: &[Tier] = &[
    Tier { name: "fast", owns: None, pending: None, what: "parsing, validation, planning, checkers, snapshots" },
    Tier {
        name: "lab",
        owns: Some("binary(experiments)"),
        pending: None,
        what: "one test per experiment file, against real Redis + Toxiproxy + targets",
    },
    // Hook: the cluster tier (real Cassandra multi-DC and Kafka clusters) runs last. To wire it:
    // add its test binary (e.g. tests/cluster.rs, `[[test]] name = "cluster"`), set `owns` to
    // `Some("binary(cluster)")` (the fast tier then excludes it by itself), drop `pending`, add a
    // `cluster` test group in .config/nextest.toml, and install Cassandra/Kafka in `deps`.
    Tier {
        name: "cluster",
        owns: None,
        pending: Some("not wired yet (Cassandra/Kafka)"),
        what: "real Cassandra multi-DC and Kafka clusters",
    },
];

impl Tier {
    fn filter(&self) -> String {
        match self.owns {
            Some(f) => f.to_owned(),
            None => {
                let others: Vec<&str> = TIERS.iter().filter(|t| t.pending.is_none()).filter_map(|t| t.owns).collect();
                match others.as_slice() {
                    [] => "all()".to_owned(),
                    [one] => format!("not {one}"),
                    many => format!("not ({})", many.join(" | ")),
                }
            }
        }
    }
}

pub struct TestArgs {
    tiers: Vec<String>,
    nextest: Vec<String>,
}

impl TestArgs {
    pub fn parse(args: &[String]) -> Result<TestArgs, String> {
        let mut tiers = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--" => break,
                "--tier" => {
                    let name = it.next().ok_or("`--tier` needs a tier name")?;
                    tiers.push(name.clone());
                }
                other => match other.strip_prefix("--tier=") {
                    Some(name) => tiers.push(name.to_owned()),
                    None => return Err(format!("unknown argument `{other}` for `test` (nextest arguments go after `--`)")),
                },
            }
        }
        for t in &tiers {
            if !TIERS.iter().any(|k| k.name == t) {
                let names: Vec<&str> = TIERS.iter().map(|k| k.name).collect();
                return Err(format!("unknown tier `{t}` (tiers: {})", names.join(", ")));
            }
        }
        Ok(TestArgs { tiers, nextest: it.cloned().collect() })
    }

    /// The nextest profile the extra arguments (or NEXTEST_PROFILE) select.
    fn profile(&self) -> String {
        let mut profile = std::env::var("NEXTEST_PROFILE").ok().filter(|p| !p.is_empty());
        let mut it = self.nextest.iter();
        while let Some(a) = it.next() {
            if a == "--profile" || a == "-P" {
                profile = it.next().cloned();
            } else if let Some(p) = a.strip_prefix("--profile=").or_else(|| a.strip_prefix("-P")) {
                profile = Some(p.to_owned());
            }
        }
        profile.unwrap_or_else(|| "default".to_owned())
    }
}

/// `cargo build --workspace --bins`: the experiment tests and the demo execute the built binaries.
fn build(ctx: &Ctx) -> Result<(), String> {
    let mut cmd = ctx.command(&ctx.cargo);
    cmd.args(["build", "--workspace", "--bins"]);
    println!("==> build: {}", display_plain(&cmd));
    let started = Instant::now();
    let status = run_inherited(&mut cmd)?;
    if !status.success() {
        return Err(format!(
            "the build failed: `cargo build --workspace --bins` {}; see the compiler errors above",
            describe(status)
        ));
    }
    println!("==> build: done in {}", human(started.elapsed()));
    Ok(())
}

/// The command line without the lab environment (printed separately, once).
fn display_plain(cmd: &std::process::Command) -> String {
    let mut c = std::process::Command::new(cmd.get_program());
    c.args(cmd.get_args());
    display(&c)
}

pub fn test(ctx: &Ctx, args: &TestArgs) -> Result<i32, String> {
    deps::run(ctx)?;
    build(ctx)?;
    println!("==> tests get FAULTLINE_TOOLS={}", ctx.tools().display());

    let profile = args.profile();
    let selected: Vec<&Tier> =
        TIERS.iter().filter(|t| args.tiers.is_empty() || args.tiers.iter().any(|n| n == t.name)).collect();
    let mut summary = Vec::new();
    for tier in selected {
        if let Some(why) = tier.pending {
            println!("==> tier {}: skipped, {why}", tier.name);
            summary.push(format!("{} skipped", tier.name));
            continue;
        }
        let filter = tier.filter();
        let mut cmd = ctx.command(&ctx.cargo);
        cmd.args(["nextest", "run", "--workspace", "-E", &filter]).args(&args.nextest);
        println!("==> tier {} ({}): {}", tier.name, tier.what, display_plain(&cmd));
        let started = Instant::now();
        let status = run_inherited(&mut cmd)?;
        keep_junit(ctx, &profile, tier.name, started);
        let took = human(started.elapsed());
        match status.code() {
            Some(0) => summary.push(format!("{} passed in {took}", tier.name)),
            Some(NEXTEST_NO_TESTS_RUN) if !args.nextest.is_empty() => {
                // Arguments such as a test-name filter may leave a tier with nothing to run.
                println!("==> tier {}: no test matched the given arguments", tier.name);
                summary.push(format!("{} ran no test", tier.name));
            }
            _ => {
                summary.push(format!("{} FAILED after {took}", tier.name));
                println!("==> tiers: {}", summary.join("; "));
                let why = if status.code() == Some(NEXTEST_NO_TESTS_RUN) {
                    "found no test to run".to_owned()
                } else {
                    describe(status)
                };
                eprintln!("xtask test: tier `{}` failed: `cargo nextest run` {why}; later tiers were not run", tier.name);
                return Ok(exit_code(status).max(1));
            }
        }
    }
    println!("==> tiers: {}", summary.join("; "));
    Ok(0)
}

/// nextest writes `<target>/nextest/<profile>/junit.xml` (where the profile asks for one), the
/// same path for every tier: keep each tier's as `junit-<tier>.xml`.
fn keep_junit(ctx: &Ctx, profile: &str, tier: &str, started: Instant) {
    let dir = ctx.target_dir().join("nextest").join(profile);
    let junit = dir.join("junit.xml");
    let fresh = std::fs::metadata(&junit)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().is_ok_and(|age| age <= started.elapsed()));
    if fresh {
        let kept = dir.join(format!("junit-{tier}.xml"));
        match std::fs::rename(&junit, &kept) {
            Ok(()) => println!("==> tier {tier}: JUnit report at {}", kept.display()),
            Err(e) => eprintln!("xtask: warning: could not move {} to {}: {e}", junit.display(), kept.display()),
        }
    }
}

pub const DEMO_EXPERIMENT: &str = "experiments/000-music-streaming/circuit-breaker.yaml";
pub const DEMO_OUT: &str = "reports/runs/demo";

pub fn demo(ctx: &Ctx) -> Result<i32, String> {
    deps::run(ctx)?;
    build(ctx)?;
    if !ctx.root.join(DEMO_EXPERIMENT).is_file() {
        return Err(format!("the demo experiment {DEMO_EXPERIMENT} does not exist"));
    }
    let faultline = ctx.target_dir().join("debug").join("faultline");
    let mut cmd = ctx.command(&faultline);
    cmd.args(["run", DEMO_EXPERIMENT, "--out", DEMO_OUT]);
    println!("==> demo: {}", display_plain(&cmd));
    let status = run_inherited(&mut cmd)?;
    let report = Path::new(DEMO_OUT).join("report.md");
    if ctx.root.join(&report).is_file() {
        println!("==> demo: faultline {}; the report is at {}", describe(status), report.display());
        println!("    (also journal.json, junit.xml and report.html in {DEMO_OUT}/)");
    } else {
        println!("==> demo: faultline {}; it wrote no report at {}", describe(status), report.display());
    }
    Ok(exit_code(status))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Result<TestArgs, String> {
        TestArgs::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn fast_tier_is_everything_no_wired_tier_owns() {
        assert_eq!(TIERS[0].filter(), "not binary(experiments)");
        assert_eq!(TIERS[1].filter(), "binary(experiments)");
        assert_eq!(TIERS.iter().map(|t| t.name).collect::<Vec<_>>(), ["fast", "lab", "cluster"]);
    }

    #[test]
    fn parses_tiers_and_passes_the_rest_to_nextest() {
        let a = args(&["--tier", "lab", "--tier=fast", "--", "--profile", "ci", "--tier"]).unwrap();
        assert_eq!(a.tiers, ["lab", "fast"]);
        assert_eq!(a.nextest, ["--profile", "ci", "--tier"]);
        assert_eq!(a.profile(), "ci");
        assert_eq!(args(&["--", "--profile=x"]).unwrap().profile(), "x");
        assert!(args(&["--tier", "nope"]).unwrap_err().contains("unknown tier `nope`"));
        assert!(args(&["--tier"]).is_err());
        assert!(args(&["--profile", "ci"]).unwrap_err().contains("after `--`"));
    }
}
