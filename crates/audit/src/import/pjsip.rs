//! Asterisk `pjsip.conf`: endpoints with their auth, AORs and identify sections.
//!
//! An endpoint's credential lives in the `type=auth` section its `auth=` names
//! (`auth_type=userpass` with `password`, or `md5` with `md5_cred`, which is recorded as
//! hashed); its IP restriction is its own `permit`/`deny`/`acl` plus the `match` addresses
//! of every `type=identify` section that names it (those are let in without a password, so
//! the audit must see them).

use std::collections::HashMap;
use std::path::Path;

use super::asterisk::{self, Resolved};
use super::{list_items, parse_net};
use crate::acl::{Acl, Sense};
use crate::inventory::{Credential, ImportedExtension, Inventory, Secret, SourceKind};

/// Reads a pjsip.conf (and its includes).
pub fn import_pjsip(path: impl AsRef<Path>) -> Inventory {
    let mut inventory = Inventory::default();
    let sections = asterisk::parse(path.as_ref(), &mut inventory);
    let resolved = asterisk::resolve(&sections, &mut inventory);

    let of_type = |kind: &'static str| {
        resolved.iter().filter(move |section| {
            section
                .value("type")
                .is_some_and(|value| value.eq_ignore_ascii_case(kind))
        })
    };
    // (type, name) -> the first section of that type and name: looked up once per link
    // of every endpoint, so a map, not a scan.
    let mut by_type_and_name: HashMap<(String, &str), &asterisk::Resolved> = HashMap::new();
    for section in &resolved {
        if let Some(kind) = section.value("type") {
            by_type_and_name
                .entry((kind.to_ascii_lowercase(), section.name.as_str()))
                .or_insert(section);
        }
    }
    let find =
        |kind: &'static str, name: &str| by_type_and_name.get(&(kind.to_string(), name)).copied();

    for section in &resolved {
        if section.value("type").is_none() {
            inventory.problem(
                section.location.clone(),
                format!("section \"{}\" has no type", section.name),
            );
        }
    }

    let mut extensions = Vec::new();
    for endpoint in of_type("endpoint") {
        let mut extension = ImportedExtension::new(
            endpoint.name.clone(),
            endpoint.location.clone(),
            SourceKind::Pjsip,
        );
        extension.context = endpoint.value("context").map(str::to_string);
        extension.display_name = endpoint.value("callerid").map(str::to_string);
        read_acl(endpoint, &mut extension, &mut inventory);

        if let Some(auth) = endpoint.get("auth") {
            // Several auths may be listed; the first is the one Asterisk challenges with.
            if let Some(name) = list_items(&auth.value).next() {
                match find("auth", name) {
                    Some(section) => read_auth(section, &mut extension, &mut inventory),
                    None => inventory.problem(
                        auth.location.clone(),
                        format!(
                            "endpoint \"{}\" uses auth \"{name}\", which is not defined",
                            endpoint.name
                        ),
                    ),
                }
            }
        }

        if let Some(aors) = endpoint.get("aors") {
            for name in list_items(&aors.value) {
                let Some(aor) = find("aor", name) else {
                    inventory.problem(
                        aors.location.clone(),
                        format!(
                            "endpoint \"{}\" uses aor \"{name}\", which is not defined",
                            endpoint.name
                        ),
                    );
                    continue;
                };
                if let Some(entry) = aor.get("max_contacts") {
                    match entry.value.parse::<u32>() {
                        // Several AORs: devices may register on each, so the limits add up.
                        Ok(max) => {
                            extension.max_contacts =
                                Some(extension.max_contacts.unwrap_or(0).saturating_add(max));
                        }
                        Err(_) => inventory.problem(
                            entry.location.clone(),
                            format!("max_contacts \"{}\" is not a number", entry.value),
                        ),
                    }
                }
            }
        }
        extensions.push(extension);
    }

    for identify in of_type("identify") {
        let Some(target) = identify.get("endpoint") else {
            inventory.problem(
                identify.location.clone(),
                format!("identify \"{}\" names no endpoint", identify.name),
            );
            continue;
        };
        let Some(extension) = extensions.iter_mut().find(|e| e.id == target.value) else {
            inventory.problem(
                target.location.clone(),
                format!(
                    "identify \"{}\" names endpoint \"{}\", which is not defined",
                    identify.name, target.value
                ),
            );
            continue;
        };
        for entry in identify.all("match") {
            for item in list_items(&entry.value) {
                match parse_net(item) {
                    Ok(net) => extension.identify.push(net),
                    // Host names are resolved by Asterisk at load time; we cannot, but the
                    // endpoint is still identified by address, so say which one.
                    Err(message) => inventory.problem(
                        entry.location.clone(),
                        format!("identify match: {message} (host names are not resolved)"),
                    ),
                }
            }
        }
    }

    inventory.extensions.extend(extensions);
    inventory
}

