//! The dry-run backend: logs what a real backend would do, and remembers the bans in memory so
//! that listing and reconciling behave as with a real one. For trying a policy on live traffic
//! before letting it block anyone.

use chrono::{DateTime, Utc};
use ipnet::IpNet;

use crate::{canonical, BanEntry, EnforceError, Firewall, Lifetime, Listing, Memory};

const BACKEND: &str = "dry-run";

/// The dry-run adapter.
#[derive(Debug)]
pub struct DryRun {
    memory: Memory,
    clock: fn() -> DateTime<Utc>,
}

impl Default for DryRun {
    fn default() -> Self {
        Self::new()
    }
}

impl DryRun {
    pub fn new() -> Self {
        Self {
            memory: Memory::default(),
            clock: Utc::now,
        }
    }

    /// Replaces the clock that [`Firewall::list`] measures remaining time against.
    pub fn with_clock(mut self, clock: fn() -> DateTime<Utc>) -> Self {
        self.clock = clock;
        self
    }
}

impl Firewall for DryRun {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn setup(&mut self) -> Result<(), EnforceError> {
        tracing::info!(target: "tollgate::enforce", backend = BACKEND, "would set up the firewall");
        Ok(())
    }

    fn ban(&mut self, entry: &BanEntry, now: DateTime<Utc>) -> Result<(), EnforceError> {
        let net = canonical(entry.net);
        match entry.lifetime(now) {
            Lifetime::Expired => {
                tracing::debug!(target: "tollgate::enforce", backend = BACKEND, %net, "ban already expired, not applied");
            }
            lifetime => {
                let timeout = match lifetime {
                    Lifetime::Remaining(d) => format!("{}s", crate::ceil_secs(d)),
                    _ => "permanent".into(),
                };
                tracing::info!(target: "tollgate::enforce", backend = BACKEND, %net, %timeout,
                    rule = %entry.comment, "would ban");
                self.memory
                    .insert(net, entry.expires_at, entry.comment.clone());
            }
        }
        Ok(())
    }

    fn unban(&mut self, net: IpNet) -> Result<(), EnforceError> {
        let net = canonical(net);
        let held = self.memory.remove(&net);
        tracing::info!(target: "tollgate::enforce", backend = BACKEND, %net, held, "would unban");
        Ok(())
    }

    fn list(&mut self) -> Result<Listing, EnforceError> {
        Ok(self.memory.list((self.clock)()))
    }

    fn teardown(&mut self) -> Result<(), EnforceError> {
        tracing::info!(target: "tollgate::enforce", backend = BACKEND, "would remove the firewall");
        self.memory.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::time::Duration;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
    }

    fn later() -> DateTime<Utc> {
        t0() + chrono::Duration::seconds(100)
    }

    #[test]
    fn remembers_lists_expires_and_syncs() {
        let mut fw = DryRun::new().with_clock(t0);
        let ban = |s: &str, secs: Option<i64>| {
            BanEntry::new(
                s.parse().unwrap(),
                secs.map(|s| t0() + chrono::Duration::seconds(s)),
                "jail",
            )
        };
        fw.setup().unwrap();
        fw.ban(&ban("10.0.0.1/32", Some(60)), t0()).unwrap();
        fw.ban(&ban("10.0.1.7/24", Some(600)), t0()).unwrap();
        fw.ban(&ban("2001:db8::/64", None), t0()).unwrap();
        fw.ban(&ban("10.0.0.2/32", Some(0)), t0()).unwrap(); // expired: not applied
        let l = fw.list().unwrap();
        assert_eq!(l.len(), 3);
        assert!(l.contains(&(
            "10.0.1.0/24".parse().unwrap(),
            Some(Duration::from_secs(600))
        )));
        assert!(l.contains(&("2001:db8::/64".parse().unwrap(), None)));

        let mut fw = fw.with_clock(later);
        assert_eq!(fw.list().unwrap().len(), 2, "the 60 s ban has expired");

        let report = fw
            .sync(
                &[
                    ban("10.0.1.0/24", Some(600)),
                    ban("192.0.2.9/32", Some(300)),
                ],
                later(),
            )
            .unwrap();
        assert_eq!(report.added, ["192.0.2.9/32".parse::<IpNet>().unwrap()]);
        assert_eq!(report.removed, ["2001:db8::/64".parse::<IpNet>().unwrap()]);
        assert_eq!(report.unchanged, 1);
        fw.unban("192.0.2.9/32".parse().unwrap()).unwrap();
        fw.unban("192.0.2.9/32".parse().unwrap()).unwrap(); // absent: fine
        assert_eq!(fw.list().unwrap().len(), 1);
        fw.teardown().unwrap();
        assert!(fw.list().unwrap().is_empty());
    }
}
