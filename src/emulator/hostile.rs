//! Hostile text the emulator can be told to put in its answers: a NUL, a
//! lone UTF-16 surrogate escape (`\ud800`, which no Rust `String` can hold,
//! so it is written into the JSON text after serialisation), and very long
//! strings.
//!
//! Invariant: every JSON body the emulator sends (answers and webhooks)
//! goes through [`to_json_text`], so the surrogate marker never leaves the
//! emulator as itself, only as the `\ud800` escape.

use axum::{
    body::Body,
    http::header::CONTENT_TYPE,
    response::{IntoResponse as _, Response},
};
use serde_json::Value;

/// Stands for a lone surrogate inside a Rust string until serialisation.
const SURROGATE_MARK: &str = "\u{F8FF}emu-lone-surrogate\u{F8FF}";

/// The default length of [`HostileText::Long`] text and of the long part
/// of [`HostileText::All`]: 100 KB.
pub const LONG_TEXT_BYTES: usize = 100 * 1024;

/// Which hostile text to inject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostileText {
    /// `EMU\u0000NUL`: a NUL character (JSON `\u0000`).
    Nul,
    /// `EMU\ud800X`: a lone high surrogate escape in the JSON text, which
    /// strict parsers reject and lenient ones turn into U+FFFD.
    LoneSurrogate,
    /// An ASCII text of this many bytes (e.g. [`LONG_TEXT_BYTES`]).
    Long(usize),
    /// A NUL, a lone surrogate and 100 KB of text in one string.
    All,
}

impl HostileText {
    /// The text as the emulator holds it (with the surrogate marker).
    pub(crate) fn text(&self) -> String {
        match self {
            Self::Nul => "EMU\u{0}NUL".into(),
            Self::LoneSurrogate => format!("EMU{SURROGATE_MARK}X"),
            Self::Long(n) => "H".repeat(*n),
            Self::All => format!("EMU\u{0}{SURROGATE_MARK}{}", "H".repeat(LONG_TEXT_BYTES)),
        }
    }

    /// Reads `nul`, `surrogate`, `long` (with an optional length) or `all`.
    pub(crate) fn parse(kind: &str, length: Option<usize>) -> Option<Self> {
        Some(match kind {
            "nul" => Self::Nul,
            "surrogate" | "loneSurrogate" => Self::LoneSurrogate,
            "long" => Self::Long(length.unwrap_or(LONG_TEXT_BYTES)),
            "all" => Self::All,
            _ => return None,
        })
    }
}

/// The JSON text of `v`, with each surrogate marker written as `\ud800`.
pub(crate) fn to_json_text(v: &Value) -> String {
    let text = v.to_string();
    if text.contains(SURROGATE_MARK) {
        text.replace(SURROGATE_MARK, "\\ud800")
    } else {
        text
    }
}

/// Puts `text` into an answer body: every voucher's `voucherCode`, `pin`
/// and `validity`, an error body's `errorInfo` (and `error_description`),
/// and an extra top-level field `emulatorNote`.
pub(crate) fn corrupt(body: &mut Value, text: &str) {
    visit(body, text);
    if let Value::Object(map) = body {
        map.insert("emulatorNote".into(), Value::String(text.to_string()));
    }
}

/// Rewrites a finished answer with [`corrupt`]; a body that is not JSON
/// (or already holds a lone surrogate) is passed through unchanged.
pub(crate) async fn answer(resp: Response, hostile: &HostileText) -> Response {
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return parts.status.into_response();
    };
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(mut v) => {
            corrupt(&mut v, &hostile.text());
            // What `wire::json_response` sends, without naming `wire` (which
            // depends on this module for `to_json_text`).
            let text = to_json_text(&v);
            (parts.status, [(CONTENT_TYPE, "application/json")], text).into_response()
        }
        Err(_) => Response::from_parts(parts, Body::from(bytes)),
    }
}

fn visit(v: &mut Value, text: &str) {
    match v {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                let target = matches!(
                    key.as_str(),
                    "voucherCode" | "pin" | "validity" | "errorInfo" | "error_description"
                );
                if target {
                    *value = Value::String(text.to_string());
                } else {
                    visit(value, text);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| visit(i, text)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_surrogate_is_written_as_an_escape_and_nul_as_u0000() {
        let v = json!({"a": HostileText::LoneSurrogate.text(), "b": HostileText::Nul.text()});
        let text = to_json_text(&v);
        assert!(text.contains(r#""EMU\ud800X""#), "{text}");
        assert!(text.contains(r#""EMU\u0000NUL""#), "{text}");
        assert!(!text.contains('\u{F8FF}'));
    }

    #[test]
    fn corrupt_reaches_nested_vouchers_and_error_info() {
        let mut v = json!({"data": {"x": {"data": {"vouchers": [{"pin": "1", "amount": 1}]}}},
                           "errorInfo": "e"});
        corrupt(&mut v, "Z");
        assert_eq!(v["data"]["x"]["data"]["vouchers"][0]["pin"], json!("Z"));
        assert_eq!(v["data"]["x"]["data"]["vouchers"][0]["amount"], json!(1));
        assert_eq!(
            (v["errorInfo"].clone(), v["emulatorNote"].clone()),
            (json!("Z"), json!("Z"))
        );
    }
}
