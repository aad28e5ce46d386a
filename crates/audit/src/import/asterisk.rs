//! The Asterisk `.conf` syntax shared by pjsip.conf, sip.conf and voicemail.conf.
//!
//! Owns the lexical rules (`;` comments with `\;` escapes, `;-- --;` block comments, `=>`
//! read as `=`, `#include`/`#tryinclude` relative to the including file) and section
//! templates: `[name](!)` declares a template, `[name](a,b)` inherits a's then b's entries
//! before its own, `[name](+)` appends to an earlier section of that name. Entries are kept
//! in order and never merged here, so a single-valued key is "the last one" and a
//! multi-valued key (`permit`, `deny`, `match`) accumulates: the same rule Asterisk applies.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::inventory::{Inventory, Location};

/// How deep `#include` may nest, and templates inherit, before we assume a cycle the
/// visited-set did not catch (a file reached by two spellings of its path).
const MAX_DEPTH: usize = 32;

/// No `Debug`: a value may be a password.
#[derive(Clone)]
pub(crate) struct Entry {
    pub key: String,
    pub value: String,
    pub location: Location,
}

pub(crate) struct Section {
    pub name: String,
    pub location: Location,
    pub template: bool,
    pub inherits: Vec<String>,
    pub entries: Vec<Entry>,
}

/// A non-template section with its templates' entries in front of its own.
pub(crate) struct Resolved {
    pub name: String,
    pub location: Location,
    pub entries: Vec<Entry>,
}

impl Resolved {
    /// The value that wins for a single-valued key: the last one.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .rev()
            .find(|entry| entry.key.eq_ignore_ascii_case(key))
    }

    pub fn value(&self, key: &str) -> Option<&str> {
        self.get(key).map(|entry| entry.value.as_str())
    }

    /// Every value of a multi-valued key, in order.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries
            .iter()
            .filter(move |entry| entry.key.eq_ignore_ascii_case(key))
    }
}

/// Where lines go while parsing: nowhere yet, a section, or nowhere because the section
/// header was broken (its lines are covered by the header's problem).
enum Target {
    Start,
    Section(usize),
    BrokenHeader,
}

struct Parser<'a> {
    inventory: &'a mut Inventory,
    sections: Vec<Section>,
    target: Target,
    /// Files being read, innermost last: an include of one of them is a loop.
    open: Vec<PathBuf>,
}

/// Reads `path` and its includes into sections; every unreadable thing is a problem.
pub(crate) fn parse(path: &Path, inventory: &mut Inventory) -> Vec<Section> {
    let mut parser = Parser {
        inventory,
        sections: Vec::new(),
        target: Target::Start,
        open: Vec::new(),
    };
    parser.file(path, None, false);
    parser.sections
}

