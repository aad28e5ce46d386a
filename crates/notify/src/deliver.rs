//! One channel's delivery of one notification: the [`Deliver`] seam every channel
//! implements (one attempt, no retry), how a failed attempt is classified, and the retry loop
//! with exponential backoff that the worker thread runs around it.

use std::hash::BuildHasher;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::dispatch::{Counters, StopSignal};
use crate::error::NotifyError;
use crate::model::Notification;

/// The longest per-attempt timeout accepted, in seconds.
const MAX_TIMEOUT_S: u64 = 300;
/// The most attempts accepted per notification.
const MAX_ATTEMPTS: u32 = 20;

/// Why one attempt failed. The message is for logs: it never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AttemptError {
    /// Worth another try: network error, timeout, HTTP 408/429/5xx, SMTP 4xx.
    Transient(String),
    /// Would fail again: HTTP 4xx, SMTP 5xx, a message that cannot be built.
    Permanent(String),
}

/// One channel's way to hand a notification to the outside world, one attempt at a time.
/// Runs on the channel's own worker thread, so it may block (bounded by its own timeouts).
pub(crate) trait Deliver: Send + 'static {
    fn attempt(&mut self, notification: &Notification) -> Result<(), AttemptError>;
}

/// Checks a channel's `timeout_s` setting.
pub(crate) fn check_timeout(channel: &str, timeout_s: u64) -> Result<(), NotifyError> {
    if timeout_s == 0 || timeout_s > MAX_TIMEOUT_S {
        return Err(NotifyError::invalid(
            channel,
            "timeout_s",
            format!("{timeout_s} is not between 1 and {MAX_TIMEOUT_S} seconds"),
        ));
    }
    Ok(())
}

/// Checks a channel's `max_attempts` setting.
pub(crate) fn check_max_attempts(channel: &str, max_attempts: u32) -> Result<(), NotifyError> {
    if max_attempts == 0 || max_attempts > MAX_ATTEMPTS {
        return Err(NotifyError::invalid(
            channel,
            "max_attempts",
            format!("{max_attempts} is not between 1 and {MAX_ATTEMPTS}"),
        ));
    }
    Ok(())
}

/// Exponential backoff: `base`, `2 base`, `4 base`, ... up to `cap`, each shortened by a
/// random 0-10 % so that channels failing together do not retry in lockstep.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    pub(crate) base: Duration,
    pub(crate) cap: Duration,
}

impl Backoff {
    /// The wait after the `failed_attempts`-th failure (1-based).
    pub(crate) fn delay(&self, failed_attempts: u32) -> Duration {
        let exponent = failed_attempts.saturating_sub(1).min(30);
        let full = self
            .base
            .checked_mul(1u32 << exponent)
            .unwrap_or(self.cap)
            .min(self.cap);
        let tenth_ms = u64::try_from(full.as_millis() / 10).unwrap_or(u64::MAX);
        let jitter_ms = if tenth_ms == 0 {
            0
        } else {
            random_u64() % (tenth_ms + 1)
        };
        full.saturating_sub(Duration::from_millis(jitter_ms))
    }
}

/// A random number good enough for jitter, from the standard library's randomly keyed hasher
/// (no dependency for something this small).
fn random_u64() -> u64 {
    std::collections::hash_map::RandomState::new().hash_one(std::time::Instant::now())
}

/// What the worker needs to deliver one notification with retries.
pub(crate) struct RetryLoop<'a> {
    pub(crate) channel: &'a str,
    pub(crate) max_attempts: u32,
    pub(crate) backoff: Backoff,
    pub(crate) counters: &'a Counters,
    pub(crate) stop: &'a StopSignal,
}

impl RetryLoop<'_> {
    /// Attempts until delivered, a permanent failure, `max_attempts` transient failures, or a
    /// shutdown deadline that falls before the next attempt. Counts and logs the outcome.
    pub(crate) fn run(&self, deliver: &mut dyn Deliver, notification: &Notification) {
        let channel = self.channel;
        let alert_id = notification.alert_id.as_str();
        let event = notification.event.as_str();
        let max_attempts = self.max_attempts.max(1);
        let mut attempt: u32 = 1;
        // INVARIANT: `attempt` grows by one per pass and the loop ends at `max_attempts`.
        loop {
            match deliver.attempt(notification) {
                Ok(()) => {
                    self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                    if attempt > 1 {
                        tracing::info!(
                            channel,
                            alert_id,
                            event,
                            attempt,
                            "alert delivered after retries"
                        );
                    } else {
                        tracing::debug!(channel, alert_id, event, "alert delivered");
                    }
                    return;
                }
                Err(AttemptError::Permanent(reason)) => {
                    self.counters.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        channel,
                        alert_id,
                        event,
                        attempt,
                        reason = reason.as_str(),
                        "alert not delivered: permanent failure, giving up"
                    );
                    return;
                }
                Err(AttemptError::Transient(reason)) => {
                    if attempt >= max_attempts {
                        self.counters.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(
                            channel,
                            alert_id,
                            event,
                            attempt,
                            reason = reason.as_str(),
                            "alert not delivered: giving up after the last attempt"
                        );
                        return;
                    }
                    let delay = self.backoff.delay(attempt);
                    tracing::warn!(
                        channel,
                        alert_id,
                        event,
                        attempt,
                        max_attempts,
                        retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        reason = reason.as_str(),
                        "alert delivery failed, will retry"
                    );
                    if !self.stop.sleep(delay) {
                        self.counters.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(
                            channel,
                            alert_id,
                            event,
                            attempt,
                            "alert not delivered: shutting down before the next attempt"
                        );
                        return;
                    }
                    self.counters.retried.fetch_add(1, Ordering::Relaxed);
                    attempt += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_at_most_ten_percent_off() {
        let backoff = Backoff {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
        };
        for (failures, full_s) in [(1, 1), (2, 2), (3, 4), (4, 8), (6, 32), (7, 60), (40, 60)] {
            let full = Duration::from_secs(full_s);
            for _ in 0..20 {
                let delay = backoff.delay(failures);
                assert!(delay <= full, "{failures}: {delay:?} > {full:?}");
                assert!(delay >= full - full / 10, "{failures}: {delay:?} too short");
            }
        }
    }
}
