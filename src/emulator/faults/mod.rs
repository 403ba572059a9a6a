//! The misbehaviour plan: one-shot faults queued per operation or per
//! poNumber, and random faults drawn at configured rates for placeOrder.
//!
//! A one-shot fault is consumed by exactly one admitted call (after the
//! bearer check and the rate limit), so a fault is never wasted on a call
//! that was refused for another reason.

use std::{
    collections::{HashMap, VecDeque},
    time::Duration,
};

mod rates;

pub use rates::FaultRates;

use super::hostile::HostileText;

/// The operations a fault can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultOp {
    /// `plumProAPI.mutation.placeOrder`
    PlaceOrder,
    /// `plumProAPI.mutation.getOrderDetails`
    GetOrderDetails,
    /// `plumProAPI.mutation.getVouchers`
    GetVouchers,
    /// `plumProAPI.query.getBalance`
    GetBalance,
    /// `plumProAPI.mutation.getOrderHistory`
    GetOrderHistory,
    /// `POST /chef/v1/oauth/token/user`
    RefreshToken,
}

impl FaultOp {
    /// The operation named by an envelope's `query`, if it is one we serve.
    pub fn from_query(query: &str) -> Option<Self> {
        match query {
            "plumProAPI.mutation.placeOrder" => Some(Self::PlaceOrder),
            "plumProAPI.mutation.getOrderDetails" => Some(Self::GetOrderDetails),
            "plumProAPI.mutation.getVouchers" => Some(Self::GetVouchers),
            "plumProAPI.query.getBalance" => Some(Self::GetBalance),
            "plumProAPI.mutation.getOrderHistory" => Some(Self::GetOrderHistory),
            _ => None,
        }
    }

    /// The key under `data` in a success envelope (`placeOrder`, …).
    pub fn response_key(self) -> &'static str {
        match self {
            Self::PlaceOrder => "placeOrder",
            Self::GetOrderDetails => "getOrderDetails",
            Self::GetVouchers => "getVouchers",
            Self::GetBalance => "getBalance",
            Self::GetOrderHistory => "getOrderHistory",
            Self::RefreshToken => "refreshToken",
        }
    }
}

/// One way to misbehave. "Create" means the operation's side effect: the
/// order for placeOrder, the token rotation for RefreshToken, nothing for
/// the read operations.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// A 5xx answer; the operation does not run (no order created).
    ErrorBeforeCreate {
        /// HTTP status to answer (500, 502, 503…).
        status: u16,
    },
    /// The operation runs (order created and charged), then a 5xx answer.
    ErrorAfterCreate {
        /// HTTP status to answer.
        status: u16,
    },
    /// The operation runs, the answer comes only after this sleep.
    SleepAfterCreate(Duration),
    /// The operation runs, then the TCP connection is closed with no answer.
    DropAfterCreate,
    /// Normal behaviour, but the operation starts only after this delay.
    Slow(Duration),
    /// placeOrder: the order is created, but getOrderDetails answers
    /// 404 PLE10016 for it during this long.
    HiddenFromDetails(Duration),
    /// The documented rate-limit body (HTTP 429).
    RateLimited {
        /// `penaltySeconds` in the body.
        penalty_seconds: u64,
    },
    /// 401 `invalid_token`, as if the access token had expired.
    InvalidToken,
    /// A canned answer; the operation does not run.
    Respond {
        /// HTTP status.
        status: u16,
        /// JSON body.
        body: serde_json::Value,
    },
    /// placeOrder: the call ends with no order (`answer`), and the order is
    /// created `after` the call ended, without the poNumber check, so a
    /// retry in the gap creates a second order for the same poNumber.
    /// getOrderDetails answers 404 PLE10016 until then.
    LateCreate {
        /// Delay between the end of the call and the creation.
        after: Duration,
        /// How the call ends.
        answer: LateAnswer,
    },
    /// placeOrder: the order is created (a delayed product settles at
    /// once), its delivery webhook is sent and awaited, and only then does
    /// the call end as `then` says.
    WebhookFirst {
        /// How the call ends after the webhook.
        then: AfterWebhook,
    },
    /// The answer carries hostile text: voucher `voucherCode`/`pin`/
    /// `validity`, `errorInfo` and an extra `emulatorNote` field. On
    /// placeOrder the created order keeps it (getOrderDetails, webhook).
    Hostile(HostileText),
}

