//! Issue 9, window 5: the rotated token pair is never lost. Refreshes are
//! serialised by a committed lease, not by a row lock held over the HTTP
//! call, and the new pair is committed on its own before its audit row.

use std::time::Duration;

use order_gateway::{
    config::EncryptionKey,
    crypto::Cipher,
    emulator::{Fault, FaultOp},
    orders::AccessTokens as _,
};
use secrecy::{ExposeSecret as _, SecretString};

use crate::helpers::{TestApp, encryption_key, spawn_app};

/// The stored `(generation, access, refresh)`, decrypted the way the
/// gateway seals them.
async fn stored_pair(app: &TestApp) -> (i64, String, String) {
    let (generation, key_id, access, refresh): (i64, String, Vec<u8>, Vec<u8>) = sqlx::query_as(
        "select generation, key_id, access_token_encrypted, refresh_token_encrypted
         from xoxoday_tokens",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    let cipher = Cipher::new(&EncryptionKey::from_base64(&encryption_key(app.db_url())).unwrap());
    let open = |blob: &[u8], field: &str| {
        let aad = format!("xoxoday_tokens:{generation}:{field}");
        String::from_utf8(cipher.decrypt(&key_id, blob, aad.as_bytes()).unwrap()).unwrap()
    };
    (
        generation,
        open(&access, "access"),
        open(&refresh, "refresh"),
    )
}

#[tokio::test]
async fn tokens_a_failing_refresh_audit_keeps_the_rotated_pair() {
    let app = spawn_app().await;
    // Every audit row of a refresh fails to insert from now on.
    sqlx::raw_sql(
        "create function fail_refresh_audit() returns trigger language plpgsql as $$
         begin raise exception 'audit store is broken'; end $$;
         create trigger fail_refresh_audit before insert on upstream_exchanges
           for each row when (new.operation = 'refresh_token')
           execute function fail_refresh_audit();",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let stale = SecretString::from(app.emulator.current_tokens().0);
    app.wait_first_balance_read().await;
    app.emulator.expire_access_token();

    let retried = app.tokens.token_rejected(&stale).await;

    let (upstream_access, upstream_refresh) = app.emulator.current_tokens();
    let (generation, access, refresh) = stored_pair(&app).await;
    assert_eq!(app.emulator.refresh_calls(), 1);
    assert_eq!(
        (access.as_str(), refresh.as_str()),
        (upstream_access.as_str(), upstream_refresh.as_str()),
        "the pair Xoxoday rotated to must be the stored one"
    );
    assert_eq!(generation, 2);
    assert!(retried, "the rotated pair is usable");
    assert_eq!(
        app.tokens.access_token().await.expose_secret(),
        upstream_access
    );
}

#[tokio::test]
async fn tokens_no_transaction_holds_the_token_row_during_the_refresh_call() {
    let app = spawn_app().await;
    app.emulator.push_fault(
        FaultOp::RefreshToken,
        Fault::Slow(Duration::from_millis(1500)),
    );
    let stale = SecretString::from(app.emulator.current_tokens().0);
    app.wait_first_balance_read().await;
    app.emulator.expire_access_token();
    let tokens = app.tokens.clone();
    let refresh = tokio::spawn(async move { tokens.token_rejected(&stale).await });
    // Wait until the (slow) refresh call is in flight.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while app.emulator.refresh_calls() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no refresh call");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut tx = app.db.begin().await.unwrap();
    let locked = sqlx::query("select 1 from xoxoday_tokens for update nowait")
        .execute(&mut *tx)
        .await;
    tx.rollback().await.unwrap();

    assert!(
        locked.is_ok(),
        "the token row is locked during the refresh call: {locked:?}"
    );
    assert!(refresh.await.unwrap());
    assert_eq!(stored_pair(&app).await.1, app.emulator.current_tokens().0);
}

#[tokio::test]
async fn tokens_a_refresh_refused_after_a_reset_does_not_flag_the_reset_pair() {
    // A refresh is in flight with the old refresh token when the operator
    // stores a new pair (`tokens reset`), and the old token is refused. The
    // refusal belongs to the replaced pair: the reset pair must not be
    // flagged as needing another reset.
    let app = spawn_app().await;
    app.emulator.push_fault(
        FaultOp::RefreshToken,
        Fault::Slow(Duration::from_millis(1500)),
    );
    let stale = SecretString::from(app.emulator.current_tokens().0);
    app.wait_first_balance_read().await;
    app.emulator.expire_access_token();
    let tokens = app.tokens.clone();
    let in_flight = tokio::spawn(async move { tokens.token_rejected(&stale).await });
    while app.emulator.refresh_calls() == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The operator gets a new pair (here: a rotation outside the gateway).
    let (_, old_refresh) = app.emulator.current_tokens();
    app.rotate_outside_gateway(&old_refresh).await;
    let (access, refresh) = app.emulator.current_tokens();
    app.tokens_reset(&access, &refresh);
    in_flight.await.unwrap();
    let (_, stored_access, stored_refresh) = stored_pair(&app).await;
    assert_eq!((stored_access, stored_refresh), (access, refresh));
    let flagged: bool = sqlx::query_scalar("select operator_action_required from xoxoday_tokens")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(!flagged, "the reset pair is flagged as refused");
    assert_eq!(app.get("/readyz").await.status(), 200);
}

#[tokio::test]
async fn tokens_a_rotated_pair_is_stored_even_when_the_row_stays_locked_past_the_statement_timeout()
{
    // Xoxoday rotated the pair (the old one is dead); storing it waits on a
    // row lock longer than statement_timeout (10 s), which is not a
    // connection error. Giving up there loses the only working pair.
    let app = spawn_app().await;
    app.emulator.push_fault(
        FaultOp::RefreshToken,
        Fault::Slow(Duration::from_millis(1000)),
    );
    let stale = SecretString::from(app.emulator.current_tokens().0);
    app.wait_first_balance_read().await;
    app.emulator.expire_access_token();
    let tokens = app.tokens.clone();
    let refresh = tokio::spawn(async move { tokens.token_rejected(&stale).await });
    while app.emulator.refresh_calls() == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut tx = app.db.begin().await.unwrap();
    sqlx::query("select 1 from xoxoday_tokens for update")
        .execute(&mut *tx)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(11_500)).await;
    tx.commit().await.unwrap();
    let _ = refresh.await.unwrap();
    let (upstream_access, upstream_refresh) = app.emulator.current_tokens();
    let (generation, access, refresh) = stored_pair(&app).await;
    assert_eq!(
        (access.as_str(), refresh.as_str()),
        (upstream_access.as_str(), upstream_refresh.as_str()),
        "the rotated pair was lost"
    );
    assert_eq!(generation, 2);
}

#[tokio::test]
async fn tokens_a_refresh_answered_after_a_reset_does_not_overwrite_the_reset_pair() {
    // The refresh call rotates the pair at Xoxoday, but its answer is slow.
    // Meanwhile the operator gets a newer pair (which kills the one the
    // slow answer carries) and runs `tokens reset`. The late answer must not
    // overwrite the reset pair with a dead one.
    let app = spawn_app().await;
    app.emulator.push_fault(
        FaultOp::RefreshToken,
        Fault::SleepAfterCreate(Duration::from_millis(1500)),
    );
    let stale = SecretString::from(app.emulator.current_tokens().0);
    app.wait_first_balance_read().await;
    app.emulator.expire_access_token();
    let tokens = app.tokens.clone();
    let in_flight = tokio::spawn(async move { tokens.token_rejected(&stale).await });
    let (first_access, _) = app.emulator.current_tokens();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while app.emulator.current_tokens().0 == first_access {
        assert!(tokio::time::Instant::now() < deadline, "never rotated");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, rotated_refresh) = app.emulator.current_tokens();
    app.rotate_outside_gateway(&rotated_refresh).await;
    let (access, refresh) = app.emulator.current_tokens();
    app.tokens_reset(&access, &refresh);
    let _ = in_flight.await.unwrap();
    let (_, stored_access, stored_refresh) = stored_pair(&app).await;
    assert_eq!(
        (stored_access.as_str(), stored_refresh.as_str()),
        (access.as_str(), refresh.as_str()),
        "the reset pair was overwritten by a dead one"
    );
    assert_eq!(
        app.tokens.access_token().await.expose_secret(),
        access,
        "this replica uses a dead access token"
    );
}
