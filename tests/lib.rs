//! Shared helpers for the integration tests: where the workspace and its built binaries are.
//!
//! The experiment tests execute the real `faultline` binary (and it starts the real target
//! services), so the binaries must be built first: `cargo xtask test` does that.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

/// A binary built by `cargo build --workspace --bins`, next to this test executable's profile dir.
pub fn built_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "`{}` is not built (hint: run `cargo xtask test`, or `cargo build --workspace --bins` before the tests)",
        path.display()
    );
    path
}

/// Runs `faultline` with `args` from the workspace root.
pub fn faultline(args: &[&str]) -> Output {
    Command::new(built_binary("faultline"))
        .args(args)
        .current_dir(workspace_root())
        .output()
        .unwrap_or_else(|e| panic!("cannot execute faultline: {e}"))
}

/// Lines of the form `# expect-failed-verdict: <id>` in a control experiment.
pub fn expected_failures(source: &str) -> Vec<String> {
    source
        .lines()
        .filter_map(|line| line.trim().strip_prefix("# expect-failed-verdict:"))
        .map(|id| id.trim().to_string())
        .collect()
}

/// The jars of a clustered component, or `None` (after saying why) when they are not installed
/// and `FAULTLINE_REQUIRE_CLUSTER` is unset; with it set (as `cargo xtask test` does, after
/// installing them), missing jars fail the test.
pub fn cluster_jars_or_skip<E: std::fmt::Display>(found: Result<PathBuf, E>) -> Option<PathBuf> {
    match found {
        Ok(libs) => Some(libs),
        Err(e) if std::env::var_os("FAULTLINE_REQUIRE_CLUSTER").is_none() => {
            eprintln!("skipped: {e} (set FAULTLINE_REQUIRE_CLUSTER=1 to make this a failure)");
            None
        }
        Err(e) => panic!("FAULTLINE_REQUIRE_CLUSTER is set but {e}"),
    }
}

/// A lab scenario: given the lab, a future that says what went wrong, if anything.
pub type Scenario = Box<
    dyn FnOnce(
            std::sync::Arc<faultline::lab::Lab>,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
        + Send,
>;

/// Runs `scenario` in a new lab on a thread of its own (the lab is entered by the thread that
/// builds the runtime, which keeps the test harness's threads out of it), shuts the lab down,
/// and panics with the scenario's error, if any.
pub fn in_new_lab(scenario: Scenario) {
    use faultline::lab;
    let joined = std::thread::spawn(move || {
        let handle = lab::enter_new_lab(&lab::new_run_id()).expect("enter a new lab");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let lab = std::sync::Arc::new(lab::Lab::new(handle));
            let outcome = scenario(lab.clone()).await;
            lab.shutdown().await.expect("lab shutdown");
            outcome
        })
    })
    .join();
    match joined {
        Ok(Ok(())) => {}
        Ok(Err(message)) => panic!("{message}"),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// A process's resident memory in MiB (`VmRSS`), for the clusters' reports.
pub fn rss_mib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024)
}
