//! The end-of-test check of issue 4, written once: the emulator's ledger and
//! the gateway's orders agree — exactly one upstream order per gateway order
//! (none for `failed`), no upstream order unknown to the gateway, and every
//! order settled or in `needs_review` with a reason.

use std::{collections::HashMap, time::Duration};

use order_gateway::emulator::EmulatorHandle;
use sqlx::PgPool;

use crate::helpers::{Options, TestApp};

/// Settings that make reconciliation fast enough for tests.
pub fn fast(extra: &[(&'static str, &str)]) -> Options {
    let mut vars: Vec<(&'static str, String)> = [
        ("XOXODAY_SETTLE_WINDOW", "2s"),
        ("ORDER_LEASE", "3s"),
        ("RECONCILE_RETRY_BASE", "200ms"),
        ("RECONCILE_RETRY_MAX", "1s"),
        ("RECONCILE_RETRY_FLOOR", "1s"),
        ("RECONCILE_POLL_INTERVAL", "100ms"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_owned()))
    .collect();
    vars.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    Options {
        extra: vars,
        ..Options::default()
    }
}

/// Waits until no order is `accepted`, `placing` or `reconciling`.
pub async fn wait_all_settled(db: &PgPool, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let open: Vec<(String, String)> = sqlx::query_as(
            "select po_number, status from orders
             where status in ('accepted', 'placing', 'reconciling')",
        )
        .fetch_all(db)
        .await
        .unwrap();
        if open.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "orders still unsettled: {open:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// [`assert_ledger`] for a test app.
pub async fn assert_ledger_consistent(app: &TestApp) {
    assert_ledger(&app.db, &app.emulator).await;
}

/// The ledger check on a database and an emulator.
pub async fn assert_ledger(db: &PgPool, emulator: &EmulatorHandle) {
    let mut upstream: HashMap<String, usize> = HashMap::new();
    for o in emulator.orders() {
        *upstream.entry(o.po_number).or_default() += 1;
    }
    let orders: Vec<(String, String, Option<String>)> =
        sqlx::query_as("select po_number, status, status_reason from orders")
            .fetch_all(db)
            .await
            .unwrap();
    let known: HashMap<&str, &str> = orders
        .iter()
        .map(|(po, s, _)| (po.as_str(), s.as_str()))
        .collect();
    for (po, n) in &upstream {
        assert_eq!(*n, 1, "{po}: {n} upstream orders");
        assert!(
            known.contains_key(po.as_str()),
            "upstream order {po} unknown to the gateway"
        );
    }
    for (po, status, reason) in &orders {
        let n = upstream.get(po).copied().unwrap_or(0);
        match status.as_str() {
            "failed" => assert_eq!(n, 0, "{po} failed but exists upstream"),
            "completed" | "pending_delivery" | "canceled" => {
                assert_eq!(n, 1, "{po} is {status} with {n} upstream orders");
            }
            "needs_review" => assert!(
                reason.as_deref().is_some_and(|r| !r.is_empty()),
                "{po} needs review without a reason"
            ),
            other => panic!("{po} is still {other}"),
        }
    }
}

/// Ends every upstream pause and makes every deferred order due now, so a
/// test need not wait out a penalty or a rate window.
pub async fn lift_pauses_and_make_due(db: &PgPool) {
    sqlx::query("delete from upstream_pauses")
        .execute(db)
        .await
        .unwrap();
    // The gateways update these rows meanwhile; a mass update can deadlock
    // with them (40P01, our statement is the one aborted): just run it again.
    for _ in 0..20 {
        match sqlx::query("update orders set next_attempt_at = now()")
            .execute(db)
            .await
        {
            Ok(_) => return,
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("40P01") => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("make deferred orders due: {e}"),
        }
    }
    panic!("make deferred orders due: deadlocked 20 times");
}
