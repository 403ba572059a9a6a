//! Operational routes: liveness, readiness, the OpenAPI document, and the
//! problem+json fallbacks for unknown routes and methods.

use axum::{
    Json,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
};
use serde_json::json;

use super::{problem::ApiError, state::AppState};
use crate::orders::health::Readiness;

/// The OpenAPI document, built into the binary.
pub const OPENAPI_YAML: &str = include_str!("../../openapi.yaml");

/// `GET /healthz`: 200 while the process runs.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: 200 when the database answers, migrations are applied,
/// the Xoxoday token pair is usable, Xoxoday is not refusing every call and
/// no hold (a token refused even after a refresh, an insufficient balance)
/// pauses sending; else 503 with the reason. A low wallet balance is a
/// `warnings` detail of a 200, never a failure.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let unavailable = StatusCode::SERVICE_UNAVAILABLE;
    let (status, body) = match state.queries().readiness().await {
        Readiness::Ready => {
            let warnings = state.queries().readiness_warnings().await;
            let body = if warnings.is_empty() {
                json!({"status": "ready"})
            } else {
                json!({"status": "ready", "warnings": warnings})
            };
            (StatusCode::OK, body)
        }
        Readiness::MigrationsPending => (unavailable, json!({"status": "migrations pending"})),
        Readiness::DatabaseUnavailable => (unavailable, json!({"status": "database unavailable"})),
        Readiness::TokensUnusable(reason) => (
            unavailable,
            json!({"status": "xoxoday tokens unusable", "reason": reason}),
        ),
        Readiness::Paused(reason) => (
            unavailable,
            json!({"status": "upstream paused", "reason": reason}),
        ),
    };
    (status, Json(body))
}

/// `GET /metrics`: Prometheus text; order gauges are counted on each scrape
/// (bounded, so a slow database cannot hang the scraper).
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.queries().metrics_text().await + &state.notify_metrics_text().await,
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
