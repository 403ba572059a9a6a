//! Dispatch: poNumber first, every exchange audited, every outcome mapped.

use std::time::Duration;

use order_gateway::emulator::{Fault, FaultOp};
use serde_json::{Value, json};

use crate::{
    helpers::{Options, new_key, order_body, spawn_app, spawn_app_with},
    ledger::lift_pauses_and_make_due,
};

#[tokio::test]
async fn a_delivered_order_is_201_completed_with_vouchers_and_audit() {
    let app = spawn_app().await;
    let resp = app.post_order(&new_key(), &order_body()).await;
    assert_eq!(resp.status(), 201);
    assert!(
        resp.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/v1/orders/")
    );
    let order: Value = resp.json().await.unwrap();
    let po = order["poNumber"].as_str().unwrap();
    assert!(po.starts_with("OGW-"));
    assert_eq!(order["status"], "completed");
    assert_eq!(order["deliveryStatus"], "delivered");
    assert_eq!(order["denomination"], "50");
    assert_eq!(order["attempts"], 1);
    assert!(order["settledAt"].is_string());
    let ledger = app.emulator.order(po).expect("emulator has the order");
    assert_eq!(order["xoxodayOrderId"], ledger.order_id);
    assert_eq!(
        order["amountCharged"].as_str().unwrap(),
        ledger.amount_charged.normalize().to_string()
    );
    let code = order["vouchers"][0]["code"].as_str().unwrap();
    assert_eq!(code, ledger.vouchers[0].code);

    // Voucher codes are encrypted at rest, in the voucher table and the audit.
    let (redacted, sealed): (String, Vec<u8>) = sqlx::query_as(
        "select response_body_redacted, response_body_encrypted from upstream_exchanges
         where operation = 'place_order'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(!redacted.contains(code) && redacted.contains("[REDACTED]"));
    assert!(!sealed.windows(code.len()).any(|w| w == code.as_bytes()));
    let stored: Vec<u8> = sqlx::query_scalar("select code_encrypted from vouchers")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(!stored.windows(code.len()).any(|w| w == code.as_bytes()));
    let row: (String, i32, i32, Option<i32>) = sqlx::query_as(
        "select operation, attempt, response_status, duration_ms from upstream_exchanges
         where operation = 'place_order'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!((row.0.as_str(), row.1, row.2), ("place_order", 1, 200));
    assert!(row.3.is_some());
}

#[tokio::test]
async fn the_po_number_and_exchange_are_committed_before_xoxoday_sees_the_call() {
    let app = spawn_app().await;
    app.emulator
        .push_fault(FaultOp::PlaceOrder, Fault::Slow(Duration::from_secs(2)));
    let resp = app
        .post_order_as(&app.api_key, &new_key(), &order_body(), Some(0))
        .await;
    assert_eq!(resp.status(), 202);
    let order: Value = resp.json().await.unwrap();
    let po = order["poNumber"].as_str().unwrap().to_owned();

    // The exchange row (request included) must exist while the emulator still
    // holds the call and has created nothing.
    let mut seen = false;
    for _ in 0..100 {
        let row: Option<(Value, Option<i32>)> = sqlx::query_as(
            "select e.request_body, e.response_status from upstream_exchanges e
             join orders o using (order_id) where o.po_number = $1",
        )
        .bind(&po)
        .fetch_optional(&app.db)
        .await
        .unwrap();
        if let Some((request, status)) = row {
            assert!(
                app.emulator.order(&po).is_none(),
                "upstream created before the audit row"
            );
            assert!(request.to_string().contains(&po));
            assert_eq!(status, None);
            assert_eq!(app.db_status(&po).await, "placing");
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(seen, "no exchange row while the call was in flight");
    let done = app
        .wait_settled(order["id"].as_str().unwrap(), Duration::from_secs(10))
        .await;
    assert_eq!(done["status"], "completed");
    assert_eq!(app.emulator.place_calls(&po), 1);
}

#[tokio::test]
async fn an_upstream_rejection_fails_the_order_with_xoxodays_error() {
    let app = spawn_app().await;
    let body = json!({"productId": 1001, "denomination": 12});
    let resp = app.post_order(&new_key(), &body).await;
    assert_eq!(resp.status(), 201);
    let order: Value = resp.json().await.unwrap();
    assert_eq!(order["status"], "failed");
    assert_eq!(order["failure"]["errorId"], "PLE10018");
    assert_eq!(order["failure"]["httpStatus"], 400);
    assert!(order["failure"]["errorInfo"].is_string());
    assert!(order["xoxodayOrderId"].is_null());
    assert!(app.emulator.orders().is_empty());
}

async fn assert_unknown_outcome_reconciles(app: &crate::helpers::TestApp, fault: Fault) {
    app.emulator.push_fault(FaultOp::PlaceOrder, fault);
    let resp = app.post_order(&new_key(), &order_body()).await;
    assert_eq!(resp.status(), 202);
    assert!(resp.headers().get("retry-after").is_some());
    let order: Value = resp.json().await.unwrap();
    assert_eq!(order["status"], "reconciling");
    let po = order["poNumber"].as_str().unwrap();
    assert_eq!(app.emulator.place_calls(po), 1);
    let (check, attempts): (Option<chrono::DateTime<chrono::Utc>>, i32) =
        sqlx::query_as("select next_check_at, attempts from orders where po_number = $1")
            .bind(po)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(check.is_some(), "reconciling orders have a next check");
    assert_eq!(attempts, 1);
    // The background dispatcher never places it again.
    app.dispatcher.dispatch_once().await.unwrap();
    assert_eq!(app.emulator.place_calls(po), 1);
}

#[tokio::test]
async fn a_5xx_after_creation_is_an_unknown_outcome_not_a_failure() {
    let app = spawn_app().await;
    assert_unknown_outcome_reconciles(&app, Fault::ErrorAfterCreate { status: 502 }).await;
}

#[tokio::test]
async fn a_dropped_connection_is_an_unknown_outcome() {
    let app = spawn_app().await;
    assert_unknown_outcome_reconciles(&app, Fault::DropAfterCreate).await;
}

#[tokio::test]
async fn a_timeout_is_an_unknown_outcome() {
    let app = spawn_app_with(Options {
        place_timeout: "1s",
        ..Options::default()
    })
    .await;
    assert_unknown_outcome_reconciles(&app, Fault::SleepAfterCreate(Duration::from_secs(3))).await;
}

#[tokio::test]
async fn throttling_puts_the_order_back_without_counting_an_attempt() {
    let app = spawn_app().await;
    app.emulator.push_fault(
        FaultOp::PlaceOrder,
        Fault::RateLimited { penalty_seconds: 5 },
    );
    let resp = app.post_order(&new_key(), &order_body()).await;
    assert_eq!(resp.status(), 202);
    let order: Value = resp.json().await.unwrap();
    assert_eq!(order["status"], "accepted");
    assert_eq!(order["attempts"], 0);
    let po = order["poNumber"].as_str().unwrap();
    let later: bool = sqlx::query_scalar(
        "select next_attempt_at > now() + interval '3 seconds' from orders where po_number = $1",
    )
    .bind(po)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(later);
    // Not due yet: nothing happens.
    assert_eq!(app.dispatcher.dispatch_once().await.unwrap(), 0);
    // The penalty pauses placeOrder on every replica (issue 4).
    assert_eq!(
        app.count("upstream_pauses where operation = 'place_order'")
            .await,
        1
    );
    // Once due and the penalty over, the dispatcher places it with the same poNumber.
    lift_pauses_and_make_due(&app.db).await;
    assert_eq!(app.dispatcher.dispatch_once().await.unwrap(), 1);
    assert_eq!(app.db_status(po).await, "completed");
    assert_eq!(app.emulator.place_calls(po), 2);
    assert_eq!(app.emulator.orders().len(), 1);
    assert_eq!(order_exchanges(&app).await, 2);
}

#[tokio::test]
async fn an_expired_token_creates_no_order_and_is_retried_later() {
    let app = spawn_app().await;
    app.emulator
        .push_fault(FaultOp::PlaceOrder, Fault::InvalidToken);
    // The refresh fails too, so the order waits (a good refresh retries at
    // once: tokens::an_invalid_token_refreshes_once_and_the_order_is_placed_promptly).
    app.emulator
        .push_fault(FaultOp::RefreshToken, Fault::InvalidToken);
    let order: Value = app
        .post_order(&new_key(), &order_body())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(order["status"], "accepted");
    assert!(order["failure"].is_null());
    assert!(app.emulator.orders().is_empty());
}

#[tokio::test]
async fn the_background_dispatcher_places_orders_no_handler_dispatched() {
    let app = spawn_app().await;
    // An order left `accepted` (e.g. the gateway stopped right after the insert).
    let resp = app
        .post_order_as(&app.api_key, &new_key(), &order_body(), Some(0))
        .await;
    let order: Value = resp.json().await.unwrap();
    let done = app
        .wait_settled(order["id"].as_str().unwrap(), Duration::from_secs(10))
        .await;
    assert_eq!(done["status"], "completed");
    sqlx::query(
        "insert into orders (order_id, caller_id, idempotency_key, request_fingerprint, po_number,
           product_id, denomination, quantity)
         select gen_random_uuid(), caller_id, 'orphan', '\\x00', 'OGW-orphan', 1001, 25, 1 from callers",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let done = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if app.db_status("OGW-orphan").await == "completed" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(done.is_ok(), "the background loop did not place the orphan");
    assert_eq!(app.emulator.place_calls("OGW-orphan"), 1);
}

#[tokio::test]
async fn a_stale_lease_cannot_write_back_and_expired_leases_reconcile() {
    use order_gateway::{
        domain::OrderId,
        store::{
            Store,
            exchanges::{Begin, ExchangeStart},
            outcomes::{PlaceResult, WriteBack},
            rate_limit::SlotAsk,
        },
    };
    let ask = |per_minute| SlotAsk {
        operation: "place_order",
        per_minute,
        window: Duration::from_secs(60),
    };
    let app = spawn_app().await;
    let store = &Store::from_pool(app.db.clone());
    let id = uuid::Uuid::now_v7();
    sqlx::query(
        "insert into orders (order_id, caller_id, idempotency_key, request_fingerprint, po_number,
           product_id, denomination, quantity, next_attempt_at)
         select $1, caller_id, 'fenced', '\\x00', 'OGW-fenced', 1001, 25, 1,
           now() + interval '1 hour' from callers",
    )
    .bind(id)
    .execute(&app.db)
    .await
    .unwrap();
    let oid = OrderId::from_uuid(id);
    let lease = Duration::from_secs(60);
    let row = store
        .claim_order(oid, lease)
        .await
        .unwrap()
        .expect("claimed");
    let stale = row.lease_token.unwrap();
    let exchange_id = uuid::Uuid::now_v7();
    let start = |exchange_id| ExchangeStart {
        exchange_id,
        operation: "place_order",
        method: "POST",
        url: "http://x",
        request_body: json!({}),
    };
    // No slot: nothing is written, nothing counted, the claim never "sent".
    let begun = store
        .begin_place_attempt(oid, stale, lease, start(exchange_id), ask(0))
        .await
        .unwrap();
    assert!(matches!(begun, Begin::NoSlot(_)), "{begun:?}");
    let (attempts, sent): (i32, bool) =
        sqlx::query_as("select attempts, lease_sent from orders where order_id = $1")
            .bind(id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!((attempts, sent), (0, false));
    assert_eq!(order_exchanges(&app).await, 0);
    let begun = store
        .begin_place_attempt(oid, stale, lease, start(exchange_id), ask(100))
        .await
        .unwrap();
    assert!(matches!(begun, Begin::Send { attempt: 1, .. }), "{begun:?}");
    // A newer claim takes over (e.g. after this worker stalled).
    sqlx::query("update orders set lease_token = gen_random_uuid() where order_id = $1")
        .bind(id)
        .execute(&app.db)
        .await
        .unwrap();
    let written = store
        .record_place_result(&WriteBack {
            order: oid,
            lease: stale,
            exchange_id,
            end: Default::default(),
            result: PlaceResult::Failed {
                failure: json!({"httpStatus": 400}),
                check_in: Duration::from_secs(1),
            },
        })
        .await
        .unwrap();
    assert!(written.is_none(), "a stale lease must not write back");
    assert_eq!(app.db_status("OGW-fenced").await, "placing");
    let completed: bool = sqlx::query_scalar(
        "select completed_at is not null from upstream_exchanges where exchange_id = $1",
    )
    .bind(exchange_id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(completed, "the audit row is completed even when fenced out");
    let slots = app.slots_taken("place_order").await;
    assert_eq!(
        store
            .begin_place_attempt(oid, stale, lease, start(uuid::Uuid::now_v7()), ask(100))
            .await
            .unwrap(),
        Begin::LeaseLost
    );
    assert_eq!(
        app.slots_taken("place_order").await,
        slots,
        "no slot spent on a call that is not sent"
    );

    // When the lease runs out, the order is reconciled, never re-placed blindly.
    sqlx::query("update orders set lease_until = now() - interval '1 second' where order_id = $1")
        .bind(id)
        .execute(&app.db)
        .await
        .unwrap();
    app.dispatcher.dispatch_once().await.unwrap();
    assert_eq!(app.db_status("OGW-fenced").await, "reconciling");
    assert_eq!(app.emulator.place_calls("OGW-fenced"), 0);
}

#[tokio::test]
async fn a_client_hanging_up_does_not_cancel_the_placement() {
    let app = spawn_app().await;
    app.emulator
        .push_fault(FaultOp::PlaceOrder, Fault::Slow(Duration::from_millis(800)));
    let key = new_key();
    let gave_up = app
        .http
        .post(app.url("/v1/orders"))
        .bearer_auth(&app.api_key)
        .header("Idempotency-Key", &key)
        .json(&order_body())
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(gave_up.is_err(), "the client should have timed out");
    let page: Value = app
        .list_orders(&app.api_key, &format!("idempotencyKey={key}"))
        .await
        .json()
        .await
        .unwrap();
    let id = page["orders"][0]["id"]
        .as_str()
        .expect("order stored")
        .to_owned();
    let done = app.wait_settled(&id, Duration::from_secs(10)).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(
        app.emulator.place_calls(done["poNumber"].as_str().unwrap()),
        1
    );
    // The retry after hanging up replays the settled order.
    let again = app.post_order(&key, &order_body()).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
}

#[tokio::test]
async fn money_stays_exact_from_request_to_upstream_to_finance() {
    let app = spawn_app().await;
    // 1002 takes any value from 5 to 500; 10.01 × 3 has no exact binary form.
    let body = json!({"productId": 1002, "denomination": 10.01, "quantity": 3});
    let order: Value = app
        .post_order(&new_key(), &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(order["status"], "completed");
    assert_eq!(order["denomination"], "10.01");
    assert_eq!(order["orderTotal"], "30.03");
    let po = order["poNumber"].as_str().unwrap();
    let ledger = app.emulator.order(po).unwrap();
    assert_eq!(ledger.denomination.normalize().to_string(), "10.01");
    let total: rust_decimal::Decimal =
        sqlx::query_scalar("select order_total from finance_orders where po_number = $1")
            .bind(po)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(total, rust_decimal::Decimal::new(3003, 2));
}

#[tokio::test]
async fn a_delayed_product_is_201_pending_delivery_without_vouchers() {
    let app = spawn_app().await;
    let body = json!({"productId": 1003, "denomination": 10});
    let resp = app.post_order(&new_key(), &body).await;
    let status = resp.status();
    let order: Value = resp.json().await.unwrap();
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["status"], "pending_delivery");
    assert_eq!(order["deliveryStatus"], "pending");
    assert!(order["vouchers"].as_array().unwrap().is_empty());
    assert!(order["xoxodayOrderId"].is_i64());
    let check: bool =
        sqlx::query_scalar("select next_check_at is not null from orders where po_number = $1")
            .bind(order["poNumber"].as_str().unwrap())
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(check, "pending deliveries are scheduled for a check");
}

#[tokio::test]
async fn a_heartbeat_keeps_a_slow_call_leased_past_the_lease_length() {
    let app = spawn_app_with(Options {
        lease: "1s",
        ..Options::default()
    })
    .await;
    app.emulator.push_fault(
        FaultOp::PlaceOrder,
        Fault::Slow(Duration::from_millis(3500)),
    );
    let resp = app.post_order(&new_key(), &order_body()).await;
    let order: Value = resp.json().await.unwrap();
    // The background loop sweeps expired leases every second meanwhile.
    assert_eq!(order["status"], "completed", "{order}");
    assert_eq!(
        app.emulator
            .place_calls(order["poNumber"].as_str().unwrap()),
        1
    );
}

#[tokio::test]
async fn a_claim_that_expired_before_sending_goes_back_to_accepted_and_is_placed() {
    let app = spawn_app().await;
    sqlx::query(
        "insert into orders (order_id, caller_id, idempotency_key, request_fingerprint, po_number,
           product_id, denomination, quantity, status, lease_token, lease_until, lease_sent)
         select gen_random_uuid(), caller_id, 'unsent', '\\x00', 'OGW-unsent', 1001, 25, 1,
           'placing', gen_random_uuid(), now() - interval '1 second', false from callers",
    )
    .execute(&app.db)
    .await
    .unwrap();
    // Nothing was sent under that claim, so it is placed again (a
    // `reconciling` order would never complete without the reconciler).
    app.dispatcher.dispatch_once().await.unwrap();
    app.dispatcher.dispatch_once().await.unwrap();
    assert_eq!(app.db_status("OGW-unsent").await, "completed");
    assert_eq!(app.emulator.place_calls("OGW-unsent"), 1);
}

/// Exchanges other than the balance monitor's getBalance reads, which
/// `serve` makes once a minute from start (contract §8).
async fn order_exchanges(app: &crate::helpers::TestApp) -> i64 {
    app.count("upstream_exchanges where operation <> 'get_balance'")
        .await
}

#[tokio::test]
async fn a_lease_heartbeat_is_a_hot_update() {
    use order_gateway::{domain::OrderId, store::Store};
    // One connection, so the statistics read are this backend's own.
    let app = spawn_app().await;
    let conn = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(app.db_url())
        .await
        .unwrap();
    let store = Store::from_pool(conn.clone());
    let id = uuid::Uuid::now_v7();
    sqlx::query(
        "insert into orders (order_id, caller_id, idempotency_key, request_fingerprint, po_number,
           product_id, denomination, quantity, next_attempt_at)
         select $1, caller_id, 'heartbeat', '\\x00', 'OGW-heartbeat', 1001, 25, 1,
           now() + interval '1 hour' from callers",
    )
    .bind(id)
    .execute(&conn)
    .await
    .unwrap();
    let (oid, lease) = (OrderId::from_uuid(id), Duration::from_secs(60));
    let row = store
        .claim_order(oid, lease)
        .await
        .unwrap()
        .expect("claimed");
    let token = row.lease_token.unwrap();
    let hot_updates = || async {
        // Flush this backend's pending counters, then read them.
        sqlx::query("select pg_stat_force_next_flush()")
            .execute(&conn)
            .await
            .unwrap();
        let n: i64 = sqlx::query_scalar(
            "select n_tup_hot_upd from pg_stat_user_tables where relname = 'orders'",
        )
        .fetch_one(&conn)
        .await
        .unwrap();
        n
    };
    let before = hot_updates().await;

    for _ in 0..3 {
        assert!(store.renew_lease(oid, token, lease).await.unwrap());
    }

    assert_eq!(
        hot_updates().await - before,
        3,
        "each renewal must rewrite no indexed column"
    );
}
