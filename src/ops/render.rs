//! How `orders show` and `audit books` print: the contract's JSON shapes
//! (§8), or plain tables for a person. Voucher codes appear only in the
//! JSON (the operator's copy); the tables say how many there are.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::{
    http::orders::OrderOut,
    orders::{OrderView, books::Report},
    store::timeline::{ExchangeSummary, TimelineEntry},
};

fn at(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.3fZ").to_string()
}

/// `{"order", "timeline", "exchanges"}`.
pub fn show_json(order: &OrderOut, timeline: &[TimelineEntry], ex: &[ExchangeSummary]) -> Value {
    let timeline: Vec<Value> = timeline
        .iter()
        .map(|t| {
            json!({"at": t.at, "from": t.from_status, "to": t.to_status,
                   "reason": t.reason, "actor": t.actor})
        })
        .collect();
    let exchanges: Vec<Value> = ex
        .iter()
        .map(|e| {
            json!({"at": e.started_at, "operation": e.operation, "httpStatus": e.response_status,
                   "errorId": e.error_id(), "durationMs": e.duration_ms, "outcome": e.outcome})
        })
        .collect();
    json!({"order": order, "timeline": timeline, "exchanges": exchanges})
}

/// Rows as aligned columns, the header first.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        let mut text = String::from("  ");
        for (i, c) in cells.iter().enumerate() {
            if i == last {
                text.push_str(c);
            } else {
                let _ = write!(text, "{c:<w$}  ", w = widths[i]);
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
    out
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// The order, its timeline and its exchanges as tables.
pub fn show_text(view: &OrderView, timeline: &[TimelineEntry], ex: &[ExchangeSummary]) -> String {
    let o = &view.order;
    let mut out = String::new();
    let _ = writeln!(out, "order     {}", o.id);
    let _ = writeln!(out, "poNumber  {}", o.po_number);
    let _ = writeln!(
        out,
        "status    {}{}",
        o.status.as_str(),
        o.status_reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "product   {} x {} at {}",
        o.product_id, o.quantity, o.denomination
    );
    let charged = match (o.amount_charged, o.currency_code.as_deref()) {
        (Some(a), Some(c)) => format!("{} {c}", a.normalize()),
        (Some(a), None) => a.normalize().to_string(),
        (None, _) => "-".to_owned(),
    };
    let _ = writeln!(
        out,
        "xoxoday   order {}, charged {charged}, delivery {}, {} voucher(s) (codes: --json)",
        opt(o.xoxoday_order_id),
        o.delivery_status.as_deref().unwrap_or("-"),
        view.vouchers.len()
    );
    let _ = writeln!(
        out,
        "created   {}   settled {}   attempts {}",
        at(&o.created_at),
        o.settled_at.as_ref().map_or_else(|| "-".to_owned(), at),
        o.attempts
    );
    out.push_str("\ntimeline\n");
    let rows: Vec<Vec<String>> = timeline
        .iter()
        .map(|t| {
            vec![
                at(&t.at),
                opt(t.from_status.as_deref()),
                t.to_status.clone(),
                t.actor.clone(),
                opt(t.reason.as_deref()),
            ]
        })
        .collect();
    out.push_str(&table(&["at", "from", "to", "actor", "reason"], &rows));
    out.push_str("\nexchanges with Xoxoday\n");
    let rows: Vec<Vec<String>> = ex
        .iter()
        .map(|e| {
            vec![
                at(&e.started_at),
                e.operation.clone(),
                opt(e.response_status),
                opt(e.error_id()),
                opt(e.duration_ms.map(|d| format!("{d} ms"))),
                opt(e.outcome.as_deref().or(e.error.as_deref())),
            ]
        })
        .collect();
    out.push_str(&table(
        &["at", "operation", "http", "errorId", "duration", "outcome"],
        &rows,
    ));
    out
}

/// `{"run", "from", "to", "findings": [{"poNumber", "kind", "ours", "theirs"}]}`.
pub fn audit_json(r: &Report) -> Value {
    let findings: Vec<Value> = r
        .findings
        .iter()
        .map(|f| {
            json!({"poNumber": f.po_number, "kind": f.kind.as_str(),
                   "ours": f.ours, "theirs": f.theirs})
        })
        .collect();
    json!({"run": r.run, "from": r.from.to_string(), "to": r.to.to_string(), "findings": findings})
}

fn side(v: Option<&Value>) -> String {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return "-".into();
    };
    let one = |o: &Value| {
        let text = |k: &str| {
            o.get(k)
                .and_then(|x| {
                    x.as_str()
                        .map(str::to_owned)
                        .or_else(|| (!x.is_null()).then(|| x.to_string()))
                })
                .unwrap_or_else(|| "-".into())
        };
        let status = o
            .get("status")
            .map_or_else(|| text("deliveryStatus"), |_| text("status"));
        let id = if o.get("status").is_some() {
            String::new()
        } else {
            format!("#{} ", text("orderId"))
        };
        format!(
            "{id}{status} {} {}",
            text("amountCharged"),
            text("currency")
        )
    };
    match v {
        Value::Array(list) if list.is_empty() => "none".into(),
        Value::Array(list) => list.iter().map(one).collect::<Vec<_>>().join("; "),
        other => one(other),
    }
}

/// The run and its findings as a table.
pub fn audit_text(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "books audit run {}: {} to {} (UTC days; Xoxoday asked one day wider), {} page(s), {} Xoxoday order(s)",
        r.run, r.from, r.to, r.pages, r.upstream_orders
    );
    if r.findings.is_empty() {
        out.push_str("the books agree: no findings\n");
        return out;
    }
    let rows: Vec<Vec<String>> = r
        .findings
        .iter()
        .map(|f| {
            let po = if f.po_number.is_empty() {
                "(none)".to_owned()
            } else {
                f.po_number.clone()
            };
            vec![
                po,
                f.kind.as_str().to_owned(),
                side(f.ours.as_ref()),
                side(Some(&f.theirs)),
            ]
        })
        .collect();
    out.push_str(&table(&["poNumber", "kind", "ours", "xoxoday"], &rows));
    let _ = writeln!(out, "{} finding(s); see docs/finance.md", r.findings.len());
    out
}
