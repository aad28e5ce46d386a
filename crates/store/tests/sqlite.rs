//! `SqliteStore` against the shared suite (in memory and in a file), plus what only a file
//! store has (reopen, migrations, refusal of a newer schema, backup), the ledger rebuilt
//! from the store, and the group-commit `Journal`.

// Helpers outside `#[test]` fns are not covered by clippy.toml's allow-*-in-tests.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests: a failed expectation is a failed test"
)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;

use chrono::NaiveDate;
use tempfile::TempDir;
use tollgate_core::ledger::{
    ActiveCall, LedgerEvent, SettleReason, SpendPeriod, SpendRow, Subject, SubjectKind,
};
use tollgate_core::{Ledger, Money};
use tollgate_store::suite::{call, day, entity, opened, settle, settled, updated};
use tollgate_store::{
    Change, Durability, EntityKind, Journal, SettledCall, SqliteStore, Store, StoreError,
    StoredEntity,
};

/// A store for tests: a `SqliteStore`, the temporary directory its file lives in (kept
/// alive as long as the store), and the size of every batch applied.
struct TestStore {
    inner: SqliteStore,
    _dir: Option<TempDir>,
    batches: Arc<Mutex<Vec<usize>>>,
}

impl TestStore {
    fn in_file(durability: Durability) -> TestStore {
        let dir = tempfile::tempdir().unwrap();
        TestStore {
            inner: SqliteStore::open(dir.path().join("tollgate.db"), durability).unwrap(),
            _dir: Some(dir),
            batches: Arc::default(),
        }
    }

    fn in_memory() -> TestStore {
        TestStore {
            inner: SqliteStore::open_in_memory().unwrap(),
            _dir: None,
            batches: Arc::default(),
        }
    }
}

