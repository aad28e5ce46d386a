//! Phone and softphone firmware: what a SIP User-Agent says, and whether it is too old.
//!
//! This module owns the User-Agent formats of common desk phones, ATAs, softphones and
//! PBXs ([`parse_user_agent`]), the comparison of firmware versions ([`Version`]), the
//! operator's minimum versions ([`FirmwareRule`], embedded in the policy as
//! `[[audit.firmware]]`) and the findings about devices seen registering
//! ([`audit_firmware`]). It is pure: what was seen, and when, is passed in.
//!
//! A User-Agent is hostile input (any scanner can send one): one longer than
//! [`MAX_USER_AGENT`] bytes or with a control character is not parsed, parsing never
//! slices inside a character, and what findings quote of it is cut and cleaned.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::findings::{sort_findings, Finding, Severity};

/// Longest User-Agent parsed; real ones are well under 200 bytes.
pub const MAX_USER_AGENT: usize = 256;
/// Most numeric segments a version may have.
const MAX_SEGMENTS: usize = 8;
/// Most digits in one segment (so it fits a `u32`).
const MAX_DIGITS: usize = 9;
/// How much of a User-Agent a finding quotes.
const QUOTE_CHARS: usize = 100;

/// A firmware or application version: numeric dotted segments and whatever follows them
/// (`5921EX`, `(a)`, `-cert4`, `-release+git...`).
///
/// Versions compare by their numbers, missing segments counting as zero (`1.0` equals
/// `1.0.0`, leading zeros are ignored: `01.133` is `1.133`); only then by suffix, so that
/// the order is total. Whether a version is too old is decided by the numbers alone
/// ([`Version::is_below`]): a suffix never makes firmware outdated, since vendors use it
/// both for later patches (`7.6.2c`) and for earlier candidates (`-rc1`).
#[derive(Debug, Clone)]
pub struct Version {
    text: String,
    numbers: Vec<u32>,
    suffix: String,
}

impl Version {
    /// Reads `1.2.3`, `v1.2.3`, `3.2.2.5921EX`, `6.1.5(a)`; `None` for anything not
    /// starting with a digit (after an optional `v`), longer than 64 bytes, or with more
    /// than 8 numeric segments or more than 9 digits in one.
    pub fn parse(text: &str) -> Option<Version> {
        let text = text.trim();
        if text.is_empty() || text.len() > 64 {
            return None;
        }
        let body = text
            .strip_prefix('v')
            .or_else(|| text.strip_prefix('V'))
            .unwrap_or(text);
        let mut numbers = Vec::new();
        let mut rest = body;
        loop {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 || digits > MAX_DIGITS || numbers.len() == MAX_SEGMENTS {
                return None;
            }
            let (number, after) = rest.split_at(digits);
            numbers.push(number.parse().ok()?);
            rest = after;
            match rest.strip_prefix('.') {
                Some(next) if next.starts_with(|c: char| c.is_ascii_digit()) => rest = next,
                _ => break,
            }
        }
        Some(Version {
            text: text.to_string(),
            numbers,
            suffix: rest.to_string(),
        })
    }

    /// As written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The numeric segments, as written (trailing zeros kept).
    pub fn numbers(&self) -> &[u32] {
        &self.numbers
    }

    /// What follows the numbers (`EX` of `5921EX`), possibly empty.
    pub fn suffix(&self) -> &str {
        &self.suffix
    }

    /// Compares the numbers only, missing segments as zero.
    pub fn cmp_numbers(&self, other: &Version) -> Ordering {
        let len = self.numbers.len().max(other.numbers.len());
        (0..len)
            .map(|i| {
                let a = self.numbers.get(i).copied().unwrap_or(0);
                let b = other.numbers.get(i).copied().unwrap_or(0);
                a.cmp(&b)
            })
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }

