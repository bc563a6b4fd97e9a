//! The recommendations call, guarded by the breaker and bounded by `call_timeout`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Url;
use tokio::time::timeout;

use super::metrics::Metrics;
use crate::breaker::{Breaker, Outcome};
use crate::errors::Error;
use crate::recommendations::RecommendationsBody;

/// What came of asking for the next-up list.
#[derive(Debug)]
pub(crate) enum NextUp {
    /// The call succeeded: these are the recommendations.
    Live(Vec<String>),
    /// The call was made and failed (error status, bad body, connect error, timeout).
    Failed,
    /// The breaker refused: no call was made.
    Rejected,
}

pub(crate) struct Recommender {
    client: reqwest::Client,
    base: Url,
    call_timeout: Duration,
    breaker: Arc<Breaker>,
    metrics: Metrics,
}

impl Recommender {
    pub(crate) fn new(
        base: &str,
        call_timeout: Duration,
        breaker: Arc<Breaker>,
        metrics: Metrics,
    ) -> Result<Self, Error> {
        let base = Url::parse(base).map_err(|error| {
            Error::Invalid(format!(
                "`recommendations_url` `{base}` is not a URL ({error})"
            ))
        })?;
        // No idle connections are kept, so EVERY call opens a new TCP connection. The harness
        // injects Toxiproxy toxics whose `toxicity` (the probability a toxic applies) is drawn per
        // connection; with one connection per call, toxicity applies per call, which is what an
        // experiment's "30% of calls fail" means. A pooled client would put every call on one
        // connection and turn toxicity into all-or-nothing. The cost is one TIME_WAIT socket per
        // call; Linux reuses them for loopback connects (tcp_tw_reuse defaults to 2 = loopback).
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            // Lab traffic is loopback only: never route it through a proxy from the environment.
            .no_proxy()
            .build()
            .map_err(Error::HttpClient)?;
        Ok(Recommender {
            client,
            base,
            call_timeout,
            breaker,
            metrics,
        })
    }

    pub(crate) async fn next_up(&self, user: &str) -> NextUp {
        let Ok(permit) = self.breaker.try_acquire() else {
            return NextUp::Rejected;
        };
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().push("recommendations").push(user);
        }
        let (client, breaker, metrics, call_timeout) = (
            self.client.clone(),
            self.breaker.clone(),
            self.metrics.clone(),
            self.call_timeout,
        );
        // The call runs in its own task so its outcome is recorded even if our client hangs up
        // mid-request: a permit dropped unrecorded would leave half-open waiting forever.
        let call = tokio::spawn(async move {
            let started = Instant::now();
            let items = match timeout(call_timeout, fetch(&client, url)).await {
                Ok(Ok(items)) => Some(items),
                Ok(Err(_)) | Err(_) => None,
            };
            let outcome = if items.is_some() {
                Outcome::Success
            } else {
                Outcome::Failure
            };
            breaker.record(permit, outcome, started.elapsed());
            metrics.downstream_call(items.is_some());
            items
        });
        match call.await {
            Ok(Some(items)) => NextUp::Live(items),
            Ok(None) | Err(_) => NextUp::Failed,
        }
    }
}

async fn fetch(client: &reqwest::Client, url: Url) -> Result<Vec<String>, reqwest::Error> {
    let response = client.get(url).send().await?.error_for_status()?;
    Ok(response.json::<RecommendationsBody>().await?.items)
}
