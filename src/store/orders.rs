//! Order rows: the idempotent insert, caller-scoped reads, and lease claims.
//!
//! Every caller-scoped statement re-checks the API key (`live_caller`), so a
//! revoked key can neither create nor read orders, whatever a cache says.

use super::status::{ACCEPTED, PLACING, RECONCILING};
use const_format::formatcp;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::{Store, StoreResult};
use crate::domain::{
    Amount, Caller, CallerId, IdempotencyKey, NewOrder, Order, OrderFilter, OrderId, OrderStatus,
    PoNumber,
};

/// Columns read for every order.
pub(crate) const ORDER_COLUMNS: &str = "o.order_id, o.caller_id, o.idempotency_key,
    o.request_fingerprint, o.po_number, o.status, o.status_reason, o.product_id,
    o.denomination, o.quantity, o.email, o.contact, o.tag, o.notify_receiver_email,
    o.notify_admin_email, o.user_meta, o.perform_operator_validation, o.xoxoday_order_id,
    o.currency_code, o.order_total, o.order_discount, o.amount_charged, o.delivery_status,
    o.failure, o.attempts, o.lease_token, o.created_at, o.updated_at, o.settled_at";

/// `caller_id` of a live (unrevoked) key whose hash is `$1`.
const LIVE_CALLER: &str =
    "(select k.caller_id from api_keys k where k.key_hash = $1 and k.revoked_at is null)";

/// An order row as stored; it never leaves `store` (callers get an [`Order`]).
#[derive(Debug, sqlx::FromRow)]
pub(super) struct OrderRow {
    order_id: Uuid,
    caller_id: Uuid,
    idempotency_key: String,
    request_fingerprint: Vec<u8>,
    po_number: String,
    status: String,
    status_reason: Option<String>,
    product_id: i64,
    denomination: Decimal,
    quantity: i32,
    email: Option<String>,
    contact: Option<String>,
    tag: Option<String>,
    notify_receiver_email: bool,
    notify_admin_email: bool,
    user_meta: Option<serde_json::Value>,
    perform_operator_validation: Option<bool>,
    xoxoday_order_id: Option<i64>,
    currency_code: Option<String>,
    order_total: Option<Decimal>,
    order_discount: Option<Decimal>,
    amount_charged: Option<Decimal>,
    delivery_status: Option<String>,
    failure: Option<serde_json::Value>,
    attempts: i32,
    lease_token: Option<Uuid>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    settled_at: Option<DateTime<Utc>>,
}

impl OrderRow {
    /// The domain order of the row.
    pub(super) fn into_order(self) -> Order {
        Order {
            id: OrderId::from_uuid(self.order_id),
            caller_id: CallerId::from_uuid(self.caller_id),
            idempotency_key: IdempotencyKey::from_stored(self.idempotency_key),
            fingerprint: self.request_fingerprint,
            po_number: PoNumber::from_stored(self.po_number),
            // The CHECK constraint admits only known names.
            status: OrderStatus::parse(&self.status).unwrap_or(OrderStatus::NeedsReview),
            status_reason: self.status_reason,
            product_id: self.product_id,
            denomination: Amount::from_stored(self.denomination),
            quantity: self.quantity,
            email: self.email,
            contact: self.contact,
            tag: self.tag,
            notify_receiver_email: self.notify_receiver_email,
            notify_admin_email: self.notify_admin_email,
            user_meta: self.user_meta,
            perform_operator_validation: self.perform_operator_validation,
            lease_token: self.lease_token,
            xoxoday_order_id: self.xoxoday_order_id,
            currency_code: self.currency_code,
            order_total: self.order_total,
            order_discount: self.order_discount,
            amount_charged: self.amount_charged,
            delivery_status: self.delivery_status,
            failure: self.failure,
            attempts: self.attempts,
            created_at: self.created_at,
            updated_at: self.updated_at,
            settled_at: self.settled_at,
        }
    }
}

