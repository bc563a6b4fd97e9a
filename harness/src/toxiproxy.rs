//! A small async client for the real Toxiproxy server's HTTP API (v2), and a `NodeSpec` that runs
//! that server inside the lab. The `toxiproxy_rust` crate is blocking and unmaintained, hence
//! this.
//!
//! API as documented in Shopify/toxiproxy's README and `api.go`: `GET /version`, `POST /reset`,
//! `GET|POST /proxies`, `GET|PATCH|DELETE /proxies/{proxy}` (POST for updates is deprecated in
//! favour of PATCH), `POST /proxies/{proxy}/toxics`, `DELETE /proxies/{proxy}/toxics/{toxic}`.
//!
//! invariant: the client only ever talks to the lab's loopback API address and never goes
//! through an HTTP(S) proxy from the environment.
//! invariant: names are checked before they become URL path segments (no encoding games).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::errors::{LabError, ToxiproxyError, error_chain};
use crate::lab::{Lab, NodeInfo, NodeSpec, Readiness, find_tool};

/// Which half of a proxied connection a toxic acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// client -> server.
    Upstream,
    /// server -> client (toxiproxy's default).
    Downstream,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Upstream => "upstream",
            Stream::Downstream => "downstream",
        }
    }
}

/// A toxic and its attributes, with units in the Rust names; serializes to toxiproxy's
/// `{"type": ..., "attributes": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "attributes", rename_all = "snake_case")]
pub enum ToxicSpec {
    /// Delay of `latency` ± `jitter` on all data.
    Latency {
        #[serde(rename = "latency")]
        latency_ms: u64,
        #[serde(rename = "jitter", default)]
        jitter_ms: u64,
    },
    /// At most `rate` KB/s.
    Bandwidth {
        #[serde(rename = "rate")]
        rate_kb_per_s: u64,
    },
    /// Delays the socket close by `delay`.
    SlowClose {
        #[serde(rename = "delay")]
        delay_ms: u64,
    },
    /// Stops all data and closes the connection after `timeout` (0: never closes).
    Timeout {
        #[serde(rename = "timeout")]
        timeout_ms: u64,
    },
    /// TCP RST, immediately or after `timeout`.
    ResetPeer {
        #[serde(rename = "timeout", default)]
        timeout_ms: u64,
    },
    /// Slices data into `average_size` ± `size_variation` byte pieces, `delay` MICROseconds apart.
    Slicer {
        average_size: u64,
        #[serde(default)]
        size_variation: u64,
        #[serde(rename = "delay", default)]
        delay_us: u64,
    },
    /// Closes the connection after `bytes` bytes.
    LimitData { bytes: u64 },
}

impl ToxicSpec {
    /// Toxiproxy's type name.
    pub fn kind(&self) -> &'static str {
        match self {
            ToxicSpec::Latency { .. } => "latency",
            ToxicSpec::Bandwidth { .. } => "bandwidth",
            ToxicSpec::SlowClose { .. } => "slow_close",
            ToxicSpec::Timeout { .. } => "timeout",
            ToxicSpec::ResetPeer { .. } => "reset_peer",
            ToxicSpec::Slicer { .. } => "slicer",
            ToxicSpec::LimitData { .. } => "limit_data",
        }
    }
}

/// A toxic to add: `POST /proxies/{proxy}/toxics` body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewToxic {
    pub name: String,
    pub stream: Stream,
    /// Probability (0..=1) that a connection is affected.
    pub toxicity: f64,
    #[serde(flatten)]
    pub spec: ToxicSpec,
}

/// A toxic as the server reports it (attributes kept raw: the server may add fields).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Toxic {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub stream: Stream,
    pub toxicity: f64,
    #[serde(default)]
    pub attributes: serde_json::Value,
}

/// `POST /proxies` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewProxy {
    pub name: String,
    /// `ip:port` toxiproxy listens on (in the lab: `proxy_listen_addr(k)`).
    pub listen: String,
    /// `ip:port` it forwards to.
    pub upstream: String,
    pub enabled: bool,
}

/// A proxy as the server reports it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Proxy {
    pub name: String,
    pub listen: String,
    pub upstream: String,
    pub enabled: bool,
    #[serde(default)]
    pub toxics: Vec<Toxic>,
}

