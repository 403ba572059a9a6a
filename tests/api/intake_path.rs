//! The fused intake (issue 11): a new order that a permit and a slot are
//! free for is stored and begins its first placeOrder in one statement and
//! one transaction (order row, lease, attempt 1, exchange row, slot), sent
//! by a task that no client can cancel, and asks Xoxoday exactly what a
//! later attempt built from the stored row asks.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use order_gateway::emulator::{Fault, FaultOp, LateAnswer};
use serde_json::{Value, json};

use crate::{
    helpers::{Options, TestApp, new_key, order_body, spawn_app, spawn_app_with},
    ledger::{assert_ledger_consistent, fast, lift_pauses_and_make_due, wait_all_settled},
};

/// `(created_at, from, to)` of the order's timeline rows, in order.
async fn timeline(db: &sqlx::PgPool, po: &str) -> Vec<(DateTime<Utc>, Option<String>, String)> {
    sqlx::query_as(
        "select t.created_at, t.from_status, t.to_status from order_timeline t
           join orders o using (order_id) where o.po_number = $1 order by t.timeline_id",
    )
    .bind(po)
    .fetch_all(db)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_new_order_is_stored_and_its_first_call_begun_in_one_transaction() {
    let app = spawn_app().await;

    let order: Value = app
        .post_order(&new_key(), &order_body())
        .await
        .json()
        .await
        .unwrap();

    assert_eq!(order["status"], "completed", "{order}");
    let po = order["poNumber"].as_str().unwrap();
    // `created_at` is the transaction's start (`now()`): the order row, its
    // first exchange row and the first two timeline rows share it only
    // when one transaction wrote them all.
    let (stored, first_call): (DateTime<Utc>, DateTime<Utc>) = sqlx::query_as(
        "select o.created_at, e.created_at from orders o
           join upstream_exchanges e on e.order_id = o.order_id and e.attempt = 1
          where o.po_number = $1",
    )
    .bind(po)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(
        first_call, stored,
        "the first exchange row was written in a later transaction than the order"
    );
    let steps = timeline(&app.db, po).await;
    let shape: Vec<(Option<&str>, &str)> = steps
        .iter()
        .map(|(_, from, to)| (from.as_deref(), to.as_str()))
        .collect();
    assert_eq!(
        shape,
        [
            (None, "accepted"),
            (Some("accepted"), "placing"),
            (Some("placing"), "completed")
        ]
    );
    assert_eq!(steps[0].0, stored);
    assert_eq!(
        steps[1].0, stored,
        "the claim was committed in a later transaction than the order"
    );
    assert_eq!(app.emulator.place_calls(po), 1);
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn the_first_call_asks_exactly_what_a_retry_built_from_the_stored_order_asks() {
    // Arrange: the first placeOrder is throttled (no order created), so the
    // second attempt is built from the stored row by the background loop.
    let app = spawn_app_with(fast(&[])).await;
    app.emulator.push_fault(
        FaultOp::PlaceOrder,
        Fault::RateLimited {
            penalty_seconds: 30,
        },
    );
    let body = json!({
        "productId": 1002,
        "denomination": "25.50",
        "quantity": 2,
        "email": "First.Last+tag@example.com",
        "contact": "+1-4705000000",
        "tag": "campaign \"spring\" ✓",
        "notifyReceiverEmail": false,
        "userMeta": {"zeta": [1, 2.5, {"b": null, "a": true}], "alpha": "ß", "n": 12345678901234u64},
    });

    let first: Value = app
        .post_order(&new_key(), &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["status"], "accepted", "{first}");
    lift_pauses_and_make_due(&app.db).await;
    wait_all_settled(&app.db, Duration::from_secs(30)).await;

    // Assert: two calls, the same request (the audit keeps each as sent).
    let bodies: Vec<Value> = sqlx::query_scalar(
        "select e.request_body from upstream_exchanges e join orders o using (order_id)
          where o.po_number = $1 and e.operation = 'place_order' order by e.created_at",
    )
    .bind(first["poNumber"].as_str().unwrap())
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert_eq!(bodies[0], bodies[1]);
    assert_eq!(
        app.count("orders where status = 'completed' and attempts = 1")
            .await,
        1
    );
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn a_client_hanging_up_while_its_insert_waits_still_gets_its_order_sent_at_once() {
    // Arrange: hold the placeOrder slot lock, so the insert (which takes a
    // slot in the same statement) waits inside Postgres.
    let app = spawn_app().await;
    let mut blocker = app.db.begin().await.unwrap();
    sqlx::query("select pg_advisory_xact_lock(hashtext('upstream_slot:place_order'))")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let key = new_key();

    // Act: the client gives up while the statement waits; then the lock goes.
    let gave_up = app
        .http
        .post(app.url("/v1/orders"))
        .bearer_auth(&app.api_key)
        .header("Idempotency-Key", &key)
        .json(&order_body())
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(gave_up.is_err(), "the client should have timed out");
    tokio::time::sleep(Duration::from_millis(200)).await;
    blocker.rollback().await.unwrap();

    // Assert: sent once and settled well inside the 30 s lease, not left
    // `placing` for a lease expiry and a reconciliation.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let (status, attempts, po) = loop {
        let row: Option<(String, i32, String)> = sqlx::query_as(
            "select status, attempts, po_number from orders where idempotency_key = $1",
        )
        .bind(&key)
        .fetch_optional(&app.db)
        .await
        .unwrap();
        match row {
            Some((s, a, po)) if s == "completed" => break (s, a, po),
            other => assert!(
                tokio::time::Instant::now() < deadline,
                "not settled within 5 s: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!((status.as_str(), attempts), ("completed", 1));
    assert_eq!(app.emulator.place_calls(&po), 1);
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn a_replay_takes_no_slot_and_writes_nothing() {
    let app = spawn_app().await;
    let key = new_key();
    let first = app.post_order(&key, &order_body()).await;
    assert_eq!(first.status(), 201);
    let slots_before = app.slots_taken("place_order").await;

    for _ in 0..3 {
        let again = app.post_order(&key, &order_body()).await;
        assert_eq!(again.status(), 200);
    }

    assert_eq!(app.slots_taken("place_order").await, slots_before);
    assert_eq!(app.count("orders").await, 1);
    assert_eq!(
        app.count("upstream_exchanges where operation = 'place_order'")
            .await,
        1
    );
}

/// `n` concurrent POSTs of the same order under `key`; each yields its status.
fn post_at_once(app: &Arc<TestApp>, key: &str, n: usize) -> Vec<tokio::task::JoinHandle<u16>> {
    (0..n)
        .map(|_| {
            let (app, key) = (Arc::clone(app), key.to_owned());
            tokio::spawn(async move { app.post_order(&key, &order_body()).await.status().as_u16() })
        })
        .collect()
}

/// Holds the placeOrder slot lock.
async fn hold_slot_lock(db: &sqlx::PgPool) -> sqlx::Transaction<'static, sqlx::Postgres> {
    crate::helpers::hold_slot_lock(db, "place_order").await
}

/// Adversarial review (F1): an attempt that waits for the slot lock longer
/// than its lease is never placed twice. A first fused form (and
/// `begin_place_attempt` before it) stamped the lease and the send time at
/// the start of the statement, before the lock wait: the lease was already
/// expired at commit, a background pass expired it mid-call with a settle
/// window counted from the stale start, the reconciler trusted a "not
/// found" while the first call's order was still being created, and placed
/// again: two upstream orders for one poNumber.
#[tokio::test]
async fn an_attempt_that_waited_past_its_lease_for_the_slot_lock_is_never_placed_twice() {
    let app = Arc::new(
        spawn_app_with(Options {
            place_timeout: "2s",
            ..fast(&[("XOXODAY_SETTLE_WINDOW", "4s")])
        })
        .await,
    );
    // The first call hangs until the client gives up (2 s); Xoxoday creates
    // the order 3 s after the call ended, inside the 4 s settle window
    // (getOrderDetails: not found until then).
    app.emulator.push_fault(
        FaultOp::PlaceOrder,
        Fault::LateCreate {
            after: Duration::from_secs(3),
            answer: LateAnswer::Hang(Duration::from_secs(30)),
        },
    );
    let blocker = hold_slot_lock(&app.db).await;
    let key = new_key();
    let post = {
        let (app, key) = (Arc::clone(&app), key.clone());
        tokio::spawn(async move {
            app.post_order_as(&app.api_key, &key, &order_body(), Some(0))
                .await
                .status()
        })
    };
    // Longer than ORDER_LEASE (3 s in `fast`).
    tokio::time::sleep(Duration::from_secs(5)).await;
    blocker.rollback().await.unwrap();
    let _ = post.await.unwrap();

    wait_all_settled(&app.db, Duration::from_secs(40)).await;
    // Let any late creation land.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let po: String = sqlx::query_scalar("select po_number from orders where idempotency_key = $1")
        .bind(&key)
        .fetch_one(&app.db)
        .await
        .unwrap();
    eprintln!("timeline: {:#?}", timeline(&app.db, &po).await);
    assert_eq!(
        app.emulator.orders_for(&po).len(),
        1,
        "double spend: {} upstream orders for one request (poNumber {po})",
        app.emulator.orders_for(&po).len()
    );
}

/// Adversarial review (F2): concurrent duplicates of a new key take no
/// slot of the shared placeOrder budget (a first fused form took the slot
/// before the insert settled the key: each duplicate spent one, only one
/// call went out, and other callers' orders starved).
#[tokio::test]
async fn concurrent_duplicates_waiting_for_the_slot_lock_do_not_spend_the_budget() {
    let app = Arc::new(
        spawn_app_with(fast(&[
            ("XOXODAY_PLACE_ORDER_RATE", "3"),
            ("XOXODAY_RATE_WINDOW", "30s"),
            ("XOXODAY_ALLOW_SHORT_RATE_WINDOW", "1"),
        ]))
        .await,
    );
    let blocker = hold_slot_lock(&app.db).await;
    let key = new_key();
    let posts = post_at_once(&app, &key, 4);
    tokio::time::sleep(Duration::from_millis(500)).await;
    blocker.rollback().await.unwrap();
    for p in posts {
        let s = p.await.unwrap();
        assert!((200..=202).contains(&s), "{s}");
    }
    let slots = app.slots_taken("place_order").await;
    let calls = app
        .count("upstream_exchanges where operation = 'place_order'")
        .await;
    eprintln!("slots {slots}, calls {calls}");

    // Another caller's order, well inside the budget (1 call of 3 made).
    let other: Value = app
        .post_order(&new_key(), &order_body())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (slots, other["status"].as_str()),
        (calls, Some("completed")),
        "slots taken vs placeOrder calls sent, and another caller's order"
    );
}

/// Adversarial review (F4): a slot lock held longer than the pool's 10 s
/// statement_timeout does not refuse a new order: it is stored and queued
/// (contract §2.5). A first fused form waited for the lock inside the
/// insert until the timeout cancelled it: 500, nothing stored.
#[tokio::test]
async fn a_slow_slot_lock_does_not_refuse_new_orders() {
    let app = spawn_app_with(fast(&[])).await;
    let blocker = hold_slot_lock(&app.db).await;
    let key = new_key();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(12)).await;
        blocker.rollback().await.unwrap();
    });
    let resp = app
        .post_order_as(&app.api_key, &key, &order_body(), Some(0))
        .await;
    let status = resp.status().as_u16();
    release.await.unwrap();
    let stored = app
        .count(&format!("orders where idempotency_key = '{key}'"))
        .await;
    assert_eq!(
        (status, stored),
        (202, 1),
        "status {status}, stored {stored}"
    );
}

/// Adversarial review (F2) without any lock held by the test: 24 concurrent
/// duplicates (as
/// `orders_idempotency::concurrent_duplicates_make_one_order_and_one_upstream_call`).
#[tokio::test]
async fn concurrent_duplicates_take_one_slot() {
    let app = Arc::new(spawn_app_with(fast(&[])).await);
    let key = new_key();
    let posts = post_at_once(&app, &key, 24);
    for p in posts {
        p.await.unwrap();
    }
    let slots = app.slots_taken("place_order").await;
    let calls = app
        .count("upstream_exchanges where operation = 'place_order'")
        .await;
    assert_eq!(slots, calls, "placeOrder slots taken vs calls sent");
}

/// Second adversarial review: a slot lock held for seconds while orders
/// queue up does not refuse new ones. Each new order waited 250 ms for the
/// lock and was left to the background loop, whose claimed attempts each
/// queued on the lock holding a pooled connection; after about nine the
/// pool was empty and the next POST got 503 (PoolTimedOut). Now at most
/// `SLOT_LOCK_WAITERS` connections per process wait for the lock; the rest
/// wait in memory (intake for at most 250 ms more).
#[tokio::test]
async fn a_slow_slot_lock_with_a_queue_does_not_refuse_new_orders() {
    let app = Arc::new(spawn_app_with(fast(&[])).await);
    let blocker = hold_slot_lock(&app.db).await;

    let mut answers = Vec::new();
    for _ in 0..12 {
        let r = app
            .post_order_as(&app.api_key, &new_key(), &order_body(), Some(0))
            .await;
        answers.push(r.status().as_u16());
    }
    blocker.rollback().await.unwrap();

    assert!(
        answers.iter().all(|s| *s == 202),
        "new orders refused while the slot lock was held: {answers:?}"
    );
    wait_all_settled(&app.db, Duration::from_secs(30)).await;
    assert_eq!(
        app.count("orders where status = 'completed' and attempts = 1")
            .await,
        12
    );
    assert_ledger_consistent(&app).await;
}

/// Adversarial review of the slot blocks: while the slot lock is held, new
/// orders waiting for a block hold their intake transaction open on a
/// pooled connection. A first version let 16 of them wait (more than the
/// whole pool: a GET took 783 ms); now they share the 4 lock waiters of
/// the process with the background attempts.
#[tokio::test]
async fn a_held_slot_lock_keeps_no_more_than_four_pooled_connections_waiting_for_blocks() {
    let app = Arc::new(spawn_app_with(fast(&[])).await);
    let existing: serde_json::Value = app
        .post_order(&new_key(), &order_body())
        .await
        .json()
        .await
        .unwrap();
    let existing_id = existing["id"].as_str().unwrap_or_default().to_owned();
    // A slow slot holder (another replica's attempt, an old replica's intake).
    let blocker = hold_slot_lock(&app.db).await;
    let posts: Vec<_> = (0..32)
        .map(|_| {
            let app = Arc::clone(&app);
            tokio::spawn(async move {
                app.post_order_as(&app.api_key, &new_key(), &order_body(), Some(0))
                    .await
                    .status()
                    .as_u16()
            })
        })
        .collect();
    // Pooled connections of the gateway sitting in an intake transaction
    // after its insert for 50 ms or more (waiting for its block, not just
    // about to commit) while the lock is held.
    let reads = {
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..12 {
                let t = std::time::Instant::now();
                let s = app
                    .get_order(&app.api_key, &existing_id)
                    .await
                    .status()
                    .as_u16();
                seen.push((s, t.elapsed().as_millis()));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            seen
        })
    };
    let mut most = 0_i64;
    let until = tokio::time::Instant::now() + Duration::from_secs(4);
    while tokio::time::Instant::now() < until {
        let n: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity
              where datname = current_database() and application_name = 'order-gateway'
                and state = 'idle in transaction' and query like 'with k as%'
                and state_change < clock_timestamp() - interval '50 milliseconds'",
        )
        .fetch_one(&app.db)
        .await
        .unwrap();
        most = most.max(n);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    blocker.rollback().await.unwrap();
    let mut statuses = Vec::new();
    for p in posts {
        statuses.push(p.await.unwrap());
    }
    eprintln!(
        "GET /v1/orders/{{id}} during the hold (status, ms): {:?}",
        reads.await.unwrap()
    );
    eprintln!("most pooled connections idle in transaction: {most}; statuses {statuses:?}");
    assert!(
        most <= 4,
        "{most} pooled connections (of 8) held idle in transaction waiting for a block \
         while the slot lock was held"
    );
}
