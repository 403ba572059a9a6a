//! The rotating Xoxoday token pair (issue 5): stored encrypted on first
//! start, the stored pair wins, refresh on `invalid_token` and when due, one
//! refresh across replicas, refusal visible in `/readyz`, `tokens reset`.

use order_gateway::{
    config::{EncryptionKey, Env, ServeConfig},
    crypto::Cipher,
    emulator::{Fault, FaultOp},
    orders::{AccessTokens as _, TokenState},
    startup::Application,
};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{
    Options, TestApp, encryption_key, env, env_pairs, new_key, order_body, spawn_app,
};

async fn generation(app: &TestApp) -> i64 {
    sqlx::query_scalar("select generation from xoxoday_tokens")
        .fetch_one(&app.db)
        .await
        .unwrap()
}

async fn refresh_exchanges(app: &TestApp) -> i64 {
    sqlx::query_scalar("select count(*) from upstream_exchanges where operation = 'refresh_token'")
        .fetch_one(&app.db)
        .await
        .unwrap()
}

/// A second gateway ("replica") on the same database and emulator.
async fn replica(app: &TestApp, pairs: Option<Env>) -> Application {
    let env =
        pairs.unwrap_or_else(|| env(app.db_url(), &app.emulator.base_url(), &Options::default()));
    Application::build(ServeConfig::from_env(&env).unwrap())
        .await
        .expect("build replica")
}

fn cipher(app: &TestApp) -> Cipher {
    Cipher::new(&EncryptionKey::from_base64(&encryption_key(app.db_url())).unwrap())
}

