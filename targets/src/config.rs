//! Configuration of the reference services: the types the harness writes into experiment files and
//! hands to the services as JSON. Field doc comments double as the experiment reference docs.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::errors::Error;

/// A duration written the human way (`250ms`, `30s`, `1m 30s`); an integer is read as milliseconds.
/// Always written back as a humantime string so configs round-trip readably.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub const fn from_millis(ms: u64) -> Self {
        HumanDuration(Duration::from_millis(ms))
    }

    pub const fn from_secs(secs: u64) -> Self {
        HumanDuration(Duration::from_secs(secs))
    }
}

impl From<Duration> for HumanDuration {
    fn from(duration: Duration) -> Self {
        HumanDuration(duration)
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // deserialize_any so YAML/JSON strings and integers both reach the visitor.
        deserializer.deserialize_any(DurationVisitor)
    }
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = HumanDuration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as `250ms` or `30s`, or an integer number of milliseconds")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<HumanDuration, E> {
        let trimmed = text.trim();
        if trimmed.starts_with('-') {
            return Err(E::custom(format!(
                "`{text}` is negative: durations are at least `0`"
            )));
        }
        humantime::parse_duration(trimmed)
            .map(HumanDuration)
            .map_err(|error| {
                E::custom(format!(
                    "`{text}` is not a duration ({error}; write e.g. `250ms`, `30s`)"
                ))
            })
    }

    fn visit_u64<E: de::Error>(self, ms: u64) -> Result<HumanDuration, E> {
        Ok(HumanDuration::from_millis(ms))
    }

    fn visit_i64<E: de::Error>(self, ms: i64) -> Result<HumanDuration, E> {
        u64::try_from(ms)
            .map(HumanDuration::from_millis)
            .map_err(|_| E::custom(format!("`{ms}` is negative: durations are at least `0`")))
    }
}

/// What the playback service serves as the next-up list when recommendations are unavailable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    /// A static list of popular tracks, answered with 200 and `degraded: true` (seed 000's fallback).
    #[default]
    Popular,
    /// No fallback: the request fails with 503 (the negative control for 000-DEGRADE).
    None,
}

/// The window over which the breaker computes failure and slow-call rates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerWindow {
    /// Outcomes completed within the last this-long, e.g. `{ time: 10s }`.
    Time(HumanDuration),
    /// The last this-many outcomes, e.g. `{ calls: 100 }`.
    Calls(u32),
}

impl fmt::Display for BreakerWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BreakerWindow::Time(duration) => write!(f, "{duration} window"),
            BreakerWindow::Calls(calls) => write!(f, "{calls}-call window"),
        }
    }
}

/// A circuit breaker. Defaults are seed 000's recommendation-client breaker (000-CB): open when more
/// than 50% of calls fail in a 10 s window, stay open 30 s, let 5 calls through half-open, close
/// after 3 consecutive successes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Window over which rates are computed: `{ time: 10s }` or `{ calls: 100 }`. Default `{ time: 10s }`.
    pub window: BreakerWindow,
    /// Percentage (0..=100) of failed calls in the window ABOVE which the breaker opens. Default `50`.
    pub failure_rate_threshold: f64,
    /// Fewest calls in the window before the breaker decides anything. Default `10`.
    pub minimum_calls: u32,
    /// Fewest failed calls in the window before the breaker may open (001-CB's "at least 10 failures"). Default `0`.
    pub minimum_failures: u32,
    /// A call taking longer than this counts as slow (in addition to its success or failure). Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slow_call_duration: Option<HumanDuration>,
    /// Percentage (0..=100) of slow calls in the window AT OR ABOVE which the breaker opens; a slow call
    /// in half-open reopens it. Needs `slow_call_duration`. Default: none (slowness never opens it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slow_call_rate_threshold: Option<f64>,
    /// How long the breaker stays open before letting trial calls through. Default `30s`.
    pub open_for: HumanDuration,
    /// Trial calls permitted while half-open; further calls are rejected. Default `5`.
    pub half_open_max_calls: u32,
    /// Consecutive successful trial calls that close the breaker again. Default `3`.
    pub close_after_successes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            window: BreakerWindow::Time(HumanDuration::from_secs(10)),
            failure_rate_threshold: 50.0,
            minimum_calls: 10,
            minimum_failures: 0,
            slow_call_duration: None,
            slow_call_rate_threshold: None,
            open_for: HumanDuration::from_secs(30),
            half_open_max_calls: 5,
            close_after_successes: 3,
        }
    }
}

