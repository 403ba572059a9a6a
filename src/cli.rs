//! The command line of contract §3. `main` parses, this module runs.

use std::{
    collections::HashMap, ffi::OsString, fmt, marker::PhantomData, net::SocketAddr,
    process::ExitCode, time::Duration,
};

use clap::{
    Arg, ArgAction, ArgMatches, Args, FromArgMatches, Parser, Subcommand, parser::ValueSource,
    value_parser,
};

use crate::{
    config::{ConfigError, Env, ServeConfig},
    crypto::Cipher,
    orders::{
        callers::{generate_key, hash_key},
        token_store::reset_tokens,
    },
    settings::{self, LISTEN_ADDR, Var},
    startup::Application,
    store::Store,
};

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
    #[command(after_help = MIRRORS)]
    Serve(VarArgs<ServeVars>),
    /// Applies pending migrations and exits.
    #[command(after_help = MIRRORS)]
    Migrate(VarArgs<MigrateVars>),
    /// Manages caller API keys.
    #[command(subcommand)]
    ApiKey(ApiKeyCommand),
    /// Manages callers' notification endpoints (contract §9).
    #[command(subcommand)]
    Callers(crate::notify::cli::CallersCommand),
    /// Manages the stored Xoxoday token pair.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Runs the Xoxoday emulator.
    #[command(after_help = MIRRORS)]
    Emulator(VarArgs<EmulatorVars>),
    /// Operators: show, recheck or resolve one order (contract §8).
    #[command(subcommand)]
    Orders(crate::ops::OrdersCommand),
    /// Finance: the books audit against Xoxoday's order history (contract §8).
    #[command(subcommand)]
    Audit(crate::ops::AuditCommand),
    /// One-command local stack: emulator + gateway on a local Postgres.
    Dev,
    /// Exits 0 when the local service's /readyz answers 200.
    #[command(after_help = MIRRORS)]
    Healthcheck {
        /// Base URL of the service; defaults to LISTEN_ADDR on loopback.
        #[arg(long)]
        url: Option<String>,
        /// The variables it reads.
        #[command(flatten)]
        vars: VarArgs<HealthcheckVars>,
    },
}

pub(crate) const MIRRORS: &str = "Each flag mirrors the environment variable shown with it and wins over it. \
     Durations are written like `150s`, `15m` or `72h`.";

/// A list of variables that a subcommand reads, as `--help` shows them:
/// name, default and meaning.
pub trait VarSet {
    /// The variables, each with its default written out.
    fn vars() -> Vec<(&'static str, Option<String>, &'static str)>;
}

/// The `--help` rows of `vars`.
pub(crate) fn listed(vars: &[Var]) -> Vec<(&'static str, Option<String>, &'static str)> {
    vars.iter()
        .map(|v| (v.name, v.default.map(String::from), v.help))
        .collect()
}

/// The variables of `serve`.
#[derive(Debug)]
pub struct ServeVars;

impl VarSet for ServeVars {
    fn vars() -> Vec<(&'static str, Option<String>, &'static str)> {
        listed(settings::SERVE)
    }
}

/// The variables of `migrate`.
#[derive(Debug)]
pub struct MigrateVars;

impl VarSet for MigrateVars {
    fn vars() -> Vec<(&'static str, Option<String>, &'static str)> {
        listed(settings::MIGRATE)
    }
}

/// The variables of `api-key create` and `api-key revoke`.
#[derive(Debug)]
pub struct ApiKeyVars;

impl VarSet for ApiKeyVars {
    fn vars() -> Vec<(&'static str, Option<String>, &'static str)> {
        listed(settings::API_KEY)
    }
}

/// The variables of `tokens reset`.
#[derive(Debug)]
pub struct TokensResetVars;

impl VarSet for TokensResetVars {
    fn vars() -> Vec<(&'static str, Option<String>, &'static str)> {
        listed(settings::TOKENS_RESET)
    }
}

/// The variables of `healthcheck`.
#[derive(Debug)]
pub struct HealthcheckVars;

impl VarSet for HealthcheckVars {
    fn vars() -> Vec<(&'static str, Option<String>, &'static str)> {
        listed(settings::HEALTHCHECK)
    }
}

/// The variables of `emulator`: its own, with the defaults of
/// [`crate::emulator::EmulatorConfig`], and the log settings.
#[derive(Debug)]
pub struct EmulatorVars;

impl VarSet for EmulatorVars {
    fn vars() -> Vec<(&'static str, Option<String>, &'static str)> {
        let mut vars = crate::emulator::EmulatorConfig::variables();
        vars.extend(listed(&[settings::RUST_LOG, settings::LOG_FORMAT]));
        vars
    }
}

/// A subcommand's variables as flags: `--order-lease 5s` mirrors
/// `ORDER_LEASE=5s` and wins over it. `--help` lists each with its default
/// and variable (never its value: some are secrets). Only what was given on
/// the command line is kept; [`Env`] reads the rest and applies the defaults.
pub struct VarArgs<S> {
    flags: HashMap<&'static str, String>,
    set: PhantomData<S>,
}

impl<S> VarArgs<S> {
    /// The process environment with the flags over it.
    pub fn env(self) -> Env {
        Env::process().overlay(self.flags)
    }
}

impl<S> fmt::Debug for VarArgs<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // names only: values may be secrets
        f.debug_set().entries(self.flags.keys()).finish()
    }
}