impl Store {
    /// The idempotency gate, one round trip: inserts the order for the live
    /// key `caller.key_hash`, or returns `None` when (caller, key) exists or
    /// the key was revoked. Committed on return.
    pub async fn insert_order(
        &self,
        caller: &Caller,
        key: &IdempotencyKey,
        id: OrderId,
        po: &PoNumber,
        new: &NewOrder,
    ) -> StoreResult<Option<Order>> {
        let sql = format!(
            "with o as (
               insert into orders (order_id, caller_id, idempotency_key, request_fingerprint,
                 po_number, product_id, denomination, quantity, email, contact, tag,
                 notify_receiver_email, notify_admin_email, user_meta, perform_operator_validation)
               select $2, k.caller_id, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15
               from api_keys k where k.key_hash = $1 and k.revoked_at is null
               on conflict (caller_id, idempotency_key) do nothing
               returning *)
             select {ORDER_COLUMNS} from o"
        );
        let row = sqlx::query_as::<_, OrderRow>(&sql)
            .bind(&caller.key_hash[..])
            .bind(id.as_uuid())
            .bind(key.as_str())
            .bind(&new.fingerprint()[..])
            .bind(po.as_str())
            .bind(new.product_id)
            .bind(new.denomination.value())
            .bind(new.quantity)
            .bind(&new.email)
            .bind(&new.contact)
            .bind(&new.tag)
            .bind(new.notify_receiver_email)
            .bind(new.notify_admin_email)
            .bind(new.user_meta.clone().map(serde_json::Value::Object))
            .bind(new.perform_operator_validation)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(OrderRow::into_order))
    }

    /// The caller's order under an idempotency key (live key only).
    pub async fn find_order_by_key(
        &self,
        caller: &Caller,
        key: &IdempotencyKey,
    ) -> StoreResult<Option<Order>> {
        let sql = format!(
            "select {ORDER_COLUMNS} from orders o
             where o.caller_id = {LIVE_CALLER} and o.idempotency_key = $2"
        );
        Ok(sqlx::query_as::<_, OrderRow>(&sql)
            .bind(&caller.key_hash[..])
            .bind(key.as_str())
            .fetch_optional(&self.pool)
            .await?
            .map(OrderRow::into_order))
    }

    /// The caller's order by id (live key only).
    pub async fn find_order(&self, caller: &Caller, id: OrderId) -> StoreResult<Option<Order>> {
        let sql = format!(
            "select {ORDER_COLUMNS} from orders o
             where o.caller_id = {LIVE_CALLER} and o.order_id = $2"
        );
        Ok(sqlx::query_as::<_, OrderRow>(&sql)
            .bind(&caller.key_hash[..])
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await?
            .map(OrderRow::into_order))
    }

    /// Any order by id, unscoped (workers and tests).
    pub async fn load_order(&self, id: OrderId) -> StoreResult<Option<Order>> {
        let sql = format!("select {ORDER_COLUMNS} from orders o where o.order_id = $1");
        Ok(sqlx::query_as::<_, OrderRow>(&sql)
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await?
            .map(OrderRow::into_order))
    }

    /// A page of the caller's orders, newest first (live key only).
    pub async fn list_orders(&self, caller: &Caller, f: &OrderFilter) -> StoreResult<Vec<Order>> {
        let sql = format!(
            "select {ORDER_COLUMNS} from orders o
             where o.caller_id = {LIVE_CALLER}
               and ($2::text is null or o.idempotency_key = $2)
               and ($3::text is null or o.po_number = $3)
               and ($4::text is null or o.status = $4)
               and ($5::uuid is null or o.order_id < $5)
             order by o.order_id desc
             limit $6"
        );
        Ok(sqlx::query_as::<_, OrderRow>(&sql)
            .bind(&caller.key_hash[..])
            .bind(&f.idempotency_key)
            .bind(&f.po_number)
            .bind(f.status.map(OrderStatus::as_str))
            .bind(f.before.map(|b| b.as_uuid()))
            .bind(f.limit)
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(OrderRow::into_order)
            .collect())
    }

    /// Claims one `accepted`, due order for this worker: `placing` with a
    /// fresh lease token, committed. `None` when someone else has it.
    pub async fn claim_order(&self, id: OrderId, lease: Duration) -> StoreResult<Option<Order>> {
        let sql = format!(
            "update orders o set status = {PLACING}, status_reason = null,
               lease_token = gen_random_uuid(), lease_sent = false,
               lease_until = now() + make_interval(secs => $2)
             where o.order_id = $1 and o.status = {ACCEPTED}
             returning {ORDER_COLUMNS}"
        );
        Ok(sqlx::query_as::<_, OrderRow>(&sql)
            .bind(id.as_uuid())
            .bind(lease.as_secs_f64())
            .fetch_optional(&self.pool)
            .await?
            .map(OrderRow::into_order))
    }

    /// Claims up to `limit` due `accepted` orders that no one holds
    /// (`for update skip locked`), each with its own lease token.
    pub async fn claim_due_orders(&self, limit: i64, lease: Duration) -> StoreResult<Vec<Order>> {
        let sql = format!(
            "update orders o set status = {PLACING}, status_reason = null,
               lease_token = gen_random_uuid(), lease_sent = false,
               lease_until = now() + make_interval(secs => $2)
             from (select order_id from orders
                   where status = {ACCEPTED} and next_attempt_at <= now()
                   order by next_attempt_at
                   limit $1
                   for update skip locked) due
             where o.order_id = due.order_id
             returning {ORDER_COLUMNS}"
        );
        Ok(sqlx::query_as::<_, OrderRow>(&sql)
            .bind(limit)
            .bind(lease.as_secs_f64())
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(OrderRow::into_order)
            .collect())
    }

    /// Orders whose `placing` lease ran out (the worker died or stalled).
    /// If that claim had begun sending, the outcome is unknown: `reconciling`,
    /// never a blind re-place. If it never sent, nothing can exist upstream:
    /// back to `accepted`, due now. The end of a call that was sent is
    /// unknown: it is recorded as the later of now and its start plus
    /// `place_timeout` (when the client gives up), so the settle window
    /// never starts before the call could have ended.
    pub async fn expire_placing_leases(&self, place_timeout: Duration) -> StoreResult<u64> {
        let done = sqlx::query(formatcp!(
            "update orders set
               status = case when lease_sent then {RECONCILING} else {ACCEPTED} end,
               last_place_ended_at = case when lease_sent
                 then greatest(now(), last_place_started_at + make_interval(secs => $1))
                 else last_place_ended_at end,
               status_reason = case when lease_sent
                 then 'placeOrder lease expired mid-call (worker stopped); outcome unknown'
                 else 'claim expired before sending' end,
               next_check_at = case when lease_sent then now() else next_check_at end,
               next_attempt_at = case when lease_sent then next_attempt_at else now() end,
               lease_token = null, lease_until = null, lease_sent = false
             where order_id in (select order_id from orders
                                where status = {PLACING} and lease_until < now()
                                for update skip locked)"
        ))
        .bind(place_timeout.as_secs_f64())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
