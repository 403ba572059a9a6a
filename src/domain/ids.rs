//! Identifier newtypes. An [`IdempotencyKey`] is validated before any lookup
//! (contract §5: 1–255 visible ASCII); a [`PoNumber`] is minted here, once
//! per order, and reused on every upstream call (contract §2.2).

use std::fmt;

use uuid::Uuid;

/// Our id for an order (UUIDv7, so ids sort by creation time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrderId(Uuid);

impl OrderId {
    /// A fresh, time-ordered id.
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }
    /// Wraps a stored id.
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }
    /// The underlying UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Our id for a caller (an internal service).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallerId(Uuid);

impl CallerId {
    /// Wraps a stored id.
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }
    /// The underlying UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for CallerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The reference sent to Xoxoday as `poNumber`: `OGW-` + a UUIDv7 (40 chars).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoNumber(String);

impl PoNumber {
    /// Mints a new, globally unique poNumber.
    pub fn generate() -> Self {
        Self(format!("OGW-{}", Uuid::now_v7()))
    }
    /// Wraps a stored poNumber.
    pub fn from_stored(s: String) -> Self {
        Self(s)
    }
    /// The text sent upstream.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PoNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A caller-chosen `Idempotency-Key`: 1–255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Longest accepted key.
    pub const MAX_LEN: usize = 255;

    /// Validates the header value.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("must not be empty".into());
        }
        if raw.len() > Self::MAX_LEN {
            return Err(format!("must be at most {} characters", Self::MAX_LEN));
        }
        if !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must contain only visible ASCII characters (no spaces)".into());
        }
        Ok(Self(raw.to_owned()))
    }

    /// The key as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Wraps a key read back from the store (validated when it was stored).
    pub fn from_stored(key: String) -> Self {
        Self(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_one_to_255_visible_ascii() {
        assert!(IdempotencyKey::parse("a").is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        assert!(IdempotencyKey::parse("~!{}-_").is_ok());
        for bad in ["", " ", "a b", "é", "tab\t", &"k".repeat(256)] {
            assert!(IdempotencyKey::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn po_numbers_are_unique_prefixed_and_short() {
        let (a, b) = (PoNumber::generate(), PoNumber::generate());
        assert_ne!(a, b);
        assert!(a.as_str().starts_with("OGW-"));
        assert!(a.as_str().len() <= 100);
    }
}
