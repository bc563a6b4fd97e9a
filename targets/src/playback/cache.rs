//! The track-metadata cache in Redis. A Redis problem never fails a play request: the lookup
//! reports `error` and the request goes on with origin data (004-CACHE-LOSS's "reads go direct").

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::time::timeout;

/// Bound on each Redis command: a slow cache must not make playback slow.
const OP_TIMEOUT: Duration = Duration::from_millis(100);
/// Bound on one attempt to set up the connection manager.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause between failed set-up attempts, so a missing Redis is not hammered by every request.
const RETRY_AFTER: Duration = Duration::from_millis(200);

/// How the cache lookup went, reported as the response's `cache` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheResult {
    Hit,
    Miss,
    Error,
}

impl CacheResult {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheResult::Hit => "hit",
            CacheResult::Miss => "miss",
            CacheResult::Error => "error",
        }
    }
}

pub(crate) struct TrackCache {
    shared: Arc<Shared>,
    ttl_secs: u64,
}

struct Shared {
    client: redis::Client,
    /// Set once the first connection succeeds; from then on the manager reconnects by itself.
    manager: OnceLock<ConnectionManager>,
    /// When the next set-up attempt may start; `None` while one is in flight.
    next_attempt: Mutex<Option<Instant>>,
}

impl TrackCache {
    /// `addr` is `ip:port` (or a full `redis://` URL).
    pub(crate) fn new(addr: &str, ttl: Duration) -> Result<Self, String> {
        let url = if addr.contains("://") {
            addr.to_string()
        } else {
            format!("redis://{addr}/")
        };
        let client = redis::Client::open(url.as_str())
            .map_err(|error| format!("`redis` `{addr}` is not a Redis address ({error})"))?;
        Ok(TrackCache {
            shared: Arc::new(Shared {
                client,
                manager: OnceLock::new(),
                next_attempt: Mutex::new(Some(Instant::now())),
            }),
            ttl_secs: ttl.as_secs().max(1),
        })
    }

    /// Starts connecting in the background if no connection exists and no attempt is running.
    /// Lazy (needs a Tokio runtime, which requests and `serve` have) and retried, so playback
    /// starts and serves even while Redis is down or still coming up.
    pub(crate) fn connect_in_background(&self) {
        if self.shared.manager.get().is_some() {
            return;
        }
        {
            let mut next = self
                .shared
                .next_attempt
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            match *next {
                Some(at) if Instant::now() >= at => *next = None,
                _ => return,
            }
        }
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_millis(250)))
                .set_response_timeout(Some(OP_TIMEOUT))
                .set_number_of_retries(2)
                .set_min_delay(Duration::from_millis(50))
                .set_max_delay(Duration::from_millis(500));
            let attempt = ConnectionManager::new_with_config(shared.client.clone(), config);
            let retry_at = match timeout(CONNECT_TIMEOUT, attempt).await {
                Ok(Ok(manager)) => {
                    let _ = shared.manager.set(manager);
                    None
                }
                _ => Some(Instant::now() + RETRY_AFTER),
            };
            *shared
                .next_attempt
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = retry_at;
        });
    }

    /// The track's metadata, from Redis if cached, else from the origin (and then cached).
    pub(crate) async fn lookup(&self, track: &str) -> (Value, CacheResult) {
        let Some(mut conn) = self.shared.manager.get().cloned() else {
            self.connect_in_background();
            return (origin(track), CacheResult::Error);
        };
        let key = format!("track:{track}");
        let get = redis::cmd("GET").arg(&key).clone();
        match timeout(OP_TIMEOUT, get.query_async::<Option<String>>(&mut conn)).await {
            Ok(Ok(Some(text))) => {
                // A corrupt entry is treated as a miss and overwritten below.
                if let Ok(metadata) = serde_json::from_str::<Value>(&text) {
                    return (metadata, CacheResult::Hit);
                }
            }
            Ok(Ok(None)) => {}
            Ok(Err(_)) | Err(_) => return (origin(track), CacheResult::Error),
        }
        let metadata = origin(track);
        let set = redis::cmd("SET")
            .arg(&key)
            .arg(metadata.to_string())
            .arg("EX")
            .arg(self.ttl_secs)
            .clone();
        let result = match timeout(OP_TIMEOUT, set.query_async::<()>(&mut conn)).await {
            Ok(Ok(())) => CacheResult::Miss,
            Ok(Err(_)) | Err(_) => CacheResult::Error,
        };
        (metadata, result)
    }
}

/// The "origin" (the catalogue behind the cache): small metadata derived from the track id, so
/// it is the same on every instance without a database.
fn origin(track: &str) -> Value {
    // FNV-1a: a stable hash (std's is randomly seeded) for a plausible, repeatable duration.
    let hash = track.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    json!({
        "id": track,
        "title": format!("Track {track}"),
        "artist": "Faultline Ensemble",
        "duration_ms": 120_000 + hash % 180_000,
    })
}
