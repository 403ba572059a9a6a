//! `POST /v1/orders`, `GET /v1/orders/{id}`, `GET /v1/orders` and their wire
//! types. Handlers are typed argument lists; the rules live in `orders/`.

use axum::{
    Json,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret as _;
use serde::Serialize;
use uuid::Uuid;

use super::{
    extract::{AuthCaller, IdempotencyKeyHeader, JsonBody, PreferWait},
    problem::ApiError,
    state::AppState,
};
use crate::{
    domain::{
        Caller, FieldError, NewOrder, OrderFilter, OrderId, OrderStatus, money::money_string,
    },
    orders::{
        OrderView,
        intake::{IntakeError, IntakeOutcome},
    },
};

/// `POST /v1/orders`.
pub async fn create_order(
    State(state): State<AppState>,
    AuthCaller(caller): AuthCaller,
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
    PreferWait(wait): PreferWait,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let new = NewOrder::parse(&body).map_err(ApiError::Validation)?;
    let outcome = state
        .intake()
        .create_order(&caller, &key, &new, wait)
        .await
        .map_err(|e| match e {
            IntakeError::Mismatch => ApiError::IdempotencyMismatch,
            IntakeError::Revoked => ApiError::Unauthorized,
            IntakeError::View(v) => v.into(),
        })?;
    let (view, replayed) = match outcome {
        IntakeOutcome::Created(v) => (v, false),
        IntakeOutcome::Replayed(v) => (v, true),
    };
    let in_flight = view.order.status.is_in_flight();
    let status = match (replayed, in_flight) {
        (_, true) => StatusCode::ACCEPTED,
        (false, false) => StatusCode::CREATED,
        (true, false) => StatusCode::OK,
    };
    let mut headers = HeaderMap::new();
    let location = format!("/v1/orders/{}", view.order.id);
    headers.insert(header::LOCATION, header_value(&location));
    if in_flight {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok((status, headers, Json(OrderOut::from(&view))).into_response())
}

/// `GET /v1/orders/{id}`.
pub async fn get_order(
    State(state): State<AppState>,
    AuthCaller(caller): AuthCaller,
    Path(id): Path<String>,
) -> Result<Json<OrderOut>, ApiError> {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound)?;
    let found = state
        .queries()
        .find_order_view(&caller, OrderId::from_uuid(id))
        .await?;
    match found {
        Some(view) => Ok(Json(OrderOut::from(&view))),
        None => Err(not_found_or_revoked(&state, &caller).await),
    }
}

/// `GET /v1/orders?idempotencyKey=…|poNumber=…|status=…&limit=…&after=…`.
pub async fn list_orders(
    State(state): State<AppState>,
    AuthCaller(caller): AuthCaller,
    RawQuery(query): RawQuery,
) -> Result<Json<OrderListOut>, ApiError> {
    let filter = parse_list_query(query.as_deref().unwrap_or(""))?;
    let page = state.queries().list_order_views(&caller, &filter).await?;
    if page.orders.is_empty() && !state.queries().caller_still_live(&caller).await? {
        return Err(ApiError::Unauthorized);
    }
    let next_cursor = page
        .more
        .then(|| page.orders.last().map(|v| encode_cursor(v.order.id)))
        .flatten();
    Ok(Json(OrderListOut {
        orders: page.orders.iter().map(OrderOut::from).collect(),
        next_cursor,
    }))
}

/// Nothing found: 404, unless the key was revoked meanwhile (401).
async fn not_found_or_revoked(state: &AppState, caller: &Caller) -> ApiError {
    match state.queries().caller_still_live(caller).await {
        Ok(true) => ApiError::NotFound,
        Ok(false) => ApiError::Unauthorized,
        Err(e) => e.into(),
    }
}

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 100;

fn parse_list_query(query: &str) -> Result<OrderFilter, ApiError> {
    let mut f = OrderFilter {
        limit: DEFAULT_LIMIT,
        ..OrderFilter::default()
    };
    let mut errors = Vec::new();
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let value = value.into_owned();
        if value.contains('\0') {
            errors.push(FieldError::new(name.as_ref(), "must not contain U+0000"));
            continue;
        }
        match name.as_ref() {
            "idempotencyKey" => f.idempotency_key = Some(value),
            "poNumber" => f.po_number = Some(value),
            "status" => match OrderStatus::parse(&value) {
                Some(s) => f.status = Some(s),
                None => errors.push(FieldError::new("status", "is not a known order status")),
            },
            "limit" => match value.parse::<i64>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => f.limit = n,
                _ => errors.push(FieldError::new(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_LIMIT}"),
                )),
            },
            "after" => match decode_cursor(&value) {
                Some(id) => f.before = Some(id),
                None => errors.push(FieldError::new("after", "is not a cursor from nextCursor")),
            },
            other => errors.push(FieldError::new(other, "is not a known query parameter")),
        }
    }
    if errors.is_empty() {
        Ok(f)
    } else {
        Err(ApiError::Validation(errors))
    }
}

