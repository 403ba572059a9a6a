//! SQL fragments that state what proves an order exists upstream, written
//! once and used by every statement that must not place an order twice
//! (issue 9): a stored delivery webhook is proof, whatever getOrderDetails
//! says and however early it came.

/// True when every placeOrder exchange of the order `o` (none at all
/// included) ended with a 4xx whose body we classified as a refusal, a
/// throttle or a token error (`orders::outcome::label`), or was completed
/// as never sent (`not_sent`, written instead of sending): none can have
/// created an order. No response, a 5xx, a timeout, an `unknown` outcome or
/// a throttle body on another status may have created one; nor may an
/// attempt whose row was never completed (a kill -9 mid-call leaves NULLs,
/// hence the `coalesce`).
pub(crate) const ONLY_REFUSED: &str = "(not exists (select 1 from upstream_exchanges x
        where x.order_id = o.order_id and x.operation = 'place_order'
          and not coalesce(x.response_status between 400 and 499
                   and x.outcome in ('rejected', 'systemic', 'rate_limited', 'unauthorized',
                                     'insufficient_balance')
                   or x.response_status is null and x.outcome = 'not_sent', false)))";

/// True when a delivery webhook for the order `o` is stored.
pub(crate) const HOOKED: &str =
    "exists (select 1 from webhook_events w where w.order_id = o.order_id)";
