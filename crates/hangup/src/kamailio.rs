//! Kamailio: ends a dialog through the `dialog` module's RPC `dlg.end_dlg h_entry h_id`,
//! called as JSON-RPC 2.0 over HTTP (`jsonrpcs` behind `xhttp`'s
//! `event_route[xhttp:request]`, see `examples/kamailio/hangup.cfg`). Kamailio then sends a
//! BYE to both ends of the call, each with the `Reason` header this adapter passes as the
//! RPC's extra headers.
//!
//! `pbx_ref` is `"h_entry:h_id"`, the dialog's two identifiers, which the cfg reads as
//! `$dlg(h_entry)` and `$dlg(h_id)` right after `dlg_manage()` on the initial INVITE and
//! sends at authorize. Without a `pbx_ref` the dialog is looked up by its SIP Call-ID
//! (`dlg.dlg_list <callid>`, which lists every dialog of that Call-ID), and each found is
//! ended. `dlg.terminate_dlg callid from_tag to_tag` (present in 5.6) is not used: it needs
//! the To tag, which does not exist yet when the INVITE is authorized.
//!
//! Measured against Kamailio 5.6.3: an unknown dialog is the JSON-RPC error
//! `{"code":404,"message":"Dialog not found"}` (in an HTTP 404 answer); success is
//! `{"result":{}}`; `dlg.dlg_list` of an unknown Call-ID is `{"result":{}}`, of one dialog
//! the dialog's object, of several an array. Only a JSON-RPC error with code 404 means
//! "already gone": an HTTP 404 without a JSON-RPC body (a wrong URL path) is a protocol
//! error, so a misconfigured endpoint is never mistaken for ended calls.
//!
//! Known limit of Kamailio (5.6.3, and master as of this writing): `dlg.end_dlg` answers
//! success once it has *tried* both BYEs, and its `dlg_bye_all` sends the callee's BYE only
//! while the dialog is still confirmed. If the caller's 200 to the first BYE is processed
//! before the second BYE is built (microseconds; seen on loopback with SIPp answering at
//! once, about 1 run in 12), the callee's BYE is not sent (`send_bye(): terminating
//! non-confirmed dialogs not supported` in Kamailio's log) and the RPC still says success.
//! Over a network the first answer takes far longer than that window. Backstop: have the cfg
//! cap every dialog at the duration tollgate granted (`dlg_set_timeout()` with the grant,
//! and the dialog module's `send_bye` parameter set to 1), so a call that escapes the kill
//! switch still ends when its grant does.

use std::fmt;
use std::io::Read;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{json, Value};

use crate::error::{excerpt, HangupError};
use crate::{CallHandle, CallTerminator, Ended};

const PBX: &str = "kamailio";
/// The largest HTTP answer read (a dialog list of one Call-ID is a few kilobytes).
const MAX_BODY: usize = 256 * 1024;
/// The longest SIP Call-ID accepted.
const MAX_CALL_ID: usize = 256;
/// The most dialogs of one Call-ID that are ended (forks and spirals make a few).
const MAX_DIALOGS: usize = 16;
/// The longest reason text put in the `Reason` header.
const MAX_REASON: usize = 100;

/// A Kamailio dialog's identifiers, `pbx_ref` `"h_entry:h_id"` (e.g. `"1303:6014"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KamailioRef {
    pub h_entry: u32,
    pub h_id: u32,
}

impl FromStr for KamailioRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let number = |part: &str| -> Result<u32, String> {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "pbx_ref {:?} is not \"h_entry:h_id\" (two decimal numbers)",
                    excerpt(s.as_bytes())
                ));
            }
            part.parse().map_err(|_| {
                format!(
                    "pbx_ref {:?}: {part} is larger than a dialog identifier can be",
                    excerpt(s.as_bytes())
                )
            })
        };
        let Some((entry, id)) = s.split_once(':') else {
            return Err(format!(
                "pbx_ref {:?} is not \"h_entry:h_id\" (two decimal numbers)",
                excerpt(s.as_bytes())
            ));
        };
        Ok(KamailioRef {
            h_entry: number(entry)?,
            h_id: number(id)?,
        })
    }
}

impl fmt::Display for KamailioRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.h_entry, self.h_id)
    }
}

/// Ends Kamailio dialogs through its JSON-RPC endpoint.
pub struct KamailioTerminator {
    url: String,
    agent: ureq::Agent,
    timeout: Duration,
    next_id: AtomicU64,
}

impl fmt::Debug for KamailioTerminator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KamailioTerminator")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A JSON-RPC answer: a result, or an error object.
enum Reply {
    Result(Value),
    Error { code: i64, message: String },
}

