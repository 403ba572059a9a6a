//! Caller keys (issue 5): stored only as a hash, and revocation is
//! immediate, even on a replica that still has the key cached.

use order_gateway::{config::ServeConfig, startup::Application, store::Store};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::helpers::{Options, env, new_key, order_body, spawn_app};

#[tokio::test]
async fn keys_are_stored_only_as_their_hash() {
    let app = spawn_app().await;
    let hashes: Vec<Vec<u8>> = sqlx::query_scalar("select key_hash from api_keys")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(hashes.len(), 1);
    assert_eq!(hashes[0].len(), 32);
    assert!(
        !hashes[0]
            .windows(8)
            .any(|w| app.api_key.as_bytes().windows(8).any(|k| k == w))
    );
}

#[tokio::test]
async fn a_revoked_key_is_refused_at_once_by_a_replica_that_cached_it() {
    let app = spawn_app().await;
    let cfg = ServeConfig::from_env(&env(
        app.db_url(),
        &app.emulator.base_url(),
        &Options::default(),
    ))
    .unwrap();
    let replica = Application::build(cfg).await.unwrap();
    let addr = replica.local_addr();
    let stop = CancellationToken::new();
    tokio::spawn(replica.run(stop.clone()));
    let order: Value = app
        .post_order(&new_key(), &order_body())
        .await
        .json()
        .await
        .unwrap();
    let id = order["id"].as_str().unwrap();
    let get = |path: String| {
        app.http
            .get(format!("http://{addr}{path}"))
            .bearer_auth(&app.api_key)
            .send()
    };
    // The replica caches the key on these reads.
    assert_eq!(get(format!("/v1/orders/{id}")).await.unwrap().status(), 200);
    assert_eq!(
        get("/v1/orders?status=completed".into())
            .await
            .unwrap()
            .status(),
        200
    );

    let revoked = Store::from_pool(app.db.clone())
        .revoke_api_keys("caller-a")
        .await
        .unwrap();
    assert_eq!(revoked, 1);

    assert_eq!(get(format!("/v1/orders/{id}")).await.unwrap().status(), 401);
    assert_eq!(
        get("/v1/orders?status=completed".into())
            .await
            .unwrap()
            .status(),
        401
    );
    let post = app
        .http
        .post(format!("http://{addr}/v1/orders"))
        .bearer_auth(&app.api_key)
        .header("Idempotency-Key", new_key())
        .json(&order_body())
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 401);
    assert_eq!(app.emulator.orders().len(), 1);
    stop.cancel();
}

#[tokio::test]
async fn a_replay_after_revocation_is_refused_by_the_replica_that_stored_the_order() {
    // Arrange: this gateway stored the order (so it reads a replay of its
    // key before anything else) and cached the caller's key.
    let app = spawn_app().await;
    let key = new_key();
    assert_eq!(app.post_order(&key, &order_body()).await.status(), 201);
    assert_eq!(app.post_order(&key, &order_body()).await.status(), 200);

    // Act
    Store::from_pool(app.db.clone())
        .revoke_api_keys("caller-a")
        .await
        .unwrap();
    let replay = app.post_order(&key, &order_body()).await;

    // Assert
    assert_eq!(replay.status(), 401);
    assert_eq!(app.emulator.orders().len(), 1);
}
