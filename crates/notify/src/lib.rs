//! Alert delivery for tollgate: tells people when call-pattern monitoring opens, updates,
//! escalates, closes or acknowledges an alert.
//!
//! - [`model`]: the [`Notification`] (alert id, event, severity, rule, subject, summary,
//!   figures, action, time) and its JSON payload `{"version":1, ...}`.
//! - [`config`]: the channel settings an operator writes under `[alerts]` ([`ChannelsConfig`]).
//! - [`Notifier`]: the dispatcher. [`Notifier::start`] checks every channel and reads the
//!   secret files, then runs one worker thread and one bounded queue per channel;
//!   [`Notifier::notify`] only queues; [`Notifier::stats`] counts delivered, retried, failed
//!   and dropped per channel; [`Notifier::shutdown`] drains until a deadline.
//! - The channels: `log` (a `tracing` event), `webhook` (signed JSON POST over http(s)),
//!   `smtp` (a plain-text e-mail), `syslog` (RFC 5424 over a Unix socket or UDP). Webhook and
//!   e-mail retry transient failures with exponential backoff (1 s doubling to 60 s, jittered).
//!
//! # Invariants
//!
//! - `notify` never blocks and does no I/O on the caller's thread: a decision path may call it.
//!   A full queue drops the notification and counts it.
//! - A slow or failing channel delays only itself: each has its own thread and queue.
//! - No message, error, log line or `Debug` output contains a webhook key or SMTP password,
//!   nor a webhook URL's path or query (where chat services keep their tokens). `ureq`'s own
//!   debug-level records (through `log`) do show the request line: keep `ureq` at `info` or
//!   above where webhook URLs carry tokens.

pub mod config;
mod deliver;
mod dispatch;
mod error;
mod log;
pub mod model;
mod secret;
mod smtp;
mod syslog;
mod text;
mod webhook;

pub use config::{
    ChannelsConfig, SmtpChannel, SmtpTls, SyslogChannel, SyslogFacility, WebhookChannel,
};
pub use dispatch::{ChannelStats, Notifier, NotifierOptions, DROP_DEADLINE};
pub use error::NotifyError;
pub use model::{AlertEvent, AlertSeverity, Notification, PAYLOAD_VERSION};
