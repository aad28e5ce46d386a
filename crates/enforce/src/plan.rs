//! Reconciliation: from the bans asked for and what a backend holds, the adds, refreshes and
//! removals that make the backend hold exactly the former. Pure, so it is tested without a
//! firewall; [`apply`] then runs the plan through any [`Firewall`].

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ipnet::IpNet;

use crate::{
    canonical, BanEntry, EnforceError, Firewall, Lifetime, Listing, SyncFailure, SyncReport,
};

/// How far a held timeout may be from the wanted one and still count as the same ban.
/// nftables' JSON and ipset list whole seconds (truncated), and a sync takes some
/// milliseconds between its listing and its check, so 1 s would flap.
pub(crate) const TOLERANCE: Duration = Duration::from_secs(2);

/// The changes that make a backend hold exactly what was asked.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    pub add: Vec<BanEntry>,
    pub update: Vec<BanEntry>,
    pub remove: Vec<IpNet>,
    pub unchanged: usize,
    pub expired: usize,
}

/// The live entries of `entries` in canonical form, one per network: when a network appears
/// twice the longer-lived entry wins, because the address is blocked while any ban on it runs.
pub(crate) fn dedup(entries: &[BanEntry], now: DateTime<Utc>) -> Vec<BanEntry> {
    dedup_counting(entries, now).0
}

fn dedup_counting(entries: &[BanEntry], now: DateTime<Utc>) -> (Vec<BanEntry>, usize) {
    let mut by_net: BTreeMap<IpNet, BanEntry> = BTreeMap::new();
    let mut expired = 0;
    for entry in entries {
        if entry.lifetime(now) == Lifetime::Expired {
            expired += 1;
            continue;
        }
        let net = canonical(entry.net);
        let entry = BanEntry {
            net,
            ..entry.clone()
        };
        match by_net.get(&net) {
            Some(held) if held.lifetime(now) >= entry.lifetime(now) => {}
            _ => {
                by_net.insert(net, entry);
            }
        }
    }
    (by_net.into_values().collect(), expired)
}

/// Compares what is asked (`bans` at `now`) with what is held (`current`). `max` is the
/// longest timeout the backend can hold: a longer ban held at `max` counts as unchanged.
pub(crate) fn plan(
    bans: &[BanEntry],
    current: &Listing,
    now: DateTime<Utc>,
    max: Option<Duration>,
) -> Plan {
    let (wanted, expired) = dedup_counting(bans, now);
    let held: BTreeMap<IpNet, Option<Duration>> = current
        .iter()
        .map(|(net, t)| (canonical(*net), *t))
        .collect();
    let mut plan = Plan {
        expired,
        ..Plan::default()
    };
    for entry in wanted.iter() {
        match held.get(&entry.net) {
            None => plan.add.push(entry.clone()),
            Some(t) if same(*t, entry.lifetime(now), max) => plan.unchanged += 1,
            Some(_) => plan.update.push(entry.clone()),
        }
    }
    let wanted_nets: std::collections::BTreeSet<IpNet> = wanted.iter().map(|e| e.net).collect();
    plan.remove = held
        .keys()
        .filter(|net| !wanted_nets.contains(net))
        .copied()
        .collect();
    plan
}

fn same(held: Option<Duration>, want: Lifetime, max: Option<Duration>) -> bool {
    match (held, want) {
        (None, Lifetime::Permanent) => true,
        (Some(h), Lifetime::Remaining(w)) => {
            let w = max.map_or(w, |m| w.min(m));
            h.abs_diff(w) <= TOLERANCE
        }
        _ => false,
    }
}

