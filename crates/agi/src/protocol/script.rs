//! The script a FastAGI connection asks for, and its parameters.
//!
//! Asterisk passes everything after the first `/` of `agi://host[:port]/...` as
//! `agi_network_script`, query string included (`launch_netscript` in `res_agi.c`), so
//! `AGI(agi://127.0.0.1:4573/authorize?extension=1001&number=%2B4420...)` arrives as the
//! script `authorize` with two parameters.
//!
//! Parameter values are percent-decoded (`%2B` is `+`, `%26` is `&`); a `+` stays a `+`
//! (E.164 numbers start with one), unlike HTML forms. The dialplan should wrap every value in
//! `${URIENCODE(...)}`: a caller id holding `&number=...` then cannot add a parameter, and a
//! parameter given twice is refused rather than one of them silently winning.

use crate::error::RequestError;

/// The most parameters accepted in one query string.
pub const MAX_PARAMS: usize = 16;
/// The longest parameter name accepted.
const MAX_PARAM_NAME: usize = 32;
/// How much of an unknown script's name is kept (for logs and the reason shown).
const MAX_SCRIPT_NAME: usize = 64;

/// The scripts this server runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Script {
    /// `authorize`: ask before a call.
    Authorize,
    /// `end`: report the end of a call, from a hangup handler.
    End,
    /// Anything else, with its name cut to 64 characters and control characters replaced.
    Unknown(String),
}

impl Script {
    pub fn name(&self) -> &str {
        match self {
            Script::Authorize => "authorize",
            Script::End => "end",
            Script::Unknown(name) => name,
        }
    }
}

/// Splits `agi_network_script` into the script and its raw query string (empty when none).
/// Slashes around the path are ignored (`agi://host//authorize/` is `authorize`).
pub fn split_network_script(network_script: &str) -> (Script, &str) {
    let (path, query) = network_script
        .split_once('?')
        .unwrap_or((network_script, ""));
    let script = match path.trim_matches('/') {
        "authorize" => Script::Authorize,
        "end" => Script::End,
        other => Script::Unknown(
            other
                .chars()
                .take(MAX_SCRIPT_NAME)
                .map(|c| if c.is_control() { '?' } else { c })
                .collect(),
        ),
    };
    (script, query)
}

/// Decoded query parameters, each name at most once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Parses a query string, accepting only the names in `allowed` (the script's name is for
    /// the error message).
    pub fn parse(
        query: &str,
        script: &'static str,
        allowed: &[&str],
    ) -> Result<Params, RequestError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for part in query.split('&').filter(|p| !p.is_empty()) {
            if pairs.len() == MAX_PARAMS {
                return Err(RequestError::TooManyParameters { limit: MAX_PARAMS });
            }
            let (raw_name, raw_value) = part.split_once('=').unwrap_or((part, ""));
            let name = percent_decode(raw_name)
                .ok()
                .filter(|n| valid_param_name(n))
                .ok_or(RequestError::BadParameterName {
                    limit: MAX_PARAM_NAME,
                })?;
            if !allowed.contains(&name.as_str()) {
                return Err(RequestError::UnknownParameter { script, name });
            }
            if pairs.iter().any(|(n, _)| *n == name) {
                return Err(RequestError::DuplicateParameter { name });
            }
            let value = percent_decode(raw_value)
                .map_err(|()| RequestError::BadEncoding { name: name.clone() })?;
            pairs.push((name, value));
        }
        Ok(Params { pairs })
    }

    /// Whether `name` was given, even empty.
    pub fn contains(&self, name: &str) -> bool {
        self.pairs.iter().any(|(n, _)| n == name)
    }

    /// The value of `name`, `None` when absent or empty (an empty `${ANSWEREDTIME}` is no
    /// figure at all).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
}

fn valid_param_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_PARAM_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `%XX` to the byte; the result must be UTF-8. A `%` not followed by two hex digits fails.
fn percent_decode(s: &str) -> Result<String, ()> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes.get(i + 1).and_then(|&h| hex_value(h)).ok_or(())?;
            let lo = bytes.get(i + 2).and_then(|&l| hex_value(l)).ok_or(())?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ())
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const AUTH: &[&str] = &["call_id", "extension", "number", "ip"];

    #[test]
    fn splits_the_script_from_its_query() {
        assert_eq!(
            split_network_script("authorize?extension=1001"),
            (Script::Authorize, "extension=1001")
        );
        assert_eq!(split_network_script("/end/"), (Script::End, ""));
        assert_eq!(
            split_network_script("authorise?x"),
            (Script::Unknown("authorise".into()), "x")
        );
        assert_eq!(
            split_network_script(""),
            (Script::Unknown(String::new()), "")
        );
        let (long, _) = split_network_script(&"a\u{7}".repeat(100));
        assert_eq!(long.name().chars().count(), 64);
        assert!(!long.name().contains('\u{7}'));
    }

    #[test]
    fn decodes_parameters_and_keeps_plus() {
        let p = Params::parse(
            "extension=ext%201001&number=+44%2B&ip=&&call_id=%C3%A9",
            "authorize",
            AUTH,
        )
        .unwrap();
        assert_eq!(p.get("extension"), Some("ext 1001"));
        assert_eq!(p.get("number"), Some("+44+"));
        assert_eq!(p.get("ip"), None);
        assert_eq!(p.get("call_id"), Some("é"));
    }

    #[test]
    fn refuses_injection_and_garbage() {
        assert_eq!(
            Params::parse("number=1&number=2", "authorize", AUTH),
            Err(RequestError::DuplicateParameter {
                name: "number".into()
            })
        );
        assert!(matches!(
            Params::parse("ipp=1.2.3.4", "authorize", AUTH),
            Err(RequestError::UnknownParameter { .. })
        ));
        assert!(matches!(
            Params::parse("number=%zz", "authorize", AUTH),
            Err(RequestError::BadEncoding { .. })
        ));
        assert!(matches!(
            Params::parse("number=%C3", "authorize", AUTH),
            Err(RequestError::BadEncoding { .. })
        ));
        assert!(matches!(
            Params::parse("number=%4", "authorize", AUTH),
            Err(RequestError::BadEncoding { .. })
        ));
        assert!(matches!(
            Params::parse("=1", "authorize", AUTH),
            Err(RequestError::BadParameterName { .. })
        ));
        let many = "a=1&".repeat(MAX_PARAMS + 1);
        assert!(matches!(
            Params::parse(&many, "authorize", &["a"]),
            Err(RequestError::DuplicateParameter { .. })
        ));
        let many: Vec<String> = (0..=MAX_PARAMS).map(|i| format!("p{i}=1")).collect();
        let names: Vec<String> = (0..=MAX_PARAMS).map(|i| format!("p{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        assert!(matches!(
            Params::parse(&many.join("&"), "authorize", &names),
            Err(RequestError::TooManyParameters { .. })
        ));
    }
}
