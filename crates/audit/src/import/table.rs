//! tollgate's own inventory schema, as CSV or JSON, for PBXs whose configuration is not
//! in a file we read (a web GUI's export, a provisioning database).
//!
//! The fields, all strings, only `extension` required:
//!
//! | field           | meaning                                                         |
//! |-----------------|-----------------------------------------------------------------|
//! | `extension`     | the extension number or name                                    |
//! | `username`      | the SIP authentication username, when not the extension         |
//! | `password`      | the SIP password (plaintext; empty means none)                  |
//! | `voicemail_pin` | the voicemail PIN (empty means no mailbox)                      |
//! | `permit`        | networks allowed, space-separated CIDRs (`10.0.0.0/8 192.0.2.7`)|
//! | `deny`          | networks refused, same form                                     |
//! | `context`       | dialplan context                                                |
//! | `name`          | display name                                                    |
//! | `user_agent`    | the phone's SIP User-Agent (firmware and default-login checks)  |
//! | `device_user`   | the phone's web admin user name                                 |
//! | `device_password` | the phone's web admin password (plaintext; checked against factory defaults) |
//!
//! `permit` and `deny` form an allow list: with any `permit`, only those networks (minus
//! `deny`) may be used; without, everything but `deny`.
//!
//! CSV: a header row naming the columns (any order, any subset with `extension`). JSON: an
//! array of objects with these fields; an unknown field or column is a problem (a typo in
//! `pasword` must not pass as "no password"). Values are strings, not numbers: a number
//! would drop a PIN's leading zeros.

use std::path::Path;

use serde_json::Value;

use super::parse_net;
use crate::acl::Acl;
use crate::firmware::MAX_USER_AGENT;
use crate::inventory::{
    Credential, ImportedExtension, Inventory, Location, Mailbox, Secret, SourceKind,
};

const FIELDS: [&str; 11] = [
    "extension",
    "username",
    "password",
    "voicemail_pin",
    "permit",
    "deny",
    "context",
    "name",
    "user_agent",
    "device_user",
    "device_password",
];

/// One record, whatever the format. No `Debug`: it holds secrets as plain strings.
#[derive(Default)]
struct Row {
    extension: Option<String>,
    username: Option<String>,
    password: Option<String>,
    voicemail_pin: Option<String>,
    permit: Option<String>,
    deny: Option<String>,
    context: Option<String>,
    name: Option<String>,
    user_agent: Option<String>,
    device_user: Option<String>,
    device_password: Option<String>,
}

impl Row {
    /// Sets a field by name; false for an unknown one. Empty values mean "not given".
    fn set(&mut self, field: &str, value: &str) -> bool {
        let slot = match field {
            "extension" => &mut self.extension,
            "username" => &mut self.username,
            "password" => &mut self.password,
            "voicemail_pin" => &mut self.voicemail_pin,
            "permit" => &mut self.permit,
            "deny" => &mut self.deny,
            "context" => &mut self.context,
            "name" => &mut self.name,
            "user_agent" => &mut self.user_agent,
            "device_user" => &mut self.device_user,
            "device_password" => &mut self.device_password,
            _ => return false,
        };
        let value = value.trim();
        *slot = (!value.is_empty()).then(|| value.to_string());
        true
    }
}

fn add_row(row: Row, location: Location, source: SourceKind, inventory: &mut Inventory) {
    let Some(id) = row.extension else {
        inventory.problem(location, "record without an extension");
        return;
    };
    let mut extension = ImportedExtension::new(id.clone(), location.clone(), source);
    extension.username = row.username;
    extension.secret = row.password.map(|p| Credential::Plain(Secret::new(p)));
    extension.context = row.context.clone();
    extension.display_name = row.name;
    extension.device_user = row.device_user;
    extension.device_password = row.device_password.map(Secret::new);
    match row.user_agent {
        Some(ua) if ua.len() > MAX_USER_AGENT || ua.chars().any(char::is_control) => inventory
            .problem(
                location.clone(),
                format!(
                    "user_agent is longer than {MAX_USER_AGENT} bytes or has control characters; ignored"
                ),
            ),
        ua => extension.user_agent = ua,
    }
    for (field, value, into_permit) in [("permit", &row.permit, true), ("deny", &row.deny, false)] {
        for item in value.iter().flat_map(|v| v.split_whitespace()) {
            match parse_net(item) {
                Ok(net) if into_permit => extension.permit.push(net),
                Ok(net) => extension.deny.push(net),
                Err(message) => inventory.problem(location.clone(), format!("{field}: {message}")),
            }
        }
    }
    if !(extension.permit.is_empty() && extension.deny.is_empty()) {
        extension.own_acls.push(Acl::allow_list(
            "permit/deny",
            location.clone(),
            &extension.permit,
            &extension.deny,
        ));
    }
    if let Some(pin) = row.voicemail_pin {
        inventory.mailboxes.push(Mailbox {
            mailbox: id,
            context: row.context,
            pin: Credential::Plain(Secret::new(pin)),
            pin_locked: false,
            location,
        });
    }
    inventory.extensions.push(extension);
}