/// How a [`Fault::LateCreate`] call ends.
#[derive(Debug, Clone, PartialEq)]
pub enum LateAnswer {
    /// This 5xx status, at once.
    Error {
        /// HTTP status.
        status: u16,
    },
    /// The connection is closed with no answer, at once.
    Drop,
    /// No answer for this long (a client times out), then the connection
    /// is closed. If the client leaves first, the call ends then.
    Hang(Duration),
    /// This canned answer, at once (e.g. a front proxy's rate-limit body on
    /// a 503 while the order is still being created behind it).
    Respond {
        /// HTTP status.
        status: u16,
        /// JSON body.
        body: serde_json::Value,
    },
}

/// How a [`Fault::WebhookFirst`] call ends once the webhook was sent.
#[derive(Debug, Clone, PartialEq)]
pub enum AfterWebhook {
    /// The normal 200 answer (the webhook merely came first).
    Answer,
    /// This 5xx status instead of the answer.
    Error {
        /// HTTP status.
        status: u16,
    },
    /// The connection is closed with no answer.
    Drop,
}

/// Queued one-shot faults and the random rates.
#[derive(Debug, Default)]
pub(crate) struct FaultPlan {
    by_op: HashMap<FaultOp, VecDeque<Fault>>,
    by_po: HashMap<String, VecDeque<Fault>>,
    rates: FaultRates,
}

impl FaultPlan {
    pub(crate) fn new(rates: FaultRates) -> Self {
        Self {
            rates,
            ..Self::default()
        }
    }

    pub(crate) fn push(&mut self, op: FaultOp, fault: Fault) {
        self.by_op.entry(op).or_default().push_back(fault);
    }

    pub(crate) fn push_for_po(&mut self, po_number: &str, fault: Fault) {
        self.by_po
            .entry(po_number.to_string())
            .or_default()
            .push_back(fault);
    }

    pub(crate) fn set_rates(&mut self, rates: FaultRates) {
        self.rates = rates;
    }

    /// The fault for this call: a poNumber one first, then the operation's
    /// queue, then (placeOrder only) a random draw.
    pub(crate) fn take(&mut self, op: FaultOp, po_number: Option<&str>) -> Option<Fault> {
        if let Some(po) = po_number.filter(|p| !p.is_empty()) {
            if let Some(f) = self.by_po.get_mut(po).and_then(VecDeque::pop_front) {
                return Some(f);
            }
        }
        if let Some(f) = self.by_op.get_mut(&op).and_then(VecDeque::pop_front) {
            return Some(f);
        }
        (op == FaultOp::PlaceOrder)
            .then(|| self.rates.roll())
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn po_faults_win_over_op_faults_and_queues_are_fifo() {
        let mut plan = FaultPlan::default();
        plan.push(FaultOp::PlaceOrder, Fault::DropAfterCreate);
        plan.push(FaultOp::PlaceOrder, Fault::InvalidToken);
        plan.push_for_po("PO-1", Fault::ErrorBeforeCreate { status: 503 });
        let first = plan.take(FaultOp::PlaceOrder, Some("PO-1"));
        assert_eq!(first, Some(Fault::ErrorBeforeCreate { status: 503 }));
        assert_eq!(
            plan.take(FaultOp::PlaceOrder, Some("PO-1")),
            Some(Fault::DropAfterCreate)
        );
        assert_eq!(
            plan.take(FaultOp::PlaceOrder, None),
            Some(Fault::InvalidToken)
        );
        assert_eq!(plan.take(FaultOp::PlaceOrder, None), None);
    }

    #[test]
    fn a_certain_rate_always_fires_and_zero_never() {
        let rates = FaultRates {
            error_after: 1.0,
            ..FaultRates::default()
        };
        let mut plan = FaultPlan::new(rates);
        for _ in 0..20 {
            let f = plan.take(FaultOp::PlaceOrder, None);
            assert_eq!(f, Some(Fault::ErrorAfterCreate { status: 502 }));
            assert_eq!(plan.take(FaultOp::GetBalance, None), None);
        }
    }

    #[test]
    fn the_new_rates_draw_late_creation_and_webhook_first() {
        let late_after = Duration::from_secs(7);
        for (rates, want) in [
            (
                FaultRates {
                    late_drop: 1.0,
                    late_after,
                    ..FaultRates::default()
                },
                Fault::LateCreate {
                    after: late_after,
                    answer: LateAnswer::Drop,
                },
            ),
            (
                FaultRates {
                    webhook_instead: 1.0,
                    ..FaultRates::default()
                },
                Fault::WebhookFirst {
                    then: AfterWebhook::Error { status: 502 },
                },
            ),
        ] {
            let mut plan = FaultPlan::new(rates);
            assert_eq!(plan.take(FaultOp::PlaceOrder, None), Some(want));
        }
    }
}
