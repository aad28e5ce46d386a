//! What the importers read: extensions, voicemail boxes and the problems met on the way.
//!
//! This module owns the audit's view of an operator's existing PBX configuration, whatever
//! it came from (Asterisk, FreeSWITCH, CSV, JSON). It keeps only what the audit findings
//! need: the credential (to judge it), the IP restriction (permit/deny, named ACLs and the
//! acl files defining them, identify-by-IP), the context, a display name (for "test"/"demo"
//! extensions), the limits that may be unlimited, and what a device list says about the
//! phone (User-Agent, web admin login).
//!
//! INVARIANT: a plaintext credential lives only inside a [`Secret`], whose `Debug` and
//! `Display` print `<redacted>` and which is not `Serialize`: formatting an [`Inventory`] for
//! a log or a report can never show a password or PIN (issue 5: "plaintext secrets from
//! imported files are never stored or logged").

use std::fmt;
use std::path::PathBuf;

use ipnet::IpNet;

use crate::acl::{Acl, AclSet, AclVerdict};

/// A plaintext password or PIN read from a file.
///
/// Deliberately not `Serialize`, not `PartialEq` (a comparison is a side channel and a
/// temptation to log), and opaque in `Debug`/`Display`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The plaintext, for the credential checks and the keyed digest only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What a file says about a credential. An enum rather than `Option<Secret>` plus flags so
/// that "hashed" and "plaintext" cannot both be claimed.
#[derive(Debug, Clone)]
pub enum Credential {
    /// The plaintext is in the file: it can be checked.
    Plain(Secret),
    /// Only a hash is in the file (`md5_cred`, `md5secret`, FreeSWITCH `a1-hash`, a `*` PIN):
    /// the credential exists but its strength cannot be judged.
    Hashed,
    /// The value refers to something the importer does not expand (FreeSWITCH
    /// `$${default_password}`); `reference` is the name, which is not secret.
    Unresolved { reference: String },
}

impl Credential {
    /// The plaintext, when the file held one.
    pub fn plaintext(&self) -> Option<&Secret> {
        match self {
            Credential::Plain(secret) => Some(secret),
            Credential::Hashed | Credential::Unresolved { .. } => None,
        }
    }
}

/// Where something was read: a file and a 1-based line; line 0 means the file as a whole
/// (it could not be opened, or the problem is not tied to one line).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
}

impl Location {
    pub fn new(file: impl Into<PathBuf>, line: usize) -> Self {
        Location {
            file: file.into(),
            line,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file.display())
        } else {
            write!(f, "{}:{}", self.file.display(), self.line)
        }
    }
}

/// Which importer read an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    Pjsip,
    SipConf,
    Voicemail,
    FreeSwitch,
    Csv,
    Json,
}

/// One SIP extension (endpoint, peer, user) as configured.
#[derive(Debug, Clone)]
pub struct ImportedExtension {
    /// The extension's name in its file: pjsip endpoint or sip.conf section, FreeSWITCH user id.
    pub id: String,
    /// Where it is defined (its section header, `<user>` element or record).
    pub location: Location,
    pub source: SourceKind,
    /// The authentication username, when the file gives one apart from the id.
    pub username: Option<String>,
    /// `None`: no credential at all (pjsip endpoint without `auth`, sip.conf peer without
    /// `secret`): such an extension authenticates by IP only, or not at all.
    pub secret: Option<Credential>,
    /// Networks allowed to register or call (`permit`, FreeSWITCH `cidr`, CSV `permit`).
    pub permit: Vec<IpNet>,
    /// Networks refused (`deny`).
    pub deny: Vec<IpNet>,
    /// The extension's own rules as unnamed ACLs, in file order (pjsip `permit`/`deny`
    /// and `contact_permit`/`contact_deny` are two; FreeSWITCH `cidr` and CSV
    /// `permit`/`deny` an allow list): what [`AclSet::resolve`] evaluates. `permit` and
    /// `deny` above are the same networks without their order.
    pub own_acls: Vec<Acl>,
    /// Named ACLs applied (pjsip/sip.conf `acl`, `contact_acl`, FreeSWITCH `auth-acl`,
    /// `apply-inbound-acl`), resolved against the acl files imported (see
    /// [`Inventory::resolve_acls`]).
    pub acl_names: Vec<String>,
    /// What the ACLs let in, once [`Inventory::resolve_acls`] ran; `None` before.
    pub acl_verdict: Option<AclVerdict>,
    /// Addresses a pjsip `identify` section matches to this endpoint (calls from them are
    /// accepted as this endpoint, without authentication).
    pub identify: Vec<IpNet>,
    /// Dialplan context (pjsip/sip.conf `context`, FreeSWITCH `user_context`).
    pub context: Option<String>,
    /// A display name (`callerid`, `effective_caller_id_name`), for test/demo detection.
    pub display_name: Option<String>,
    /// sip.conf `call-limit`: `Some(0)` or `None` mean no limit on concurrent calls.
    pub call_limit: Option<u32>,
    /// pjsip AOR `max_contacts` over the endpoint's `aors`: how many devices may register.
    pub max_contacts: Option<u32>,
    /// The SIP User-Agent of the extension's phone (CSV/JSON `user_agent`), for the
    /// firmware and default-credential checks.
    pub user_agent: Option<String>,
    /// The phone's web admin login (CSV/JSON `device_user`, `device_password`), checked
    /// against factory defaults.
    pub device_user: Option<String>,
    pub device_password: Option<Secret>,
}

