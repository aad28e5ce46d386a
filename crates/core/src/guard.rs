//! The intrusion guard: fail2ban-style jails over registration failures, scanner and
//! extension-enumeration detection, Pike-style flood detection over a prefix tree, and
//! registration source restriction. Pure like the rest of the core: events and time in,
//! [`GuardAction`]s out; adapters apply bans to the firewall and the store.
//!
//! INVARIANT: an allowlisted address is never banned, whatever rule fires.
//! INVARIANT: memory is bounded: failure windows keep at most `maxretry` entries per
//! target, enumeration windows at most `distinct_users` names per address, and the
//! tracked targets and flood-tree nodes are capped (oldest evicted first).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};
use ipnet::IpNet;

use crate::guard_event::{AuthEvent, AuthOutcome};
use crate::policy::Extension;

/// A fail2ban-style jail: `maxretry` failures within `findtime` ban for `bantime`; each
/// repeat offense multiplies the ban by `bantime_factor`, up to `bantime_max`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Jail {
    pub name: String,
    pub maxretry: u32,
    pub findtime_s: u64,
    pub bantime_s: u64,
    pub bantime_factor: u32,
    pub bantime_max_s: u64,
}

/// Many distinct user names tried from one address within `findtime`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnumerationRule {
    pub distinct_users: u32,
    pub findtime_s: u64,
    pub bantime_s: u64,
}

/// Pike-style flood detection: more than `density` requests from one address, or more
/// than `subnet_density` from one IPv4 /24 or IPv6 /64, within `window_s`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PikeRule {
    pub window_s: u64,
    pub density: u64,
    pub subnet_density: u64,
    pub bantime_s: u64,
    /// Most prefix-tree nodes kept; idle nodes expire after two windows.
    pub max_nodes: usize,
}

/// A known scanner User-Agent (matched case-insensitively as a substring).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ScannerAgent {
    pub pattern: String,
    pub reason: String,
}

/// The shipped list: `pattern,reason` lines, `#` comments.
pub const BUILTIN_SCANNERS: &str = include_str!("../data/scanner-user-agents.csv");

/// Parses the shipped scanner list.
pub fn builtin_scanners() -> Vec<ScannerAgent> {
    BUILTIN_SCANNERS
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(','))
        .map(|(p, r)| ScannerAgent {
            pattern: p.trim().to_ascii_lowercase(),
            reason: r.trim().to_string(),
        })
        .collect()
}

/// The guard's settings, from the policy's `[guard]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuardPolicy {
    pub jails: Vec<Jail>,
    pub allowlist: Vec<IpNet>,
    pub scanners: Vec<ScannerAgent>,
    pub scanner_bantime_s: u64,
    pub enumeration: Option<EnumerationRule>,
    pub pike: Option<PikeRule>,
    /// Prefix length bans and failure counts apply to: 32 (one address) or 24 for IPv4.
    pub aggregate_v4: u8,
    /// 128 or 64 for IPv6.
    pub aggregate_v6: u8,
    /// A repeat offense counts if the previous ban of the target started within this.
    pub offense_memory_s: u64,
    /// Most targets with failures tracked at once.
    pub max_tracked: usize,
    /// Refuse registrations from outside an extension's `allowed_cidrs`.
    pub enforce_registration_cidrs: bool,
}

impl Default for GuardPolicy {
    fn default() -> Self {
        GuardPolicy {
            jails: vec![Jail {
                name: "sip-auth".into(),
                maxretry: 5,
                findtime_s: 600,
                bantime_s: 3600,
                bantime_factor: 2,
                bantime_max_s: 7 * 86_400,
            }],
            allowlist: Vec::new(),
            scanners: builtin_scanners(),
            scanner_bantime_s: 86_400,
            enumeration: Some(EnumerationRule {
                distinct_users: 10,
                findtime_s: 600,
                bantime_s: 86_400,
            }),
            pike: Some(PikeRule {
                window_s: 2,
                density: 60,
                subnet_density: 300,
                bantime_s: 600,
                max_nodes: 200_000,
            }),
            aggregate_v4: 32,
            aggregate_v6: 128,
            offense_memory_s: 7 * 86_400,
            max_tracked: 100_000,
            enforce_registration_cidrs: true,
        }
    }
}

