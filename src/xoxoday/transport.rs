//! Sends one [`PreparedCall`] and records the complete [`Exchange`]: the exact
//! body, request headers with `Authorization` redacted, timing, status, the
//! headers that matter, the raw answer bytes (and a repaired text copy that
//! serde can read, issue 9), and a labelled error.
//!
//! Protects invariant 4 (full audit): whatever happens — timeout, refused
//! connection, half-read body — an `Exchange` comes back, never an `Err`.

use std::time::{Duration, Instant};

use chrono::Utc;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};

use super::classify::Answer;
use super::error_body;
use super::{Exchange, ExchangeResponse, PreparedCall};
use crate::domain::safe_text;

/// Response headers kept verbatim in the audit.
const KEPT_HEADERS: [&str; 5] = [
    "content-type",
    "content-length",
    "retry-after",
    "date",
    "server",
];

/// Substrings of other header names worth keeping (request ids, rate limits).
const KEPT_HEADER_PARTS: [&str; 4] = ["request-id", "requestid", "trace", "ratelimit"];

/// Sends `call` with an optional bearer token under `timeout`.
pub async fn send(
    http: &reqwest::Client,
    call: PreparedCall,
    token: Option<&SecretString>,
    timeout: Duration,
) -> Exchange {
    let body = serde_json::to_vec(&call.body).unwrap_or_default();
    let mut request = http
        .post(&call.url)
        .timeout(timeout)
        .header(CONTENT_TYPE, "application/json")
        .header(ACCEPT, "application/json")
        .body(body);
    if let Some(token) = token {
        request = request.header(AUTHORIZATION, format!("Bearer {}", token.expose_secret()));
    }
    let started_at = Utc::now();
    let clock = Instant::now();
    let (response, error) = match request.send().await {
        Err(e) => (None, Some(transport_error(&e))),
        Ok(resp) => {
            let status = resp.status().as_u16();
            let headers = kept_headers(resp.headers());
            match resp.bytes().await {
                Ok(bytes) => (Some(answer(status, headers, &bytes)), None),
                Err(e) => (Some(answer(status, headers, &[])), Some(body_error(&e))),
            }
        }
    };
    let exchange = Exchange {
        request_headers: request_headers(token.is_some()),
        request: call,
        started_at,
        duration: clock.elapsed(),
        response,
        error,
    };
    log(&exchange);
    exchange
}

fn answer(status: u16, headers: Value, bytes: &[u8]) -> ExchangeResponse {
    ExchangeResponse {
        status,
        headers,
        body: safe_text::repair_json(bytes).into_owned(),
        raw: bytes.to_vec(),
    }
}

/// The classifier's view of an exchange: a transport error wins over a
/// partial answer, because a half-read body proves nothing.
pub fn view(exchange: &Exchange) -> Answer<'_> {
    match (&exchange.error, &exchange.response) {
        (None, Some(r)) => Answer::Http {
            status: r.status,
            retry_after: error_body::retry_after(
                r.headers.get("retry-after").and_then(Value::as_str),
            ),
            body: &r.body,
        },
        (Some(e), _) => Answer::Transport(e),
        (None, None) => Answer::Transport("no answer"),
    }
}

/// Records why a 2xx answer was not usable (`decode: …`).
pub fn mark_undecodable(exchange: &mut Exchange, reason: &str) {
    let is_2xx = exchange
        .response
        .as_ref()
        .is_some_and(|r| (200..300).contains(&r.status));
    if is_2xx && exchange.error.is_none() {
        exchange.error = Some(format!("decode: {reason}"));
    }
}

fn request_headers(with_token: bool) -> Value {
    let mut h = json!({"content-type": "application/json", "accept": "application/json"});
    if with_token {
        h["authorization"] = "Bearer [REDACTED]".into();
    }
    h
}

fn kept_headers(headers: &HeaderMap) -> Value {
    let mut kept = Map::new();
    for (name, value) in headers {
        let n = name.as_str();
        if !(KEPT_HEADERS.contains(&n) || KEPT_HEADER_PARTS.iter().any(|p| n.contains(p))) {
            continue;
        }
        let text = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match kept.get_mut(n) {
            Some(Value::String(prev)) => *prev = format!("{prev}, {text}"),
            _ => {
                kept.insert(n.to_owned(), text.into());
            }
        }
    }
    Value::Object(kept)
}

/// `timeout: …`, `connect: …` or `request: …`, with the full cause chain.
fn transport_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "request"
    };
    format!("{kind}: {}", chain(e))
}

fn body_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() { "timeout" } else { "body" };
    format!("{kind}: {}", chain(e))
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn log(x: &Exchange) {
    let status = x.response.as_ref().map(|r| r.status);
    tracing::info!(
        xoxoday.operation = x.request.operation.as_str(),
        http.status = status,
        duration_ms = u64::try_from(x.duration.as_millis()).unwrap_or(u64::MAX),
        error = x.error.as_deref(),
        "xoxoday exchange finished"
    );
}
