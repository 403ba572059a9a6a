//! `NewOrder::parse`: the body of `POST /v1/orders` → a validated request,
//! or every field error at once. Numbers are read from the raw JSON text, so
//! a denomination never passes through `f64`. The canonical fingerprint
//! (defaults applied, amounts normalised, keys sorted) is what makes a repeat
//! "the same body" (contract §5: same key + different body → 422).

use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::{Amount, new_order_raw::RawObject};

/// One problem with one field of the request body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// JSON field name (`body` for the document as a whole).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl FieldError {
    /// Builds an error for `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A validated order request, defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOrder {
    /// Xoxoday product id (> 0).
    pub product_id: i64,
    /// Face value per unit.
    pub denomination: Amount,
    /// Units, 1–10.
    pub quantity: i32,
    /// Recipient email.
    pub email: Option<String>,
    /// Recipient phone (`+1-4705000000`).
    pub contact: Option<String>,
    /// Free text, ≤ 100 chars.
    pub tag: Option<String>,
    /// Let Xoxoday email the receiver.
    pub notify_receiver_email: bool,
    /// Let Xoxoday email the admin.
    pub notify_admin_email: bool,
    /// Category extras, passed through.
    pub user_meta: Option<serde_json::Map<String, serde_json::Value>>,
    /// Top-up operator validation.
    pub perform_operator_validation: Option<bool>,
}

const FIELDS: [&str; 10] = [
    "productId",
    "denomination",
    "quantity",
    "email",
    "contact",
    "tag",
    "notifyReceiverEmail",
    "notifyAdminEmail",
    "userMeta",
    "performOperatorValidation",
];

impl NewOrder {
    /// Most units per order (contract §5).
    pub const MAX_QUANTITY: i32 = 10;
    /// Longest tag.
    pub const MAX_TAG_CHARS: usize = 100;
    /// Largest `userMeta`, as sent.
    pub const MAX_USER_META_BYTES: usize = 4096;
    /// Deepest `userMeta` (the object itself is level 1).
    pub const MAX_USER_META_DEPTH: usize = 4;

    /// Parses and validates a JSON body, collecting every field error.
    pub fn parse(body: &[u8]) -> Result<Self, Vec<FieldError>> {
        let obj: RawObject<'_> = serde_json::from_slice(body)
            .map_err(|e| vec![FieldError::new("body", body_message(&e))])?;
        let mut errors: Vec<FieldError> = obj
            .keys()
            .filter(|k| !FIELDS.contains(k))
            .map(|k| FieldError::new(k, "is not a known field"))
            .collect();
        let mut v = Validator {
            obj: &obj,
            errors: &mut errors,
        };
        let product_id = v.required("productId", parse_product_id);
        let denomination = v.required("denomination", parse_amount);
        let quantity = v.optional("quantity", parse_quantity).unwrap_or(1);
        let email = v.optional("email", parse_email);
        let contact = v.optional("contact", parse_contact);
        let tag = v.optional("tag", parse_tag);
        let notify_receiver_email = v.optional("notifyReceiverEmail", parse_bool);
        let notify_admin_email = v.optional("notifyAdminEmail", parse_bool);
        let user_meta = v.optional("userMeta", parse_object);
        let perform_operator_validation = v.optional("performOperatorValidation", parse_bool);
        match (product_id, denomination) {
            (Some(product_id), Some(denomination)) if errors.is_empty() => Ok(Self {
                product_id,
                denomination,
                quantity,
                email,
                contact,
                tag,
                notify_receiver_email: notify_receiver_email.unwrap_or(false),
                notify_admin_email: notify_admin_email.unwrap_or(false),
                user_meta,
                perform_operator_validation,
            }),
            _ => Err(errors),
        }
    }

    /// SHA-256 of the canonical form: equal for requests that mean the same.
    pub fn fingerprint(&self) -> [u8; 32] {
        let canonical = serde_json::json!({
            "productId": self.product_id,
            "denomination": self.denomination.to_string(),
            "quantity": self.quantity,
            "email": self.email,
            "contact": self.contact,
            "tag": self.tag,
            "notifyReceiverEmail": self.notify_receiver_email,
            "notifyAdminEmail": self.notify_admin_email,
            "userMeta": self.user_meta,
            "performOperatorValidation": self.perform_operator_validation,
        });
        let mut text = String::from("order-v1\n");
        write_canonical(&canonical, &mut text);
        Sha256::digest(text.as_bytes()).into()
    }
}

struct Validator<'a, 'b> {
    obj: &'a RawObject<'b>,
    errors: &'a mut Vec<FieldError>,
}

impl Validator<'_, '_> {
    fn optional<T>(&mut self, field: &str, parse: fn(&str) -> Result<T, String>) -> Option<T> {
        let raw = self.obj.get(field).filter(|r| r.get() != "null")?;
        self.apply(field, raw, parse)
    }

