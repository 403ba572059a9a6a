//! Admin edits that make the ledger disagree with what the gateway did, for
//! a books audit: an order the gateway never sent, a vanished order, a
//! changed amount. Injection skips the poNumber check on purpose; the
//! balance is touched only by injection (which charges, like any order).

use rust_decimal::Decimal;

use super::{Ledger, LedgerOrder, NewOrder, insufficient_balance};
use crate::emulator::{catalog, wire::ApiError};

impl Ledger {
    /// Creates a delivered order of `amount` (quantity 1, no discount) for
    /// `po_number` on `product_id`, and charges it, as if the gateway had
    /// placed it. Refused when the product is unknown, the amount is not
    /// positive or the balance is short.
    pub(crate) fn inject(
        &mut self,
        po_number: &str,
        amount: Decimal,
        product_id: i64,
    ) -> Result<LedgerOrder, ApiError> {
        let product = catalog::find(product_id)
            .ok_or_else(|| ApiError::place_validation(format!("unknown productId {product_id}")))?;
        if amount <= Decimal::ZERO {
            return Err(ApiError::place_validation("amount must be positive"));
        }
        if amount > self.balance {
            return Err(insufficient_balance());
        }
        self.balance -= amount;
        let new = NewOrder {
            product,
            quantity: 1,
            denomination: amount,
            po_number: po_number.to_string(),
            tag: String::new(),
            email: None,
            contact: None,
            hostile: None,
        };
        let mut order = self.build(new, amount, Decimal::ZERO, amount);
        if product.is_delayed() {
            super::vouchers::deliver(&mut order);
        }
        self.insert(order.clone(), None);
        Ok(order)
    }

    /// Forgets an order, as if Xoxoday had no record of it (the balance is
    /// left alone). `None` when there is no such live order.
    pub(crate) fn delete(&mut self, order_id: i64) -> Option<LedgerOrder> {
        let idx = self.by_id.remove(&order_id)?;
        self.orders[idx].deleted = true;
        let po = self.orders[idx].order.po_number.clone();
        if self.by_po.get(&po) == Some(&idx) {
            let next = (0..self.orders.len())
                .find(|i| !self.orders[*i].deleted && self.orders[*i].order.po_number == po);
            match next {
                Some(i) => self.by_po.insert(po, i),
                None => self.by_po.remove(&po),
            };
        }
        Some(self.view(&self.orders[idx]))
    }

    /// Rewrites an order's `amountCharged` (the balance is left alone).
    pub(crate) fn set_amount(&mut self, order_id: i64, amount: Decimal) -> Option<LedgerOrder> {
        let idx = *self.by_id.get(&order_id)?;
        self.orders[idx].order.amount_charged = amount;
        Some(self.view(&self.orders[idx]))
    }
}
