//! Importers: the operator's existing PBX configuration, read into an [`Inventory`].
//!
//! One function per format, each taking a path and returning an [`Inventory`] that never
//! fails as a whole: a file that cannot be opened, a line that cannot be parsed, a reference
//! to something missing, each becomes an [`ImportProblem`](crate::inventory::ImportProblem)
//! naming the file and line, and the rest is still read. Lines that parse but carry keys
//! the audit does not need (codecs, transports) are read and ignored: they are understood,
//! not skipped.
//!
//! - [`import_pjsip`]: Asterisk `pjsip.conf` (endpoint, auth, aor, identify; templates).
//! - [`import_sip_conf`]: Asterisk chan_sip `sip.conf` peers and friends.
//! - [`import_voicemail`]: Asterisk `voicemail.conf` mailboxes and PINs.
//! - [`import_acl_conf`]: Asterisk `acl.conf` named ACLs.
//! - [`import_freeswitch`]: a FreeSWITCH directory (one XML file or a folder of them, such
//!   as the whole conf folder), with the network lists of `acl.conf.xml`.
//! - [`import_csv`] and [`import_json`]: tollgate's own simple inventory schema.
//!
//! INVARIANT: no problem message quotes a value that may be a secret; messages quote keys,
//! section names and the non-secret values that failed to parse (addresses, numbers).

mod acl_conf;
mod asterisk;
mod freeswitch;
mod pjsip;
mod sip_conf;
mod table;
mod voicemail;

use std::net::IpAddr;

use ipnet::IpNet;

pub use acl_conf::import_acl_conf;
pub use freeswitch::import_freeswitch;
pub use pjsip::import_pjsip;
pub use sip_conf::import_sip_conf;
pub use table::{import_csv, import_json};
pub use voicemail::import_voicemail;

#[cfg(doc)]
use crate::inventory::Inventory;

/// An address or network as PBX configurations write them: `10.0.0.1`, `10.0.0.0/8`,
/// `10.0.0.0/255.0.0.0` (Asterisk's netmask form), `2001:db8::/32`. A bare address is a
/// network of one.
pub(crate) fn parse_net(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    let bad = || format!("\"{text}\" is not an IP address or network");
    let Some((addr, mask)) = text.split_once('/') else {
        return text.parse::<IpAddr>().map(IpNet::from).map_err(|_| bad());
    };
    let addr: IpAddr = addr.trim().parse().map_err(|_| bad())?;
    let mask = mask.trim();
    let prefix = match mask.parse::<u8>() {
        Ok(prefix) => prefix,
        Err(_) => {
            let mask: IpAddr = mask.parse().map_err(|_| bad())?;
            ipnet::ip_mask_to_prefix(mask).map_err(|_| bad())?
        }
    };
    IpNet::new(addr, prefix).map_err(|_| bad())
}

/// Each comma- or space-separated item of a list value, trimmed, empty items dropped.
pub(crate) fn list_items(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(|c: char| c == ',' || c.is_whitespace())
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_net_accepts_the_forms_pbx_files_use() {
        let cases = [
            ("10.0.0.1", "10.0.0.1/32"),
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("192.168.1.0/255.255.255.0", "192.168.1.0/24"),
            ("0.0.0.0/0.0.0.0", "0.0.0.0/0"),
            ("2001:db8::/32", "2001:db8::/32"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                parse_net(input).map(|n| n.to_string()),
                Ok(expected.to_string())
            );
        }
        for bad in [
            "",
            "10.0.0",
            "10.0.0.0/33",
            "10.0.0.0/255.0.255.0",
            "host.example",
        ] {
            assert!(parse_net(bad).is_err(), "{bad}");
        }
    }
}
