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

use rand::Rng as _;

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
}

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
    /// Duration used by `sleep_after` and `slow`.
    pub sleep: Duration,
    /// Duration used by `hidden`.
    pub hidden_for: Duration,
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
    }

    /// Draws at most one fault.
    fn roll(&self) -> Option<Fault> {
        if self.total() <= 0.0 {
            return None;
        }
        let mut r: f64 = rand::thread_rng().r#gen();
        let choices = [
            (self.error_before, Fault::ErrorBeforeCreate { status: 502 }),
            (self.error_after, Fault::ErrorAfterCreate { status: 502 }),
            (self.sleep_after, Fault::SleepAfterCreate(self.sleep)),
            (self.drop_after, Fault::DropAfterCreate),
            (self.slow, Fault::Slow(self.sleep)),
            (self.hidden, Fault::HiddenFromDetails(self.hidden_for)),
        ];
        for (p, fault) in choices {
            if r < p {
                return Some(fault);
            }
            r -= p;
        }
        None
    }
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
}