impl BreakerConfig {
    /// Checks what serde cannot: ranges and combinations. The message names the field and value.
    pub fn validate(&self) -> Result<(), String> {
        check_percent("failure_rate_threshold", self.failure_rate_threshold)?;
        if let Some(rate) = self.slow_call_rate_threshold {
            check_percent("slow_call_rate_threshold", rate)?;
            if self.slow_call_duration.is_none() {
                return Err(
                    "`slow_call_rate_threshold` is set but `slow_call_duration` is not: say which calls are slow"
                        .to_string(),
                );
            }
        }
        match self.window {
            BreakerWindow::Time(duration) if duration.0.is_zero() => {
                return Err("`window.time` must be longer than `0s`".to_string());
            }
            BreakerWindow::Calls(0) => {
                return Err("`window.calls` must be at least `1`".to_string());
            }
            BreakerWindow::Calls(calls) if self.minimum_calls > calls => {
                return Err(format!(
                    "`minimum_calls` `{}` exceeds the `{calls}`-call window: the breaker could never open",
                    self.minimum_calls
                ));
            }
            _ => {}
        }
        for (name, value) in [
            ("minimum_calls", self.minimum_calls),
            ("half_open_max_calls", self.half_open_max_calls),
            ("close_after_successes", self.close_after_successes),
        ] {
            if value == 0 {
                return Err(format!("`{name}` must be at least `1`"));
            }
        }
        if self.close_after_successes > self.half_open_max_calls {
            return Err(format!(
                "`close_after_successes` `{}` exceeds `half_open_max_calls` `{}`: the breaker could never close",
                self.close_after_successes, self.half_open_max_calls
            ));
        }
        if self.open_for.0.is_zero() {
            return Err("`open_for` must be longer than `0s`".to_string());
        }
        Ok(())
    }
}

fn check_percent(name: &str, value: f64) -> Result<(), String> {
    if value.is_finite() && (0.0..=100.0).contains(&value) {
        Ok(())
    } else {
        Err(format!("`{name}` `{value}` is outside 0..=100"))
    }
}

fn default_call_timeout() -> HumanDuration {
    HumanDuration::from_millis(250)
}

fn default_cache_ttl() -> HumanDuration {
    HumanDuration::from_secs(300)
}

/// The playback service: Redis-cached track metadata plus a next-up list from the recommendations
/// service, guarded by a circuit breaker (seed 000's playback path).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaybackConfig {
    /// Address of the Redis cache, `ip:port`; filled in by the harness from the topology.
    pub redis: String,
    /// Base URL of the recommendations service, e.g. `http://127.0.2.1:20001`; filled in by the
    /// harness (it points at a Toxiproxy proxy).
    pub recommendations_url: String,
    /// A recommendations call slower than this is abandoned and counts as a failure. Default `250ms`.
    #[serde(default = "default_call_timeout")]
    pub call_timeout: HumanDuration,
    /// The breaker guarding the recommendations calls. Defaults to seed 000's (000-CB).
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// What to serve when recommendations are unavailable: `popular` (default) or `none`.
    #[serde(default)]
    pub fallback: Fallback,
    /// Expiry of cached track metadata in Redis. Default `300s`.
    #[serde(default = "default_cache_ttl")]
    pub cache_ttl: HumanDuration,
}

impl PlaybackConfig {
    /// A config with every optional field at its default.
    pub fn new(redis: impl Into<String>, recommendations_url: impl Into<String>) -> Self {
        PlaybackConfig {
            redis: redis.into(),
            recommendations_url: recommendations_url.into(),
            call_timeout: default_call_timeout(),
            breaker: BreakerConfig::default(),
            fallback: Fallback::default(),
            cache_ttl: default_cache_ttl(),
        }
    }

