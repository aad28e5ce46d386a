//! Asterisk: chan_sip, chan_iax2, res_pjsip, manager (AMI) and res_security_log lines.
//!
//! Each failure shape of fail2ban's `asterisk` filter has a parser here that accepts at
//! least the lines fail2ban's regex accepts and names the same address (see
//! `tests/parity.rs`); the parsers are hand-written so that a line is read once, with
//! no regex and no allocation until it is known to be an event.
//!
//! What every line shares: fail2ban's `log_prefix`, a level (`NOTICE`, `SECURITY`,
//! `WARNING`), then a source and a colon right before the message:
//! `[2026-11-26 12:00:00] NOTICE[1638][C-0000001d] chan_sip.c: MESSAGE` or
//! `... NOTICE[32257]: chan_sip.c:23417 in handle_request_register: MESSAGE`.
//! The parsers check that much, which keeps attacker-supplied text that merely
//! contains a message (a caller name echoed by the dialplan) from counting.
//!
//! Where the attacker controls text on both sides of the address (pjsip's `Request ...
//! from '<From header>' failed for 'ADDR' (callid: <Call-ID>)`), the address is taken
//! where fail2ban takes it, the leftmost position at which the rest of the line is
//! well formed, so tollgate and fail2ban blame the same address.

use chrono::{DateTime, Utc};
use memchr::memmem;
use tollgate_core::guard_event::AuthOutcome;

use super::common::{
    field, is_word, opt_field, parse_host_port, parse_ip, sip_user, transport, trim_end, EventParts,
};

/// The keywords the prefilter looks for, each with the shape it announces (a bit
/// index for [`parse`]); a line with none of them is not an event. They are chosen to
/// be rare in ordinary log lines (a `ChallengeSent` security event, one per digest
/// challenge, does not match) and so that none can overlap another (see the test in
/// `formats`), which lets a non-overlapping search report every one of them.
pub(crate) const KEYWORDS: [(&str, u32); 12] = [
    // chan_sip "Registration from '...' failed for" and pjsip "Request ... failed for".
    ("failed for '", FAILED_FOR),
    ("Call from '", CALL),
    // "failed to authenticate", "tried to authenticate with nonexistent user".
    ("to authenticate", HOST_FAILED),
    ("MD5 authentication", HOST_FAILED),
    ("No registration for peer '", NO_REGISTRATION),
    ("hacking attempt detected '", HACKING),
    ("SecurityEvent=\"FailedACL\"", SECURITY),
    ("SecurityEvent=\"InvalidAccountID\"", SECURITY),
    ("SecurityEvent=\"ChallengeResponseFailed\"", SECURITY),
    ("SecurityEvent=\"InvalidPassword\"", SECURITY),
    ("SecurityEvent=\"SuccessfulAuth\"", SECURITY),
    ("Rejecting unknown SIP connection from ", REJECTING),
];

const FAILED_FOR: u32 = 0;
const CALL: u32 = 1;
const HOST_FAILED: u32 = 2;
const NO_REGISTRATION: u32 = 3;
const HACKING: u32 = 4;
const SECURITY: u32 = 5;
const REJECTING: u32 = 6;

/// The security events that are failures: the ones fail2ban's filter bans on.
const FAILED_SECURITY_EVENTS: [&[u8]; 4] = [
    b"FailedACL",
    b"InvalidAccountID",
    b"ChallengeResponseFailed",
    b"InvalidPassword",
];

/// A parser for one shape of line.
type Shape = fn(&[u8]) -> Option<EventParts<'static>>;

