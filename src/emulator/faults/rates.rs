//! Random placeOrder faults: [`FaultRates`] holds one probability per
//! fault kind and draws at most one fault per call. Invariant: the
//! probabilities are each in 0..1 and add up to at most 1 (checked where
//! rates are read: config and the admin API).

use std::time::Duration;

use rand::Rng as _;

use super::{AfterWebhook, Fault, LateAnswer};

/// Probabilities (0..1) of random faults on each placeOrder call that has
/// no one-shot fault. Their sum must not exceed 1.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultRates {
    /// 502 before creating the order.
    pub error_before: f64,
    /// 502 after creating the order.
    pub error_after: f64,
    /// Create, then sleep `sleep` before answering.
    pub sleep_after: f64,
    /// Create, then drop the connection.
    pub drop_after: f64,
    /// Wait `sleep` before handling the call normally.
    pub slow: f64,
    /// Create, but hide the order from getOrderDetails for `hidden_for`.
    pub hidden: f64,
    /// Late creation: 502 at once, the order created `late_after` later.
    pub late_error: f64,
    /// Late creation: connection dropped, the order created `late_after`
    /// later.
    pub late_drop: f64,
    /// Webhook first: create, send the webhook, then the normal answer.
    pub webhook_first: f64,
    /// Webhook instead: create, send the webhook, then 502.
    pub webhook_instead: f64,
    /// Duration used by `sleep_after` and `slow`.
    pub sleep: Duration,
    /// Duration used by `hidden`.
    pub hidden_for: Duration,
    /// Duration used by `late_error` and `late_drop`.
    pub late_after: Duration,
}

impl FaultRates {
    /// The sum of all probabilities (must be ≤ 1).
    pub fn total(&self) -> f64 {
        self.error_before
            + self.error_after
            + self.sleep_after
            + self.drop_after
            + self.slow
            + self.hidden
            + self.late_error
            + self.late_drop
            + self.webhook_first
            + self.webhook_instead
    }

    fn choices(&self) -> [(f64, Fault); 10] {
        let late = |answer| Fault::LateCreate {
            after: self.late_after,
            answer,
        };
        let webhook = |then| Fault::WebhookFirst { then };
        [
            (self.error_before, Fault::ErrorBeforeCreate { status: 502 }),
            (self.error_after, Fault::ErrorAfterCreate { status: 502 }),
            (self.sleep_after, Fault::SleepAfterCreate(self.sleep)),
            (self.drop_after, Fault::DropAfterCreate),
            (self.slow, Fault::Slow(self.sleep)),
            (self.hidden, Fault::HiddenFromDetails(self.hidden_for)),
            (self.late_error, late(LateAnswer::Error { status: 502 })),
            (self.late_drop, late(LateAnswer::Drop)),
            (self.webhook_first, webhook(AfterWebhook::Answer)),
            (
                self.webhook_instead,
                webhook(AfterWebhook::Error { status: 502 }),
            ),
        ]
    }

    /// Draws at most one fault.
    pub(super) fn roll(&self) -> Option<Fault> {
        if self.total() <= 0.0 {
            return None;
        }
        let mut r: f64 = rand::thread_rng().r#gen();
        for (p, fault) in self.choices() {
            if r < p {
                return Some(fault);
            }
            r -= p;
        }
        None
    }
}
