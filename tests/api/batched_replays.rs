//! Replays of keys a process has seen stored are read in batches: the
//! replays ready at the same moment share one select (issue 11). Each is
//! answered as its own read would answer it (live key, its own order, its
//! vouchers in order), and a read queued behind a busy one is read after it
//! was asked, never from an earlier answer.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures::{FutureExt as _, future::join_all};
use order_gateway::{
    orders::{
        batches::{Batchable, Batches},
        callers::hash_key,
        intake::ReplayReads,
    },
    store::{
        Store, StoreError,
        orders::{Replay, ReplayAsk},
    },
};
use serde_json::{Value, json};
use tokio_util::task::TaskTracker;

use crate::{
    helpers::{create_key, new_key, order_body, spawn_app},
    write_backs::{NEVER_STALLED, wait_for_lock_waiters},
};

#[tokio::test]
async fn one_read_answers_each_replay_as_its_own_read_would() {
    let app = spawn_app().await;
    let store = Store::from_pool(app.db.clone());
    // Settled with two vouchers, refused (no vouchers), and one stored by
    // another caller under a key this caller also uses.
    let two = new_key();
    let body =
        json!({"productId": 1001, "denomination": 50, "quantity": 2, "email": "a@example.com"});
    let settled: Value = app.post_order(&two, &body).await.json().await.unwrap();
    assert_eq!(settled["status"], "completed", "{settled}");
    let failed = app.place_refused().await;
    let refused = failed["idempotencyKey"].as_str().unwrap().to_owned();
    assert_eq!(failed["status"], "failed", "{failed}");
    let other_key = create_key(&app.db, "another-service").await;
    let theirs = new_key();
    let resp = app
        .post_order_as(&other_key, &theirs, &order_body(), None)
        .await;
    assert_eq!(resp.status(), 201);
    let revoked = "ogw_revoked_for_the_replay_test";
    sqlx::query(
        "insert into api_keys (api_key_id, caller_id, key_hash, revoked_at)
         select gen_random_uuid(), caller_id, $2, now() from api_keys where key_hash = $1",
    )
    .bind(&hash_key(&app.api_key)[..])
    .bind(&hash_key(revoked)[..])
    .execute(&app.db)
    .await
    .unwrap();

    let asks = [
        ask(&app.api_key, &two),
        ask(&app.api_key, "never-stored"),
        ask(&app.api_key, &refused),
        ask(&app.api_key, &two),
        ask(revoked, &two),
        ask(&app.api_key, &theirs),
        ask(&other_key, &theirs),
    ];
    let together = store.find_replays(&asks.each_ref()).await.unwrap();

    let ids = |found: &[Option<Replay>]| -> Vec<Option<String>> {
        found
            .iter()
            .map(|f| f.as_ref().map(|(o, _)| o.id.to_string()))
            .collect()
    };
    let (s, f, t) = (
        settled["id"].as_str().map(str::to_owned),
        failed["id"].as_str().map(str::to_owned),
        Some(
            sqlx::query_scalar::<_, uuid::Uuid>(
                "select order_id from orders where idempotency_key = $1",
            )
            .bind(&theirs)
            .fetch_one(&app.db)
            .await
            .unwrap()
            .to_string(),
        ),
    );
    assert_eq!(
        ids(&together),
        [s.clone(), None, f, s, None, None, t],
        "each ask gets its own caller's order under a live key, or nothing"
    );
    let (_, vouchers) = together[0].as_ref().unwrap();
    let positions: Vec<i32> = vouchers.iter().map(|v| v.position).collect();
    assert_eq!(
        positions.len(),
        2,
        "both vouchers, once each: {positions:?}"
    );
    assert!(positions.is_sorted());
    assert!(together[2].as_ref().unwrap().1.is_empty());
    // The single read is the oracle: the same order, status and vouchers.
    for (ask, batched) in asks.iter().zip(&together) {
        let alone = store.find_replay(ask).await.unwrap();
        assert_eq!(sketch(batched.as_ref()), sketch(alone.as_ref()), "{ask:?}");
    }
}

