//! Every documented success body (reference §2.2, §3.2, §4.2, §5.2, §6, the
//! [ADR] and [HELSINKI] fixtures) decodes, with exact amounts.

use std::str::FromStr;

use secrecy::ExposeSecret;

use super::*;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../fixtures/", $name, ".json"))
    };
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn order_of(body: &str, key: &str) -> UpstreamOrder {
    order(&success_payload(body, key).unwrap()).unwrap()
}

#[test]
fn the_workflow_place_order_answer_decodes() {
    let o = order_of(fixture!("place_order_workflow"), "placeOrder");
    assert_eq!(o.order_id, 6_474_256);
    assert_eq!(o.order_total, Some(dec("100")));
    assert_eq!(o.order_discount, None, "\"\" discount is None");
    assert_eq!(o.amount_charged, Some(dec("100")));
    assert_eq!(o.delivery_status, DeliveryStatus::Delivered);
    assert_eq!(o.order_status.as_deref(), Some("complete"));
    let v = &o.vouchers[0];
    assert_eq!(v.code.expose_secret(), "DEMO-1676340039265-p6aqnl");
    assert_eq!(v.pin.as_ref().unwrap().expose_secret(), "DEMO-PIN");
    assert_eq!(v.voucher_type.as_deref(), Some("codePin"));
    assert_eq!(v.amount, Some(dec("100")));
}

#[test]
fn the_spec_and_quick_start_place_order_answers_decode() {
    let spec = order_of(fixture!("place_order_spec"), "placeOrder");
    assert_eq!(spec.order_id, 98_765_432);
    assert_eq!(spec.vouchers[0].code.expose_secret(), "ABCD-1234-EFGH");
    let quick = order_of(fixture!("place_order_quick_start"), "placeOrder");
    assert_eq!(quick.order_total, Some(dec("8.79")));
    assert_eq!(quick.amount_charged.unwrap().to_string(), "8.79");
    let v = &quick.vouchers[0];
    assert_eq!(v.amount, Some(dec("50")), "string amount");
    assert!(v.pin.is_none(), "empty pin is no pin");
    assert_eq!(v.country.as_deref(), Some("IN,US"));
    assert_eq!(v.voucher_type.as_deref(), Some("url"));
}

#[test]
fn a_delayed_order_without_vouchers_is_pending() {
    let o = order_of(fixture!("place_order_delayed_lounge"), "placeOrder");
    assert_eq!(o.delivery_status, DeliveryStatus::Pending);
    assert!(o.vouchers.is_empty());
}

#[test]
fn both_documented_order_details_examples_decode_despite_type_drift() {
    let docs = order_of(fixture!("order_details_docs"), "getOrderDetails");
    assert_eq!(docs.order_discount, Some(dec("10")), "number discount");
    assert_eq!(docs.vouchers[0].amount, Some(dec("10")), "string amount");
    assert_eq!(docs.delivery_status, DeliveryStatus::Pending);
    let adr = order_of(fixture!("order_details_adr"), "getOrderDetails");
    assert_eq!(adr.order_total.unwrap().to_string(), "11.53");
    assert_eq!(adr.order_discount.unwrap().to_string(), "0.35");
    assert_eq!(adr.amount_charged.unwrap().to_string(), "11.18");
    assert_eq!(
        adr.vouchers[0].pin.as_ref().unwrap().expose_secret(),
        "727676"
    );
}

#[test]
fn delivery_status_ignores_case_and_spelling() {
    for (raw, want) in [
        ("Delivered", DeliveryStatus::Delivered),
        ("delivered", DeliveryStatus::Delivered),
        ("Pending", DeliveryStatus::Pending),
        ("Canceled", DeliveryStatus::Canceled),
        ("canceled", DeliveryStatus::Canceled),
        ("Cancelled", DeliveryStatus::Canceled),
        ("refunded", DeliveryStatus::Other("refunded".into())),
    ] {
        assert_eq!(delivery_status(Some(raw)), want, "{raw}");
    }
    assert_eq!(delivery_status(None), DeliveryStatus::Other(String::new()));
}

#[test]
fn only_status_one_is_success() {
    let zero = r#"{"data":{"placeOrder":{"status":0,"data":{"orderId":1}}}}"#;
    assert!(success_payload(zero, "placeOrder").is_err());
    let text_one = r#"{"data":{"placeOrder":{"status":"1","data":{"orderId":1}}}}"#;
    assert!(success_payload(text_one, "placeOrder").is_ok());
    let sibling = r#"{"data":{"placeOrder":{"status":1,"data":{"orderId":1}},"extensions":5}}"#;
    assert!(success_payload(sibling, "placeOrder").is_ok());
    let other_op = r#"{"data":{"getBalance":{"status":1,"data":{}}}}"#;
    assert!(success_payload(other_op, "placeOrder").is_err());
    for junk in ["", "null", "{}", r#"{"data":null}"#, "<html>"] {
        assert!(success_payload(junk, "placeOrder").is_err(), "{junk}");
    }
}

