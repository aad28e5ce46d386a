//! # tollgate-store
//!
//! Durable state for tollgate. The service decides from memory (`tollgate_core::Ledger` and
//! the directory) and makes every change durable here before it answers; after a crash
//! (`kill -9`) or a restart it rebuilds memory from what this crate gives back:
//!
//! - the spend rows ([`Store::load_spend`]) and the calls still open
//!   ([`Store::load_open_calls`]) for `Ledger::restore`;
//! - the directory entries created through the API or seeded from the policy file
//!   ([`Store::load_entities`]).
//!
//! Code map:
//!
//! - this file: the [`Store`] trait, the [`Change`]s it applies and [`StoreError`];
//! - [`sqlite`]: [`SqliteStore`], the default implementation (WAL, versioned migrations);
//! - [`journal`]: [`Journal`], a group-commit writer thread that owns a store and turns many
//!   concurrent submissions into one transaction;
//! - `codec` (private): serde mirrors of the core types the store keeps as JSON;
//! - [`store_test_suite!`]: one test suite that every implementation must pass.
//!
//! INVARIANT: money is stored as integer micros (`Money::micros`), never as a float.
//! INVARIANT: the store never interprets a directory entry's body; it only keeps it (and
//! refuses text that is not JSON, see [`Change::UpsertEntity`]).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use tollgate_core::guard::Ban;
use tollgate_core::ledger::{ActiveCall, LedgerEvent, SpendPeriod, SpendRow, Subject};
use tollgate_core::monitor::{Alert, MonitorSubject, Suspension};
use tollgate_core::policy::Origin;
use tollgate_core::Money;

mod codec;
pub mod journal;
pub mod sqlite;
#[doc(hidden)]
pub mod suite;

pub use journal::{Done, Journal};
pub use sqlite::{backup_live, verify_copy, CopyReport, Durability, SqliteStore};

/// Durable storage of the ledger and the directory.
///
/// Implementations are used from one thread at a time (the [`Journal`]'s writer, or a
/// single owner); `Send` lets that thread own them.
pub trait Store: Send {
    /// Applies the changes in order in ONE transaction: all of them or none. Durable
    /// (committed, under the store's durability setting) when it returns `Ok`.
    fn apply(&mut self, changes: &[Change]) -> Result<(), StoreError>;

    /// Spend rows: every `Total` row, and the `Day` rows on or after `since` and the
    /// `Month` rows of `since`'s month or later. Each (subject, period) appears once, with
    /// the sum of every settlement that counted in it.
    fn load_spend(&self, since: NaiveDate) -> Result<Vec<SpendRow>, StoreError>;

    /// Calls opened and not settled, as last written, in any order.
    fn load_open_calls(&self) -> Result<Vec<ActiveCall>, StoreError>;

    /// Directory entries (accounts and extensions created through the API or seeded from
    /// the policy file), ordered by kind then id.
    fn load_entities(&self) -> Result<Vec<StoredEntity>, StoreError>;

    /// Bans that started on or after `since`, and every ban not lifted, oldest first.
    fn load_bans(&self, since: DateTime<Utc>) -> Result<Vec<StoredBan>, StoreError>;

    /// A cursor (e.g. a log tail position) stored with [`Change::SetCursor`].
    fn cursor(&self, key: &str) -> Result<Option<String>, StoreError>;

    /// One directory entry, if stored.
    fn entity(&self, kind: EntityKind, id: &str) -> Result<Option<StoredEntity>, StoreError>;

    /// Settled calls of one extension, newest (by end time) first, at most `limit`.
    fn settled_calls(&self, extension: &str, limit: usize) -> Result<Vec<SettledCall>, StoreError>;

    /// One subject's spend in one period (zero if none).
    fn spend(&self, subject: &Subject, period: SpendPeriod) -> Result<Money, StoreError>;

    /// Alerts, newest first.
    fn alerts(&self, query: &AlertQuery) -> Result<Vec<Alert>, StoreError>;

    fn alert(&self, id: u64) -> Result<Option<Alert>, StoreError>;

    /// One above the highest alert id ever stored (1 when there is none).
    fn next_alert_id(&self) -> Result<u64, StoreError>;

    /// Monitor suspensions not lifted.
    fn active_suspensions(&self) -> Result<Vec<Suspension>, StoreError>;

    /// The last successful registration of every extension seen.
    fn registrations(&self) -> Result<Vec<RegistrationSeen>, StoreError>;

