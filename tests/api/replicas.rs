//! Three gateway replicas on one database, the same idempotency keys sent to
//! different replicas at once, under upstream faults: one order per key, one
//! upstream order per order.

use std::time::Duration;

use base64::Engine as _;
use order_gateway::{config::ServeConfig, emulator::FaultRates, startup::Application};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::{
    helpers::{env, new_key, order_body, spawn_app_with},
    ledger::{assert_ledger_consistent, fast, wait_all_settled},
};

#[tokio::test]
async fn three_replicas_share_keys_leases_and_the_ledger() {
    let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
    let mut opts = fast(&[
        ("XOXODAY_SETTLE_WINDOW", "3s"),
        ("RECONCILE_MAX_ATTEMPTS", "20"),
    ]);
    opts.extra.push(("ENCRYPTION_KEY", key));
    opts.place_timeout = "1s";
    let app = spawn_app_with(opts.clone()).await;
    let stop = CancellationToken::new();
    let _stop_on_exit = stop.clone().drop_guard();
    let mut addrs = vec![app.addr];
    for _ in 0..2 {
        let cfg =
            ServeConfig::from_env(&env(app.db_url(), &app.emulator.base_url(), &opts)).unwrap();
        let replica = Application::build(cfg).await.unwrap();
        addrs.push(replica.local_addr());
        tokio::spawn(replica.run(stop.clone()));
    }
    app.emulator.set_fault_rates(FaultRates {
        error_before: 0.1,
        error_after: 0.15,
        drop_after: 0.15,
        sleep_after: 0.1,
        hidden: 0.1,
        sleep: Duration::from_secs(2),
        hidden_for: Duration::from_secs(4),
        ..FaultRates::default()
    });
    let keys: Vec<String> = (0..10).map(|_| new_key()).collect();
    let posts = keys
        .iter()
        .flat_map(|k| addrs.iter().map(move |a| (k, *a)))
        .map(|(k, a)| {
            let app = &app;
            async move {
                let resp = app
                    .http
                    .post(format!("http://{a}/v1/orders"))
                    .bearer_auth(&app.api_key)
                    .header("Idempotency-Key", k)
                    .header("Prefer", "wait=0")
                    .json(&order_body())
                    .send()
                    .await
                    .unwrap();
                assert!(resp.status().is_success(), "{}", resp.status());
                let order: Value = resp.json().await.unwrap();
                (k.clone(), order["id"].as_str().unwrap().to_owned())
            }
        });
    let answers = futures::future::join_all(posts).await;
    for k in &keys {
        let ids: std::collections::HashSet<_> = answers
            .iter()
            .filter(|(key, _)| key == k)
            .map(|(_, id)| id)
            .collect();
        assert_eq!(ids.len(), 1, "one order per key across replicas");
    }
    wait_all_settled(&app.db, Duration::from_secs(90)).await;
    app.emulator.set_fault_rates(FaultRates::default());
    assert_eq!(app.count("orders").await, 10);
    assert_eq!(app.count("orders where status = 'completed'").await, 10);
    assert_ledger_consistent(&app).await;
}
