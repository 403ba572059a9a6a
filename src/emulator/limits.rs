//! Per-operation rate limits (api-reference §9.4): a sliding 60-second window
//! of admitted calls. A refused call is not counted, so a client that waits
//! `penaltySeconds` is admitted again.

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use super::faults::FaultOp;

const WINDOW: Duration = Duration::from_secs(60);

/// Calls allowed per operation in any 60-second window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// placeOrder per minute (docs: 100).
    pub place_order: u32,
    /// getOrderDetails per minute (docs: 200).
    pub get_order_details: u32,
    /// getVouchers per minute (docs: 50).
    pub get_vouchers: u32,
    /// getBalance per minute (docs: 10).
    pub get_balance: u32,
    /// getOrderHistory per minute (docs: 200).
    pub get_order_history: u32,
}

impl Default for RateLimits {
    /// The documented limits.
    fn default() -> Self {
        Self {
            place_order: 100,
            get_order_details: 200,
            get_vouchers: 50,
            get_balance: 10,
            get_order_history: 200,
        }
    }
}

impl RateLimits {
    /// Limits so high that tests never meet them.
    pub fn unlimited() -> Self {
        Self {
            place_order: 100_000,
            get_order_details: 100_000,
            get_vouchers: 100_000,
            get_balance: 100_000,
            get_order_history: 100_000,
        }
    }

    fn for_op(&self, op: FaultOp) -> Option<u32> {
        match op {
            FaultOp::PlaceOrder => Some(self.place_order),
            FaultOp::GetOrderDetails => Some(self.get_order_details),
            FaultOp::GetVouchers => Some(self.get_vouchers),
            FaultOp::GetBalance => Some(self.get_balance),
            FaultOp::GetOrderHistory => Some(self.get_order_history),
            FaultOp::RefreshToken => None,
        }
    }
}

/// The admitted-call timestamps per operation.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    limits: RateLimits,
    hits: HashMap<FaultOp, VecDeque<Instant>>,
}

impl RateLimiter {
    pub(crate) fn new(limits: RateLimits) -> Self {
        Self {
            limits,
            hits: HashMap::new(),
        }
    }

    pub(crate) fn set_limits(&mut self, limits: RateLimits) {
        self.limits = limits;
    }

    /// Admits the call, or says how many seconds until a slot frees up.
    pub(crate) fn admit(&mut self, op: FaultOp, now: Instant) -> Result<(), u64> {
        let Some(limit) = self.limits.for_op(op) else {
            return Ok(());
        };
        let hits = self.hits.entry(op).or_default();
        while hits
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            hits.pop_front();
        }
        if hits.len() < limit as usize {
            hits.push_back(now);
            return Ok(());
        }
        let oldest = hits.front().copied().unwrap_or(now);
        let wait = WINDOW.saturating_sub(now.duration_since(oldest));
        let ceil = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Err(ceil.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_admits_the_limit_then_refuses_until_it_slides() {
        let limits = RateLimits {
            get_balance: 2,
            ..RateLimits::default()
        };
        let mut rl = RateLimiter::new(limits);
        let t0 = Instant::now();
        assert!(rl.admit(FaultOp::GetBalance, t0).is_ok());
        assert!(rl.admit(FaultOp::GetBalance, t0).is_ok());
        let penalty = rl.admit(FaultOp::GetBalance, t0 + Duration::from_secs(10));
        assert_eq!(penalty, Err(50));
        assert!(rl.admit(FaultOp::GetBalance, t0 + WINDOW).is_ok());
        assert!(rl.admit(FaultOp::RefreshToken, t0).is_ok());
    }
}
