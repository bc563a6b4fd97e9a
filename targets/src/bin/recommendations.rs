//! `recommendations`: serves the recommendations reference service until SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use faultline_targets::config::RecommendationsConfig;
use faultline_targets::errors::Error;
use faultline_targets::{recommendations, server};

/// Recommendations reference service: the downstream playback's breaker guards.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on, `ip:port`.
    #[arg(long)]
    listen: SocketAddr,
    /// JSON file holding a `RecommendationsConfig`; defaults apply without one.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    server::exit_code(run(args).await)
}

async fn run(args: Args) -> Result<(), Error> {
    let config = match &args.config {
        Some(path) => RecommendationsConfig::from_json_file(path)?,
        None => RecommendationsConfig::default(),
    };
    let listener = server::bind(args.listen).await?;
    server::announce(&listener)?;
    recommendations::serve(listener, config, server::shutdown_signal()).await
}