#[tokio::test]
async fn the_environment_pair_is_stored_encrypted_and_then_the_stored_pair_wins() {
    let app = spawn_app().await;
    let (access, refresh): (Vec<u8>, Vec<u8>) = sqlx::query_as(
        "select access_token_encrypted, refresh_token_encrypted from xoxoday_tokens",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    for (blob, secret) in [
        (&access, "emulator-access-token"),
        (&refresh, "emulator-refresh-token"),
    ] {
        assert!(!blob.windows(secret.len()).any(|w| w == secret.as_bytes()));
    }
    let mut pairs = env_pairs(app.db_url(), &app.emulator.base_url(), &Options::default());
    pairs.insert(
        "XOXODAY_ACCESS_TOKEN".into(),
        "a-stale-dashboard-token".into(),
    );
    let b = replica(&app, Some(Env::from_map(pairs.clone()))).await;
    assert_eq!(
        b.tokens().access_token().await.expose_secret(),
        "emulator-access-token"
    );
    assert_eq!(generation(&app).await, 1);
    pairs.remove("XOXODAY_ACCESS_TOKEN");
    let still = replica(&app, Some(Env::from_map(pairs))).await;
    assert_eq!(still.tokens().health().generation, 1);
}

#[tokio::test]
async fn missing_env_tokens_with_nothing_stored_stop_start_up_naming_the_variable() {
    let app = spawn_app().await;
    sqlx::query("delete from xoxoday_tokens")
        .execute(&app.db)
        .await
        .unwrap();
    for var in ["XOXODAY_ACCESS_TOKEN", "XOXODAY_REFRESH_TOKEN"] {
        let mut pairs = env_pairs(app.db_url(), &app.emulator.base_url(), &Options::default());
        pairs.remove(var);
        let cfg = ServeConfig::from_env(&Env::from_map(pairs)).unwrap();
        let err = Application::build(cfg)
            .await
            .err()
            .expect("start-up must fail");
        assert!(err.to_string().contains(var), "{err}");
    }
}

#[tokio::test]
async fn an_invalid_token_refreshes_once_and_the_order_is_placed_promptly() {
    let app = spawn_app().await;
    let (old_access, old_refresh) = app.emulator.current_tokens();
    app.wait_first_balance_read().await;
    app.emulator.expire_access_token();
    let resp = app
        .post_order_as(&app.api_key, &new_key(), &order_body(), Some(20))
        .await;
    assert_eq!(resp.status(), 201);
    let order: Value = resp.json().await.unwrap();
    assert_eq!(order["status"], "completed");
    let po = order["poNumber"].as_str().unwrap();
    assert_eq!(app.emulator.place_calls(po), 2);
    assert_eq!(app.emulator.orders().len(), 1);
    let (new_access, new_refresh) = app.emulator.current_tokens();
    assert_ne!(new_access, old_access);
    assert_eq!(generation(&app).await, 2);
    assert_eq!(refresh_exchanges(&app).await, 1);
    assert_eq!(app.tokens.access_token().await.expose_secret(), new_access);
    // The refresh exchange: secrets redacted in the clear, raw bodies sealed.
    let (id, request, sealed, key_id, response): (Uuid, Value, Vec<u8>, String, String) =
        sqlx::query_as(
            "select exchange_id, request_body, request_body_encrypted, request_key_id,
                    response_body_redacted
             from upstream_exchanges where operation = 'refresh_token'",
        )
        .fetch_one(&app.db)
        .await
        .unwrap();
    let shown = format!("{request} {response}");
    for secret in [
        old_refresh.as_str(),
        &new_access,
        &new_refresh,
        "emulator-secret",
    ] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert_eq!(request["refresh_token"], "[REDACTED]");
    let aad = format!("exchange:{id}:request_body");
    let raw = cipher(&app)
        .decrypt(&key_id, &sealed, aad.as_bytes())
        .unwrap();
    assert!(String::from_utf8(raw).unwrap().contains(&old_refresh));
}

#[tokio::test]
async fn two_replicas_refreshing_at_once_spend_the_refresh_token_once() {
    let app = spawn_app().await;
    let b = replica(&app, None).await;
    let stale = SecretString::from(app.emulator.current_tokens().0);
    app.wait_first_balance_read().await;
    app.emulator.expire_access_token();
    let (a_ok, b_ok) = tokio::join!(
        app.tokens.token_rejected(&stale),
        b.tokens().token_rejected(&stale)
    );
    assert!(a_ok && b_ok);
    assert_eq!(refresh_exchanges(&app).await, 1);
    let current = app.emulator.current_tokens().0;
    assert_eq!(app.tokens.access_token().await.expose_secret(), current);
    assert_eq!(b.tokens().access_token().await.expose_secret(), current);
    assert_eq!(generation(&app).await, 2);
}

#[tokio::test]
async fn a_pair_due_for_refresh_is_rotated_before_it_expires() {
    let app = spawn_app().await;
    assert!(!app.tokens.refresh_if_due().await.unwrap());
    sqlx::query("update xoxoday_tokens set refresh_due_at = now() - interval '1 second'")
        .execute(&app.db)
        .await
        .unwrap();
    let before = app.emulator.current_tokens();
    assert!(app.tokens.refresh_if_due().await.unwrap());
    assert_ne!(app.emulator.current_tokens(), before);
    let (generation_now, due_in_days): (i64, f64) = sqlx::query_as(
        "select generation, extract(epoch from refresh_due_at - now())::float8 / 86400
         from xoxoday_tokens",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(generation_now, 2);
    assert!((6.9..=7.1).contains(&due_in_days), "{due_in_days}");
    let resp = app
        .post_order_as(&app.api_key, &new_key(), &order_body(), Some(20))
        .await;
    assert_eq!(resp.status(), 201);
}

#[tokio::test]
async fn a_refused_refresh_shows_in_readyz_until_tokens_reset_stores_a_new_pair() {
    let app = spawn_app().await;
    let stale = SecretString::from(app.emulator.current_tokens().0);
    app.emulator
        .push_fault(FaultOp::RefreshToken, Fault::InvalidToken);
    app.wait_first_balance_read().await;
    app.emulator.expire_access_token();
    assert!(!app.tokens.token_rejected(&stale).await);
    assert_eq!(
        app.tokens.health().state,
        TokenState::OperatorActionRequired
    );
    let resp = app.get("/readyz").await;
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    let reason = body["reason"].as_str().unwrap();
    assert!(reason.contains("order-gateway tokens reset"), "{reason}");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let gauge = "order_gateway_xoxoday_token_state{state=\"operator_action_required\"} 1";
    assert!(metrics.lines().any(|l| l == gauge), "{metrics}");
    // A dead refresh token is not spent again.
    assert!(!app.tokens.token_rejected(&stale).await);
    assert_eq!(refresh_exchanges(&app).await, 1);
    // ...and asking left no transaction holding the token row.
    let mut tx = app.db.begin().await.unwrap();
    sqlx::query("select 1 from xoxoday_tokens for update nowait")
        .execute(&mut *tx)
        .await
        .expect("the token row is not left locked");
    tx.rollback().await.unwrap();

    let (access, refresh) = app.emulator.current_tokens();
    let out = app.tokens_reset(&access, &refresh);
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(!printed.contains(&access) && !printed.contains(&refresh));
    assert_eq!(app.get("/readyz").await.status(), 200);
    app.tokens.refresh_if_due().await.unwrap();
    assert_eq!(app.tokens.health().generation, 2);
    // The reset access token is expired upstream: the refresh on
    // invalid_token uses the reset refresh token, and the order goes through.
    let resp = app
        .post_order_as(&app.api_key, &new_key(), &order_body(), Some(20))
        .await;
    assert_eq!(resp.status(), 201);
    assert_eq!(generation(&app).await, 3);
}
