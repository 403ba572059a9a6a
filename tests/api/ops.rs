//! Health, readiness, the finance view, and behaviour with the database down.

use std::time::{Duration, Instant};

use order_gateway::{config::ServeConfig, startup::Application, store::Store};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::helpers::{Options, assert_problem, env, new_key, order_body, spawn_app};

#[tokio::test]
async fn healthz_and_readyz_answer_200_when_all_is_well() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.get("/readyz").await.status(), 200);
    let spec = app.get("/openapi.yaml").await.text().await.unwrap();
    assert_eq!(spec, include_str!("../../openapi.yaml"));
}

#[tokio::test]
async fn with_the_database_gone_the_api_answers_503_quickly_and_stores_nothing() {
    let app = spawn_app().await;
    app.db.close().await;
    app.drop_database().await;

    let started = Instant::now();
    let resp = app.post_order(&new_key(), &order_body()).await;
    let problem = assert_problem(resp, 503).await;
    assert_eq!(
        problem["type"],
        "https://order-gateway/problems/service-unavailable"
    );
    // Contract §5: the insert may have committed before the failure.
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("may have been stored"), "{detail}");
    assert!(detail.contains("SAME Idempotency-Key"), "{detail}");
    assert!(detail.contains("never a new key"), "{detail}");
    assert!(!detail.contains("nothing was stored"), "{detail}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(app.get("/readyz").await.status(), 503);
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert!(app.emulator.orders().is_empty());
}

#[tokio::test]
async fn a_database_nobody_listens_on_gives_503_within_the_acquire_timeout() {
    let emulator =
        order_gateway::emulator::spawn(order_gateway::emulator::EmulatorConfig::for_tests())
            .await
            .unwrap();
    let url = "postgres://postgres@127.0.0.1:1/nowhere";
    let cfg = ServeConfig::from_env(&env(url, &emulator.base_url(), &Options::default())).unwrap();
    let store = Store::connect_lazy(&cfg.database_url, 2).unwrap();
    let app = Application::build_with_store(cfg, store).await.unwrap();
    let addr = app.local_addr();
    let token = CancellationToken::new();
    tokio::spawn(app.run(token.clone()));
    let started = Instant::now();
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/v1/orders"))
        .bearer_auth("ogw_whatever")
        .header("Idempotency-Key", new_key())
        .json(&order_body())
        .send()
        .await
        .unwrap();
    assert_problem(resp, 503).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    token.cancel();
    emulator.shutdown();
}

#[tokio::test]
async fn finance_orders_shows_money_as_numeric_and_no_secrets() {
    let app = spawn_app().await;
    let order: Value = app
        .post_order(&new_key(), &order_body())
        .await
        .json()
        .await
        .unwrap();
    let row: (
        String,
        String,
        rust_decimal::Decimal,
        Option<rust_decimal::Decimal>,
        String,
    ) = sqlx::query_as(
        "select po_number, caller, denomination, amount_charged, status from finance_orders",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(row.0, order["poNumber"].as_str().unwrap());
    assert_eq!(row.1, "caller-a");
    assert_eq!(row.2.normalize().to_string(), "50");
    assert!(row.3.is_some());
    assert_eq!(row.4, "completed");
    let columns: Vec<String> = sqlx::query_scalar(
        "select column_name::text from information_schema.columns where table_name = 'finance_orders'",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert!(
        !columns
            .iter()
            .any(|c| c.contains("code") || c.contains("pin") || c.contains("key"))
    );
}

/// The schema names exactly the statuses of the domain enum: a status added
/// on one side only fails here, not in production.
#[tokio::test]
async fn the_schema_status_check_lists_exactly_the_domain_statuses() {
    let app = spawn_app().await;
    let def: String = sqlx::query_scalar(
        "select pg_get_constraintdef(oid) from pg_constraint where conname = 'orders_status_check'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    let mut in_schema: Vec<String> = def
        .split('\'')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    in_schema.sort();
    let mut in_code: Vec<String> = order_gateway::domain::OrderStatus::ALL
        .iter()
        .map(|s| s.as_str().to_owned())
        .collect();
    in_code.sort();
    assert_eq!(in_schema, in_code, "constraint: {def}");
}

/// A statement cancelled under the intake (here by `pg_cancel_backend`, as
/// `statement_timeout` cancels one: SQLSTATE 57014) is the database refusing
/// work now, not a bug: 503 with the same-key advice, and the same key then
/// creates the order exactly once.
#[tokio::test]
async fn a_cancelled_intake_statement_answers_503_and_the_same_key_creates_the_order_once() {
    let app = spawn_app().await;
    let mut holder = app.db.begin().await.unwrap();
    sqlx::query("lock table orders in share row exclusive mode")
        .execute(&mut *holder)
        .await
        .unwrap();

    let key = new_key();
    let post = tokio::spawn(
        app.http
            .post(app.url("/v1/orders"))
            .bearer_auth(&app.api_key)
            .header("Idempotency-Key", &key)
            .json(&order_body())
            .send(),
    );
    let mut cancelled = false;
    for _ in 0..100 {
        cancelled = sqlx::query_scalar::<_, bool>(
            "select coalesce(bool_or(pg_cancel_backend(pid)), false) from pg_stat_activity
              where datname = current_database() and pid <> pg_backend_pid()
                and wait_event_type = 'Lock' and query ilike '%insert into orders%'",
        )
        .fetch_one(&app.db)
        .await
        .unwrap();
        if cancelled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(cancelled, "the intake never waited on the table lock");
    let problem = assert_problem(post.await.unwrap().unwrap(), 503).await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("SAME Idempotency-Key"), "{detail}");
    holder.rollback().await.unwrap();

    let resp = app.post_order(&key, &order_body()).await;
    assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
    let again = app.post_order(&key, &order_body()).await;
    assert_eq!(again.status(), 200);
    assert_eq!(app.count("orders").await, 1);
    assert_eq!(app.emulator.orders().len(), 1);
}
