//! Group commit of placeOrder write-backs (issue 11): the write-backs ready
//! at the same moment share one transaction, each still fenced by its own
//! lease, and one that fails costs the others nothing.
//!
//! The batch tests make it deterministic: two write-backs whose order rows
//! a test transaction holds locked keep both batch pipes busy (counted as
//! busy, not stalled, however long they wait: [`kept_busy`]), the next
//! three queue (each future is polled once, which queues it), and
//! releasing the lock lets them commit as one batch.

use std::{pin::Pin, sync::Arc, time::Duration};

use futures::{Future, poll};
use order_gateway::{
    domain::{Order, OrderId, OrderStatus},
    orders::{batches::LOCK_WAIT, write_backs::WriteBacks},
    store::{
        Store, StoreResult,
        exchanges::{Begin, ExchangeStart},
        outcomes::{PlaceResult, PlacedFacts, WriteBack},
        rate_limit::SlotAsk,
        vouchers::VoucherRow,
    },
};
use serde_json::json;
use sqlx::{PgPool, postgres::PgPoolOptions};
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::helpers::{TestApp, spawn_app};

const PIPES: usize = WriteBacks::PIPES;

/// A stall time no test waits for: pipes the test keeps busy stay busy.
pub(crate) const NEVER_STALLED: Duration = Duration::from_secs(3600);

/// Write-backs on `store` whose busy pipes never count as stalled.
fn kept_busy(store: Store) -> WriteBacks {
    WriteBacks::new(store, TaskTracker::new()).stalled_after(NEVER_STALLED)
}

#[tokio::test]
async fn write_backs_ready_together_commit_in_one_transaction_each_under_its_own_lease() {
    let app = spawn_app().await;
    let store = Store::from_pool(app.db.clone());
    let write_backs = kept_busy(store.clone());
    let (blockers, [good_1, fenced, good_2]) =
        blockers_and_three(&app, &store, "wb", ["good-1", "fenced", "good-2"]).await;
    // A newer claim owns `fenced` now.
    sqlx::query("update orders set lease_token = gen_random_uuid() where order_id = $1")
        .bind(fenced.order.as_uuid())
        .execute(&app.db)
        .await
        .unwrap();
    let queued = [&good_1, &fenced, &good_2].map(|wb| placed(wb, 7, Vec::new()));
    let blocking = blockers.each_ref().map(|wb| placed(wb, 1, Vec::new()));

    let answers = batch_behind_blockers(&app.db, &write_backs, &blocking, &queued).await;

    let [a1, fenced_answer, a2] = answers;
    let (a1, a2) = (a1.unwrap().expect("written"), a2.unwrap().expect("written"));
    assert_eq!((a1.id, a1.status), (good_1.order, OrderStatus::Completed));
    assert_eq!((a2.id, a2.status), (good_2.order, OrderStatus::Completed));
    assert!(
        fenced_answer.unwrap().is_none(),
        "a stale lease writes nothing back, even in company"
    );
    assert_eq!(status_of(&app.db, fenced.order).await, "placing");
    // One transaction: the two orders and all three exchange rows carry the
    // same xmin, and the fenced exchange was completed all the same.
    let batch = order_xmin(&app.db, good_1.order).await;
    assert_eq!(order_xmin(&app.db, good_2.order).await, batch);
    for wb in [&good_1, &fenced, &good_2] {
        let (xmin, completed) = exchange_xmin(&app.db, wb.exchange_id).await;
        assert!(completed, "every exchange row is completed");
        assert_eq!(xmin, batch, "the queued write-backs commit together");
    }
    // The blockers were written by batches of their own.
    for wb in &blockers {
        assert_eq!(status_of(&app.db, wb.order).await, "completed");
        assert_ne!(order_xmin(&app.db, wb.order).await, batch);
    }
}

