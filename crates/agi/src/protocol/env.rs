//! The environment block: the `agi_name: value` lines Asterisk sends first (`setup_env` in
//! `res_agi.c`, preceded by `agi_network` and `agi_network_script` for FastAGI), ended by an
//! empty line. [`EnvParser`] takes it one line at a time within hard limits;
//! [`AgiEnvironment`] gives typed access to what it holds.
//!
//! Values are decoded as UTF-8 with invalid bytes replaced (a SIP peer chooses its display
//! name, and a bad byte in it must not refuse the call); names must be ASCII `agi_` plus
//! letters, digits and `_`, or the block is rejected. A name sent twice is rejected too, so
//! no second `agi_uniqueid` can stand in for the first.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::ProtocolError;

/// The longest line accepted, without its newline. Asterisk's own lines are far shorter; only
/// `agi_request`, `agi_network_script` and the arguments grow with what the dialplan passes.
pub const MAX_LINE_BYTES: usize = 4096;
/// The most variables accepted in one block. Asterisk sends 22 plus one per argument, and it
/// passes at most 127 arguments (`MAX_ARGS` is 128 with the script).
pub const MAX_VARIABLES: usize = 256;
/// The largest block accepted, newlines included.
pub const MAX_ENV_BYTES: usize = 64 * 1024;
/// The longest variable name accepted.
const MAX_NAME_BYTES: usize = 64;

/// What Asterisk told about the channel, parsed. `Debug` shows names, never values: they hold
/// caller names and numbers.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AgiEnvironment {
    vars: BTreeMap<String, String>,
    args: Vec<String>,
}

impl AgiEnvironment {
    /// Parses a whole block (lines ended by `\n`, then an empty line). For tests and fuzzing;
    /// the server feeds [`EnvParser`] line by line from the socket.
    pub fn parse(block: &[u8]) -> Result<AgiEnvironment, ProtocolError> {
        let mut parser = EnvParser::new();
        let mut rest = block;
        loop {
            let Some(end) = rest.iter().position(|&b| b == b'\n') else {
                return Err(if rest.is_empty() {
                    ProtocolError::Closed
                } else {
                    ProtocolError::Truncated
                });
            };
            let line = rest.get(..end).unwrap_or_default();
            if line.len() > MAX_LINE_BYTES {
                return Err(ProtocolError::LineTooLong {
                    limit: MAX_LINE_BYTES,
                });
            }
            if parser.push_line(line)? {
                return Ok(parser.finish());
            }
            rest = rest.get(end + 1..).unwrap_or_default();
        }
    }

    /// A variable by its full name (`agi_uniqueid`).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// Every variable, by full name. Holds caller data: do not log it.
    pub fn variables(&self) -> &BTreeMap<String, String> {
        &self.vars
    }

    /// `agi_network_script`: what follows the host (and port) and `/` in the AGI URL, query
    /// string included. Absent when the URL has no path.
    pub fn network_script(&self) -> Option<&str> {
        self.get("agi_network_script")
    }

    /// `agi_request`: the AGI URL as the dialplan gave it, after substitution.
    pub fn request(&self) -> Option<&str> {
        self.get("agi_request")
    }

    /// `agi_channel`: the channel name (`PJSIP/1001-0000002a`).
    pub fn channel(&self) -> Option<&str> {
        self.get("agi_channel")
    }

    /// `agi_type`: the channel technology (`PJSIP`, `SIP`, `Local`, `IAX2`).
    pub fn channel_type(&self) -> Option<&str> {
        self.get("agi_type")
    }

    /// `agi_uniqueid`: the channel's unique id (`1718012345.42`), the same for the whole life
    /// of the channel, hangup handlers included.
    pub fn uniqueid(&self) -> Option<&str> {
        self.non_empty("agi_uniqueid")
    }

