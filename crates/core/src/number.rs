//! Dialed digits to E.164 and a destination class.
//!
//! [`DialPlan`] holds an account's home country and its international and national
//! prefixes; [`classify`] turns what a phone dialed into a [`Destination`]: the E.164 form,
//! the country, libphonenumber's number type and one [`DestinationClass`] that the rules
//! act on. Ranges known for international revenue share fraud come from a
//! [`HighRiskList`] (a shipped list, extensible in the policy), each with its reason.

use std::fmt;
use std::str::FromStr;

use phonenumber::metadata::DATABASE;
use phonenumber::Type as NumberType;

use crate::rating::PrefixTable;

/// What a destination is, for the rules. One class per destination; when several apply the
/// most dangerous wins, in this order: emergency, internal, high-risk, satellite, premium,
/// international, toll-free, mobile, national.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DestinationClass {
    Emergency,
    Internal,
    National,
    Mobile,
    TollFree,
    International,
    Premium,
    Satellite,
    HighRisk,
}

impl DestinationClass {
    pub const ALL: [DestinationClass; 9] = [
        DestinationClass::Emergency,
        DestinationClass::Internal,
        DestinationClass::National,
        DestinationClass::Mobile,
        DestinationClass::TollFree,
        DestinationClass::International,
        DestinationClass::Premium,
        DestinationClass::Satellite,
        DestinationClass::HighRisk,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DestinationClass::Emergency => "emergency",
            DestinationClass::Internal => "internal",
            DestinationClass::National => "national",
            DestinationClass::Mobile => "mobile",
            DestinationClass::TollFree => "toll_free",
            DestinationClass::International => "international",
            DestinationClass::Premium => "premium",
            DestinationClass::Satellite => "satellite",
            DestinationClass::HighRisk => "high_risk",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for DestinationClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DestinationClass {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        DestinationClass::ALL
            .into_iter()
            .find(|class| class.as_str() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = DestinationClass::ALL.iter().map(|c| c.as_str()).collect();
                format!(
                    "unknown destination class {text:?} (expected one of {})",
                    names.join(", ")
                )
            })
    }
}

/// A set of destination classes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassSet(u16);

impl ClassSet {
    pub const EMPTY: ClassSet = ClassSet(0);

    pub fn contains(self, class: DestinationClass) -> bool {
        self.0 & class.bit() != 0
    }

    pub fn insert(&mut self, class: DestinationClass) {
        self.0 |= class.bit();
    }

    pub fn iter(self) -> impl Iterator<Item = DestinationClass> {
        DestinationClass::ALL
            .into_iter()
            .filter(move |c| self.contains(*c))
    }
}

impl FromIterator<DestinationClass> for ClassSet {
    fn from_iter<I: IntoIterator<Item = DestinationClass>>(iter: I) -> Self {
        let mut set = ClassSet::EMPTY;
        for class in iter {
            set.insert(class);
        }
        set
    }
}

impl fmt::Display for ClassSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(|c| c.as_str()).collect();
        f.write_str(&names.join(", "))
    }
}

/// How an account's phones dial.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DialPlan {
    /// ISO 3166 region of the account, e.g. "FR".
    pub country: String,
    /// E.164 country calling code of that region, e.g. 33.
    pub country_code: u16,
    /// International access prefix, e.g. "00" or "011".
    pub international_prefix: String,
    /// National (trunk) prefix, e.g. "0" or "1"; `None` where there is none.
    pub national_prefix: Option<String>,
    /// Dialed strings of this many digits (inclusive range) are internal extensions.
    pub internal_min_digits: usize,
    pub internal_max_digits: usize,
}

