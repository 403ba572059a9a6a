//! Prometheus metrics for `GET /metrics` (contract §5).
//!
//! Process-wide counters and histograms are fed by small hooks: every audited
//! upstream exchange ([`observe_upstream`]), every wait for the shared rate
//! limit ([`record_rate_limit_wait`]), every token refresh
//! ([`set_token_expiry`]), every upstream hold that starts ([`count_hold`]),
//! every balance read ([`set_balance`]) and every webhook that contradicts a
//! final status ([`record_webhook_contradiction`]); the holds in force are
//! read from the database on each scrape ([`set_holds`]). Order gauges are
//! not kept in memory: each scrape counts them in the database
//! ([`crate::store::stats`]), so every replica
//! reports the same truth. Label values are fixed names from the code, never
//! request data or secrets ([`label`] enforces it).

use std::{
    sync::{
        LazyLock,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use prometheus::{
    CounterVec, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts,
    Registry, TextEncoder,
};

use crate::{
    domain::{OrderStatus, TokenState},
    store::stats::StatusCount,
};

/// `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const UNKNOWN_EXPIRY: i64 = i64::MIN;

struct Process {
    registry: Registry,
    upstream_calls: IntCounterVec,
    upstream_seconds: HistogramVec,
    rate_limit_waits: IntCounterVec,
    rate_limit_wait_seconds: CounterVec,
    webhook_contradictions: IntCounter,
    token_expires_at: AtomicI64,
    holds_started: IntCounterVec,
    holds: GaugeVec,
    balance: GaugeVec,
    books: BooksGauges,
}

/// The books audit's and the wallet's gauges (issue 12).
struct BooksGauges {
    findings: GaugeVec,
    last_success: Gauge,
    balance_low: Gauge,
}

fn books_gauges(registry: &Registry) -> BooksGauges {
    let findings = GaugeVec::new(
        Opts::new(
            "order_gateway_books_audit_findings",
            "Findings of the last successful books audit, by kind (all replicas; read on each scrape).",
        ),
        &["kind"],
    )
    .expect("valid metric");
    let last_success = Gauge::new(
        "order_gateway_books_audit_last_success_timestamp_seconds",
        "When the last books audit that ran to the end finished (Unix seconds; 0: never).",
    )
    .expect("valid metric");
    let balance_low = Gauge::new(
        "order_gateway_xoxoday_balance_low",
        "1 while the last wallet balance read is under XOXODAY_LOW_BALANCE (0 otherwise or unset).",
    )
    .expect("valid metric");
    for c in [
        Box::new(findings.clone()) as Box<dyn prometheus::core::Collector>,
        Box::new(last_success.clone()),
        Box::new(balance_low.clone()),
    ] {
        registry.register(c).expect("unique metric names");
    }
    BooksGauges {
        findings,
        last_success,
        balance_low,
    }
}

/// Sets the books audit gauges from the last successful run: when it
/// finished and its findings by kind (`None`: unknown, unchanged).
pub fn set_books_audit(last: Option<crate::store::books::LastAudit>, kinds: &[&str]) {
    let Some((finished, counts)) = last else {
        return;
    };
    PROCESS.books.last_success.set(finished.timestamp() as f64);
    for kind in kinds {
        let n = counts
            .iter()
            .find(|(k, _)| k == kind)
            .map_or(0, |(_, n)| *n);
        PROCESS
            .books
            .findings
            .with_label_values(&[kind])
            .set(n as f64);
    }
}

/// Sets whether the wallet balance is under `XOXODAY_LOW_BALANCE`.
pub fn set_balance_low(low: bool) {
    PROCESS.books.balance_low.set(if low { 1.0 } else { 0.0 });
}

static PROCESS: LazyLock<Process> = LazyLock::new(|| {
    let registry = Registry::new();
    let upstream_calls = IntCounterVec::new(
        Opts::new(
            "order_gateway_upstream_calls_total",
            "Xoxoday calls by operation and outcome.",
        ),
        &["operation", "outcome"],
    )
    .expect("valid metric");
    let upstream_seconds = HistogramVec::new(
        HistogramOpts::new(
            "order_gateway_upstream_call_duration_seconds",
            "Xoxoday call latency by operation and outcome.",
        )
        .buckets(vec![
            0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 150.0,
        ]),
        &["operation", "outcome"],
    )
    .expect("valid metric");
    let rate_limit_waits = IntCounterVec::new(
        Opts::new(
            "order_gateway_rate_limit_waits_total",
            "Times a call waited for the shared Xoxoday rate limit.",
        ),
        &["operation"],
    )
    .expect("valid metric");
    let rate_limit_wait_seconds = CounterVec::new(
        Opts::new(
            "order_gateway_rate_limit_wait_seconds_total",
            "Seconds spent waiting for the shared Xoxoday rate limit.",
        ),
        &["operation"],
    )
    .expect("valid metric");
    let (holds_started, holds, balance) = hold_metrics();
    let webhook_contradictions = IntCounter::new(
        "order_gateway_webhook_contradictions_total",
        "Xoxoday delivery webhooks that contradicted a final status (order moved to needs_review).",
    )
    .expect("valid metric");
    for c in [
        Box::new(upstream_calls.clone()) as Box<dyn prometheus::core::Collector>,
        Box::new(webhook_contradictions.clone()),
        Box::new(upstream_seconds.clone()),
        Box::new(rate_limit_waits.clone()),
        Box::new(rate_limit_wait_seconds.clone()),
        Box::new(holds_started.clone()),
        Box::new(holds.clone()),
        Box::new(balance.clone()),
    ] {
        registry.register(c).expect("unique metric names");
    }
    let books = books_gauges(&registry);
    Process {
        books,
        registry,
        upstream_calls,
        upstream_seconds,
        rate_limit_waits,
        rate_limit_wait_seconds,
        webhook_contradictions,
        token_expires_at: AtomicI64::new(UNKNOWN_EXPIRY),
        holds_started,
        holds,
        balance,
    }
});

/// Every value of the `reason` label of the hold metrics.
pub const HOLD_REASONS: [&str; 2] = ["token_rejected", "insufficient_balance"];

fn hold_metrics() -> (IntCounterVec, GaugeVec, GaugeVec) {
    let started = IntCounterVec::new(
        Opts::new(
            "order_gateway_upstream_holds_total",
            "Account-wide holds started by this process (token_rejected: every call paused; insufficient_balance: placeOrder paused).",
        ),
        &["reason"],
    )
    .expect("valid metric");
    let holds = GaugeVec::new(
        Opts::new(
            "order_gateway_upstream_hold",
            "1 while an account-wide hold is in force (all replicas; read on each scrape).",
        ),
        &["reason"],
    )
    .expect("valid metric");
    let balance = GaugeVec::new(
        Opts::new(
            "order_gateway_xoxoday_balance",
            "Wallet balance at the last getBalance read by this process.",
        ),
        &["currency"],
    )
    .expect("valid metric");
    (started, holds, balance)
}

/// Counts a hold that just started.
pub fn count_hold(reason: &str) {
    PROCESS
        .holds_started
        .with_label_values(&[label(reason)])
        .inc();
}

/// Sets the hold gauges from the holds in force (`None`: unknown, unchanged).
pub fn set_holds(active: Option<&[&str]>) {
    let Some(active) = active else { return };
    for reason in HOLD_REASONS {
        let on = if active.contains(&reason) { 1.0 } else { 0.0 };
        PROCESS.holds.with_label_values(&[reason]).set(on);
    }
}

/// Records a balance read.
pub fn set_balance(currency: &str, value: rust_decimal::Decimal) {
    use rust_decimal::prelude::ToPrimitive as _;
    let currency = if currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_alphabetic()) {
        currency
    } else {
        "other"
    };
    PROCESS
        .balance
        .with_label_values(&[currency])
        .set(value.to_f64().unwrap_or(f64::NAN));
}

/// A label value: a short snake_case name, or `other` (never request data).
pub fn label(value: &str) -> &str {
    let ok = !value.is_empty()
        && value.len() <= 40
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok { value } else { "other" }
}

/// Records one finished Xoxoday call.
pub fn observe_upstream(operation: &str, outcome: &str, duration: Duration) {
    let labels = [label(operation), label(outcome)];
    PROCESS.upstream_calls.with_label_values(&labels).inc();
    PROCESS
        .upstream_seconds
        .with_label_values(&labels)
        .observe(duration.as_secs_f64());
}

/// Counts one call that ended without an exchange to time (`not_sent`).
pub fn count_upstream(operation: &str, outcome: &str) {
    PROCESS
        .upstream_calls
        .with_label_values(&[label(operation), label(outcome)])
        .inc();
}

/// Records one wait for the shared rate limit of `operation`.
pub fn record_rate_limit_wait(operation: &str, waited: Duration) {
    let labels = [label(operation)];
    PROCESS.rate_limit_waits.with_label_values(&labels).inc();
    PROCESS
        .rate_limit_wait_seconds
        .with_label_values(&labels)
        .inc_by(waited.as_secs_f64());
}

/// Counts one delivery webhook that contradicted a final status (contract §8).
pub fn record_webhook_contradiction() {
    PROCESS.webhook_contradictions.inc();
}

/// Sets when the current Xoxoday access token expires.
pub fn set_token_expiry(expires_at: DateTime<Utc>) {
    PROCESS
        .token_expires_at
        .store(expires_at.timestamp(), Ordering::Relaxed);
}

/// The exposition text: process metrics, plus order gauges when the database
/// answered (`order_gateway_metrics_database_up` says whether it did).
/// The token refresh state of this process, for [`render`]: the state
/// and the successful and failed refresh counts.
pub type TokenGauges = (TokenState, u64, u64);

fn token_gauges(reg: &Registry, token: Option<TokenGauges>) -> prometheus::Result<()> {
    let Some((state, refreshes, failures)) = token else {
        return Ok(());
    };
    let states = GaugeVec::new(
        Opts::new(
            "order_gateway_xoxoday_token_state",
            "1 for the current state of the Xoxoday token pair (operator_action_required: a new pair must be stored).",
        ),
        &["state"],
    )?;
    for s in TokenState::ALL {
        states
            .with_label_values(&[s.as_str()])
            .set(if s == state { 1.0 } else { 0.0 });
    }
    reg.register(Box::new(states))?;
    let refresh = IntCounterVec::new(
        Opts::new(
            "order_gateway_xoxoday_token_refreshes_total",
            "Xoxoday token refreshes by this process, by result.",
        ),
        &["result"],
    )?;
    refresh.with_label_values(&["ok"]).inc_by(refreshes);
    refresh.with_label_values(&["failed"]).inc_by(failures);
    reg.register(Box::new(refresh))
}

pub fn render(orders: Option<&[StatusCount]>, token: Option<TokenGauges>) -> String {
    let scrape = Registry::new();
    let mut families = PROCESS.registry.gather();
    if let Err(e) = token_gauges(&scrape, token).and_then(|()| scrape_gauges(&scrape, orders)) {
        tracing::warn!(error = %e, "building scrape gauges failed");
    }
    families.extend(scrape.gather());
    let mut out = String::new();
    if let Err(e) = TextEncoder::new().encode_utf8(&families, &mut out) {
        tracing::warn!(error = %e, "encoding metrics failed");
    }
    out
}

fn gauge(reg: &Registry, name: &str, help: &str, value: f64) -> prometheus::Result<()> {
    let g = Gauge::new(name, help)?;
    g.set(value);
    reg.register(Box::new(g))
}

fn scrape_gauges(reg: &Registry, orders: Option<&[StatusCount]>) -> prometheus::Result<()> {
    gauge(
        reg,
        "order_gateway_metrics_database_up",
        "1 when the order counts below were read from the database on this scrape.",
        if orders.is_some() { 1.0 } else { 0.0 },
    )?;
    let expires_at = PROCESS.token_expires_at.load(Ordering::Relaxed);
    if expires_at != UNKNOWN_EXPIRY {
        gauge(
            reg,
            "order_gateway_xoxoday_token_expires_in_seconds",
            "Seconds until the current Xoxoday access token expires.",
            (expires_at - Utc::now().timestamp()) as f64,
        )?;
    }
    let Some(rows) = orders else { return Ok(()) };
    let count = |s: OrderStatus| rows.iter().find(|r| r.status == s).map_or(0, |r| r.count);
    let by_status = GaugeVec::new(
        Opts::new("order_gateway_orders", "Orders by status."),
        &["status"],
    )?;
    for status in OrderStatus::ALL {
        by_status
            .with_label_values(&[status.as_str()])
            .set(count(status) as f64);
    }
    reg.register(Box::new(by_status))?;
    gauge(
        reg,
        "order_gateway_queue_depth",
        "Orders accepted and waiting to be placed.",
        count(OrderStatus::Accepted) as f64,
    )?;
    gauge(
        reg,
        "order_gateway_reconciler_backlog",
        "Orders whose outcome is unknown and being reconciled.",
        count(OrderStatus::Reconciling) as f64,
    )?;
    let oldest = rows
        .iter()
        .filter(|r| r.status.is_in_flight())
        .map(|r| r.oldest_age_seconds)
        .fold(0.0_f64, f64::max);
    gauge(
        reg,
        "order_gateway_oldest_unsettled_order_age_seconds",
        "Age of the oldest accepted, placing or reconciling order (0 when none).",
        oldest,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_short_snake_case_names_or_other() {
        assert_eq!(label("place_order"), "place_order");
        assert_eq!(label("Bearer abc"), "other");
        assert_eq!(label(""), "other");
        assert_eq!(label(&"a".repeat(41)), "other");
    }

    #[test]
    fn render_reports_order_gauges_and_process_counters() {
        observe_upstream("place_order", "placed", Duration::from_millis(20));
        record_rate_limit_wait("get_order_details", Duration::from_millis(500));
        let rows = [
            StatusCount {
                status: OrderStatus::Accepted,
                count: 3,
                oldest_age_seconds: 12.0,
            },
            StatusCount {
                status: OrderStatus::Reconciling,
                count: 2,
                oldest_age_seconds: 40.0,
            },
            StatusCount {
                status: OrderStatus::Completed,
                count: 7,
                oldest_age_seconds: 900.0,
            },
        ];
        let text = render(Some(&rows), None);
        for line in [
            "order_gateway_orders{status=\"accepted\"} 3",
            "order_gateway_orders{status=\"failed\"} 0",
            "order_gateway_queue_depth 3",
            "order_gateway_reconciler_backlog 2",
            "order_gateway_oldest_unsettled_order_age_seconds 40",
            "order_gateway_metrics_database_up 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        assert!(text.contains(
            "order_gateway_upstream_calls_total{operation=\"place_order\",outcome=\"placed\"}"
        ));
        assert!(text.contains("order_gateway_upstream_call_duration_seconds_bucket"));
        assert!(
            text.contains("order_gateway_rate_limit_waits_total{operation=\"get_order_details\"}")
        );
    }

    #[test]
    fn without_the_database_only_process_metrics_are_reported() {
        let text = render(None, None);
        assert!(text.contains("order_gateway_metrics_database_up 0"));
        assert!(!text.contains("order_gateway_queue_depth"));
    }

    #[test]
    fn token_expiry_is_reported_in_seconds_from_now() {
        set_token_expiry(Utc::now() + chrono::Duration::seconds(3600));
        let text = render(None, None);
        let line = text
            .lines()
            .find(|l| l.starts_with("order_gateway_xoxoday_token_expires_in_seconds "))
            .expect("gauge present");
        let secs: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((3500.0..=3600.0).contains(&secs), "{secs}");
    }

    #[test]
    fn token_state_marks_exactly_the_current_state_and_counts_refreshes() {
        let text = render(None, Some((TokenState::OperatorActionRequired, 3, 2)));
        for line in [
            "order_gateway_xoxoday_token_state{state=\"operator_action_required\"} 1",
            "order_gateway_xoxoday_token_state{state=\"ok\"} 0",
            "order_gateway_xoxoday_token_refreshes_total{result=\"ok\"} 3",
            "order_gateway_xoxoday_token_refreshes_total{result=\"failed\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        assert!(!render(None, None).contains("order_gateway_xoxoday_token_state"));
    }
}
