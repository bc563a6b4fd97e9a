//! The recommendations service: the downstream dependency playback's breaker guards. It logs the
//! arrival time of every recommendations request so the harness can judge breaker transitions
//! from what the downstream actually received, not only from what playback reports.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::breaker::unix_us_now;
use crate::config::RecommendationsConfig;
use crate::errors::Error;

/// Arrivals kept in memory (16 MB); later ones are only counted, in `dropped`.
pub const MAX_ARRIVALS: usize = 2_000_000;

/// Answer of `GET /recommendations/{user}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecommendationsBody {
    pub user: String,
    pub items: Vec<String>,
}

/// Answer of `GET /__faultline/arrivals`: when recommendations requests arrived, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Arrivals {
    pub arrivals_unix_us: Vec<u64>,
    /// Arrivals beyond [`MAX_ARRIVALS`], counted but not kept.
    pub dropped: u64,
}

/// Optional filter of the arrivals endpoint: `?since_unix_us=...` keeps arrivals at or after it,
/// so a harness polling during a run need not fetch the whole log each time.
#[derive(Debug, Deserialize)]
struct ArrivalsQuery {
    since_unix_us: Option<u64>,
}

/// The service's state, shared by its handlers.
#[derive(Debug)]
pub struct Recommendations {
    config: RecommendationsConfig,
    arrivals: Mutex<Vec<u64>>,
    dropped: AtomicU64,
    requests: Counter,
    registry: Registry,
}

impl Recommendations {
    pub fn new(config: RecommendationsConfig) -> Arc<Self> {
        let requests = Counter::default();
        let mut registry = Registry::default();
        registry.register(
            "requests",
            "Recommendations requests answered",
            requests.clone(),
        );
        Arc::new(Recommendations {
            config,
            arrivals: Mutex::new(Vec::new()),
            dropped: AtomicU64::new(0),
            requests,
            registry,
        })
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/recommendations/{user}", get(recommend))
            .route("/__faultline/arrivals", get(arrivals))
            .route("/health", get(|| async { "ok" }))
            .route("/metrics", get(metrics))
            .with_state(self)
    }

    /// A copy of the arrival log.
    pub fn arrivals(&self, since_unix_us: Option<u64>) -> Arrivals {
        let log = self
            .arrivals
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let since = since_unix_us.unwrap_or(0);
        // The log is in arrival order (appended under the lock), so the cut is a binary search.
        let start = log.partition_point(|&at| at < since);
        Arrivals {
            arrivals_unix_us: log[start..].to_vec(),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    fn record_arrival(&self) {
        let mut log = self
            .arrivals
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Stamped under the lock so the log stays sorted even when requests race.
        let now = unix_us_now().max(log.last().copied().unwrap_or(0));
        if log.len() < MAX_ARRIVALS {
            log.push(now);
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn recommend(
    State(service): State<Arc<Recommendations>>,
    Path(user): Path<String>,
) -> Json<RecommendationsBody> {
    // Recorded before answering: an arrival is evidence that the call got through, even if the
    // answer is later cut off by a fault.
    service.record_arrival();
    service.requests.inc();
    let items = (0..service.config.items)
        .map(|index| format!("rec-{user}-{index}"))
        .collect();
    Json(RecommendationsBody { user, items })
}

async fn arrivals(
    State(service): State<Arc<Recommendations>>,
    Query(query): Query<ArrivalsQuery>,
) -> Json<Arrivals> {
    Json(service.arrivals(query.since_unix_us))
}

async fn metrics(State(service): State<Arc<Recommendations>>) -> Response {
    crate::metrics::render(&service.registry)
}

/// Serves the recommendations service on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    config: RecommendationsConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    crate::server::serve(listener, Recommendations::new(config).router(), shutdown).await
}
