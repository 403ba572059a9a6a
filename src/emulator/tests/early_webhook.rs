//! The delivery webhook before (or instead of) the placeOrder answer.

use std::time::Duration;

use serde_json::json;

use super::{
    PLACE,
    delivery::{Receiver, delayed, emulator_with_hook},
    order_data,
};
use crate::emulator::{AfterWebhook, Fault, FaultOp, FaultRates};

fn first(then: AfterWebhook) -> Fault {
    Fault::WebhookFirst { then }
}

#[tokio::test]
async fn the_webhook_arrives_before_the_place_order_answer() {
    let (rx, url) = Receiver::start(0).await;
    let emu = emulator_with_hook(&url).await;
    emu.h
        .push_fault(FaultOp::PlaceOrder, first(AfterWebhook::Answer));
    let (status, body) = emu.place(order_data("PO-WF")).await;
    assert_eq!(status, 200, "{body}");
    let seen = rx.seen();
    assert_eq!(seen.len(), 1, "already received when the answer came");
    let (key, hook) = &seen[0];
    assert_eq!(key.as_deref(), Some("hook-key-1234567890"));
    assert_eq!(hook["data"]["poNumber"], json!("PO-WF"));
    assert_eq!(hook["data"]["deliveryStatus"], json!("delivered"));
    let id = &body["data"]["placeOrder"]["data"]["orderId"];
    assert_eq!(&hook["data"]["orderId"], id);
}

#[tokio::test]
async fn the_webhook_can_come_instead_of_the_answer() {
    let (rx, url) = Receiver::start(0).await;
    let emu = emulator_with_hook(&url).await;
    emu.h
        .fault_for_po("PO-WI", first(AfterWebhook::Error { status: 503 }));
    assert_eq!(emu.place(order_data("PO-WI")).await.0, 503);
    assert_eq!(rx.seen().len(), 1);
    assert_eq!(emu.h.order("PO-WI").unwrap().delivery_status, "delivered");

    emu.h.fault_for_po("PO-WD", first(AfterWebhook::Drop));
    let (access, _) = emu.h.current_tokens();
    let dropped = emu
        .api_as(Some(&access), PLACE, delayed("PO-WD", 1004))
        .await;
    assert!(dropped.is_err(), "no HTTP answer");
    assert_eq!(rx.seen().len(), 2);
    assert_eq!(rx.seen()[1].1["data"]["deliveryStatus"], json!("canceled"));
    assert_eq!(emu.h.order("PO-WD").unwrap().delivery_status, "canceled");
}

#[tokio::test]
async fn a_delayed_product_settles_at_once_and_is_not_settled_twice() {
    let (rx, url) = Receiver::start(0).await;
    let emu = emulator_with_hook(&url).await;
    emu.h
        .push_fault(FaultOp::PlaceOrder, first(AfterWebhook::Answer));
    let (status, body) = emu.place(delayed("PO-WDLY", 1003)).await;
    assert_eq!(status, 200, "{body}");
    let o = &body["data"]["placeOrder"]["data"];
    assert_eq!(o["deliveryStatus"], json!("delivered"), "answer agrees");
    assert_eq!(rx.seen().len(), 1);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(rx.seen().len(), 1, "the delivery delay fires no second one");
}

#[tokio::test]
async fn webhook_first_by_rate_and_over_http() {
    let (rx, url) = Receiver::start(0).await;
    let emu = emulator_with_hook(&url).await;
    emu.h.set_fault_rates(FaultRates {
        webhook_instead: 1.0,
        ..FaultRates::default()
    });
    assert_eq!(emu.place(order_data("PO-WR")).await.0, 502);
    assert_eq!(rx.seen().len(), 1);
    emu.h.set_fault_rates(FaultRates::default());

    let post = |path: &str, body: serde_json::Value| {
        let req = emu.http.post(emu.admin_url(path)).json(&body);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let fault = json!({"op": "placeOrder", "fault": {"kind": "webhookFirst", "then": "answer"}});
    assert_eq!(post("/faults", fault).await, 202);
    assert_eq!(emu.place(order_data("PO-WH")).await.0, 200);
    assert_eq!(rx.seen().len(), 2);
    assert_eq!(
        post("/fault-rates", json!({"webhookFirst": 1.0})).await,
        200
    );
    assert_eq!(emu.place(order_data("PO-WH2")).await.0, 200);
    assert_eq!(rx.seen().len(), 3);
}
