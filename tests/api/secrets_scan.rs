//! Invariant 4, end to end: the gateway runs as a child process (`serve`,
//! `LOG_FORMAT=json RUST_LOG=debug`, stderr captured), places realtime
//! orders, refreshes its token on `invalid_token`; then neither its logs nor
//! a `pg_dump --data-only` of its database may contain any secret it saw:
//! voucher codes and pins, the caller key, every access/refresh token ever
//! issued, the client secret and the encryption key. The owner still gets
//! the vouchers back over the API (decryption works).

use std::{
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use order_gateway::emulator::{EmulatorConfig, EmulatorHandle};
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt as _, BufReader},
    process::{Child, Command},
};

use crate::{
    helpers::{Options, create_key, encryption_key, env_pairs, new_key, order_body},
    test_db::TestDb,
};

/// Starts `order-gateway serve`; returns the child, its address and its log.
async fn spawn_gateway(
    db: &TestDb,
    emulator: &EmulatorHandle,
) -> (Child, String, Arc<Mutex<String>>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_order-gateway"))
        .arg("serve")
        .env_clear()
        .envs(env_pairs(
            &db.url,
            &emulator.base_url(),
            &Options::default(),
        ))
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn order-gateway serve");
    let log = Arc::new(Mutex::new(String::new()));
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let sink = log.clone();
    tokio::spawn(async move {
        let mut addr_tx = Some(addr_tx);
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("order-gateway listening") {
                let v: Value = serde_json::from_str(&line).unwrap_or_default();
                if let (Some(tx), Some(a)) = (addr_tx.take(), v["addr"].as_str()) {
                    let _ = tx.send(a.to_owned());
                }
            }
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    let addr = tokio::time::timeout(Duration::from_secs(60), addr_rx)
        .await
        .expect("gateway did not start")
        .expect("gateway exited before listening");
    (child, addr, log)
}

async fn place(http: &reqwest::Client, addr: &str, key: &str) -> Value {
    let resp = http
        .post(format!("http://{addr}/v1/orders"))
        .bearer_auth(key)
        .header("Idempotency-Key", new_key())
        .header("Prefer", "wait=30")
        .json(&order_body())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let order: Value = resp.json().await.unwrap();
    assert_eq!(order["status"], "completed");
    order
}

fn pg_dump(url: &str) -> String {
    let out = std::process::Command::new("pg_dump")
        .args(["--data-only", "--dbname", url])
        .output()
        .expect("pg_dump is needed for this test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `callers webhook set` to a closed loopback port; returns the secret.
async fn set_webhook(db_url: &str, caller: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_order-gateway"))
        .args(["callers", "webhook", "set", "--caller", caller])
        .args(["--url", "http://127.0.0.1:9/hook"])
        .env_clear()
        .env("DATABASE_URL", db_url)
        .env("ENCRYPTION_KEY", encryption_key(db_url))
        .output()
        .await
        .expect("run callers webhook set");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    stdout.lines().last().unwrap().to_owned()
}

/// The ways a secret can show up in text. Pins are 4–6 digits, which occur
/// by chance in hex and timestamps, so they are looked for as JSON/SQL
/// string values (`"1234"`) and as `pin=`/`pin: ` fields, where a leak would be.
fn needles(secret: &str, is_pin: bool) -> Vec<String> {
    if is_pin {
        vec![
            format!("\"{secret}\""),
            format!("pin={secret}"),
            format!("pin: {secret}"),
        ]
    } else {
        vec![secret.to_owned()]
    }
}

#[tokio::test]
async fn no_secret_reaches_the_logs_or_the_database_in_the_clear() {
    let db = TestDb::create().await;
    let emulator = order_gateway::emulator::spawn(EmulatorConfig::for_tests())
        .await
        .unwrap();
    let pool = db.pool().await;
    let api_key = create_key(&pool, "caller-scan").await;
    let webhook_secret = set_webhook(&db.url, "caller-scan").await;
    let mut tokens = vec![emulator.current_tokens()];
    let (mut child, addr, log) = spawn_gateway(&db, &emulator).await;
    let http = reqwest::Client::new();

    let mut orders = vec![place(&http, &addr, &api_key).await];
    emulator.expire_access_token();
    orders.push(place(&http, &addr, &api_key).await);
    tokens.push(emulator.current_tokens());
    assert_ne!(tokens[0], tokens[1], "the token was refreshed");
    for order in &orders {
        let po = order["poNumber"].as_str().unwrap();
        let ledger = emulator.order(po).unwrap();
        let shown: Vec<(String, String)> = order["vouchers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["code"].as_str().unwrap().into(),
                    v["pin"].as_str().unwrap().into(),
                )
            })
            .collect();
        let issued: Vec<(String, String)> = ledger
            .vouchers
            .iter()
            .map(|v| (v.code.clone(), v.pin.clone()))
            .collect();
        assert_eq!(shown, issued, "the owner reads the vouchers back");
    }
    // The sender polls the outbox (NOTIFY_POLL_INTERVAL): wait for a send.
    let mut attempts = 0_i64;
    for _ in 0..100 {
        attempts = sqlx::query_scalar("select count(*) from notify_attempts")
            .fetch_one(&pool)
            .await
            .unwrap();
        if attempts > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    child.start_kill().unwrap();
    let _ = child.wait().await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let generation: i64 = sqlx::query_scalar("select generation from xoxoday_tokens")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(generation, 2, "every issued pair is in `tokens`");
    let mut secrets: Vec<(String, bool)> = vec![
        (api_key.clone(), false),
        ("emulator-secret".into(), false),
        (encryption_key(&db.url), false),
        (webhook_secret.clone(), false),
        (webhook_secret["whsec_".len()..].to_owned(), false),
    ];
    for (access, refresh) in &tokens {
        secrets.extend([(access.clone(), false), (refresh.clone(), false)]);
    }
    for v in emulator.orders().iter().flat_map(|o| o.vouchers.clone()) {
        secrets.extend([(v.code, false), (v.pin, true)]);
    }
    let logs = log.lock().unwrap().clone();
    let dump = pg_dump(&db.url);
    assert!(logs.contains("placeOrder answered") && logs.contains("token pair rotated"));
    assert!(logs.contains("\"level\":\"DEBUG\""), "debug logging is on");
    assert!(attempts > 0, "the webhook secret was used to sign");
    assert!(dump.contains(orders[0]["poNumber"].as_str().unwrap()));
    for (secret, is_pin) in &secrets {
        for needle in needles(secret, *is_pin) {
            assert!(
                !logs.contains(&needle),
                "a secret ({needle}) is in the logs"
            );
            assert!(
                !dump.contains(&needle),
                "a secret ({needle}) is in the database dump"
            );
        }
    }
    emulator.shutdown();
}