impl KamailioTerminator {
    /// A terminator for the JSON-RPC endpoint at `url` (`http://IP:port/path`); each call
    /// (connection, request, answer) takes at most `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, HangupError> {
        let field = "kamailio.url";
        let Some(rest) = url.strip_prefix("http://") else {
            return Err(HangupError::invalid(
                field,
                format!("{url:?} must start with http:// (Kamailio's xhttp speaks plain HTTP)"),
            ));
        };
        if rest.is_empty() || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(HangupError::invalid(field, format!("{url:?} is not a URL")));
        }
        let agent = ureq::AgentBuilder::new()
            .timeout(timeout)
            .redirects(0)
            .build();
        Ok(KamailioTerminator {
            url: url.to_owned(),
            agent,
            timeout,
            next_id: AtomicU64::new(1),
        })
    }

    fn http_error(&self, problem: impl Into<String>) -> HangupError {
        HangupError::Http {
            pbx: PBX,
            url: self.url.clone(),
            problem: problem.into(),
        }
    }

    fn protocol(problem: impl Into<String>) -> HangupError {
        HangupError::Protocol {
            pbx: PBX,
            problem: problem.into(),
        }
    }

    /// Calls one RPC and reads its answer.
    fn call(&self, method: &str, params: Value) -> Result<Reply, HangupError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": id});
        let response = match self
            .agent
            .post(&self.url)
            .set("Content-Type", "application/json")
            .send_string(&body.to_string())
        {
            Ok(response) => response,
            // jsonrpcs answers a fault with the fault's code as HTTP status: read the body.
            Err(ureq::Error::Status(_, response)) => response,
            Err(ureq::Error::Transport(t)) => return Err(self.http_error(t.to_string())),
        };
        let status = response.status();
        let mut bytes = Vec::new();
        response
            .into_reader()
            .take(MAX_BODY as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| self.http_error(format!("reading the answer: {e}")))?;
        if bytes.len() > MAX_BODY {
            return Err(Self::protocol(format!(
                "{method}: an answer larger than {MAX_BODY} bytes"
            )));
        }
        let not_rpc = || {
            Self::protocol(format!(
                "{method}: HTTP {status} without a JSON-RPC answer: {:?}",
                excerpt(&bytes)
            ))
        };
        let reply: Value = serde_json::from_slice(&bytes).map_err(|_| not_rpc())?;
        if reply.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Err(not_rpc());
        }
        if reply.get("id").and_then(Value::as_u64) != Some(id) {
            return Err(Self::protocol(format!(
                "{method}: the answer's id is not the request's ({id}): {:?}",
                excerpt(&bytes)
            )));
        }
        if let Some(error) = reply.get("error") {
            let code = error
                .get("code")
                .and_then(Value::as_i64)
                .ok_or_else(not_rpc)?;
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default();
            return Ok(Reply::Error {
                code,
                message: excerpt(message.as_bytes()),
            });
        }
        match reply.get("result") {
            Some(result) => Ok(Reply::Result(result.clone())),
            None => Err(not_rpc()),
        }
    }

    /// `dlg.end_dlg h_entry h_id "Reason: ..."`.
    fn end_dialog(&self, dialog: KamailioRef, reason: &str) -> Result<Ended, HangupError> {
        let headers = format!(
            "Reason: Q.850;cause=21;text=\"{}\"\r\n",
            reason_text(reason)
        );
        match self.call("dlg.end_dlg", json!([dialog.h_entry, dialog.h_id, headers]))? {
            Reply::Result(_) => Ok(Ended::Ended),
            Reply::Error { code: 404, .. } => Ok(Ended::NotFound),
            Reply::Error { code, message } => Err(refused("dlg.end_dlg", code, &message)),
        }
    }

    /// The dialogs of a Call-ID, from `dlg.dlg_list <callid>`.
    fn dialogs_of(&self, call_id: &str) -> Result<Vec<KamailioRef>, HangupError> {
        let result = match self.call("dlg.dlg_list", json!([call_id]))? {
            Reply::Result(result) => result,
            Reply::Error { code, message } => return Err(refused("dlg.dlg_list", code, &message)),
        };
        let dialogs: Vec<&Value> = match &result {
            Value::Array(items) => items.iter().collect(),
            Value::Object(fields) if fields.is_empty() => Vec::new(),
            Value::Object(_) => vec![&result],
            _ => {
                return Err(Self::protocol(format!(
                    "dlg.dlg_list: expected dialogs, got {:?}",
                    excerpt(result.to_string().as_bytes())
                )))
            }
        };
        let mut refs = Vec::new();
        for dialog in dialogs.into_iter().take(MAX_DIALOGS) {
            let field = |name: &str| {
                dialog
                    .get(name)
                    .and_then(Value::as_u64)
                    .and_then(|n| u32::try_from(n).ok())
            };
            let (Some(h_entry), Some(h_id)) = (field("h_entry"), field("h_id")) else {
                return Err(Self::protocol(format!(
                    "dlg.dlg_list: a dialog without h_entry and h_id: {:?}",
                    excerpt(dialog.to_string().as_bytes())
                )));
            };
            // dlg_list matches the Call-ID; check it anyway, it is cheap.
            if dialog.get("call-id").and_then(Value::as_str) != Some(call_id) {
                continue;
            }
            refs.push(KamailioRef { h_entry, h_id });
        }
        Ok(refs)
    }
}

