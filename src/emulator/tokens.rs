//! OAuth (api-reference §2): the bearer check on `/v1/oauth/api`, the
//! refresh endpoint `POST /chef/v1/oauth/token/user` and the validate
//! endpoint `GET /chef/v1/oauth/token`.
//!
//! Decision (UNCONFIRMED upstream): a refresh rotates *both* tokens and the
//! old pair stops working at once, the strictest documented reading, so a
//! client that does not persist the new pair immediately is caught.

use std::sync::Arc;

use axum::{
    Extension,
    body::Bytes,
    extract::State,
    http::{HeaderMap, header::AUTHORIZATION},
    response::Response,
};
use serde_json::{Value, json};

use super::{
    faults::FaultOp,
    server::{self, ConnKill},
    state::{ACCESS_TTL_SECS, REFRESH_TTL_SECS, Shared},
    wire::{self, oauth_error},
};

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let raw = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = raw.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// `None` when the request carries the current access token; else the 401
/// answer: `invalid_request` without a usable header, `invalid_token` with
/// a wrong, rotated or expired token.
pub(crate) fn bearer_refusal(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    let Some(token) = bearer(headers) else {
        return Some(oauth_error(
            401,
            "invalid_request",
            "missing/invalid parameters authorization header",
        ));
    };
    (!shared.lock().tokens.access_ok(token)).then(wire::invalid_token)
}

/// `POST /chef/v1/oauth/token/user` with `grant_type=refresh_token`.
pub(crate) async fn refresh(
    State(shared): State<Arc<Shared>>,
    kill: Option<Extension<ConnKill>>,
    body: Bytes,
) -> Response {
    let fault = {
        let mut g = shared.lock();
        g.tokens.refresh_calls += 1;
        g.faults.take(FaultOp::RefreshToken, None)
    };
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    server::apply(fault, kill.map(|Extension(k)| k), move || {
        rotate(&shared, &body)
    })
    .await
}

fn rotate(shared: &Shared, body: &Value) -> Response {
    let field = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or("");
    if field("grant_type") != "refresh_token" {
        return oauth_error(400, "invalid_request", "grant_type must be refresh_token");
    }
    if field("client_id") != shared.client_id || field("client_secret") != shared.client_secret {
        return oauth_error(401, "unauthorized_client", "invalid client credentials");
    }
    let mut g = shared.lock();
    if field("refresh_token").is_empty() || field("refresh_token") != g.tokens.refresh {
        return wire::invalid_token();
    }
    g.tokens.rotate();
    let t = &g.tokens;
    let ms = |secs: u64| (t.issued_at_ms + i64::try_from(secs * 1000).unwrap_or(0)).to_string();
    let body = json!({
        "access_token": t.access,
        "token_type": "bearer",
        "expires_in": ACCESS_TTL_SECS,
        "refresh_token": t.refresh,
        "access_token_expiry": ms(ACCESS_TTL_SECS),
        "refresh_token_expiry": ms(REFRESH_TTL_SECS),
    });
    wire::json_response(200, body)
}

/// `GET /chef/v1/oauth/token`: `expires_in` is the remaining lifetime in
/// seconds (one of the documented readings).
pub(crate) async fn validate(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(refusal) = bearer_refusal(&shared, &headers) {
        return refusal;
    }
    let g = shared.lock();
    let remaining = ACCESS_TTL_SECS.saturating_sub(g.tokens.issued_at.elapsed().as_secs());
    let body = json!({"access_token": g.tokens.access, "token_type": "bearer",
        "expires_in": remaining});
    wire::json_response(200, body)
}
