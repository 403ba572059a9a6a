//! `GET /metrics`: Prometheus text with order gauges read from the database
//! and upstream call counters fed by the dispatcher.

use crate::helpers::{new_key, order_body, spawn_app};
use sqlx::Connection;

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

/// Stores `n` orders straight in the table (a long history), a third of
/// them `failed`, the rest `completed`.
async fn store_history(app: &crate::helpers::TestApp, n: i64) {
    sqlx::query(
        "insert into orders (order_id, caller_id, idempotency_key, request_fingerprint,
           po_number, status, product_id, denomination, quantity)
         select gen_random_uuid(), (select caller_id from callers limit 1), 'bulk-' || i,
                '\\x00'::bytea, 'BULK' || i,
                case when i % 3 = 0 then 'failed' else 'completed' end, 1001, 50, 1
           from generate_series(1, $1) i",
    )
    .bind(n)
    .execute(&app.db)
    .await
    .unwrap();
}

/// A connection holding the fold lock for its session: folds elsewhere
/// (the app's background fold) fold nothing, folds on it still run
/// (advisory locks are reentrant).
async fn fold_lock_holder(app: &crate::helpers::TestApp) -> sqlx::PgConnection {
    let mut conn = sqlx::PgConnection::connect(app.db_url()).await.unwrap();
    sqlx::query("select pg_advisory_lock(hashtext('fold_order_status_deltas'))")
        .execute(&mut conn)
        .await
        .unwrap();
    conn
}

/// Asserts that a scrape now shows `n` orders in `status`.
async fn assert_orders_gauge(app: &crate::helpers::TestApp, status: &str, n: i64) {
    let text = app.get("/metrics").await.text().await.unwrap();
    let line = format!("order_gateway_orders{{status=\"{status}\"}} {n}");
    assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
}

/// Appends `n` +1 deltas for `completed` (settlements not folded yet).
async fn add_completed_deltas(app: &crate::helpers::TestApp, n: i64) {
    sqlx::query(
        "insert into order_status_deltas (status, orders)
         select 'completed', 1 from generate_series(1, $1)",
    )
    .bind(n)
    .execute(&app.db)
    .await
    .unwrap();
}

#[tokio::test]
async fn order_counts_stay_exact_through_every_status_change() {
    // Arrange: a history, then orders leaving and entering the statuses
    // that are only counted, not scanned.
    let app = spawn_app().await;
    assert_eq!(
        app.post_order(&new_key(), &order_body()).await.status(),
        201
    );
    store_history(&app, 300).await;
    for sql in [
        "update orders set status = 'needs_review' where idempotency_key in ('bulk-3', 'bulk-6')",
        "update orders set status = 'canceled' where idempotency_key = 'bulk-1'",
        "update orders set status = 'completed' where idempotency_key = 'bulk-9'",
        "update orders set status = 'accepted', next_attempt_at = now() + interval '1 hour'
          where idempotency_key = 'bulk-2'",
        "update orders set status_reason = 'unchanged status' where idempotency_key = 'bulk-4'",
        // Orders are never deleted in production; the timeline row the
        // trigger wrote goes with it here.
        "with gone as (select order_id from orders where idempotency_key = 'bulk-5'),
              t as (delete from order_timeline where order_id in (select order_id from gone))
         delete from orders where order_id in (select order_id from gone)",
    ] {
        sqlx::query(sql).execute(&app.db).await.unwrap();
    }

    // Act
    let text = app.get("/metrics").await.text().await.unwrap();

    // Assert: every status as counted by a full scan.
    let truth: Vec<(String, i64)> =
        sqlx::query_as("select status, count(*) from orders group by status")
            .fetch_all(&app.db)
            .await
            .unwrap();
    for status in order_gateway::domain::OrderStatus::ALL {
        let n = truth
            .iter()
            .find(|(s, _)| s == status.as_str())
            .map_or(0, |(_, n)| *n);
        let line = format!("order_gateway_orders{{status=\"{}\"}} {n}", status.as_str());
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
}

#[tokio::test]
async fn a_scrape_reads_only_the_orders_in_flight() {
    // Arrange: 3,000 settled orders and one in flight, statistics current.
    let app = spawn_app().await;
    store_history(&app, 3000).await;
    sqlx::query("update orders set status = 'accepted' where idempotency_key = 'bulk-1'")
        .execute(&app.db)
        .await
        .unwrap();
    sqlx::query("analyze orders")
        .execute(&app.db)
        .await
        .unwrap();

    // Act: the scrape's statement, executed and measured.
    let sql = format!(
        "explain (analyze, format json) {}",
        order_gateway::store::stats::STATUS_COUNTS
    );
    let plan: serde_json::Value = sqlx::query_scalar(&sql).fetch_one(&app.db).await.unwrap();

    // Assert: rows of `orders` read (returned or filtered out), all nodes.
    fn orders_rows(node: &serde_json::Value) -> f64 {
        let own = if node["Relation Name"] == "orders" {
            let loops = node["Actual Loops"].as_f64().unwrap_or(1.0);
            let read = node["Actual Rows"].as_f64().unwrap_or(0.0)
                + node["Rows Removed by Filter"].as_f64().unwrap_or(0.0)
                + node["Rows Removed by Index Recheck"]
                    .as_f64()
                    .unwrap_or(0.0);
            read * loops
        } else {
            0.0
        };
        own + node["Plans"]
            .as_array()
            .map_or(0.0, |plans| plans.iter().map(orders_rows).sum())
    }
    let read = orders_rows(&plan[0]["Plan"]);
    assert!(
        read < 100.0,
        "a scrape read {read} order rows for one in flight:\n{plan:#}"
    );
}

/// Orders settling at the same moment must not queue on shared counter
/// rows. Each write-back used to add its +1 to one of 16 rows of
/// `order_status_totals` (picked by backend pid) and hold that row until
/// commit: under end-to-end load the write-back waited 2.7 ms of its
/// 3.6 ms there. Seventeen transactions each complete an order and stay
/// open; with 16 shards two of them shared a row and the second waited.
#[tokio::test]
async fn concurrent_settlements_never_wait_on_each_others_counters() {
    // Arrange: 17 orders under review (nothing in the background touches them).
    let app = spawn_app().await;
    sqlx::query(
        "insert into orders (order_id, caller_id, idempotency_key, request_fingerprint,
           po_number, status, product_id, denomination, quantity)
         select gen_random_uuid(), (select caller_id from callers limit 1), 'review-' || i,
                '\\x00'::bytea, 'REVIEW' || i, 'needs_review', 1001, 50, 1
           from generate_series(1, 17) i",
    )
    .execute(&app.db)
    .await
    .unwrap();

    // Act: 17 connections each complete one and keep their transaction open.
    let mut open = Vec::new();
    for i in 1..=17 {
        let mut conn = sqlx::PgConnection::connect(app.db_url()).await.unwrap();
        sqlx::query("begin").execute(&mut conn).await.unwrap();
        sqlx::query("set local lock_timeout = '300ms'")
            .execute(&mut conn)
            .await
            .unwrap();
        let done = sqlx::query(
            "update orders set status = 'completed' where idempotency_key = 'review-' || $1",
        )
        .bind(i.to_string())
        .execute(&mut conn)
        .await;
        assert!(done.is_ok(), "settlement {i} waited for another: {done:?}");
        open.push(conn);
    }
    for mut conn in open {
        sqlx::query("commit").execute(&mut conn).await.unwrap();
    }

    // Assert: all counted.
    assert_orders_gauge(&app, "completed", 17).await;
}