    /// Shadow-mode denials since `since`, oldest first.
    fn shadow_decisions(&self, since: DateTime<Utc>) -> Result<Vec<ShadowDecision>, StoreError>;

    /// Every stored baseline snapshot: `(rule path, subject, bytes)`.
    fn load_baselines(&self) -> Result<Vec<(String, MonitorSubject, Vec<u8>)>, StoreError>;

    /// The end of the last settled call of every extension that has one.
    fn last_calls(&self) -> Result<Vec<(String, DateTime<Utc>)>, StoreError>;
}

/// One change for [`Store::apply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A ledger change:
    /// - `Opened` and `Updated` write the call as open, replacing what was stored under its
    ///   id (an `Updated` of a call the store never saw is inserted, so the store follows
    ///   memory rather than failing the batch);
    /// - `Settled` marks the call settled with its figures and adds `settlement_spend_rows`
    ///   to the spend totals. The call's own details stay as its last `Opened`/`Updated`
    ///   wrote them (the ledger journals every change of a call, so they are the same);
    ///   a call the store never saw open is inserted whole. It always adds:
    ///   counting a charge twice errs toward refusing calls, never toward overspend.
    Ledger(LedgerEvent),
    /// Creates a directory entry, or replaces the `origin` and `body` of an existing one.
    /// An existing entry keeps its `suspended` flag: after creation only
    /// [`Change::SetSuspended`] changes it, so re-seeding from the policy file or an API
    /// edit of other fields never lifts a suspension by accident. The body must be JSON
    /// text (else the whole batch fails with [`StoreError::Invalid`]).
    UpsertEntity(StoredEntity),
    /// Removes a directory entry; nothing happens if there is none.
    DeleteEntity { kind: EntityKind, id: String },
    /// Records a ban (closing the one in force for the same target, if any).
    RecordBan(Ban),
    /// Marks the ban in force for `target` lifted (expired, or by hand).
    LiftBan {
        target: ipnet::IpNet,
        at: DateTime<Utc>,
        reason: String,
    },
    /// Stores an opaque cursor value under a key (log tail positions).
    SetCursor { key: String, value: String },
    /// Suspends or resumes a directory entry; nothing happens (but a warning is logged) if
    /// there is none.
    SetSuspended {
        kind: EntityKind,
        id: String,
        suspended: bool,
    },
    /// Writes an alert (incident) as it now is, inserting it or replacing the stored copy.
    UpsertAlert(Alert),
    /// Records a suspension decided by a monitoring rule (replacing the active one of the
    /// same subject, kept in history as lifted).
    Suspend(Suspension),
    /// Marks the active monitor suspension of `subject` lifted.
    LiftSuspension {
        subject: MonitorSubject,
        at: DateTime<Utc>,
        by: String,
    },
    /// Records a successful registration: the latest address and User-Agent per extension
    /// (for the audit's unused-extension and firmware checks).
    SeenRegistration(RegistrationSeen),
    /// Writes a learned baseline's snapshot (opaque bytes from the core), replacing the
    /// stored one of the same rule and subject.
    SaveBaseline {
        rule: String,
        subject: MonitorSubject,
        data: Vec<u8>,
    },
    /// A denial shadow mode did not enforce (the call was allowed).
    RecordShadow(ShadowDecision),
    /// The end of a shadow-allowed call: what it lasted and what it cost, the money the
    /// denial would have saved.
    SettleShadow {
        call_id: String,
        duration_s: u64,
        cost: Money,
    },
}

/// A decision shadow mode recorded instead of enforcing.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ShadowDecision {
    pub call_id: String,
    pub extension: String,
    pub number: String,
    /// The deny code and rule it would have had.
    pub code: String,
    pub rule: String,
    pub message: String,
    pub at: DateTime<Utc>,
    /// Set at the end of the call.
    pub duration_s: Option<u64>,
    pub cost: Option<Money>,
}

/// The last successful registration of an extension.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RegistrationSeen {
    pub extension: String,
    pub at: DateTime<Utc>,
    pub ip: Option<std::net::IpAddr>,
    pub user_agent: Option<String>,
}

/// Which alerts to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AlertQuery {
    /// Only open alerts.
    pub open_only: bool,
    /// Only alerts with an id below this (paging, newest first).
    pub before_id: Option<u64>,
    pub limit: usize,
}

