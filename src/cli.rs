//! The command line: `serve` (the default), `config`, `healthcheck`, `openapi`, `metrics`,
//! `seed-file` and `cluster-create`.
//!
//! Exit codes: 0 on success; 1 when the service fails while running (a port in use, say), a
//! health check fails, a file cannot be seeded or a cluster cannot be created; 2 when the command line or the configuration
//! is refused, with one line on stderr saying why.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::{self, CONFIG_FILE_ENV, Config, ConfigError, FileOrigin, HostPort};
use crate::metrics::Metrics;
use crate::server::App;
use crate::{cluster_create, healthcheck, seed, shutdown, telemetry, version};

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
    /// Serve the API and the admin listener (what happens without a subcommand).
    Serve,
    /// Print the effective configuration as TOML, secrets redacted.
    Config {
        /// Instead, describe every key (variable, kind, bounds, default, meaning) as JSON.
        #[arg(long)]
        describe: bool,
    },
    /// Exit 0 if the service reports ready (GET /readyz answers 200), 1 otherwise.
    Healthcheck {
        /// Readiness URL; default: /readyz on the configured admin_listen address.
        #[arg(long)]
        url: Option<String>,
    },
    /// Print the OpenAPI document of the API (what GET /openapi.json serves).
    Openapi,
    /// Print every metric the service exports (name, type, labels, help) as JSON.
    Metrics,
    /// Write LINEs to DEST, one a line, unless DEST exists (Sentinel's config file: src/seed.rs).
    SeedFile {
        dest: PathBuf,
        #[arg(value_name = "LINE")]
        lines: Vec<String>,
    },
    /// Join empty Redis nodes (host:port) into a cluster, or leave the cluster they already
    /// form as it is (src/cluster_create.rs).
    ClusterCreate {
        #[arg(value_name = "NODE", required = true)]
        nodes: Vec<HostPort>,
        /// Replicas per primary: the first NODEs / (REPLICAS + 1) become the primaries.
        #[arg(long, default_value_t = 1)]
        replicas: usize,
        /// The ACL user to log in as, one allowed the CLUSTER commands.
        #[arg(long)]
        user: Option<String>,
        /// A file holding that user's password.
        #[arg(long, value_name = "PATH")]
        password_file: Option<PathBuf>,
        /// How long to wait, in all, for the nodes to answer and to agree.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        within: Duration,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let file = cli
        .config
        .map(|path| (path, FileOrigin::CommandLine))
        .or_else(|| {
            std::env::var_os(CONFIG_FILE_ENV)
                .map(|path| (PathBuf::from(path), FileOrigin::Environment))
        });
    let load = || {
        Config::load(
            file.as_ref()
                .map(|(path, origin)| (path.as_path(), *origin)),
        )
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Openapi => {
            print!("{}", crate::api::openapi::document());
            ExitCode::SUCCESS
        }
        Command::Metrics => {
            // Plain structs of strings serialise without fail.
            let catalogue = serde_json::to_string_pretty(Metrics::new().catalogue());
            println!("{}", catalogue.unwrap_or_default());
            ExitCode::SUCCESS
        }
        Command::SeedFile { dest, lines } => match seed::seed(&dest, &lines) {
            Ok(seed::Outcome::Written) => {
                eprintln!("timestamp-api: wrote {}", dest.display());
                ExitCode::SUCCESS
            }
            Ok(seed::Outcome::Kept) => {
                eprintln!("timestamp-api: {} exists; left as it is", dest.display());
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("timestamp-api: cannot seed {}: {error}", dest.display());
                ExitCode::FAILURE
            }
        },
        Command::ClusterCreate {
            nodes,
            replicas,
            user,
            password_file,
            within,
        } => create_cluster(&nodes, replicas, user, password_file, within),
        // An explicit URL needs no configuration: a probe should not fail on, say, an
        // unreadable password file it has no use for.
        Command::Healthcheck { url: Some(url) } => check(&url),
        Command::Healthcheck { url: None } => match load() {
            Ok(config) => check(&healthcheck::default_url(config.admin_listen)),
            Err(error) => refuse(&error),
        },
        Command::Config { describe: true } => {
            print!("{}", config::describe::json(&config::describe()));
            ExitCode::SUCCESS
        }
        Command::Config { describe: false } => match load() {
            Ok(config) => {
                print!("{}", config.to_redacted_toml());
                ExitCode::SUCCESS
            }
            Err(error) => refuse(&error),
        },
        Command::Serve => match load() {
            Ok(config) => serve(&config),
            Err(error) => refuse(&error),
        },
    }
}

fn refuse(error: &ConfigError) -> ExitCode {
    eprintln!("timestamp-api: invalid configuration: {error}");
    ExitCode::from(EXIT_BAD_CONFIG)
}

fn check(url: &str) -> ExitCode {
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the async runtime: {error}"))
        .and_then(|runtime| runtime.block_on(healthcheck::probe(url)));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!("timestamp-api: not ready: {reason}");
            ExitCode::FAILURE
        }
    }
}

fn create_cluster(
    nodes: &[HostPort],
    replicas: usize,
    username: Option<String>,
    password_file: Option<PathBuf>,
    within: Duration,
) -> ExitCode {
    let password = match password_file.map(std::fs::read_to_string).transpose() {
        Ok(password) => password.map(|password| password.trim_end().to_owned()),
        Err(error) => {
            eprintln!("timestamp-api: cannot read the password file: {error}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let login = cluster_create::Login {
        username,
        password,
        within,
    };
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the async runtime: {error}"))
        .and_then(|runtime| {
            runtime
                .block_on(cluster_create::create(nodes, replicas, &login))
                .map_err(|error| error.to_string())
        });
    match outcome {
        Ok(cluster_create::Outcome::Created { primaries }) => {
            eprintln!(
                "timestamp-api: created a cluster of {} nodes, {primaries} primaries",
                nodes.len()
            );
            ExitCode::SUCCESS
        }
        Ok(cluster_create::Outcome::Exists) => {
            eprintln!("timestamp-api: the nodes already form a cluster; left as it is");
            ExitCode::SUCCESS
        }
        Err(reason) => {
            eprintln!("timestamp-api: cannot create the cluster: {reason}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: &Config) -> ExitCode {
    let traces = match telemetry::traces::Pipeline::new(&config.traces) {
        Ok(traces) => traces,
        Err(error) => {
            eprintln!("timestamp-api: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Held to the end: dropping it writes out the log lines still queued.
    let _log_writer = telemetry::init(config, traces.as_ref());
    tracing::info!(
        version = version::VERSION,
        git_sha = version::GIT_SHA,
        listen = %config.listen,
        admin_listen = %config.admin_listen,
        config = %serde_json::to_string(config).unwrap_or_default(),
        "starting"
    );
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
        let signal = shutdown::signal();
        let exporting = traces.map(telemetry::traces::Pipeline::start);
        match App::bind(config).await {
            Ok(app) => {
                let deadline = app.run(signal).await;
                if let Some(exporting) = exporting {
                    exporting.flush(deadline).await;
                }
                ExitCode::SUCCESS
            }
            Err(error) => {
                tracing::error!(%error, "cannot start");
                ExitCode::FAILURE
            }
        }
    })
}
