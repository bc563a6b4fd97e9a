//! `playback`: serves the playback reference service until SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use faultline_targets::config::PlaybackConfig;
use faultline_targets::errors::Error;
use faultline_targets::{playback, server};

/// Playback reference service: Redis-cached tracks plus breaker-guarded recommendations.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on, `ip:port`.
    #[arg(long)]
    listen: SocketAddr,
    /// JSON file holding a `PlaybackConfig`.
    #[arg(long)]
    config: PathBuf,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    server::exit_code(run(args).await)
}

async fn run(args: Args) -> Result<(), Error> {
    // Config first: a bad file exits 2 before any socket is bound.
    let config = PlaybackConfig::from_json_file(&args.config)?;
    let service = playback::Playback::new(config)?;
    let listener = server::bind(args.listen).await?;
    server::announce(&listener)?;
    service.serve(listener, server::shutdown_signal()).await
}
