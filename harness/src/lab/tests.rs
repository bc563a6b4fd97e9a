//! Lab tests against the real thing: a real network namespace per test, real `redis-server`,
//! real `toxiproxy-server`, real nftables. Each test enters its lab on a dedicated thread with a
//! current-thread runtime (as the CLI does on its main thread), so parallel tests never share a
//! namespace. State goes under a per-process test root, so `clean` in these tests only ever
//! looks at labs these tests made.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::faults::{self, FaultAction, FaultContext};
use crate::toxiproxy::{NewProxy, Stream, ToxicSpec, Toxiproxy};

/// Shared by every run of these tests; `clean` in tests always names its run ids, so runs (and
/// other labs) never touch each other's state.
fn test_root() -> PathBuf {
    std::env::temp_dir().join("faultline-lab-tests")
}

fn options() -> LabOptions {
    LabOptions {
        state_root: test_root(),
        keep_state: false,
    }
}

/// Runs `f` in a fresh lab on its own thread, shuts the lab down, and checks nothing is left.
fn in_lab<F, Fut>(f: F)
where
    F: FnOnce(Arc<Lab>) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let joined = std::thread::spawn(move || {
        let handle = enter_new_lab_with(&new_run_id(), &options()).expect("enter a new lab");
        let id = handle.id().clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let lab = Arc::new(Lab::new(handle));
            f(lab.clone()).await;
            lab.shutdown().await.expect("shutdown");
            lab.shutdown().await.expect("a second shutdown is a no-op");
        });
        assert!(
            !netns::exists(&id.netns),
            "netns `{}` left behind",
            id.netns
        );
        assert!(
            !id.state_dir.exists(),
            "state dir `{}` left behind",
            id.state_dir.display()
        );
        assert!(
            !netns::lock_path(&id.netns).exists(),
            "lock file left behind"
        );
    })
    .join();
    if let Err(panic) = joined {
        std::panic::resume_unwind(panic);
    }
}

fn redis_spec(lab: &Lab, name: &str, ip: Ipv4Addr) -> NodeSpec {
    let dir = lab.node_dir(name).display().to_string();
    NodeSpec::new(
        name,
        find_tool("redis-server").expect("redis-server installed"),
        // Not `TcpPort`: redis accepts connections while it loads its AOF and answers them
        // `-LOADING` (seen after kill + restart); this line comes once the data is loaded.
        Readiness::LogLine("Ready to accept connections".into()),
    )
    .args([
        "--bind",
        &ip.to_string(),
        "--port",
        &REDIS_PORT.to_string(),
        "--dir",
        &dir,
    ])
    // `always`: a SET acknowledged just before SIGKILL must be in the AOF.
    .args([
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--save",
        "",
    ])
    .args([
        "--protected-mode",
        "no",
        "--daemonize",
        "no",
        "--logfile",
        "",
    ])
    .ready_timeout(Duration::from_secs(10))
}

/// One RESP command; the reply as text (`PONG`, `OK`, the bulk string, `(nil)`, `ERR ...`).
async fn redis(addr: SocketAddr, parts: &[&str], within: Duration) -> Result<String, String> {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let mut req = format!("*{}\r\n", parts.len());
        for p in parts {
            req.push_str(&format!("${}\r\n{p}\r\n", p.len()));
        }
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut buf = Vec::new();
        loop {
            let mut chunk = [0u8; 512];
            let n = s.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("connection closed".to_string());
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(reply) = parse_reply(&buf) {
                return Ok(reply);
            }
        }
    };
    tokio::time::timeout(within, exchange)
        .await
        .map_err(|_| "timed out".to_string())?
}

fn parse_reply(buf: &[u8]) -> Option<String> {
    let end = buf.windows(2).position(|w| w == b"\r\n")?;
    let head = String::from_utf8_lossy(&buf[1..end]).into_owned();
    match buf.first()? {
        b'+' | b'-' | b':' => Some(head),
        b'$' => {
            let len: i64 = head.parse().ok()?;
            if len < 0 {
                return Some("(nil)".to_string());
            }
            let body = buf.get(end + 2..end + 2 + usize::try_from(len).ok()?)?;
            Some(String::from_utf8_lossy(body).into_owned())
        }
        _ => Some(String::from_utf8_lossy(buf).into_owned()),
    }
}

