//! A generator of realistic Asterisk logs with a known answer, for the parser tests and
//! the `logscan` benchmark against fail2ban.
//!
//! The log looks like a busy PBX's `full` log: dialplan execution, qualify results,
//! contact updates, RTP and DTMF notices, digest challenges (`ChallengeSent`) and
//! successful authentications, with about 2% of lines being authentication failures
//! from a fixed set of attacker addresses (IPv4 and IPv6), in every shape fail2ban's
//! `asterisk` filter knows. Every failure line is one that fail2ban's filter matches,
//! and no other line is, so both tools must report [`GeneratedLog::failures`].
//!
//! Deterministic: the same `(lines, seed)` gives the same text on every platform (a
//! SplitMix64 generator, no dependency).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A generated log and what it contains.
#[derive(Clone, Debug)]
pub struct GeneratedLog {
    /// The log, one line per `\n`.
    pub text: String,
    /// Number of lines.
    pub lines: usize,
    /// Number of authentication failure lines (each matched by fail2ban's filter).
    pub failures: usize,
    /// Failure lines per attacker address.
    pub failures_by_ip: BTreeMap<IpAddr, usize>,
    /// Number of `SecurityEvent="SuccessfulAuth"` lines.
    pub successes: usize,
}

/// SplitMix64: tiny, fast, and stable across platforms and Rust versions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// The attacker addresses: 30 IPv4 (documentation ranges) and 10 IPv6.
fn attackers() -> Vec<IpAddr> {
    let mut v = Vec::with_capacity(40);
    for i in 0..15u8 {
        v.push(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 10 + i * 7)));
        v.push(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 3 + i * 11)));
    }
    for i in 0..10u16 {
        v.push(IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            0xbad,
            i,
            0,
            0,
            0,
            0x10 + i,
        )));
    }
    v
}

const EXTENSIONS: [&str; 12] = [
    "1001", "1002", "1003", "1004", "1005", "1010", "1011", "1020", "2001", "2002", "3000", "3001",
];
const TRIED_USERS: [&str; 10] = [
    "100", "1000", "admin", "101", "200", "test", "1234", "9999", "asterisk", "sip",
];
const DIALED: [&str; 6] = [
    "0044207946001",
    "9011442037690237",
    "00972599580679",
    "+441772285411",
    "0972598285108",
    "011448708752617",
];

/// One Asterisk-style wall clock that moves forward.
struct Clock {
    day: u32,
    secs: u32,
}

impl Clock {
    fn tick(&mut self, rng: &mut Rng) {
        self.secs += rng.below(2) as u32;
        if self.secs >= 86_400 {
            self.secs -= 86_400;
            self.day = (self.day % 28) + 1;
        }
    }

    fn write(&self, out: &mut String) {
        let (h, m, s) = (self.secs / 3600, self.secs / 60 % 60, self.secs % 60);
        let _ = write!(out, "[2026-11-{:02} {h:02}:{m:02}:{s:02}] ", self.day);
    }
}

