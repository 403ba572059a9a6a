//! `kill -9` of the real binary mid-call: the order is neither lost nor
//! placed twice. The restarted gateway sees the dead lease and, since the call
//! had been sent, moves the order to `reconciling` (contract §2.1, §2.3).

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::Duration,
};

use order_gateway::emulator::{EmulatorConfig, Fault, FaultOp};
use serde_json::Value;
use sqlx::PgPool;

use crate::{
    helpers::{create_key, new_key, order_body},
    test_db::TestDb,
};

/// The child gateway, killed (SIGKILL) when dropped, so a failing assertion
/// never leaves a `serve` process behind.
struct Gateway(Child);

impl Gateway {
    fn kill(&mut self) -> std::io::Result<()> {
        self.0.kill()
    }

    fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.0.wait()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_gateway(db_url: &str, base_url: &str, port: u16) -> Gateway {
    use base64::Engine as _;
    Command::new(env!("CARGO_BIN_EXE_order-gateway"))
        .arg("serve")
        .env_clear()
        .env("DATABASE_URL", db_url)
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("XOXODAY_BASE_URL", base_url)
        .env("XOXODAY_CLIENT_ID", "emulator-client")
        .env("XOXODAY_CLIENT_SECRET", "emulator-secret")
        .env("XOXODAY_ACCESS_TOKEN", "emulator-access-token")
        .env("XOXODAY_REFRESH_TOKEN", "emulator-refresh-token")
        .env(
            "ENCRYPTION_KEY",
            base64::engine::general_purpose::STANDARD.encode([7u8; 32]),
        )
        .env("ORDER_LEASE", "1s")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Gateway)
        .expect("start order-gateway serve")
}

async fn wait_ready(http: &reqwest::Client, port: u16) {
    for _ in 0..200 {
        let ready = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        if ready {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("gateway did not become ready");
}

async fn status_of(db: &PgPool, po: &str) -> String {
    sqlx::query_scalar("select status from orders where po_number = $1")
        .bind(po)
        .fetch_one(db)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_gateway_killed_mid_call_leaves_the_order_reconciling_never_placed_twice() {
    let db = TestDb::create().await;
    let pool = db.pool().await;
    let key = create_key(&pool, "crash-caller").await;
    let emulator = order_gateway::emulator::spawn(EmulatorConfig::for_tests())
        .await
        .unwrap();
    emulator.push_fault(
        FaultOp::PlaceOrder,
        Fault::SleepAfterCreate(Duration::from_secs(3)),
    );
    let http = reqwest::Client::new();
    let port = free_port();
    let mut gateway = start_gateway(&db.url, &emulator.base_url(), port);
    wait_ready(&http, port).await;

    let resp = http
        .post(format!("http://127.0.0.1:{port}/v1/orders"))
        .bearer_auth(&key)
        .header("Idempotency-Key", new_key())
        .header("Prefer", "wait=0")
        .json(&order_body())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let order: Value = resp.json().await.unwrap();
    let po = order["poNumber"].as_str().unwrap().to_owned();
    for _ in 0..100 {
        if emulator.place_calls(&po) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(emulator.place_calls(&po), 1);
    gateway.kill().expect("kill -9");
    gateway.wait().unwrap();
    assert_eq!(status_of(&pool, &po).await, "placing");

    let mut gateway = start_gateway(&db.url, &emulator.base_url(), port);
    wait_ready(&http, port).await;
    let mut status = String::new();
    for _ in 0..100 {
        status = status_of(&pool, &po).await;
        if status != "placing" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The restarted gateway moves the orphan to `reconciling`; its reconciler
    // may already have found the order upstream and completed it.
    assert!(
        status == "reconciling" || status == "completed",
        "after restart the order is reconciled, not re-placed: {status}"
    );
    for _ in 0..400 {
        if status_of(&pool, &po).await == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        status_of(&pool, &po).await,
        "completed",
        "settled through getOrderDetails"
    );
    assert_eq!(emulator.place_calls(&po), 1, "never placed twice");
    let open: i64 =
        sqlx::query_scalar("select count(*) from upstream_exchanges where completed_at is null")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        open, 1,
        "the interrupted exchange stays recorded, request included"
    );
    gateway.kill().unwrap();
    gateway.wait().unwrap();
    emulator.shutdown();
    pool.close().await;
}
