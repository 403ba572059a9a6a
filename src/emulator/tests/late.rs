//! Late creation: the call ends with no order, the order appears later, and
//! a retry in the gap makes a second order for the same poNumber.

use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::json;

use super::{Emu, PLACE, assert_error, envelope, eventually, order_data, start};
use crate::emulator::{Fault, FaultOp, FaultRates, LateAnswer};

fn late(after_ms: u64, answer: LateAnswer) -> Fault {
    Fault::LateCreate {
        after: Duration::from_millis(after_ms),
        answer,
    }
}

async fn place_without_answer(emu: &Emu, po: &str) -> reqwest::Error {
    let (access, _) = emu.h.current_tokens();
    let result = emu.api_as(Some(&access), PLACE, order_data(po)).await;
    result.expect_err("no HTTP answer")
}

#[tokio::test]
async fn a_late_creation_answers_5xx_and_the_order_appears_only_later() {
    let emu = start().await;
    let error = LateAnswer::Error { status: 503 };
    emu.h.fault_for_po("PO-LATE1", late(800, error));
    let answer = emu.place(order_data("PO-LATE1")).await;
    assert_eq!(answer.0, 503, "{}", answer.1);
    assert!(emu.h.order("PO-LATE1").is_none());
    assert_eq!(emu.h.late_creations_pending(), 1);
    let gap = emu.details(json!({"poNumber": "PO-LATE1"})).await;
    assert_error(&gap, 404, "PLE10016");

    eventually("the late order", || async {
        emu.h.order("PO-LATE1").is_some()
    })
    .await;
    assert_eq!(emu.h.late_creations_pending(), 0);
    assert_eq!(emu.details(json!({"poNumber": "PO-LATE1"})).await.0, 200);
    let retry = emu.place(order_data("PO-LATE1")).await;
    assert_error(&retry, 422, "PLE10004");
    assert_eq!(emu.h.orders_for("PO-LATE1").len(), 1);
}

#[tokio::test]
async fn a_retry_in_the_gap_creates_a_second_order_for_the_same_po_number() {
    let emu = start().await;
    let before = emu.h.balance();
    emu.h
        .push_fault(FaultOp::PlaceOrder, late(600, LateAnswer::Drop));
    let err = place_without_answer(&emu, "PO-DUP").await;
    assert!(!err.is_timeout(), "{err:?}");
    let retry = emu.place(order_data("PO-DUP")).await;
    assert_eq!(retry.0, 200, "the gap does not dedupe: {}", retry.1);

    eventually("two orders", || async {
        emu.h.orders_for("PO-DUP").len() == 2
    })
    .await;
    let orders = emu.h.orders_for("PO-DUP");
    assert_ne!(orders[0].order_id, orders[1].order_id);
    assert_eq!(emu.h.duplicated_po_numbers(), vec!["PO-DUP".to_string()]);
    assert_eq!(emu.h.balance(), before - Decimal::from(20), "both charged");
    assert_eq!(emu.h.order("PO-DUP").unwrap(), orders[0], "first one wins");
    assert_eq!(emu.h.place_calls("PO-DUP"), 2);
}

#[tokio::test]
async fn a_held_late_call_times_the_client_out_and_creates_afterwards() {
    let emu = start().await;
    let hang = LateAnswer::Hang(Duration::from_millis(1500));
    emu.h.fault_for_po("PO-HANG", late(200, hang));
    let err = emu
        .http
        .post(emu.url("/v1/oauth/api"))
        .bearer_auth(emu.h.current_tokens().0)
        .json(&envelope(PLACE, order_data("PO-HANG")))
        .timeout(Duration::from_millis(500))
        .send()
        .await
        .expect_err("the client gives up");
    assert!(err.is_timeout(), "{err}");
    assert!(emu.h.order("PO-HANG").is_none(), "nothing while held");
    eventually("the late order", || async {
        emu.h.order("PO-HANG").is_some()
    })
    .await;
}

