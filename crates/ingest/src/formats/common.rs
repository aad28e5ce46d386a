//! Pieces the built-in parsers share: addresses and ports read from byte slices,
//! log timestamps, bounded strings and the event constructor.
//!
//! Everything here works on `&[u8]` and allocates only when an event is built, so a
//! line that turns out not to be an event costs no allocation.

use std::net::IpAddr;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use memchr::{memchr, memrchr};
use tollgate_core::guard_event::{AuthEvent, AuthOutcome};

/// Longest user name, User-Agent or reason kept in an event, in bytes. These fields
/// come from the attacker; an event stays small whatever they send.
pub(crate) const MAX_FIELD_LEN: usize = 256;

/// How the parsers turn a log's own timestamp into an instant.
///
/// PBX logs write local wall-clock time, usually without a zone and often without a
/// year (Asterisk's default `[Nov 26 12:00:00]`, syslog's `Nov 26 12:00:00`, FreeSWITCH's
/// `11-26 12:00:00.123`). A wrong guess would move failures in or out of a jail's
/// `findtime`, so when the context cannot settle a timestamp the event gets `at: None`
/// and the receiver uses its own clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeContext {
    /// The zone the PBX writes its wall-clock times in. Default UTC. A wall-clock time
    /// that does not exist or is ambiguous in this zone (the hour a DST change skips or
    /// repeats) gives `at: None`. A timestamp that carries its own offset
    /// (`2026-11-26T12:00:00+01:00`) uses that offset instead.
    pub zone: Tz,
    /// What to do with timestamps that have no year.
    pub year: YearRule,
}

/// The year for timestamps that do not carry one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum YearRule {
    /// Leave `at: None` (default): no year, no guess.
    Unknown,
    /// Use this year (replaying an old log whose year the operator knows).
    Fixed(i32),
    /// Live tailing: the line was written recently, so take the year of this instant,
    /// or the year before when that would put the line more than a day in the future
    /// (a December line read on the 1st of January).
    Recent(DateTime<Utc>),
}

impl Default for TimeContext {
    fn default() -> Self {
        Self::utc()
    }
}

impl TimeContext {
    /// UTC wall clock, year-less timestamps left without a time.
    pub const fn utc() -> Self {
        Self {
            zone: Tz::UTC,
            year: YearRule::Unknown,
        }
    }

    /// For live tailing: wall-clock times in `zone`, year-less ones placed near `now`.
    pub const fn live(zone: Tz, now: DateTime<Utc>) -> Self {
        Self {
            zone,
            year: YearRule::Recent(now),
        }
    }

    /// Resolves a wall-clock time in the context's zone (or `offset` when the log gave
    /// one) to an instant. `naive(year)` builds the wall-clock time for a year; when
    /// `has_year` the log gave the year and `naive` ignores its argument, otherwise the
    /// year rule picks one.
    pub(crate) fn resolve(
        &self,
        has_year: bool,
        naive: impl Fn(i32) -> Option<NaiveDateTime>,
        offset: Option<FixedOffset>,
    ) -> Option<DateTime<Utc>> {
        let at_year = |y: i32| -> Option<DateTime<Utc>> {
            let naive = naive(y)?;
            match offset {
                Some(off) => off
                    .from_local_datetime(&naive)
                    .single()
                    .map(|t| t.with_timezone(&Utc)),
                None => self
                    .zone
                    .from_local_datetime(&naive)
                    .single()
                    .map(|t| t.with_timezone(&Utc)),
            }
        };
        if has_year {
            return at_year(0);
        }
        match self.year {
            YearRule::Fixed(y) => at_year(y),
            YearRule::Unknown => None,
            YearRule::Recent(now) => match at_year(now.year()) {
                Some(t) if t <= now + chrono::Duration::days(1) => Some(t),
                Some(_) => at_year(now.year() - 1),
                // 29 February of a year that has none: the line is from an earlier
                // year. A wall-clock time the zone skips or repeats stays unknown.
                None if naive(now.year()).is_none() => at_year(now.year() - 1),
                None => None,
            },
        }
    }
}

/// A wall-clock time without its year.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WallClock {
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub nano: u32,
}

impl WallClock {
    fn with_year(self, year: i32) -> Option<NaiveDateTime> {
        NaiveDate::from_ymd_opt(year, self.month, self.day)?.and_hms_nano_opt(
            self.hour,
            self.minute,
            self.second,
            self.nano,
        )
    }
}

