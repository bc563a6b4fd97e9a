//! Live breaker states for the progress view: once a tick, ask each service that owns a judged
//! breaker for its `/state` and announce transitions not seen yet.
//!
//! invariant: nothing here is evidence; verdicts use what `collect` reads after the run. A slow or
//! failing poll is skipped, never retried within a tick, so it cannot delay the ticks.

use std::time::Duration;

use super::collect::TimeBase;
use crate::events::{Progress, RunEvent};
use crate::plan::{Assertion, Plan};
use faultline_targets::playback::StateReport;

/// Well under a tick: a poll that takes longer is dropped for this tick.
const POLL_TIMEOUT: Duration = Duration::from_millis(300);

struct Watched {
    service: String,
    breaker: String,
    url: String,
    seen: usize,
}

pub struct BreakerWatch {
    client: reqwest::Client,
    watched: Vec<Watched>,
}

impl BreakerWatch {
    /// `None` when the plan judges no breaker.
    pub fn new(plan: &Plan) -> Option<BreakerWatch> {
        let mut watched: Vec<Watched> = Vec::new();
        for assertion in &plan.assertions {
            let (service, breaker) = match assertion {
                Assertion::Breaker(a) => (&a.service, &a.breaker),
                Assertion::Fallback(a) => (&a.service, &a.breaker),
                _ => continue,
            };
            let known = watched
                .iter()
                .any(|w| &w.service == service && &w.breaker == breaker);
            if let (false, Some(node)) = (known, plan.node(service)) {
                let url = format!("http://{}/state", node.socket());
                watched.push(Watched {
                    service: service.clone(),
                    breaker: breaker.clone(),
                    url,
                    seen: 0,
                });
            }
        }
        let client = reqwest::Client::builder()
            .timeout(POLL_TIMEOUT)
            .build()
            .ok()?;
        (!watched.is_empty()).then_some(BreakerWatch { client, watched })
    }

    pub async fn poll(&mut self, base: TimeBase, progress: &dyn Progress) {
        for w in &mut self.watched {
            let Ok(response) = self.client.get(&w.url).send().await else {
                continue;
            };
            let Ok(state) = response.json::<StateReport>().await else {
                continue;
            };
            let Some(snapshot) = state.breakers.get(&w.breaker) else {
                continue;
            };
            for t in snapshot.transitions.iter().skip(w.seen) {
                let at = Duration::from_millis(base.offset_ms(t.at_unix_us).max(0) as u64);
                // As the service names it (`half_open`), in the view's upper case.
                let to = serde_json::to_value(t.to)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_uppercase))
                    .unwrap_or_default();
                progress.event(RunEvent::BreakerTransition {
                    service: w.service.clone(),
                    breaker: w.breaker.clone(),
                    to,
                    at,
                });
            }
            w.seen = w.seen.max(snapshot.transitions.len());
        }
    }
}
