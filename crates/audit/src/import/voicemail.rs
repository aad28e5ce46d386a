//! Asterisk `voicemail.conf`: `mailbox => pin,full name,email,pager,options` in a section
//! per context. A PIN starting with `-` cannot be changed by its user; one starting with
//! `*` is taken as hashed (not plaintext, so not judged).

use std::path::Path;

use super::asterisk;
use crate::inventory::{Credential, Inventory, Mailbox, Secret};

/// Sections that configure app_voicemail itself, not a context of mailboxes.
const NOT_CONTEXTS: [&str; 2] = ["general", "zonemessages"];

/// Reads a voicemail.conf (and its includes).
pub fn import_voicemail(path: impl AsRef<Path>) -> Inventory {
    let mut inventory = Inventory::default();
    let sections = asterisk::parse(path.as_ref(), &mut inventory);
    let resolved = asterisk::resolve(&sections, &mut inventory);
    for context in &resolved {
        if NOT_CONTEXTS
            .iter()
            .any(|name| context.name.eq_ignore_ascii_case(name))
        {
            continue;
        }
        for entry in &context.entries {
            let mailbox = entry.key.as_str();
            if !mailbox
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                inventory.problem(
                    entry.location.clone(),
                    format!("\"{mailbox}\" is not a mailbox number"),
                );
                continue;
            }
            let pin = entry.value.split(',').next().unwrap_or("").trim();
            let (pin_locked, pin) = match pin.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, pin),
            };
            let pin = if pin.starts_with('*') {
                Credential::Hashed
            } else {
                Credential::Plain(Secret::new(pin))
            };
            inventory.mailboxes.push(Mailbox {
                mailbox: mailbox.to_string(),
                context: Some(context.name.clone()),
                pin,
                pin_locked,
                location: entry.location.clone(),
            });
        }
    }
    inventory
}
