//! `GET /metrics`: Prometheus text with order gauges read from the database
//! and upstream call counters fed by the dispatcher.

use crate::helpers::{new_key, order_body, spawn_app};

#[tokio::test]
async fn metrics_count_orders_by_status_and_upstream_calls_by_outcome() {
    // Arrange
    let app = spawn_app().await;
    let created = app.post_order(&new_key(), &order_body()).await;
    assert_eq!(created.status().as_u16(), 201);

    // Act
    let resp = app.get("/metrics").await;

    // Assert
    assert_eq!(resp.status().as_u16(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain"), "{ct}");
    let text = resp.text().await.unwrap();
    for line in [
        "order_gateway_orders{status=\"completed\"} 1",
        "order_gateway_orders{status=\"accepted\"} 0",
        "order_gateway_queue_depth 0",
        "order_gateway_reconciler_backlog 0",
        "order_gateway_oldest_unsettled_order_age_seconds 0",
        "order_gateway_metrics_database_up 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    assert!(
        text.contains(
            "order_gateway_upstream_calls_total{operation=\"place_order\",outcome=\"placed\"}"
        ),
        "{text}"
    );
    assert!(!text.contains(&app.api_key), "no secrets in metrics");
}
