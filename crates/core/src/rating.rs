//! Charging plans: rates by destination prefix, billing increments and what a call costs.
//!
//! A plan is a longest-prefix table of [`Rate`]s over E.164 digits. A rate prices a call as
//! `connection_fee + price_per_minute × billed_seconds / 60`, where billed seconds round the
//! duration up by [`Increments`] (first block, then each next block, e.g. 60/60, 30/6, 1/1).
//! [`Rate::max_duration_within`] is the inverse: the longest call a budget pays for, which is
//! what credit control grants.

use std::fmt;
use std::str::FromStr;

use crate::money::{Currency, Money};

/// Billing increments `first/next`: the first `first` seconds are billed as a block, then
/// each started block of `next` seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Increments {
    pub first: u32,
    pub next: u32,
}

impl Increments {
    pub const PER_MINUTE: Increments = Increments {
        first: 60,
        next: 60,
    };
    pub const PER_SECOND: Increments = Increments { first: 1, next: 1 };

    /// Seconds billed for a call that lasted `seconds` (0 for an unanswered call).
    pub fn billed_seconds(self, seconds: u64) -> u64 {
        if seconds == 0 {
            return 0;
        }
        let first = u64::from(self.first);
        if seconds <= first {
            return first;
        }
        let next = u64::from(self.next);
        first + (seconds - first).div_ceil(next) * next
    }
}

impl FromStr for Increments {
    type Err = String;
    fn from_str(text: &str) -> Result<Increments, String> {
        let bad = || {
            format!("{text:?} is not billing increments (expected FIRST/NEXT seconds, e.g. \"60/60\", \"30/6\", \"1/1\")")
        };
        let (first, next) = text.trim().split_once('/').ok_or_else(bad)?;
        let first: u32 = first.trim().parse().map_err(|_| bad())?;
        let next: u32 = next.trim().parse().map_err(|_| bad())?;
        if first == 0 || next == 0 || first > 86_400 || next > 86_400 {
            return Err(format!(
                "{text:?}: increments must be between 1 and 86400 seconds"
            ));
        }
        Ok(Increments { first, next })
    }
}

impl fmt::Display for Increments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.first, self.next)
    }
}

/// One line of a charging plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rate {
    /// E.164 digits without '+', e.g. "4420" for London.
    pub prefix: String,
    pub description: String,
    pub price_per_minute: Money,
    pub connection_fee: Money,
    pub increments: Increments,
    /// A blocked prefix: calls to it are refused whatever the other rules say.
    pub blocked: bool,
}

impl Rate {
    /// The cost of a call that lasted `seconds` (nothing for an unanswered call).
    pub fn cost(&self, seconds: u64) -> Money {
        if seconds == 0 {
            return Money::ZERO;
        }
        let billed = self.increments.billed_seconds(seconds);
        self.connection_fee
            .saturating_add(self.price_per_minute.per_minute_for_seconds(billed))
    }

    /// The longest duration, at most `cap_seconds`, whose cost fits in `budget`; 0 when not
    /// even the first increment fits. Always ends on an increment boundary (or the cap).
    pub fn max_duration_within(&self, budget: Money, cap_seconds: u64) -> u64 {
        if cap_seconds == 0 || budget < self.cost(1) {
            return 0;
        }
        if self.price_per_minute.is_zero() {
            return cap_seconds;
        }
        if self.cost(cap_seconds) <= budget {
            return cap_seconds;
        }
        let first = u64::from(self.increments.first);
        let next = u64::from(self.increments.next);
        // Binary search on the number of `next` blocks after the first: cost is monotonic.
        let mut low: u64 = 0; // known to fit
        let mut high: u64 = (cap_seconds.saturating_sub(first)).div_ceil(next) + 1; // known not to fit
        while high - low > 1 {
            let mid = low + (high - low) / 2;
            if self.cost(first + mid * next) <= budget {
                low = mid;
            } else {
                high = mid;
            }
        }
        (first + low * next).min(cap_seconds)
    }
}

/// A longest-prefix table over decimal digits: a compact trie in one vector.
#[derive(Clone, Debug)]
pub struct PrefixTable<T> {
    nodes: Vec<TrieNode>,
    values: Vec<T>,
}

#[derive(Clone, Debug)]
struct TrieNode {
    // Index into `nodes`, 0 meaning "none" (node 0 is the root, never a child).
    children: [u32; 10],
    // Index into `values` plus one, 0 meaning "no value here".
    value: u32,
}

const EMPTY_NODE: TrieNode = TrieNode {
    children: [0; 10],
    value: 0,
};

impl<T> Default for PrefixTable<T> {
    fn default() -> Self {
        PrefixTable {
            nodes: vec![EMPTY_NODE],
            values: Vec::new(),
        }
    }
}