impl Store for TestStore {
    fn apply(&mut self, changes: &[Change]) -> Result<(), StoreError> {
        self.batches.lock().unwrap().push(changes.len());
        self.inner.apply(changes)
    }
    fn load_spend(&self, since: NaiveDate) -> Result<Vec<SpendRow>, StoreError> {
        self.inner.load_spend(since)
    }
    fn load_open_calls(&self) -> Result<Vec<ActiveCall>, StoreError> {
        self.inner.load_open_calls()
    }
    fn load_entities(&self) -> Result<Vec<StoredEntity>, StoreError> {
        self.inner.load_entities()
    }
    fn entity(&self, kind: EntityKind, id: &str) -> Result<Option<StoredEntity>, StoreError> {
        self.inner.entity(kind, id)
    }
    fn load_bans(
        &self,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<tollgate_store::StoredBan>, StoreError> {
        self.inner.load_bans(since)
    }
    fn cursor(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.inner.cursor(key)
    }
    fn settled_calls(&self, extension: &str, limit: usize) -> Result<Vec<SettledCall>, StoreError> {
        self.inner.settled_calls(extension, limit)
    }
    fn spend(&self, subject: &Subject, period: SpendPeriod) -> Result<Money, StoreError> {
        self.inner.spend(subject, period)
    }
    fn alerts(
        &self,
        query: &tollgate_store::AlertQuery,
    ) -> Result<Vec<tollgate_core::monitor::Alert>, StoreError> {
        self.inner.alerts(query)
    }
    fn alert(&self, id: u64) -> Result<Option<tollgate_core::monitor::Alert>, StoreError> {
        self.inner.alert(id)
    }
    fn next_alert_id(&self) -> Result<u64, StoreError> {
        self.inner.next_alert_id()
    }
    fn active_suspensions(&self) -> Result<Vec<tollgate_core::monitor::Suspension>, StoreError> {
        self.inner.active_suspensions()
    }
    fn registrations(&self) -> Result<Vec<tollgate_store::RegistrationSeen>, StoreError> {
        self.inner.registrations()
    }
    fn shadow_decisions(
        &self,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<tollgate_store::ShadowDecision>, StoreError> {
        self.inner.shadow_decisions(since)
    }
    fn load_baselines(
        &self,
    ) -> Result<Vec<(String, tollgate_core::monitor::MonitorSubject, Vec<u8>)>, StoreError> {
        self.inner.load_baselines()
    }
    fn last_calls(&self) -> Result<Vec<(String, chrono::DateTime<chrono::Utc>)>, StoreError> {
        self.inner.last_calls()
    }
}

mod in_memory {
    tollgate_store::store_test_suite!(tollgate_store::SqliteStore::open_in_memory().unwrap());
}

mod in_file {
    tollgate_store::store_test_suite!(super::TestStore::in_file(
        tollgate_store::Durability::Normal
    ));
}

mod in_file_full_durability {
    tollgate_store::store_test_suite!(super::TestStore::in_file(tollgate_store::Durability::Full));
}

fn db_path(dir: &TempDir) -> PathBuf {
    dir.path().join("tollgate.db")
}

fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}

type Snapshot = (
    Vec<ActiveCall>,
    Vec<SpendRow>,
    Vec<StoredEntity>,
    Vec<SettledCall>,
);

fn snapshot(store: &dyn Store) -> Snapshot {
    let mut open = store.load_open_calls().unwrap();
    open.sort_by(|a, b| a.call_id.cmp(&b.call_id));
    let mut spend = store.load_spend(day(2000, 1, 1)).unwrap();
    spend.sort_by_key(|row| (row.subject.clone(), row.period.to_string()));
    (
        open,
        spend,
        store.load_entities().unwrap(),
        store.settled_calls("1001", 100).unwrap(),
    )
}

fn some_history() -> Vec<Change> {
    let on = day(2026, 11, 26);
    let first = call("c1", "1001", on);
    let mut second = call("c2", "1001", on);
    second.granted_s = 900;
    vec![
        opened(&first),
        opened(&second),
        updated(&second),
        settled(&settle(first, SettleReason::Ended, 61)),
        Change::UpsertEntity(entity(EntityKind::Account, "acme", r#"{"name":"Acme"}"#)),
        Change::SetSuspended {
            kind: EntityKind::Account,
            id: "acme".into(),
            suspended: true,
        },
    ]
}

#[test]
fn reopening_a_file_store_gives_back_the_same_data() {
    for durability in [Durability::Normal, Durability::Full] {
        let dir = tempfile::tempdir().unwrap();
        let before = {
            let mut store = SqliteStore::open(db_path(&dir), durability).unwrap();
            store.apply(&some_history()).unwrap();
            snapshot(&store)
        };
        assert_eq!(before.0.len(), 1);
        assert_eq!(before.3.len(), 1);
        let store = SqliteStore::open(db_path(&dir), durability).unwrap();
        assert_eq!(snapshot(&store), before, "{durability:?}");
        assert_eq!(
            store.schema_version().unwrap(),
            tollgate_store::sqlite::SCHEMA_VERSION
        );
    }
}

#[test]
fn a_file_store_is_in_wal_mode_with_money_as_integers() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(db_path(&dir), Durability::Normal).unwrap();
    store.apply(&some_history()).unwrap();
    let conn = raw(&db_path(&dir));
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let types: Vec<String> = conn
        .prepare("SELECT DISTINCT typeof(amount) FROM spend UNION SELECT DISTINCT typeof(charged) FROM calls WHERE state = 'settled'")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(types, ["integer"]);
    let period: String = conn
        .query_row(
            "SELECT period FROM spend WHERE period LIKE 'd:%' LIMIT 1",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(period, "d:2026-11-26");
}

#[test]
fn a_newer_schema_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = SqliteStore::open(db_path(&dir), Durability::Normal).unwrap();
        store.apply(&some_history()).unwrap();
    }
    {
        let conn = raw(&db_path(&dir));
        conn.pragma_update(None, "user_version", 999).unwrap();
        // Back to a rollback journal, so that a refused open that set WAL would show.
        conn.pragma_update(None, "journal_mode", "DELETE").unwrap();
    }
    let bytes = std::fs::read(db_path(&dir)).unwrap();
    for durability in [Durability::Normal, Durability::Full] {
        match SqliteStore::open(db_path(&dir), durability) {
            Err(StoreError::TooNew { found, supported }) => {
                assert_eq!(
                    (found, supported),
                    (999, tollgate_store::sqlite::SCHEMA_VERSION)
                );
            }
            other => panic!("expected TooNew, got {other:?}"),
        }
    }
    assert_eq!(
        std::fs::read(db_path(&dir)).unwrap(),
        bytes,
        "the file was modified"
    );
    let message = SqliteStore::open(db_path(&dir), Durability::Normal)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("999") && message.contains("newer"),
        "{message}"
    );
}

