//! The background sender, run by `serve` on every replica. It claims due
//! events with leases (one statement, serialized over replicas, see
//! [`Store::claim_notify_events`]), sends each with Standard Webhooks
//! headers, stores every attempt and either finishes the event or schedules
//! its retry. It polls the outbox every `NOTIFY_POLL_INTERVAL` (the
//! trigger sends no NOTIFY: that would serialise every write-back's commit
//! over the cluster, migration 0037). A crashed replica's claims return when
//! their lease ends, so an event is sent at least once; the receiver
//! deduplicates by `webhook-id`.

use std::sync::Arc;

use chrono::Utc;
use secrecy::SecretString;
use tokio::{
    sync::{Notify, Semaphore},
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uuid::Uuid;

use super::{
    ATTEMPT_TIMEOUT, NotifyConfig,
    address::{FilteringResolver, check_literal},
    body, metrics,
    sign::{secret_key, signature},
};
use crate::{
    crypto::Cipher,
    store::{
        Store,
        notify::{AttemptRecord, ClaimedEvent},
    },
};

/// At most this much of a response body is read and stored.
pub const MAX_RESPONSE_BYTES: usize = 4096;

/// The AAD binding an endpoint secret to its caller.
pub fn secret_aad(caller_id: Uuid) -> String {
    format!("notify-secret:{caller_id}")
}

/// The notification sender of one replica.
#[derive(Clone)]
pub struct Sender {
    store: Store,
    cipher: Arc<Cipher>,
    cfg: NotifyConfig,
    http: reqwest::Client,
    wake: Arc<Notify>,
    slots: Arc<Semaphore>,
}

/// What one attempt came to.
struct Attempt {
    outcome: &'static str,
    status: Option<u16>,
    error: Option<String>,
    response: Option<String>,
}

impl Attempt {
    fn failed(outcome: &'static str, error: String) -> Self {
        Self {
            outcome,
            status: None,
            error: Some(error),
            response: None,
        }
    }
}

impl Sender {
    /// A sender on `store`; the HTTP client follows no redirects, uses no
    /// proxy and never connects to link-local or metadata addresses.
    pub fn new(store: Store, cipher: Arc<Cipher>, cfg: NotifyConfig) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(ATTEMPT_TIMEOUT)
            .connect_timeout(ATTEMPT_TIMEOUT)
            .dns_resolver(FilteringResolver::shared())
            .user_agent(concat!(
                "order-gateway/",
                env!("CARGO_PKG_VERSION"),
                " webhooks"
            ))
            .build()?;
        let slots = Arc::new(Semaphore::new(cfg.concurrency));
        Ok(Self {
            store,
            cipher,
            cfg,
            http,
            wake: Arc::new(Notify::new()),
            slots,
        })
    }

    /// Claims and sends until `shutdown`. Sends in flight at shutdown are
    /// abandoned; their leases lapse and another replica sends them again.
    pub async fn run(self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let free = self.slots.available_permits();
            if free > 0 {
                if let Err(e) = self.claim_and_spawn(free).await {
                    warn!(error = %e, "notification claim failed; retrying");
                }
            }
            // A finished send or the poll interval starts the next pass (the outbox
            // trigger wakes no one: NOTIFY would serialise the write-backs' commits).
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(self.cfg.poll_interval) => {}
                () = self.wake.notified() => {}
            }
        }
    }

    async fn claim_and_spawn(&self, free: usize) -> crate::store::StoreResult<()> {
        let token = Uuid::now_v7();
        let events = self
            .store
            .claim_notify_events(
                token,
                self.cfg.lease,
                self.cfg.endpoint_concurrency,
                free as i64,
            )
            .await?;
        for event in events {
            let Ok(permit) = self.slots.clone().acquire_owned().await else {
                break;
            };
            let me = self.clone();
            tokio::spawn(async move {
                me.deliver(event, token).await;
                drop(permit);
                me.wake.notify_one();
            });
        }
        Ok(())
    }

    async fn deliver(&self, event: ClaimedEvent, token: Uuid) {
        let started_at = Utc::now();
        let clock = Instant::now();
        let attempt = match self.prepare(&event).await {
            Ok((body, key)) => self.send(&event, &body, &key).await,
            Err(e) => Attempt::failed("internal_error", e),
        };
        let duration = clock.elapsed();
        metrics::count_attempt(attempt.outcome);
        let record = AttemptRecord {
            seq: event.seq,
            started_at,
            duration,
            outcome: attempt.outcome,
            status_code: attempt.status,
            error: attempt.error.as_deref(),
            response: attempt.response.as_deref(),
        };
        if let Err(e) = self.store.record_notify_attempt(&record).await {
            warn!(error = %e, event = %event.event_id, "storing a notification attempt failed");
        }
        let delivered = attempt.outcome == "delivered";
        let retry_in = self
            .cfg
            .retry_delay(u32::try_from(event.attempts).unwrap_or(1));
        match self
            .store
            .finish_notify_event(event.seq, token, delivered, retry_in, self.cfg.retry_for)
            .await
        {
            Ok(Some(state)) if state == "failed" => {
                metrics::count_failed();
                warn!(event = %event.event_id, caller = %event.caller_id, attempts = event.attempts,
                      "notification failed for good after its retry window");
            }
            Ok(Some(_)) if !delivered => info!(
                event = %event.event_id, caller = %event.caller_id, outcome = attempt.outcome,
                status = attempt.status, attempts = event.attempts,
                retry_in_ms = retry_in.as_millis() as u64, "notification attempt failed; will retry"
            ),
            Ok(_) => {}
            Err(e) => {
                warn!(error = %e, event = %event.event_id, "finishing a notification failed; its lease will lapse")
            }
        }
    }

    /// The stored body (rendered and stored on first use) and the HMAC key.
    async fn prepare(
        &self,
        event: &ClaimedEvent,
    ) -> Result<(String, secrecy::SecretBox<Vec<u8>>), String> {
        let body = match &event.body {
            Some(b) => b.clone(),
            None => {
                let order = self
                    .store
                    .notify_event_snapshot(event.seq)
                    .await
                    .map_err(|e| format!("reading the event snapshot: {e}"))?;
                let rendered = body::render(&event.event_type, event.created_at, order);
                self.store
                    .store_notify_body(event.seq, &rendered)
                    .await
                    .map_err(|e| format!("storing the event body: {e}"))?
            }
        };
        let secret = self
            .cipher
            .decrypt(
                &event.secret_key_id,
                &event.secret_encrypted,
                secret_aad(event.caller_id).as_bytes(),
            )
            .map_err(|e| format!("the endpoint secret cannot be decrypted: {e}"))?;
        let secret = SecretString::from(String::from_utf8_lossy(&secret).into_owned());
        let key = secret_key(&secret).ok_or("the stored endpoint secret is malformed")?;
        Ok((body, key))
    }

    async fn send(
        &self,
        event: &ClaimedEvent,
        body: &str,
        key: &secrecy::SecretBox<Vec<u8>>,
    ) -> Attempt {
        let url = match url::Url::parse(&event.url) {
            Ok(u) => u,
            Err(e) => return Attempt::failed("internal_error", format!("stored URL: {e}")),
        };
        if let Err(e) = check_literal(&url) {
            return Attempt::failed("refused_address", e);
        }
        let timestamp = Utc::now().timestamp();
        let deadline = Instant::now() + ATTEMPT_TIMEOUT;
        let request = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &event.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                signature(key, &event.event_id, timestamp, body),
            )
            .body(body.to_owned())
            .send();
        let resp = match tokio::time::timeout_at(deadline, request).await {
            Err(_) => return Attempt::failed("timeout", "no answer within 5s".into()),
            Ok(Err(e)) => return classify(&e),
            Ok(Ok(resp)) => resp,
        };
        let status = resp.status();
        let (response, cut) = match tokio::time::timeout_at(deadline, read_capped(resp)).await {
            Ok((text, finished)) => (Some(text), !finished),
            Err(_) => (None, true),
        };
        let mut error = (!status.is_success()).then(|| format!("answered {status}"));
        if cut {
            let note = "body not finished within 5s";
            error = Some(error.map_or_else(|| note.to_owned(), |e| format!("{e}; {note}")));
        }
        Attempt {
            outcome: if status.is_success() {
                "delivered"
            } else {
                "http_error"
            },
            status: Some(status.as_u16()),
            error,
            response,
        }
    }
}

/// At most [`MAX_RESPONSE_BYTES`] of the body, as lossy UTF-8, and whether
/// the body ended (or the cap was reached) rather than failing or being cut
/// by the timeout; the rest is never read (the connection is dropped).
async fn read_capped(mut resp: reqwest::Response) -> (String, bool) {
    let mut buf = Vec::with_capacity(256);
    let mut finished = true;
    while buf.len() < MAX_RESPONSE_BYTES {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_RESPONSE_BYTES - buf.len();
                buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) => break,
            Err(_) => {
                finished = false;
                break;
            }
        }
    }
    (String::from_utf8_lossy(&buf).into_owned(), finished)
}

/// A send error as an outcome; the URL is left out (it may carry a token).
fn classify(e: &reqwest::Error) -> Attempt {
    let mut text = String::new();
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&s.to_string());
        source = s.source();
    }
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "<endpoint>");
    }
    let outcome = if text.contains("refused address") {
        "refused_address"
    } else if e.is_timeout() {
        "timeout"
    } else {
        "connect_error"
    };
    Attempt::failed(outcome, text)
}
