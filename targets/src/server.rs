//! Serving plumbing shared by the services and their binaries: bind, announce, serve until told to
//! stop, and map failures to exit codes.

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;

use axum::Router;
use tokio::net::TcpListener;

use crate::errors::Error;

/// Binds the listening socket.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

/// Prints the readiness line the harness waits for: `listening on <addr>`.
pub fn announce(listener: &TcpListener) -> Result<SocketAddr, Error> {
    let addr = listener.local_addr().map_err(Error::Serve)?;
    // println! flushes at the newline (stdout is line-buffered), so the line is seen at once.
    println!("listening on {addr}");
    Ok(addr)
}

/// Serves `router` until `shutdown` resolves, then lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::Serve)
}

/// Resolves on SIGTERM or SIGINT (the harness stops services with SIGTERM).
pub async fn shutdown_signal() {
    // If SIGINT cannot be watched, wait for SIGTERM alone rather than stopping at once.
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = interrupt => {}
                _ = terminate.recv() => {}
            }
        }
        // Without a SIGTERM handler the default action (exit) still stops us; keep SIGINT.
        Err(error) => {
            eprintln!("warning: cannot listen for SIGTERM: {error}");
            interrupt.await;
        }
    }
}

/// Exit code for a binary's result: 0 ok, 2 bad config, 1 anything else; errors go to stderr.
pub fn exit_code(result: Result<(), Error>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            if error.is_bad_input() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
