//! Sliding windows with bounded memory: a ring of [`SLOTS`] buckets per (rule, subject)
//! for sums, and a capped list of recent destinations for distinct and repeated counts.
//! Time is seconds since the Unix epoch, passed in.

use std::collections::VecDeque;

use super::rules::RECENT_CAP;

/// Buckets per window: the window slides in steps of a twelfth of its length.
pub const SLOTS: usize = 12;

/// A sum over the last `window_s` seconds, kept in [`SLOTS`] buckets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ring {
    /// Index (time / slot width) of the bucket written last.
    newest: i64,
    buckets: [u64; SLOTS],
}

fn slot_width(window_s: u64) -> i64 {
    (window_s / SLOTS as u64).max(1) as i64
}

impl Ring {
    /// Moves the ring to the slot of `now`, zeroing buckets that slid out.
    fn advance(&mut self, window_s: u64, now: i64) -> usize {
        let slot = now.div_euclid(slot_width(window_s));
        if slot > self.newest {
            let steps = (slot - self.newest).min(SLOTS as i64);
            for k in 1..=steps {
                let index = (self.newest + k).rem_euclid(SLOTS as i64) as usize;
                self.buckets[index] = 0;
            }
            self.newest = slot;
        }
        // An event older than the newest slot (clock skew between PBX reports) counts in
        // the newest bucket rather than being lost.
        self.newest.rem_euclid(SLOTS as i64) as usize
    }

    pub fn add(&mut self, window_s: u64, now: i64, amount: u64) {
        let index = self.advance(window_s, now);
        self.buckets[index] = self.buckets[index].saturating_add(amount);
    }

    /// The sum over the window ending at `now`.
    pub fn sum(&self, window_s: u64, now: i64) -> u64 {
        let slot = now.div_euclid(slot_width(window_s));
        let age = slot - self.newest;
        if age >= SLOTS as i64 {
            return 0;
        }
        if age <= 0 {
            return self.buckets.iter().sum();
        }
        // Buckets newest-age+1 ..= newest are still inside the window.
        (0..(SLOTS as i64 - age))
            .map(|k| self.buckets[(self.newest - k).rem_euclid(SLOTS as i64) as usize])
            .sum()
    }

    pub fn is_idle(&self, window_s: u64, now: i64) -> bool {
        self.sum(window_s, now) == 0
    }
}

/// Recent destinations (hashed) with their time, newest last, at most [`RECENT_CAP`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recent {
    entries: VecDeque<(i64, u64)>,
}

impl Recent {
    pub fn add(&mut self, window_s: u64, now: i64, destination: u64) {
        self.expire(window_s, now);
        if self.entries.len() >= RECENT_CAP {
            self.entries.pop_front();
        }
        self.entries.push_back((now, destination));
    }

    fn expire(&mut self, window_s: u64, now: i64) {
        let oldest = now - window_s as i64;
        while self.entries.front().is_some_and(|(t, _)| *t <= oldest) {
            self.entries.pop_front();
        }
    }

    fn live(&self, window_s: u64, now: i64) -> impl Iterator<Item = u64> + '_ {
        let oldest = now - window_s as i64;
        self.entries
            .iter()
            .filter(move |(t, _)| *t > oldest)
            .map(|(_, d)| *d)
    }

    pub fn distinct(&self, window_s: u64, now: i64) -> u64 {
        let mut seen: Vec<u64> = self.live(window_s, now).collect();
        seen.sort_unstable();
        seen.dedup();
        seen.len() as u64
    }

    /// The most calls to any one destination inside the window.
    pub fn most_repeated(&self, window_s: u64, now: i64) -> u64 {
        let mut seen: Vec<u64> = self.live(window_s, now).collect();
        seen.sort_unstable();
        let mut best = 0u64;
        let mut run = 0u64;
        let mut last = None;
        for d in seen {
            if Some(d) == last {
                run += 1;
            } else {
                run = 1;
                last = Some(d);
            }
            best = best.max(run);
        }
        best
    }

    pub fn is_idle(&self, window_s: u64, now: i64) -> bool {
        self.live(window_s, now).next().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_sums_inside_the_window_and_forgets_what_slid_out() {
        let mut ring = Ring::default();
        let w = 600; // 50 s slots
        ring.add(w, 1000, 3);
        ring.add(w, 1100, 2);
        assert_eq!(ring.sum(w, 1100), 5);
        // 1000 is in slot 20; at 1599 (slot 31) slot 20 is still inside (31-11=20).
        assert_eq!(ring.sum(w, 1599), 5);
        // At 1600 (slot 32) slot 20 slid out; 1100 (slot 22) stays.
        assert_eq!(ring.sum(w, 1600), 2);
        assert_eq!(ring.sum(w, 1800), 0);
        ring.add(w, 5000, 1);
        assert_eq!(ring.sum(w, 5000), 1, "a long gap clears every bucket");
        assert!(ring.is_idle(w, 6000));
    }

    #[test]
    fn ring_counts_a_late_event_in_the_newest_bucket() {
        let mut ring = Ring::default();
        ring.add(60, 1000, 1);
        ring.add(60, 990, 1);
        assert_eq!(ring.sum(60, 1000), 2);
    }

    #[test]
    fn recent_counts_distinct_and_repeated_within_the_window() {
        let mut recent = Recent::default();
        for (t, d) in [(0, 1), (10, 2), (20, 1), (30, 1), (40, 3)] {
            recent.add(100, t, d);
        }
        assert_eq!(recent.distinct(100, 40), 3);
        assert_eq!(recent.most_repeated(100, 40), 3);
        // At 115 the calls at 0 and 10 are out.
        assert_eq!(recent.distinct(100, 115), 2);
        assert_eq!(recent.most_repeated(100, 115), 2);
        assert!(recent.is_idle(100, 200));
    }

    #[test]
    fn recent_is_capped() {
        let mut recent = Recent::default();
        for d in 0..(RECENT_CAP as u64 + 100) {
            recent.add(3600, 1, d);
        }
        assert_eq!(recent.distinct(3600, 1), RECENT_CAP as u64);
    }
}
