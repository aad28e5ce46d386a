//! # tollgate-agi
//!
//! A FastAGI server for Asterisk. The dialplan asks before each outbound call with
//! `AGI(agi://127.0.0.1:4573/authorize?...)` and reads the answer from channel variables
//! (`TOLLGATE_DECISION`, `TOLLGATE_MAX_SECONDS`, `TOLLGATE_REASON`, `TOLLGATE_CODE`); a
//! hangup handler reports the end with `AGI(agi://127.0.0.1:4573/end?...)`. The dialplan to
//! copy is `examples/asterisk/extensions.conf`.
//!
//! This crate owns the protocol and the server, not the decisions: [`serve`] calls an
//! [`AgiHandler`], which the service implements over the engine. It depends on nothing of
//! tollgate's.
//!
//! - [`protocol`]: the wire format, sync parsers and the bounded async readers.
//! - [`AgiHandler`], [`AuthorizeArgs`], [`EndArgs`], [`AgiDecision`]: what the server asks,
//!   and where each field comes from (named parameters, then arguments, then the
//!   environment; see [`handler`]).
//! - [`serve`]: the listener loop, one task per connection, every wait bounded.
//! - [`AgiSettings`]: the `[agi]` settings.

pub mod error;
pub mod handler;
pub mod protocol;
mod server;
mod settings;

pub use error::{ProtocolError, RequestError, SettingsError};
pub use handler::{AgiCall, AgiDecision, AgiHandler, AuthorizeArgs, EndArgs};
pub use protocol::{AgiEnvironment, Script};
pub use server::{serve, ServeSummary, MAX_SECONDS_CAP};
pub use settings::AgiSettings;
