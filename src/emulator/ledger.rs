//! The ledger: every order the emulator created, the wallet balance, and how
//! many placeOrder calls carried each poNumber.
//!
//! Invariant: one non-empty poNumber maps to at most one order. The
//! duplicate check and the insert happen in one `&mut self` call, made under
//! the emulator's single lock, so concurrent duplicates cannot both pass.

use std::{collections::HashMap, time::Instant};

use chrono::{DateTime, Utc};
use rand::{Rng as _, distributions::Alphanumeric};
use rust_decimal::Decimal;

use super::{catalog::Product, wire::ApiError};

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
}

struct Stored {
    order: LedgerOrder,
    hidden_until: Option<Instant>,
}

/// Orders, indexes, balance and call counts.
pub(crate) struct Ledger {
    orders: Vec<Stored>,
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
            return Err(ApiError::new(
                422,
                "PLE10004",
                "Failed to validate client's externalOrderId",
                format!("poNumber {} has already been used", new.po_number),
            ));
        }
        let order_total = new.denomination * Decimal::from(new.quantity);
        let discount =
            (order_total * new.product.discount_percent() / Decimal::ONE_HUNDRED).round_dp(2);
        let charged = order_total - discount;
        if charged > self.balance {
            return Err(ApiError::new(
                422,
                "PLE10010",
                "Failed to redeem points",
                "Insufficient balance in the account",
            ));
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
        let order_id = self.next_id;
        self.next_id += 1;
        let now = Utc::now();
        let mut order = LedgerOrder {
            po_number: new.po_number,
            order_id,
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
        };
        if !new.product.is_delayed() {
            deliver(&mut order);
        }
        order
    }

    fn insert(&mut self, order: LedgerOrder, hidden_until: Option<Instant>) {
        let idx = self.orders.len();
        if !order.po_number.is_empty() {
            self.by_po.insert(order.po_number.clone(), idx);
        }
        self.by_id.insert(order.order_id, idx);
        self.orders.push(Stored {
            order,
            hidden_until,
        });
    }

    fn view(&self, s: &Stored) -> LedgerOrder {
        let mut o = s.order.clone();
        o.place_calls = self.place_calls(&o.po_number);
        o
    }

    pub(crate) fn all(&self) -> Vec<LedgerOrder> {
        self.orders.iter().map(|s| self.view(s)).collect()
    }

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
            deliver(order);
        } else {
            order.delivery_status = "canceled".into();
            order.delivery_date = plum_date(Utc::now());
            self.balance += order.amount_charged;
        }
        Some(self.view(&self.orders[idx]))
    }
}

fn deliver(order: &mut LedgerOrder) {
    let now = Utc::now();
    let validity = (now + chrono::Duration::days(365))
        .format("%Y-%m-%d")
        .to_string();
    order.vouchers = (0..order.quantity)
        .map(|_| Voucher {
            code: voucher_code(),
            pin: pin(),
            validity: validity.clone(),
            amount: order.denomination,
        })
        .collect();
    order.delivery_status = "delivered".into();
    order.delivery_date = plum_date(now);
}

fn voucher_code() -> String {
    let mut rng = rand::thread_rng();
    let group = |rng: &mut rand::rngs::ThreadRng| -> String {
        (0..4)
            .map(|_| char::from(rng.sample(Alphanumeric)).to_ascii_uppercase())
            .collect()
    };
    format!(
        "EMU-{}-{}-{}",
        group(&mut rng),
        group(&mut rng),
        group(&mut rng)
    )
}

fn pin() -> String {
    let mut rng = rand::thread_rng();
    let digits = rng.gen_range(4..=6);
    (0..digits)
        .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
        .collect()
}
