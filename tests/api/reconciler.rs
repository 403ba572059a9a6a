//! The reconciler against the emulator's faults: each fault class alone,
//! late visibility past the settle window, the review budget, and all faults
//! mixed. Every test ends with the ledger check.

use std::time::Duration;

use order_gateway::emulator::{Fault, FaultOp, FaultRates};
use serde_json::Value;

use crate::{
    helpers::{TestApp, new_key, order_body, spawn_app_with},
    ledger::{assert_ledger_consistent, fast, wait_all_settled},
};

/// Posts one order with `fault` on its placeOrder, waits until it settles.
async fn settle_with_fault(app: &TestApp, fault: Fault) -> Value {
    app.emulator.push_fault(FaultOp::PlaceOrder, fault);
    let resp = app.post_order(&new_key(), &order_body()).await;
    let order: Value = resp.json().await.unwrap();
    wait_all_settled(&app.db, Duration::from_secs(30)).await;
    let id = order["id"].as_str().unwrap();
    app.get_order(&app.api_key, id).await.json().await.unwrap()
}

#[tokio::test]
async fn a_5xx_before_creation_is_placed_again_after_the_settle_window() {
    let app = spawn_app_with(fast(&[])).await;
    let order = settle_with_fault(&app, Fault::ErrorBeforeCreate { status: 502 }).await;
    assert_eq!(order["status"], "completed");
    assert_eq!(order["attempts"], 2);
    assert_eq!(
        app.emulator
            .place_calls(order["poNumber"].as_str().unwrap()),
        2
    );
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn a_5xx_after_creation_adopts_the_existing_order_with_its_vouchers() {
    let app = spawn_app_with(fast(&[])).await;
    let order = settle_with_fault(&app, Fault::ErrorAfterCreate { status: 500 }).await;
    assert_eq!(order["status"], "completed");
    assert_eq!(order["attempts"], 1);
    let po = order["poNumber"].as_str().unwrap();
    assert_eq!(app.emulator.place_calls(po), 1);
    let upstream = app.emulator.order(po).unwrap();
    assert_eq!(order["xoxodayOrderId"], upstream.order_id);
    assert_eq!(order["vouchers"].as_array().unwrap().len(), 1);
    let lookups = app
        .count(
            "upstream_exchanges where operation = 'get_order_details' and completed_at is not null",
        )
        .await;
    assert!(lookups >= 1, "the lookup is audited");
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn a_timeout_after_creation_is_found_not_placed_again() {
    let mut opts = fast(&[]);
    opts.place_timeout = "1s";
    let app = spawn_app_with(opts).await;
    let order = settle_with_fault(&app, Fault::SleepAfterCreate(Duration::from_secs(3))).await;
    assert_eq!(order["status"], "completed");
    assert_eq!(
        app.emulator
            .place_calls(order["poNumber"].as_str().unwrap()),
        1
    );
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn a_dropped_connection_is_found_not_placed_again() {
    let app = spawn_app_with(fast(&[])).await;
    let order = settle_with_fault(&app, Fault::DropAfterCreate).await;
    assert_eq!(order["status"], "completed");
    assert_eq!(
        app.emulator
            .place_calls(order["poNumber"].as_str().unwrap()),
        1
    );
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn an_order_hidden_past_the_settle_window_is_refused_as_a_duplicate_then_found() {
    let app = spawn_app_with(fast(&[("RECONCILE_MAX_ATTEMPTS", "10")])).await;
    let order = settle_with_fault(&app, Fault::HiddenFromDetails(Duration::from_secs(4))).await;
    let po = order["poNumber"].as_str().unwrap().to_owned();
    assert_eq!(order["status"], "completed");
    // The answer is lost after the call (as if the worker died before its
    // write-back) while the order is still invisible to getOrderDetails.
    sqlx::query(
        "update orders set status = 'reconciling', xoxoday_order_id = null, settled_at = null,
           next_check_at = now(), last_place_started_at = now() - interval '1 minute',
           last_place_ended_at = now() - interval '1 minute'
         where po_number = $1",
    )
    .bind(&po)
    .execute(&app.db)
    .await
    .unwrap();
    sqlx::query("delete from vouchers")
        .execute(&app.db)
        .await
        .unwrap();
    wait_all_settled(&app.db, Duration::from_secs(30)).await;
    assert_eq!(app.db_status(&po).await, "completed");
    assert!(
        app.emulator.place_calls(&po) >= 2,
        "placed again and refused as a repeat"
    );
    assert_eq!(app.emulator.orders().len(), 1);
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn an_exhausted_budget_goes_to_needs_review_with_a_reason() {
    let app = spawn_app_with(fast(&[("RECONCILE_MAX_ATTEMPTS", "2")])).await;
    for _ in 0..3 {
        app.emulator.push_fault(
            FaultOp::PlaceOrder,
            Fault::ErrorBeforeCreate { status: 503 },
        );
    }
    let resp = app.post_order(&new_key(), &order_body()).await;
    let order: Value = resp.json().await.unwrap();
    wait_all_settled(&app.db, Duration::from_secs(30)).await;
    let po = order["poNumber"].as_str().unwrap();
    assert_eq!(app.db_status(po).await, "needs_review");
    let view: Value = app
        .get_order(&app.api_key, order["id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert!(
        view["statusReason"]
            .as_str()
            .unwrap()
            .contains("2 placeOrder attempts")
    );
    assert_eq!(app.emulator.place_calls(po), 2);
    // Nothing retries it automatically.
    sqlx::query("update orders set next_check_at = now() - interval '1 hour'")
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(app.reconciler.reconcile_once().await.unwrap(), 0);
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn failing_lookups_change_nothing_and_back_off() {
    let app = spawn_app_with(fast(&[])).await;
    app.emulator.push_fault(
        FaultOp::GetOrderDetails,
        Fault::ErrorBeforeCreate { status: 502 },
    );
    app.emulator.push_fault(
        FaultOp::GetOrderDetails,
        Fault::RateLimited { penalty_seconds: 1 },
    );
    let order = settle_with_fault(&app, Fault::DropAfterCreate).await;
    assert_eq!(order["status"], "completed");
    assert_eq!(
        app.emulator
            .place_calls(order["poNumber"].as_str().unwrap()),
        1
    );
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn all_faults_mixed_still_give_exactly_one_order_per_key() {
    let mut opts = fast(&[
        ("XOXODAY_SETTLE_WINDOW", "3s"),
        ("RECONCILE_MAX_ATTEMPTS", "20"),
    ]);
    opts.place_timeout = "1s";
    let app = spawn_app_with(opts).await;
    app.emulator.set_fault_rates(FaultRates {
        error_before: 0.15,
        error_after: 0.15,
        sleep_after: 0.1,
        drop_after: 0.15,
        slow: 0.1,
        hidden: 0.15,
        sleep: Duration::from_secs(2),
        hidden_for: Duration::from_secs(4),
        ..FaultRates::default()
    });
    let posts = (0..20).map(|_| {
        let key = new_key();
        let app = &app;
        async move {
            app.post_order_as(&app.api_key, &key, &order_body(), Some(0))
                .await
        }
    });
    for resp in futures::future::join_all(posts).await {
        assert!(resp.status().is_success(), "{}", resp.status());
    }
    wait_all_settled(&app.db, Duration::from_secs(90)).await;
    app.emulator.set_fault_rates(FaultRates::default());
    assert_eq!(app.count("orders where status = 'completed'").await, 20);
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn a_refused_re_placement_never_marks_the_order_failed() {
    // Attempt 1: unknown outcome (5xx). Attempt 2 (after a trusted not-found)
    // is refused: that refusal says nothing about attempt 1, so the order must
    // not become `failed` (which invites a second order under a new key).
    let app = spawn_app_with(fast(&[])).await;
    app.emulator.push_fault(
        FaultOp::PlaceOrder,
        Fault::ErrorBeforeCreate { status: 502 },
    );
    let refusal = serde_json::json!({
        "code": 400, "errorId": "PLE10001",
        "errorInfo": "Validation error in place order", "error": "Bad request"
    });
    app.emulator.push_fault(
        FaultOp::PlaceOrder,
        Fault::Respond {
            status: 400,
            body: refusal,
        },
    );
    let resp = app.post_order(&new_key(), &order_body()).await;
    let order: Value = resp.json().await.unwrap();
    wait_all_settled(&app.db, Duration::from_secs(30)).await;
    let id = order["id"].as_str().unwrap();
    let order: Value = app.get_order(&app.api_key, id).await.json().await.unwrap();
    assert_ne!(order["status"], "failed", "{order}");
    assert_eq!(order["status"], "completed", "placed by attempt 3: {order}");
    assert_eq!(order["attempts"], 3);
    assert_ledger_consistent(&app).await;
}