const QUICK: Duration = Duration::from_secs(5);

#[test]
fn redis_runs_inside_the_lab_and_answers() {
    in_lab(|lab| async move {
        let ip = node_addr(1, 1);
        let addr = SocketAddr::new(ip.into(), REDIS_PORT);
        // TcpPort readiness: fine on a first start with no data to load.
        let mut spec = redis_spec(&lab, "r1", ip);
        spec.readiness = Readiness::TcpPort(addr);
        let info = lab.start_node(&spec).await.expect("redis starts");
        assert_eq!(redis(addr, &["PING"], QUICK).await.as_deref(), Ok("PONG"));
        assert!(info.log_path.exists());
        assert!(info.ready_after < Duration::from_secs(10));
        // The process lives in the lab's namespace, not the host's.
        let inside = netns::pids(lab.netns()).expect("ip netns pids");
        assert!(
            inside.contains(&info.pid),
            "pid {} not in {inside:?}",
            info.pid
        );
        // The intent log recorded it with its start time.
        let (intents, _) =
            intent::read(&lab.state_dir().join(IntentLog::FILE_NAME)).expect("intent log");
        let start = procfs::start_time(info.pid).expect("stat");
        assert!(
            intents.contains(&Intent::Process {
                node: "r1".into(),
                pid: info.pid,
                start_time: start
            }),
            "{intents:?}"
        );
        assert!(matches!(intents.first(), Some(Intent::Lab { .. })));
        // Starting a running node again is refused.
        let again = lab
            .start_node(&redis_spec(&lab, "r1", ip))
            .await
            .expect_err("already running");
        assert!(matches!(again, LabError::AlreadyRunning(_)), "{again}");
        // A clean meanwhile leaves a live lab alone.
        let report = clean_leftovers_with(&CleanOptions {
            state_root: test_root(),
            orphan_namespaces: true,
            only_run_ids: Some(vec![lab.run_id().to_string()]),
            keep_state: false,
        })
        .expect("clean");
        assert!(report.cleaned.is_empty(), "{report}");
        assert!(
            report.skipped[0].reason.contains("still running"),
            "{report}"
        );
        assert_eq!(redis(addr, &["PING"], QUICK).await.as_deref(), Ok("PONG"));
        // Logs can be kept past shutdown.
        let keep = test_root().join(format!("kept-{}", lab.run_id()));
        let copied = lab.copy_logs_to(&keep).expect("copy logs");
        assert_eq!(copied, vec![keep.join("r1.log")]);
        let _ = std::fs::remove_dir_all(&keep);
    });
}

