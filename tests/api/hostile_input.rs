//! Hostile input (issue 5): the intake parser fuzzed with proptest over
//! arbitrary bytes and near-valid JSON (never a panic, never an out-of-range
//! order), and a property test over HTTP: arbitrary bodies and headers
//! against a running gateway never produce a 5xx.

use order_gateway::domain::NewOrder;
use proptest::{
    prelude::*,
    strategy::ValueTree as _,
    test_runner::{Config, TestRunner},
};
use serde_json::{Map, Value, json};

use crate::helpers::spawn_app;

const FIELDS: [&str; 11] = [
    "productId",
    "denomination",
    "quantity",
    "email",
    "contact",
    "tag",
    "notifyReceiverEmail",
    "notifyAdminEmail",
    "userMeta",
    "performOperatorValidation",
    "unknownField",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        (0u32..20).prop_map(|n| json!(n)),
        any::<String>().prop_map(Value::from),
        prop_oneof![
            Just("50"),
            Just("-1"),
            Just("1e400"),
            Just("0.000000000000000000000000000001"),
            Just("a@b.co"),
            Just("+1-4705000000"),
        ]
        .prop_map(Value::from),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((any::<String>(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Objects over the real field names, with arbitrary values; sometimes the
/// serialised text is cut or a byte is flipped.
fn near_valid_body() -> impl Strategy<Value = Vec<u8>> {
    let object = prop::collection::vec((prop::sample::select(&FIELDS[..]), value()), 0..10)
        .prop_map(|kv| {
            let mut m: Map<String, Value> = kv.into_iter().map(|(k, v)| (k.into(), v)).collect();
            m.entry("productId").or_insert(json!(1001));
            m.entry("denomination").or_insert(json!(50));
            serde_json::to_vec(&Value::Object(m)).unwrap()
        });
    (object, any::<u8>(), any::<prop::sample::Index>(), 0u8..3).prop_map(
        |(mut body, byte, at, how)| {
            let i = at
                .index(body.len().max(1))
                .min(body.len().saturating_sub(1));
            match how {
                0 => {}
                1 => body.truncate(i),
                _ if !body.is_empty() => body[i] = byte,
                _ => {}
            }
            body
        },
    )
}

fn check(body: &[u8]) {
    if let Ok(order) = NewOrder::parse(body) {
        assert!(order.product_id > 0);
        assert!((1..=NewOrder::MAX_QUANTITY).contains(&order.quantity));
        assert!(
            order
                .tag
                .as_ref()
                .is_none_or(|t| t.chars().count() <= NewOrder::MAX_TAG_CHARS)
        );
        let _ = order.fingerprint();
        let meta = order.user_meta.map(|m| Value::Object(m).to_string());
        assert!(meta.is_none_or(|m| m.len() <= NewOrder::MAX_USER_META_BYTES));
    }
}

proptest! {
    #![proptest_config(Config::with_cases(2000))]

    #[test]
    fn the_parser_never_panics_on_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..2048)) {
        check(&body);
    }

    #[test]
    fn the_parser_never_panics_on_near_valid_json(body in near_valid_body()) {
        check(&body);
    }
}

#[test]
fn deep_nesting_and_oversized_user_meta_are_refused_not_crashed() {
    let deep = format!(
        r#"{{"productId":1,"denomination":5,"userMeta":{}1{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(NewOrder::parse(deep.as_bytes()).is_err());
    let nested = r#"{"productId":1,"denomination":5,"userMeta":{"a":{"b":{"c":{"d":[1]}}}}}"#;
    assert!(NewOrder::parse(nested.as_bytes()).is_err());
    let shallow = r#"{"productId":1,"denomination":5,"userMeta":{"a":{"b":{"c":{"d":1}}}}}"#;
    assert!(NewOrder::parse(shallow.as_bytes()).is_ok());
    let big = json!({"productId": 1, "denomination": 5, "userMeta": {"x": "y".repeat(5000)}});
    assert!(NewOrder::parse(big.to_string().as_bytes()).is_err());
}

/// One hostile request: body, and header values that may be missing or garbage.
#[derive(Debug, Clone)]
struct Hostile {
    body: Vec<u8>,
    content_type: Option<Vec<u8>>,
    idempotency_key: Option<Vec<u8>>,
    prefer: Option<Vec<u8>>,
    good_auth: bool,
    extra: Vec<(String, Vec<u8>)>,
}

fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        Just(b"wait=5".to_vec()),
        Just(b"application/json".to_vec()),
        Just(vec![b'k'; 300]),
        Just(vec![b'a'; 20_000]),
    ]
}

fn hostile() -> impl Strategy<Value = Hostile> {
    let body = prop_oneof![
        near_valid_body(),
        prop::collection::vec(any::<u8>(), 0..512)
    ];
    let names = prop::sample::select(
        &[
            "x-a",
            "x-forwarded-for",
            "cookie",
            "accept",
            "authorization",
        ][..],
    );
    let extra = prop::collection::vec((names.prop_map(String::from), header_bytes()), 0..3);
    (
        body,
        prop::option::of(header_bytes()),
        prop::option::of(header_bytes()),
        prop::option::of(header_bytes()),
        any::<bool>(),
        extra,
    )
        .prop_map(
            |(body, content_type, idempotency_key, prefer, good_auth, extra)| Hostile {
                body,
                content_type,
                idempotency_key,
                prefer,
                good_auth,
                extra,
            },
        )
}

fn header_value(raw: &[u8]) -> Option<reqwest::header::HeaderValue> {
    reqwest::header::HeaderValue::from_bytes(raw).ok()
}

#[tokio::test]
async fn arbitrary_requests_never_get_a_5xx() {
    let app = spawn_app().await;
    let mut runner = TestRunner::new(Config::with_cases(150));
    let strategy = hostile();
    for _ in 0..150 {
        let case = strategy.new_tree(&mut runner).unwrap().current();
        let mut req = app.http.post(app.url("/v1/orders")).body(case.body.clone());
        let auth = if case.good_auth {
            app.api_key.clone()
        } else {
            "ogw_nope".into()
        };
        req = req.bearer_auth(auth);
        for (name, raw) in [
            ("content-type", &case.content_type),
            ("idempotency-key", &case.idempotency_key),
            ("prefer", &case.prefer),
        ] {
            if let Some(v) = raw.as_deref().and_then(header_value) {
                req = req.header(name, v);
            }
        }
        for (name, raw) in &case.extra {
            if let Some(v) = header_value(raw) {
                req = req.header(name.as_str(), v);
            }
        }
        let status = req.send().await.expect("the gateway answers").status();
        assert!(status.as_u16() < 500, "{status} for {case:?}");
    }
}

#[tokio::test]
async fn oversized_headers_are_refused_with_a_problem() {
    let app = spawn_app().await;
    let resp = app
        .http
        .get(app.url("/v1/orders"))
        .bearer_auth(&app.api_key)
        .header("x-padding", "p".repeat(17 * 1024))
        .send()
        .await
        .unwrap();
    let problem = crate::helpers::assert_problem(resp, 400).await;
    assert!(problem["detail"].as_str().unwrap().contains("headers"));
}

/// Postgres keeps a jsonb number as exact decimal text, so `f64::MAX` comes
/// back as 309 digits. Found by schemathesis: such a `userMeta` was stored,
/// then every read and list of the caller's orders answered 500.
#[tokio::test]
async fn extreme_numbers_in_user_meta_read_back_and_go_upstream_unchanged() {
    let app = spawn_app().await;
    let meta = json!({"max": f64::MAX, "min": -f64::MAX, "tiny": 5e-324, "big": 1e300});
    let body = json!({"productId": 1001, "denomination": 50, "userMeta": meta});
    let resp = app.post_order(&crate::helpers::new_key(), &body).await;
    assert!(resp.status().is_success(), "{}", resp.status());
    let order: Value = resp.json().await.unwrap();
    let id = order["id"].as_str().unwrap();
    assert_eq!(app.get_order(&app.api_key, id).await.status(), 200);
    assert_eq!(
        app.list_orders(&app.api_key, "limit=10").await.status(),
        200
    );
    let settled = app
        .wait_settled(id, std::time::Duration::from_secs(20))
        .await;
    assert_eq!(settled["status"], "completed", "{settled}");
}
