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
    Tier {
        name: "fast",
        owns: None,
        pending: None,
        what: "parsing, validation, planning, checkers, snapshots",
    },
    Tier {
        name: "lab",
        owns: Some("binary(experiments) | binary(lifecycle)"),
        pending: None,
        what: "one test per experiment file, and the lab lifecycle, against real Redis + Toxiproxy + targets",
    },
    // Last: real clusters of JVMs. Every test binary named `cluster_*` (tests/cluster_*.rs).
    Tier {
        name: "cluster",
        owns: Some("binary(/^cluster_/)"),
        pending: None,
        what: "experiments and bring-up tests against real Kafka (KRaft) and Cassandra multi-DC clusters",
    },
];

impl Tier {
    fn filter(&self) -> String {
        match self.owns {
            Some(f) => f.to_owned(),
            None => {
                let others: Vec<&str> = TIERS
                    .iter()
                    .filter(|t| t.pending.is_none())
                    .filter_map(|t| t.owns)
                    .collect();
                match others.as_slice() {
                    [] => "all()".to_owned(),
                    [one] => format!("not ({one})"),
                    many => format!("not ({})", many.join(" | ")),
                }
            }
        }
    }
}

#[derive(Debug)]
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
                    None => {
                        return Err(format!(
                            "unknown argument `{other}` for `test` (nextest arguments go after `--`)"
                        ));
                    }
                },
            }
        }
        for t in &tiers {
            if !TIERS.iter().any(|k| k.name == t) {
                let names: Vec<&str> = TIERS.iter().map(|k| k.name).collect();
                return Err(format!("unknown tier `{t}` (tiers: {})", names.join(", ")));
            }
        }
        Ok(TestArgs {
            tiers,
            nextest: it.cloned().collect(),
        })
    }

    /// Splits the user's filtersets (`-E X`, `--filterset X`, `--filterset=X`) from the other nextest
    /// arguments: nextest takes the union of several `-E`, which would widen a tier, so the tier's
    /// filter is intersected with them instead (see [`tier_filter`]).
    fn split_filtersets(&self) -> (Vec<String>, Vec<String>) {
        let (mut sets, mut rest) = (Vec::new(), Vec::new());
        let mut it = self.nextest.iter();
        while let Some(a) = it.next() {
            if a == "--" {
                // Test-name filters and test binary arguments follow: keep them as they are.
                rest.push(a.clone());
                rest.extend(it.by_ref().cloned());
            } else if matches!(a.as_str(), "-E" | "--filterset" | "--filter-expr") {
                match it.next() {
                    Some(v) => sets.push(v.clone()),
                    None => rest.push(a.clone()), // let nextest report the missing value
                }
            } else if let Some(v) = a
                .strip_prefix("--filterset=")
                .or_else(|| a.strip_prefix("--filter-expr="))
            {
                sets.push(v.to_owned());
            } else if let Some(v) = a.strip_prefix("-E").filter(|v| !v.is_empty()) {
                sets.push(v.to_owned());
            } else {
                rest.push(a.clone());
            }
        }
        (sets, rest)
    }

    /// Whether the extra arguments select tests (filtersets, test-name filters): then a tier may
    /// rightly have nothing to run. Without them, a tier with no test is a failure.
    fn selects_tests(&self) -> bool {
        // nextest options whose value is a separate argument (the common ones).
        const TAKES_VALUE: &[&str] = &[
            "-P",
            "--profile",
            "-j",
            "--test-threads",
            "--retries",
            "--max-fail",
            "--partition",
            "--cargo-profile",
            "-F",
            "--features",
            "--target",
            "--target-dir",
            "--run-ignored",
            "--status-level",
            "--final-status-level",
            "--failure-output",
            "--success-output",
            "--no-tests",
            "--color",
            "--message-format",
            "--config-file",
            "--tool-config-file",
            "--build-jobs",
            "--show-progress",
        ];
        let (sets, rest) = self.split_filtersets();
        if !sets.is_empty() {
            return true;
        }
        let mut it = rest.iter();
        while let Some(a) = it.next() {
            if a == "--" || !a.starts_with('-') {
                return true;
            }
            if TAKES_VALUE.contains(&a.as_str()) {
                it.next();
            }
        }
        false
    }

    /// The nextest profile the extra arguments (or NEXTEST_PROFILE) select.
    fn profile(&self) -> String {
        let mut profile = std::env::var("NEXTEST_PROFILE")
            .ok()
            .filter(|p| !p.is_empty());
        let mut it = self.nextest.iter();
        while let Some(a) = it.next() {
            if a == "--profile" || a == "-P" {
                profile = it.next().cloned();
            } else if let Some(p) = a
                .strip_prefix("--profile=")
                .or_else(|| a.strip_prefix("-P"))
            {
                profile = Some(p.to_owned());
            }
        }
        profile.unwrap_or_else(|| "default".to_owned())
    }
}

