//! What the server asks of the rest of tollgate ([`AgiHandler`]), and how each request is
//! read from what Asterisk sent.
//!
//! # Where each field comes from
//!
//! Named parameters in the AGI URL win, then positional arguments, then the environment:
//!
//! | field | `authorize` | from |
//! |---|---|---|
//! | `call_id` | `call_id=` | else `agi_uniqueid` |
//! | `extension` | `extension=` | else `agi_arg_1`, else `agi_callerid` |
//! | `number` | `number=` | else `agi_arg_2`, else `agi_extension` |
//! | `source_ip` | `ip=` (empty: none) | else `agi_arg_3`, else (PJSIP channels, no `ip=` at all) `GET VARIABLE CHANNEL(pjsip,remote_addr)` |
//! | `channel` | | `agi_channel` |
//!
//! | field | `end` | from |
//! |---|---|---|
//! | `call_id` | `call_id=` | else `agi_uniqueid` (the same channel as `authorize`) |
//! | `duration_s` | `billsec=` | else `agi_arg_1`; empty is none |
//! | `answered` | `answered=` (1/0/yes/no/true/false), else `dialstatus=` (else `agi_arg_2`) is `ANSWER` | else `duration_s > 0` |
//!
//! An address is `IP`, `IP:port`, `[IPv6]` or `[IPv6]:port` (what `CHANNEL(pjsip,remote_addr)`
//! gives). The caller id is only a fallback: the phone chooses it; the example dialplan
//! passes `${CHANNEL(endpoint)}`, the endpoint Asterisk authenticated.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};

use crate::error::RequestError;
use crate::protocol::{AgiEnvironment, Params, Script};

/// The parameters `authorize` accepts.
pub const AUTHORIZE_PARAMS: &[&str] = &["call_id", "extension", "number", "ip"];
/// The parameters `end` accepts.
pub const END_PARAMS: &[&str] = &["call_id", "billsec", "dialstatus", "answered"];

/// The dialplan function asked for the source address when none is passed.
pub const REMOTE_ADDR_FUNCTION: &str = "CHANNEL(pjsip,remote_addr)";

/// What the server calls. It runs on the tokio runtime: a handler that blocks must move its
/// work off it (`spawn_blocking`). Each call is cut off after `decision_timeout_ms`; the
/// future is then dropped, so a decision that was being made may already have reserved
/// credit, released when its grant runs out.
///
/// An `Err` is not a refusal: the dialplan sees `TOLLGATE_DECISION=error` (with the message
/// in `TOLLGATE_REASON`) and decides by itself. Put no secret in it.
pub trait AgiHandler: Send + Sync + 'static {
    /// Whether the call may go ahead, and for how long.
    fn authorize(
        &self,
        request: AuthorizeArgs,
    ) -> impl Future<Output = Result<AgiDecision, String>> + Send;

    /// The call is over: bill it and release the rest of its reservation.
    fn end(&self, request: EndArgs) -> impl Future<Output = Result<(), String>> + Send;
}

/// A call about to be placed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorizeArgs {
    pub call_id: String,
    /// Who calls: the extension in tollgate's directory.
    pub extension: String,
    /// The number dialed, as dialed.
    pub number: String,
    /// Where the call came from, `None` when neither passed nor known (not a PJSIP channel).
    pub source_ip: Option<IpAddr>,
    /// The Asterisk channel name, for logs.
    pub channel: String,
}

/// A call that ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndArgs {
    pub call_id: String,
    /// Seconds from answer to hangup (`${ANSWEREDTIME}` or `${CDR(billsec)}`), `None` when
    /// the dialplan passed none.
    pub duration_s: Option<u64>,
    pub answered: bool,
}

/// The handler's answer to `authorize`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgiDecision {
    pub allow: bool,
    /// The longest the call may last; 0 on a deny.
    pub max_seconds: u64,
    /// For people: the rule and figures behind the decision.
    pub reason: String,
    /// For the dialplan: a stable code (`insufficient_credit`), empty on an allow.
    pub code: String,
}

impl AgiDecision {
    pub fn allow(max_seconds: u64, reason: impl Into<String>) -> AgiDecision {
        AgiDecision {
            allow: true,
            max_seconds,
            reason: reason.into(),
            code: String::new(),
        }
    }

