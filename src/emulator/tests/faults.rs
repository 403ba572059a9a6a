//! Every fault, one-shot and by rate.

use std::time::Duration;

use serde_json::json;

use super::{BALANCE, DETAILS, PLACE, assert_error, envelope, eventually, order_data, start};
use crate::emulator::{Fault, FaultOp, FaultRates, RateLimits};

#[tokio::test]
async fn an_error_before_create_leaves_no_order() {
    let emu = start().await;
    emu.h.push_fault(
        FaultOp::PlaceOrder,
        Fault::ErrorBeforeCreate { status: 502 },
    );
    let answer = emu.place(order_data("PO-EB")).await;
    assert_eq!(answer.0, 502, "{}", answer.1);
    assert_eq!(answer.1["code"], json!(502));
    assert!(emu.h.order("PO-EB").is_none());
    assert_eq!(emu.h.place_calls("PO-EB"), 1);
    assert_eq!(
        emu.place(order_data("PO-EB")).await.0,
        200,
        "the fault was one-shot"
    );
}

#[tokio::test]
async fn an_error_after_create_leaves_a_charged_order() {
    let emu = start().await;
    let before = emu.h.balance();
    emu.h
        .fault_for_po("PO-EA", Fault::ErrorAfterCreate { status: 500 });
    assert_eq!(
        emu.place(order_data("PO-OTHER")).await.0,
        200,
        "other poNumbers unaffected"
    );
    let answer = emu.place(order_data("PO-EA")).await;
    assert_eq!(answer.0, 500, "{}", answer.1);
    let order = emu.h.order("PO-EA").expect("created before the 500");
    assert_eq!(
        emu.h.balance(),
        before - order.amount_charged * rust_decimal::Decimal::TWO
    );
    let found = emu.details(json!({"poNumber": "PO-EA"})).await;
    assert_eq!(found.0, 200);
}

#[tokio::test]
async fn sleep_after_create_times_the_client_out_but_the_order_exists() {
    let emu = start().await;
    emu.h.push_fault(
        FaultOp::PlaceOrder,
        Fault::SleepAfterCreate(Duration::from_secs(30)),
    );
    let err = emu
        .http
        .post(emu.url("/v1/oauth/api"))
        .bearer_auth(emu.h.current_tokens().0)
        .json(&envelope(PLACE, order_data("PO-SL")))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .expect_err("the client gives up");
    assert!(err.is_timeout(), "{err}");
    eventually("the order exists", || async {
        emu.h.order("PO-SL").is_some()
    })
    .await;
}

#[tokio::test]
async fn drop_after_create_closes_the_connection_without_an_answer() {
    let emu = start().await;
    emu.h
        .push_fault(FaultOp::PlaceOrder, Fault::DropAfterCreate);
    let (access, _) = emu.h.current_tokens();
    let result = emu
        .api_as(Some(&access), PLACE, order_data("PO-DROP"))
        .await;
    let err = result.expect_err("no HTTP answer at all");
    assert!(!err.is_timeout() && err.status().is_none(), "{err:?}");
    assert!(emu.h.order("PO-DROP").is_some());
    assert_eq!(
        emu.place(order_data("PO-AFTER")).await.0,
        200,
        "the server still serves"
    );
}

#[tokio::test]
async fn a_slow_call_still_succeeds() {
    let emu = start().await;
    emu.h
        .push_fault(FaultOp::GetBalance, Fault::Slow(Duration::from_millis(300)));
    assert_eq!(emu.api(BALANCE, json!({})).await.0, 200);
}

#[tokio::test]
async fn a_hidden_order_is_not_found_until_the_window_passes() {
    let emu = start().await;
    emu.h.fault_for_po(
        "PO-HID-LONG",
        Fault::HiddenFromDetails(Duration::from_secs(3600)),
    );
    emu.h.fault_for_po(
        "PO-HID-SHORT",
        Fault::HiddenFromDetails(Duration::from_millis(200)),
    );
    assert_eq!(emu.place(order_data("PO-HID-LONG")).await.0, 200);
    assert_eq!(emu.place(order_data("PO-HID-SHORT")).await.0, 200);
    assert!(emu.h.order("PO-HID-LONG").is_some());
    let id = emu.h.order("PO-HID-LONG").unwrap().order_id;
    assert_error(
        &emu.details(json!({"poNumber": "PO-HID-LONG"})).await,
        404,
        "PLE10016",
    );
    assert_error(&emu.details(json!({"orderId": id})).await, 404, "PLE10016");
    eventually("the short-hidden order becomes visible", || async {
        emu.details(json!({"poNumber": "PO-HID-SHORT"})).await.0 == 200
    })
    .await;
}

#[tokio::test]
async fn rate_limits_answer_the_documented_body() {
    let emu = start().await;
    emu.h.set_rate_limits(RateLimits {
        get_order_details: 2,
        ..RateLimits::unlimited()
    });
    for _ in 0..2 {
        assert_eq!(emu.details(json!({"poNumber": "x"})).await.0, 404);
    }
    let (status, body) = emu.details(json!({"poNumber": "x"})).await;
    assert_eq!(status, 429);
    assert_eq!(
        body["errors"][0]["message"],
        json!("auth.request_limit_exceeded")
    );
    assert!(body["errors"][0]["penaltySeconds"].as_u64().unwrap() >= 1);
    assert_eq!(
        emu.place(order_data("PO-RL")).await.0,
        200,
        "limits are per operation"
    );

    emu.h.push_fault(
        FaultOp::PlaceOrder,
        Fault::RateLimited {
            penalty_seconds: 60,
        },
    );
    let (status, body) = emu.place(order_data("PO-RL2")).await;
    assert_eq!(status, 429);
    assert_eq!(
        body,
        json!({"errors": [{"message": "auth.request_limit_exceeded", "penaltySeconds": 60}]})
    );
    assert_eq!(emu.h.place_calls("PO-RL2"), 1);
}

#[tokio::test]
async fn invalid_token_and_canned_faults() {
    let emu = start().await;
    emu.h
        .push_fault(FaultOp::GetOrderDetails, Fault::InvalidToken);
    let (status, body) = emu.api(DETAILS, json!({"poNumber": "x"})).await;
    assert_eq!(
        (status, body["error"].clone()),
        (401, json!("invalid_token"))
    );
    let canned = json!({"data": {"placeOrder": {"status": 0, "data": null}}});
    emu.h.push_fault(
        FaultOp::PlaceOrder,
        Fault::Respond {
            status: 200,
            body: canned.clone(),
        },
    );
    assert_eq!(emu.place(order_data("PO-CAN")).await, (200, canned));
    assert!(emu.h.order("PO-CAN").is_none());
}

#[tokio::test]
async fn fault_rates_apply_to_place_order_only() {
    let emu = start().await;
    emu.h.set_fault_rates(FaultRates {
        error_after: 1.0,
        ..FaultRates::default()
    });
    assert_eq!(emu.place(order_data("PO-RATE")).await.0, 502);
    assert!(emu.h.order("PO-RATE").is_some());
    assert_eq!(emu.api(BALANCE, json!({})).await.0, 200);
    emu.h.set_fault_rates(FaultRates::default());
    assert_eq!(emu.place(order_data("PO-RATE2")).await.0, 200);
}
