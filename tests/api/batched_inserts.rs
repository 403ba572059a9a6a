//! New orders without a first send (the budget is spent, every permit is
//! taken) are stored in batches: one statement for the orders ready at the
//! same moment (issue 11). A key the batch cannot store (taken, also by an
//! earlier order of the same batch, or revoked) is decided by the gate
//! alone, so replays, mismatches and revoked keys answer as without
//! batching.

use std::{sync::Arc, time::Duration};

use order_gateway::{
    domain::{Caller, IdempotencyKey, NewOrder, OrderId, OrderStatus, PoNumber},
    orders::{
        batches::{Batchable, Batches, LOCK_WAIT},
        callers::hash_key,
        intake::NewOrders,
    },
    store::{
        Store, StoreResult,
        orders::{Gate, NewGate},
    },
};
use serde_json::{Value, json};
use tokio_util::task::TaskTracker;

use crate::{
    helpers::{TestApp, new_key, order_body, spawn_app, spawn_app_with},
    ledger::fast,
    write_backs::{NEVER_STALLED, Pending, behind_busy_pipes, order_xmin, wait_for_lock_waiters},
};

#[tokio::test]
async fn one_statement_stores_only_new_keys_and_leaves_the_rest_to_the_gate() {
    let app = spawn_app().await;
    let store = Store::from_pool(app.db.clone());
    let caller = caller(&app, &store).await;
    // A key stored before, by the gate alone.
    let before = gate(&caller, "b-taken", 50);
    let Gate::Created(taken, _) = store
        .insert_order(
            &before.caller,
            &before.key,
            before.id,
            &before.po,
            &before.new,
            None,
        )
        .await
        .unwrap()
    else {
        panic!("stored");
    };
    let revoked_key = "ogw_revoked_for_the_test";
    sqlx::query(
        "insert into api_keys (api_key_id, caller_id, key_hash, revoked_at)
         values (gen_random_uuid(), $1, $2, now())",
    )
    .bind(caller.id.as_uuid())
    .bind(&hash_key(revoked_key)[..])
    .execute(&app.db)
    .await
    .unwrap();
    let revoked = Caller {
        key_hash: hash_key(revoked_key),
        ..caller.clone()
    };
    let batch = [
        gate(&caller, "b-new", 50),
        gate(&caller, "b-taken", 50),
        gate(&caller, "b-new", 60),
        NewGate {
            caller: revoked,
            ..gate(&caller, "b-revoked", 50)
        },
        gate(&caller, "b-other", 70),
    ];
    let stored = store
        .insert_new_orders(&batch.each_ref(), LOCK_WAIT)
        .await
        .unwrap();
    let ids: Vec<Option<OrderId>> = stored.iter().map(|o| o.as_ref().map(|o| o.id)).collect();
    assert_eq!(
        ids,
        [Some(batch[0].id), None, None, None, Some(batch[4].id)],
        "only new keys of a live caller are stored, each once"
    );
    let new = stored[0].as_ref().unwrap();
    assert_eq!(
        (new.status, new.po_number.as_str()),
        (OrderStatus::Accepted, batch[0].po.as_str())
    );
    assert_eq!(app.count("orders").await, 3);
    // The gate alone decides the rest: the same request under a taken key
    // is a replay of its order, also one stored by this very batch.
    let batches = Batches::new(NewOrders(store.clone()), TaskTracker::new());
    let alone = async |g: &NewGate| batches.run_alone(g).await.unwrap();
    match alone(&batch[1]).await {
        Gate::Existing(o, _) => assert_eq!(o.id, taken.id),
        other => panic!("{other:?}"),
    }
    match alone(&batch[2]).await {
        Gate::Existing(o, _) => assert_eq!(o.id, batch[0].id),
        other => panic!("{other:?}"),
    }
    assert!(matches!(alone(&batch[3]).await, Gate::Neither));
}

