//! Every placeOrder body the client builds validates against Xoxoday's own
//! published request schema (a copy of the team's
//! `shared/xoxoday/giftcard-placeorder.openapi.yaml`, kept in `fixtures/` so a
//! clean clone tests on its own), and carries exactly what the request said.

use std::str::FromStr;

use rust_decimal::Decimal;
use secrecy::SecretString;
use serde_json::{Value, json};
use url::Url;

use super::{ClientConfig, PlaceOrderRequest, XoxodayApi, XoxodayClient, redact_json};

const SPEC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/src/xoxoday/fixtures/giftcard-placeorder.openapi.yaml"
);

fn request_schema() -> Value {
    let text = std::fs::read_to_string(SPEC)
        .unwrap_or_else(|e| panic!("the placeOrder spec must exist at {SPEC}: {e}"));
    let doc: Value = serde_norway::from_str(&text).expect("the spec is YAML");
    let schema = doc
        .pointer("/paths/~1placeOrder/post/requestBody/content/application~1json/schema")
        .expect("the spec has a placeOrder request schema");
    assert!(schema.get("properties").is_some(), "schema looks empty");
    schema.clone()
}

fn client() -> XoxodayClient {
    XoxodayClient::with_config(ClientConfig {
        base_url: Url::parse("http://127.0.0.1:9/chef/").unwrap(),
        client_id: SecretString::from("client-id"),
        client_secret: SecretString::from("client-secret-xyz"),
        place_order_timeout: std::time::Duration::from_secs(150),
        request_timeout: std::time::Duration::from_secs(30),
    })
    .unwrap()
}

fn request(denomination: &str) -> PlaceOrderRequest {
    PlaceOrderRequest {
        po_number: crate::domain::PoNumber::from_stored("OGW-0193a5c2".into()),
        product_id: 15365,
        quantity: 2,
        denomination: Decimal::from_str(denomination).unwrap(),
        email: None,
        contact: None,
        tag: None,
        notify_receiver_email: false,
        notify_admin_email: false,
        user_meta: None,
        perform_operator_validation: None,
    }
}

fn variants() -> Vec<PlaceOrderRequest> {
    let full = PlaceOrderRequest {
        email: Some("someone@example.com".into()),
        contact: Some("+1-4705000000".into()),
        tag: Some("Rewarding".into()),
        notify_receiver_email: true,
        notify_admin_email: true,
        user_meta: Some(json!({"topupPhoneCode": "+91", "topupPhoneNumber": "9857535678"})),
        perform_operator_validation: Some(true),
        ..request("12.34")
    };
    vec![request("20"), request("0.1"), request("500.00"), full]
}

#[test]
fn every_place_order_body_validates_against_the_published_schema() {
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&request_schema())
        .expect("the schema compiles");
    let client = client();
    for req in variants() {
        let call = client.prepare_place_order(&req);
        let errors: Vec<String> = validator
            .iter_errors(&call.body)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{} invalid: {errors:?}", call.body);
    }
}

#[test]
fn the_schema_check_would_catch_a_wrongly_typed_body() {
    let validator = jsonschema::validator_for(&request_schema()).unwrap();
    let mut body = client().prepare_place_order(&request("20")).body;
    body["variables"]["data"]["denomination"] = json!("20");
    assert!(!validator.is_valid(&body));
}

#[test]
fn the_body_carries_the_request_exactly() {
    let client = client();
    let call = client.prepare_place_order(&variants()[3]);
    assert_eq!(call.url, "http://127.0.0.1:9/chef/v1/oauth/api");
    assert_eq!(call.method, "POST");
    let text = serde_json::to_string(&call.body).unwrap();
    assert!(text.contains(r#""denomination":12.34"#), "{text}");
    let data = &call.body["variables"]["data"];
    assert_eq!(call.body["query"], "plumProAPI.mutation.placeOrder");
    assert_eq!(call.body["tag"], "plumProAPI");
    assert_eq!(data["productId"], 15365);
    assert_eq!(data["quantity"], 2);
    assert_eq!(data["poNumber"], "OGW-0193a5c2");
    assert_eq!(data["notifyReceiverEmail"], 1);
    assert_eq!(data["notifyAdminEmail"], 1);
    assert_eq!(data["performOperatorValidation"], 1);
    assert_eq!(data["userMeta"]["topupPhoneCode"], "+91");
    let minimal = client.prepare_place_order(&request("0.1")).body;
    let data = &minimal["variables"]["data"];
    assert_eq!(serde_json::to_string(&data["denomination"]).unwrap(), "0.1");
    for absent in [
        "email",
        "contact",
        "tag",
        "userMeta",
        "performOperatorValidation",
    ] {
        assert!(data.get(absent).is_none(), "{absent} sent though None");
    }
    assert_eq!(data["notifyReceiverEmail"], 0);
}

#[test]
fn refresh_bodies_hold_the_secrets_and_redaction_hides_them() {
    let client = client();
    let call = client.prepare_refresh(&SecretString::from("refresh-tok-123"));
    assert_eq!(call.url, "http://127.0.0.1:9/chef/v1/oauth/token/user");
    assert_eq!(call.body["grant_type"], "refresh_token");
    assert_eq!(call.body["refresh_token"], "refresh-tok-123");
    assert_eq!(call.body["client_id"], "client-id");
    assert_eq!(call.body["client_secret"], "client-secret-xyz");
    let shown = redact_json(&call.body).to_string();
    assert!(!shown.contains("refresh-tok-123") && !shown.contains("client-secret-xyz"));
    let debug = format!("{call:?} {client:?}");
    assert!(!debug.contains("refresh-tok-123"), "{debug}");
    assert!(!debug.contains("client-secret-xyz"), "{debug}");
}