/// A ban: what, why (rule and figures), the events that caused it, and until when.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Ban {
    pub target: IpNet,
    /// "jail sip-auth", "scanner", "enumeration", "pike", "manual" ...
    pub rule: String,
    /// The figures: "5 failures within 600 s (maxretry 5)".
    pub reason: String,
    /// The events that caused it, one line each.
    pub events: Vec<String>,
    pub banned_at: DateTime<Utc>,
    /// `None`: until lifted by hand.
    pub expires_at: Option<DateTime<Utc>>,
    /// 1 for a first offense, 2 for the second within the offense memory, ...
    pub offense: u32,
}

/// What the guard asks the adapters to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuardAction {
    Ban(Ban),
    Unban { target: IpNet, reason: String },
}

/// The answer to a registration event, for proxies that ask.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RegistrationVerdict {
    /// False when the source is outside the extension's networks or already banned.
    pub accepted: bool,
    pub reason: Option<String>,
    /// A ban this event caused or that already covers the source.
    pub ban: Option<Ban>,
}

#[derive(Clone, Debug)]
struct FailureWindow {
    /// At most `maxretry` of the latest failures: (time, summary).
    recent: VecDeque<(DateTime<Utc>, String)>,
    last_seen: DateTime<Utc>,
}

#[derive(Clone, Debug)]
struct NameWindow {
    /// Distinct user names with the last time each was tried, at most `distinct_users`.
    names: VecDeque<(DateTime<Utc>, String)>,
    last_seen: DateTime<Utc>,
}

/// Slots per sampling window: the rate is the sum of the last `SLOTS` slots, so a
/// report is forgotten within one slot (an eighth of the window) of leaving it.
const SLOTS: usize = 8;

#[derive(Clone, Copy, Debug)]
struct RateNode {
    slots: [u32; SLOTS],
    /// Absolute index (milliseconds since the epoch / slot length) of the newest slot.
    head: i64,
    last_seen: DateTime<Utc>,
}

impl RateNode {
    fn new(now: DateTime<Utc>, slot_ms: i64) -> RateNode {
        RateNode {
            slots: [0; SLOTS],
            head: now.timestamp_millis().div_euclid(slot_ms),
            last_seen: now,
        }
    }

    /// Adds `count` at `now` and returns the requests within the last window.
    fn add(&mut self, now: DateTime<Utc>, slot_ms: i64, count: u64) -> u64 {
        let index = now.timestamp_millis().div_euclid(slot_ms);
        if index > self.head {
            let stale = (index - self.head).min(SLOTS as i64);
            for step in 1..=stale {
                self.slots[(self.head + step).rem_euclid(SLOTS as i64) as usize] = 0;
            }
            self.head = index;
        }
        // A report older than the window (clock skew) counts in the newest slot.
        let slot = index.min(self.head).max(self.head - SLOTS as i64 + 1);
        let cell = &mut self.slots[slot.rem_euclid(SLOTS as i64) as usize];
        *cell = cell.saturating_add(u32::try_from(count).unwrap_or(u32::MAX));
        self.last_seen = now;
        self.slots.iter().map(|c| u64::from(*c)).sum()
    }
}

/// How long a ban lasts: `base_s`, times `factor` per earlier offense, at most `max_s`.
#[derive(Clone, Copy, Debug)]
struct BanTerms {
    base_s: u64,
    factor: u32,
    max_s: u64,
}

impl BanTerms {
    /// Rules without their own increment settings: doubled per repeat, at most 30 times.
    fn repeatable(base_s: u64) -> BanTerms {
        BanTerms {
            base_s,
            factor: 2,
            max_s: base_s.saturating_mul(30),
        }
    }
}

