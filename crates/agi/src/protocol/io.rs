//! Reading the protocol from a socket: lines capped in length (a peer that never sends a
//! newline cannot make the server buffer without end), the environment block under one
//! timeout for the whole block (a peer sending a byte now and then cannot hold the
//! connection), and each reply under its own timeout.

use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use super::command::{parse_reply_line, Reply, ReplyLine};
use super::env::{AgiEnvironment, EnvParser, MAX_LINE_BYTES};
use crate::error::ProtocolError;

/// The most lines read for one reply (a `520-` usage block is a few dozen).
pub const MAX_REPLY_LINES: usize = 128;

/// Reads one line into `buf` (cleared first), without its `\n`. `Ok(false)` at end of stream
/// before any byte; [`ProtocolError::Truncated`] at end of stream inside a line;
/// [`ProtocolError::LineTooLong`] as soon as the line passes `limit` bytes.
pub async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    limit: usize,
) -> Result<bool, ProtocolError> {
    buf.clear();
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return if buf.is_empty() {
                Ok(false)
            } else {
                Err(ProtocolError::Truncated)
            };
        }
        let (chunk, found) = match available.iter().position(|&b| b == b'\n') {
            Some(newline) => (available.get(..newline).unwrap_or_default(), true),
            None => (available, false),
        };
        if buf.len() + chunk.len() > limit {
            return Err(ProtocolError::LineTooLong { limit });
        }
        buf.extend_from_slice(chunk);
        let used = chunk.len() + usize::from(found);
        reader.consume(used);
        if found {
            return Ok(true);
        }
    }
}

/// Reads the environment block; the whole block must arrive within `timeout`.
pub async fn read_environment<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    timeout: Duration,
) -> Result<AgiEnvironment, ProtocolError> {
    let read = async {
        let mut parser = EnvParser::new();
        let mut line = Vec::new();
        loop {
            if !read_line(reader, &mut line, MAX_LINE_BYTES).await? {
                return Err(ProtocolError::Closed);
            }
            if parser.push_line(&line)? {
                return Ok(parser.finish());
            }
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| ProtocolError::Timeout {
            waiting_for: "the environment block",
        })?
}

/// Reads the reply to a command within `timeout`, skipping `HANGUP` notices (counted in
/// `hangups`) and the body of a multi-line reply.
pub async fn read_reply<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    timeout: Duration,
    hangups: &mut u32,
) -> Result<Reply, ProtocolError> {
    let read = async {
        let mut line = Vec::new();
        let mut open: Option<u16> = None;
        for _ in 0..MAX_REPLY_LINES {
            if !read_line(reader, &mut line, MAX_LINE_BYTES).await? {
                return Err(ProtocolError::Closed);
            }
            let text = String::from_utf8_lossy(&line);
            if let Some(code) = open {
                // Usage text until `NNN ` closes the block.
                if text.len() > 3 && text.starts_with(&format!("{code} ")) {
                    return Ok(match code {
                        520 => Reply::Usage,
                        code => Reply::Other { code },
                    });
                }
                continue;
            }
            match parse_reply_line(&text)? {
                ReplyLine::Hangup => *hangups = hangups.saturating_add(1),
                ReplyLine::Continues { code } => open = Some(code),
                ReplyLine::Final(reply) => return Ok(reply),
            }
        }
        Err(ProtocolError::ReplyTooLong {
            limit: MAX_REPLY_LINES,
        })
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| ProtocolError::Timeout {
            waiting_for: "a reply",
        })?
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const T: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn reads_lines_within_the_limit() {
        let mut input: &[u8] = b"abc\r\n\nxyz";
        let mut buf = Vec::new();
        assert!(read_line(&mut input, &mut buf, 4).await.unwrap());
        assert_eq!(buf, b"abc\r");
        assert!(read_line(&mut input, &mut buf, 4).await.unwrap());
        assert_eq!(buf, b"");
        assert!(matches!(
            read_line(&mut input, &mut buf, 4).await,
            Err(ProtocolError::Truncated)
        ));
        assert!(!read_line(&mut input, &mut buf, 4).await.unwrap());
        let mut long: &[u8] = b"abcde\n";
        assert!(matches!(
            read_line(&mut long, &mut buf, 4).await,
            Err(ProtocolError::LineTooLong { limit: 4 })
        ));
    }

    #[tokio::test]
    async fn reads_replies_past_hangup_and_usage() {
        let mut input: &[u8] = b"HANGUP\n520-Invalid command syntax.  Proper usage follows:\n\
            Usage: SET VARIABLE <name> <value>\n520 End of proper usage.\n200 result=1\n";
        let mut hangups = 0;
        assert_eq!(
            read_reply(&mut input, T, &mut hangups).await.unwrap(),
            Reply::Usage
        );
        assert_eq!(hangups, 1);
        assert_eq!(
            read_reply(&mut input, T, &mut hangups).await.unwrap(),
            Reply::Success {
                result: 1,
                data: None
            }
        );
        assert!(matches!(
            read_reply(&mut input, T, &mut hangups).await,
            Err(ProtocolError::Closed)
        ));
    }

    #[tokio::test]
    async fn an_endless_usage_block_is_cut() {
        let body = "520-x\n".to_owned() + &"usage\n".repeat(MAX_REPLY_LINES + 1);
        let mut input = body.as_bytes();
        let mut hangups = 0;
        assert!(matches!(
            read_reply(&mut input, T, &mut hangups).await,
            Err(ProtocolError::ReplyTooLong { .. })
        ));
    }
}