impl Parser<'_> {
    fn file(&mut self, path: &Path, from: Option<&Location>, optional: bool) {
        let here = || from.cloned().unwrap_or_else(|| Location::new(path, 0));
        if self.open.len() >= MAX_DEPTH {
            self.inventory.problem(
                here(),
                format!("includes nest deeper than {MAX_DEPTH} files"),
            );
            return;
        }
        let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        if self.open.contains(&canonical) {
            self.inventory.problem(
                here(),
                format!("include loop: \"{}\" is already being read", path.display()),
            );
            return;
        }
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(_) if optional => return,
            Err(error) => {
                let message = match from {
                    Some(_) => format!("cannot read included \"{}\": {error}", path.display()),
                    None => format!("cannot read: {error}"),
                };
                self.inventory.problem(here(), message);
                return;
            }
        };
        // Lossy: a stray Latin-1 byte in a comment must not cost the whole file.
        let text = String::from_utf8_lossy(&bytes);
        self.open.push(canonical);
        let mut in_block_comment = false;
        for (index, raw) in text.lines().enumerate() {
            let location = Location::new(path, index + 1);
            let line = strip_comments(raw, &mut in_block_comment);
            let line = line.trim();
            if !line.is_empty() {
                self.line(line, location);
            }
        }
        self.open.pop();
    }

    fn line(&mut self, line: &str, location: Location) {
        if let Some(directive) = line.strip_prefix('#') {
            self.directive(directive, location);
        } else if line.starts_with('[') {
            self.header(line, location);
        } else {
            self.entry(line, location);
        }
    }

    fn directive(&mut self, directive: &str, location: Location) {
        let (word, argument) = directive
            .split_once(char::is_whitespace)
            .unwrap_or((directive, ""));
        let argument = argument
            .trim()
            .trim_matches(|c| c == '"' || c == '<' || c == '>');
        let optional = match word {
            "include" => false,
            "tryinclude" => true,
            "exec" | "tryexec" => {
                self.inventory
                    .problem(location, format!("#{word} is not run by the importer"));
                return;
            }
            _ => {
                self.inventory
                    .problem(location, format!("unknown directive \"#{word}\""));
                return;
            }
        };
        if argument.is_empty() {
            self.inventory
                .problem(location, format!("#{word} without a file name"));
            return;
        }
        // Relative includes are relative to the including file's folder (Asterisk resolves
        // them against its config directory, which is that folder for a file taken from it).
        let base = location.file.parent().unwrap_or_else(|| Path::new(""));
        let target = base.join(argument);
        if argument.contains(['*', '?']) {
            self.inventory.problem(
                location,
                format!("#{word} with a wildcard (\"{argument}\") is not followed"),
            );
            return;
        }
        self.file(&target, Some(&location), optional);
    }

    fn header(&mut self, line: &str, location: Location) {
        match parse_header(line) {
            Ok((name, options)) => {
                let mut template = false;
                let mut append = false;
                let mut inherits = Vec::new();
                for option in options {
                    match option {
                        "!" => template = true,
                        "+" => append = true,
                        other => inherits.push(other.to_string()),
                    }
                }
                if append {
                    if let Some(index) = self.sections.iter().rposition(|s| s.name == name) {
                        self.target = Target::Section(index);
                        return;
                    }
                    self.inventory.problem(
                        location.clone(),
                        format!("[{name}](+) adds to a section \"{name}\" that does not exist before it"),
                    );
                }
                self.sections.push(Section {
                    name: name.to_string(),
                    location,
                    template,
                    inherits,
                    entries: Vec::new(),
                });
                self.target = Target::Section(self.sections.len() - 1);
            }
            Err(message) => {
                self.inventory.problem(
                    location,
                    format!("{message}; the lines up to the next section are ignored"),
                );
                self.target = Target::BrokenHeader;
            }
        }
    }

    fn entry(&mut self, line: &str, location: Location) {
        let Some((key, value)) = line.split_once('=') else {
            self.inventory.problem(
                location,
                "not a section, a directive or a \"key = value\" line",
            );
            return;
        };
        let value = value.strip_prefix('>').unwrap_or(value);
        let key = key.trim();
        if key.is_empty() {
            self.inventory.problem(location, "a value without a key");
            return;
        }
        match self.target {
            Target::Section(index) => {
                if let Some(section) = self.sections.get_mut(index) {
                    section.entries.push(Entry {
                        key: key.to_string(),
                        value: value.trim().to_string(),
                        location,
                    });
                }
            }
            Target::Start => self
                .inventory
                .problem(location, format!("\"{key}\" is outside any section")),
            Target::BrokenHeader => {}
        }
    }
}

/// `[name]` or `[name](options)`: the name and the options.
fn parse_header(line: &str) -> Result<(&str, Vec<&str>), String> {
    let inner = line.strip_prefix('[').unwrap_or(line);
    let Some((name, rest)) = inner.split_once(']') else {
        return Err("section header without a closing \"]\"".to_string());
    };
    let name = name.trim();
    if name.is_empty() || name.contains('[') {
        return Err("section header without a valid name".to_string());
    }
    let rest = rest.trim();
    if rest.is_empty() {
        return Ok((name, Vec::new()));
    }
    let options = rest
        .strip_prefix('(')
        .and_then(|rest| rest.strip_suffix(')'))
        .ok_or_else(|| format!("unexpected text after section \"[{name}]\""))?;
    let options: Vec<&str> = options.split(',').map(str::trim).collect();
    if options.iter().any(|option| option.is_empty()) {
        return Err(format!("empty template name in section \"[{name}]\""));
    }
    Ok((name, options))
}

