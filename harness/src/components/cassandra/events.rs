//! Cassandra's pushed `STATUS_CHANGE` events (a peer is UP or DOWN), over a native-protocol v4
//! connection of our own: STARTUP, REGISTER, then EVENT frames as the node sends them.
//!
//! Why by hand: the scylla driver consumes these events internally and exposes none of them, and
//! this needs four frame types of the protocol (`native_protocol_v4.spec`, sections 2, 4.1.1,
//! 4.1.8, 4.2.6). A node pushes the event right after its failure detector's verdict, which it
//! also logs (`InetAddress <addr> is now DOWN`), so the push time is Faultline's own view of
//! when the cluster declared a node down, comparable with that log line.
//!
//! invariant: no authentication, no compression; a frame over `MAX_BODY` ends the watch.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

const VERSION: u8 = 0x04;
const OP_ERROR: u8 = 0x00;
const OP_STARTUP: u8 = 0x01;
const OP_READY: u8 = 0x02;
const OP_REGISTER: u8 = 0x0B;
const OP_EVENT: u8 = 0x0C;
/// Events and startup answers are small; anything bigger is not what we asked for.
const MAX_BODY: usize = 1 << 20;

/// A peer's liveness as one node announced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    pub up: bool,
    /// The peer's native-transport address.
    pub peer: IpAddr,
    /// When the frame arrived (wall clock, so it compares with log times).
    pub received: SystemTime,
}

/// Connects to `node`, registers for `STATUS_CHANGE` and calls `on_change` for every event until
/// `stop` turns true or the node goes away. Returns why it ended: `Ok` on `stop` or a closed
/// connection (a killed node), `Err` when the handshake fails.
pub async fn watch_status(
    node: SocketAddr,
    connect_timeout: Duration,
    mut stop: watch::Receiver<bool>,
    mut on_change: impl FnMut(StatusChange),
) -> Result<(), String> {
    let mut stream = tokio::time::timeout(connect_timeout, TcpStream::connect(node))
        .await
        .map_err(|_| format!("no CQL connection to `{node}` within {connect_timeout:?}"))?
        .map_err(|e| format!("cannot connect to `{node}`: {e}"))?;
    let _ = stream.set_nodelay(true);
    let handshake = async {
        stream
            .write_all(&frame(
                0,
                OP_STARTUP,
                &string_map(&[("CQL_VERSION", "3.0.0")]),
            ))
            .await?;
        expect_ready(&mut stream, "STARTUP").await?;
        stream
            .write_all(&frame(1, OP_REGISTER, &string_list(&["STATUS_CHANGE"])))
            .await?;
        expect_ready(&mut stream, "REGISTER").await
    };
    tokio::time::timeout(connect_timeout, handshake)
        .await
        .map_err(|_| format!("`{node}` did not complete the CQL handshake in {connect_timeout:?}"))?
        .map_err(|e| format!("CQL handshake with `{node}`: {e}"))?;
    loop {
        let next = tokio::select! {
            _ = stop.wait_for(|s| *s) => return Ok(()),
            next = read_frame(&mut stream) => next,
        };
        let Ok((opcode, body)) = next else {
            // The node went away (killed, partitioned, shut down): nothing more to hear.
            return Ok(());
        };
        if opcode == OP_EVENT
            && let Some((up, peer)) = parse_status_change(&body)
        {
            on_change(StatusChange {
                up,
                peer,
                received: SystemTime::now(),
            });
        }
    }
}

async fn expect_ready(stream: &mut TcpStream, after: &str) -> std::io::Result<()> {
    let (opcode, body) = read_frame(stream).await?;
    match opcode {
        OP_READY => Ok(()),
        OP_ERROR => Err(std::io::Error::other(format!(
            "{after} answered with error: {}",
            parse_error(&body)
        ))),
        other => Err(std::io::Error::other(format!(
            "{after} answered with opcode {other:#04x}, expected READY"
        ))),
    }
}

/// One frame: (opcode, body).
async fn read_frame(stream: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut header = [0u8; 9];
    stream.read_exact(&mut header).await?;
    let len = i32::from_be_bytes([header[5], header[6], header[7], header[8]]);
    let len = usize::try_from(len)
        .ok()
        .filter(|l| *l <= MAX_BODY)
        .ok_or_else(|| std::io::Error::other(format!("frame body of {len} bytes")))?;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await?;
    Ok((header[4], body))
}

