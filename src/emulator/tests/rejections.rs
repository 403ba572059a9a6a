//! Every documented refusal, and the one-order-per-poNumber invariant.

use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::{DETAILS, EmulatorConfig, assert_error, order_data, start, start_with};

fn with(po: &str, changes: Value) -> Value {
    let mut data = order_data(po);
    for (k, v) in changes.as_object().unwrap() {
        data[k] = v.clone();
    }
    data
}

#[tokio::test]
async fn refusals_use_the_documented_error_ids_and_create_nothing() {
    let emu = start().await;
    let cases = [
        (with("PO-Q", json!({"quantity": 11})), 409, "PLE10041"),
        (
            with("PO-Q6", json!({"productId": 1006, "quantity": 6})),
            409,
            "PLE10041",
        ),
        (with("PO-D", json!({"denomination": 11})), 400, "PLE10018"),
        (
            with("PO-D2", json!({"productId": 1002, "denomination": "4.99"})),
            400,
            "PLE10018",
        ),
        (
            with("PO-D3", json!({"productId": 1002, "denomination": "5.001"})),
            400,
            "PLE10018",
        ),
        (with("PO-P", json!({"productId": 4242})), 404, "PLE10042"),
        (with("PO-I", json!({"productId": 1007})), 404, "PLE10042"),
        (with("PO-M", json!({"productId": null})), 400, "PLE10001"),
        (with("PO-Q0", json!({"quantity": 0})), 400, "PLE10001"),
        (
            with("PO-X", json!({"denomination": "ten"})),
            400,
            "PLE10001",
        ),
        (
            with("PO-C", json!({"productId": 1005, "contact": ""})),
            400,
            "PLE10001",
        ),
        (with(&"P".repeat(101), json!({})), 400, "PLE10001"),
        (
            with("PO-N", json!({"notifyReceiverEmail": 2})),
            400,
            "PLE10001",
        ),
        (json!("not an object"), 400, "PLE10001"),
    ];
    for (data, status, id) in cases {
        let answer = emu.place(data.clone()).await;
        assert_error(&answer, status, id);
    }
    assert!(emu.h.orders().is_empty());
    assert_eq!(emu.h.place_calls("PO-Q"), 1);
    let ok = emu.place(with("PO-C2", json!({"productId": 1005}))).await;
    assert_eq!(ok.0, 200, "{}", ok.1);
    let ok = emu
        .place(with("PO-Q5", json!({"productId": 1006, "quantity": 5})))
        .await;
    assert_eq!(ok.0, 200, "{}", ok.1);
}

#[tokio::test]
async fn unknown_queries_and_bad_details_lookups_are_refused() {
    let emu = start().await;
    let answer = emu.api("plumProAPI.query.getOrderDetails", json!({})).await;
    assert_error(&answer, 400, "PLE10001");
    assert_error(
        &emu.api(DETAILS, json!({"poNumber": "nope"})).await,
        404,
        "PLE10016",
    );
    assert_error(
        &emu.api(DETAILS, json!({"orderId": 123})).await,
        404,
        "PLE10016",
    );
    assert_error(
        &emu.api(DETAILS, json!({"poNumber": "", "orderId": 0}))
            .await,
        400,
        "PLE10002",
    );
    assert_error(
        &emu.api(DETAILS, json!({"orderId": "x"})).await,
        400,
        "PLE10002",
    );
}

#[tokio::test]
async fn a_repeated_po_number_is_refused_without_a_second_order() {
    let emu = start().await;
    assert_eq!(emu.place(order_data("PO-DUP")).await.0, 200);
    let again = emu.place(order_data("PO-DUP")).await;
    assert_error(&again, 422, "PLE10004");
    assert_eq!(emu.h.orders().len(), 1);
    assert_eq!(emu.h.place_calls("PO-DUP"), 2);
    assert_eq!(emu.h.order("PO-DUP").unwrap().place_calls, 2);
}

#[tokio::test]
async fn empty_po_numbers_are_not_unique() {
    let emu = start().await;
    assert_eq!(emu.place(order_data("")).await.0, 200);
    assert_eq!(emu.place(with("", json!({"poNumber": null}))).await.0, 200);
    assert_eq!(emu.h.orders().len(), 2);
}

#[tokio::test]
async fn concurrent_calls_with_one_po_number_create_exactly_one_order() {
    let emu = start().await;
    let calls = (0..8).map(|_| emu.place(order_data("PO-RACE")));
    let answers = futures::future::join_all(calls).await;
    let ok = answers.iter().filter(|a| a.0 == 200).count();
    assert_eq!(ok, 1, "{answers:?}");
    assert!(
        answers
            .iter()
            .filter(|a| a.0 != 200)
            .all(|a| a.1["errorId"] == "PLE10004")
    );
    assert_eq!(emu.h.orders().len(), 1);
    assert_eq!(emu.h.place_calls("PO-RACE"), 8);
}

#[tokio::test]
async fn an_order_above_the_balance_is_refused_with_no_charge() {
    let emu = start_with(EmulatorConfig {
        balance: Decimal::from(15),
        ..EmulatorConfig::for_tests()
    })
    .await;
    assert_eq!(emu.place(order_data("PO-B1")).await.0, 200);
    let refused = emu.place(order_data("PO-B2")).await;
    assert_error(&refused, 422, "PLE10010");
    assert!(emu.h.order("PO-B2").is_none());
    assert_eq!(emu.h.balance(), Decimal::from(5));
}
