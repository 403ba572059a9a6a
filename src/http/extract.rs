//! Extractors own the request contract: bearer auth, `Idempotency-Key`,
//! `Prefer: wait=N`, and a JSON body (media type and size checked).

use std::time::Duration;

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request},
    http::{header, request::Parts},
};

use super::{problem::ApiError, state::AppState};
use crate::domain::{Caller, IdempotencyKey};

/// The authenticated caller.
pub struct AuthCaller(pub Caller);

impl FromRequestParts<AppState> for AuthCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|k| !k.is_empty())
            .ok_or(ApiError::Unauthorized)?;
        let caller = state.queries().authenticate(key).await?;
        let caller = caller.ok_or(ApiError::Unauthorized)?;
        let span = tracing::Span::current();
        span.record("caller", caller.name.as_str());
        span.record("caller.id", tracing::field::display(&caller.id));
        Ok(Self(caller))
    }
}

/// The required `Idempotency-Key` header.
pub struct IdempotencyKeyHeader(pub IdempotencyKey);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKeyHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let bad = |message: &str| ApiError::InvalidHeader {
            header: "Idempotency-Key",
            message: message.into(),
        };
        let mut values = parts.headers.get_all("idempotency-key").iter();
        let value = values.next().ok_or_else(|| bad("is required"))?;
        if values.next().is_some() {
            return Err(bad("must be sent once"));
        }
        let text = value
            .to_str()
            .map_err(|_| bad("must contain only visible ASCII characters (no spaces)"))?;
        IdempotencyKey::parse(text).map(Self).map_err(|m| bad(&m))
    }
}

/// `Prefer: wait=N` (0–60 seconds), default 10.
pub struct PreferWait(pub Duration);

impl PreferWait {
    /// Used when the header does not ask.
    pub const DEFAULT: Duration = Duration::from_secs(10);
    /// Longest accepted wait.
    pub const MAX_SECS: u64 = 60;
}

impl<S: Send + Sync> FromRequestParts<S> for PreferWait {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let bad = || ApiError::InvalidHeader {
            header: "Prefer",
            message: format!(
                "wait must be a whole number of seconds from 0 to {}",
                Self::MAX_SECS
            ),
        };
        let mut wait = None;
        for value in parts.headers.get_all("prefer") {
            let text = value.to_str().map_err(|_| bad())?;
            for pref in text.split([',', ';']) {
                let Some((name, val)) = pref.split_once('=') else {
                    continue;
                };
                if name.trim().eq_ignore_ascii_case("wait") {
                    let secs: u64 = val.trim().trim_matches('"').parse().map_err(|_| bad())?;
                    if secs > Self::MAX_SECS || wait.is_some() {
                        return Err(bad());
                    }
                    wait = Some(Duration::from_secs(secs));
                }
            }
        }
        Ok(Self(wait.unwrap_or(Self::DEFAULT)))
    }
}

/// A body sent as `application/json`, within the size limit.
pub struct JsonBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|m| {
                let m = m.trim().to_ascii_lowercase();
                m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::Validation(vec![crate::domain::FieldError::new("body", r.body_text())])
            }
        })?;
        Ok(Self(bytes))
    }
}
