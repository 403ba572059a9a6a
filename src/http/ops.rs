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

/// The OpenAPI document, built into the binary.
pub const OPENAPI_YAML: &str = include_str!("../../openapi.yaml");

/// `GET /healthz`: 200 while the process runs.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: 200 when the database answers and migrations are applied
/// and Xoxoday is not refusing every call (then 503 with the reason).
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let check = tokio::time::timeout(Duration::from_secs(3), state.orders.store.is_ready()).await;
    let (status, detail) = match check {
        Ok(Ok(true)) => (StatusCode::OK, "ready"),
        Ok(Ok(false)) => (StatusCode::SERVICE_UNAVAILABLE, "migrations pending"),
        Ok(Err(_)) | Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database unavailable"),
    };
    if status == StatusCode::OK {
        if let Ok(Some(reason)) = state.orders.account_pause().await {
            let body = json!({"status": "upstream paused", "reason": reason});
            return (StatusCode::SERVICE_UNAVAILABLE, Json(body));
        }
    }
    (status, Json(json!({"status": detail})))
}

/// `GET /metrics`: Prometheus text; order gauges are counted on each scrape
/// (bounded, so a slow database cannot hang the scraper).
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let counts = tokio::time::timeout(
        Duration::from_secs(2),
        state.orders.store.order_status_counts(),
    )
    .await;
    let counts = match counts {
        Ok(Ok(rows)) => Some(rows),
        Ok(Err(_)) | Err(_) => None,
    };
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        crate::metrics::render(counts.as_deref()),
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
