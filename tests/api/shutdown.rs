//! `serve` stopped with SIGTERM under load: it stops accepting, drains the
//! placeOrder calls in flight, exits 0, and loses nothing: every order a
//! client got a 2xx for is in the database and ends settled (what was left
//! `accepted` is placed by the next start), with exactly one Xoxoday order
//! per poNumber. Its JSON log lines carry the request id.

use std::{collections::HashMap, time::Duration};

use base64::Engine as _;
use order_gateway::{
    config::{Env, ServeConfig},
    emulator::{EmulatorConfig, FaultRates},
    startup::Application,
};
use serde_json::Value;

use crate::{
    child::{GatewayProcess, HANG_GUARD, free_addr},
    helpers::{create_key, new_key, order_body},
    test_db::TestDb,
};

fn serve_env(db: &str, listen: &str, emulator: &str, key: &str) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", db.to_owned()),
        ("LISTEN_ADDR", listen.to_owned()),
        ("XOXODAY_BASE_URL", emulator.to_owned()),
        ("XOXODAY_CLIENT_ID", "emulator-client".into()),
        ("XOXODAY_CLIENT_SECRET", "emulator-secret".into()),
        ("XOXODAY_ACCESS_TOKEN", "emulator-access-token".into()),
        ("XOXODAY_REFRESH_TOKEN", "emulator-refresh-token".into()),
        ("XOXODAY_PLACE_ORDER_TIMEOUT", "30s".into()),
        ("ENCRYPTION_KEY", key.to_owned()),
        ("LOG_FORMAT", "json".into()),
        ("RUST_LOG", "info".into()),
    ]
}

async fn wait_ready(http: &reqwest::Client, base: &str, child: &GatewayProcess) {
    let deadline = tokio::time::Instant::now() + HANG_GUARD;
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "serve never became ready:\n{}",
            child.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn post(http: &reqwest::Client, base: &str, api_key: &str) -> Option<Value> {
    let resp = http
        .post(format!("{base}/v1/orders"))
        .bearer_auth(api_key)
        .header("Idempotency-Key", new_key())
        .header("Prefer", "wait=0")
        .json(&order_body())
        .send()
        .await
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.json().await.ok()
}

async fn count_placing(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("select count(*) from orders where status = 'placing'")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn sigterm_under_load_drains_in_flight_orders_and_loses_nothing() {
    // Arrange: every placeOrder takes 2 s
    let db = TestDb::create().await;
    let pool = db.pool().await;
    let emulator = order_gateway::emulator::spawn(EmulatorConfig::for_tests())
        .await
        .unwrap();
    emulator.set_fault_rates(FaultRates {
        slow: 1.0,
        sleep: Duration::from_secs(2),
        ..FaultRates::default()
    });
    let enc = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
    let listen = free_addr();
    let base = format!("http://{listen}");
    let env = serve_env(&db.url, &listen.to_string(), &emulator.base_url(), &enc);
    let mut serve = GatewayProcess::spawn(&["serve"], &env, &[]);
    let http = reqwest::Client::new();
    wait_ready(&http, &base, &serve).await;
    let api_key = create_key(&pool, "caller-a").await;

    // Act: orders in flight, SIGTERM, more requests racing the shutdown
    let first = futures::future::join_all((0..8).map(|_| post(&http, &base, &api_key))).await;
    let deadline = tokio::time::Instant::now() + HANG_GUARD;
    while count_placing(&pool).await == 0 {
        assert!(tokio::time::Instant::now() < deadline, "nothing in flight");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    serve.signal("TERM");
    let racing = futures::future::join_all((0..8).map(|_| post(&http, &base, &api_key))).await;
    let (status, serve) = tokio::task::spawn_blocking(move || (serve.wait(), serve))
        .await
        .unwrap();

    // Assert: clean exit, no order stuck in placing
    assert!(status.success(), "exit {status:?}\n{}", serve.stderr());
    let answered: Vec<Value> = first.into_iter().chain(racing).flatten().collect();
    assert!(answered.len() >= 8, "the first batch was answered");
    assert_eq!(count_placing(&pool).await, 0, "a placement was abandoned");
    let logs = serve.stderr();
    let request_line = logs
        .lines()
        .find(|l| l.contains("\"request_id\"") && l.contains("po_number"))
        .unwrap_or_else(|| panic!("no JSON request log line:\n{logs}"));
    serde_json::from_str::<Value>(request_line).expect("JSON log line");

    // Restart without faults; whatever was still accepted gets placed
    emulator.set_fault_rates(FaultRates::default());
    let restart_env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .chain([("LISTEN_ADDR".to_owned(), "127.0.0.1:0".to_owned())])
        .collect();
    let cfg = ServeConfig::from_env(&Env::from_map(restart_env)).unwrap();
    let app = Application::build(cfg).await.unwrap();
    while app.dispatcher().dispatch_once().await.unwrap() > 0 {}

    for order in &answered {
        let po = order["poNumber"].as_str().unwrap();
        let status: String = sqlx::query_scalar("select status from orders where po_number = $1")
            .bind(po)
            .fetch_one(&pool)
            .await
            .unwrap_or_else(|e| panic!("{po} answered 2xx but not stored: {e}"));
        assert_eq!(status, "completed", "{po}");
        assert!(emulator.order(po).is_some(), "{po} missing upstream");
    }
    let ledger = emulator.orders();
    let mut pos: Vec<&str> = ledger.iter().map(|o| o.po_number.as_str()).collect();
    pos.sort_unstable();
    let before = pos.len();
    pos.dedup();
    assert_eq!(pos.len(), before, "a poNumber was placed twice upstream");
    emulator.shutdown();
}
