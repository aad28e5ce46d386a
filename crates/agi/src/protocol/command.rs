//! Commands to Asterisk and its replies.
//!
//! Values are quoted the way `parse_args` in `res_agi.c` unquotes them: inside double quotes
//! spaces are data, `\"` is a quote and `\\` a backslash. An LF would end the command and
//! start another (`SET VARIABLE TOLLGATE_DECISION allow` smuggled in a reason), a CR would be
//! kept in the variable, a NUL would cut it: [`sanitize`] turns every control character into a
//! space, so no value can ever make two commands or a broken one.
//!
//! Replies (`agi_handle_command`): `200 result=N[ (data)]`; `510 Invalid or unknown command`;
//! `511 Command Not Permitted on a dead channel[ or intercepted]`; `520 Invalid command
//! syntax...` or a `520-` block of usage lines ended by `520 End of proper usage.`; and,
//! between replies, `HANGUP` when the channel hangs up while the script runs.

use crate::error::ProtocolError;

/// The longest command line sent, newline included. Asterisk reads commands with `fgets`
/// into 2048 bytes (`AGI_BUF_LEN`, NUL included): a longer line would be split in two.
pub const MAX_COMMAND_BYTES: usize = 2000;
/// The longest value (in bytes, before quoting) put in a variable; longer ones are cut at a
/// character boundary. Quoting at most doubles it, so a command stays within
/// [`MAX_COMMAND_BYTES`].
pub const MAX_VALUE_BYTES: usize = 900;
/// The longest variable name accepted in a command.
const MAX_NAME_BYTES: usize = 64;

/// A command this crate sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// `SET VARIABLE NAME "value"`: a channel variable, for the dialplan to read.
    SetVariable { name: &'a str, value: &'a str },
    /// `GET VARIABLE NAME`: a channel variable, or a dialplan function when the name ends
    /// with `)` (`CHANNEL(pjsip,remote_addr)`), which Asterisk then evaluates.
    GetVariable { name: &'a str },
    /// `VERBOSE "message" level`: a line on the Asterisk console.
    Verbose { message: &'a str, level: u8 },
}

impl Command<'_> {
    /// The command line, `\n` included. `None` for a name that is not letters, digits and `_`
    /// (plus a function call's `(`, `,`, `-`, `)` for `GET VARIABLE`): names are this crate's
    /// constants, never input.
    pub fn encode(&self) -> Option<String> {
        let line = match *self {
            Command::SetVariable { name, value } => {
                if !valid_name(name, false) {
                    return None;
                }
                format!("SET VARIABLE {name} {}\n", quote(value))
            }
            Command::GetVariable { name } => {
                if !valid_name(name, true) {
                    return None;
                }
                format!("GET VARIABLE {name}\n")
            }
            Command::Verbose { message, level } => {
                format!("VERBOSE {} {}\n", quote(message), level.clamp(1, 4))
            }
        };
        (line.len() <= MAX_COMMAND_BYTES).then_some(line)
    }
}

fn valid_name(name: &str, function: bool) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || b == b'_'
                || (function && matches!(b, b'(' | b')' | b',' | b'-'))
        })
}

/// The value with every control character (CR, LF, NUL, tab, ESC, DEL, ...) turned into a
/// space and cut to [`MAX_VALUE_BYTES`] at a character boundary.
pub fn sanitize(value: &str) -> String {
    let mut out = String::with_capacity(value.len().min(MAX_VALUE_BYTES));
    for c in value.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > MAX_VALUE_BYTES {
            break;
        }
        out.push(c);
    }
    out
}

/// The value sanitized, then in double quotes with `"` and `\` escaped: one AGI word that
/// Asterisk's `parse_args` turns back into exactly `sanitize(value)`.
pub fn quote(value: &str) -> String {
    let clean = sanitize(value);
    let mut out = String::with_capacity(clean.len() + 2);
    out.push('"');
    for c in clean.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A final reply to a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `200 result=N`, with the text in parentheses if any (`GET VARIABLE`'s value).
    Success { result: i64, data: Option<String> },
    /// `510`: Asterisk does not know the command.
    InvalidCommand,
    /// `511`: the channel is dead (or intercepted) and the command needs a live one.
    DeadChannel,
    /// `520`: bad syntax (the usage block, if any, has been read).
    Usage,
    /// Another status code.
    Other { code: u16 },
}

impl Reply {
    pub fn code(&self) -> u16 {
        match self {
            Reply::Success { .. } => 200,
            Reply::InvalidCommand => 510,
            Reply::DeadChannel => 511,
            Reply::Usage => 520,
            Reply::Other { code } => *code,
        }
    }
}

/// One line read while waiting for a reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyLine {
    /// `HANGUP`: the channel hung up; the reply is still to come.
    Hangup,
    /// `NNN-...`: a multi-line reply goes on until a line `NNN ...`.
    Continues { code: u16 },
    /// The reply.
    Final(Reply),
}

