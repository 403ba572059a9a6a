//! The Xoxoday emulator (contract §7): a fake Xoxoday Plum API that every
//! test and `order-gateway dev` talk to instead of the real one.
//!
//! It is an independent implementation of `shared/xoxoday/api-reference.md`
//! and must not use `crate::xoxoday`, so a misreading of the docs cannot hide
//! on both sides. It keeps a ledger of the orders it created (a normal
//! placeOrder adds at most one per non-empty poNumber, checked and inserted
//! under one lock; only a late creation or an admin injection can add a
//! second) and can be told, per call or by rate, to misbehave (see
//! [`Fault`]).

mod admin;
mod catalog;
mod config;
mod early_webhook;
mod faults;
mod handle;
mod history;
mod hostile;
mod late;
mod ledger;
mod limits;
mod orders;
mod place;
mod render;
mod routes;
mod server;
mod state;
mod tokens;
mod webhook;
mod wire;

#[cfg(test)]
mod tests;

use std::time::Duration;

pub use catalog::{Delivery, Denominations, Product, products};
pub use config::EmptyHistory;
pub use config::EmulatorConfig;
pub use faults::{AfterWebhook, Fault, FaultOp, FaultRates, LateAnswer};
pub use handle::EmulatorHandle;
pub use hostile::{HostileText, LONG_TEXT_BYTES};
pub use ledger::{LedgerOrder, Voucher};
pub use limits::RateLimits;
pub use state::WebhookAttempt;

use crate::env::Env;

/// Binds `cfg.addr` and serves the emulator in a background task until
/// [`EmulatorHandle::shutdown`].
pub async fn spawn(cfg: EmulatorConfig) -> std::io::Result<EmulatorHandle> {
    let listener = tokio::net::TcpListener::bind(cfg.addr).await?;
    let addr = listener.local_addr()?;
    let shared = state::Shared::new(cfg);
    let router = routes::router(std::sync::Arc::clone(&shared));
    tokio::spawn(server::serve(listener, router, shared.shutdown.clone()));
    Ok(EmulatorHandle::new(shared, addr))
}

/// `order-gateway emulator`: reads `EMULATOR_*`, logs the URL and the
/// defaults a gateway needs, and runs until SIGINT or SIGTERM.
pub async fn run_standalone(env: &Env) -> anyhow::Result<()> {
    let cfg = EmulatorConfig::from_env(env)?;
    let (client_id, access, refresh) = (
        cfg.client_id.clone(),
        cfg.access_token.clone(),
        cfg.refresh_token.clone(),
    );
    let handle = spawn(cfg).await?;
    tracing::info!(
        url = %handle.base_url(),
        client_id = %client_id,
        access_token = %access,
        refresh_token = %refresh,
        "Xoxoday emulator listening; set XOXODAY_BASE_URL to this url (admin API under /_emulator)"
    );
    eprintln!("Xoxoday emulator: XOXODAY_BASE_URL={}", handle.base_url());
    shutdown_signal().await;
    tracing::info!("Xoxoday emulator stopping");
    handle.shutdown();
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
