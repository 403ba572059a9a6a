//! Pure types and rules of the order path: no axum, no SQL, no reqwest.
//! Everything that crosses a module boundary is parsed here first.

/// Identifiers: orders, callers, poNumbers, idempotency keys.
pub mod ids;
/// Exact money amounts.
pub mod money;
/// Validation and canonical fingerprint of an order request.
pub mod new_order;
/// Raw JSON object members, for exact field parsing.
mod new_order_raw;
/// A stored order and its statuses.
pub mod order;
/// Text from Xoxoday made storable in Postgres (NUL, surrogates, size).
pub mod safe_text;
/// States of the Xoxoday token pair.
pub mod token_state;

pub use ids::{CallerId, IdempotencyKey, OrderId, PoNumber};
pub use money::Amount;
pub use new_order::{FieldError, NewOrder};
pub use order::{Caller, Order, OrderFilter, OrderStatus, Voucher};
pub use token_state::TokenState;
