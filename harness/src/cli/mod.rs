//! Argument parsing and dispatch. Exit codes are `faultline::exit_code`'s constants.

mod commands;
mod live;

use clap::{Parser, Subcommand};
use faultline::exit_code;
use std::path::PathBuf;

/// Chaos experiments on real components, judged against documented behaviour.
#[derive(Parser)]
#[command(name = "faultline", version, about, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

const EXIT_CODES: &str = "Exit codes: 0 all assertions held; 1 an assertion failed; 2 invalid input; 3 infrastructure error.";

#[derive(Subcommand)]
enum Command {
    /// Check experiment files and report every problem with file:line:column.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the resolved topology, fault timeline and assertions of an experiment.
    Plan { file: PathBuf },
    /// Run an experiment and write journal.json, report.md and junit.xml.
    Run {
        file: PathBuf,
        /// Where the reports go (default: reports/runs/<experiment name>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Keep the lab's state directory (node logs, data) after the run.
        #[arg(long)]
        keep_lab: bool,
    },
    /// Re-render report.md, junit.xml and the per-datacenter charts from journals.
    Report {
        #[arg(required = true)]
        journals: Vec<PathBuf>,
        /// Write here instead of beside each journal (only with one journal).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Manage labs by hand.
    Lab {
        #[command(subcommand)]
        command: LabCommand,
    },
}

#[derive(Subcommand)]
enum LabCommand {
    /// Bring an experiment's topology up and keep it until Ctrl-C, for manual poking.
    Up { file: PathBuf },
    /// Tear down what runs left behind (processes, namespaces, rules): the same as `clean`.
    Down,
    /// Undo what killed runs left: processes, network namespaces, nftables rules.
    Clean,
}

pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let code = if error.use_stderr() {
                exit_code::INVALID_INPUT
            } else {
                exit_code::OK
            };
            let _ = error.print();
            return code;
        }
    };
    match cli.command {
        Command::Validate { files } => commands::validate(&files),
        Command::Plan { file } => commands::plan(&file),
        Command::Run {
            file,
            out,
            keep_lab,
        } => commands::run(&file, out, keep_lab),
        Command::Report { journals, out } => commands::report(&journals, out),
        Command::Lab {
            command: LabCommand::Up { file },
        } => commands::lab_up(&file),
        Command::Lab {
            command: LabCommand::Down | LabCommand::Clean,
        } => commands::lab_clean(),
    }
}