/// Parses one line (no newline) given which shapes its keywords announce (the bits
/// of [`KEYWORDS`]).
pub(crate) fn parse(
    line: &[u8],
    kinds: u32,
    at: impl Fn() -> Option<DateTime<Utc>>,
) -> Option<tollgate_core::guard_event::AuthEvent> {
    // In the order of fail2ban's failregexes.
    const SHAPES: [(u32, Shape); 8] = [
        (FAILED_FOR, registration),
        (CALL, call_rejected),
        (HOST_FAILED, host_failed),
        (NO_REGISTRATION, no_registration),
        (HACKING, hacking_attempt),
        (SECURITY, security_event),
        (REJECTING, rejecting_unknown),
        (FAILED_FOR, pjsip_request),
    ];
    let parts = SHAPES
        .iter()
        .filter(|(bit, _)| kinds & (1 << bit) != 0)
        .find_map(|(_, shape)| shape(line))?;
    Some(parts.into_event(at()))
}

/// Whether the message at `start` follows an Asterisk log prefix: `:` and optional
/// line digits and one space right before it, and a level earlier in the line.
fn prefix_ok(line: &[u8], start: usize) -> bool {
    if start < 2 || line[start - 1] != b' ' {
        return false;
    }
    let mut i = start - 1;
    while i > 0 && line[i - 1].is_ascii_digit() {
        i -= 1;
    }
    if i == 0 || line[i - 1] != b':' {
        return false;
    }
    let head = &line[..i];
    [&b"NOTICE"[..], b"SECURITY", b"WARNING"]
        .iter()
        .any(|level| memmem::find(head, level).is_some())
}

/// The first occurrence of `needle` at which a message can start.
fn message_start(line: &[u8], needle: &[u8]) -> Option<usize> {
    memmem::find_iter(line, needle).find(|&i| prefix_ok(line, i))
}

/// The text between `from` and the next `'` (a quoted value fail2ban reads as `'[^']*'`),
/// and the index of that quote.
fn quoted(line: &[u8], from: usize) -> Option<(&[u8], usize)> {
    let rest = line.get(from..)?;
    let end = memchr::memchr(b'\'', rest)?;
    Some((&rest[..end], from + end))
}

fn failure(ip: std::net::IpAddr, port: Option<u16>, reason: String) -> EventParts<'static> {
    EventParts {
        ip,
        port,
        transport: None,
        user: None,
        user_agent: None,
        outcome: AuthOutcome::Failure,
        reason,
    }
}

/// chan_sip: `Registration from '<sip:1001@pbx>' failed for '192.0.2.1:5060' - Wrong password`.
///
/// fail2ban: `^Registration from '[^']*' failed for '<HOST>(:\d+)?' - (?:reasons)$`.
/// The From header cannot contain `'` for fail2ban, so its `' failed for '` is the
/// only one and also the last; taking the last keeps a From header that quotes a fake
/// failure from moving the address, and accepts the lines fail2ban drops because the
/// From header has a quote. Any reason counts: each one is a refused registration.
fn registration(line: &[u8]) -> Option<EventParts<'static>> {
    const HEAD: &[u8] = b"Registration from '";
    const SEP: &[u8] = b"' failed for '";
    let start = message_start(line, HEAD)?;
    let from_start = start + HEAD.len();
    let sep = memmem::rfind(line, SEP)?;
    if sep < from_start {
        return None;
    }
    let tail_start = sep + SEP.len();
    let (addr, close) = quoted(line, tail_start)?;
    let rest = line.get(close + 1..)?;
    let reason = trim_end(rest.strip_prefix(b" - ")?);
    if reason.is_empty() || reason.contains(&b'\'') {
        return None;
    }
    let (ip, port) = parse_host_port(addr, false)?;
    let mut parts = failure(ip, port, field(reason));
    parts.user = sip_user(&line[from_start..sep]);
    Some(parts)
}