    /// Reads, parses and validates a JSON config file.
    pub fn from_json_file(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let config: PlaybackConfig = read_json(path)?;
        config.validate().map_err(|message| Error::InvalidConfig {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(config)
    }

    /// Checks ranges and addresses; the message names the field and value.
    pub fn validate(&self) -> Result<(), String> {
        if self.redis.trim().is_empty() {
            return Err("`redis` is empty: give the cache's `ip:port`".to_string());
        }
        let url = reqwest::Url::parse(&self.recommendations_url).map_err(|error| {
            format!(
                "`recommendations_url` `{}` is not a URL ({error})",
                self.recommendations_url
            )
        })?;
        // The client is built without TLS: only plain HTTP inside the lab.
        if url.scheme() != "http" {
            return Err(format!(
                "`recommendations_url` `{}` must be an `http://` URL",
                self.recommendations_url
            ));
        }
        if self.call_timeout.0.is_zero() {
            return Err("`call_timeout` must be longer than `0s`".to_string());
        }
        if self.cache_ttl.0 < Duration::from_secs(1) {
            return Err(format!(
                "`cache_ttl` `{}` is under `1s`, the shortest Redis expiry",
                self.cache_ttl
            ));
        }
        self.breaker
            .validate()
            .map_err(|message| format!("breaker: {message}"))
    }
}

/// The recommendations service: the downstream dependency the playback breaker guards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecommendationsConfig {
    /// How many items each recommendations answer holds. Default `10`.
    pub items: u32,
}

impl Default for RecommendationsConfig {
    fn default() -> Self {
        RecommendationsConfig { items: 10 }
    }
}

impl RecommendationsConfig {
    /// Reads and parses a JSON config file.
    pub fn from_json_file(path: impl AsRef<Path>) -> Result<Self, Error> {
        read_json(path.as_ref())
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::ReadConfig {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| Error::ParseConfig {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_are_seed_000s_breaker() {
        let config: PlaybackConfig = serde_json::from_value(
            json!({"redis": "127.0.0.1:6379", "recommendations_url": "http://127.0.0.1:1"}),
        )
        .expect("minimal config parses");
        assert_eq!(
            config,
            PlaybackConfig::new("127.0.0.1:6379", "http://127.0.0.1:1")
        );
        assert_eq!(
            config.breaker.window,
            BreakerWindow::Time(HumanDuration::from_secs(10))
        );
        assert_eq!(config.call_timeout, HumanDuration::from_millis(250));
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn durations_accept_strings_and_millis_and_write_strings() {
        let config: BreakerConfig = serde_json::from_value(
            json!({"window": {"time": "2s"}, "open_for": 1500, "slow_call_duration": "40ms", "slow_call_rate_threshold": 80}),
        )
        .expect("parses");
        assert_eq!(config.open_for, HumanDuration::from_millis(1500));
        let written = serde_json::to_value(&config).expect("serializes");
        assert_eq!(written["window"], json!({"time": "2s"}));
        assert_eq!(written["open_for"], json!("1s 500ms"));
        let back: BreakerConfig = serde_json::from_value(written).expect("round-trips");
        assert_eq!(back, config);
    }

    #[test]
    fn bad_input_is_an_error_with_the_value() {
        let cases = [
            (
                json!({"window": {"calls": 100}, "bogus": 1}),
                "unknown field `bogus`",
            ),
            (json!({"open_for": "soon"}), "`soon` is not a duration"),
            (json!({"open_for": -5}), "`-5` is negative"),
            (json!({"window": {"days": 1}}), "unknown variant `days`"),
        ];
        for (input, expected) in cases {
            let error = serde_json::from_value::<BreakerConfig>(input.clone())
                .expect_err("must be rejected")
                .to_string();
            assert!(error.contains(expected), "{input}: {error}");
        }
    }

    #[test]
    fn validate_names_the_field() {
        let base = BreakerConfig::default();
        let cases = [
            (
                BreakerConfig {
                    failure_rate_threshold: 150.0,
                    ..base.clone()
                },
                "`failure_rate_threshold` `150` is outside 0..=100",
            ),
            (
                BreakerConfig {
                    close_after_successes: 6,
                    ..base.clone()
                },
                "`close_after_successes` `6` exceeds",
            ),
            (
                BreakerConfig {
                    minimum_calls: 0,
                    ..base.clone()
                },
                "`minimum_calls` must be at least `1`",
            ),
            (
                BreakerConfig {
                    window: BreakerWindow::Calls(5),
                    ..base.clone()
                },
                "`minimum_calls` `10` exceeds",
            ),
            (
                BreakerConfig {
                    slow_call_rate_threshold: Some(80.0),
                    ..base.clone()
                },
                "`slow_call_duration` is not",
            ),
        ];
        for (config, expected) in cases {
            let error = config.validate().expect_err("must be rejected");
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn recommendations_default_items() {
        let config: RecommendationsConfig = serde_json::from_value(json!({})).expect("parses");
        assert_eq!(config.items, 10);
    }
}