/// The tier's filterset, narrowed by the user's (if any).
fn tier_filter(tier: &Tier, user: &[String]) -> String {
    match user {
        [] => tier.filter(),
        [one] => format!("({}) & ({one})", tier.filter()),
        many => format!("({}) & (({}))", tier.filter(), many.join(") | (")),
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

/// The command line without the lab environment (printed separately, once), with the cargo
/// that runs us shown as `cargo`.
fn display_plain(cmd: &std::process::Command) -> String {
    let program = Path::new(cmd.get_program());
    let program = if program.file_name().is_some_and(|n| n == "cargo") {
        Path::new("cargo")
    } else {
        program
    };
    let mut c = std::process::Command::new(program);
    c.args(cmd.get_args());
    display(&c)
}

pub fn test(ctx: &Ctx, args: &TestArgs) -> Result<i32, String> {
    deps::run(ctx)?;
    build(ctx)?;
    println!(
        "==> tests get FAULTLINE_TOOLS={} FAULTLINE_REQUIRE_CLUSTER=1",
        ctx.tools().display()
    );

    let profile = args.profile();
    let (user_filtersets, nextest_args) = args.split_filtersets();
    let selected: Vec<&Tier> = TIERS
        .iter()
        .filter(|t| args.tiers.is_empty() || args.tiers.iter().any(|n| n == t.name))
        .collect();
    let mut summary = Vec::new();
    let mut ran = 0;
    for tier in selected {
        if let Some(why) = tier.pending {
            println!("==> tier {}: skipped, {why}", tier.name);
            summary.push(format!("{} skipped", tier.name));
            continue;
        }
        let filter = tier_filter(tier, &user_filtersets);
        let mut cmd = ctx.command(&ctx.cargo);
        // `deps` just installed the clusters' jars: a cluster test that cannot find them must
        // fail here, not skip.
        cmd.env("FAULTLINE_REQUIRE_CLUSTER", "1")
            .args(["nextest", "run", "--workspace", "-E", &filter])
            .args(&nextest_args);
        println!(
            "==> tier {} ({}): {}",
            tier.name,
            tier.what,
            display_plain(&cmd)
        );
        let started = Instant::now();
        let status = run_inherited(&mut cmd)?;
        keep_junit(ctx, &profile, tier.name, started);
        let took = human(started.elapsed());
        match status.code() {
            Some(0) => {
                ran += 1;
                summary.push(format!("{} passed in {took}", tier.name));
            }
            Some(NEXTEST_NO_TESTS_RUN) if args.selects_tests() => {
                // Arguments such as a test-name filter may leave a tier with nothing to run.
                println!(
                    "==> tier {}: no test matched the given arguments",
                    tier.name
                );
                summary.push(format!("{} ran no test", tier.name));
            }
            _ => {
                summary.push(format!("{} FAILED after {took}", tier.name));
                println!("==> tiers: {}", summary.join("; "));
                let why = match status.code() {
                    Some(NEXTEST_NO_TESTS_RUN) => "found no test to run".to_owned(),
                    Some(100) => "exited with status 100: some tests failed (see above)".to_owned(),
                    Some(101) => {
                        "exited with status 101: the tests did not compile (see the errors above)"
                            .to_owned()
                    }
                    Some(94) => "exited with status 94: invalid filterset".to_owned(),
                    _ => describe(status),
                };
                eprintln!(
                    "xtask test: tier `{}` failed: `cargo nextest run` {why}; later tiers were not run",
                    tier.name
                );
                return Ok(exit_code(status).max(1));
            }
        }
    }
    println!("==> tiers: {}", summary.join("; "));
    if ran == 0 && summary.iter().any(|s| s.ends_with("ran no test")) {
        eprintln!("xtask test: no tier ran a test: the given arguments matched none");
        return Ok(NEXTEST_NO_TESTS_RUN);
    }
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
            Err(e) => eprintln!(
                "xtask: warning: could not move {} to {}: {e}",
                junit.display(),
                kept.display()
            ),
        }
    }
}

