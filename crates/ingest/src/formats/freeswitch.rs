//! FreeSWITCH: mod_sofia's authentication lines (written when a profile has
//! `<param name="log-auth-failures" value="true"/>`).
//!
//! ```text
//! 2026-11-26 12:00:00.767815 [WARNING] sofia_reg.c:1478 SIP auth failure (REGISTER) on sofia profile 'internal' for [1001@pbx] from ip 192.0.2.1
//! 2026-11-26 12:00:00.767815 [WARNING] sofia_reg.c:1533 SIP auth challenge (INVITE) on sofia profile 'internal' for [0044...@pbx] from ip 192.0.2.1
//! 2026-11-26 12:00:00.767815 [WARNING] sofia_reg.c:2531 Can't find user [1001@pbx] from 192.0.2.1
//! ```
//!
//! "SIP auth challenge" lines are caught (fail2ban's `freeswitch` filter matches them in
//! its default mode, `extra`, and tollgate catches its every match with the same
//! address) but reported as `AuthOutcome::Challenge` with the reason
//! `SIP auth challenge (METHOD)`, not as failures: FreeSWITCH writes one for every digest
//! challenge it sends, including those a legitimate phone answers correctly, and counting
//! them (as fail2ban does) bans busy offices. tollgate's jails count only failures.
//!
//! The address is the last thing on the line and FreeSWITCH's own (the request's
//! source); the `[user@domain]` before it is the attacker's, so it is found from the
//! right, which a target that quotes a fake `] from ip` cannot move.

use chrono::{DateTime, Utc};
use memchr::memmem;
use tollgate_core::guard_event::{AuthEvent, AuthOutcome};

use super::common::{field, opt_field, parse_ip, trim_end, EventParts};

pub(crate) const KEYWORDS: [(&str, u32); 3] = [
    ("SIP auth failure (", 0),
    ("SIP auth challenge (", 1),
    ("Can't find user [", 2),
];

pub(crate) fn parse(
    line: &[u8],
    kinds: u32,
    at: impl Fn() -> Option<DateTime<Utc>>,
) -> Option<AuthEvent> {
    let shapes: [(u32, &dyn Fn() -> Option<EventParts<'static>>); 3] = [
        (2, &|| user_not_found(line)),
        (0, &|| sip_auth(line, KEYWORDS[0].0)),
        (1, &|| sip_auth(line, KEYWORDS[1].0)),
    ];
    let parts = shapes
        .iter()
        .filter(|(bit, _)| kinds & (1 << bit) != 0)
        .find_map(|(_, shape)| shape())?;
    Some(parts.into_event(at()))
}

/// Whether the message at `start` follows `sofia_reg.c:1478 ` or `[sofia_reg.c:4130] `,
/// as in fail2ban's prefix `\[?sofia_reg\.c:\d+\]? `.
fn prefix_ok(line: &[u8], start: usize) -> bool {
    if start < 2 || line[start - 1] != b' ' {
        return false;
    }
    let mut i = start - 1;
    if line[i - 1] == b']' {
        i -= 1;
    }
    let digits_end = i;
    while i > 0 && line[i - 1].is_ascii_digit() {
        i -= 1;
    }
    i < digits_end && line[..i].ends_with(b"sofia_reg.c:")
}

fn message_start(line: &[u8], needle: &[u8]) -> Option<usize> {
    memmem::find_iter(line, needle).find(|&i| prefix_ok(line, i))
}

/// The user part of `user@domain`, or `None`.
fn target_user(target: &[u8]) -> Option<String> {
    let user = match memchr::memchr(b'@', target) {
        Some(at) => &target[..at],
        None => target,
    };
    opt_field(user)
}

/// `SIP auth failure (REGISTER) on sofia profile 'internal' for [1001@pbx] from ip ADDR`
/// and the same with `challenge`.
fn sip_auth(line: &[u8], head: &str) -> Option<EventParts<'static>> {
    const TO_PROFILE: &[u8] = b") on sofia profile '";
    const TO_TARGET: &[u8] = b"' for [";
    const TO_ADDR: &[u8] = b"] from ip ";
    let start = message_start(line, head.as_bytes())?;
    let method_start = start + head.len();
    let rest = &line[method_start..];
    let method_len = rest.iter().position(|b| !b.is_ascii_uppercase())?;
    if method_len == 0 || method_len > 16 {
        return None;
    }
    let method = &rest[..method_len];
    let rest = rest[method_len..].strip_prefix(TO_PROFILE)?;
    let profile_len = memchr::memchr(b'\'', rest)?;
    if profile_len == 0 {
        return None;
    }
    let rest = rest[profile_len..].strip_prefix(TO_TARGET)?;
    let body = trim_end(rest);
    let sep = memmem::rfind(body, TO_ADDR)?;
    let ip = parse_ip(&body[sep + TO_ADDR.len()..])?;
    let kind = head.trim_end_matches(" (");
    let mut reason = String::with_capacity(kind.len() + method.len() + 3);
    reason.push_str(kind);
    reason.push_str(" (");
    reason.push_str(&field(method));
    reason.push(')');
    Some(EventParts {
        ip,
        port: None,
        transport: None,
        user: target_user(&body[..sep]),
        user_agent: None,
        // A challenge is how every registration starts: caught (with the same address
        // fail2ban finds), but not a failure.
        outcome: if kind.ends_with("challenge") {
            AuthOutcome::Challenge
        } else {
            AuthOutcome::Failure
        },
        reason,
    })
}

/// `Can't find user [1001@pbx] from ADDR`.
fn user_not_found(line: &[u8]) -> Option<EventParts<'static>> {
    const HEAD: &[u8] = b"Can't find user [";
    const TO_ADDR: &[u8] = b"] from ";
    let start = message_start(line, HEAD)?;
    let body = trim_end(&line[start + HEAD.len()..]);
    let sep = memmem::rfind(body, TO_ADDR)?;
    let ip = parse_ip(&body[sep + TO_ADDR.len()..])?;
    Some(EventParts {
        ip,
        port: None,
        transport: None,
        user: target_user(&body[..sep]),
        user_agent: None,
        outcome: AuthOutcome::Failure,
        reason: "user not found".to_owned(),
    })
}
