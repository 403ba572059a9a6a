//! Read-only views over the ledger beyond single lookups: every order of a
//! poNumber (duplicates included), the duplicated poNumbers, and the
//! getOrderHistory window. Deleted orders never appear.

use std::{collections::HashMap, time::Instant};

use chrono::NaiveDate;

use super::{Ledger, LedgerOrder};

impl Ledger {
    /// Every order created for this poNumber, oldest first.
    pub(crate) fn all_by_po(&self, po_number: &str) -> Vec<LedgerOrder> {
        self.live()
            .filter(|s| !po_number.is_empty() && s.order.po_number == po_number)
            .map(|s| self.view(s))
            .collect()
    }

    /// The non-empty poNumbers that have more than one order.
    pub(crate) fn duplicated_po_numbers(&self) -> Vec<String> {
        let mut counts: HashMap<&str, u32> = HashMap::new();
        for s in self.live().filter(|s| !s.order.po_number.is_empty()) {
            *counts.entry(&s.order.po_number).or_default() += 1;
        }
        let mut dups: Vec<String> = counts
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(po, _)| po.to_string())
            .collect();
        dups.sort();
        dups
    }

    /// The visible orders created on the days `from..=to` (UTC), oldest
    /// first, optionally only those with this `tag`.
    pub(crate) fn history(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        tag: Option<&str>,
        now: Instant,
    ) -> Vec<LedgerOrder> {
        self.live()
            .filter(|s| s.hidden_until.is_none_or(|t| now >= t))
            .filter(|s| (from..=to).contains(&s.order.created_at.date_naive()))
            .filter(|s| tag.is_none_or(|t| s.order.tag == t))
            .map(|s| self.view(s))
            .collect()
    }
}
