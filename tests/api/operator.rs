//! Contract §8, operators: `orders show | recheck | resolve` through the
//! real binary against the app's database and emulator. Covers the
//! timeline of an order that went through `reconciling` and `needs_review`
//! to an operator's resolve, a contradicting webhook in the timeline, and
//! every refusal and permission of `resolve`.

use std::{process::Output, time::Duration};

use order_gateway::emulator::{Fault, FaultOp};
use serde_json::Value;

use crate::{
    helpers::{Options, TestApp, env_pairs, spawn_app_with},
    ledger::{fast, wait_all_settled},
    webhooks::{KEY, event, post_webhook, wait_status},
};

/// Runs `order-gateway ARGS` against the app's database and emulator, with
/// nothing else in its environment but `extra`.
pub async fn gateway(app: &TestApp, args: &[&str], extra: &[(&str, &str)]) -> Output {
    let vars = env_pairs(&app.db_url, &app.emulator.base_url(), &Options::default());
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_order-gateway"));
    cmd.args(args).env_clear();
    for key in [
        "DATABASE_URL",
        "ENCRYPTION_KEY",
        "XOXODAY_BASE_URL",
        "XOXODAY_CLIENT_ID",
    ] {
        cmd.env(key, &vars[key]);
    }
    cmd.env("XOXODAY_CLIENT_SECRET", &vars["XOXODAY_CLIENT_SECRET"]);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    tokio::time::timeout(Duration::from_secs(240), cmd.output())
        .await
        .expect("the command hung")
        .expect("run order-gateway")
}

/// The exit code, with the output on failure to explain.
pub fn code(out: &Output) -> i32 {
    out.status.code().expect("exited")
}