fn var_arg((name, default, help): (&'static str, Option<String>, &'static str)) -> Arg {
    let arg = Arg::new(name)
        .long(name.to_ascii_lowercase().replace('_', "-"))
        .env(name)
        .hide_env_values(true)
        .value_name("VALUE")
        .allow_negative_numbers(true)
        .help(help)
        .action(ArgAction::Set)
        .value_parser(value_parser!(OsString));
    match default {
        Some(default) => arg.default_value(default),
        None => arg,
    }
}

impl<S: VarSet> Args for VarArgs<S> {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        S::vars()
            .into_iter()
            .fold(cmd, |cmd, var| cmd.arg(var_arg(var)))
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl<S: VarSet> FromArgMatches for VarArgs<S> {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut flags = HashMap::new();
        for (name, _, _) in S::vars() {
            if matches.value_source(name) != Some(ValueSource::CommandLine) {
                continue;
            }
            // not UTF-8: unset, as for a variable (`std::env::var` fails)
            if let Some(value) = matches
                .get_one::<OsString>(name)
                .and_then(|v| v.clone().into_string().ok())
            {
                flags.insert(name, value);
            }
        }
        Ok(Self {
            flags,
            set: PhantomData,
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

/// `api-key` subcommands.
#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Creates a key for a caller and prints it once, alone on the last line.
    #[command(after_help = MIRRORS)]
    Create {
        /// Caller name (scopes idempotency keys and order visibility).
        #[arg(long)]
        caller: String,
        /// The variables it reads.
        #[command(flatten)]
        vars: VarArgs<ApiKeyVars>,
    },
    /// Revokes every key of a caller, effective at once.
    #[command(after_help = MIRRORS)]
    Revoke {
        /// Caller name.
        #[arg(long)]
        caller: String,
        /// The variables it reads.
        #[command(flatten)]
        vars: VarArgs<ApiKeyVars>,
    },
}

/// `tokens` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Replaces the stored pair with XOXODAY_ACCESS_TOKEN/XOXODAY_REFRESH_TOKEN
    /// (a new dashboard pair) and clears any refresh failure; running
    /// replicas adopt it within a minute or on their next refused call.
    #[command(after_help = MIRRORS)]
    Reset(VarArgs<TokensResetVars>),
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
    match command {
        Command::Healthcheck { url, vars } => healthcheck(&vars.env(), url).await,
        Command::Emulator(args) => {
            let env = args.env();
            crate::telemetry::init(&env)?;
            crate::emulator::run_standalone(&env).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(args) => serve(&args.env()).await,
        Command::Migrate(args) => {
            let env = args.env();
            crate::telemetry::init(&env)?;
            migrated_store(&env).await?;
            println!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::ApiKey(cmd) => api_key(cmd).await,
        Command::Callers(cmd) => crate::notify::cli::run(cmd).await,
        Command::Tokens(TokensCommand::Reset(vars)) => tokens_reset(&vars.env()).await,
        Command::Orders(cmd) => Ok(crate::ops::orders(cmd).await),
        Command::Audit(cmd) => Ok(crate::ops::audit(cmd).await),
        Command::Dev => {
            crate::dev::run::run().await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn serve(env: &Env) -> anyhow::Result<ExitCode> {
    crate::telemetry::init(env)?;
    let cfg = ServeConfig::from_env(env)?;
    let app = Application::build(cfg).await?;
    app.run(crate::shutdown::on_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// A store on `DATABASE_URL` with every migration applied.
pub(crate) async fn migrated_store(env: &Env) -> anyhow::Result<Store> {
    let url = crate::config::database_url(env)?;
    let store = Store::connect_lazy(&url, 2)?;
    store.migrate().await?;
    Ok(store)
}

async fn api_key(cmd: ApiKeyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ApiKeyCommand::Create { caller, vars } => {
            let store = migrated_store(&vars.env()).await?;
            let caller = caller.trim();
            if caller.is_empty() || caller.chars().count() > 100 {
                anyhow::bail!("--caller must be 1 to 100 characters");
            }
            let key = generate_key();
            store.insert_api_key(caller, &hash_key(&key)).await?;
            println!("created an API key for caller {caller}; it is shown only once:");
            println!("{key}");
        }
        ApiKeyCommand::Revoke { caller, vars } => {
            let store = migrated_store(&vars.env()).await?;
            let n = store.revoke_api_keys(caller.trim()).await?;
            println!("revoked {n} key(s) of caller {}", caller.trim());
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn tokens_reset(env: &Env) -> anyhow::Result<ExitCode> {
    let required = |var: &'static str| {
        env.secret(var).ok_or(ConfigError {
            var,
            problem: "is required: the new token pair from the Xoxoday dashboard".into(),
        })
    };
    let (access, refresh) = (
        required("XOXODAY_ACCESS_TOKEN")?,
        required("XOXODAY_REFRESH_TOKEN")?,
    );
    let key = crate::config::encryption_key(env)?;
    let cipher = Cipher::new(&key);
    let store = migrated_store(env).await?;
    let generation = reset_tokens(&store, &cipher, &access, &refresh).await?;
    println!(
        "stored the new Xoxoday token pair (generation {generation}); running replicas adopt it within a minute"
    );
    Ok(ExitCode::SUCCESS)
}

async fn healthcheck(env: &Env, url: Option<String>) -> anyhow::Result<ExitCode> {
    let base = match url {
        Some(u) => u,
        None => {
            let addr: SocketAddr = env.parse(&LISTEN_ADDR)?;
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
