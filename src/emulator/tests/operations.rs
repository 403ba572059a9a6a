//! Success shapes of every operation.

use rust_decimal::Decimal;
use serde_json::json;

use super::{BALANCE, VOUCHERS, order_data, start};

#[tokio::test]
async fn a_realtime_order_is_delivered_with_vouchers_and_charged() {
    let emu = start().await;
    let before = emu.h.balance();
    let (status, body) = emu.place(order_data("PO-RT-1")).await;
    assert_eq!(status, 200, "{body}");
    let d = &body["data"]["placeOrder"];
    assert_eq!(d["status"], json!(1));
    let o = &d["data"];
    assert!(o["orderId"].is_i64());
    assert_eq!(o["deliveryStatus"], json!("delivered"));
    assert_eq!(o["orderStatus"], json!("complete"));
    assert_eq!(o["amountCharged"], json!(10));
    assert_eq!(o["orderTotal"], json!(10));
    assert_eq!(o["orderDiscount"], json!(""));
    assert_eq!(o["discountPercent"], json!("0"));
    let v = &o["vouchers"][0];
    assert!(v["voucherCode"].as_str().unwrap().starts_with("EMU-"));
    assert_eq!(v["voucherCode"].as_str().unwrap().len(), 18);
    let pin = v["pin"].as_str().unwrap();
    assert!((4..=6).contains(&pin.len()) && pin.chars().all(|c| c.is_ascii_digit()));
    assert_eq!(v["type"], json!("codePin"));
    assert_eq!(v["currency"], json!("USD"));
    assert_eq!(v["validity"].as_str().unwrap().len(), 10);
    assert_eq!(o["voucherDetails"][0]["productStatus"], json!("delivered"));

    let ledger = emu.h.order("PO-RT-1").expect("in the ledger");
    assert_eq!(ledger.delivery_status, "delivered");
    assert_eq!(ledger.place_calls, 1);
    assert_eq!(ledger.amount_charged, Decimal::from(10));
    assert_eq!(emu.h.balance(), before - Decimal::from(10));
}

#[tokio::test]
async fn numeric_strings_are_accepted_and_discounts_are_strings() {
    let emu = start().await;
    let data = json!({"productId": "1002", "quantity": "2", "denomination": "12.50",
                      "poNumber": "PO-STR"});
    let (status, body) = emu.place(data).await;
    assert_eq!(status, 200, "{body}");
    let o = &body["data"]["placeOrder"]["data"];
    assert_eq!(o["orderTotal"], json!(25));
    assert_eq!(o["orderDiscount"], json!("0.50"));
    assert_eq!(o["discountPercent"], json!("2"));
    assert_eq!(o["amountCharged"], json!(24.5));
    assert_eq!(o["vouchers"].as_array().unwrap().len(), 2);
    assert_eq!(
        emu.h.order("PO-STR").unwrap().amount_charged,
        Decimal::new(245, 1)
    );
}

#[tokio::test]
async fn order_details_are_found_by_po_number_or_order_id_in_every_documented_form() {
    let emu = start().await;
    let (_, placed) = emu.place(order_data("PO-DET")).await;
    let id = placed["data"]["placeOrder"]["data"]["orderId"]
        .as_i64()
        .unwrap();
    let forms = [
        json!({"poNumber": "PO-DET", "orderId": null, "sendMailToReceiver": 0}),
        json!({"poNumber": "PO-DET", "orderId": 0}),
        json!({"poNumber": "PO-DET", "orderId": "0"}),
        json!({"poNumber": "", "orderId": id}),
        json!({"poNumber": null, "orderId": id.to_string()}),
        json!({"orderId": id}),
    ];
    for data in forms {
        let (status, body) = emu.details(data.clone()).await;
        assert_eq!(status, 200, "{data} → {body}");
        let o = &body["data"]["getOrderDetails"]["data"];
        assert_eq!(o["orderId"], json!(id), "{data}");
        assert_eq!(o["deliveryStatus"], json!("delivered"));
        assert_eq!(o["vouchers"].as_array().unwrap().len(), 1);
        assert!(o["orderDate"].as_str().unwrap().len() == 19);
    }
}

#[tokio::test]
async fn get_vouchers_lists_the_catalog_and_filters_it() {
    let emu = start().await;
    let (status, body) = emu.api(VOUCHERS, json!({"limit": 100, "page": 1})).await;
    assert_eq!(status, 200, "{body}");
    let items = body["data"]["getVouchers"]["data"]
        .as_array()
        .unwrap()
        .clone();
    let ids: Vec<i64> = items
        .iter()
        .map(|p| p["productId"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![1001, 1002, 1003, 1004, 1005, 1006]);
    assert_eq!(items[1]["valueType"], json!("open_value"));
    assert_eq!(items[4]["isPhoneNumberMandatory"], json!(true));
    assert_eq!(items[5]["orderQuantityLimit"], json!(5));

    let filter = json!({"filters": [{"key": "deliveryType", "value": "delayed"}]});
    let (_, body) = emu.api(VOUCHERS, filter).await;
    assert_eq!(
        body["data"]["getVouchers"]["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let (status, _) = emu
        .api(
            VOUCHERS,
            json!({"includeProducts": "1003,1004", "page": 2, "limit": 2}),
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn get_balance_reports_the_wallet_after_orders() {
    let emu = start().await;
    let (status, body) = emu.api(BALANCE, json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["getBalance"]["data"],
        json!({"value": 100000, "currency": "USD"})
    );
    emu.place(order_data("PO-BAL")).await;
    let (_, body) = emu.api(BALANCE, json!({})).await;
    assert_eq!(body["data"]["getBalance"]["data"]["value"], json!(99990));
}
