//! The books audit (issue 12, contract §8): Xoxoday's order history against
//! our orders, by poNumber.
//!
//! getOrderHistory takes `YYYY-MM-DD` days in a zone Xoxoday does not state,
//! so it is asked for one day more on each side of the window; our side is
//! the orders accepted in the window's UTC days, and an upstream order of
//! the wider window is matched with our order of that poNumber whenever we
//! accepted it. Paging ends only at an empty page or PLE10027 (never at a
//! short page). Every page takes a slot of the shared budget and is
//! audited like every other call. Each run and each finding is stored.

use std::{collections::HashMap, sync::Arc, time::Duration};

use chrono::{Days, NaiveDate, TimeZone as _, Utc};
use serde_json::Value;
use tracing::{info, warn};
use uuid::Uuid;

use super::{AccessTokens, audit, limits::SlotTooOld};
use crate::{
    crypto::Cipher,
    store::{
        Store, StoreError,
        books::{BookOrder, NewFinding, RunEnd},
        rate_limit::SlotAsk,
    },
    xoxoday::{HistoryOrder, HistoryPage, Operation, ReadError, XoxodayApi},
};

mod compare;

pub use compare::compare;

/// Orders per getOrderHistory page, unless told otherwise.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// Most attempts at one page (throttled or failed) before the audit gives up.
const PAGE_ATTEMPTS: u32 = 5;
/// Most pages read (a guard against an upstream that ignores `page`).
const MOST_PAGES: u32 = 100_000;

/// The kinds of finding (contract §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FindingKind {
    /// Xoxoday has an order whose poNumber we never issued.
    UnknownUpstream,
    /// Xoxoday has it; ours is failed, needs_review, reconciling or accepted.
    SpentButNotCompleted,
    /// Ours is completed or pending_delivery; Xoxoday has none.
    MissingUpstream,
    /// amountCharged or currency differ.
    AmountMismatch,
    /// Two or more Xoxoday orders carry one poNumber.
    DuplicateUpstream,
}

impl FindingKind {
    /// Every kind.
    pub const ALL: [Self; 5] = [
        Self::UnknownUpstream,
        Self::SpentButNotCompleted,
        Self::MissingUpstream,
        Self::AmountMismatch,
        Self::DuplicateUpstream,
    ];

    /// The contract's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownUpstream => "unknown_upstream",
            Self::SpentButNotCompleted => "spent_but_not_completed",
            Self::MissingUpstream => "missing_upstream",
            Self::AmountMismatch => "amount_mismatch",
            Self::DuplicateUpstream => "duplicate_upstream",
        }
    }
}

/// One finding: our order (or `null`) and Xoxoday's orders for the poNumber.
#[derive(Debug, Clone)]
pub struct Finding {
    /// The poNumber (`""` for an upstream order that carries none).
    pub po_number: String,
    /// What is wrong.
    pub kind: FindingKind,
    /// Our order, as compared.
    pub ours: Option<Value>,
    /// Xoxoday's orders for the poNumber (a list; empty when none).
    pub theirs: Value,
}

/// A finished audit.
#[derive(Debug, Clone)]
pub struct Report {
    /// The stored run.
    pub run: i64,
    /// First day (UTC).
    pub from: NaiveDate,
    /// Last day (UTC).
    pub to: NaiveDate,
    /// getOrderHistory pages read.
    pub pages: u32,
    /// Xoxoday orders read.
    pub upstream_orders: usize,
    /// Every finding, by poNumber then kind.
    pub findings: Vec<Finding>,
}

