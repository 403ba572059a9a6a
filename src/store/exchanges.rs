//! The audit of every Xoxoday exchange (contract §2.4): a row inserted with
//! the request before sending, completed once with the response or error.

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Store, StoreResult};
use crate::domain::OrderId;

/// The request half, written before the call.
#[derive(Debug)]
pub struct ExchangeStart<'a> {
    /// New row id.
    pub exchange_id: Uuid,
    /// `place_order`, `get_order_details`, …
    pub operation: &'a str,
    /// HTTP method.
    pub method: &'a str,
    /// Full URL.
    pub url: &'a str,
    /// Request body (redacted where secret).
    pub request_body: serde_json::Value,
}

/// The answer half, written once after the call.
#[derive(Debug, Default)]
pub struct ExchangeEnd {
    /// Request headers as sent, `Authorization` redacted.
    pub request_headers: serde_json::Value,
    /// When sending began.
    pub started_at: Option<DateTime<Utc>>,
    /// Wall time in milliseconds.
    pub duration_ms: i32,
    /// HTTP status, when an answer came.
    pub response_status: Option<i32>,
    /// Response headers that matter.
    pub response_headers: Option<serde_json::Value>,
    /// Body with vouchers and tokens masked.
    pub body_redacted: Option<String>,
    /// Raw body, encrypted.
    pub body_encrypted: Option<Vec<u8>>,
    /// Key of `body_encrypted`.
    pub key_id: Option<String>,
    /// Transport or decode error.
    pub error: Option<String>,
    /// Our classification (`placed`, `rejected`, `unknown`, …).
    pub outcome: String,
}

impl Store {
    /// Records a placeOrder attempt about to be sent, under the caller's
    /// lease: bumps `attempts`, stamps `last_place_started_at` (and clears
    /// `last_place_ended_at`: an attempt is in flight) and `first_sent_at`
    /// once, renews the
    /// lease for `lease` from now (so it covers the call itself) and inserts
    /// the exchange row, in one statement. `None` (nothing written) when the
    /// lease is no longer ours, in which case the call must not be sent.
    pub async fn begin_place_attempt(
        &self,
        order: OrderId,
        lease_token: Uuid,
        lease: Duration,
        start: ExchangeStart<'_>,
    ) -> StoreResult<Option<i32>> {
        Ok(sqlx::query_scalar(
            "with o as (
               update orders set attempts = attempts + 1, last_place_started_at = now(),
                 first_sent_at = coalesce(first_sent_at, now()),
                 last_place_ended_at = null, lease_sent = true, lease_until = now() + make_interval(secs => $8)
               where order_id = $1 and status = 'placing' and lease_token = $2
               returning attempts)
             insert into upstream_exchanges
               (exchange_id, order_id, operation, attempt, method, url, request_body)
             select $3, $1, $4, o.attempts, $5, $6, $7 from o
             returning attempt",
        )
        .bind(order.as_uuid())
        .bind(lease_token)
        .bind(start.exchange_id)
        .bind(start.operation)
        .bind(start.method)
        .bind(start.url)
        .bind(start.request_body)
        .bind(lease.as_secs_f64())
        .fetch_optional(&self.pool)
        .await?)
    }
}

/// Completes an exchange row inside the caller's transaction.
pub(crate) async fn complete_exchange(
    conn: &mut sqlx::PgConnection,
    exchange_id: Uuid,
    end: &ExchangeEnd,
) -> StoreResult<()> {
    sqlx::query(
        "update upstream_exchanges set
           request_headers = $2, started_at = coalesce($3, started_at), duration_ms = $4,
           response_status = $5, response_headers = $6, response_body_redacted = $7,
           response_body_encrypted = $8, key_id = $9, error = $10, outcome = $11,
           completed_at = now()
         where exchange_id = $1 and completed_at is null",
    )
    .bind(exchange_id)
    .bind(&end.request_headers)
    .bind(end.started_at)
    .bind(end.duration_ms)
    .bind(end.response_status)
    .bind(&end.response_headers)
    .bind(&end.body_redacted)
    .bind(&end.body_encrypted)
    .bind(&end.key_id)
    .bind(&end.error)
    .bind(&end.outcome)
    .execute(conn)
    .await?;
    Ok(())
}
