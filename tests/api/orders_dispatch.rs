//! Dispatch: poNumber first, every exchange audited, every outcome mapped.

use std::time::Duration;

use order_gateway::emulator::{Fault, FaultOp};
use serde_json::{Value, json};

use crate::helpers::{Options, new_key, order_body, spawn_app, spawn_app_with};

#[tokio::test]
async fn a_delivered_order_is_201_completed_with_vouchers_and_audit() {
    let app = spawn_app().await;
    let resp = app.post_order(&new_key(), &order_body()).await;
    assert_eq!(resp.status(), 201);
    assert!(
        resp.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/v1/orders/")
    );
    let order: Value = resp.json().await.unwrap();
    let po = order["poNumber"].as_str().unwrap();
    assert!(po.starts_with("OGW-"));
    assert_eq!(order["status"], "completed");
    assert_eq!(order["deliveryStatus"], "delivered");
    assert_eq!(order["denomination"], "50");
    assert_eq!(order["attempts"], 1);
    assert!(order["settledAt"].is_string());
    let ledger = app.emulator.order(po).expect("emulator has the order");
    assert_eq!(order["xoxodayOrderId"], ledger.order_id);
    assert_eq!(
        order["amountCharged"].as_str().unwrap(),
        ledger.amount_charged.normalize().to_string()
    );
    let code = order["vouchers"][0]["code"].as_str().unwrap();
    assert_eq!(code, ledger.vouchers[0].code);

    // Voucher codes are encrypted at rest, in the voucher table and the audit.
    let (redacted, sealed): (String, Vec<u8>) = sqlx::query_as(
        "select response_body_redacted, response_body_encrypted from upstream_exchanges",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(!redacted.contains(code) && redacted.contains("[REDACTED]"));
    assert!(!sealed.windows(code.len()).any(|w| w == code.as_bytes()));
    let stored: Vec<u8> = sqlx::query_scalar("select code_encrypted from vouchers")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(!stored.windows(code.len()).any(|w| w == code.as_bytes()));
    let row: (String, i32, i32, Option<i32>) = sqlx::query_as(
        "select operation, attempt, response_status, duration_ms from upstream_exchanges",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!((row.0.as_str(), row.1, row.2), ("place_order", 1, 200));
    assert!(row.3.is_some());
}

#[tokio::test]
async fn the_po_number_and_exchange_are_committed_before_xoxoday_sees_the_call() {
    let app = spawn_app().await;
    app.emulator
        .push_fault(FaultOp::PlaceOrder, Fault::Slow(Duration::from_secs(2)));
    let resp = app
        .post_order_as(&app.api_key, &new_key(), &order_body(), Some(0))
        .await;
    assert_eq!(resp.status(), 202);
    let order: Value = resp.json().await.unwrap();
    let po = order["poNumber"].as_str().unwrap().to_owned();

    // The exchange row (request included) must exist while the emulator still
    // holds the call and has created nothing.
    let mut seen = false;
    for _ in 0..100 {
        let row: Option<(Value, Option<i32>)> = sqlx::query_as(
            "select e.request_body, e.response_status from upstream_exchanges e
             join orders o using (order_id) where o.po_number = $1",
        )
        .bind(&po)
        .fetch_optional(&app.db)
        .await
        .unwrap();
        if let Some((request, status)) = row {
            assert!(
                app.emulator.order(&po).is_none(),
                "upstream created before the audit row"
            );
            assert!(request.to_string().contains(&po));
            assert_eq!(status, None);
            assert_eq!(app.db_status(&po).await, "placing");
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(seen, "no exchange row while the call was in flight");
    let done = app
        .wait_settled(order["id"].as_str().unwrap(), Duration::from_secs(10))
        .await;
    assert_eq!(done["status"], "completed");
    assert_eq!(app.emulator.place_calls(&po), 1);
}

#[tokio::test]
async fn an_upstream_rejection_fails_the_order_with_xoxodays_error() {
    let app = spawn_app().await;
    let body = json!({"productId": 1001, "denomination": 12});
    let resp = app.post_order(&new_key(), &body).await;
    assert_eq!(resp.status(), 201);
    let order: Value = resp.json().await.unwrap();
    assert_eq!(order["status"], "failed");
    assert_eq!(order["failure"]["errorId"], "PLE10018");
    assert_eq!(order["failure"]["httpStatus"], 400);
    assert!(order["failure"]["errorInfo"].is_string());
    assert!(order["xoxodayOrderId"].is_null());
    assert!(app.emulator.orders().is_empty());
}

async fn assert_unknown_outcome_reconciles(app: &crate::helpers::TestApp, fault: Fault) {
    app.emulator.push_fault(FaultOp::PlaceOrder, fault);
    let resp = app.post_order(&new_key(), &order_body()).await;
    assert_eq!(resp.status(), 202);
    assert!(resp.headers().get("retry-after").is_some());
    let order: Value = resp.json().await.unwrap();
    assert_eq!(order["status"], "reconciling");
    let po = order["poNumber"].as_str().unwrap();
    assert_eq!(app.emulator.place_calls(po), 1);
    let (check, attempts): (Option<chrono::DateTime<chrono::Utc>>, i32) =
        sqlx::query_as("select next_check_at, attempts from orders where po_number = $1")
            .bind(po)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(check.is_some(), "reconciling orders have a next check");
    assert_eq!(attempts, 1);
    // The background dispatcher never places it again.
    app.orders.dispatch_once().await.unwrap();
    assert_eq!(app.emulator.place_calls(po), 1);
}

#[tokio::test]
async fn a_5xx_after_creation_is_an_unknown_outcome_not_a_failure() {
    let app = spawn_app().await;
    assert_unknown_outcome_reconciles(&app, Fault::ErrorAfterCreate { status: 502 }).await;
}

#[tokio::test]
async fn a_dropped_connection_is_an_unknown_outcome() {
    let app = spawn_app().await;
    assert_unknown_outcome_reconciles(&app, Fault::DropAfterCreate).await;
}

#[tokio::test]
async fn a_timeout_is_an_unknown_outcome() {
    let app = spawn_app_with(Options {
        place_timeout: "1s",
    })
    .await;
    assert_unknown_outcome_reconciles(&app, Fault::SleepAfterCreate(Duration::from_secs(3))).await;
}

#[tokio::test]
async fn throttling_puts_the_order_back_without_counting_an_attempt() {
    let app = spawn_app().await;
    app.emulator.push_fault(
        FaultOp::PlaceOrder,
        Fault::RateLimited { penalty_seconds: 5 },
    );
    let resp = app.post_order(&new_key(), &order_body()).await;
    assert_eq!(resp.status(), 202);
    let order: Value = resp.json().await.unwrap();
    assert_eq!(order["status"], "accepted");
    assert_eq!(order["attempts"], 0);
    let po = order["poNumber"].as_str().unwrap();
    let later: bool = sqlx::query_scalar(
        "select next_attempt_at > now() + interval '3 seconds' from orders where po_number = $1",
    )
    .bind(po)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(later);
    // Not due yet: nothing happens.
    assert_eq!(app.orders.dispatch_once().await.unwrap(), 0);
    // Once due, the dispatcher places it with the same poNumber.
    sqlx::query("update orders set next_attempt_at = now()")
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(app.orders.dispatch_once().await.unwrap(), 1);
    assert_eq!(app.db_status(po).await, "completed");
    assert_eq!(app.emulator.place_calls(po), 2);
    assert_eq!(app.emulator.orders().len(), 1);
    assert_eq!(app.count("upstream_exchanges").await, 2);
}

#[tokio::test]
async fn an_expired_token_creates_no_order_and_is_retried_later() {
    let app = spawn_app().await;
    app.emulator
        .push_fault(FaultOp::PlaceOrder, Fault::InvalidToken);
    // The refresh fails too, so the order waits (a good refresh retries at
    // once: tokens::an_invalid_token_refreshes_once_and_the_order_is_placed_promptly).
    app.emulator
        .push_fault(FaultOp::RefreshToken, Fault::InvalidToken);
    let order: Value = app
        .post_order(&new_key(), &order_body())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(order["status"], "accepted");
    assert!(order["failure"].is_null());
    assert!(app.emulator.orders().is_empty());
}

#[tokio::test]
async fn the_background_dispatcher_places_orders_no_handler_dispatched() {
    let app = spawn_app().await;
    // An order left `accepted` (e.g. the gateway stopped right after the insert).
    let resp = app
        .post_order_as(&app.api_key, &new_key(), &order_body(), Some(0))
        .await;
    let order: Value = resp.json().await.unwrap();
    let done = app
        .wait_settled(order["id"].as_str().unwrap(), Duration::from_secs(10))
        .await;
    assert_eq!(done["status"], "completed");
    sqlx::query(
        "insert into orders (order_id, caller_id, idempotency_key, request_fingerprint, po_number,
           product_id, denomination, quantity)
         select gen_random_uuid(), caller_id, 'orphan', '\\x00', 'OGW-orphan', 1001, 25, 1 from callers",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let done = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if app.db_status("OGW-orphan").await == "completed" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(done.is_ok(), "the background loop did not place the orphan");
    assert_eq!(app.emulator.place_calls("OGW-orphan"), 1);
}

#[tokio::test]
async fn a_stale_lease_cannot_write_back_and_expired_leases_reconcile() {
    let app = spawn_app().await;
    sqlx::query(
        "insert into orders (order_id, caller_id, idempotency_key, request_fingerprint, po_number,
           product_id, denomination, quantity, status, lease_token, lease_until)
         select gen_random_uuid(), caller_id, 'stuck', '\\x00', 'OGW-stuck', 1001, 25, 1,
           'placing', gen_random_uuid(), now() - interval '1 second' from callers",
    )
    .execute(&app.db)
    .await
    .unwrap();
    app.orders.dispatch_once().await.unwrap();
    assert_eq!(app.db_status("OGW-stuck").await, "reconciling");
    assert_eq!(
        app.emulator.place_calls("OGW-stuck"),
        0,
        "never re-placed blindly"
    );
}
