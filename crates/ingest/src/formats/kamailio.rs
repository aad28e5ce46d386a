//! Kamailio: the one-line format tollgate's example `kamailio.cfg` writes with `xlog`.
//!
//! # The line
//!
//! ```text
//! tollgate: auth=failure ip=192.0.2.1 port=5060 proto=udp user="1001" ua="friendly-scanner" reason="wrong password"
//! tollgate: auth=success ip=192.0.2.1 port=5060 proto=tls user="1001" ua="Yealink SIP-T46S"
//! ```
//!
//! anywhere in a log line, so whatever syslog or Kamailio's own logger puts in front of
//! it (`Nov 26 12:00:00 sbc /usr/sbin/kamailio[812]: NOTICE: <script>: tollgate: ...`)
//! does not matter. Emitted from `kamailio.cfg` with:
//!
//! ```text
//! xlog("L_NOTICE", "tollgate: auth=failure ip=$si port=$sp proto=$proto user=\"$(fU{s.escape.common})\" ua=\"$(ua{s.escape.common})\" reason=\"wrong password\" ts=$TV(Sn)\n");
//! ```
//!
//! # Fields
//!
//! After `tollgate:`, space-separated `key=value` fields, `auth` first:
//!
//! | key | required | value |
//! |---|---|---|
//! | `auth` | yes | `failure` or `success` |
//! | `ip` | yes | the request's source address (`$si`); IPv6 with or without brackets |
//! | `port` | no | source port (`$sp`) |
//! | `proto` | no | `udp`, `tcp`, `tls`, `ws`, `wss`, `sctp` (`$proto`), any case |
//! | `user` | no | the user name tried (`$fU`, or `$au` for the digest user) |
//! | `ua` | no | the User-Agent (`$ua`) |
//! | `reason` | no | why it failed, short |
//! | `ts` | no | when, as Unix seconds with an optional fraction (`$TV(Sn)` gives `1764158400.123456`); without it the line's own leading time is used, if any |
//!
//! Unknown keys are ignored, so later versions can add fields. When a key appears
//! twice, the first one counts: `auth`, `ip`, `port` and `proto` come from Kamailio
//! itself and are written first, so a User-Agent that quotes ` ip=...` cannot replace
//! the address.
//!
//! # Values and escapes
//!
//! A value is either bare (no space, no `"`, ends at the next space) or in double
//! quotes, where it may contain spaces and these escapes: `\"` for `"`, `\\` for `\`,
//! `\'` for `'`, `\0` for nothing (a NUL is dropped), `\n`, `\r` and `\t` for those
//! characters; a backslash before any other character stands for that character.
//! Those are exactly what Kamailio's `{s.escape.common}` transformation writes, so
//! attacker-controlled values (`$fU`, `$ua`) should be quoted and passed through it.
//! A quoted value without its closing quote ends the line's fields.
//!
//! # Trust
//!
//! The parser believes any line with `tollgate: auth=`. If some other log statement of
//! the same Kamailio echoes attacker data (a User-Agent, a From header), an attacker
//! could put such a line in it and have an address of their choice counted. Give
//! tollgate's lines a log of their own (xlog to a dedicated `log_facility` with its own
//! syslog file) when other statements log request data.

use chrono::{DateTime, TimeZone, Utc};
use memchr::memmem;
use tollgate_core::guard_event::{AuthEvent, AuthOutcome};

use super::common::{parse_host_port, parse_port, transport, EventParts, MAX_FIELD_LEN};

pub(crate) const KEYWORDS: [(&str, u32); 1] = [("tollgate:", 0)];

/// The fields of one line, first occurrence of each.
#[derive(Default)]
struct Fields<'a> {
    auth: Option<&'a [u8]>,
    ip: Option<&'a [u8]>,
    port: Option<&'a [u8]>,
    proto: Option<&'a [u8]>,
    user: Option<Value<'a>>,
    ua: Option<Value<'a>>,
    reason: Option<Value<'a>>,
    ts: Option<&'a [u8]>,
}

/// A value as it appears on the line: bare, or quoted with escapes still in.
#[derive(Clone, Copy)]
struct Value<'a> {
    raw: &'a [u8],
    quoted: bool,
}

impl Value<'_> {
    /// The value's text, escapes resolved, at most [`MAX_FIELD_LEN`] bytes.
    fn text(self) -> Option<String> {
        let mut out = Vec::with_capacity(self.raw.len().min(MAX_FIELD_LEN));
        if self.quoted {
            let mut bytes = self.raw.iter();
            while let Some(&b) = bytes.next() {
                if out.len() >= MAX_FIELD_LEN {
                    break;
                }
                if b != b'\\' {
                    out.push(b);
                    continue;
                }
                match bytes.next() {
                    Some(b'0') | None => {}
                    Some(b'n') => out.push(b'\n'),
                    Some(b'r') => out.push(b'\r'),
                    Some(b't') => out.push(b'\t'),
                    Some(&other) => out.push(other),
                }
            }
        } else {
            out.extend_from_slice(&self.raw[..self.raw.len().min(MAX_FIELD_LEN)]);
        }
        if out.is_empty() {
            return None;
        }
        Some(String::from_utf8_lossy(&out).into_owned())
    }
}