impl ImportedExtension {
    /// An extension with only its identity known; importers fill in the rest.
    pub fn new(id: impl Into<String>, location: Location, source: SourceKind) -> Self {
        ImportedExtension {
            id: id.into(),
            location,
            source,
            username: None,
            secret: None,
            permit: Vec::new(),
            deny: Vec::new(),
            own_acls: Vec::new(),
            acl_names: Vec::new(),
            acl_verdict: None,
            identify: Vec::new(),
            context: None,
            display_name: None,
            call_limit: None,
            max_contacts: None,
            user_agent: None,
            device_user: None,
            device_password: None,
        }
    }

    /// What the extension's ACLs let in: the stored verdict of
    /// [`Inventory::resolve_acls`], or, before it ran, its own rules with every named ACL
    /// taken on trust (no acl file known).
    pub fn verdict(&self) -> AclVerdict {
        match &self.acl_verdict {
            Some(verdict) => verdict.clone(),
            None => AclSet::default().resolve(self),
        }
    }

    /// Whether its ACLs really limit where the extension may be used from: they keep
    /// the internet out (see [`crate::acl`]), or a named ACL could not be resolved (taken
    /// on trust; the audit says so).
    pub fn has_ip_restriction(&self) -> bool {
        self.verdict().restricts()
    }

    /// The networks the extension may be used from, when its ACLs were resolved
    /// ([`Inventory::resolve_acls`]) and restrict it: the `allowed_cidrs` a tollgate
    /// policy for it should have (see [`AclVerdict::effective_permit`]). `None` when
    /// unrestricted, unresolved, refusing every address, or not yet resolved.
    pub fn effective_permit(&self) -> Option<&[IpNet]> {
        self.acl_verdict.as_ref()?.effective_permit()
    }
}

/// A voicemail box and its PIN.
#[derive(Debug, Clone)]
pub struct Mailbox {
    pub mailbox: String,
    /// voicemail.conf section; `None` where the source has no such notion.
    pub context: Option<String>,
    pub pin: Credential,
    /// voicemail.conf `-` prefix: the user cannot change the PIN (so a weak one stays).
    pub pin_locked: bool,
    pub location: Location,
}

/// Something an importer could not read, with where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportProblem {
    pub location: Location,
    pub message: String,
}

impl ImportProblem {
    pub fn new(location: Location, message: impl Into<String>) -> Self {
        ImportProblem {
            location,
            message: message.into(),
        }
    }
}

impl fmt::Display for ImportProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Everything read from one or more files.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub extensions: Vec<ImportedExtension>,
    pub mailboxes: Vec<Mailbox>,
    /// Named ACLs from acl.conf and acl.conf.xml.
    pub acls: AclSet,
    pub problems: Vec<ImportProblem>,
}

impl Inventory {
    /// Appends `other`; nothing is deduplicated, since the same extension in two files is
    /// itself worth reporting. An ACL name defined in both is a problem (the first is kept).
    pub fn merge(&mut self, other: Inventory) {
        self.extensions.extend(other.extensions);
        self.mailboxes.extend(other.mailboxes);
        self.problems.extend(other.problems);
        let duplicates = self.acls.merge(other.acls);
        self.problems.extend(duplicates);
    }

    /// Resolves every extension's ACLs against the acl files imported so far and stores
    /// the verdict (see [`ImportedExtension::effective_permit`]). Call it after the last
    /// [`Inventory::merge`]: an ACL file merged later is not seen by earlier verdicts.
    /// The audit itself does not need it: [`crate::audit_inventory`] resolves afresh.
    pub fn resolve_acls(&mut self) {
        for ext in &mut self.extensions {
            ext.acl_verdict = Some(self.acls.resolve(ext));
        }
    }

    pub(crate) fn problem(&mut self, location: Location, message: impl Into<String>) {
        self.problems.push(ImportProblem::new(location, message));
    }
}
