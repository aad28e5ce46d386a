//! [`SqliteStore`]: the default [`Store`], one SQLite file in WAL mode.
//!
//! It owns the schema and its migrations. The schema version is SQLite's `user_version`;
//! [`MIGRATIONS`] are applied in order at open, each with its version bump in one
//! transaction, so a crash mid-migration leaves the previous version intact.
//!
//! Tables (all `STRICT`, so a float can never slip into a money column: an integer
//! overflow in `amount + excluded.amount` becomes a REAL in SQLite, which a STRICT
//! INTEGER column refuses, failing the batch instead of storing an inexact amount):
//!
//! - `calls`: one row per call id, `state` 'open' or 'settled', the `ActiveCall` as JSON
//!   (see `codec`), and the settlement figures once settled;
//! - `spend`: one total per (subject, period), period as `SpendPeriod`'s text
//!   ("d:2026-11-26", "m:2026-11", "total");
//! - `entities`: the directory entries, body as opaque JSON text.
//!
//! INVARIANT: a database whose `user_version` is newer than [`SCHEMA_VERSION`] is refused
//! before anything is written to it (not even the journal mode).

use std::path::Path;
use std::time::Duration;

use chrono::NaiveDate;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tollgate_core::ledger::{
    settlement_spend_rows, ActiveCall, LedgerEvent, MonthKey, SpendPeriod, SpendRow, Subject,
};
use tollgate_core::Money;

use crate::codec;
use crate::{
    AlertQuery, Change, EntityKind, RegistrationSeen, SettledCall, Store, StoreError, StoredBan,
    StoredEntity,
};
use tollgate_core::monitor::{Alert, MonitorSubject, Suspension};

fn subject_text(subject: &MonitorSubject) -> String {
    match subject {
        MonitorSubject::Global => "global".to_string(),
        other => format!("{} {}", other.kind(), other.id()),
    }
}

fn decode_json<T: serde::de::DeserializeOwned>(
    what: &str,
    id: i64,
    body: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt {
        what: format!("{what} {id}"),
        detail: e.to_string(),
    })
}
use chrono::{DateTime, Utc};
use tollgate_core::guard::Ban;

/// How hard a commit works to survive failures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// WAL with `synchronous=NORMAL`: a commit is in the WAL file (the OS has it) when
    /// `apply` returns, so it survives the process crashing or being killed; the last
    /// commits may be lost if the machine loses power. Fast: no fsync per commit.
    #[default]
    Normal,
    /// WAL with `synchronous=FULL`: the WAL is fsynced at every commit, so a commit also
    /// survives power loss.
    Full,
}