/// chan_sip and res_pjsip_session: `Call from 'NAME' (UDP:192.0.2.1:5060) to extension
/// '100' rejected because extension not found in context 'default'.`
///
/// fail2ban takes only `TCP:`/`UDP:` before the address; any transport is taken here.
fn call_rejected(line: &[u8]) -> Option<EventParts<'static>> {
    const HEAD: &[u8] = b"Call from '";
    const TAIL: &[u8] = b"' rejected because extension not found in context";
    let start = message_start(line, HEAD)?;
    let (caller, close) = quoted(line, start + HEAD.len())?;
    let rest = line.get(close + 1..)?.strip_prefix(b" (")?;
    let paren = memchr::memchr(b')', rest)?;
    let mut addr = &rest[..paren];
    let mut proto = None;
    if let Some(colon) = memchr::memchr(b':', addr) {
        if let Some(t) = transport(&addr[..colon]) {
            proto = Some(t);
            addr = &addr[colon + 1..];
        }
    }
    let after = rest[paren + 1..].strip_prefix(b" to extension '")?;
    let (_exten, close) = quoted(after, 0)?;
    if !after[close..].starts_with(TAIL) {
        return None;
    }
    let (ip, port) = parse_host_port(addr, true)?;
    let mut parts = failure(ip, port, "extension not found".to_owned());
    parts.transport = proto;
    parts.user = opt_field(caller);
    Some(parts)
}

/// chan_iax2 and manager: `Host 192.0.2.1 failed to authenticate as 'x'`,
/// `192.0.2.1 failed MD5 authentication for 'x' (...)`, `192.0.2.1 tried to
/// authenticate with nonexistent user 'x'`.
///
/// fail2ban: `^(?:Host )?<HOST> (?:failed (?:to authenticate\b|MD5 authentication\b)|
/// tried to authenticate with nonexistent user\b)`.
fn host_failed(line: &[u8]) -> Option<EventParts<'static>> {
    const PHRASES: [(&[u8], &str); 3] = [
        (b" failed to authenticate", "failed to authenticate"),
        (b" failed MD5 authentication", "failed MD5 authentication"),
        (
            b" tried to authenticate with nonexistent user",
            "nonexistent user",
        ),
    ];
    for (phrase, reason) in PHRASES {
        for k in memmem::find_iter(line, phrase) {
            let end = k + phrase.len();
            if line.get(end).is_some_and(|&b| is_word(b)) {
                continue;
            }
            let token_start = memchr::memrchr(b' ', &line[..k]).map_or(0, |i| i + 1);
            let Some(ip) = parse_ip(&line[token_start..k]) else {
                continue;
            };
            let host_word = token_start >= 5 && &line[token_start - 5..token_start] == b"Host ";
            if !(prefix_ok(line, token_start) || host_word && prefix_ok(line, token_start - 5)) {
                continue;
            }
            let mut parts = failure(ip, None, reason.to_owned());
            // The account named after the phrase: "as 'x'", "for 'x'", "user 'x'".
            if let Some(q) = memchr::memchr(b'\'', &line[end..]) {
                if let Some((name, _)) = quoted(line, end + q + 1) {
                    parts.user = opt_field(name);
                }
            }
            return Some(parts);
        }
    }
    None
}

/// chan_iax2: `No registration for peer 'x' (from 192.0.2.1)`.
fn no_registration(line: &[u8]) -> Option<EventParts<'static>> {
    const HEAD: &[u8] = b"No registration for peer '";
    let start = message_start(line, HEAD)?;
    let (peer, close) = quoted(line, start + HEAD.len())?;
    let rest = line.get(close + 1..)?.strip_prefix(b" (from ")?;
    let addr = trim_end(rest).strip_suffix(b")")?;
    let ip = parse_ip(addr)?;
    let mut parts = failure(ip, None, "no registration for peer".to_owned());
    parts.user = opt_field(peer);
    Some(parts)
}

/// chan_sip: `hacking attempt detected '192.0.2.1'`.
fn hacking_attempt(line: &[u8]) -> Option<EventParts<'static>> {
    const HEAD: &[u8] = b"hacking attempt detected '";
    let start = message_start(line, HEAD)?;
    let rest = trim_end(&line[start + HEAD.len()..]);
    let ip = parse_ip(rest.strip_suffix(b"'")?)?;
    Some(failure(ip, None, "hacking attempt detected".to_owned()))
}

