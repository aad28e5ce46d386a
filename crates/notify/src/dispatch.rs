//! The dispatcher: one worker thread and one bounded queue per channel, the non-blocking
//! [`Notifier::notify`] that feeds them, the per-channel counters, and shutdown with a
//! deadline.
//!
//! INVARIANT: `notify` never blocks and does no I/O (not even a log line): it filters by
//! severity, `try_send`s into each queue and counts what a full queue refused. Every wait,
//! every socket and every log line belongs to a worker thread, and each channel has its own,
//! so a slow or failing channel only ever delays itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::ChannelsConfig;
use crate::deliver::{Backoff, Deliver, RetryLoop};
use crate::error::NotifyError;
use crate::model::{AlertSeverity, Notification};
use crate::{log, smtp, syslog, webhook};

/// How long dropping a [`Notifier`] without [`Notifier::shutdown`] lets the workers drain.
pub const DROP_DEADLINE: Duration = Duration::from_secs(2);

/// Knobs of the dispatcher itself, not of a channel. The defaults are the production values;
/// tests shorten the backoff so retries take milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotifierOptions {
    /// Notifications waiting per channel before new ones are dropped (and counted).
    pub queue_capacity: usize,
    /// The wait after the first failed attempt; doubled after each further failure.
    pub backoff_base: Duration,
    /// The longest wait between two attempts.
    pub backoff_cap: Duration,
}

impl Default for NotifierOptions {
    fn default() -> Self {
        NotifierOptions {
            queue_capacity: 1024,
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(60),
        }
    }
}

/// One channel's counters, as returned by [`Notifier::stats`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelStats {
    /// `log`, `webhook[0]`, `smtp[0]`, `syslog[0]`: the kind and the index in its list.
    pub name: String,
    /// Where it delivers, fit for logs: `https://hooks.example.com/…`, `mail.example.com:25`,
    /// `udp:192.0.2.10:514`.
    pub target: String,
    /// Notifications delivered.
    pub delivered: u64,
    /// Attempts made after a failed one.
    pub retried: u64,
    /// Notifications given up on (permanent failure, attempts exhausted, shutdown).
    pub failed: u64,
    /// Notifications never attempted: the queue was full, the worker was gone, or the
    /// shutdown deadline passed first.
    pub dropped: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) delivered: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) dropped: AtomicU64,
}

