//! `order-gateway dev`: the emulator and the gateway in one process, on
//! `DATABASE_URL` or on a throwaway cluster, with every secret generated and
//! a caller key ready. It starts through [`Application`], the same path as
//! `serve`, and on SIGINT/SIGTERM stops both and removes the cluster.

use std::{collections::HashMap, net::SocketAddr, path::PathBuf};

use anyhow::Context as _;
use base64::Engine as _;
use rand::{Rng as _, distributions::Alphanumeric};

use super::pg::TempCluster;
use crate::{
    config::{Env, ServeConfig},
    emulator::{self, EmulatorConfig, EmulatorHandle},
    orders::callers::generate_key,
    settings,
    startup::Application,
};

/// Caller name of the key `dev` creates.
pub const DEV_CALLER: &str = "dev";

/// Where the stack keeps its data.
enum Database {
    /// `DATABASE_URL` from the environment; left as it is on exit.
    External(String),
    /// A cluster of our own, stopped and removed on exit.
    Temp(TempCluster),
}

impl Database {
    async fn open(env: &Env) -> anyhow::Result<Self> {
        if let Some(url) = env.get("DATABASE_URL") {
            return Ok(Self::External(url));
        }
        let cluster = tokio::task::spawn_blocking(TempCluster::start)
            .await
            .context("starting the throwaway PostgreSQL cluster")??;
        Ok(Self::Temp(cluster))
    }

    fn url(&self) -> String {
        match self {
            Self::External(url) => url.clone(),
            Self::Temp(c) => c.url(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::External(_) => "DATABASE_URL (kept on exit)".into(),
            Self::Temp(c) => format!(
                "throwaway PostgreSQL in {} (removed on exit)",
                c.dir().display()
            ),
        }
    }

    async fn close(self) {
        if let Self::Temp(cluster) = self {
            let dir: PathBuf = cluster.dir().to_owned();
            let _ = tokio::task::spawn_blocking(move || drop(cluster)).await;
            tracing::info!(dir = %dir.display(), "throwaway PostgreSQL stopped and removed");
        }
    }
}

/// `dev`'s own defaults over those of [`crate::settings`]: readable logs,
/// and the gateway on loopback only.
const DEV_DEFAULTS: [(&str, &str); 2] = [
    (settings::LOG_FORMAT.name, "pretty"),
    (settings::LISTEN_ADDR.name, "127.0.0.1:8080"),
];

/// Runs the local stack until SIGINT or SIGTERM.
pub async fn run() -> anyhow::Result<()> {
    let mut vars: HashMap<String, String> = std::env::vars().collect();
    for (name, value) in DEV_DEFAULTS {
        vars.entry(name.into()).or_insert_with(|| value.into());
    }
    let env = Env::from_map(vars.clone());
    crate::telemetry::init(&env)?;
    let shutdown = crate::shutdown::on_signal();
    let database = Database::open(&env).await?;
    let result = if shutdown.is_cancelled() {
        Ok(())
    } else {
        run_stack(vars, &env, &database, shutdown).await
    };
    database.close().await;
    result
}

async fn run_stack(
    mut vars: HashMap<String, String>,
    env: &Env,
    database: &Database,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let emu_cfg = EmulatorConfig {
        client_id: format!("dev-client-{}", random_alnum(8)),
        client_secret: random_alnum(32),
        access_token: random_alnum(40),
        refresh_token: random_alnum(40),
        ..EmulatorConfig::from_env(env)?
    };
    let emulator = emulator::spawn(emu_cfg.clone())
        .await
        .with_context(|| format!("binding EMULATOR_ADDR {}", emu_cfg.addr))?;
    let webhook_key = env
        .get("WEBHOOK_API_KEY")
        .unwrap_or_else(|| random_alnum(32));
    for (k, v) in [
        ("DATABASE_URL", database.url()),
        ("XOXODAY_BASE_URL", emulator.base_url()),
        ("XOXODAY_CLIENT_ID", emu_cfg.client_id.clone()),
        ("XOXODAY_CLIENT_SECRET", emu_cfg.client_secret.clone()),
        ("XOXODAY_ACCESS_TOKEN", emu_cfg.access_token.clone()),
        ("XOXODAY_REFRESH_TOKEN", emu_cfg.refresh_token.clone()),
        ("WEBHOOK_API_KEY", webhook_key.clone()),
    ] {
        vars.insert(k.into(), v);
    }
    vars.entry("ENCRYPTION_KEY".into()).or_insert_with(|| {
        base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
    });
    let started = start_gateway(vars, &emulator, webhook_key).await;
    let result = match started {
        Ok((app, key)) => {
            print_banner(app.local_addr(), &emulator, database, &key);
            app.run(shutdown).await
        }
        Err(e) => Err(e),
    };
    emulator.shutdown();
    result
}

/// Builds the gateway, points the emulator's webhooks at it, creates a key.
async fn start_gateway(
    vars: HashMap<String, String>,
    emulator: &EmulatorHandle,
    webhook_key: String,
) -> anyhow::Result<(Application, String)> {
    let cfg = ServeConfig::from_env(&Env::from_map(vars))?;
    let app = Application::build(cfg).await?;
    let webhook_url = format!("{}/v1/webhooks/xoxoday", http_base(app.local_addr()));
    emulator.set_webhook(Some(webhook_url), Some(webhook_key));
    let key = generate_key();
    app.queries()
        .add_api_key(DEV_CALLER, &key)
        .await
        .context("creating the dev caller key")?;
    Ok((app, key))
}

/// `http://host:port`, with an unspecified host shown as loopback.
fn http_base(addr: SocketAddr) -> String {
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    };
    format!("http://{host}:{}", addr.port())
}

fn print_banner(addr: SocketAddr, emulator: &EmulatorHandle, db: &Database, key: &str) {
    let gateway = http_base(addr);
    let emu = http_base(emulator.addr());
    let idem = format!("dev-{}", uuid::Uuid::new_v4());
    println!("order-gateway dev is running; Ctrl-C stops everything.");
    println!("  gateway:   {gateway}  (/openapi.yaml, /metrics, /readyz)");
    println!("  emulator:  {emu}/chef  (admin API: {emu}/_emulator)");
    println!("  database:  {}", db.describe());
    println!("  caller:    {DEV_CALLER}");
    println!("  api key:   {key}");
    println!("Place an order (run it twice: the second answer is a replay):");
    println!(
        "curl -sS -i -X POST {gateway}/v1/orders -H 'Authorization: Bearer {key}' \
         -H 'Idempotency-Key: {idem}' -H 'Content-Type: application/json' \
         -d '{{\"productId\": 1001, \"denomination\": 50}}'"
    );
}

fn random_alnum(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}