/// The migrations, in order; migration `i` takes the schema to version `i + 1`.
/// Append only: never edit one that has shipped.
pub const MIGRATIONS: &[&str] = &[
    // 1: calls, spend, entities.
    r#"
    CREATE TABLE calls (
        call_id    TEXT NOT NULL PRIMARY KEY,
        extension  TEXT NOT NULL,
        state      TEXT NOT NULL CHECK (state IN ('open', 'settled')),
        call       TEXT NOT NULL,
        reason     TEXT CHECK (reason IN ('ended', 'expired')),
        ended_at   TEXT,
        duration_s INTEGER,
        billed_s   INTEGER,
        charged    INTEGER,
        rated      INTEGER,
        overrun_s  INTEGER,
        CHECK (state = 'open' OR (reason IS NOT NULL AND ended_at IS NOT NULL
            AND duration_s IS NOT NULL AND billed_s IS NOT NULL AND charged IS NOT NULL
            AND rated IS NOT NULL AND overrun_s IS NOT NULL))
    ) STRICT;
    -- Settled calls of one extension, newest first.
    CREATE INDEX calls_by_extension ON calls (extension, state, ended_at);
    -- The few open calls among the many settled ones, read at every start.
    CREATE INDEX calls_open ON calls (call_id) WHERE state = 'open';

    CREATE TABLE spend (
        subject_kind TEXT NOT NULL CHECK (subject_kind IN ('extension', 'account')),
        subject_id   TEXT NOT NULL,
        period       TEXT NOT NULL,
        amount       INTEGER NOT NULL,
        PRIMARY KEY (subject_kind, subject_id, period)
    ) STRICT, WITHOUT ROWID;
    -- load_spend reads the recent periods and the totals, not years of old days.
    CREATE INDEX spend_by_period ON spend (period);

    CREATE TABLE entities (
        kind       TEXT NOT NULL CHECK (kind IN ('account', 'extension')),
        id         TEXT NOT NULL,
        origin     TEXT NOT NULL CHECK (origin IN ('policy', 'api')),
        body       TEXT NOT NULL CHECK (json_valid(body)),
        suspended  INTEGER NOT NULL CHECK (suspended IN (0, 1)),
        updated_at TEXT NOT NULL,
        PRIMARY KEY (kind, id)
    ) STRICT, WITHOUT ROWID;
    "#,
    // 2: the intrusion guard's bans (history kept for repeat offenses) and cursors
    // (log tail positions).
    r#"
    CREATE TABLE bans (
        id          INTEGER PRIMARY KEY,
        target      TEXT NOT NULL,
        rule        TEXT NOT NULL,
        reason      TEXT NOT NULL,
        events      TEXT NOT NULL CHECK (json_valid(events)),
        banned_at   TEXT NOT NULL,
        expires_at  TEXT,
        offense     INTEGER NOT NULL,
        lifted_at   TEXT,
        lift_reason TEXT
    ) STRICT;
    CREATE INDEX bans_by_time ON bans (banned_at);
    CREATE INDEX bans_active ON bans (target) WHERE lifted_at IS NULL;

    CREATE TABLE cursors (
        key   TEXT NOT NULL PRIMARY KEY,
        value TEXT NOT NULL
    ) STRICT, WITHOUT ROWID;
    "#,
    // 3: one index on calls instead of two: every call is inserted once and settled once,
    // and each index costs a b-tree write both times. (state, extension, ended_at) serves
    // both reads: the open calls at start (state = 'open') and an extension's settled
    // calls newest first.
    r#"
    DROP INDEX calls_by_extension;
    DROP INDEX calls_open;
    CREATE INDEX calls_by_state ON calls (state, extension, ended_at);
    "#,
    // 4: call-pattern monitoring (alerts as incidents, rule-decided suspensions with their
    // history) and the last registration of each extension (for the audit).
    r#"
    CREATE TABLE alerts (
        id           INTEGER PRIMARY KEY,
        rule         TEXT NOT NULL,
        subject      TEXT NOT NULL,
        severity     TEXT NOT NULL CHECK (severity IN ('warning', 'critical')),
        open         INTEGER NOT NULL CHECK (open IN (0, 1)),
        opened_at    TEXT NOT NULL,
        updated_at   TEXT NOT NULL,
        body         TEXT NOT NULL CHECK (json_valid(body))
    ) STRICT;
    CREATE INDEX alerts_open ON alerts (id) WHERE open = 1;

    CREATE TABLE suspensions (
        id        INTEGER PRIMARY KEY,
        subject   TEXT NOT NULL,
        body      TEXT NOT NULL CHECK (json_valid(body)),
        lifted_at TEXT,
        lifted_by TEXT
    ) STRICT;
    CREATE INDEX suspensions_active ON suspensions (subject) WHERE lifted_at IS NULL;

    CREATE TABLE registrations (
        extension  TEXT NOT NULL PRIMARY KEY,
        at         TEXT NOT NULL,
        ip         TEXT,
        user_agent TEXT
    ) STRICT, WITHOUT ROWID;
    "#,
    // 5: learned baselines of call-pattern monitoring (opaque snapshots from the core),
    // so that a restart or an upgrade does not start the learning again.
    r#"
    CREATE TABLE baselines (
        rule    TEXT NOT NULL,
        subject TEXT NOT NULL,
        data    BLOB NOT NULL,
        PRIMARY KEY (rule, subject)
    ) STRICT, WITHOUT ROWID;
    "#,
    // 6: shadow mode's record of the denials it did not enforce, and what those calls cost.
    r#"
    CREATE TABLE shadow_decisions (
        call_id    TEXT NOT NULL PRIMARY KEY,
        extension  TEXT NOT NULL,
        number     TEXT NOT NULL,
        code       TEXT NOT NULL,
        rule       TEXT NOT NULL,
        message    TEXT NOT NULL,
        at         TEXT NOT NULL,
        duration_s INTEGER,
        cost       INTEGER
    ) STRICT;
    CREATE INDEX shadow_by_time ON shadow_decisions (at);
    "#,
];

/// The schema version this binary writes and reads.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// How long a statement waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const UPSERT_OPEN_CALL: &str = "
    INSERT INTO calls (call_id, extension, state, call) VALUES (?1, ?2, 'open', ?3)
    ON CONFLICT (call_id) DO UPDATE SET
        extension = excluded.extension, state = 'open', call = excluded.call,
        reason = NULL, ended_at = NULL, duration_s = NULL, billed_s = NULL,
        charged = NULL, rated = NULL, overrun_s = NULL";

