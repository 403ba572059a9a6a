//! Order rows: the idempotent insert, caller-scoped reads, and lease claims.
//!
//! Every caller-scoped statement re-checks the API key (`live_caller`), so a
//! revoked key can neither create nor read orders, whatever a cache says.

use super::status::{ACCEPTED, PLACING, RECONCILING};
use const_format::formatcp;
use std::time::Duration;
use tokio::time::Instant;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgExecutor;
use uuid::Uuid;

use super::{
    Store, StoreResult,
    exchanges::ExchangeStart,
    rate_limit::{SlotAsk, SlotBlocks, Taken},
    vouchers::VoucherRow,
};
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

/// What the idempotency gate ([`Store::insert_order`]) found.
#[derive(Debug)]
pub enum Gate {
    /// This request stored the order; what became of the first send it
    /// asked for.
    Created(Order, Fresh),
    /// The key was taken before: the order it names, with its vouchers
    /// (read in the same statement, in position order).
    Existing(Order, Vec<VoucherRow>),
    /// Nothing visible: the key was revoked, or a concurrent request
    /// committed the order after this statement began.
    Neither,
}

/// A new order to store without a first send, in a batch
/// ([`Store::insert_new_orders`]).
#[derive(Debug)]
pub struct NewGate {
    /// Who asks (its key is checked live).
    pub caller: Caller,
    /// The idempotency key.
    pub key: IdempotencyKey,
    /// The new order's id.
    pub id: OrderId,
    /// Its poNumber.
    pub po: PoNumber,
    /// The validated request.
    pub new: NewOrder,
}

/// The first placeOrder a new order may begin in its own insert
/// ([`Store::insert_order`]): the call is prepared, its lease token chosen
/// and a placement permit held before the statement runs.
#[derive(Debug)]
pub struct FreshSend<'a> {
    /// Lease token of the claim the insert makes.
    pub lease_token: Uuid,
    /// Lease length from now.
    pub lease: Duration,
    /// The exchange row to insert with the order.
    pub start: ExchangeStart<'a>,
    /// placeOrder's shared budget.
    pub slot: SlotAsk,
    /// Where the slot is taken.
    pub slots: &'a SlotBlocks,
    /// When a slot was taken from the stock for this order (then no
    /// block): no later than its row's stamp.
    pub stocked: Option<Instant>,
}

/// What became of the first send a new order asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fresh {
    /// None was asked for, or the slot lock was busy: the order is
    /// `accepted`, due now.
    NotAsked,
    /// No slot (or a pause): the order is `accepted`; a slot frees after this.
    NoSlot(Duration),
    /// The order is `placing` under the given lease, attempt 1 counted, its
    /// exchange row written and its slot taken, all committed: send now.
    Send {
        /// The attempt's number.
        attempt: i32,
        /// No later than the slot's stamp: the send margin counts from here.
        stamped_after: Instant,
    },
}

/// A voucher's columns next to its order's (null for none).
const VOUCHER_COLUMNS: &str = "v.position as v_position, v.code_encrypted as v_code,
    v.pin_encrypted as v_pin, v.key_id as v_key_id, v.validity as v_validity,
    v.voucher_type as v_type, v.amount as v_amount, v.currency as v_currency,
    v.country as v_country";
const NO_VOUCHER: &str = "null::integer as v_position, null::bytea as v_code,
    null::bytea as v_pin, null::text as v_key_id, null::text as v_validity,
    null::text as v_type, null::numeric as v_amount, null::text as v_currency,
    null::text as v_country";

/// An order found for a replay, with its vouchers.
pub type Replay = (Order, Vec<VoucherRow>);

/// One replay read of a batch ([`Store::find_replays`]).
#[derive(Debug)]
pub struct ReplayAsk {
    /// The presented key's hash (checked live, as everywhere).
    pub key_hash: [u8; 32],
    /// The idempotency key.
    pub key: IdempotencyKey,
}

/// A replay batch's row: which ask (from 1), then as in the gate.
#[derive(sqlx::FromRow)]
struct ReplayRow {
    n: i64,
    #[sqlx(flatten)]
    gate: GateRow,
}

