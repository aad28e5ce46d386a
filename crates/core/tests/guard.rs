//! The intrusion guard's rules, one test per rule, plus properties: no ban below a
//! threshold, allowlisted addresses never banned, bounded memory.

// Test code: failures must fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};
use ipnet::IpNet;
use proptest::prelude::*;
use tollgate_core::guard::{Guard, GuardAction, GuardPolicy, PikeRule};
use tollgate_core::guard_event::{AuthEvent, AuthOutcome};
use tollgate_core::policy::{
    Account, DestinationRules, Extension, ExtensionDefaults, Limits, Origin, Policy,
};
use tollgate_core::Currency;

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-26T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

fn event(source: &str, user: &str, outcome: AuthOutcome, ua: Option<&str>) -> AuthEvent {
    AuthEvent {
        at: None,
        ip: ip(source),
        port: Some(5060),
        transport: Some("udp".into()),
        user: Some(user.into()),
        user_agent: ua.map(str::to_string),
        outcome,
        reason: if outcome == AuthOutcome::Failure {
            "wrong password".into()
        } else {
            String::new()
        },
    }
}

fn fail(source: &str, user: &str) -> AuthEvent {
    event(source, user, AuthOutcome::Failure, Some("Yealink SIP-T46S"))
}

fn policy_with_extension() -> Policy {
    let mut policy = Policy::empty();
    policy
        .upsert_account(Account {
            id: "acme".into(),
            name: "acme".into(),
            parent: None,
            currency: Currency::EUR,
            time_zone: chrono_tz::Tz::UTC,
            dial_plan: tollgate_core::number::DialPlan::for_region("FR").unwrap(),
            plan: None,
            limits: Limits::UNLIMITED,
            rules: DestinationRules::default(),
            schedule: None,
            suspended: false,
            shadow: false,
            extension_defaults: ExtensionDefaults::default(),
            origin: Origin::Policy,
        })
        .unwrap();
    policy
        .upsert_extension(Extension {
            id: "1001".into(),
            account: "acme".into(),
            allowed_cidrs: vec![net("192.0.2.0/24")],
            limits: Limits::UNLIMITED,
            rules: DestinationRules::default(),
            schedule: None,
            max_call_duration_s: 3600,
            max_concurrent_calls: None,
            suspended: false,
            origin: Origin::Policy,
        })
        .unwrap();
    policy
}

fn bans(actions: &[GuardAction]) -> Vec<&tollgate_core::guard::Ban> {
    actions
        .iter()
        .filter_map(|a| match a {
            GuardAction::Ban(b) => Some(b),
            GuardAction::Unban { .. } => None,
        })
        .collect()
}

#[test]
fn maxretry_failures_within_findtime_ban_with_the_events_and_figures() {
    let policy = Policy::empty();
    let mut guard = Guard::new(GuardPolicy::default());
    for i in 0..4 {
        let (verdict, actions) = guard.on_auth_event(
            &policy.extensions,
            &fail("203.0.113.7", "1001"),
            t0() + Duration::seconds(i * 10),
        );
        assert!(actions.is_empty(), "failure {i} must not ban");
        assert!(!verdict.accepted);
    }
    let now = t0() + Duration::seconds(40);
    let (verdict, actions) =
        guard.on_auth_event(&policy.extensions, &fail("203.0.113.7", "1001"), now);
    let banned = bans(&actions);
    assert_eq!(banned.len(), 1);
    let ban = banned[0];
    assert_eq!(ban.target, net("203.0.113.7/32"));
    assert_eq!(ban.rule, "jail sip-auth");
    assert_eq!(
        ban.reason,
        "5 failures in 40.0 s (maxretry 5 within findtime 600 s); banned 3600 s"
    );
    assert_eq!(ban.events.len(), 5);
    assert!(
        ban.events[0].contains("failed registration from 203.0.113.7:5060/udp user \"1001\""),
        "{:?}",
        ban.events
    );
    assert_eq!(ban.expires_at, Some(now + Duration::seconds(3600)));
    assert_eq!(verdict.ban.as_ref(), Some(ban));
    // Further events from the banned source are refused without a new ban.
    let (verdict, actions) =
        guard.on_auth_event(&policy.extensions, &fail("203.0.113.7", "1001"), now);
    assert!(actions.is_empty());
    assert!(verdict.reason.unwrap().contains("is banned"));
}