/// The time at the start of a log line, in any of the shapes PBXs and syslog write:
/// `[2026-11-26 12:00:00]`, `[2026-11-26 12:00:00.123]`, `[Nov 26 12:00:00]`,
/// `Nov  6 12:00:00 host ...`, `2026-11-26 12:00:00.123456 [WARNING] ...`,
/// `11-26 12:00:00.123456 ...`, `2026-11-26T12:00:00.150982+01:00 host ...`.
pub(crate) fn leading_time(line: &[u8], ctx: &TimeContext) -> Option<DateTime<Utc>> {
    let s = line.strip_prefix(b"[").unwrap_or(line);
    if let Some((year, wall, offset)) = iso_time(s) {
        return ctx.resolve(true, |_| wall.with_year(year), offset);
    }
    if let Some(wall) = month_day_time(s) {
        return ctx.resolve(false, |y| wall.with_year(y), None);
    }
    if let Some(wall) = bsd_time(s) {
        return ctx.resolve(false, |y| wall.with_year(y), None);
    }
    None
}

fn digits(s: &[u8], at: usize, n: usize) -> Option<u32> {
    let d = s.get(at..at + n)?;
    let mut v = 0u32;
    for &b in d {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(b - b'0');
    }
    Some(v)
}

/// `HH:MM:SS` at `at`, then an optional `.fraction`; returns the fields and where they end.
fn clock(s: &[u8], at: usize) -> Option<(u32, u32, u32, u32, usize)> {
    let hour = digits(s, at, 2)?;
    (s.get(at + 2) == Some(&b':')).then_some(())?;
    let minute = digits(s, at + 3, 2)?;
    (s.get(at + 5) == Some(&b':')).then_some(())?;
    let second = digits(s, at + 6, 2)?;
    let mut end = at + 8;
    let mut nano = 0u32;
    if s.get(end) == Some(&b'.') {
        let frac_start = end + 1;
        let mut i = frac_start;
        while i < s.len() && s[i].is_ascii_digit() {
            if i - frac_start < 9 {
                nano = nano * 10 + u32::from(s[i] - b'0');
            }
            i += 1;
        }
        if i == frac_start {
            return None;
        }
        let kept = (i - frac_start).min(9);
        nano *= 10u32.pow((9 - kept) as u32);
        end = i;
    }
    Some((hour, minute, second, nano, end))
}

/// `YYYY-MM-DD[ T]HH:MM:SS[.f][Z|+hh:mm|+hhmm]`.
fn iso_time(s: &[u8]) -> Option<(i32, WallClock, Option<FixedOffset>)> {
    let year = digits(s, 0, 4)?;
    (s.get(4) == Some(&b'-') && s.get(7) == Some(&b'-')).then_some(())?;
    let month = digits(s, 5, 2)?;
    let day = digits(s, 8, 2)?;
    matches!(s.get(10), Some(b' ' | b'T')).then_some(())?;
    let (hour, minute, second, nano, end) = clock(s, 11)?;
    let offset = match s.get(end) {
        Some(b'Z') => FixedOffset::east_opt(0),
        Some(&sign @ (b'+' | b'-')) => {
            let h = digits(s, end + 1, 2)?;
            let m_at = if s.get(end + 3) == Some(&b':') {
                end + 4
            } else {
                end + 3
            };
            let m = digits(s, m_at, 2)?;
            let secs = i32::try_from(h * 3600 + m * 60).ok()?;
            FixedOffset::east_opt(if sign == b'-' { -secs } else { secs })
        }
        _ => None,
    };
    let year = i32::try_from(year).ok()?;
    Some((
        year,
        WallClock {
            month,
            day,
            hour,
            minute,
            second,
            nano,
        },
        offset,
    ))
}

/// FreeSWITCH's year-less `MM-DD HH:MM:SS[.f]`.
fn month_day_time(s: &[u8]) -> Option<WallClock> {
    let month = digits(s, 0, 2)?;
    (s.get(2) == Some(&b'-')).then_some(())?;
    let day = digits(s, 3, 2)?;
    (s.get(5) == Some(&b' ')).then_some(())?;
    let (hour, minute, second, nano, _) = clock(s, 6)?;
    Some(WallClock {
        month,
        day,
        hour,
        minute,
        second,
        nano,
    })
}

/// Syslog's and Asterisk's default `Mon DD HH:MM:SS` (day space-padded or not).
fn bsd_time(s: &[u8]) -> Option<WallClock> {
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let name = s.get(0..3)?;
    let month = MONTHS.iter().position(|m| m.as_slice() == name)? as u32 + 1;
    (s.get(3) == Some(&b' ')).then_some(())?;
    let mut i = 4;
    if s.get(i) == Some(&b' ') {
        i += 1;
    }
    let (day, after_day) = if let Some(d) = digits(s, i, 2) {
        (d, i + 2)
    } else {
        (digits(s, i, 1)?, i + 1)
    };
    (s.get(after_day) == Some(&b' ')).then_some(())?;
    let (hour, minute, second, nano, _) = clock(s, after_day + 1)?;
    Some(WallClock {
        month,
        day,
        hour,
        minute,
        second,
        nano,
    })
}

