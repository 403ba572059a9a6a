//! Header limits for hostile input (issue 5): hyper already caps the whole
//! head (~400 KB) and the header count (100); this refuses far less, before
//! any handler or extractor runs, with a problem+json 400 naming the limit.
//! Body size is `DefaultBodyLimit` ([`super::MAX_BODY_BYTES`]); field and
//! `userMeta` limits live in `domain::NewOrder::parse`.

use axum::{
    extract::Request,
    middleware::Next,
    response::{IntoResponse as _, Response},
};

use super::problem::ApiError;

/// Most bytes of all header names and values together.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most header fields.
pub const MAX_HEADERS: usize = 64;

/// Refuses requests whose headers exceed [`MAX_HEADER_BYTES`] or [`MAX_HEADERS`].
pub async fn limit_headers(req: Request, next: Next) -> Response {
    let headers = req.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if bytes > MAX_HEADER_BYTES || headers.len() > MAX_HEADERS {
        return ApiError::InvalidHeader {
            header: "request headers",
            message: format!(
                "must total at most {MAX_HEADER_BYTES} bytes in at most {MAX_HEADERS} fields"
            ),
        }
        .into_response();
    }
    next.run(req).await
}
