//! Contract §8: the wallet balance is read without any hold (once per
//! `XOXODAY_PROBE_INTERVAL` over all replicas), exported, and a balance
//! under `XOXODAY_LOW_BALANCE` warns in `/readyz` without failing it.

use std::{sync::Arc, time::Duration};

use order_gateway::{
    config::EncryptionKey,
    crypto::Cipher,
    orders::balance::BalanceMonitor,
    store::Store,
    xoxoday::{ClientConfig, XoxodayClient},
};
use serde_json::Value;

use crate::helpers::{Options, TestApp, encryption_key, spawn_app_with};

fn options(low: &str) -> Options {
    Options {
        extra: vec![
            ("XOXODAY_PROBE_INTERVAL", "1s".to_owned()),
            ("XOXODAY_LOW_BALANCE", low.to_owned()),
        ],
        ..Options::default()
    }
}

async fn metric(app: &TestApp, name: &str) -> Option<f64> {
    let text = app.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
}

/// Waits for the first balance read (guards against a hang only).
async fn first_read(app: &TestApp) {
    for _ in 0..300 {
        let read: Option<chrono::DateTime<chrono::Utc>> =
            sqlx::query_scalar("select read_ok_at from xoxoday_balance")
                .fetch_one(&app.db)
                .await
                .unwrap();
        if read.is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no balance read");
}

#[tokio::test]
async fn a_balance_under_the_threshold_warns_in_readyz_and_metrics_without_failing_readiness() {
    let app = spawn_app_with(options("1000000000000")).await;
    first_read(&app).await;
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    let warning = body["warnings"][0].as_str().unwrap();
    assert!(warning.contains("XOXODAY_LOW_BALANCE"), "{warning}");
    assert_eq!(
        metric(&app, "order_gateway_xoxoday_balance_low ").await,
        Some(1.0)
    );
    let balance = app.emulator.balance();
    let exported = metric(&app, "order_gateway_xoxoday_balance{currency=\"USD\"} ").await;
    assert_eq!(exported, balance.to_string().parse::<f64>().ok());
    let reads: i64 = sqlx::query_scalar(
        "select count(*) from upstream_exchanges where operation = 'get_balance'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(reads >= 1);
}

#[tokio::test]
async fn a_balance_above_the_threshold_gives_no_warning() {
    let app = spawn_app_with(options("1")).await;
    first_read(&app).await;
    let body: Value = app.get("/readyz").await.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert!(body.get("warnings").is_none(), "{body}");
    assert_eq!(
        metric(&app, "order_gateway_xoxoday_balance_low ").await,
        Some(0.0)
    );
}

/// A second monitor on the app's database, as another replica has.
fn replica_monitor(app: &TestApp) -> BalanceMonitor {
    let key = EncryptionKey::from_base64(&encryption_key(app.db_url())).unwrap();
    let client = XoxodayClient::with_config(ClientConfig {
        base_url: app.emulator.base_url().parse().unwrap(),
        client_id: "emulator-client".to_owned().into(),
        client_secret: "emulator-secret".to_owned().into(),
        place_order_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_secs(10),
    })
    .unwrap();
    BalanceMonitor::new(
        Store::from_pool(app.db.clone()),
        Arc::new(client),
        app.tokens.clone(),
        Arc::new(Cipher::new(&key)),
        Duration::from_secs(60),
        None,
    )
}

#[tokio::test]
async fn the_balance_is_read_at_most_once_per_interval_over_all_replicas() {
    let app = spawn_app_with(Options::default()).await;
    first_read(&app).await;
    let (a, b) = (replica_monitor(&app), replica_monitor(&app));
    assert!(
        !a.read_once().await.unwrap(),
        "read within the interval already"
    );
    sqlx::query("update xoxoday_balance set last_read_at = now() - interval '2 minutes'")
        .execute(&app.db)
        .await
        .unwrap();
    let (ra, rb) = tokio::join!(a.read_once(), b.read_once());
    let reads = [ra.unwrap(), rb.unwrap()];
    // (the app's own monitor may be the one that got it)
    assert!(reads.iter().filter(|r| **r).count() <= 1, "{reads:?}");
}
