//! The running service's state and its start-up: open the store, merge the policy file's
//! directory with the entries created through the API, rebuild the ledger from the store,
//! settle what expired while the service was down.
//!
//! INVARIANT: every ledger change is submitted to the journal while the engine lock is
//! held, so the store applies changes in the order memory made them; an answer is sent
//! only after its change is durable.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Duration, Utc};
use tokio::sync::oneshot;
use tollgate_config::raw::{RawAccount, RawExtension};
use tollgate_config::validate::{account_from_raw, extension_from_raw};
use tollgate_config::{Loaded, ServerSettings};
use tollgate_core::guard::{Guard, GuardAction};
use tollgate_core::ledger::{Ledger, LedgerEvent};
use tollgate_core::policy::{Origin, Policy};
use tollgate_core::Engine;
use tollgate_store::{Change, EntityKind, Journal, SqliteStore, Store, StoreError, StoredEntity};

use crate::auth::{load_tokens, Token, TokenError};
use crate::guard::{build_firewall, entry_of, history_window, FirewallWorker};
use crate::metrics::Metrics;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the database {path}: {source}")]
    Store { path: String, source: StoreError },
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("cannot write the policy's directory to the store: {0}")]
    Seed(StoreError),
    #[error("firewall: {0}")]
    Firewall(#[from] tollgate_enforce::EnforceError),
    #[error("alerts: {0}")]
    Alerts(#[from] tollgate_notify::NotifyError),
    #[error("hangup: {0}")]
    Hangup(#[from] tollgate_hangup::HangupError),
    #[error("{0}")]
    Locked(String),
}

/// The lock file beside a database (`tollgate.db.lock`).
pub fn lock_path(database: &std::path::Path) -> std::path::PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    std::path::PathBuf::from(name)
}

/// Takes the database's lock for as long as the returned file lives; fails when another
/// process (a running service) holds it.
pub fn lock_database(database: &std::path::Path) -> Result<std::fs::File, StartError> {
    let path = lock_path(database);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| {
            StartError::Locked(format!("cannot open the lock file {}: {e}", path.display()))
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StartError::Locked(format!(
            "another tollgate service is using {} (its lock {} is held): stop it first",
            database.display(),
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(StartError::Locked(format!(
            "cannot lock {}: {e}",
            path.display()
        ))),
    }
}

/// The service: decision engine, durable journal, tokens, metrics.
pub struct App {
    // A std mutex, not tokio's: every critical section is short, synchronous and never
    // held across an await.
    engine: Mutex<Engine>,
    pub journal: Arc<Journal>,
    pub tokens: Vec<Token>,
    pub metrics: Metrics,
    pub settings: ServerSettings,
    // Its own lock: registration and flood events never wait for call decisions.
    guard: Mutex<Guard>,
    pub guard_enabled: bool,
    pub firewall: Option<FirewallWorker>,
    /// Logs opened at start, handed to their threads by `serve`.
    pub open_logs: Mutex<Vec<crate::tail::OpenLog>>,
    /// The last registration written per extension, so a phone re-registering every
    /// minute costs a store write only when its address or User-Agent changes, or hourly.
    registrations_written: Mutex<HashMap<String, tollgate_store::RegistrationSeen>>,
    /// Alert delivery ([alerts]); `notify` never blocks the caller.
    pub notifier: tollgate_notify::Notifier,
    /// The FastAGI server's settings (`[agi]`), when configured.
    pub agi: Option<tollgate_agi::AgiSettings>,
    /// Ends calls in progress through the PBX (`[hangup]`).
    pub killswitch: crate::killswitch::KillSwitch,
    /// The policy file a reload reads (`None`: the embedded example).
    pub(crate) policy_path: Mutex<Option<std::path::PathBuf>>,
    /// Held while the service runs on a database file (see [`lock_database`]).
    database_lock: Mutex<Option<std::fs::File>>,
    /// Calls shadow mode allowed, until their end (see `shadow`).
    pub shadow_calls: Mutex<crate::shadow::ShadowCalls>,
}

/// A re-registration with the same address and User-Agent is written at most this often.
const REGISTRATION_WRITE_EVERY_S: i64 = 3600;

/// Accounts must be added parents first; returns them in that order.
fn parents_first(
    accounts: Vec<(String, RawAccount)>,
    known: &HashSet<String>,
) -> Vec<(String, RawAccount)> {
    let mut ordered = Vec::with_capacity(accounts.len());
    let mut placed: HashSet<String> = known.clone();
    let mut pending = accounts;
    loop {
        let before = pending.len();
        let (ready, rest): (Vec<_>, Vec<_>) = pending
            .into_iter()
            .partition(|(_, a)| a.parent.as_ref().is_none_or(|p| placed.contains(p)));
        for (id, account) in ready {
            placed.insert(id.clone());
            ordered.push((id, account));
        }
        pending = rest;
        if pending.is_empty() || pending.len() == before {
            // Whatever is left has an unknown parent: let validation report it.
            ordered.extend(pending);
            return ordered;
        }
    }
}

impl App {
    /// Opens the configured SQLite database and starts.
    pub fn start(loaded: Loaded, now: DateTime<Utc>) -> Result<Arc<App>, StartError> {
        let settings = &loaded.settings.server;
        let durability = match settings.durability {
            tollgate_config::Durability::Normal => tollgate_store::Durability::Normal,
            tollgate_config::Durability::Full => tollgate_store::Durability::Full,
        };
        // One service per database: `tollgate restore` takes the same lock to refuse to
        // replace a database under a running service.
        let lock = lock_database(&settings.database)?;
        let store = SqliteStore::open(&settings.database, durability).map_err(|source| {
            StartError::Store {
                path: settings.database.display().to_string(),
                source,
            }
        })?;
        let app = App::start_with_store(loaded, Box::new(store), now)?;
        *app.database_lock.lock().unwrap_or_else(|p| p.into_inner()) = Some(lock);
        Ok(app)
    }

    /// Starts on a given store (tests, other back ends).
    pub fn start_with_store(
        loaded: Loaded,
        store: Box<dyn Store>,
        now: DateTime<Utc>,
    ) -> Result<Arc<App>, StartError> {
        let tokens = load_tokens(&loaded.settings.tokens)?;
        let notifier = tollgate_notify::Notifier::start(&loaded.settings.alerts)?;
        let terminators = loaded.settings.hangup.build()?;
        tollgate_core::number::warm_up();
        let Loaded {
            mut policy,
            settings,
            raw_accounts,
            raw_extensions,
            ..
        } = loaded;
        let store_error = |source| StartError::Store {
            path: settings.server.database.display().to_string(),
            source,
        };
        let stored = store.load_entities().map_err(store_error)?;
        let seed = merge_directory(&mut policy, &raw_accounts, &raw_extensions, stored);
        // Spend of the last 40 days covers the current day and month in every time zone.
        let since = (now - Duration::days(40)).date_naive();
        let spend = store.load_spend(since).map_err(store_error)?;
        let open_calls = store.load_open_calls().map_err(store_error)?;
        let recovered = open_calls.len();
        let guard_settings = settings.guard.clone();
        let ban_history = store
            .load_bans(history_window(guard_settings.policy.offense_memory_s, now))
            .map_err(store_error)?;
        let mut guard = Guard::restore(
            guard_settings.policy.clone(),
            ban_history.iter().map(|b| {
                let mut ban = b.ban.clone();
                // A ban lifted early ends when it was lifted, for the restored state.
                if let Some(lifted) = b.lifted_at {
                    ban.expires_at = Some(ban.expires_at.map_or(lifted, |e| e.min(lifted)));
                }
                ban
            }),
            now,
        );
        let expired_bans = guard.expire(now);
        let mut firewall_settings = settings.firewall.clone();
        if policy.shadow {
            tracing::warn!("shadow mode: bans are recorded and logged, not put in the firewall");
            firewall_settings.backend = tollgate_config::FirewallBackend::DryRun;
        }
        let firewall = if guard_settings.enabled {
            build_firewall(&firewall_settings)?
                .map(|fw| FirewallWorker::start(fw, guard.bans().map(entry_of).collect()))
        } else {
            None
        };
        let ledger = Ledger::restore(spend, open_calls, now, |s| Engine::time_zone_of(&policy, s));
        let mut engine = Engine::with_ledger(policy, ledger);
        // Monitoring: open incidents and rule-decided suspensions survive a restart (the
        // sliding windows do not: they fill again with new traffic).
        let open_alerts = store
            .alerts(&tollgate_store::AlertQuery {
                open_only: true,
                before_id: None,
                limit: usize::MAX,
            })
            .map_err(store_error)?;
        let baselines = store.load_baselines().map_err(store_error)?;
        let skipped = engine.monitor.restore_baselines(baselines);
        if skipped > 0 {
            tracing::info!(
                skipped,
                "stored baselines of rules no longer in the policy were not restored"
            );
        }
        let suspensions = store.active_suspensions().map_err(store_error)?;
        let next_alert_id = store.next_alert_id().map_err(store_error)?;
        engine
            .monitor
            .restore(open_alerts, suspensions, next_alert_id, now);
        let expired = engine.expire_due(now);
        let journal = Journal::start(store);
        let mut changes = seed;
        changes.extend(expired.iter().cloned().map(Change::Ledger));
        for effect in engine.monitor.drain_effects() {
            match effect {
                tollgate_core::monitor::MonitorEffect::Alert { alert, .. } => {
                    changes.push(Change::UpsertAlert(alert));
                }
                tollgate_core::monitor::MonitorEffect::Suspended(s) => {
                    changes.push(Change::Suspend(s))
                }
                tollgate_core::monitor::MonitorEffect::Lifted(s) => {
                    changes.push(Change::LiftSuspension {
                        subject: s.subject,
                        at: now,
                        by: "expired".into(),
                    })
                }
                tollgate_core::monitor::MonitorEffect::BanIp { .. } => {}
            }
        }
        changes.extend(crate::guard::record(&expired_bans, now));
        journal_apply_blocking(&journal, changes).map_err(StartError::Seed)?;
        tracing::info!(
            accounts = engine.policy.accounts.len(),
            extensions = engine.policy.extensions.len(),
            calls_recovered = recovered,
            calls_expired_while_down = expired.len(),
            "ledger restored"
        );
        let open_logs = if guard_settings.enabled {
            crate::tail::open_all(&journal, &guard_settings.logs)
        } else {
            Vec::new()
        };
        let metrics = Metrics::new();
        if terminators.is_empty() {
            tracing::info!(
                "no [hangup] adapter: suspensions stop new calls but cannot end calls in progress"
            );
        }
        let killswitch =
            crate::killswitch::KillSwitch::start(terminators, metrics.calls_ended.clone());
        metrics
            .active_calls
            .set(engine.ledger.active_call_count() as i64);
        Ok(Arc::new(App {
            engine: Mutex::new(engine),
            journal: Arc::new(journal),
            tokens,
            metrics,
            settings: settings.server,
            guard: Mutex::new(guard),
            guard_enabled: guard_settings.enabled,
            firewall,
            open_logs: Mutex::new(open_logs),
            registrations_written: Mutex::new(HashMap::new()),
            notifier,
            agi: settings.agi,
            killswitch,
            policy_path: Mutex::new(None),
            database_lock: Mutex::new(None),
            shadow_calls: Mutex::new(crate::shadow::ShadowCalls::default()),
        }))
    }

    /// The engine, locked. A poisoned lock (a panic while held, which the lints forbid) is
    /// recovered: the engine's own invariants hold between operations.
    pub fn engine(&self) -> MutexGuard<'_, Engine> {
        self.engine
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The intrusion guard, locked (same poisoning rule as [`App::engine`]).
    pub fn guard(&self) -> MutexGuard<'_, Guard> {
        self.guard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records the guard's actions durably, then enforces them. Call with the guard lock
    /// held so that actions reach the store and the firewall in the order decided.
    pub fn carry_out(
        &self,
        actions: &[GuardAction],
        now: DateTime<Utc>,
    ) -> oneshot::Receiver<Result<(), StoreError>> {
        for action in actions {
            if let GuardAction::Ban(ban) = action {
                self.metrics
                    .bans
                    .get_or_create(&crate::metrics::RuleLabels {
                        rule: ban.rule.split(' ').next().unwrap_or("").to_string(),
                    })
                    .inc();
            }
        }
        let rx = self.commit(crate::guard::record(actions, now));
        crate::guard::enforce(self.firewall.as_ref(), actions);
        rx
    }

    /// Runs registration events through the guard and records the bans they cause.
    /// Returns the verdicts and a receiver resolving when the bans are durable.
    pub fn judge(
        &self,
        events: &[tollgate_core::guard_event::AuthEvent],
    ) -> (
        Vec<tollgate_core::guard::RegistrationVerdict>,
        oneshot::Receiver<Result<(), StoreError>>,
    ) {
        use tollgate_core::guard_event::AuthOutcome;
        let now = Utc::now();
        // Copy what the guard needs of the directory, so the call path's lock is held only
        // briefly and never together with the guard's.
        let extensions: std::collections::HashMap<String, tollgate_core::policy::Extension> = {
            let engine = self.engine();
            events
                .iter()
                .filter_map(|e| e.user.as_deref())
                .filter_map(|u| engine.policy.extensions.get(u))
                .map(|ext| (ext.id.clone(), ext.clone()))
                .collect()
        };
        let mut guard = self.guard();
        let mut verdicts = Vec::with_capacity(events.len());
        let mut actions = Vec::new();
        for event in events {
            let (verdict, mut more) = guard.on_auth_event(&extensions, event, now);
            let outcome = match (event.outcome, verdict.accepted) {
                (AuthOutcome::Success, true) => "success",
                (AuthOutcome::Success, false) => "refused",
                (AuthOutcome::Failure, _) => "failure",
                (AuthOutcome::Challenge, _) => "challenge",
            };
            self.metrics
                .auth_events
                .get_or_create(&crate::metrics::OutcomeLabels { outcome })
                .inc();
            actions.append(&mut more);
            verdicts.push(verdict);
        }
        let seen = self.registrations_to_write(events, &verdicts, now);
        let rx = self.carry_out(&actions, now);
        drop(guard);
        if !seen.is_empty() {
            // Not awaited: the audit's last-seen figures may lag a crash by one batch.
            drop(self.commit(seen));
        }
        (verdicts, rx)
    }

    /// Successful, accepted registrations worth writing (new, changed, or an hour old).
    fn registrations_to_write(
        &self,
        events: &[tollgate_core::guard_event::AuthEvent],
        verdicts: &[tollgate_core::guard::RegistrationVerdict],
        now: DateTime<Utc>,
    ) -> Vec<Change> {
        use tollgate_core::guard_event::AuthOutcome;
        let mut written = self
            .registrations_written
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for (event, verdict) in events.iter().zip(verdicts) {
            let (AuthOutcome::Success, true, Some(user)) =
                (event.outcome, verdict.accepted, event.user.as_deref())
            else {
                continue;
            };
            let seen = tollgate_store::RegistrationSeen {
                extension: user.to_string(),
                at: event.at.unwrap_or(now),
                ip: Some(event.ip),
                user_agent: event.user_agent.clone(),
            };
            let fresh = written.get(user).is_some_and(|last| {
                last.ip == seen.ip
                    && last.user_agent == seen.user_agent
                    && (seen.at - last.at).num_seconds() < REGISTRATION_WRITE_EVERY_S
            });
            if !fresh {
                // Bounded by the directory: only users the guard accepted, i.e. known extensions.
                written.insert(user.to_string(), seen.clone());
                out.push(Change::SeenRegistration(seen));
            }
        }
        out
    }

    /// [`App::judge`] from a plain thread (log tailers): waits until the bans are durable.
    pub fn judge_blocking(
        &self,
        events: Vec<tollgate_core::guard_event::AuthEvent>,
    ) -> Result<(), StoreError> {
        let (_, rx) = self.judge(&events);
        rx.blocking_recv().map_err(|_| StoreError::Closed)?
    }

    /// Ends bans whose time is up.
    pub async fn expire_bans(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let (rx, count) = {
            let mut guard = self.guard();
            let actions = guard.expire(now);
            if actions.is_empty() {
                return Ok(0);
            }
            (self.carry_out(&actions, now), actions.len())
        };
        rx.await.map_err(|_| StoreError::Closed)??;
        Ok(count)
    }

    /// Queues changes; the receiver resolves when they are durable. Call while holding the
    /// engine lock (see the module invariant).
    pub fn commit(&self, changes: Vec<Change>) -> oneshot::Receiver<Result<(), StoreError>> {
        let (tx, rx) = oneshot::channel();
        if changes.is_empty() {
            let _ = tx.send(Ok(()));
            return rx;
        }
        self.journal.submit(
            changes,
            Box::new(move |result| {
                let _ = tx.send(result);
            }),
        );
        rx
    }

    /// Runs a read on the store after every change submitted so far (off the async
    /// threads: the journal answers reads in order with writes).
    pub async fn read_store<T, F>(&self, read: F) -> Result<T, StoreError>
    where
        F: FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let journal = self.journal.clone();
        tokio::task::spawn_blocking(move || journal.with_store(read))
            .await
            .map_err(|_| StoreError::Closed)?
            .and_then(|r| r)
    }

    /// Records settlements in the metrics.
    pub fn count_events(&self, events: &[LedgerEvent]) {
        for event in events {
            if let LedgerEvent::Settled(s) = event {
                let reason = match s.reason {
                    tollgate_core::ledger::SettleReason::Ended => "ended",
                    tollgate_core::ledger::SettleReason::Expired => "expired",
                };
                self.metrics
                    .settlements
                    .get_or_create(&crate::metrics::ReasonLabels { reason })
                    .inc();
                self.metrics
                    .charged_micros
                    .inc_by(s.charged.micros().max(0) as u64);
            }
        }
    }

    /// The shadow-allowed calls, locked.
    pub fn shadow_calls(&self) -> MutexGuard<'_, crate::shadow::ShadowCalls> {
        self.shadow_calls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Hands calls to the kill switch, unless the policy is in shadow mode (then only logs).
    pub fn end_calls(&self, order: crate::killswitch::KillOrder) {
        if order.is_empty() {
            return;
        }
        if self.engine().policy.shadow {
            tracing::warn!(calls = order.calls.len(), reason = %order.reason, "shadow mode: would end calls in progress");
            return;
        }
        self.killswitch.end(order);
    }

    /// Settles expired calls; returns how many.
    pub async fn expire_now(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        self.shadow_calls().forget_due(now);
        let (rx, count, follow) = {
            let mut engine = self.engine();
            let events = engine.expire_due(now);
            if events.is_empty() {
                return Ok(0);
            }
            self.count_events(&events);
            self.metrics
                .active_calls
                .set(engine.ledger.active_call_count() as i64);
            let count = events.len();
            let mut changes: Vec<Change> = events.into_iter().map(Change::Ledger).collect();
            let follow = self.monitor_changes(&mut engine, &mut changes);
            (self.commit(changes), count, follow)
        };
        rx.await.map_err(|_| StoreError::Closed)??;
        self.follow_up(follow);
        Ok(count)
    }
}

fn journal_apply_blocking(journal: &Journal, changes: Vec<Change>) -> Result<(), StoreError> {
    if changes.is_empty() {
        return Ok(());
    }
    let (tx, rx) = std::sync::mpsc::channel();
    journal.submit(
        changes,
        Box::new(move |result| {
            let _ = tx.send(result);
        }),
    );
    rx.recv().map_err(|_| StoreError::Closed)?
}

/// Puts the store's API-created entries into `policy` (the file wins on a conflict),
/// applies stored suspensions, and returns the store changes that make the store match:
/// file entries upserted, entries removed from the file deleted.
pub(crate) fn merge_directory(
    policy: &mut Policy,
    raw_accounts: &[(String, RawAccount)],
    raw_extensions: &[(String, RawExtension)],
    stored: Vec<StoredEntity>,
) -> Vec<Change> {
    let mut changes = Vec::new();
    let file_accounts: HashSet<&str> = raw_accounts.iter().map(|(id, _)| id.as_str()).collect();
    let file_extensions: HashSet<&str> = raw_extensions.iter().map(|(id, _)| id.as_str()).collect();
    let mut suspended: HashMap<(EntityKind, String), bool> = HashMap::new();
    let mut api_accounts = Vec::new();
    let mut api_extensions = Vec::new();
    for entity in stored {
        suspended.insert((entity.kind, entity.id.clone()), entity.suspended);
        let in_file = match entity.kind {
            EntityKind::Account => file_accounts.contains(entity.id.as_str()),
            EntityKind::Extension => file_extensions.contains(entity.id.as_str()),
        };
        match (entity.origin, in_file) {
            (Origin::Policy, false) => {
                tracing::info!(kind = %entity.kind, id = %entity.id, "removed from the policy file: deleting it from the store");
                changes.push(Change::DeleteEntity {
                    kind: entity.kind,
                    id: entity.id,
                });
            }
            (Origin::Api, true) => {
                tracing::warn!(kind = %entity.kind, id = %entity.id, "the policy file now defines this entry: the file's version replaces the one created through the API");
            }
            (Origin::Policy, true) => {}
            (Origin::Api, false) => match entity.kind {
                EntityKind::Account => match serde_json::from_str::<RawAccount>(&entity.body) {
                    Ok(raw) => api_accounts.push((entity.id, raw)),
                    Err(e) => {
                        tracing::error!(id = %entity.id, error = %e, "stored account is unreadable: kept in the store, not loaded")
                    }
                },
                EntityKind::Extension => match serde_json::from_str::<RawExtension>(&entity.body) {
                    Ok(raw) => api_extensions.push((entity.id, raw)),
                    Err(e) => {
                        tracing::error!(id = %entity.id, error = %e, "stored extension is unreadable: kept in the store, not loaded")
                    }
                },
            },
        }
    }
    let known: HashSet<String> = policy.accounts.keys().cloned().collect();
    let mut warnings = Vec::new();
    for (id, raw) in parents_first(api_accounts, &known) {
        let base = vec!["accounts".to_string(), id.clone()];
        match account_from_raw(&id, &raw, policy, Origin::Api, &base, &mut warnings) {
            Ok(account) => {
                if let Err(e) = policy.upsert_account(account) {
                    tracing::error!(%id, error = %e, "stored account no longer fits the policy: kept in the store, not loaded");
                }
            }
            Err(problems) => {
                let text: Vec<String> = problems
                    .iter()
                    .map(|p| format!("{}: {}", p.key_text(), p.message))
                    .collect();
                tracing::error!(%id, problems = %text.join("; "), "stored account no longer fits the policy: kept in the store, not loaded");
            }
        }
    }
    for (id, raw) in api_extensions {
        let base = vec!["extensions".to_string(), id.clone()];
        match extension_from_raw(&id, &raw, policy, Origin::Api, &base, &mut warnings) {
            Ok(extension) => {
                if let Err(e) = policy.upsert_extension(extension) {
                    tracing::error!(%id, error = %e, "stored extension no longer fits the policy: kept in the store, not loaded");
                }
            }
            Err(problems) => {
                let text: Vec<String> = problems
                    .iter()
                    .map(|p| format!("{}: {}", p.key_text(), p.message))
                    .collect();
                tracing::error!(%id, problems = %text.join("; "), "stored extension no longer fits the policy: kept in the store, not loaded");
            }
        }
    }
    for ((kind, id), is_suspended) in suspended {
        match kind {
            EntityKind::Account => {
                if let Some(a) = policy.accounts.get_mut(&id) {
                    a.suspended = is_suspended;
                }
            }
            EntityKind::Extension => {
                if let Some(e) = policy.extensions.get_mut(&id) {
                    e.suspended = is_suspended;
                }
            }
        }
    }
    for (id, raw) in raw_accounts {
        changes.push(Change::UpsertEntity(StoredEntity {
            kind: EntityKind::Account,
            id: id.clone(),
            origin: Origin::Policy,
            body: serde_json::to_string(raw).unwrap_or_else(|_| "{}".into()),
            suspended: false,
        }));
    }
    for (id, raw) in raw_extensions {
        changes.push(Change::UpsertEntity(StoredEntity {
            kind: EntityKind::Extension,
            id: id.clone(),
            origin: Origin::Policy,
            body: serde_json::to_string(raw).unwrap_or_else(|_| "{}".into()),
            suspended: false,
        }));
    }
    changes
}
