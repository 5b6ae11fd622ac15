//! The command line: `serve` (the default) and `config`.
//!
//! Exit codes: 0 on success, 1 when the service fails while running (a port in use, say), 2
//! when the command line or the configuration is refused, with one line on stderr saying why.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{CONFIG_FILE_ENV, Config, FileOrigin};
use crate::server::App;

/// Exit status for a refused command line or configuration (clap uses 2 for usage errors too).
const EXIT_BAD_CONFIG: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "timestamp-api",
    version,
    about = "Named timestamps in Redis, as JSON over HTTP"
)]
struct Cli {
    /// TOML configuration file; TSAPI_CONFIG names one too. Environment variables override it.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API (what happens without a subcommand).
    Serve,
    /// Print the effective configuration as TOML, secrets redacted.
    Config,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let file = match cli.config {
        Some(path) => Some((path, FileOrigin::CommandLine)),
        None => std::env::var_os(CONFIG_FILE_ENV)
            .map(|path| (PathBuf::from(path), FileOrigin::Environment)),
    };
    let config = match Config::load(
        file.as_ref()
            .map(|(path, origin)| (path.as_path(), *origin)),
    ) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("timestamp-api: invalid configuration: {error}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Config => {
            print!("{}", config.to_redacted_toml());
            ExitCode::SUCCESS
        }
        Command::Serve => serve(&config),
    }
}

fn serve(config: &Config) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match App::bind(config).await {
            Ok(app) => {
                app.run(shutdown_signal()).await;
                ExitCode::SUCCESS
            }
            Err(error) => {
                tracing::error!(%error, "cannot start");
                ExitCode::FAILURE
            }
        }
    })
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM (what `docker stop` and Kubernetes send).
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the service");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutdown signal received");
}