/// res_security_log: `SecurityEvent="InvalidPassword",...,AccountID="1001",...,
/// RemoteAddress="IPV4/UDP/192.0.2.1/5060",Challenge="..."`.
///
/// fail2ban: the event name, anything, then the `RemoteAddress` field after which the
/// line is only well-formed `,Name="value"` fields with no other `RemoteAddress`. The
/// fields are read backwards from the end of the line until that field, which finds
/// the same one in one pass even when a `SessionID` value quotes a fake address.
/// `SuccessfulAuth` events give a success.
fn security_event(line: &[u8]) -> Option<EventParts<'static>> {
    const HEAD: &[u8] = b"SecurityEvent=\"";
    let start = message_start(line, HEAD)?;
    let name_start = start + HEAD.len();
    let (name, name_end) = {
        let rest = &line[name_start..];
        let q = memchr::memchr(b'"', rest)?;
        (&rest[..q], name_start + q + 1)
    };
    let outcome = if FAILED_SECURITY_EVENTS.contains(&name) {
        AuthOutcome::Failure
    } else if name == b"SuccessfulAuth" {
        AuthOutcome::Success
    } else {
        return None;
    };
    let body = trim_end(line);
    let value = remote_address_value(body, name_end)?;
    // IPV4/UDP/192.0.2.1/5060 or IPV6/TLS/2001:db8::1/5061.
    let rest = value
        .strip_prefix(b"IPV4/")
        .or_else(|| value.strip_prefix(b"IPV6/"))?;
    let slash = memchr::memchr(b'/', rest)?;
    let proto = &rest[..slash];
    if proto.is_empty() {
        return None;
    }
    let addr_port = &rest[slash + 1..];
    let last = memchr::memrchr(b'/', addr_port)?;
    let ip = parse_ip(&addr_port[..last])?;
    let port = super::common::parse_port(&addr_port[last + 1..])?;
    let user = memmem::find(&line[name_end..], b",AccountID=\"").and_then(|i| {
        let v = name_end + i + 12;
        let q = memchr::memchr(b'"', &line[v..])?;
        opt_field(&line[v..v + q])
    });
    Some(EventParts {
        ip,
        port,
        transport: transport(proto),
        user,
        user_agent: None,
        outcome,
        reason: field(name),
    })
}

/// The value of the `RemoteAddress` field that fail2ban's regex would pick: reading
/// `,Name="value"` fields backwards from the end, the first one named
/// `RemoteAddress`, provided it lies after `min_start`.
fn remote_address_value(body: &[u8], min_start: usize) -> Option<&[u8]> {
    let mut end = body.len();
    loop {
        // A field ends with `"`; its value runs back to the previous `"`.
        if end == 0 || body[end - 1] != b'"' {
            return None;
        }
        let value_end = end - 1;
        let open = memchr::memrchr(b'"', &body[..value_end])?;
        if open == 0 || body[open - 1] != b'=' {
            return None;
        }
        let name_end = open - 1;
        let mut name_start = name_end;
        while name_start > 0 && is_word(body[name_start - 1]) {
            name_start -= 1;
        }
        if name_start == name_end || name_start == 0 || body[name_start - 1] != b',' {
            return None;
        }
        let comma = name_start - 1;
        if &body[name_start..name_end] == b"RemoteAddress" {
            return (comma >= min_start).then_some(&body[open + 1..value_end]);
        }
        end = comma;
    }
}

/// chan_sip via FreePBX dialplan: `"Rejecting unknown SIP connection from 192.0.2.1"`.
fn rejecting_unknown(line: &[u8]) -> Option<EventParts<'static>> {
    const HEAD: &[u8] = b"\"Rejecting unknown SIP connection from ";
    let start = message_start(line, HEAD)?;
    let rest = trim_end(&line[start + HEAD.len()..]).strip_suffix(b"\"")?;
    let (ip, port) = parse_host_port(rest, false)?;
    Some(failure(ip, port, "unknown SIP connection".to_owned()))
}