    /// Whether this version is older than `minimum` (numbers only).
    pub fn is_below(&self, minimum: &Version) -> bool {
        self.cmp_numbers(minimum) == Ordering::Less
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.cmp_numbers(other).then_with(|| {
            self.suffix
                .to_ascii_lowercase()
                .cmp(&other.suffix.to_ascii_lowercase())
        })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// What a User-Agent says about the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAgent {
    /// Canonical vendor name: Yealink, Polycom, Poly, Grandstream, Cisco, Linksys, snom,
    /// Fanvil, Obihai, Aastra, Mitel, Panasonic, Gigaset, Zoiper, MicroSIP, Linphone,
    /// Bria, Asterisk, FreeSWITCH.
    pub vendor: String,
    /// The model as the User-Agent writes it, without protocol noise (Yealink's `SIP-`,
    /// Polycom's family prefix and `-UA`): `T46S`, `VVX_450`, `SPA504G`, `KX-UT136`.
    /// `None` for softphones and PBXs that name no model.
    pub model: Option<String>,
    pub version: Version,
}

impl UserAgent {
    /// "Yealink T46S" or "MicroSIP".
    pub fn device(&self) -> String {
        match &self.model {
            Some(model) => format!("{} {model}", self.vendor),
            None => self.vendor.clone(),
        }
    }
}

/// Reads a SIP User-Agent header value; `None` when the format is unknown, the text is
/// longer than [`MAX_USER_AGENT`] or has a control character.
pub fn parse_user_agent(ua: &str) -> Option<UserAgent> {
    if ua.len() > MAX_USER_AGENT || ua.chars().any(char::is_control) {
        return None;
    }
    let ua = ua.trim();
    let parsers: [fn(&str) -> Option<UserAgent>; 14] = [
        yealink,
        polycom,
        spaced_vendor,
        slash_dash,
        cisco_dash,
        snom,
        model_slash,
        panasonic,
        zoiper,
        microsip,
        linphone,
        bria,
        asterisk,
        freeswitch,
    ];
    parsers.iter().find_map(|parse| parse(ua))
}

fn agent(vendor: &str, model: Option<&str>, version: &str) -> Option<UserAgent> {
    let model = model.map(str::trim).filter(|m| !m.is_empty());
    Some(UserAgent {
        vendor: vendor.to_string(),
        model: model.map(str::to_string),
        version: Version::parse(version)?,
    })
}

/// `text` without `prefix`, compared case-insensitively; never slices inside a character.
fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        text.get(prefix.len()..)
    } else {
        None
    }
}

/// Whether a token is a dotted version starting with a digit (`2.12.1`, `1.0.43.11`).
fn is_dotted_version(token: &str) -> bool {
    token.starts_with(|c: char| c.is_ascii_digit())
        && token.contains('.')
        && Version::parse(token).is_some_and(|v| v.numbers().len() >= 2)
}

/// `<model words> <version> [anything]`: the model is every word before the first dotted
/// version.
fn model_then_version(rest: &str) -> Option<(String, &str)> {
    let tokens: Vec<&str> = rest.split_whitespace().collect();
    let index = tokens.iter().position(|t| is_dotted_version(t))?;
    if index == 0 {
        return None;
    }
    Some((tokens.get(..index)?.join(" "), tokens.get(index)?))
}

/// The first whitespace-separated word, without a trailing `,` or `;`.
fn first_word(text: &str) -> &str {
    text.split_whitespace()
        .next()
        .unwrap_or("")
        .trim_end_matches([',', ';'])
}

/// `Yealink SIP-T46S 66.86.0.15`, `Yealink SIP VP-T49G 51.80.0.100`, `Yealink W60B 77.85.0.20`.
fn yealink(ua: &str) -> Option<UserAgent> {
    let rest = strip_prefix_ci(ua, "Yealink ")?;
    let (model, version) = model_then_version(rest)?;
    let model = strip_prefix_ci(&model, "SIP-")
        .or_else(|| strip_prefix_ci(&model, "SIP "))
        .unwrap_or(&model)
        .to_string();
    agent("Yealink", Some(&model), version)
}

/// `PolycomVVX-VVX_450-UA/6.4.3.5018`, `PolycomSoundPointIP-SPIP_331-UA/4.0.15.1009`,
/// `PolyCCX-CCX_500-UA/9.4.1.0508`, `Poly/CCX_500-UA/7.2.3.0000`.
fn polycom(ua: &str) -> Option<UserAgent> {
    let (vendor, rest) = if let Some(rest) = strip_prefix_ci(ua, "Polycom") {
        ("Polycom", rest)
    } else {
        ("Poly", strip_prefix_ci(ua, "Poly")?)
    };
    // "Poly/CCX_500-UA/7.2.3.0000": no family before the model.
    let (family_model, version) = match rest.strip_prefix('/') {
        Some(rest) => (rest.split_once('/')?.0, rest.split_once('/')?.1),
        None => rest.split_once('/')?,
    };
    let family_model = family_model.strip_suffix("-UA")?;
    let model = if rest.starts_with('/') {
        family_model
    } else {
        family_model.split_once('-')?.1
    };
    agent(vendor, Some(model), first_word(version))
}

