//! Issue 9 window 8, contract §8: a delivery webhook that contradicts a final
//! status moves the order to `needs_review` with the reason, is counted in
//! `order_gateway_webhook_contradictions_total`, and still gets a 200.

use order_gateway::emulator::{Fault, FaultOp};
use serde_json::{Value, json};

use crate::{
    helpers::{TestApp, new_key, order_body, spawn_app_with},
    ledger::fast,
    webhooks::{KEY, event, post_webhook, wait_status},
};

async fn contradictions(app: &TestApp) -> f64 {
    let text = app.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("order_gateway_webhook_contradictions_total "))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

async fn post(app: &TestApp, body: &Value) -> Value {
    app.post_order(&new_key(), body).await.json().await.unwrap()
}

#[tokio::test]
async fn a_delivered_webhook_for_a_failed_order_sends_it_to_review_and_is_counted() {
    let app = spawn_app_with(fast(&[("WEBHOOK_API_KEY", KEY)])).await;
    app.emulator.push_fault(
        FaultOp::PlaceOrder,
        Fault::Respond {
            status: 400,
            body: json!({"code": 400, "errorId": "PLE10001",
                         "errorInfo": "Validation error in place order", "error": "Bad request"}),
        },
    );
    let order = post(&app, &order_body()).await;
    assert_eq!(order["status"], "failed", "{order}");
    let before = contradictions(&app).await;
    let po = order["poNumber"].as_str().unwrap();
    let hook = post_webhook(&app, Some(KEY), &event(5151, po, "delivered")).await;
    assert_eq!(hook.status(), 200);
    let id = order["id"].as_str().unwrap();
    let review = wait_status(&app, id, "needs_review").await;
    let reason = review["statusReason"].as_str().unwrap();
    assert!(
        reason.contains("delivered") && reason.contains("failed"),
        "{reason}"
    );
    assert!(contradictions(&app).await >= before + 1.0);
}

#[tokio::test]
async fn a_canceled_webhook_for_a_completed_order_sends_it_to_review() {
    let app = spawn_app_with(fast(&[("WEBHOOK_API_KEY", KEY)])).await;
    let order = post(&app, &order_body()).await;
    assert_eq!(order["status"], "completed", "{order}");
    let po = order["poNumber"].as_str().unwrap();
    let hook = post_webhook(&app, Some(KEY), &event(5252, po, "canceled")).await;
    assert_eq!(hook.status(), 200);
    let review = wait_status(&app, order["id"].as_str().unwrap(), "needs_review").await;
    let reason = review["statusReason"].as_str().unwrap();
    assert!(
        reason.contains("canceled") && reason.contains("completed"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_delivered_webhook_for_a_canceled_order_sends_it_to_review() {
    let app = spawn_app_with(fast(&[("WEBHOOK_API_KEY", KEY)])).await;
    let order = post(&app, &json!({"productId": 1004, "denomination": 10})).await;
    let id = order["id"].as_str().unwrap();
    let po = order["poNumber"].as_str().unwrap();
    assert!(app.emulator.settle_pending(po, false));
    let hook = post_webhook(&app, Some(KEY), &event(5353, po, "canceled")).await;
    assert_eq!(hook.status(), 200);
    wait_status(&app, id, "canceled").await;
    let hook = post_webhook(&app, Some(KEY), &event(5354, po, "delivered")).await;
    assert_eq!(hook.status(), 200);
    let review = wait_status(&app, id, "needs_review").await;
    assert!(
        review["statusReason"]
            .as_str()
            .unwrap()
            .contains("canceled")
    );
}
