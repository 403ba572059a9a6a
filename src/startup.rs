//! The one start-up path, shared by `serve`, `dev` and the tests:
//! [`Application::build`] connects, migrates and binds; [`Application::run`]
//! serves HTTP and runs the dispatcher, reconciler, token refresher, hold
//! prober, balance monitor and scheduled books audit until the token is
//! cancelled. Each role of [`crate::orders`] is built here from only what it
//! uses.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    config::ServeConfig,
    crypto::Cipher,
    http::{self, AppState},
    orders::{
        AccessTokens, DispatchSettings, Dispatcher, Intake, OrderQueries, Prober,
        ReconcileSettings, Reconciler, RotatingTokens, UpstreamLimits, Wakes, WebhookIngest,
        balance::BalanceMonitor, books::BooksAudit, schedule::run_books_audits,
        token_store::TokenError,
    },
    store::{Store, StoreError, rate_limit::SlotAsk},
    xoxoday::{Operation, XoxodayApi, XoxodayClient},
};

/// How long shutdown waits for placeOrder calls in flight; after that their
/// leases lapse (no more heartbeat) and the orders are reconciled.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// A built, bound, not yet running service.
pub struct Application {
    listener: TcpListener,
    /// What the handlers call.
    state: AppState,
    /// The background roles.
    dispatcher: Dispatcher,
    reconciler: Reconciler,
    prober: Prober,
    tokens: Arc<RotatingTokens>,
    balance: BalanceMonitor,
    books: BooksSchedule,
    notify: crate::notify::sender::Sender,
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
        let balance = BalanceMonitor::new(
            store.clone(),
            client.clone(),
            tokens.clone(),
            Arc::new(cipher()),
            cfg.tuning.probe_interval,
            cfg.tuning.low_balance,
        );
        let books = BooksSchedule::build(
            &cfg,
            store.clone(),
            client.clone(),
            tokens.clone(),
            cipher(),
        );
        let notify = crate::notify::sender::Sender::new(
            store.clone(),
            Arc::new(cipher()),
            cfg.notify.clone(),
        )
        .context("building the notification client")?;
        let notify_metrics = crate::notify::metrics::NotifyMetrics::new(store.clone());
        let roles = Roles::build(&cfg, store, client, Arc::new(cipher()), tokens.clone());
        let webhook_key = cfg.webhook_api_key.clone().map(Arc::new);
        let listener = TcpListener::bind(cfg.listen_addr)
            .await
            .with_context(|| format!("binding LISTEN_ADDR {}", cfg.listen_addr))?;
        Ok(Self {
            listener,
            state: AppState::new(roles.intake, roles.queries, roles.webhooks, webhook_key)
                .with_notify_metrics(notify_metrics),
            dispatcher: roles.dispatcher,
            reconciler: roles.reconciler,
            prober: roles.prober,
            tokens,
            balance,
            books,
            notify,
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

    /// The place path (tests drive dispatch passes through it).
    pub fn dispatcher(&self) -> &Dispatcher {
        &self.dispatcher
    }

    /// The reconciler (tests drive reconciliation passes through it).
    pub fn reconciler(&self) -> &Reconciler {
        &self.reconciler
    }

    /// The hold prober (tests drive probes through it).
    pub fn prober(&self) -> &Prober {
        &self.prober
    }

    /// Caller-scoped reads and API keys (`dev` creates its key through it).
    pub fn queries(&self) -> &OrderQueries {
        self.state.queries()
    }

    /// The Xoxoday token pair (tests drive refreshes through it).
    pub fn tokens(&self) -> &Arc<RotatingTokens> {
        &self.tokens
    }

    /// Serves until `shutdown` is cancelled, then drains.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let places = self.dispatcher.clone();
        let dispatcher = tokio::spawn(self.dispatcher.run_dispatcher(shutdown.clone()));
        let reconciler = tokio::spawn(self.reconciler.run_reconciler(shutdown.clone()));
        tokio::spawn(self.prober.run_prober(shutdown.clone()));
        tokio::spawn(self.tokens.run(shutdown.clone()));
        tokio::spawn(self.balance.run(shutdown.clone()));
        let books = self.books;
        tokio::spawn(run_books_audits(
            books.audit,
            books.store,
            books.interval,
            shutdown.clone(),
        ));
        tokio::spawn(self.notify.run(shutdown.clone()));
        let app = http::router(self.state);
        tracing::info!(addr = %self.listener.local_addr()?, "order-gateway listening");
        let served = axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .await
            .context("HTTP server failed");
        shutdown.cancel();
        dispatcher.await.context("dispatcher task panicked")?;
        reconciler.await.context("reconciler task panicked")?;
        if !places.drain(DRAIN_TIMEOUT).await {
            tracing::warn!("placeOrder calls still in flight at exit; they will be reconciled");
        }
        served
    }
}

/// The scheduled books audit: what it runs, where it claims its turn, how often.
struct BooksSchedule {
    audit: Arc<BooksAudit>,
    store: Store,
    interval: Duration,
}

impl BooksSchedule {
    fn build(
        cfg: &ServeConfig,
        store: Store,
        client: Arc<dyn XoxodayApi>,
        tokens: Arc<RotatingTokens>,
        cipher: Cipher,
    ) -> Self {
        let history = SlotAsk {
            operation: Operation::GetOrderHistory.as_str(),
            per_minute: cfg.xoxoday.order_history_rate,
            window: cfg.tuning.rate_window,
        };
        let audit = BooksAudit::new(store.clone(), client, tokens, Arc::new(cipher), history);
        Self {
            audit: Arc::new(audit),
            store,
            interval: cfg.tuning.books_audit_interval,
        }
    }
}

/// The roles of [`crate::orders`], each built from only what it uses.
struct Roles {
    intake: Intake,
    queries: OrderQueries,
    webhooks: WebhookIngest,
    dispatcher: Dispatcher,
    reconciler: Reconciler,
    prober: Prober,
}

impl Roles {
    fn build(
        cfg: &ServeConfig,
        store: Store,
        client: Arc<dyn XoxodayApi>,
        cipher: Arc<Cipher>,
        access: Arc<dyn AccessTokens>,
    ) -> Self {
        let wakes = Wakes::default();
        let dispatcher = Dispatcher::new(
            store.clone(),
            client.clone(),
            access.clone(),
            cipher.clone(),
            DispatchSettings::from_tuning(&cfg.tuning),
            upstream_limits(cfg),
            wakes.clone(),
        );
        let reconcile = ReconcileSettings::new(&cfg.tuning, cfg.xoxoday.settle_window);
        let reconciler = Reconciler::new(dispatcher.clone(), reconcile);
        let prober = Prober::new(
            store.clone(),
            client,
            access.clone(),
            cipher.clone(),
            cfg.tuning.probe_interval,
            wakes.clone(),
        );
        let queries = OrderQueries::new(store.clone(), cipher, access)
            .with_low_balance(cfg.tuning.low_balance);
        let intake = Intake::new(store.clone(), dispatcher.clone(), queries.clone());
        let webhooks = WebhookIngest::new(store, wakes);
        Self {
            intake,
            queries,
            webhooks,
            dispatcher,
            reconciler,
            prober,
        }
    }
}

/// The place path's budgets and pauses, from the `XOXODAY_*` settings and
/// the worker tunables.
fn upstream_limits(cfg: &ServeConfig) -> UpstreamLimits {
    UpstreamLimits {
        place_order_rate: cfg.xoxoday.place_order_rate,
        order_details_rate: cfg.xoxoday.order_details_rate,
        rate_window: cfg.tuning.rate_window,
        place_timeout: cfg.xoxoday.place_order_timeout,
        systemic_pause: cfg.tuning.systemic_pause,
        probe_interval: cfg.tuning.probe_interval,
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