#[tokio::test]
async fn a_write_back_that_fails_in_a_batch_costs_the_others_nothing() {
    let app = spawn_app().await;
    let store = Store::from_pool(app.db.clone());
    let write_backs = kept_busy(store.clone());
    let (blockers, [good_1, bad, good_2]) =
        blockers_and_three(&app, &store, "wb", ["ok-1", "bad", "ok-2"]).await;
    // A voucher of an order that does not exist: the foreign key refuses it.
    let orphan = VoucherRow {
        order_id: Uuid::now_v7(),
        position: 0,
        code_encrypted: vec![1, 2, 3],
        pin_encrypted: None,
        key_id: "k".into(),
        validity: None,
        voucher_type: None,
        amount: None,
        currency: None,
        country: None,
    };
    let queued = [
        placed(&good_1, 11, Vec::new()),
        placed(&bad, 12, vec![orphan]),
        placed(&good_2, 13, Vec::new()),
    ];
    let blocking = blockers.each_ref().map(|wb| placed(wb, 1, Vec::new()));

    let [a1, bad_answer, a2] =
        batch_behind_blockers(&app.db, &write_backs, &blocking, &queued).await;

    let (a1, a2) = (a1.unwrap().expect("written"), a2.unwrap().expect("written"));
    assert_eq!((a1.id, a1.status), (good_1.order, OrderStatus::Completed));
    assert_eq!((a2.id, a2.status), (good_2.order, OrderStatus::Completed));
    assert_eq!(a1.xoxoday_order_id, Some(11));
    assert_eq!(a2.xoxoday_order_id, Some(13));
    assert!(bad_answer.is_err(), "the failing write-back gets its error");
    assert_eq!(status_of(&app.db, bad.order).await, "placing");
    // Written alone after the batch rolled back: two transactions.
    assert_ne!(
        order_xmin(&app.db, good_1.order).await,
        order_xmin(&app.db, good_2.order).await
    );
    let (_, completed) = exchange_xmin(&app.db, good_1.exchange_id).await;
    assert!(completed);
}