#[test]
fn an_empty_file_is_migrated_to_the_current_schema() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(db_path(&dir), b"").unwrap();
    let store = SqliteStore::open(db_path(&dir), Durability::Normal).unwrap();
    assert_eq!(
        store.schema_version().unwrap(),
        tollgate_store::sqlite::SCHEMA_VERSION
    );
    let tables: Vec<String> = raw(&db_path(&dir))
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        tables,
        [
            "alerts",
            "bans",
            "baselines",
            "calls",
            "cursors",
            "entities",
            "registrations",
            "shadow_decisions",
            "spend",
            "suspensions"
        ]
    );
}

#[test]
fn a_database_of_the_first_schema_is_upgraded_in_place_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    {
        // What the first released tollgate wrote: migration 1 only.
        let conn = raw(&db_path(&dir));
        conn.execute_batch(tollgate_store::sqlite::MIGRATIONS[0])
            .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO spend (subject_kind, subject_id, period, amount) VALUES ('extension', '1001', 'total', 1230000)",
            [],
        )
        .unwrap();
    }
    let store = SqliteStore::open(db_path(&dir), Durability::Normal).unwrap();
    assert_eq!(
        store.schema_version().unwrap(),
        tollgate_store::sqlite::SCHEMA_VERSION
    );
    let total = store
        .spend(
            &tollgate_core::ledger::Subject::extension("1001"),
            tollgate_core::ledger::SpendPeriod::Total,
        )
        .unwrap();
    assert_eq!(total.micros(), 1_230_000);
    assert!(store.load_bans(chrono::Utc::now()).unwrap().is_empty());
}