#[test]
fn latency_toxic_slows_requests_until_undone_and_link_down_refuses() {
    in_lab(|lab| async move {
        let redis_ip = node_addr(1, 1);
        lab.start_node(&redis_spec(&lab, "r1", redis_ip))
            .await
            .expect("redis starts");
        let api = SocketAddr::new(node_addr(2, 1).into(), TOXIPROXY_API_PORT);
        let (tp, _) = Toxiproxy::start_server(&lab, "toxiproxy", api)
            .await
            .expect("toxiproxy starts");
        assert!(!tp.version().await.expect("version").is_empty());
        let listen = SocketAddr::new(proxy_listen_addr(1).into(), REDIS_PORT);
        tp.create_proxy(&NewProxy {
            name: "redis".into(),
            listen: listen.to_string(),
            upstream: SocketAddr::new(redis_ip.into(), REDIS_PORT).to_string(),
            enabled: true,
        })
        .await
        .expect("proxy created");
        assert_eq!(redis(listen, &["PING"], QUICK).await.as_deref(), Ok("PONG"));

        let ctx = FaultContext::new(lab.clone(), Some(tp.clone()));
        let latency = Duration::from_millis(200);
        let action = FaultAction::Toxic {
            proxies: vec!["redis".into()],
            spec: ToxicSpec::Latency {
                latency_ms: 200,
                jitter_ms: 0,
            },
            stream: Stream::Downstream,
            toxicity: 1.0,
        };
        let mut guard = faults::apply(&ctx, "slow-redis", &action)
            .await
            .expect("toxic applied");
        assert!(guard.is_active());
        assert_eq!(tp.proxy("redis").await.expect("proxy").toxics.len(), 1);
        let t = Instant::now();
        assert_eq!(redis(listen, &["PING"], QUICK).await.as_deref(), Ok("PONG"));
        let slow = t.elapsed();
        assert!(
            slow >= latency,
            "PING through a {latency:?} toxic took only {slow:?}"
        );

        guard.undo().await.expect("undo");
        assert!(!guard.is_active());
        guard.undo().await.expect("a second undo is a no-op");
        let t = Instant::now();
        assert_eq!(redis(listen, &["PING"], QUICK).await.as_deref(), Ok("PONG"));
        let fast = t.elapsed();
        assert!(fast < latency, "PING after undo still took {fast:?}");
        assert!(tp.proxy("redis").await.expect("proxy").toxics.is_empty());

        let mut down = faults::apply(
            &ctx,
            "link-down",
            &FaultAction::LinkDown {
                proxies: vec!["redis".into()],
            },
        )
        .await
        .expect("link down");
        let refused = redis(listen, &["PING"], QUICK)
            .await
            .expect_err("proxy disabled");
        assert!(refused.contains("connect"), "{refused}");
        down.undo().await.expect("link up");
        assert_eq!(redis(listen, &["PING"], QUICK).await.as_deref(), Ok("PONG"));

        // Every toxic type is accepted by the real server with the attributes we send.
        let every = [
            ToxicSpec::Latency {
                latency_ms: 1,
                jitter_ms: 1,
            },
            ToxicSpec::Bandwidth {
                rate_kb_per_s: 1000,
            },
            ToxicSpec::SlowClose { delay_ms: 1 },
            ToxicSpec::Timeout { timeout_ms: 1000 },
            ToxicSpec::ResetPeer { timeout_ms: 1000 },
            ToxicSpec::Slicer {
                average_size: 64,
                size_variation: 8,
                delay_us: 10,
            },
            ToxicSpec::LimitData { bytes: 100_000 },
        ];
        for spec in &every {
            let new = crate::toxiproxy::NewToxic {
                name: format!("t_{}", spec.kind()),
                stream: Stream::Upstream,
                toxicity: 0.5,
                spec: spec.clone(),
            };
            let made = tp.add_toxic("redis", &new).await.expect("toxic accepted");
            assert_eq!(
                (made.kind.as_str(), made.stream, made.toxicity),
                (spec.kind(), Stream::Upstream, 0.5)
            );
            let back: ToxicSpec = serde_json::from_value(
                serde_json::json!({"type": made.kind, "attributes": made.attributes}),
            )
            .expect("attributes read back");
            assert_eq!(&back, spec);
        }
        assert_eq!(
            tp.proxy("redis").await.expect("proxy").toxics.len(),
            every.len()
        );
        tp.reset().await.expect("reset");
        assert!(
            tp.proxies().await.expect("proxies")["redis"]
                .toxics
                .is_empty()
        );

        // Errors name the call and carry the server's answer.
        let missing = tp.proxy("nope").await.expect_err("no such proxy");
        let shown = missing.to_string();
        assert!(
            shown.contains("GET /proxies/nope") && shown.contains("404"),
            "{shown}"
        );

        let (intents, _) =
            intent::read(&lab.state_dir().join(IntentLog::FILE_NAME)).expect("intent log");
        let pos = |want: &Intent| intents.iter().position(|i| i == want);
        let applied = intents
            .iter()
            .position(|i| matches!(i, Intent::Fault { id, .. } if id == "slow-redis"));
        let undone = pos(&Intent::FaultUndone {
            id: "slow-redis".into(),
        });
        assert!(
            applied.is_some() && undone.is_some() && applied < undone,
            "{intents:?}"
        );
        assert_eq!(
            intents
                .iter()
                .filter(|i| **i
                    == Intent::FaultUndone {
                        id: "slow-redis".into()
                    })
                .count(),
            1
        );
        tp.delete_proxy("redis").await.expect("proxy deleted");
        assert!(tp.proxies().await.expect("proxies").is_empty());
    });
}

