//! Every error the engine can return, one enum per stage. Messages are lowercase, put values in
//! backticks, and end with a `(hint: ...)` where one helps.

use std::path::PathBuf;

/// The lab could not be built, a component misbehaved, or cleaning up failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error(
        "cannot find `{binary}` (hint: run `cargo xtask deps` to install the lab's components)"
    )]
    MissingBinary { binary: String },
    #[error(
        "cannot find the target binary `{binary}` (searched {searched}) (hint: run `cargo build -p faultline-targets` or set `FAULTLINE_TARGETS_DIR`)"
    )]
    MissingTarget { binary: String, searched: String },
    #[error("`{node}` did not become ready within {timeout_ms} ms: {detail}")]
    NotReady {
        node: String,
        timeout_ms: u64,
        detail: String,
    },
    #[error("`{node}` exited during start-up ({status}); last log lines:\n{log_tail}")]
    ExitedEarly {
        node: String,
        status: String,
        log_tail: String,
    },
    #[error("no node named `{0}` in the lab")]
    UnknownNode(String),
    #[error("node `{0}` is already running (hint: kill, stop or restart it instead)")]
    AlreadyRunning(String),
    #[error("node `{0}` is not running")]
    NotRunning(String),
    #[error("invalid {what} `{value}`: {detail}")]
    InvalidName {
        what: &'static str,
        value: String,
        detail: String,
    },
    #[error(
        "the lab needs root to create network namespaces (effective uid `{euid}`) (hint: run as root, e.g. under `sudo`; rootless labs are not supported yet)"
    )]
    NotRoot { euid: u32 },
    #[error("partition between {a} and {b}: {detail}")]
    Partition {
        a: String,
        b: String,
        detail: String,
    },
    #[error("i/o on `{path}`: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Toxiproxy(#[from] ToxiproxyError),
    #[error("{0}")]
    Other(String),
}

/// Toxiproxy's HTTP API answered with an error or not at all.
#[derive(Debug, thiserror::Error)]
pub enum ToxiproxyError {
    #[error("toxiproxy request `{method} {path}` failed: {detail}")]
    Request {
        method: &'static str,
        path: String,
        detail: String,
    },
    #[error("toxiproxy answered `{method} {path}` with status {status}: {body}")]
    Status {
        method: &'static str,
        path: String,
        status: u16,
        body: String,
    },
    #[error(
        "toxiproxy's answer to `{method} {path}` is not what was expected: {detail} (body: `{body}`)"
    )]
    Decode {
        method: &'static str,
        path: String,
        detail: String,
        body: String,
    },
    #[error("invalid toxiproxy {what} name `{name}` (hint: use letters, digits, `.`, `_` and `-`)")]
    InvalidName { what: &'static str, name: String },
    #[error("cannot build the toxiproxy http client: {0}")]
    Client(String),
}

/// A load workload could not be set up (running it never fails: errors are measurements).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The plan itself is unusable (a zero rate, a bad URL template, ...): an input error.
    #[error("workload `{workload}`: invalid `{field}`: {detail}")]
    InvalidPlan {
        workload: String,
        field: &'static str,
        detail: String,
    },
    /// The plan is fine but the generator could not be built (e.g. the HTTP client).
    #[error("workload `{workload}`: {detail}")]
    Setup { workload: String, detail: String },
    /// The generator itself failed while running (a bug: op errors are measurements, not this).
    #[error("workload `{workload}`: the load generator failed: {detail}")]
    Generator { workload: String, detail: String },
}

/// Applying or undoing a fault failed.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error("fault `{fault}`: {source}")]
    Toxiproxy {
        fault: String,
        source: ToxiproxyError,
    },
    #[error("fault `{fault}`: {source}")]
    Lab { fault: String, source: LabError },
    #[error(
        "fault `{fault}` needs toxiproxy but the lab has no toxiproxy client (hint: start one with `Toxiproxy::start_server`)"
    )]
    NoToxiproxy { fault: String },
    #[error("fault `{fault}` is invalid: {detail}")]
    Invalid { fault: String, detail: String },
}

/// "a: b: c" for an error and its sources: an HTTP client's top-level message alone ("error
/// sending request") says nothing about what happened.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(source) = next {
        text.push_str(": ");
        text.push_str(&source.to_string());
        next = source.source();
    }
    text
}
