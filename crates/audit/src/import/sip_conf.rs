//! Asterisk chan_sip `sip.conf`: every section but `[general]` and `[authentication]` is a
//! peer, user or friend, with `secret` (or `md5secret`, recorded as hashed), `permit`,
//! `deny`, `acl`, `context`, `callerid` and `call-limit`.

use std::path::Path;

use super::asterisk;
use super::pjsip::read_acl;
use crate::inventory::{Credential, ImportedExtension, Inventory, Secret, SourceKind};

/// Sections that configure chan_sip itself, not a peer.
const NOT_PEERS: [&str; 2] = ["general", "authentication"];

/// Reads a sip.conf (and its includes).
pub fn import_sip_conf(path: impl AsRef<Path>) -> Inventory {
    let mut inventory = Inventory::default();
    let sections = asterisk::parse(path.as_ref(), &mut inventory);
    let resolved = asterisk::resolve(&sections, &mut inventory);
    for peer in &resolved {
        if NOT_PEERS
            .iter()
            .any(|name| peer.name.eq_ignore_ascii_case(name))
        {
            continue;
        }
        match peer.value("type") {
            Some(kind)
                if ["peer", "user", "friend"]
                    .iter()
                    .any(|k| kind.eq_ignore_ascii_case(k)) => {}
            Some(kind) => {
                inventory.problem(
                    peer.location.clone(),
                    format!("section \"{}\" has an unknown type \"{kind}\"", peer.name),
                );
                continue;
            }
            None => {
                inventory.problem(
                    peer.location.clone(),
                    format!(
                        "section \"{}\" has no type (peer, user or friend)",
                        peer.name
                    ),
                );
                continue;
            }
        }
        let mut extension = ImportedExtension::new(
            peer.name.clone(),
            peer.location.clone(),
            SourceKind::SipConf,
        );
        extension.username = peer
            .value("defaultuser")
            .or_else(|| peer.value("username"))
            .map(str::to_string);
        extension.secret = match (peer.value("secret"), peer.value("md5secret")) {
            (Some(secret), _) => Some(Credential::Plain(Secret::new(secret))),
            (None, Some(_)) => Some(Credential::Hashed),
            (None, None) => None,
        };
        extension.context = peer.value("context").map(str::to_string);
        extension.display_name = peer.value("callerid").map(str::to_string);
        if let Some(entry) = peer.get("call-limit") {
            match entry.value.parse::<u32>() {
                Ok(limit) => extension.call_limit = Some(limit),
                Err(_) => inventory.problem(
                    entry.location.clone(),
                    format!("call-limit \"{}\" is not a number", entry.value),
                ),
            }
        }
        read_acl(peer, &mut extension, &mut inventory);
        inventory.extensions.push(extension);
    }
    inventory
}