/// The guard's state.
#[derive(Clone, Debug)]
pub struct Guard {
    pub policy: GuardPolicy,
    /// Per jail, per target.
    failures: Vec<HashMap<IpNet, FailureWindow>>,
    names: HashMap<IpAddr, NameWindow>,
    /// The flood prefix tree, one level per map: hosts, then /24 (/64), then /16 (/48).
    tree: [HashMap<IpNet, RateNode>; 3],
    bans: HashMap<IpNet, Ban>,
    /// Target -> (offenses, start of the latest ban).
    offenses: HashMap<IpNet, (u32, DateTime<Utc>)>,
}

fn describe(event: &AuthEvent) -> String {
    let mut text = format!(
        "{} from {}",
        match event.outcome {
            AuthOutcome::Failure => "failed registration",
            AuthOutcome::Success => "registration",
            AuthOutcome::Challenge => "challenged registration",
        },
        event.ip
    );
    if let Some(port) = event.port {
        text += &format!(":{port}");
    }
    if let Some(t) = &event.transport {
        text += &format!("/{t}");
    }
    if let Some(user) = &event.user {
        text += &format!(" user {:?}", truncate(user, 64));
    }
    if let Some(ua) = &event.user_agent {
        text += &format!(" ua {:?}", truncate(ua, 64));
    }
    if !event.reason.is_empty() {
        text += &format!(": {}", truncate(&event.reason, 120));
    }
    text
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

fn seconds(s: u64) -> Duration {
    Duration::seconds(
        i64::try_from(s)
            .unwrap_or(i64::MAX / 1000)
            .min(100 * 365 * 86_400),
    )
}

impl fmt::Display for Ban {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} banned by {}: {}",
            self.target, self.rule, self.reason
        )
    }
}

impl Guard {
    pub fn new(policy: GuardPolicy) -> Guard {
        let jails = policy.jails.len();
        Guard {
            policy,
            failures: vec![HashMap::new(); jails],
            names: HashMap::new(),
            tree: Default::default(),
            bans: HashMap::new(),
            offenses: HashMap::new(),
        }
    }

    /// Rebuilds the guard from stored bans (active ones and recent history for repeat
    /// offenses).
    pub fn restore(
        policy: GuardPolicy,
        history: impl IntoIterator<Item = Ban>,
        now: DateTime<Utc>,
    ) -> Guard {
        let mut guard = Guard::new(policy);
        let memory = seconds(guard.policy.offense_memory_s);
        for ban in history {
            if now - ban.banned_at <= memory {
                let entry = guard
                    .offenses
                    .entry(ban.target)
                    .or_insert((0, ban.banned_at));
                entry.0 = entry.0.max(ban.offense);
                entry.1 = entry.1.max(ban.banned_at);
            }
            if ban.expires_at.is_none_or(|at| at > now) {
                guard.bans.insert(ban.target, ban);
            }
        }
        guard
    }

    /// The target a source counts under: the address, or its /24 or /64.
    pub fn target_of(&self, ip: IpAddr) -> IpNet {
        let ip = ip.to_canonical();
        let prefix = match ip {
            IpAddr::V4(_) => self.policy.aggregate_v4,
            IpAddr::V6(_) => self.policy.aggregate_v6,
        };
        IpNet::new(ip, prefix)
            .map(|n| n.trunc())
            .unwrap_or_else(|_| IpNet::from(ip))
    }

    pub fn is_allowlisted(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.policy.allowlist.iter().any(|n| n.contains(&ip))
    }

    /// The ban covering `ip`, if any and still running at `now`.
    pub fn ban_covering(&self, ip: IpAddr, now: DateTime<Utc>) -> Option<&Ban> {
        let ip = ip.to_canonical();
        let direct = self.bans.get(&IpNet::from(ip));
        direct
            .or_else(|| self.bans.get(&self.target_of(ip)))
            .or_else(|| {
                self.bans
                    .values()
                    .find(|b| b.target.contains(&ip))
                    .filter(|_| self.bans.len() < 10_000)
            })
            .filter(|b| b.expires_at.is_none_or(|at| at > now))
    }