fn encode_cursor(id: OrderId) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.as_uuid().as_bytes())
}

fn decode_cursor(text: &str) -> Option<OrderId> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()?;
    Some(OrderId::from_uuid(Uuid::from_slice(&bytes).ok()?))
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("/"))
}

/// A page of orders.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderListOut {
    /// Newest first.
    pub orders: Vec<OrderOut>,
    /// Pass as `after` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// An order on the wire (contract §5 "The order").
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderOut {
    id: String,
    po_number: String,
    idempotency_key: String,
    status: &'static str,
    status_reason: Option<String>,
    product_id: i64,
    denomination: String,
    quantity: i32,
    email: Option<String>,
    contact: Option<String>,
    tag: Option<String>,
    xoxoday_order_id: Option<i64>,
    currency_code: Option<String>,
    order_total: Option<String>,
    order_discount: Option<String>,
    amount_charged: Option<String>,
    delivery_status: Option<String>,
    vouchers: Vec<VoucherOut>,
    failure: Option<serde_json::Value>,
    attempts: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    settled_at: Option<DateTime<Utc>>,
}

/// A voucher on the wire (owner only).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VoucherOut {
    code: String,
    pin: Option<String>,
    validity: Option<String>,
    r#type: Option<String>,
    amount: Option<String>,
    currency: Option<String>,
    country: Option<String>,
}

impl From<&OrderView> for OrderOut {
    fn from(v: &OrderView) -> Self {
        let o = &v.order;
        Self {
            id: o.id.to_string(),
            po_number: o.po_number.to_string(),
            idempotency_key: o.idempotency_key.as_str().to_owned(),
            status: o.status.as_str(),
            status_reason: o.status_reason.clone(),
            product_id: o.product_id,
            denomination: o.denomination.to_string(),
            quantity: o.quantity,
            email: o.email.clone(),
            contact: o.contact.clone(),
            tag: o.tag.clone(),
            xoxoday_order_id: o.xoxoday_order_id,
            currency_code: o.currency_code.clone(),
            order_total: o.order_total.map(money_string),
            order_discount: o.order_discount.map(money_string),
            amount_charged: o.amount_charged.map(money_string),
            delivery_status: o.delivery_status.clone(),
            vouchers: v.vouchers.iter().map(VoucherOut::from).collect(),
            failure: o.failure.clone(),
            attempts: o.attempts,
            created_at: o.created_at,
            updated_at: o.updated_at,
            settled_at: o.settled_at,
        }
    }
}

impl From<&crate::domain::Voucher> for VoucherOut {
    fn from(v: &crate::domain::Voucher) -> Self {
        Self {
            code: v.code.expose_secret().to_owned(),
            pin: v.pin.as_ref().map(|p| p.expose_secret().to_owned()),
            validity: v.validity.clone(),
            r#type: v.voucher_type.clone(),
            amount: v.amount.map(money_string),
            currency: v.currency.clone(),
            country: v.country.clone(),
        }
    }
}
