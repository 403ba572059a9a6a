//! The one error type of the HTTP API and its RFC 9457 rendering
//! (`application/problem+json`). Client errors say what to fix; server
//! errors are opaque to the client and logged once, here, with their cause.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

use crate::{
    domain::FieldError,
    orders::{ServiceError, view::ViewError},
};

/// Base of every problem `type` URI.
pub const PROBLEM_BASE: &str = "https://order-gateway/problems/";

/// Everything a route can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body (or query) failed validation.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// A header is missing or malformed.
    #[error("invalid header {header}: {message}")]
    InvalidHeader {
        /// Header name.
        header: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Missing, unknown or revoked API key.
    #[error("unauthorized")]
    Unauthorized,
    /// No such route or order (or not the caller's).
    #[error("not found")]
    NotFound,
    /// The route exists with other methods.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The body exceeds the limit.
    #[error("payload too large")]
    PayloadTooLarge,
    /// The body is not JSON.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// The idempotency key was used with another request.
    #[error("idempotency key reused")]
    IdempotencyMismatch,
    /// The database is unavailable. After intake this may follow a committed
    /// insert (contract §5), so the text sends the caller back to the same key.
    #[error("service unavailable: {0}")]
    Unavailable(#[source] anyhow::Error),
    /// A bug or broken invariant.
    #[error("internal error: {0}")]
    Internal(#[source] anyhow::Error),
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        if e.is_unavailable() {
            Self::Unavailable(e.into())
        } else {
            Self::Internal(e.into())
        }
    }
}

impl From<ViewError> for ApiError {
    fn from(e: ViewError) -> Self {
        match e {
            ViewError::Service(s) => s.into(),
            other => Self::Internal(other.into()),
        }
    }
}

#[derive(Serialize)]
struct Problem<'a> {
    r#type: String,
    title: &'a str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<Vec<FieldError>>,
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str, String) {
        use StatusCode as S;
        match self {
            Self::Validation(errs) => (
                S::BAD_REQUEST,
                "validation",
                "Invalid request",
                format!("{} field(s) failed validation", errs.len()),
            ),
            Self::InvalidHeader { header, message } => (
                S::BAD_REQUEST,
                "invalid-header",
                "Invalid header",
                format!("{header} {message}"),
            ),
            Self::Unauthorized => (
                S::UNAUTHORIZED,
                "unauthorized",
                "Unauthorized",
                "a valid API key is required: Authorization: Bearer <key>".into(),
            ),
            Self::NotFound => (
                S::NOT_FOUND,
                "not-found",
                "Not found",
                "no such resource".into(),
            ),
            Self::MethodNotAllowed => (
                S::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                "this route does not accept that method".into(),
            ),
            Self::PayloadTooLarge => (
                S::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
                format!("the body must be at most {} bytes", super::MAX_BODY_BYTES),
            ),
            Self::UnsupportedMediaType => (
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                "send the body as Content-Type: application/json".into(),
            ),
            Self::IdempotencyMismatch => (
                S::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency key reused",
                "this Idempotency-Key was used with a different request; nothing changed".into(),
            ),
            Self::Unavailable(_) => (
                S::SERVICE_UNAVAILABLE,
                "service-unavailable",
                "Service unavailable",
                "the database is unavailable. If this request creates an order, the order \
                 may have been stored before the failure: retry only with the SAME \
                 Idempotency-Key (never a new key), which returns the stored order or \
                 creates it once"
                    .into(),
            ),
            Self::Internal(_) => (
                S::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
                "an internal error occurred; it has been logged".into(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::Internal(e) => tracing::error!(error = ?e, "request failed"),
            Self::Unavailable(e) => tracing::warn!(error = %e, "database unavailable"),
            _ => {}
        }
        let (status, slug, title, detail) = self.parts();
        let errors = match self {
            Self::Validation(errs) => Some(errs),
            Self::InvalidHeader { header, message } => Some(vec![FieldError::new(header, message)]),
            _ => None,
        };
        let body = Problem {
            r#type: format!("{PROBLEM_BASE}{slug}"),
            title,
            status: status.as_u16(),
            detail,
            errors,
        };
        let mut resp = (status, Json(body)).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match status {
            StatusCode::UNAUTHORIZED => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        resp
    }
}
