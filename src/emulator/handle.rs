//! [`EmulatorHandle`]: what a test holds to read the ledger and flip the
//! fault switches of a running emulator.

use std::{net::SocketAddr, sync::Arc};

use rust_decimal::Decimal;

use super::{
    config::EmptyHistory,
    faults::{Fault, FaultOp, FaultRates},
    hostile::HostileText,
    ledger::LedgerOrder,
    limits::RateLimits,
    state::{Shared, WebhookAttempt},
    webhook,
};

/// A running emulator. Cheap to clone; every clone controls the same one.
#[derive(Clone)]
pub struct EmulatorHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl EmulatorHandle {
    pub(crate) fn new(shared: Arc<Shared>, addr: SocketAddr) -> Self {
        Self { shared, addr }
    }

    /// A handle for the admin routes (the address is not needed there).
    pub(crate) fn from_shared(shared: Arc<Shared>) -> Self {
        Self::new(shared, SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// The bound address (the real port when configured with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT/chef`; the gateway calls `{base}/v1/oauth/api`.
    pub fn base_url(&self) -> String {
        format!("http://{}/chef", self.addr)
    }

    /// Every order created, oldest first.
    pub fn orders(&self) -> Vec<LedgerOrder> {
        self.shared.lock().ledger.all()
    }

    /// The order created for this poNumber, if any.
    pub fn order(&self, po_number: &str) -> Option<LedgerOrder> {
        self.shared.lock().ledger.by_po(po_number)
    }

    /// Every order created for this poNumber, oldest first: more than one
    /// only after a late creation (or an admin injection) duplicated it.
    pub fn orders_for(&self, po_number: &str) -> Vec<LedgerOrder> {
        self.shared.lock().ledger.all_by_po(po_number)
    }

    /// The poNumbers that have more than one order, sorted.
    pub fn duplicated_po_numbers(&self) -> Vec<String> {
        self.shared.lock().ledger.duplicated_po_numbers()
    }

    /// Late creations (`Fault::LateCreate`) whose order is not created yet.
    pub fn late_creations_pending(&self) -> usize {
        self.shared.lock().late_pending
    }

    /// How many placeOrder calls carried this poNumber, including refused,
    /// rate-limited, unauthenticated and faulted ones.
    pub fn place_calls(&self, po_number: &str) -> u32 {
        self.shared.lock().ledger.place_calls(po_number)
    }

    /// Queues a one-shot fault for the next admitted call of `op` (FIFO).
    pub fn push_fault(&self, op: FaultOp, fault: Fault) {
        self.shared.lock().faults.push(op, fault);
    }

    /// Queues a one-shot fault for the next placeOrder carrying `po_number`;
    /// it wins over faults queued with [`Self::push_fault`].
    pub fn fault_for_po(&self, po_number: &str, fault: Fault) {
        self.shared.lock().faults.push_for_po(po_number, fault);
    }

    /// Replaces the random placeOrder fault rates.
    pub fn set_fault_rates(&self, rates: FaultRates) {
        self.shared.lock().faults.set_rates(rates);
    }

    /// Replaces the rate limits (windows already counted are kept).
    pub fn set_rate_limits(&self, limits: RateLimits) {
        self.shared.lock().limiter.set_limits(limits);
    }

    /// The current access token answers `invalid_token` from now on; the
    /// refresh token still works.
    pub fn expire_access_token(&self) {
        self.shared.lock().tokens.access_expired = true;
    }

    /// Sticky token refusal: while `on`, every access token answers 401
    /// `invalid_token`, even one issued by a refresh made meanwhile (the
    /// refresh itself still succeeds and rotates the pair).
    pub fn refuse_tokens(&self, on: bool) {
        self.shared.lock().tokens.refuse_all = on;
    }

    /// Whether sticky token refusal is on.
    pub fn refusing_tokens(&self) -> bool {
        self.shared.lock().tokens.refuse_all
    }

    /// Calls that reached the refresh endpoint so far (any outcome, faults
    /// included).
    pub fn refresh_calls(&self) -> u32 {
        self.shared.lock().tokens.refresh_calls
    }

    /// The currently valid `(access, refresh)` pair.
    pub fn current_tokens(&self) -> (String, String) {
        let g = self.shared.lock();
        (g.tokens.access.clone(), g.tokens.refresh.clone())
    }

    /// Sets (or clears) the webhook URL and `x-api-key`, and re-enables a
    /// webhook disabled after failed deliveries.
    pub fn set_webhook(&self, url: Option<String>, api_key: Option<String>) {
        let mut g = self.shared.lock();
        g.webhook.url = url;
        g.webhook.api_key = api_key;
        g.webhook.disabled = false;
    }

    /// Whether the webhook was disabled after four failed attempts.
    pub fn webhook_disabled(&self) -> bool {
        self.shared.lock().webhook.disabled
    }

    /// Every webhook POST attempt so far.
    pub fn webhook_attempts(&self) -> Vec<WebhookAttempt> {
        self.shared.lock().webhook.attempts.clone()
    }

    /// Settles a pending order now (delivered or canceled) and fires its
    /// webhook. False when there is no pending order with this poNumber.
    pub fn settle_pending(&self, po_number: &str, delivered: bool) -> bool {
        let Some(order) = self.order(po_number) else {
            return false;
        };
        webhook::settle(&self.shared, order.order_id, delivered)
    }

    /// The wallet balance.
    pub fn balance(&self) -> Decimal {
        self.shared.lock().ledger.balance
    }

    /// Sets the wallet balance.
    pub fn set_balance(&self, balance: Decimal) {
        self.shared.lock().ledger.balance = balance;
    }

    /// Hostile text switch: while `Some`, every `/v1/oauth/api` answer (voucher
    /// fields, `errorInfo`, an extra `emulatorNote`) and every webhook
    /// (`deliveryStatus`, `emulatorNote`) carries this text; `None` stops it.
    pub fn set_hostile_text(&self, text: Option<HostileText>) {
        self.shared.lock().hostile = text;
    }

    /// What getOrderHistory answers for an empty window or page.
    pub fn set_empty_history(&self, answer: EmptyHistory) {
        self.shared.lock().empty_history = answer;
    }

    /// Creates and charges a delivered order the gateway never sent
    /// (quantity 1, no discount, `amountCharged` = `amount`), skipping the
    /// poNumber check. Errs on an unknown product, a non-positive amount or
    /// a short balance.
    pub fn inject_order(
        &self,
        po_number: &str,
        amount: Decimal,
        product_id: i64,
    ) -> Result<LedgerOrder, String> {
        let injected = self
            .shared
            .lock()
            .ledger
            .inject(po_number, amount, product_id);
        injected.map_err(|e| e.error)
    }

    /// Forgets an order (getOrderDetails, history and the ledger no longer
    /// show it; the balance is unchanged). False when there is none.
    pub fn delete_order(&self, order_id: i64) -> bool {
        self.shared.lock().ledger.delete(order_id).is_some()
    }

    /// Rewrites an order's `amountCharged` (the balance is unchanged).
    /// False when there is no such order.
    pub fn set_order_amount(&self, order_id: i64, amount: Decimal) -> bool {
        self.shared
            .lock()
            .ledger
            .set_amount(order_id, amount)
            .is_some()
    }

    /// Stops accepting, closes open connections and stops delayed delivery.
    pub fn shutdown(&self) {
        self.shared.shutdown.cancel();
    }
}
