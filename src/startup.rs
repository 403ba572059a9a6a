//! The one start-up path, shared by `serve`, `dev` and the tests:
//! [`Application::build`] connects, migrates and binds; [`Application::run`]
//! serves HTTP and runs the dispatcher, reconciler, token refresher and hold
//! prober until the token is cancelled.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    config::ServeConfig,
    crypto::Cipher,
    http::{self, AppState},
    orders::{OrderService, RotatingTokens, limits::UpstreamLimits, token_store::TokenError},
    store::{Store, StoreError},
    xoxoday::{XoxodayApi, XoxodayClient},
};

/// How long shutdown waits for placeOrder calls in flight; after that their
/// leases lapse (no more heartbeat) and the orders are reconciled.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// A built, bound, not yet running service.
pub struct Application {
    listener: TcpListener,
    orders: OrderService,
    webhook_key: Option<Arc<secrecy::SecretString>>,
    tokens: Arc<RotatingTokens>,
    notify: crate::notify::sender::Sender,
    notify_metrics: crate::notify::metrics::NotifyMetrics,
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
        let client: Arc<dyn XoxodayApi> =
            Arc::new(XoxodayClient::new(&cfg.xoxoday).context("building the Xoxoday client")?);
        let cipher =
            || Cipher::new(&cfg.encryption_key).with_previous(cfg.encryption_key_previous.as_ref());
        let tokens = Arc::new(
            RotatingTokens::new(store.clone(), client.clone(), Arc::new(cipher()))
                .with_timing(cfg.xoxoday.request_timeout, cfg.tuning.probe_interval),
        );
        seed_tokens(&tokens, &cfg).await?;
        let upstream = UpstreamLimits {
            place_order_rate: cfg.xoxoday.place_order_rate,
            order_details_rate: cfg.xoxoday.order_details_rate,
            settle_window: cfg.xoxoday.settle_window,
            place_timeout: cfg.xoxoday.place_order_timeout,
        };
        let notify = crate::notify::sender::Sender::new(
            store.clone(),
            Arc::new(cipher()),
            cfg.notify.clone(),
        )
        .context("building the notification client")?;
        let notify_metrics = crate::notify::metrics::NotifyMetrics::new(store.clone());
        let orders = OrderService::new(
            store,
            client,
            tokens.clone(),
            cipher(),
            cfg.tuning.clone(),
            upstream,
        );
        let listener = TcpListener::bind(cfg.listen_addr)
            .await
            .with_context(|| format!("binding LISTEN_ADDR {}", cfg.listen_addr))?;
        let webhook_key = cfg.webhook_api_key.clone().map(Arc::new);
        Ok(Self {
            listener,
            orders,
            webhook_key,
            tokens,
            notify,
            notify_metrics,
        })
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

    /// The Xoxoday token pair (tests drive refreshes through it).
    pub fn tokens(&self) -> &Arc<RotatingTokens> {
        &self.tokens
    }

    /// Serves until `shutdown` is cancelled, then drains.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let orders = self.orders;
        let dispatcher = tokio::spawn(orders.clone().run_dispatcher(shutdown.clone()));
        let reconciler = tokio::spawn(orders.clone().run_reconciler(shutdown.clone()));
        tokio::spawn(orders.clone().run_prober(shutdown.clone()));
        tokio::spawn(self.tokens.run(shutdown.clone()));
        tokio::spawn(self.notify.run(shutdown.clone()));
        let app = http::router(AppState {
            orders: orders.clone(),
            webhook_key: self.webhook_key,
            notify_metrics: self.notify_metrics,
        });
        tracing::info!(addr = %self.listener.local_addr()?, "order-gateway listening");
        let served = axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .await
            .context("HTTP server failed");
        shutdown.cancel();
        dispatcher.await.context("dispatcher task panicked")?;
        reconciler.await.context("reconciler task panicked")?;
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

/// Stores the environment pair on first start, else loads the stored one.
/// A database that is down now is not fatal (the pair loads on first use);
/// a missing pair with nothing stored is.
async fn seed_tokens(tokens: &RotatingTokens, cfg: &ServeConfig) -> anyhow::Result<()> {
    let (access, refresh) = (&cfg.xoxoday.access_token, &cfg.xoxoday.refresh_token);
    match tokens.seed(access.as_ref(), refresh.as_ref()).await {
        Err(TokenError::Store(StoreError::Unavailable(e))) => {
            tracing::warn!(error = %e, "database unavailable; the Xoxoday token pair loads on first use");
            Ok(())
        }
        other => Ok(other?),
    }
}