/// `<Vendor> <model> <version>` for vendors that write it so: Grandstream, Fanvil.
fn spaced_vendor(ua: &str) -> Option<UserAgent> {
    for vendor in ["Grandstream", "Fanvil"] {
        if let Some(rest) = strip_prefix_ci(ua, vendor).and_then(|r| r.strip_prefix(' ')) {
            let (model, version) = model_then_version(rest)?;
            return agent(vendor, Some(&model), version);
        }
    }
    None
}

/// Splits `SPA504G-7.6.2` at the first `-` followed by a digit.
fn split_model_dash_version(text: &str) -> Option<(&str, &str)> {
    let index = text
        .char_indices()
        .find(|&(i, c)| {
            c == '-'
                && text
                    .get(i + 1..)
                    .is_some_and(|r| r.starts_with(|d: char| d.is_ascii_digit()))
        })
        .map(|(i, _)| i)?;
    Some((text.get(..index)?, text.get(index + 1..)?))
}

/// `Cisco/SPA504G-7.6.2`, `Linksys/SPA942-6.1.5(a)`, `OBIHAI/OBi202-3.2.2.5921EX`.
fn slash_dash(ua: &str) -> Option<UserAgent> {
    for (prefix, vendor) in [
        ("Cisco/", "Cisco"),
        ("Linksys/", "Linksys"),
        ("OBIHAI/", "Obihai"),
    ] {
        if let Some(rest) = strip_prefix_ci(ua, prefix) {
            let (model, version) = split_model_dash_version(first_word(rest))?;
            return agent(vendor, Some(model), version);
        }
    }
    None
}

/// `Cisco-CP7841-3PCC/11.3.7`, `Cisco-CP7960G/8.0`.
fn cisco_dash(ua: &str) -> Option<UserAgent> {
    let rest = strip_prefix_ci(ua, "Cisco-")?;
    let (model, version) = first_word(rest).split_once('/')?;
    agent("Cisco", Some(model), version)
}

/// `snom760/10.1.54.13`, `snomD785/10.1.73.16`, `snomPA1/8.7.3.19`, `snom370-SIP 8.7.5.35`.
fn snom(ua: &str) -> Option<UserAgent> {
    let rest = strip_prefix_ci(ua, "snom")?;
    let word = first_word(rest);
    if let Some((model, version)) = word.split_once('/') {
        return agent("snom", Some(model), version);
    }
    let model = word.strip_suffix("-SIP").unwrap_or(word);
    let version = rest.split_whitespace().nth(1)?;
    agent("snom", Some(model), version)
}

/// `<Vendor> <model words>/<version>`: Aastra, Mitel, Gigaset.
fn model_slash(ua: &str) -> Option<UserAgent> {
    for vendor in ["Aastra", "Mitel", "Gigaset"] {
        if let Some(rest) = strip_prefix_ci(ua, vendor).and_then(|r| r.strip_prefix(' ')) {
            let (model, version) = rest.split_once('/')?;
            return agent(vendor, Some(model), first_word(version));
        }
    }
    None
}

/// `Panasonic_KX-UT136/01.133`, `Panasonic_KX-TGP600/06.001 (0080F0123456)`.
fn panasonic(ua: &str) -> Option<UserAgent> {
    let rest = strip_prefix_ci(ua, "Panasonic_")?;
    let (model, version) = rest.split_once('/')?;
    agent("Panasonic", Some(model), first_word(version))
}

/// `Z 5.5.9 v2.10.12.0` (Zoiper 5: the app version, then its SDK's), `Zoiper rv2.10.8.2`.
fn zoiper(ua: &str) -> Option<UserAgent> {
    if let Some(rest) = ua.strip_prefix("Z ") {
        let version = first_word(rest);
        if is_dotted_version(version) {
            return agent("Zoiper", None, version);
        }
        return None;
    }
    let rest = strip_prefix_ci(ua, "Zoiper ")?;
    let word = first_word(rest);
    let version = word.strip_prefix("rv").unwrap_or(word);
    agent("Zoiper", None, version)
}

