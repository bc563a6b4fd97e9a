//! Semantic checks of a parsed experiment, resolving it into a [`Plan`] while collecting every
//! problem (unknown kinds, dangling references, misplaced fields, bad units, faults past the end).

mod assertions;
mod cassandra;
mod durability;
mod kafka;
mod schedule;
mod topology;

use serde_saphyr::Location;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use super::parse::{decode, parse_str};
use super::{At, Diagnostic, Diagnostics, ExperimentFile, Scalar};
use crate::catalogue;
use crate::plan::*;
use crate::units::parse_duration;

/// Reads, parses and validates one experiment file.
pub fn load_file(path: &Path) -> Result<Plan, Vec<Diagnostic>> {
    let label = path.display().to_string();
    let mut diags = Diagnostics::new(&label);
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) => {
            diags.error_whole_file(format!("cannot read the file: {error}"), None);
            return Err(diags.into_sorted());
        }
    };
    let Some(source) = decode(&bytes, &mut diags) else {
        return Err(diags.into_sorted());
    };
    validate_str(&label, &source)
}

/// Parses and validates experiment text; `label` names it in messages.
pub fn validate_str(label: &str, source: &str) -> Result<Plan, Vec<Diagnostic>> {
    let mut diags = Diagnostics::new(label);
    let Some(file) = parse_str(source, &mut diags) else {
        return Err(diags.into_sorted());
    };
    let plan = Resolver {
        diags: &mut diags,
        cql_writers: 0,
        reported: BTreeSet::new(),
    }
    .resolve(label, file);
    if diags.is_empty() {
        Ok(plan)
    } else {
        Err(diags.into_sorted())
    }
}

struct Resolver<'a> {
    diags: &'a mut Diagnostics,
    /// Writing CQL workloads seen so far (each gets its own key range).
    cql_writers: u64,
    /// Nodes already reported (e.g. of an unknown kind): references to them are not reported
    /// again, so one mistake gives one message.
    reported: BTreeSet<String>,
}

