//! SQL fragments that state what proves an order exists upstream, written
//! once and used by every statement that must not place an order twice
//! (issue 9): a stored delivery webhook is proof, whatever getOrderDetails
//! says and however early it came.

/// True when a delivery webhook for the order `o` is stored.
pub(crate) const HOOKED: &str =
    "exists (select 1 from webhook_events w where w.order_id = o.order_id)";
