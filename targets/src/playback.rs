//! The playback service (seed 000's playback path): track metadata through a Redis cache, plus a
//! next-up list from the recommendations service behind a circuit breaker with a fallback.

mod cache;
mod downstream;
mod metrics;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::net::TcpListener;

pub use cache::CacheResult;

use crate::breaker::{self, Breaker, Clock, SystemClock};
use crate::config::{Fallback, PlaybackConfig};
use crate::errors::Error;
use cache::TrackCache;
use downstream::{NextUp, Recommender};
use metrics::Metrics;

/// Name of the breaker guarding the recommendations calls, as keyed in `/state`.
pub const RECOMMENDATIONS_BREAKER: &str = "recommendations";

/// Response header saying where next-up came from: `live`, `fallback-error` or `fallback-open`.
pub const SOURCE_HEADER: &str = "x-faultline-source";

/// What playback serves when recommendations are unavailable (seed 000: popular tracks).
pub const POPULAR: [&str; 5] = [
    "popular-0",
    "popular-1",
    "popular-2",
    "popular-3",
    "popular-4",
];

/// Where the next-up list came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Live,
    Fallback,
}

/// Why the fallback was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The breaker refused: no call was made.
    BreakerOpen,
    /// The call was made and failed.
    DownstreamError,
}

/// Body of `GET /play/{user}/{track}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlayResponse {
    pub user: String,
    pub track: Value,
    pub next_up: Vec<String>,
    pub degraded: bool,
    pub source: Source,
    pub reason: Option<Reason>,
    pub cache: CacheResult,
}

/// Body of `GET /state`: what the service says about itself (judged against downstream evidence).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateReport {
    pub breakers: BTreeMap<String, breaker::Snapshot>,
    /// 0 normal; 1 recommendations degraded (breaker not closed).
    pub degradation_level: u8,
    pub degraded_features: Vec<String>,
}

/// The playback service's shared state.
pub struct Playback {
    fallback: Fallback,
    cache: TrackCache,
    recommender: Recommender,
    breaker: Arc<Breaker>,
    metrics: Metrics,
    registry: Registry,
}

impl Playback {
    /// Validates `config` and builds the service. Connects to Redis lazily, in the background.
    pub fn new(config: PlaybackConfig) -> Result<Arc<Self>, Error> {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// As [`Playback::new`], with the breaker reading time from `clock`.
    pub fn with_clock(config: PlaybackConfig, clock: Arc<dyn Clock>) -> Result<Arc<Self>, Error> {
        config.validate().map_err(Error::Invalid)?;
        let (metrics, registry) = Metrics::new();
        let hook_metrics = metrics.clone();
        let breaker = Arc::new(
            Breaker::with_clock(RECOMMENDATIONS_BREAKER, config.breaker.clone(), clock)
                .on_transition(Box::new(move |transition| {
                    hook_metrics.transition(transition)
                })),
        );
        let cache = TrackCache::new(&config.redis, config.cache_ttl.0).map_err(Error::Invalid)?;
        let recommender = Recommender::new(
            &config.recommendations_url,
            config.call_timeout.0,
            breaker.clone(),
            metrics.clone(),
        )?;
        Ok(Arc::new(Playback {
            fallback: config.fallback,
            cache,
            recommender,
            breaker,
            metrics,
            registry,
        }))
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/play/{user}/{track}", get(play))
            .route("/state", get(state))
            .route("/health", get(|| async { "ok" }))
            .route("/metrics", get(render_metrics))
            .with_state(self)
    }

    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    pub fn state_report(&self) -> StateReport {
        let snapshot = self.breaker.snapshot();
        let degraded = snapshot.state != breaker::State::Closed;
        StateReport {
            breakers: BTreeMap::from([(RECOMMENDATIONS_BREAKER.to_string(), snapshot)]),
            degradation_level: u8::from(degraded),
            degraded_features: if degraded {
                vec![RECOMMENDATIONS_BREAKER.to_string()]
            } else {
                vec![]
            },
        }
    }
}

async fn play(
    State(service): State<Arc<Playback>>,
    Path((user, track)): Path<(String, String)>,
) -> Response {
    let (metadata, cache) = service.cache.lookup(&track).await;
    service.metrics.cache(cache.as_str());
    let (next_up, header, reason) = match service.recommender.next_up(&user).await {
        NextUp::Live(items) => (Some(items), "live", None),
        NextUp::Failed => (None, "fallback-error", Some(Reason::DownstreamError)),
        NextUp::Rejected => (None, "fallback-open", Some(Reason::BreakerOpen)),
    };
    service.metrics.request(header);
    let (status, next_up) = match (next_up, service.fallback) {
        (Some(items), _) => (StatusCode::OK, items),
        (None, Fallback::Popular) => (StatusCode::OK, POPULAR.map(String::from).to_vec()),
        (None, Fallback::None) => (StatusCode::SERVICE_UNAVAILABLE, Vec::new()),
    };
    let body = PlayResponse {
        user,
        track: metadata,
        next_up,
        degraded: reason.is_some(),
        source: if reason.is_some() {
            Source::Fallback
        } else {
            Source::Live
        },
        reason,
        cache,
    };
    (status, [(SOURCE_HEADER, header)], Json(body)).into_response()
}

async fn state(State(service): State<Arc<Playback>>) -> Json<StateReport> {
    Json(service.state_report())
}

async fn render_metrics(State(service): State<Arc<Playback>>) -> Response {
    crate::metrics::render(&service.registry)
}

/// Serves the playback service on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    config: PlaybackConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    Playback::new(config)?.serve(listener, shutdown).await
}

impl Playback {
    /// Serves this service on `listener` until `shutdown` resolves.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        // Start connecting now so the cache is usually ready before the first request.
        self.cache.connect_in_background();
        crate::server::serve(listener, self.router(), shutdown).await
    }
}
