//! The intrusion guard's adapters: the firewall worker (one thread that owns the firewall
//! backend and applies bans in order, batching what queues up), start-up (restore bans from
//! the store, set the firewall up and make it match), and carrying out the guard's actions
//! (store them, enforce them, log them).
//!
//! INVARIANT: a ban is recorded in the store before it is enforced, and the firewall worker
//! applies bans and unbans in the order the guard decided them.

use std::sync::mpsc;
use std::thread;

use chrono::{DateTime, Duration, Utc};
use ipnet::IpNet;
use tollgate_config::{FirewallBackend, FirewallSettings};
use tollgate_core::guard::{Ban, GuardAction};
use tollgate_enforce::{BanEntry, Firewall};
use tollgate_store::Change;

enum Command {
    Ban(BanEntry),
    Unban(IpNet),
    Sync(Vec<BanEntry>),
    /// Answers once everything before it is applied (tests, shutdown).
    Flush(mpsc::Sender<()>),
}

/// A thread that owns the firewall backend. `nft` and `ipset` are blocking programs: they
/// never run on the async threads.
pub struct FirewallWorker {
    inbox: Option<mpsc::Sender<Command>>,
    pub backend: &'static str,
}

/// Builds the configured backend; `None` for `backend = "none"`.
pub fn build_firewall(
    settings: &FirewallSettings,
) -> Result<Option<Box<dyn Firewall>>, tollgate_enforce::EnforceError> {
    let backend = match &settings.backend {
        FirewallBackend::None => return Ok(None),
        FirewallBackend::DryRun => tollgate_enforce::Backend::DryRun,
        FirewallBackend::Nftables { nft } => {
            tollgate_enforce::Backend::Nftables(tollgate_enforce::NftConfig {
                command: nft.clone(),
                ports: settings.ports.clone(),
                ..tollgate_enforce::NftConfig::default()
            })
        }
        FirewallBackend::Iptables => {
            tollgate_enforce::Backend::Ipset(tollgate_enforce::IpsetConfig {
                ports: settings.ports.clone(),
                ..tollgate_enforce::IpsetConfig::default()
            })
        }
        FirewallBackend::Command { ban, unban } => {
            tollgate_enforce::Backend::Command(tollgate_enforce::HookConfig {
                ban: ban.clone(),
                unban: unban.clone(),
                timeout: std::time::Duration::from_secs(10),
            })
        }
    };
    tollgate_enforce::build(backend).map(Some)
}

/// The firewall entry of a ban.
pub fn entry_of(ban: &Ban) -> BanEntry {
    BanEntry::new(ban.target, ban.expires_at, ban.rule.clone())
}

impl FirewallWorker {
    /// Sets the backend up, makes it hold exactly `bans`, then serves commands.
    pub fn start(mut firewall: Box<dyn Firewall>, bans: Vec<BanEntry>) -> FirewallWorker {
        let backend = firewall.name();
        let (inbox, queue) = mpsc::channel::<Command>();
        let spawned = thread::Builder::new().name("tollgate-firewall".into()).spawn(move || {
            if let Err(e) = firewall.setup() {
                tracing::error!(backend, error = %e, "firewall setup failed: bans are recorded but not enforced until it works");
            }
            match firewall.sync(&bans, Utc::now()) {
                Ok(report) => tracing::info!(
                    backend,
                    added = report.added.len(),
                    removed = report.removed.len(),
                    unchanged = report.unchanged,
                    failed = report.failed.len(),
                    "firewall holds the bans in force"
                ),
                Err(e) => tracing::error!(backend, error = %e, "firewall sync failed"),
            }
            while let Ok(first) = queue.recv() {
                // Drain what queued up meanwhile: one backend transaction for many bans.
                let mut batch = vec![first];
                while let Ok(more) = queue.try_recv() {
                    batch.push(more);
                    if batch.len() >= 1024 {
                        break;
                    }
                }
                let mut bans = Vec::new();
                for command in batch {
                    match command {
                        Command::Ban(entry) => bans.push(entry),
                        other => {
                            apply_bans(&mut *firewall, &mut bans);
                            match other {
                                Command::Unban(net) => {
                                    if let Err(e) = firewall.unban(net) {
                                        tracing::error!(backend, %net, error = %e, "firewall unban failed");
                                    }
                                }
                                Command::Sync(entries) => {
                                    if let Err(e) = firewall.sync(&entries, Utc::now()) {
                                        tracing::error!(backend, error = %e, "firewall sync failed");
                                    }
                                }
                                Command::Flush(done) => {
                                    let _ = done.send(());
                                }
                                Command::Ban(_) => {}
                            }
                        }
                    }
                }
                apply_bans(&mut *firewall, &mut bans);
            }
        });
        match spawned {
            Ok(_) => FirewallWorker {
                inbox: Some(inbox),
                backend,
            },
            Err(e) => {
                tracing::error!(error = %e, "cannot start the firewall thread: bans are recorded but not enforced");
                FirewallWorker {
                    inbox: None,
                    backend,
                }
            }
        }
    }

    fn send(&self, command: Command) {
        if let Some(inbox) = &self.inbox {
            let _ = inbox.send(command);
        }
    }

    pub fn ban(&self, ban: &Ban) {
        self.send(Command::Ban(entry_of(ban)));
    }

    pub fn unban(&self, target: IpNet) {
        self.send(Command::Unban(target));
    }

    pub fn sync(&self, bans: Vec<BanEntry>) {
        self.send(Command::Sync(bans));
    }

    /// Blocks until every command sent so far is applied.
    pub fn flush(&self) {
        let (tx, rx) = mpsc::channel();
        self.send(Command::Flush(tx));
        let _ = rx.recv_timeout(std::time::Duration::from_secs(10));
    }
}

fn apply_bans(firewall: &mut dyn Firewall, bans: &mut Vec<BanEntry>) {
    if bans.is_empty() {
        return;
    }
    let now = Utc::now();
    if let Err(e) = firewall.ban_many(bans, now) {
        tracing::error!(backend = firewall.name(), error = %e, count = bans.len(), "firewall ban failed");
    }
    bans.clear();
}

/// The store changes and log lines of the guard's actions; the caller commits the changes
/// and then hands the actions to [`enforce`].
pub fn record(actions: &[GuardAction], now: DateTime<Utc>) -> Vec<Change> {
    actions
        .iter()
        .map(|action| match action {
            GuardAction::Ban(ban) => {
                tracing::warn!(target = %ban.target, rule = %ban.rule, reason = %ban.reason, until = ?ban.expires_at, "ban");
                Change::RecordBan(ban.clone())
            }
            GuardAction::Unban { target, reason } => {
                tracing::info!(%target, %reason, "unban");
                Change::LiftBan {
                    target: *target,
                    at: now,
                    reason: reason.clone(),
                }
            }
        })
        .collect()
}

/// Hands recorded actions to the firewall worker.
pub fn enforce(worker: Option<&FirewallWorker>, actions: &[GuardAction]) {
    let Some(worker) = worker else {
        return;
    };
    for action in actions {
        match action {
            GuardAction::Ban(ban) => worker.ban(ban),
            GuardAction::Unban { target, .. } => worker.unban(*target),
        }
    }
}

/// How far back ban history matters (repeat offenses).
pub fn history_window(offense_memory_s: u64, now: DateTime<Utc>) -> DateTime<Utc> {
    now - Duration::seconds(
        i64::try_from(offense_memory_s)
            .unwrap_or(i64::MAX / 2000)
            .min(3650 * 86_400),
    )
}
