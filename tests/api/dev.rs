//! `order-gateway dev` as a user runs it: it prints a working curl command,
//! and Ctrl-C leaves nothing behind.

use std::path::PathBuf;

use serde_json::Value;

use crate::child::{GatewayProcess, free_addr, is_free};

/// The value after `label` on the first line that starts with it.
fn field<'a>(lines: &'a [String], label: &str) -> &'a str {
    lines
        .iter()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .unwrap_or_else(|| panic!("no `{label}` line in {lines:?}"))
        .trim()
}

/// The text between `start` and the next `'` in the curl line.
fn quoted_after<'a>(curl: &'a str, start: &str) -> &'a str {
    let from = curl.find(start).expect(start) + start.len();
    let len = curl[from..].find('\'').expect("closing quote");
    &curl[from..from + len]
}

#[tokio::test]
async fn dev_prints_a_working_curl_command_and_ctrl_c_removes_everything() {
    // Arrange
    let (listen, emulator) = (free_addr(), free_addr());
    let mut dev = GatewayProcess::spawn(
        &["dev"],
        &[
            ("LISTEN_ADDR", listen.to_string()),
            ("EMULATOR_ADDR", emulator.to_string()),
            ("RUST_LOG", "info".into()),
        ],
        &[
            "DATABASE_URL",
            "LOG_FORMAT",
            "WEBHOOK_API_KEY",
            "ENCRYPTION_KEY",
        ],
    );
    let lines = dev.read_until(|l| l.starts_with("curl "));
    let gateway = field(&lines, "gateway:")
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let key = field(&lines, "api key:").to_owned();
    let db = field(&lines, "database:").to_owned();
    let cluster_dir = PathBuf::from(
        db.strip_prefix("throwaway PostgreSQL in ")
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or_else(|| panic!("not a throwaway cluster: {db}")),
    );
    let curl = lines.last().unwrap();
    assert_eq!(gateway, format!("http://{listen}"));
    assert_eq!(quoted_after(curl, "Bearer "), key);
    assert!(cluster_dir.exists());

    // Act: the printed request
    let resp = reqwest::Client::new()
        .post(format!("{gateway}/v1/orders"))
        .bearer_auth(&key)
        .header("Idempotency-Key", quoted_after(curl, "Idempotency-Key: "))
        .header("Content-Type", "application/json")
        .body(quoted_after(curl, "-d '").to_owned())
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(resp.status().as_u16(), 201, "stderr:\n{}", dev.stderr());
    let order: Value = resp.json().await.unwrap();
    assert_eq!(order["status"], "completed");
    assert_eq!(order["productId"], 1001);

    dev.signal("INT");
    let status = tokio::task::spawn_blocking(move || {
        let status = dev.wait();
        (status, dev)
    })
    .await
    .unwrap();
    let (status, dev) = status;
    assert!(status.success(), "exit {status:?}\n{}", dev.stderr());
    assert!(is_free(listen), "gateway port still bound");
    assert!(is_free(emulator), "emulator port still bound");
    assert!(!cluster_dir.exists(), "cluster directory left behind");
}
