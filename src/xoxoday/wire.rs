//! Request bodies exactly as Xoxoday documents them (reference §1, §3.1, §4.1,
//! §5.1, §6, §2.2): the `{"query","tag","variables":{"data":…}}` envelope and
//! its payloads.
//!
//! Protects: exact money on the wire. The denomination is written as a JSON
//! number from the `Decimal`'s own text, never through an `f64` computation,
//! and a value that could not survive that trip is sent as a numeric string
//! (which Xoxoday accepts, reference §4.1) rather than rounded.

use std::str::FromStr;

use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Number, Value, json};

use super::{Operation, PlaceOrderRequest};

/// The `tag` every plumProAPI envelope carries.
const TAG: &str = "plumProAPI";

/// The `query` string of an operation that goes through `{base}/v1/oauth/api`.
pub fn query_name(op: Operation) -> Option<&'static str> {
    match op {
        Operation::PlaceOrder => Some("plumProAPI.mutation.placeOrder"),
        Operation::GetOrderDetails => Some("plumProAPI.mutation.getOrderDetails"),
        Operation::GetVouchers => Some("plumProAPI.mutation.getVouchers"),
        Operation::GetBalance => Some("plumProAPI.query.getBalance"),
        Operation::GetOrderHistory => Some("plumProAPI.mutation.getOrderHistory"),
        Operation::RefreshToken => None,
    }
}

/// The key under `data` that holds an operation's answer (`data.placeOrder`).
pub fn response_key(op: Operation) -> &'static str {
    match op {
        Operation::PlaceOrder => "placeOrder",
        Operation::GetOrderDetails => "getOrderDetails",
        Operation::GetVouchers => "getVouchers",
        Operation::GetBalance => "getBalance",
        Operation::GetOrderHistory => "getOrderHistory",
        Operation::RefreshToken => "",
    }
}

/// Wraps `data` in the plumProAPI envelope for `op`.
pub fn envelope(op: Operation, data: Value) -> Value {
    json!({
        "query": query_name(op).unwrap_or_default(),
        "tag": TAG,
        "variables": { "data": data },
    })
}

/// A decimal as a JSON number with exactly the decimal's digits.
///
/// Without serde_json's `arbitrary_precision` a `Number` holds an `f64`, whose
/// shortest round-trip text equals the decimal's text for every value with up
/// to 15 significant digits (all real denominations). Anything longer would be
/// rounded, so it goes out as a numeric string instead.
pub fn exact_number(value: Decimal) -> Value {
    let text = value.normalize().to_string();
    match Number::from_str(&text) {
        Ok(n) if Decimal::from_str(&n.to_string()).ok() == Some(value.normalize()) => {
            Value::Number(n)
        }
        _ => Value::String(text),
    }
}

/// `variables.data` of placeOrder (reference §4.1); `None` fields are omitted.
pub fn place_order_data(req: &PlaceOrderRequest) -> Value {
    let mut data = Map::new();
    data.insert("productId".into(), req.product_id.into());
    data.insert("quantity".into(), req.quantity.into());
    data.insert("denomination".into(), exact_number(req.denomination));
    data.insert("poNumber".into(), req.po_number.as_str().into());
    let optional_texts = [
        ("email", &req.email),
        ("contact", &req.contact),
        ("tag", &req.tag),
    ];
    for (key, value) in optional_texts {
        if let Some(v) = value {
            data.insert(key.into(), v.clone().into());
        }
    }
    data.insert(
        "notifyReceiverEmail".into(),
        u8::from(req.notify_receiver_email).into(),
    );
    data.insert(
        "notifyAdminEmail".into(),
        u8::from(req.notify_admin_email).into(),
    );
    if let Some(meta) = &req.user_meta {
        data.insert("userMeta".into(), meta.clone());
    }
    if let Some(validate) = req.perform_operator_validation {
        // Documented as 0|1 like the other flags (reference §4.1, top-up).
        data.insert(
            "performOperatorValidation".into(),
            u8::from(validate).into(),
        );
    }
    Value::Object(data)
}

/// `variables.data` of getOrderDetails by poNumber (reference §3.1).
///
/// `orderId: null` is one of the documented "look up by poNumber" forms, and
/// `sendMailToReceiver: 0` makes sure a lookup never re-sends a voucher email.
pub fn order_details_data(po_number: &str) -> Value {
    json!({ "poNumber": po_number, "orderId": null, "sendMailToReceiver": 0 })
}

/// One page of the catalog (reference §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoucherQuery {
    /// Page number, starting at 1.
    pub page: u32,
    /// Products per page.
    pub limit: u32,
    /// Only these product ids (empty: all).
    pub include_products: Vec<i64>,
}

impl Default for VoucherQuery {
    fn default() -> Self {
        Self {
            page: 1,
            limit: 100,
            include_products: Vec::new(),
        }
    }
}

/// `variables.data` of getVouchers; asks for exchange rates as well.
pub fn vouchers_data(q: &VoucherQuery) -> Value {
    let include = q
        .include_products
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    json!({
        "limit": q.limit,
        "page": q.page,
        "includeProducts": include,
        "excludeProducts": "",
        "exchangeRate": 1,
        "sort": { "field": "name", "order": "ASC" },
    })
}

/// The refresh-token request body (reference §2.2). It holds secrets: it is
/// stored encrypted, and [`super::redact_json`] masks it for display.
pub fn refresh_body(
    refresh_token: &SecretString,
    client_id: &SecretString,
    client_secret: &SecretString,
) -> Value {
    json!({
        "grant_type": "refresh_token",
        "refresh_token": refresh_token.expose_secret(),
        "client_id": client_id.expose_secret(),
        "client_secret": client_secret.expose_secret(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn denominations_go_out_as_exact_json_numbers() {
        for (input, wire) in [
            ("12.34", "12.34"),
            ("0.1", "0.1"),
            ("20", "20"),
            ("20.00", "20"),
            ("500", "500"),
            ("99.99", "99.99"),
            ("1234567.89", "1234567.89"),
        ] {
            let v = exact_number(dec(input));
            assert!(v.is_number(), "{input} became {v}");
            assert_eq!(v.to_string(), wire);
        }
    }

    #[test]
    fn a_decimal_an_f64_cannot_carry_goes_out_as_exact_text() {
        let v = exact_number(dec("1234567890.123456789012"));
        assert_eq!(v, Value::String("1234567890.123456789012".into()));
    }

    #[test]
    fn the_envelope_names_query_tag_and_data() {
        let body = envelope(Operation::GetBalance, json!({}));
        assert_eq!(
            body,
            json!({"query": "plumProAPI.query.getBalance", "tag": "plumProAPI",
                   "variables": {"data": {}}})
        );
    }

    #[test]
    fn order_details_looks_up_by_po_number_without_resending_mail() {
        let body = envelope(Operation::GetOrderDetails, order_details_data("OGW-1"));
        assert_eq!(body["query"], "plumProAPI.mutation.getOrderDetails");
        assert_eq!(
            body["variables"]["data"],
            json!({"poNumber": "OGW-1", "orderId": null, "sendMailToReceiver": 0})
        );
    }

    #[test]
    fn vouchers_query_joins_product_ids() {
        let q = VoucherQuery {
            include_products: vec![1001, 1002],
            ..VoucherQuery::default()
        };
        assert_eq!(vouchers_data(&q)["includeProducts"], "1001,1002");
    }
}
