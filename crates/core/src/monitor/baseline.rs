//! A learned baseline: for one subject and metric, a running estimate of the normal count
//! (mean and variance) in each of the 168 hours of the week, and the current hour's count
//! so far.
//!
//! Each finished hour updates its hour-of-week slot by an exponentially weighted average;
//! the first weeks weigh `1/(weeks+1)` so the estimate starts from real data rather than 0.
//! Hours skipped without events are learned as 0. An hour during which the subject's alert
//! was open is not learned, so a fraud burst does not become the new normal.

/// Hours in a week; slot 0 is Monday 00:00-01:00 UTC.
pub const HOURS_PER_WEEK: usize = 168;

/// The Unix epoch was a Thursday: 72 hours after a Monday 00:00.
const EPOCH_HOUR_OF_WEEK: i64 = 72;

pub fn hour_of_week(hour: i64) -> usize {
    (hour + EPOCH_HOUR_OF_WEEK).rem_euclid(HOURS_PER_WEEK as i64) as usize
}

#[derive(Clone, Debug, PartialEq)]
pub struct Baseline {
    /// Hours since the epoch of the hour being counted.
    current_hour: i64,
    current: u64,
    /// Whether the current hour saw an open alert (and so is not learned).
    tainted: bool,
    /// Hours learned so far (for the warm-up).
    hours_learned: u32,
    mean: Box<[f32; HOURS_PER_WEEK]>,
    variance: Box<[f32; HOURS_PER_WEEK]>,
    /// Learned something since the last [`Baseline::to_bytes`] snapshot was taken.
    dirty: bool,
}

/// Snapshot format version (first byte of [`Baseline::to_bytes`]).
const SNAPSHOT_VERSION: u8 = 1;
const SNAPSHOT_LEN: usize = 1 + 8 + 4 + HOURS_PER_WEEK * 8;

/// What the baseline expects now, and the levels derived from it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Expectation {
    pub mean: f64,
    pub stddev: f64,
    pub warning_at: u64,
    pub critical_at: u64,
    pub hours_learned: u32,
}

