//! Contract §8, finance: `audit books` through the real binary. Each
//! finding kind is made with the emulator's admin API and detected (exit
//! 1), agreeing books exit 0, an audit that cannot run exits 2; paging
//! goes past a short page within the shared rate limit; every run and
//! finding is stored and readable through `finance_audit_findings` by the
//! read-only finance role.

use std::collections::BTreeSet;

use order_gateway::{
    config::ServeConfig,
    emulator::{EmptyHistory, Fault, FaultOp},
    startup::Application,
};
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::{
    helpers::{Options, TestApp, env, spawn_app, spawn_app_with},
    operator::{code, gateway, text},
};

fn today() -> String {
    chrono::Utc::now().date_naive().to_string()
}

async fn audit(app: &TestApp, extra_args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let day = today();
    let mut args = vec!["audit", "books", "--from", &day, "--to", &day, "--json"];
    args.extend_from_slice(extra_args);
    gateway(app, &args, env).await
}

async fn completed_order(app: &TestApp) -> (String, i64) {
    let order = app.place_new().await;
    assert_eq!(order["status"], "completed", "{order}");
    let po = order["poNumber"].as_str().unwrap().to_owned();
    (po, order["xoxodayOrderId"].as_i64().unwrap())
}

fn findings(out: &std::process::Output) -> (i64, BTreeSet<(String, String)>) {
    let report: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)));
    let set = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            for key in ["poNumber", "kind", "ours", "theirs"] {
                assert!(f.get(key).is_some(), "{key} missing in {f}");
            }
            (
                f["poNumber"].as_str().unwrap().to_owned(),
                f["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (report["run"].as_i64().unwrap(), set)
}

fn pair(po: &str, kind: &str) -> (String, String) {
    (po.to_owned(), kind.to_owned())
}

#[tokio::test]
async fn agreeing_books_exit_0_and_each_kind_of_finding_is_detected_with_exit_1() {
    let app = spawn_app().await;
    let (dup, _) = completed_order(&app).await;
    let (mismatch, mismatch_id) = completed_order(&app).await;
    let (missing, missing_id) = completed_order(&app).await;

    let agree = audit(&app, &[], &[]).await;
    assert_eq!(code(&agree), 0, "{}", text(&agree));
    let (_, none) = findings(&agree);
    assert!(none.is_empty(), "{none:?}");
    let report: Value = serde_json::from_slice(&agree.stdout).unwrap();
    assert_eq!(report["from"], today());
    assert_eq!(report["to"], today());

    // one of each kind, made at "Xoxoday"
    let failed = app.place_refused().await;
    assert_eq!(failed["status"], "failed");
    let spent = failed["poNumber"].as_str().unwrap();
    let fifty = Decimal::new(50, 0);
    // twice: spent AND duplicated, two findings for one poNumber
    app.emulator.inject_order(spent, fifty, 1001).unwrap();
    app.emulator.inject_order(spent, fifty, 1001).unwrap();
    app.emulator
        .inject_order("PO-NEVER-ISSUED", fifty, 1001)
        .unwrap();
    let blank = app.emulator.inject_order("", fifty, 1001).unwrap();
    app.emulator.inject_order(&dup, fifty, 1001).unwrap();
    assert!(
        app.emulator
            .set_order_amount(mismatch_id, Decimal::new(4999, 2))
    );
    assert!(app.emulator.delete_order(missing_id));

    let out = audit(&app, &[], &[]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    let (run, found) = findings(&out);
    let expected: BTreeSet<_> = [
        pair(spent, "spent_but_not_completed"),
        pair(spent, "duplicate_upstream"),
        pair("PO-NEVER-ISSUED", "unknown_upstream"),
        pair("", "unknown_upstream"),
        pair(&dup, "duplicate_upstream"),
        pair(&mismatch, "amount_mismatch"),
        pair(&missing, "missing_upstream"),
    ]
    .into_iter()
    .collect();
    assert_eq!(found, expected);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let blank_finding = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["poNumber"] == "")
        .unwrap();
    assert_eq!(
        blank_finding["theirs"][0]["orderId"], blank.order_id,
        "{blank_finding}"
    );

    let stored: i64 =
        sqlx::query_scalar("select count(*) from finance_audit_findings where audit_run = $1")
            .bind(run)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(stored, 7);
    let outcome: String =
        sqlx::query_scalar("select outcome from books_audit_runs where audit_run_id = $1")
            .bind(run)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(outcome, "findings");

    let human = gateway(
        &app,
        &["audit", "books", "--from", &today(), "--to", &today()],
        &[],
    )
    .await;
    assert_eq!(code(&human), 1, "{}", text(&human));
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(
        human.contains("missing_upstream") && human.contains(&missing),
        "{human}"
    );
}

#[tokio::test]
async fn an_audit_that_cannot_run_exits_2_and_is_stored_as_failed() {
    let app = spawn_app().await;
    app.emulator.push_fault(
        FaultOp::GetOrderHistory,
        Fault::Respond {
            status: 400,
            body: json!({"code": 400, "errorId": "PLE10032",
                         "errorInfo": "Failed to validate OrderHistory Request", "error": "Eg: Bad request"}),
        },
    );
    let out = audit(&app, &[], &[]).await;
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(text(&out).contains("PLE10032"), "{}", text(&out));
    let failed: i64 =
        sqlx::query_scalar("select count(*) from books_audit_runs where outcome = 'failed'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(failed, 1);

    let backwards = gateway(
        &app,
        &[
            "audit",
            "books",
            "--from",
            "2026-12-02",
            "--to",
            "2026-12-01",
        ],
        &[],
    )
    .await;
    assert_eq!(code(&backwards), 2, "{}", text(&backwards));
}

#[tokio::test]
async fn paging_goes_past_a_short_page_to_the_empty_one_within_the_shared_rate_limit() {
    let app = spawn_app().await;
    app.emulator.set_empty_history(EmptyHistory::EmptyList);
    for _ in 0..5 {
        completed_order(&app).await;
    }
    let limited = [
        ("XOXODAY_ORDER_HISTORY_RATE", "2"),
        ("XOXODAY_RATE_WINDOW", "2s"),
        ("XOXODAY_ALLOW_SHORT_RATE_WINDOW", "1"),
    ];
    let out = audit(&app, &["--page-size", "2"], &limited).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    // pages 1 and 2 are full, page 3 is short (1 order), page 4 is empty
    let calls: Vec<(chrono::DateTime<chrono::Utc>, serde_json::Value)> = sqlx::query_as(
        "select started_at, request_body from upstream_exchanges
         where operation = 'get_order_history' order by started_at",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    let pages: Vec<i64> = calls
        .iter()
        .map(|(_, body)| body["variables"]["data"]["page"].as_i64().unwrap())
        .collect();
    assert_eq!(pages, vec![1, 2, 3, 4]);
    // at most 2 calls in any 2 s window: the 1st and 3rd are about a window apart
    for w in calls.windows(3) {
        let apart = w[2].0 - w[0].0;
        // slots are stamped just before each send; 0.5 s allows for the send itself
        assert!(
            apart >= chrono::Duration::milliseconds(1500),
            "{apart:?} between 3 calls"
        );
    }
    let runs: Vec<(i32, i32)> =
        sqlx::query_as("select pages, upstream_orders from books_audit_runs")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(runs, vec![(4, 5)]);
}

#[tokio::test]
async fn finance_audit_findings_is_readable_by_the_read_only_finance_role() {
    let app = spawn_app().await;
    app.emulator
        .inject_order("PO-GHOST", Decimal::new(1250, 2), 1001)
        .unwrap();
    let out = audit(&app, &[], &[]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    let role = format!("finance_ro_{}", uuid::Uuid::new_v4().simple());
    let mut tx = sqlx::Acquire::begin(&app.db).await.unwrap();
    for sql in [
        format!("create role {role} nologin"),
        format!("grant select on finance_orders, finance_audit_findings to {role}"),
        format!("set local role {role}"),
    ] {
        sqlx::query(&sql).execute(&mut *tx).await.unwrap();
    }
    let (po, kind, theirs): (String, String, Value) =
        sqlx::query_as(r#"select "poNumber", kind, theirs from finance_audit_findings"#)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    assert_eq!(
        (po.as_str(), kind.as_str()),
        ("PO-GHOST", "unknown_upstream")
    );
    assert_eq!(theirs[0]["amountCharged"], "12.5");
    for table in ["books_audit_findings", "books_audit_runs", "order_timeline"] {
        let mut sp = sqlx::Acquire::begin(&mut *tx).await.unwrap();
        let denied = sqlx::query(&format!("select 1 from {table} limit 1"))
            .execute(&mut *sp)
            .await
            .unwrap_err();
        assert!(
            denied.to_string().contains("permission denied"),
            "{table}: {denied}"
        );
        sp.rollback().await.unwrap();
    }
    tx.rollback().await.unwrap();
}

#[tokio::test]
async fn serve_audits_by_itself_each_interval_one_replica_at_a_time() {
    let opts = Options {
        extra: vec![("BOOKS_AUDIT_INTERVAL", "1s".to_owned())],
        ..Options::default()
    };
    let app = spawn_app_with(opts.clone()).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let _stop_on_exit = stop.clone().drop_guard();
    let cfg = ServeConfig::from_env(&env(app.db_url(), &app.emulator.base_url(), &opts)).unwrap();
    let replica = Application::build(cfg).await.unwrap();
    tokio::spawn(replica.run(stop.clone()));
    completed_order(&app).await;
    let mut runs: Vec<(
        chrono::DateTime<chrono::Utc>,
        chrono::DateTime<chrono::Utc>,
        String,
    )> = Vec::new();
    for _ in 0..600 {
        runs = sqlx::query_as(
            "select started_at, finished_at, outcome from books_audit_runs
             where started_by = 'serve' and finished_at is not null order by started_at",
        )
        .fetch_all(&app.db)
        .await
        .unwrap();
        if runs.len() >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(runs.len() >= 3, "{runs:?}");
    for (_, _, outcome) in &runs {
        assert_eq!(outcome, "agree");
    }
    // one replica at a time: no run starts before the one before it ended
    for w in runs.windows(2) {
        assert!(w[1].0 >= w[0].1, "overlapping runs: {runs:?}");
    }
    let days: Vec<(chrono::NaiveDate, chrono::NaiveDate)> =
        sqlx::query_as("select from_day, to_day from books_audit_runs limit 1")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!((days[0].1 - days[0].0).num_days(), 2, "the last 3 days");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("order_gateway_books_audit_findings{kind=\"unknown_upstream\"} 0"),
        "{metrics}"
    );
    let last = metrics
        .lines()
        .find_map(|l| l.strip_prefix("order_gateway_books_audit_last_success_timestamp_seconds "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert!(last.is_some_and(|t| t > 0.0), "{metrics}");
}