impl Resolver<'_> {
    fn resolve(&mut self, label: &str, file: ExperimentFile) -> Plan {
        if file.name.value.trim().is_empty() {
            self.diags.error(&file.name.referenced, "`name` is empty");
        }
        if file.verifies.is_empty() {
            self.diags.error_hint(
                &file.name.referenced,
                "`verifies` lists no catalogue id",
                "name the rows of shared/seeds/CATALOGUE.md this experiment holds a system to",
            );
        }
        for id in &file.verifies {
            if !catalogue::contains(&id.value) {
                let hint = match catalogue::closest(&id.value) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None => "ids are listed in shared/seeds/CATALOGUE.md".into(),
                };
                self.diags.error_hint(
                    &id.referenced,
                    format!("unknown catalogue id `{}`", id.value),
                    hint,
                );
            }
        }
        let duration = self
            .duration(&file.load.duration, "load duration")
            .unwrap_or_default();
        if duration.is_zero() && self.diags.is_empty() {
            self.diags.error(
                &file.load.duration.referenced,
                "the run's duration must be above zero",
            );
        }

        let (nodes, groups, proxies) = self.topology(&file);
        let kafka = self.kafka_cluster(&file, &nodes);
        let cassandra = self.cassandra_cluster(&file, &nodes);
        let topo = Topology {
            nodes: &nodes,
            groups: &groups,
            proxies: &proxies,
            kafka: kafka.as_ref(),
            cassandra: cassandra.as_ref(),
        };

        let mut workloads = Vec::new();
        let mut names = BTreeSet::new();
        for spec in &file.load.workloads {
            if !names.insert(spec.name.value.clone()) {
                self.diags.error(
                    &spec.name.referenced,
                    format!("workload `{}` is defined twice", spec.name.value),
                );
            }
            if let Some(w) = self.workload(spec, duration, &topo) {
                workloads.push(w);
            }
        }
        self.check_reads_latest_of(&file.load.workloads, &workloads);
        if file.load.workloads.is_empty() {
            self.diags.error(
                &file.load.duration.referenced,
                "`load.workloads` is empty: an experiment needs traffic",
            );
        }

        let mut faults = Vec::new();
        for (index, spec) in file.faults.iter().enumerate() {
            if let Some(f) = self.fault(index, spec, duration, &topo) {
                faults.push(f);
            }
        }

        // Every fault's name, including faults with mistakes of their own (already reported):
        // an assertion naming one is not wrong too.
        let fault_names: BTreeSet<String> = file
            .faults
            .iter()
            .enumerate()
            .map(|(i, f)| {
                f.name.as_ref().map_or_else(
                    || format!("{}-{}", f.kind.value, i + 1),
                    |n| n.value.clone(),
                )
            })
            .collect();
        let mut assertions = Vec::new();
        for spec in &file.assertions {
            if let Some(a) = self.assertion(spec, &topo, &names, &fault_names) {
                assertions.push(a);
            }
        }
        if file.assertions.is_empty() {
            self.diags.error(
                &file.name.referenced,
                "`assertions` is empty: an experiment must judge something",
            );
        }

        Plan {
            name: file.name.value,
            file: label.to_string(),
            description: file.description,
            verifies: file.verifies.into_iter().map(|id| id.value).collect(),
            duration,
            nodes,
            groups,
            proxies,
            workloads,
            faults,
            assertions,
            kafka,
            cassandra,
        }
    }

    // ---- helpers --------------------------------------------------------------------------

    fn next_cql_writer(&mut self) -> u64 {
        self.cql_writers += 1;
        self.cql_writers - 1
    }

    fn duration(&mut self, value: &At<Scalar>, field: &str) -> Option<Duration> {
        self.unit(value, field, parse_duration)
    }

    fn unit<T>(
        &mut self,
        value: &At<Scalar>,
        field: &str,
        parse: fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        match parse(&value.value.0) {
            Ok(parsed) => Some(parsed),
            Err(message) => {
                self.diags
                    .error(&value.referenced, format!("`{field}`: {message}"));
                None
            }
        }
    }

    fn require<'s, T>(
        &mut self,
        value: &'s Option<At<T>>,
        at: &Location,
        kind: &str,
        field: &str,
    ) -> Option<&'s At<T>> {
        if value.is_none() {
            self.diags.error(at, format!("`{kind}` needs `{field}`"));
        }
        value.as_ref()
    }

    /// Reports every optional field that is set but does not apply to this kind.
    fn misplaced(&mut self, present: &[(&str, Option<Location>)], allowed: &[&str], what: &str) {
        for (field, at) in present {
            if let Some(at) = at
                && !allowed.contains(field)
            {
                self.diags.error_hint(
                    at,
                    format!("`{field}` does not apply to a {what}"),
                    format!("it takes: {}", allowed.join(", ")),
                );
            }
        }
    }

    fn unknown(&mut self, value: &At<String>, what: &str, known: &[&str]) {
        self.diags.error_hint(
            &value.referenced,
            format!("unknown {what} `{}`", value.value),
            format!("known: {}", known.join(", ")),
        );
    }

    fn dangling<'k>(
        &mut self,
        at: &Location,
        what: &str,
        name: &str,
        known: impl Iterator<Item = &'k String>,
    ) {
        if self.reported.contains(name) {
            return;
        }
        let known: Vec<&str> = known.map(String::as_str).collect();
        let hint = if known.is_empty() {
            format!("no {what} is defined")
        } else {
            format!("defined: {}", known.join(", "))
        };
        self.diags
            .error_hint(at, format!("no {what} named `{name}`"), hint);
    }

    fn identifier(&mut self, name: &At<String>, what: &str) {
        let ok = !name.value.is_empty()
            && name.value.len() <= 48
            && name
                .value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            self.diags.error_hint(
                &name.referenced,
                format!("{what} name `{}` is not a simple name", name.value),
                "use letters, digits, `-` and `_` (at most 48)",
            );
        }
    }

    fn node_of_kinds<'t>(
        &mut self,
        name: &At<String>,
        kinds: &[NodeKind],
        topo: &Topology<'t>,
    ) -> Option<&'t PlannedNode> {
        let Some(node) = topo.node(&name.value) else {
            self.dangling(
                &name.referenced,
                "node",
                &name.value,
                topo.nodes.iter().map(|n| &n.name),
            );
            return None;
        };
        if !kinds.contains(&node.kind) {
            let wanted: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
            self.diags.error(
                &name.referenced,
                format!(
                    "`{}` is a `{}` node; this needs a {} node",
                    name.value,
                    node.kind.name(),
                    wanted.join(" or ")
                ),
            );
            return None;
        }
        Some(node)
    }

    fn node_or_group(&mut self, name: &At<String>, topo: &Topology) -> Option<Vec<String>> {
        if let Some(members) = topo.groups.get(&name.value) {
            return Some(members.clone());
        }
        if topo.node(&name.value).is_some() {
            return Some(vec![name.value.clone()]);
        }
        let known = topo.nodes.iter().map(|n| &n.name).chain(topo.groups.keys());
        self.dangling(&name.referenced, "node or group", &name.value, known);
        None
    }
}

struct Topology<'a> {
    nodes: &'a [PlannedNode],
    groups: &'a BTreeMap<String, Vec<String>>,
    proxies: &'a [PlannedProxy],
    kafka: Option<&'a KafkaPlan>,
    cassandra: Option<&'a CassandraPlan>,
}

impl<'a> Topology<'a> {
    fn node(&self, name: &str) -> Option<&'a PlannedNode> {
        self.nodes.iter().find(|n| n.name == name)
    }
}
