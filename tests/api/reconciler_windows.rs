//! Issue 9, the reconciler's double-spend windows: the settle window runs
//! from the END of the last placeOrder attempt, a stored webhook forbids a
//! re-placement, a webhook that came while `placing` is acted on at once,
//! aging does one last lookup and counts from the first send, and `failed`
//! comes from the exchange history. Each test failed before its fix.

use std::time::Duration;

use order_gateway::{
    emulator::{Fault, FaultOp},
    store::{
        Store,
        reconcile::{CheckEnd, CheckRow},
    },
};
use serde_json::{Value, json};

use crate::{
    helpers::{TestApp, new_key, order_body, spawn_app_with},
    ledger::{assert_ledger_consistent, fast, wait_all_settled},
    webhooks::{KEY, event, post_webhook, wait_status},
};

/// Posts one order without waiting for its outcome; returns (id, poNumber).
async fn post_unwaited(app: &TestApp, body: &Value) -> (String, String) {
    let order: Value = app
        .post_order_as(&app.api_key, &new_key(), body, Some(0))
        .await
        .json()
        .await
        .unwrap();
    let id = order["id"].as_str().unwrap().to_owned();
    (id, order["poNumber"].as_str().unwrap().to_owned())
}

/// Seconds between the end of the first placeOrder and the start of the
/// first getOrderDetails of `po`.
async fn first_lookup_gap(app: &TestApp, po: &str) -> f64 {
    sqlx::query_scalar(
        "select extract(epoch from
                  (select min(x.started_at) from upstream_exchanges x
                   where x.order_id = o.order_id and x.operation = 'get_order_details')
                - (select min(x.completed_at) from upstream_exchanges x
                   where x.order_id = o.order_id and x.operation = 'place_order'))::float8
         from orders o where o.po_number = $1",
    )
    .bind(po)
    .fetch_one(&app.db)
    .await
    .unwrap()
}

/// Posts an order whose first placeOrder gets a 502 before anything is
/// created upstream (an unknown outcome: the order goes to `reconciling`).
async fn post_after_a_502(app: &TestApp) -> (String, String) {
    app.emulator.push_fault(
        FaultOp::PlaceOrder,
        Fault::ErrorBeforeCreate { status: 502 },
    );
    post_unwaited(app, &order_body()).await
}

async fn view(app: &TestApp, id: &str) -> Value {
    app.get_order(&app.api_key, id).await.json().await.unwrap()
}