impl From<LedgerEvent> for Change {
    fn from(event: LedgerEvent) -> Change {
        Change::Ledger(event)
    }
}

/// Which kind of directory entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    Account,
    Extension,
}

impl EntityKind {
    /// The stored text: "account" or "extension".
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Account => "account",
            EntityKind::Extension => "extension",
        }
    }
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EntityKind {
    type Err = String;
    fn from_str(text: &str) -> Result<EntityKind, String> {
        match text {
            "account" => Ok(EntityKind::Account),
            "extension" => Ok(EntityKind::Extension),
            _ => Err(format!(
                "unknown entity kind {text:?} (expected \"account\" or \"extension\")"
            )),
        }
    }
}

/// A directory entry as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEntity {
    pub kind: EntityKind,
    pub id: String,
    pub origin: Origin,
    /// Opaque JSON text: the store keeps it and gives it back, never interprets it.
    pub body: String,
    pub suspended: bool,
}

/// A ban as stored: the ban, and when and why it was lifted.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StoredBan {
    #[serde(flatten)]
    pub ban: Ban,
    pub lifted_at: Option<DateTime<Utc>>,
    pub lift_reason: Option<String>,
}

/// A finished call, as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SettledCall {
    pub call_id: String,
    pub extension: String,
    pub destination: String,
    /// The destination class ("national", "premium", ...).
    pub class: String,
    pub duration_s: u64,
    pub billed_s: u64,
    pub charged: Money,
    pub rated: Money,
    /// Seconds the call ran past its grant (the PBX did not cut it in time).
    pub overrun_s: u64,
    /// "ended" or "expired".
    pub reason: String,
    pub authorized_at: DateTime<Utc>,
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: DateTime<Utc>,
}

/// Why a store operation failed.
///
/// `Clone` because the [`Journal`] hands the one failure of a group commit to every
/// submitter of that batch; that is why the SQLite error is behind an `Arc`.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(Arc<rusqlite::Error>),
    /// A stored row that cannot be decoded: the database was edited by hand or damaged.
    #[error("corrupt {what} in the store: {detail}")]
    Corrupt { what: String, detail: String },
    /// A change the store refuses (the whole batch is refused with it).
    #[error("invalid {what}: {detail}")]
    Invalid { what: String, detail: String },
    /// The database was written by a newer tollgate; it is left untouched.
    #[error("database schema version {found} is newer than this tollgate supports ({supported}): upgrade tollgate, or open another database")]
    TooNew { found: i64, supported: i64 },
    /// The journal's writer thread is gone (shut down, or it could not start).
    #[error("the store journal is closed")]
    Closed,
    /// A journal read or flush was called from the journal's own writer thread (from a
    /// `done` callback): it would wait for itself forever.
    #[error(
        "journal read or flush called from the journal's writer thread (it would wait for itself)"
    )]
    Reentrant,
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> StoreError {
        StoreError::Sqlite(Arc::new(error))
    }
}

/// Expands to one `#[test]` per behaviour every [`Store`] must have. `$make` is an
/// expression evaluated afresh in each test; it must give a new, empty store.
///
/// ```no_run
/// mod in_memory {
///     tollgate_store::store_test_suite!(tollgate_store::SqliteStore::open_in_memory().unwrap());
/// }
/// ```
#[macro_export]
macro_rules! store_test_suite {
    ($make:expr) => {
        $crate::store_test_suite!(@tests $make;
            opened_call_round_trips,
            free_call_round_trips,
            updated_replaces_the_stored_call,
            settle_closes_the_call_and_adds_spend_everywhere,
            settle_of_a_call_never_opened_is_recorded,
            zero_charge_adds_no_spend,
            spend_sums_across_settlements,
            load_spend_filters_by_since,
            entities_upsert_delete_and_suspend,
            upsert_keeps_suspended,
            settled_calls_are_newest_first_and_limited,
            batch_of_a_thousand_changes_in_one_apply,
            failed_apply_leaves_nothing_behind,
            empty_apply_is_fine,
            reopened_call_id_is_open_again,
            bans_record_lift_and_history,
            cursors_round_trip,
            alerts_upsert_list_and_page,
            suspensions_record_and_lift,
            registrations_and_last_calls,
            baselines_round_trip,
            shadow_decisions_record_and_settle,
        );
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::suite::$name($make);
            }
        )*
    };
}