/// Runs `plan` through `fw`: removals first (so that a network replaced by a narrower one
/// frees its interval), then adds and refreshes, each as one batch. When a batch is refused,
/// its entries are retried one by one so that a single bad entry does not hold back the rest.
pub(crate) fn apply<F: Firewall + ?Sized>(
    fw: &mut F,
    plan: Plan,
    now: DateTime<Utc>,
) -> Result<SyncReport, EnforceError> {
    let mut report = SyncReport {
        unchanged: plan.unchanged,
        expired: plan.expired,
        ..SyncReport::default()
    };
    if !plan.remove.is_empty() {
        match fw.unban_many(&plan.remove) {
            Ok(()) => report.removed = plan.remove,
            Err(e) if retryable(&e) => {
                for net in plan.remove {
                    match fw.unban(net) {
                        Ok(()) => report.removed.push(net),
                        Err(e) if e.is_entry_specific() => report.failed.push(SyncFailure {
                            net,
                            error: e.to_string(),
                        }),
                        Err(e) => return Err(e),
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
    let n_add = plan.add.len();
    let entries: Vec<BanEntry> = plan.add.into_iter().chain(plan.update).collect();
    if entries.is_empty() {
        return Ok(report);
    }
    let mut applied = vec![false; entries.len()];
    match fw.ban_many(&entries, now) {
        Ok(()) => applied.iter_mut().for_each(|a| *a = true),
        Err(e) if retryable(&e) => {
            for (i, entry) in entries.iter().enumerate() {
                match fw.ban(entry, now) {
                    Ok(()) => applied[i] = true,
                    Err(e) if e.is_entry_specific() => report.failed.push(SyncFailure {
                        net: entry.net,
                        error: e.to_string(),
                    }),
                    Err(e) => return Err(e),
                }
            }
        }
        Err(e) => return Err(e),
    }
    for (i, entry) in entries.iter().enumerate() {
        if applied[i] {
            if i < n_add {
                report.added.push(entry.net);
            } else {
                report.updated.push(entry.net);
            }
        }
    }
    Ok(report)
}

/// A batch error worth retrying entry by entry: a refusal of some entry, or a command failure
/// whose cause may be one entry. Spawn failures and timeouts would fail every retry too.
fn retryable(e: &EnforceError) -> bool {
    e.is_entry_specific() || matches!(e, EnforceError::Command { .. })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
    }

    fn ban(s: &str, secs: Option<i64>) -> BanEntry {
        BanEntry::new(
            net(s),
            secs.map(|s| now() + chrono::Duration::seconds(s)),
            "jail sip",
        )
    }

    #[test]
    fn adds_missing_refreshes_changed_removes_extras() {
        let bans = [
            ban("10.0.0.1/32", Some(600)),    // held as asked
            ban("10.0.1.0/24", Some(600)),    // missing
            ban("2001:db8::/64", Some(3600)), // held with another timeout
            ban("10.0.0.9/32", None),         // held with a timeout, wanted permanent
            ban("10.0.0.7/32", Some(-5)),     // expired
        ];
        let current: Listing = vec![
            (net("10.0.0.1/32"), Some(Duration::from_secs(599))),
            (net("2001:db8::/64"), Some(Duration::from_secs(60))),
            (net("10.0.0.9/32"), Some(Duration::from_secs(60))),
            (net("192.0.2.1/32"), None), // extra
        ];
        let p = plan(&bans, &current, now(), None);
        assert_eq!(
            p.add.iter().map(|e| e.net).collect::<Vec<_>>(),
            [net("10.0.1.0/24")]
        );
        assert_eq!(
            p.update.iter().map(|e| e.net).collect::<Vec<_>>(),
            [net("10.0.0.9/32"), net("2001:db8::/64")]
        );
        assert_eq!(p.remove, [net("192.0.2.1/32")]);
        assert_eq!((p.unchanged, p.expired), (1, 1));
    }

    #[test]
    fn the_longer_lived_duplicate_wins_and_nets_are_canonical() {
        let bans = [
            ban("10.0.0.1/24", Some(60)),
            ban("10.0.0.0/24", Some(600)),
            ban("::ffff:10.0.0.5/128", Some(60)),
            ban("10.0.0.5/32", None),
            ban("10.0.0.5/32", Some(60)),
        ];
        let d = dedup(&bans, now());
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].net, net("10.0.0.0/24"));
        assert_eq!(
            d[0].expires_at,
            Some(now() + chrono::Duration::seconds(600))
        );
        assert_eq!(d[1].net, net("10.0.0.5/32"));
        assert_eq!(d[1].expires_at, None);
    }

    #[test]
    fn a_ban_longer_than_the_backend_can_hold_counts_as_held_at_the_maximum() {
        let max = Duration::from_secs(2_147_483);
        let bans = [ban("10.0.0.1/32", Some(90 * 86_400))];
        let current: Listing = vec![(net("10.0.0.1/32"), Some(max - Duration::from_secs(1)))];
        assert_eq!(plan(&bans, &current, now(), Some(max)).unchanged, 1);
        assert_eq!(plan(&bans, &current, now(), None).update.len(), 1);
    }

    #[test]
    fn timeouts_within_the_tolerance_are_unchanged() {
        let bans = [ban("10.0.0.1/32", Some(100))];
        for (held, unchanged) in [(98, 1), (102, 1), (97, 0), (103, 0)] {
            let current: Listing = vec![(net("10.0.0.1/32"), Some(Duration::from_secs(held)))];
            assert_eq!(
                plan(&bans, &current, now(), None).unchanged,
                unchanged,
                "{held}"
            );
        }
    }
}
