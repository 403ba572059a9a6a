//! Tolerant scalars for Xoxoday's type drift (reference §3.2, §5.2, §11):
//! the same field arrives as a number, a numeric string, `""` or `null`.
//!
//! Protects: exact money. Every value is read from its raw JSON text
//! (`RawValue`), so an amount never passes through an `f64`; `0.1` stays
//! exactly `0.1`. Text that is neither a number nor a documented blank is an
//! error, never a silent `None`.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, de::Error as _};
use serde_json::value::RawValue;

/// One JSON scalar kept as its raw text, interpreted on demand.
#[derive(Deserialize)]
#[serde(transparent)]
pub struct Flex(Box<RawValue>);

/// What a raw scalar turned out to be.
enum Scalar<'a> {
    Null,
    Text(String),
    Number(&'a str),
    Other,
}

impl Flex {
    fn scalar(&self) -> Scalar<'_> {
        let raw = self.0.get().trim();
        match raw.as_bytes().first() {
            Some(b'n') => Scalar::Null,
            Some(b'"') => serde_json::from_str(raw).map_or(Scalar::Other, Scalar::Text),
            Some(b'-' | b'0'..=b'9') => Scalar::Number(raw),
            _ => Scalar::Other,
        }
    }

    /// The raw JSON text, for error messages.
    pub fn raw(&self) -> &str {
        self.0.get()
    }

    /// A decimal from a number or numeric string; `null` and `""` are `None`.
    pub fn decimal(&self) -> Result<Option<Decimal>, String> {
        let text = match self.scalar() {
            Scalar::Null => return Ok(None),
            Scalar::Text(t) if t.trim().is_empty() => return Ok(None),
            Scalar::Text(t) => t.trim().to_owned(),
            Scalar::Number(n) => n.to_owned(),
            Scalar::Other => return Err(format!("not an amount: {}", self.raw())),
        };
        Decimal::from_str(&text)
            .or_else(|_| Decimal::from_scientific(&text))
            .map(Some)
            .map_err(|_| format!("not an amount: {}", self.raw()))
    }

    /// An integer from a number or numeric string; `null` and `""` are `None`.
    pub fn integer(&self) -> Result<Option<i64>, String> {
        match self.scalar() {
            Scalar::Null => Ok(None),
            Scalar::Text(t) if t.trim().is_empty() => Ok(None),
            Scalar::Text(t) => t.trim().parse().map(Some).map_err(|_| self.bad("integer")),
            Scalar::Number(n) => n.parse().map(Some).map_err(|_| self.bad("integer")),
            Scalar::Other => Err(self.bad("integer")),
        }
    }

    /// Text from a string or a number (numbers keep their exact digits).
    pub fn text(&self) -> Option<String> {
        match self.scalar() {
            Scalar::Text(t) => Some(t),
            Scalar::Number(n) => Some(n.to_owned()),
            Scalar::Null | Scalar::Other => None,
        }
    }

    /// An epoch-milliseconds instant from a string or a number.
    pub fn epoch_millis(&self) -> Result<Option<DateTime<Utc>>, String> {
        match self.integer()? {
            None => Ok(None),
            Some(ms) => DateTime::from_timestamp_millis(ms)
                .map(Some)
                .ok_or_else(|| self.bad("epoch-milliseconds instant")),
        }
    }

    fn bad(&self, what: &str) -> String {
        format!("not an {what}: {}", self.raw())
    }
}

/// Deserializes an optional money field (`serde(deserialize_with)`).
pub fn decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
    match Option::<Flex>::deserialize(d)? {
        None => Ok(None),
        Some(f) => f.decimal().map_err(D::Error::custom),
    }
}

/// Deserializes an optional integer field (`serde(deserialize_with)`).
pub fn integer<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Option::<Flex>::deserialize(d)? {
        None => Ok(None),
        Some(f) => f.integer().map_err(D::Error::custom),
    }
}

/// Deserializes an optional text field that may arrive as a number.
pub fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<Flex>::deserialize(d)?.and_then(|f| f.text()))
}

/// Deserializes an optional epoch-milliseconds field (string or number).
pub fn epoch_millis<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    match Option::<Flex>::deserialize(d)? {
        None => Ok(None),
        Some(f) => f.epoch_millis().map_err(D::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flex(json: &str) -> Flex {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn amounts_keep_their_exact_digits_whatever_their_json_type() {
        for (json, want) in [
            ("0.1", Some("0.1")),
            ("\"0.1\"", Some("0.1")),
            ("11.53", Some("11.53")),
            ("\"0.35\"", Some("0.35")),
            ("10", Some("10")),
            ("\"10\"", Some("10")),
            ("0.013109", Some("0.013109")),
            ("1e2", Some("100")),
            ("\"\"", None),
            ("\" \"", None),
            ("null", None),
        ] {
            let got = flex(json).decimal().unwrap();
            assert_eq!(got, want.map(|w| Decimal::from_str(w).unwrap()), "{json}");
        }
        assert_eq!(flex("0.1").decimal().unwrap().unwrap().to_string(), "0.1");
    }

    #[test]
    fn non_numeric_amounts_are_errors_not_blanks() {
        for json in ["\"ten\"", "true", "{}", "[1]", "\"1 - 7\""] {
            assert!(flex(json).decimal().is_err(), "{json}");
        }
    }

    #[test]
    fn integers_and_instants_accept_strings_and_numbers() {
        assert_eq!(flex("1296000").integer().unwrap(), Some(1_296_000));
        assert_eq!(flex("\"1296000\"").integer().unwrap(), Some(1_296_000));
        assert!(flex("1.5").integer().is_err());
        let at = flex("\"1718000000000\"").epoch_millis().unwrap().unwrap();
        assert_eq!(at.timestamp(), 1_718_000_000);
        assert_eq!(flex("1718000000000").epoch_millis().unwrap(), Some(at));
    }

    #[test]
    fn text_keeps_numbers_verbatim() {
        assert_eq!(flex("727676").text().as_deref(), Some("727676"));
        assert_eq!(flex("\"0042\"").text().as_deref(), Some("0042"));
        assert_eq!(flex("null").text(), None);
    }
}