/// A request frame: version, no flags, `stream`, `opcode`, body length, body.
fn frame(stream: i16, opcode: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![VERSION, 0];
    out.extend_from_slice(&stream.to_be_bytes());
    out.push(opcode);
    out.extend_from_slice(&(body.len() as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn string_map(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = (pairs.len() as u16).to_be_bytes().to_vec();
    for (k, v) in pairs {
        put_string(&mut out, k);
        put_string(&mut out, v);
    }
    out
}

fn string_list(items: &[&str]) -> Vec<u8> {
    let mut out = (items.len() as u16).to_be_bytes().to_vec();
    for item in items {
        put_string(&mut out, item);
    }
    out
}

/// A cursor over a frame body.
struct Body<'b>(&'b [u8]);

impl<'b> Body<'b> {
    fn take(&mut self, n: usize) -> Option<&'b [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn string(&mut self) -> Option<&'b str> {
        let len = u16::from_be_bytes(self.take(2)?.try_into().ok()?);
        std::str::from_utf8(self.take(usize::from(len))?).ok()
    }

    /// `[inet]`: a byte n (4 or 16), n address bytes, an int port.
    fn inet(&mut self) -> Option<IpAddr> {
        let n = *self.take(1)?.first()?;
        let ip = match n {
            4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(self.take(4)?).ok()?)),
            16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(self.take(16)?).ok()?)),
            _ => return None,
        };
        self.take(4)?;
        Some(ip)
    }
}

/// An EVENT body: `STATUS_CHANGE`, `UP` or `DOWN`, the peer's inet. Other events: `None`.
fn parse_status_change(body: &[u8]) -> Option<(bool, IpAddr)> {
    let mut b = Body(body);
    if b.string()? != "STATUS_CHANGE" {
        return None;
    }
    let up = match b.string()? {
        "UP" => true,
        "DOWN" => false,
        _ => return None,
    };
    Some((up, b.inet()?))
}

/// An ERROR body: an int code and a message.
fn parse_error(body: &[u8]) -> String {
    let mut b = Body(body);
    let code = b
        .take(4)
        .and_then(|c| <[u8; 4]>::try_from(c).ok())
        .map(i32::from_be_bytes);
    match (code, b.string()) {
        (Some(code), Some(message)) => format!("{message} (code {code:#06x})"),
        _ => "an unreadable error".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, change: &str, inet: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        put_string(&mut body, kind);
        put_string(&mut body, change);
        body.extend_from_slice(inet);
        body
    }

    #[test]
    fn parses_status_changes_and_nothing_else() {
        let v4 = [4, 127, 0, 1, 2, 0, 0, 0x23, 0x52];
        assert_eq!(
            parse_status_change(&event("STATUS_CHANGE", "DOWN", &v4)),
            Some((false, IpAddr::V4(Ipv4Addr::new(127, 0, 1, 2))))
        );
        assert_eq!(
            parse_status_change(&event("STATUS_CHANGE", "UP", &v4)),
            Some((true, IpAddr::V4(Ipv4Addr::new(127, 0, 1, 2))))
        );
        let mut v6 = vec![16];
        v6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        v6.extend_from_slice(&9042i32.to_be_bytes());
        assert_eq!(
            parse_status_change(&event("STATUS_CHANGE", "DOWN", &v6)),
            Some((false, IpAddr::V6(Ipv6Addr::LOCALHOST)))
        );
        for bad in [
            event("TOPOLOGY_CHANGE", "NEW_NODE", &v4),
            event("STATUS_CHANGE", "SIDEWAYS", &v4),
            event("STATUS_CHANGE", "DOWN", &v4[..6]),
            event("STATUS_CHANGE", "DOWN", &[5, 1, 2, 3, 4, 5, 0, 0, 0, 0]),
            vec![0, 9, b'S'],
        ] {
            assert_eq!(parse_status_change(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn frames_requests_as_the_spec_lays_them_out() {
        let startup = frame(0, OP_STARTUP, &string_map(&[("CQL_VERSION", "3.0.0")]));
        assert_eq!(&startup[..5], &[4, 0, 0, 0, 1]);
        assert_eq!(i32::from_be_bytes(startup[5..9].try_into().unwrap()), 22);
        assert_eq!(&startup[9..13], &[0, 1, 0, 11]);
        let register = frame(1, OP_REGISTER, &string_list(&["STATUS_CHANGE"]));
        assert_eq!(&register[2..5], &[0, 1, 0x0B]);
        let mut error = 0x000Ai32.to_be_bytes().to_vec();
        put_string(&mut error, "Invalid or unsupported protocol version");
        assert_eq!(
            parse_error(&error),
            "Invalid or unsupported protocol version (code 0x000a)"
        );
        assert_eq!(parse_error(&[0, 0]), "an unreadable error");
    }
}
