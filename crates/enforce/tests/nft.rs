//! The nftables backend against real nftables, each test in its own network namespace.
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
use common::{median, send_udp, Listener, Netns, Pair, A4, A6, B4, B6};
use ipnet::IpNet;
use tollgate_enforce::{
    render_baseline, BanEntry, EnforceError, Firewall, NftConfig, NftFirewall, BASELINE_TABLE,
};

#[test]
fn helper_udp() {
    common::helper_main();
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn firewall(ns: &Netns) -> NftFirewall {
    NftFirewall::new(NftConfig {
        command: ns.prefix("nft"),
        ..NftConfig::default()
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

fn held(fw: &mut NftFirewall) -> Vec<IpNet> {
    let mut v: Vec<IpNet> = fw.list().unwrap().into_iter().map(|(n, _)| n).collect();
    v.sort();
    v
}

fn remaining(fw: &mut NftFirewall, n: &str) -> Option<Option<Duration>> {
    fw.list()
        .unwrap()
        .into_iter()
        .find(|(x, _)| *x == net(n))
        .map(|(_, t)| t)
}

fn secs_left(fw: &mut NftFirewall, n: &str) -> Option<u64> {
    remaining(fw, n).flatten().map(|d| d.as_secs())
}

#[test]
fn setup_is_idempotent_and_keeps_bans() {
    let ns = Netns::new();
    let mut fw = firewall(&ns);
    fw.setup().unwrap();
    fw.setup().unwrap();
    fw.ban(&ban_for("192.0.2.7/32", 600), Utc::now()).unwrap();
    fw.setup().unwrap();
    assert_eq!(held(&mut fw), [net("192.0.2.7/32")]);
    let chain = ns.nft_json(&["list", "chain", "inet", "tollgate", "input"]);
    let rules = chain["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i.get("rule").is_some())
        .count();
    assert_eq!(
        rules, 4,
        "one drop rule per set, not duplicated by a second setup"
    );

    // Another port list and priority: the chain is replaced, the bans stay.
    let mut fw2 = NftFirewall::new(NftConfig {
        command: ns.prefix("nft"),
        ports: vec![5080],
        priority: -20,
        ..NftConfig::default()
    })
    .unwrap();
    fw2.setup().unwrap();
    let text = String::from_utf8(
        ns.run(&["nft", "list", "chain", "inet", "tollgate", "input"])
            .stdout,
    )
    .unwrap();
    assert!(
        text.contains("th dport 5080") && !text.contains("5060"),
        "{text}"
    );
    assert!(text.contains("priority -20"), "{text}");
    assert_eq!(held(&mut fw2), [net("192.0.2.7/32")]);
}

#[test]
fn bans_land_in_the_sets_with_their_timeouts() {
    let ns = Netns::new();
    let mut fw = firewall(&ns);
    fw.setup().unwrap();
    let now = Utc::now();
    fw.ban(&ban_for("192.0.2.7/32", 600), now).unwrap();
    fw.ban(&ban_for("198.51.100.0/24", 3600), now).unwrap();
    fw.ban(&ban_for("2001:db8:1::/64", 7200), now).unwrap();
    fw.ban(
        &BanEntry::new(net("2001:db8:2::5/128"), None, "manual"),
        now,
    )
    .unwrap();
    // An address inside a banned network is a separate element with its own timeout.
    fw.ban(&ban_for("198.51.100.9/32", 60), now).unwrap();

    assert!(
        matches!(secs_left(&mut fw, "192.0.2.7/32"), Some(597..=600)),
        "{:?}",
        secs_left(&mut fw, "192.0.2.7/32")
    );
    assert!(matches!(
        secs_left(&mut fw, "198.51.100.0/24"),
        Some(3597..=3600)
    ));
    assert!(matches!(
        secs_left(&mut fw, "2001:db8:1::/64"),
        Some(7197..=7200)
    ));
    assert!(matches!(
        secs_left(&mut fw, "198.51.100.9/32"),
        Some(57..=60)
    ));
    assert_eq!(
        remaining(&mut fw, "2001:db8:2::5/128"),
        Some(None),
        "permanent"
    );

    // They are where the module documentation says, with the rule as comment.
    let set = |name: &str| {
        ns.nft_json(&["list", "set", "inet", "tollgate", name])
            .to_string()
    };
    assert!(set("banned_v4").contains("192.0.2.7") && set("banned_v4").contains("jail sip-auth"));
    assert!(set("banned_v4_nets").contains("198.51.100.0"));
    assert!(set("banned_v6_nets").contains("2001:db8:1::"));
    assert!(set("banned_v6").contains("2001:db8:2::5"));

    // A ban again replaces the timeout, shorter or longer.
    fw.ban(&ban_for("192.0.2.7/32", 30), Utc::now()).unwrap();
    assert!(
        matches!(secs_left(&mut fw, "192.0.2.7/32"), Some(27..=30)),
        "{:?}",
        secs_left(&mut fw, "192.0.2.7/32")
    );
    fw.ban(&ban_for("198.51.100.0/24", 9000), Utc::now())
        .unwrap();
    assert!(matches!(
        secs_left(&mut fw, "198.51.100.0/24"),
        Some(8997..=9000)
    ));
    assert_eq!(held(&mut fw).len(), 5);

    // Nested networks cannot share an interval set: a clear error, nothing else changes.
    let err = fw
        .ban(&ban_for("198.51.0.0/16", 60), Utc::now())
        .unwrap_err();
    assert!(matches!(err, EnforceError::Overlap { .. }), "{err}");
    assert!(err.to_string().contains("198.51.0.0/16"), "{err}");
    assert_eq!(held(&mut fw).len(), 5);

    // An expired ban is not applied.
    let past = BanEntry::new(
        net("192.0.2.99/32"),
        Some(Utc::now() - chrono::Duration::seconds(1)),
        "x",
    );
    fw.ban(&past, Utc::now()).unwrap();
    assert_eq!(held(&mut fw).len(), 5);
}

#[test]
fn a_two_second_ban_expires_on_time() {
    let ns = Netns::new();
    let mut fw = firewall(&ns);
    fw.setup().unwrap();
    let start = Instant::now();
    let now = Utc::now();
    let until = Some(now + chrono::Duration::seconds(2));
    fw.ban_many(
        &[
            BanEntry::new(net("192.0.2.1/32"), until, "pike"),
            BanEntry::new(net("198.51.100.0/24"), until, "pike"),
            BanEntry::new(net("2001:db8::/64"), until, "pike"),
        ],
        now,
    )
    .unwrap();
    let mut gone_after = None;
    while start.elapsed() < Duration::from_secs(5) {
        let n = fw.list().unwrap().len();
        if start.elapsed() < Duration::from_millis(1800) {
            assert_eq!(n, 3, "expired early, at {:?}", start.elapsed());
        }
        if n == 0 {
            gone_after = Some(start.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let gone_after = gone_after.expect("the bans did not expire within 5 s");
    println!("2 s bans gone from the sets after {gone_after:?}");
    assert!(
        gone_after >= Duration::from_millis(1900) && gone_after <= Duration::from_millis(2500),
        "{gone_after:?}"
    );
}

#[test]
fn unban_removes_and_absent_is_fine() {
    let ns = Netns::new();
    let mut fw = firewall(&ns);
    fw.setup().unwrap();
    fw.ban(&ban_for("192.0.2.7/32", 600), Utc::now()).unwrap();
    fw.ban(&ban_for("198.51.100.0/24", 600), Utc::now())
        .unwrap();
    fw.ban(&ban_for("2001:db8::/64", 600), Utc::now()).unwrap();
    fw.unban(net("192.0.2.7/32")).unwrap();
    fw.unban(net("2001:db8::/64")).unwrap();
    assert_eq!(held(&mut fw), [net("198.51.100.0/24")]);
    fw.unban(net("192.0.2.7/32")).unwrap(); // absent
    fw.unban(net("198.51.100.128/25")).unwrap(); // absent, overlapping a held network
    fw.unban(net("2001:db8:9::1/128")).unwrap(); // never there
    fw.unban_many(&[
        net("198.51.100.0/24"),
        net("10.0.0.0/8"),
        net("198.51.100.0/25"),
    ])
    .unwrap();
    assert!(held(&mut fw).is_empty());
}

#[test]
fn sync_adds_missing_refreshes_and_removes_extras() {
    let ns = Netns::new();
    let mut fw = firewall(&ns);
    fw.setup().unwrap();
    let now = Utc::now();
    fw.ban_many(
        &[
            ban_for("192.0.2.1/32", 600),
            ban_for("192.0.2.2/32", 600),
            ban_for("2001:db8::/64", 600),
        ],
        now,
    )
    .unwrap();
    let wanted = [
        ban_for("192.0.2.1/32", 600),                         // held as asked
        ban_for("2001:db8::/64", 5000),                       // held with another timeout
        ban_for("198.51.100.0/24", 300),                      // missing
        BanEntry::new(net("203.0.113.5/32"), None, "manual"), // missing, permanent
        ban_for("192.0.2.50/32", -10),                        // expired
        ban_for("10.0.0.0/16", 60),                           // missing
        ban_for("10.0.1.0/24", 60),                           // nests in the /16: refused
    ];
    let report = fw.sync(&wanted, Utc::now()).unwrap();
    println!("{report:?}");
    assert_eq!(report.unchanged, 1);
    assert_eq!(report.expired, 1);
    assert_eq!(report.updated, [net("2001:db8::/64")]);
    assert_eq!(report.removed, [net("192.0.2.2/32")]);
    let mut added = report.added.clone();
    added.sort();
    assert_eq!(
        added,
        [
            net("10.0.0.0/16"),
            net("198.51.100.0/24"),
            net("203.0.113.5/32")
        ]
    );
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].net, net("10.0.1.0/24"));
    assert_eq!(
        held(&mut fw),
        [
            net("10.0.0.0/16"),
            net("192.0.2.1/32"),
            net("198.51.100.0/24"),
            net("203.0.113.5/32"),
            net("2001:db8::/64")
        ]
    );
    assert!(matches!(remaining(&mut fw, "2001:db8::/64"), Some(Some(d)) if d.as_secs() >= 4990));
    // Again: nothing to do but the refused entry.
    let again = fw.sync(&wanted, Utc::now()).unwrap();
    assert_eq!(
        (
            again.added.len(),
            again.updated.len(),
            again.removed.len(),
            again.unchanged
        ),
        (0, 0, 0, 5)
    );
    // Empty: everything goes.
    let empty = fw.sync(&[], Utc::now()).unwrap();
    assert_eq!(empty.removed.len(), 5);
    assert!(held(&mut fw).is_empty());
}

#[test]
fn teardown_removes_the_table() {
    let ns = Netns::new();
    let mut fw = firewall(&ns);
    fw.setup().unwrap();
    fw.ban(&ban_for("192.0.2.7/32", 600), Utc::now()).unwrap();
    fw.teardown().unwrap();
    let tables = String::from_utf8(ns.run(&["nft", "list", "tables"]).stdout).unwrap();
    assert!(!tables.contains("tollgate"), "{tables}");
    fw.teardown().unwrap(); // idempotent
    let err = fw.list().unwrap_err();
    assert!(matches!(err, EnforceError::Command { .. }), "{err}");
    assert!(
        err.to_string().contains("nft -j list table inet tollgate"),
        "{err}"
    );
}

#[test]
fn a_missing_nft_is_a_clear_error() {
    let mut fw = NftFirewall::new(NftConfig {
        command: vec!["/nonexistent/nft".into()],
        ..NftConfig::default()
    })
    .unwrap();
    let err = fw.setup().unwrap_err();
    assert!(
        err.to_string()
            .contains("could not run `/nonexistent/nft -f -`"),
        "{err}"
    );
}

fn counter(ns: &Netns, fw: &mut NftFirewall, set: &str) -> u64 {
    let _ = ns;
    fw.counters()
        .unwrap()
        .into_iter()
        .find(|c| c.set == set)
        .map(|c| c.packets)
        .unwrap_or(0)
}

/// Packets from a banned source are dropped (the rule's counter says so), another source
/// still gets through, and an unban lets the first one through again.
#[test]
fn banned_sources_are_dropped_others_get_through() {
    let pair = Pair::new();
    let mut fw = firewall(&pair.a);
    fw.setup().unwrap();
    let dst4: SocketAddr = format!("{A4}:5060").parse().unwrap();
    let dst6: SocketAddr = format!("[{A6}]:5060").parse().unwrap();

    fw.ban(&ban_for(&format!("{}/32", B4[0]), 600), Utc::now())
        .unwrap();
    fw.ban(&ban_for(&format!("{}/128", B6[0]), 600), Utc::now())
        .unwrap();

    let l4 = Listener::start(&pair.a, dst4, 10);
    send_udp(&pair.b, B4[0], dst4, 5, "banned");
    send_udp(&pair.b, B4[1], dst4, 3, "friend");
    send_udp(&pair.b, B4[1], dst4, 1, "stop");
    let heard = l4.finish();
    assert_eq!(
        heard.iter().filter(|h| h.starts_with(B4[0])).count(),
        0,
        "{heard:?}"
    );
    assert_eq!(
        heard
            .iter()
            .filter(|h| *h == &format!("{} friend", B4[1]))
            .count(),
        3,
        "{heard:?}"
    );
    assert_eq!(counter(&pair.a, &mut fw, "banned_v4"), 5);

    let l6 = Listener::start(&pair.a, dst6, 10);
    send_udp(&pair.b, B6[0], dst6, 4, "banned");
    send_udp(&pair.b, B6[1], dst6, 2, "friend");
    send_udp(&pair.b, B6[1], dst6, 1, "stop");
    let heard = l6.finish();
    assert_eq!(
        heard.iter().filter(|h| h.starts_with(B6[0])).count(),
        0,
        "{heard:?}"
    );
    assert_eq!(
        heard.iter().filter(|h| h.ends_with("friend")).count(),
        2,
        "{heard:?}"
    );
    assert_eq!(counter(&pair.a, &mut fw, "banned_v6"), 4);

    // The /24 catches the other address too; then lift everything and both get through.
    fw.ban(&ban_for("10.99.7.0/24", 600), Utc::now()).unwrap();
    let l = Listener::start(&pair.a, dst4, 10);
    send_udp(&pair.b, B4[1], dst4, 2, "friend");
    fw.unban_many(&[net("10.99.7.0/24"), net(&format!("{}/32", B4[0]))])
        .unwrap();
    send_udp(&pair.b, B4[0], dst4, 2, "forgiven");
    send_udp(&pair.b, B4[1], dst4, 1, "stop");
    let heard = l.finish();
    assert_eq!(counter(&pair.a, &mut fw, "banned_v4_nets"), 2);
    assert_eq!(
        heard.iter().filter(|h| h.ends_with("friend")).count(),
        0,
        "{heard:?}"
    );
    assert_eq!(
        heard
            .iter()
            .filter(|h| *h == &format!("{} forgiven", B4[0]))
            .count(),
        2,
        "{heard:?}"
    );

    // Other ports are not ours to filter.
    let other: SocketAddr = format!("{A4}:5070").parse().unwrap();
    fw.ban(&ban_for(&format!("{}/32", B4[0]), 600), Utc::now())
        .unwrap();
    let l = Listener::start(&pair.a, other, 10);
    send_udp(&pair.b, B4[0], other, 2, "elsewhere");
    send_udp(&pair.b, B4[0], other, 1, "stop");
    assert_eq!(l.finish().len(), 3);
}

/// Time per ban, median over 200 bans, each one `nft` process.
#[test]
fn ban_latency() {
    let ns = Netns::new();
    let mut via_ip = firewall(&ns);
    via_ip.setup().unwrap();
    // `ip netns exec` also remounts /sys for the namespace; `nsenter --net` only switches the
    // network namespace, like running `nft` on the host does not need either.
    let mut via_nsenter = NftFirewall::new(NftConfig {
        command: vec![
            "nsenter".into(),
            format!("--net=/run/netns/{}", ns.name),
            "nft".into(),
        ],
        ..NftConfig::default()
    })
    .unwrap();
    let measure = |fw: &mut NftFirewall, third: u8| {
        let mut times = Vec::new();
        for i in 0..200u32 {
            let e = ban_for(&format!("10.{third}.{}.{}/32", i / 250, i % 250 + 1), 3600);
            let t = Instant::now();
            fw.ban(&e, Utc::now()).unwrap();
            times.push(t.elapsed());
        }
        times
    };
    let t_ip = measure(&mut via_ip, 1);
    let t_ns = measure(&mut via_nsenter, 2);
    let batch: Vec<BanEntry> = (0..200u32)
        .map(|i| ban_for(&format!("10.3.0.{}/32", i + 1), 3600))
        .collect();
    let t = Instant::now();
    via_nsenter.ban_many(&batch, Utc::now()).unwrap();
    let t_batch = t.elapsed();
    let t = Instant::now();
    let n = via_nsenter.list().unwrap().len();
    let t_list = t.elapsed();
    assert_eq!(n, 600);
    // Re-banning held addresses takes the slower replace path.
    let mut t_re = Vec::new();
    for i in 0..50u32 {
        let e = ban_for(&format!("10.2.0.{}/32", i + 1), 600);
        let t = Instant::now();
        via_nsenter.ban(&e, Utc::now()).unwrap();
        t_re.push(t.elapsed());
    }
    assert!(matches!(
        secs_left(&mut via_nsenter, "10.2.0.1/32"),
        Some(597..=600)
    ));
    let m_re = median(t_re);
    let (m_ip, m_ns) = (median(t_ip.clone()), median(t_ns.clone()));
    let p99 = |mut v: Vec<Duration>| {
        v.sort_unstable();
        v[v.len() * 99 / 100]
    };
    println!(
        "per ban, median over 200: {m_ip:?} via `ip netns exec` (p99 {:?}), {m_ns:?} via `nsenter --net` (p99 {:?}); \
         re-ban of a held address: {m_re:?}; ban_many of 200: {t_batch:?}; list of 600: {t_list:?}",
        p99(t_ip),
        p99(t_ns)
    );
    assert!(m_ns < Duration::from_millis(50), "a ban takes {m_ns:?}");
}

fn nft_check(ns: &Netns, script: &str, check_only: bool) -> std::process::Output {
    use std::io::Write;
    let mut argv = vec!["ip", "netns", "exec", &ns.name, "nft"];
    if check_only {
        argv.push("-c");
    }
    argv.extend(["-f", "-"]);
    let mut child = std::process::Command::new(argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn the_baseline_is_accepted_by_nft() {
    let ns = Netns::new();
    for trusted in [
        vec![],
        vec![
            net("203.0.113.0/24"),
            net("10.0.0.0/8"),
            net("10.1.0.0/16"),
            net("2001:db8::/32"),
            net("::ffff:192.0.2.1/128"),
        ],
    ] {
        let script =
            render_baseline(&trusted, &[5060, 5061], (10000, 20000), BASELINE_TABLE).unwrap();
        let out = nft_check(&ns, &script, true);
        assert!(
            out.status.success(),
            "nft -c refused:\n{script}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Loaded, the baseline lets a trusted source reach SIP and drops an untrusted one; loading it
/// twice does not double its rules; SSH-like ports stay open.
#[test]
fn the_baseline_opens_sip_to_trusted_networks_only() {
    let pair = Pair::new();
    let script = render_baseline(
        &[net(&format!("{}/32", B4[1]))],
        &[5060, 5061],
        (10000, 20000),
        BASELINE_TABLE,
    )
    .unwrap();
    for _ in 0..2 {
        let out = nft_check(&pair.a, &script, false);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let chain = pair
        .a
        .nft_json(&["list", "chain", "inet", BASELINE_TABLE, "input"]);
    let rules = chain["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i.get("rule").is_some())
        .count();
    assert_eq!(rules, 8);

    for (port, expect_untrusted) in [(5060, 0), (15000, 0), (22, 2)] {
        let dst: SocketAddr = format!("{A4}:{port}").parse().unwrap();
        let l = Listener::start(&pair.a, dst, 10);
        send_udp(&pair.b, B4[0], dst, 2, "untrusted");
        send_udp(&pair.b, B4[1], dst, 2, "trusted");
        send_udp(&pair.b, B4[1], dst, 1, "stop");
        let heard = l.finish();
        assert_eq!(
            heard.iter().filter(|h| h.ends_with(" trusted")).count(),
            2,
            "port {port}: {heard:?}"
        );
        assert_eq!(
            heard.iter().filter(|h| h.ends_with("untrusted")).count(),
            expect_untrusted,
            "port {port}: {heard:?}"
        );
    }
}
