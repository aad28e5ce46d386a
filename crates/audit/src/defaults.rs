//! Factory-default logins of phones and ATAs, and the checks against them.
//!
//! This module owns the shipped list `data/default-device-credentials.csv` (public factory
//! defaults from the vendors' own guides) and two questions about it: is a SIP password
//! one of those default passwords ([`vendors_using_password`]), and is a phone's web admin
//! login still its factory default ([`matching_logins`])? Comparisons are exact (a default
//! is typed as printed); the answers name vendors and user names, never a password.

use std::sync::LazyLock;

const DEFAULT_CREDENTIALS: &str = include_str!("../data/default-device-credentials.csv");

/// One factory-default login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultCredential {
    /// The vendor as [`crate::firmware::UserAgent::vendor`] names it.
    pub vendor: &'static str,
    pub username: &'static str,
    /// Public (printed in the vendor's guide); empty when the account has none.
    pub password: &'static str,
    pub source_note: &'static str,
}

static LIST: LazyLock<Vec<DefaultCredential>> = LazyLock::new(|| {
    DEFAULT_CREDENTIALS
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .skip(1) // the header row
        .filter_map(|line| {
            let mut fields = line.splitn(4, ',').map(str::trim);
            Some(DefaultCredential {
                vendor: fields.next()?,
                username: fields.next()?,
                password: fields.next()?,
                source_note: fields.next()?,
            })
        })
        .collect()
});

/// The shipped list, in file order.
pub fn default_credentials() -> &'static [DefaultCredential] {
    &LIST
}

/// Vendors (each once, in file order) one of whose default passwords is exactly
/// `password`; empty defaults never match.
pub fn vendors_using_password(password: &str) -> Vec<&'static str> {
    let mut vendors = Vec::new();
    for credential in default_credentials() {
        if !credential.password.is_empty()
            && credential.password == password
            && !vendors.contains(&credential.vendor)
        {
            vendors.push(credential.vendor);
        }
    }
    vendors
}

/// The default logins a device login matches: the password exactly, and the user name
/// (ignoring case) when one is given. Only `vendor`'s defaults when it is known and
/// listed, else every vendor's.
pub fn matching_logins(
    vendor: Option<&str>,
    user: Option<&str>,
    password: &str,
) -> Vec<&'static DefaultCredential> {
    let listed = |v: &str| {
        default_credentials()
            .iter()
            .any(|c| c.vendor.eq_ignore_ascii_case(v))
    };
    let vendor = vendor.filter(|v| listed(v));
    default_credentials()
        .iter()
        .filter(|c| vendor.is_none_or(|v| c.vendor.eq_ignore_ascii_case(v)))
        .filter(|c| c.password == password)
        .filter(|c| user.is_none_or(|u| c.username.eq_ignore_ascii_case(u.trim())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_list_is_complete_and_well_formed() {
        let rows = DEFAULT_CREDENTIALS
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.trim().starts_with('#'))
            .count();
        assert_eq!(
            default_credentials().len(),
            rows - 1,
            "a row failed to parse"
        );
        assert!(DEFAULT_CREDENTIALS.contains("public factory defaults"));
        for c in default_credentials() {
            assert!(!c.vendor.is_empty() && !c.username.is_empty() && !c.source_note.is_empty());
        }
        for vendor in [
            "Yealink",
            "Polycom",
            "Poly",
            "Grandstream",
            "Cisco",
            "Linksys",
            "snom",
            "Fanvil",
            "Obihai",
            "Aastra",
            "Mitel",
            "Panasonic",
            "Gigaset",
        ] {
            assert!(
                default_credentials().iter().any(|c| c.vendor == vendor),
                "{vendor}"
            );
        }
    }

    #[test]
    fn passwords_and_logins() {
        assert_eq!(
            vendors_using_password("admin"),
            ["Yealink", "Grandstream", "Linksys", "Fanvil", "Obihai"]
        );
        assert_eq!(vendors_using_password("456"), ["Polycom", "Poly"]);
        assert_eq!(vendors_using_password("22222"), ["Aastra", "Mitel"]);
        assert_eq!(vendors_using_password("0000"), ["snom", "Gigaset"]);
        assert!(vendors_using_password("").is_empty());
        assert!(vendors_using_password("Admin").is_empty());

        let m = matching_logins(Some("Polycom"), Some("polycom"), "456");
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].username, "Polycom");
        assert!(matching_logins(Some("Yealink"), None, "456").is_empty());
        // An unlisted vendor is checked against every vendor.
        assert_eq!(matching_logins(Some("Zoiper"), None, "456").len(), 3);
        assert_eq!(matching_logins(None, Some("admin"), "adminpass").len(), 1);
        assert!(matching_logins(None, Some("root"), "admin").is_empty());
    }
}
