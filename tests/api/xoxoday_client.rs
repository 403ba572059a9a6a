//! `XoxodayClient` over loopback: transport details against a scripted stub
//! (headers, audit record, timeouts, refused connections, redirects), then
//! every outcome class and fault against the emulator.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    http::{HeaderMap, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use order_gateway::domain::PoNumber;
use order_gateway::emulator::{self, EmulatorConfig, EmulatorHandle, Fault, FaultOp};
use order_gateway::xoxoday::{
    Call, ClientConfig, DeliveryStatus, LookupOutcome, PlaceOrderRequest, PlaceOutcome,
    RefreshOutcome, VoucherQuery, XoxodayApi, XoxodayClient,
};
use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

/// What the stub saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: HeaderMap,
    body: String,
}

/// The scripted answer: status, extra headers, body, delay.
#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
    body: String,
    delay: Duration,
}

/// A one-answer HTTP server on 127.0.0.1:0 that records every request.
#[derive(Clone)]
struct Stub {
    seen: Arc<Mutex<Vec<Seen>>>,
    base: String,
}

impl Stub {
    async fn spawn(reply: Reply) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let app = Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let (log, reply) = (log.clone(), reply.clone());
            async move {
                log.lock().unwrap().push(Seen {
                    path: uri.path().to_owned(),
                    headers,
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
                tokio::time::sleep(reply.delay).await;
                let mut resp: Response = reply.body.clone().into_response();
                *resp.status_mut() = StatusCode::from_u16(reply.status).unwrap();
                for (k, v) in reply.headers {
                    resp.headers_mut().insert(k, v.parse().unwrap());
                }
                resp
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            seen,
            base: format!("http://{addr}/chef/"),
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn reply(status: u16, body: &str) -> Reply {
    Reply {
        status,
        headers: vec![("content-type", "application/json")],
        body: body.into(),
        delay: Duration::ZERO,
    }
}

fn client_config(base: &str) -> ClientConfig {
    ClientConfig {
        base_url: Url::parse(base).unwrap(),
        client_id: SecretString::from("emulator-client"),
        client_secret: SecretString::from("emulator-secret"),
        place_order_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_secs(10),
    }
}

fn client_for(base: &str, place_timeout: Duration) -> XoxodayClient {
    XoxodayClient::with_config(ClientConfig {
        place_order_timeout: place_timeout,
        ..client_config(base)
    })
    .unwrap()
}

fn order(po: &str, product_id: i64, denomination: &str) -> PlaceOrderRequest {
    PlaceOrderRequest {
        po_number: PoNumber::from_stored(po.into()),
        product_id,
        quantity: 1,
        denomination: denomination.parse::<Decimal>().unwrap(),
        email: Some("someone@example.com".into()),
        contact: None,
        tag: None,
        notify_receiver_email: false,
        notify_admin_email: false,
        user_meta: None,
        perform_operator_validation: None,
    }
}

fn token(t: &str) -> SecretString {
    SecretString::from(t.to_owned())
}

const PLACED: &str = r#"{"data":{"placeOrder":{"status":1,"data":{"orderId":77,"orderTotal":12.34,"amountCharged":12.34,"currencyCode":"USD","orderStatus":"complete","deliveryStatus":"delivered","vouchers":[{"voucherCode":"CODE-1","pin":"PIN-1","amount":12.34}]}}}}"#;

#[tokio::test]
async fn place_order_sends_the_documented_request_and_records_the_exchange() {
    let stub = Stub::spawn(Reply {
        headers: vec![
            ("content-type", "application/json"),
            ("x-request-id", "req-42"),
        ],
        ..reply(200, PLACED)
    })
    .await;
    let client = client_for(&stub.base, Duration::from_secs(10));
    let call = client.prepare_place_order(&order("PO-STUB-1", 1002, "12.34"));

    let result = client.place_order(call, &token("access-abc")).await;

    let PlaceOutcome::Placed(placed) = &result.outcome else {
        panic!("not placed: {:?}", result.outcome)
    };
    assert_eq!(placed.order_id, 77);
    assert_eq!(placed.amount_charged.unwrap().to_string(), "12.34");
    let seen = &stub.seen()[0];
    assert_eq!(seen.path, "/chef/v1/oauth/api");
    assert_eq!(seen.headers["authorization"], "Bearer access-abc");
    assert_eq!(seen.headers["content-type"], "application/json");
    assert_eq!(seen.headers["accept"], "application/json");
    assert!(
        seen.body.contains(r#""denomination":12.34"#),
        "{}",
        seen.body
    );
    let x = &result.exchange;
    assert_eq!(x.request_headers["authorization"], "Bearer [REDACTED]");
    assert_eq!(serde_json::to_string(&x.request.body).unwrap(), seen.body);
    let response = x.response.as_ref().unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.headers["x-request-id"], "req-42");
    assert_eq!(response.headers["content-type"], "application/json");
    assert_eq!(response.body, PLACED);
    assert!(x.error.is_none());
    let shown = format!("{result:?}");
    assert!(!shown.contains("CODE-1") && !shown.contains("PIN-1") && !shown.contains("access-abc"));
}

#[tokio::test]
async fn a_place_order_timeout_is_unknown_with_a_timeout_error() {
    let stub = Stub::spawn(Reply {
        delay: Duration::from_secs(5),
        ..reply(200, PLACED)
    })
    .await;
    let client = client_for(&stub.base, Duration::from_millis(300));
    let call = client.prepare_place_order(&order("PO-STUB-2", 1001, "10"));

    let result = client.place_order(call, &token("t")).await;

    assert!(matches!(result.outcome, PlaceOutcome::Unknown { .. }));
    let error = result.exchange.error.unwrap();
    assert!(error.starts_with("timeout: "), "{error}");
    assert!(result.exchange.response.is_none());
}

#[tokio::test]
async fn a_refused_connection_is_unknown_with_a_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/chef", listener.local_addr().unwrap());
    drop(listener);
    let client = client_for(&base, Duration::from_secs(5));
    let call = client.prepare_place_order(&order("PO-STUB-3", 1001, "10"));

    let result = client.place_order(call, &token("t")).await;

    assert!(matches!(result.outcome, PlaceOutcome::Unknown { .. }));
    let error = result.exchange.error.unwrap();
    assert!(error.starts_with("connect: "), "{error}");
}

#[tokio::test]
async fn redirects_are_never_followed() {
    let stub = Stub::spawn(Reply {
        headers: vec![("location", "/elsewhere")],
        ..reply(307, "")
    })
    .await;
    let client = client_for(&stub.base, Duration::from_secs(5));
    let call = client.prepare_place_order(&order("PO-STUB-4", 1001, "10"));

    let result = client.place_order(call, &token("t")).await;

    assert!(matches!(result.outcome, PlaceOutcome::Unknown { .. }));
    assert_eq!(stub.seen().len(), 1, "the POST was sent once");
}

#[tokio::test]
async fn an_undecodable_success_is_unknown_with_a_decode_error() {
    let stub = Stub::spawn(reply(200, r#"{"data":{"placeOrder":{"status":0}}}"#)).await;
    let client = client_for(&stub.base, Duration::from_secs(5));
    let call = client.prepare_place_order(&order("PO-STUB-5", 1001, "10"));

    let result = client.place_order(call, &token("t")).await;

    assert!(matches!(result.outcome, PlaceOutcome::Unknown { .. }));
    let error = result.exchange.error.unwrap();
    assert!(error.starts_with("decode: "), "{error}");
}

#[tokio::test]
async fn a_rate_limit_penalty_is_read_from_the_body() {
    let body = r#"{"errors":[{"message":"auth.request_limit_exceeded","penaltySeconds":33}]}"#;
    let stub = Stub::spawn(Reply {
        headers: vec![("retry-after", "5")],
        ..reply(429, body)
    })
    .await;
    let client = client_for(&stub.base, Duration::from_secs(5));
    let call = client.prepare_place_order(&order("PO-STUB-6", 1001, "10"));

    let result = client.place_order(call, &token("t")).await;

    let PlaceOutcome::RateLimited { penalty } = result.outcome else {
        panic!("not rate limited: {:?}", result.outcome)
    };
    assert_eq!(penalty, Duration::from_secs(33));
    let headers = &result.exchange.response.unwrap().headers;
    assert_eq!(headers["retry-after"], "5");
}

#[tokio::test]
async fn refresh_posts_the_documented_body_without_a_bearer_and_redacts_it() {
    let body = r#"{"access_token":"new-access","token_type":"bearer","expires_in":"1296000","refresh_token":"new-refresh","access_token_expiry":"1718000000000"}"#;
    let stub = Stub::spawn(reply(200, body)).await;
    let client = client_for(&stub.base, Duration::from_secs(5));

    let result = client.refresh_token(&token("old-refresh")).await;

    let RefreshOutcome::Refreshed(pair) = &result.outcome else {
        panic!("not refreshed: {:?}", result.outcome)
    };
    assert_eq!(pair.access_token.expose_secret(), "new-access");
    assert_eq!(pair.refresh_token.expose_secret(), "new-refresh");
    assert_eq!(pair.expires_in, Some(Duration::from_secs(1_296_000)));
    let seen = &stub.seen()[0];
    assert_eq!(seen.path, "/chef/v1/oauth/token/user");
    assert!(seen.headers.get("authorization").is_none());
    let sent: serde_json::Value = serde_json::from_str(&seen.body).unwrap();
    assert_eq!(sent["grant_type"], "refresh_token");
    assert_eq!(sent["refresh_token"], "old-refresh");
    assert_eq!(sent["client_id"], "emulator-client");
    assert_eq!(sent["client_secret"], "emulator-secret");
    assert_eq!(
        result.exchange.request.body, sent,
        "the exchange keeps the exact body"
    );
    let shown = format!("{result:?}");
    for secret in [
        "old-refresh",
        "emulator-secret",
        "new-access",
        "new-refresh",
    ] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
}

#[tokio::test]
async fn the_balance_is_read_exactly() {
    let body = r#"{"data":{"getBalance":{"status":1,"data":{"value":5870.02,"currency":"INR"}}}}"#;
    let stub = Stub::spawn(reply(200, body)).await;
    let client = client_for(&stub.base, Duration::from_secs(5));

    let result = client.get_balance(&token("t")).await;

    let balance = result.outcome.expect("a balance");
    assert_eq!(balance.value.to_string(), "5870.02");
    let sent: serde_json::Value = serde_json::from_str(&stub.seen()[0].body).unwrap();
    assert_eq!(sent["query"], "plumProAPI.query.getBalance");
}

// ---- against the emulator -------------------------------------------------

/// The emulator, a client for it, and its first access token.
struct Upstream {
    emulator: EmulatorHandle,
    client: XoxodayClient,
    access: SecretString,
}

async fn upstream_with(place_timeout: Duration) -> Upstream {
    let emulator = emulator::spawn(EmulatorConfig::for_tests())
        .await
        .expect("the emulator starts");
    let client = client_for(&emulator.base_url(), place_timeout);
    let (access, _) = emulator.current_tokens();
    Upstream {
        emulator,
        client,
        access: token(&access),
    }
}

async fn upstream() -> Upstream {
    upstream_with(Duration::from_secs(10)).await
}

impl Upstream {
    async fn place(&self, req: &PlaceOrderRequest) -> Call<PlaceOutcome> {
        let call = self.client.prepare_place_order(req);
        self.client.place_order(call, &self.access).await
    }

    async fn lookup(&self, po: &str) -> Call<LookupOutcome> {
        let call = self
            .client
            .prepare_order_details(&PoNumber::from_stored(po.to_owned()));
        self.client.get_order_details(call, &self.access).await
    }

    fn upstream_orders(&self, po: &str) -> usize {
        usize::from(self.emulator.order(po).is_some())
    }
}

fn rejected_id(outcome: &PlaceOutcome) -> Option<&str> {
    match outcome {
        PlaceOutcome::Rejected(e) => e.error_id.as_deref(),
        _ => None,
    }
}

#[tokio::test]
async fn a_realtime_order_is_placed_once_and_found_with_its_vouchers() {
    let up = upstream().await;
    let req = order("PO-EMU-RT", 1001, "25");

    let placed = up.place(&req).await;
    let found = up.lookup("PO-EMU-RT").await;

    let PlaceOutcome::Placed(o) = &placed.outcome else {
        panic!("not placed: {:?}", placed.outcome)
    };
    assert_eq!(o.delivery_status, DeliveryStatus::Delivered);
    assert!(!o.vouchers.is_empty());
    let LookupOutcome::Found(f) = &found.outcome else {
        panic!("not found: {:?}", found.outcome)
    };
    assert_eq!(f.order_id, o.order_id);
    assert_eq!(f.vouchers.len(), o.vouchers.len());
    assert_eq!(up.emulator.place_calls("PO-EMU-RT"), 1);
    assert_eq!(up.upstream_orders("PO-EMU-RT"), 1);
}

#[tokio::test]
async fn an_open_value_order_keeps_its_exact_amount() {
    let up = upstream().await;

    let placed = up.place(&order("PO-EMU-OPEN", 1002, "12.34")).await;

    let PlaceOutcome::Placed(o) = &placed.outcome else {
        panic!("not placed: {:?}", placed.outcome)
    };
    let total = o.order_total.or(o.amount_charged).expect("an amount");
    assert_eq!(total.to_string(), "12.34");
}

#[tokio::test]
async fn delayed_orders_are_pending_then_delivered_or_canceled() {
    let up = upstream().await;
    for (po, product, delivered, want) in [
        ("PO-EMU-D1", 1003, true, DeliveryStatus::Delivered),
        ("PO-EMU-D2", 1004, false, DeliveryStatus::Canceled),
    ] {
        let placed = up.place(&order(po, product, "10")).await;
        let PlaceOutcome::Placed(o) = &placed.outcome else {
            panic!("not placed: {:?}", placed.outcome)
        };
        assert_eq!(o.delivery_status, DeliveryStatus::Pending, "{po}");

        up.emulator.settle_pending(po, delivered);
        let found = up.lookup(po).await;

        let LookupOutcome::Found(f) = &found.outcome else {
            panic!("not found: {:?}", found.outcome)
        };
        assert_eq!(f.delivery_status, want, "{po}");
    }
}

#[tokio::test]
async fn invalid_orders_are_rejected_and_create_nothing() {
    let up = upstream().await;
    let too_many = PlaceOrderRequest {
        quantity: 6,
        ..order("PO-EMU-QTY", 1006, "10")
    };
    for (req, want) in [
        (order("PO-EMU-DENOM", 1001, "13"), "PLE10018"),
        (too_many, "PLE10041"),
        (order("PO-EMU-PROD", 999_999, "10"), "PLE10042"),
    ] {
        let result = up.place(&req).await;
        assert_eq!(
            rejected_id(&result.outcome),
            Some(want),
            "{:?}",
            result.outcome
        );
        assert_eq!(up.upstream_orders(req.po_number.as_str()), 0);
        let found = up.lookup(req.po_number.as_str()).await;
        assert!(matches!(found.outcome, LookupOutcome::NotFound(_)));
    }
}

#[tokio::test]
async fn a_repeated_po_number_is_unknown_never_rejected() {
    let up = upstream().await;
    let req = order("PO-EMU-DUP", 1001, "10");
    assert!(matches!(
        up.place(&req).await.outcome,
        PlaceOutcome::Placed(_)
    ));

    let again = up.place(&req).await;

    assert!(
        matches!(again.outcome, PlaceOutcome::Unknown { .. }),
        "{:?}",
        again.outcome
    );
    assert_eq!(up.upstream_orders("PO-EMU-DUP"), 1);
    assert!(matches!(
        up.lookup("PO-EMU-DUP").await.outcome,
        LookupOutcome::Found(_)
    ));
}

#[tokio::test]
async fn a_5xx_before_creating_is_unknown_and_the_lookup_says_not_found() {
    let up = upstream().await;
    up.emulator
        .fault_for_po("PO-EMU-5B", Fault::ErrorBeforeCreate { status: 500 });

    let result = up.place(&order("PO-EMU-5B", 1001, "10")).await;

    assert!(matches!(result.outcome, PlaceOutcome::Unknown { .. }));
    assert_eq!(result.exchange.response.as_ref().unwrap().status, 500);
    assert_eq!(up.upstream_orders("PO-EMU-5B"), 0);
    assert!(matches!(
        up.lookup("PO-EMU-5B").await.outcome,
        LookupOutcome::NotFound(_)
    ));
}

#[tokio::test]
async fn a_5xx_after_creating_is_unknown_and_the_lookup_finds_the_order() {
    let up = upstream().await;
    up.emulator
        .fault_for_po("PO-EMU-5A", Fault::ErrorAfterCreate { status: 502 });

    let result = up.place(&order("PO-EMU-5A", 1001, "10")).await;

    assert!(matches!(result.outcome, PlaceOutcome::Unknown { .. }));
    assert_eq!(up.upstream_orders("PO-EMU-5A"), 1);
    assert!(matches!(
        up.lookup("PO-EMU-5A").await.outcome,
        LookupOutcome::Found(_)
    ));
}

#[tokio::test]
async fn a_timeout_after_creating_is_unknown_and_the_order_is_found_later() {
    let up = upstream_with(Duration::from_secs(1)).await;
    up.emulator
        .fault_for_po("PO-EMU-TO", Fault::SleepAfterCreate(Duration::from_secs(3)));

    let result = up.place(&order("PO-EMU-TO", 1001, "10")).await;

    assert!(matches!(result.outcome, PlaceOutcome::Unknown { .. }));
    let error = result.exchange.error.as_deref().unwrap();
    assert!(error.starts_with("timeout: "), "{error}");
    assert!(matches!(
        up.lookup("PO-EMU-TO").await.outcome,
        LookupOutcome::Found(_)
    ));
}

#[tokio::test]
async fn a_dropped_connection_after_creating_is_unknown() {
    let up = upstream().await;
    up.emulator
        .fault_for_po("PO-EMU-DROP", Fault::DropAfterCreate);

    let result = up.place(&order("PO-EMU-DROP", 1001, "10")).await;

    assert!(matches!(result.outcome, PlaceOutcome::Unknown { .. }));
    assert!(result.exchange.error.is_some());
    assert!(matches!(
        up.lookup("PO-EMU-DROP").await.outcome,
        LookupOutcome::Found(_)
    ));
}

#[tokio::test]
async fn a_slow_answer_within_the_timeout_is_placed() {
    let up = upstream().await;
    up.emulator
        .fault_for_po("PO-EMU-SLOW", Fault::Slow(Duration::from_millis(300)));

    let result = up.place(&order("PO-EMU-SLOW", 1001, "10")).await;

    assert!(
        matches!(result.outcome, PlaceOutcome::Placed(_)),
        "{:?}",
        result.outcome
    );
}

#[tokio::test]
async fn an_order_hidden_from_details_looks_not_found_though_it_exists() {
    let up = upstream().await;
    up.emulator.fault_for_po(
        "PO-EMU-HID",
        Fault::HiddenFromDetails(Duration::from_secs(60)),
    );

    let placed = up.place(&order("PO-EMU-HID", 1001, "10")).await;
    let found = up.lookup("PO-EMU-HID").await;

    assert!(
        matches!(placed.outcome, PlaceOutcome::Placed(_)),
        "{:?}",
        placed.outcome
    );
    assert!(
        matches!(found.outcome, LookupOutcome::NotFound(_)),
        "{:?}",
        found.outcome
    );
    assert_eq!(
        up.upstream_orders("PO-EMU-HID"),
        1,
        "why the settle window exists"
    );
}

#[tokio::test]
async fn rate_limits_and_bad_tokens_place_nothing() {
    let up = upstream().await;
    up.emulator
        .fault_for_po("PO-EMU-RL", Fault::RateLimited { penalty_seconds: 7 });
    up.emulator.fault_for_po("PO-EMU-TOK", Fault::InvalidToken);

    let limited = up.place(&order("PO-EMU-RL", 1001, "10")).await;
    let refused = up.place(&order("PO-EMU-TOK", 1001, "10")).await;

    let PlaceOutcome::RateLimited { penalty } = limited.outcome else {
        panic!("not rate limited: {:?}", limited.outcome)
    };
    assert_eq!(penalty, Duration::from_secs(7));
    assert!(
        matches!(refused.outcome, PlaceOutcome::Unauthorized(_)),
        "{:?}",
        refused.outcome
    );
    assert_eq!(
        up.upstream_orders("PO-EMU-RL") + up.upstream_orders("PO-EMU-TOK"),
        0
    );
}

#[tokio::test]
async fn an_expired_token_is_unauthorized_until_refreshed() {
    let up = upstream().await;
    up.emulator.expire_access_token();
    let (_, refresh) = up.emulator.current_tokens();

    let before = up.place(&order("PO-EMU-EXP", 1001, "10")).await;
    let rotated = up.client.refresh_token(&token(&refresh)).await;

    assert!(
        matches!(before.outcome, PlaceOutcome::Unauthorized(_)),
        "{:?}",
        before.outcome
    );
    let RefreshOutcome::Refreshed(pair) = rotated.outcome else {
        panic!("not refreshed: {:?}", rotated.outcome)
    };
    let (access, refresh) = up.emulator.current_tokens();
    assert_eq!(pair.access_token.expose_secret(), access);
    assert_eq!(pair.refresh_token.expose_secret(), refresh);
    let call = up
        .client
        .prepare_place_order(&order("PO-EMU-EXP", 1001, "10"));
    let after = up.client.place_order(call, &pair.access_token).await;
    assert!(
        matches!(after.outcome, PlaceOutcome::Placed(_)),
        "{:?}",
        after.outcome
    );
}

#[tokio::test]
async fn a_wrong_refresh_token_is_refused() {
    let up = upstream().await;

    let result = up
        .client
        .refresh_token(&token("not-the-refresh-token"))
        .await;

    assert!(
        matches!(result.outcome, RefreshOutcome::Refused(_)),
        "{:?}",
        result.outcome
    );
}

/// A check on a classified outcome.
type Expect = fn(&PlaceOutcome) -> bool;

#[tokio::test]
async fn scripted_documented_answers_classify_by_error_id() {
    let up = upstream().await;
    let cases: [(&str, u16, &str, Expect); 3] = [
        (
            "PO-EMU-IP",
            401,
            r#"{"code":401,"errorId":"PIPE10017","errorInfo":"Plum Pro APIs: Access restricted for this IP","error":"x"}"#,
            |o| matches!(o, PlaceOutcome::Systemic(_)),
        ),
        (
            "PO-EMU-OOS",
            502,
            r#"{"code":502,"errorId":"PLE10024","errorInfo":"Vouchers are out of stock","error":"x"}"#,
            |o| matches!(o, PlaceOutcome::Unknown { .. }),
        ),
        (
            "PO-EMU-KYC",
            403,
            r#"{"code":403,"errorId":"PLE10015","errorInfo":"Amazon KYC is not approved","error":"x"}"#,
            |o| matches!(o, PlaceOutcome::Rejected(_)),
        ),
    ];
    for (po, status, body, want) in cases {
        let body = serde_json::from_str(body).unwrap();
        up.emulator
            .fault_for_po(po, Fault::Respond { status, body });
        let result = up.place(&order(po, 1001, "10")).await;
        assert!(want(&result.outcome), "{po}: {:?}", result.outcome);
    }
}

#[tokio::test]
async fn the_catalog_and_balance_are_readable() {
    let up = upstream().await;

    let catalog = up
        .client
        .get_vouchers(&VoucherQuery::default(), &up.access)
        .await;
    let balance = up.client.get_balance(&up.access).await;

    let products = catalog.outcome.expect("a catalog");
    assert!(products.iter().any(|p| p.product_id == 1001));
    assert!(balance.outcome.is_ok(), "{:?}", balance.outcome);
}

#[tokio::test]
async fn a_missing_mandatory_phone_is_rejected() {
    let up = upstream().await;

    let result = up.place(&order("PO-EMU-PHONE", 1005, "10")).await;

    assert_eq!(
        rejected_id(&result.outcome),
        Some("PLE10001"),
        "{:?}",
        result.outcome
    );
    assert_eq!(up.upstream_orders("PO-EMU-PHONE"), 0);
}

#[tokio::test]
async fn an_insufficient_balance_answer_is_recognised_and_creates_nothing() {
    // The emulator answers 422 PLE10010 "Failed to redeem points" with an
    // insufficient-balance text: contract §8 says no order was created and
    // sending pauses (never a definite refusal of this order).
    let up = upstream().await;
    up.emulator.set_balance(Decimal::ONE);

    let result = up.place(&order("PO-EMU-POOR", 1001, "100")).await;

    assert!(
        matches!(result.outcome, PlaceOutcome::InsufficientBalance(_)),
        "{:?}",
        result.outcome
    );
    assert_eq!(up.upstream_orders("PO-EMU-POOR"), 0);
}

#[tokio::test]
async fn lookup_faults_never_look_like_not_found() {
    let up = upstream().await;
    let faults = [
        Fault::ErrorBeforeCreate { status: 503 },
        Fault::ErrorBeforeCreate { status: 500 },
        Fault::SleepAfterCreate(Duration::from_secs(30)),
        Fault::DropAfterCreate,
    ];
    let client = client_for(&up.emulator.base_url(), Duration::from_secs(10));
    let impatient = XoxodayClient::with_config(ClientConfig {
        request_timeout: Duration::from_secs(1),
        ..client_config(&up.emulator.base_url())
    })
    .unwrap();
    for fault in faults {
        up.emulator
            .push_fault(FaultOp::GetOrderDetails, fault.clone());
        let call = client.prepare_order_details(&PoNumber::from_stored("PO-EMU-NONE".into()));
        let result = impatient.get_order_details(call, &up.access).await;
        assert!(
            matches!(result.outcome, LookupOutcome::Failed { .. }),
            "{fault:?}: {:?}",
            result.outcome
        );
    }
    up.emulator.push_fault(
        FaultOp::GetOrderDetails,
        Fault::RateLimited { penalty_seconds: 9 },
    );
    let limited = up.lookup("PO-EMU-NONE").await;
    assert!(
        matches!(limited.outcome, LookupOutcome::RateLimited { penalty } if penalty == Duration::from_secs(9))
    );
    up.emulator
        .push_fault(FaultOp::GetOrderDetails, Fault::InvalidToken);
    let refused = up.lookup("PO-EMU-NONE").await;
    assert!(matches!(refused.outcome, LookupOutcome::Unauthorized(_)));
    assert!(matches!(
        up.lookup("PO-EMU-NONE").await.outcome,
        LookupOutcome::NotFound(_)
    ));
}

#[tokio::test]
async fn refresh_faults_are_failed_or_rate_limited_never_refreshed() {
    let up = upstream().await;
    let (_, refresh) = up.emulator.current_tokens();
    up.emulator.push_fault(
        FaultOp::RefreshToken,
        Fault::ErrorBeforeCreate { status: 502 },
    );
    up.emulator.push_fault(
        FaultOp::RefreshToken,
        Fault::RateLimited {
            penalty_seconds: 11,
        },
    );

    let failed = up.client.refresh_token(&token(&refresh)).await;
    let limited = up.client.refresh_token(&token(&refresh)).await;

    assert!(
        matches!(failed.outcome, RefreshOutcome::Failed { .. }),
        "{:?}",
        failed.outcome
    );
    assert!(
        matches!(limited.outcome, RefreshOutcome::RateLimited { penalty } if penalty == Duration::from_secs(11))
    );
    assert_eq!(up.emulator.current_tokens().1, refresh, "nothing rotated");
}
