//! getOrderHistory from the ledger, and getBalance driven by the ledger.

use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::{BALANCE, Emu, HISTORY, assert_error, order_data, start};
use crate::emulator::EmptyHistory;

fn today() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

fn window(limit: u32, page: u32) -> Value {
    json!({"startDate": today(), "endDate": today(), "limit": limit, "page": page})
}

async fn items(emu: &Emu, data: Value) -> Vec<Value> {
    let (status, body) = emu.api(HISTORY, data).await;
    assert_eq!(status, 200, "{body}");
    body["data"]["getOrderHistory"]["data"]
        .as_array()
        .expect("a list")
        .clone()
}

#[tokio::test]
async fn history_pages_the_ledger_with_the_documented_drift() {
    let emu = start().await;
    emu.place(order_data("PO-H1")).await;
    let mut blank = order_data("");
    blank["tag"] = json!("");
    emu.place(blank).await;
    let mut pending = order_data("PO-H3");
    pending["productId"] = json!(1003);
    emu.place(pending).await;

    let first = items(&emu, window(2, 1)).await;
    assert_eq!(first.len(), 2);
    assert_eq!(first[0]["poNumber"], json!("PO-H1"));
    assert_eq!(first[0]["tag"], json!("t"));
    assert_eq!(first[0]["deliveryStatus"], json!("delivered"));
    assert_eq!(first[1]["poNumber"], json!(""));
    assert_eq!(first[1]["tag"], Value::Null);
    let odd = first
        .iter()
        .find(|i| i["orderId"].as_i64().unwrap() % 2 == 1);
    assert_eq!(odd.unwrap()["rawOrderTotal"], Value::Null);
    let even = first
        .iter()
        .find(|i| i["orderId"].as_i64().unwrap() % 2 == 0);
    assert_eq!(even.unwrap()["rawOrderTotal"], json!(10));
    assert_eq!(first[0]["products"][0]["price"], json!(10));
    assert_eq!(first[0]["amountCharged"], json!(10));
    assert_eq!(first[0]["orderDate"].as_str().unwrap().len(), 19);
    assert!(first[0].get("vouchers").is_none(), "no codes in history");

    let second = items(&emu, window(2, 2)).await;
    assert_eq!(second.len(), 1);
    assert_eq!(second[0]["deliveryStatus"], json!("Pending"));
    let tagged = json!({"startDate": today(), "endDate": today(), "tag": "t", "limit": 50});
    assert_eq!(items(&emu, tagged).await.len(), 2);
}

#[tokio::test]
async fn an_empty_window_answers_as_configured_and_bad_windows_are_refused() {
    let emu = start().await;
    emu.place(order_data("PO-E1")).await;
    let past = json!({"startDate": "2020-01-01", "endDate": "2020-01-31"});
    assert_error(&emu.api(HISTORY, past.clone()).await, 404, "PLE10027");
    assert_error(&emu.api(HISTORY, window(10, 5)).await, 404, "PLE10027");
    emu.h.set_empty_history(EmptyHistory::EmptyList);
    assert!(items(&emu, past.clone()).await.is_empty());
    let req = emu.http.post(emu.admin_url("/empty-history"));
    let set = req
        .json(&json!({"answer": "notFound"}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status().as_u16(), 200);
    assert_error(&emu.api(HISTORY, past).await, 404, "PLE10027");

    for bad in [
        json!({"startDate": "2024/01/01", "endDate": "2024-01-02"}),
        json!({"startDate": "2024-01-03", "endDate": "2024-01-02"}),
        json!({"endDate": "2024-01-02"}),
        json!({"startDate": today(), "endDate": today(), "limit": 0}),
    ] {
        assert_error(&emu.api(HISTORY, bad).await, 400, "PLE10032");
    }
}

async fn balance(emu: &Emu) -> Value {
    let (_, body) = emu.api(BALANCE, json!({})).await;
    body["data"]["getBalance"]["data"]["value"].clone()
}

#[tokio::test]
async fn get_balance_follows_the_ledger_and_the_admin_setting() {
    let emu = start().await;
    emu.place(order_data("PO-B1")).await;
    assert_eq!(balance(&emu).await, json!(99990));
    emu.h
        .inject_order("PO-B2", Decimal::new(255, 1), 1001)
        .unwrap();
    assert_eq!(balance(&emu).await, json!(99964.5));
    let req = emu.http.post(emu.admin_url("/balance"));
    req.json(&json!({"balance": "15"})).send().await.unwrap();
    assert_eq!(balance(&emu).await, json!(15));
    let mut big = order_data("PO-B3");
    big["denomination"] = json!(25);
    assert_error(&emu.place(big).await, 422, "PLE10010");
    assert!(emu.h.order("PO-B3").is_none());
    assert_eq!(balance(&emu).await, json!(15));
}