#[test]
fn failures_spread_beyond_findtime_do_not_ban() {
    let policy = Policy::empty();
    let mut guard = Guard::new(GuardPolicy::default());
    for i in 0..20 {
        let (_, actions) = guard.on_auth_event(
            &policy.extensions,
            &fail("203.0.113.8", "1001"),
            t0() + Duration::seconds(i * 151),
        );
        assert!(
            actions.is_empty(),
            "failure {i}: 4 per 604 s stays under 5 per 600 s"
        );
    }
}

#[test]
fn repeat_offenders_get_longer_bans_up_to_the_maximum() {
    let policy = Policy::empty();
    let mut guard = Guard::new(GuardPolicy::default());
    let mut now = t0();
    let mut durations = Vec::new();
    for _round in 0..6 {
        let mut banned = None;
        for _ in 0..5 {
            let (_, actions) =
                guard.on_auth_event(&policy.extensions, &fail("198.51.100.9", "1001"), now);
            banned = bans(&actions).first().map(|b| (*b).clone()).or(banned);
        }
        let ban = banned.expect("banned");
        let until = ban.expires_at.unwrap();
        durations.push((until - now).num_seconds());
        now = until;
        let unbanned = guard.expire(now);
        assert_eq!(unbanned.len(), 1);
        now += Duration::seconds(60);
    }
    assert_eq!(durations, vec![3600, 7200, 14_400, 28_800, 57_600, 115_200]);
    // The cap: one week.
    let mut capped = Guard::new(GuardPolicy {
        jails: vec![tollgate_core::guard::Jail {
            bantime_max_s: 10_000,
            ..GuardPolicy::default().jails[0].clone()
        }],
        ..GuardPolicy::default()
    });
    let mut last = 0;
    for _ in 0..5 {
        let mut banned = None;
        for _ in 0..5 {
            let (_, actions) =
                capped.on_auth_event(&policy.extensions, &fail("198.51.100.10", "1001"), now);
            banned = bans(&actions).first().map(|b| (*b).clone()).or(banned);
        }
        let until = banned.unwrap().expires_at.unwrap();
        last = (until - now).num_seconds();
        now = until;
        capped.expire(now);
    }
    assert_eq!(last, 10_000);
}

#[test]
fn allowlisted_sources_are_never_banned() {
    let policy = Policy::empty();
    let mut guard = Guard::new(GuardPolicy {
        allowlist: vec![net("203.0.113.0/24")],
        ..GuardPolicy::default()
    });
    for i in 0..50 {
        let (_, actions) = guard.on_auth_event(
            &policy.extensions,
            &event(
                "203.0.113.5",
                &format!("u{i}"),
                AuthOutcome::Failure,
                Some("friendly-scanner"),
            ),
            t0(),
        );
        assert!(actions.is_empty());
    }
    assert!(guard
        .on_request_counts(&[(ip("203.0.113.5"), 100_000)], t0())
        .is_empty());
    assert!(guard
        .ban_manual(net("203.0.113.0/25"), None, "", t0())
        .is_err());
    assert!(
        guard
            .ban_manual(net("203.0.0.0/16"), None, "", t0())
            .is_err(),
        "a wider ban would cover the allowlist"
    );
}

#[test]
fn aggregation_counts_and_bans_a_whole_ipv4_24() {
    let policy = Policy::empty();
    let mut guard = Guard::new(GuardPolicy {
        aggregate_v4: 24,
        aggregate_v6: 64,
        ..GuardPolicy::default()
    });
    let mut all = Vec::new();
    for host in 1..=5 {
        let (_, actions) = guard.on_auth_event(
            &policy.extensions,
            &fail(&format!("198.51.100.{host}"), "1001"),
            t0(),
        );
        all.extend(actions);
    }
    let banned = bans(&all);
    assert_eq!(banned.len(), 1);
    assert_eq!(banned[0].target, net("198.51.100.0/24"));
    assert!(guard.ban_covering(ip("198.51.100.200"), t0()).is_some());
    let mut v6 = Vec::new();
    for host in 1..=5 {
        let (_, actions) = guard.on_auth_event(
            &policy.extensions,
            &fail(&format!("2001:db8:1:2::{host}"), "1001"),
            t0(),
        );
        v6.extend(actions);
    }
    assert_eq!(bans(&v6)[0].target, net("2001:db8:1:2::/64"));
}

