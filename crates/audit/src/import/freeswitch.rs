//! FreeSWITCH directory XML: `<user id="1001" cidr="...">` with `<params>` (`password`,
//! `a1-hash`, `vm-password`, `auth-acl`) and `<variables>` (`user_context`,
//! `effective_caller_id_name`, `apply-inbound-acl`), from one file or from every `*.xml`
//! below a folder (the usual `directory/default/` layout, so `X-PRE-PROCESS` includes need
//! not be followed).
//!
//! `$${var}` and `${var}` values are preprocessor or channel variables the importer does
//! not expand; a password given that way is recorded as unresolved, by name (the stock
//! `$${default_password}` is "1234", so the audit must be able to point at it).
//!
//! The same reader takes the network lists of `autoload_configs/acl.conf.xml`
//! (`<network-lists><list name default><node type cidr|host+mask|domain/>`) into the
//! inventory's [`AclSet`](crate::acl::AclSet), so pointing it at the FreeSWITCH conf folder
//! reads the directory and the lists the users' `auth-acl` names. A `domain=` node lets in
//! the `cidr` of that domain's users; it is kept as unresolved.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

use super::{list_items, parse_net};
use crate::acl::{Acl, AclPlatform, AclRule, Sense};
use crate::inventory::{
    Credential, ImportedExtension, Inventory, Location, Mailbox, Secret, SourceKind,
};

/// Reads one directory XML file, or every `*.xml` file below a folder (in name order).
pub fn import_freeswitch(path: impl AsRef<Path>) -> Inventory {
    let path = path.as_ref();
    let mut inventory = Inventory::default();
    if path.is_dir() {
        let mut files = Vec::new();
        collect_xml(path, &mut files, &mut inventory);
        files.sort();
        if files.is_empty() {
            inventory.problem(Location::new(path, 0), "no .xml file in this folder");
        }
        for file in files {
            import_file(&file, &mut inventory);
        }
    } else {
        import_file(path, &mut inventory);
    }
    inventory
}

fn collect_xml(dir: &Path, files: &mut Vec<PathBuf>, inventory: &mut Inventory) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            inventory.problem(
                Location::new(dir, 0),
                format!("cannot read folder: {error}"),
            );
            return;
        }
    };
    for entry in entries {
        let path = match entry {
            Ok(entry) => entry.path(),
            Err(error) => {
                inventory.problem(
                    Location::new(dir, 0),
                    format!("cannot read folder: {error}"),
                );
                continue;
            }
        };
        if path.is_dir() {
            collect_xml(&path, files, inventory);
        } else if path
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("xml"))
        {
            files.push(path);
        }
    }
}

/// A `<user>` being read.
struct User {
    extension: ImportedExtension,
    vm_password: Option<(Credential, Location)>,
}

/// What is open while reading a file: a user, a network list.
#[derive(Default)]
struct State {
    user: Option<User>,
    list: Option<Acl>,
}

fn import_file(path: &Path, inventory: &mut Inventory) {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => {
            inventory.problem(Location::new(path, 0), format!("cannot read: {error}"));
            return;
        }
    };
    let lines = LineIndex::new(&text);
    let mut reader = Reader::from_str(&text);
    // Open elements, outermost first, to know whether a <param> belongs to a user's
    // <params> or to a domain's or group's.
    let mut stack: Vec<String> = Vec::new();
    let mut state = State::default();
    loop {
        let start = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        let location = Location::new(path, lines.line_of(start));
        match reader.read_event() {
            Ok(Event::Start(element)) => {
                let name = local_name(&element);
                open(&element, &name, &stack, &mut state, location, inventory);
                stack.push(name);
            }
            Ok(Event::Empty(element)) => {
                let name = local_name(&element);
                open(&element, &name, &stack, &mut state, location, inventory);
                close(&name, &mut state, inventory);
            }
            Ok(Event::End(_)) => {
                if let Some(name) = stack.pop() {
                    close(&name, &mut state, inventory);
                }
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(error) => {
                let at = usize::try_from(reader.error_position()).unwrap_or(usize::MAX);
                // quick-xml's messages name tags and positions, never attribute values.
                inventory.problem(
                    Location::new(path, lines.line_of(at)),
                    format!("malformed XML, the rest of the file is not read: {error}"),
                );
                // A user cut off by the error is kept: what was read of it is still true.
                // A list cut off is not: its missing nodes could change what it lets in.
                finish(&mut state.user, inventory);
                drop_list(&mut state, inventory);
                return;
            }
        }
    }
    if !stack.is_empty() {
        inventory.problem(
            Location::new(path, lines.line_of(text.len())),
            format!("malformed XML: <{}> is never closed", stack.join("> <")),
        );
        finish(&mut state.user, inventory);
        drop_list(&mut state, inventory);
    }
}

