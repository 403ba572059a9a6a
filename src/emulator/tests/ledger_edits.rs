//! Ledger edits for a books audit: orders the gateway never sent, vanished
//! orders, changed amounts.

use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::{Emu, decode, order_data, start};

async fn admin(emu: &Emu, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
    let req = emu.http.request(method, emu.admin_url(path)).json(&body);
    decode(req.send().await.unwrap()).await.unwrap()
}

#[tokio::test]
async fn orders_can_be_injected_amended_and_deleted_through_the_handle() {
    let emu = start().await;
    let before = emu.h.balance();
    let ghost = emu
        .h
        .inject_order("PO-GHOST", Decimal::new(1250, 2), 1002)
        .expect("injected");
    assert_eq!(ghost.amount_charged, Decimal::new(1250, 2));
    assert_eq!(ghost.delivery_status, "delivered");
    assert_eq!(emu.h.balance(), before - Decimal::new(1250, 2));
    assert_eq!(
        emu.h.place_calls("PO-GHOST"),
        0,
        "the gateway never sent it"
    );
    let (status, body) = emu.details(json!({"poNumber": "PO-GHOST"})).await;
    assert_eq!(status, 200, "{body}");

    assert!(emu.h.set_order_amount(ghost.order_id, Decimal::from(99)));
    let (_, body) = emu.details(json!({"orderId": ghost.order_id})).await;
    assert_eq!(
        body["data"]["getOrderDetails"]["data"]["amountCharged"],
        json!(99)
    );
    assert!(!emu.h.set_order_amount(1, Decimal::ONE));

    assert!(emu.h.delete_order(ghost.order_id));
    assert!(!emu.h.delete_order(ghost.order_id));
    assert!(emu.h.order("PO-GHOST").is_none());
    assert_eq!(emu.details(json!({"poNumber": "PO-GHOST"})).await.0, 404);
    assert!(emu.h.inject_order("x", Decimal::ZERO, 1001).is_err());
    assert!(emu.h.inject_order("x", Decimal::ONE, 4242).is_err());
}

#[tokio::test]
async fn an_injected_duplicate_shows_up_and_deleting_the_first_keeps_the_second() {
    let emu = start().await;
    emu.place(order_data("PO-TWICE")).await;
    let first = emu.h.order("PO-TWICE").unwrap();
    let second = emu.h.inject_order("PO-TWICE", Decimal::TEN, 1001).unwrap();
    assert_eq!(emu.h.duplicated_po_numbers(), vec!["PO-TWICE".to_string()]);
    assert!(emu.h.delete_order(first.order_id));
    assert_eq!(emu.h.order("PO-TWICE").unwrap().order_id, second.order_id);
    assert!(emu.h.duplicated_po_numbers().is_empty());
}

#[tokio::test]
async fn ledger_edits_over_http() {
    let emu = start().await;
    use reqwest::Method;
    let body = json!({"poNumber": "PO-HTTP", "amount": "7.50"});
    let (status, order) = admin(&emu, Method::POST, "/orders", body).await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["amountCharged"], json!("7.50"));
    let id = order["orderId"].as_i64().unwrap();
    let bad = json!({"poNumber": "PO-HTTP"});
    assert_eq!(admin(&emu, Method::POST, "/orders", bad).await.0, 400);

    let path = format!("/orders/{id}");
    let amend = json!({"amount": "3.25"});
    assert_eq!(admin(&emu, Method::PATCH, &path, amend).await.0, 200);
    assert_eq!(
        emu.h.order("PO-HTTP").unwrap().amount_charged,
        Decimal::new(325, 2)
    );

    emu.h.inject_order("PO-HTTP", Decimal::ONE, 1001).unwrap();
    let (_, ledger) = admin(&emu, Method::GET, "/ledger", Value::Null).await;
    assert_eq!(ledger["duplicatePoNumbers"], json!(["PO-HTTP"]));
    let (_, one) = admin(&emu, Method::GET, "/ledger/PO-HTTP", Value::Null).await;
    assert_eq!(one["orders"].as_array().unwrap().len(), 2);

    assert_eq!(admin(&emu, Method::DELETE, &path, Value::Null).await.0, 200);
    assert_eq!(admin(&emu, Method::DELETE, &path, Value::Null).await.0, 404);
    let missing = json!({"amount": "1"});
    assert_eq!(admin(&emu, Method::PATCH, &path, missing).await.0, 404);
}
