//! Contract §8: the wallet balance is read without any hold (once per
//! `XOXODAY_PROBE_INTERVAL` over all replicas), exported, and a balance
//! under `XOXODAY_LOW_BALANCE` warns in `/readyz` without failing it.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{Options, TestApp, spawn_app_with};

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
