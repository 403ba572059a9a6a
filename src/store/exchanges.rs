//! The audit of every Xoxoday exchange (contract §2.4): a row inserted with
//! the request before sending, completed once with the response or error.
//! The row and the shared rate slot are committed together, so no call is
//! sent without both and no slot is spent on an unsent call. A placeOrder
//! takes its slot first and stamps the attempt after it (issue 11); a
//! lookup takes it last.
//! The plaintext copies of the answer pass `domain::safe_text` (a NUL from
//! Xoxoday must not fail the write-back); the sealed body is the raw bytes.

use super::status::{PLACING, RECONCILING};
use std::time::Duration;
use tokio::time::Instant;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    Store, StoreResult,
    proof::HOOKED,
    rate_limit::{Slot, SlotAsk, try_take_slot},
};
use crate::domain::{
    OrderId,
    safe_text::{pg_json, pg_opt},
};

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

/// What beginning a call did. Only [`Begin::Send`] allows the send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begin {
    /// Row written, slot taken, committed: send now.
    Send {
        /// This attempt's number.
        attempt: i32,
        /// Read just before the slot statement, so no later than the
        /// slot's stamp: the send margin counts from here.
        stamped_after: Instant,
    },
    /// No rate slot (or a pause): nothing was written; ask again after this.
    NoSlot(Duration),
    /// The lease is no longer ours: nothing was written; do not send.
    LeaseLost,
    /// A stored delivery webhook proves Xoxoday has the order (it landed
    /// after the claim, while `placing`): nothing was sent; the order is
    /// `reconciling`, due now, and is never placed again.
    Hooked,
}

impl Store {
    /// Records a placeOrder attempt about to be sent, under the caller's
    /// lease, with its rate slot, in one transaction. The slot comes first:
    /// without one the transaction rolls back (no attempt counted, no row,
    /// `lease_sent` untouched). Then, with every stamp read after the slot
    /// lock is held (a wait for the lock must not leave a lease or a send
    /// time older than the send: adversarial review of issue 11), it bumps
    /// `attempts`, stamps `last_place_started_at` (and clears
    /// `last_place_ended_at`: an attempt is in flight) and `first_sent_at`
    /// once, sets `lease_sent`, renews the lease for `lease`, and inserts
    /// the exchange row. Taking the lock before writing the order row also
    /// means no transaction that holds the lock waits on one that waits for
    /// it (a new order's insert holds the lock after its own row only).
    pub async fn begin_place_attempt(
        &self,
        order: OrderId,
        lease_token: Uuid,
        lease: Duration,
        start: ExchangeStart<'_>,
        slot: SlotAsk,
    ) -> StoreResult<Begin> {
        let mut tx = self.pool.begin().await?;
        let stamped_after = Instant::now();
        let granted = try_take_slot(&mut *tx, slot.operation, slot.per_minute, slot.window).await?;
        if let Slot::Wait(wait) = granted {
            tx.rollback().await?;
            return Ok(Begin::NoSlot(wait));
        }
        // A webhook stored after the claim (while `placing`, when it
        // schedules nothing) proves the order exists: never send then.
        let sql = format!(
            "with o as (
               update orders o set attempts = attempts + 1,
                 last_place_started_at = clock_timestamp(),
                 first_sent_at = coalesce(first_sent_at, clock_timestamp()),
                 last_place_ended_at = null, lease_sent = true,
                 lease_until = clock_timestamp() + make_interval(secs => $8)
               where order_id = $1 and status = {PLACING} and lease_token = $2 and not {HOOKED}
               returning attempts)
             insert into upstream_exchanges
               (exchange_id, order_id, operation, attempt, method, url, request_body)
             select $3, $1, $4, o.attempts, $5, $6, $7 from o
             returning attempt"
        );
        let attempt: Option<i32> = sqlx::query_scalar(&sql)
            .bind(order.as_uuid())
            .bind(lease_token)
            .bind(start.exchange_id)
            .bind(start.operation)
            .bind(start.method)
            .bind(start.url)
            .bind(start.request_body)
            .bind(lease.as_secs_f64())
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(attempt) = attempt {
            tx.commit().await?;
            return Ok(Begin::Send {
                attempt,
                stamped_after,
            });
        }
        // Nothing to send: the slot goes back.
        tx.rollback().await?;
        let hooked = sqlx::query(&format!(
            "update orders o set status = {RECONCILING}, next_check_at = now(),
               status_reason = 'a stored delivery webhook proves Xoxoday has this order; \
                                never placed again',
               lease_token = null, lease_until = null, lease_sent = false
             where o.order_id = $1 and o.status = {PLACING} and o.lease_token = $2
               and {HOOKED}"
        ))
        .bind(order.as_uuid())
        .bind(lease_token)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(if hooked == 1 {
            Begin::Hooked
        } else {
            Begin::LeaseLost
        })
    }
}

/// Takes the slot as the last step of `tx` and commits: `Ok` with an
/// instant read just before the slot statement (no later than its stamp);
/// without one, rolls back and returns the wait.
pub(crate) async fn take_slot_or_roll_back(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    ask: SlotAsk,
) -> StoreResult<Result<Instant, Duration>> {
    let stamped_after = Instant::now();
    let slot = try_take_slot(&mut *tx, ask.operation, ask.per_minute, ask.window).await?;
    match slot {
        Slot::Granted => {
            tx.commit().await?;
            Ok(Ok(stamped_after))
        }
        Slot::Wait(wait) => {
            tx.rollback().await?;
            Ok(Err(wait))
        }
    }
}

impl Store {
    /// Records an exchange that belongs to no order (token refresh, balance
    /// probe) in full, in its own short transaction. `request_sealed` is the
    /// raw request, when it holds secrets.
    pub async fn record_exchange(
        &self,
        start: ExchangeStart<'_>,
        request_sealed: Option<(Vec<u8>, &str)>,
        end: &ExchangeEnd,
    ) -> StoreResult<()> {
        let (sealed, key_id) = request_sealed.unzip();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "insert into upstream_exchanges (exchange_id, operation, method, url, request_body,
               request_body_encrypted, request_key_id)
             values ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(start.exchange_id)
        .bind(start.operation)
        .bind(start.method)
        .bind(start.url)
        .bind(&start.request_body)
        .bind(sealed)
        .bind(key_id)
        .execute(&mut *tx)
        .await?;
        complete_exchange(&mut tx, start.exchange_id, end).await?;
        tx.commit().await?;
        Ok(())
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
    .bind(pg_json(&end.request_headers))
    .bind(end.started_at)
    .bind(end.duration_ms)
    .bind(end.response_status)
    .bind(end.response_headers.as_ref().map(pg_json))
    .bind(pg_opt(end.body_redacted.as_deref()))
    .bind(&end.body_encrypted)
    .bind(&end.key_id)
    .bind(pg_opt(end.error.as_deref()))
    .bind(&end.outcome)
    .execute(conn)
    .await?;
    Ok(())
}