    fn required<T>(&mut self, field: &str, parse: fn(&str) -> Result<T, String>) -> Option<T> {
        match self.obj.get(field).filter(|r| r.get() != "null") {
            Some(raw) => self.apply(field, raw, parse),
            None => {
                self.errors.push(FieldError::new(field, "is required"));
                None
            }
        }
    }

    fn apply<T>(
        &mut self,
        field: &str,
        raw: &RawValue,
        parse: fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        parse(raw.get())
            .map_err(|m| self.errors.push(FieldError::new(field, m)))
            .ok()
    }
}

fn body_message(e: &serde_json::Error) -> String {
    if e.is_data() {
        format!("must be a JSON object ({e})")
    } else {
        format!("is not valid JSON ({e})")
    }
}

/// A JSON integer. As in JSON Schema, a number with a zero fraction
/// (`5.0`) is an integer too; anything else is not.
fn json_integer(raw: &str) -> Result<i64, serde_json::Error> {
    let whole = match raw.split_once('.') {
        Some((int, frac)) if !frac.is_empty() && frac.bytes().all(|b| b == b'0') => int,
        _ => raw,
    };
    serde_json::from_str::<i64>(whole)
}

fn parse_product_id(raw: &str) -> Result<i64, String> {
    match json_integer(raw) {
        Ok(n) if n > 0 => Ok(n),
        Ok(_) => Err("must be greater than 0".into()),
        Err(_) => Err("must be an integer".into()),
    }
}

fn parse_quantity(raw: &str) -> Result<i32, String> {
    match json_integer(raw) {
        Ok(n) if (1..=i64::from(NewOrder::MAX_QUANTITY)).contains(&n) => Ok(n as i32),
        Ok(_) => Err(format!("must be between 1 and {}", NewOrder::MAX_QUANTITY)),
        Err(_) => Err("must be an integer".into()),
    }
}

/// A JSON number literal or a string holding a decimal; never via `f64`.
fn parse_amount(raw: &str) -> Result<Amount, String> {
    if raw.starts_with('"') {
        let text: String = serde_json::from_str(raw).map_err(|e| e.to_string())?;
        Amount::parse(&text)
    } else if raw.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        Amount::parse(raw)
    } else {
        Err("must be a number or a decimal string".into())
    }
}

fn parse_bool(raw: &str) -> Result<bool, String> {
    serde_json::from_str(raw).map_err(|_| "must be true or false".into())
}

fn parse_string(raw: &str) -> Result<String, String> {
    serde_json::from_str(raw).map_err(|_| "must be a string".into())
}

fn parse_email(raw: &str) -> Result<String, String> {
    let s = parse_string(raw)?;
    let valid = s.len() <= 254
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        && s.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.split('.').count() >= 2
                && domain.split('.').all(|label| !label.is_empty())
        });
    valid
        .then_some(s)
        .ok_or_else(|| "must be a valid email address".into())
}

fn parse_contact(raw: &str) -> Result<String, String> {
    let s = parse_string(raw)?;
    let body = s.strip_prefix('+').unwrap_or(&s);
    let digits = body.bytes().filter(u8::is_ascii_digit).count();
    let valid = body.bytes().all(|b| b.is_ascii_digit() || b == b'-')
        && (6..=15).contains(&digits)
        && !body.starts_with('-')
        && !body.ends_with('-')
        && !body.contains("--");
    valid
        .then_some(s)
        .ok_or_else(|| "must be a phone number like +1-4705000000".into())
}

fn parse_tag(raw: &str) -> Result<String, String> {
    let s = parse_string(raw)?;
    if s.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    (s.chars().count() <= NewOrder::MAX_TAG_CHARS)
        .then_some(s)
        .ok_or_else(|| format!("must be at most {} characters", NewOrder::MAX_TAG_CHARS))
}

/// `userMeta` is passed through to Xoxoday and stored: bounded in size and
/// depth so a caller cannot make us store or forward an arbitrary document.
fn parse_object(raw: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    if raw.len() > NewOrder::MAX_USER_META_BYTES {
        return Err(format!(
            "must be at most {} bytes of JSON",
            NewOrder::MAX_USER_META_BYTES
        ));
    }
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(raw).map_err(|_| "must be a JSON object".to_string())?;
    // Postgres text and jsonb cannot hold U+0000; refuse it here as a client
    // error rather than fail the insert.
    if map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)) {
        return Err("must not contain U+0000".into());
    }
    if depth(&serde_json::Value::Object(map.clone())) > NewOrder::MAX_USER_META_DEPTH {
        return Err(format!(
            "must nest at most {} levels deep",
            NewOrder::MAX_USER_META_DEPTH
        ));
    }
    Ok(map)
}

fn has_nul(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(has_nul),
        serde_json::Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

fn depth(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        serde_json::Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// JSON with object keys sorted at every depth, independent of serde_json's
/// map ordering features.
fn write_canonical(v: &serde_json::Value, out: &mut String) {
    match v {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
#[path = "new_order_tests.rs"]
mod tests;
