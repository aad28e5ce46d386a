//! The iptables + ipset backend against the real tools, each test in its own network
//! namespace (ipsets and iptables rules are per namespace).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "helpers outside #[test] functions: a failure there is a test failure"
)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chrono::Utc;
use common::{send_udp, Listener, Netns, Pair, A4, A6, B4, B6};
use ipnet::IpNet;
use tollgate_enforce::{BanEntry, Firewall, IpsetConfig, IpsetFirewall};

#[test]
fn helper_udp() {
    common::helper_main();
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn firewall(ns: &Netns) -> IpsetFirewall {
    common::require(&["ipset", "iptables", "ip6tables"]);
    IpsetFirewall::new(IpsetConfig {
        ipset: ns.prefix("ipset"),
        iptables: ns.prefix("iptables"),
        ip6tables: ns.prefix("ip6tables"),
        ..IpsetConfig::default()
    })
    .unwrap()
}

fn ban_for(s: &str, secs: i64) -> BanEntry {
    BanEntry::new(
        net(s),
        Some(Utc::now() + chrono::Duration::seconds(secs)),
        "jail sip-auth",
    )
}

fn listing(fw: &mut IpsetFirewall) -> Vec<(IpNet, Option<u64>)> {
    let mut v: Vec<_> = fw
        .list()
        .unwrap()
        .into_iter()
        .map(|(n, t)| (n, t.map(|d| d.as_secs())))
        .collect();
    v.sort();
    v
}

fn rules(ns: &Netns, tool: &str) -> String {
    String::from_utf8(ns.run(&[tool, "-w", "-S"]).stdout).unwrap()
}

#[test]
fn setup_bans_sync_unban_teardown() {
    let ns = Netns::new();
    let mut fw = firewall(&ns);
    fw.setup().unwrap();
    fw.setup().unwrap();
    for tool in ["iptables", "ip6tables"] {
        let r = rules(&ns, tool);
        assert_eq!(r.matches("-A INPUT -j TOLLGATE").count(), 1, "{r}");
        assert_eq!(r.matches("--match-set tollgate-").count(), 2, "{r}");
        assert!(r.contains("--dports 5060,5061"), "{r}");
    }

    let now = Utc::now();
    fw.ban(&ban_for("192.0.2.7/32", 600), now).unwrap();
    fw.ban(&ban_for("198.51.100.0/24", 3600), now).unwrap();
    // Unlike an nftables interval set, hash:net holds an address inside a banned network.
    fw.ban(&ban_for("198.51.100.9/32", 60), now).unwrap();
    fw.ban(&ban_for("2001:db8:1::/64", 7200), now).unwrap();
    fw.ban(
        &BanEntry::new(net("2001:db8:2::5/128"), None, "manual"),
        now,
    )
    .unwrap();
    // Longer than ipset can hold: clamped to its maximum.
    fw.ban(&ban_for("203.0.113.1/32", 90 * 86_400), now)
        .unwrap();
    let l = listing(&mut fw);
    let secs = |n: &str| l.iter().find(|(x, _)| *x == net(n)).map(|(_, t)| *t);
    assert!(
        matches!(secs("192.0.2.7/32"), Some(Some(598..=600))),
        "{l:?}"
    );
    assert!(
        matches!(secs("198.51.100.0/24"), Some(Some(3598..=3600))),
        "{l:?}"
    );
    assert!(
        matches!(secs("198.51.100.9/32"), Some(Some(58..=60))),
        "{l:?}"
    );
    assert!(
        matches!(secs("2001:db8:1::/64"), Some(Some(7198..=7200))),
        "{l:?}"
    );
    assert_eq!(secs("2001:db8:2::5/128"), Some(None), "{l:?}");
    assert!(
        matches!(secs("203.0.113.1/32"), Some(Some(2_147_480..=2_147_483))),
        "{l:?}"
    );
    let saved = String::from_utf8(ns.run(&["ipset", "save", "tollgate-v4"]).stdout).unwrap();
    assert!(saved.contains("comment \"jail sip-auth\""), "{saved}");

    // A ban again replaces the timeout.
    fw.ban(&ban_for("192.0.2.7/32", 30), Utc::now()).unwrap();
    assert!(matches!(
        listing(&mut fw)
            .iter()
            .find(|(x, _)| *x == net("192.0.2.7/32")),
        Some((_, Some(28..=30)))
    ));

    fw.unban(net("192.0.2.7/32")).unwrap();
    fw.unban(net("192.0.2.7/32")).unwrap(); // absent: fine
    fw.unban(net("2001:db8:1::/64")).unwrap();
    assert_eq!(listing(&mut fw).len(), 4);

    let report = fw
        .sync(
            &[
                ban_for("198.51.100.0/24", 3600),
                ban_for("198.51.100.9/32", 900),
                ban_for("10.0.0.0/8", 60),
                ban_for("2001:db8:3::/64", 60),
                ban_for("203.0.113.1/32", 90 * 86_400),
            ],
            Utc::now(),
        )
        .unwrap();
    assert_eq!(report.unchanged, 2, "{report:?}");
    assert_eq!(report.updated, [net("198.51.100.9/32")]);
    assert_eq!(report.removed, [net("2001:db8:2::5/128")]);
    assert_eq!(report.added.len(), 2);
    assert_eq!(listing(&mut fw).len(), 5);

    fw.teardown().unwrap();
    fw.teardown().unwrap();
    for tool in ["iptables", "ip6tables"] {
        assert!(!rules(&ns, tool).contains("TOLLGATE"));
    }
    let sets = String::from_utf8(ns.run(&["ipset", "list", "-n"]).stdout).unwrap();
    assert!(!sets.contains("tollgate"), "{sets}");
}

#[test]
fn a_two_second_ban_expires_on_time() {
    let ns = Netns::new();
    let mut fw = firewall(&ns);
    fw.setup().unwrap();
    let start = Instant::now();
    fw.ban_many(
        &[ban_for("192.0.2.1/32", 2), ban_for("2001:db8::/64", 2)],
        Utc::now(),
    )
    .unwrap();
    let mut gone = None;
    while start.elapsed() < Duration::from_secs(6) {
        let n = fw.list().unwrap().len();
        if start.elapsed() < Duration::from_millis(1800) {
            assert_eq!(n, 2);
        }
        if n == 0 {
            gone = Some(start.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let gone = gone.expect("not expired within 6 s");
    println!("ipset: 2 s bans gone after {gone:?}");
    assert!(gone <= Duration::from_millis(3100), "{gone:?}");
}

fn dropped(ns: &Netns, tool: &str) -> u64 {
    let out = String::from_utf8(
        ns.run(&[tool, "-w", "-L", "TOLLGATE", "-v", "-x", "-n"])
            .stdout,
    )
    .unwrap();
    out.lines()
        .filter(|l| l.contains("DROP"))
        .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn banned_sources_are_dropped_others_get_through() {
    let pair = Pair::new();
    let mut fw = firewall(&pair.a);
    fw.setup().unwrap();
    fw.ban(&ban_for(&format!("{}/32", B4[0]), 600), Utc::now())
        .unwrap();
    fw.ban(&ban_for("fd99::/124", 600), Utc::now()).unwrap(); // fd99::2 and ::3
    let dst4: SocketAddr = format!("{A4}:5060").parse().unwrap();
    let l = Listener::start(&pair.a, dst4, 10);
    send_udp(&pair.b, B4[0], dst4, 5, "banned");
    send_udp(&pair.b, B4[1], dst4, 3, "friend");
    send_udp(&pair.b, B4[1], dst4, 1, "stop");
    let heard = l.finish();
    assert_eq!(
        heard.iter().filter(|h| h.starts_with(B4[0])).count(),
        0,
        "{heard:?}"
    );
    assert_eq!(
        heard.iter().filter(|h| h.ends_with("friend")).count(),
        3,
        "{heard:?}"
    );
    assert_eq!(dropped(&pair.a, "iptables"), 5);

    let dst6: SocketAddr = format!("[{A6}]:5061").parse().unwrap();
    let l = Listener::start(&pair.a, dst6, 4);
    send_udp(&pair.b, B6[0], dst6, 2, "banned");
    send_udp(&pair.b, B6[1], dst6, 2, "banned");
    assert!(l.finish().is_empty());
    assert_eq!(dropped(&pair.a, "ip6tables"), 4);
}