fn refused(method: &str, code: i64, message: &str) -> HangupError {
    let hint = if message.eq_ignore_ascii_case("Method Not Found") {
        " (is the dialog module loaded?)"
    } else {
        ""
    };
    HangupError::Refused {
        pbx: PBX,
        message: format!("{method}: {code} {message}{hint}"),
    }
}

/// The reason as the `text` of a `Reason` header: printable ASCII without `"` and `\`
/// (they would end or escape the quoted string), at most [`MAX_REASON`] characters.
fn reason_text(reason: &str) -> String {
    reason
        .chars()
        .take(MAX_REASON)
        .map(|c| {
            if (c.is_ascii_graphic() && c != '"' && c != '\\') || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl CallTerminator for KamailioTerminator {
    fn name(&self) -> &str {
        PBX
    }

    fn end_call(&self, call: &CallHandle, reason: &str) -> Result<Ended, HangupError> {
        if let Some(pbx_ref) = &call.pbx_ref {
            let dialog: KamailioRef = pbx_ref
                .parse()
                .map_err(|problem| HangupError::bad_call(PBX, &call.call_id, problem))?;
            let ended = self.end_dialog(dialog, reason)?;
            tracing::info!(pbx = PBX, call_id = %call.call_id, dialog = %dialog, ?ended, reason, "hangup");
            return Ok(ended);
        }
        if call.call_id.is_empty()
            || call.call_id.len() > MAX_CALL_ID
            || call.call_id.chars().any(char::is_control)
        {
            return Err(HangupError::bad_call(
                PBX,
                &call.call_id,
                format!(
                    "no pbx_ref, and the call id is not a SIP Call-ID (1 to {MAX_CALL_ID} bytes, no control characters)"
                ),
            ));
        }
        let mut result = Ended::NotFound;
        for dialog in self.dialogs_of(&call.call_id)? {
            if self.end_dialog(dialog, reason)? == Ended::Ended {
                result = Ended::Ended;
            }
            tracing::info!(pbx = PBX, call_id = %call.call_id, dialog = %dialog, reason, "hangup by Call-ID");
        }
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn parses_the_dialog_reference() {
        assert_eq!(
            "1303:6014".parse::<KamailioRef>(),
            Ok(KamailioRef {
                h_entry: 1303,
                h_id: 6014
            })
        );
        assert_eq!("0:0".parse::<KamailioRef>().unwrap().to_string(), "0:0");
        for bad in [
            "",
            "1303",
            "1303:",
            ":6014",
            "1303:6014:1",
            "a:b",
            "-1:2",
            "+1:2",
            " 1:2",
            "1:2\r\n",
            "4294967296:1",
        ] {
            let err = bad.parse::<KamailioRef>().unwrap_err();
            assert!(err.contains("pbx_ref"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn the_reason_cannot_break_out_of_its_header() {
        assert_eq!(
            reason_text("extension 1001 suspended"),
            "extension 1001 suspended"
        );
        assert_eq!(reason_text("a\"b\\c\r\nVia: x"), "a_b_c__Via: x");
        assert_eq!(reason_text("crédit épuisé"), "cr_dit _puis_");
        assert_eq!(reason_text(&"x".repeat(500)).len(), MAX_REASON);
    }

    #[test]
    fn refuses_urls_it_cannot_use() {
        for bad in [
            "https://127.0.0.1/RPC",
            "127.0.0.1:5071",
            "http://",
            "http://a b/",
        ] {
            assert!(
                KamailioTerminator::new(bad, Duration::from_secs(1)).is_err(),
                "{bad}"
            );
        }
        let t =
            KamailioTerminator::new("http://127.0.0.1:5071/RPC", Duration::from_secs(1)).unwrap();
        assert_eq!(t.name(), "kamailio");
    }

    #[test]
    fn a_bad_pbx_ref_is_refused_before_any_request() {
        // Port 9 (discard) on loopback: nothing is sent, the reference is checked first.
        let t = KamailioTerminator::new("http://127.0.0.1:9/RPC", Duration::from_secs(1)).unwrap();
        let call = CallHandle::new("abc@host", Some("PJSIP/1001-00000001".into()));
        let err = t.end_call(&call, "test").unwrap_err();
        assert!(matches!(err, HangupError::BadCall { .. }), "{err:?}");
        assert!(!err.is_transient());
    }
}