#[test]
fn an_undecodable_row_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(db_path(&dir), Durability::Normal).unwrap();
    store.apply(&some_history()).unwrap();
    raw(&db_path(&dir))
        .execute(
            "UPDATE calls SET call = '{\"call_id\": 3}' WHERE call_id = 'c2'",
            [],
        )
        .unwrap();
    match store.load_open_calls() {
        Err(StoreError::Corrupt { what, .. }) => assert_eq!(what, "call \"c2\""),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    raw(&db_path(&dir))
        .execute("UPDATE spend SET period = 'd:2026-13-45' WHERE period = 'total' AND subject_id = 'acme'", [])
        .unwrap();
    assert!(matches!(
        store.load_spend(day(2026, 1, 1)),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn a_money_overflow_fails_the_batch_instead_of_storing_a_float() {
    let mut store = SqliteStore::open_in_memory().unwrap();
    let on = day(2026, 11, 26);
    let mut huge = call("huge-1", "1001", on);
    huge.reserved = Money::from_micros(i64::MAX);
    store
        .apply(&[settled(&settle(huge.clone(), SettleReason::Expired, 0))])
        .unwrap();
    let before = snapshot(&store);
    huge.call_id = "huge-2".into();
    let error = store
        .apply(&[settled(&settle(huge, SettleReason::Expired, 0))])
        .unwrap_err();
    assert!(matches!(error, StoreError::Sqlite(_)), "{error}");
    assert_eq!(snapshot(&store), before);
    assert_eq!(
        store
            .spend(&Subject::extension("1001"), SpendPeriod::Total)
            .unwrap(),
        Money::from_micros(i64::MAX)
    );
}

#[test]
fn backup_copies_a_consistent_database() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(db_path(&dir), Durability::Normal).unwrap();
    store.apply(&some_history()).unwrap();
    let copy = dir.path().join("copy.db");
    store.backup_to(&copy).unwrap();
    let restored = SqliteStore::open(&copy, Durability::Normal).unwrap();
    assert_eq!(snapshot(&restored), snapshot(&store));
}

const KILL9_DB: &str = "TOLLGATE_STORE_KILL9_DB";

/// Not a test of its own: the child process of `kill_9_loses_no_acknowledged_change`.
/// Writes through a journal forever, printing each id once its commit is acknowledged.
#[test]
#[ignore = "the child process of kill_9_loses_no_acknowledged_change"]
fn kill_9_child_writer() {
    use std::io::Write;
    let Ok(path) = std::env::var(KILL9_DB) else {
        return;
    };
    let journal = Journal::start(Box::new(
        SqliteStore::open(path, Durability::Normal).unwrap(),
    ));
    let on = day(2026, 11, 26);
    let mut stdout = std::io::stdout();
    for i in 0.. {
        let (tell, told) = mpsc::channel();
        journal.submit(
            vec![opened(&call(&format!("k{i}"), "1001", on))],
            Box::new(move |result| tell.send(result).unwrap()),
        );
        told.recv().unwrap().unwrap();
        writeln!(stdout, "acknowledged {i}").unwrap();
        stdout.flush().unwrap();
    }
}

/// What the service promises: a change acknowledged by the journal survives `kill -9`.
#[test]
fn kill_9_loses_no_acknowledged_change() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "kill_9_child_writer", "--ignored", "--nocapture"])
        .env(KILL9_DB, db_path(&dir))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acknowledged = None;
    for line in std::io::BufReader::new(stdout).lines() {
        if let Some(i) = line.unwrap().strip_prefix("acknowledged ") {
            let i: usize = i.parse().unwrap();
            acknowledged = Some(i);
            if i >= 300 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL: no destructor, no checkpoint, no close
    child.wait().unwrap();
    let acknowledged = acknowledged.expect("the child acknowledged nothing");
    let store = SqliteStore::open(db_path(&dir), Durability::Normal).unwrap();
    let ids: std::collections::HashSet<String> = store
        .load_open_calls()
        .unwrap()
        .into_iter()
        .map(|c| c.call_id)
        .collect();
    for i in 0..=acknowledged {
        assert!(ids.contains(&format!("k{i}")), "acknowledged k{i} was lost");
    }
}

/// The point of the store: a ledger rebuilt from it after a crash holds the same spend
/// and calls as the ledger that wrote it.
#[test]
fn the_ledger_restored_from_the_store_equals_the_one_that_wrote_it() {
    let tz = |_: &Subject| chrono_tz::Tz::UTC;
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(db_path(&dir), Durability::Normal).unwrap();
    let mut ledger = Ledger::new();
    let yesterday = day(2026, 11, 25);
    let today = day(2026, 11, 26);
    let now = today.and_hms_opt(18, 0, 0).unwrap().and_utc();

    let mut events: Vec<LedgerEvent> = Vec::new();
    for (id, ext, on) in [
        ("y1", "1001", yesterday),
        ("t1", "1001", today),
        ("t2", "1002", today),
        ("t3", "1001", today),
        ("t4", "1002", today),
    ] {
        let mut open = call(id, ext, on);
        open.authorized_at = on.and_hms_opt(12, 0, 0).unwrap().and_utc();
        events.push(ledger.open(open.clone(), open.authorized_at, tz).unwrap());
    }
    events.push(
        ledger
            .update(
                "t3",
                |c| {
                    c.answered_at = Some(now);
                    c.granted_s += 60;
                },
                Money::from_cents(60),
            )
            .unwrap(),
    );
    events.push(ledger.settle("y1", SettleReason::Ended, now, 600).unwrap());
    events.push(ledger.settle("t1", SettleReason::Ended, now, 61).unwrap());
    events.push(ledger.settle("t2", SettleReason::Expired, now, 0).unwrap());
    let changes: Vec<Change> = events.into_iter().map(Change::from).collect();
    store.apply(&changes).unwrap();
    drop(store);

    let store = SqliteStore::open(db_path(&dir), Durability::Normal).unwrap();
    let restored = Ledger::restore(
        store.load_spend(today).unwrap(),
        store.load_open_calls().unwrap(),
        now,
        tz,
    );
    for (kind, id) in [
        (SubjectKind::Extension, "1001"),
        (SubjectKind::Extension, "1002"),
        (SubjectKind::Account, "acme"),
        (SubjectKind::Account, "resell"),
    ] {
        assert_eq!(
            restored.level(kind, id),
            ledger.level(kind, id),
            "{kind:?} {id}"
        );
    }
    let mut open: Vec<_> = restored.calls().cloned().collect();
    open.sort_by(|a, b| a.call_id.cmp(&b.call_id));
    let mut expected: Vec<_> = ledger.calls().cloned().collect();
    expected.sort_by(|a, b| a.call_id.cmp(&b.call_id));
    assert_eq!(open, expected);
    assert_eq!(restored.next_expiry(), ledger.next_expiry());
    // Yesterday's charge counts in the total only.
    let acme = restored.level(SubjectKind::Account, "acme");
    assert_eq!(acme.spent_today, Money::from_cents(130 + 500));
    assert_eq!(acme.spent_total, Money::from_cents(130 + 500 + 500));
}

// ---- Journal ----

/// Holds the journal's writer inside a read until `release` is sent, so that the
/// submissions made meanwhile queue up and go in the next batch together.
fn hold_writer(journal: &Arc<Journal>) -> (mpsc::Sender<()>, thread::JoinHandle<()>) {
    let (release, gate) = mpsc::channel::<()>();
    let (started, is_started) = mpsc::channel::<()>();
    let journal = Arc::clone(journal);
    let holder = thread::spawn(move || {
        journal
            .with_store(move |_| {
                started.send(()).unwrap();
                gate.recv().unwrap();
            })
            .unwrap();
    });
    is_started.recv().unwrap();
    (release, holder)
}

type Outcomes = Arc<Mutex<Vec<(String, Result<(), String>)>>>;

fn record(outcomes: &Outcomes, name: &str) -> Box<dyn FnOnce(Result<(), StoreError>) + Send> {
    let outcomes = Arc::clone(outcomes);
    let name = name.to_string();
    Box::new(move |result| {
        outcomes
            .lock()
            .unwrap()
            .push((name, result.map_err(|e| e.to_string())));
    })
}

#[test]
fn journal_commits_concurrent_submissions_in_order_and_durably() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 150;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(db_path(&dir), Durability::Normal).unwrap();
    let journal = Arc::new(Journal::start(Box::new(store)));
    let log: Arc<Mutex<Vec<(usize, usize)>>> = Arc::default();
    let failures = Arc::new(AtomicUsize::new(0));
    let on = day(2026, 11, 26);

    let submitters: Vec<_> = (0..THREADS)
        .map(|t| {
            let journal = Arc::clone(&journal);
            let log = Arc::clone(&log);
            let failures = Arc::clone(&failures);
            thread::spawn(move || {
                for i in 0..PER_THREAD {
                    let open = call(&format!("t{t}-{i:03}"), &format!("{}", 3000 + t), on);
                    let mut changes = vec![opened(&open)];
                    if i % 3 == 0 {
                        changes.push(settled(&settle(open, SettleReason::Ended, 60)));
                    }
                    let log = Arc::clone(&log);
                    let failures = Arc::clone(&failures);
                    journal.submit(
                        changes,
                        Box::new(move |result| {
                            if result.is_err() {
                                failures.fetch_add(1, Ordering::SeqCst);
                            }
                            log.lock().unwrap().push((t, i));
                        }),
                    );
                }
            })
        })
        .collect();
    for submitter in submitters {
        submitter.join().unwrap();
    }
    journal.flush().unwrap();

    let log = log.lock().unwrap().clone();
    assert_eq!(
        log.len(),
        THREADS * PER_THREAD,
        "every callback called once"
    );
    assert_eq!(failures.load(Ordering::SeqCst), 0);
    for t in 0..THREADS {
        let mine: Vec<usize> = log
            .iter()
            .filter(|(who, _)| *who == t)
            .map(|(_, i)| *i)
            .collect();
        assert_eq!(
            mine,
            (0..PER_THREAD).collect::<Vec<_>>(),
            "thread {t} in order"
        );
    }
    let (open, spend) = journal
        .with_store(|store| {
            (
                store.load_open_calls().unwrap().len(),
                store
                    .spend(&Subject::account("acme"), SpendPeriod::Total)
                    .unwrap(),
            )
        })
        .unwrap();
    let settled_per_thread = PER_THREAD.div_ceil(3);
    assert_eq!(open, THREADS * (PER_THREAD - settled_per_thread));
    assert_eq!(
        spend,
        Money::from_cents(70 * (THREADS * settled_per_thread) as i64)
    );

    // Durable: a second connection sees it all once the journal has flushed.
    let other = SqliteStore::open(db_path(&dir), Durability::Normal).unwrap();
    assert_eq!(other.load_open_calls().unwrap().len(), open);
    drop(journal);
}