#[tokio::test]
async fn new_orders_ready_together_are_stored_by_one_statement() {
    let app = spawn_app().await;
    let store = Store::from_pool(app.db.clone());
    let caller = caller(&app, &store).await;
    let batches =
        Batches::new(NewOrders(store.clone()), TaskTracker::new()).stalled_after(NEVER_STALLED);
    // Every pipe waits on a key a test transaction inserted and holds.
    let mut lock = app.db.begin().await.unwrap();
    let blockers: Vec<_> = (1..=NewOrders::PIPES)
        .map(|n| Arc::new(gate(&caller, &format!("p-{n}"), 50)))
        .collect();
    for b in &blockers {
        store_in(&mut lock, &caller, b.key.as_str()).await;
    }
    let queued = [
        gate(&caller, "q-1", 50),
        gate(&caller, "q-2", 60),
        gate(&caller, "q-3", 70),
    ]
    .map(Arc::new);
    let run = |g| Box::pin(batches.run(g)) as Pending<'_, StoreResult<Gate>>;
    let (blocked, answers) = behind_busy_pipes(
        &app.db,
        lock,
        blockers.iter().map(run).collect(),
        queued.iter().map(run).collect(),
    )
    .await;
    for b in blocked {
        assert!(matches!(b.unwrap(), Gate::Created(..)));
    }
    let mut xmins = Vec::new();
    for (g, answer) in queued.iter().zip(answers) {
        match answer.unwrap() {
            Gate::Created(o, _) => assert_eq!(o.id, g.id),
            other => panic!("{other:?}"),
        }
        xmins.push(order_xmin(&app.db, g.id).await);
    }
    assert!(
        xmins.iter().all(|x| *x == xmins[0]),
        "one statement stored the queued orders: {xmins:?}"
    );
}