pub const DEMO_EXPERIMENT: &str = "experiments/000-music-streaming/circuit-breaker.yaml";
pub const DEMO_OUT: &str = "reports/runs/demo";

pub fn demo(ctx: &Ctx) -> Result<i32, String> {
    deps::run(ctx)?;
    build(ctx)?;
    if !ctx.root.join(DEMO_EXPERIMENT).is_file() {
        return Err(format!(
            "the demo experiment {DEMO_EXPERIMENT} does not exist"
        ));
    }
    let faultline = ctx.target_dir().join("debug").join("faultline");
    let mut cmd = ctx.command(&faultline);
    cmd.args(["run", DEMO_EXPERIMENT, "--out", DEMO_OUT]);
    println!("==> demo: {}", display_plain(&cmd));
    let status = run_inherited(&mut cmd)?;
    let report = Path::new(DEMO_OUT).join("report.md");
    if ctx.root.join(&report).is_file() {
        println!(
            "==> demo: faultline {}; the report is at {}",
            describe(status),
            report.display()
        );
        println!("    (also journal.json, junit.xml and the nodes' logs/ in {DEMO_OUT}/)");
    } else {
        println!(
            "==> demo: faultline {}; it wrote no report at {}",
            describe(status),
            report.display()
        );
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
        assert_eq!(
            TIERS[0].filter(),
            "not (binary(experiments) | binary(lifecycle) | binary(/^cluster_/))"
        );
        assert_eq!(TIERS[1].filter(), "binary(experiments) | binary(lifecycle)");
        assert_eq!(
            TIERS.iter().map(|t| t.name).collect::<Vec<_>>(),
            ["fast", "lab", "cluster"]
        );
    }

    #[test]
    fn parses_tiers_and_passes_the_rest_to_nextest() {
        let a = args(&[
            "--tier",
            "lab",
            "--tier=fast",
            "--",
            "--profile",
            "ci",
            "--tier",
        ])
        .unwrap();
        assert_eq!(a.tiers, ["lab", "fast"]);
        assert_eq!(a.nextest, ["--profile", "ci", "--tier"]);
        assert_eq!(a.profile(), "ci");
        assert_eq!(args(&["--", "--profile=x"]).unwrap().profile(), "x");
        assert!(
            args(&["--tier", "nope"])
                .unwrap_err()
                .contains("unknown tier `nope`")
        );
        assert!(args(&["--tier"]).is_err());
        assert!(
            args(&["--profile", "ci"])
                .unwrap_err()
                .contains("after `--`")
        );
    }

    #[test]
    fn user_filtersets_narrow_the_tier() {
        let a = args(&[
            "--",
            "-E",
            "test(a)",
            "--filterset=test(b)",
            "-P",
            "ci",
            "--",
            "-E",
            "x",
        ])
        .unwrap();
        let (sets, rest) = a.split_filtersets();
        assert_eq!(sets, ["test(a)", "test(b)"]);
        assert_eq!(rest, ["-P", "ci", "--", "-E", "x"]);
        assert_eq!(
            tier_filter(&TIERS[1], &sets),
            "(binary(experiments) | binary(lifecycle)) & ((test(a)) | (test(b)))"
        );
        assert_eq!(
            tier_filter(&TIERS[0], &["test(z)".into()]),
            "(not (binary(experiments) | binary(lifecycle) | binary(/^cluster_/))) & (test(z))"
        );
    }

    #[test]
    fn knows_when_arguments_select_tests() {
        assert!(
            !args(&["--", "--profile", "ci", "-j", "2", "--no-capture"])
                .unwrap()
                .selects_tests()
        );
        assert!(!args(&[]).unwrap().selects_tests());
        assert!(
            args(&["--", "--profile", "ci", "circuit"])
                .unwrap()
                .selects_tests()
        );
        assert!(args(&["--", "-E", "test(x)"]).unwrap().selects_tests());
        assert!(args(&["--", "--", "--exact", "x"]).unwrap().selects_tests());
    }
}