#[test]
fn pause_stalls_a_node_and_resume_brings_it_back() {
    in_lab(|lab| async move {
        let ip = node_addr(1, 1);
        let addr = SocketAddr::new(ip.into(), REDIS_PORT);
        lab.start_node(&redis_spec(&lab, "r1", ip))
            .await
            .expect("redis starts");
        let ctx = FaultContext::new(lab.clone(), None);
        let mut guard = faults::apply(
            &ctx,
            "pause",
            &FaultAction::Pause {
                nodes: vec!["r1".into()],
                role: None,
            },
        )
        .await
        .expect("paused");
        let stalled = redis(addr, &["PING"], Duration::from_millis(500)).await;
        assert_eq!(stalled, Err("timed out".to_string()));
        guard.undo().await.expect("resumed");
        assert_eq!(redis(addr, &["PING"], QUICK).await.as_deref(), Ok("PONG"));
        // A fault naming an unknown node fails, and rolls back what it did first.
        let partial = faults::apply(
            &ctx,
            "pause2",
            &FaultAction::Pause {
                nodes: vec!["r1".into(), "ghost".into()],
                role: None,
            },
        )
        .await;
        assert!(partial.is_err());
        assert_eq!(redis(addr, &["PING"], QUICK).await.as_deref(), Ok("PONG"));
    });
}

#[test]
fn kill_then_undo_restarts_with_the_same_data() {
    in_lab(|lab| async move {
        let ip = node_addr(1, 1);
        let addr = SocketAddr::new(ip.into(), REDIS_PORT);
        let first = lab
            .start_node(&redis_spec(&lab, "r1", ip))
            .await
            .expect("redis starts");
        assert_eq!(
            redis(addr, &["SET", "k", "survives"], QUICK)
                .await
                .as_deref(),
            Ok("OK")
        );
        let ctx = FaultContext::new(lab.clone(), None);
        let mut guard = faults::apply(
            &ctx,
            "kill",
            &FaultAction::Kill {
                nodes: vec!["r1".into()],
                role: None,
            },
        )
        .await
        .expect("killed");
        assert!(!procfs::is_alive(first.pid));
        assert_eq!(lab.node_pid("r1").await, None);
        assert!(redis(addr, &["PING"], QUICK).await.is_err());
        guard.undo().await.expect("restarted");
        let second = lab.node_pid("r1").await.expect("running again");
        assert_ne!(second, first.pid);
        assert_eq!(
            redis(addr, &["GET", "k"], QUICK).await.as_deref(),
            Ok("survives")
        );
        // Restart is instantaneous: nothing left to undo, data still there.
        let guard = faults::apply(
            &ctx,
            "bounce",
            &FaultAction::Restart {
                nodes: vec!["r1".into()],
                role: None,
            },
        )
        .await
        .expect("restarted");
        assert!(!guard.is_active());
        assert_ne!(lab.node_pid("r1").await, Some(second));
        assert_eq!(
            redis(addr, &["GET", "k"], QUICK).await.as_deref(),
            Ok("survives")
        );
        // A graceful stop, then the node is not running.
        lab.stop_node("r1", Duration::from_secs(5))
            .await
            .expect("stopped");
        assert!(matches!(
            lab.kill_node("r1").await,
            Err(LabError::NotRunning(_))
        ));
    });
}

async fn connects(from: Ipv4Addr, to: SocketAddr) -> bool {
    let attempt = async {
        let sock = tokio::net::TcpSocket::new_v4()?;
        // Bound to the node's own address: the partition is by source address.
        sock.bind(SocketAddr::new(from.into(), 0))?;
        sock.connect(to).await
    };
    matches!(
        tokio::time::timeout(Duration::from_millis(300), attempt).await,
        Ok(Ok(_))
    )
}

