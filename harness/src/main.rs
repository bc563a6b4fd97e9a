//! `faultline`: the command-line front end. It parses arguments, renders progress and errors, and
//! maps outcomes to the documented exit codes; all the work happens in the engine library.

mod cli;

fn main() {
    std::process::exit(cli::main());
}