    /// Bans in force, in no order.
    pub fn bans(&self) -> impl Iterator<Item = &Ban> {
        self.bans.values()
    }

    fn make_ban(
        &mut self,
        target: IpNet,
        rule: String,
        reason: String,
        events: Vec<String>,
        terms: BanTerms,
        now: DateTime<Utc>,
    ) -> Option<Ban> {
        let BanTerms {
            base_s,
            factor,
            max_s,
        } = terms;
        if self
            .policy
            .allowlist
            .iter()
            .any(|n| n.contains(&target.network()) || target.contains(&n.network()))
        {
            return None;
        }
        let memory = seconds(self.policy.offense_memory_s);
        let previous = match self.offenses.get(&target) {
            Some((count, last)) if now - *last <= memory => *count,
            _ => 0,
        };
        let offense = previous + 1;
        let mut duration_s = base_s;
        for _ in 0..previous.min(32) {
            duration_s = duration_s.saturating_mul(u64::from(factor.max(1)));
            if duration_s >= max_s {
                break;
            }
        }
        let duration_s = duration_s.min(max_s.max(base_s));
        let ban = Ban {
            target,
            rule,
            reason: if offense > 1 {
                format!("{reason}; offense {offense}: banned {duration_s} s")
            } else {
                format!("{reason}; banned {duration_s} s")
            },
            events,
            banned_at: now,
            expires_at: Some(now + seconds(duration_s)),
            offense,
        };
        self.offenses.insert(target, (offense, now));
        self.bans.insert(target, ban.clone());
        // A banned target starts afresh when the ban ends.
        for jail in &mut self.failures {
            jail.remove(&target);
        }
        Some(ban)
    }

