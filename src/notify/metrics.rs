//! `/metrics` for caller notifications: attempts by outcome and events
//! failed for good (process counters), and on each scrape the pending
//! events, the age of the oldest and the failed events (from the database,
//! so every replica reports the same truth).

use std::{sync::LazyLock, time::Duration};

use prometheus::{Gauge, IntCounter, IntCounterVec, Opts, Registry, TextEncoder};

use crate::store::{Store, notify::NotifyStats};

struct Counters {
    registry: Registry,
    attempts: IntCounterVec,
    gave_up: IntCounter,
}

static COUNTERS: LazyLock<Counters> = LazyLock::new(|| {
    let registry = Registry::new();
    let attempts = IntCounterVec::new(
        Opts::new(
            "order_gateway_notify_attempts_total",
            "Caller notification attempts by outcome (this replica).",
        ),
        &["outcome"],
    )
    .expect("valid metric");
    let gave_up = IntCounter::new(
        "order_gateway_notify_events_failed_total",
        "Caller notifications marked failed after the retry window (this replica).",
    )
    .expect("valid metric");
    registry
        .register(Box::new(attempts.clone()))
        .expect("registers once");
    registry
        .register(Box::new(gave_up.clone()))
        .expect("registers once");
    Counters {
        registry,
        attempts,
        gave_up,
    }
});

/// Counts one attempt; `outcome` is a fixed name from [`super::sender`].
pub fn count_attempt(outcome: &'static str) {
    COUNTERS.attempts.with_label_values(&[outcome]).inc();
}

/// Counts one event marked failed for good.
pub fn count_failed() {
    COUNTERS.gave_up.inc();
}

/// The notification part of `/metrics`.
#[derive(Debug, Clone)]
pub struct NotifyMetrics {
    store: Store,
}

impl NotifyMetrics {
    /// Reads its gauges from `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// The text exposition of the counters and, when the database answers
    /// within 2 s, the gauges.
    pub async fn text(&self) -> String {
        let stats = tokio::time::timeout(Duration::from_secs(2), self.store.notify_stats())
            .await
            .ok()
            .and_then(Result::ok);
        render(stats)
    }
}

fn render(stats: Option<NotifyStats>) -> String {
    let mut families = COUNTERS.registry.gather();
    if let Some(s) = stats {
        let scrape = Registry::new();
        let gauges = [
            (
                "order_gateway_notify_events_pending",
                "Caller notifications not yet delivered nor failed.",
                s.pending as f64,
            ),
            (
                "order_gateway_notify_oldest_pending_age_seconds",
                "Age of the oldest pending caller notification (0 when none).",
                s.oldest_pending_age_seconds,
            ),
            (
                "order_gateway_notify_events_failed",
                "Caller notifications failed for good (all replicas).",
                s.failed as f64,
            ),
        ];
        for (name, help, value) in gauges {
            let registered = Gauge::new(name, help).and_then(|g| {
                g.set(value);
                scrape.register(Box::new(g))
            });
            if let Err(e) = registered {
                tracing::warn!(error = %e, "building notification gauges failed");
            }
        }
        families.extend(scrape.gather());
    }
    let mut out = String::new();
    if let Err(e) = TextEncoder::new().encode_utf8(&families, &mut out) {
        tracing::warn!(error = %e, "encoding notification metrics failed");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_appear_only_with_the_database() {
        count_attempt("delivered");
        let with = render(Some(NotifyStats {
            pending: 3,
            oldest_pending_age_seconds: 12.5,
            failed: 1,
        }));
        assert!(
            with.contains("order_gateway_notify_events_pending 3"),
            "{with}"
        );
        assert!(with.contains("order_gateway_notify_oldest_pending_age_seconds 12.5"));
        assert!(with.contains("order_gateway_notify_events_failed 1"));
        assert!(with.contains("order_gateway_notify_attempts_total{outcome=\"delivered\"}"));
        let without = render(None);
        assert!(!without.contains("order_gateway_notify_events_pending"));
    }
}
