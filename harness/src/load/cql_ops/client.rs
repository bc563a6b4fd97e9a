//! `CqlClient`: the workload's executor for callers outside the generator (tests, tools).

use std::collections::BTreeMap;
use std::time::Duration;

use scylla::client::session::Session;

use super::super::outcome::{ErrorKind, Outcome, OutcomeCode};
use super::super::tables::{ErrorSamples, TagTable};
use super::{CqlConfig, CqlExec};

/// A `CqlExec` with its own tag table and error samples, for callers outside the generator
/// (tests, tools): each op is bounded by the op timeout here.
pub struct CqlClient {
    exec: CqlExec,
    tags: TagTable,
    samples: ErrorSamples,
    op_timeout: Duration,
}

impl CqlClient {
    pub async fn new(config: &CqlConfig) -> Result<CqlClient, String> {
        let tags = TagTable::new();
        let exec = CqlExec::new(config, &tags).await?;
        Ok(CqlClient {
            exec,
            tags,
            samples: ErrorSamples::default(),
            op_timeout: config.op_timeout,
        })
    }

    /// Op `n`: its outcome and tag (`""`, `hit`, `miss`, `mismatch`).
    pub async fn execute(&self, n: u64) -> (Outcome, String) {
        let op = self.exec.execute(n, &self.samples);
        let (outcome, tag) = match tokio::time::timeout(self.op_timeout, op).await {
            Ok(done) => done,
            Err(_) => {
                let outcome = Outcome::Error(ErrorKind::Timeout);
                self.samples.note(OutcomeCode::from(outcome), || {
                    format!("no answer within {} ms", self.op_timeout.as_millis())
                });
                (outcome, 0)
            }
        };
        let name = self
            .tags
            .names()
            .get(usize::from(tag))
            .cloned()
            .unwrap_or_default();
        (outcome, name)
    }

    /// The first error message seen per outcome code.
    pub fn error_samples(&self) -> BTreeMap<OutcomeCode, String> {
        self.samples.snapshot()
    }

    pub fn session(&self) -> &Session {
        &self.exec.session
    }
}
