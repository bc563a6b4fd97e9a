//! Stage "collect": after healing, read back what the services report and what downstreams
//! received, and turn workload records into per-call evidence on the run's time base.

use std::time::Duration;

use crate::journal::{BreakerEvidence, BreakerState, CallSeen, ObservedCall, ObservedTransition};
use crate::load::WorkloadRecord;
use crate::plan::{Assertion, Plan};
use faultline_targets::breaker::State;
use faultline_targets::playback::StateReport;
use faultline_targets::recommendations::Arrivals;

/// Reading evidence back is a handful of small requests; anything slower is a broken service.
const COLLECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Converts between wall-clock microseconds and ms offsets from the run's t0.
#[derive(Clone, Copy)]
pub struct TimeBase {
    pub t0_unix_us: u64,
}

impl TimeBase {
    pub fn offset_ms(&self, unix_us: u64) -> i64 {
        (unix_us as i64 - self.t0_unix_us as i64).div_euclid(1000)
    }
}

/// Breaker evidence for every breaker or fallback assertion (once per service/breaker pair).
pub async fn breaker_evidence(
    plan: &Plan,
    records: &[WorkloadRecord],
    base: TimeBase,
) -> Result<Vec<BreakerEvidence>, String> {
    let client = reqwest::Client::builder()
        .timeout(COLLECT_TIMEOUT)
        .build()
        .map_err(|e| e.to_string())?;
    let mut out: Vec<BreakerEvidence> = Vec::new();
    for assertion in &plan.assertions {
        let (service, breaker, workload, downstream) = match assertion {
            Assertion::Breaker(a) => (&a.service, &a.breaker, &a.workload, Some(&a.downstream)),
            Assertion::Fallback(a) => (&a.service, &a.breaker, &a.workload, None),
            _ => continue,
        };
        if let Some(existing) = out
            .iter_mut()
            .find(|e| &e.service == service && &e.breaker == breaker)
        {
            // A fallback assertion may come first; the breaker assertion adds the downstream.
            if let (Some(downstream), true) = (downstream, existing.downstream.is_empty()) {
                existing.downstream = downstream.clone();
                existing.arrivals_ms = arrivals(&client, plan, downstream, base).await?;
            }
            continue;
        }
        let node = plan
            .node(service)
            .ok_or_else(|| format!("no node `{service}`"))?;
        let url = format!("http://{}/state", node.socket());
        let state: StateReport = get_json(&client, &url).await?;
        let report = state.breakers.get(breaker).ok_or_else(|| {
            let known: Vec<&String> = state.breakers.keys().collect();
            format!("`{service}` reports no breaker `{breaker}` (it has: {known:?})")
        })?;
        let transitions = report
            .transitions
            .iter()
            .map(|t| ObservedTransition {
                at_ms: base.offset_ms(t.at_unix_us),
                from: state_of(t.from),
                to: state_of(t.to),
                reason: t.reason.clone(),
            })
            .collect();
        let record = records
            .iter()
            .find(|r| &r.plan_name == workload)
            .ok_or_else(|| format!("no record of workload `{workload}`"))?;
        let arrivals_ms = match downstream {
            Some(d) => arrivals(&client, plan, d, base).await?,
            None => Vec::new(),
        };
        out.push(BreakerEvidence {
            service: service.clone(),
            breaker: breaker.clone(),
            downstream: downstream.cloned().unwrap_or_default(),
            workload: workload.clone(),
            transitions,
            arrivals_ms,
            calls: calls(record),
        });
    }
    Ok(out)
}

async fn arrivals(
    client: &reqwest::Client,
    plan: &Plan,
    downstream: &str,
    base: TimeBase,
) -> Result<Vec<i64>, String> {
    let node = plan
        .node(downstream)
        .ok_or_else(|| format!("no node `{downstream}`"))?;
    let report: Arrivals = get_json(
        client,
        &format!("http://{}/__faultline/arrivals", node.socket()),
    )
    .await?;
    if report.dropped > 0 {
        return Err(format!(
            "`{downstream}` dropped {} arrival records: the evidence is incomplete",
            report.dropped
        ));
    }
    let mut out: Vec<i64> = report
        .arrivals_unix_us
        .iter()
        .map(|&t| base.offset_ms(t))
        .collect();
    out.sort_unstable();
    Ok(out)
}

async fn get_json<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    url: &str,
) -> Result<T, String> {
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("GET {url}: status {status}"));
    }
    response
        .json()
        .await
        .map_err(|e| format!("GET {url}: unexpected answer: {e}"))
}

/// One `ObservedCall` per operation, classified by the service's `x-faultline-source` tag.
pub fn calls(record: &WorkloadRecord) -> Vec<ObservedCall> {
    record
        .ops
        .iter()
        .map(|op| {
            let seen = match record.tags.get(op.tag as usize).map(String::as_str) {
                Some("live") => CallSeen::Live,
                Some("fallback-error") => CallSeen::FallbackError,
                Some("fallback-open") => CallSeen::FallbackOpen,
                _ => CallSeen::Untagged,
            };
            let intended_ms = (op.intended_us / 1000) as i64;
            let done_ms = ((op.intended_us + op.latency_us) / 1000) as i64;
            ObservedCall(intended_ms, done_ms, seen, op.outcome.is_ok())
        })
        .collect()
}

fn state_of(state: State) -> BreakerState {
    match state {
        State::Closed => BreakerState::Closed,
        State::Open => BreakerState::Open,
        State::HalfOpen => BreakerState::HalfOpen,
    }
}
