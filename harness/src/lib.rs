//! Faultline's engine: experiment specs in, verdicts and reports out. No terminal code lives here;
//! the `faultline` binary (src/main.rs, src/cli/) renders progress and errors.

pub mod catalogue;
pub mod components;
pub mod errors;
pub mod events;
pub mod exit_code;
pub mod faults;
pub mod journal;
pub mod lab;
pub mod ledger;
pub mod load;
pub mod plan;
pub mod redact;
pub mod report;
pub mod roles;
pub mod run;
pub mod spec;
pub mod toxiproxy;
pub mod units;
pub mod verdict;
