//! placeOrder (api-reference §4): validates `variables.data` in the order a
//! client would most likely meet the errors, then creates and charges the
//! order in one locked step (see `ledger`) and schedules a delayed
//! product's delivery.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::response::{IntoResponse as _, Response};
use rust_decimal::Decimal;
use serde_json::Value;

use super::{
    catalog::{self, Delivery, Product},
    hostile::HostileText,
    ledger::{LedgerOrder, NewOrder},
    render,
    state::Shared,
    webhook,
    wire::{self, ApiError},
};

/// The poNumber a placeOrder body carries, as text (numbers tolerated).
pub(crate) fn po_number_of(data: &Value) -> Option<String> {
    match data.get("poNumber")? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// What a fault changes about one placeOrder.
#[derive(Debug, Clone, Default)]
pub(crate) struct PlaceOptions {
    /// Hide the order from getOrderDetails for this long.
    pub hidden: Option<Duration>,
    /// Mark the order hostile (see `hostile`).
    pub hostile: Option<HostileText>,
}

/// Handles one admitted placeOrder call.
pub(crate) fn place_order(shared: &Arc<Shared>, data: &Value, opts: &PlaceOptions) -> Response {
    match create(shared, data, opts) {
        Err(e) => e.into_response(),
        Ok(order) => {
            schedule_delivery(shared, &order);
            wire::success("placeOrder", render::order(&order, true))
        }
    }
}

/// Validates and creates (checked) the order; schedules nothing.
pub(crate) fn create(
    shared: &Arc<Shared>,
    data: &Value,
    opts: &PlaceOptions,
) -> Result<LedgerOrder, ApiError> {
    let new = NewOrder {
        hostile: opts.hostile.clone(),
        ..parse(data)?
    };
    let hidden_until = opts.hidden.map(|d| Instant::now() + d);
    shared.lock().ledger.create(new, hidden_until)
}

/// Whether a delayed product ends delivered (else canceled); `None` for
/// a realtime product or an unknown one.
pub(crate) fn delayed_outcome(order: &LedgerOrder) -> Option<bool> {
    let product = catalog::find(order.product_id).filter(|p| p.is_delayed())?;
    Some(product.delivery == Delivery::DelayedDelivered)
}

/// Settles a delayed order after the delivery delay (nothing if realtime).
pub(crate) fn schedule_delivery(shared: &Arc<Shared>, order: &LedgerOrder) {
    if let Some(delivered) = delayed_outcome(order) {
        webhook::schedule(Arc::clone(shared), order.order_id, delivered);
    }
}

/// Validates a placeOrder `data` into the order to create.
pub(crate) fn parse(data: &Value) -> Result<NewOrder, ApiError> {
    if !data.is_object() {
        return Err(ApiError::place_validation(
            "variables.data must be an object",
        ));
    }
    let product_id = required(data, "productId", wire::read_int)?;
    let quantity = required(data, "quantity", wire::read_int)?;
    let denomination = required(data, "denomination", wire::read_decimal)?;
    let po_number = match data.get("poNumber") {
        None | Some(Value::Null) => String::new(),
        Some(_) => po_number_of(data).ok_or_else(|| bad_type("poNumber"))?,
    };
    if po_number.chars().count() > 100 {
        return Err(ApiError::place_validation(
            "poNumber must be at most 100 characters",
        ));
    }
    check_flags(data)?;
    let product = checked_product(product_id, quantity, denomination)?;
    let contact = optional_text(data, "contact")?;
    if product.phone_mandatory && contact.is_none() {
        return Err(ApiError::place_validation(
            "contact is mandatory for this product",
        ));
    }
    Ok(NewOrder {
        product,
        quantity: u32::try_from(quantity).map_err(|_| bad_type("quantity"))?,
        denomination,
        po_number,
        tag: optional_text(data, "tag")?.unwrap_or_default(),
        email: optional_text(data, "email")?,
        contact,
        hostile: None,
    })
}

fn checked_product(
    id: i64,
    quantity: i64,
    denomination: Decimal,
) -> Result<&'static Product, ApiError> {
    let product = catalog::find(id).filter(|p| p.active).ok_or_else(|| {
        ApiError::new(
            404,
            "PLE10042",
            "This product is not activated for the client.",
            format!("product {id} is not available"),
        )
    })?;
    if quantity < 1 {
        return Err(ApiError::place_validation("quantity must be at least 1"));
    }
    if quantity > i64::from(product.quantity_limit) {
        return Err(ApiError::new(
            409,
            "PLE10041",
            "Clients are not allowed to place more than 10 Qty",
            format!(
                "Order Failed, as per your current setup you are not allowed to add more than {} qty.",
                product.quantity_limit
            ),
        ));
    }
    if !product.accepts(denomination) {
        return Err(ApiError::new(
            400,
            "PLE10018",
            "Invalid denomination for the product",
            "ProductId and Denomination Combination Not Found",
        ));
    }
    Ok(product)
}

fn check_flags(data: &Value) -> Result<(), ApiError> {
    for flag in ["notifyReceiverEmail", "notifyAdminEmail"] {
        if data
            .get(flag)
            .is_some_and(|v| !v.is_null() && wire::read_flag(v).is_none())
        {
            return Err(bad_type(flag));
        }
    }
    Ok(())
}

fn required<T>(data: &Value, field: &str, read: fn(&Value) -> Option<T>) -> Result<T, ApiError> {
    match data.get(field) {
        None | Some(Value::Null) => Err(ApiError::place_validation(format!("{field} is required"))),
        Some(v) => read(v).ok_or_else(|| bad_type(field)),
    }
}

fn optional_text(data: &Value, field: &str) -> Result<Option<String>, ApiError> {
    match data.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad_type(field)),
    }
}

fn bad_type(field: &str) -> ApiError {
    ApiError::place_validation(format!("{field} has an invalid value"))
}