#[tokio::test]
async fn a_new_order_waiting_for_its_key_does_not_hold_the_orders_behind_it() {
    let app = spawn_app().await;
    let store = Store::from_pool(app.db.clone());
    let caller = caller(&app, &store).await;
    // The one pipe is never counted as stalled: only the batch's own lock
    // wait can free it.
    let batches = Arc::new(
        Batches::new(NewOrders(store.clone()), TaskTracker::new()).stalled_after(NEVER_STALLED),
    );
    // A same-key request on the send path holds its key; this order comes
    // alone, and waits for that request to decide.
    let mut held = app.db.begin().await.unwrap();
    store_in(&mut held, &caller, "w-held").await;
    let waiting = {
        let (batches, g) = (batches.clone(), Arc::new(gate(&caller, "w-held", 50)));
        tokio::spawn(async move { batches.run(&g).await })
    };
    wait_for_lock_waiters(&app.db, 1).await;
    // The orders that come next are stored while it still waits.
    let next = [gate(&caller, "w-next-1", 60), gate(&caller, "w-next-2", 70)].map(Arc::new);
    let stored = tokio::time::timeout(
        Duration::from_secs(5),
        futures::future::join_all(next.iter().map(|g| batches.run(g))),
    )
    .await
    .expect("not held behind the order waiting for its key");
    for (g, answer) in next.iter().zip(stored) {
        match answer.unwrap() {
            Gate::Created(o, _) => assert_eq!(o.id, g.id),
            other => panic!("{other:?}"),
        }
    }
    assert!(!waiting.is_finished(), "still waiting for the key");
    // The other request gives the key up: this one stores its order.
    held.rollback().await.unwrap();
    match waiting.await.unwrap().unwrap() {
        Gate::Created(o, _) => assert_eq!(o.idempotency_key.as_str(), "w-held"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_key_held_elsewhere_fails_the_batch_fast() {
    let app = spawn_app().await;
    let store = Store::from_pool(app.db.clone());
    let caller = caller(&app, &store).await;
    // A same-key request on the send path holds its row (say, waiting for
    // a block of rate slots).
    let mut held = app.db.begin().await.unwrap();
    store_in(&mut held, &caller, "z-held").await;
    let batch = [gate(&caller, "a-free", 50), gate(&caller, "z-held", 50)];
    let refs = batch.each_ref();
    let insert = store.insert_new_orders(&refs, LOCK_WAIT);
    let failed = tokio::time::timeout(Duration::from_secs(5), insert)
        .await
        .expect("not held for as long as the other transaction");
    assert!(failed.is_err(), "the batch gives up on the held key");
    assert_eq!(
        app.count("orders where idempotency_key = 'a-free'").await,
        0,
        "rolled back: each order then asks the gate alone"
    );
    held.rollback().await.unwrap();
}

#[tokio::test]
async fn a_burst_while_the_budget_is_spent_stores_each_key_once_and_answers_replays_and_mismatches()
{
    let app = Arc::new(
        spawn_app_with(fast(&[
            ("XOXODAY_PLACE_ORDER_RATE", "1"),
            ("XOXODAY_RATE_WINDOW", "30s"),
            ("XOXODAY_ALLOW_SHORT_RATE_WINDOW", "1"),
        ]))
        .await,
    );
    // The one call of the window goes out.
    let first = app.post_order(&new_key(), &order_body()).await;
    assert_eq!(first.status(), 201);
    let keys: Vec<String> = (0..24).map(|_| new_key()).collect();
    let mut posts = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        // Each key twice with the same body; every sixth also with another.
        let mut bodies = vec![order_body(), order_body()];
        if i % 6 == 0 {
            bodies.push(json!({"productId": 1001, "denomination": 25, "email": "b@example.com"}));
        }
        for body in bodies {
            let (app, key) = (app.clone(), key.clone());
            posts.push(tokio::spawn(async move {
                let resp = app.post_order_as(&app.api_key, &key, &body, Some(0)).await;
                let status = resp.status().as_u16();
                let json: Value = resp.json().await.unwrap_or(Value::Null);
                (key, body, status, json)
            }));
        }
    }
    // Per key: the body that won it, and the one order it names.
    let mut won = std::collections::HashMap::<String, (Value, String)>::new();
    let mut refused = Vec::new();
    for p in posts {
        let (key, body, status, json) = p.await.unwrap();
        match status {
            200..=202 => {
                let id = json["id"].as_str().unwrap().to_owned();
                let first = won.entry(key).or_insert_with(|| (body.clone(), id.clone()));
                assert_eq!(*first, (body, id), "one order per key, for one body");
            }
            422 => refused.push((key, body)),
            _ => panic!("{status} {json}"),
        }
    }
    assert_eq!(won.len(), keys.len(), "every key stored");
    for (key, body) in refused {
        assert_ne!(won[&key].0, body, "only the other body is refused");
    }
    for key in &keys {
        let n: i64 = sqlx::query_scalar("select count(*) from orders where idempotency_key = $1")
            .bind(key)
            .fetch_one(&app.db)
            .await
            .unwrap();
        assert_eq!(n, 1, "key {key}");
    }
    let commits: i64 = sqlx::query_scalar(
        "select count(distinct xmin::text) from orders where idempotency_key = any($1)",
    )
    .bind(&keys)
    .fetch_one(&app.db)
    .await
    .unwrap();
    eprintln!("{} keys stored by {commits} statements", keys.len());
    assert_eq!(
        app.count("upstream_exchanges where operation = 'place_order'")
            .await,
        1,
        "nothing sent past the budget"
    );
}

async fn caller(app: &TestApp, store: &Store) -> Caller {
    store
        .find_caller_by_key(&hash_key(&app.api_key))
        .await
        .unwrap()
        .expect("the app's caller")
}

fn gate(caller: &Caller, key: &str, denomination: u32) -> NewGate {
    let body = json!({"productId": 1001, "denomination": denomination, "email": "a@example.com"});
    NewGate {
        caller: caller.clone(),
        key: IdempotencyKey::parse(key).unwrap(),
        id: OrderId::generate(),
        po: PoNumber::generate(),
        new: NewOrder::parse(body.to_string().as_bytes()).unwrap(),
    }
}

/// An order under `key`, inserted (not committed) in `tx`.
async fn store_in(tx: &mut sqlx::PgConnection, caller: &Caller, key: &str) {
    sqlx::query(
        "insert into orders (order_id, caller_id, idempotency_key, request_fingerprint, po_number,
           product_id, denomination, quantity)
         values (gen_random_uuid(), $1, $2, '\\x00', 'OGW-held-' || $2, 1001, 25, 1)",
    )
    .bind(caller.id.as_uuid())
    .bind(key)
    .execute(tx)
    .await
    .unwrap();
}