/// One row of the gate: the order, and one of its vouchers or none.
#[derive(sqlx::FromRow)]
struct GateRow {
    created: bool,
    #[sqlx(flatten)]
    row: OrderRow,
    v_position: Option<i32>,
    v_code: Option<Vec<u8>>,
    v_pin: Option<Vec<u8>>,
    v_key_id: Option<String>,
    v_validity: Option<String>,
    v_type: Option<String>,
    v_amount: Option<Decimal>,
    v_currency: Option<String>,
    v_country: Option<String>,
}

impl GateRow {
    fn voucher(&self) -> Option<VoucherRow> {
        Some(VoucherRow {
            order_id: self.row.order_id,
            position: self.v_position?,
            code_encrypted: self.v_code.clone()?,
            pin_encrypted: self.v_pin.clone(),
            key_id: self.v_key_id.clone()?,
            validity: self.v_validity.clone(),
            voucher_type: self.v_type.clone(),
            amount: self.v_amount,
            currency: self.v_currency.clone(),
            country: self.v_country.clone(),
        })
    }
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
    /// The idempotency gate, one transaction: inserts the order `accepted`
    /// for the live key `caller.key_hash`, or, when (caller, key) exists,
    /// returns that order as the statement's snapshot shows it (a replay:
    /// one read, nothing written). [`Gate::Neither`] when the key was
    /// revoked, or the existing order was committed by a concurrent request
    /// after this statement's snapshot (read it again). Committed on return.
    ///
    /// With `send`, a new order also begins its first placeOrder in the same
    /// transaction (issue 11: one transaction before the call), after the
    /// insert has settled the key (a same-key request waits there and
    /// replays, so it never takes a slot): the slot comes from
    /// `send.slots`, a block taken for every new order of this process that
    /// asks at the same moment ([`SlotBlocks`]), and when granted
    /// `begin_granted_place` claims the order `placing` under
    /// `send.lease_token` (attempt 1, stamps read after the grant) and
    /// inserts the exchange row.
    pub async fn insert_order(
        &self,
        caller: &Caller,
        key: &IdempotencyKey,
        id: OrderId,
        po: &PoNumber,
        new: &NewOrder,
        send: Option<&FreshSend<'_>>,
    ) -> StoreResult<Gate> {
        let Some(send) = send else {
            return gate(&self.pool, caller, key, id, po, new).await;
        };
        let mut tx = self.pool.begin().await?;
        let gate = match gate(&mut *tx, caller, key, id, po, new).await? {
            Gate::Created(row, _) => {
                let taken = match send.stocked {
                    Some(floor) => Taken::Granted(floor),
                    None => send.slots.take(send.slot).await,
                };
                let fresh = match taken {
                    Taken::Granted(at) => begin_granted(&mut tx, id, send, at).await?,
                    Taken::Wait(wait) => Fresh::NoSlot(wait),
                    Taken::Busy => Fresh::NotAsked,
                };
                Gate::Created(row, fresh)
            }
            other => other,
        };
        tx.commit().await?;
        Ok(gate)
    }

