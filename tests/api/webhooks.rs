//! `POST /v1/webhooks/xoxoday`: key check, idempotency per webhook id,
//! unknown poNumbers, delayed delivery (delivered → completed with vouchers,
//! canceled → canceled) and the safety poll when no webhook comes.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    helpers::{TestApp, new_key, spawn_app_with},
    ledger::{assert_ledger_consistent, fast, wait_all_settled},
};

pub(crate) const KEY: &str = "webhook-key-0123456789";

async fn app_with_webhook() -> TestApp {
    let app = spawn_app_with(fast(&[("WEBHOOK_API_KEY", KEY)])).await;
    app.emulator
        .set_webhook(Some(app.url("/v1/webhooks/xoxoday")), Some(KEY.to_owned()));
    app
}

pub(crate) async fn post_webhook(
    app: &TestApp,
    key: Option<&str>,
    body: &Value,
) -> reqwest::Response {
    let mut req = app.http.post(app.url("/v1/webhooks/xoxoday")).json(body);
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    req.send().await.unwrap()
}

pub(crate) fn event(id: i64, po: &str, status: &str) -> Value {
    json!({"id": id, "data": {"orderId": 1, "poNumber": po, "orderDate": "2026-01-01 10:00:00",
           "deliveryStatus": status}, "createdAt": "2026-01-01 10:00:01"})
}

/// Waits until the order with `id` has `status`.
pub(crate) async fn wait_status(app: &TestApp, id: &str, status: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let o: Value = app.get_order(&app.api_key, id).await.json().await.unwrap();
        if o["status"] == status {
            return o;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {}",
            o["status"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn webhooks_need_the_configured_key() {
    let open = spawn_app_with(fast(&[])).await;
    let body = event(1, "OGW-x", "delivered");
    assert_eq!(
        post_webhook(&open, Some("anything-at-all"), &body)
            .await
            .status(),
        401
    );
    let app = app_with_webhook().await;
    assert_eq!(post_webhook(&app, None, &body).await.status(), 401);
    assert_eq!(
        post_webhook(&app, Some("webhook-key-0123456780"), &body)
            .await
            .status(),
        401
    );
    assert_eq!(post_webhook(&app, Some(KEY), &body).await.status(), 200);
    assert_eq!(app.count("webhook_events").await, 1);
}

#[tokio::test]
async fn a_repeated_webhook_is_stored_once_and_unknown_po_numbers_are_kept() {
    let app = app_with_webhook().await;
    let body = event(77, "OGW-nobody", "Delivered");
    for _ in 0..3 {
        assert_eq!(post_webhook(&app, Some(KEY), &body).await.status(), 200);
    }
    let (n, matched): (i64, bool) =
        sqlx::query_as("select count(*), bool_or(matched) from webhook_events")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!((n, matched), (1, false));
    assert_eq!(
        post_webhook(&app, Some(KEY), &json!({"data": {}}))
            .await
            .status(),
        400
    );
}

#[tokio::test]
async fn a_delayed_order_completes_with_its_vouchers_when_the_webhook_comes() {
    let app = app_with_webhook().await;
    let body = json!({"productId": 1003, "denomination": 10});
    let resp = app.post_order(&new_key(), &body).await;
    let order: Value = resp.json().await.unwrap();
    assert_eq!(order["status"], "pending_delivery");
    let id = order["id"].as_str().unwrap();
    let done = wait_status(&app, id, "completed").await;
    assert_eq!(done["deliveryStatus"], "delivered");
    assert!(!done["vouchers"].as_array().unwrap().is_empty());
    assert_eq!(app.count("webhook_events where matched").await, 1);
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn a_canceled_delivery_cancels_the_order() {
    let app = app_with_webhook().await;
    let body = json!({"productId": 1004, "denomination": 10});
    let order: Value = app
        .post_order(&new_key(), &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(order["status"], "pending_delivery");
    let done = wait_status(&app, order["id"].as_str().unwrap(), "canceled").await;
    assert!(done["settledAt"].is_string());
    wait_all_settled(&app.db, Duration::from_secs(5)).await;
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn the_safety_poll_completes_a_delivery_whose_webhook_never_came() {
    let app = spawn_app_with(fast(&[("PENDING_POLL_INTERVAL", "1s")])).await;
    let body = json!({"productId": 1003, "denomination": 10});
    let order: Value = app
        .post_order(&new_key(), &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(order["status"], "pending_delivery");
    let done = wait_status(&app, order["id"].as_str().unwrap(), "completed").await;
    assert!(!done["vouchers"].as_array().unwrap().is_empty());
    assert_eq!(app.count("webhook_events").await, 0);
    assert_ledger_consistent(&app).await;
}

#[test]
fn the_webhook_route_is_documented() {
    let spec: serde_json::Value =
        serde_norway::from_str(include_str!("../../openapi.yaml")).unwrap();
    assert!(spec["paths"]["/v1/webhooks/xoxoday"]["post"].is_object());
}
