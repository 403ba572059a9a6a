//! `spawn_app()`: the gateway started through `startup::Application` (the
//! same path as `serve`) on port 0, against a fresh database, with the
//! Xoxoday emulator in process and the real `XoxodayClient`.

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use base64::Engine as _;
use order_gateway::{
    config::{Env, ServeConfig},
    emulator::{EmulatorConfig, EmulatorHandle},
    orders::{
        Dispatcher, Prober, Reconciler, RotatingTokens,
        callers::{generate_key, hash_key},
    },
    startup::Application,
    store::Store,
};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::test_db::TestDb;

/// A running gateway with its database and emulator.
pub struct TestApp {
    /// Where the gateway listens.
    pub addr: SocketAddr,
    /// HTTP client.
    pub http: reqwest::Client,
    /// Pool on the test database.
    pub db: PgPool,
    /// The in-process emulator.
    pub emulator: EmulatorHandle,
    /// A live key of caller `caller-a`.
    pub api_key: String,
    /// URL of the test database.
    pub db_url: String,
    /// The gateway's place path (drive dispatch passes directly).
    pub dispatcher: Dispatcher,
    /// The gateway's reconciler (drive reconciliation passes directly).
    pub reconciler: Reconciler,
    /// The gateway's hold prober (drive probes directly).
    pub prober: Prober,
    /// The gateway's token pair (drive refreshes directly).
    pub tokens: Arc<RotatingTokens>,
    shutdown: CancellationToken,
    _db: TestDb,
}

/// Knobs for [`spawn_app_with`].
#[derive(Clone)]
pub struct Options {
    /// `XOXODAY_PLACE_ORDER_TIMEOUT`.
    pub place_timeout: &'static str,
    /// `ORDER_LEASE`.
    pub lease: &'static str,
    /// More variables (they win over the defaults above).
    pub extra: Vec<(&'static str, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            place_timeout: "10s",
            lease: "15s",
            extra: Vec::new(),
        }
    }
}

/// The gateway with default options.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

/// The gateway with `opts`.
pub async fn spawn_app_with(opts: Options) -> TestApp {
    let db = TestDb::create().await;
    let emulator = order_gateway::emulator::spawn(EmulatorConfig::for_tests())
        .await
        .expect("spawn emulator");
    let cfg = ServeConfig::from_env(&env(&db.url, &emulator.base_url(), &opts)).expect("config");
    let app = Application::build(cfg).await.expect("build app");
    let addr = app.local_addr();
    let (dispatcher, reconciler) = (app.dispatcher().clone(), app.reconciler().clone());
    let prober = app.prober().clone();
    let tokens = app.tokens().clone();
    let shutdown = CancellationToken::new();
    tokio::spawn(app.run(shutdown.clone()));
    let pool = db.pool().await;
    let api_key = create_key(&pool, "caller-a").await;
    TestApp {
        addr,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        db: pool,
        emulator,
        api_key,
        db_url: db.url.clone(),
        dispatcher,
        reconciler,
        prober,
        tokens,
        shutdown,
        _db: db,
    }
}

/// Configuration a test gateway runs with.
pub fn env(db_url: &str, base_url: &str, opts: &Options) -> Env {
    Env::from_map(env_pairs(db_url, base_url, opts))
}

/// `ENCRYPTION_KEY` of the gateways on `db_url` (derived from it, so every
/// replica on one test database shares the key).
pub fn encryption_key(db_url: &str) -> String {
    use sha2::Digest as _;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(db_url.as_bytes()))
}

