//! Hostile text from Xoxoday (issue 9, window 9): NUL (which Postgres
//! refuses in text and jsonb), lone surrogates, raw control bytes and very
//! long strings, in webhooks, placeOrder answers, error bodies and voucher
//! fields. None of them may cost a 5xx or an unsettled order, and the raw
//! bytes are kept.

use order_gateway::emulator::{Fault, FaultOp};
use serde_json::{Value, json};

use crate::{
    helpers::{TestApp, new_key, order_body, spawn_app_with},
    ledger::fast,
};

const KEY: &str = "webhook-key-0123456789";

async fn app() -> TestApp {
    spawn_app_with(fast(&[("WEBHOOK_API_KEY", KEY)])).await
}

async fn post_raw(app: &TestApp, body: Vec<u8>) -> reqwest::Response {
    app.http
        .post(app.url("/v1/webhooks/xoxoday"))
        .header("x-api-key", KEY)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn stored_raw(app: &TestApp, id: &str) -> Option<Vec<u8>> {
    sqlx::query_scalar("select payload_raw from webhook_events where webhook_id = $1")
        .bind(id)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

async fn completed_po(app: &TestApp) -> String {
    let order: Value = app
        .post_order(&new_key(), &order_body())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(order["status"], "completed", "{order}");
    order["poNumber"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_webhook_with_nul_is_answered_200_and_stored_raw() {
    let app = app().await;
    let po = completed_po(&app).await;
    let body = json!({"id": 9001, "data": {"orderId": 1, "poNumber": po,
        "deliveryStatus": "delivered\u{0}", "note\u{0}": "x\u{0}y"}});
    let bytes = serde_json::to_vec(&body).unwrap();
    let resp = post_raw(&app, bytes.clone()).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let (status, payload): (String, Value) = sqlx::query_as(
        "select delivery_status, payload from webhook_events where webhook_id = '9001'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(status, "delivered\\u0000");
    assert_eq!(payload["data"]["note\\u0000"], "x\\u0000y");
    assert_eq!(stored_raw(&app, "9001").await, Some(bytes));
    // A repeat is still a repeat.
    let again = serde_json::to_vec(&body).unwrap();
    assert_eq!(post_raw(&app, again).await.status(), 200);
    assert_eq!(app.count("webhook_events").await, 1);
}

#[tokio::test]
async fn webhooks_with_surrogates_raw_controls_or_huge_strings_are_stored() {
    let app = app().await;
    let po = completed_po(&app).await;
    let surrogate =
        format!(r#"{{"id":"9002","data":{{"poNumber":"{po}","deliveryStatus":"x\ud800y"}}}}"#);
    let raw_nul = format!("{{\"id\":\"9003\",\"data\":{{\"poNumber\":\"{po}\",\"x\":\"a\0b\"}}}}");
    let huge = "h".repeat(200_000);
    let long = json!({"id": "9004", "data": {"poNumber": po, "deliveryStatus": huge}});
    let long_id = json!({"id": "7".repeat(5000), "data": {"poNumber": po}});
    let bodies = [
        ("9002", surrogate.into_bytes()),
        ("9003", raw_nul.into_bytes()),
        ("9004", serde_json::to_vec(&long).unwrap()),
    ];
    for (id, bytes) in bodies {
        let resp = post_raw(&app, bytes.clone()).await;
        assert_eq!(resp.status(), 200, "{id}: {}", resp.text().await.unwrap());
        assert_eq!(stored_raw(&app, id).await, Some(bytes), "{id}");
    }
    let resp = post_raw(&app, serde_json::to_vec(&long_id).unwrap()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(app.count("webhook_events").await, 4);
    let status: String =
        sqlx::query_scalar("select delivery_status from webhook_events where webhook_id = '9002'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(status, "x\u{fffd}y");
}

/// A placeOrder success body for the emulator to send verbatim.
fn placed_body(validity: &str, order_status: &str) -> Value {
    json!({"data": {"placeOrder": {"status": 1, "data": {
        "orderId": 98765432, "orderTotal": 50, "currencyCode": "USD", "amountCharged": 50,
        "orderStatus": order_status, "deliveryStatus": "delivered", "quantity": 1,
        "vouchers": [{"productId": 1001, "orderId": 98765432, "voucherCode": "CODE\u{0}1",
            "pin": "9\u{0}9", "validity": validity, "amount": 50, "currency": "USD\u{0}",
            "country": "US", "type": "code\u{0}Pin"}]}}}})
}

#[tokio::test]
async fn a_place_order_answer_with_nul_completes_and_reads_back() {
    let app = app().await;
    let body = placed_body("2027-12-31\u{0}", "complete\u{0}");
    app.emulator
        .push_fault(FaultOp::PlaceOrder, Fault::Respond { status: 200, body });
    let created = app.post_order(&new_key(), &order_body()).await;
    assert_eq!(created.status(), 201);
    let order: Value = created.json().await.unwrap();
    assert_eq!(order["status"], "completed", "{order}");
    let read: Value = app
        .get_order(&app.api_key, order["id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    let voucher = &read["vouchers"][0];
    assert_eq!(voucher["validity"], "2027-12-31\\u0000", "{read}");
    assert_eq!(
        voucher["code"], "CODE\u{0}1",
        "code and pin are sealed bytes"
    );
    assert_eq!(voucher["currency"], "USD\\u0000");
    assert_exchange_complete(&app, "placed").await;
}

#[tokio::test]
async fn an_error_body_with_nul_fails_the_order_cleanly() {
    let app = app().await;
    let body = json!({"code": 400, "errorId": "PLE10001", "errorInfo": "bad\u{0}info",
                      "error": "no\u{0}"});
    app.emulator
        .push_fault(FaultOp::PlaceOrder, Fault::Respond { status: 400, body });
    let created = app.post_order(&new_key(), &order_body()).await;
    assert_eq!(created.status(), 201);
    let order: Value = created.json().await.unwrap();
    assert_eq!(order["status"], "failed", "{order}");
    assert_eq!(order["failure"]["errorInfo"], "bad\\u0000info");
    assert_exchange_complete(&app, "rejected").await;
}

/// The first placeOrder exchange was completed with `outcome`, its sealed
/// raw body kept.
async fn assert_exchange_complete(app: &TestApp, outcome: &str) {
    let (done, got, sealed): (bool, String, bool) = sqlx::query_as(
        "select completed_at is not null, outcome, response_body_encrypted is not null
         from upstream_exchanges where operation = 'place_order' order by started_at limit 1",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(done && sealed);
    assert_eq!(got, outcome);
}
