//! Exact money. Amounts are `rust_decimal::Decimal`, never floats: request
//! text is parsed digit by digit, stored as `numeric`, and written back as a
//! normalised decimal string (`"50"`, `"12.5"`).

use std::{fmt, str::FromStr};

use rust_decimal::Decimal;

/// A positive amount with at most [`Amount::MAX_SCALE`] decimal places.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(Decimal);

impl Amount {
    /// Most decimal places accepted (currencies' minor units; Xoxoday
    /// denominations are whole or cent values). More is refused, not rounded.
    pub const MAX_SCALE: u32 = 2;

    /// Parses plain decimal text: digits, optionally `.` and digits. No sign,
    /// no exponent, no spaces; trailing zeros are fine (`10.50` = `10.5`).
    pub fn parse(text: &str) -> Result<Self, String> {
        const SHAPE: &str = "must be a positive decimal number like 10 or 12.5";
        let (int, frac) = match text.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (text, None),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(int) || frac.is_some_and(|f| !digits(f)) {
            return Err(SHAPE.into());
        }
        let value = Decimal::from_str_exact(text)
            .map_err(|_| "is too large or has too many digits".to_string())?
            .normalize();
        if value <= Decimal::ZERO {
            return Err("must be greater than 0".into());
        }
        if value.scale() > Self::MAX_SCALE {
            return Err(format!(
                "must have at most {} decimal places",
                Self::MAX_SCALE
            ));
        }
        Ok(Self(value))
    }

    /// Wraps a stored amount (already validated when it was written).
    pub fn from_stored(d: Decimal) -> Self {
        Self(d.normalize())
    }

    /// The exact value.
    pub fn value(&self) -> Decimal {
        self.0
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.normalize(), f)
    }
}

impl FromStr for Amount {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Formats any exact amount the way responses show money.
pub fn money_string(d: Decimal) -> String {
    d.normalize().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_decimals_parse_and_normalise() {
        for (text, shown) in [
            ("50", "50"),
            ("50.00", "50"),
            ("12.5", "12.5"),
            ("0.10", "0.1"),
            ("007", "7"),
        ] {
            assert_eq!(Amount::parse(text).unwrap().to_string(), shown);
        }
        assert_eq!(
            Amount::parse("0.1").unwrap().value() + Amount::parse("0.2").unwrap().value(),
            Amount::parse("0.3").unwrap().value()
        );
    }

    #[test]
    fn zero_negative_exponent_and_sub_cent_amounts_are_refused() {
        for bad in [
            "0", "0.00", "-5", "1e2", "1E2", "NaN", "inf", "", ".5", "5.", " 5", "+5", "1.234",
            "1,5",
        ] {
            assert!(Amount::parse(bad).is_err(), "{bad:?}");
        }
    }
}
