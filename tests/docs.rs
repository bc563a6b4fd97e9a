//! Keeps docs/experiment-reference.md complete: every field of every experiment-format type (and
//! of the reference services' configuration) must appear there as `` `field` ``.

use faultline::spec::{
    AssertionSpec, BreakerDocSpec, ExperimentFile, FaultSpec, LoadSpec, NodeSpec, TopologySpec,
    WorkloadSpec,
};
use faultline_targets::config::{BreakerConfig, PlaybackConfig, RecommendationsConfig};
use faultline_tests::workspace_root;
use serde::de::{self, Deserialize, Deserializer, Visitor};

/// A deserializer that only records the field names serde asks for.
struct FieldNames(Vec<&'static str>);

#[derive(Debug)]
struct Stop;
impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("stop")
    }
}
impl std::error::Error for Stop {}
impl de::Error for Stop {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Stop
    }
}

impl<'de> Deserializer<'de> for &mut FieldNames {
    type Error = Stop;
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Stop> {
        self.0.extend_from_slice(fields);
        Err(Stop)
    }
    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }
    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

fn fields<T: for<'de> Deserialize<'de>>() -> Vec<&'static str> {
    let mut names = FieldNames(Vec::new());
    let _ = T::deserialize(&mut names);
    names.0
}

#[test]
fn every_field_is_documented() {
    let doc = std::fs::read_to_string(workspace_root().join("docs/experiment-reference.md"))
        .expect("reference exists");
    let types: Vec<(&str, Vec<&str>)> = vec![
        ("ExperimentFile", fields::<ExperimentFile>()),
        ("TopologySpec", fields::<TopologySpec>()),
        ("NodeSpec", fields::<NodeSpec>()),
        ("LoadSpec", fields::<LoadSpec>()),
        ("WorkloadSpec", fields::<WorkloadSpec>()),
        ("FaultSpec", fields::<FaultSpec>()),
        ("AssertionSpec", fields::<AssertionSpec>()),
        ("BreakerDocSpec", fields::<BreakerDocSpec>()),
        ("PlaybackConfig", fields::<PlaybackConfig>()),
        ("BreakerConfig", fields::<BreakerConfig>()),
        ("RecommendationsConfig", fields::<RecommendationsConfig>()),
    ];
    let mut missing = Vec::new();
    for (ty, names) in &types {
        assert!(!names.is_empty(), "could not list the fields of {ty}");
        for name in names {
            if !doc.contains(&format!("| `{name}` |")) {
                missing.push(format!("{ty}.{name}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "fields missing from docs/experiment-reference.md: {missing:?}"
    );
}
