//! What `/readyz` and `/metrics` report, read from the store with bounded
//! waits so a slow database can neither hang a probe nor a scrape. Ready
//! means: the database answers, migrations are applied, the Xoxoday token
//! pair is usable, and no hold or account-wide pause stops sending.

use std::time::Duration;

use super::{OPERATOR_ACTION, OrderQueries};
use crate::store::{StoreError, StoreResult, rate_limit::ALL_OPERATIONS, tokens::TokenRow};

/// The answer of a readiness check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Everything needed to place orders is in place.
    Ready,
    /// The database answered, but migrations are still to be applied.
    MigrationsPending,
    /// The database did not answer (in time).
    DatabaseUnavailable,
    /// The token pair is missing or refused; the reason is for an operator.
    TokensUnusable(String),
    /// A hold or an account-wide pause stops sending; the reason says which.
    Paused(String),
}

impl OrderQueries {
    /// Readiness as `/readyz` reports it (the store is given 3 s).
    pub async fn readiness(&self) -> Readiness {
        let store = self.store();
        let check = tokio::time::timeout(Duration::from_secs(3), async {
            Ok::<_, StoreError>((store.is_ready().await?, store.load_tokens().await?))
        })
        .await;
        match check {
            Ok(Ok((false, _))) => Readiness::MigrationsPending,
            Ok(Ok((true, tokens))) => match token_problem(tokens.as_ref()) {
                Some(reason) => Readiness::TokensUnusable(reason),
                None => match self.account_pause().await {
                    Ok(Some(reason)) => Readiness::Paused(reason),
                    Ok(None) | Err(_) => Readiness::Ready,
                },
            },
            Ok(Err(_)) | Err(_) => Readiness::DatabaseUnavailable,
        }
    }

    /// What `/readyz` shows without failing: a wallet balance under
    /// `XOXODAY_LOW_BALANCE` (the last read, whichever replica made it).
    pub async fn readiness_warnings(&self) -> Vec<String> {
        let reading = tokio::time::timeout(Duration::from_secs(2), self.store().last_balance())
            .await
            .ok()
            .and_then(Result::ok)
            .flatten();
        reading
            .and_then(|r| super::balance::low_balance_warning(&r, self.low_balance()))
            .into_iter()
            .collect()
    }

    /// The Prometheus exposition text: process metrics, plus order gauges
    /// and holds when the database answered within 2 s.
    pub async fn metrics_text(&self) -> String {
        let token = self
            .tokens()
            .health()
            .map(|h| (h.state, h.refreshes, h.refresh_failures));
        let counts =
            tokio::time::timeout(Duration::from_secs(2), self.store().order_status_counts())
                .await
                .ok()
                .and_then(Result::ok);
        let holds = tokio::time::timeout(Duration::from_secs(2), self.store().active_holds())
            .await
            .ok()
            .and_then(Result::ok);
        let reasons: Option<Vec<&str>> = holds
            .as_ref()
            .map(|h| h.iter().map(|h| h.kind.as_str()).collect());
        crate::metrics::set_holds(reasons.as_deref());
        let audit =
            tokio::time::timeout(Duration::from_secs(2), self.store().last_successful_audit())
                .await
                .ok()
                .and_then(Result::ok)
                .flatten();
        let kinds = super::books::FindingKind::ALL.map(super::books::FindingKind::as_str);
        crate::metrics::set_books_audit(audit, &kinds);
        let balance = tokio::time::timeout(Duration::from_secs(2), self.store().last_balance())
            .await
            .ok()
            .and_then(Result::ok)
            .flatten();
        if let Some(reading) = balance {
            let currency = reading.currency.as_deref().unwrap_or("other");
            crate::metrics::set_balance(currency, reading.balance);
            let low = super::balance::low_balance_warning(&reading, self.low_balance());
            crate::metrics::set_balance_low(low.is_some());
        }
        crate::metrics::render(counts.as_deref(), token)
    }

    /// The account-wide pause in force, if any (for `/readyz`): a hold (a
    /// refused token, an insufficient balance) first, then a systemic pause.
    pub async fn account_pause(&self) -> StoreResult<Option<String>> {
        if let Some(hold) = self.store().active_holds().await?.into_iter().next() {
            return Ok(Some(hold.reason));
        }
        let pauses = self.store().active_pauses().await?;
        Ok(pauses
            .into_iter()
            .find(|p| p.operation == ALL_OPERATIONS)
            .map(|p| format!("{} (until {})", p.reason, p.paused_until.to_rfc3339())))
    }
}

/// Why the stored token pair is not usable, in operator terms.
fn token_problem(row: Option<&TokenRow>) -> Option<String> {
    let Some(row) = row else {
        return Some("no Xoxoday token pair is stored: set XOXODAY_ACCESS_TOKEN and XOXODAY_REFRESH_TOKEN and restart".into());
    };
    let error = row.last_refresh_error.as_deref().unwrap_or("unknown error");
    if row.operator_action_required {
        return Some(format!("{OPERATOR_ACTION} ({error})"));
    }
    let failing = row
        .last_refresh_failed_at
        .is_some_and(|failed| row.last_refresh_at.is_none_or(|ok| failed > ok));
    failing.then(|| format!("Xoxoday token refresh failing, retrying automatically ({error})"))
}