/// The audit could not run to the end (stored as a failed run when it began).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Xoxoday gave no usable answer.
    #[error("audit run {run}: {reason}")]
    Upstream {
        /// The failed run.
        run: i64,
        /// Why.
        reason: String,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the audit needs, and nothing else.
pub struct BooksAudit {
    store: Store,
    xoxoday: Arc<dyn XoxodayApi>,
    tokens: Arc<dyn AccessTokens>,
    cipher: Arc<Cipher>,
    history: SlotAsk,
    page_size: u32,
}

impl BooksAudit {
    /// `history` is the shared getOrderHistory budget.
    pub fn new(
        store: Store,
        xoxoday: Arc<dyn XoxodayApi>,
        tokens: Arc<dyn AccessTokens>,
        cipher: Arc<Cipher>,
        history: SlotAsk,
    ) -> Self {
        Self {
            store,
            xoxoday,
            tokens,
            cipher,
            history,
            page_size: DEFAULT_PAGE_SIZE,
        }
    }

    /// Orders per page (at least 1).
    #[must_use]
    pub fn with_page_size(mut self, page_size: u32) -> Self {
        self.page_size = page_size.max(1);
        self
    }

    /// Audits `from..=to` (UTC days); `started_by` is `cli` or `serve`.
    pub async fn run(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        started_by: &str,
    ) -> Result<Report, AuditError> {
        let run = self.store.start_audit_run(from, to, started_by).await?;
        let wide_from = from.checked_sub_days(Days::new(1)).unwrap_or(from);
        let wide_to = to.checked_add_days(Days::new(1)).unwrap_or(to);
        let (upstream, pages) = match self.fetch_all(wide_from, wide_to).await {
            Ok(read) => read,
            Err(reason) => {
                self.store
                    .finish_audit_run(run, &[], RunEnd::Failed(&reason))
                    .await?;
                return Err(AuditError::Upstream { run, reason });
            }
        };
        let start = Utc.from_utc_datetime(&from.and_time(chrono::NaiveTime::MIN));
        let end_day = to.checked_add_days(Days::new(1)).unwrap_or(to);
        let until = Utc.from_utc_datetime(&end_day.and_time(chrono::NaiveTime::MIN));
        let window = self.store.book_orders_between(start, until).await?;
        let pos: Vec<String> = upstream
            .iter()
            .filter_map(|u| u.po_number.clone())
            .collect();
        let by_po: HashMap<String, BookOrder> = self
            .store
            .book_orders_by_po(&pos)
            .await?
            .into_iter()
            .chain(window.iter().cloned())
            .map(|o| (o.po_number.clone(), o))
            .collect();
        let findings = compare(&window, &by_po, &upstream);
        let stored: Vec<NewFinding<'_>> = findings
            .iter()
            .map(|f| NewFinding {
                po_number: &f.po_number,
                kind: f.kind.as_str(),
                ours: f.ours.as_ref(),
                theirs: &f.theirs,
            })
            .collect();
        let end = RunEnd::Compared {
            pages: i32::try_from(pages).unwrap_or(i32::MAX),
            upstream_orders: i32::try_from(upstream.len()).unwrap_or(i32::MAX),
            findings: findings.len(),
        };
        self.store.finish_audit_run(run, &stored, end).await?;
        info!(run, pages, findings = findings.len(), "books audit done");
        Ok(Report {
            run,
            from,
            to,
            pages,
            upstream_orders: upstream.len(),
            findings,
        })
    }

    /// Every upstream order of `from..=to`, page by page, and the number of
    /// pages read (the empty last one included).
    async fn fetch_all(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<(Vec<HistoryOrder>, u32), String> {
        let mut all = Vec::new();
        let mut previous_first: Option<i64> = None;
        for page in 1..=MOST_PAGES {
            let ask = HistoryPage {
                from,
                to,
                limit: self.page_size,
                page,
            };
            let items = self.fetch_page(&ask).await?;
            let Some(items) = items.filter(|i| !i.is_empty()) else {
                return Ok((all, page));
            };
            // the same first order twice: Xoxoday ignores `page`; stop
            // rather than count one page for ever
            let first = items.first().map(|o| o.order_id);
            if first.is_some() && first == previous_first {
                return Err(format!(
                    "getOrderHistory answered page {page} like page {}: paging is not honoured",
                    page - 1
                ));
            }
            previous_first = first;
            all.extend(items);
        }
        Err(format!("more than {MOST_PAGES} getOrderHistory pages"))
    }

    /// One page: `None` for PLE10027 (no order in the window or page).
    async fn fetch_page(&self, ask: &HistoryPage) -> Result<Option<Vec<HistoryOrder>>, String> {
        let mut last = String::new();
        for _ in 0..PAGE_ATTEMPTS {
            let call = self.xoxoday.prepare_order_history(ask);
            let id = Uuid::now_v7();
            // Read before the slot is taken: its send margin runs from then.
            let token = self.tokens.access_token().await;
            let stamped_after = loop {
                let start = audit::start_of(id, &call);
                match self
                    .store
                    .begin_unowned_call(start, self.history)
                    .await
                    .map_err(|e| format!("database: {e}"))?
                {
                    Ok(stamped_after) => break stamped_after,
                    Err(wait) => {
                        crate::metrics::record_rate_limit_wait("get_order_history", wait);
                        tokio::time::sleep(wait).await;
                    }
                }
            };
            if let Some(old) = SlotTooOld::check(self.history.window, stamped_after) {
                let end = audit::not_sent(Operation::GetOrderHistory, &old);
                self.store
                    .finish_unowned_call(id, &end)
                    .await
                    .map_err(|e| format!("database: {e}"))?;
                last = old.why();
                continue;
            }
            let result = self.xoxoday.get_order_history(call, &token).await;
            let label = match &result.outcome {
                Ok(_) => "history",
                Err(ReadError::Upstream(e)) if is_empty_window(e) => "empty",
                Err(ReadError::RateLimited { .. }) => "rate_limited",
                Err(ReadError::Unauthorized(_)) => "unauthorized",
                Err(_) => "failed",
            };
            let end = audit::end_of(&self.cipher, id, &result.exchange, label);
            self.store
                .finish_unowned_call(id, &end)
                .await
                .map_err(|e| format!("database: {e}"))?;
            match result.outcome {
                Ok(items) => return Ok(Some(items)),
                Err(ReadError::Upstream(e)) if is_empty_window(&e) => return Ok(None),
                Err(ReadError::RateLimited { penalty }) => {
                    warn!(penalty_s = penalty.as_secs(), "getOrderHistory throttled");
                    let why = "Xoxoday answered auth.request_limit_exceeded to getOrderHistory";
                    let _ = self
                        .store
                        .pause_operation("get_order_history", penalty, why)
                        .await;
                    last = "getOrderHistory rate-limited".into();
                    tokio::time::sleep(penalty.min(Duration::from_secs(120))).await;
                }
                Err(ReadError::Unauthorized(_)) => {
                    if !self.tokens.token_rejected(&token).await {
                        return Err("Xoxoday refuses the access token".into());
                    }
                    last = "Xoxoday refused the access token".into();
                }
                Err(ReadError::Upstream(e)) | Err(ReadError::Systemic(e)) => {
                    return Err(format!(
                        "getOrderHistory refused: HTTP {} {} {}",
                        e.http_status,
                        e.error_id.unwrap_or_default(),
                        e.error_info.unwrap_or_default()
                    ));
                }
                Err(ReadError::Failed { reason }) => {
                    last = format!("getOrderHistory failed: {reason}");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
        Err(last)
    }
}

/// PLE10027 "Failed to find order history": nothing in the window (or page).
fn is_empty_window(e: &crate::xoxoday::UpstreamError) -> bool {
    e.http_status == 404 && e.error_id.as_deref() == Some("PLE10027")
}
