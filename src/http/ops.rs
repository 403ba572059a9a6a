//! Operational routes: liveness, readiness, the OpenAPI document, and the
//! problem+json fallbacks for unknown routes and methods.

use std::time::Duration;

use axum::{
    Json,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
};
use serde_json::json;

use super::{problem::ApiError, state::AppState};
use crate::{orders::OPERATOR_ACTION, store::tokens::TokenRow};

/// The OpenAPI document, built into the binary.
pub const OPENAPI_YAML: &str = include_str!("../../openapi.yaml");

/// `GET /healthz`: 200 while the process runs.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: 200 when the database answers, migrations are applied,
/// the Xoxoday token pair is usable, Xoxoday is not refusing every call and
/// no hold (a token refused even after a refresh, an insufficient balance)
/// pauses sending; else 503 with the reason.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let store = &state.orders.store;
    let check = tokio::time::timeout(Duration::from_secs(3), async {
        Ok::<_, crate::store::StoreError>((store.is_ready().await?, store.load_tokens().await?))
    })
    .await;
    let unavailable = StatusCode::SERVICE_UNAVAILABLE;
    let (status, detail, reason) = match check {
        Ok(Ok((false, _))) => (unavailable, "migrations pending", None),
        Ok(Ok((true, tokens))) => match token_problem(tokens.as_ref()) {
            None => (StatusCode::OK, "ready", None),
            Some(reason) => (unavailable, "xoxoday tokens unusable", Some(reason)),
        },
        Ok(Err(_)) | Err(_) => (unavailable, "database unavailable", None),
    };
    if status == StatusCode::OK {
        if let Ok(Some(reason)) = state.orders.account_pause().await {
            let body = json!({"status": "upstream paused", "reason": reason});
            return (StatusCode::SERVICE_UNAVAILABLE, Json(body));
        }
    }
    let body = match reason {
        Some(reason) => json!({"status": detail, "reason": reason}),
        None => json!({"status": detail}),
    };
    (status, Json(body))
}

/// Why the stored token pair is not usable, in operator terms.
fn token_problem(row: Option<&TokenRow>) -> Option<String> {
    let Some(row) = row else {
        return Some("no Xoxoday token pair is stored: set XOXODAY_ACCESS_TOKEN and XOXODAY_REFRESH_TOKEN and restart".into());
    };
    let error = row.last_refresh_error.as_deref().unwrap_or("unknown error");
    if row.operator_action_required {
        return Some(format!("{OPERATOR_ACTION} ({error})"));
    }
    let failing = row
        .last_refresh_failed_at
        .is_some_and(|failed| row.last_refresh_at.is_none_or(|ok| failed > ok));
    failing.then(|| format!("Xoxoday token refresh failing, retrying automatically ({error})"))
}

/// `GET /metrics`: Prometheus text; order gauges are counted on each scrape
/// (bounded, so a slow database cannot hang the scraper).
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let token = state
        .orders
        .tokens
        .health()
        .map(|h| (h.state, h.refreshes, h.refresh_failures));
    let counts = tokio::time::timeout(
        Duration::from_secs(2),
        state.orders.store.order_status_counts(),
    )
    .await;
    let counts = match counts {
        Ok(Ok(rows)) => Some(rows),
        Ok(Err(_)) | Err(_) => None,
    };
    let holds = tokio::time::timeout(Duration::from_secs(2), state.orders.store.active_holds())
        .await
        .ok()
        .and_then(Result::ok);
    let reasons: Option<Vec<&str>> = holds
        .as_ref()
        .map(|h| h.iter().map(|h| h.kind.as_str()).collect());
    crate::metrics::set_holds(reasons.as_deref());
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        crate::metrics::render(counts.as_deref(), token),
    )
}

/// `GET /openapi.yaml`.
pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI_YAML)
}

/// Any unknown route.
pub async fn not_found() -> ApiError {
    ApiError::NotFound
}

/// A known route with another method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
