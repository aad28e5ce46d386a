//! Asterisk `acl.conf`: named ACLs, one section each, with ordered `permit=` and `deny=`
//! lines (CIDR or dotted netmask, IPv4 or IPv6, comma-separated lists, `!` to invert),
//! read into the inventory's [`AclSet`](crate::acl::AclSet). Templates and includes work
//! as in every Asterisk file. What the rules mean is [`crate::acl`]'s business.

use std::path::Path;

use super::asterisk;
use super::list_items;
use crate::acl::{Acl, AclPlatform, Sense};
use crate::inventory::Inventory;

/// Reads an acl.conf (and its includes). The file counts as imported even if it defines
/// nothing, so a name missing from it is reported as undefined.
pub fn import_acl_conf(path: impl AsRef<Path>) -> Inventory {
    let path = path.as_ref();
    let mut inventory = Inventory::default();
    let problems_before = inventory.problems.len();
    let sections = asterisk::parse(path, &mut inventory);
    // A file that could not be opened at all is not an imported acl file.
    let unreadable = inventory.problems[problems_before..]
        .iter()
        .any(|p| p.location.file == path && p.location.line == 0);
    if !unreadable {
        inventory.acls.file_read(AclPlatform::Asterisk, path);
    }
    let resolved = asterisk::resolve(&sections, &mut inventory);
    for section in &resolved {
        let mut acl = Acl::asterisk(section.name.clone(), true, section.location.clone());
        for entry in &section.entries {
            let sense = if entry.key.eq_ignore_ascii_case("permit") {
                Sense::Permit
            } else if entry.key.eq_ignore_ascii_case("deny") {
                Sense::Deny
            } else {
                inventory.problem(
                    entry.location.clone(),
                    format!(
                        "unknown key \"{}\" in acl \"{}\" (only permit and deny)",
                        entry.key, section.name
                    ),
                );
                continue;
            };
            let mut items = list_items(&entry.value).peekable();
            if items.peek().is_none() {
                inventory.problem(
                    entry.location.clone(),
                    format!("{} without an address", entry.key),
                );
            }
            for item in items {
                if let Err(message) = acl.push_asterisk_item(sense, item) {
                    inventory.problem(entry.location.clone(), format!("{}: {message}", entry.key));
                }
            }
        }
        if let Err(problem) = inventory.acls.add(AclPlatform::Asterisk, acl) {
            inventory.problems.push(problem);
        }
    }
    inventory
}