/// `MicroSIP/3.21.3`.
fn microsip(ua: &str) -> Option<UserAgent> {
    let rest = strip_prefix_ci(ua, "MicroSIP/")?;
    agent("MicroSIP", None, first_word(rest))
}

/// `Linphone/4.4.9 (belle-sip/4.4.0)`, `LinphoneiOS/4.3.0 (...) LinphoneSDK/4.4.0`,
/// `LinphoneAndroid/4.6.0`, `Linphone Desktop/4.2.5 (...)`.
fn linphone(ua: &str) -> Option<UserAgent> {
    let rest = strip_prefix_ci(ua, "Linphone")?;
    let (model, version) = rest.split_once('/')?;
    agent("Linphone", Some(model), first_word(version))
}

/// `Bria 6 release 6.5.3 stamp 110286`, `Bria iOS release 6.13.1 stamp 2099`.
fn bria(ua: &str) -> Option<UserAgent> {
    let rest = strip_prefix_ci(ua, "Bria ")?;
    let (model, after) = rest.split_once(" release ")?;
    agent("Bria", Some(model), first_word(after))
}

/// `Asterisk PBX 18.12.0`, `Asterisk PBX certified/18.9-cert4`, `FPBX-16.0.33(18.15.0)`.
fn asterisk(ua: &str) -> Option<UserAgent> {
    if let Some(rest) = strip_prefix_ci(ua, "Asterisk PBX ") {
        let word = first_word(rest);
        let version = strip_prefix_ci(word, "certified/").unwrap_or(word);
        return agent("Asterisk", None, version);
    }
    let rest = strip_prefix_ci(ua, "FPBX-")?;
    let inner = rest.split_once('(')?.1.split_once(')')?.0;
    agent("Asterisk", Some("FreePBX"), inner)
}

/// `FreeSWITCH-mod_sofia/1.10.7-release+git~20211021~64bit`.
fn freeswitch(ua: &str) -> Option<UserAgent> {
    let rest = strip_prefix_ci(ua, "FreeSWITCH-mod_sofia/")?;
    agent("FreeSWITCH", None, first_word(rest))
}

/// A minimum firmware version for a vendor, or one of its models.
///
/// `[[audit.firmware]]` in the policy, e.g.
/// `vendor = "Yealink"`, `model = "T46S"`, `min_version = "66.86.0.160"`,
/// `note = "CVE-2021-27561"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirmwareRule {
    /// Compared with the parsed vendor, ignoring case ([`UserAgent::vendor`]).
    pub vendor: String,
    /// A case-insensitive **prefix** of the parsed model, ignoring `-`, `_` and spaces:
    /// `T4` covers T46S and T48G, `VVX 4` covers VVX_450. Absent: every model.
    #[serde(default)]
    pub model: Option<String>,
    /// The oldest acceptable version (compared by its numbers, see [`Version`]).
    pub min_version: String,
    /// Why, for the finding (an advisory, a CVE).
    #[serde(default)]
    pub note: Option<String>,
}

impl FirmwareRule {
    /// The minimum as a [`Version`]; an error (naming the value, which is not secret) when
    /// it is not one, or when the vendor is empty. For config validation.
    pub fn check(&self) -> Result<Version, String> {
        if self.vendor.trim().is_empty() {
            return Err("firmware rule without a vendor".to_string());
        }
        Version::parse(&self.min_version).ok_or_else(|| {
            format!(
                "min_version \"{}\" is not a version (digits separated by dots)",
                self.min_version
            )
        })
    }

    /// Whether the rule is about this device.
    pub fn matches(&self, ua: &UserAgent) -> bool {
        if !self.vendor.trim().eq_ignore_ascii_case(&ua.vendor) {
            return false;
        }
        match (&self.model, &ua.model) {
            (None, _) => true,
            (Some(rule), Some(model)) => normalize(model).starts_with(&normalize(rule)),
            (Some(_), None) => false,
        }
    }

    /// How specific it is: a model rule over a vendor rule, a longer model over a shorter.
    fn specificity(&self) -> usize {
        self.model.as_deref().map_or(0, |m| normalize(m).len() + 1)
    }