impl Baseline {
    pub fn new(hour: i64) -> Baseline {
        Baseline {
            current_hour: hour,
            current: 0,
            tainted: false,
            hours_learned: 0,
            mean: Box::new([0.0; HOURS_PER_WEEK]),
            variance: Box::new([0.0; HOURS_PER_WEEK]),
            dirty: false,
        }
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// What was learned (not the current partial hour), for the store; clears `dirty`.
    pub fn to_bytes(&mut self) -> Vec<u8> {
        self.dirty = false;
        let mut out = Vec::with_capacity(SNAPSHOT_LEN);
        out.push(SNAPSHOT_VERSION);
        out.extend_from_slice(&self.current_hour.to_le_bytes());
        out.extend_from_slice(&self.hours_learned.to_le_bytes());
        for v in self.mean.iter().chain(self.variance.iter()) {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// A baseline from a snapshot, or `None` if the bytes are not one (wrong length,
    /// version, or values that are not finite and non-negative).
    pub fn from_bytes(bytes: &[u8]) -> Option<Baseline> {
        if bytes.len() != SNAPSHOT_LEN || bytes[0] != SNAPSHOT_VERSION {
            return None;
        }
        let current_hour = i64::from_le_bytes(bytes.get(1..9)?.try_into().ok()?);
        let hours_learned = u32::from_le_bytes(bytes.get(9..13)?.try_into().ok()?);
        let mut values = bytes[13..]
            .chunks_exact(4)
            .map(|c| c.try_into().ok().map(f32::from_le_bytes));
        let mut mean = Box::new([0.0f32; HOURS_PER_WEEK]);
        let mut variance = Box::new([0.0f32; HOURS_PER_WEEK]);
        for slot in mean.iter_mut().chain(variance.iter_mut()) {
            let v = values.next()??;
            if !v.is_finite() || v < 0.0 {
                return None;
            }
            *slot = v;
        }
        Some(Baseline {
            current_hour,
            current: 0,
            tainted: false,
            hours_learned,
            mean,
            variance,
            dirty: false,
        })
    }

    fn learn(&mut self, hour: i64, value: u64, learning_rate: f64) {
        let slot = hour_of_week(hour);
        let weeks = f64::from(self.hours_learned) / HOURS_PER_WEEK as f64;
        let alpha = learning_rate.max(1.0 / (weeks.floor() + 1.0)) as f32;
        let x = value as f32;
        let mean = self.mean[slot];
        let diff = x - mean;
        self.mean[slot] = mean + alpha * diff;
        self.variance[slot] = (1.0 - alpha) * (self.variance[slot] + alpha * diff * diff);
        self.hours_learned = self.hours_learned.saturating_add(1);
        self.dirty = true;
    }

    /// Moves to `hour`, learning the hours that finished (skipped ones as 0).
    pub fn roll_to(&mut self, hour: i64, learning_rate: f64) {
        if hour <= self.current_hour {
            return;
        }
        if !self.tainted {
            self.learn(self.current_hour, self.current, learning_rate);
        } else {
            self.hours_learned = self.hours_learned.saturating_add(1);
        }
        // Quiet hours in between: learned as zero, at most one week of them.
        let gap = (hour - self.current_hour - 1).min(HOURS_PER_WEEK as i64);
        for k in 0..gap {
            self.learn(hour - gap + k, 0, learning_rate);
        }
        self.current_hour = hour;
        self.current = 0;
        self.tainted = false;
    }

    pub fn add(&mut self, hour: i64, amount: u64, learning_rate: f64) {
        self.roll_to(hour, learning_rate);
        self.current = self.current.saturating_add(amount);
    }

    /// The current hour's count at `hour` (0 once that hour has passed).
    pub fn current(&self, hour: i64) -> u64 {
        if hour == self.current_hour {
            self.current
        } else {
            0
        }
    }

    pub fn taint(&mut self) {
        self.tainted = true;
    }

    pub fn hours_learned(&self) -> u32 {
        self.hours_learned
    }

    pub fn expectation(
        &self,
        hour: i64,
        factor: f64,
        deviations: f64,
        floor: u64,
        critical_factor: f64,
    ) -> Expectation {
        let slot = hour_of_week(hour);
        let mean = f64::from(self.mean[slot]);
        let stddev = f64::from(self.variance[slot]).max(0.0).sqrt();
        let warning = (mean * factor)
            .max(mean + deviations * stddev)
            .max(floor as f64);
        // Strictly above: an hour equal to the level is still normal.
        let warning_at = warning.floor() as u64 + 1;
        let critical_at = ((warning * critical_factor).floor() as u64 + 1).max(warning_at);
        Expectation {
            mean,
            stddev,
            warning_at,
            critical_at,
            hours_learned: self.hours_learned,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hour_of_week_starts_on_monday() {
        // 1970-01-05 00:00 UTC was a Monday: 4 days = 96 hours after the epoch.
        assert_eq!(hour_of_week(96), 0);
        assert_eq!(hour_of_week(0), 72);
        assert_eq!(hour_of_week(96 + 167), 167);
    }

    #[test]
    fn learns_each_hour_of_week_and_quiet_hours_as_zero() {
        let start = 96 * 100; // a Monday
        let mut b = Baseline::new(start);
        // Three weeks: 3 attempts at Monday 10:00, nothing else.
        for week in 0..3 {
            let hour = start + week * 168 + 10;
            for _ in 0..3 {
                b.add(hour, 1, 0.1);
            }
        }
        b.roll_to(start + 3 * 168, 0.1);
        let monday10 = b.expectation(start + 3 * 168 + 10, 3.0, 3.0, 0, 2.0);
        assert!((monday10.mean - 3.0).abs() < 1e-6, "{monday10:?}");
        let monday11 = b.expectation(start + 3 * 168 + 11, 3.0, 3.0, 0, 2.0);
        assert!(monday11.mean.abs() < 1e-6);
        assert_eq!(
            monday10.warning_at, 10,
            "mean 3 × factor 3 = 9, so 10 alerts"
        );
        assert_eq!(monday10.critical_at, 19);
        assert!(b.hours_learned() >= 3 * 168);
    }

    #[test]
    fn snapshots_round_trip_and_hostile_bytes_are_refused() {
        let mut b = Baseline::new(96);
        for h in 0..400 {
            b.add(96 + h, (h % 5) as u64, 0.2);
        }
        assert!(b.is_dirty());
        let bytes = b.to_bytes();
        assert!(!b.is_dirty());
        let back = Baseline::from_bytes(&bytes).unwrap();
        assert_eq!(back.hours_learned(), b.hours_learned());
        assert_eq!(
            back.expectation(500, 3.0, 3.0, 0, 2.0),
            b.expectation(500, 3.0, 3.0, 0, 2.0)
        );
        assert!(Baseline::from_bytes(&bytes[..100]).is_none());
        let mut nan = bytes.clone();
        nan[13..17].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(Baseline::from_bytes(&nan).is_none());
        let mut version = bytes;
        version[0] = 9;
        assert!(Baseline::from_bytes(&version).is_none());
    }

    #[test]
    fn a_tainted_hour_is_not_learned() {
        let mut b = Baseline::new(0);
        b.add(0, 100, 1.0);
        b.taint();
        b.roll_to(1, 1.0);
        assert!(b.expectation(0, 1.0, 0.0, 0, 1.0).mean.abs() < 1e-6);
    }
}