/// An element ends: a user or a list is complete.
fn close(name: &str, state: &mut State, inventory: &mut Inventory) {
    match name {
        "user" => finish(&mut state.user, inventory),
        "list" => {
            if let Some(list) = state.list.take() {
                if let Err(problem) = inventory.acls.add(AclPlatform::FreeSwitch, list) {
                    inventory.problems.push(problem);
                }
            }
        }
        _ => {}
    }
}

fn drop_list(state: &mut State, inventory: &mut Inventory) {
    if let Some(list) = state.list.take() {
        inventory.problem(
            list.location,
            format!(
                "network list \"{}\" is cut off by the error and not used",
                list.name
            ),
        );
    }
}

/// FreeSWITCH's `switch_true` for a list default or node type: `allow` (and the other
/// true words) permits, anything else denies; `None` for a word that is neither.
fn sense_of(value: &str) -> Option<Sense> {
    let value = value.trim().to_ascii_lowercase();
    match value.as_str() {
        "allow" | "yes" | "on" | "true" | "t" | "enabled" | "active" => Some(Sense::Permit),
        "deny" | "no" | "off" | "false" | "f" | "disabled" | "inactive" => Some(Sense::Deny),
        number => match number.parse::<i64>() {
            Ok(0) => Some(Sense::Deny),
            Ok(_) => Some(Sense::Permit),
            Err(_) => None,
        },
    }
}

/// The sense of a `default` or `type` attribute; absent means `absent`, unreadable is a
/// problem and reads as deny (what FreeSWITCH makes of it).
fn sense_attribute(
    element: &BytesStart<'_>,
    name: &str,
    absent: Sense,
    location: &Location,
    inventory: &mut Inventory,
) -> Sense {
    match attribute(element, name) {
        Ok(None) => absent,
        Ok(Some(value)) => sense_of(&value).unwrap_or_else(|| {
            inventory.problem(
                location.clone(),
                format!(
                    "{name} \"{value}\" is neither allow nor deny; FreeSWITCH reads it as deny"
                ),
            );
            Sense::Deny
        }),
        Err(message) => {
            inventory.problem(location.clone(), message);
            Sense::Deny
        }
    }
}

/// A `<list>` of `<network-lists>` starts.
fn open_list(
    element: &BytesStart<'_>,
    state: &mut State,
    location: Location,
    inventory: &mut Inventory,
) {
    if state.list.is_some() {
        inventory.problem(location, "<list> inside another <list>");
        return;
    }
    let name = match attribute(element, "name") {
        Ok(Some(name)) if !name.trim().is_empty() => name,
        Ok(_) => {
            // FreeSWITCH skips it too, but silently.
            inventory.problem(location, "<list> without a name is ignored");
            return;
        }
        Err(message) => {
            inventory.problem(location, message);
            return;
        }
    };
    // FreeSWITCH: a list without `default` allows.
    let default = sense_attribute(element, "default", Sense::Permit, &location, inventory);
    state.list = Some(Acl::freeswitch(name, location, default));
}

/// A `<node>` of a list.
fn add_node(
    element: &BytesStart<'_>,
    list: &mut Acl,
    location: Location,
    inventory: &mut Inventory,
) {
    let sense = sense_attribute(element, "type", list.default, &location, inventory);
    let read = |key: &str, inventory: &mut Inventory| match attribute(element, key) {
        Ok(value) => value,
        Err(message) => {
            inventory.problem(location.clone(), message);
            None
        }
    };
    let (cidr, host, mask, domain) = (
        read("cidr", inventory),
        read("host", inventory),
        read("mask", inventory),
        read("domain", inventory),
    );
    if let Some(domain) = domain {
        list.unresolved.push(format!(
            "a domain=\"{domain}\" node (the cidr of that domain's users)"
        ));
        return;
    }
    let items: Vec<String> = match (cidr, host, mask) {
        (Some(cidr), _, _) => list_items(&cidr).map(str::to_string).collect(),
        (None, Some(host), Some(mask)) => vec![format!("{}/{}", host.trim(), mask.trim())],
        _ => {
            inventory.problem(location, "<node> without cidr, host and mask, or domain");
            return;
        }
    };
    for item in items {
        match parse_net(&item) {
            Ok(net) => list.rules.push(AclRule { sense, net }),
            Err(message) => inventory.problem(location.clone(), format!("node: {message}")),
        }
    }
}

fn local_name(element: &BytesStart<'_>) -> String {
    String::from_utf8_lossy(element.local_name().as_ref()).into_owned()
}

fn attribute(element: &BytesStart<'_>, name: &str) -> Result<Option<String>, String> {
    match element.try_get_attribute(name) {
        Ok(Some(attribute)) => attribute
            .normalized_value(XmlVersion::Implicit1_0)
            .map(|value| Some(Cow::into_owned(value)))
            // Not the error's text: an unknown entity's name is a piece of the value,
            // and the value may be a password.
            .map_err(|_| format!("attribute \"{name}\" has an invalid escape")),
        Ok(None) => Ok(None),
        Err(error) => Err(format!("attribute \"{name}\": {error}")),
    }
}

