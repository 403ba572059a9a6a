//! Shared state of the HTTP layer.

use crate::orders::OrderService;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The order use cases.
    pub orders: OrderService,
}
