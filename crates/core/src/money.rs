//! Exact money: a signed amount in millionths of the currency unit ("micros").
//!
//! Rates such as 0.0123 EUR/min need more than cents, and floats lose money, so every
//! amount in tollgate is an `i64` count of micros. 1 EUR = 1_000_000 micros; the
//! largest amount is about 9.2 trillion units, far beyond any phone bill.

use std::fmt;
use std::str::FromStr;

/// Micros per currency unit.
pub const MICROS: i64 = 1_000_000;

/// An exact amount of money in micros (10^-6 of the currency unit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(i64);

/// Why a text is not a money amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyParseError {
    #[error("{0:?} is not a decimal amount (expected digits like \"20.00\" or \"0.0125\")")]
    NotDecimal(String),
    #[error("{0:?} has more than 6 decimal places")]
    TooPrecise(String),
    #[error("{0:?} is too large")]
    TooLarge(String),
}

impl Money {
    pub const ZERO: Money = Money(0);

    /// An amount from micros.
    pub const fn from_micros(micros: i64) -> Money {
        Money(micros)
    }

    /// An amount from whole units and cents (test and example convenience).
    pub const fn from_cents(cents: i64) -> Money {
        Money(cents * 10_000)
    }

    pub const fn micros(self) -> i64 {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn saturating_add(self, other: Money) -> Money {
        Money(self.0.saturating_add(other.0))
    }

    pub fn saturating_sub(self, other: Money) -> Money {
        Money(self.0.saturating_sub(other.0))
    }

    /// `self - other`, never below zero.
    pub fn minus_floor_zero(self, other: Money) -> Money {
        Money(self.0.saturating_sub(other.0).max(0))
    }

    /// Price of `seconds` at `self` per minute, rounded up to the next micro so that
    /// a reservation is never smaller than what is billed.
    pub fn per_minute_for_seconds(self, seconds: u64) -> Money {
        let total = i128::from(self.0) * i128::from(seconds);
        let micros = (total + 59).div_euclid(60);
        Money(i64::try_from(micros).unwrap_or(i64::MAX))
    }

    /// Formats with exactly `decimals` places (truncating extra precision toward zero is
    /// never done: all places that are not zero are kept).
    pub fn display_min_decimals(self, decimals: usize) -> String {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let units = abs / MICROS as u64;
        let frac = abs % MICROS as u64;
        let mut frac_text = format!("{frac:06}");
        while frac_text.len() > decimals && frac_text.ends_with('0') {
            frac_text.pop();
        }
        if frac_text.is_empty() {
            format!("{sign}{units}")
        } else {
            format!("{sign}{units}.{frac_text}")
        }
    }
}

impl fmt::Display for Money {
    /// Two decimals at least ("19.40"), more when the amount has them ("0.0125").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display_min_decimals(2))
    }
}

impl FromStr for Money {
    type Err = MoneyParseError;

    fn from_str(text: &str) -> Result<Money, MoneyParseError> {
        let err = || MoneyParseError::NotDecimal(text.to_string());
        let trimmed = text.trim();
        let (negative, body) = match trimmed.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        let (int_part, frac_part) = match body.split_once('.') {
            Some((i, f)) => (i, f),
            None => (body, ""),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(err());
        }
        if !int_part.bytes().all(|b| b.is_ascii_digit())
            || !frac_part.bytes().all(|b| b.is_ascii_digit())
            || (body.contains('.') && frac_part.is_empty())
            || int_part.is_empty()
        {
            return Err(err());
        }
        if frac_part.len() > 6 {
            return Err(MoneyParseError::TooPrecise(text.to_string()));
        }
        let too_large = || MoneyParseError::TooLarge(text.to_string());
        let units: i64 = int_part.parse().map_err(|_| too_large())?;
        let mut frac: i64 = 0;
        for (i, digit) in frac_part.bytes().enumerate() {
            frac += i64::from(digit - b'0') * 10_i64.pow(5 - i as u32);
        }
        let micros = units
            .checked_mul(MICROS)
            .and_then(|m| m.checked_add(frac))
            .ok_or_else(too_large)?;
        Ok(Money(if negative { -micros } else { micros }))
    }
}

impl serde::Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for Money {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Money, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// An ISO 4217 currency code, three ASCII capital letters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    pub const EUR: Currency = Currency(*b"EUR");

    pub fn as_str(&self) -> &str {
        // INVARIANT: constructed only from three ASCII capitals.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl FromStr for Currency {
    type Err = String;
    fn from_str(text: &str) -> Result<Currency, String> {
        let bytes = text.as_bytes();
        if bytes.len() == 3 && bytes.iter().all(u8::is_ascii_uppercase) {
            Ok(Currency([bytes[0], bytes[1], bytes[2]]))
        } else {
            Err(format!(
                "{text:?} is not a currency code (three capital letters, e.g. \"EUR\")"
            ))
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays_exactly() {
        let cases = [
            ("20", "20.00", 20_000_000),
            ("20.00", "20.00", 20_000_000),
            ("0.0125", "0.0125", 12_500),
            ("19.4", "19.40", 19_400_000),
            ("-1.5", "-1.50", -1_500_000),
            ("0.000001", "0.000001", 1),
        ];
        for (text, shown, micros) in cases {
            let money: Money = text.parse().unwrap();
            assert_eq!(money.micros(), micros, "{text}");
            assert_eq!(money.to_string(), shown, "{text}");
        }
    }

    #[test]
    fn rejects_non_decimals() {
        for bad in [
            "",
            ".",
            "1.",
            ".5",
            "1e3",
            "1,5",
            "abc",
            "1.2.3",
            "0.0000001",
            "--1",
        ] {
            assert!(bad.parse::<Money>().is_err(), "{bad:?} should be refused");
        }
        assert!(matches!(
            "99999999999999999".parse::<Money>(),
            Err(MoneyParseError::TooLarge(_))
        ));
    }

    #[test]
    fn per_minute_rounds_up_to_the_micro() {
        let rate: Money = "0.01".parse().unwrap(); // 10_000 micros per minute
        assert_eq!(rate.per_minute_for_seconds(60).micros(), 10_000);
        assert_eq!(rate.per_minute_for_seconds(1).micros(), 167); // 166.67 rounded up
        assert_eq!(rate.per_minute_for_seconds(0).micros(), 0);
    }
}