impl DialPlan {
    /// The dial plan libphonenumber knows for `region` (international and national
    /// prefixes from its metadata), with internal extensions of 2 to 6 digits.
    pub fn for_region(region: &str) -> Result<DialPlan, String> {
        let metadata = DATABASE.by_id(region).ok_or_else(|| {
            format!(
                "unknown country {region:?} (expected an ISO 3166 code such as \"FR\" or \"US\")"
            )
        })?;
        let international_prefix = metadata
            .preferred_international_prefix()
            .map(str::to_string)
            .or_else(|| {
                metadata.international_prefix().map(|re| {
                    // Regexes such as "00" or "011"; keep only plain digit prefixes.
                    re.as_str().chars().filter(char::is_ascii_digit).collect()
                })
            })
            .filter(|p: &String| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .unwrap_or_else(|| "00".to_string());
        Ok(DialPlan {
            country: region.to_string(),
            country_code: metadata.country_code(),
            international_prefix,
            national_prefix: metadata.national_prefix().map(str::to_string),
            internal_min_digits: 2,
            internal_max_digits: 6,
        })
    }
}

/// One range known for international revenue share fraud or other abuse.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HighRiskEntry {
    /// E.164 digits without '+'.
    pub prefix: String,
    pub reason: String,
}

/// Ranges known for fraud, matched by longest prefix.
#[derive(Clone, Debug, Default)]
pub struct HighRiskList {
    table: PrefixTable<HighRiskEntry>,
}

/// The shipped list: `prefix,reason` lines, `#` comments.
pub const BUILTIN_HIGH_RISK: &str = include_str!("../data/high-risk.csv");

impl HighRiskList {
    pub fn new() -> Self {
        Self::default()
    }

    /// The shipped list of ranges.
    pub fn builtin() -> HighRiskList {
        let mut list = HighRiskList::new();
        for line in BUILTIN_HIGH_RISK.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some((prefix, reason)) = line.split_once(',') {
                // INVARIANT: the shipped file holds digit prefixes only (tested below).
                let _ = list.add(prefix.trim().trim_start_matches('+'), reason.trim());
            }
        }
        list
    }

    /// Adds or replaces a range; `prefix` is E.164 digits with or without '+'.
    pub fn add(&mut self, prefix: &str, reason: &str) -> Result<(), String> {
        let digits = prefix.trim_start_matches('+');
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 15 {
            return Err(format!(
                "{prefix:?} is not an E.164 prefix (expected \"+\" and digits, e.g. \"+882\")"
            ));
        }
        let entry = HighRiskEntry {
            prefix: digits.to_string(),
            reason: reason.to_string(),
        };
        self.table
            .insert(digits, entry)
            .map(|_| ())
            .map_err(|_| format!("{prefix:?} is not an E.164 prefix"))
    }

    pub fn lookup(&self, e164_digits: &str) -> Option<&HighRiskEntry> {
        self.table.longest_match(e164_digits).map(|(_, e)| e)
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

/// A dialed number that cannot be a phone number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    #[error("number is empty")]
    Empty,
    #[error("number is longer than 32 characters")]
    TooLong,
    #[error("number {0:?} has a character that is not a digit, '+', '*' or '#'")]
    BadCharacter(String),
    #[error("number {0:?} has no digits after its prefix")]
    NoDigits(String),
}

/// A classified destination.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Destination {
    /// What was dialed, separators removed.
    pub dialed: String,
    /// E.164 with '+', when the number is not internal or an emergency short code.
    pub e164: Option<String>,
    pub class: DestinationClass,
    /// ISO 3166 region, or "001" for non-geographic ranges (+800, +882 ...).
    pub country: Option<String>,
    pub country_code: Option<u16>,
    /// libphonenumber's type ("fixed_line", "mobile", "premium_rate", "voip" ...).
    pub number_type: Option<String>,
    /// Whether libphonenumber's metadata knows the number as valid.
    pub valid: bool,
    /// The high-risk range it falls in, with its reason.
    pub high_risk: Option<HighRiskEntry>,
    /// How the dialed string became E.164, for `explain`.
    pub normalization: String,
}

impl Destination {
    /// E.164 digits without '+', or the dialed digits for internal and emergency numbers.
    pub fn digits(&self) -> &str {
        self.e164
            .as_deref()
            .map(|e| e.trim_start_matches('+'))
            .unwrap_or(&self.dialed)
    }
}