    /// `agi_callerid`: the caller id number, `None` when Asterisk says `unknown`. The phone
    /// chooses it unless the endpoint's `callerid` overrides it: not an identity.
    pub fn callerid(&self) -> Option<&str> {
        self.known("agi_callerid")
    }

    /// `agi_calleridname`, `None` when `unknown`.
    pub fn calleridname(&self) -> Option<&str> {
        self.known("agi_calleridname")
    }

    /// `agi_extension`: the extension being run, the dialed number in an outbound context.
    pub fn extension(&self) -> Option<&str> {
        self.non_empty("agi_extension")
    }

    /// `agi_dnid`: the dialed number as first received, `None` when `unknown`.
    pub fn dnid(&self) -> Option<&str> {
        self.known("agi_dnid")
    }

    /// `agi_context`: the dialplan context the AGI runs in.
    pub fn context(&self) -> Option<&str> {
        self.non_empty("agi_context")
    }

    /// `agi_accountcode`, `None` when empty.
    pub fn accountcode(&self) -> Option<&str> {
        self.non_empty("agi_accountcode")
    }

    /// `agi_arg_1`, `agi_arg_2`, ...: the arguments after the URL in `AGI(url,arg1,arg2)`,
    /// in order, up to the first number missing.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// Argument `n`, counted from 1 as Asterisk does; `None` when absent or empty.
    pub fn arg(&self, n: usize) -> Option<&str> {
        n.checked_sub(1)
            .and_then(|i| self.args.get(i))
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    fn known(&self, name: &str) -> Option<&str> {
        self.non_empty(name).filter(|v| *v != "unknown")
    }
}

impl fmt::Debug for AgiEnvironment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgiEnvironment")
            .field("names", &self.vars.keys().collect::<Vec<_>>())
            .field("args", &self.args.len())
            .finish()
    }
}

/// Takes the block one line at a time, enforcing the limits.
#[derive(Debug, Default)]
pub struct EnvParser {
    vars: BTreeMap<String, String>,
    bytes: usize,
    lines: usize,
}

impl EnvParser {
    pub fn new() -> EnvParser {
        EnvParser::default()
    }

    /// Takes one line without its `\n` (a trailing `\r` is dropped). `Ok(true)` when it was
    /// the empty line that ends the block.
    pub fn push_line(&mut self, line: &[u8]) -> Result<bool, ProtocolError> {
        self.lines += 1;
        self.bytes = self.bytes.saturating_add(line.len() + 1);
        if self.bytes > MAX_ENV_BYTES {
            return Err(ProtocolError::EnvironmentTooLarge {
                limit: MAX_ENV_BYTES,
            });
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return Ok(true);
        }
        if self.vars.len() >= MAX_VARIABLES {
            return Err(ProtocolError::TooManyVariables {
                limit: MAX_VARIABLES,
            });
        }
        let malformed = ProtocolError::MalformedVariable { line: self.lines };
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(malformed);
        };
        let (name, value) = line.split_at(colon);
        if !valid_name(name) {
            return Err(malformed);
        }
        let value = value.get(1..).unwrap_or_default();
        let value = value.strip_prefix(b" ").unwrap_or(value);
        let name = String::from_utf8_lossy(name).into_owned();
        if self.vars.contains_key(&name) {
            return Err(ProtocolError::DuplicateVariable { name });
        }
        self.vars
            .insert(name, String::from_utf8_lossy(value).into_owned());
        Ok(false)
    }

    /// The environment read so far.
    pub fn finish(self) -> AgiEnvironment {
        let mut args = Vec::new();
        for n in 1.. {
            match self.vars.get(&format!("agi_arg_{n}")) {
                Some(value) => args.push(value.clone()),
                None => break,
            }
        }
        AgiEnvironment {
            vars: self.vars,
            args,
        }
    }
}