#[test]
fn journal_groups_what_is_queued_into_one_transaction() {
    let store = TestStore::in_memory();
    let batches = Arc::clone(&store.batches);
    let journal = Arc::new(Journal::start(Box::new(store)));
    let outcomes: Outcomes = Arc::default();
    let (release, holder) = hold_writer(&journal);
    let on = day(2026, 11, 26);
    for i in 0..100 {
        journal.submit(
            vec![opened(&call(&format!("c{i}"), "1001", on))],
            record(&outcomes, &format!("c{i}")),
        );
    }
    release.send(()).unwrap();
    holder.join().unwrap();
    journal.flush().unwrap();
    assert_eq!(*batches.lock().unwrap(), [100]);
    let outcomes = outcomes.lock().unwrap();
    let names: Vec<&str> = outcomes.iter().map(|(name, _)| name.as_str()).collect();
    let expected: Vec<String> = (0..100).map(|i| format!("c{i}")).collect();
    assert_eq!(names, expected);
    assert!(outcomes.iter().all(|(_, result)| result.is_ok()));
}

#[test]
fn journal_batches_stay_under_the_cap() {
    let store = TestStore::in_memory();
    let batches = Arc::clone(&store.batches);
    let journal = Arc::new(Journal::start(Box::new(store)));
    let outcomes: Outcomes = Arc::default();
    let (release, holder) = hold_writer(&journal);
    let on = day(2026, 11, 26);
    let mut n = 0;
    let mut submission = |size: usize| {
        let changes = (0..size)
            .map(|_| {
                n += 1;
                opened(&call(&format!("c{n}"), "1001", on))
            })
            .collect();
        journal.submit(changes, record(&outcomes, "x"));
    };
    submission(3000);
    submission(3000);
    submission(5000); // larger than the cap: goes whole, alone
    submission(1000);
    submission(96);
    release.send(()).unwrap();
    holder.join().unwrap();
    journal.flush().unwrap();
    assert_eq!(*batches.lock().unwrap(), [3000, 3000, 5000, 1096]);
    assert_eq!(outcomes.lock().unwrap().len(), 5);
    let open = journal
        .with_store(|s| s.load_open_calls().unwrap().len())
        .unwrap();
    assert_eq!(open, 12_096);
}

