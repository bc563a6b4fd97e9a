//! Both services in-process on real loopback sockets: responses, headers, `/state`, and the
//! breaker's effect on what the downstream actually receives. No Redis is needed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use faultline_targets::breaker::State as BreakerState;
use faultline_targets::config::{
    BreakerConfig, Fallback, HumanDuration, PlaybackConfig, RecommendationsConfig,
};
use faultline_targets::playback::{
    CacheResult, POPULAR, PlayResponse, Playback, Reason, SOURCE_HEADER, Source, StateReport,
};
use faultline_targets::recommendations::{Arrivals, Recommendations};
use faultline_targets::server;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// Nothing listens here, so Redis commands fail at once.
const NO_REDIS: &str = "127.0.0.1:1";

/// A running server; dropping it shuts the server down.
struct Running {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl Running {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

async fn start(router: Router) -> Running {
    let listener = server::bind("127.0.0.1:0".parse().expect("literal address"))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("bound address");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server::serve(listener, router, async {
        let _ = stopped.await;
    }));
    Running { addr, _stop: stop }
}

/// An address with nothing listening: bound, then released.
async fn closed_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("bound address");
    drop(listener);
    format!("http://{addr}")
}

async fn get(url: &str) -> (StatusCode, String, Value) {
    let response = reqwest::get(url).await.expect("request");
    let status = response.status();
    let source = response
        .headers()
        .get(SOURCE_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, source, body)
}

async fn state(playback: &Running) -> StateReport {
    let (_, _, body) = get(&playback.url("/state")).await;
    serde_json::from_value(body).expect("state report")
}

async fn arrivals(recommendations: &Running) -> Arrivals {
    let (_, _, body) = get(&recommendations.url("/__faultline/arrivals")).await;
    serde_json::from_value(body).expect("arrivals")
}

fn playback_config(recommendations_url: String, breaker: BreakerConfig) -> PlaybackConfig {
    PlaybackConfig {
        breaker,
        ..PlaybackConfig::new(NO_REDIS, recommendations_url)
    }
}

async fn start_playback(config: PlaybackConfig) -> Running {
    start(Playback::new(config).expect("valid config").router()).await
}

#[tokio::test]
async fn recommendations_answers_and_logs_arrivals() {
    let service = start(Recommendations::new(RecommendationsConfig { items: 3 }).router()).await;
    let before = faultline_targets::breaker::unix_us_now();
    let (status, _, body) = get(&service.url("/recommendations/alice")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"user": "alice", "items": ["rec-alice-0", "rec-alice-1", "rec-alice-2"]})
    );

    let log = arrivals(&service).await;
    assert_eq!(log.dropped, 0);
    assert_eq!(log.arrivals_unix_us.len(), 1);
    assert!(log.arrivals_unix_us[0] >= before);
    let later = service.url(&format!(
        "/__faultline/arrivals?since_unix_us={}",
        log.arrivals_unix_us[0] + 1
    ));
    assert_eq!(
        get(&later).await.2,
        json!({"arrivals_unix_us": [], "dropped": 0})
    );

    assert_eq!(get(&service.url("/health")).await.2, json!("ok"));
    let (_, _, metrics) = get(&service.url("/metrics")).await;
    assert!(
        metrics
            .as_str()
            .is_some_and(|text| text.contains("requests_total 1")),
        "{metrics}"
    );
}

#[tokio::test]
async fn playback_serves_live_without_redis() {
    let recommendations =
        start(Recommendations::new(RecommendationsConfig::default()).router()).await;
    let playback = start_playback(PlaybackConfig::new(NO_REDIS, recommendations.url(""))).await;

    let (status, source, body) = get(&playback.url("/play/alice/t1")).await;
    assert_eq!((status, source.as_str()), (StatusCode::OK, "live"));
    let play: PlayResponse = serde_json::from_value(body.clone()).expect("play response");
    assert_eq!(play.cache, CacheResult::Error, "{body}");
    assert_eq!(
        (play.source, play.reason, play.degraded),
        (Source::Live, None, false)
    );
    assert_eq!(play.next_up.len(), 10);
    assert_eq!(play.next_up[0], "rec-alice-0");
    assert_eq!(body["track"]["id"], "t1");
    assert_eq!(body["reason"], Value::Null);

    let (_, _, report) = get(&playback.url("/state")).await;
    assert_eq!(report["breakers"]["recommendations"]["state"], "closed");
    assert_eq!(
        report["breakers"]["recommendations"]["config"]["window"],
        json!({"time": "10s"})
    );
    assert_eq!(
        report["breakers"]["recommendations"]["transitions"],
        json!([])
    );
    assert_eq!(
        (
            report["degradation_level"].clone(),
            report["degraded_features"].clone()
        ),
        (json!(0), json!([]))
    );

    let (_, _, metrics) = get(&playback.url("/metrics")).await;
    let metrics = metrics.as_str().unwrap_or_default().to_string();
    for line in [
        "requests_total{source=\"live\"} 1",
        "requests_total{source=\"fallback-open\"} 0",
        "cache_total{result=\"error\"} 1",
        "downstream_calls_total{outcome=\"success\"} 1",
        "breaker_state 0",
    ] {
        assert!(metrics.contains(line), "missing `{line}` in\n{metrics}");
    }
    assert_eq!(arrivals(&recommendations).await.arrivals_unix_us.len(), 1);
}