const UPSERT_SETTLED_CALL: &str = "
    INSERT INTO calls (call_id, extension, state, call, reason, ended_at, duration_s,
                       billed_s, charged, rated, overrun_s)
    VALUES (?1, ?2, 'settled', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
    ON CONFLICT (call_id) DO UPDATE SET
        extension = excluded.extension, state = 'settled', call = excluded.call,
        reason = excluded.reason, ended_at = excluded.ended_at,
        duration_s = excluded.duration_s, billed_s = excluded.billed_s,
        charged = excluded.charged, rated = excluded.rated, overrun_s = excluded.overrun_s";

// A settlement of a call the store holds as open: the call itself is already stored.
const SETTLE_STORED_CALL: &str = "
    UPDATE calls SET state = 'settled', reason = ?2, ended_at = ?3, duration_s = ?4,
        billed_s = ?5, charged = ?6, rated = ?7, overrun_s = ?8
    WHERE call_id = ?1";

const ADD_SPEND: &str = "
    INSERT INTO spend (subject_kind, subject_id, period, amount) VALUES (?1, ?2, ?3, ?4)
    ON CONFLICT (subject_kind, subject_id, period) DO UPDATE SET
        amount = amount + excluded.amount";

// updated_at is for operators reading the table; SQLite's clock is as good as ours.
const UPSERT_ENTITY: &str = "
    INSERT INTO entities (kind, id, origin, body, suspended, updated_at)
    VALUES (?1, ?2, ?3, ?4, ?5, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    ON CONFLICT (kind, id) DO UPDATE SET
        origin = excluded.origin, body = excluded.body, updated_at = excluded.updated_at";

const DELETE_ENTITY: &str = "DELETE FROM entities WHERE kind = ?1 AND id = ?2";

const SET_SUSPENDED: &str = "
    UPDATE entities SET suspended = ?3, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
    WHERE kind = ?1 AND id = ?2";

/// A [`Store`] in one SQLite database.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    /// Stops the checkpointer thread when the store is dropped.
    _checkpointer: Option<Checkpointer>,
}

/// WAL pages after which a commit checkpoints by itself: only a fallback, in case the
/// checkpointer thread cannot keep up or is gone (about 64 MiB of WAL).
const FALLBACK_AUTOCHECKPOINT_PAGES: i64 = 16_384;

/// How often the checkpointer copies the WAL into the database.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);

/// A thread with its own connection that checkpoints the WAL, so that the fsyncs of a
/// checkpoint (several milliseconds each) never happen on the commit path. Measured under
/// load: one checkpoint every ~380 commits stalled every waiting request 10 ms or more.
#[derive(Debug)]
struct Checkpointer {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: &Path) -> Option<Checkpointer> {
        let conn = Connection::open(path).ok()?;
        conn.busy_timeout(BUSY_TIMEOUT).ok()?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("tollgate-checkpoint".into())
            .spawn(move || loop {
                match stopped.recv_timeout(CHECKPOINT_INTERVAL) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        // PASSIVE: copies what it can without blocking the writer.
                        if let Err(error) =
                            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                        {
                            tracing::warn!(%error, "store: checkpoint failed");
                        }
                    }
                    _ => return,
                }
            })
            .ok()?;
        Some(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, refuses it if its schema is
    /// newer than this binary's, sets WAL and `durability`, and migrates it.
    pub fn open(path: impl AsRef<Path>, durability: Durability) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open(path.as_ref())?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Checked before the journal mode is set: that already writes to the file.
        check_not_too_new(&conn)?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(journal_mode = %mode, "store: the database refused WAL mode");
        }
        let synchronous = match durability {
            Durability::Normal => "NORMAL",
            Durability::Full => "FULL",
        };
        conn.pragma_update(None, "synchronous", synchronous)?;
        let mut store = SqliteStore::with_connection(conn)?;
        if mode.eq_ignore_ascii_case("wal") {
            store
                .conn
                .pragma_update(None, "wal_autocheckpoint", FALLBACK_AUTOCHECKPOINT_PAGES)?;
            store._checkpointer = Checkpointer::start(path.as_ref());
            if store._checkpointer.is_none() {
                tracing::warn!("store: no checkpointer thread: commits checkpoint by themselves");
                store.conn.pragma_update(None, "wal_autocheckpoint", 1000)?;
            }
        }
        Ok(store)
    }

    /// A fresh database in memory (tests, tools): durable for nobody.
    pub fn open_in_memory() -> Result<SqliteStore, StoreError> {
        SqliteStore::with_connection(Connection::open_in_memory()?)
    }

    fn with_connection(mut conn: Connection) -> Result<SqliteStore, StoreError> {
        // Enough for every statement of this module to stay prepared.
        conn.set_prepared_statement_cache_capacity(32);
        migrate(&mut conn)?;
        Ok(SqliteStore {
            conn,
            _checkpointer: None,
        })
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(user_version(&self.conn)?)
    }

    /// Copies the database, consistent as of one instant, to `path` (an online backup:
    /// writes may go on meanwhile).
    pub fn backup_to(&self, path: impl AsRef<Path>) -> Result<(), StoreError> {
        Ok(self.conn.backup("main", path, None)?)
    }
}

fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

fn check_not_too_new(conn: &Connection) -> Result<i64, StoreError> {
    let found = user_version(conn)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(found)
}