    pub fn deny(code: impl Into<String>, reason: impl Into<String>) -> AgiDecision {
        AgiDecision {
            allow: false,
            max_seconds: 0,
            reason: reason.into(),
            code: code.into(),
        }
    }
}

/// A FastAGI request as read from the connection: which script, and the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgiCall {
    pub script: Script,
    /// The raw query string of the script (undecoded).
    pub query: String,
    pub env: AgiEnvironment,
}

impl AgiCall {
    pub fn new(env: AgiEnvironment) -> AgiCall {
        let (script, query) =
            crate::protocol::split_network_script(env.network_script().unwrap_or_default());
        let query = query.to_owned();
        AgiCall { script, query, env }
    }

    /// The `authorize` request, and whether the source address is still to be asked of
    /// Asterisk (`GET VARIABLE` [`REMOTE_ADDR_FUNCTION`]).
    pub fn authorize_args(&self) -> Result<(AuthorizeArgs, bool), RequestError> {
        let params = Params::parse(&self.query, "authorize", AUTHORIZE_PARAMS)?;
        let env = &self.env;
        let call_id = params
            .get("call_id")
            .or_else(|| env.uniqueid())
            .ok_or(RequestError::Missing { what: "call id" })?;
        let extension = params
            .get("extension")
            .or_else(|| env.arg(1))
            .or_else(|| env.callerid())
            .ok_or(RequestError::Missing { what: "extension" })?;
        let number = params
            .get("number")
            .or_else(|| env.arg(2))
            .or_else(|| env.extension())
            .ok_or(RequestError::Missing { what: "number" })?;
        let given_ip = params.get("ip").or_else(|| env.arg(3));
        let source_ip = match given_ip {
            Some(text) => parse_address(text).ok_or(RequestError::BadAddress {
                what: "the source address",
            })?,
            None => None,
        };
        // An empty `ip=` is the dialplan's answer (no address), not a question.
        let ask = given_ip.is_none()
            && !params.contains("ip")
            && env
                .channel_type()
                .is_some_and(|t| t.eq_ignore_ascii_case("PJSIP"));
        Ok((
            AuthorizeArgs {
                call_id: call_id.to_owned(),
                extension: extension.to_owned(),
                number: number.to_owned(),
                source_ip,
                channel: env.channel().unwrap_or_default().to_owned(),
            },
            ask,
        ))
    }

    /// The `end` request.
    pub fn end_args(&self) -> Result<EndArgs, RequestError> {
        let params = Params::parse(&self.query, "end", END_PARAMS)?;
        let env = &self.env;
        let call_id = params
            .get("call_id")
            .or_else(|| env.uniqueid())
            .ok_or(RequestError::Missing { what: "call id" })?;
        let duration_s = match params.get("billsec").or_else(|| env.arg(1)) {
            Some(text) => {
                Some(parse_seconds(text).ok_or(RequestError::BadNumber { what: "billsec" })?)
            }
            None => None,
        };
        let answered = match params.get("answered") {
            Some(flag) => parse_flag(flag).ok_or(RequestError::BadFlag { what: "answered" })?,
            None => match params.get("dialstatus").or_else(|| env.arg(2)) {
                Some(status) => status.trim().eq_ignore_ascii_case("ANSWER"),
                None => duration_s.is_some_and(|d| d > 0),
            },
        };
        Ok(EndArgs {
            call_id: call_id.to_owned(),
            duration_s,
            answered,
        })
    }
}

/// `IP`, `IP:port`, `[IPv6]`, `[IPv6]:port`, IPv4-mapped IPv6 made IPv4. `Some(None)` for an
/// empty text (Asterisk gives an empty `remote_addr` when it has none), `None` when it is no
/// address.
pub fn parse_address(text: &str) -> Option<Option<IpAddr>> {
    let text = text.trim();
    if text.is_empty() {
        return Some(None);
    }
    let ip = text
        .parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            text.strip_prefix('[')
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<IpAddr>().ok())
        })?;
    Some(Some(ip.to_canonical()))
}