fn open(
    element: &BytesStart<'_>,
    name: &str,
    stack: &[String],
    state: &mut State,
    location: Location,
    inventory: &mut Inventory,
) {
    let parent = stack.last().map(String::as_str);
    let grandparent = stack
        .len()
        .checked_sub(2)
        .and_then(|i| stack.get(i))
        .map(String::as_str);
    let user = &mut state.user;
    match name {
        "network-lists" => inventory
            .acls
            .file_read(AclPlatform::FreeSwitch, location.file.clone()),
        "list" if parent == Some("network-lists") => open_list(element, state, location, inventory),
        "node" if parent == Some("list") => {
            // Without a list, it was refused (no name); its problem covers the nodes.
            if let Some(list) = state.list.as_mut() {
                add_node(element, list, location, inventory);
            }
        }
        "user" => {
            if user.is_some() {
                inventory.problem(location, "<user> inside another <user>");
                return;
            }
            // `type="pointer"` users in a group only refer to a user defined elsewhere.
            if attribute(element, "type").ok().flatten().as_deref() == Some("pointer") {
                return;
            }
            let id = match attribute(element, "id") {
                Ok(Some(id)) if !id.trim().is_empty() => id,
                Ok(_) => {
                    inventory.problem(location, "<user> without an id");
                    return;
                }
                Err(message) => {
                    inventory.problem(location, message);
                    return;
                }
            };
            let mut extension =
                ImportedExtension::new(id, location.clone(), SourceKind::FreeSwitch);
            match attribute(element, "cidr") {
                Ok(Some(cidr)) => {
                    for item in list_items(&cidr) {
                        match parse_net(item) {
                            Ok(net) => extension.permit.push(net),
                            Err(message) => {
                                inventory.problem(location.clone(), format!("cidr: {message}"))
                            }
                        }
                    }
                }
                Ok(None) => {}
                Err(message) => inventory.problem(location.clone(), message),
            }
            *user = Some(User {
                extension,
                vm_password: None,
            });
        }
        "param" | "variable" if parent == Some("user") || grandparent == Some("user") => {
            let Some(user) = user.as_mut() else {
                return;
            };
            let expected = if name == "param" {
                "params"
            } else {
                "variables"
            };
            if parent != Some(expected) {
                inventory.problem(location, format!("<{name}> outside <{expected}>"));
                return;
            }
            let (key, value) = match (attribute(element, "name"), attribute(element, "value")) {
                (Ok(Some(key)), Ok(value)) => (key, value.unwrap_or_default()),
                (Ok(None), _) => {
                    inventory.problem(location, format!("<{name}> without a name"));
                    return;
                }
                (Err(message), _) | (_, Err(message)) => {
                    inventory.problem(location, message);
                    return;
                }
            };
            apply(user, &key, value, location);
        }
        _ => {}
    }
}

/// One param or variable of a user; the names FreeSWITCH accepts in either place are
/// accepted in both.
fn apply(user: &mut User, key: &str, value: String, location: Location) {
    let extension = &mut user.extension;
    match key {
        "password" => extension.secret = Some(credential(value)),
        // A plaintext password, when also given, is the one that can be judged.
        "a1-hash" if extension.secret.is_none() => extension.secret = Some(Credential::Hashed),
        "vm-password" => user.vm_password = Some((credential(value), location)),
        "auth-acl" | "apply-inbound-acl" => {
            extension
                .acl_names
                .extend(list_items(&value).map(str::to_string));
        }
        "user_context" => extension.context = Some(value),
        "effective_caller_id_name" => extension.display_name = Some(value),
        _ => {}
    }
}

fn credential(value: String) -> Credential {
    if let Some(start) = value.find("${") {
        let reference = value[start + 2..]
            .split('}')
            .next()
            .unwrap_or_default()
            .to_string();
        return Credential::Unresolved { reference };
    }
    Credential::Plain(Secret::new(value))
}

fn finish(user: &mut Option<User>, inventory: &mut Inventory) {
    let Some(mut user) = user.take() else {
        return;
    };
    if !user.extension.permit.is_empty() {
        let acl = Acl::allow_list(
            "cidr",
            user.extension.location.clone(),
            &user.extension.permit,
            &[],
        );
        user.extension.own_acls.push(acl);
    }
    if let Some((pin, location)) = user.vm_password {
        inventory.mailboxes.push(Mailbox {
            mailbox: user.extension.id.clone(),
            context: None,
            pin,
            pin_locked: false,
            location,
        });
    }
    inventory.extensions.push(user.extension);
}

/// Byte offset to 1-based line number.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(index, _)| index + 1));
        LineIndex { starts }
    }

    fn line_of(&self, offset: usize) -> usize {
        match self.starts.binary_search(&offset) {
            Ok(index) => index + 1,
            Err(index) => index,
        }
    }
}
