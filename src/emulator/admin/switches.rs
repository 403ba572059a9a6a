//! Admin switches that replace settings of a running emulator: random fault
//! rates, rate limits, the webhook target, the wallet balance, sticky token
//! refusal, hostile text and the empty-history answer.

use std::sync::Arc;

use axum::{Json, extract::State, response::Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::handle;
use crate::emulator::{
    EmptyHistory, EmulatorConfig, HostileText, RateLimits,
    faults::FaultRates,
    state::Shared,
    wire::{self, json_response},
};

fn bad_request(msg: impl std::fmt::Display) -> Response {
    json_response(400, json!({"error": msg.to_string()}))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WebhookIn {
    url: Option<String>,
    api_key: Option<String>,
}

/// `{"url": "http://…", "apiKey": "…"}`; nulls clear; re-enables.
pub(super) async fn set_webhook(
    State(shared): State<Arc<Shared>>,
    body: axum::body::Bytes,
) -> Response {
    match serde_json::from_slice::<WebhookIn>(&body) {
        Ok(w) => {
            handle(shared).set_webhook(w.url, w.api_key);
            json_response(200, json!({"webhook": "set"}))
        }
        Err(e) => bad_request(e),
    }
}

/// Probabilities by name (missing = 0) plus `sleep` and `hiddenFor` text.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct FaultRatesIn {
    error_before: f64,
    error_after: f64,
    sleep_after: f64,
    drop_after: f64,
    slow: f64,
    hidden: f64,
    late_error: f64,
    late_drop: f64,
    webhook_first: f64,
    webhook_instead: f64,
    sleep: Option<String>,
    hidden_for: Option<String>,
    late_after: Option<String>,
}

fn to_rates(r: FaultRatesIn) -> Result<FaultRates, String> {
    let d = EmulatorConfig::default().fault_rates;
    let dur = |s: Option<String>, def| match s {
        None => Ok(def),
        Some(s) => humantime::parse_duration(&s).map_err(|e| format!("duration {s:?}: {e}")),
    };
    let rates = FaultRates {
        error_before: r.error_before,
        error_after: r.error_after,
        sleep_after: r.sleep_after,
        drop_after: r.drop_after,
        slow: r.slow,
        hidden: r.hidden,
        late_error: r.late_error,
        late_drop: r.late_drop,
        webhook_first: r.webhook_first,
        webhook_instead: r.webhook_instead,
        sleep: dur(r.sleep, d.sleep)?,
        hidden_for: dur(r.hidden_for, d.hidden_for)?,
        late_after: dur(r.late_after, d.late_after)?,
    };
    let each = [rates.error_before, rates.error_after, rates.sleep_after];
    let rest = [rates.drop_after, rates.slow, rates.hidden];
    let new = [rates.late_error, rates.late_drop];
    let hooks = [rates.webhook_first, rates.webhook_instead];
    let all = each.iter().chain(&rest).chain(&new).chain(&hooks);
    if all.clone().any(|p| !(0.0..=1.0).contains(p)) || rates.total() > 1.0 {
        return Err("rates must be within 0..1 and add up to at most 1".into());
    }
    Ok(rates)
}

pub(super) async fn set_fault_rates(
    State(shared): State<Arc<Shared>>,
    body: axum::body::Bytes,
) -> Response {
    let parsed = serde_json::from_slice::<FaultRatesIn>(&body).map_err(|e| e.to_string());
    match parsed.and_then(to_rates) {
        Ok(rates) => {
            handle(shared).set_fault_rates(rates);
            json_response(200, json!({"faultRates": "set"}))
        }
        Err(e) => bad_request(e),
    }
}

/// Calls per minute by operation; missing ones get the documented limits.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct RateLimitsIn {
    place_order: Option<u32>,
    get_order_details: Option<u32>,
    get_vouchers: Option<u32>,
    get_balance: Option<u32>,
    get_order_history: Option<u32>,
}

pub(super) async fn set_rate_limits(
    State(shared): State<Arc<Shared>>,
    body: axum::body::Bytes,
) -> Response {
    let r = match serde_json::from_slice::<RateLimitsIn>(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(e),
    };
    let d = RateLimits::default();
    let limits = RateLimits {
        place_order: r.place_order.unwrap_or(d.place_order),
        get_order_details: r.get_order_details.unwrap_or(d.get_order_details),
        get_vouchers: r.get_vouchers.unwrap_or(d.get_vouchers),
        get_balance: r.get_balance.unwrap_or(d.get_balance),
        get_order_history: r.get_order_history.unwrap_or(d.get_order_history),
    };
    handle(shared).set_rate_limits(limits);
    json_response(200, json!({"rateLimits": "set"}))
}

/// `{"balance": "250.00"}` (a number or a decimal string).
pub(super) async fn set_balance(
    State(shared): State<Arc<Shared>>,
    Json(body): Json<Value>,
) -> Response {
    match body.get("balance").and_then(wire::read_decimal) {
        Some(b) if !b.is_sign_negative() => {
            handle(shared).set_balance(b);
            json_response(200, json!({"balance": b.to_string()}))
        }
        _ => bad_request("`balance` must be a non-negative decimal"),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnOff {
    on: bool,
}

/// `{"on": true}` refuses every access token until `{"on": false}`.
pub(super) async fn refuse_tokens(
    State(shared): State<Arc<Shared>>,
    body: axum::body::Bytes,
) -> Response {
    match serde_json::from_slice::<OnOff>(&body) {
        Ok(OnOff { on }) => {
            handle(shared).refuse_tokens(on);
            json_response(200, json!({"refusingTokens": on}))
        }
        Err(e) => bad_request(e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostileIn {
    kind: Option<String>,
    length: Option<usize>,
}

/// `{"kind": "nul"|"surrogate"|"long"|"all", "length": 100000}` turns hostile
/// text on for every answer and webhook; `{"kind": null}` or `{}` turns it off.
pub(super) async fn set_hostile(
    State(shared): State<Arc<Shared>>,
    body: axum::body::Bytes,
) -> Response {
    let h = match serde_json::from_slice::<HostileIn>(&body) {
        Ok(h) => h,
        Err(e) => return bad_request(e),
    };
    let text = match h.kind.as_deref() {
        None => None,
        Some(kind) => match HostileText::parse(kind, h.length) {
            Some(t) => Some(t),
            None => return bad_request(format!("unknown hostile kind {kind:?}")),
        },
    };
    let on = text.is_some();
    handle(shared).set_hostile_text(text);
    json_response(200, json!({"hostile": on}))
}

/// `{"answer": "notFound"}` (404 PLE10027) or `{"answer": "emptyList"}`.
pub(super) async fn set_empty_history(
    State(shared): State<Arc<Shared>>,
    Json(body): Json<Value>,
) -> Response {
    let parsed = body
        .get("answer")
        .and_then(Value::as_str)
        .and_then(EmptyHistory::parse);
    match parsed {
        Some(e) => {
            handle(shared).set_empty_history(e);
            json_response(200, json!({"emptyHistory": format!("{e:?}")}))
        }
        None => bad_request("`answer` must be `notFound` or `emptyList`"),
    }
}
