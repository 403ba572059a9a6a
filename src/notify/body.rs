//! The event body: `{"type", "timestamp", "data"}`, where `data` is the
//! order as `GET /v1/orders/{id}` renders it, from the row as it was at the
//! status change, without `vouchers` (the caller fetches codes with its key).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::{domain::Order, http::orders::OrderOut, orders::OrderView};

/// Renders the body of an event of `event_type` written at `at`.
pub fn render(event_type: &str, at: DateTime<Utc>, order: Order) -> String {
    let view = OrderView {
        order,
        vouchers: Vec::new(),
    };
    let mut data = serde_json::to_value(OrderOut::from(&view)).unwrap_or(Value::Null);
    if let Value::Object(fields) = &mut data {
        fields.remove("vouchers");
    }
    json!({
        "type": event_type,
        "timestamp": at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "data": data,
    })
    .to_string()
}