    /// A registration or authentication attempt. `extensions` gives the extensions'
    /// allowed networks for the registration source restriction (only those the events
    /// name are needed).
    pub fn on_auth_event(
        &mut self,
        extensions: &HashMap<String, Extension>,
        event: &AuthEvent,
        now: DateTime<Utc>,
    ) -> (RegistrationVerdict, Vec<GuardAction>) {
        let ip = event.ip.to_canonical();
        let at = event.at.unwrap_or(now);
        let summary = format!("{} {}", at.format("%Y-%m-%dT%H:%M:%SZ"), describe(event));
        let mut actions = Vec::new();
        if let Some(ban) = self.ban_covering(ip, now) {
            return (
                RegistrationVerdict {
                    accepted: false,
                    reason: Some(format!("{} is banned ({}: {})", ip, ban.rule, ban.reason)),
                    ban: Some(ban.clone()),
                },
                actions,
            );
        }
        let allowlisted = self.is_allowlisted(ip);

        // Known scanners are banned at once.
        if let Some(ua) = &event.user_agent {
            let lower = ua.to_ascii_lowercase();
            if let Some(scanner) = self
                .policy
                .scanners
                .iter()
                .find(|s| lower.contains(&s.pattern))
                .cloned()
            {
                if !allowlisted {
                    let target = self.target_of(ip);
                    let bantime = self.policy.scanner_bantime_s;
                    if let Some(ban) = self.make_ban(
                        target,
                        "scanner".into(),
                        format!(
                            "User-Agent {:?} is a known scanner ({})",
                            truncate(ua, 64),
                            scanner.reason
                        ),
                        vec![summary.clone()],
                        BanTerms::repeatable(bantime),
                        now,
                    ) {
                        actions.push(GuardAction::Ban(ban.clone()));
                        return (
                            RegistrationVerdict {
                                accepted: false,
                                reason: Some(ban.reason.clone()),
                                ban: Some(ban),
                            },
                            actions,
                        );
                    }
                }
            }
        }

        // Registration source restriction: a success from outside the extension's
        // networks is refused and counts as a failure.
        let mut refused = None;
        let mut failure = event.outcome == AuthOutcome::Failure;
        if self.policy.enforce_registration_cidrs {
            if let Some(ext) = event.user.as_deref().and_then(|u| extensions.get(u)) {
                if !ext.allowed_cidrs.is_empty()
                    && !ext.allowed_cidrs.iter().any(|n| n.contains(&ip))
                {
                    let nets: Vec<String> =
                        ext.allowed_cidrs.iter().map(ToString::to_string).collect();
                    refused = Some(format!(
                        "extension {} may register only from {}, not {ip}",
                        ext.id,
                        nets.join(", ")
                    ));
                    failure = true;
                }
            }
        }
        let summary = match &refused {
            Some(r) => format!("{summary} (refused: {r})"),
            None => summary,
        };

        if failure && !allowlisted {
            // Jails.
            let target = self.target_of(ip);
            for index in 0..self.policy.jails.len() {
                let jail = self.policy.jails[index].clone();
                let findtime = seconds(jail.findtime_s);
                if self.failures[index].len() >= self.policy.max_tracked
                    && !self.failures[index].contains_key(&target)
                {
                    evict_oldest(&mut self.failures[index], now, findtime);
                }
                let window = self.failures[index]
                    .entry(target)
                    .or_insert_with(|| FailureWindow {
                        recent: VecDeque::new(),
                        last_seen: at,
                    });
                window.last_seen = at;
                window.recent.push_back((at, summary.clone()));
                while window.recent.len() > jail.maxretry as usize {
                    window.recent.pop_front();
                }
                while window
                    .recent
                    .front()
                    .is_some_and(|(t, _)| at - *t > findtime)
                {
                    window.recent.pop_front();
                }
                if window.recent.len() >= jail.maxretry as usize {
                    let events: Vec<String> =
                        window.recent.iter().map(|(_, s)| s.clone()).collect();
                    let first = window.recent.front().map(|(t, _)| *t).unwrap_or(at);
                    // Tenths of a second: a burst's failures are often under a second apart.
                    let span_ms = (at - first).num_milliseconds().max(0);
                    let span = format!("{}.{}", span_ms / 1000, (span_ms % 1000) / 100);
                    let reason = format!(
                        "{} failures in {span} s (maxretry {} within findtime {} s)",
                        events.len(),
                        jail.maxretry,
                        jail.findtime_s
                    );
                    if let Some(ban) = self.make_ban(
                        target,
                        format!("jail {}", jail.name),
                        reason,
                        events,
                        BanTerms {
                            base_s: jail.bantime_s,
                            factor: jail.bantime_factor,
                            max_s: jail.bantime_max_s,
                        },
                        now,
                    ) {
                        actions.push(GuardAction::Ban(ban));
                        break;
                    }
                }
            }
            // Enumeration: many distinct names from one address.
            if let (Some(rule), Some(user), true) = (
                self.policy.enumeration.clone(),
                event.user.as_deref(),
                actions.is_empty(),
            ) {
                let findtime = seconds(rule.findtime_s);
                if self.names.len() >= self.policy.max_tracked && !self.names.contains_key(&ip) {
                    let stale: Vec<IpAddr> = self
                        .names
                        .iter()
                        .filter(|(_, w)| now - w.last_seen > findtime)
                        .map(|(k, _)| *k)
                        .take(1024)
                        .collect();
                    for k in stale {
                        self.names.remove(&k);
                    }
                }
                let window = self.names.entry(ip).or_insert_with(|| NameWindow {
                    names: VecDeque::new(),
                    last_seen: at,
                });
                window.last_seen = at;
                let user = truncate(user, 64).to_string();
                window.names.retain(|(_, n)| *n != user);
                window.names.push_back((at, user));
                while window
                    .names
                    .front()
                    .is_some_and(|(t, _)| at - *t > findtime)
                {
                    window.names.pop_front();
                }
                while window.names.len() > rule.distinct_users as usize {
                    window.names.pop_front();
                }
                if window.names.len() >= rule.distinct_users as usize {
                    let tried: Vec<String> = window.names.iter().map(|(_, n)| n.clone()).collect();
                    let reason = format!(
                        "{} distinct user names tried within {} s (threshold {}): {}",
                        tried.len(),
                        rule.findtime_s,
                        rule.distinct_users,
                        tried.join(", ")
                    );
                    self.names.remove(&ip);
                    let target = self.target_of(ip);
                    if let Some(ban) = self.make_ban(
                        target,
                        "enumeration".into(),
                        reason,
                        vec![summary.clone()],
                        BanTerms::repeatable(rule.bantime_s),
                        now,
                    ) {
                        actions.push(GuardAction::Ban(ban));
                    }
                }
            }
        }
        let ban = actions.iter().find_map(|a| match a {
            GuardAction::Ban(b) => Some(b.clone()),
            GuardAction::Unban { .. } => None,
        });
        let accepted = refused.is_none() && ban.is_none() && event.outcome == AuthOutcome::Success;
        let reason = refused.or_else(|| ban.as_ref().map(|b| b.reason.clone()));
        (
            RegistrationVerdict {
                accepted,
                reason,
                ban,
            },
            actions,
        )
    }