#[tokio::test]
async fn breaker_opens_on_connect_errors_and_serves_popular() {
    let breaker = BreakerConfig {
        minimum_calls: 3,
        ..BreakerConfig::default()
    };
    let playback = start_playback(playback_config(closed_port().await, breaker)).await;

    for _ in 0..3 {
        let (status, source, body) = get(&playback.url("/play/bob/t2")).await;
        assert_eq!(
            (status, source.as_str()),
            (StatusCode::OK, "fallback-error")
        );
        assert_eq!(body["reason"], "downstream_error");
    }
    let report = state(&playback).await;
    let breaker = &report.breakers["recommendations"];
    assert_eq!(breaker.state, BreakerState::Open);
    assert_eq!(breaker.transitions.len(), 1);
    assert_eq!(
        breaker.transitions[0].reason,
        "failure rate 100% > 50% over 3 calls (3 failed) in 10s window"
    );
    assert_eq!(
        (report.degradation_level, report.degraded_features),
        (1, vec!["recommendations".to_string()])
    );

    for _ in 0..5 {
        let (status, source, body) = get(&playback.url("/play/bob/t2")).await;
        assert_eq!((status, source.as_str()), (StatusCode::OK, "fallback-open"));
        let play: PlayResponse = serde_json::from_value(body).expect("play response");
        assert_eq!(
            (play.source, play.reason, play.degraded),
            (Source::Fallback, Some(Reason::BreakerOpen), true)
        );
        assert_eq!(play.next_up, POPULAR.map(String::from).to_vec());
    }
    let (_, _, metrics) = get(&playback.url("/metrics")).await;
    let metrics = metrics.as_str().unwrap_or_default().to_string();
    for line in [
        "downstream_calls_total{outcome=\"failure\"} 3",
        "requests_total{source=\"fallback-open\"} 5",
        "breaker_transitions_total{to=\"open\"} 1",
        "breaker_state 1",
    ] {
        assert!(metrics.contains(line), "missing `{line}` in\n{metrics}");
    }
}

#[tokio::test]
async fn fallback_none_answers_503_with_the_header() {
    let mut config = playback_config(closed_port().await, BreakerConfig::default());
    config.fallback = Fallback::None;
    let playback = start_playback(config).await;
    let (status, source, body) = get(&playback.url("/play/carol/t3")).await;
    assert_eq!(
        (status, source.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "fallback-error")
    );
    assert_eq!(
        (body["next_up"].clone(), body["degraded"].clone()),
        (json!([]), json!(true))
    );
    assert_eq!(body["source"], "fallback");
}

/// Fails every call with 500 while `failing`, counting every call that reaches it.
struct Flaky {
    failing: AtomicBool,
    calls: AtomicU64,
}

async fn flaky(State(flaky): State<Arc<Flaky>>, request: Request, next: Next) -> Response {
    flaky.calls.fetch_add(1, Ordering::SeqCst);
    if flaky.failing.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    next.run(request).await
}

#[tokio::test]
async fn breaker_cycle_matches_what_the_downstream_received() {
    let switch = Arc::new(Flaky {
        failing: AtomicBool::new(true),
        calls: AtomicU64::new(0),
    });
    let recommendations = start(
        Recommendations::new(RecommendationsConfig::default())
            .router()
            .layer(middleware::from_fn_with_state(switch.clone(), flaky)),
    )
    .await;
    let breaker = BreakerConfig {
        minimum_calls: 3,
        open_for: HumanDuration::from_millis(200),
        half_open_max_calls: 2,
        close_after_successes: 2,
        ..BreakerConfig::default()
    };
    let playback = start_playback(playback_config(recommendations.url(""), breaker)).await;
    let play = playback.url("/play/dave/t4");

    for _ in 0..3 {
        assert_eq!(get(&play).await.1, "fallback-error");
    }
    for _ in 0..3 {
        assert_eq!(get(&play).await.1, "fallback-open");
    }
    assert_eq!(
        switch.calls.load(Ordering::SeqCst),
        3,
        "the downstream was called while open"
    );

    // Heal, then poll until the open period ends and a trial call goes through.
    switch.failing.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (_, source, _) = get(&play).await;
        if source != "fallback-open" {
            assert_eq!(source, "live");
            break;
        }
        assert!(Instant::now() < deadline, "breaker never half-opened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(get(&play).await.1, "live");

    let report = state(&playback).await;
    let breaker = &report.breakers["recommendations"];
    assert_eq!(breaker.state, BreakerState::Closed);
    let path: Vec<_> = breaker.transitions.iter().map(|t| (t.from, t.to)).collect();
    use BreakerState::{Closed, HalfOpen, Open};
    assert_eq!(path, [(Closed, Open), (Open, HalfOpen), (HalfOpen, Closed)]);
    let opened = breaker.transitions[0].at_unix_us;
    assert!(
        breaker.transitions[1].at_unix_us >= opened + 200_000,
        "half-opened before open_for"
    );
    // Only the two trial calls reached the downstream after it healed, both after the half-open.
    assert_eq!(switch.calls.load(Ordering::SeqCst), 5);
    let log = arrivals(&recommendations).await;
    assert_eq!(log.arrivals_unix_us.len(), 2);
    assert!(
        log.arrivals_unix_us
            .iter()
            .all(|&at| at >= breaker.transitions[1].at_unix_us)
    );
    assert_eq!(report.degradation_level, 0);
}
