//! Lease renewal: while a claimed order's work runs, its lease is extended
//! every third of its length, so a slow but live call is never taken over.
//! A lost lease is not an error here: every write-back is fenced anyway.
//! Leases that ran out are moved on with the latest possible end of their call.

use std::future::Future;

use tracing::warn;
use uuid::Uuid;

use super::Dispatcher;
use crate::domain::OrderId;

impl Dispatcher {
    /// Runs `work` while renewing the lease `token` of `order`.
    pub(crate) async fn with_heartbeat<T>(
        &self,
        order: OrderId,
        token: Uuid,
        work: impl Future<Output = T>,
    ) -> T {
        let lease = self.settings().lease;
        let beat = async {
            loop {
                tokio::time::sleep(lease / 3).await;
                match self.store().renew_lease(order, token, lease).await {
                    Ok(true) => {}
                    Ok(false) => {
                        warn!("lease lost while working; the write-back will be fenced");
                        std::future::pending::<()>().await;
                    }
                    Err(e) => warn!(error = %e, "lease renewal failed; retrying"),
                }
            }
        };
        tokio::select! {
            out = work => out,
            () = beat => unreachable!("the heartbeat never ends"),
        }
    }
}