/// The variables behind [`env`], to edit before use.
pub fn env_pairs(db_url: &str, base_url: &str, opts: &Options) -> HashMap<String, String> {
    let key = encryption_key(db_url);
    let pairs = [
        ("DATABASE_URL", db_url.to_owned()),
        ("LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        ("XOXODAY_BASE_URL", base_url.to_owned()),
        ("XOXODAY_CLIENT_ID", "emulator-client".to_owned()),
        ("XOXODAY_CLIENT_SECRET", "emulator-secret".to_owned()),
        ("XOXODAY_ACCESS_TOKEN", "emulator-access-token".to_owned()),
        ("XOXODAY_REFRESH_TOKEN", "emulator-refresh-token".to_owned()),
        ("XOXODAY_PLACE_ORDER_TIMEOUT", opts.place_timeout.to_owned()),
        ("ENCRYPTION_KEY", key),
        ("DATABASE_MAX_CONNECTIONS", "8".to_owned()),
        ("ORDER_LEASE", opts.lease.to_owned()),
    ];
    pairs
        .into_iter()
        .chain(opts.extra.iter().cloned())
        .map(|(k, v)| (k.to_owned(), v))
        .collect::<HashMap<_, _>>()
}

/// Creates a key for `caller` the way `api-key create` does.
pub async fn create_key(pool: &PgPool, caller: &str) -> String {
    let key = generate_key();
    Store::from_pool(pool.clone())
        .insert_api_key(caller, &hash_key(&key))
        .await
        .expect("create key");
    key
}

/// A valid body for product 1001 (realtime, USD 10/25/50/100).
pub fn order_body() -> Value {
    json!({"productId": 1001, "denomination": 50, "email": "a@example.com"})
}

/// A unique idempotency key.
pub fn new_key() -> String {
    format!("key-{}", uuid::Uuid::new_v4())
}

impl TestApp {
    /// `http://addr`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `POST /v1/orders` with this app's key.
    pub async fn post_order(&self, key: &str, body: &Value) -> reqwest::Response {
        self.post_order_as(&self.api_key, key, body, None).await
    }

    /// Waits (at most 10 s) for the balance monitor's first getBalance read,
    /// which `serve` makes at start (contract §8): a test that expires the
    /// token after it knows the next call to notice is its own.
    pub async fn wait_first_balance_read(&self) {
        for _ in 0..100 {
            if self
                .count("upstream_exchanges where operation = 'get_balance'")
                .await
                > 0
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A new order under a fresh key (the default body), as the POST answered.
    pub async fn place_new(&self) -> Value {
        let resp = self.post_order(&new_key(), &order_body()).await;
        resp.json().await.expect("an order as JSON")
    }

    /// A new order that Xoxoday refuses with a clean 400 (PLE10001, no order
    /// created), as the POST answered: `failed`.
    pub async fn place_refused(&self) -> Value {
        self.emulator.push_fault(
            order_gateway::emulator::FaultOp::PlaceOrder,
            order_gateway::emulator::Fault::Respond {
                status: 400,
                body: json!({"code": 400, "errorId": "PLE10001",
                             "errorInfo": "Validation error in place order", "error": "Bad request"}),
            },
        );
        self.place_new().await
    }

    /// `POST /v1/orders` with any key and optional `Prefer: wait=N`.
    pub async fn post_order_as(
        &self,
        api_key: &str,
        idem: &str,
        body: &Value,
        wait: Option<u64>,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .post(self.url("/v1/orders"))
            .bearer_auth(api_key)
            .header("Idempotency-Key", idem)
            .json(body);
        if let Some(w) = wait {
            req = req.header("Prefer", format!("wait={w}"));
        }
        req.send().await.expect("POST /v1/orders")
    }

    /// `GET /v1/orders/{id}`.
    pub async fn get_order(&self, api_key: &str, id: &str) -> reqwest::Response {
        self.http
            .get(self.url(&format!("/v1/orders/{id}")))
            .bearer_auth(api_key)
            .send()
            .await
            .expect("GET /v1/orders/{id}")
    }

    /// `GET /v1/orders?{query}`.
    pub async fn list_orders(&self, api_key: &str, query: &str) -> reqwest::Response {
        self.http
            .get(self.url(&format!("/v1/orders?{query}")))
            .bearer_auth(api_key)
            .send()
            .await
            .expect("GET /v1/orders")
    }

    /// `GET {path}` without auth.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.expect("GET")
    }

    /// Number of rows in `table`.
    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("select count(*) from {table}"))
            .fetch_one(&self.db)
            .await
            .unwrap()
    }

    /// Slots of `op`'s upstream budget taken (a row may hold a block).
    pub async fn slots_taken(&self, op: &str) -> i64 {
        sqlx::query_scalar(
            "select coalesce(sum(slots), 0)::bigint from upstream_call_slots where operation = $1",
        )
        .bind(op)
        .fetch_one(&self.db)
        .await
        .unwrap()
    }

    /// Status of an order by poNumber, from the database.
    pub async fn db_status(&self, po: &str) -> String {
        sqlx::query_scalar("select status from orders where po_number = $1")
            .bind(po)
            .fetch_one(&self.db)
            .await
            .unwrap()
    }

    /// Polls GET until the order leaves accepted/placing (or `limit` passes).
    pub async fn wait_settled(&self, id: &str, limit: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let order: Value = self
                .get_order(&self.api_key, id)
                .await
                .json()
                .await
                .unwrap();
            let moving = matches!(order["status"].as_str(), Some("accepted" | "placing"));
            if !moving || tokio::time::Instant::now() > deadline {
                return order;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl TestApp {
    /// URL of this app's database (replicas and child processes share it).
    pub fn db_url(&self) -> &str {
        &self._db.url
    }

    /// Stops this gateway (server and workers); the emulator and the
    /// database stay, for replicas the test starts itself.
    pub fn stop(&self) {
        self.shutdown.cancel();
    }

    /// Drops the test database under the running app (outage tests).
    pub async fn drop_database(&self) {
        TestDb::drop_now(&self._db.server, &self._db.name).await;
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.emulator.shutdown();
    }
}

/// Asserts a problem+json answer with `status` and returns its body.
pub async fn assert_problem(resp: reqwest::Response, status: u16) -> Value {
    assert_eq!(resp.status().as_u16(), status, "unexpected status");
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert_eq!(ct, "application/problem+json");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert!(
        body["type"]
            .as_str()
            .unwrap()
            .starts_with("https://order-gateway/problems/")
    );
    assert!(body["title"].is_string() && body["detail"].is_string());
    body
}

/// Field names in a validation problem.
pub fn error_fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["field"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

impl TestApp {
    /// Runs the real `order-gateway tokens reset` with `access`/`refresh`
    /// against this app's database; asserts it exited 0 and returns its output.
    pub fn tokens_reset(&self, access: &str, refresh: &str) -> std::process::Output {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_order-gateway"))
            .args(["tokens", "reset"])
            .env_clear()
            .env("DATABASE_URL", self.db_url())
            .env("ENCRYPTION_KEY", encryption_key(self.db_url()))
            .env("XOXODAY_ACCESS_TOKEN", access)
            .env("XOXODAY_REFRESH_TOKEN", refresh)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// What an operator does in the dashboard: rotates the pair at Xoxoday
    /// (the emulator) with `refresh_token`, outside the gateway.
    pub async fn rotate_outside_gateway(&self, refresh_token: &str) {
        let fresh = reqwest::Client::new()
            .post(format!("{}/v1/oauth/token/user", self.emulator.base_url()))
            .json(&json!({
                "grant_type": "refresh_token", "refresh_token": refresh_token,
                "client_id": "emulator-client", "client_secret": "emulator-secret"}))
            .send()
            .await
            .unwrap();
        assert_eq!(fresh.status(), 200);
    }
}

/// Holds the slot lock of `op`'s upstream budget until the transaction ends.
pub async fn hold_slot_lock(
    db: &sqlx::PgPool,
    op: &str,
) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut holder = db.begin().await.unwrap();
    sqlx::query("select pg_advisory_xact_lock(hashtext('upstream_slot:' || $1))")
        .bind(op)
        .execute(&mut *holder)
        .await
        .unwrap();
    holder
}