#[test]
fn partition_blocks_traffic_and_heal_restores_it() {
    in_lab(|lab| async move {
        let (a, b) = (node_addr(1, 1), node_addr(2, 1));
        let listener = tokio::net::TcpListener::bind(SocketAddr::new(b.into(), 7000))
            .await
            .expect("listen");
        let target = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            // Keep accepting so connects complete; the sockets are dropped at once.
            while listener.accept().await.is_ok() {}
        });
        assert!(connects(a, target).await, "baseline connect failed");

        let ctx = FaultContext::new(lab.clone(), None);
        let action = FaultAction::Partition {
            a: vec![a],
            b: vec![b],
            direction: Direction::Both,
        };
        let mut guard = faults::apply(&ctx, "split", &action)
            .await
            .expect("partitioned");
        assert!(!connects(a, target).await, "connect crossed the partition");
        // Other pairs are unaffected.
        assert!(connects(node_addr(3, 1), target).await);
        guard.undo().await.expect("healed");
        assert!(connects(a, target).await, "connect failed after heal");
        guard.undo().await.expect("healing twice is fine");

        // One way: datagrams a->b are dropped, b->a arrive.
        let ua = tokio::net::UdpSocket::bind(SocketAddr::new(a.into(), 7001))
            .await
            .expect("udp a");
        let ub = tokio::net::UdpSocket::bind(SocketAddr::new(b.into(), 7001))
            .await
            .expect("udp b");
        let handle = lab
            .partition(&[a], &[b], Direction::OneWay)
            .await
            .expect("one-way partition");
        assert_eq!(handle.rule_handles.len(), 1);
        // Dropped silently (in the input hook), as a real network would: the send succeeds.
        ua.send_to(b"a->b", ub.local_addr().expect("addr"))
            .await
            .expect("send");
        let mut buf = [0u8; 16];
        let got = tokio::time::timeout(Duration::from_millis(300), ub.recv_from(&mut buf)).await;
        assert!(got.is_err(), "a->b datagram crossed a one-way partition");
        ub.send_to(b"b->a", ua.local_addr().expect("addr"))
            .await
            .expect("send");
        let got = tokio::time::timeout(QUICK, ua.recv_from(&mut buf)).await;
        assert!(matches!(got, Ok(Ok((4, _)))), "b->a datagram was dropped");
        assert_eq!(lab.heal(&handle).await.expect("heal"), 1);
        assert_eq!(lab.heal(&handle).await.expect("heal again"), 0);
        ua.send_to(b"a->b", ub.local_addr().expect("addr"))
            .await
            .expect("send");
        let got = tokio::time::timeout(QUICK, ub.recv_from(&mut buf)).await;
        assert!(
            matches!(got, Ok(Ok((4, _)))),
            "a->b datagram dropped after heal"
        );
    });
}

#[test]
fn early_exit_and_missed_deadline_are_reported() {
    in_lab(|lab| async move {
        let never = Readiness::TcpPort(SocketAddr::new(node_addr(1, 9).into(), 9));
        let spec = NodeSpec::new("boom", "/bin/sh", never)
            .args(["-c", "echo first; echo boom >&2; exit 3"]);
        let err = lab.start_node(&spec).await.expect_err("exits early");
        match &err {
            LabError::ExitedEarly {
                node,
                status,
                log_tail,
            } => {
                assert_eq!(node, "boom");
                assert!(status.contains('3'), "{status}");
                assert_eq!(log_tail, "first\nboom");
            }
            other => panic!("expected ExitedEarly, got {other}"),
        }
        let spec = NodeSpec::new(
            "mute",
            "/bin/sleep",
            Readiness::LogLine("never printed".into()),
        )
        .arg("30")
        .ready_timeout(Duration::from_millis(300));
        let t = Instant::now();
        let err = lab.start_node(&spec).await.expect_err("never ready");
        assert!(
            matches!(
                err,
                LabError::NotReady {
                    timeout_ms: 300,
                    ..
                }
            ),
            "{err}"
        );
        assert!(t.elapsed() < Duration::from_secs(3));
        // The unready process was killed, not left behind.
        let (intents, _) =
            intent::read(&lab.state_dir().join(IntentLog::FILE_NAME)).expect("intent log");
        let Some(Intent::Process {
            pid, start_time, ..
        }) = intents
            .iter()
            .rev()
            .find(|i| matches!(i, Intent::Process { node, .. } if node == "mute"))
        else {
            panic!("no process intent for `mute`: {intents:?}")
        };
        assert!(!procfs::is_same_process_alive(*pid, *start_time));
        // Log-line readiness looks only at this start's output.
        let spec = NodeSpec::new(
            "talker",
            "/bin/sh",
            Readiness::LogLine("hello there".into()),
        )
        .args([
            "-c",
            "echo hello; sleep 0.05; echo hello there; exec sleep 30",
        ]);
        lab.start_node(&spec).await.expect("log line seen");
        lab.kill_node("talker").await.expect("killed");
        let err = lab.restart_node("talker").await;
        assert!(err.is_ok(), "restart waits for a fresh log line: {err:?}");
    });
}