#[test]
fn journal_gives_a_failed_batch_error_to_each_of_its_submitters() {
    let journal = Arc::new(Journal::start(Box::new(TestStore::in_memory())));
    let outcomes: Outcomes = Arc::default();
    let on = day(2026, 11, 26);
    let (release, holder) = hold_writer(&journal);
    journal.submit(vec![opened(&call("a", "1001", on))], record(&outcomes, "a"));
    journal.submit(
        vec![Change::UpsertEntity(entity(
            EntityKind::Account,
            "acme",
            "not json",
        ))],
        record(&outcomes, "bad"),
    );
    journal.submit(vec![opened(&call("c", "1001", on))], record(&outcomes, "c"));
    release.send(()).unwrap();
    holder.join().unwrap();
    journal.flush().unwrap();
    journal.submit(vec![opened(&call("d", "1001", on))], record(&outcomes, "d"));
    journal.flush().unwrap();

    let outcomes = outcomes.lock().unwrap().clone();
    let names: Vec<&str> = outcomes.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["a", "bad", "c", "d"]);
    for (name, result) in &outcomes[..3] {
        let error = result.as_ref().unwrap_err();
        assert!(
            error.contains("acme") && error.contains("not JSON"),
            "{name}: {error}"
        );
    }
    assert!(outcomes[3].1.is_ok());
    let open: Vec<String> = journal
        .with_store(|s| {
            s.load_open_calls()
                .unwrap()
                .into_iter()
                .map(|c| c.call_id)
                .collect()
        })
        .unwrap();
    assert_eq!(open, ["d"]);
}

