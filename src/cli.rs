//! The command line of contract §3. `main` parses, this module runs.

use std::{net::SocketAddr, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};

use crate::config::{ConfigError, Env};

/// order-gateway: exactly-once Xoxoday Plum orders with a full audit.
#[derive(Debug, Parser)]
#[command(name = "order-gateway", version, about)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// HTTP API + dispatcher + reconciler; applies pending migrations first.
    Serve,
    /// Applies pending migrations and exits.
    Migrate,
    /// Manages caller API keys.
    #[command(subcommand)]
    ApiKey(ApiKeyCommand),
    /// Runs the Xoxoday emulator (EMULATOR_ADDR, default 127.0.0.1:9090).
    Emulator,
    /// One-command local stack: emulator + gateway on a local Postgres.
    Dev,
    /// Exits 0 when the local service's /readyz answers 200.
    Healthcheck {
        /// Base URL of the service; defaults to LISTEN_ADDR on loopback.
        #[arg(long)]
        url: Option<String>,
    },
}

/// `api-key` subcommands.
#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Creates a key for a caller and prints it once, alone on the last line.
    Create {
        /// Caller name (scopes idempotency keys and order visibility).
        #[arg(long)]
        caller: String,
    },
    /// Revokes every key of a caller, effective at once.
    Revoke {
        /// Caller name.
        #[arg(long)]
        caller: String,
    },
}

/// Runs the parsed command and turns the result into an exit code.
/// Errors are printed as one line on stderr.
pub fn run(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("order-gateway: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("order-gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    let env = Env::process();
    match command {
        Command::Healthcheck { url } => healthcheck(&env, url).await,
        Command::Emulator => {
            crate::telemetry::init(&env)?;
            crate::emulator::run_standalone(&env).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve | Command::Migrate | Command::ApiKey(_) | Command::Dev => {
            anyhow::bail!("this command is not built yet")
        }
    }
}

async fn healthcheck(env: &Env, url: Option<String>) -> anyhow::Result<ExitCode> {
    let base = match url {
        Some(u) => u,
        None => {
            let addr: SocketAddr =
                env.parse_or("LISTEN_ADDR", SocketAddr::from(([127, 0, 0, 1], 8080)))?;
            let host = if addr.ip().is_unspecified() {
                "127.0.0.1".to_string()
            } else {
                addr.ip().to_string()
            };
            format!("http://{host}:{}", addr.port())
        }
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let url = format!("{}/readyz", base.trim_end_matches('/'));
    match client.get(&url).send().await {
        Ok(resp) if resp.status().is_success() => Ok(ExitCode::SUCCESS),
        Ok(resp) => {
            eprintln!("order-gateway: {url} answered {}", resp.status());
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            eprintln!("order-gateway: {url} unreachable: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Turns a configuration error into the one line an operator sees.
pub fn config_line(e: &ConfigError) -> String {
    format!("order-gateway: {e}")
}