    /// Per-address SIP request counts since the previous report (Pike-style flood
    /// detection over the prefix tree).
    pub fn on_request_counts(
        &mut self,
        counts: &[(IpAddr, u64)],
        now: DateTime<Utc>,
    ) -> Vec<GuardAction> {
        let Some(rule) = self.policy.pike.clone() else {
            return Vec::new();
        };
        let window_ms = i64::try_from(rule.window_s.saturating_mul(1000))
            .unwrap_or(i64::MAX)
            .max(1);
        let slot_ms = (window_ms / SLOTS as i64).max(1);
        let mut actions = Vec::new();
        for &(ip, count) in counts {
            let ip = ip.to_canonical();
            if self.is_allowlisted(ip) || self.ban_covering(ip, now).is_some() {
                continue;
            }
            let (subnet, wide) = match ip {
                IpAddr::V4(_) => (24, 16),
                IpAddr::V6(_) => (64, 48),
            };
            let nodes = [IpNet::from(ip), net_of(ip, subnet), net_of(ip, wide)];
            let thresholds = [
                rule.density,
                rule.subnet_density,
                rule.subnet_density.saturating_mul(4),
            ];
            for level in 0..3 {
                let node_count = self.tree.iter().map(HashMap::len).sum::<usize>();
                if node_count >= rule.max_nodes && !self.tree[level].contains_key(&nodes[level]) {
                    self.expire_tree(now, window_ms);
                    if self.tree.iter().map(HashMap::len).sum::<usize>() >= rule.max_nodes {
                        // Still full of live nodes: the busiest sources are already tracked.
                        continue;
                    }
                }
                let node = self.tree[level]
                    .entry(nodes[level])
                    .or_insert_with(|| RateNode::new(now, slot_ms));
                let rate = node.add(now, slot_ms, count);
                if rate > thresholds[level] {
                    let target = if level == 0 {
                        self.target_of(ip)
                    } else {
                        nodes[level]
                    };
                    let what = if level == 0 {
                        format!("{ip}")
                    } else {
                        format!("subnet {}", nodes[level])
                    };
                    let reason = format!(
                        "{rate} SIP requests from {what} within {} s (density {})",
                        rule.window_s, thresholds[level]
                    );
                    let events = vec![format!(
                        "{} {count} requests reported from {ip}",
                        now.format("%Y-%m-%dT%H:%M:%SZ")
                    )];
                    self.tree[level].remove(&nodes[level]);
                    if let Some(ban) = self.make_ban(
                        target,
                        "pike".into(),
                        reason,
                        events,
                        BanTerms::repeatable(rule.bantime_s),
                        now,
                    ) {
                        actions.push(GuardAction::Ban(ban));
                    }
                    break;
                }
            }
        }
        actions
    }

