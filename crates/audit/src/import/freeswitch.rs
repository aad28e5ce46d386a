//! FreeSWITCH directory XML: `<user id="1001" cidr="...">` with `<params>` (`password`,
//! `a1-hash`, `vm-password`, `auth-acl`) and `<variables>` (`user_context`,
//! `effective_caller_id_name`, `apply-inbound-acl`), from one file or from every `*.xml`
//! below a folder (the usual `directory/default/` layout, so `X-PRE-PROCESS` includes need
//! not be followed).
//!
//! `$${var}` and `${var}` values are preprocessor or channel variables the importer does
//! not expand; a password given that way is recorded as unresolved, by name (the stock
//! `$${default_password}` is "1234", so the audit must be able to point at it).

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

use super::{list_items, parse_net};
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
    let mut user: Option<User> = None;
    loop {
        let start = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        let location = Location::new(path, lines.line_of(start));
        match reader.read_event() {
            Ok(Event::Start(element)) => {
                let name = local_name(&element);
                open(&element, &name, &stack, &mut user, location, inventory);
                stack.push(name);
            }
            Ok(Event::Empty(element)) => {
                let name = local_name(&element);
                open(&element, &name, &stack, &mut user, location, inventory);
                if name == "user" {
                    finish(&mut user, inventory);
                }
            }
            Ok(Event::End(_)) => {
                if stack.pop().as_deref() == Some("user") {
                    finish(&mut user, inventory);
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
                finish(&mut user, inventory);
                return;
            }
        }
    }
    if !stack.is_empty() {
        inventory.problem(
            Location::new(path, lines.line_of(text.len())),
            format!("malformed XML: <{}> is never closed", stack.join("> <")),
        );
        finish(&mut user, inventory);
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
    user: &mut Option<User>,
    location: Location,
    inventory: &mut Inventory,
) {
    let parent = stack.last().map(String::as_str);
    let grandparent = stack
        .len()
        .checked_sub(2)
        .and_then(|i| stack.get(i))
        .map(String::as_str);
    match name {
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
    let Some(user) = user.take() else {
        return;
    };
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
