//! Order payloads for placeOrder and getOrderDetails (api-reference §3.2,
//! §4.2), with the documented type drift on purpose: `orderDiscount` is `""`
//! or a decimal string, `discountPercent` a string, and a voucher `amount`
//! is a string on even order ids and a number on odd ones. An order marked
//! hostile carries its hostile text in every voucher field.

use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::{
    catalog, hostile,
    ledger::{LedgerOrder, Voucher},
    wire::number,
};

/// The `data` of a placeOrder (`for_place`) or getOrderDetails answer.
///
/// A pending placeOrder answer has no `vouchers` key; a pending
/// getOrderDetails answer has `vouchers: []` (both readings are documented).
pub(crate) fn order(o: &LedgerOrder, for_place: bool) -> Value {
    let discount = if o.order_discount.is_zero() {
        String::new()
    } else {
        o.order_discount.to_string()
    };
    let percent = catalog::find(o.product_id).map_or(Decimal::ZERO, |p| p.discount_percent());
    let mut data = json!({
        "orderId": o.order_id,
        "orderTotal": number(o.order_total),
        "rawOrderTotal": number(o.order_total),
        "orderDiscount": discount,
        "rawOrderDiscount": discount,
        "discountPercent": percent.normalize().to_string(),
        "currencyCode": o.currency_code,
        "currencyValue": 1,
        "amountCharged": number(o.amount_charged),
        "orderStatus": "complete",
        "deliveryStatus": o.delivery_status,
        "tag": o.tag,
        "quantity": o.quantity,
        "voucherDetails": [voucher_details(o)],
        "orderMeta": {"email": o.email.clone().unwrap_or_default(),
                      "contact": o.contact.clone().unwrap_or_default()},
    });
    if !o.vouchers.is_empty() || !for_place {
        data["vouchers"] = o.vouchers.iter().map(|v| voucher(o, v)).collect();
    }
    if !for_place {
        data["orderDate"] = json!(o.order_date);
        data["deliveryDate"] = json!(o.delivery_date);
        data["shippingDetails"] = json!({});
    }
    if let Some(h) = &o.hostile {
        hostile::corrupt(&mut data, &h.text());
    }
    data
}

fn voucher_details(o: &LedgerOrder) -> Value {
    let name = catalog::find(o.product_id).map_or("", |p| p.name);
    let cancelled = if o.delivery_status == "canceled" {
        o.quantity
    } else {
        0
    };
    json!({
        "orderId": o.order_id,
        "productId": o.product_id,
        "productName": name,
        "currencyCode": o.currency_code,
        "productStatus": o.delivery_status,
        "denomination": number(o.denomination),
        "cancelledQuantity": cancelled,
        "trackingId": null,
        "trackingLink": null,
        "vendorLogo": "",
    })
}

fn voucher(o: &LedgerOrder, v: &Voucher) -> Value {
    let amount = if o.order_id % 2 == 0 {
        json!(v.amount.normalize().to_string())
    } else {
        number(v.amount)
    };
    json!({
        "productId": o.product_id,
        "orderId": o.order_id,
        "voucherCode": v.code,
        "pin": v.pin,
        "validity": v.validity,
        "amount": amount,
        "currency": o.currency_code,
        "country": "US",
        "type": "codePin",
        "currencyValue": 1,
        "tag": o.tag,
    })
}