#[test]
fn dropping_the_journal_applies_what_is_queued() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(db_path(&dir), Durability::Normal).unwrap();
    let journal = Arc::new(Journal::start(Box::new(store)));
    let outcomes: Outcomes = Arc::default();
    let on = day(2026, 11, 26);
    let (release, holder) = hold_writer(&journal);
    for i in 0..50 {
        journal.submit(
            vec![opened(&call(&format!("c{i}"), "1001", on))],
            record(&outcomes, "x"),
        );
    }
    release.send(()).unwrap();
    holder.join().unwrap();
    // The holder's clone is gone: this is the last reference.
    drop(Arc::into_inner(journal).unwrap());
    assert_eq!(outcomes.lock().unwrap().len(), 50);
    assert!(outcomes.lock().unwrap().iter().all(|(_, r)| r.is_ok()));
    let reopened = SqliteStore::open(db_path(&dir), Durability::Normal).unwrap();
    assert_eq!(reopened.load_open_calls().unwrap().len(), 50);
}

#[test]
fn shutdown_gives_the_store_back() {
    let journal = Journal::start(Box::new(TestStore::in_memory()));
    let outcomes: Outcomes = Arc::default();
    journal.submit(some_history(), record(&outcomes, "history"));
    let store = journal.shutdown().unwrap();
    assert_eq!(outcomes.lock().unwrap().len(), 1);
    assert_eq!(snapshot(store.as_ref()).3.len(), 1);
}

#[test]
fn journal_survives_panicking_callbacks_and_reads() {
    let journal = Arc::new(Journal::start(Box::new(TestStore::in_memory())));
    let on = day(2026, 11, 26);
    journal.submit(
        vec![opened(&call("a", "1001", on))],
        Box::new(|_| panic!("callback bug")),
    );
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        journal.with_store(|_| -> usize { panic!("read bug") })
    }));
    assert!(read.is_err(), "the read's panic reaches its caller");
    let open = journal
        .with_store(|s| s.load_open_calls().unwrap().len())
        .unwrap();
    assert_eq!(open, 1);
}

#[test]
fn journal_reads_from_a_callback_are_refused_not_deadlocked() {
    let journal = Arc::new(Journal::start(Box::new(TestStore::in_memory())));
    let (tell, told) = mpsc::channel();
    let inner = Arc::clone(&journal);
    journal.submit(
        Vec::new(),
        Box::new(move |_| {
            let flushed = inner.flush();
            let read = inner.with_store(|_| ());
            tell.send((flushed, read)).unwrap();
        }),
    );
    let (flushed, read) = told.recv().unwrap();
    assert!(matches!(flushed, Err(StoreError::Reentrant)));
    assert!(matches!(read, Err(StoreError::Reentrant)));
    journal.flush().unwrap();
}

#[test]
fn journal_reads_see_what_was_submitted_before_them() {
    let journal = Arc::new(Journal::start(Box::new(TestStore::in_memory())));
    let on = day(2026, 11, 26);
    let outcomes: Outcomes = Arc::default();
    journal.submit(vec![opened(&call("a", "1001", on))], record(&outcomes, "a"));
    let seen = journal
        .with_store(|s| s.load_open_calls().unwrap().len())
        .unwrap();
    assert_eq!(seen, 1);
    assert_eq!(
        outcomes.lock().unwrap().len(),
        1,
        "the callback ran before the read"
    );
    journal.submit(vec![opened(&call("b", "1001", on))], record(&outcomes, "b"));
    journal.flush().unwrap();
    assert_eq!(outcomes.lock().unwrap().len(), 2);
}

#[test]
fn the_call_reads_use_the_one_calls_index() {
    let dir = tempfile::tempdir().unwrap();
    drop(SqliteStore::open(db_path(&dir), Durability::Normal).unwrap());
    let conn = raw(&db_path(&dir));
    for query in [
        "SELECT call_id, call FROM calls WHERE state = 'open'",
        "SELECT call_id FROM calls WHERE extension = '1001' AND state = 'settled' ORDER BY ended_at DESC, rowid DESC LIMIT 10",
    ] {
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {query}"))
            .unwrap()
            .query_map([], |row| row.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let plan = plan.join(" | ");
        assert!(plan.contains("calls_by_state"), "{query}: {plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{query} sorts: {plan}");
    }
}