#[test]
fn dropping_a_lab_tears_it_down_without_shutdown() {
    std::thread::spawn(|| {
        // A handle that is never used still cleans up.
        let handle = enter_new_lab_with(&new_run_id(), &options()).expect("enter");
        let id = handle.id().clone();
        assert!(netns::exists(&id.netns) && id.state_dir.exists());
        handle.close().expect("close");
        assert!(!netns::exists(&id.netns) && !id.state_dir.exists());

        // A lab dropped mid-run (the panic path) kills its nodes and deletes its namespace.
        let handle = enter_new_lab_with(&new_run_id(), &options()).expect("enter");
        let id = handle.id().clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let pid = rt.block_on(async {
            let lab = Lab::new(handle);
            let info = lab
                .start_node(&redis_spec(&lab, "r1", node_addr(1, 1)))
                .await
                .expect("redis starts");
            drop(lab);
            info.pid
        });
        let start = procfs::start_time(pid);
        // SIGKILL was sent; the zombie is reaped by tokio or stays a zombie until then.
        let deadline = Instant::now() + QUICK;
        while procfs::is_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            !procfs::is_alive(pid),
            "node pid {pid} (start {start:?}) survived the drop"
        );
        assert!(!netns::exists(&id.netns));
        assert!(!id.state_dir.exists());
        let (intents_gone, lock_gone) = (
            !id.state_dir.join(IntentLog::FILE_NAME).exists(),
            !netns::lock_path(&id.netns).exists(),
        );
        assert!(intents_gone && lock_gone);
    })
    .join()
    .expect("drop test thread");
}

#[test]
fn tools_and_names_are_checked() {
    assert!(find_tool("toxiproxy-server").is_ok());
    assert!(find_tool("redis-server").is_ok());
    let e = find_tool("faultline-no-such-tool").expect_err("missing");
    assert!(e.to_string().contains("cargo xtask deps"), "{e}");
    let e = find_target_binary("faultline-no-such-target").expect_err("missing");
    assert!(e.to_string().contains("FAULTLINE_TARGETS_DIR"), "{e}");
    let e = enter_new_lab_with("../etc", &options()).expect_err("bad run id");
    assert!(matches!(e, LabError::InvalidName { .. }), "{e}");
    assert!(node::validate_name("node name", "../x").is_err());
    assert_eq!(node_addr(3, 2), Ipv4Addr::new(127, 0, 3, 2));
    assert!(
        check_node_addr(0, 1).is_err()
            && check_node_addr(250, 1).is_err()
            && check_node_addr(1, 0).is_err()
    );
    assert_eq!(proxy_listen_addr(4), Ipv4Addr::new(127, 0, 250, 4));
    let id = new_run_id();
    assert_eq!(id.len(), 8);
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
}

fn clean_only(run_id: &str, root: PathBuf) -> CleanReport {
    clean_leftovers_with(&CleanOptions {
        state_root: root,
        orphan_namespaces: true,
        only_run_ids: Some(vec![run_id.to_string()]),
        keep_state: false,
    })
    .expect("clean")
}

/// Not a test on its own: `clean_undoes_what_a_sigkilled_harness_left` runs this in a child
/// process, then SIGKILLs it mid-run.
#[test]
#[ignore = "helper process for clean_undoes_what_a_sigkilled_harness_left"]
fn victim_harness() {
    let Some(root) = std::env::var_os("FAULTLINE_TEST_VICTIM_ROOT") else {
        return;
    };
    let opts = LabOptions {
        state_root: PathBuf::from(root),
        keep_state: false,
    };
    let handle = enter_new_lab_with(&new_run_id(), &opts).expect("victim lab");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let lab = Lab::new(handle);
        // The node dies with the harness (PDEATHSIG); its background child does not: that is
        // what `clean` must find.
        let spec = NodeSpec::new("stray", "/bin/sh", Readiness::LogLine("up".into()))
            .args(["-c", "sleep 300 </dev/null >/dev/null 2>&1 & echo up; wait"]);
        lab.start_node(&spec).await.expect("victim node");
        println!("VICTIM_READY {}", lab.run_id());
        // Bounded: the parent kills this process long before.
        tokio::time::sleep(Duration::from_secs(120)).await;
    });
}