/// An IP address, with optional brackets (fail2ban's `<HOST>` takes `\[?...\]?`), and
/// IPv4-mapped IPv6 turned into IPv4 as fail2ban does.
pub(crate) fn parse_ip(s: &[u8]) -> Option<IpAddr> {
    let s = s.strip_prefix(b"[").unwrap_or(s);
    let s = s.strip_suffix(b"]").unwrap_or(s);
    // The longest textual IPv6 address is 45 bytes; anything longer is not one, and
    // the check keeps hostile input from reaching the parser at length.
    if s.is_empty() || s.len() > 45 {
        return None;
    }
    let text = std::str::from_utf8(s).ok()?;
    let ip: IpAddr = text.parse().ok()?;
    Some(ip.to_canonical())
}

/// A port: digits only. `Some(None)` for digits that do not fit a port (the line still
/// names its address), `None` for anything else.
pub(crate) fn parse_port(s: &[u8]) -> Option<Option<u16>> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if s.len() > 5 {
        return Some(None);
    }
    let mut v = 0u32;
    for &b in s {
        v = v * 10 + u32::from(b - b'0');
    }
    Some(u16::try_from(v).ok())
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address. With
/// `port_required`, a bare IPv6 address takes its last `:group` as the port, as
/// fail2ban's backtracking `<HOST>:\d+` does; without it, the whole text is tried as an
/// address first, as fail2ban's greedy `<HOST>(?::\d+)?` does.
pub(crate) fn parse_host_port(s: &[u8], port_required: bool) -> Option<(IpAddr, Option<u16>)> {
    if let Some(rest) = s.strip_prefix(b"[") {
        let close = memchr(b']', rest)?;
        let ip = parse_ip(&rest[..close])?;
        let after = &rest[close + 1..];
        if after.is_empty() {
            return (!port_required).then_some((ip, None));
        }
        let port = parse_port(after.strip_prefix(b":")?)?;
        return Some((ip, port));
    }
    if !port_required {
        if let Some(ip) = parse_ip(s) {
            return Some((ip, None));
        }
    }
    let colon = memrchr(b':', s)?;
    let ip = parse_ip(&s[..colon])?;
    let port = parse_port(&s[colon + 1..])?;
    Some((ip, port))
}

/// Text for an event field: at most [`MAX_FIELD_LEN`] bytes, invalid UTF-8 replaced.
pub(crate) fn field(s: &[u8]) -> String {
    let s = &s[..s.len().min(MAX_FIELD_LEN)];
    String::from_utf8_lossy(s).into_owned()
}

/// Like [`field`], `None` for an empty value and for placeholders PBXs write when they
/// do not know (`<unknown>`, `anonymous` is kept: it is what was tried).
pub(crate) fn opt_field(s: &[u8]) -> Option<String> {
    if s.is_empty() || s == b"<unknown>" {
        None
    } else {
        Some(field(s))
    }
}

/// The user part of a SIP URI somewhere in `s` (`"100" <sip:100@host>`, `sip:bob@x`,
/// `<sips:1001@pbx;transport=tls>`), or `None`.
pub(crate) fn sip_user(s: &[u8]) -> Option<String> {
    let at = memchr::memmem::find(s, b"sip:")
        .map(|i| i + 4)
        .or_else(|| memchr::memmem::find(s, b"sips:").map(|i| i + 5))?;
    let rest = &s[at..];
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'@' | b'>' | b';' | b'\'' | b'"' | b' '))?;
    (rest.get(end) == Some(&b'@')).then_some(())?;
    opt_field(&rest[..end])
}

/// Removes trailing ASCII whitespace (and the `\r` of CRLF logs).
pub(crate) fn trim_end(s: &[u8]) -> &[u8] {
    let mut end = s.len();
    while end > 0 && s[end - 1].is_ascii_whitespace() {
        end -= 1;
    }
    &s[..end]
}

/// Whether the byte is a regex `\w` character. Bytes of multi-byte UTF-8 characters
/// count as word characters, as Python's Unicode `\w` mostly does for letters.
pub(crate) fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// The pieces of an event, built only once a line is known to be one.
pub(crate) struct EventParts<'a> {
    pub ip: IpAddr,
    pub port: Option<u16>,
    pub transport: Option<&'a str>,
    pub user: Option<String>,
    pub user_agent: Option<String>,
    pub outcome: AuthOutcome,
    pub reason: String,
}

