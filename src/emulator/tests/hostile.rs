//! Hostile text: NUL, a lone surrogate escape and very long strings in
//! voucher fields, error bodies and webhooks.

use serde_json::{Value, json};

use super::{
    DETAILS, PLACE,
    delivery::{Receiver, delayed, emulator_with_hook},
    order_data, start,
};
use crate::emulator::{Fault, FaultOp, HostileText, LONG_TEXT_BYTES};

#[tokio::test]
async fn the_switch_puts_a_lone_surrogate_in_voucher_fields() {
    let emu = start().await;
    emu.h.set_hostile_text(Some(HostileText::LoneSurrogate));
    let (status, raw) = emu.api_raw(PLACE, order_data("PO-SUR")).await;
    assert_eq!(status, 200, "{raw}");
    assert!(raw.contains(r#""voucherCode":"EMU\ud800X""#), "{raw}");
    assert!(raw.contains(r#""pin":"EMU\ud800X""#), "{raw}");
    assert!(
        serde_json::from_str::<Value>(&raw).is_err(),
        "strict parsers refuse it"
    );
    emu.h.set_hostile_text(None);
    let (_, raw) = emu.api_raw(DETAILS, json!({"poNumber": "PO-SUR"})).await;
    assert!(!raw.contains(r"\ud800"), "the switch is off: {raw}");
}

#[tokio::test]
async fn the_switch_puts_nul_and_long_text_in_error_bodies() {
    let emu = start().await;
    emu.h.set_hostile_text(Some(HostileText::Nul));
    let (status, body) = emu.details(json!({"poNumber": "PO-NONE"})).await;
    assert_eq!(status, 404);
    assert_eq!(body["errorId"], json!("PLE10016"));
    assert_eq!(body["errorInfo"], json!("EMU\u{0}NUL"));
    assert_eq!(body["emulatorNote"], json!("EMU\u{0}NUL"));
    let (_, body) = emu.place(order_data("PO-NUL")).await;
    let v = &body["data"]["placeOrder"]["data"]["vouchers"][0];
    assert_eq!(v["validity"], json!("EMU\u{0}NUL"));

    emu.h
        .set_hostile_text(Some(HostileText::Long(LONG_TEXT_BYTES)));
    let (_, body) = emu.details(json!({"poNumber": "PO-NONE"})).await;
    assert_eq!(body["errorInfo"].as_str().unwrap().len(), 100 * 1024);
}

#[tokio::test]
async fn a_hostile_fault_marks_one_order_its_details_and_its_webhook() {
    let (rx, url) = Receiver::start(0).await;
    let emu = emulator_with_hook(&url).await;
    emu.h
        .fault_for_po("PO-HW", Fault::Hostile(HostileText::All));
    let (status, raw) = emu.api_raw(PLACE, delayed("PO-HW", 1003)).await;
    assert_eq!(status, 200, "{raw}");
    assert!(raw.contains(r"\ud800") && raw.contains(r"\u0000"));
    assert!(emu.h.settle_pending("PO-HW", true));
    super::eventually("the webhook", || async { !rx.raw().is_empty() }).await;
    let hook = &rx.raw()[0];
    assert!(hook.contains(r#""deliveryStatus":"deliveredEMU\u0000\ud800HHH"#));
    assert!(hook.contains(r#""emulatorNote""#) && hook.len() > LONG_TEXT_BYTES);
    let (_, raw) = emu.api_raw(DETAILS, json!({"poNumber": "PO-HW"})).await;
    assert!(
        raw.contains(r#""voucherCode":"EMU\u0000\ud800HHH"#),
        "kept on the order"
    );
    let (_, body) = emu.place(order_data("PO-PLAIN")).await;
    let code = &body["data"]["placeOrder"]["data"]["vouchers"][0]["voucherCode"];
    assert!(code.as_str().unwrap().starts_with("EMU-"), "one-shot");
}

#[tokio::test]
async fn hostile_text_is_switched_and_queued_over_http() {
    let emu = start().await;
    let post = |path: &str, body: Value| {
        let req = emu.http.post(emu.admin_url(path)).json(&body);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(post("/hostile", json!({"kind": "nul"})).await, 200);
    let (_, body) = emu.details(json!({"poNumber": "x"})).await;
    assert_eq!(body["errorInfo"], json!("EMU\u{0}NUL"));
    assert_eq!(post("/hostile", json!({"kind": null})).await, 200);
    assert_eq!(post("/hostile", json!({"kind": "weird"})).await, 400);
    let (_, body) = emu.details(json!({"poNumber": "x"})).await;
    assert_eq!(body["errorInfo"], json!("Failed to get Order details"));

    let fault = json!({"op": "getOrderDetails",
                       "fault": {"kind": "hostile", "text": "long", "length": 1000}});
    assert_eq!(post("/faults", fault).await, 202);
    let (_, body) = emu.details(json!({"poNumber": "x"})).await;
    assert_eq!(body["errorInfo"].as_str().unwrap().len(), 1000);
    emu.h
        .push_fault(FaultOp::GetOrderDetails, Fault::Hostile(HostileText::Nul));
    let (_, body) = emu.details(json!({"poNumber": "x"})).await;
    assert_eq!(body["errorInfo"], json!("EMU\u{0}NUL"));
}