#[test]
fn clean_undoes_what_a_sigkilled_harness_left() {
    let root = test_root().join("victims");
    let exe = std::env::current_exe().expect("test executable");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let run_id = rt.block_on(async {
        let mut victim = tokio::process::Command::new(&exe)
            .args([
                "lab::tests::victim_harness",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("FAULTLINE_TEST_VICTIM_ROOT", &root)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn victim");
        let stdout = victim.stdout.take().expect("stdout");
        let mut lines = tokio::io::BufReader::new(stdout);
        let mut run_id = None;
        let ready = tokio::time::timeout(Duration::from_secs(60), async {
            use tokio::io::AsyncBufReadExt;
            let mut line = String::new();
            while lines.read_line(&mut line).await.unwrap_or(0) > 0 {
                // libtest may have printed `test ... ... ` on the same line first.
                if let Some((_, id)) = line.trim().split_once("VICTIM_READY ") {
                    run_id = Some(id.trim().to_string());
                    return;
                }
                line.clear();
            }
        })
        .await;
        assert!(ready.is_ok(), "victim never became ready");
        victim.kill().await.expect("SIGKILL the victim harness");
        run_id.expect("victim run id")
    });
    let name = format!("{NETNS_PREFIX}{run_id}");
    assert!(
        netns::exists(&name),
        "the killed harness's netns should still be there"
    );
    // The node's shell dies with the victim (PDEATHSIG) and may still be on its way out; the
    // background `sleep` it started is what must survive until `clean`.
    let strays: Vec<u32> = netns::pids(&name)
        .expect("pids")
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sleep")
        })
        .collect();
    assert!(
        !strays.is_empty(),
        "the stray background process should survive its harness"
    );

    let report = clean_only(&run_id, root.clone());
    assert_eq!(report.cleaned.len(), 1, "{report}");
    let c = &report.cleaned[0];
    assert!(c.netns_deleted && c.state_dir_removed, "{report}");
    for pid in &strays {
        assert!(c.killed.contains(pid), "{report}");
        assert!(!procfs::is_alive(*pid), "pid {pid} survived clean");
    }
    assert!(!netns::exists(&name));
    assert!(!lab_state_dir(&root, &run_id).exists());
    assert!(!netns::lock_path(&name).exists());
    // Nothing left: a second clean has nothing to do.
    let again = clean_only(&run_id, root.clone());
    assert!(
        again.cleaned.is_empty() && again.skipped.is_empty(),
        "{again}"
    );
    assert_eq!(again.to_string(), "nothing to clean");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn clean_trusts_only_matching_start_times_and_skips_live_or_closed_labs() {
    use std::io::Write;
    let root = test_root().join("hand-written");
    let me = std::process::id();
    let my_start = procfs::start_time(me).expect("own start time");
    let spawn_sleep = || {
        use std::os::unix::process::CommandExt;
        std::process::Command::new("sleep")
            .arg("300")
            .process_group(0)
            .spawn()
            .expect("sleep")
    };
    let (mut target, mut bystander) = (spawn_sleep(), spawn_sleep());
    let write_lab = |run_id: &str, harness_start: u64, extra: &[Intent]| {
        let dir = lab_state_dir(&root, run_id);
        std::fs::create_dir_all(&dir).expect("state dir");
        let mut f = std::fs::File::create(dir.join(IntentLog::FILE_NAME)).expect("log");
        let netns = format!("{NETNS_PREFIX}{run_id}");
        let mut all = vec![
            Intent::Lab {
                run_id: run_id.into(),
                netns: netns.clone(),
                harness_pid: me,
                harness_start_time: harness_start,
            },
            Intent::Netns { name: netns },
        ];
        all.extend_from_slice(extra);
        for i in all {
            writeln!(f, "{}", serde_json::to_string(&i).expect("json")).expect("write");
        }
    };
    // A dead harness (same pid, other start time) that left two processes: one still the same
    // process, one whose pid now "belongs to someone else" (wrong start time).
    let dead = new_run_id();
    let target_start = procfs::start_time(target.id()).expect("stat");
    let bystander_start = procfs::start_time(bystander.id()).expect("stat");
    write_lab(
        &dead,
        my_start + 12345,
        &[
            Intent::Process {
                node: "a".into(),
                pid: target.id(),
                start_time: target_start,
            },
            Intent::Process {
                node: "b".into(),
                pid: bystander.id(),
                start_time: bystander_start + 1,
            },
            Intent::Fault {
                id: "f1".into(),
                detail: serde_json::json!({}),
            },
            Intent::Fault {
                id: "f2".into(),
                detail: serde_json::json!({}),
            },
            Intent::FaultUndone { id: "f2".into() },
        ],
    );
    let report = clean_only(&dead, root.clone());
    assert_eq!(report.cleaned.len(), 1, "{report}");
    let c = &report.cleaned[0];
    assert_eq!(c.killed, vec![target.id()], "{report}");
    assert_eq!(c.outstanding_faults, vec!["f1".to_string()]);
    assert!(c.state_dir_removed && !c.netns_deleted, "{report}");
    let status = target.wait().expect("reap target");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    assert!(
        bystander.try_wait().expect("poll").is_none(),
        "a pid with another start time was killed"
    );

    // A live harness (this very process) and a closed lab are left alone.
    let live = new_run_id();
    write_lab(&live, my_start, &[]);
    let report = clean_only(&live, root.clone());
    assert!(
        report.cleaned.is_empty() && report.skipped[0].reason.contains("still running"),
        "{report}"
    );
    let closed = new_run_id();
    write_lab(&closed, my_start + 1, &[Intent::Closed]);
    let report = clean_only(&closed, root.clone());
    assert!(
        report.cleaned.is_empty() && report.skipped[0].reason.contains("closed"),
        "{report}"
    );

    let _ = bystander.kill();
    let _ = bystander.wait();
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn clean_deletes_orphan_namespaces() {
    let run_id = new_run_id();
    let name = format!("{NETNS_PREFIX}{run_id}");
    netns::add(&name).expect("ip netns add");
    // A process orphaned inside the namespace: its parent shell exits at once.
    netns::run(
        "ip",
        &[
            "netns",
            "exec",
            &name,
            "sh",
            "-c",
            "sleep 300 </dev/null >/dev/null 2>&1 &",
        ],
    )
    .expect("orphan");
    let deadline = Instant::now() + QUICK;
    let mut inside = Vec::new();
    while inside.is_empty() && Instant::now() < deadline {
        inside = netns::pids(&name).expect("pids");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(inside.len(), 1, "expected the orphaned sleep in {name}");
    let report = clean_only(&run_id, test_root().join("orphans"));
    assert_eq!(report.cleaned.len(), 1, "{report}");
    assert_eq!(report.cleaned[0].killed, inside);
    assert!(report.cleaned[0].state_dir.is_none());
    assert!(!netns::exists(&name));
    assert!(!procfs::is_alive(inside[0]));
    assert!(report.to_string().contains("orphan namespace"), "{report}");
}

/// The flake this pins: a still-living group leader listed before its member. Killing the leader
/// takes the group, and the member must still be reported as killed.
#[test]
fn clean_reports_group_members_killed_with_their_leader() {
    use std::os::unix::process::CommandExt;
    let name = format!("{NETNS_PREFIX}{}", new_run_id());
    netns::add(&name).expect("netns");
    let mut leader = std::process::Command::new("ip")
        .args(["netns", "exec", &name, "/bin/sh", "-c", "sleep 300 & wait"])
        .process_group(0)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn leader");
    let leader_pid = leader.id();
    // Declared readiness: the member `sleep` is listed in the namespace (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(10);
    let member = loop {
        let found = netns::pids(&name).expect("pids").into_iter().find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sleep")
        });
        if let Some(pid) = found {
            break pid;
        }
        assert!(Instant::now() < deadline, "the member never started");
        std::thread::sleep(Duration::from_millis(10));
    };
    let (killed, deleted) = clean::empty_and_delete(&name).expect("clean");
    let _ = leader.wait();
    assert!(deleted && !netns::exists(&name));
    assert!(
        killed.contains(&leader_pid) && killed.contains(&member),
        "killed {killed:?}, expected leader {leader_pid} and member {member}"
    );
    assert!(!procfs::is_alive(member), "member {member} survived");
}