/// Brings the schema to [`SCHEMA_VERSION`]. The version is read again under the write
/// lock, so two processes opening the same new file cannot both migrate it.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found = check_not_too_new(&tx)?;
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        tx.execute_batch(sql)?;
        // user_version is part of the transaction: the bump commits with the change.
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
    }
    tx.commit()?;
    tracing::info!(from = found, to = SCHEMA_VERSION, "store: schema migrated");
    Ok(())
}

/// Spend added by a batch, summed per (subject kind, subject id, period) and written once
/// per key at the end of the batch: many settlements of a group commit share their
/// account's rows.
type SpendSums = std::collections::BTreeMap<(&'static str, String, String), i64>;

fn apply_change(
    conn: &Connection,
    change: &Change,
    spend: &mut SpendSums,
) -> Result<(), StoreError> {
    match change {
        Change::Ledger(LedgerEvent::Opened(call) | LedgerEvent::Updated(call)) => {
            let text = codec::encode_call(call)?;
            conn.prepare_cached(UPSERT_OPEN_CALL)?.execute(params![
                call.call_id,
                call.extension,
                text
            ])?;
        }
        Change::Ledger(LedgerEvent::Settled(settlement)) => {
            let call = &settlement.call;
            let updated = conn.prepare_cached(SETTLE_STORED_CALL)?.execute(params![
                call.call_id,
                codec::reason_str(settlement.reason),
                codec::format_time(settlement.ended_at),
                settlement.duration_s,
                settlement.billed_s,
                settlement.charged.micros(),
                settlement.rated.micros(),
                settlement.overrun_s,
            ])?;
            if updated == 0 {
                // Never seen open (its opening was lost, or came from elsewhere): keep the
                // whole call.
                let text = codec::encode_call(call)?;
                conn.prepare_cached(UPSERT_SETTLED_CALL)?.execute(params![
                    call.call_id,
                    call.extension,
                    text,
                    codec::reason_str(settlement.reason),
                    codec::format_time(settlement.ended_at),
                    settlement.duration_s,
                    settlement.billed_s,
                    settlement.charged.micros(),
                    settlement.rated.micros(),
                    settlement.overrun_s,
                ])?;
            }
            for row in settlement_spend_rows(settlement) {
                let key = (
                    codec::subject_kind_str(row.subject.kind),
                    row.subject.id,
                    row.period.to_string(),
                );
                let sum = spend.entry(key).or_insert(0i64);
                *sum = sum
                    .checked_add(row.amount.micros())
                    .ok_or_else(|| StoreError::Invalid {
                        what: "spend".into(),
                        detail: "a total overflows".into(),
                    })?;
            }
        }
        Change::UpsertEntity(entity) => {
            // The body is opaque, but it must be JSON: the API and the seeding both write
            // JSON, so anything else is a bug upstream and is refused with a clear error
            // (the CHECK in the schema is the last guard).
            if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&entity.body) {
                return Err(StoreError::Invalid {
                    what: format!("body of {} {:?}", entity.kind, entity.id),
                    detail: format!("not JSON: {e}"),
                });
            }
            conn.prepare_cached(UPSERT_ENTITY)?.execute(params![
                entity.kind.as_str(),
                entity.id,
                codec::origin_str(entity.origin),
                entity.body,
                entity.suspended,
            ])?;
        }
        Change::DeleteEntity { kind, id } => {
            conn.prepare_cached(DELETE_ENTITY)?
                .execute(params![kind.as_str(), id])?;
        }
        Change::RecordBan(ban) => {
            let events = serde_json::to_string(&ban.events).map_err(|e| StoreError::Invalid {
                what: "ban events".into(),
                detail: e.to_string(),
            })?;
            // A new ban of a target replaces the one in force (a manual ban over an
            // automatic one, say): the older row is closed, history kept.
            conn.prepare_cached(
                "UPDATE bans SET lifted_at = ?2, lift_reason = 'replaced' WHERE target = ?1 AND lifted_at IS NULL",
            )?
            .execute(params![ban.target.to_string(), codec::format_time(ban.banned_at)])?;
            conn.prepare_cached(
                "INSERT INTO bans (target, rule, reason, events, banned_at, expires_at, offense) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                ban.target.to_string(),
                ban.rule,
                ban.reason,
                events,
                codec::format_time(ban.banned_at),
                ban.expires_at.map(codec::format_time),
                ban.offense,
            ])?;
        }
        Change::LiftBan { target, at, reason } => {
            conn.prepare_cached(
                "UPDATE bans SET lifted_at = ?2, lift_reason = ?3 WHERE target = ?1 AND lifted_at IS NULL",
            )?
            .execute(params![target.to_string(), codec::format_time(*at), reason])?;
        }
        Change::SetCursor { key, value } => {
            conn.prepare_cached(
                "INSERT INTO cursors (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![key, value])?;
        }
        Change::UpsertAlert(alert) => {
            let body = serde_json::to_string(alert).map_err(|e| StoreError::Invalid {
                what: "alert".into(),
                detail: e.to_string(),
            })?;
            conn.prepare_cached(
                "INSERT INTO alerts (id, rule, subject, severity, open, opened_at, updated_at, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (id) DO UPDATE SET severity = excluded.severity, open = excluded.open,
                     updated_at = excluded.updated_at, body = excluded.body",
            )?
            .execute(params![
                i64::try_from(alert.id).unwrap_or(i64::MAX),
                alert.rule,
                subject_text(&alert.subject),
                alert.severity.as_str(),
                alert.open,
                codec::format_time(alert.opened_at),
                codec::format_time(alert.updated_at),
                body,
            ])?;
        }
        Change::Suspend(suspension) => {
            let subject = subject_text(&suspension.subject);
            let body = serde_json::to_string(suspension).map_err(|e| StoreError::Invalid {
                what: "suspension".into(),
                detail: e.to_string(),
            })?;
            conn.prepare_cached(
                "UPDATE suspensions SET lifted_at = ?2, lifted_by = 'replaced' WHERE subject = ?1 AND lifted_at IS NULL",
            )?
            .execute(params![subject, codec::format_time(suspension.since)])?;
            conn.prepare_cached("INSERT INTO suspensions (subject, body) VALUES (?1, ?2)")?
                .execute(params![subject, body])?;
        }
        Change::LiftSuspension { subject, at, by } => {
            conn.prepare_cached(
                "UPDATE suspensions SET lifted_at = ?2, lifted_by = ?3 WHERE subject = ?1 AND lifted_at IS NULL",
            )?
            .execute(params![subject_text(subject), codec::format_time(*at), by])?;
        }
        Change::SeenRegistration(seen) => {
            conn.prepare_cached(
                "INSERT INTO registrations (extension, at, ip, user_agent) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (extension) DO UPDATE SET at = excluded.at, ip = excluded.ip,
                     user_agent = excluded.user_agent WHERE excluded.at >= registrations.at",
            )?
            .execute(params![
                seen.extension,
                codec::format_time(seen.at),
                seen.ip.map(|ip| ip.to_string()),
                seen.user_agent,
            ])?;
        }
        Change::RecordShadow(d) => {
            conn.prepare_cached(
                "INSERT INTO shadow_decisions (call_id, extension, number, code, rule, message, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (call_id) DO UPDATE SET code = excluded.code, rule = excluded.rule,
                     message = excluded.message, at = excluded.at",
            )?
            .execute(params![
                d.call_id,
                d.extension,
                d.number,
                d.code,
                d.rule,
                d.message,
                codec::format_time(d.at)
            ])?;
        }
        Change::SettleShadow {
            call_id,
            duration_s,
            cost,
        } => {
            conn.prepare_cached(
                "UPDATE shadow_decisions SET duration_s = ?2, cost = ?3 WHERE call_id = ?1",
            )?
            .execute(params![
                call_id,
                i64::try_from(*duration_s).unwrap_or(i64::MAX),
                cost.micros()
            ])?;
        }
        Change::SaveBaseline {
            rule,
            subject,
            data,
        } => {
            conn.prepare_cached(
                "INSERT INTO baselines (rule, subject, data) VALUES (?1, ?2, ?3)
                 ON CONFLICT (rule, subject) DO UPDATE SET data = excluded.data",
            )?
            .execute(params![rule, subject_text(subject), data])?;
        }
        Change::SetSuspended {
            kind,
            id,
            suspended,
        } => {
            let changed = conn.prepare_cached(SET_SUSPENDED)?.execute(params![
                kind.as_str(),
                id,
                suspended
            ])?;
            if changed == 0 {
                // Not an error: failing the batch would fail every other submitter of a
                // group commit for a directory race that changes nothing.
                tracing::warn!(%kind, %id, suspended, "store: suspend of an entry that is not stored");
            }
        }
    }
    Ok(())
}

