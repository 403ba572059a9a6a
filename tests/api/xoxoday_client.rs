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
use order_gateway::xoxoday::{
    ClientConfig, PlaceOrderRequest, PlaceOutcome, RefreshOutcome, XoxodayApi, XoxodayClient,
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

fn client_for(base: &str, place_timeout: Duration) -> XoxodayClient {
    XoxodayClient::with_config(ClientConfig {
        base_url: Url::parse(base).unwrap(),
        client_id: SecretString::from("emulator-client"),
        client_secret: SecretString::from("emulator-secret"),
        place_order_timeout: place_timeout,
        request_timeout: Duration::from_secs(10),
    })
    .unwrap()
}

fn order(po: &str, product_id: i64, denomination: &str) -> PlaceOrderRequest {
    PlaceOrderRequest {
        po_number: po.into(),
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
