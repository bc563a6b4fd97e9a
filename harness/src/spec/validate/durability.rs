//! Validation of the durability, failover and availability assertions: `failover`, `rpo`,
//! `rejoins_as_replica`, `rto`, `local_quorum_survival` and `stale_reads`.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{Resolver, Topology};
use crate::plan::*;
use crate::spec::AssertionSpec;
use crate::units::parse_percent;

/// How long an old primary may take to come back as a replica, unless the experiment says.
const DEFAULT_REJOIN_WITHIN: Duration = Duration::from_secs(30);
/// How far a client's failover time and the cluster's log may differ, unless the experiment
/// says: the client's reconnect probe interval plus a verification round trip fit well inside.
const DEFAULT_AGREE_WITHIN: Duration = Duration::from_secs(1);

/// The assertion's `name`, or the default derived from its kind and targets.
fn verdict_name(spec: &AssertionSpec, default: String) -> String {
    spec.name.as_ref().map_or(default, |n| n.value.clone())
}

impl Resolver<'_> {
    pub(super) fn failover(
        &mut self,
        spec: &AssertionSpec,
        workload: String,
        faults: &BTreeSet<String>,
    ) -> Option<Assertion> {
        let at = spec.kind.referenced;
        let fault = self.fault_ref(spec, faults)?;
        let max = self.require(&spec.max, &at, "failover", "max")?;
        let max = self.duration(max, "max")?;
        let agree_within = match &spec.agree_within {
            Some(d) => self.duration(d, "agree_within")?,
            None => DEFAULT_AGREE_WITHIN,
        };
        let name = verdict_name(spec, format!("failover/{workload}/{fault}"));
        Some(Assertion::Failover(FailoverAssertion {
            name,
            workload,
            fault,
            max,
            agree_within,
        }))
    }

    /// The named fault, or a report that it does not exist.
    fn fault_ref(&mut self, spec: &AssertionSpec, faults: &BTreeSet<String>) -> Option<String> {
        let fault = self.require(
            &spec.fault,
            &spec.kind.referenced,
            &spec.kind.value,
            "fault",
        )?;
        if !faults.contains(&fault.value) {
            self.dangling(&fault.referenced, "fault", &fault.value, faults.iter());
            return None;
        }
        Some(fault.value.clone())
    }

    pub(super) fn rto(
        &mut self,
        spec: &AssertionSpec,
        workload: String,
        faults: &BTreeSet<String>,
    ) -> Option<Assertion> {
        let fault = self.fault_ref(spec, faults)?;
        let at = spec.kind.referenced;
        let success_above = self.require(&spec.success_above, &at, "rto", "success_above")?;
        let success_above = self.unit(success_above, "success_above", parse_percent)?;
        let sustained = match &spec.sustained {
            Some(d) => self.duration(d, "sustained")?,
            None => Duration::from_secs(5),
        };
        let max = self.require(&spec.max, &at, "rto", "max")?;
        let max = self.duration(max, "max")?;
        let name = verdict_name(spec, format!("rto/{workload}/{fault}"));
        Some(Assertion::Rto(RtoAssertion {
            name,
            workload,
            fault,
            success_above,
            sustained,
            max,
        }))
    }

    pub(super) fn survival(
        &mut self,
        spec: &AssertionSpec,
        workload: String,
        faults: &BTreeSet<String>,
    ) -> Option<Assertion> {
        let fault = self.fault_ref(spec, faults)?;
        let at = spec.kind.referenced;
        let bound = self.require(
            &spec.max_error_rate,
            &at,
            "local_quorum_survival",
            "max_error_rate",
        )?;
        let max_error_rate = self.unit(bound, "max_error_rate", parse_percent)?;
        let name = verdict_name(spec, format!("survival/{workload}/{fault}"));
        Some(Assertion::LocalQuorumSurvival(SurvivalAssertion {
            name,
            workload,
            fault,
            max_error_rate,
        }))
    }

    pub(super) fn stale_reads(
        &mut self,
        spec: &AssertionSpec,
        workload: String,
        faults: &BTreeSet<String>,
    ) -> Option<Assertion> {
        // Both checked before giving up, so both mistakes are reported at once.
        let fault = match &spec.fault {
            Some(_) => self.fault_ref(spec, faults).map(Some),
            None => Some(None),
        };
        let max_stale_rate = match &spec.max_stale_rate {
            Some(r) => self.unit(r, "max_stale_rate", parse_percent),
            None => Some(0.0),
        };
        let (fault, max_stale_rate) = (fault?, max_stale_rate?);
        let name = verdict_name(
            spec,
            match &fault {
                Some(f) => format!("stale-reads/{workload}/{f}"),
                None => format!("stale-reads/{workload}"),
            },
        );
        Some(Assertion::StaleReads(StaleReadsAssertion {
            name,
            workload,
            fault,
            max_stale_rate,
        }))
    }

    pub(super) fn rpo(&mut self, spec: &AssertionSpec, workload: String) -> Option<Assertion> {
        let max_lost = spec.max_lost.as_ref().map(|m| m.value);
        let max_lost_window = match &spec.max_lost_window {
            Some(d) => Some(self.duration(d, "max_lost_window")?),
            None => None,
        };
        if max_lost.is_none() && max_lost_window.is_none() {
            self.diags.error_hint(
                &spec.kind.referenced,
                "this `rpo` sets no limit",
                "give `max_lost` (a count, e.g. `0`) or `max_lost_window` (e.g. `1s`)",
            );
            return None;
        }
        let name = verdict_name(spec, format!("rpo/{workload}"));
        Some(Assertion::Rpo(RpoAssertion {
            name,
            workload,
            max_lost,
            max_lost_window,
        }))
    }

    pub(super) fn rejoin(&mut self, spec: &AssertionSpec, topo: &Topology) -> Option<Assertion> {
        let at = spec.kind.referenced;
        let node = self.require(&spec.node, &at, "rejoins_as_replica", "node")?;
        let node = self
            .node_of_kinds(node, &[NodeKind::Redis], topo)?
            .name
            .clone();
        let within = match &spec.within {
            Some(d) => self.duration(d, "within")?,
            None => DEFAULT_REJOIN_WITHIN,
        };
        let name = verdict_name(spec, format!("rejoin/{node}"));
        Some(Assertion::RejoinsAsReplica(RejoinAssertion {
            name,
            node,
            within,
        }))
    }
}
