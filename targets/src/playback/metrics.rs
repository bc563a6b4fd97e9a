//! Playback's Prometheus metrics. Every label value is pre-created at zero so a scrape taken
//! before the first fault already lists every series the harness may diff against.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::breaker::{State, Transition};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToLabels {
    to: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// Handles to playback's metric families (cheap to clone: they share their values).
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    requests: Family<SourceLabels, Counter>,
    breaker_state: Gauge,
    transitions: Family<ToLabels, Counter>,
    downstream_calls: Family<OutcomeLabels, Counter>,
    cache: Family<ResultLabels, Counter>,
}

impl Metrics {
    pub(crate) fn new() -> (Self, Registry) {
        let metrics = Metrics {
            requests: Family::default(),
            breaker_state: Gauge::default(),
            transitions: Family::default(),
            downstream_calls: Family::default(),
            cache: Family::default(),
        };
        let mut registry = Registry::default();
        registry.register(
            "requests",
            "Play requests by where next-up came from: live, fallback-error, fallback-open",
            metrics.requests.clone(),
        );
        registry.register(
            "breaker_state",
            "Recommendations breaker state: 0 closed, 1 open, 2 half_open",
            metrics.breaker_state.clone(),
        );
        registry.register(
            "breaker_transitions",
            "Recommendations breaker transitions by target state",
            metrics.transitions.clone(),
        );
        registry.register(
            "downstream_calls",
            "Recommendations calls made, by outcome",
            metrics.downstream_calls.clone(),
        );
        registry.register(
            "cache",
            "Track cache lookups by result",
            metrics.cache.clone(),
        );
        for source in ["live", "fallback-error", "fallback-open"] {
            let _ = metrics.requests.get_or_create(&SourceLabels { source });
        }
        for state in [State::Closed, State::Open, State::HalfOpen] {
            let _ = metrics
                .transitions
                .get_or_create(&ToLabels { to: state.as_str() });
        }
        for outcome in ["success", "failure"] {
            let _ = metrics
                .downstream_calls
                .get_or_create(&OutcomeLabels { outcome });
        }
        for result in ["hit", "miss", "error"] {
            let _ = metrics.cache.get_or_create(&ResultLabels { result });
        }
        (metrics, registry)
    }

    pub(crate) fn request(&self, source: &'static str) {
        self.requests.get_or_create(&SourceLabels { source }).inc();
    }

    pub(crate) fn transition(&self, transition: &Transition) {
        self.breaker_state.set(transition.to.gauge_value());
        self.transitions
            .get_or_create(&ToLabels {
                to: transition.to.as_str(),
            })
            .inc();
    }

    pub(crate) fn downstream_call(&self, success: bool) {
        let outcome = if success { "success" } else { "failure" };
        self.downstream_calls
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub(crate) fn cache(&self, result: &'static str) {
        self.cache.get_or_create(&ResultLabels { result }).inc();
    }
}