impl Store for SqliteStore {
    fn apply(&mut self, changes: &[Change]) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        // IMMEDIATE takes the write lock up front: no deadlock-prone upgrade from a read
        // lock if another process has the file open.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut spend = SpendSums::new();
        for change in changes {
            // An error drops `tx`, which rolls the whole batch back.
            apply_change(&tx, change, &mut spend)?;
        }
        {
            let mut add = tx.prepare_cached(ADD_SPEND)?;
            for ((kind, id, period), amount) in &spend {
                add.execute(params![kind, id, period, amount])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn load_spend(&self, since: NaiveDate) -> Result<Vec<SpendRow>, StoreError> {
        // INVARIANT: period texts compare as their dates do, chrono writing years 0000 to
        // 9999 with four digits (a phone call's date is never outside them). The
        // ranges ['d:<since>', 'd;') and ['m:<month>', 'm;') hold exactly the day and
        // month periods from `since` on (';' is the character after ':').
        let month = SpendPeriod::Month(MonthKey::of(since));
        let mut statement = self.conn.prepare_cached(
            "SELECT subject_kind, subject_id, period, amount FROM spend
             WHERE period = 'total'
                OR (period >= ?1 AND period < 'd;')
                OR (period >= ?2 AND period < 'm;')",
        )?;
        let rows = statement.query_map(
            params![SpendPeriod::Day(since).to_string(), month.to_string()],
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, i64>(3)?,
                ))
            },
        )?;
        let mut spend = Vec::new();
        for row in rows {
            let (kind, id, period, amount) = row?;
            let corrupt = |detail: String| StoreError::Corrupt {
                what: format!("spend row ({kind}, {id:?}, {period:?})"),
                detail,
            };
            let subject = Subject {
                kind: codec::parse_subject_kind(&kind).map_err(corrupt)?,
                id: id.clone(),
            };
            let period = period.parse::<SpendPeriod>().map_err(corrupt)?;
            spend.push(SpendRow {
                subject,
                period,
                amount: Money::from_micros(amount),
            });
        }
        Ok(spend)
    }

    fn load_open_calls(&self) -> Result<Vec<ActiveCall>, StoreError> {
        let mut statement = self
            .conn
            .prepare_cached("SELECT call_id, call FROM calls WHERE state = 'open'")?;
        let rows = statement.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?;
        let mut calls = Vec::new();
        for row in rows {
            let (call_id, text) = row?;
            calls.push(codec::decode_call(&call_id, &text)?);
        }
        Ok(calls)
    }

    fn load_entities(&self) -> Result<Vec<StoredEntity>, StoreError> {
        self.query_entities(
            "SELECT kind, id, origin, body, suspended FROM entities ORDER BY kind, id",
            &[],
        )
    }

    fn load_bans(&self, since: DateTime<Utc>) -> Result<Vec<StoredBan>, StoreError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT target, rule, reason, events, banned_at, expires_at, offense, lifted_at, lift_reason
             FROM bans WHERE banned_at >= ?1 OR lifted_at IS NULL ORDER BY banned_at, id",
        )?;
        let rows = statement.query_map(params![codec::format_time(since)], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, Option<String>>(5)?,
                row.get::<_, i64>(6)?,
                row.get::<_, Option<String>>(7)?,
                row.get::<_, Option<String>>(8)?,
            ))
        })?;
        let mut bans = Vec::new();
        for row in rows {
            let (
                target,
                rule,
                reason,
                events,
                banned_at,
                expires_at,
                offense,
                lifted_at,
                lift_reason,
            ) = row?;
            let corrupt = |detail: String| StoreError::Corrupt {
                what: format!("ban of {target:?}"),
                detail,
            };
            let ban = Ban {
                target: target
                    .parse()
                    .map_err(|e: ipnet::AddrParseError| corrupt(e.to_string()))?,
                rule,
                reason,
                events: serde_json::from_str(&events).map_err(|e| corrupt(e.to_string()))?,
                banned_at: codec::parse_time(&banned_at).map_err(corrupt)?,
                expires_at: expires_at
                    .as_deref()
                    .map(codec::parse_time)
                    .transpose()
                    .map_err(corrupt)?,
                offense: u32::try_from(offense).unwrap_or(u32::MAX),
            };
            let lifted_at = lifted_at
                .as_deref()
                .map(codec::parse_time)
                .transpose()
                .map_err(corrupt)?;
            bans.push(StoredBan {
                ban,
                lifted_at,
                lift_reason,
            });
        }
        Ok(bans)
    }

    fn alerts(&self, query: &AlertQuery) -> Result<Vec<Alert>, StoreError> {
        let before = query
            .before_id
            .map(|id| i64::try_from(id).unwrap_or(i64::MAX))
            .unwrap_or(i64::MAX);
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let sql = if query.open_only {
            "SELECT id, body FROM alerts WHERE open = 1 AND id < ?1 ORDER BY id DESC LIMIT ?2"
        } else {
            "SELECT id, body FROM alerts WHERE id < ?1 ORDER BY id DESC LIMIT ?2"
        };
        let mut statement = self.conn.prepare_cached(sql)?;
        let rows = statement.query_map(params![before, limit], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, body) = row?;
            out.push(decode_json("alert", id, &body)?);
        }
        Ok(out)
    }

    fn alert(&self, id: u64) -> Result<Option<Alert>, StoreError> {
        let id = i64::try_from(id).unwrap_or(i64::MAX);
        let body = self
            .conn
            .prepare_cached("SELECT body FROM alerts WHERE id = ?1")?
            .query_row(params![id], |row| row.get::<_, String>(0))
            .optional()?;
        body.map(|b| decode_json("alert", id, &b)).transpose()
    }

    fn next_alert_id(&self) -> Result<u64, StoreError> {
        let max: Option<i64> = self
            .conn
            .prepare_cached("SELECT MAX(id) FROM alerts")?
            .query_row([], |row| row.get(0))?;
        Ok(max.map_or(1, |m| m.max(0) as u64 + 1))
    }

    fn active_suspensions(&self) -> Result<Vec<Suspension>, StoreError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT id, body FROM suspensions WHERE lifted_at IS NULL ORDER BY id",
        )?;
        let rows = statement.query_map([], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, body) = row?;
            out.push(decode_json("suspension", id, &body)?);
        }
        Ok(out)
    }

    fn registrations(&self) -> Result<Vec<RegistrationSeen>, StoreError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT extension, at, ip, user_agent FROM registrations ORDER BY extension",
        )?;
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Option<String>>(2)?,
                row.get::<_, Option<String>>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (extension, at, ip, user_agent) = row?;
            let corrupt = |detail: String| StoreError::Corrupt {
                what: format!("registration of {extension}"),
                detail,
            };
            let at = codec::parse_time(&at).map_err(corrupt)?;
            let ip = ip
                .map(|ip| {
                    ip.parse()
                        .map_err(|_| corrupt(format!("bad address {ip:?}")))
                })
                .transpose()?;
            out.push(RegistrationSeen {
                extension,
                at,
                ip,
                user_agent,
            });
        }
        Ok(out)
    }

    fn shadow_decisions(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<crate::ShadowDecision>, StoreError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT call_id, extension, number, code, rule, message, at, duration_s, cost
             FROM shadow_decisions WHERE at >= ?1 ORDER BY at, call_id",
        )?;
        let rows = statement.query_map(params![codec::format_time(since)], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, Option<i64>>(7)?,
                r.get::<_, Option<i64>>(8)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (call_id, extension, number, code, rule, message, at, duration_s, cost) = row?;
            let at = codec::parse_time(&at).map_err(|detail| StoreError::Corrupt {
                what: format!("shadow decision {call_id}"),
                detail,
            })?;
            out.push(crate::ShadowDecision {
                call_id,
                extension,
                number,
                code,
                rule,
                message,
                at,
                duration_s: duration_s.map(|d| d.max(0) as u64),
                cost: cost.map(Money::from_micros),
            });
        }
        Ok(out)
    }

    fn load_baselines(&self) -> Result<Vec<(String, MonitorSubject, Vec<u8>)>, StoreError> {
        let mut statement = self
            .conn
            .prepare_cached("SELECT rule, subject, data FROM baselines ORDER BY rule, subject")?;
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Vec<u8>>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (rule, subject, data) = row?;
            let parsed = MonitorSubject::parse(&subject).ok_or_else(|| StoreError::Corrupt {
                what: format!("baseline {rule}"),
                detail: format!("bad subject {subject:?}"),
            })?;
            out.push((rule, parsed, data));
        }
        Ok(out)
    }

    fn last_calls(&self) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT extension, MAX(ended_at) FROM calls WHERE state = 'settled' GROUP BY extension",
        )?;
        let rows = statement.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (extension, at) = row?;
            let at = codec::parse_time(&at).map_err(|detail| StoreError::Corrupt {
                what: format!("call end of {extension}"),
                detail,
            })?;
            out.push((extension, at));
        }
        Ok(out)
    }

    fn cursor(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT value FROM cursors WHERE key = ?1")?
            .query_row(params![key], |row| row.get::<_, String>(0))
            .optional()?)
    }

    fn entity(&self, kind: EntityKind, id: &str) -> Result<Option<StoredEntity>, StoreError> {
        let found = self.query_entities(
            "SELECT kind, id, origin, body, suspended FROM entities WHERE kind = ?1 AND id = ?2",
            &[&kind.as_str(), &id],
        )?;
        Ok(found.into_iter().next())
    }

    fn settled_calls(&self, extension: &str, limit: usize) -> Result<Vec<SettledCall>, StoreError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT call_id, call, reason, ended_at, duration_s, billed_s, charged, rated,
                    overrun_s
             FROM calls WHERE extension = ?1 AND state = 'settled'
             ORDER BY ended_at DESC, rowid DESC LIMIT ?2",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = statement.query_map(params![extension, limit], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, u64>(4)?,
                row.get::<_, u64>(5)?,
                row.get::<_, i64>(6)?,
                row.get::<_, i64>(7)?,
                row.get::<_, u64>(8)?,
            ))
        })?;
        let mut settled = Vec::new();
        for row in rows {
            let (call_id, text, reason, ended_at, duration_s, billed_s, charged, rated, overrun_s) =
                row?;
            let call = codec::decode_call(&call_id, &text)?;
            let ended_at = codec::parse_time(&ended_at).map_err(|detail| StoreError::Corrupt {
                what: format!("end time of call {call_id:?}"),
                detail,
            })?;
            settled.push(SettledCall {
                call_id: call.call_id,
                extension: call.extension,
                destination: call.destination,
                class: call.class.as_str().to_string(),
                duration_s,
                billed_s,
                charged: Money::from_micros(charged),
                rated: Money::from_micros(rated),
                overrun_s,
                reason,
                authorized_at: call.authorized_at,
                answered_at: call.answered_at,
                ended_at,
            });
        }
        Ok(settled)
    }

    fn spend(&self, subject: &Subject, period: SpendPeriod) -> Result<Money, StoreError> {
        let amount: Option<i64> = self
            .conn
            .prepare_cached(
                "SELECT amount FROM spend
                 WHERE subject_kind = ?1 AND subject_id = ?2 AND period = ?3",
            )?
            .query_row(
                params![
                    codec::subject_kind_str(subject.kind),
                    subject.id,
                    period.to_string()
                ],
                |row| row.get(0),
            )
            .optional()?;
        Ok(amount.map_or(Money::ZERO, Money::from_micros))
    }
}

