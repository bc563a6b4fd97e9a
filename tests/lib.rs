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