/// res_pjsip: `Request 'INVITE' from '"1000" <sip:1000@10.0.0.1>' failed for
/// '192.0.2.1:48336' (callid: 2766) - No matching endpoint found`.
///
/// fail2ban: `^Request (?:'[^']*' )?from '(?:[^']*|.*?)' failed for '<HOST>(?::\d+)?'\s
/// \(callid: [^\)]*\) - (?:reasons)\s*$`. The From header and the Call-ID are both the
/// attacker's, so the address is the leftmost `' failed for '` whose rest of line fits,
/// as in fail2ban. Also taken: Asterisk 18's `No matching endpoint found after 5 tries
/// in 1.005 ms`, which fail2ban 1.0 misses.
fn pjsip_request(line: &[u8]) -> Option<EventParts<'static>> {
    const REASONS: [&[u8]; 5] = [
        b"No matching endpoint found",
        b"Not match Endpoint ACL",
        b"Not match Endpoint Contact ACL",
        b"Failed to authenticate",
        b"Error to authenticate",
    ];
    const SEP: &[u8] = b"' failed for '";
    const CALLID: &[u8] = b"(callid: ";
    let start = message_start(line, b"Request ")?;
    let mut p = start + b"Request ".len();
    if line.get(p) == Some(&b'\'') {
        let (_method, close) = quoted(line, p + 1)?;
        p = close + 1;
        if line.get(p) != Some(&b' ') {
            return None;
        }
        p += 1;
    }
    if !line.get(p..)?.starts_with(b"from '") {
        return None;
    }
    let from_start = p + 6;
    let body = trim_end(line);
    // The end of the line: `) - REASON`.
    let (reason, reason_start) = REASONS
        .iter()
        .find_map(|r| {
            if body.ends_with(r) {
                return Some((*r, body.len() - r.len()));
            }
            None
        })
        .or_else(|| endpoint_not_found_after(body).map(|i| (REASONS[0], i)))?;
    let close_paren = reason_start.checked_sub(4)?;
    if &body[close_paren..reason_start] != b") - " {
        return None;
    }
    // The Call-ID is `[^)]*`: no `)` between its start and the closing one.
    let callid_floor = memchr::memrchr(b')', &body[..close_paren]).map_or(0, |i| i + 1);
    for sep in memmem::find_iter(body.get(from_start..)?, SEP) {
        let sep = sep + from_start;
        let addr_start = sep + SEP.len();
        // An address is short; looking no further keeps the scan linear.
        let window = &body[addr_start..body.len().min(addr_start + 64)];
        let Some(q) = memchr::memchr(b'\'', window) else {
            continue;
        };
        let after = addr_start + q + 1;
        let Some(ws) = body.get(after) else {
            continue;
        };
        let callid_start = after + 1 + CALLID.len();
        if !ws.is_ascii_whitespace()
            || !body[after + 1..].starts_with(CALLID)
            || callid_start < callid_floor
            || callid_start > close_paren
        {
            continue;
        }
        let Some((ip, port)) = parse_host_port(&window[..q], false) else {
            continue;
        };
        let mut parts = failure(ip, port, field(reason));
        parts.user = sip_user(&body[from_start..sep]);
        return Some(parts);
    }
    None
}

/// Where `No matching endpoint found after 5 tries in 1.005 ms` starts when it ends
/// `body`.
fn endpoint_not_found_after(body: &[u8]) -> Option<usize> {
    const HEAD: &[u8] = b"No matching endpoint found after ";
    let i = memmem::rfind(body, HEAD)?;
    let tail = &body[i + HEAD.len()..];
    let number_end = tail.iter().position(|b| !b.is_ascii_digit())?;
    let rest = tail[number_end..].strip_prefix(b" tries in ")?;
    let ms = rest.strip_suffix(b" ms")?;
    let ok =
        number_end > 0 && !ms.is_empty() && ms.iter().all(|b| b.is_ascii_digit() || *b == b'.');
    ok.then_some(i)
}