/// Parses the first line of a reply (without its newline).
pub fn parse_reply_line(line: &str) -> Result<ReplyLine, ProtocolError> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line == "HANGUP" {
        return Ok(ReplyLine::Hangup);
    }
    let code = line
        .get(..3)
        .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or(ProtocolError::MalformedReply)?;
    let rest = line.get(3..).unwrap_or_default();
    if let Some(_usage) = rest.strip_prefix('-') {
        return Ok(ReplyLine::Continues { code });
    }
    if !(rest.is_empty() || rest.starts_with(' ')) {
        return Err(ProtocolError::MalformedReply);
    }
    let reply = match code {
        200 => parse_success(rest.trim_start())?,
        510 => Reply::InvalidCommand,
        511 => Reply::DeadChannel,
        520 => Reply::Usage,
        code => Reply::Other { code },
    };
    Ok(ReplyLine::Final(reply))
}

/// `result=N[ (data)][ more]`.
fn parse_success(rest: &str) -> Result<Reply, ProtocolError> {
    let rest = rest
        .strip_prefix("result=")
        .ok_or(ProtocolError::MalformedReply)?;
    let end = rest.find(' ').unwrap_or(rest.len());
    let result = rest
        .get(..end)
        .and_then(|n| n.parse::<i64>().ok())
        .ok_or(ProtocolError::MalformedReply)?;
    let after = rest.get(end..).unwrap_or_default().trim_start();
    // The data may itself hold parentheses: it runs to the last `)`.
    let data = after
        .strip_prefix('(')
        .and_then(|d| d.rfind(')').and_then(|close| d.get(..close)))
        .map(str::to_owned);
    Ok(Reply::Success { result, data })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn encodes_commands() {
        assert_eq!(
            Command::SetVariable {
                name: "TOLLGATE_REASON",
                value: "say \"hi\" \\ bye\r\nSET VARIABLE X 1"
            }
            .encode()
            .unwrap(),
            "SET VARIABLE TOLLGATE_REASON \"say \\\"hi\\\" \\\\ bye  SET VARIABLE X 1\"\n"
        );
        assert_eq!(
            Command::GetVariable {
                name: "CHANNEL(pjsip,remote_addr)"
            }
            .encode()
            .unwrap(),
            "GET VARIABLE CHANNEL(pjsip,remote_addr)\n"
        );
        assert_eq!(
            Command::Verbose {
                message: "tollgate",
                level: 9
            }
            .encode()
            .unwrap(),
            "VERBOSE \"tollgate\" 4\n"
        );
        assert_eq!(
            Command::SetVariable {
                name: "A B",
                value: ""
            }
            .encode(),
            None
        );
        assert_eq!(
            Command::SetVariable {
                name: "F(x)",
                value: ""
            }
            .encode(),
            None
        );
    }

    #[test]
    fn the_longest_value_still_fits_one_asterisk_read() {
        let worst = "\"".repeat(10_000);
        let line = Command::SetVariable {
            name: &"N".repeat(MAX_NAME_BYTES),
            value: &worst,
        }
        .encode()
        .unwrap();
        assert!(line.len() <= MAX_COMMAND_BYTES);
        let multibyte = "é".repeat(1000);
        assert_eq!(sanitize(&multibyte).len(), MAX_VALUE_BYTES);
    }

    #[test]
    fn parses_replies() {
        let line = |l: &str| parse_reply_line(l).ok();
        let ok = |result, data: Option<&str>| {
            Some(ReplyLine::Final(Reply::Success {
                result,
                data: data.map(str::to_owned),
            }))
        };
        assert_eq!(line("200 result=1"), ok(1, None));
        assert_eq!(line("200 result=0\r"), ok(0, None));
        assert_eq!(line("200 result=-1"), ok(-1, None));
        assert_eq!(
            line("200 result=1 (203.0.113.9:5060)"),
            ok(1, Some("203.0.113.9:5060"))
        );
        assert_eq!(
            line("200 result=1 (a (b) c) endpos=0"),
            ok(1, Some("a (b) c"))
        );
        assert_eq!(line("200 result=1 ()"), ok(1, Some("")));
        assert_eq!(
            line("510 Invalid or unknown command"),
            Some(ReplyLine::Final(Reply::InvalidCommand))
        );
        assert_eq!(
            line("511 Command Not Permitted on a dead channel or intercepted"),
            Some(ReplyLine::Final(Reply::DeadChannel))
        );
        assert_eq!(
            line("520-Invalid command syntax.  Proper usage follows:"),
            Some(ReplyLine::Continues { code: 520 })
        );
        assert_eq!(
            line("520 End of proper usage."),
            Some(ReplyLine::Final(Reply::Usage))
        );
        assert_eq!(line("HANGUP"), Some(ReplyLine::Hangup));
        assert_eq!(
            line("599"),
            Some(ReplyLine::Final(Reply::Other { code: 599 }))
        );
        for bad in [
            "",
            "20",
            "2000 result=1",
            "200",
            "200 result=",
            "200 result=x",
            "200 res=1",
            "abc result=1",
            "+20 result=1",
            "hangup",
        ] {
            assert!(parse_reply_line(bad).is_err(), "{bad:?}");
        }
    }
}
