//! Caller notifications (contract §9): endpoints, the outbox written by the
//! `orders_notify_status` trigger (migration 0036), lease claims, attempts
//! and the counts for `/metrics`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row as _;
use uuid::Uuid;

use super::{Store, StoreResult, orders::ORDER_COLUMNS, orders::OrderRow};
use crate::domain::Order;

/// Serializes claims over all replicas, so the per-endpoint cap is exact.
const CLAIM_LOCK: i64 = 0x6f67_775f_6e6f_7466;

/// A claimed event with where it goes.
#[derive(Debug)]
pub struct ClaimedEvent {
    /// Outbox position (orders events of one order).
    pub seq: i64,
    /// `webhook-id`, fixed at creation.
    pub event_id: String,
    /// `order.completed`, …
    pub event_type: String,
    /// When the status changed.
    pub created_at: DateTime<Utc>,
    /// The rendered body, once rendered.
    pub body: Option<String>,
    /// Attempts including this one.
    pub attempts: i32,
    /// The caller.
    pub caller_id: Uuid,
    /// The endpoint.
    pub url: String,
    /// Key id of the encrypted secret.
    pub secret_key_id: String,
    /// The encrypted secret.
    pub secret_encrypted: Vec<u8>,
}

/// One delivery attempt, as stored.
#[derive(Debug)]
pub struct AttemptRecord<'a> {
    /// Which event.
    pub seq: i64,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// How long it took.
    pub duration: Duration,
    /// `delivered`, `http_error`, `timeout`, `connect_error`, `refused_address`.
    pub outcome: &'static str,
    /// HTTP status, when one came.
    pub status_code: Option<u16>,
    /// What went wrong.
    pub error: Option<&'a str>,
    /// The start of the response body.
    pub response: Option<&'a str>,
}

/// Counts for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NotifyStats {
    /// Events not yet delivered nor finally failed.
    pub pending: i64,
    /// Seconds since the oldest pending event was created (0 when none).
    pub oldest_pending_age_seconds: f64,
    /// Events that failed for good.
    pub failed: i64,
}

