//! The syslog channel over UDP to a socket on 127.0.0.1: the datagram is parsed as RFC 5424
//! (PRI, header, structured data, message) and a hostile subject stays inside its value.

// Test code: failures must fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::net::UdpSocket;

use support::{critical_notification, fast_options, WAIT};
use tollgate_notify::{
    AlertEvent, AlertSeverity, ChannelsConfig, Notifier, SyslogChannel, SyslogFacility,
};

/// One RFC 5424 message taken apart.
#[derive(Debug)]
struct Syslog {
    pri: u16,
    timestamp: String,
    hostname: String,
    app_name: String,
    procid: String,
    msgid: String,
    sd_id: String,
    params: BTreeMap<String, String>,
    msg: String,
}

/// Parses `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD-ID k="v" ...] MSG`, undoing
/// the `\"`, `\\` and `\]` escapes in parameter values. Panics on anything else.
fn parse(datagram: &str) -> Syslog {
    let rest = datagram.strip_prefix('<').expect("starts with <PRI>");
    let (pri, rest) = rest.split_once('>').expect("PRI ends with >");
    let rest = rest.strip_prefix("1 ").expect("version 1");
    let mut fields = rest.splitn(6, ' ');
    let mut next = || fields.next().expect("header field").to_owned();
    let (timestamp, hostname, app_name, procid, msgid) = (next(), next(), next(), next(), next());
    let sd = next();

    let mut chars = sd.chars().peekable();
    assert_eq!(chars.next(), Some('['), "structured data in {sd:?}");
    let mut sd_id = String::new();
    while let Some(&c) = chars.peek() {
        if c == ' ' || c == ']' {
            break;
        }
        sd_id.push(c);
        chars.next();
    }
    let mut params = BTreeMap::new();
    loop {
        match chars.next() {
            Some(']') => break,
            Some(' ') => {}
            other => panic!("unexpected {other:?} in structured data"),
        }
        let mut name = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            name.push(c);
        }
        assert_eq!(chars.next(), Some('"'), "value of {name} is quoted");
        let mut value = String::new();
        loop {
            match chars.next().expect("value ends") {
                '\\' => {
                    let escaped = chars.next().expect("escaped character");
                    assert!(
                        matches!(escaped, '"' | '\\' | ']'),
                        "only \", \\ and ] are escaped, not {escaped:?}"
                    );
                    value.push(escaped);
                }
                '"' => break,
                ']' => panic!("unescaped ] inside the value of {name}"),
                c => value.push(c),
            }
        }
        params.insert(name, value);
    }
    assert_eq!(chars.next(), Some(' '), "a space between SD and MSG");
    let msg: String = chars.collect();
    let msg = msg
        .strip_prefix('\u{feff}')
        .expect("UTF-8 MSG starts with a BOM")
        .to_owned();
    Syslog {
        pri: pri.parse().expect("PRI is a number"),
        timestamp,
        hostname,
        app_name,
        procid,
        msgid,
        sd_id,
        params,
        msg,
    }
}

fn receive(socket: &UdpSocket) -> String {
    let mut buffer = [0u8; 8192];
    let (length, _) = socket.recv_from(&mut buffer).expect("a datagram in time");
    String::from_utf8(buffer[..length].to_vec()).expect("UTF-8 datagram")
}

#[test]
fn alerts_arrive_as_rfc5424_with_escaped_structured_data() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    let mut channel = SyslogChannel::new(format!("udp:{}", socket.local_addr().unwrap()));
    channel.facility = SyslogFacility::Local3;
    channel.app_name = "tollgate-test".into();
    let config = ChannelsConfig {
        log: false,
        syslog: vec![channel],
        ..ChannelsConfig::default()
    };
    let notifier = Notifier::start_with(&config, fast_options()).unwrap();

    let mut hostile = critical_notification();
    hostile.subject = "extension 1001\"] \\ [x@1 a=\"b\"]\n<11>1 forged\r\nline".into();
    notifier.notify(hostile.clone());
    let mut warning = critical_notification();
    warning.severity = AlertSeverity::Warning;
    warning.event = AlertEvent::Closed;
    notifier.notify(warning);

    let first = receive(&socket);
    let second = receive(&socket);
    let stats = notifier.shutdown(WAIT);
    assert_eq!((stats[0].delivered, stats[0].failed), (2, 0));

    for datagram in [&first, &second] {
        assert!(
            !datagram.chars().any(char::is_control),
            "control character in {datagram:?}"
        );
    }

    let critical = parse(&first);
    // local3 (19) * 8 + crit (2).
    assert_eq!(critical.pri, 19 * 8 + 2);
    assert_eq!(critical.timestamp, "2023-11-14T22:13:20.123456Z");
    assert!(!critical.hostname.is_empty());
    assert!(critical.hostname.bytes().all(|b| (33..=126).contains(&b)));
    assert_eq!(critical.app_name, "tollgate-test");
    assert_eq!(critical.procid, std::process::id().to_string());
    assert_eq!(critical.msgid, "alert.opened");
    assert_eq!(critical.sd_id, "tollgate@32473");
    assert_eq!(critical.params["alert_id"], "a-000123");
    assert_eq!(critical.params["event"], "opened");
    assert_eq!(critical.params["severity"], "critical");
    assert_eq!(critical.params["rule"], "monitor.rules.satellite_burst");
    // The hostile subject comes back whole, its line breaks made spaces, inside its value.
    assert_eq!(
        critical.params["subject"],
        "extension 1001\"] \\ [x@1 a=\"b\"] <11>1 forged  line"
    );
    assert_eq!(critical.params.len(), 6, "{:?}", critical.params);
    let figures: serde_json::Value = serde_json::from_str(&critical.params["figures"]).unwrap();
    assert_eq!(figures, hostile.figures);
    assert!(
        critical
            .msg
            .contains("12 calls to high_risk in 10 min (critical at 10)"),
        "{}",
        critical.msg
    );
    assert!(critical.msg.contains("suspended extension 1001 for 1h"));

    let closed = parse(&second);
    // local3 (19) * 8 + warning (4): a closed event keeps its alert's severity.
    assert_eq!(closed.pri, 19 * 8 + 4);
    assert_eq!(closed.msgid, "alert.closed");
    assert_eq!(closed.params["subject"], "extension 1001");
}

#[test]
fn min_severity_critical_sends_no_warning() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    let mut channel = SyslogChannel::new(format!("udp:{}", socket.local_addr().unwrap()));
    channel.min_severity = AlertSeverity::Critical;
    let config = ChannelsConfig {
        log: false,
        syslog: vec![channel],
        ..ChannelsConfig::default()
    };
    let notifier = Notifier::start_with(&config, fast_options()).unwrap();
    let mut warning = critical_notification();
    warning.severity = AlertSeverity::Warning;
    warning.alert_id = "a-warning".into();
    notifier.notify(warning);
    notifier.notify(critical_notification());
    // Datagrams on loopback keep their order: the first one received is the critical one.
    let only = parse(&receive(&socket));
    let stats = notifier.shutdown(WAIT);
    assert_eq!(stats[0].delivered, 1, "the warning was sent: {stats:?}");
    assert_eq!(only.params["alert_id"], "a-000123");
    // daemon (3) * 8 + crit (2): daemon is the default facility.
    assert_eq!(only.pri, 3 * 8 + 2);
}