impl<T> PrefixTable<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts `value` at `prefix` (decimal digits only); returns the value it replaced.
    /// Non-digit prefixes are refused with `Err(value)`.
    pub fn insert(&mut self, prefix: &str, value: T) -> Result<Option<T>, T> {
        if !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(value);
        }
        let mut node = 0usize;
        for digit in prefix.bytes().map(|b| usize::from(b - b'0')) {
            let child = self.nodes[node].children[digit];
            node = if child == 0 {
                self.nodes.push(EMPTY_NODE);
                let index = self.nodes.len() - 1;
                self.nodes[node].children[digit] = index as u32;
                index
            } else {
                child as usize
            };
        }
        let slot = self.nodes[node].value;
        if slot == 0 {
            self.values.push(value);
            self.nodes[node].value = self.values.len() as u32;
            Ok(None)
        } else {
            Ok(Some(std::mem::replace(
                &mut self.values[slot as usize - 1],
                value,
            )))
        }
    }

    /// The value of the longest prefix of `digits`, with that prefix's length.
    pub fn longest_match(&self, digits: &str) -> Option<(usize, &T)> {
        let mut node = 0usize;
        let mut best = None;
        if self.nodes[0].value != 0 {
            best = Some((0, self.nodes[0].value));
        }
        for (depth, byte) in digits.bytes().enumerate() {
            if !byte.is_ascii_digit() {
                break;
            }
            let child = self.nodes[node].children[usize::from(byte - b'0')];
            if child == 0 {
                break;
            }
            node = child as usize;
            if self.nodes[node].value != 0 {
                best = Some((depth + 1, self.nodes[node].value));
            }
        }
        best.map(|(len, slot)| (len, &self.values[slot as usize - 1]))
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.values.iter()
    }
}

/// A named charging plan: one currency, rates by longest prefix.
#[derive(Clone, Debug)]
pub struct ChargingPlan {
    pub name: String,
    pub currency: Currency,
    pub rates: PrefixTable<Rate>,
}

impl ChargingPlan {
    pub fn new(name: impl Into<String>, currency: Currency) -> Self {
        ChargingPlan {
            name: name.into(),
            currency,
            rates: PrefixTable::new(),
        }
    }

    /// The rate for an E.164 number given without '+'.
    pub fn rate_for(&self, e164_digits: &str) -> Option<&Rate> {
        self.rates.longest_match(e164_digits).map(|(_, rate)| rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(price: &str, fee: &str, inc: &str) -> Rate {
        Rate {
            prefix: "44".into(),
            description: "UK".into(),
            price_per_minute: price.parse().unwrap(),
            connection_fee: fee.parse().unwrap(),
            increments: inc.parse().unwrap(),
            blocked: false,
        }
    }

    #[test]
    fn billed_seconds_follow_increments() {
        let cases = [
            ("60/60", 0, 0),
            ("60/60", 1, 60),
            ("60/60", 60, 60),
            ("60/60", 61, 120),
            ("30/6", 10, 30),
            ("30/6", 31, 36),
            ("30/6", 36, 36),
            ("30/6", 37, 42),
            ("1/1", 37, 37),
        ];
        for (inc, secs, billed) in cases {
            let inc: Increments = inc.parse().unwrap();
            assert_eq!(inc.billed_seconds(secs), billed, "{inc} for {secs}s");
        }
    }

    #[test]
    fn bad_increments_are_refused() {
        for bad in ["60", "0/60", "60/0", "a/b", "60/-1", "100000/1"] {
            assert!(bad.parse::<Increments>().is_err(), "{bad}");
        }
    }

    #[test]
    fn cost_includes_fee_and_increments() {
        let r = rate("0.60", "0.10", "30/6"); // 0.01 per second
        assert_eq!(r.cost(0), Money::ZERO);
        assert_eq!(r.cost(1).to_string(), "0.40"); // 0.10 + 30s
        assert_eq!(r.cost(31).to_string(), "0.46"); // 0.10 + 36s
    }

    #[test]
    fn max_duration_is_the_inverse_of_cost() {
        let r = rate("0.60", "0.10", "30/6");
        assert_eq!(r.max_duration_within("0.39".parse().unwrap(), 3600), 0);
        assert_eq!(r.max_duration_within("0.40".parse().unwrap(), 3600), 30);
        assert_eq!(r.max_duration_within("0.45".parse().unwrap(), 3600), 30);
        assert_eq!(r.max_duration_within("0.46".parse().unwrap(), 3600), 36);
        assert_eq!(r.max_duration_within("1000".parse().unwrap(), 3600), 3600);
        // The cap is honoured even when it is not on an increment boundary.
        assert_eq!(r.max_duration_within("1000".parse().unwrap(), 100), 100);
        let free = rate("0", "0", "60/60");
        assert_eq!(free.max_duration_within(Money::ZERO, 500), 500);
        // Exhaustive check against cost on a small range.
        for cents in 0..200 {
            let budget = Money::from_cents(cents);
            let d = r.max_duration_within(budget, 600);
            if d > 0 {
                assert!(r.cost(d) <= budget);
            }
            if d < 600 {
                assert!(r.cost(d + 1) > budget, "budget {budget} granted {d}");
            }
        }
    }

    #[test]
    fn prefix_table_finds_the_longest_prefix() {
        let mut table = PrefixTable::new();
        table.insert("44", "uk").unwrap();
        table.insert("447", "uk mobile").unwrap();
        table.insert("4479", "uk mobile special").unwrap();
        assert_eq!(
            table.longest_match("447911123456"),
            Some((4, &"uk mobile special"))
        );
        assert_eq!(table.longest_match("447811123456"), Some((3, &"uk mobile")));
        assert_eq!(table.longest_match("442071234567"), Some((2, &"uk")));
        assert_eq!(table.longest_match("33123"), None);
        assert_eq!(table.insert("44", "uk2").unwrap(), Some("uk"));
        assert!(table.insert("4x", "bad").is_err());
        assert_eq!(table.len(), 3);
    }
}