/// The line without comments: `;` to the end of the line unless escaped as `\;`, and
/// `;-- ... --;` block comments, which may span lines (`in_block` carries that state).
fn strip_comments(line: &str, in_block: &mut bool) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    loop {
        if *in_block {
            match rest.find("--;") {
                Some(end) => {
                    rest = &rest[end + 3..];
                    *in_block = false;
                }
                None => return out,
            }
        }
        let mut chars = rest.char_indices().peekable();
        let mut cut = None;
        while let Some((index, c)) = chars.next() {
            match c {
                '\\' if matches!(chars.peek(), Some((_, ';'))) => {
                    out.push(';');
                    chars.next();
                }
                ';' => {
                    cut = Some(index);
                    break;
                }
                other => out.push(other),
            }
        }
        let Some(index) = cut else {
            return out;
        };
        let after = &rest[index + 1..];
        if let Some(block) = after.strip_prefix("--") {
            *in_block = true;
            rest = block;
        } else {
            return out;
        }
    }
}

/// The non-template sections with their templates applied. A template that does not exist
/// (it must come before its use, as in Asterisk) is a problem at the header that names it.
pub(crate) fn resolve(sections: &[Section], inventory: &mut Inventory) -> Vec<Resolved> {
    let positions = Positions::of(sections);
    for (index, section) in sections.iter().enumerate() {
        for name in &section.inherits {
            if positions.last_before(index, name).is_none() {
                inventory.problem(
                    section.location.clone(),
                    format!(
                        "section \"{}\" inherits from \"{name}\", which is not defined before it",
                        section.name
                    ),
                );
            }
        }
    }
    let mut resolved = Vec::new();
    for (index, section) in sections.iter().enumerate() {
        if section.template {
            continue;
        }
        let mut entries = Vec::new();
        let mut visiting = HashSet::new();
        collect(sections, &positions, index, &mut entries, &mut visiting, 0);
        resolved.push(Resolved {
            name: section.name.clone(),
            location: section.location.clone(),
            entries,
        });
    }
    resolved
}

/// Where each section name appears, so that finding "the latest section of this name
/// before index i" is a binary search, not a scan (a scan made files of 100,000
/// extensions quadratic).
struct Positions<'a> {
    by_name: HashMap<&'a str, Vec<usize>>,
}

impl<'a> Positions<'a> {
    fn of(sections: &'a [Section]) -> Positions<'a> {
        let mut by_name: HashMap<&'a str, Vec<usize>> = HashMap::new();
        for (index, section) in sections.iter().enumerate() {
            // Indexes are pushed in order, so each list is sorted.
            by_name
                .entry(section.name.as_str())
                .or_default()
                .push(index);
        }
        Positions { by_name }
    }

    /// The latest section named `name` before `before`.
    fn last_before(&self, before: usize, name: &str) -> Option<usize> {
        let list = self.by_name.get(name)?;
        let count = list.partition_point(|&i| i < before);
        count.checked_sub(1).map(|i| list[i])
    }
}

fn collect(
    sections: &[Section],
    positions: &Positions<'_>,
    index: usize,
    out: &mut Vec<Entry>,
    visiting: &mut HashSet<usize>,
    depth: usize,
) {
    // A template cannot inherit from a later section, so cycles are impossible; the guards
    // are cheap insurance against a future change of `Positions::last_before`.
    if depth > MAX_DEPTH || !visiting.insert(index) {
        return;
    }
    let Some(section) = sections.get(index) else {
        return;
    };
    for name in &section.inherits {
        if let Some(parent) = positions.last_before(index, name) {
            collect(sections, positions, parent, out, visiting, depth + 1);
        }
    }
    out.extend(section.entries.iter().cloned());
    visiting.remove(&index);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_escapes_and_blocks() {
        let mut block = false;
        assert_eq!(strip_comments("a=b ; note", &mut block), "a=b ");
        assert_eq!(strip_comments("a=b\\;c;x", &mut block), "a=b;c");
        assert_eq!(strip_comments("a=1 ;-- start", &mut block), "a=1 ");
        assert!(block);
        assert_eq!(strip_comments("still hidden --; b=2", &mut block), " b=2");
        assert!(!block);
        assert_eq!(strip_comments("x=1 ;-- inline --; y", &mut block), "x=1  y");
    }

    #[test]
    fn headers() {
        assert_eq!(parse_header("[a]"), Ok(("a", vec![])));
        assert_eq!(parse_header("[a](!)"), Ok(("a", vec!["!"])));
        assert_eq!(parse_header("[a](t1, t2)"), Ok(("a", vec!["t1", "t2"])));
        assert!(parse_header("[a").is_err());
        assert!(parse_header("[a] junk").is_err());
        assert!(parse_header("[]").is_err());
        assert!(parse_header("[a](t1,)").is_err());
    }
}