fn ip_port(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

/// Generates `lines` lines of Asterisk log from `seed`.
pub fn generate_asterisk_log(lines: usize, seed: u64) -> GeneratedLog {
    let mut rng = Rng(seed ^ 0x746f_6c6c_6761_7465);
    let attackers = attackers();
    let mut text = String::with_capacity(lines * 160);
    let mut failures = 0usize;
    let mut successes = 0usize;
    let mut failures_by_ip: BTreeMap<IpAddr, usize> = BTreeMap::new();
    let mut clock = Clock { day: 26, secs: 0 };
    let mut channel = 0x1000u32;
    for _ in 0..lines {
        clock.tick(&mut rng);
        clock.write(&mut text);
        let pid = 1000 + rng.below(30_000);
        let roll = rng.below(1000);
        if roll < 20 {
            // Heavy hitters: the square skews the choice toward the first addresses.
            let r = rng.below(attackers.len() as u64);
            let ip = attackers[(r * r / attackers.len() as u64) as usize];
            failure_line(&mut text, &mut rng, pid, ip);
            failures += 1;
            *failures_by_ip.entry(ip).or_default() += 1;
        } else if roll < 30 {
            let ext = rng.pick(&EXTENSIONS);
            let last = 20 + rng.below(200);
            let _ = write!(
                text,
                "SECURITY[{pid}] res_security_log.c: SecurityEvent=\"SuccessfulAuth\",EventTV=\"2026-11-26T12:00:00.{:06}+0000\",Severity=\"Informational\",Service=\"PJSIP\",EventVersion=\"1\",AccountID=\"{ext}\",SessionID=\"{:08x}-{:08x}\",LocalAddress=\"IPV4/UDP/192.168.1.2/5060\",RemoteAddress=\"IPV4/UDP/192.168.1.{last}/5060\",UsingPassword=\"1\"",
                rng.below(1_000_000),
                rng.next() as u32,
                rng.next() as u32
            );
            successes += 1;
        } else {
            channel = channel.wrapping_add(u32::from(rng.below(3) == 0));
            noise_line(&mut text, &mut rng, pid, channel);
        }
        text.push('\n');
    }
    GeneratedLog {
        text,
        lines,
        failures,
        failures_by_ip,
        successes,
    }
}

fn failure_line(out: &mut String, rng: &mut Rng, pid: u64, ip: IpAddr) {
    let port = 5060 + rng.below(60_000) as u16;
    let user = *rng.pick(&TRIED_USERS);
    let callid = format!("{:016x}", rng.next());
    let family = if ip.is_ipv4() { "IPV4" } else { "IPV6" };
    let addr = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => v6.to_string(),
    };
    match rng.below(10) {
        0 => {
            let _ = write!(
                out,
                "NOTICE[{pid}] chan_sip.c: Registration from '\"{user}\" <sip:{user}@192.168.1.2>' failed for '{}' - Wrong password",
                ip_port(ip, port)
            );
        }
        1 => {
            let _ = write!(
                out,
                "NOTICE[{pid}] chan_sip.c: Registration from '<sip:{user}@192.168.1.2>' failed for '{}' - No matching peer found",
                ip_port(ip, port)
            );
        }
        2 => {
            let _ = write!(
                out,
                "NOTICE[{pid}] res_pjsip/pjsip_distributor.c: Request 'REGISTER' from '\"{user}\" <sip:{user}@192.168.1.2>' failed for '{}' (callid: {callid}) - No matching endpoint found",
                ip_port(ip, port)
            );
        }
        3 => {
            let _ = write!(
                out,
                "NOTICE[{pid}] res_pjsip/pjsip_distributor.c: Request 'INVITE' from '<sip:{user}@192.168.1.2>' failed for '{}' (callid: {callid}) - Failed to authenticate",
                ip_port(ip, port)
            );
        }
        4 => {
            let _ = write!(
                out,
                "SECURITY[{pid}] res_security_log.c: SecurityEvent=\"InvalidAccountID\",EventTV=\"2026-11-26T12:00:00.{:06}+0000\",Severity=\"Error\",Service=\"PJSIP\",EventVersion=\"1\",AccountID=\"{user}\",SessionID=\"{callid}\",LocalAddress=\"{family}/UDP/192.168.1.2/5060\",RemoteAddress=\"{family}/UDP/{addr}/{port}\"",
                rng.below(1_000_000)
            );
        }
        5 => {
            let _ = write!(
                out,
                "SECURITY[{pid}] res_security_log.c: SecurityEvent=\"ChallengeResponseFailed\",EventTV=\"2026-11-26T12:00:00.{:06}+0000\",Severity=\"Error\",Service=\"PJSIP\",EventVersion=\"1\",AccountID=\"{user}\",SessionID=\"{callid}\",LocalAddress=\"{family}/UDP/192.168.1.2/5060\",RemoteAddress=\"{family}/UDP/{addr}/{port}\",Challenge=\"1764158400/{:032x}\",Response=\"{:032x}\",ExpectedResponse=\"\"",
                rng.below(1_000_000),
                u128::from(rng.next()) << 64 | u128::from(rng.next()),
                u128::from(rng.next()) << 64 | u128::from(rng.next())
            );
        }
        6 => {
            let _ = write!(
                out,
                "SECURITY[{pid}] res_security_log.c: SecurityEvent=\"InvalidPassword\",EventTV=\"1764158400-{:06}\",Severity=\"Error\",Service=\"SIP\",EventVersion=\"2\",AccountID=\"{user}\",SessionID=\"0x{:x}\",LocalAddress=\"{family}/UDP/192.168.1.2/5060\",RemoteAddress=\"{family}/UDP/{addr}/{port}\",Challenge=\"{:08x}\",ReceivedChallenge=\"{:08x}\",ReceivedHash=\"{:032x}\"",
                rng.below(1_000_000),
                rng.next() >> 16,
                rng.next() as u32,
                rng.next() as u32,
                u128::from(rng.next()) << 64 | u128::from(rng.next())
            );
        }
        7 => {
            let _ = write!(
                out,
                "NOTICE[{pid}][C-{:08x}] chan_sip.c: Call from '' ({}) to extension '{}' rejected because extension not found in context 'public'.",
                rng.below(0xffff),
                ip_port(ip, port),
                rng.pick(&DIALED)
            );
        }
        8 => {
            let _ = write!(
                out,
                "WARNING[{pid}][C-{:08x}] Ext. s: \"Rejecting unknown SIP connection from {}\"",
                rng.below(0xffff),
                ip_port(ip, port)
            );
        }
        _ => {
            let _ = write!(
                out,
                "NOTICE[{pid}] manager.c: {} failed to authenticate as '{user}'",
                match ip {
                    IpAddr::V4(v4) => v4.to_string(),
                    IpAddr::V6(v6) => format!("[{v6}]"),
                }
            );
        }
    }
}