    fn describe(&self) -> String {
        match &self.model {
            Some(model) => format!("{} {model}", self.vendor),
            None => format!("{} (every model)", self.vendor),
        }
    }
}

fn normalize(model: &str) -> String {
    model
        .chars()
        .filter(|c| !matches!(c, '-' | '_' | ' '))
        .flat_map(char::to_lowercase)
        .collect()
}

/// A device seen registering for an extension (from a store or the PBX's contacts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenDevice {
    pub extension: String,
    pub user_agent: String,
    pub ip: Option<IpAddr>,
    pub last_seen: DateTime<Utc>,
}

/// One device for [`firmware_findings`]: seen at registration or listed in an inventory.
pub(crate) struct Device<'a> {
    /// How findings name the extension ("extension 1001", or "extension 1001
    /// (inventory.csv:2)" for an inventory record); also what tells devices apart.
    pub subject: String,
    pub user_agent: &'a str,
    pub ip: Option<IpAddr>,
    pub last_seen: Option<DateTime<Utc>>,
}

/// Findings about the firmware of devices seen registering, sorted:
///
/// - `outdated_firmware` (high): a recognized device below the minimum of the most
///   specific rule matching it (a model rule over a vendor rule, a longer model over a
///   shorter, then the highest minimum). Per extension, vendor and model only the device
///   seen last counts, so an upgraded phone is not reported for its old User-Agent.
/// - `unrecognized_user_agent` (info): once per distinct User-Agent the audit cannot read,
///   naming the extensions it was seen on; only when there are rules to check.
/// - `invalid_firmware_rule` (low): a rule whose `min_version` is not a version; it is
///   not applied.
pub fn audit_firmware(seen: &[SeenDevice], rules: &[FirmwareRule]) -> Vec<Finding> {
    let devices: Vec<Device<'_>> = seen
        .iter()
        .map(|device| Device {
            subject: format!("extension {}", device.extension),
            user_agent: &device.user_agent,
            ip: device.ip,
            last_seen: Some(device.last_seen),
        })
        .collect();
    let mut findings = firmware_findings(&devices, rules);
    sort_findings(&mut findings);
    findings
}

