//! The matching rules of the books audit (contract §8), a pure function
//! of our orders and Xoxoday's: one finding per poNumber and kind, both
//! kinds when two apply, each upstream order without a poNumber its own
//! `unknown_upstream`.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use super::{Finding, FindingKind};
use crate::{store::books::BookOrder, xoxoday::HistoryOrder};

fn ours_json(o: &BookOrder) -> Value {
    json!({
        "orderId": o.order_id,
        "status": o.status,
        "amountCharged": o.amount_charged.map(|a| a.normalize().to_string()),
        "currency": o.currency_code,
        "xoxodayOrderId": o.xoxoday_order_id,
        "createdAt": o.created_at,
    })
}

fn theirs_json(u: &HistoryOrder) -> Value {
    let delivery = match &u.delivery_status {
        crate::xoxoday::DeliveryStatus::Delivered => "delivered".to_owned(),
        crate::xoxoday::DeliveryStatus::Pending => "pending".to_owned(),
        crate::xoxoday::DeliveryStatus::Canceled => "canceled".to_owned(),
        crate::xoxoday::DeliveryStatus::Other(s) => s.clone(),
    };
    json!({
        "orderId": u.order_id,
        "amountCharged": u.amount_charged.map(|a| a.normalize().to_string()),
        "currency": u.currency_code,
        "deliveryStatus": delivery,
        "orderDate": u.order_date,
    })
}

const SPENT_STATUSES: [&str; 4] = ["failed", "needs_review", "reconciling", "accepted"];
const BOOKED_STATUSES: [&str; 2] = ["completed", "pending_delivery"];

/// The findings: `window` is our orders of the audited days, `by_po` our
/// orders of every poNumber involved, `upstream` Xoxoday's orders of the
/// wider window. Sorted by poNumber, then kind.
pub fn compare(
    window: &[BookOrder],
    by_po: &HashMap<String, BookOrder>,
    upstream: &[HistoryOrder],
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut groups: BTreeMap<&str, Vec<&HistoryOrder>> = BTreeMap::new();
    for u in upstream {
        match &u.po_number {
            Some(po) => groups.entry(po.as_str()).or_default().push(u),
            None => findings.push(Finding {
                po_number: String::new(),
                kind: FindingKind::UnknownUpstream,
                ours: None,
                theirs: json!([theirs_json(u)]),
            }),
        }
    }
    for (po, theirs) in &groups {
        let list = Value::Array(theirs.iter().map(|u| theirs_json(u)).collect());
        let mut push = |kind, ours: Option<&BookOrder>| {
            findings.push(Finding {
                po_number: (*po).to_owned(),
                kind,
                ours: ours.map(ours_json),
                theirs: list.clone(),
            });
        };
        let Some(ours) = by_po.get(*po) else {
            push(FindingKind::UnknownUpstream, None);
            continue;
        };
        if theirs.len() > 1 {
            push(FindingKind::DuplicateUpstream, Some(ours));
        }
        if SPENT_STATUSES.contains(&ours.status.as_str()) {
            push(FindingKind::SpentButNotCompleted, Some(ours));
        }
        if BOOKED_STATUSES.contains(&ours.status.as_str()) {
            let matched = theirs
                .iter()
                .find(|u| Some(u.order_id) == ours.xoxoday_order_id)
                .unwrap_or(&theirs[0]);
            let amount_differs = matched.amount_charged.map(|a| a.normalize())
                != ours.amount_charged.map(|a| a.normalize());
            let currency_differs = match (&matched.currency_code, &ours.currency_code) {
                (Some(a), Some(b)) => !a.eq_ignore_ascii_case(b),
                (a, b) => a.is_some() != b.is_some(),
            };
            if amount_differs || currency_differs {
                push(FindingKind::AmountMismatch, Some(ours));
            }
        }
    }
    for ours in window {
        if BOOKED_STATUSES.contains(&ours.status.as_str())
            && !groups.contains_key(ours.po_number.as_str())
        {
            findings.push(Finding {
                po_number: ours.po_number.clone(),
                kind: FindingKind::MissingUpstream,
                ours: Some(ours_json(ours)),
                theirs: json!([]),
            });
        }
    }
    findings.sort_by(|a, b| {
        (a.po_number.as_str(), a.kind, a.theirs.to_string()).cmp(&(
            b.po_number.as_str(),
            b.kind,
            b.theirs.to_string(),
        ))
    });
    findings
}
