//! The HTTP workload: GET a templated URL through one shared keep-alive client, classify the
//! answer, and pick up the service's self-reported tag header.

use std::time::Duration;

use reqwest::header::HeaderName;

use super::outcome::{ErrorKind, Outcome, OutcomeCode};
use super::tables::{ErrorSamples, TagTable};

/// `url_template` compiled once: literal text with `{n}` / `{n%K}` holes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct UrlTemplate {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Index,
    IndexMod(u64),
}

impl UrlTemplate {
    /// Parses `{n}` and `{n%K}` (K >= 1); any other brace is an error, so a typo such as `{id}`
    /// fails validation instead of hammering one literal URL.
    pub(crate) fn parse(template: &str) -> Result<UrlTemplate, String> {
        let mut parts = Vec::new();
        let mut rest = template;
        let mut offset = 0;
        while let Some(open) = rest.find(['{', '}']) {
            if rest.as_bytes()[open] == b'}' {
                return Err(format!("unmatched `}}` at byte {}", offset + open));
            }
            let Some(len) = rest[open..].find('}') else {
                return Err(format!("unclosed `{{` at byte {}", offset + open));
            };
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let hole = &rest[open + 1..open + len];
            parts.push(match hole.strip_prefix("n%") {
                None if hole == "n" => Part::Index,
                Some(modulus) => match modulus.parse::<u64>() {
                    Ok(k) if k >= 1 => Part::IndexMod(k),
                    _ => {
                        return Err(format!(
                            "`{{{hole}}}` at byte {}: K in `{{n%K}}` must be a whole number >= 1",
                            offset + open
                        ));
                    }
                },
                None => {
                    return Err(format!(
                        "unknown placeholder `{{{hole}}}` at byte {} (expected `{{n}}` or `{{n%K}}`)",
                        offset + open
                    ));
                }
            });
            offset += open + len + 1;
            rest = &rest[open + len + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Ok(UrlTemplate { parts })
    }

    pub(crate) fn render(&self, n: u64) -> String {
        use std::fmt::Write as _;
        let mut url = String::with_capacity(64);
        for part in &self.parts {
            // Writing into a String cannot fail.
            let _ = match part {
                Part::Literal(text) => write!(url, "{text}"),
                Part::Index => write!(url, "{n}"),
                Part::IndexMod(k) => write!(url, "{}", n % k),
            };
        }
        url
    }
}

/// Checks that the template renders to a URL this client can fetch (plain `http://`: the client
/// is built without TLS, and lab traffic stays on loopback anyway).
pub(crate) fn validate_url(template: &UrlTemplate) -> Result<(), String> {
    let sample = template.render(0);
    let url = reqwest::Url::parse(&sample).map_err(|e| format!("`{sample}` is not a URL: {e}"))?;
    if url.scheme() != "http" {
        return Err(format!(
            "`{sample}` uses `{}` (hint: only plain `http://` is supported; lab services do not use TLS)",
            url.scheme()
        ));
    }
    if url.host_str().is_none() {
        return Err(format!("`{sample}` has no host"));
    }
    Ok(())
}

pub(crate) fn parse_tag_header(name: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("`{name}` is not a valid header name"))
}

#[derive(Debug)]
pub(crate) struct HttpExec {
    client: reqwest::Client,
    template: UrlTemplate,
    tag_header: Option<HeaderName>,
}

impl HttpExec {
    pub(crate) fn new(
        template: UrlTemplate,
        tag_header: Option<HeaderName>,
        max_in_flight: usize,
        op_timeout: Duration,
    ) -> Result<HttpExec, reqwest::Error> {
        let client = reqwest::Client::builder()
            // Keep a connection per in-flight slot alive, or a busy run would keep reconnecting
            // and measure TCP handshakes instead of the service.
            .pool_max_idle_per_host(max_in_flight)
            .connect_timeout(op_timeout)
            .tcp_nodelay(true)
            // A proxy from the environment must never carry lab traffic.
            .no_proxy()
            // A redirect is the service's answer; following it would measure another request.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(HttpExec {
            client,
            template,
            tag_header,
        })
    }

    /// One GET. The caller bounds it with the op timeout; the body is drained so the connection
    /// goes back to the pool and the latency covers the whole answer.
    pub(crate) async fn execute(
        &self,
        n: u64,
        tags: &TagTable,
        samples: &ErrorSamples,
    ) -> (Outcome, u8) {
        let url = self.template.render(n);
        let response = match self.client.get(&url).send().await {
            Ok(response) => response,
            Err(error) => return (failed(&error, samples), 0),
        };
        let status = response.status();
        let tag = match &self.tag_header {
            Some(name) => response
                .headers()
                .get(name)
                .map_or(0, |value| tags.intern(value.as_bytes())),
            None => 0,
        };
        let mut response = response;
        loop {
            match response.chunk().await {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(error) => return (failed(&error, samples), tag),
            }
        }
        if status.is_success() {
            (Outcome::Ok, tag)
        } else {
            let outcome = Outcome::Error(ErrorKind::Status(status.as_u16()));
            samples.note(OutcomeCode::from(outcome), || {
                format!("`GET {url}` answered {status}")
            });
            (outcome, tag)
        }
    }
}

