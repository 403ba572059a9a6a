//! The order state machine as SQL sees it. Every status the store writes or
//! compares is one of these constants, built at compile time from
//! [`OrderStatus::as_str`], so a status name is spelled in exactly one place
//! in Rust (the domain enum) and once in the schema (`orders_status_check`,
//! compared with [`OrderStatus::ALL`] by a test). Statements interpolate them
//! with `formatcp!` (compile time) or `format!`, never as bare literals: the
//! planner still sees literals, so partial indexes keep matching.

use const_format::concatcp;

use crate::domain::OrderStatus as S;

/// `'accepted'`: stored, not sent yet.
pub(crate) const ACCEPTED: &str = concatcp!("'", S::Accepted.as_str(), "'");
/// `'placing'`: a placeOrder is in flight under a lease.
pub(crate) const PLACING: &str = concatcp!("'", S::Placing.as_str(), "'");
/// `'completed'` (no statement names it yet: settled orders take their
/// status from Xoxoday's answer, bound as a parameter).
#[allow(dead_code)]
pub(crate) const COMPLETED: &str = concatcp!("'", S::Completed.as_str(), "'");
/// `'pending_delivery'`.
pub(crate) const PENDING_DELIVERY: &str = concatcp!("'", S::PendingDelivery.as_str(), "'");
/// `'failed'`.
pub(crate) const FAILED: &str = concatcp!("'", S::Failed.as_str(), "'");
/// `'reconciling'`.
pub(crate) const RECONCILING: &str = concatcp!("'", S::Reconciling.as_str(), "'");
/// `'canceled'`.
pub(crate) const CANCELED: &str = concatcp!("'", S::Canceled.as_str(), "'");
/// `'needs_review'`.
pub(crate) const NEEDS_REVIEW: &str = concatcp!("'", S::NeedsReview.as_str(), "'");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_constant_is_the_quoted_name_of_its_status() {
        let pairs = [
            (ACCEPTED, S::Accepted),
            (PLACING, S::Placing),
            (COMPLETED, S::Completed),
            (PENDING_DELIVERY, S::PendingDelivery),
            (FAILED, S::Failed),
            (RECONCILING, S::Reconciling),
            (CANCELED, S::Canceled),
            (NEEDS_REVIEW, S::NeedsReview),
        ];
        assert_eq!(pairs.len(), S::ALL.len(), "a status without a constant");
        for (sql, status) in pairs {
            assert_eq!(sql, format!("'{}'", status.as_str()));
        }
    }
}
