//! The books audit's storage (issue 12, contract §8): runs and findings
//! (read by finance through `finance_audit_findings`), our side of the
//! books for a window, the audit rows of its getOrderHistory calls (each
//! inserted with its rate slot in one transaction, like every other call),
//! and the lease that lets one replica at a time run the scheduled audit.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use uuid::Uuid;

use super::{
    Store, StoreResult,
    exchanges::{ExchangeEnd, ExchangeStart, complete_exchange, take_slot_or_roll_back},
    rate_limit::SlotAsk,
};
use crate::domain::safe_text::{pg_json, pg_opt};

/// Our side of one order, as the audit compares it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BookOrder {
    /// Our order id.
    pub order_id: Uuid,
    /// Our poNumber.
    pub po_number: String,
    /// Our status.
    pub status: String,
    /// What Xoxoday said it charged, when it did.
    pub amount_charged: Option<Decimal>,
    /// Its currency.
    pub currency_code: Option<String>,
    /// Xoxoday's order id, when known.
    pub xoxoday_order_id: Option<i64>,
    /// When we accepted it.
    pub created_at: DateTime<Utc>,
}

/// One finding, as stored.
#[derive(Debug, Clone)]
pub struct NewFinding<'a> {
    /// The poNumber (`""` for an upstream order without one).
    pub po_number: &'a str,
    /// `unknown_upstream`, `spent_but_not_completed`, ….
    pub kind: &'a str,
    /// Our order, or `None`.
    pub ours: Option<&'a Value>,
    /// Xoxoday's orders for the poNumber.
    pub theirs: &'a Value,
}

/// The last successful run: when it finished and its findings by kind.
pub type LastAudit = (DateTime<Utc>, Vec<(String, i64)>);

/// How a run ended.
#[derive(Debug, Clone, Copy)]
pub enum RunEnd<'a> {
    /// It compared the books (findings, possibly none).
    Compared {
        /// getOrderHistory pages read.
        pages: i32,
        /// Xoxoday orders read.
        upstream_orders: i32,
        /// Number of findings.
        findings: usize,
    },
    /// It could not run to the end.
    Failed(&'a str),
}

const BOOK_COLUMNS: &str = "order_id, po_number, status, amount_charged, currency_code,
    xoxoday_order_id, created_at";

impl Store {
    /// Starts a run over `from`..=`to` (UTC days).
    pub async fn start_audit_run(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        started_by: &str,
    ) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(
            "insert into books_audit_runs (from_day, to_day, started_by) values ($1, $2, $3)
             returning audit_run_id",
        )
        .bind(from)
        .bind(to)
        .bind(started_by)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Ends a run: its findings and its outcome, in one transaction.
    pub async fn finish_audit_run(
        &self,
        run: i64,
        findings: &[NewFinding<'_>],
        end: RunEnd<'_>,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        for f in findings {
            sqlx::query(
                "insert into books_audit_findings (audit_run_id, po_number, kind, ours, theirs)
                 values ($1, $2, $3, $4, $5)",
            )
            .bind(run)
            .bind(crate::domain::safe_text::pg_text(f.po_number).into_owned())
            .bind(f.kind)
            .bind(f.ours.map(pg_json))
            .bind(pg_json(f.theirs))
            .execute(&mut *tx)
            .await?;
        }
        let (outcome, error, pages, upstream) = match end {
            RunEnd::Compared {
                pages,
                upstream_orders,
                findings,
            } => {
                let outcome = if findings == 0 { "agree" } else { "findings" };
                (outcome, None, pages, upstream_orders)
            }
            RunEnd::Failed(e) => ("failed", Some(e), 0, 0),
        };
        sqlx::query(
            "update books_audit_runs set outcome = $2, error = $3, pages = $4,
               upstream_orders = $5, finished_at = now()
             where audit_run_id = $1",
        )
        .bind(run)
        .bind(outcome)
        .bind(pg_opt(error))
        .bind(pages)
        .bind(upstream)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Our orders accepted in `from`..`until` (database clock, UTC).
    pub async fn book_orders_between(
        &self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<Vec<BookOrder>> {
        Ok(sqlx::query_as(&format!(
            "select {BOOK_COLUMNS} from orders where created_at >= $1 and created_at < $2"
        ))
        .bind(from)
        .bind(until)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Our orders with these poNumbers, whenever accepted.
    pub async fn book_orders_by_po(&self, pos: &[String]) -> StoreResult<Vec<BookOrder>> {
        Ok(sqlx::query_as(&format!(
            "select {BOOK_COLUMNS} from orders where po_number = any($1)"
        ))
        .bind(pos)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Inserts the audit row of a call that belongs to no order and takes its
    /// rate slot, in one transaction: `Ok` with an instant no later than the
    /// slot's stamp, `Err(wait)` (nothing written) when the budget has no
    /// slot now.
    pub async fn begin_unowned_call(
        &self,
        start: ExchangeStart<'_>,
        slot: SlotAsk,
    ) -> StoreResult<Result<tokio::time::Instant, Duration>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "insert into upstream_exchanges (exchange_id, operation, method, url, request_body)
             values ($1, $2, $3, $4, $5)",
        )
        .bind(start.exchange_id)
        .bind(start.operation)
        .bind(start.method)
        .bind(start.url)
        .bind(&start.request_body)
        .execute(&mut *tx)
        .await?;
        take_slot_or_roll_back(tx, slot).await
    }

    /// Completes the audit row of [`Store::begin_unowned_call`].
    pub async fn finish_unowned_call(&self, id: Uuid, end: &ExchangeEnd) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await?;
        complete_exchange(&mut conn, id, end).await
    }

    /// Takes the scheduled audit's lease when no replica holds it and the
    /// last scheduled run started at least `interval` ago (1 s of slack for
    /// replicas on the same beat).
    pub async fn claim_books_schedule(
        &self,
        interval: Duration,
        lease: Duration,
    ) -> StoreResult<Option<DateTime<Utc>>> {
        let claimed = sqlx::query_scalar(
            "update books_audit_schedule set last_started_at = clock_timestamp(),
               lease_until = now() + make_interval(secs => $2)
             where schedule_id = 1 and (lease_until is null or lease_until < now())
               and (last_started_at is null
                    or last_started_at <= now() - make_interval(secs => $1) + interval '1 second')
             returning last_started_at",
        )
        .bind(interval.as_secs_f64())
        .bind(lease.as_secs_f64())
        .fetch_optional(&self.pool)
        .await?;
        Ok(claimed)
    }

    /// Gives the scheduled audit's lease back, only if it is still the claim
    /// that started at `claimed` (an audit that outran its lease must not
    /// release the next replica's).
    pub async fn release_books_schedule(&self, claimed: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query(
            "update books_audit_schedule set lease_until = null
             where schedule_id = 1 and last_started_at = $1",
        )
        .bind(claimed)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The last run that ran to the end: when it finished and its findings
    /// by kind (for `/metrics`, the same on every replica).
    pub async fn last_successful_audit(&self) -> StoreResult<Option<LastAudit>> {
        let last: Option<(i64, DateTime<Utc>)> = sqlx::query_as(
            "select audit_run_id, finished_at from books_audit_runs
             where outcome in ('agree', 'findings') and finished_at is not null
             order by finished_at desc limit 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        let Some((run, finished)) = last else {
            return Ok(None);
        };
        let counts = sqlx::query_as(
            "select kind, count(*) from books_audit_findings where audit_run_id = $1 group by kind",
        )
        .bind(run)
        .fetch_all(&self.pool)
        .await?;
        Ok(Some((finished, counts)))
    }
}
