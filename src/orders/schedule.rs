//! What `serve` runs on a schedule for operators and finance (issue 12):
//! the books audit every `BOOKS_AUDIT_INTERVAL` over the last 3 days, one
//! replica at a time (a lease row), the first one interval after start and
//! never at start.

use std::{sync::Arc, time::Duration};

use chrono::{Days, Utc};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::books::{AuditError, BooksAudit};
use crate::store::Store;

/// Days the scheduled audit covers, today (UTC) included.
pub const SCHEDULED_DAYS: u64 = 3;
/// Longest a replica holds the scheduled audit's lease.
const AUDIT_LEASE: Duration = Duration::from_secs(30 * 60);

/// Runs the books audit every `interval` until `shutdown`; a zero interval
/// never runs it.
pub async fn run_books_audits(
    audit: Arc<BooksAudit>,
    store: Store,
    interval: Duration,
    shutdown: CancellationToken,
) {
    if interval.is_zero() {
        return;
    }
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        let claimed = match store.claim_books_schedule(interval, AUDIT_LEASE).await {
            Ok(Some(claimed)) => claimed,
            Ok(None) => continue,
            Err(e) => {
                warn!(error = %e, "could not claim the scheduled books audit; next interval");
                continue;
            }
        };
        let to = Utc::now().date_naive();
        let from = to
            .checked_sub_days(Days::new(SCHEDULED_DAYS - 1))
            .unwrap_or(to);
        let run = tokio::select! {
            () = shutdown.cancelled() => None,
            r = audit.run(from, to, "serve") => Some(r),
        };
        match run {
            Some(Ok(report)) if report.findings.is_empty() => {
                info!(
                    run = report.run,
                    "books audit: the books agree with Xoxoday"
                );
            }
            Some(Ok(report)) => warn!(
                run = report.run,
                findings = report.findings.len(),
                "books audit: findings for finance (see finance_audit_findings)"
            ),
            Some(Err(AuditError::Upstream { run, reason })) => {
                warn!(run, "books audit could not run: {reason}");
            }
            Some(Err(e)) => warn!(error = %e, "books audit could not run"),
            None => {}
        }
        if let Err(e) = store.release_books_schedule(claimed).await {
            warn!(error = %e, "could not release the books audit lease; it lapses");
        }
    }
}