/// Splits the fields after `tollgate:`. Stops at the first malformed field: what
/// follows it cannot be told apart reliably.
fn fields<'a>(mut s: &'a [u8]) -> Fields<'a> {
    let mut f = Fields::default();
    loop {
        while let [b' ' | b'\t', rest @ ..] = s {
            s = rest;
        }
        let Some(eq) = memchr::memchr(b'=', s) else {
            return f;
        };
        let key = &s[..eq];
        if key.is_empty() || !key.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_') {
            return f;
        }
        let after = &s[eq + 1..];
        let (value, rest) = if let Some(body) = after.strip_prefix(b"\"") {
            // Find the closing quote, skipping escaped characters.
            let mut i = 0;
            let mut close = None;
            while i < body.len() {
                match body[i] {
                    b'\\' => i += 2,
                    b'"' => {
                        close = Some(i);
                        break;
                    }
                    _ => i += 1,
                }
            }
            let Some(close) = close else {
                return f;
            };
            (
                Value {
                    raw: &body[..close],
                    quoted: true,
                },
                &body[close + 1..],
            )
        } else {
            let end = after
                .iter()
                .position(|&b| b == b' ' || b == b'\t')
                .unwrap_or(after.len());
            (
                Value {
                    raw: &after[..end],
                    quoted: false,
                },
                &after[end..],
            )
        };
        // The first occurrence of a key counts (see the module documentation).
        let raw = |slot: &mut Option<&'a [u8]>| {
            slot.get_or_insert(value.raw);
        };
        match key {
            b"auth" => raw(&mut f.auth),
            b"ip" => raw(&mut f.ip),
            b"port" => raw(&mut f.port),
            b"proto" => raw(&mut f.proto),
            b"ts" => raw(&mut f.ts),
            b"user" => {
                f.user.get_or_insert(value);
            }
            b"ua" => {
                f.ua.get_or_insert(value);
            }
            b"reason" => {
                f.reason.get_or_insert(value);
            }
            _ => {}
        }
        // A field must be followed by a space or the end of the line.
        if !(rest.is_empty() || rest[0] == b' ' || rest[0] == b'\t') {
            return f;
        }
        s = rest;
    }
}

/// Unix seconds with an optional fraction: `1764158400` or `1764158400.123456`.
fn unix_time(s: &[u8]) -> Option<DateTime<Utc>> {
    let (secs, frac) = match memchr::memchr(b'.', s) {
        Some(dot) => (&s[..dot], &s[dot + 1..]),
        None => (s, &b""[..]),
    };
    if secs.is_empty() || secs.len() > 12 || !secs.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let secs: i64 = std::str::from_utf8(secs).ok()?.parse().ok()?;
    let mut nanos = 0u32;
    for i in 0..9 {
        nanos = nanos * 10 + frac.get(i).map_or(0, |d| u32::from(d - b'0'));
    }
    Utc.timestamp_opt(secs, nanos).single()
}

pub(crate) fn parse(
    line: &[u8],
    leading_at: impl Fn() -> Option<DateTime<Utc>>,
) -> Option<AuthEvent> {
    const HEAD: &[u8] = b"tollgate:";
    // The first `tollgate:` followed by a well-formed line; a User-Agent cannot come
    // before Kamailio's own `auth=`, so later ones are not looked at once one parses.
    for start in memmem::find_iter(line, HEAD) {
        let body = &line[start + HEAD.len()..];
        let first = body
            .iter()
            .position(|&b| b != b' ' && b != b'\t')
            .unwrap_or(body.len());
        if !body[first..].starts_with(b"auth=") {
            continue;
        }
        let f = fields(body);
        let outcome = match f.auth {
            Some(b"failure") => AuthOutcome::Failure,
            Some(b"success") => AuthOutcome::Success,
            Some(b"challenge") => AuthOutcome::Challenge,
            _ => continue,
        };
        let Some((ip, port_in_ip)) = f.ip.and_then(|s| parse_host_port(s, false)) else {
            continue;
        };
        let port = f.port.and_then(parse_port).flatten().or(port_in_ip);
        let reason = f.reason.and_then(Value::text).unwrap_or_else(|| {
            match outcome {
                AuthOutcome::Failure => "authentication failed",
                AuthOutcome::Success => "authenticated",
                AuthOutcome::Challenge => "challenged",
            }
            .to_owned()
        });
        let parts = EventParts {
            ip,
            port,
            transport: f.proto.and_then(transport),
            user: f.user.and_then(Value::text),
            user_agent: f.ua.and_then(Value::text),
            outcome,
            reason,
        };
        let at = f.ts.and_then(unix_time).or_else(&leading_at);
        return Some(parts.into_event(at));
    }
    None
}
