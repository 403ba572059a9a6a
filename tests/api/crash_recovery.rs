//! `kill -9` mid-call: the gateway runs as a child process, is killed while
//! placeOrder calls are in flight (created-then-slow and slow-then-created
//! upstream), restarted, and every order settles with exactly one upstream
//! order (placing with an expired lease → reconciling → found → completed).

use std::{net::TcpListener, process::Stdio, time::Duration};

use base64::Engine as _;
use order_gateway::emulator::{EmulatorConfig, Fault, FaultOp};
use tokio::process::{Child, Command};

use crate::{
    helpers::{create_key, new_key, order_body},
    ledger::{assert_ledger, wait_all_settled},
    test_db::TestDb,
};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(vars: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_order-gateway"));
    cmd.arg("serve")
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .env_remove("TEST_DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    cmd.spawn().expect("start order-gateway serve")
}

async fn wait_ready(http: &reqwest::Client, base: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let ok = http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        if ok {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gateway never became ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn killed_mid_call_the_gateway_settles_every_order_after_restart() {
    let db = TestDb::create().await;
    let pool = db.pool().await;
    let emulator = order_gateway::emulator::spawn(EmulatorConfig::for_tests())
        .await
        .unwrap();
    let api_key = create_key(&pool, "caller-a").await;
    let base = format!("http://127.0.0.1:{}", free_port());
    let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
    let vars: Vec<(&str, String)> = vec![
        ("DATABASE_URL", db.url.clone()),
        ("LISTEN_ADDR", base.trim_start_matches("http://").to_owned()),
        ("XOXODAY_BASE_URL", emulator.base_url()),
        ("XOXODAY_CLIENT_ID", "emulator-client".into()),
        ("XOXODAY_CLIENT_SECRET", "emulator-secret".into()),
        ("XOXODAY_ACCESS_TOKEN", "emulator-access-token".into()),
        ("XOXODAY_REFRESH_TOKEN", "emulator-refresh-token".into()),
        ("XOXODAY_PLACE_ORDER_TIMEOUT", "30s".into()),
        ("XOXODAY_SETTLE_WINDOW", "3s".into()),
        ("ORDER_LEASE", "2s".into()),
        ("RECONCILE_RETRY_BASE", "200ms".into()),
        ("RECONCILE_RETRY_MAX", "1s".into()),
        ("RECONCILE_POLL_INTERVAL", "100ms".into()),
        ("ENCRYPTION_KEY", key),
        ("RUST_LOG", "warn".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_string()))
    .collect();
    for i in 0..6 {
        let fault = if i % 2 == 0 {
            Fault::SleepAfterCreate(Duration::from_secs(20))
        } else {
            Fault::Slow(Duration::from_secs(20))
        };
        emulator.push_fault(FaultOp::PlaceOrder, fault);
    }
    let http = reqwest::Client::new();
    let mut child = start(&vars);
    wait_ready(&http, &base).await;
    for _ in 0..6 {
        let resp = http
            .post(format!("{base}/v1/orders"))
            .bearer_auth(&api_key)
            .header("Idempotency-Key", new_key())
            .header("Prefer", "wait=0")
            .json(&order_body())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
    }
    // Wait until all six calls are in flight and three orders exist upstream.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while emulator.orders().len() < 3
        || sqlx::query_scalar::<_, i64>("select count(*) from orders where attempts = 1")
            .fetch_one(&pool)
            .await
            .unwrap()
            < 6
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "calls never got in flight"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().await.unwrap();
    let placing: i64 = sqlx::query_scalar("select count(*) from orders where status = 'placing'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(placing, 6, "killed while every call was in flight");
    let _restarted = start(&vars);
    wait_ready(&http, &base).await;
    wait_all_settled(&pool, Duration::from_secs(60)).await;
    let done: i64 = sqlx::query_scalar("select count(*) from orders where status = 'completed'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(done, 6);
    assert_ledger(&pool, &emulator).await;
    emulator.shutdown();
}