/// Compiled libphonenumber patterns kept at once. The `phonenumber` crate keeps its
/// compiled regexes in one LRU of 100 entries; traffic to more than a few countries then
/// recompiles patterns on every call (measured: 240 µs per number on a realistic mix,
/// 3.5 ms across 40 countries, against 5-7 µs when they stay compiled). The whole metadata
/// has a few thousand patterns; keeping them all costs some megabytes.
pub const PATTERN_CACHE_SIZE: usize = 16_384;

/// Loads libphonenumber's metadata now (it is parsed lazily on first use, which would
/// otherwise make the first call decision of a service tens of milliseconds slow) and
/// enlarges its pattern cache to [`PATTERN_CACHE_SIZE`]. Call it once at start (calling it
/// again only empties the cache).
pub fn warm_up() {
    let cache = DATABASE.cache();
    if let Ok(mut cache) = cache.lock() {
        // The crate's `CachedRegex`es share this mutex: replacing what is inside it keeps
        // every one of them pointing at the bigger cache.
        *cache = regex_cache::RegexCache::new(PATTERN_CACHE_SIZE);
    }
    let _ = phonenumber::parse(None, "+33142685300").map(|n| n.is_valid());
}

/// Removes visual separators and checks the characters of a dialed string.
pub fn clean_dialed(raw: &str) -> Result<String, NumberError> {
    if raw.len() > 64 {
        return Err(NumberError::TooLong);
    }
    let mut cleaned = String::with_capacity(raw.len());
    for (i, ch) in raw.trim().chars().enumerate() {
        match ch {
            '0'..='9' | '*' | '#' => cleaned.push(ch),
            '+' if i == 0 => cleaned.push(ch),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return Err(NumberError::BadCharacter(raw.to_string())),
        }
    }
    if cleaned.is_empty() {
        return Err(NumberError::Empty);
    }
    if cleaned.len() > 32 {
        return Err(NumberError::TooLong);
    }
    Ok(cleaned)
}

fn type_name(kind: NumberType) -> &'static str {
    match kind {
        NumberType::FixedLine => "fixed_line",
        NumberType::Mobile => "mobile",
        NumberType::FixedLineOrMobile => "fixed_line_or_mobile",
        NumberType::TollFree => "toll_free",
        NumberType::PremiumRate => "premium_rate",
        NumberType::SharedCost => "shared_cost",
        NumberType::PersonalNumber => "personal_number",
        NumberType::Voip => "voip",
        NumberType::Pager => "pager",
        NumberType::Uan => "uan",
        NumberType::Emergency => "emergency",
        NumberType::Voicemail => "voicemail",
        NumberType::ShortCode => "short_code",
        NumberType::StandardRate => "standard_rate",
        NumberType::Carrier => "carrier",
        NumberType::NoInternational => "no_international",
        NumberType::Unknown => "unknown",
    }
}

/// Country calling codes of satellite systems and international networks (ITU-T E.164
/// shared codes), classed `satellite` whatever libphonenumber says of the number.
const INTERNATIONAL_NETWORK_CODES: [u16; 4] = [870, 881, 882, 883];

