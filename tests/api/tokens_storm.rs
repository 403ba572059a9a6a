//! Issue 9, window 4: a token Xoxoday keeps refusing causes at most one
//! rejection-triggered refresh, then an account-wide pause (visible in
//! `/readyz` and `/metrics`) that lifts by itself once a probe finds the
//! token accepted again. Orders wait; none fails.

use std::time::Duration;

use order_gateway::{config::ServeConfig, orders::TOKEN_HOLD_REASON, startup::Application};
use serde_json::Value;

use crate::helpers::{Options, TestApp, new_key, order_body, spawn_app_with};

fn probing_every_second() -> Options {
    Options {
        extra: vec![("XOXODAY_PROBE_INTERVAL", "1s".to_owned())],
        ..Options::default()
    }
}

async fn readyz(app: &TestApp) -> (u16, Value) {
    let resp = app.get("/readyz").await;
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn tokens_a_token_refused_even_after_a_refresh_pauses_every_call_until_it_is_accepted() {
    let app = spawn_app_with(probing_every_second()).await;
    app.emulator.refuse_tokens(true);

    let resp = app
        .post_order_as(&app.api_key, &new_key(), &order_body(), Some(1))
        .await;
    assert_eq!(resp.status(), 202);
    let order: Value = resp.json().await.unwrap();
    let (id, po) = (
        order["id"].as_str().unwrap().to_owned(),
        order["poNumber"].as_str().unwrap().to_owned(),
    );
    // Several dispatcher and probe passes.
    tokio::time::sleep(Duration::from_secs(4)).await;

    assert_eq!(
        app.emulator.refresh_calls(),
        1,
        "one rejection-triggered refresh, then a pause"
    );
    assert!(app.emulator.place_calls(&po) <= 2, "no retry storm");
    assert_eq!(app.db_status(&po).await, "accepted");
    let (status, body) = readyz(&app).await;
    assert_eq!(status, 503, "{body}");
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("access token"), "{reason}");
    assert!(!reason.contains("tokens reset"), "{reason}");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let paused = "order_gateway_upstream_hold{reason=\"token_rejected\"} 1";
    assert!(metrics.lines().any(|l| l == paused), "{metrics}");

    app.emulator.refuse_tokens(false);

    let order = wait_status(&app, &id, "completed", Duration::from_secs(15)).await;
    assert_eq!(order["attempts"], 1, "{order}");
    assert_eq!(readyz(&app).await.0, 200);
    assert_eq!(app.emulator.refresh_calls(), 1);
    assert_eq!(app.emulator.orders().len(), 1);
}

async fn wait_status(app: &TestApp, id: &str, want: &str, limit: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let order: Value = app.get_order(&app.api_key, id).await.json().await.unwrap();
        if order["status"] == want {
            return order;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {} after {limit:?}",
            order["status"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn tokens_a_hold_is_probed_at_most_once_per_interval_over_all_replicas() {
    let app = spawn_app_with(Options::default()).await;
    let env = crate::helpers::env(app.db_url(), &app.emulator.base_url(), &Options::default());
    let b = Application::build(ServeConfig::from_env(&env).unwrap())
        .await
        .unwrap();
    // The balance monitor reads once at start (contract §8): wait for that
    // read, so that only the probes are counted after `before` (on a busy
    // machine the first read could come after it and count as a probe).
    app.wait_first_balance_read().await;
    let before: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("select clock_timestamp()")
        .fetch_one(&app.db)
        .await
        .unwrap();
    sqlx::query(
        "insert into upstream_holds (hold, reason, last_probe_at)
         values ('token_rejected', $1, now() - interval '2 minutes')",
    )
    .bind(TOKEN_HOLD_REASON)
    .execute(&app.db)
    .await
    .unwrap();
    sqlx::query(
        "insert into upstream_pauses (operation, paused_until, reason)
         values ('*', now() + interval '1 minute', $1)",
    )
    .bind(TOKEN_HOLD_REASON)
    .execute(&app.db)
    .await
    .unwrap();

    let (a1, b1) = tokio::join!(app.prober.probe_once(), b.prober().probe_once());
    let (a2, b2) = tokio::join!(app.prober.probe_once(), b.prober().probe_once());

    // (The app's own background prober may be the one that got it.)
    let probed = [a1.unwrap(), b1.unwrap(), a2.unwrap(), b2.unwrap()];
    assert!(probed.iter().filter(|p| **p).count() <= 1, "{probed:?}");
    // The token is accepted: the hold and its pause are gone.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while app.count("upstream_holds").await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the hold stays");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.count("upstream_pauses").await, 0);
    let probes: i64 = sqlx::query_scalar(
        "select count(*) from upstream_exchanges where operation = 'get_balance'
           and created_at >= $1",
    )
    .bind(before)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(probes, 1);
}
