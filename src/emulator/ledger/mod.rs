//! The ledger: every order the emulator created, the wallet balance, and how
//! many placeOrder calls carried each poNumber.
//!
//! Invariant: a *checked* creation (every normal placeOrder) never adds a
//! second order for a non-empty poNumber: the duplicate check, the balance
//! check and the insert happen in one `&mut self` call, made under the
//! emulator's single lock. Only the faults that model Xoxoday's worst case
//! (a late creation, see `late`) and the admin API add orders unchecked, so
//! a poNumber can then map to several orders and the ledger keeps them all.

mod edit;
mod queries;
mod vouchers;

use std::{collections::HashMap, time::Instant};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::{catalog::Product, hostile::HostileText, wire::ApiError};

/// One voucher of a delivered order.
#[derive(Debug, Clone, PartialEq)]
pub struct Voucher {
    /// `voucherCode`, e.g. `EMU-7K2P-QX9D-M4TA`.
    pub code: String,
    /// `pin`, 4–6 digits.
    pub pin: String,
    /// `validity`, `YYYY-MM-DD`, about a year out.
    pub validity: String,
    /// `amount` (the denomination).
    pub amount: Decimal,
}

/// One order as the emulator keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerOrder {
    /// The client's poNumber (may be empty).
    pub po_number: String,
    /// Xoxoday's `orderId`.
    pub order_id: i64,
    /// `productId`.
    pub product_id: i64,
    /// `quantity`.
    pub quantity: u32,
    /// `denomination` per unit.
    pub denomination: Decimal,
    /// `orderTotal` (denomination × quantity).
    pub order_total: Decimal,
    /// `orderDiscount`.
    pub order_discount: Decimal,
    /// `amountCharged` (total − discount), taken from the balance.
    pub amount_charged: Decimal,
    /// `currencyCode` (always `USD`).
    pub currency_code: String,
    /// `"delivered"`, `"pending"` or `"canceled"`.
    pub delivery_status: String,
    /// placeOrder calls that carried this poNumber (0 for an empty one).
    pub place_calls: u32,
    /// `tag` as sent.
    pub tag: String,
    /// `email` as sent.
    pub email: Option<String>,
    /// `contact` as sent.
    pub contact: Option<String>,
    /// Vouchers (empty until delivered).
    pub vouchers: Vec<Voucher>,
    /// `orderDate`, `YYYY-MM-DD HH:MM:SS` (UTC).
    pub order_date: String,
    /// `deliveryDate`, blank while pending.
    pub delivery_date: String,
    /// When the emulator created it.
    pub created_at: DateTime<Utc>,
    /// Set by a `Hostile` fault: every rendering of this order (answers,
    /// getOrderDetails, its webhook) carries this hostile text.
    pub hostile: Option<HostileText>,
}

/// What placeOrder asks the ledger to create (already validated).
#[derive(Debug, Clone)]
pub(crate) struct NewOrder {
    pub product: &'static Product,
    pub quantity: u32,
    pub denomination: Decimal,
    pub po_number: String,
    pub tag: String,
    pub email: Option<String>,
    pub contact: Option<String>,
    pub hostile: Option<HostileText>,
}

struct Stored {
    order: LedgerOrder,
    hidden_until: Option<Instant>,
    deleted: bool,
}

/// Orders, indexes, balance and call counts.
pub(crate) struct Ledger {
    orders: Vec<Stored>,
    /// The first live order of each non-empty poNumber.
    by_po: HashMap<String, usize>,
    by_id: HashMap<i64, usize>,
    place_calls: HashMap<String, u32>,
    next_id: i64,
    pub balance: Decimal,
}