/// Normalizes `raw` with the account's dial plan and classifies it.
pub fn classify(
    raw: &str,
    plan: &DialPlan,
    emergency_numbers: &[String],
    high_risk: &HighRiskList,
) -> Result<Destination, NumberError> {
    let dialed = clean_dialed(raw)?;
    let short = |class: DestinationClass, how: &str| Destination {
        dialed: dialed.clone(),
        e164: None,
        class,
        country: None,
        country_code: None,
        number_type: None,
        valid: true,
        high_risk: None,
        normalization: how.to_string(),
    };
    if emergency_numbers.contains(&dialed) {
        return Ok(short(DestinationClass::Emergency, "emergency number"));
    }
    if dialed.contains(['*', '#']) {
        if dialed.starts_with('+') {
            return Err(NumberError::BadCharacter(raw.to_string()));
        }
        return Ok(short(DestinationClass::Internal, "feature code"));
    }
    let (international_digits, how) = if let Some(rest) = dialed.strip_prefix('+') {
        (rest.to_string(), "E.164 as dialed".to_string())
    } else if let Some(rest) = dialed.strip_prefix(plan.international_prefix.as_str()) {
        (
            rest.to_string(),
            format!("international prefix {} removed", plan.international_prefix),
        )
    } else if (plan.internal_min_digits..=plan.internal_max_digits).contains(&dialed.len()) {
        return Ok(short(
            DestinationClass::Internal,
            &format!(
                "{} to {} digits: internal extension",
                plan.internal_min_digits, plan.internal_max_digits
            ),
        ));
    } else if let Some(rest) = plan
        .national_prefix
        .as_deref()
        .and_then(|p| dialed.strip_prefix(p))
    {
        (
            format!("{}{rest}", plan.country_code),
            format!(
                "national prefix {} replaced by +{}",
                plan.national_prefix.as_deref().unwrap_or(""),
                plan.country_code
            ),
        )
    } else {
        (
            format!("{}{dialed}", plan.country_code),
            format!("subscriber number: +{} added", plan.country_code),
        )
    };
    if international_digits.is_empty() {
        return Err(NumberError::NoDigits(raw.to_string()));
    }
    let e164 = format!("+{international_digits}");
    let high_risk_entry = high_risk.lookup(&international_digits).cloned();
    let parsed = phonenumber::parse(None, &e164).ok();
    let (country_code, country, number_type, valid) = match &parsed {
        Some(number) => {
            let metadata = number.metadata(&DATABASE);
            let region = metadata.map(|m| m.id().to_string());
            let kind = number.number_type(&DATABASE);
            // libphonenumber's own validity test is "its type is known": reuse the type
            // instead of matching every pattern a second time.
            (
                Some(number.code().value()),
                region,
                Some(kind),
                kind != NumberType::Unknown,
            )
        }
        None => (None, None, None, false),
    };
    let code = country_code.unwrap_or(0);
    let is_home = match country.as_deref() {
        Some(region) if region != "001" => region == plan.country,
        _ => code == plan.country_code && code != 0,
    };
    let class = if high_risk_entry.is_some() {
        DestinationClass::HighRisk
    } else if INTERNATIONAL_NETWORK_CODES.contains(&code)
        || INTERNATIONAL_NETWORK_CODES
            .iter()
            .any(|c| international_digits.starts_with(&c.to_string()))
    {
        DestinationClass::Satellite
    } else if number_type == Some(NumberType::PremiumRate) {
        DestinationClass::Premium
    } else if !is_home {
        DestinationClass::International
    } else if number_type == Some(NumberType::TollFree) {
        DestinationClass::TollFree
    } else if number_type == Some(NumberType::Mobile) {
        DestinationClass::Mobile
    } else {
        DestinationClass::National
    };
    Ok(Destination {
        dialed,
        e164: Some(e164),
        class,
        country,
        country_code,
        number_type: number_type.map(|t| type_name(t).to_string()),
        valid,
        high_risk: high_risk_entry,
        normalization: how,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fr() -> DialPlan {
        DialPlan::for_region("FR").unwrap()
    }

    fn us() -> DialPlan {
        DialPlan::for_region("US").unwrap()
    }

    fn class_of(raw: &str, plan: &DialPlan) -> DestinationClass {
        classify(
            raw,
            plan,
            &["112".into(), "911".into()],
            &HighRiskList::builtin(),
        )
        .unwrap()
        .class
    }

    #[test]
    fn dial_plans_come_from_metadata() {
        let fr = fr();
        assert_eq!(
            (fr.country_code, fr.international_prefix.as_str()),
            (33, "00")
        );
        assert_eq!(fr.national_prefix.as_deref(), Some("0"));
        let us = us();
        assert_eq!(
            (us.country_code, us.international_prefix.as_str()),
            (1, "011")
        );
        assert_eq!(us.national_prefix.as_deref(), Some("1"));
        assert!(DialPlan::for_region("XX").is_err());
    }

    #[test]
    fn normalizes_to_e164() {
        let hr = HighRiskList::builtin();
        let d = classify("01 42 68 53 00", &fr(), &[], &hr).unwrap();
        assert_eq!(d.e164.as_deref(), Some("+33142685300"));
        assert_eq!(d.class, DestinationClass::National);
        let d = classify("0044 20 7946 0000", &fr(), &[], &hr).unwrap();
        assert_eq!(d.e164.as_deref(), Some("+442079460000"));
        assert_eq!(d.class, DestinationClass::International);
        assert_eq!(d.country.as_deref(), Some("GB"));
        let d = classify("12125550123", &us(), &[], &hr).unwrap();
        assert_eq!(d.e164.as_deref(), Some("+12125550123"));
        let d = classify("2125550123", &us(), &[], &hr).unwrap();
        assert_eq!(d.e164.as_deref(), Some("+12125550123"));
        let d = classify("011442079460000", &us(), &[], &hr).unwrap();
        assert_eq!(d.e164.as_deref(), Some("+442079460000"));
    }

    #[test]
    fn classes_follow_metadata_and_lists() {
        assert_eq!(class_of("112", &fr()), DestinationClass::Emergency);
        assert_eq!(class_of("1001", &fr()), DestinationClass::Internal);
        assert_eq!(class_of("*97", &fr()), DestinationClass::Internal);
        assert_eq!(class_of("0612345678", &fr()), DestinationClass::Mobile);
        assert_eq!(class_of("0800123456", &fr()), DestinationClass::TollFree);
        assert_eq!(class_of("0899123456", &fr()), DestinationClass::Premium);
        assert_eq!(class_of("+19005550123", &us()), DestinationClass::Premium);
        assert_eq!(class_of("+18005550123", &us()), DestinationClass::TollFree);
        assert_eq!(class_of("+88216123456", &fr()), DestinationClass::HighRisk);
        assert_eq!(
            class_of("+4915112345678", &fr()),
            DestinationClass::International
        );
        // A call from the US to Jamaica shares country code 1 but is international (and
        // +1 876 is a known one-ring scam range).
        assert_eq!(class_of("18765550123", &us()), DestinationClass::HighRisk);
        assert_eq!(
            class_of("+16135550123", &us()),
            DestinationClass::International
        );
    }

    #[test]
    fn satellite_without_the_high_risk_list() {
        let d = classify("+88216123456", &fr(), &[], &HighRiskList::new()).unwrap();
        assert_eq!(d.class, DestinationClass::Satellite);
        assert_eq!(d.number_type.as_deref(), Some("voip"));
        assert!(d.valid);
    }

    #[test]
    fn hostile_input_is_refused() {
        let hr = HighRiskList::builtin();
        for bad in [
            "",
            "   ",
            "abc",
            "12;DROP",
            "+",
            "1+2",
            "sip:1@x",
            &"1".repeat(40),
        ] {
            assert!(classify(bad, &fr(), &[], &hr).is_err(), "{bad:?}");
        }
        assert!(classify("00", &fr(), &[], &hr).is_err());
    }

    #[test]
    fn builtin_high_risk_list_is_well_formed() {
        let mut count = 0;
        for line in BUILTIN_HIGH_RISK
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        {
            let (prefix, reason) = line.split_once(',').expect("prefix,reason");
            assert!(HighRiskList::new().add(prefix, reason).is_ok(), "{line}");
            assert!(reason.trim().len() > 10, "reason too short: {line}");
            count += 1;
        }
        assert_eq!(HighRiskList::builtin().len(), count);
        assert!(count >= 20);
    }

    #[test]
    fn class_names_round_trip() {
        for class in DestinationClass::ALL {
            assert_eq!(class.as_str().parse::<DestinationClass>().unwrap(), class);
        }
        assert!("moon".parse::<DestinationClass>().is_err());
    }
}
