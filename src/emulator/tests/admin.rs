//! The `/_emulator` admin HTTP surface.

use serde_json::{Value, json};

use super::{Emu, decode, order_data, start};

async fn get(emu: &Emu, path: &str) -> (u16, Value) {
    decode(emu.http.get(emu.admin_url(path)).send().await.unwrap())
        .await
        .unwrap()
}

async fn post(emu: &Emu, path: &str, body: Value) -> (u16, Value) {
    let req = emu.http.post(emu.admin_url(path)).json(&body);
    decode(req.send().await.unwrap()).await.unwrap()
}

#[tokio::test]
async fn the_ledger_lists_orders_and_place_calls() {
    let emu = start().await;
    emu.place(order_data("PO-A1")).await;
    emu.place(order_data("PO-A1")).await;
    let (status, body) = get(&emu, "/ledger").await;
    assert_eq!(status, 200);
    assert_eq!(body["orders"].as_array().unwrap().len(), 1);
    assert_eq!(body["orders"][0]["poNumber"], json!("PO-A1"));
    assert_eq!(body["orders"][0]["amountCharged"], json!("10"));
    assert_eq!(body["placeCalls"]["PO-A1"], json!(2));
    let (status, body) = get(&emu, "/ledger/PO-A1").await;
    assert_eq!((status, body["placeCalls"].clone()), (200, json!(2)));
    assert_eq!(body["order"]["deliveryStatus"], json!("delivered"));
    assert_eq!(get(&emu, "/ledger/PO-NONE").await.0, 404);
}

#[tokio::test]
async fn faults_can_be_pushed_over_http() {
    let emu = start().await;
    let fault = json!({"op": "placeOrder", "fault": {"kind": "errorAfterCreate", "status": 503}});
    assert_eq!(post(&emu, "/faults", fault).await.0, 202);
    let by_po =
        json!({"poNumber": "PO-H2", "fault": {"kind": "hiddenFromDetails", "duration": "1h"}});
    assert_eq!(post(&emu, "/faults", by_po).await.0, 202);
    let rl = json!({"op": "getBalance", "fault": {"kind": "rateLimited", "penaltySeconds": 7}});
    assert_eq!(post(&emu, "/faults", rl).await.0, 202);
    let bad = json!({"op": "nope", "fault": {"kind": "invalidToken"}});
    assert_eq!(post(&emu, "/faults", bad).await.0, 400);
    let bad = json!({"op": "placeOrder", "fault": {"kind": "slow", "duration": "soon"}});
    assert_eq!(post(&emu, "/faults", bad).await.0, 400);

    assert_eq!(emu.place(order_data("PO-H1")).await.0, 503);
    assert!(emu.h.order("PO-H1").is_some());
    assert_eq!(emu.place(order_data("PO-H2")).await.0, 200);
    assert_eq!(emu.details(json!({"poNumber": "PO-H2"})).await.0, 404);
    let (status, body) = emu.api(super::BALANCE, json!({})).await;
    assert_eq!(
        (status, body["errors"][0]["penaltySeconds"].clone()),
        (429, json!(7))
    );
}

#[tokio::test]
async fn settle_tokens_and_expiry_over_http() {
    let emu = start().await;
    let mut data = order_data("PO-S1");
    data["productId"] = json!(1003);
    assert_eq!(emu.place(data).await.0, 200);
    assert_eq!(
        post(&emu, "/settle/PO-S1?status=canceled", json!({}))
            .await
            .0,
        200
    );
    assert_eq!(emu.h.order("PO-S1").unwrap().delivery_status, "canceled");
    assert_eq!(post(&emu, "/settle/PO-S1", json!({})).await.0, 404);

    let (_, tokens) = get(&emu, "/tokens").await;
    assert_eq!(tokens["accessToken"], json!("emulator-access-token"));
    assert_eq!(post(&emu, "/expire-token", json!({})).await.0, 200);
    assert_eq!(emu.api(super::BALANCE, json!({})).await.0, 401);
    let (status, hooks) = get(&emu, "/webhooks").await;
    assert_eq!((status, hooks["attempts"].clone()), (200, json!([])));
}

#[tokio::test]
async fn switches_can_be_set_over_http() {
    let emu = start().await;
    let rates = json!({"errorBefore": 1.0});
    assert_eq!(post(&emu, "/fault-rates", rates).await.0, 200);
    assert_eq!(emu.place(order_data("PO-R1")).await.0, 502);
    assert!(emu.h.order("PO-R1").is_none());
    assert_eq!(
        post(&emu, "/fault-rates", json!({"slow": 0.7, "hidden": 0.7}))
            .await
            .0,
        400
    );
    assert_eq!(post(&emu, "/fault-rates", json!({})).await.0, 200);
    assert_eq!(emu.place(order_data("PO-R2")).await.0, 200);

    assert_eq!(
        post(&emu, "/rate-limits", json!({"getBalance": 1})).await.0,
        200
    );
    assert_eq!(emu.api(super::BALANCE, json!({})).await.0, 200);
    assert_eq!(emu.api(super::BALANCE, json!({})).await.0, 429);

    assert_eq!(post(&emu, "/balance", json!({"balance": "5"})).await.0, 200);
    assert_eq!(emu.h.balance(), rust_decimal::Decimal::from(5));
    assert_eq!(
        post(&emu, "/balance", json!({"balance": "-5"})).await.0,
        400
    );
    let hook = json!({"url": "http://127.0.0.1:1/hook", "apiKey": "k"});
    assert_eq!(post(&emu, "/webhook", hook).await.0, 200);
}
