//! Credential hygiene for tollgate: the first slice of `tollgate audit`.
//!
//! - [`credentials`] judges SIP passwords and voicemail PINs and says, with a stable code per
//!   weakness, what is wrong with them; it is pure (no I/O, no randomness, no clock).
//! - [`generate`] makes passwords and PINs from the OS CSPRNG that pass those same checks, so
//!   what tollgate hands out is never something it would later report.
//! - [`import`] reads what operators already have (Asterisk pjsip.conf, sip.conf,
//!   voicemail.conf, acl.conf, FreeSWITCH directory and acl XML, CSV, JSON) into an
//!   [`inventory::Inventory`]:
//!   extensions, mailboxes, and a problem with file and line for everything unreadable.
//! - [`acl`] resolves named ACLs (acl.conf, acl.conf.xml) and an extension's own
//!   permit/deny into the networks really let in, and whether that restricts anything.
//! - [`firmware`] reads SIP User-Agents (vendor, model, version) and finds devices below an
//!   operator's minimum firmware; [`defaults`] knows phones' factory-default logins;
//!   [`usage`] finds extensions nobody has registered or called for weeks.
//! - [`findings`] turns an inventory or a tollgate policy into findings (severity, code,
//!   subject, evidence, fix); [`report`] renders them as a table, JSON or an HTML page.
//!
//! INVARIANT: no message, error or `Debug` output of this crate contains a secret it was
//! given or made; secrets appear only in the values `generate` returns.

pub mod acl;
pub mod credentials;
pub mod defaults;
pub mod findings;
pub mod firmware;
pub mod generate;
pub mod import;
pub mod inventory;
pub mod report;
pub mod usage;

pub use acl::{AclSet, AclVerdict};
pub use credentials::{
    check_password, check_pin, keyed_digest, PasswordPolicy, PinPolicy, Weakness, WeaknessCode,
};
pub use findings::{audit_inventory, audit_policy, AuditOptions, Finding, Severity};
pub use firmware::{
    audit_firmware, parse_user_agent, FirmwareRule, SeenDevice, UserAgent, Version,
};
pub use generate::{generate_password, generate_pin, random_key, GenerateError};
pub use usage::{audit_usage, Activity};