impl SqliteStore {
    fn query_entities(
        &self,
        sql: &str,
        params: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<StoredEntity>, StoreError> {
        let mut statement = self.conn.prepare_cached(sql)?;
        let rows = statement.query_map(params, |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, bool>(4)?,
            ))
        })?;
        let mut entities = Vec::new();
        for row in rows {
            let (kind, id, origin, body, suspended) = row?;
            let corrupt = |detail: String| StoreError::Corrupt {
                what: format!("entity ({kind}, {id:?})"),
                detail,
            };
            entities.push(StoredEntity {
                kind: kind.parse::<EntityKind>().map_err(corrupt)?,
                origin: codec::parse_origin(&origin).map_err(corrupt)?,
                id,
                body,
                suspended,
            });
        }
        Ok(entities)
    }
}

/// What [`verify_copy`] found in a database file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CopyReport {
    pub schema_version: i64,
    pub open_calls: u64,
    pub settled_calls: u64,
    pub spend_rows: u64,
    /// Extensions whose lifetime spend equals the sum of their settled calls' charges.
    pub balanced_extensions: u64,
}

/// Copies the live database at `src` to `dst` with SQLite's online backup API (consistent
/// as of one instant, while the service goes on writing), then checks the copy.
pub fn backup_live(src: &Path, dst: &Path) -> Result<CopyReport, StoreError> {
    if dst.exists() {
        return Err(StoreError::Invalid {
            what: "backup".into(),
            detail: format!("{} exists: choose a new file", dst.display()),
        });
    }
    let conn = Connection::open_with_flags(src, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    check_not_too_new(&conn)?;
    // 256 pages a step, no pause: the writer is blocked only for one step at a time.
    conn.backup("main", dst, None)?;
    verify_copy(dst)
}

/// Checks a database file without changing it: SQLite's integrity check, a schema this
/// binary can read, and the ledger's own balance (each extension's lifetime spend equals
/// the charges of its settled calls).
pub fn verify_copy(path: &Path) -> Result<CopyReport, StoreError> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let corrupt = |detail: String| StoreError::Corrupt {
        what: format!("database copy {}", path.display()),
        detail,
    };
    let integrity: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if integrity != "ok" {
        return Err(corrupt(format!("integrity check: {integrity}")));
    }
    let schema_version = user_version(&conn)?;
    if schema_version > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            found: schema_version,
            supported: SCHEMA_VERSION,
        });
    }
    if schema_version < 1 {
        return Err(corrupt("not a tollgate database (no schema)".into()));
    }
    let count = |sql: &str| -> Result<u64, StoreError> {
        Ok(conn.query_row(sql, [], |r| r.get::<_, i64>(0))?.max(0) as u64)
    };
    let open_calls = count("SELECT COUNT(*) FROM calls WHERE state = 'open'")?;
    let settled_calls = count("SELECT COUNT(*) FROM calls WHERE state = 'settled'")?;
    let spend_rows = count("SELECT COUNT(*) FROM spend")?;
    let mut statement = conn.prepare(
        "SELECT c.extension, SUM(c.charged), COALESCE(s.amount, 0)
         FROM calls c LEFT JOIN spend s
           ON s.subject_kind = 'extension' AND s.subject_id = c.extension AND s.period = 'total'
         WHERE c.state = 'settled' GROUP BY c.extension",
    )?;
    let rows = statement.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    let mut balanced_extensions = 0;
    for row in rows {
        let (extension, charged, spent) = row?;
        if charged != spent {
            return Err(corrupt(format!(
                "extension {extension}: settled calls charged {charged} micros but its lifetime spend is {spent}"
            )));
        }
        balanced_extensions += 1;
    }
    Ok(CopyReport {
        schema_version,
        open_calls,
        settled_calls,
        spend_rows,
        balanced_extensions,
    })
}
