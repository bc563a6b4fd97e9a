//! Runs one experiment file with the real `faultline run` and checks its outcome; shared by the
//! lab tier (`experiments.rs`) and the cluster tier (`cluster_experiments.rs`).
//! Experiments must exit 0 with every verdict passed; files under `experiments/controls/` are
//! negative controls and must exit 1 with each `# expect-failed-verdict:` failed and explained.

use faultline_tests::{expected_failures, faultline, workspace_root};
use std::path::Path;

pub fn run_experiment(path: &Path) -> datatest_stable::Result<()> {
    // datatest gives paths relative to this crate; faultline runs from the workspace root, and
    // reports read better with `experiments/...` than with an absolute path.
    let root = workspace_root();
    let absolute = std::fs::canonicalize(path)?;
    let path = absolute.strip_prefix(&root).unwrap_or(&absolute);
    let source = std::fs::read_to_string(root.join(path))?;
    let is_control = path.components().any(|c| c.as_os_str() == "controls");
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("experiment");
    let out = workspace_root()
        .join("target/experiment-reports")
        .join(if is_control {
            "controls"
        } else {
            "experiments"
        })
        .join(stem);
    let output = faultline(&[
        "run",
        path.to_str().unwrap_or_default(),
        "--out",
        out.to_str().unwrap_or_default(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let code = output.status.code();
    let context = || {
        format!(
            "exit {code:?}\n--- stdout\n{stdout}\n--- stderr (tail)\n{}",
            tail(&stderr, 60)
        )
    };

    let journal_text = std::fs::read_to_string(out.join("journal.json"))
        .map_err(|e| format!("no journal written: {e}\n{}", context()))?;
    let journal: serde_json::Value = serde_json::from_str(&journal_text)?;
    let verdicts = journal["verdicts"].as_array().cloned().unwrap_or_default();
    if verdicts.is_empty() {
        return Err(format!("the journal holds no verdicts\n{}", context()).into());
    }
    for v in &verdicts {
        for field in ["id", "expected", "observed"] {
            if !v[field].is_string() {
                return Err(format!("verdict without `{field}`: {v}").into());
            }
        }
    }
    if !is_control {
        if code != Some(0) {
            return Err(format!("expected exit 0\n{}", context()).into());
        }
        return Ok(());
    }
    if code != Some(1) {
        return Err(format!("a negative control must exit 1\n{}", context()).into());
    }
    let wanted = expected_failures(&source);
    if wanted.is_empty() {
        return Err("a control must name at least one `# expect-failed-verdict:`".into());
    }
    for id in wanted {
        let found = verdicts.iter().find(|v| v["id"] == id.as_str());
        match found {
            Some(v) if v["passed"] == false => {
                if !stderr.contains(&format!("FAILED {id}"))
                    || !stderr.contains("expected:")
                    || !stderr.contains("observed:")
                {
                    return Err(format!(
                        "`{id}` failed but the output does not state expected vs observed\n{}",
                        context()
                    )
                    .into());
                }
            }
            Some(v) => {
                // The deliberately wrong system behaved on this run: the control proves nothing
                // either way, and says so instead of passing.
                return Err(format!(
                    "INCONCLUSIVE control: verdict `{id}` passed ({}), so this run did not provoke \
                     the failure the control exists to show; the control must fail it\n{}",
                    v["observed"].as_str().unwrap_or(""),
                    context()
                )
                .into());
            }
            None => return Err(format!("no verdict `{id}` in the journal\n{}", context()).into()),
        }
    }
    Ok(())
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