/// A whole number of seconds: ASCII digits only, at most 10 of them (centuries).
fn parse_seconds(text: &str) -> Option<u64> {
    let text = text.trim();
    if text.is_empty() || text.len() > 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn parse_flag(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" => Some(true),
        "0" | "no" | "false" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn call(script: &str, extra: &str) -> AgiCall {
        let block = format!(
            "agi_network: yes\nagi_network_script: {script}\nagi_channel: PJSIP/1001-00000001\n\
             agi_type: PJSIP\nagi_uniqueid: 1718012345.7\nagi_callerid: 1001\n\
             agi_extension: 0044207\n{extra}\n"
        );
        AgiCall::new(AgiEnvironment::parse(block.as_bytes()).unwrap())
    }

    #[test]
    fn authorize_prefers_parameters_then_args_then_env() {
        let (args, ask) = call(
            "authorize?extension=alice&number=%2B44&ip=%5B2001%3Adb8%3A%3A1%5D%3A5060",
            "agi_arg_1: bob\nagi_arg_2: 999\n",
        )
        .authorize_args()
        .unwrap();
        assert_eq!(args.extension, "alice");
        assert_eq!(args.number, "+44");
        assert_eq!(args.source_ip, Some("2001:db8::1".parse().unwrap()));
        assert_eq!(args.call_id, "1718012345.7");
        assert!(!ask);

        let (args, ask) = call("authorize", "agi_arg_1: bob\nagi_arg_2: 999\n")
            .authorize_args()
            .unwrap();
        assert_eq!(
            (args.extension.as_str(), args.number.as_str()),
            ("bob", "999")
        );
        assert!(ask);

        let (args, ask) = call("authorize?ip=", "").authorize_args().unwrap();
        assert_eq!(
            (args.extension.as_str(), args.number.as_str()),
            ("1001", "0044207")
        );
        assert_eq!(args.source_ip, None);
        assert!(!ask, "an empty ip= is an answer: no address");
    }

    #[test]
    fn authorize_refuses_what_it_cannot_use() {
        assert_eq!(
            call("authorize?ip=not-an-ip", "").authorize_args(),
            Err(RequestError::BadAddress {
                what: "the source address"
            })
        );
        let block = b"agi_network_script: authorize\nagi_uniqueid: 1\nagi_callerid: unknown\n\n";
        let bare = AgiCall::new(AgiEnvironment::parse(block).unwrap());
        assert_eq!(
            bare.authorize_args(),
            Err(RequestError::Missing { what: "extension" })
        );
    }

    #[test]
    fn end_reads_billsec_and_answered() {
        let end = |script: &str, extra: &str| call(script, extra).end_args();
        assert_eq!(
            end("end?billsec=42&dialstatus=ANSWER", "").unwrap(),
            EndArgs {
                call_id: "1718012345.7".into(),
                duration_s: Some(42),
                answered: true
            }
        );
        let e = end("end?billsec=&dialstatus=CANCEL", "").unwrap();
        assert_eq!((e.duration_s, e.answered), (None, false));
        let e = end("end", "agi_arg_1: 7\n").unwrap();
        assert_eq!((e.duration_s, e.answered), (Some(7), true));
        let e = end("end?billsec=0&answered=yes&call_id=abc", "").unwrap();
        assert_eq!(
            (e.call_id.as_str(), e.duration_s, e.answered),
            ("abc", Some(0), true)
        );
        assert!(end("end?billsec=-1", "").is_err());
        assert!(end("end?billsec=99999999999", "").is_err());
        assert!(end("end?answered=maybe", "").is_err());
        assert!(end("end?number=1", "").is_err());
    }

    #[test]
    fn parses_addresses_as_pjsip_prints_them() {
        let ip = |s: &str| parse_address(s).unwrap().unwrap().to_string();
        assert_eq!(ip("203.0.113.9"), "203.0.113.9");
        assert_eq!(ip("203.0.113.9:5060"), "203.0.113.9");
        assert_eq!(ip("[2001:db8::1]:5061"), "2001:db8::1");
        assert_eq!(ip("[2001:db8::1]"), "2001:db8::1");
        assert_eq!(ip("2001:db8::1"), "2001:db8::1");
        assert_eq!(ip("::ffff:192.0.2.1"), "192.0.2.1");
        assert_eq!(parse_address(" "), Some(None));
        assert_eq!(parse_address("host.example:5060"), None);
    }
}