impl EventParts<'_> {
    pub(crate) fn into_event(self, at: Option<DateTime<Utc>>) -> AuthEvent {
        AuthEvent {
            at,
            ip: self.ip,
            port: self.port,
            transport: self.transport.map(str::to_owned),
            user: self.user,
            user_agent: self.user_agent,
            outcome: self.outcome,
            reason: self.reason,
        }
    }
}

/// A transport name as the events API spells it ("udp", "tcp", "tls", "ws", "wss",
/// "sctp"), from any case; `None` for anything else.
pub(crate) fn transport(s: &[u8]) -> Option<&'static str> {
    const NAMES: [&str; 6] = ["udp", "tcp", "tls", "ws", "wss", "sctp"];
    NAMES
        .iter()
        .copied()
        .find(|n| n.as_bytes().eq_ignore_ascii_case(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_shapes() {
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(parse_host_port(b"192.0.2.1", false), Some((v4, None)));
        assert_eq!(
            parse_host_port(b"192.0.2.1:5060", false),
            Some((v4, Some(5060)))
        );
        assert_eq!(parse_host_port(b"192.0.2.1", true), None);
        assert_eq!(
            parse_host_port(b"[2001:db8::1]:5060", true),
            Some((v6, Some(5060)))
        );
        assert_eq!(parse_host_port(b"2001:db8::1", false), Some((v6, None)));
        assert_eq!(
            parse_host_port(b"2001:db8::1:5060", true),
            Some((v6, Some(5060)))
        );
        assert_eq!(
            parse_host_port(b"::ffff:192.0.2.1", false),
            Some((v4, None))
        );
        assert_eq!(parse_host_port(b"192.0.2.1:99999", false), Some((v4, None)));
        assert_eq!(parse_host_port(b"999.0.2.1", false), None);
        assert_eq!(parse_host_port(b"", false), None);
    }

    #[test]
    fn timestamps() {
        let ctx = TimeContext::utc();
        let t = |s: &str| leading_time(s.as_bytes(), &ctx).map(|t| t.to_rfc3339());
        assert_eq!(
            t("[2026-11-26 12:00:01] NOTICE"),
            Some("2026-11-26T12:00:01+00:00".into())
        );
        assert_eq!(
            t("[2026-11-26 12:00:01.250] NOTICE"),
            Some("2026-11-26T12:00:01.250+00:00".into())
        );
        assert_eq!(
            t("2026-11-26 12:00:01.767815 [WARNING]"),
            Some("2026-11-26T12:00:01.767815+00:00".into())
        );
        assert_eq!(
            t("2026-11-26T12:00:01.5+01:00 host x"),
            Some("2026-11-26T11:00:01.500+00:00".into())
        );
        // Year-less: no guess without a year rule.
        assert_eq!(t("[Nov 26 12:00:01] NOTICE"), None);
        assert_eq!(t("Nov  6 12:00:01 pbx asterisk"), None);
        assert_eq!(t("11-26 12:00:01.5 [WARN]"), None);
        assert_eq!(t("NOTICE[1]: x"), None);
        assert_eq!(t("[2026-02-30 12:00:01]"), None);

        let fixed = TimeContext {
            zone: Tz::UTC,
            year: YearRule::Fixed(2025),
        };
        assert_eq!(
            leading_time(b"Nov  6 12:00:01 pbx", &fixed).map(|t| t.to_rfc3339()),
            Some("2025-11-06T12:00:01+00:00".into())
        );
        let now: DateTime<Utc> = "2027-01-01T00:10:00Z".parse().unwrap();
        let live = TimeContext::live(chrono_tz::Europe::Paris, now);
        assert_eq!(
            leading_time(b"[Dec 31 23:59:00] NOTICE", &live).map(|t| t.to_rfc3339()),
            Some("2026-12-31T22:59:00+00:00".into())
        );
        assert_eq!(
            leading_time(b"[Jan  1 01:05:00] NOTICE", &live).map(|t| t.to_rfc3339()),
            Some("2027-01-01T00:05:00+00:00".into())
        );
        // The hour Paris repeats in October is ambiguous: no guess.
        let paris = TimeContext {
            zone: chrono_tz::Europe::Paris,
            year: YearRule::Unknown,
        };
        assert_eq!(leading_time(b"[2026-10-25 02:30:00]", &paris), None);
    }

    #[test]
    fn sip_users() {
        assert_eq!(sip_user(b"\"100\" <sip:100@10.0.0.1>"), Some("100".into()));
        assert_eq!(
            sip_user(b"<sips:1001@pbx;transport=tls>"),
            Some("1001".into())
        );
        assert_eq!(sip_user(b"sip:bob@192.0.2.1"), Some("bob".into()));
        assert_eq!(sip_user(b"<sip:pbx.example.com>"), None);
        assert_eq!(sip_user(b"anonymous"), None);
    }
}