fn valid_name(name: &[u8]) -> bool {
    name.len() <= MAX_NAME_BYTES
        && name.len() > "agi_".len()
        && name.starts_with(b"agi_")
        && name.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn parses_a_block_with_empty_values_and_args() {
        let env = AgiEnvironment::parse(
            b"agi_network: yes\nagi_uniqueid: 1718012345.42\nagi_callerid: unknown\n\
              agi_accountcode: \nagi_arg_1: 1001\nagi_arg_2: \nagi_arg_3: x\nagi_arg_5: y\n\n",
        )
        .unwrap();
        assert_eq!(env.uniqueid(), Some("1718012345.42"));
        assert_eq!(env.callerid(), None);
        assert_eq!(env.accountcode(), None);
        assert_eq!(env.get("agi_accountcode"), Some(""));
        assert_eq!(env.args(), ["1001", "", "x"]);
        assert_eq!(env.arg(1), Some("1001"));
        assert_eq!(env.arg(2), None);
        assert_eq!(env.arg(0), None);
    }

    #[test]
    fn a_value_keeps_its_colons_and_inner_spaces() {
        let env =
            AgiEnvironment::parse(b"agi_request: agi://127.0.0.1:4573/end?x=1\r\nagi_x:  a b\n\n")
                .unwrap();
        assert_eq!(env.request(), Some("agi://127.0.0.1:4573/end?x=1"));
        assert_eq!(env.get("agi_x"), Some(" a b"));
    }

    #[test]
    fn rejects_what_asterisk_never_sends() {
        for block in [
            &b"no colon here\n\n"[..],
            b"agi_: x\n\n",
            b"other: x\n\n",
            b"agi_bad name: x\n\n",
            b"agi_\xff: x\n\n",
        ] {
            assert!(matches!(
                AgiEnvironment::parse(block),
                Err(ProtocolError::MalformedVariable { line: 1 })
            ));
        }
        assert!(matches!(
            AgiEnvironment::parse(b"agi_uniqueid: 1\nagi_uniqueid: 2\n\n"),
            Err(ProtocolError::DuplicateVariable { .. })
        ));
        assert!(matches!(
            AgiEnvironment::parse(b"agi_uniqueid: 1\nagi_chan"),
            Err(ProtocolError::Truncated)
        ));
        assert!(matches!(
            AgiEnvironment::parse(b"agi_uniqueid: 1\n"),
            Err(ProtocolError::Closed)
        ));
    }

    #[test]
    fn enforces_the_limits() {
        let mut many = Vec::new();
        for i in 0..=MAX_VARIABLES {
            many.extend_from_slice(format!("agi_v{i}: x\n").as_bytes());
        }
        many.push(b'\n');
        assert!(matches!(
            AgiEnvironment::parse(&many),
            Err(ProtocolError::TooManyVariables { .. })
        ));
        let mut long = b"agi_x: ".to_vec();
        long.resize(MAX_LINE_BYTES + 1, b'a');
        long.extend_from_slice(b"\n\n");
        assert!(matches!(
            AgiEnvironment::parse(&long),
            Err(ProtocolError::LineTooLong { .. })
        ));
        let mut big = Vec::new();
        for i in 0..40 {
            big.extend_from_slice(format!("agi_v{i}: ").as_bytes());
            big.resize(big.len() + 2000, b'a');
            big.push(b'\n');
        }
        big.push(b'\n');
        assert!(matches!(
            AgiEnvironment::parse(&big),
            Err(ProtocolError::EnvironmentTooLarge { .. })
        ));
    }

    #[test]
    fn invalid_utf8_in_a_value_is_replaced() {
        let env = AgiEnvironment::parse(b"agi_calleridname: Jos\xe9\n\n").unwrap();
        assert_eq!(env.calleridname(), Some("Jos\u{fffd}"));
    }

    #[test]
    fn debug_shows_no_value() {
        let env = AgiEnvironment::parse(b"agi_calleridname: Alice Secret\n\n").unwrap();
        let shown = format!("{env:?}");
        assert!(shown.contains("agi_calleridname"));
        assert!(!shown.contains("Alice"));
    }
}
