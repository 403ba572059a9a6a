//! Issue 9, window 11 (contract §8): a placeOrder refused for insufficient
//! balance created no order. Sending pauses (orders wait in `accepted`, no
//! attempt counted, `/readyz` says why) until a balance read shows more than
//! the refused order's amount; then sending resumes by itself.

use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::helpers::{Options, TestApp, new_key, spawn_app_with};

fn probing_every_second() -> Options {
    Options {
        extra: vec![("XOXODAY_PROBE_INTERVAL", "1s".to_owned())],
        ..Options::default()
    }
}

async fn post(app: &TestApp, denomination: u32) -> (String, String) {
    let body = json!({"productId": 1001, "denomination": denomination, "email": "a@example.com"});
    let resp = app
        .post_order_as(&app.api_key, &new_key(), &body, Some(1))
        .await;
    assert_eq!(resp.status(), 202);
    let order: Value = resp.json().await.unwrap();
    (
        order["id"].as_str().unwrap().to_owned(),
        order["poNumber"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn balance_an_insufficient_balance_refusal_waits_in_accepted_until_a_top_up() {
    let app = spawn_app_with(probing_every_second()).await;
    app.emulator.set_balance(Decimal::from(30));

    let (first, first_po) = post(&app, 50).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (second, second_po) = post(&app, 10).await;
    // Several dispatcher and probe passes.
    tokio::time::sleep(Duration::from_secs(3)).await;

    for po in [&first_po, &second_po] {
        assert_eq!(app.db_status(po).await, "accepted", "{po}");
    }
    assert_eq!(app.emulator.place_calls(&second_po), 0, "sending is paused");
    let attempts: i32 = sqlx::query_scalar("select attempts from orders where po_number = $1")
        .bind(&first_po)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(attempts, 0, "a refusal for balance is not an attempt");
    let resp = app.get("/readyz").await;
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("insufficient balance"), "{body}");
    // A top-up that does not cover the refused order keeps the pause.
    app.emulator.set_balance(Decimal::from(45));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(app.emulator.place_calls(&second_po), 0, "still paused");

    app.emulator.set_balance(Decimal::from(500));

    for id in [&first, &second] {
        let order = app.wait_settled(id, Duration::from_secs(15)).await;
        assert_eq!(order["status"], "completed", "{order}");
    }
    assert_eq!(app.get("/readyz").await.status(), 200);
    assert_eq!(app.emulator.orders().len(), 2);
}
