//! The crate's error type: everything that can stop a reference service from starting or serving.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Why a reference service could not start or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read config file `{path}`: {source}")]
    ReadConfig { path: PathBuf, source: io::Error },

    #[error("config file `{path}` is not valid: {source}")]
    ParseConfig {
        path: PathBuf,
        source: serde_json::Error,
    },

    #[error("config file `{path}` is not valid: {message}")]
    InvalidConfig { path: PathBuf, message: String },

    #[error("invalid config: {0}")]
    Invalid(String),

    #[error("cannot build the http client: {0}")]
    HttpClient(#[source] reqwest::Error),

    #[error("cannot listen on `{addr}`: {source}")]
    Bind { addr: SocketAddr, source: io::Error },

    #[error("server stopped with an error: {0}")]
    Serve(#[source] io::Error),
}

impl Error {
    /// True when the error is the operator's input (config file), which binaries report with exit code 2.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Error::ReadConfig { .. }
                | Error::ParseConfig { .. }
                | Error::InvalidConfig { .. }
                | Error::Invalid(_)
        )
    }
}
