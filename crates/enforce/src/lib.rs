//! Effects out: carrying the decision core's bans into the system's packet filter.
//!
//! The core decides *that* an address or network is banned, why and until when; it emits the
//! ban as data. This crate owns the translation of that data into a firewall's own terms and
//! nothing else: a [`Firewall`] adapter never decides whom to ban, it only applies, lifts, lists
//! and reconciles what it is given.
//!
//! Backends, all behind the [`Firewall`] trait (sync: the server calls it from a blocking task):
//!
//! - [`NftFirewall`] (the default): a table `inet tollgate` that tollgate owns, with timeout sets
//!   for single addresses and interval sets for networks, and drop rules for the SIP ports in a
//!   chain hooked before the other firewalls. Driven by the `nft` program.
//! - [`IpsetFirewall`]: `hash:net` ipsets with per-entry timeouts and an iptables/ip6tables
//!   chain that drops the SIP ports from them.
//! - [`CommandHook`]: user-configured programs (argv templates, no shell) run per ban and unban.
//! - [`DryRun`]: logs what it would do and remembers bans in memory.
//!
//! [`render_baseline`] prints a baseline nftables ruleset that opens SIP and RTP to trusted
//! networks only.
//!
//! # Invariants
//!
//! - Every script or argv built here is made of [`IpNet`] values, numbers, identifiers checked
//!   at construction and comments reduced to a safe charset ([`sanitize_comment`]); no raw string
//!   from outside ever reaches `nft`, `ipset` or a hook as syntax.
//! - No shell is ever involved: programs are started with their argv.
//! - Networks are handled in their [`canonical`] form (host bits cleared, IPv4-mapped IPv6 as
//!   IPv4), so a ban, its listing and its unban name the same element.

mod baseline;
mod dryrun;
mod error;
mod exec;
mod hook;
mod ipset;
mod nft;
mod plan;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

pub use baseline::{render_baseline, BASELINE_TABLE};
pub use dryrun::DryRun;
pub use error::EnforceError;
pub use hook::{CommandHook, HookConfig};
pub use ipset::{IpsetConfig, IpsetFirewall};
pub use nft::{NftConfig, NftFirewall, RuleCounter};

/// The ports a ban applies to unless configured otherwise: SIP over UDP/TCP and SIP over TLS.
pub const DEFAULT_PORTS: [u16; 2] = [5060, 5061];

/// One ban to apply: the data the decision core emits, reduced to what a firewall needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanEntry {
    /// A single address (/32, /128) or an aggregated network (/24, /64, ...).
    pub net: IpNet,
    /// `None`: until lifted by hand.
    pub expires_at: Option<DateTime<Utc>>,
    /// The rule that caused the ban; shown as the element's comment where the backend has one
    /// (after [`sanitize_comment`]).
    pub comment: String,
}

/// How long a ban still has to run at some instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Lifetime {
    /// Its expiry is at or before the instant: there is nothing to block.
    Expired,
    /// Runs for this long (rounded up to whole milliseconds, at least 1 ms).
    Remaining(Duration),
    /// Runs until lifted by hand.
    Permanent,
}

impl BanEntry {
    pub fn new(net: IpNet, expires_at: Option<DateTime<Utc>>, comment: impl Into<String>) -> Self {
        Self {
            net,
            expires_at,
            comment: comment.into(),
        }
    }

    /// The ban's lifetime at `now`: what a backend turns into the element's own timeout.
    pub fn lifetime(&self, now: DateTime<Utc>) -> Lifetime {
        let Some(at) = self.expires_at else {
            return Lifetime::Permanent;
        };
        match (at - now).to_std() {
            // Rounded up so that a ban never ends before its expiry.
            Ok(d) if !d.is_zero() => {
                let ms = d.as_nanos().div_ceil(1_000_000);
                Lifetime::Remaining(Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX)))
            }
            _ => Lifetime::Expired,
        }
    }
}

/// What one backend holds: each network with its remaining timeout (`None`: permanent).
pub type Listing = Vec<(IpNet, Option<Duration>)>;

/// A firewall adapter. It translates bans into its backend's terms; it never decides.
pub trait Firewall: Send {
    /// Short name for logs and metrics ("nftables", "ipset", "command", "dry-run").
    fn name(&self) -> &'static str;

    /// Creates what the backend owns (table, sets, chain and rules; ipsets and the iptables
    /// chain), idempotently: running it again keeps the bans already applied.
    fn setup(&mut self) -> Result<(), EnforceError>;

    /// Applies one ban; the element's own timeout is `expires_at - now`. Banning a network
    /// already held replaces its timeout. An entry already expired at `now` is not applied.
    fn ban(&mut self, entry: &BanEntry, now: DateTime<Utc>) -> Result<(), EnforceError>;

