//! The health of the Xoxoday token pair as this process sees it: the one
//! list of its states and their stable names (metrics, `/readyz`, logs).

/// State of the token pair, for `/readyz` and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TokenState {
    /// Not loaded yet.
    #[default]
    Unknown,
    /// Usable; the last refresh (if any) worked.
    Ok,
    /// The last refresh failed for a passing reason; it is retried.
    Failing,
    /// Xoxoday refused the refresh token: an operator must store a new pair.
    OperatorActionRequired,
}

impl TokenState {
    /// Every state, so a scrape reports zeros too.
    pub const ALL: [Self; 4] = [
        Self::Unknown,
        Self::Ok,
        Self::Failing,
        Self::OperatorActionRequired,
    ];

    /// Stable name for metrics and logs (the `state` label of
    /// `order_gateway_xoxoday_token_state`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Ok => "ok",
            Self::Failing => "failing",
            Self::OperatorActionRequired => "operator_action_required",
        }
    }
}