#[test]
fn known_scanners_are_banned_at_once() {
    let policy = Policy::empty();
    let mut guard = Guard::new(GuardPolicy::default());
    let (verdict, actions) = guard.on_auth_event(
        &policy.extensions,
        &event(
            "192.0.2.66",
            "100",
            AuthOutcome::Failure,
            Some("friendly-scanner"),
        ),
        t0(),
    );
    let ban = bans(&actions)[0];
    assert_eq!(ban.rule, "scanner");
    assert!(
        ban.reason
            .contains("\"friendly-scanner\" is a known scanner"),
        "{}",
        ban.reason
    );
    assert_eq!(ban.expires_at, Some(t0() + Duration::days(1)));
    assert!(!verdict.accepted);
    // Even a "successful" request with a scanner agent.
    let (_, actions) = guard.on_auth_event(
        &policy.extensions,
        &event(
            "192.0.2.67",
            "100",
            AuthOutcome::Success,
            Some("VaxSIPUserAgent/3.1"),
        ),
        t0(),
    );
    assert_eq!(bans(&actions).len(), 1);
}

#[test]
fn extension_enumeration_is_banned() {
    let policy = Policy::empty();
    let mut guard = Guard::new(GuardPolicy {
        jails: vec![],
        ..GuardPolicy::default()
    });
    // The same name again and again is not enumeration.
    for _ in 0..30 {
        assert!(guard
            .on_auth_event(&policy.extensions, &fail("192.0.2.70", "1001"), t0())
            .1
            .is_empty());
    }
    let mut all = Vec::new();
    for user in 100..110 {
        let (_, actions) = guard.on_auth_event(
            &policy.extensions,
            &fail("192.0.2.71", &user.to_string()),
            t0() + Duration::seconds(user - 100),
        );
        all.extend(actions);
    }
    let ban = bans(&all)[0];
    assert_eq!(ban.rule, "enumeration");
    assert!(
        ban.reason
            .starts_with("10 distinct user names tried within 600 s (threshold 10): 100, 101"),
        "{}",
        ban.reason
    );
}

#[test]
fn registration_from_outside_the_extensions_networks_is_refused_and_counted() {
    let policy = policy_with_extension();
    let mut guard = Guard::new(GuardPolicy::default());
    let (verdict, _) = guard.on_auth_event(
        &policy.extensions,
        &event("192.0.2.10", "1001", AuthOutcome::Success, None),
        t0(),
    );
    assert!(verdict.accepted, "{verdict:?}");
    let mut all = Vec::new();
    for _ in 0..5 {
        let (verdict, actions) = guard.on_auth_event(
            &policy.extensions,
            &event("203.0.113.99", "1001", AuthOutcome::Success, None),
            t0(),
        );
        assert!(!verdict.accepted);
        if actions.is_empty() {
            assert_eq!(
                verdict.reason.as_deref(),
                Some("extension 1001 may register only from 192.0.2.0/24, not 203.0.113.99")
            );
        }
        all.extend(actions);
    }
    let ban = bans(&all)[0];
    assert_eq!(ban.rule, "jail sip-auth");
    assert!(
        ban.events[0].contains(
            "(refused: extension 1001 may register only from 192.0.2.0/24, not 203.0.113.99)"
        ),
        "{:?}",
        ban.events
    );
}

fn pike() -> GuardPolicy {
    GuardPolicy {
        pike: Some(PikeRule {
            window_s: 2,
            density: 60,
            subnet_density: 300,
            bantime_s: 600,
            max_nodes: 1000,
        }),
        ..GuardPolicy::default()
    }
}

#[test]
fn pike_bans_a_flooding_address_but_not_a_busy_legitimate_one() {
    let mut guard = Guard::new(pike());
    // 50 requests every 2 s, steady: under the density of 60 per 2 s.
    for step in 0..30 {
        let actions =
            guard.on_request_counts(&[(ip("192.0.2.10"), 25)], t0() + Duration::seconds(step));
        assert!(actions.is_empty(), "step {step}: {actions:?}");
    }
    // A burst.
    let actions = guard.on_request_counts(&[(ip("192.0.2.99"), 61)], t0());
    let ban = bans(&actions)[0];
    assert_eq!(
        (ban.rule.as_str(), ban.target),
        ("pike", net("192.0.2.99/32"))
    );
    assert_eq!(
        ban.reason,
        "61 SIP requests from 192.0.2.99 within 2 s (density 60); banned 600 s"
    );
}

#[test]
fn pike_catches_a_subnet_spreading_its_traffic() {
    let mut guard = Guard::new(pike());
    let mut all = Vec::new();
    // 40 hosts of one /24, 10 requests each: every host is far under 60, the /24 is at 400.
    for host in 1..=40 {
        all.extend(guard.on_request_counts(&[(ip(&format!("198.51.100.{host}")), 10)], t0()));
    }
    let banned = bans(&all);
    assert_eq!(banned.len(), 1, "{all:?}");
    assert_eq!(banned[0].target, net("198.51.100.0/24"));
    assert!(
        banned[0]
            .reason
            .starts_with("310 SIP requests from subnet 198.51.100.0/24"),
        "{}",
        banned[0].reason
    );
}