#[tokio::test]
async fn a_replay_queued_behind_a_busy_read_reads_after_it_was_asked() {
    let app = spawn_app().await;
    let store = Store::from_pool(app.db.clone());
    let (first, second) = (new_key(), new_key());
    for key in [&first, &second] {
        assert_eq!(app.post_order(key, &order_body()).await.status(), 201);
    }
    let ask = |key: &str| Arc::new(ask(&app.api_key, key));
    let reads =
        Batches::new(ReplayReads(store.clone()), TaskTracker::new()).stalled_after(NEVER_STALLED);
    // Every read pipe waits for a table lock; a change commits under it.
    let mut lock = app.db.begin().await.unwrap();
    sqlx::query("lock table orders in access exclusive mode")
        .execute(&mut *lock)
        .await
        .unwrap();
    let blockers: Vec<_> = (0..ReplayReads::PIPES)
        .map(|_| ask(&first))
        .collect::<Vec<_>>();
    let mut blocked: Vec<_> = blockers.iter().map(|a| reads.run(a).boxed()).collect();
    for (i, b) in blocked.iter_mut().enumerate() {
        assert!(futures::poll!(b.as_mut()).is_pending());
        wait_for_lock_waiters(&app.db, i + 1).await;
    }
    let queued_ask = ask(&second);
    let mut queued = reads.run(&queued_ask).boxed();
    assert!(futures::poll!(queued.as_mut()).is_pending());
    sqlx::query(
        "update orders set status_reason = 'changed after the ask' where idempotency_key = $1",
    )
    .bind(&second)
    .execute(&mut *lock)
    .await
    .unwrap();
    lock.commit().await.unwrap();

    for b in join_all(blocked).await {
        assert!(b.unwrap().is_some());
    }
    let (order, _) = queued.await.unwrap().expect("the order");
    assert_eq!(
        order.status_reason.as_deref(),
        Some("changed after the ask"),
        "read after the change that committed while it queued"
    );
}

#[tokio::test]
async fn with_the_database_unreachable_every_read_answers_unavailable_within_the_acquire_timeout() {
    // Nobody listens: every connection attempt fails until the pool's
    // acquire timeout (3 s).
    let url = secrecy::SecretString::from("postgres://postgres@127.0.0.1:1/nowhere");
    let store = Store::connect_lazy(&url, 2).unwrap();
    let reads = Arc::new(Batches::new(ReplayReads(store), TaskTracker::new()));
    // Enough, spread out, for the batches to stall and fill every pipe:
    // the later ones must not wait behind them, and the members of a
    // failed batch must not each wait again alone.
    let mut pending = Vec::new();
    for i in 0..24 {
        let reads = reads.clone();
        pending.push(tokio::spawn(async move {
            let started = Instant::now();
            let answer = reads
                .run(&Arc::new(ask("ogw_whatever", &format!("k-{i}"))))
                .await;
            (answer, started.elapsed())
        }));
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    for p in pending {
        let (answer, took) = p.await.unwrap();
        assert!(
            matches!(answer, Err(StoreError::Unavailable(_))),
            "{answer:?}"
        );
        assert!(took < Duration::from_secs(5), "answered after {took:?}");
    }
}

#[tokio::test]
async fn replays_at_once_each_get_their_own_order() {
    let app = spawn_app().await;
    let mut placed = Vec::new();
    for denomination in [10, 25, 50, 100] {
        let key = new_key();
        let body =
            json!({"productId": 1001, "denomination": denomination, "email": "a@example.com"});
        let order: Value = app.post_order(&key, &body).await.json().await.unwrap();
        placed.push((key, body, order));
    }
    // Each key once, so this process remembers it; then all at once, with
    // a mismatch among them.
    let requests = (0..64).map(|i| {
        let (key, body, order) = &placed[i % placed.len()];
        let mismatch = i % 16 == 15;
        let body = if mismatch {
            json!({"productId": 1001, "denomination": 10, "email": "b@example.com"})
        } else {
            body.clone()
        };
        let app = &app;
        async move {
            let resp = app.post_order(key, &body).await;
            (mismatch, order["id"].clone(), resp)
        }
    });
    for (mismatch, id, resp) in join_all(requests).await {
        if mismatch {
            assert_eq!(resp.status(), 422);
            continue;
        }
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().get("idempotent-replayed").is_some());
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["id"], id);
    }
    assert_eq!(app.count("orders").await, 4);
}

/// A replay read of `key` under the API key `api_key`.
fn ask(api_key: &str, key: &str) -> ReplayAsk {
    ReplayAsk {
        key_hash: hash_key(api_key),
        key: order_gateway::domain::IdempotencyKey::parse(key).unwrap(),
    }
}

/// What a replay answers with: order, status, reason and vouchers
/// (position and sealed code).
type Sketch = (String, String, Option<String>, Vec<(i32, Vec<u8>)>);

fn sketch(found: Option<&Replay>) -> Option<Sketch> {
    found.map(|(o, vouchers)| {
        (
            o.id.to_string(),
            o.status.to_string(),
            o.status_reason.clone(),
            vouchers
                .iter()
                .map(|v| (v.position, v.code_encrypted.clone()))
                .collect(),
        )
    })
}