fn failed(error: &reqwest::Error, samples: &ErrorSamples) -> Outcome {
    let outcome = Outcome::Error(classify(error));
    samples.note(OutcomeCode::from(outcome), || error_chain(error));
    outcome
}

fn classify(error: &reqwest::Error) -> ErrorKind {
    if error.is_timeout() {
        ErrorKind::Timeout
    } else if error.is_connect() {
        ErrorKind::Connect
    } else if error.is_decode() {
        ErrorKind::Protocol
    } else if has_source::<std::io::Error>(error) {
        ErrorKind::Io
    } else if error.is_request() || error.is_body() {
        // hyper reports "connection closed before message completed" and malformed answers as
        // its own error type, which we cannot name without depending on hyper: its message is
        // the only way to tell a broken connection from a broken answer.
        let text = error_chain(error);
        if text.contains("parse") || text.contains("invalid") {
            ErrorKind::Protocol
        } else {
            ErrorKind::Io
        }
    } else {
        ErrorKind::Other
    }
}

fn has_source<E: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(current) = next {
        if current.is::<E>() {
            return true;
        }
        next = current.source();
    }
    false
}

/// "a: b: c" for an error and its sources: reqwest's top-level message alone ("error sending
/// request") says nothing about what happened.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(source) = next {
        text.push_str(": ");
        text.push_str(&source.to_string());
        next = source.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(template: &str, n: u64) -> Result<String, String> {
        UrlTemplate::parse(template).map(|t| t.render(n))
    }

    #[test]
    fn url_templates_render_or_explain() {
        let cases: [(&str, u64, Result<&str, &str>); 10] = [
            ("http://h/a/{n}", 42, Ok("http://h/a/42")),
            ("http://h/a/{n%10}?x={n}", 42, Ok("http://h/a/2?x=42")),
            ("http://h/{n%1}", 7, Ok("http://h/0")),
            ("{n}{n}", 3, Ok("33")),
            ("http://h/plain", 3, Ok("http://h/plain")),
            (
                "http://h/{id}",
                0,
                Err("unknown placeholder `{id}` at byte 9"),
            ),
            (
                "http://h/{n%0}",
                0,
                Err("K in `{n%K}` must be a whole number >= 1"),
            ),
            ("http://h/{n%x}", 0, Err("`{n%x}` at byte 9")),
            ("http://h/{n", 0, Err("unclosed `{` at byte 9")),
            ("http://h/n}", 0, Err("unmatched `}` at byte 10")),
        ];
        for (template, n, expected) in cases {
            match (rendered(template, n), expected) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{template}"),
                (Err(got), Err(want)) => {
                    assert!(got.contains(want), "{template}: {got:?} lacks {want:?}")
                }
                (got, want) => panic!("{template}: got {got:?}, expected {want:?}"),
            }
        }
    }

    #[test]
    fn only_plain_http_urls_validate() {
        let cases = [
            ("http://127.0.0.1:8080/x/{n}", None),
            ("https://127.0.0.1/x", Some("only plain `http://`")),
            ("ftp://127.0.0.1/x", Some("uses `ftp`")),
            ("not a url {n}", Some("is not a URL")),
        ];
        for (template, expected) in cases {
            let result = UrlTemplate::parse(template).and_then(|t| validate_url(&t));
            match (result, expected) {
                (Ok(()), None) => {}
                (Err(got), Some(want)) => assert!(got.contains(want), "{template}: {got:?}"),
                (got, want) => panic!("{template}: got {got:?}, expected {want:?}"),
            }
        }
    }
}