fn noise_line(out: &mut String, rng: &mut Rng, pid: u64, channel: u32) {
    let ext = *rng.pick(&EXTENSIONS);
    let peer = *rng.pick(&EXTENSIONS);
    let lan = 20 + rng.below(200);
    let c = channel;
    let _ = match rng.below(16) {
        0 => write!(
            out,
            "VERBOSE[{pid}][C-{c:08x}] pbx.c: Executing [{peer}@from-internal:1] Dial(\"PJSIP/{ext}-{c:08x}\", \"PJSIP/{peer},30,tT\") in new stack"
        ),
        1 => write!(
            out,
            "VERBOSE[{pid}][C-{c:08x}] app_dial.c: PJSIP/{peer}-{:08x} is ringing",
            c + 1
        ),
        2 => write!(
            out,
            "VERBOSE[{pid}][C-{c:08x}] app_dial.c: PJSIP/{peer}-{:08x} answered PJSIP/{ext}-{c:08x}",
            c + 1
        ),
        3 => write!(
            out,
            "VERBOSE[{pid}][C-{c:08x}] bridge_channel.c: Channel PJSIP/{peer}-{:08x} joined 'simple_bridge' basic-bridge <{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}>",
            c + 1,
            rng.next() as u32,
            rng.below(0xffff),
            rng.below(0xfff),
            rng.below(0xfff),
            rng.next() >> 16
        ),
        4 => write!(
            out,
            "VERBOSE[{pid}] res_pjsip_registrar.c: Added contact 'sip:{ext}@192.168.1.{lan}:5060;transport=UDP;rinstance={:016x}' to AOR '{ext}' with expiration of 3600 seconds",
            rng.next()
        ),
        5 => write!(
            out,
            "VERBOSE[{pid}] res_pjsip/pjsip_configuration.c: Endpoint {ext} is now Reachable"
        ),
        6 => write!(
            out,
            "VERBOSE[{pid}] res_pjsip/pjsip_options.c: Contact {ext}/sip:{ext}@192.168.1.{lan}:5060 is now Reachable.  RTT: {}.{:03} msec",
            rng.below(80),
            rng.below(1000)
        ),
        7 => write!(
            out,
            "NOTICE[{pid}][C-{c:08x}] res_rtp_asterisk.c: Strict RTP learning complete - Locking on source address 192.168.1.{lan}:{}",
            10_000 + 2 * rng.below(5000)
        ),
        8 => write!(
            out,
            "VERBOSE[{pid}][C-{c:08x}] pbx.c: Spawn extension (from-internal, {peer}, 1) exited non-zero on 'PJSIP/{ext}-{c:08x}'"
        ),
        9 => write!(
            out,
            "DTMF[{pid}][C-{c:08x}] channel.c: DTMF end '{}' received on PJSIP/{ext}-{c:08x}, duration {} ms",
            rng.below(10),
            80 + rng.below(120)
        ),
        10 | 11 => write!(
            out,
            "SECURITY[{pid}] res_security_log.c: SecurityEvent=\"ChallengeSent\",EventTV=\"2026-11-26T12:00:00.{:06}+0000\",Severity=\"Informational\",Service=\"PJSIP\",EventVersion=\"1\",AccountID=\"{ext}\",SessionID=\"{:08x}-{:08x}\",LocalAddress=\"IPV4/UDP/192.168.1.2/5060\",RemoteAddress=\"IPV4/UDP/192.168.1.{lan}/5060\",Challenge=\"1764158400/{:016x}\"",
            rng.below(1_000_000),
            rng.next() as u32,
            rng.next() as u32,
            rng.next()
        ),
        12 => write!(
            out,
            "VERBOSE[{pid}][C-{c:08x}] res_musiconhold.c: Started music on hold, class 'default', on channel 'PJSIP/{ext}-{c:08x}'"
        ),
        13 => write!(
            out,
            "WARNING[{pid}] taskprocessor.c: The 'stasis/pool-control' task processor queue reached 500 scheduled tasks again."
        ),
        14 => write!(
            out,
            "VERBOSE[{pid}][C-{c:08x}] app_voicemail.c: Recording the message from {ext} to {peer}@default"
        ),
        _ => write!(
            out,
            "NOTICE[{pid}] chan_sip.c: Peer '{peer}' is now Reachable. ({}ms / 2000ms)",
            rng.below(90)
        ),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_counted() {
        let a = generate_asterisk_log(5000, 7);
        let b = generate_asterisk_log(5000, 7);
        assert_eq!(a.text, b.text);
        assert_eq!(a.text.lines().count(), 5000);
        assert_eq!(a.failures, a.failures_by_ip.values().sum::<usize>());
        assert!(a.failures > 50 && a.failures < 200, "{}", a.failures);
        assert_ne!(a.text, generate_asterisk_log(5000, 8).text);
    }
}