/// [`audit_firmware`] over devices from any source, unsorted.
pub(crate) fn firmware_findings(devices: &[Device<'_>], rules: &[FirmwareRule]) -> Vec<Finding> {
    let mut findings = Vec::new();
    if devices.is_empty() {
        return findings;
    }
    let mut valid: Vec<(&FirmwareRule, Version)> = Vec::new();
    for (index, rule) in rules.iter().enumerate() {
        match rule.check() {
            Ok(minimum) => valid.push((rule, minimum)),
            Err(message) => findings.push(Finding::new(
                Severity::Low,
                "invalid_firmware_rule",
                format!("firmware rule {} ({})", index + 1, quote(&rule.vendor)),
                message,
                "correct min_version: digits separated by dots, such as 66.86.0.160",
            )),
        }
    }
    if valid.is_empty() {
        return findings;
    }

    // The latest sighting per (extension, vendor, model); unreadable agents by text.
    let mut latest: BTreeMap<(&str, String, String), (&Device<'_>, UserAgent)> = BTreeMap::new();
    let mut unrecognized: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for device in devices {
        match parse_user_agent(device.user_agent) {
            Some(ua) => {
                let key = (
                    device.subject.as_str(),
                    ua.vendor.to_ascii_lowercase(),
                    ua.model.as_deref().map(normalize).unwrap_or_default(),
                );
                let newer = latest
                    .get(&key)
                    .is_none_or(|(seen, _)| device.last_seen > seen.last_seen);
                if newer {
                    latest.insert(key, (device, ua));
                }
            }
            None => {
                // "1001", or "1001 (inventory.csv:2)" for an inventory record.
                let name = device
                    .subject
                    .strip_prefix("extension ")
                    .unwrap_or(&device.subject);
                let extensions = unrecognized.entry(device.user_agent).or_default();
                if !extensions.contains(&name) {
                    extensions.push(name);
                }
            }
        }
    }

    for (device, ua) in latest.values() {
        let best =
            valid
                .iter()
                .filter(|(rule, _)| rule.matches(ua))
                .max_by(|(a, min_a), (b, min_b)| {
                    a.specificity()
                        .cmp(&b.specificity())
                        .then_with(|| min_a.cmp_numbers(min_b))
                });
        let Some((rule, minimum)) = best else {
            continue;
        };
        if !ua.version.is_below(minimum) {
            continue;
        }
        let mut evidence = format!(
            "User-Agent {} runs {}, below the minimum {minimum} for {}",
            quote(device.user_agent),
            ua.version,
            rule.describe()
        );
        if let Some(note) = rule.note.as_deref().filter(|n| !n.trim().is_empty()) {
            evidence.push_str(&format!(" ({})", note.trim()));
        }
        if let Some(last_seen) = device.last_seen {
            evidence.push_str(&format!(
                "; last seen {}",
                last_seen.format("%Y-%m-%d %H:%M UTC")
            ));
        }
        let subject = match device.ip {
            Some(ip) => format!("{} device {} at {ip}", device.subject, ua.device()),
            None => format!("{} device {}", device.subject, ua.device()),
        };
        findings.push(Finding::new(
            Severity::High,
            "outdated_firmware",
            subject,
            evidence,
            format!("upgrade the firmware to ≥ {minimum}"),
        ));
    }

    for (user_agent, extensions) in unrecognized {
        findings.push(Finding::new(
            Severity::Info,
            "unrecognized_user_agent",
            format!("user agent {}", quote(user_agent)),
            format!(
                "seen on {} {}: the audit cannot tell its vendor and version, so its firmware is not checked",
                if extensions.len() == 1 { "extension" } else { "extensions" },
                list_some(&extensions, 10)
            ),
            "check the device's firmware by hand, or list it with a known User-Agent",
        ));
    }
    findings
}

/// A User-Agent (hostile text) for a finding: quoted, at most [`QUOTE_CHARS`] characters,
/// control characters replaced.
pub(crate) fn quote(text: &str) -> String {
    let mut shown: String = text
        .chars()
        .take(QUOTE_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().count() > QUOTE_CHARS {
        shown.push('…');
    }
    format!("\"{}\"", shown.replace('"', "'"))
}

/// "a, b, c and 4 more".
pub(crate) fn list_some(items: &[&str], at_most: usize) -> String {
    let shown: Vec<&str> = items.iter().take(at_most).copied().collect();
    let mut text = shown.join(", ");
    if items.len() > at_most {
        text.push_str(&format!(" and {} more", items.len() - at_most));
    }
    text
}

/// The vendor a User-Agent names, for the default-login check (see [`crate::defaults`]).
pub(crate) fn vendor_of(user_agent: &str) -> Option<String> {
    parse_user_agent(user_agent).map(|ua| ua.vendor)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    #[test]
    fn versions_compare_by_numbers() {
        assert!(v("66.86.0.15") < v("66.86.0.160"));
        assert!(v("1.0.11.3") < v("1.0.11.10"));
        assert_eq!(v("1.0"), v("1.0.0"));
        assert_eq!(v("01.133").numbers(), [1, 133]);
        assert_eq!(v("3.2.2.5921EX").numbers(), [3, 2, 2, 5921]);
        assert_eq!(v("3.2.2.5921EX").suffix(), "EX");
        assert_eq!(v("6.1.5(a)").suffix(), "(a)");
        assert_eq!(v("18.9-cert4").numbers(), [18, 9]);
        assert_eq!(v("v2.10").numbers(), [2, 10]);
        // A suffix orders but never makes a version outdated.
        assert!(v("7.6.2") < v("7.6.2c"));
        assert!(!v("7.6.2").is_below(&v("7.6.2c")));
        assert!(!v("7.6.2c").is_below(&v("7.6.2")));
        assert!(v("7.6.1c").is_below(&v("7.6.2")));
        for bad in ["", "abc", "x1.2", ".1", "1234567890.1", &"1.".repeat(40)] {
            assert!(Version::parse(bad).is_none(), "{bad:?}");
        }
        assert_eq!(v("1.2.3.4.5.6.7.8").numbers().len(), 8);
        assert!(Version::parse("1.2.3.4.5.6.7.8.9").is_none());
        assert!(Version::parse("1.22222222222").is_none());
    }

    #[test]
    fn hostile_text_is_quoted_safely() {
        let long = "A".repeat(500);
        assert!(quote(&long).chars().count() < 110);
        assert_eq!(quote("a\u{0}b\"c"), "\"a?b'c\"");
    }
}
