//! The servers under load: `redis-server` and fresh `recommendations` processes on loopback.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::URL_PATH;
use super::child::{Child, check_stop, spawn};
use super::installs::Bins;
use crate::proc;

pub(super) fn free_port() -> Result<u16, String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free loopback port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

pub(super) fn redis_answers_ping(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 16];
    stream.write_all(b"PING\r\n").is_ok()
        && stream
            .read(&mut buf)
            .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
}

pub(super) fn start_redis(logs: &Path, name: &str) -> Result<(Child, u16), String> {
    let port = free_port()?;
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .args(["--logfile", ""])
        .arg("--dir")
        .arg(logs);
    let mut child = spawn(&mut cmd, name, logs)?;
    let until = Instant::now() + Duration::from_secs(10);
    while !redis_answers_ping(port) {
        check_stop()?;
        if let Some(done) = child.try_reap() {
            return Err(format!(
                "redis-server {} before answering PING (log: {})",
                proc::describe(done.status),
                child.stdout.display()
            ));
        }
        if Instant::now() > until {
            return Err(format!(
                "redis-server did not answer PING on 127.0.0.1:{port} within 10 s (log: {})",
                child.stdout.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((child, port))
}

/// A fresh `recommendations` on a free loopback port; returns it and its base URL.
pub(super) fn start_recommendations(
    bins: &Bins,
    logs: &Path,
    name: &str,
) -> Result<(Child, String), String> {
    let mut cmd = Command::new(&bins.recommendations);
    cmd.args(["--listen", "127.0.0.1:0"]);
    let mut child = spawn(&mut cmd, name, logs)?;
    let until = Instant::now() + Duration::from_secs(10);
    let addr = loop {
        check_stop()?;
        if let Some(addr) = child
            .output()
            .lines()
            .find_map(|l| l.strip_prefix("listening on "))
            .and_then(|a| a.trim().parse::<SocketAddr>().ok())
        {
            break addr;
        }
        if let Some(done) = child.try_reap() {
            return Err(format!(
                "recommendations {} before listening: {}",
                proc::describe(done.status),
                child.errors().trim()
            ));
        }
        if Instant::now() > until {
            return Err("recommendations did not announce its address within 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // One real request, so the first measured one is not the process's first.
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("cannot connect to recommendations at {addr}: {e}"))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET {URL_PATH} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    let mut answer = Vec::new();
    stream
        .write_all(request.as_bytes())
        .and_then(|()| stream.read_to_end(&mut answer))
        .map_err(|e| format!("recommendations at {addr} did not answer: {e}"))?;
    if !answer.starts_with(b"HTTP/1.0 200") && !answer.starts_with(b"HTTP/1.1 200") {
        return Err(format!(
            "recommendations answered `GET {URL_PATH}` with {:?}",
            String::from_utf8_lossy(&answer[..answer.len().min(40)])
        ));
    }
    Ok((child, format!("http://{addr}{URL_PATH}")))
}