#[derive(Deserialize)]
struct Version {
    version: String,
}

/// Proxy and toxic names: `[A-Za-z0-9._-]`, 1..=128.
pub fn check_name(what: &'static str, name: &str) -> Result<(), ToxiproxyError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ToxiproxyError::InvalidName {
            what,
            name: name.to_string(),
        })
    }
}

/// Client for one toxiproxy server. Cheap to clone (shares the connection pool).
#[derive(Debug, Clone)]
pub struct Toxiproxy {
    base: String,
    api: SocketAddr,
    http: reqwest::Client,
}

/// Per-request bound: the server answers in microseconds; anything slower is a failure to report.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

impl Toxiproxy {
    /// A client for the API at `api` (e.g. `node_addr(g, 1):8474`). Makes no request.
    pub fn new(api: SocketAddr) -> Result<Toxiproxy, ToxiproxyError> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| ToxiproxyError::Client(e.to_string()))?;
        Ok(Toxiproxy {
            base: format!("http://{api}"),
            api,
            http,
        })
    }

    pub fn api_addr(&self) -> SocketAddr {
        self.api
    }

    /// The `NodeSpec` that runs `toxiproxy-server` on `api`, ready when `GET /version` answers.
    pub fn server_spec(node: &str, api: SocketAddr) -> Result<NodeSpec, LabError> {
        let program = find_tool("toxiproxy-server")?;
        Ok(NodeSpec::new(
            node,
            program,
            Readiness::Http {
                url: format!("http://{api}/version"),
            },
        )
        .args([
            "-host".to_string(),
            api.ip().to_string(),
            "-port".to_string(),
            api.port().to_string(),
        ])
        // Below `error` it logs every proxied connection, and at `warn` every ordinary close
        // (7.5 MB per 90 s run here); proxies and toxics are in the lab's intent log anyway.
        .env("LOG_LEVEL", "error")
        .ready_timeout(Duration::from_secs(20)))
    }

    /// Starts the server as lab node `node` and returns a client for it.
    pub async fn start_server(
        lab: &Lab,
        node: &str,
        api: SocketAddr,
    ) -> Result<(Toxiproxy, NodeInfo), LabError> {
        let spec = Toxiproxy::server_spec(node, api)?;
        let info = lab.start_node(&spec).await?;
        Ok((Toxiproxy::new(api)?, info))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Option<T>, ToxiproxyError> {
        let name = method_name(&method);
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.map_err(|e| ToxiproxyError::Request {
            method: name,
            path: path.to_string(),
            detail: error_chain(&e),
        })?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| ToxiproxyError::Request {
            method: name,
            path: path.to_string(),
            detail: format!("reading the answer: {}", error_chain(&e)),
        })?;
        if !status.is_success() {
            return Err(ToxiproxyError::Status {
                method: name,
                path: path.to_string(),
                status: status.as_u16(),
                body: text.trim().to_string(),
            });
        }
        if text.trim().is_empty() {
            return Ok(None);
        }
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| ToxiproxyError::Decode {
                method: name,
                path: path.to_string(),
                detail: e.to_string(),
                body: text.trim().to_string(),
            })
    }

    async fn call_some<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, ToxiproxyError> {
        let name = method_name(&method);
        self.call(method, path, body)
            .await?
            .ok_or_else(|| ToxiproxyError::Decode {
                method: name,
                path: path.to_string(),
                detail: "empty answer".to_string(),
                body: String::new(),
            })
    }

    /// `GET /version`.
    pub async fn version(&self) -> Result<String, ToxiproxyError> {
        Ok(self
            .call_some::<Version>(Method::GET, "/version", None)
            .await?
            .version)
    }

    /// `POST /reset`: enables every proxy and removes every toxic.
    pub async fn reset(&self) -> Result<(), ToxiproxyError> {
        self.call::<serde_json::Value>(Method::POST, "/reset", None)
            .await
            .map(drop)
    }

    /// `GET /proxies`.
    pub async fn proxies(&self) -> Result<BTreeMap<String, Proxy>, ToxiproxyError> {
        self.call_some(Method::GET, "/proxies", None).await
    }

    /// `POST /proxies`.
    pub async fn create_proxy(&self, proxy: &NewProxy) -> Result<Proxy, ToxiproxyError> {
        check_name("proxy", &proxy.name)?;
        let body =
            serde_json::to_value(proxy).map_err(|e| ToxiproxyError::Client(e.to_string()))?;
        self.call_some(Method::POST, "/proxies", Some(body)).await
    }

    /// `GET /proxies/{name}`.
    pub async fn proxy(&self, name: &str) -> Result<Proxy, ToxiproxyError> {
        check_name("proxy", name)?;
        self.call_some(Method::GET, &format!("/proxies/{name}"), None)
            .await
    }

    /// `PATCH /proxies/{name}` `{enabled}`: a disabled proxy closes its connections and stops
    /// listening (a link down).
    pub async fn set_enabled(&self, name: &str, enabled: bool) -> Result<Proxy, ToxiproxyError> {
        check_name("proxy", name)?;
        let body = serde_json::json!({ "enabled": enabled });
        self.call_some(Method::PATCH, &format!("/proxies/{name}"), Some(body))
            .await
    }

    /// `DELETE /proxies/{name}`.
    pub async fn delete_proxy(&self, name: &str) -> Result<(), ToxiproxyError> {
        check_name("proxy", name)?;
        self.call::<serde_json::Value>(Method::DELETE, &format!("/proxies/{name}"), None)
            .await
            .map(drop)
    }

    /// `POST /proxies/{proxy}/toxics`.
    pub async fn add_toxic(&self, proxy: &str, toxic: &NewToxic) -> Result<Toxic, ToxiproxyError> {
        check_name("proxy", proxy)?;
        check_name("toxic", &toxic.name)?;
        if !(0.0..=1.0).contains(&toxic.toxicity) {
            return Err(ToxiproxyError::Client(format!(
                "toxicity `{}` is not within 0..=1",
                toxic.toxicity
            )));
        }
        let body =
            serde_json::to_value(toxic).map_err(|e| ToxiproxyError::Client(e.to_string()))?;
        self.call_some(
            Method::POST,
            &format!("/proxies/{proxy}/toxics"),
            Some(body),
        )
        .await
    }

    /// `DELETE /proxies/{proxy}/toxics/{toxic}`.
    pub async fn remove_toxic(&self, proxy: &str, toxic: &str) -> Result<(), ToxiproxyError> {
        check_name("proxy", proxy)?;
        check_name("toxic", toxic)?;
        self.call::<serde_json::Value>(
            Method::DELETE,
            &format!("/proxies/{proxy}/toxics/{toxic}"),
            None,
        )
        .await
        .map(drop)
    }
}

