//! `POST /_emulator/faults`: one-shot faults as JSON, for an operation or a
//! poNumber. Durations are humantime text (`"3s"`, `"500ms"`).

use std::sync::Arc;

use axum::{extract::State, response::Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::handle;
use crate::emulator::{
    AfterWebhook, HostileText, LateAnswer,
    faults::{Fault, FaultOp},
    state::Shared,
    wire::json_response,
};

/// `{"op": "placeOrder", "fault": {…}}` or `{"poNumber": "PO-1", "fault": {…}}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FaultRequest {
    op: Option<String>,
    po_number: Option<String>,
    fault: FaultIn,
}

/// A fault as JSON; durations are humantime text (`"3s"`, `"500ms"`).
#[derive(Debug, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
enum FaultIn {
    ErrorBeforeCreate {
        status: u16,
    },
    ErrorAfterCreate {
        status: u16,
    },
    SleepAfterCreate {
        duration: String,
    },
    DropAfterCreate,
    Slow {
        duration: String,
    },
    HiddenFromDetails {
        duration: String,
    },
    RateLimited {
        penalty_seconds: u64,
    },
    InvalidToken,
    Respond {
        status: u16,
        body: Value,
    },
    /// `answer`: `error` (with `status`, default 502), `drop`, or `hang`
    /// (with `hold`, default 30s).
    LateCreate {
        after: String,
        answer: String,
        status: Option<u16>,
        hold: Option<String>,
    },
    /// `then`: `answer`, `error` (with `status`, default 502) or `drop`.
    WebhookFirst {
        then: String,
        status: Option<u16>,
    },
    /// `text`: `nul`, `surrogate`, `long` (with `length`) or `all`.
    Hostile {
        text: String,
        length: Option<usize>,
    },
}

fn parse_op(op: &str) -> Option<FaultOp> {
    Some(match op {
        "placeOrder" => FaultOp::PlaceOrder,
        "getOrderDetails" => FaultOp::GetOrderDetails,
        "getVouchers" => FaultOp::GetVouchers,
        "getBalance" => FaultOp::GetBalance,
        "getOrderHistory" => FaultOp::GetOrderHistory,
        "refreshToken" => FaultOp::RefreshToken,
        _ => return None,
    })
}

fn dur(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("duration {s:?}: {e}"))
}

fn late(answer: &str, status: Option<u16>, hold: Option<String>) -> Result<LateAnswer, String> {
    Ok(match answer {
        "error" => LateAnswer::Error {
            status: status.unwrap_or(502),
        },
        "drop" => LateAnswer::Drop,
        "hang" => LateAnswer::Hang(dur(hold.as_deref().unwrap_or("30s"))?),
        other => return Err(format!("unknown late answer {other:?}")),
    })
}

fn after_webhook(then: &str, status: Option<u16>) -> Result<AfterWebhook, String> {
    Ok(match then {
        "answer" => AfterWebhook::Answer,
        "error" => AfterWebhook::Error {
            status: status.unwrap_or(502),
        },
        "drop" => AfterWebhook::Drop,
        other => return Err(format!("unknown webhookFirst then {other:?}")),
    })
}

fn to_fault(f: FaultIn) -> Result<Fault, String> {
    Ok(match f {
        FaultIn::ErrorBeforeCreate { status } => Fault::ErrorBeforeCreate { status },
        FaultIn::ErrorAfterCreate { status } => Fault::ErrorAfterCreate { status },
        FaultIn::SleepAfterCreate { duration } => Fault::SleepAfterCreate(dur(&duration)?),
        FaultIn::DropAfterCreate => Fault::DropAfterCreate,
        FaultIn::Slow { duration } => Fault::Slow(dur(&duration)?),
        FaultIn::HiddenFromDetails { duration } => Fault::HiddenFromDetails(dur(&duration)?),
        FaultIn::RateLimited { penalty_seconds } => Fault::RateLimited { penalty_seconds },
        FaultIn::InvalidToken => Fault::InvalidToken,
        FaultIn::Respond { status, body } => Fault::Respond { status, body },
        FaultIn::LateCreate {
            after,
            answer,
            status,
            hold,
        } => Fault::LateCreate {
            after: dur(&after)?,
            answer: late(&answer, status, hold)?,
        },
        FaultIn::WebhookFirst { then, status } => Fault::WebhookFirst {
            then: after_webhook(&then, status)?,
        },
        FaultIn::Hostile { text, length } => Fault::Hostile(
            HostileText::parse(&text, length).ok_or(format!("unknown hostile text {text:?}"))?,
        ),
    })
}

pub(super) async fn push_fault(
    State(shared): State<Arc<Shared>>,
    body: axum::body::Bytes,
) -> Response {
    let bad = |msg: String| json_response(400, json!({"error": msg}));
    let req: FaultRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad(e.to_string()),
    };
    let fault = match to_fault(req.fault) {
        Ok(f) => f,
        Err(e) => return bad(e),
    };
    let h = handle(shared);
    match (req.po_number, req.op.as_deref().map(parse_op)) {
        (Some(po), None) => h.fault_for_po(&po, fault),
        (None, Some(Some(op))) => h.push_fault(op, fault),
        _ => return bad("give exactly one of `poNumber` or a known `op`".into()),
    }
    json_response(202, json!({"queued": true}))
}
