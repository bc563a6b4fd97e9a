//! One function per subcommand: call the engine, print the result, return the exit code.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use faultline::run::RunOptions;

use faultline::exit_code;
use faultline::journal::Journal;
use faultline::spec::{self, Diagnostic, Plan};

use super::live::LiveView;

pub fn validate(files: &[PathBuf]) -> i32 {
    let mut problems = 0;
    let mut bad_files = 0;
    for file in files {
        match spec::load_file(file) {
            Ok(plan) => println!(
                "ok: {} ({}, verifies {})",
                file.display(),
                plan.name,
                plan.verifies.join(", ")
            ),
            Err(diags) => {
                print_diagnostics(file, &diags);
                problems += diags.len();
                bad_files += 1;
            }
        }
    }
    if problems == 0 {
        return exit_code::OK;
    }
    eprintln!(
        "{problems} problem{} in {bad_files} of {} file{}",
        plural(problems),
        files.len(),
        plural(files.len())
    );
    exit_code::INVALID_INPUT
}

pub fn plan(file: &Path) -> i32 {
    match load(file) {
        Ok(plan) => {
            print!("{}", plan.render_text());
            exit_code::OK
        }
        Err(code) => code,
    }
}

pub fn run(file: &Path, out: Option<PathBuf>, keep_lab: bool) -> i32 {
    let plan = match load(file) {
        Ok(plan) => plan,
        Err(code) => return code,
    };
    let out = out.unwrap_or_else(|| PathBuf::from("reports/runs").join(&plan.name));
    let view = Arc::new(LiveView::new());
    let options = RunOptions {
        logs_to: Some(out.join("logs")),
        keep_lab,
    };
    let journal = faultline::run::run_experiment(&plan, &options, view.clone());
    view.finish();
    finish_run(&journal, &out)
}

pub fn report(journals: &[PathBuf], out: Option<PathBuf>) -> i32 {
    if out.is_some() && journals.len() > 1 {
        eprintln!(
            "error: `--out` takes a single journal (hint: re-render several journals beside themselves)"
        );
        return exit_code::INVALID_INPUT;
    }
    let mut code = exit_code::OK;
    for path in journals {
        match faultline::report::read_journal(path) {
            Ok(journal) => {
                let dir = out.clone().unwrap_or_else(|| {
                    path.parent()
                        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
                });
                if let Err(error) = faultline::report::write_all(&journal, &dir) {
                    eprintln!(
                        "error: cannot write reports into `{}`: {error}",
                        dir.display()
                    );
                    return exit_code::INFRASTRUCTURE;
                }
                println!(
                    "{}: {} -> {}",
                    path.display(),
                    outcome_word(&journal),
                    dir.join("report.md").display()
                );
                code = code.max(journal.exit_code());
            }
            Err(error) => {
                eprintln!("error: {error}");
                return exit_code::INVALID_INPUT;
            }
        }
    }
    code
}

pub fn lab_up(file: &Path) -> i32 {
    let plan = match load(file) {
        Ok(plan) => plan,
        Err(code) => return code,
    };
    let view = Arc::new(LiveView::new());
    match faultline::run::hold_lab(&plan, view.clone()) {
        Ok(()) => exit_code::OK,
        Err(error) => {
            eprintln!("error: {error}");
            exit_code::INFRASTRUCTURE
        }
    }
}

pub fn lab_clean() -> i32 {
    match faultline::lab::clean_leftovers() {
        Ok(report) => {
            println!("{report}");
            exit_code::OK
        }
        Err(error) => {
            eprintln!("error: {error}");
            exit_code::INFRASTRUCTURE
        }
    }
}

fn load(file: &Path) -> Result<Plan, i32> {
    spec::load_file(file).map_err(|diags| {
        print_diagnostics(file, &diags);
        exit_code::INVALID_INPUT
    })
}

fn print_diagnostics(file: &Path, diags: &[Diagnostic]) {
    let source = std::fs::read_to_string(file).ok();
    for diag in diags {
        eprintln!("{}\n", diag.render(source.as_deref()));
    }
}

fn finish_run(journal: &Journal, out: &Path) -> i32 {
    if let Err(error) = faultline::report::write_all(journal, out) {
        eprintln!(
            "error: cannot write reports into `{}`: {error}",
            out.display()
        );
        // The journal still goes somewhere: a lost report is worse than a misplaced one.
        let fallback = std::env::temp_dir().join(format!("faultline-{}.json", journal.run.run_id));
        if let Ok(json) = serde_json::to_string_pretty(journal)
            && std::fs::write(&fallback, json).is_ok()
        {
            eprintln!("journal saved to `{}` instead", fallback.display());
        }
        return exit_code::INFRASTRUCTURE;
    }
    for v in journal.failed_verdicts() {
        eprintln!(
            "FAILED {}\n  expected: {}\n  observed: {}",
            v.id, v.expected, v.observed
        );
    }
    if let Some(error) = &journal.run.error {
        eprintln!("error: {error}");
    }
    let held = journal.verdicts.iter().filter(|v| v.passed).count();
    println!(
        "{}: {held} of {} verdicts held; report: {}",
        outcome_word(journal),
        journal.verdicts.len(),
        out.join("report.md").display()
    );
    journal.exit_code()
}

fn outcome_word(journal: &Journal) -> &'static str {
    match journal.run.outcome {
        faultline::journal::Outcome::Passed => "passed",
        faultline::journal::Outcome::Failed => "FAILED",
        faultline::journal::Outcome::Invalid => "INVALID",
        faultline::journal::Outcome::InfrastructureError => "INFRASTRUCTURE ERROR",
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
