//! # tollgate-core
//!
//! The pure decision core of tollgate. It owns the policy model ([`policy`]), money
//! ([`money`]), number normalization and classification ([`number`]), charging plans
//! ([`rating`]), business hours ([`schedule`]), credit control state ([`ledger`]) and the
//! decision itself ([`engine`]).
//!
//! INVARIANT: this crate does no I/O and reads no clock. Time is an argument of every
//! operation, so a replay of old CDRs and a live call run the same code, and tests are
//! deterministic. Changes to the ledger come back as [`ledger::LedgerEvent`]s for the
//! store to make durable; the core never writes them itself.

pub mod engine;
pub mod guard;
pub mod guard_event;
pub mod ledger;
pub mod money;
pub mod monitor;
pub mod number;
pub mod policy;
pub mod rating;
pub mod schedule;

pub use engine::{AuthorizeRequest, Decision, Deny, DenyCode, Engine, Grant, RequestError};
pub use ledger::{Ledger, LedgerEvent, Subject, SubjectKind};
pub use money::{Currency, Money};
pub use policy::Policy;