#[test]
fn the_flood_tree_stays_within_its_node_budget_and_forgets_idle_nodes() {
    let mut guard = Guard::new(pike());
    for i in 0..20_000u32 {
        let addr = IpAddr::from(i.wrapping_mul(2_654_435_761).to_be_bytes());
        guard.on_request_counts(&[(addr, 1)], t0());
        assert!(guard.tree_nodes() <= 1000);
    }
    guard.expire(t0() + Duration::seconds(10));
    assert_eq!(guard.tree_nodes(), 0);
}

#[test]
fn bans_expire_and_manual_bans_lift() {
    let policy = Policy::empty();
    let mut guard = Guard::new(GuardPolicy::default());
    for _ in 0..5 {
        guard.on_auth_event(&policy.extensions, &fail("203.0.113.50", "1001"), t0());
    }
    assert!(guard.expire(t0() + Duration::seconds(3599)).is_empty());
    let ended = guard.expire(t0() + Duration::seconds(3600));
    assert_eq!(
        ended,
        vec![GuardAction::Unban {
            target: net("203.0.113.50/32"),
            reason: "ban by jail sip-auth expired".into()
        }]
    );
    let ban = guard
        .ban_manual(net("203.0.113.51/32"), None, "seen in a CDR review", t0())
        .unwrap();
    assert_eq!(ban.expires_at, None);
    assert!(
        guard.expire(t0() + Duration::days(365)).is_empty(),
        "a manual ban without a duration stays"
    );
    assert!(guard.unban(net("203.0.113.51/32")).is_some());
    assert!(guard.ban_covering(ip("203.0.113.51"), t0()).is_none());
}

#[test]
fn restore_keeps_active_bans_and_the_offense_count() {
    let policy = Policy::empty();
    let mut guard = Guard::new(GuardPolicy::default());
    let mut history = Vec::new();
    for _ in 0..5 {
        let (_, actions) =
            guard.on_auth_event(&policy.extensions, &fail("203.0.113.60", "1001"), t0());
        history.extend(bans(&actions).into_iter().cloned());
    }
    let later = t0() + Duration::seconds(4000);
    let mut restored = Guard::restore(GuardPolicy::default(), history, later);
    assert_eq!(restored.bans().count(), 0, "the first ban has ended");
    let mut second = None;
    for _ in 0..5 {
        let (_, actions) =
            restored.on_auth_event(&policy.extensions, &fail("203.0.113.60", "1001"), later);
        second = bans(&actions).first().map(|b| (*b).clone()).or(second);
    }
    let second = second.unwrap();
    assert_eq!(second.offense, 2);
    assert_eq!(second.expires_at, Some(later + Duration::seconds(7200)));
}

proptest! {
    /// Whatever the timing, a source with fewer than `maxretry` failures in every
    /// `findtime` window is never banned, and one with `maxretry` within it always is.
    #[test]
    fn no_ban_below_the_threshold(gaps in proptest::collection::vec(0u64..400, 1..60)) {
        let policy = Policy::empty();
        let mut guard = Guard::new(GuardPolicy { enumeration: None, ..GuardPolicy::default() });
        let mut now = t0();
        let mut times: Vec<DateTime<Utc>> = Vec::new();
        for gap in gaps {
            now += Duration::seconds(gap as i64);
            times.push(now);
            let (_, actions) = guard.on_auth_event(&policy.extensions, &fail("203.0.113.77", "1001"), now);
            let window = times.iter().rev().take_while(|t| now - **t <= Duration::seconds(600)).count();
            if bans(&actions).is_empty() {
                prop_assert!(window < 5, "{window} failures within findtime and no ban");
            } else {
                prop_assert!(window >= 5, "banned with only {window} failures within findtime");
                // Starting afresh after a ban.
                times.clear();
                guard.expire(now + Duration::days(30));
                now += Duration::days(30);
            }
        }
    }
}

#[test]
fn digest_challenges_are_not_failures() {
    let policy = Policy::empty();
    let mut guard = Guard::new(GuardPolicy::default());
    // A busy office: every registration and call starts with a challenge.
    for i in 0..100 {
        let (_, actions) = guard.on_auth_event(
            &policy.extensions,
            &event(
                "203.0.113.80",
                &format!("{}", 1000 + i % 20),
                AuthOutcome::Challenge,
                None,
            ),
            t0(),
        );
        assert!(actions.is_empty());
    }
}