/// Two replicas folding the counters' deltas at the same moment count each
/// delta once, and neither waits for the other: while one fold's
/// transaction is open, another folds nothing and returns at once, and a
/// reconciler pass is not held up.
#[tokio::test]
async fn a_fold_never_waits_for_another_and_counts_each_delta_once() {
    // Arrange: 300 settled orders, 300 deltas. The first connection holds
    // the fold lock for its session, so no background fold takes them.
    let app = spawn_app().await;
    let mut first = fold_lock_holder(&app).await;
    store_history(&app, 300).await;
    let fold = "select fold_order_status_deltas(10000)";

    // Act: one fold holds its transaction open (as a stalled replica
    // would); another fold and a reconciler pass run meanwhile.
    sqlx::query("begin").execute(&mut first).await.unwrap();
    let n_first: i64 = sqlx::query_scalar(fold)
        .fetch_one(&mut first)
        .await
        .unwrap();
    let mut second = sqlx::PgConnection::connect(app.db_url()).await.unwrap();
    sqlx::query("set statement_timeout = '2s'")
        .execute(&mut second)
        .await
        .unwrap();
    let n_second: i64 = sqlx::query_scalar(fold)
        .fetch_one(&mut second)
        .await
        .expect("the second fold waited for the first");
    let started = std::time::Instant::now();
    app.reconciler.reconcile_due().await.unwrap();
    let pass_took = started.elapsed();
    let text_during = app.get("/metrics").await.text().await.unwrap();
    sqlx::query("commit").execute(&mut first).await.unwrap();

    // Assert: the first folded all 300, the second none; the scrape during
    // the open fold still counted every order once; the totals alone are
    // exact after it.
    assert_eq!((n_first, n_second), (300, 0));
    assert!(
        pass_took < std::time::Duration::from_secs(2),
        "{pass_took:?}"
    );
    for line in [
        "order_gateway_orders{status=\"completed\"} 200",
        "order_gateway_orders{status=\"failed\"} 100",
    ] {
        assert!(
            text_during.lines().any(|l| l == line),
            "{line} missing:\n{text_during}"
        );
    }
    assert_eq!(app.count("order_status_deltas").await, 0);
    let totals: Vec<(String, i64)> = sqlx::query_as(
        "select status, sum(orders)::bigint from order_status_totals group by status order by status",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(
        totals,
        vec![("completed".to_owned(), 200), ("failed".to_owned(), 100)]
    );
}

/// A backlog of deltas (folding stopped for a while) is folded in bounded
/// statements, each well inside `statement_timeout`, and one round of the
/// reconciler's folding takes several of them.
#[tokio::test]
async fn a_backlog_of_deltas_is_folded_in_bounded_statements() {
    let app = spawn_app().await;
    let mut conn = fold_lock_holder(&app).await;
    add_completed_deltas(&app, 25000).await;
    let mut folded = Vec::new();
    loop {
        let n: i64 = sqlx::query_scalar("select fold_order_status_deltas(10000)")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        if n == 0 {
            break;
        }
        folded.push(n);
    }
    assert_eq!(folded, vec![10000, 10000, 5000]);
    sqlx::query("select pg_advisory_unlock(hashtext('fold_order_status_deltas'))")
        .execute(&mut conn)
        .await
        .unwrap();
    add_completed_deltas(&app, 25000).await;
    assert_eq!(app.reconciler.fold_deltas().await.unwrap(), 25000);
    assert_eq!(app.count("order_status_deltas").await, 0);
    assert_orders_gauge(&app, "completed", 50000).await;
}

/// Each replica's reconciler folds the deltas by itself, about every 10 s.
#[tokio::test]
async fn the_reconciler_folds_the_deltas_by_itself() {
    let app = spawn_app().await;
    store_history(&app, 30).await;
    let mut left = 30;
    for _ in 0..150 {
        left = app.count("order_status_deltas").await;
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "not folded within 15 s");
    assert_orders_gauge(&app, "completed", 20).await;
}
