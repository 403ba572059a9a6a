//! Late creation (`Fault::LateCreate`): the placeOrder call ends with no
//! order (5xx, dropped, or held and then dropped), and the order appears
//! only `after` the call ended, so getOrderDetails says 404 PLE10016 in the
//! gap. The late order skips the poNumber check, as if Xoxoday did not
//! dedupe an in-flight call: a retry in the gap makes a second order and the
//! ledger keeps both.
//!
//! Invariant: the timer starts when the call ends however it ends (answer,
//! dropped connection, or the client leaving a held call): a guard owns the
//! order-to-be and starts the timer when dropped. Only an emulator shutdown
//! cancels a late creation.

use std::{sync::Arc, time::Duration};

use axum::response::{IntoResponse as _, Response};
use serde_json::Value;

use super::{
    faults::LateAnswer,
    ledger::NewOrder,
    place,
    server::{ConnKill, drop_or_502},
    state::Shared,
    wire::ApiError,
};

/// Handles an admitted placeOrder call under `Fault::LateCreate`. A body
/// that fails validation is refused as usual and creates nothing.
pub(crate) async fn place_late(
    shared: &Arc<Shared>,
    data: &Value,
    after: Duration,
    answer: LateAnswer,
    kill: Option<ConnKill>,
) -> Response {
    let new = match place::parse(data) {
        Ok(new) => new,
        Err(e) => return e.into_response(),
    };
    let guard = LateGuard::new(shared, new, after);
    match answer {
        LateAnswer::Error { status } => {
            drop(guard);
            ApiError::upstream(status).into_response()
        }
        LateAnswer::Drop => {
            drop(guard);
            drop_or_502(kill).await
        }
        LateAnswer::Respond { status, body } => {
            drop(guard);
            crate::emulator::wire::json_response(status, body)
        }
        LateAnswer::Hang(hold) => {
            tokio::time::sleep(hold).await;
            drop(guard);
            drop_or_502(kill).await
        }
    }
}

/// Owns an order to create late; dropping it starts the timer.
struct LateGuard {
    shared: Arc<Shared>,
    new: Option<NewOrder>,
    after: Duration,
}

impl LateGuard {
    fn new(shared: &Arc<Shared>, new: NewOrder, after: Duration) -> Self {
        shared.lock().late_pending += 1;
        Self {
            shared: Arc::clone(shared),
            new: Some(new),
            after,
        }
    }
}

impl Drop for LateGuard {
    fn drop(&mut self) {
        let Some(new) = self.new.take() else { return };
        let (shared, after) = (Arc::clone(&self.shared), self.after);
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            shared.lock().late_pending -= 1;
            return;
        };
        rt.spawn(async move {
            tokio::select! {
                () = shared.shutdown.cancelled() => {}
                () = tokio::time::sleep(after) => create(&shared, new),
            }
            shared.lock().late_pending -= 1;
        });
    }
}

fn create(shared: &Arc<Shared>, new: NewOrder) {
    let po = new.po_number.clone();
    let created = shared.lock().ledger.create_unchecked(new, None);
    match created {
        Ok(order) => place::schedule_delivery(shared, &order),
        Err(e) => tracing::warn!(po_number = %po, error = %e.error, "late creation refused"),
    }
}
