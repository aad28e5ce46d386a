//! A TCP conversation with a hostile peer, for the line-based protocols (AMI, ESL): every
//! read and write bounded by one deadline for the whole exchange, lines and the total
//! received bounded in size, so a peer that never answers, drips bytes, or sends an endless
//! line costs at most the timeout and a few kilobytes.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::error::{excerpt, HangupError};

/// The longest line accepted from a peer (without its line break).
pub(crate) const MAX_LINE: usize = 8 * 1024;
/// The most headers in one message.
pub(crate) const MAX_HEADERS: usize = 128;
/// The most bytes read from a peer in one exchange.
pub(crate) const MAX_RECEIVED: usize = 1024 * 1024;

/// One message's headers, in order (`Name: value`; names compared without case).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Headers(pub(crate) Vec<(String, String)>);

impl Headers {
    /// The first value of `name` (compared without case).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A connection to a peer with a deadline for the whole exchange.
pub(crate) struct Wire {
    pbx: &'static str,
    stream: TcpStream,
    /// Received and not consumed yet.
    buf: Vec<u8>,
    received: usize,
    deadline: Instant,
    timeout: Duration,
}

impl Wire {
    /// Connects to `address`; the whole exchange that follows must end within `timeout`.
    pub(crate) fn connect(
        pbx: &'static str,
        address: SocketAddr,
        timeout: Duration,
    ) -> Result<Wire, HangupError> {
        let deadline = Instant::now() + timeout;
        let stream = TcpStream::connect_timeout(&address, timeout).map_err(|source| {
            if matches!(source.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) {
                HangupError::Timeout {
                    pbx,
                    waiting_for: "connecting",
                    timeout,
                }
            } else {
                HangupError::Connect {
                    pbx,
                    address: address.to_string(),
                    source,
                }
            }
        })?;
        // Commands are small and answered one at a time: no need to wait for more.
        stream.set_nodelay(true).map_err(|source| HangupError::Io {
            pbx,
            doing: "setting up the connection",
            source,
        })?;
        Ok(Wire {
            pbx,
            stream,
            buf: Vec::new(),
            received: 0,
            deadline,
            timeout,
        })
    }

    fn remaining(&self, waiting_for: &'static str) -> Result<Duration, HangupError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.timed_out(waiting_for));
        }
        Ok(left)
    }

    fn timed_out(&self, waiting_for: &'static str) -> HangupError {
        HangupError::Timeout {
            pbx: self.pbx,
            waiting_for,
            timeout: self.timeout,
        }
    }

    pub(crate) fn protocol(&self, problem: impl Into<String>) -> HangupError {
        HangupError::Protocol {
            pbx: self.pbx,
            problem: problem.into(),
        }
    }

    /// Sends `bytes` whole, before the deadline.
    pub(crate) fn send(&mut self, bytes: &[u8], doing: &'static str) -> Result<(), HangupError> {
        let left = self.remaining(doing)?;
        let pbx = self.pbx;
        self.stream
            .set_write_timeout(Some(left))
            .map_err(|source| HangupError::Io { pbx, doing, source })?;
        match self.stream.write_all(bytes) {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Err(self.timed_out(doing))
            }
            Err(source) => Err(HangupError::Io { pbx, doing, source }),
        }
    }

    /// Reads once more from the peer (at least one byte), before the deadline.
    fn fill(&mut self, waiting_for: &'static str) -> Result<(), HangupError> {
        let pbx = self.pbx;
        loop {
            let left = self.remaining(waiting_for)?;
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|source| HangupError::Io {
                    pbx,
                    doing: waiting_for,
                    source,
                })?;
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(HangupError::Closed { pbx, waiting_for }),
                Ok(n) => {
                    self.received += n;
                    if self.received > MAX_RECEIVED {
                        return Err(self.protocol(format!(
                            "the peer sent more than {MAX_RECEIVED} bytes while {waiting_for}"
                        )));
                    }
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(self.timed_out(waiting_for))
                }
                Err(source) => {
                    return Err(HangupError::Io {
                        pbx,
                        doing: waiting_for,
                        source,
                    })
                }
            }
        }
    }

    /// Reads one line (ended by `\n`, an `\r` before it dropped), at most [`MAX_LINE`]
    /// bytes.
    pub(crate) fn read_line(&mut self, waiting_for: &'static str) -> Result<String, HangupError> {
        let mut searched = 0;
        loop {
            if let Some(pos) = memchr::memchr(b'\n', &self.buf[searched..]) {
                let end = searched + pos;
                if end > MAX_LINE {
                    break;
                }
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return String::from_utf8(line).map_err(|e| {
                    self.protocol(format!(
                        "a line that is not UTF-8 while {waiting_for}: {:?}",
                        excerpt(e.as_bytes())
                    ))
                });
            }
            searched = self.buf.len();
            if searched > MAX_LINE {
                break;
            }
            self.fill(waiting_for)?;
        }
        Err(self.protocol(format!(
            "a line longer than {MAX_LINE} bytes while {waiting_for}: {:?}",
            excerpt(&self.buf)
        )))
    }

    /// Reads exactly `n` bytes (a body announced by `Content-Length`).
    pub(crate) fn read_exact(
        &mut self,
        n: usize,
        waiting_for: &'static str,
    ) -> Result<Vec<u8>, HangupError> {
        if n > MAX_RECEIVED {
            return Err(self.protocol(format!(
                "a body of {n} bytes announced while {waiting_for} (at most {MAX_RECEIVED})"
            )));
        }
        while self.buf.len() < n {
            self.fill(waiting_for)?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Reads one message's headers: `Name: value` lines up to an empty line. An empty line
    /// first gives an empty message. A line without `:` is a protocol error.
    pub(crate) fn read_headers(
        &mut self,
        waiting_for: &'static str,
    ) -> Result<Headers, HangupError> {
        let mut headers = Vec::new();
        loop {
            let line = self.read_line(waiting_for)?;
            if line.is_empty() {
                return Ok(Headers(headers));
            }
            if headers.len() == MAX_HEADERS {
                return Err(self.protocol(format!(
                    "a message with more than {MAX_HEADERS} headers while {waiting_for}"
                )));
            }
            let Some((name, value)) = line.split_once(':') else {
                return Err(self.protocol(format!(
                    "expected a \"Name: value\" header while {waiting_for}, got {:?}",
                    excerpt(line.as_bytes())
                )));
            };
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }

    /// Brings the deadline closer: at most `most` from now (for the polite goodbye after
    /// the work is done, which is not worth the whole timeout).
    pub(crate) fn limit_deadline(&mut self, most: Duration) {
        self.deadline = self.deadline.min(Instant::now() + most);
    }

    /// Closes both directions; errors do not matter any more.
    pub(crate) fn close(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}