/// `permit`, `deny` and `acl` of an endpoint or peer, and the contact ACLs (pjsip
/// `contact_permit`, sip.conf `contactpermit`, ...), which limit the addresses a device may
/// register from: for the audit's "IP-restricted registration" both kinds count.
///
/// The lines are kept in order as two unnamed ACLs (the endpoint's and the contact one),
/// since Asterisk applies each ACL's rules in order; `permit`/`deny` of the extension get
/// the same networks without order (a `!`-inverted item goes to the other list).
pub(crate) fn read_acl(
    section: &Resolved,
    extension: &mut ImportedExtension,
    inventory: &mut Inventory,
) {
    let (endpoint_name, contact_name) = if extension.source == SourceKind::SipConf {
        ("permit/deny", "contactpermit/contactdeny")
    } else {
        ("permit/deny", "contact_permit/contact_deny")
    };
    let mut endpoint = Acl::asterisk(endpoint_name, false, section.location.clone());
    let mut contact = Acl::asterisk(contact_name, false, section.location.clone());
    for entry in &section.entries {
        let key = entry.key.to_ascii_lowercase();
        let (acl, sense) = match key.as_str() {
            "permit" => (&mut endpoint, Sense::Permit),
            "deny" => (&mut endpoint, Sense::Deny),
            "contact_permit" | "contactpermit" => (&mut contact, Sense::Permit),
            "contact_deny" | "contactdeny" => (&mut contact, Sense::Deny),
            "acl" | "contact_acl" | "contactacl" => {
                extension
                    .acl_names
                    .extend(list_items(&entry.value).map(str::to_string));
                continue;
            }
            _ => continue,
        };
        for item in list_items(&entry.value) {
            match acl.push_asterisk_item(sense, item) {
                Ok(()) => {
                    if let Some(rule) = acl.rules.last() {
                        match rule.sense {
                            Sense::Permit => extension.permit.push(rule.net),
                            Sense::Deny => extension.deny.push(rule.net),
                        }
                    }
                }
                Err(message) => {
                    inventory.problem(entry.location.clone(), format!("{key}: {message}"))
                }
            }
        }
    }
    for acl in [endpoint, contact] {
        if !acl.rules.is_empty() {
            extension.own_acls.push(acl);
        }
    }
}

fn read_auth(auth: &Resolved, extension: &mut ImportedExtension, inventory: &mut Inventory) {
    extension.username = auth.value("username").map(str::to_string);
    let auth_type = auth.value("auth_type").unwrap_or("userpass");
    let password = auth.value("password");
    let md5 = auth.value("md5_cred");
    extension.secret = if auth_type.eq_ignore_ascii_case("md5") {
        if md5.is_none() {
            inventory.problem(
                auth.location.clone(),
                format!("auth \"{}\" is auth_type=md5 without md5_cred", auth.name),
            );
        }
        Some(Credential::Hashed)
    } else if let Some(password) = password {
        Some(Credential::Plain(Secret::new(password)))
    } else if md5.is_some() {
        Some(Credential::Hashed)
    } else {
        inventory.problem(
            auth.location.clone(),
            format!("auth \"{}\" has no password", auth.name),
        );
        None
    };
}