#[tokio::test]
async fn a_timed_out_place_is_not_placed_again_before_the_settle_window_after_its_end() {
    // The call is abandoned at 3 s; Xoxoday creates the order at 5.5 s. A
    // settle window measured from the start (4 s) trusts a not-found at 4 s
    // and places again; measured from the end it waits until 7 s.
    let mut opts = fast(&[("XOXODAY_SETTLE_WINDOW", "4s")]);
    opts.place_timeout = "3s";
    let app = spawn_app_with(opts).await;
    app.emulator.push_fault(
        FaultOp::PlaceOrder,
        Fault::Slow(Duration::from_millis(5500)),
    );
    let (id, po) = post_unwaited(&app, &order_body()).await;
    wait_all_settled(&app.db, Duration::from_secs(40)).await;
    assert_eq!(app.emulator.place_calls(&po), 1, "placed again too early");
    assert_eq!(view(&app, &id).await["status"], "completed");
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn the_first_lookup_after_a_timeout_waits_the_retry_floor() {
    let mut opts = fast(&[("RECONCILE_RETRY_FLOOR", "2s")]);
    opts.place_timeout = "1s";
    let app = spawn_app_with(opts).await;
    app.emulator.push_fault(
        FaultOp::PlaceOrder,
        Fault::SleepAfterCreate(Duration::from_secs(2)),
    );
    let (id, po) = post_unwaited(&app, &order_body()).await;
    wait_all_settled(&app.db, Duration::from_secs(30)).await;
    assert_eq!(view(&app, &id).await["status"], "completed");
    let gap = first_lookup_gap(&app, &po).await;
    assert!(gap >= 1.9, "first lookup {gap:.2}s after the timeout");
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn a_stored_webhook_forbids_placing_again_and_ends_in_review() {
    let app = spawn_app_with(fast(&[
        ("WEBHOOK_API_KEY", KEY),
        ("RECONCILE_MAX_ATTEMPTS", "2"),
    ]))
    .await;
    let (id, po) = post_after_a_502(&app).await;
    let hook = post_webhook(&app, Some(KEY), &event(4242, &po, "delivered")).await;
    assert_eq!(hook.status(), 200);
    wait_all_settled(&app.db, Duration::from_secs(30)).await;
    // The webhook may land before the first send (then nothing is sent).
    assert!(app.emulator.place_calls(&po) <= 1, "placed again");
    let order = view(&app, &id).await;
    assert_eq!(order["status"], "needs_review", "{order}");
    let reason = order["statusReason"].as_str().unwrap();
    assert!(reason.contains("webhook"), "{reason}");
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn the_replace_statement_refuses_an_order_with_a_stored_webhook() {
    // The webhook lands between the claim and the write-back: the guard in
    // the SQL itself must hold, whatever the check saw when it began.
    let app = spawn_app_with(fast(&[("RECONCILE_POLL_INTERVAL", "1h")])).await;
    let (_, po) = post_after_a_502(&app).await;
    wait_for_status(&app, &po, "reconciling").await;
    sqlx::query("update orders set next_check_at = now() where po_number = $1")
        .bind(&po)
        .execute(&app.db)
        .await
        .unwrap();
    let store = &Store::from_pool(app.db.clone());
    let claimed = store
        .claim_due_checks(8, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    sqlx::query(
        "insert into webhook_events (webhook_id, po_number, delivery_status, order_id,
           matched, payload)
         select 'race-1', po_number, 'delivered', order_id, true, '{}' from orders
         where po_number = $1",
    )
    .bind(&po)
    .execute(&app.db)
    .await
    .unwrap();
    store
        .finish_check(&claimed[0], None, &CheckEnd::Replace)
        .await
        .unwrap();
    assert_eq!(app.db_status(&po).await, "reconciling");
}

#[tokio::test]
async fn a_webhook_that_came_while_placing_is_checked_right_after_the_answer() {
    let app = spawn_app_with(fast(&[("WEBHOOK_API_KEY", KEY)])).await;
    app.emulator.push_fault(
        FaultOp::PlaceOrder,
        Fault::SleepAfterCreate(Duration::from_secs(2)),
    );
    let (id, po) = post_unwaited(&app, &json!({"productId": 1003, "denomination": 10})).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while app.emulator.order(&po).is_none() {
        assert!(tokio::time::Instant::now() < deadline, "never created");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Xoxoday delivers and says so before its placeOrder answer arrives.
    assert!(app.emulator.settle_pending(&po, true));
    assert_eq!(app.db_status(&po).await, "placing");
    let hook = post_webhook(&app, Some(KEY), &event(4343, &po, "delivered")).await;
    assert_eq!(hook.status(), 200);
    let done = wait_status(&app, &id, "completed").await;
    assert!(!done["vouchers"].as_array().unwrap().is_empty());
    assert_ledger_consistent(&app).await;
}

/// Polls a boolean query until it is true.
async fn wait_until(app: &TestApp, sql: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let ok: Option<bool> = sqlx::query_scalar(sql).fetch_one(&app.db).await.unwrap();
        if ok == Some(true) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "never: {sql}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_for_status(app: &TestApp, po: &str, status: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while app.db_status(po).await != status {
        assert!(tokio::time::Instant::now() < deadline, "never {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_aged_order_gets_one_final_lookup_that_can_still_adopt() {
    let app = spawn_app_with(fast(&[
        ("RECONCILE_MAX_AGE", "1s"),
        ("RECONCILE_RETRY_BASE", "1500ms"),
    ]))
    .await;
    app.emulator
        .push_fault(FaultOp::PlaceOrder, Fault::ErrorAfterCreate { status: 500 });
    let (id, po) = post_unwaited(&app, &order_body()).await;
    wait_all_settled(&app.db, Duration::from_secs(30)).await;
    let order = view(&app, &id).await;
    assert_eq!(order["status"], "completed", "{order}");
    assert_eq!(app.emulator.place_calls(&po), 1);
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn an_aged_order_is_reviewed_only_after_a_final_lookup() {
    let app = spawn_app_with(fast(&[
        ("RECONCILE_MAX_AGE", "1s"),
        ("RECONCILE_RETRY_BASE", "1500ms"),
    ]))
    .await;
    let (id, po) = post_after_a_502(&app).await;
    wait_all_settled(&app.db, Duration::from_secs(30)).await;
    let order = view(&app, &id).await;
    assert_eq!(order["status"], "needs_review", "{order}");
    let lookups = app
        .count("upstream_exchanges where operation = 'get_order_details' and outcome is not null")
        .await;
    assert_eq!(lookups, 1, "one final lookup before the review");
    assert_eq!(app.emulator.place_calls(&po), 1);
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn reconciliation_age_counts_from_the_first_send_not_from_creation() {
    let app = spawn_app_with(fast(&[("RECONCILE_MAX_AGE", "30m")])).await;
    app.emulator
        .push_fault(FaultOp::PlaceOrder, Fault::ErrorAfterCreate { status: 500 });
    let (id, _) = post_unwaited(&app, &order_body()).await;
    // As if it had waited in `accepted` for two hours before it was sent.
    sqlx::query("update orders set created_at = now() - interval '2 hours' where order_id = $1")
        .bind(uuid::Uuid::parse_str(&id).unwrap())
        .execute(&app.db)
        .await
        .unwrap();
    wait_all_settled(&app.db, Duration::from_secs(30)).await;
    let order = view(&app, &id).await;
    assert_eq!(order["status"], "completed", "{order}");
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn an_accepted_order_never_sent_expires_as_failed() {
    let app = spawn_app_with(fast(&[])).await;
    // One order that was sent (throttled: no order, but a send all the same).
    app.emulator.push_fault(
        FaultOp::PlaceOrder,
        Fault::RateLimited {
            penalty_seconds: 3600,
        },
    );
    let (sent_id, _) = post_unwaited(&app, &order_body()).await;
    wait_until(
        &app,
        "select count(*) = 1 from upstream_exchanges where outcome = 'rate_limited'",
    )
    .await;
    // placeOrder is paused now: the next order is never sent.
    let (unsent_id, unsent_po) = post_unwaited(&app, &order_body()).await;
    wait_until(&app, "select bool_and(status = 'accepted') from orders").await;
    sqlx::query("update orders set created_at = now() - interval '73 hours'")
        .execute(&app.db)
        .await
        .unwrap();
    let order = wait_view_status(&app, &unsent_id, "failed").await;
    assert_eq!(order["statusReason"], "expired_unsent", "{order}");
    assert_eq!(app.emulator.place_calls(&unsent_po), 0);
    assert_eq!(view(&app, &sent_id).await["status"], "accepted");
    assert_ledger_consistent_after_lifting(&app).await;
}

async fn assert_ledger_consistent_after_lifting(app: &TestApp) {
    crate::ledger::lift_pauses_and_make_due(&app.db).await;
    wait_all_settled(&app.db, Duration::from_secs(30)).await;
    assert_ledger_consistent(app).await;
}

async fn wait_view_status(app: &TestApp, id: &str, status: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let order = view(app, id).await;
        if order["status"] == status {
            return order;
        }
        assert!(tokio::time::Instant::now() < deadline, "{order}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_delivery_pending_too_long_goes_to_review_as_overdue() {
    let app = spawn_app_with(fast(&[("PENDING_DELIVERY_MAX_AGE", "1s")])).await;
    let order: Value = app
        .post_order(&new_key(), &json!({"productId": 1003, "denomination": 10}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(order["status"], "pending_delivery");
    let (id, po) = (
        order["id"].as_str().unwrap(),
        order["poNumber"].as_str().unwrap(),
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let upstream = app.emulator.order(po).unwrap();
    app.emulator.push_fault(
        FaultOp::GetOrderDetails,
        Fault::Respond {
            status: 200,
            body: pending_details(upstream.order_id),
        },
    );
    sqlx::query("update orders set next_check_at = now() where po_number = $1")
        .bind(po)
        .execute(&app.db)
        .await
        .unwrap();
    let order = wait_view_status(&app, id, "needs_review").await;
    assert_eq!(order["statusReason"], "delivery_overdue", "{order}");
}

/// A getOrderDetails answer that still says `pending`.
fn pending_details(order_id: i64) -> Value {
    json!({"data": {"getOrderDetails": {"status": 1, "data": {
        "orderId": order_id, "orderTotal": 10, "orderDiscount": "", "currencyCode": "USD",
        "amountCharged": 10, "orderStatus": "complete", "deliveryStatus": "pending",
        "vouchers": []}}}})
}

#[tokio::test]
async fn a_refusal_after_a_throttled_5xx_never_fails_the_order() {
    // Attempt 1: a rate-limit body on a 503. It is given back (attempts
    // decremented), but a 5xx may have created the order. Attempt 2 is
    // refused: the order must stay reconciling, not become `failed`.
    let app = spawn_app_with(fast(&[])).await;
    app.emulator.push_fault(
        FaultOp::PlaceOrder,
        Fault::Respond {
            status: 503,
            body: json!({"errors": [{"message": "auth.request_limit_exceeded",
                                     "penaltySeconds": 1}]}),
        },
    );
    app.emulator.push_fault(
        FaultOp::PlaceOrder,
        Fault::Respond {
            status: 400,
            body: json!({"code": 400, "errorId": "PLE10001",
                         "errorInfo": "Validation error in place order", "error": "Bad request"}),
        },
    );
    let (id, po) = post_unwaited(&app, &order_body()).await;
    wait_all_settled(&app.db, Duration::from_secs(30)).await;
    let order = view(&app, &id).await;
    assert_ne!(order["status"], "failed", "{order}");
    assert_eq!(order["status"], "completed", "{order}");
    assert_eq!(app.emulator.place_calls(&po), 3);
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn a_webhook_that_lands_between_the_replace_and_the_send_forbids_the_send() {
    // The reconciler's Replace commits (no webhook yet), so the order is
    // `placing` again under the check's lease. The delivery webhook lands
    // now: it is stored, but `placing` schedules nothing. The placeOrder
    // that follows must not go out: the webhook proves the order exists.
    // A long settle window: the app's own reconciler may look at the order
    // too, but it never places it again in this test; only the test does.
    let app = spawn_app_with(fast(&[
        ("WEBHOOK_API_KEY", KEY),
        ("RECONCILE_POLL_INTERVAL", "1h"),
        ("XOXODAY_SETTLE_WINDOW", "60s"),
    ]))
    .await;
    let (_, po) = post_after_a_502(&app).await;
    wait_for_status(&app, &po, "reconciling").await;
    let store = &Store::from_pool(app.db.clone());
    let claimed = claim_when_free(&app, store, &po).await;
    let row = store
        .finish_check(&claimed[0], None, &CheckEnd::Replace)
        .await
        .unwrap()
        .expect("replace applied");
    assert_eq!(app.db_status(&po).await, "placing");
    let hook = post_webhook(&app, Some(KEY), &event(4545, &po, "delivered")).await;
    assert_eq!(hook.status(), 200);
    app.dispatcher.place_claimed(row).await.unwrap();
    assert_eq!(
        app.emulator.place_calls(&po),
        1,
        "placed again although a stored webhook proves the order exists"
    );
    assert_eq!(app.db_status(&po).await, "reconciling");
}

#[tokio::test]
async fn an_attempt_that_never_got_an_answer_keeps_a_later_refusal_from_failing_the_order() {
    // Attempt 1 was sent and its replica died (kill -9): its audit row has no
    // response and no outcome. Attempt 2 is refused. An attempt without an
    // answer may have created the order, so `failed` is not allowed.
    let app = spawn_app_with(fast(&[])).await;
    app.emulator.push_fault(
        FaultOp::PlaceOrder,
        Fault::ErrorBeforeCreate { status: 502 },
    );
    app.emulator.push_fault(
        FaultOp::PlaceOrder,
        Fault::Respond {
            status: 400,
            body: json!({"code": 400, "errorId": "PLE10001",
                         "errorInfo": "Validation error in place order", "error": "Bad request"}),
        },
    );
    let (id, po) = post_unwaited(&app, &order_body()).await;
    wait_for_status(&app, &po, "reconciling").await;
    // What a kill -9 mid-call leaves of attempt 1 (the audit is append-only,
    // so the test lifts that guard for this one rewrite).
    let mut tx = app.db.begin().await.unwrap();
    sqlx::query("alter table upstream_exchanges disable trigger upstream_exchanges_append_only")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "update upstream_exchanges x set response_status = null, outcome = null,
           completed_at = null, response_body_redacted = null, error = null
         from orders o
         where o.order_id = x.order_id and o.po_number = $1 and x.operation = 'place_order'",
    )
    .bind(&po)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query("alter table upstream_exchanges enable trigger upstream_exchanges_append_only")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    wait_all_settled(&app.db, Duration::from_secs(30)).await;
    let order = view(&app, &id).await;
    assert_ne!(order["status"], "failed", "{order}");
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn a_throttle_body_on_a_5xx_is_reconciled_not_placed_again_blind() {
    // A 503 carrying the rate-limit body, while Xoxoday is still creating
    // the order behind it (created 2 s after the call ended). Giving the
    // order back to `accepted` places it again after the 1 s penalty, with
    // no lookup and no settle window: a second order. A throttle body on a
    // non-4xx answer proves nothing: reconcile it.
    let app = spawn_app_with(fast(&[("XOXODAY_SETTLE_WINDOW", "3s")])).await;
    app.emulator.push_fault(
        FaultOp::PlaceOrder,
        Fault::LateCreate {
            after: Duration::from_secs(2),
            answer: order_gateway::emulator::LateAnswer::Respond {
                status: 503,
                body: json!({"errors": [{"message": "auth.request_limit_exceeded",
                                         "penaltySeconds": 1}]}),
            },
        },
    );
    let (id, po) = post_unwaited(&app, &order_body()).await;
    wait_all_settled(&app.db, Duration::from_secs(30)).await;
    assert_eq!(
        app.emulator.orders_for(&po).len(),
        1,
        "two orders for one poNumber"
    );
    assert_eq!(view(&app, &id).await["status"], "completed");
    assert_ledger_consistent(&app).await;
}

/// Claims the order's check for the test itself. The app's reconciler may
/// hold it for a moment (it was woken by the write-back); wait until it lets
/// go, then make the order due and claim it.
async fn claim_when_free(app: &TestApp, store: &Store, po: &str) -> Vec<CheckRow> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        sqlx::query(
            "update orders set next_check_at = now()
              where po_number = $1 and lease_token is null",
        )
        .bind(po)
        .execute(&app.db)
        .await
        .unwrap();
        let claimed = store
            .claim_due_checks(8, Duration::from_secs(30))
            .await
            .unwrap();
        if !claimed.is_empty() {
            assert_eq!(claimed.len(), 1);
            return claimed;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the order never became free to claim"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