    fn expire_tree(&mut self, now: DateTime<Utc>, window_ms: i64) {
        for level in &mut self.tree {
            level.retain(|_, n| (now - n.last_seen).num_milliseconds() < 2 * window_ms);
        }
    }

    /// Nodes in the flood tree (for tests and metrics).
    pub fn tree_nodes(&self) -> usize {
        self.tree.iter().map(HashMap::len).sum()
    }

    /// Bans by hand (`None`: until lifted).
    pub fn ban_manual(
        &mut self,
        target: IpNet,
        duration_s: Option<u64>,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Ban, String> {
        let target = target.trunc();
        if self
            .policy
            .allowlist
            .iter()
            .any(|n| n.contains(&target.network()) || target.contains(&n.network()))
        {
            return Err(format!(
                "{target} overlaps the allowlist: remove it from [guard] allowlist first"
            ));
        }
        let offense = self.offenses.get(&target).map(|(c, _)| c + 1).unwrap_or(1);
        let ban = Ban {
            target,
            rule: "manual".into(),
            reason: if reason.is_empty() {
                "banned by hand".into()
            } else {
                reason.to_string()
            },
            events: Vec::new(),
            banned_at: now,
            expires_at: duration_s.map(|s| now + seconds(s)),
            offense,
        };
        self.offenses.insert(target, (offense, now));
        self.bans.insert(target, ban.clone());
        Ok(ban)
    }

    /// Lifts a ban by hand; returns it.
    pub fn unban(&mut self, target: IpNet) -> Option<Ban> {
        self.bans.remove(&target.trunc())
    }

    /// Ends bans whose time is up, and forgets stale windows.
    pub fn expire(&mut self, now: DateTime<Utc>) -> Vec<GuardAction> {
        let ended: Vec<IpNet> = self
            .bans
            .values()
            .filter(|b| b.expires_at.is_some_and(|at| at <= now))
            .map(|b| b.target)
            .collect();
        let mut actions = Vec::with_capacity(ended.len());
        for target in ended {
            if let Some(ban) = self.bans.remove(&target) {
                actions.push(GuardAction::Unban {
                    target,
                    reason: format!("ban by {} expired", ban.rule),
                });
            }
        }
        for (index, jail) in self.policy.jails.iter().enumerate() {
            let findtime = seconds(jail.findtime_s);
            self.failures[index].retain(|_, w| now - w.last_seen <= findtime);
        }
        if let Some(rule) = &self.policy.enumeration {
            let findtime = seconds(rule.findtime_s);
            self.names.retain(|_, w| now - w.last_seen <= findtime);
        }
        if let Some(rule) = &self.policy.pike {
            let window_ms = i64::try_from(rule.window_s.saturating_mul(1000))
                .unwrap_or(i64::MAX)
                .max(1);
            self.expire_tree(now, window_ms);
        }
        let memory = seconds(self.policy.offense_memory_s);
        self.offenses.retain(|_, (_, last)| now - *last <= memory);
        actions
    }

    /// Failures counted against a target per jail (for `logscan` and tests).
    pub fn failures_of(&self, target: IpNet) -> Vec<(String, usize)> {
        self.policy
            .jails
            .iter()
            .zip(&self.failures)
            .map(|(j, f)| {
                (
                    j.name.clone(),
                    f.get(&target).map(|w| w.recent.len()).unwrap_or(0),
                )
            })
            .collect()
    }
}

fn net_of(ip: IpAddr, prefix: u8) -> IpNet {
    IpNet::new(ip, prefix)
        .map(|n| n.trunc())
        .unwrap_or_else(|_| IpNet::from(ip))
}

fn evict_oldest(map: &mut HashMap<IpNet, FailureWindow>, now: DateTime<Utc>, findtime: Duration) {
    map.retain(|_, w| now - w.last_seen <= findtime);
    if let Some(oldest) = map.iter().min_by_key(|(_, w)| w.last_seen).map(|(k, _)| *k) {
        map.remove(&oldest);
    }
}
