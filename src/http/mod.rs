//! The HTTP API (contract §5), axum only: routing, middleware, extractors,
//! problem+json. No SQL and no upstream calls here.

use std::time::Duration;

use axum::{
    Router,
    extract::{DefaultBodyLimit, MatchedPath, Request},
    http::HeaderName,
    response::{IntoResponse, Response},
    routing::get,
};
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    timeout::TimeoutLayer,
    trace::{DefaultOnResponse, TraceLayer},
};

/// Request extractors.
pub mod extract;
/// Header limits.
pub mod limits;
/// Health, readiness, OpenAPI, fallbacks.
pub mod ops;
/// Order routes and wire types.
pub mod orders;
/// The API error type.
pub mod problem;
/// Shared state.
pub mod state;
/// The Xoxoday delivery webhook.
pub mod webhooks;

pub use state::AppState;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Bound on any request (above the 60 s longest `Prefer: wait`).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(90);

/// The full router with its middleware.
pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    Router::new()
        .route(
            "/v1/orders",
            get(orders::list_orders).post(orders::create_order),
        )
        .route("/v1/orders/{id}", get(orders::get_order))
        .route(
            "/v1/webhooks/xoxoday",
            axum::routing::post(webhooks::receive_xoxoday_webhook)
                .layer(DefaultBodyLimit::max(webhooks::MAX_WEBHOOK_BYTES)),
        )
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/openapi.yaml", get(ops::openapi))
        .route("/metrics", get(ops::metrics))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .with_state(state)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(limits::limit_headers))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(make_span)
                // one line per request (status, latency) in the request span
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO))
                .on_failure(()),
        )
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

fn make_span(req: &Request) -> tracing::Span {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(req.uri().path(), MatchedPath::as_str);
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "http.request",
        http.method = %req.method(),
        http.route = route,
        request_id,
        caller = tracing::field::Empty,
        caller.id = tracing::field::Empty,
    )
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    problem::ApiError::Internal(anyhow::anyhow!("handler panicked")).into_response()
}