/// The Plum date format (`2024-02-07 12:25:45`).
pub(crate) fn plum_date(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// The duplicate-poNumber refusal (422 PLE10004, a decision: UNCONFIRMED).
fn duplicate(po_number: &str) -> ApiError {
    ApiError::new(
        422,
        "PLE10004",
        "Failed to validate client's externalOrderId",
        format!("poNumber {po_number} has already been used"),
    )
}

/// The insufficient-balance refusal. UNCONFIRMED upstream (api-reference
/// §4.5, §12 item 2): no source names its errorId; PLE10010 "Failed to
/// redeem points" (422) is the closest documented row, so we use it.
fn insufficient_balance() -> ApiError {
    ApiError::new(
        422,
        "PLE10010",
        "Failed to redeem points",
        "Insufficient balance in the account",
    )
}

impl Ledger {
    pub(crate) fn new(balance: Decimal) -> Self {
        Self {
            orders: Vec::new(),
            by_po: HashMap::new(),
            by_id: HashMap::new(),
            place_calls: HashMap::new(),
            next_id: 50_000_001,
            balance,
        }
    }

    /// Counts one placeOrder call carrying `po_number` (empty ones are not).
    pub(crate) fn count_place_call(&mut self, po_number: &str) {
        if !po_number.is_empty() {
            *self.place_calls.entry(po_number.to_string()).or_default() += 1;
        }
    }

    pub(crate) fn place_calls(&self, po_number: &str) -> u32 {
        self.place_calls.get(po_number).copied().unwrap_or(0)
    }

    /// Every poNumber seen by placeOrder, with its call count.
    pub(crate) fn all_place_calls(&self) -> HashMap<String, u32> {
        self.place_calls.clone()
    }

    /// Checks the poNumber and the balance, then creates and charges the
    /// order, all in one step.
    pub(crate) fn create(
        &mut self,
        new: NewOrder,
        hidden_until: Option<Instant>,
    ) -> Result<LedgerOrder, ApiError> {
        if !new.po_number.is_empty() && self.by_po.contains_key(&new.po_number) {
            return Err(duplicate(&new.po_number));
        }
        self.create_unchecked(new, hidden_until)
    }

    /// Checks only the balance: the late creation of an order whose call
    /// already ended, which does not see orders created meanwhile.
    pub(crate) fn create_unchecked(
        &mut self,
        new: NewOrder,
        hidden_until: Option<Instant>,
    ) -> Result<LedgerOrder, ApiError> {
        let order_total = new.denomination * Decimal::from(new.quantity);
        let discount =
            (order_total * new.product.discount_percent() / Decimal::ONE_HUNDRED).round_dp(2);
        let charged = order_total - discount;
        if charged > self.balance {
            return Err(insufficient_balance());
        }
        self.balance -= charged;
        let order = self.build(new, order_total, discount, charged);
        self.insert(order.clone(), hidden_until);
        Ok(order)
    }

    fn build(
        &mut self,
        new: NewOrder,
        total: Decimal,
        discount: Decimal,
        charged: Decimal,
    ) -> LedgerOrder {
        let now = Utc::now();
        let mut order = LedgerOrder {
            po_number: new.po_number,
            order_id: self.take_id(),
            product_id: new.product.id,
            quantity: new.quantity,
            denomination: new.denomination,
            order_total: total,
            order_discount: discount,
            amount_charged: charged,
            currency_code: "USD".into(),
            delivery_status: "pending".into(),
            place_calls: 0,
            tag: new.tag,
            email: new.email,
            contact: new.contact,
            vouchers: Vec::new(),
            order_date: plum_date(now),
            delivery_date: String::new(),
            created_at: now,
            hostile: new.hostile,
        };
        if !new.product.is_delayed() {
            vouchers::deliver(&mut order);
        }
        order
    }

    fn take_id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id - 1
    }

    fn insert(&mut self, order: LedgerOrder, hidden_until: Option<Instant>) {
        let idx = self.orders.len();
        if !order.po_number.is_empty() {
            self.by_po.entry(order.po_number.clone()).or_insert(idx);
        }
        self.by_id.insert(order.order_id, idx);
        self.orders.push(Stored {
            order,
            hidden_until,
            deleted: false,
        });
    }

    fn view(&self, s: &Stored) -> LedgerOrder {
        let mut o = s.order.clone();
        o.place_calls = self.place_calls(&o.po_number);
        o
    }

    fn live(&self) -> impl Iterator<Item = &Stored> {
        self.orders.iter().filter(|s| !s.deleted)
    }

    pub(crate) fn all(&self) -> Vec<LedgerOrder> {
        self.live().map(|s| self.view(s)).collect()
    }

    /// The first order created for this poNumber.
    pub(crate) fn by_po(&self, po_number: &str) -> Option<LedgerOrder> {
        self.by_po
            .get(po_number)
            .map(|i| self.view(&self.orders[*i]))
    }

    /// The order as getOrderDetails sees it (hidden ones are absent).
    pub(crate) fn visible(
        &self,
        po_number: &str,
        order_id: i64,
        now: Instant,
    ) -> Option<LedgerOrder> {
        let idx = if po_number.is_empty() {
            self.by_id.get(&order_id)
        } else {
            self.by_po.get(po_number)
        }?;
        let stored = &self.orders[*idx];
        if stored.hidden_until.is_some_and(|t| now < t) {
            return None;
        }
        Some(self.view(stored))
    }

    /// Moves a pending order to delivered or canceled (refunding a cancel).
    /// `None` when the order is unknown or not pending.
    pub(crate) fn settle(&mut self, order_id: i64, delivered: bool) -> Option<LedgerOrder> {
        let idx = *self.by_id.get(&order_id)?;
        let order = &mut self.orders[idx].order;
        if order.delivery_status != "pending" {
            return None;
        }
        if delivered {
            vouchers::deliver(order);
        } else {
            order.delivery_status = "canceled".into();
            order.delivery_date = plum_date(Utc::now());
            self.balance += order.amount_charged;
        }
        Some(self.view(&self.orders[idx]))
    }
}