impl Counters {
    fn snapshot(&self, name: String, target: String) -> ChannelStats {
        ChannelStats {
            name,
            target,
            delivered: self.delivered.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

/// The shutdown deadline shared with the workers: a backoff sleep ends early (and the
/// notification is given up) when the deadline would pass before the next attempt.
#[derive(Debug, Default)]
pub(crate) struct StopSignal {
    deadline: Mutex<Option<Instant>>,
    changed: Condvar,
}

impl StopSignal {
    fn set_deadline(&self, at: Instant) {
        let mut deadline = self.deadline.lock().unwrap_or_else(PoisonError::into_inner);
        *deadline = Some(deadline.map_or(at, |earlier| earlier.min(at)));
        self.changed.notify_all();
    }

    fn past_deadline(&self) -> bool {
        let deadline = self.deadline.lock().unwrap_or_else(PoisonError::into_inner);
        deadline.is_some_and(|at| Instant::now() >= at)
    }

    /// Sleeps for `duration`; returns false, early, if a shutdown deadline falls before the
    /// sleep would end.
    pub(crate) fn sleep(&self, duration: Duration) -> bool {
        let wake_at = Instant::now() + duration;
        let mut deadline = self.deadline.lock().unwrap_or_else(PoisonError::into_inner);
        // INVARIANT: each pass either returns or waits until `wake_at` at the latest, so the
        // loop ends by `wake_at` (spurious wake-ups only add passes before it).
        loop {
            if deadline.is_some_and(|at| at < wake_at) {
                return false;
            }
            let now = Instant::now();
            if now >= wake_at {
                return true;
            }
            deadline = self
                .changed
                .wait_timeout(deadline, wake_at - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// A channel ready to run: its settings checked, its secrets read, its socket open.
pub(crate) struct PreparedChannel {
    pub(crate) name: String,
    pub(crate) target: String,
    pub(crate) min_severity: AlertSeverity,
    pub(crate) max_attempts: u32,
    pub(crate) deliver: Box<dyn Deliver>,
}

struct ChannelHandle {
    name: String,
    target: String,
    min_severity: AlertSeverity,
    queue: SyncSender<Arc<Notification>>,
    counters: Arc<Counters>,
    worker: JoinHandle<()>,
}

/// Delivers alerts to every configured channel from background threads.
///
/// Dropping it without [`Notifier::shutdown`] shuts down with [`DROP_DEADLINE`].
pub struct Notifier {
    channels: Vec<ChannelHandle>,
    stop: Arc<StopSignal>,
    /// Worker indexes, sent as each worker ends. In a mutex only so that `Notifier` is
    /// `Sync` (shared by request handlers); only shutdown reads it.
    finished: Mutex<Receiver<usize>>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<(&str, &str)> = self
            .channels
            .iter()
            .map(|c| (c.name.as_str(), c.target.as_str()))
            .collect();
        f.debug_struct("Notifier")
            .field("channels", &names)
            .finish()
    }
}

impl Notifier {
    /// Checks every channel (URLs, addresses, targets), reads the secret files, opens the
    /// syslog sockets, then starts one worker thread per channel. Nothing starts unless
    /// everything is valid.
    pub fn start(config: &ChannelsConfig) -> Result<Notifier, NotifyError> {
        Notifier::start_with(config, NotifierOptions::default())
    }

    /// [`Notifier::start`] with dispatcher options other than the defaults.
    pub fn start_with(
        config: &ChannelsConfig,
        options: NotifierOptions,
    ) -> Result<Notifier, NotifyError> {
        let mut prepared = Vec::new();
        if config.log {
            prepared.push(log::prepare(config.log_min_severity));
        }
        for (index, settings) in config.webhook.iter().enumerate() {
            prepared.push(webhook::prepare(&format!("webhook[{index}]"), settings)?);
        }
        for (index, settings) in config.smtp.iter().enumerate() {
            prepared.push(smtp::prepare(&format!("smtp[{index}]"), settings)?);
        }
        for (index, settings) in config.syslog.iter().enumerate() {
            prepared.push(syslog::prepare(&format!("syslog[{index}]"), settings)?);
        }
        Notifier::run(prepared, options)
    }

    pub(crate) fn run(
        prepared: Vec<PreparedChannel>,
        options: NotifierOptions,
    ) -> Result<Notifier, NotifyError> {
        let (finished_tx, finished) = mpsc::channel();
        let mut notifier = Notifier {
            channels: Vec::with_capacity(prepared.len()),
            stop: Arc::new(StopSignal::default()),
            finished: Mutex::new(finished),
        };
        let backoff = Backoff {
            base: options.backoff_base,
            cap: options.backoff_cap,
        };
        for (index, channel) in prepared.into_iter().enumerate() {
            let (queue, receiver) = mpsc::sync_channel(options.queue_capacity.max(1));
            let counters = Arc::new(Counters::default());
            let worker = Worker {
                index,
                name: channel.name.clone(),
                max_attempts: channel.max_attempts,
                backoff,
                deliver: channel.deliver,
                counters: Arc::clone(&counters),
                stop: Arc::clone(&notifier.stop),
                finished: finished_tx.clone(),
            };
            // On an error here, dropping `notifier` shuts down the workers already started.
            let handle = std::thread::Builder::new()
                .name(format!("notify {}", channel.name))
                .spawn(move || worker.run(receiver))
                .map_err(|source| NotifyError::Spawn {
                    channel: channel.name.clone(),
                    source,
                })?;
            notifier.channels.push(ChannelHandle {
                name: channel.name,
                target: channel.target,
                min_severity: channel.min_severity,
                queue,
                counters,
                worker: handle,
            });
        }
        Ok(notifier)
    }

    /// Queues `notification` for every channel whose `min_severity` it meets. Never blocks
    /// and does no I/O: a channel whose queue is full drops it and counts the drop (its
    /// worker logs the count).
    pub fn notify(&self, notification: Notification) {
        let shared = Arc::new(notification);
        for channel in &self.channels {
            if shared.severity < channel.min_severity {
                continue;
            }
            match channel.queue.try_send(Arc::clone(&shared)) {
                Ok(()) => {}
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    channel.counters.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Each channel's counters, in configuration order (the log channel first).
    pub fn stats(&self) -> Vec<ChannelStats> {
        self.channels
            .iter()
            .map(|channel| {
                channel
                    .counters
                    .snapshot(channel.name.clone(), channel.target.clone())
            })
            .collect()
    }

    /// Stops accepting notifications, lets the workers deliver what is queued until
    /// `deadline` from now, and joins them. What is still queued at the deadline is dropped;
    /// a retry that would come after it is given up. A worker still inside one attempt at the
    /// deadline (bounded by its channel's `timeout_s`) is left to finish on its own.
    ///
    /// Returns the counters as they stand once the workers have ended (or at the deadline).
    pub fn shutdown(mut self, deadline: Duration) -> Vec<ChannelStats> {
        self.stop_workers(deadline)
    }

    fn stop_workers(&mut self, deadline: Duration) -> Vec<ChannelStats> {
        if self.channels.is_empty() {
            return Vec::new();
        }
        let deadline_at = Instant::now() + deadline;
        self.stop.set_deadline(deadline_at);
        let mut workers: Vec<Option<(String, JoinHandle<()>)>> = Vec::new();
        let mut counters = Vec::new();
        for channel in self.channels.drain(..) {
            // Dropping the queue's sender ends the worker's loop once the queue is empty.
            drop(channel.queue);
            counters.push((channel.name.clone(), channel.target, channel.counters));
            workers.push(Some((channel.name, channel.worker)));
        }
        let finished = self.finished.lock().unwrap_or_else(PoisonError::into_inner);
        let mut running = workers.len();
        // INVARIANT: every pass either removes a worker or ends the loop at the deadline.
        while running > 0 {
            let left = deadline_at.saturating_duration_since(Instant::now());
            match finished.recv_timeout(left) {
                Ok(index) => {
                    if let Some((name, handle)) = workers.get_mut(index).and_then(Option::take) {
                        running -= 1;
                        if handle.join().is_err() {
                            tracing::error!(
                                channel = name.as_str(),
                                "notification worker panicked"
                            );
                        }
                    }
                }
                Err(_) => break,
            }
        }
        drop(finished);
        for (name, _detached) in workers.into_iter().flatten() {
            tracing::warn!(
                channel = name.as_str(),
                "notification worker still busy at the shutdown deadline, left to finish on its own"
            );
        }
        counters
            .into_iter()
            .map(|(name, target, counters)| counters.snapshot(name, target))
            .collect()
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        let _ = self.stop_workers(DROP_DEADLINE);
    }
}

/// What runs on a channel's thread.
struct Worker {
    index: usize,
    name: String,
    max_attempts: u32,
    backoff: Backoff,
    deliver: Box<dyn Deliver>,
    counters: Arc<Counters>,
    stop: Arc<StopSignal>,
    finished: mpsc::Sender<usize>,
}

impl Worker {
    fn run(mut self, queue: Receiver<Arc<Notification>>) {
        // Tells the notifier this worker ended, also if a channel panics.
        let _finished = FinishedGuard {
            index: self.index,
            finished: self.finished.clone(),
        };
        let mut dropped_seen = 0;
        while let Ok(notification) = queue.recv() {
            if self.stop.past_deadline() {
                self.report_drops(dropped_seen);
                let left = 1 + queue.try_iter().count() as u64;
                self.counters.dropped.fetch_add(left, Ordering::Relaxed);
                tracing::warn!(
                    channel = self.name.as_str(),
                    dropped = left,
                    "shutdown deadline passed: queued alerts dropped"
                );
                return;
            }
            dropped_seen = self.report_drops(dropped_seen);
            RetryLoop {
                channel: &self.name,
                max_attempts: self.max_attempts,
                backoff: self.backoff,
                counters: &self.counters,
                stop: &self.stop,
            }
            .run(self.deliver.as_mut(), &notification);
        }
        self.report_drops(dropped_seen);
    }

    /// Logs the drops `notify` counted since the last report (it may not log itself).
    fn report_drops(&self, seen: u64) -> u64 {
        let now = self.counters.dropped.load(Ordering::Relaxed);
        if now > seen {
            tracing::warn!(
                channel = self.name.as_str(),
                dropped = now - seen,
                dropped_total = now,
                "alert queue full: alerts dropped"
            );
        }
        now
    }
}

struct FinishedGuard {
    index: usize,
    finished: mpsc::Sender<usize>,
}

impl Drop for FinishedGuard {
    fn drop(&mut self) {
        // The notifier may be gone already; nobody is left to tell then.
        let _ = self.finished.send(self.index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::AttemptError;
    use crate::model::AlertEvent;

    const WAIT: Duration = Duration::from_secs(10);

    fn notification(id: &str, severity: AlertSeverity, event: AlertEvent) -> Notification {
        Notification {
            alert_id: id.into(),
            event,
            severity,
            rule: "monitor.rules.test".into(),
            subject: "extension 1001".into(),
            summary: "test".into(),
            figures: serde_json::json!({}),
            action: None,
            at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        }
    }

    /// Records what it is given; optionally waits for a go-ahead before each attempt, and
    /// fails (transiently) the attempts for which `failures` says `true`, in order, and all
    /// attempts once it is empty if `then_always_fail`.
    struct Fake {
        delivered: mpsc::Sender<String>,
        started: Option<mpsc::Sender<()>>,
        gate: Option<Receiver<()>>,
        failures: std::collections::VecDeque<bool>,
        then_always_fail: bool,
    }

    impl Deliver for Fake {
        fn attempt(&mut self, n: &Notification) -> Result<(), AttemptError> {
            if let Some(started) = &self.started {
                let _ = started.send(());
            }
            if let Some(gate) = &self.gate {
                let _ = gate.recv_timeout(WAIT);
            }
            if self.failures.pop_front().unwrap_or(self.then_always_fail) {
                return Err(AttemptError::Transient("try again".into()));
            }
            let _ = self.delivered.send(n.alert_id.clone());
            Ok(())
        }
    }

    fn fake(name: &str, min_severity: AlertSeverity, fake: Fake) -> PreparedChannel {
        PreparedChannel {
            name: name.into(),
            target: "test".into(),
            min_severity,
            max_attempts: 3,
            deliver: Box::new(fake),
        }
    }

    fn fast() -> NotifierOptions {
        NotifierOptions {
            queue_capacity: 4,
            backoff_base: Duration::from_millis(1),
            backoff_cap: Duration::from_millis(5),
        }
    }

    #[test]
    fn severity_filter_passes_critical_everywhere_and_warning_only_where_allowed() {
        let (all_tx, all_rx) = mpsc::channel();
        let (crit_tx, crit_rx) = mpsc::channel();
        let plain = |tx| Fake {
            delivered: tx,
            started: None,
            gate: None,
            failures: [].into(),
            then_always_fail: false,
        };
        let notifier = Notifier::run(
            vec![
                fake("all", AlertSeverity::Warning, plain(all_tx)),
                fake("critical", AlertSeverity::Critical, plain(crit_tx)),
            ],
            fast(),
        )
        .unwrap();
        notifier.notify(notification(
            "w1",
            AlertSeverity::Warning,
            AlertEvent::Opened,
        ));
        notifier.notify(notification(
            "c1",
            AlertSeverity::Critical,
            AlertEvent::Opened,
        ));
        // Closing a critical alert follows the alert's severity: it reaches the critical
        // channel; closing a warning one does not.
        notifier.notify(notification(
            "w1",
            AlertSeverity::Warning,
            AlertEvent::Closed,
        ));
        notifier.notify(notification(
            "c1",
            AlertSeverity::Critical,
            AlertEvent::Acknowledged,
        ));
        notifier.shutdown(WAIT);

        assert_eq!(
            all_rx.try_iter().collect::<Vec<_>>(),
            ["w1", "c1", "w1", "c1"]
        );
        assert_eq!(crit_rx.try_iter().collect::<Vec<_>>(), ["c1", "c1"]);
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_blocking_and_other_channels_still_deliver() {
        let (slow_tx, slow_rx) = mpsc::channel();
        let (started_tx, started_rx) = mpsc::channel();
        let (gate_tx, gate_rx) = mpsc::channel();
        let (fast_tx, fast_rx) = mpsc::channel();
        let notifier = Notifier::run(
            vec![
                fake(
                    "slow",
                    AlertSeverity::Warning,
                    Fake {
                        delivered: slow_tx,
                        started: Some(started_tx),
                        gate: Some(gate_rx),
                        failures: [].into(),
                        then_always_fail: false,
                    },
                ),
                fake(
                    "fast",
                    AlertSeverity::Warning,
                    Fake {
                        delivered: fast_tx,
                        started: None,
                        gate: None,
                        failures: [].into(),
                        then_always_fail: false,
                    },
                ),
            ],
            fast(),
        )
        .unwrap();

        // The slow worker takes the first notification and blocks inside its attempt.
        notifier.notify(notification(
            "n0",
            AlertSeverity::Warning,
            AlertEvent::Opened,
        ));
        started_rx.recv_timeout(WAIT).unwrap();

        // Four fill its queue (capacity 4), three more are dropped. If `notify` blocked, this
        // thread would never report back and the receive below would time out.
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::scope(|scope| {
            let notifier = &notifier;
            scope.spawn(move || {
                for i in 1..8 {
                    notifier.notify(notification(
                        &format!("n{i}"),
                        AlertSeverity::Warning,
                        AlertEvent::Updated,
                    ));
                }
                done_tx.send(()).unwrap();
            });
            assert_eq!(done_rx.recv_timeout(WAIT), Ok(()), "notify blocked");
        });

        // Meanwhile the fast channel keeps delivering: a later alert reaches it while the
        // slow worker is still stuck (and the slow channel drops that one too). The fast
        // queue is drained first: on a loaded machine the burst may have filled it as well.
        while fast_rx.recv_timeout(Duration::from_millis(300)).is_ok() {}
        notifier.notify(notification(
            "later",
            AlertSeverity::Warning,
            AlertEvent::Updated,
        ));
        // Bounded: the fast channel is sent nine alerts, and each receive has a timeout.
        while fast_rx.recv_timeout(WAIT).unwrap() != "later" {}
        let slow = notifier
            .stats()
            .into_iter()
            .find(|s| s.name == "slow")
            .unwrap();
        assert_eq!(slow.dropped, 4);
        assert_eq!(slow.delivered, 0);

        // Release the slow worker: it delivers the one in flight and the four queued.
        for _ in 0..5 {
            gate_tx.send(()).unwrap();
        }
        notifier.shutdown(WAIT);
        assert_eq!(
            slow_rx.try_iter().collect::<Vec<_>>(),
            ["n0", "n1", "n2", "n3", "n4"]
        );
    }

    #[test]
    fn retries_are_counted_and_exhausted_attempts_fail() {
        let (tx, rx) = mpsc::channel();
        let notifier = Notifier::run(
            vec![fake(
                "flaky",
                AlertSeverity::Warning,
                Fake {
                    delivered: tx,
                    started: None,
                    gate: None,
                    // max_attempts is 3: "a" is delivered at its 3rd attempt, "b" fails
                    // its 3 and is given up, "c" is delivered at once.
                    failures: [true, true, false, true, true, true, false].into(),
                    then_always_fail: false,
                },
            )],
            fast(),
        )
        .unwrap();
        notifier.notify(notification(
            "a",
            AlertSeverity::Warning,
            AlertEvent::Opened,
        ));
        assert_eq!(rx.recv_timeout(WAIT).unwrap(), "a");
        notifier.notify(notification(
            "b",
            AlertSeverity::Warning,
            AlertEvent::Opened,
        ));
        notifier.notify(notification(
            "c",
            AlertSeverity::Warning,
            AlertEvent::Opened,
        ));
        assert_eq!(rx.recv_timeout(WAIT).unwrap(), "c");
        let stats = notifier.shutdown(WAIT);
        assert_eq!(
            stats,
            vec![ChannelStats {
                name: "flaky".into(),
                target: "test".into(),
                delivered: 2,
                retried: 2 + 2,
                failed: 1,
                dropped: 0,
            }]
        );
    }

    #[test]
    fn shutdown_gives_up_a_retry_past_the_deadline_instead_of_waiting() {
        let (tx, _rx) = mpsc::channel();
        let (started_tx, started_rx) = mpsc::channel();
        let notifier = Notifier::run(
            vec![fake(
                "down",
                AlertSeverity::Warning,
                Fake {
                    delivered: tx,
                    started: Some(started_tx),
                    gate: None,
                    failures: [].into(),
                    then_always_fail: true,
                },
            )],
            NotifierOptions {
                queue_capacity: 4,
                // A backoff far longer than the test may take.
                backoff_base: Duration::from_secs(3600),
                backoff_cap: Duration::from_secs(3600),
            },
        )
        .unwrap();
        notifier.notify(notification(
            "a",
            AlertSeverity::Warning,
            AlertEvent::Opened,
        ));
        notifier.notify(notification(
            "b",
            AlertSeverity::Warning,
            AlertEvent::Opened,
        ));
        started_rx.recv_timeout(WAIT).unwrap();

        // The worker now sleeps an hour before its retry. Shutting down (deadline in ten
        // minutes) wakes it: a retry after the deadline is given up at once, for "a" and then
        // for "b", and the join comes back without waiting for the backoff.
        let counters = Arc::clone(&notifier.channels[0].counters);
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::spawn(move || {
            notifier.shutdown(Duration::from_secs(600));
            let _ = done_tx.send(());
        });
        assert_eq!(
            done_rx.recv_timeout(WAIT),
            Ok(()),
            "shutdown waited for the backoff"
        );
        assert_eq!(counters.failed.load(Ordering::Relaxed), 2);
        assert_eq!(counters.retried.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn dropping_a_notifier_with_a_stuck_worker_returns() {
        let (tx, _rx) = mpsc::channel();
        let (started_tx, started_rx) = mpsc::channel();
        let (_gate_tx, gate_rx) = mpsc::channel::<()>();
        let notifier = Notifier::run(
            vec![fake(
                "stuck",
                AlertSeverity::Warning,
                Fake {
                    delivered: tx,
                    started: Some(started_tx),
                    gate: Some(gate_rx),
                    failures: [].into(),
                    then_always_fail: false,
                },
            )],
            fast(),
        )
        .unwrap();
        notifier.notify(notification(
            "a",
            AlertSeverity::Warning,
            AlertEvent::Opened,
        ));
        started_rx.recv_timeout(WAIT).unwrap();
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::spawn(move || {
            notifier.shutdown(Duration::from_millis(50));
            let _ = done_tx.send(());
        });
        assert_eq!(done_rx.recv_timeout(WAIT), Ok(()), "shutdown hung");
    }
}