#[tokio::test]
async fn a_row_lock_held_elsewhere_fails_the_batch_fast_and_the_others_are_written_without_it() {
    let app = spawn_app().await;
    // More connections than the harness pool: the held lock, the blockers'
    // lock, two pipes and the write-backs written alone.
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect_with((*app.db.connect_options()).clone())
        .await
        .unwrap();
    let store = Store::from_pool(pool.clone());
    let write_backs = kept_busy(store.clone());
    let (blockers, [free_1, held, free_2]) =
        blockers_and_three(&app, &store, "wb-lk", ["free-1", "held", "free-2"]).await;
    // Someone else (an operator's transaction, say) holds `held`'s row.
    let mut elsewhere = pool.begin().await.unwrap();
    sqlx::query("select 1 from orders where order_id = $1 for update")
        .bind(held.order.as_uuid())
        .execute(&mut *elsewhere)
        .await
        .unwrap();
    let queued = [
        placed(&free_1, 21, Vec::new()),
        placed(&held, 22, Vec::new()),
        placed(&free_2, 23, Vec::new()),
    ];
    let blocking = blockers.each_ref().map(|wb| placed(wb, 1, Vec::new()));
    let batch = batch_behind_blockers(&pool, &write_backs, &blocking, &queued);
    tokio::pin!(batch);
    // The free orders are written while the lock is still held (not after
    // the ten seconds of `statement_timeout`, nor when it is released).
    let mut settled = false;
    for _ in 0..400 {
        tokio::select! {
            _ = &mut batch => unreachable!("the held order cannot be written yet"),
            () = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
        if status_of(&app.db, free_1.order).await == "completed"
            && status_of(&app.db, free_2.order).await == "completed"
        {
            settled = true;
            break;
        }
    }
    assert!(
        settled,
        "the others waited for a lock they did not need (batch lock wait {LOCK_WAIT:?})"
    );
    assert_eq!(status_of(&app.db, held.order).await, "placing");
    elsewhere.rollback().await.unwrap();
    let [a1, a_held, a2] = batch.await;
    assert_eq!(a1.unwrap().unwrap().status, OrderStatus::Completed);
    assert_eq!(a2.unwrap().unwrap().status, OrderStatus::Completed);
    let a_held = a_held
        .unwrap()
        .expect("written alone once the lock is gone");
    assert_eq!(
        (a_held.status, a_held.xoxoday_order_id),
        (OrderStatus::Completed, Some(22))
    );
}

#[tokio::test]
async fn a_write_back_written_again_changes_nothing() {
    // A COMMIT whose answer was lost (or a batch given up after it
    // committed): the write-back runs again, and its exchange and its
    // cleared lease fence it. Its caller reads the order as it stands.
    let app = spawn_app().await;
    let store = Store::from_pool(app.db.clone());
    let wb = placed(&placing(&app, &store, "wb-twice").await, 31, Vec::new());
    let first = store
        .record_place_result(&wb)
        .await
        .unwrap()
        .expect("written");
    let (xmin, _) = exchange_xmin(&app.db, wb.exchange_id).await;
    assert!(store.record_place_result(&wb).await.unwrap().is_none());
    assert_eq!(exchange_xmin(&app.db, wb.exchange_id).await.0, xmin);
    assert_eq!(
        order_xmin(&app.db, first.id).await,
        xmin,
        "nothing rewritten"
    );
    assert_eq!(status_of(&app.db, first.id).await, "completed");
}

/// Holds the blockers' order rows locked while their write-backs take
/// every batch pipe, queues `queued`, releases the lock and returns the
/// queued write-backs' answers, in order.
async fn batch_behind_blockers(
    db: &PgPool,
    write_backs: &WriteBacks,
    blocking: &[Arc<WriteBack>; PIPES],
    queued: &[Arc<WriteBack>; 3],
) -> [StoreResult<Option<Order>>; 3] {
    let mut lock = db.begin().await.unwrap();
    for wb in blocking {
        sqlx::query("select 1 from orders where order_id = $1 for update")
            .bind(wb.order.as_uuid())
            .execute(&mut *lock)
            .await
            .unwrap();
    }
    let run = |wb| Box::pin(write_backs.record(wb)) as Pending<'_, StoreResult<Option<Order>>>;
    let (blocked, answers) = behind_busy_pipes(
        db,
        lock,
        blocking.iter().map(run).collect(),
        queued.iter().map(run).collect(),
    )
    .await;
    for b in blocked {
        b.unwrap().expect("a blocker is written");
    }
    answers.try_into().unwrap_or_else(|_| unreachable!())
}

/// A batched operation under way.
pub(crate) type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Makes a batch of `queued` deterministic: each of `blocking` (one per
/// pipe, of batches that never count as stalled) is started alone and left
/// waiting for a row `lock` holds, so the next ones queue (polled once
/// each); then the lock is released. Returns the answers of both, in order.
pub(crate) async fn behind_busy_pipes<T>(
    db: &PgPool,
    lock: sqlx::Transaction<'_, sqlx::Postgres>,
    mut blocking: Vec<Pending<'_, T>>,
    mut queued: Vec<Pending<'_, T>>,
) -> (Vec<T>, Vec<T>) {
    // One at a time: a leader takes everything queued when it starts.
    for (i, f) in blocking.iter_mut().enumerate() {
        assert!(poll!(f.as_mut()).is_pending());
        wait_for_lock_waiters(db, i + 1).await;
    }
    for f in &mut queued {
        assert!(poll!(f.as_mut()).is_pending());
    }
    lock.rollback().await.unwrap();
    let mut blocked = Vec::new();
    for f in blocking {
        blocked.push(f.await);
    }
    // Together: an item told to go alone does so when polled.
    (blocked, futures::future::join_all(queued).await)
}

/// One order per batch pipe to block it, and three to queue, each
/// `placing` with its call begun; keys `{prefix}-block-N` and
/// `{prefix}-{name}`.
async fn blockers_and_three(
    app: &TestApp,
    store: &Store,
    prefix: &str,
    names: [&str; 3],
) -> ([WriteBack; PIPES], [WriteBack; 3]) {
    let mut blockers = Vec::new();
    for n in 1..=PIPES {
        blockers.push(placing(app, store, &format!("{prefix}-block-{n}")).await);
    }
    let mut queued = Vec::new();
    for name in names {
        queued.push(placing(app, store, &format!("{prefix}-{name}")).await);
    }
    (array(blockers), array(queued))
}

fn array<const N: usize>(v: Vec<WriteBack>) -> [WriteBack; N] {
    v.try_into().unwrap_or_else(|_| unreachable!())
}

/// An order in `placing` under a lease, its call begun (exchange row, slot).
pub(crate) async fn placing(app: &TestApp, store: &Store, key: &str) -> WriteBack {
    let id = Uuid::now_v7();
    sqlx::query(
        "insert into orders (order_id, caller_id, idempotency_key, request_fingerprint, po_number,
           product_id, denomination, quantity, next_attempt_at)
         select $1, caller_id, $2, '\\x00', 'OGW-' || $2, 1001, 25, 1,
           now() + interval '1 hour' from callers",
    )
    .bind(id)
    .bind(key)
    .execute(&app.db)
    .await
    .unwrap();
    let order = OrderId::from_uuid(id);
    let lease_for = Duration::from_secs(60);
    let claimed = store.claim_order(order, lease_for).await.unwrap().unwrap();
    let lease = claimed.lease_token.unwrap();
    let exchange_id = Uuid::now_v7();
    let start = ExchangeStart {
        exchange_id,
        operation: "place_order",
        method: "POST",
        url: "http://x",
        request_body: json!({}),
    };
    let ask = SlotAsk {
        operation: "place_order",
        per_minute: 1000,
        window: Duration::from_secs(60),
    };
    let begun = store
        .begin_place_attempt(order, lease, lease_for, start, ask)
        .await
        .unwrap();
    assert!(matches!(begun, Begin::Send { .. }), "{begun:?}");
    WriteBack {
        order,
        lease,
        exchange_id,
        end: Default::default(),
        result: PlaceResult::Deferred {
            reason: String::new(),
            retry_in: Duration::ZERO,
        },
    }
}

/// `wb`'s order placed upstream as `xoxoday_order_id`, with `vouchers`.
pub(crate) fn placed(
    wb: &WriteBack,
    xoxoday_order_id: i64,
    vouchers: Vec<VoucherRow>,
) -> Arc<WriteBack> {
    Arc::new(WriteBack {
        order: wb.order,
        lease: wb.lease,
        exchange_id: wb.exchange_id,
        end: Default::default(),
        result: PlaceResult::Placed(PlacedFacts {
            status: Some(OrderStatus::Completed),
            xoxoday_order_id,
            delivery_status: "delivered".into(),
            vouchers,
            ..Default::default()
        }),
    })
}

pub(crate) async fn wait_for_lock_waiters(db: &PgPool, n: usize) {
    for _ in 0..500 {
        let waiting: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity
             where datname = current_database() and wait_event_type = 'Lock'",
        )
        .fetch_one(db)
        .await
        .unwrap();
        if waiting as usize >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seen: Vec<(Option<String>, Option<String>, Option<String>)> = sqlx::query_as(
        "select state, wait_event, left(query, 60) from pg_stat_activity where datname = current_database()",
    )
    .fetch_all(db)
    .await
    .unwrap();
    panic!("the blockers' batches never waited for the row lock: {seen:?}");
}

async fn status_of(db: &PgPool, order: OrderId) -> String {
    sqlx::query_scalar("select status from orders where order_id = $1")
        .bind(order.as_uuid())
        .fetch_one(db)
        .await
        .unwrap()
}

pub(crate) async fn order_xmin(db: &PgPool, order: OrderId) -> i64 {
    sqlx::query_scalar("select xmin::text::bigint from orders where order_id = $1")
        .bind(order.as_uuid())
        .fetch_one(db)
        .await
        .unwrap()
}

async fn exchange_xmin(db: &PgPool, exchange: Uuid) -> (i64, bool) {
    sqlx::query_as(
        "select xmin::text::bigint, completed_at is not null
         from upstream_exchanges where exchange_id = $1",
    )
    .bind(exchange)
    .fetch_one(db)
    .await
    .unwrap()
}