#[tokio::test]
async fn a_client_leaving_a_held_call_ends_it_and_starts_the_timer() {
    let emu = start().await;
    let hang = LateAnswer::Hang(Duration::from_secs(3600));
    emu.h.fault_for_po("PO-LEFT", late(100, hang));
    let sent = emu
        .http
        .post(emu.url("/v1/oauth/api"))
        .bearer_auth(emu.h.current_tokens().0)
        .json(&envelope(PLACE, order_data("PO-LEFT")))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(sent.expect_err("the client gives up").is_timeout());
    eventually("the order, long before the hold ends", || async {
        emu.h.order("PO-LEFT").is_some()
    })
    .await;
}

#[tokio::test]
async fn an_invalid_body_under_late_creation_is_refused_and_creates_nothing() {
    let emu = start().await;
    emu.h
        .push_fault(FaultOp::PlaceOrder, late(0, LateAnswer::Drop));
    let mut data = order_data("PO-BADLATE");
    data["denomination"] = json!(11);
    assert_error(&emu.place(data).await, 400, "PLE10018");
    assert_eq!(emu.h.late_creations_pending(), 0);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(emu.h.orders().is_empty());
}

#[tokio::test]
async fn late_creation_by_rate_joins_a_random_campaign() {
    let emu = start().await;
    emu.h.set_fault_rates(FaultRates {
        late_error: 1.0,
        late_after: Duration::from_millis(200),
        ..FaultRates::default()
    });
    assert_eq!(emu.place(order_data("PO-LRATE")).await.0, 502);
    assert!(emu.h.order("PO-LRATE").is_none());
    eventually("the late order", || async {
        emu.h.order("PO-LRATE").is_some()
    })
    .await;
    emu.h.set_fault_rates(FaultRates {
        late_drop: 1.0,
        late_after: Duration::from_millis(200),
        ..FaultRates::default()
    });
    place_without_answer(&emu, "PO-LRATE2").await;
    eventually("the dropped call's order", || async {
        emu.h.order("PO-LRATE2").is_some()
    })
    .await;
}

#[tokio::test]
async fn late_creation_is_queued_and_rated_over_http() {
    let emu = start().await;
    let post = |path: &str, body: serde_json::Value| {
        let req = emu.http.post(emu.admin_url(path)).json(&body);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let fault = json!({"poNumber": "PO-LH", "fault": {"kind": "lateCreate", "after": "300ms",
                       "answer": "error", "status": 500}});
    assert_eq!(post("/faults", fault).await, 202);
    let bad = json!({"op": "placeOrder", "fault": {"kind": "lateCreate", "after": "1s",
                     "answer": "later"}});
    assert_eq!(post("/faults", bad).await, 400);
    assert_eq!(emu.place(order_data("PO-LH")).await.0, 500);
    assert!(emu.h.order("PO-LH").is_none());
    eventually("the late order", || async {
        emu.h.order("PO-LH").is_some()
    })
    .await;

    let rates = json!({"lateError": 1.0, "lateAfter": "100ms"});
    assert_eq!(post("/fault-rates", rates).await, 200);
    assert_eq!(emu.place(order_data("PO-LH2")).await.0, 502);
    eventually("the rated late order", || async {
        emu.h.order("PO-LH2").is_some()
    })
    .await;
    assert_eq!(post("/fault-rates", json!({"lateDrop": 1.5})).await, 400);
}

#[tokio::test]
async fn a_late_creation_that_finds_the_balance_short_creates_nothing() {
    let emu = start().await;
    emu.h.set_balance(Decimal::from(5));
    let error = LateAnswer::Error { status: 502 };
    emu.h.fault_for_po("PO-POOR", late(100, error));
    assert_eq!(emu.place(order_data("PO-POOR")).await.0, 502);
    eventually("the late creation ran", || async {
        emu.h.late_creations_pending() == 0
    })
    .await;
    assert!(emu.h.order("PO-POOR").is_none());
    assert_eq!(emu.h.balance(), Decimal::from(5));
}
