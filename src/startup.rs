//! The one start-up path, shared by `serve`, `dev` and the tests:
//! [`Application::build`] connects, migrates and binds; [`Application::run`]
//! serves HTTP and runs the dispatcher until the token is cancelled.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    config::ServeConfig,
    crypto::Cipher,
    http::{self, AppState},
    orders::{DispatchSettings, OrderService, StaticAccessToken},
    store::Store,
    xoxoday::XoxodayClient,
};

/// How long shutdown waits for placeOrder calls in flight; after that their
/// leases lapse (no more heartbeat) and the orders are reconciled.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// A built, bound, not yet running service.
pub struct Application {
    listener: TcpListener,
    orders: OrderService,
}

impl Application {
    /// Connects to Postgres, applies pending migrations, binds the listener.
    pub async fn build(cfg: ServeConfig) -> anyhow::Result<Self> {
        let store = Store::connect_lazy(&cfg.database_url, cfg.database_max_connections)?;
        store.migrate().await?;
        Self::build_with_store(cfg, store).await
    }

    /// Like [`Application::build`] on an existing store, without migrating
    /// (tests that need a broken database).
    pub async fn build_with_store(cfg: ServeConfig, store: Store) -> anyhow::Result<Self> {
        let token = cfg.xoxoday.access_token.clone().context(
            "configuration error: XOXODAY_ACCESS_TOKEN is required (no stored token yet)",
        )?;
        let client = XoxodayClient::new(&cfg.xoxoday).context("building the Xoxoday client")?;
        let settings = DispatchSettings::with_lease(cfg.dispatch_lease);
        let orders = OrderService::new(
            store,
            Arc::new(client),
            Arc::new(StaticAccessToken::new(token)),
            Cipher::new(&cfg.encryption_key),
            settings,
        );
        let listener = TcpListener::bind(cfg.listen_addr)
            .await
            .with_context(|| format!("binding LISTEN_ADDR {}", cfg.listen_addr))?;
        Ok(Self { listener, orders })
    }

    /// The bound address (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound TCP listener has a local address")
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// The use cases (tests drive the dispatcher through it).
    pub fn orders(&self) -> &OrderService {
        &self.orders
    }

    /// Serves until `shutdown` is cancelled, then drains.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let orders = self.orders;
        let dispatcher = tokio::spawn(orders.clone().run_dispatcher(shutdown.clone()));
        let app = http::router(AppState {
            orders: orders.clone(),
        });
        tracing::info!(addr = %self.listener.local_addr()?, "order-gateway listening");
        let served = axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .await
            .context("HTTP server failed");
        shutdown.cancel();
        dispatcher.await.context("dispatcher task panicked")?;
        orders.tasks.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, orders.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("placeOrder calls still in flight at exit; they will be reconciled");
        }
        served
    }
}
