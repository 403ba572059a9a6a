//! No duplicate spend (contract §2.1): one order per (caller, key), whatever
//! the mix of repeats, concurrency and bodies.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::helpers::{assert_problem, create_key, new_key, order_body, spawn_app};

#[tokio::test]
async fn concurrent_duplicates_make_one_order_and_one_upstream_call() {
    let app = Arc::new(spawn_app().await);
    let key = new_key();
    let mut tasks = Vec::new();
    for _ in 0..24 {
        let (app, key) = (Arc::clone(&app), key.clone());
        tasks.push(tokio::spawn(async move {
            let resp = app.post_order(&key, &order_body()).await;
            let status = resp.status().as_u16();
            let replayed = resp.headers().get("idempotent-replayed").is_some();
            let body: Value = resp.json().await.unwrap();
            (status, replayed, body)
        }));
    }
    let mut ids = Vec::new();
    let mut created = 0;
    for t in tasks {
        let (status, replayed, body) = t.await.unwrap();
        assert!((200..=202).contains(&status), "status {status}");
        if !replayed {
            created += 1;
            assert_eq!(status, 201);
        }
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "all answers name one order");
    assert_eq!(created, 1, "exactly one request created it");
    assert_eq!(app.count("orders").await, 1);
    let po: String = sqlx::query_scalar("select po_number from orders")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(app.emulator.place_calls(&po), 1);
    assert_eq!(app.emulator.orders().len(), 1);
}

#[tokio::test]
async fn a_sequential_repeat_replays_the_same_order_with_200() {
    let app = spawn_app().await;
    let key = new_key();
    let first = app.post_order(&key, &order_body()).await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["status"], "completed");

    // Same meaning, different spelling: still the same request.
    let respelled = json!({"email": "a@example.com", "denomination": "50.00", "productId": 1001, "quantity": 1});
    let again = app.post_order(&key, &respelled).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["poNumber"], first["poNumber"]);
    assert_eq!(again["vouchers"], first["vouchers"]);
    assert_eq!(
        app.emulator
            .place_calls(first["poNumber"].as_str().unwrap()),
        1
    );
}

#[tokio::test]
async fn the_same_key_with_a_different_body_gets_422_and_changes_nothing() {
    let app = spawn_app().await;
    let key = new_key();
    let first: Value = app
        .post_order(&key, &order_body())
        .await
        .json()
        .await
        .unwrap();
    let mut other = order_body();
    other["denomination"] = json!(25);
    let problem = assert_problem(app.post_order(&key, &other).await, 422).await;
    assert_eq!(
        problem["type"],
        "https://order-gateway/problems/idempotency-key-reused"
    );
    assert_eq!(app.count("orders").await, 1);
    assert_eq!(app.emulator.orders().len(), 1);
    let now: Value = app
        .get_order(&app.api_key, first["id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(now["denomination"], "50");
}

#[tokio::test]
async fn keys_are_scoped_per_caller() {
    let app = spawn_app().await;
    let other_key = create_key(&app.db, "caller-b").await;
    let key = new_key();
    let a: Value = app
        .post_order(&key, &order_body())
        .await
        .json()
        .await
        .unwrap();
    let resp = app
        .post_order_as(&other_key, &key, &order_body(), None)
        .await;
    assert_eq!(resp.status(), 201);
    assert!(resp.headers().get("idempotent-replayed").is_none());
    let b: Value = resp.json().await.unwrap();
    assert_ne!(a["id"], b["id"]);
    assert_ne!(a["poNumber"], b["poNumber"]);
    assert_eq!(app.emulator.orders().len(), 2);
    // Neither caller sees the other's order.
    let resp = app.get_order(&other_key, a["id"].as_str().unwrap()).await;
    assert_problem(resp, 404).await;
}

#[tokio::test]
async fn a_replay_of_a_key_this_gateway_stored_is_answered_by_a_read_without_an_insert() {
    // Arrange: count every row the gateway proposes to `orders`. A BEFORE
    // INSERT trigger fires for each proposed row, before ON CONFLICT finds
    // the key taken, so the gate's insert counts even when it replays.
    let app = spawn_app().await;
    sqlx::raw_sql(
        "create table proposed (n integer);
         create function count_proposed() returns trigger language plpgsql as
           $$ begin insert into proposed values (1); return new; end $$;
         create trigger count_proposed before insert on orders
           for each row execute function count_proposed();",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let key = new_key();
    let first = app.post_order(&key, &order_body()).await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();

    // Act
    let replays = [
        app.post_order(&key, &order_body()).await,
        app.post_order(&key, &order_body()).await,
    ];

    // Assert: the same answer, and no insert proposed after the first.
    for replay in replays {
        assert_eq!(replay.status(), 200);
        assert!(replay.headers().get("idempotent-replayed").is_some());
        let body: Value = replay.json().await.unwrap();
        assert_eq!(body["id"], first["id"]);
        assert_eq!(body["vouchers"], first["vouchers"]);
    }
    let proposed: i64 = sqlx::query_scalar("select count(*) from proposed")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(proposed, 1);
    // A different body under the key is still refused on this path.
    let other = json!({"productId": 1001, "denomination": 25, "email": "a@example.com"});
    assert_problem(app.post_order(&key, &other).await, 422).await;
}