pub fn text(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `orders show PO --json`.
async fn show(app: &TestApp, po: &str) -> Value {
    let out = gateway(app, &["orders", "show", po, "--json"], &[]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

fn to_statuses(shown: &Value) -> Vec<String> {
    shown["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["to"].as_str().unwrap().to_owned())
        .collect()
}

/// A needs_review order that Xoxoday never created: refused with a 400,
/// then a `delivered` webhook contradicts `failed`.
async fn review_without_upstream(app: &TestApp) -> String {
    let order = app.place_refused().await;
    assert_eq!(order["status"], "failed", "{order}");
    let po = order["poNumber"].as_str().unwrap().to_owned();
    let hook = post_webhook(app, Some(KEY), &event(7001, &po, "delivered")).await;
    assert_eq!(hook.status(), 200);
    wait_status(app, order["id"].as_str().unwrap(), "needs_review").await;
    po
}

/// A needs_review order that Xoxoday has: completed, then a `canceled`
/// webhook contradicts it.
async fn review_with_upstream(app: &TestApp) -> String {
    let order = app.place_new().await;
    assert_eq!(order["status"], "completed", "{order}");
    let po = order["poNumber"].as_str().unwrap().to_owned();
    let hook = post_webhook(app, Some(KEY), &event(7002, &po, "canceled")).await;
    assert_eq!(hook.status(), 200);
    wait_status(app, order["id"].as_str().unwrap(), "needs_review").await;
    po
}

fn resolve<'a>(po: &'a str, as_: &'a str) -> Vec<&'a str> {
    vec![
        "orders",
        "resolve",
        po,
        "--as",
        as_,
        "--reason",
        "checked with Xoxoday support",
        "--actor",
        "alice",
    ]
}

#[tokio::test]
async fn the_timeline_follows_an_order_through_reconciling_and_needs_review_to_an_operators_resolve()
 {
    let app = spawn_app_with(fast(&[("RECONCILE_MAX_ATTEMPTS", "1")])).await;
    app.emulator.push_fault(
        FaultOp::PlaceOrder,
        Fault::ErrorBeforeCreate { status: 503 },
    );
    let order = app.place_new().await;
    wait_all_settled(&app.db, Duration::from_secs(30)).await;
    let po = order["poNumber"].as_str().unwrap();
    assert_eq!(app.db_status(po).await, "needs_review");

    // The operator runs with the gateway's settle window (a "not found" is
    // trusted only that long after the last attempt ended).
    let out = gateway(
        &app,
        &resolve(po, "failed"),
        &[("XOXODAY_SETTLE_WINDOW", "2s")],
    )
    .await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("failed"),
        "{}",
        text(&out)
    );

    let shown = show(&app, po).await;
    assert_eq!(shown["order"]["status"], "failed");
    assert_eq!(shown["order"]["poNumber"], po);
    let to = to_statuses(&shown);
    for step in [
        "accepted",
        "placing",
        "reconciling",
        "needs_review",
        "failed",
    ] {
        assert!(to.contains(&step.to_owned()), "{step} missing from {to:?}");
    }
    let timeline = shown["timeline"].as_array().unwrap();
    let review = timeline.iter().find(|t| t["to"] == "needs_review").unwrap();
    assert_eq!(review["actor"], "reconciler", "{review}");
    assert_eq!(review["from"], "reconciling", "{review}");
    assert!(
        review["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{review}"
    );
    let last = timeline.last().unwrap();
    assert_eq!(last["to"], "failed");
    assert_eq!(last["from"], "needs_review");
    assert_eq!(last["actor"], "alice");
    assert!(
        last["reason"]
            .as_str()
            .unwrap()
            .contains("checked with Xoxoday support"),
        "{last}"
    );
    for entry in timeline {
        assert!(entry["at"].is_string(), "{entry}");
    }
    let ops: Vec<&str> = shown["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["operation"].as_str().unwrap())
        .collect();
    assert_eq!(ops.first(), Some(&"place_order"), "{ops:?}");
    assert_eq!(
        ops.last(),
        Some(&"get_order_details"),
        "the resolve's lookup: {ops:?}"
    );
    let first = &shown["exchanges"][0];
    assert_eq!(first["httpStatus"], 503, "{first}");
    assert!(first["durationMs"].is_number(), "{first}");

    let human = gateway(&app, &["orders", "show", po], &[]).await;
    assert_eq!(code(&human), 0, "{}", text(&human));
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(
        human.contains("timeline") && human.contains("alice") && human.contains(po),
        "{human}"
    );
}

#[tokio::test]
async fn a_contradicting_webhook_shows_in_the_timeline_with_its_reason() {
    let app = spawn_app_with(fast(&[("WEBHOOK_API_KEY", KEY)])).await;
    let po = review_without_upstream(&app).await;
    let shown = show(&app, &po).await;
    let timeline = shown["timeline"].as_array().unwrap();
    let hook = timeline.last().unwrap();
    assert_eq!(hook["from"], "failed", "{hook}");
    assert_eq!(hook["to"], "needs_review", "{hook}");
    assert_eq!(hook["actor"], "webhook", "{hook}");
    let reason = hook["reason"].as_str().unwrap();
    assert!(reason.contains("delivered"), "{reason}");
    assert_eq!(shown["order"]["statusReason"].as_str(), Some(reason));
}

#[tokio::test]
async fn resolve_as_failed_is_refused_while_xoxoday_has_the_order_and_completed_adopts_it() {
    let app = spawn_app_with(fast(&[("WEBHOOK_API_KEY", KEY)])).await;
    let po = review_with_upstream(&app).await;

    let refused = gateway(&app, &resolve(&po, "failed"), &[]).await;
    assert_eq!(code(&refused), 1, "{}", text(&refused));
    assert!(text(&refused).contains("refused"), "{}", text(&refused));
    assert_eq!(app.db_status(&po).await, "needs_review");

    let adopted = gateway(&app, &resolve(&po, "completed"), &[]).await;
    assert_eq!(code(&adopted), 0, "{}", text(&adopted));
    assert_eq!(app.db_status(&po).await, "completed");
    let shown = show(&app, &po).await;
    let upstream = app.emulator.order(&po).unwrap();
    assert_eq!(shown["order"]["xoxodayOrderId"], upstream.order_id);
    assert!(!shown["order"]["vouchers"].as_array().unwrap().is_empty());
    let last = shown["timeline"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (last["from"].as_str(), last["to"].as_str()),
        (Some("needs_review"), Some("completed"))
    );
    assert_eq!(last["actor"], "alice");

    let settled = gateway(&app, &resolve(&po, "failed"), &[]).await;
    assert_eq!(code(&settled), 1, "only needs_review: {}", text(&settled));
    assert!(
        text(&settled).contains("needs_review"),
        "{}",
        text(&settled)
    );
    assert_eq!(app.db_status(&po).await, "completed");
}

#[tokio::test]
async fn resolve_as_completed_is_refused_without_an_upstream_order_and_failed_is_allowed() {
    let app = spawn_app_with(fast(&[("WEBHOOK_API_KEY", KEY)])).await;
    let po = review_without_upstream(&app).await;

    let refused = gateway(&app, &resolve(&po, "completed"), &[]).await;
    assert_eq!(code(&refused), 1, "{}", text(&refused));
    assert!(
        text(&refused).contains("nothing to adopt"),
        "{}",
        text(&refused)
    );
    assert_eq!(app.db_status(&po).await, "needs_review");

    // another worker holds the order: refused, nothing changed
    sqlx::query(
        "update orders set lease_token = gen_random_uuid(),
           lease_until = now() + interval '1 hour' where po_number = $1",
    )
    .bind(&po)
    .execute(&app.db)
    .await
    .unwrap();
    let busy = gateway(&app, &resolve(&po, "failed"), &[]).await;
    assert_eq!(code(&busy), 1, "{}", text(&busy));
    assert_eq!(app.db_status(&po).await, "needs_review");
    sqlx::query("update orders set lease_token = null, lease_until = null where po_number = $1")
        .bind(&po)
        .execute(&app.db)
        .await
        .unwrap();

    let failed = gateway(&app, &resolve(&po, "failed"), &[("USER", "bob")]).await;
    assert_eq!(code(&failed), 0, "{}", text(&failed));
    assert_eq!(app.db_status(&po).await, "failed");
    let shown = show(&app, &po).await;
    let actors: Vec<&str> = shown["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["actor"].as_str().unwrap())
        .collect();
    assert_eq!(
        actors.iter().filter(|a| **a == "alice").count(),
        2,
        "{actors:?}"
    );

    let nobody = gateway(&app, &resolve("PO-NOBODY", "failed"), &[]).await;
    assert_eq!(code(&nobody), 2, "{}", text(&nobody));
}

#[tokio::test]
async fn recheck_is_in_the_timeline_even_when_the_status_stays_and_exits_1_when_xoxoday_cannot_be_asked()
 {
    let app = spawn_app_with(fast(&[("WEBHOOK_API_KEY", KEY)])).await;
    let po = review_without_upstream(&app).await;

    let out = gateway(&app, &["orders", "recheck", &po], &[("USER", "carol")]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("needs_review"),
        "{}",
        text(&out)
    );
    let shown = show(&app, &po).await;
    let last = shown["timeline"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (last["from"].as_str(), last["to"].as_str()),
        (Some("needs_review"), Some("needs_review"))
    );
    assert_eq!(last["actor"], "carol", "the OS user by default: {last}");
    assert!(
        last["reason"].as_str().unwrap().contains("recheck"),
        "{last}"
    );

    app.emulator.push_fault(
        FaultOp::GetOrderDetails,
        Fault::ErrorBeforeCreate { status: 503 },
    );
    let unreachable = gateway(&app, &["orders", "recheck", &po, "--actor", "carol"], &[]).await;
    assert_eq!(code(&unreachable), 1, "{}", text(&unreachable));
    assert!(
        text(&unreachable).contains("could not be asked"),
        "{}",
        text(&unreachable)
    );
    assert_eq!(app.db_status(&po).await, "needs_review");
}

#[tokio::test]
async fn recheck_waits_for_the_shared_budget_then_adopts_the_order_xoxoday_has() {
    let app = spawn_app_with(fast(&[("WEBHOOK_API_KEY", KEY)])).await;
    let po = review_with_upstream(&app).await;
    // the one getOrderDetails slot of this 2 s window is taken (another replica)
    let wait_ms: i64 =
        sqlx::query_scalar("select take_upstream_slot('get_order_details', 1, 2000)")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(wait_ms <= 0, "the slot was free");
    let budget = [
        ("XOXODAY_ORDER_DETAILS_RATE", "1"),
        ("XOXODAY_RATE_WINDOW", "2s"),
        ("XOXODAY_ALLOW_SHORT_RATE_WINDOW", "1"),
    ];
    let out = gateway(
        &app,
        &["orders", "recheck", &po, "--actor", "erin"],
        &budget,
    )
    .await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(
        text(&out).contains("waiting"),
        "it waited for the budget: {}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("completed"),
        "{}",
        text(&out)
    );
    assert_eq!(app.db_status(&po).await, "completed");
    let shown = show(&app, &po).await;
    let last = shown["timeline"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (last["from"].as_str(), last["to"].as_str()),
        (Some("needs_review"), Some("completed"))
    );
    assert_eq!(last["actor"], "erin");
}

#[tokio::test]
async fn any_status_change_is_in_the_timeline_even_one_made_by_hand_in_sql() {
    let app = spawn_app_with(fast(&[])).await;
    let order = app.place_new().await;
    let po = order["poNumber"].as_str().unwrap();
    sqlx::query("update orders set status = 'needs_review', status_reason = 'set by hand' where po_number = $1")
        .bind(po)
        .execute(&app.db)
        .await
        .unwrap();
    let shown = show(&app, po).await;
    let last = shown["timeline"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["to"], "needs_review", "{last}");
    assert_eq!(last["actor"], "system", "{last}");
    assert_eq!(last["reason"], "set by hand", "{last}");
}

#[tokio::test]
async fn recheck_of_a_settled_order_keeps_an_agreeing_status_and_sends_a_contradiction_to_review() {
    let app = spawn_app_with(fast(&[("WEBHOOK_API_KEY", KEY)])).await;
    // A completed order that Xoxoday agrees with: the status stays, and the
    // recheck is in the timeline.
    let done = app.place_new().await;
    assert_eq!(done["status"], "completed", "{done}");
    let po = done["poNumber"].as_str().unwrap().to_owned();
    let out = gateway(&app, &["orders", "recheck", &po, "--actor", "erin"], &[]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("completed"),
        "{}",
        text(&out)
    );
    let last = show(&app, &po).await["timeline"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (
            last["from"].as_str(),
            last["to"].as_str(),
            last["actor"].as_str()
        ),
        (Some("completed"), Some("completed"), Some("erin")),
        "{last}"
    );

    // A failed order that Xoxoday turns out to have: never left `failed`
    // silently, never adopted silently either: an operator decides.
    let failed = app.place_refused().await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let po = failed["poNumber"].as_str().unwrap().to_owned();
    app.emulator
        .inject_order(&po, rust_decimal::Decimal::from(50), 1001)
        .unwrap();
    let out = gateway(&app, &["orders", "recheck", &po, "--actor", "erin"], &[]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(app.db_status(&po).await, "needs_review");
    let shown = show(&app, &po).await;
    let last = shown["timeline"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (last["from"].as_str(), last["to"].as_str()),
        (Some("failed"), Some("needs_review")),
        "{last}"
    );
}

fn resolve_failed(po: &str) -> Vec<&str> {
    vec![
        "orders", "resolve", po, "--as", "failed", "--reason", "probe", "--actor", "eve",
    ]
}

/// Posts an order whose placeOrder answers 502 while Xoxoday creates the
/// order only `after` later (contract §7); its id and poNumber.
async fn post_late_created(app: &TestApp, after: Duration) -> (String, String) {
    app.emulator.push_fault(
        FaultOp::PlaceOrder,
        Fault::LateCreate {
            after,
            answer: order_gateway::emulator::LateAnswer::Error { status: 502 },
        },
    );
    let order = app.place_new().await;
    (
        order["id"].as_str().unwrap().to_owned(),
        order["poNumber"].as_str().unwrap().to_owned(),
    )
}

/// Found by the adversarial review: a "not found" inside the settle window
/// is no proof, and Xoxoday may create the order seconds later.
#[tokio::test]
async fn resolve_as_failed_is_refused_inside_the_settle_window_after_the_last_attempt() {
    let app = spawn_app_with(fast(&[
        ("XOXODAY_SETTLE_WINDOW", "60s"),
        ("RECONCILE_MAX_AGE", "1s"),
        ("RECONCILE_RETRY_BASE", "1500ms"),
    ]))
    .await;
    let (id, po) = post_late_created(&app, Duration::from_secs(12)).await;
    wait_status(&app, &id, "needs_review").await;

    let out = gateway(&app, &resolve_failed(&po), &[]).await;

    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(text(&out).contains("try again after"), "{}", text(&out));
    assert_eq!(app.db_status(&po).await, "needs_review");
    let last = show(&app, &po).await["timeline"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert!(
        last["reason"].as_str().unwrap().contains("refused"),
        "{last}"
    );
}

/// Found by the adversarial review: a stored delivery webhook after an
/// attempt that may have created the order is proof; only a webhook that
/// contradicts clean refusals leaves the decision to the operator.
#[tokio::test]
async fn resolve_as_failed_is_refused_when_a_webhook_proves_an_order_an_attempt_may_have_made() {
    let app = spawn_app_with(fast(&[
        ("WEBHOOK_API_KEY", KEY),
        ("RECONCILE_MAX_ATTEMPTS", "1"),
    ]))
    .await;
    let (id, po) = post_late_created(&app, Duration::from_secs(25)).await;
    let hook = post_webhook(&app, Some(KEY), &event(9901, &po, "delivered")).await;
    assert_eq!(hook.status(), 200);
    wait_status(&app, &id, "needs_review").await;

    let out = gateway(&app, &resolve_failed(&po), &[]).await;

    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(text(&out).contains("webhook"), "{}", text(&out));
    assert_eq!(app.db_status(&po).await, "needs_review");
}