    /// Applies several bans, in one backend transaction where the backend has them (nftables:
    /// all or none). When one network appears twice, the longer-lived entry wins.
    fn ban_many(&mut self, entries: &[BanEntry], now: DateTime<Utc>) -> Result<(), EnforceError> {
        for entry in plan::dedup(entries, now) {
            self.ban(&entry, now)?;
        }
        Ok(())
    }

    /// Lifts a ban. A network the backend does not hold is not an error.
    fn unban(&mut self, net: IpNet) -> Result<(), EnforceError>;

    /// Lifts several bans, in one backend transaction where the backend has them.
    fn unban_many(&mut self, nets: &[IpNet]) -> Result<(), EnforceError> {
        for net in nets {
            self.unban(*net)?;
        }
        Ok(())
    }

    /// What the backend holds now, with remaining timeouts (`None`: permanent).
    fn list(&mut self) -> Result<Listing, EnforceError>;

    /// Makes the backend hold exactly `bans` (adds missing, refreshes timeouts that differ,
    /// removes extras), e.g. at start after restoring bans from the database, or periodically.
    ///
    /// Entries that the backend refuses one by one (see [`EnforceError::is_entry_specific`])
    /// are reported in [`SyncReport::failed`]; any other failure aborts the sync.
    fn sync(&mut self, bans: &[BanEntry], now: DateTime<Utc>) -> Result<SyncReport, EnforceError> {
        let current = self.list()?;
        let plan = plan::plan(bans, &current, now, self.max_timeout());
        plan::apply(self, plan, now)
    }

    /// Removes what [`setup`](Firewall::setup) created, bans included. Idempotent.
    fn teardown(&mut self) -> Result<(), EnforceError>;

    /// The longest timeout the backend can hold; longer bans are applied with this one (and
    /// a periodic [`sync`](Firewall::sync) re-arms them before they lapse).
    fn max_timeout(&self) -> Option<Duration> {
        None
    }
}

/// What a [`Firewall::sync`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    /// Networks that were missing and are now held.
    pub added: Vec<IpNet>,
    /// Networks held with another timeout (or permanence), now re-applied.
    pub updated: Vec<IpNet>,
    /// Networks held but not asked for, now removed.
    pub removed: Vec<IpNet>,
    /// Networks held as asked.
    pub unchanged: usize,
    /// Entries skipped because they had expired at `now`.
    pub expired: usize,
    /// Entries the backend refused, with why.
    pub failed: Vec<SyncFailure>,
}

/// One entry a [`Firewall::sync`] could not apply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SyncFailure {
    pub net: IpNet,
    pub error: String,
}

/// Which backend to build, with its configuration.
#[derive(Clone, Debug)]
pub enum Backend {
    Nftables(NftConfig),
    Ipset(IpsetConfig),
    Command(HookConfig),
    DryRun,
}

/// Builds the configured backend, validating its configuration.
pub fn build(backend: Backend) -> Result<Box<dyn Firewall>, EnforceError> {
    Ok(match backend {
        Backend::Nftables(cfg) => Box::new(NftFirewall::new(cfg)?),
        Backend::Ipset(cfg) => Box::new(IpsetFirewall::new(cfg)?),
        Backend::Command(cfg) => Box::new(CommandHook::new(cfg)?),
        Backend::DryRun => Box::new(DryRun::new()),
    })
}

/// The form in which every backend stores a network: host bits cleared, and an IPv4-mapped
/// IPv6 network (`::ffff:a.b.c.d/ >= 96`) as the IPv4 network it stands for, because the packet
/// filter sees those packets as IPv4.
pub fn canonical(net: IpNet) -> IpNet {
    match net {
        IpNet::V4(n) => IpNet::V4(n.trunc()),
        IpNet::V6(n) => match n.addr().to_ipv4_mapped() {
            Some(v4) if n.prefix_len() >= 96 => Ipv4Net::new(v4, n.prefix_len() - 96)
                .map(|n| IpNet::V4(n.trunc()))
                .unwrap_or(IpNet::V6(n.trunc())),
            _ => IpNet::V6(n.trunc()),
        },
    }
}

/// True when `net` is a single address (/32 or /128).
pub fn is_host(net: &IpNet) -> bool {
    net.prefix_len() == net.max_prefix_len()
}

/// The network of one address.
pub fn host_net(ip: IpAddr) -> IpNet {
    match ip {
        IpAddr::V4(a) => IpNet::V4(Ipv4Net::from(a)),
        IpAddr::V6(a) => IpNet::V6(Ipv6Net::from(a)),
    }
}

/// The longest comment kept; nftables allows 128 bytes, ipset 255.
pub const COMMENT_MAX: usize = 64;

