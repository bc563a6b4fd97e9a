//! Project automation for Faultline: `cargo xtask deps|test|demo|bench`.
//!
//! Plain std, no dependencies, so that it builds in seconds on a fresh machine.

mod bench;
mod deps;
mod proc;
mod test;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  deps                 install the lab's real components, pinned and cached (idempotent):
                       Debian redis-server/redis-sentinel/redis-tools/nftables/iproute2,
                       toxiproxy-server (go install), cargo-nextest (cargo install),
                       Cassandra 5.0 and Kafka 3.9 jars (Maven Central, needs mvn and JDK 17)
  test [--tier NAME]... [-- NEXTEST_ARGS...]
                       deps, build the binaries, then run the test tiers in order with
                       cargo nextest (fast, lab, then cluster), stopping at the
                       first failing tier; `--tier` runs only the named tiers;
                       e.g. `cargo xtask test --tier lab -- circuit-breaker`
  demo                 deps, build, then run the circuit-breaker experiment and print
                       where its report is
  bench [--quick] [--rounds N] [--only redis,http,canary] [--strict]
                       the load generator side by side with redis-benchmark, wrk and oha
                       on loopback (installs them on demand); writes reports/bench/
  help                 print this

environment:
  FAULTLINE_CACHE      where built components live (default: $HOME/.cache/faultline);
                       the tests get FAULTLINE_TOOLS=<cache>/bin
  NEXTEST_PROFILE      nextest profile for `test` (CI uses `ci`: no fail-fast, JUnit per tier
                       in target/nextest/ci/junit-<tier>.xml)
";

/// Paths and tools every command uses.
pub struct Ctx {
    /// The workspace root; every command runs there.
    pub root: PathBuf,
    /// `$FAULTLINE_CACHE` or `$HOME/.cache/faultline`.
    pub cache: PathBuf,
    /// The cargo that runs us (`$CARGO`), so nested invocations use the same toolchain.
    pub cargo: PathBuf,
}

impl Ctx {
    fn new() -> Result<Ctx, String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .ok_or("xtask's manifest directory has no parent")?
            .to_path_buf();
        let cache = match std::env::var_os("FAULTLINE_CACHE").filter(|v| !v.is_empty()) {
            Some(dir) => root.join(dir), // absolute stays absolute; relative is from the root
            None => {
                let home = std::env::var_os("HOME").filter(|v| !v.is_empty()).ok_or(
                    "neither FAULTLINE_CACHE nor HOME is set: cannot choose a cache directory",
                )?;
                PathBuf::from(home).join(".cache/faultline")
            }
        };
        let cargo = std::env::var_os("CARGO")
            .map(PathBuf::from)
            .unwrap_or_else(|| "cargo".into());
        Ok(Ctx { root, cache, cargo })
    }

    /// Where the lab's tools are: given to tests and the harness as FAULTLINE_TOOLS.
    pub fn tools(&self) -> PathBuf {
        self.cache.join("bin")
    }

    pub fn log(&self, name: &str) -> PathBuf {
        self.cache.join("logs").join(format!("{name}.log"))
    }

    pub fn target_dir(&self) -> PathBuf {
        match std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
            Some(dir) => self.root.join(dir),
            None => self.root.join("target"),
        }
    }

    /// A command run from the workspace root with the lab's environment.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
        let mut c = std::process::Command::new(program);
        c.current_dir(&self.root)
            .env("FAULTLINE_TOOLS", self.tools())
            .env("FAULTLINE_CACHE", &self.cache);
        c
    }
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("xtask: {msg}\n\n{USAGE}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else {
        return usage_error("no command given");
    };
    if matches!(cmd.as_str(), "help" | "-h" | "--help") {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if !matches!(cmd.as_str(), "deps" | "test" | "demo" | "bench") {
        return usage_error(&format!("unknown command `{cmd}`"));
    }
    let ctx = match Ctx::new() {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("xtask: {e}");
            return ExitCode::FAILURE;
        }
    };
    proc::catch_interrupts();
    let result = match cmd.as_str() {
        "deps" => {
            if let Some(extra) = rest.first() {
                return usage_error(&format!("`deps` takes no arguments, got `{extra}`"));
            }
            deps::run(&ctx).map(|()| 0)
        }
        "test" => match test::TestArgs::parse(rest) {
            Ok(a) => test::test(&ctx, &a),
            Err(e) => return usage_error(&e),
        },
        "demo" => {
            if let Some(extra) = rest.first() {
                return usage_error(&format!("`demo` takes no arguments, got `{extra}`"));
            }
            test::demo(&ctx)
        }
        "bench" => bench::run(&ctx, rest),
        _ => unreachable!(),
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("xtask {cmd}: {e}");
            ExitCode::FAILURE
        }
    }
}