    /// New orders without a first send, in one statement (issue 11: a
    /// burst costs Postgres one statement and one commit per batch, not
    /// per order). One answer per order, in the same order: `Some` with
    /// the row when this statement stored it (`accepted`), `None` when it
    /// stored nothing for it (the key was taken, also by an earlier order
    /// of the same batch, or revoked): the caller then asks the gate alone
    /// ([`Self::insert_order`]), which tells a replay, a mismatch and a
    /// revoked key apart. A key held by another transaction fails the
    /// batch within `lock_timeout`. Every key is checked live, as in the
    /// gate; rows go in (caller, key) order, so two batches never wait on each
    /// other's keys in opposite orders, and of two orders of the batch
    /// under one key the earlier is stored.
    pub async fn insert_new_orders<G>(
        &self,
        gates: &[G],
        lock_timeout: Duration,
    ) -> StoreResult<Vec<Option<Order>>>
    where
        G: std::ops::Deref<Target = NewGate>,
    {
        let sql = format!(
            "with r as (
               select * from unnest($1::bytea[], $2::uuid[], $3::text[], $4::bytea[], $5::text[],
                 $6::int8[], $7::numeric[], $8::int4[], $9::text[], $10::text[], $11::text[],
                 $12::bool[], $13::bool[], $14::jsonb[], $15::bool[]) with ordinality
               as r(key_hash, order_id, idempotency_key, request_fingerprint, po_number,
                 product_id, denomination, quantity, email, contact, tag, notify_receiver_email,
                 notify_admin_email, user_meta, perform_operator_validation, n)),
             -- A key held by another transaction (a same-key request on
             -- the send path holds its row while it waits for a slot
             -- block) fails the batch within $16 instead of holding the
             -- others. Set before the first row is inserted (the insert
             -- reads this), for this statement's own transaction only.
             lt as (select set_config('lock_timeout', $16, true)),
             ins as (
               insert into orders (order_id, caller_id, idempotency_key, request_fingerprint,
                 po_number, product_id, denomination, quantity, email, contact, tag,
                 notify_receiver_email, notify_admin_email, user_meta, perform_operator_validation)
               select r.order_id, k.caller_id, r.idempotency_key, r.request_fingerprint,
                 r.po_number, r.product_id, r.denomination, r.quantity, r.email, r.contact, r.tag,
                 r.notify_receiver_email, r.notify_admin_email, r.user_meta,
                 r.perform_operator_validation
               from r join api_keys k on k.key_hash = r.key_hash and k.revoked_at is null
                 cross join lt
               order by k.caller_id, r.idempotency_key, r.n
               on conflict (caller_id, idempotency_key) do nothing
               returning *)
             select {ORDER_COLUMNS} from ins o"
        );
        let news = || gates.iter().map(|g| &g.new);
        let rows = sqlx::query_as::<_, OrderRow>(&sql)
            .bind(
                gates
                    .iter()
                    .map(|g| &g.caller.key_hash[..])
                    .collect::<Vec<_>>(),
            )
            .bind(gates.iter().map(|g| g.id.as_uuid()).collect::<Vec<_>>())
            .bind(gates.iter().map(|g| g.key.as_str()).collect::<Vec<_>>())
            .bind(news().map(|n| n.fingerprint().to_vec()).collect::<Vec<_>>())
            .bind(gates.iter().map(|g| g.po.as_str()).collect::<Vec<_>>())
            .bind(news().map(|n| n.product_id).collect::<Vec<_>>())
            .bind(news().map(|n| n.denomination.value()).collect::<Vec<_>>())
            .bind(news().map(|n| n.quantity).collect::<Vec<_>>())
            .bind(news().map(|n| n.email.as_deref()).collect::<Vec<_>>())
            .bind(news().map(|n| n.contact.as_deref()).collect::<Vec<_>>())
            .bind(news().map(|n| n.tag.as_deref()).collect::<Vec<_>>())
            .bind(news().map(|n| n.notify_receiver_email).collect::<Vec<_>>())
            .bind(news().map(|n| n.notify_admin_email).collect::<Vec<_>>())
            .bind(
                news()
                    .map(|n| n.user_meta.clone().map(serde_json::Value::Object))
                    .collect::<Vec<_>>(),
            )
            .bind(
                news()
                    .map(|n| n.perform_operator_validation)
                    .collect::<Vec<_>>(),
            )
            .bind(super::setting_ms(lock_timeout))
            .fetch_all(&self.pool)
            .await?;
        let mut stored: Vec<Option<Order>> = gates.iter().map(|_| None).collect();
        for row in rows {
            let order = row.into_order();
            if let Some(i) = gates.iter().position(|g| g.id == order.id) {
                stored[i] = Some(order);
            }
        }
        Ok(stored)
    }

    /// The caller's order under an idempotency key (live key only) with its
    /// vouchers, in one read: the answer to a replay without the insert
    /// machinery of the gate (no constraint checks, no arbiter indexes
    /// opened). `None` when there is none or the key was revoked.
    pub async fn find_replay(&self, ask: &ReplayAsk) -> StoreResult<Option<Replay>> {
        let sql = format!(
            "select false as created, {ORDER_COLUMNS}, {VOUCHER_COLUMNS}
             from orders o left join vouchers v on v.order_id = o.order_id
             where o.caller_id = {LIVE_CALLER} and o.idempotency_key = $2
             order by v_position"
        );
        let rows = sqlx::query_as::<_, GateRow>(&sql)
            .bind(&ask.key_hash[..])
            .bind(ask.key.as_str())
            .fetch_all(&self.pool)
            .await?;
        let vouchers: Vec<VoucherRow> = rows.iter().filter_map(GateRow::voucher).collect();
        Ok(rows
            .into_iter()
            .next()
            .map(|r| (r.row.into_order(), vouchers)))
    }

    /// [`Self::find_replay`] for several (live key, idempotency key) pairs
    /// in one statement (issue 11: replays ready at the same moment share
    /// one read), one answer each in the same order. A read only: nothing
    /// is locked or written, so a batch waits for nothing but Postgres.
    pub async fn find_replays<A>(&self, asks: &[A]) -> StoreResult<Vec<Option<Replay>>>
    where
        A: std::ops::Deref<Target = ReplayAsk>,
    {
        let sql = format!(
            "select r.n, false as created, {ORDER_COLUMNS}, {VOUCHER_COLUMNS}
             from unnest($1::bytea[], $2::text[]) with ordinality as r(key_hash, idempotency_key, n)
               join api_keys k on k.key_hash = r.key_hash and k.revoked_at is null
               join orders o on o.caller_id = k.caller_id and o.idempotency_key = r.idempotency_key
               left join vouchers v on v.order_id = o.order_id
             order by r.n, v_position"
        );
        let rows = sqlx::query_as::<_, ReplayRow>(&sql)
            .bind(asks.iter().map(|a| &a.key_hash[..]).collect::<Vec<_>>())
            .bind(asks.iter().map(|a| a.key.as_str()).collect::<Vec<_>>())
            .fetch_all(&self.pool)
            .await?;
        let mut found: Vec<Option<Replay>> = asks.iter().map(|_| None).collect();
        for ReplayRow { n, gate } in rows {
            let voucher = gate.voucher();
            let Some(slot) = usize::try_from(n - 1).ok().and_then(|i| found.get_mut(i)) else {
                continue;
            };
            let (_, vouchers) = slot.get_or_insert_with(|| (gate.row.into_order(), Vec::new()));
            vouchers.extend(voucher);
        }
        Ok(found)
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

    /// A page of the caller's orders, newest first (live key only). The
    /// statement names only the filters given, so every combination gets a
    /// plan of its own that uses its index (a `($n is null or col = $n)`
    /// form ignores them all once Postgres switches to a generic plan).
    pub async fn list_orders(&self, caller: &Caller, f: &OrderFilter) -> StoreResult<Vec<Order>> {
        let mut sql = format!(
            "select {ORDER_COLUMNS} from orders o
             where o.caller_id = {LIVE_CALLER}"
        );
        let mut n = 1;
        let mut and = |condition: &str| {
            n += 1;
            sql.push_str(&format!(" and o.{condition} ${n}"));
        };
        if f.idempotency_key.is_some() {
            and("idempotency_key =");
        }
        if f.po_number.is_some() {
            and("po_number =");
        }
        if f.status.is_some() {
            and("status =");
        }
        if f.before.is_some() {
            and("order_id <");
        }
        sql.push_str(&format!(" order by o.order_id desc limit ${}", n + 1));
        let mut q = sqlx::query_as::<_, OrderRow>(&sql).bind(&caller.key_hash[..]);
        if let Some(key) = &f.idempotency_key {
            q = q.bind(key);
        }
        if let Some(po) = &f.po_number {
            q = q.bind(po);
        }
        if let Some(status) = f.status {
            q = q.bind(status.as_str());
        }
        if let Some(before) = f.before {
            q = q.bind(before.as_uuid());
        }
        Ok(q.bind(f.limit)
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

    /// One background dispatch pass in one transaction (issue 11: an idle
    /// pass costs Postgres one): [`expire_placing_leases`], then, when
    /// `limit > 0`, [`claim_due_orders`], which sees what the expiry
    /// released.
    pub async fn dispatch_pass(
        &self,
        place_timeout: Duration,
        limit: i64,
        lease: Duration,
        budget: SlotAsk,
    ) -> StoreResult<(u64, Vec<Order>)> {
        let mut tx = self.pool.begin().await?;
        let expired = expire_placing_leases(&mut *tx, place_timeout).await?;
        let claimed = if limit > 0 {
            claim_due_orders(&mut *tx, limit, lease, budget).await?
        } else {
            Vec::new()
        };
        tx.commit().await?;
        Ok((expired, claimed))
    }
}

/// Claims up to `limit` due `accepted` orders that no one holds
/// (`for update skip locked`), each with its own lease token, and never
/// more than `budget` has slots free now (`upstream_slots_free`, a
/// read-only look): a backlog the budget cannot send stays untouched.
/// The slots themselves are taken when each call begins.
async fn claim_due_orders<'e>(
    db: impl PgExecutor<'e>,
    limit: i64,
    lease: Duration,
    budget: SlotAsk,
) -> StoreResult<Vec<Order>> {
    let sql = format!(
        "update orders o set status = {PLACING}, status_reason = null,
           lease_token = gen_random_uuid(), lease_sent = false,
           lease_until = now() + make_interval(secs => $2)
         from (select order_id from orders
               where status = {ACCEPTED} and next_attempt_at <= now()
               order by next_attempt_at
               limit least($1, (select free from upstream_slots_free($3, $4, $5)))
               for update skip locked) due
         where o.order_id = due.order_id
         returning {ORDER_COLUMNS}"
    );
    Ok(sqlx::query_as::<_, OrderRow>(&sql)
        .bind(limit)
        .bind(lease.as_secs_f64())
        .bind(budget.operation)
        .bind(i32::try_from(budget.per_minute).unwrap_or(i32::MAX))
        .bind(i32::try_from(budget.window.as_millis()).unwrap_or(i32::MAX))
        .fetch_all(db)
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
pub(super) async fn expire_placing_leases<'e>(
    db: impl PgExecutor<'e>,
    place_timeout: Duration,
) -> StoreResult<u64> {
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
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// [`Store::insert_order`]'s gate statement on `db` (no send).
async fn gate<'e>(
    db: impl PgExecutor<'e>,
    caller: &Caller,
    key: &IdempotencyKey,
    id: OrderId,
    po: &PoNumber,
    new: &NewOrder,
) -> StoreResult<Gate> {
    let sql = format!(
        "with k as (
           select k.caller_id from api_keys k where k.key_hash = $1 and k.revoked_at is null),
         ins as (
           insert into orders (order_id, caller_id, idempotency_key, request_fingerprint,
             po_number, product_id, denomination, quantity, email, contact, tag,
             notify_receiver_email, notify_admin_email, user_meta, perform_operator_validation)
           select $2, k.caller_id, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15
           from k
           on conflict (caller_id, idempotency_key) do nothing
           returning *)
         select true as created, {ORDER_COLUMNS}, {NO_VOUCHER} from ins o
         union all
         select false, {ORDER_COLUMNS}, {VOUCHER_COLUMNS}
         from orders o join k on k.caller_id = o.caller_id
           left join vouchers v on v.order_id = o.order_id
         where o.idempotency_key = $3 and not exists (select 1 from ins)
         order by v_position"
    );
    let rows = sqlx::query_as::<_, GateRow>(&sql)
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
        .fetch_all(db)
        .await?;
    let vouchers: Vec<VoucherRow> = rows.iter().filter_map(GateRow::voucher).collect();
    Ok(match rows.into_iter().next() {
        Some(GateRow {
            created: true, row, ..
        }) => Gate::Created(row.into_order(), Fresh::NotAsked),
        Some(GateRow { row, .. }) => Gate::Existing(row.into_order(), vouchers),
        None => Gate::Neither,
    })
}

/// `begin_granted_place` (migration 0044) for the order `id` just
/// inserted in `tx`, whose slot is granted.
async fn begin_granted(
    tx: &mut sqlx::PgConnection,
    id: OrderId,
    send: &FreshSend<'_>,
    stamped_after: Instant,
) -> StoreResult<Fresh> {
    let attempt: Option<i32> =
        sqlx::query_scalar("select begin_granted_place($1, $2, $3, $4, $5, $6, $7, $8)")
            .bind(id.as_uuid())
            .bind(send.lease_token)
            .bind(send.lease.as_secs_f64())
            .bind(send.start.exchange_id)
            .bind(send.start.operation)
            .bind(send.start.method)
            .bind(send.start.url)
            .bind(&send.start.request_body)
            .fetch_one(tx)
            .await?;
    Ok(attempt.map_or(Fresh::NotAsked, |attempt| Fresh::Send {
        attempt,
        stamped_after,
    }))
}