/// Reduces a rule name to characters that are inert in an nft script, an ipset restore line and
/// an argv (letters, digits, space and `_ . , : = + @ / ( ) -`), at most [`COMMENT_MAX`] bytes.
/// Other characters are dropped, whitespace runs become one space.
pub fn sanitize_comment(comment: &str) -> String {
    let mut out = String::with_capacity(comment.len().min(COMMENT_MAX));
    for c in comment.chars() {
        if out.len() >= COMMENT_MAX {
            break;
        }
        if c.is_whitespace() {
            if !out.is_empty() && !out.ends_with(' ') {
                out.push(' ');
            }
        } else if c.is_ascii_alphanumeric() || "_.,:=+@/()-".contains(c) {
            out.push(c);
        }
    }
    out.trim_end().to_string()
}

/// Formats a duration the way `nft` reads it (`1d2h3m4s5ms`): each number stays below 2^32,
/// which `nft` requires (a plain `3153600000000ms` is "value too large").
pub(crate) fn nft_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    let mut out = String::new();
    for (unit, len) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms >= len {
            out.push_str(&format!("{}{unit}", ms / len));
            ms %= len;
        }
    }
    if ms > 0 || out.is_empty() {
        out.push_str(&format!("{ms}ms"));
    }
    out
}

/// Rounds up to whole seconds (ipset's and a hook's unit), at least 1.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.max(1)
}

/// In-memory record of applied bans, for the backends that cannot list (hook, dry-run).
#[derive(Debug, Default)]
pub(crate) struct Memory {
    bans: BTreeMap<IpNet, (Option<DateTime<Utc>>, String)>,
}

impl Memory {
    pub fn insert(&mut self, net: IpNet, expires_at: Option<DateTime<Utc>>, comment: String) {
        self.bans.insert(net, (expires_at, comment));
    }

    pub fn remove(&mut self, net: &IpNet) -> bool {
        self.bans.remove(net).is_some()
    }

    pub fn clear(&mut self) {
        self.bans.clear();
    }

    /// What is held at `now`, forgetting what has expired.
    pub fn list(&mut self, now: DateTime<Utc>) -> Listing {
        self.bans.retain(|_, (at, _)| at.is_none_or(|at| at > now));
        self.bans
            .iter()
            .map(|(net, (at, comment))| {
                let entry = BanEntry::new(*net, *at, comment.clone());
                let remaining = match entry.lifetime(now) {
                    Lifetime::Remaining(d) => Some(d),
                    _ => None,
                };
                (*net, remaining)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn canonical_clears_host_bits_and_unmaps_ipv4() {
        assert_eq!(canonical(net("10.1.2.3/24")), net("10.1.2.0/24"));
        assert_eq!(canonical(net("::ffff:10.1.2.3/128")), net("10.1.2.3/32"));
        assert_eq!(canonical(net("::ffff:10.1.2.3/120")), net("10.1.2.0/24"));
        assert_eq!(canonical(net("2001:db8::1/64")), net("2001:db8::/64"));
        // Shorter than /96 is not an IPv4 network any more.
        assert_eq!(canonical(net("::ffff:10.0.0.1/95")), net("::fffe:0:0/95"));
    }

    #[test]
    fn lifetime_rounds_up_and_knows_expired_and_permanent() {
        let now = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
        let e = |at: Option<DateTime<Utc>>| BanEntry::new(net("10.0.0.1/32"), at, "r");
        assert_eq!(e(None).lifetime(now), Lifetime::Permanent);
        assert_eq!(e(Some(now)).lifetime(now), Lifetime::Expired);
        assert_eq!(
            e(Some(now - chrono::Duration::seconds(1))).lifetime(now),
            Lifetime::Expired
        );
        assert_eq!(
            e(Some(now + chrono::Duration::microseconds(1))).lifetime(now),
            Lifetime::Remaining(Duration::from_millis(1))
        );
        assert_eq!(
            e(Some(now + chrono::Duration::seconds(90))).lifetime(now),
            Lifetime::Remaining(Duration::from_secs(90))
        );
    }

    #[test]
    fn comments_keep_a_safe_charset_and_length() {
        assert_eq!(sanitize_comment("jail sip-auth"), "jail sip-auth");
        assert_eq!(
            sanitize_comment("x\"; flush ruleset; #\n\t$y {}"),
            "x flush ruleset y"
        );
        assert_eq!(sanitize_comment(&"a".repeat(500)).len(), COMMENT_MAX);
        assert_eq!(sanitize_comment("  \u{7}\u{0}  "), "");
        assert_eq!(sanitize_comment("é-ü"), "-");
    }

    #[test]
    fn nft_durations_keep_each_number_small() {
        assert_eq!(nft_duration(Duration::from_millis(1)), "1ms");
        assert_eq!(
            nft_duration(Duration::from_millis(90_061_005)),
            "1d1h1m1s5ms"
        );
        assert_eq!(nft_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(nft_duration(Duration::from_secs(36_500 * 86_400)), "36500d");
        assert_eq!(nft_duration(Duration::ZERO), "0ms");
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1001)), 2);
        assert_eq!(ceil_secs(Duration::from_secs(7)), 7);
    }
}