#[test]
fn orders_without_id_or_with_codeless_vouchers_do_not_decode() {
    let no_id = r#"{"data":{"placeOrder":{"status":1,"data":{"deliveryStatus":"delivered"}}}}"#;
    let raw = success_payload(no_id, "placeOrder").unwrap();
    assert!(order(&raw).is_err());
    let codeless =
        r#"{"data":{"placeOrder":{"status":1,"data":{"orderId":5,"vouchers":[{"pin":"1"}]}}}}"#;
    let raw = success_payload(codeless, "placeOrder").unwrap();
    assert!(order(&raw).unwrap_err().contains("vouchers[0]"));
    let bad_amount =
        r#"{"data":{"placeOrder":{"status":1,"data":{"orderId":5,"orderTotal":"lots"}}}}"#;
    let raw = success_payload(bad_amount, "placeOrder").unwrap();
    assert!(order(&raw).unwrap_err().contains("orderTotal"));
}

#[test]
fn every_documented_token_answer_decodes() {
    let spec = token_pair(fixture!("token_auth_spec")).unwrap();
    assert_eq!(spec.expires_in, Some(Duration::from_secs(1_296_000)));
    assert_eq!(
        spec.access_expires_at.unwrap().timestamp_millis(),
        1_718_000_000_000
    );
    assert_eq!(
        spec.refresh_expires_at.unwrap().timestamp_millis(),
        1_720_000_000_000
    );
    let adr = token_pair(fixture!("token_adr")).unwrap();
    assert_eq!(adr.expires_in, Some(Duration::from_secs(1_296_000)));
    assert_eq!(adr.refresh_token.expose_secret(), "adr-refresh-token");
    assert!(adr.access_expires_at.is_none());
    let helsinki = token_pair(fixture!("token_helsinki")).unwrap();
    assert_eq!(helsinki.access_token.expose_secret(), "eyJhelsinki");
    let numeric = token_pair(fixture!("token_numeric_expiry")).unwrap();
    assert_eq!(numeric.access_expires_at, spec.access_expires_at);
    assert!(token_pair(r#"{"access_token":"a"}"#).is_err());
    assert!(token_pair(r#"{"error":"invalid_token"}"#).is_err());
}

#[test]
fn balances_decode_exactly() {
    let raw = success_payload(fixture!("balance_docs"), "getBalance").unwrap();
    let b = balance(&raw).unwrap();
    assert_eq!(b.value.to_string(), "5870.02");
    assert_eq!(b.currency.as_deref(), Some("INR"));
    let raw = success_payload(fixture!("balance_adr"), "getBalance").unwrap();
    assert_eq!(balance(&raw).unwrap().points, Some(dec("9944")));
}

#[test]
fn the_catalog_decodes_with_its_drift() {
    let raw = success_payload(fixture!("vouchers_workflow"), "getVouchers").unwrap();
    let p = products(&raw).unwrap();
    assert_eq!(p[0].product_id, 1535);
    assert_eq!(p[0].denominations.len(), 5);
    assert_eq!(p[0].exchange_rate, Some(dec("1")), "string rate");
    assert_eq!(p[0].tat_in_days.as_deref(), Some("0"));
    assert!(!p[0].phone_number_mandatory);
    assert_eq!(p[1].exchange_rate, None, "null rate");
    assert_eq!(p[1].tat_in_days.as_deref(), Some("1 - 7"));
    assert!(p[1].phone_number_mandatory);
    assert_eq!(p[1].min_value, Some(dec("5")));
    assert_eq!(p[2].exchange_rate.unwrap().to_string(), "0.014089");
    assert_eq!(p[2].order_quantity_limit, Some(5));
}

#[test]
fn debug_never_shows_voucher_codes_or_tokens() {
    let o = order_of(fixture!("place_order_workflow"), "placeOrder");
    let shown = format!("{o:?}");
    assert!(!shown.contains("DEMO-1676340039265-p6aqnl"), "{shown}");
    assert!(!shown.contains("DEMO-PIN"), "{shown}");
    let pair = token_pair(fixture!("token_adr")).unwrap();
    let shown = format!("{pair:?}");
    assert!(!shown.contains("adr-access-token") && !shown.contains("adr-refresh-token"));
}
