//! A rough intake throughput probe (ignored by default; run with
//! `cargo test --release --test api load -- --ignored --nocapture`).

use std::{sync::Arc, time::Instant};

use crate::helpers::{new_key, order_body, spawn_app};

#[tokio::test(flavor = "multi_thread")]
#[ignore = "load probe, not a correctness test"]
async fn intake_throughput_probe() {
    let app = Arc::new(spawn_app().await);
    let (clients, per_client) = (32, 100);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let app = Arc::clone(&app);
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_client {
                let resp = app
                    .post_order_as(&app.api_key, &new_key(), &order_body(), Some(0))
                    .await;
                assert_eq!(resp.status(), 202);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let n = clients * per_client;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{n} orders accepted in {secs:.2}s: {:.0}/s",
        n as f64 / secs
    );
    assert_eq!(app.count("orders").await, n as i64);
}
