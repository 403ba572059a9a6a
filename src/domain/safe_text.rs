//! Text from Xoxoday made storable (issue 9, window 9). Postgres refuses
//! U+0000 in `text` and `jsonb`, and serde refuses lone surrogate escapes, so
//! one hostile byte in a webhook or an answer could turn into a 5xx (and
//! Xoxoday disables an account's webhooks after three failures).
//!
//! Invariant: every `text` or `jsonb` value that may hold text from Xoxoday
//! passes [`pg_text`] or [`pg_json`] before it is bound, and the raw bytes
//! are kept beside it as `bytea` (webhook payloads, sealed exchange bodies),
//! so the sanitised copies may lose detail but the store never does.

use std::borrow::Cow;

use serde_json::{Map, Value};
use sha2::Digest as _;

/// What a U+0000 becomes in stored text: visible, and never mistaken for a
/// character Xoxoday could have meant.
pub const NUL_MARK: &str = "\\u0000";

/// Longest string kept whole in a `jsonb` copy; the raw copy has the rest.
pub const MAX_JSON_STRING_CHARS: usize = 8 * 1024;

/// Longest identifier-like field (webhook id, status) kept as it came.
pub const MAX_FIELD_CHARS: usize = 200;

/// `s` with every U+0000 replaced by [`NUL_MARK`]; borrowed when clean.
pub fn pg_text(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', NUL_MARK))
    } else {
        Cow::Borrowed(s)
    }
}

/// [`pg_text`] of an optional value, owned (for binding).
pub fn pg_opt(s: Option<&str>) -> Option<String> {
    s.map(|s| pg_text(s).into_owned())
}

/// `v` with [`pg_text`] applied to every string and key, and strings longer
/// than [`MAX_JSON_STRING_CHARS`] cut with a note saying so.
pub fn pg_json(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(capped(&pg_text(s), MAX_JSON_STRING_CHARS)),
        Value::Array(items) => Value::Array(items.iter().map(pg_json).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (capped(&pg_text(k), MAX_JSON_STRING_CHARS), pg_json(v)))
                .collect::<Map<_, _>>(),
        ),
        other => other.clone(),
    }
}

/// An identifier kept unique however long: [`pg_text`], and past
/// [`MAX_FIELD_CHARS`] a prefix plus the SHA-256 of the whole value.
pub fn pg_key(s: &str) -> String {
    let clean = pg_text(s);
    if clean.chars().count() <= MAX_FIELD_CHARS {
        return clean.into_owned();
    }
    let prefix: String = clean.chars().take(64).collect();
    let digest = hex::encode(sha2::Sha256::digest(s.as_bytes()));
    format!("{prefix}…sha256:{digest}")
}

/// `s` cut to `max` characters with a note of the full size.
pub fn capped(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some((cut, _)) => format!(
            "{}…[truncated: {} bytes in all; the raw copy is kept]",
            &s[..cut],
            s.len()
        ),
    }
}

/// Raw bytes as JSON text serde can read: invalid UTF-8 becomes U+FFFD,
/// and in a body that looks like JSON, lone surrogate escapes become
/// `\ufffd` and raw control characters inside strings are escaped. Valid
/// JSON comes back unchanged.
pub fn repair_json(raw: &[u8]) -> Cow<'_, str> {
    let text = String::from_utf8_lossy(raw);
    let looks_json = matches!(text.trim_start().chars().next(), Some('{' | '['));
    if !looks_json || !needs_repair(&text) {
        return text;
    }
    Cow::Owned(rewrite(&text))
}

fn needs_repair(text: &str) -> bool {
    text.contains("\\u") || text.chars().any(|c| c < ' ')
}

fn rewrite(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut i = 0;
    while let Some(c) = text[i..].chars().next() {
        let mut used = c.len_utf8();
        match c {
            '"' => {
                in_string = !in_string;
                out.push(c);
            }
            '\\' if in_string => used = escape(&text[i..], &mut out),
            c if in_string && c < ' ' => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
        i += used;
    }
    out
}

/// Copies the escape at the start of `s` (which begins with `\`), replacing
/// a lone surrogate; returns the bytes consumed.
fn escape(s: &str, out: &mut String) -> usize {
    let unit = |at: usize| {
        s.get(at..at + 6)
            .filter(|h| h.starts_with("\\u") && h[2..].bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|h| u16::from_str_radix(&h[2..], 16).ok())
    };
    match unit(0) {
        Some(0xD800..=0xDBFF) if matches!(unit(6), Some(0xDC00..=0xDFFF)) => {
            out.push_str(&s[..12]);
            12
        }
        Some(0xD800..=0xDFFF) => {
            out.push_str("\\ufffd");
            6
        }
        Some(_) => {
            out.push_str(&s[..6]);
            6
        }
        None => {
            // `\"`, `\\` and the like: copy both characters so the quote
            // does not toggle the string state.
            let next = s[1..].chars().next().map_or(0, char::len_utf8);
            out.push_str(&s[..1 + next]);
            1 + next
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn nul_becomes_visible_text() {
        assert_eq!(pg_text("a\0b"), "a\\u0000b");
        assert!(matches!(pg_text("clean"), Cow::Borrowed(_)));
        let v = pg_json(&json!({"k\u{0}": ["x\u{0}", 1, null]}));
        assert_eq!(v, json!({"k\\u0000": ["x\\u0000", 1, null]}));
    }

    #[test]
    fn long_strings_are_capped_and_long_keys_stay_unique() {
        let long = "x".repeat(MAX_JSON_STRING_CHARS + 10);
        let v = pg_json(&json!(long));
        assert!(v.as_str().unwrap().contains("truncated"));
        let (a, b) = (format!("{long}a"), format!("{long}b"));
        assert_ne!(pg_key(&a), pg_key(&b));
        assert_eq!(pg_key("123"), "123");
    }

    #[test]
    fn lone_surrogates_and_raw_controls_are_repaired() {
        let raw = br#"{"a":"x\ud800y","b":"\ud83d\ude00","c":"\\ud800","d":"t	ab\u0000"}"#;
        let fixed = repair_json(raw);
        let v: Value = serde_json::from_str(&fixed).unwrap();
        assert_eq!(v["a"], "x\u{fffd}y");
        assert_eq!(v["b"], "\u{1F600}");
        assert_eq!(v["c"], "\\ud800");
        assert_eq!(v["d"], "t\tab\u{0}");
        let nul = b"{\"a\":\"x\0y\"}";
        let v: Value = serde_json::from_str(&repair_json(nul)).unwrap();
        assert_eq!(v["a"], "x\u{0}y");
        assert_eq!(repair_json(b"<html>\n</html>"), "<html>\n</html>");
        let bad_utf8: Value = serde_json::from_str(&repair_json(b"{\"a\":\"\xff\"}")).unwrap();
        assert_eq!(bad_utf8["a"], "\u{fffd}");
    }
}
