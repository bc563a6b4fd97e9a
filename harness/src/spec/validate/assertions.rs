//! Validation of `assertions`: kinds, fields per kind, references and documented values.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{Resolver, Topology};
use crate::plan::*;
use crate::spec::{AssertionSpec, BreakerDocSpec};
use crate::units::parse_percent;

impl Resolver<'_> {
    // ---- assertions -----------------------------------------------------------------------

    pub(super) fn assertion(
        &mut self,
        spec: &AssertionSpec,
        topo: &Topology,
        workloads: &BTreeSet<String>,
        faults: &BTreeSet<String>,
    ) -> Option<Assertion> {
        let kind = spec.kind.value.as_str();
        let allowed: &[&str] = match kind {
            "breaker" => &[
                "service",
                "breaker",
                "downstream",
                "workload",
                "documented",
                "tolerance",
            ],
            "fallback" => &["service", "breaker", "workload"],
            "slo" => &["workload", "phase", "max_error_rate", "max_p99", "max_p50"],
            "failover" => &["workload", "fault", "max", "agree_within"],
            "rpo" => &["workload", "max_lost", "max_lost_window"],
            "rejoins_as_replica" => &["node", "within"],
            "rto" => &["workload", "fault", "success_above", "sustained", "max"],
            "local_quorum_survival" => &["workload", "fault", "max_error_rate"],
            "stale_reads" => &["workload", "fault", "max_stale_rate"],
            "retries" => &["workload", "min_retries"],
            _ => {
                self.unknown(
                    &spec.kind,
                    "assertion kind",
                    &[
                        "breaker",
                        "fallback",
                        "slo",
                        "failover",
                        "rpo",
                        "rejoins_as_replica",
                        "rto",
                        "local_quorum_survival",
                        "stale_reads",
                        "retries",
                    ],
                );
                return None;
            }
        };
        let present = [
            ("service", spec.service.as_ref().map(|v| v.referenced)),
            ("breaker", spec.breaker.as_ref().map(|v| v.referenced)),
            ("downstream", spec.downstream.as_ref().map(|v| v.referenced)),
            ("workload", spec.workload.as_ref().map(|v| v.referenced)),
            (
                "documented",
                spec.documented.as_ref().map(|v| v.open_for.referenced),
            ),
            ("tolerance", spec.tolerance.as_ref().map(|v| v.referenced)),
            ("phase", spec.phase.as_ref().map(|v| v.referenced)),
            (
                "max_error_rate",
                spec.max_error_rate.as_ref().map(|v| v.referenced),
            ),
            ("max_p99", spec.max_p99.as_ref().map(|v| v.referenced)),
            ("max_p50", spec.max_p50.as_ref().map(|v| v.referenced)),
            ("fault", spec.fault.as_ref().map(|v| v.referenced)),
            ("max", spec.max.as_ref().map(|v| v.referenced)),
            (
                "agree_within",
                spec.agree_within.as_ref().map(|v| v.referenced),
            ),
            ("max_lost", spec.max_lost.as_ref().map(|v| v.referenced)),
            (
                "max_lost_window",
                spec.max_lost_window.as_ref().map(|v| v.referenced),
            ),
            ("node", spec.node.as_ref().map(|v| v.referenced)),
            ("within", spec.within.as_ref().map(|v| v.referenced)),
            (
                "success_above",
                spec.success_above.as_ref().map(|v| v.referenced),
            ),
            ("sustained", spec.sustained.as_ref().map(|v| v.referenced)),
            (
                "max_stale_rate",
                spec.max_stale_rate.as_ref().map(|v| v.referenced),
            ),
            (
                "min_retries",
                spec.min_retries.as_ref().map(|v| v.referenced),
            ),
        ];
        self.misplaced(&present, allowed, &format!("`{kind}` assertion"));
        let at = spec.kind.referenced;
        if kind == "rejoins_as_replica" {
            return self.rejoin(spec, topo);
        }
        let workload = self
            .require(&spec.workload, &at, kind, "workload")
            .and_then(|w| {
                if workloads.contains(&w.value) {
                    Some(w.value.clone())
                } else {
                    self.dangling(&w.referenced, "workload", &w.value, workloads.iter());
                    None
                }
            });
        match kind {
            "slo" => {
                let phase = match spec.phase.as_ref().map(|p| p.value.as_str()) {
                    None | Some("all") => PhaseSel::All,
                    Some("before") => PhaseSel::Before,
                    Some("during") => PhaseSel::During,
                    Some("after") => PhaseSel::After,
                    Some(_) => {
                        self.unknown(
                            spec.phase.as_ref()?,
                            "phase",
                            &["before", "during", "after", "all"],
                        );
                        PhaseSel::All
                    }
                };
                let max_error_rate = match &spec.max_error_rate {
                    Some(r) => Some(self.unit(r, "max_error_rate", parse_percent)?),
                    None => None,
                };
                let max_p99 = match &spec.max_p99 {
                    Some(d) => Some(self.duration(d, "max_p99")?),
                    None => None,
                };
                let max_p50 = match &spec.max_p50 {
                    Some(d) => Some(self.duration(d, "max_p50")?),
                    None => None,
                };
                if max_error_rate.is_none() && max_p99.is_none() && max_p50.is_none() {
                    self.diags.error_hint(
                        &at,
                        "this `slo` sets no limit",
                        "give `max_error_rate`, `max_p99` or `max_p50`",
                    );
                }
                let workload = workload?;
                let name = spec.name.as_ref().map_or_else(
                    || format!("slo/{workload}/{}", phase.name()),
                    |n| n.value.clone(),
                );
                Some(Assertion::Slo(SloAssertion {
                    name,
                    workload,
                    phase,
                    max_error_rate,
                    max_p99,
                    max_p50,
                }))
            }
            "failover" => self.failover(spec, workload?, faults),
            "rpo" => self.rpo(spec, workload?),
            "rto" => self.rto(spec, workload?, faults),
            "local_quorum_survival" => self.survival(spec, workload?, faults),
            "stale_reads" => self.stale_reads(spec, workload?, faults),
            "retries" => {
                let workload = workload?;
                Some(Assertion::Retries(RetriesAssertion {
                    name: spec
                        .name
                        .as_ref()
                        .map_or_else(|| format!("retries/{workload}"), |n| n.value.clone()),
                    workload,
                    min: spec.min_retries.as_ref().map_or(1, |m| m.value),
                }))
            }
            _ => {
                let service = self
                    .require(&spec.service, &at, kind, "service")
                    .and_then(|s| {
                        self.node_of_kinds(s, &[NodeKind::Playback], topo)
                            .map(|n| n.name.clone())
                    });
                let breaker = self
                    .require(&spec.breaker, &at, kind, "breaker")
                    .map(|b| b.value.clone());
                if kind == "fallback" {
                    let (service, breaker, workload) = (service?, breaker?, workload?);
                    let name = spec.name.as_ref().map_or_else(
                        || format!("fallback/{service}/{breaker}"),
                        |n| n.value.clone(),
                    );
                    return Some(Assertion::Fallback(FallbackAssertion {
                        name,
                        service,
                        breaker,
                        workload,
                    }));
                }
                let downstream = self
                    .require(&spec.downstream, &at, kind, "downstream")
                    .and_then(|d| {
                        self.node_of_kinds(d, &[NodeKind::Recommendations], topo)
                            .map(|n| n.name.clone())
                    });
                let documented = match &spec.documented {
                    Some(doc) => self.breaker_doc(doc),
                    None => {
                        self.diags.error_hint(&at, "a `breaker` assertion needs `documented`", "state the catalogue's numbers: failure_rate_above, window, open_for, half_open_calls, close_after_successes");
                        None
                    }
                };
                let tolerance = spec
                    .tolerance
                    .as_ref()
                    .map_or(Some(Duration::from_secs(1)), |t| {
                        self.duration(t, "tolerance")
                    });
                let (service, breaker, downstream, workload) =
                    (service?, breaker?, downstream?, workload?);
                let name = spec.name.as_ref().map_or_else(
                    || format!("breaker/{service}/{breaker}"),
                    |n| n.value.clone(),
                );
                Some(Assertion::Breaker(BreakerAssertion {
                    name,
                    service,
                    breaker,
                    downstream,
                    workload,
                    documented: documented?,
                    tolerance: tolerance?,
                }))
            }
        }
    }

    pub(super) fn breaker_doc(&mut self, doc: &BreakerDocSpec) -> Option<BreakerDoc> {
        let failure_rate_above =
            self.unit(&doc.failure_rate_above, "failure_rate_above", parse_percent);
        let window = match (&doc.window, &doc.window_calls) {
            (Some(w), None) => self.duration(w, "window").map(BreakerWindow::Time),
            (None, Some(n)) if n.value > 0 => Some(BreakerWindow::Calls(n.value)),
            (None, Some(n)) => {
                self.diags
                    .error(&n.referenced, "`window_calls` must be at least 1");
                None
            }
            (Some(w), Some(_)) => {
                self.diags.error(
                    &w.referenced,
                    "give either `window` (time) or `window_calls` (count), not both",
                );
                None
            }
            (None, None) => {
                self.diags.error_hint(
                    &doc.open_for.referenced,
                    "`documented` needs a window",
                    "`window: 10s` or `window_calls: 100`",
                );
                None
            }
        };
        let open_for = self.duration(&doc.open_for, "open_for");
        for (value, field) in [
            (&doc.half_open_calls, "half_open_calls"),
            (&doc.close_after_successes, "close_after_successes"),
        ] {
            if value.value == 0 {
                self.diags
                    .error(&value.referenced, format!("`{field}` must be at least 1"));
            }
        }
        if doc.close_after_successes.value > doc.half_open_calls.value {
            self.diags.error(&doc.close_after_successes.referenced, "`close_after_successes` cannot exceed `half_open_calls`: the breaker could never close");
        }
        Some(BreakerDoc {
            failure_rate_above: failure_rate_above?,
            window: window?,
            minimum_calls: doc.minimum_calls.as_ref().map_or(1, |m| m.value),
            minimum_failures: doc.minimum_failures.as_ref().map_or(0, |m| m.value),
            open_for: open_for?,
            half_open_calls: doc.half_open_calls.value,
            close_after_successes: doc.close_after_successes.value,
        })
    }
}