/// Reads a CSV inventory with a header row.
pub fn import_csv(path: impl AsRef<Path>) -> Inventory {
    let path = path.as_ref();
    let mut inventory = Inventory::default();
    let mut reader = match csv::ReaderBuilder::new().has_headers(true).from_path(path) {
        Ok(reader) => reader,
        Err(error) => {
            inventory.problem(Location::new(path, 0), format!("cannot read: {error}"));
            return inventory;
        }
    };
    let headers: Vec<String> = match reader.headers() {
        Ok(headers) => headers.iter().map(|h| h.trim().to_lowercase()).collect(),
        Err(error) => {
            inventory.problem(
                Location::new(path, 1),
                format!("cannot read the header row: {error}"),
            );
            return inventory;
        }
    };
    for header in &headers {
        if !FIELDS.contains(&header.as_str()) {
            inventory.problem(
                Location::new(path, 1),
                format!("unknown column \"{header}\" (known: {})", FIELDS.join(", ")),
            );
        }
    }
    if !headers.iter().any(|h| h == "extension") {
        inventory.problem(
            Location::new(path, 1),
            "no \"extension\" column: a header row naming the columns is required",
        );
        return inventory;
    }
    for record in reader.records() {
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                let line = error
                    .position()
                    .map_or(0, |p| usize::try_from(p.line()).unwrap_or(0));
                // csv's messages give counts and positions, not field contents.
                inventory.problem(
                    Location::new(path, line),
                    format!("unreadable record: {error}"),
                );
                continue;
            }
        };
        let line = record
            .position()
            .map_or(0, |p| usize::try_from(p.line()).unwrap_or(0));
        let mut row = Row::default();
        for (header, value) in headers.iter().zip(record.iter()) {
            row.set(header, value);
        }
        add_row(
            row,
            Location::new(path, line),
            SourceKind::Csv,
            &mut inventory,
        );
    }
    inventory
}

/// Reads a JSON inventory: an array of objects.
pub fn import_json(path: impl AsRef<Path>) -> Inventory {
    let path = path.as_ref();
    let mut inventory = Inventory::default();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => {
            inventory.problem(Location::new(path, 0), format!("cannot read: {error}"));
            return inventory;
        }
    };
    let records: Vec<Value> = match serde_json::from_str(&text) {
        Ok(Value::Array(records)) => records,
        Ok(_) => {
            inventory.problem(Location::new(path, 1), "expected an array of objects");
            return inventory;
        }
        Err(error) => {
            // serde_json's syntax errors name the position and the expectation, no values.
            inventory.problem(
                Location::new(path, error.line()),
                format!("malformed JSON: {error}"),
            );
            return inventory;
        }
    };
    let lines = element_lines(&text);
    for (index, record) in records.into_iter().enumerate() {
        let location = Location::new(path, lines.get(index).copied().unwrap_or(0));
        let Value::Object(fields) = record else {
            inventory.problem(location, format!("record {} is not an object", index + 1));
            continue;
        };
        let mut row = Row::default();
        let mut readable = true;
        for (field, value) in &fields {
            let text = match value {
                Value::String(text) => text.clone(),
                Value::Null => String::new(),
                // An extension number is harmless as a JSON number; a PIN or password is
                // not (leading zeros), and its value must not appear in the message.
                Value::Number(number) if field == "extension" => number.to_string(),
                _ => {
                    inventory.problem(
                        location.clone(),
                        format!("field \"{field}\" must be a string"),
                    );
                    readable = false;
                    continue;
                }
            };
            if !row.set(field, &text) {
                inventory.problem(
                    location.clone(),
                    format!("unknown field \"{field}\" (known: {})", FIELDS.join(", ")),
                );
                readable = false;
            }
        }
        if readable {
            add_row(row, location, SourceKind::Json, &mut inventory);
        }
    }
    inventory
}

/// The 1-based line where each element of the top-level array starts, so a record's
/// problems can name its line (serde_json's values do not keep positions).
fn element_lines(text: &str) -> Vec<usize> {
    let mut lines = Vec::new();
    let mut line = 1;
    let mut depth = 0i32;
    let mut in_string = false;
    let mut escaped = false;
    let mut expect_element = false;
    for c in text.chars() {
        if c == '\n' {
            line += 1;
        }
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        if expect_element && !c.is_whitespace() {
            if c != ']' {
                lines.push(line);
            }
            expect_element = false;
        }
        match c {
            '"' => in_string = true,
            '[' | '{' => {
                depth += 1;
                if depth == 1 && c == '[' {
                    expect_element = true;
                }
            }
            ']' | '}' => depth -= 1,
            ',' if depth == 1 => expect_element = true,
            _ => {}
        }
    }
    lines
}
