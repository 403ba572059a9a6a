//! Delayed products, settling and the webhook (with its retries).

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use serde_json::{Value, json};

use super::{Emu, EmulatorConfig, eventually, order_data, start, start_with};

/// One received webhook: its `x-api-key` header and body.
type Seen = (Option<String>, Value);

/// A tiny webhook receiver: records `(x-api-key, body)` (and the raw text,
/// since a hostile body may not parse) and fails the first `fail_first`
/// deliveries with a 500.
#[derive(Clone, Default)]
pub(super) struct Receiver {
    seen: Arc<Mutex<Vec<Seen>>>,
    raw: Arc<Mutex<Vec<String>>>,
    fail_first: usize,
}

impl Receiver {
    pub(super) async fn start(fail_first: usize) -> (Self, String) {
        let me = Self {
            fail_first,
            ..Self::default()
        };
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(me.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (me, format!("http://{addr}/hook"))
    }

    pub(super) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub(super) fn raw(&self) -> Vec<String> {
        self.raw.lock().unwrap().clone()
    }
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    r.raw
        .lock()
        .unwrap()
        .push(String::from_utf8_lossy(&body).into_owned());
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let mut seen = r.seen.lock().unwrap();
    seen.push((key, body));
    if seen.len() <= r.fail_first {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

pub(super) async fn emulator_with_hook(url: &str) -> Emu {
    start_with(EmulatorConfig {
        webhook_url: Some(url.into()),
        webhook_api_key: Some("hook-key-1234567890".into()),
        ..EmulatorConfig::for_tests()
    })
    .await
}

pub(super) fn delayed(po: &str, product: i64) -> Value {
    let mut data = order_data(po);
    data["productId"] = json!(product);
    data
}

#[tokio::test]
async fn a_delayed_order_is_pending_then_delivered_with_a_webhook() {
    let (rx, url) = Receiver::start(0).await;
    let emu = emulator_with_hook(&url).await;
    let (status, body) = emu.place(delayed("PO-LATE", 1003)).await;
    assert_eq!(status, 200, "{body}");
    let o = &body["data"]["placeOrder"]["data"];
    assert_eq!(o["deliveryStatus"], json!("pending"));
    assert!(o.get("vouchers").is_none());
    assert_eq!(o["voucherDetails"][0]["productStatus"], json!("pending"));
    let (_, body) = emu.details(json!({"poNumber": "PO-LATE"})).await;
    let d = &body["data"]["getOrderDetails"]["data"];
    assert_eq!(
        (d["deliveryStatus"].clone(), d["deliveryDate"].clone()),
        (json!("pending"), json!(""))
    );
    assert_eq!(d["vouchers"], json!([]));

    eventually("the webhook arrives", || async { !rx.seen().is_empty() }).await;
    let (key, hook) = rx.seen()[0].clone();
    assert_eq!(key.as_deref(), Some("hook-key-1234567890"));
    let order = emu.h.order("PO-LATE").unwrap();
    assert_eq!(order.delivery_status, "delivered");
    assert_eq!(hook["data"]["orderId"], json!(order.order_id));
    assert_eq!(hook["data"]["poNumber"], json!("PO-LATE"));
    assert_eq!(hook["data"]["deliveryStatus"], json!("delivered"));
    assert_eq!(hook["data"]["orderDate"].as_str().unwrap().len(), 19);
    assert_eq!(hook["createdAt"].as_str().unwrap().len(), 19);
    assert!(hook["id"].is_i64());
    let (_, body) = emu.details(json!({"poNumber": "PO-LATE"})).await;
    assert_eq!(
        body["data"]["getOrderDetails"]["data"]["vouchers"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_canceled_delivery_refunds_and_reports_canceled() {
    let (rx, url) = Receiver::start(0).await;
    let emu = emulator_with_hook(&url).await;
    let before = emu.h.balance();
    assert_eq!(emu.place(delayed("PO-CXL", 1004)).await.0, 200);
    assert!(emu.h.balance() < before);
    eventually("the cancel webhook", || async { !rx.seen().is_empty() }).await;
    assert_eq!(rx.seen()[0].1["data"]["deliveryStatus"], json!("canceled"));
    assert_eq!(emu.h.order("PO-CXL").unwrap().delivery_status, "canceled");
    assert_eq!(emu.h.balance(), before);
    let (_, body) = emu.details(json!({"poNumber": "PO-CXL"})).await;
    let d = &body["data"]["getOrderDetails"]["data"];
    assert_eq!(d["voucherDetails"][0]["cancelledQuantity"], json!(1));
}

#[tokio::test]
async fn settle_pending_forces_the_outcome_now() {
    let (rx, url) = Receiver::start(0).await;
    let mut cfg = EmulatorConfig::for_tests();
    cfg.delivery_delay = std::time::Duration::from_secs(3600);
    let emu = start_with(EmulatorConfig {
        webhook_url: Some(url),
        ..cfg
    })
    .await;
    assert_eq!(emu.place(delayed("PO-FORCE", 1003)).await.0, 200);
    assert!(emu.h.settle_pending("PO-FORCE", false));
    assert!(!emu.h.settle_pending("PO-FORCE", true), "already settled");
    assert!(!emu.h.settle_pending("PO-NONE", true));
    eventually("the webhook", || async { !rx.seen().is_empty() }).await;
    assert_eq!(rx.seen()[0].0, None, "no x-api-key configured");
    assert_eq!(emu.h.order("PO-FORCE").unwrap().delivery_status, "canceled");
}

#[tokio::test]
async fn a_failing_webhook_is_retried_until_it_succeeds() {
    let (rx, url) = Receiver::start(2).await;
    let emu = emulator_with_hook(&url).await;
    assert_eq!(emu.place(delayed("PO-RETRY", 1003)).await.0, 200);
    eventually("three deliveries", || async { rx.seen().len() >= 3 }).await;
    eventually("the success is recorded", || async {
        emu.h.webhook_attempts().len() == 3
    })
    .await;
    let seen = rx.seen();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter().all(|(_, b)| b["id"] == seen[0].1["id"]),
        "same webhook id"
    );
    assert_eq!(emu.h.webhook_attempts()[2].status, Some(200));
    assert!(!emu.h.webhook_disabled());
}

#[tokio::test]
async fn a_webhook_failing_four_times_is_disabled() {
    let (rx, url) = Receiver::start(100).await;
    let emu = emulator_with_hook(&url).await;
    assert_eq!(emu.place(delayed("PO-DEAD", 1003)).await.0, 200);
    eventually("disabled", || async { emu.h.webhook_disabled() }).await;
    assert_eq!(rx.seen().len(), 4, "one try and three retries");
    assert_eq!(emu.place(delayed("PO-DEAD2", 1003)).await.0, 200);
    assert!(emu.h.settle_pending("PO-DEAD2", true));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(rx.seen().len(), 4, "no more webhooks while disabled");
}

#[tokio::test]
async fn no_webhook_is_sent_when_none_is_configured() {
    let emu = start().await;
    assert_eq!(emu.place(delayed("PO-NOHOOK", 1003)).await.0, 200);
    eventually("delivered", || async {
        emu.h.order("PO-NOHOOK").unwrap().delivery_status == "delivered"
    })
    .await;
    assert!(emu.h.webhook_attempts().is_empty());
}
