//! The shape every background worker shares: run one pass, and unless the
//! pass was full, sleep until the poll interval passes, a wake-up arrives or
//! shutdown is asked for. A failed pass is logged and retried after the same
//! sleep, never fatal: work stays claimable in the store. Also the one
//! retry jitter, so replicas do not retry in step.

use std::{future::Future, sync::Arc, time::Duration};

use tokio::{sync::Notify, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::store::StoreResult;

/// The wake-ups of the two background loops, shared by every role that
/// makes work due. Cheap to clone.
#[derive(Clone, Default)]
pub struct Wakes {
    dispatcher: Arc<Notify>,
    reconciler: Arc<Notify>,
}

impl Wakes {
    /// New orders to place are due.
    pub(crate) fn dispatcher(&self) -> &Notify {
        &self.dispatcher
    }

    /// Orders to check are due.
    pub(crate) fn reconciler(&self) -> &Notify {
        &self.reconciler
    }
}

/// How one worker is paced.
pub(crate) struct Pace<'a> {
    /// Name in the log line of a failed pass (`dispatcher`, `reconciler`).
    pub name: &'static str,
    /// A pass that claimed this many items was full: run the next at once.
    pub batch: i64,
    /// Sleep between passes when idle.
    pub poll_interval: Duration,
    /// Ends the sleep early (new work was made due).
    pub wake: &'a Notify,
}

/// Runs `pass` until `shutdown`; each pass returns the handles it spawned.
pub(crate) async fn run_worker<F, Fut>(pace: Pace<'_>, shutdown: CancellationToken, mut pass: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = StoreResult<Vec<JoinHandle<()>>>>,
{
    while !shutdown.is_cancelled() {
        let busy = match pass().await {
            Ok(handles) => handles.len() as i64 >= pace.batch,
            Err(e) => {
                warn!(error = %e, "{} pass failed; retrying", pace.name);
                false
            }
        };
        if !busy {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(pace.poll_interval) => {}
                () = pace.wake.notified() => {}
            }
        }
    }
}

/// `d` scaled by a random factor in 0.8..1.2, so replicas do not retry in step.
pub(crate) fn jitter(d: Duration) -> Duration {
    use rand::Rng as _;
    d.mul_f64(rand::thread_rng().gen_range(0.8..1.2))
}