fn method_name(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::PUT => "PUT",
        _ => "HTTP",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toxic_json_matches_the_api() {
        let t = NewToxic {
            name: "lat".into(),
            stream: Stream::Downstream,
            toxicity: 1.0,
            spec: ToxicSpec::Latency {
                latency_ms: 200,
                jitter_ms: 10,
            },
        };
        let v = serde_json::to_value(&t).expect("encodes");
        assert_eq!(
            v,
            serde_json::json!({"name": "lat", "stream": "downstream", "toxicity": 1.0, "type": "latency",
                "attributes": {"latency": 200, "jitter": 10}})
        );
        let s = serde_json::to_value(ToxicSpec::Slicer {
            average_size: 64,
            size_variation: 8,
            delay_us: 50,
        })
        .expect("encodes");
        assert_eq!(
            s,
            serde_json::json!({"type": "slicer", "attributes": {"average_size": 64, "size_variation": 8, "delay": 50}})
        );
        let b: ToxicSpec = serde_json::from_value(
            serde_json::json!({"type": "bandwidth", "attributes": {"rate": 5}}),
        )
        .expect("decodes");
        assert_eq!(b, ToxicSpec::Bandwidth { rate_kb_per_s: 5 });
        assert_eq!(b.kind(), "bandwidth");
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("proxy", "redis_1.a-b").is_ok());
        let e = check_name("toxic", "a/b").expect_err("slash");
        assert!(e.to_string().contains("`a/b`"), "{e}");
        assert!(check_name("proxy", "").is_err());
    }
}