impl Store {
    /// The id of the caller named `name`.
    pub async fn caller_id_by_name(&self, name: &str) -> StoreResult<Option<Uuid>> {
        Ok(
            sqlx::query_scalar("select caller_id from callers where name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Sets (or replaces) the caller's endpoint and its encrypted secret.
    pub async fn set_notify_endpoint(
        &self,
        caller_id: Uuid,
        url: &str,
        key_id: &str,
        secret_encrypted: &[u8],
    ) -> StoreResult<()> {
        sqlx::query(
            "insert into notify_endpoints (caller_id, url, secret_key_id, secret_encrypted)
             values ($1, $2, $3, $4)
             on conflict (caller_id) do update set url = excluded.url,
                 secret_key_id = excluded.secret_key_id,
                 secret_encrypted = excluded.secret_encrypted, removed_at = null",
        )
        .bind(caller_id)
        .bind(url)
        .bind(key_id)
        .bind(secret_encrypted)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes the endpoint and drops its pending events (replay can send
    /// them again); `None` when the caller has no active endpoint.
    pub async fn remove_notify_endpoint(&self, caller_id: Uuid) -> StoreResult<Option<u64>> {
        let mut tx = self.pool.begin().await?;
        let removed = sqlx::query(
            "update notify_endpoints set removed_at = now()
             where caller_id = $1 and removed_at is null",
        )
        .bind(caller_id)
        .execute(&mut *tx)
        .await?;
        if removed.rows_affected() == 0 {
            return Ok(None);
        }
        let dropped = sqlx::query(
            "update notify_events set state = 'dropped', finished_at = now(),
                 lease_token = null, lease_until = null
             where caller_id = $1 and state = 'pending'",
        )
        .bind(caller_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(dropped.rows_affected()))
    }

    /// Makes the caller's stored events created at or after `since` due
    /// again (same `webhook-id`, a fresh retry window and schedule); `None` when the
    /// caller has no active endpoint.
    pub async fn replay_notify_events(
        &self,
        caller_id: Uuid,
        since: DateTime<Utc>,
    ) -> StoreResult<Option<u64>> {
        let mut tx = self.pool.begin().await?;
        let active: Option<Uuid> = sqlx::query_scalar(
            "select caller_id from notify_endpoints
             where caller_id = $1 and removed_at is null for share",
        )
        .bind(caller_id)
        .fetch_optional(&mut *tx)
        .await?;
        if active.is_none() {
            return Ok(None);
        }
        let done = sqlx::query(
            "update notify_events set state = 'pending', next_attempt_at = now(),
                 window_from = now(), finished_at = null, attempts = 0
             where caller_id = $1 and created_at >= $2 and state <> 'pending'",
        )
        .bind(caller_id)
        .bind(since)
        .execute(&mut *tx)
        .await?;
        sqlx::query("select pg_notify('ogw_notify_events', '')")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(done.rows_affected()))
    }

    /// Claims up to `limit` due events under `token` for `lease`: only the
    /// oldest pending event of each order, only for active endpoints, and
    /// at most `cap` leased events per endpoint over all replicas.
    pub async fn claim_notify_events(
        &self,
        token: Uuid,
        lease: Duration,
        cap: i64,
        limit: i64,
    ) -> StoreResult<Vec<ClaimedEvent>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("select pg_advisory_xact_lock($1)")
            .bind(CLAIM_LOCK)
            .execute(&mut *tx)
            .await?;
        let rows = sqlx::query(
            "with busy as (
                 select caller_id, count(*) as n from notify_events
                 where state = 'pending' and lease_until is not null and lease_until > now()
                 group by caller_id
             ), cand as (
                 select e.seq, e.caller_id from notify_events e
                 join notify_endpoints n on n.caller_id = e.caller_id and n.removed_at is null
                 where e.state = 'pending' and e.next_attempt_at <= now()
                   and (e.lease_until is null or e.lease_until <= now())
                   and not exists (select 1 from notify_events p
                                   where p.order_id = e.order_id and p.state = 'pending'
                                     and p.seq < e.seq)
                   and e.caller_id not in (select caller_id from busy where n >= $3)
                 order by e.next_attempt_at, e.seq
                 limit 500
                 for update of e skip locked
             ), ranked as (
                 select c.seq, row_number() over (partition by c.caller_id order by c.seq)
                            + coalesce(b.n, 0) as slot
                 from cand c left join busy b on b.caller_id = c.caller_id
             ), chosen as (
                 select seq from ranked where slot <= $3 order by seq limit $4
             )
             update notify_events e
             set lease_token = $1, lease_until = now() + make_interval(secs => $2),
                 attempts = e.attempts + 1
             from chosen c, notify_endpoints n
             where e.seq = c.seq and n.caller_id = e.caller_id
             returning e.seq, e.event_id, e.event_type, e.created_at, e.body, e.attempts,
                       e.caller_id, n.url, n.secret_key_id, n.secret_encrypted",
        )
        .bind(token)
        .bind(lease.as_secs_f64())
        .bind(cap)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut claimed: Vec<ClaimedEvent> = rows
            .into_iter()
            .map(|r| ClaimedEvent {
                seq: r.get("seq"),
                event_id: r.get("event_id"),
                event_type: r.get("event_type"),
                created_at: r.get("created_at"),
                body: r.get("body"),
                attempts: r.get("attempts"),
                caller_id: r.get("caller_id"),
                url: r.get("url"),
                secret_key_id: r.get("secret_key_id"),
                secret_encrypted: r.get("secret_encrypted"),
            })
            .collect();
        claimed.sort_by_key(|c| c.seq);
        Ok(claimed)
    }

    /// The order as it was when the event was written.
    pub async fn notify_event_snapshot(&self, seq: i64) -> StoreResult<Order> {
        let sql = format!(
            "select {ORDER_COLUMNS} from notify_events e
             cross join lateral jsonb_populate_record(null::orders, e.snapshot) o
             where e.seq = $1"
        );
        let row: OrderRow = sqlx::query_as(&sql).bind(seq).fetch_one(&self.pool).await?;
        Ok(row.into_order())
    }

    /// Stores the rendered body unless one is stored already; returns the
    /// stored one, so every replica and retry signs the same bytes.
    pub async fn store_notify_body(&self, seq: i64, body: &str) -> StoreResult<String> {
        Ok(sqlx::query_scalar(
            "update notify_events set body = coalesce(body, $2) where seq = $1 returning body",
        )
        .bind(seq)
        .bind(body)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Appends one attempt.
    pub async fn record_notify_attempt(&self, a: &AttemptRecord<'_>) -> StoreResult<()> {
        sqlx::query(
            "insert into notify_attempts
                 (event_seq, started_at, duration_ms, outcome, status_code, error, response)
             values ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(a.seq)
        .bind(a.started_at)
        .bind(i32::try_from(a.duration.as_millis()).unwrap_or(i32::MAX))
        .bind(a.outcome)
        .bind(a.status_code.map(i32::from))
        .bind(a.error)
        .bind(a.response)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ends the claim `token` of event `seq`: delivered, or due again after
    /// `retry_in`, or failed for good once `retry_for` has passed since the
    /// window started. Returns the new state (`None`: the claim was lost).
    pub async fn finish_notify_event(
        &self,
        seq: i64,
        token: Uuid,
        delivered: bool,
        retry_in: Duration,
        retry_for: Duration,
    ) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar(
            "update notify_events e set
                 state = case when $3 then 'delivered'
                              when e.window_from + make_interval(secs => $5) <= now() then 'failed'
                              else 'pending' end,
                 finished_at = case when $3 or e.window_from + make_interval(secs => $5) <= now()
                                    then now() end,
                 next_attempt_at = case when $3 then e.next_attempt_at
                                        else now() + make_interval(secs => $4) end,
                 lease_token = null, lease_until = null
             where e.seq = $1 and e.lease_token = $2 and e.state = 'pending'
             returning e.state",
        )
        .bind(seq)
        .bind(token)
        .bind(delivered)
        .bind(retry_in.as_secs_f64())
        .bind(retry_for.as_secs_f64())
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Pending and failed events, and the age of the oldest pending one
    /// (partial indexes: O(pending + failed)).
    pub async fn notify_stats(&self) -> StoreResult<NotifyStats> {
        let (pending, oldest_pending_age_seconds, failed): (i64, f64, i64) = sqlx::query_as(
            "select (select count(*) from notify_events where state = 'pending'),
                    (select coalesce(extract(epoch from now() - min(created_at)), 0)::float8
                     from notify_events where state = 'pending'),
                    (select count(*) from notify_events where state = 'failed')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(NotifyStats {
            pending,
            oldest_pending_age_seconds,
            failed,
        })
    }
}
