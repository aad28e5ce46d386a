//! Log-line parsers: one PBX log line in, an [`AuthEvent`] out when the line records an
//! authentication failure or success, `None` for everything else.
//!
//! This module owns the built-in formats ([`LogFormat::Asterisk`],
//! [`LogFormat::FreeSwitch`], [`LogFormat::Kamailio`], each documented in its own
//! submodule), user-defined regex formats ([`CustomFormat`]), the reading of log
//! timestamps ([`TimeContext`]) and bulk scanning ([`scan_bytes`], [`scan_reader`]).
//!
//! # Hostile input
//!
//! Log lines carry attacker-chosen text (From headers, User-Agents, user names). The
//! parsers never panic, whatever the bytes (invalid UTF-8 included; a proptest feeds
//! them random input), run in time linear in the line, look at no more than
//! [`MAX_LINE_LEN`] bytes of a line (longer lines are skipped whole, see there), take
//! addresses only from the positions the PBX writes them in, and cap every text
//! field of an event at 256 bytes.
//!
//! # Speed
//!
//! Most lines of a PBX log are not events. Each built-in format has a short list of
//! keywords that every event line contains; [`scan_bytes`] finds them with one
//! Aho-Corasick search over the whole buffer (SIMD on x86-64), so the lines between
//! two hits cost nothing beyond that search: no line splitting, no allocation, no
//! regex. Only the line around a hit is parsed, by hand-written code.

// The built-in formats' modules are public for their documentation (what each one
// reads, and the Kamailio line format); their parsers are reached through LogFormat.
pub mod asterisk;
mod common;
mod custom;
pub mod freeswitch;
pub mod kamailio;

use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;
use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, MatchKind};
use memchr::{memchr, memrchr};
use tollgate_core::guard_event::AuthEvent;

pub use common::{TimeContext, YearRule};
pub use custom::{CustomFormat, CustomFormatError, CustomFormatSpec};

/// The longest line a parser looks at, in bytes. Longer lines are skipped whole rather
/// than cut: a cut line could read as something it is not. The cap is 64 KiB and not
/// less because attackers choose part of a line's length (a padded From header), and a
/// failure line must not escape counting by being long; a SIP message over UDP, where
/// these headers come from, cannot exceed 64 KiB.
pub const MAX_LINE_LEN: usize = 64 * 1024;

/// A log format tollgate can read.
#[derive(Clone, Debug)]
pub enum LogFormat {
    /// Asterisk's `messages`/`full`/`security` logs: chan_sip, chan_iax2, res_pjsip,
    /// AMI and res_security_log lines. See [`asterisk`].
    Asterisk,
    /// FreeSWITCH's mod_sofia authentication lines. See [`freeswitch`].
    FreeSwitch,
    /// The line tollgate's example Kamailio config writes. See [`kamailio`].
    Kamailio,
    /// A user-defined regex.
    Custom(CustomFormat),
}

/// A format name that is not one of the built-in ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown log format {0:?} (expected asterisk, freeswitch or kamailio)")]
pub struct UnknownFormat(pub String);

impl FromStr for LogFormat {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "asterisk" => Ok(Self::Asterisk),
            "freeswitch" => Ok(Self::FreeSwitch),
            "kamailio" => Ok(Self::Kamailio),
            _ => Err(UnknownFormat(s.to_owned())),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Asterisk => f.write_str("asterisk"),
            Self::FreeSwitch => f.write_str("freeswitch"),
            Self::Kamailio => f.write_str("kamailio"),
            Self::Custom(c) => write!(f, "custom({:?})", c.pattern()),
        }
    }
}

/// A built-in format's keyword prefilter: the automaton and, for each keyword, the
/// bit of the line shape it announces.
struct Keywords {
    automaton: AhoCorasick,
    kinds: Vec<u32>,
}

impl Keywords {
    /// The shapes announced by the keywords in `line`. A non-overlapping search sees
    /// every keyword because no keyword can overlap another (checked by a test).
    fn kinds_in(&self, line: &[u8]) -> u32 {
        let mut kinds = 0u32;
        for m in self.automaton.find_iter(line) {
            kinds |= 1 << self.kinds[m.pattern().as_usize()];
        }
        kinds
    }
}

#[expect(
    clippy::expect_used,
    reason = "the keywords are constants, a handful of short literals: building cannot fail, and the unit tests build every automaton"
)]
fn build_keywords(keywords: &[(&str, u32)]) -> Keywords {
    // Leftmost-first is what lets aho-corasick use its SIMD (Teddy) searcher; with the
    // standard semantics it falls back to a byte-at-a-time automaton, several times
    // slower on a log.
    let automaton = AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostFirst)
        .build(keywords.iter().map(|(k, _)| k))
        .expect("constant keyword automaton");
    Keywords {
        automaton,
        kinds: keywords.iter().map(|(_, kind)| *kind).collect(),
    }
}

fn asterisk_keywords() -> &'static Keywords {
    static CELL: OnceLock<Keywords> = OnceLock::new();
    CELL.get_or_init(|| build_keywords(&asterisk::KEYWORDS))
}

fn freeswitch_keywords() -> &'static Keywords {
    static CELL: OnceLock<Keywords> = OnceLock::new();
    CELL.get_or_init(|| build_keywords(&freeswitch::KEYWORDS))
}

fn kamailio_keywords() -> &'static Keywords {
    static CELL: OnceLock<Keywords> = OnceLock::new();
    CELL.get_or_init(|| build_keywords(&kamailio::KEYWORDS))
}

impl LogFormat {
    fn keywords(&self) -> Option<&'static Keywords> {
        match self {
            Self::Asterisk => Some(asterisk_keywords()),
            Self::FreeSwitch => Some(freeswitch_keywords()),
            Self::Kamailio => Some(kamailio_keywords()),
            Self::Custom(_) => None,
        }
    }

    /// Parses one line, with timestamps read in UTC and year-less ones left without a
    /// time ([`TimeContext::utc`]). A trailing newline is ignored.
    pub fn parse_line(&self, line: &str) -> Option<AuthEvent> {
        self.parse_bytes(line.as_bytes(), &TimeContext::utc())
    }

    /// Parses one line given as bytes (any bytes: invalid UTF-8 is fine), reading its
    /// timestamp with `ctx`. A trailing `\n` or `\r\n` is ignored.
    pub fn parse_bytes(&self, line: &[u8], ctx: &TimeContext) -> Option<AuthEvent> {
        let line = strip_newline(line);
        if line.len() > MAX_LINE_LEN {
            return None;
        }
        match self {
            Self::Custom(c) => c.parse(line, ctx),
            _ => {
                let kinds = self.keywords()?.kinds_in(line);
                if kinds == 0 {
                    return None;
                }
                self.parse_kinds(line, kinds, ctx)
            }
        }
    }

    fn parse_kinds(&self, line: &[u8], kinds: u32, ctx: &TimeContext) -> Option<AuthEvent> {
        let at = || common::leading_time(line, ctx);
        match self {
            Self::Asterisk => asterisk::parse(line, kinds, at),
            Self::FreeSwitch => freeswitch::parse(line, kinds, at),
            Self::Kamailio => kamailio::parse(line, at),
            Self::Custom(c) => c.parse(line, ctx),
        }
    }
}

fn strip_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Figures from one scan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// Bytes read.
    pub bytes: u64,
    /// Lines seen (a last line without a newline counts).
    pub lines: u64,
    /// Events found.
    pub events: u64,
    /// Lines skipped for being longer than [`MAX_LINE_LEN`]: for the built-in formats
    /// only those that contain one of the format's keywords, plus any line too long
    /// for [`scan_reader`]'s buffer.
    pub long_lines: u64,
}

/// Scans a buffer of whole log lines and calls `f` with every event, in order, reading
/// timestamps in UTC ([`TimeContext::utc`]). A last line without a newline is parsed
/// too.
pub fn scan_bytes(format: &LogFormat, bytes: &[u8], f: impl FnMut(AuthEvent)) {
    scan_bytes_with(format, bytes, &TimeContext::utc(), f);
}

/// [`scan_bytes`] with a time context, returning how many lines and events it saw.
pub fn scan_bytes_with(
    format: &LogFormat,
    bytes: &[u8],
    ctx: &TimeContext,
    mut f: impl FnMut(AuthEvent),
) -> ScanStats {
    let mut stats = ScanStats {
        bytes: bytes.len() as u64,
        lines: count_lines(bytes),
        ..ScanStats::default()
    };
    let mut emit = |ev: AuthEvent| {
        stats.events += 1;
        f(ev);
    };
    let mut long_lines = 0;
    match format {
        LogFormat::Custom(c) => {
            for line in bytes.split(|&b| b == b'\n') {
                let line = strip_newline(line);
                if line.len() > MAX_LINE_LEN {
                    long_lines += 1;
                } else if let Some(ev) = c.parse(line, ctx) {
                    emit(ev);
                }
            }
        }
        _ => {
            let Some(keywords) = format.keywords() else {
                return stats;
            };
            let ac = &keywords.automaton;
            let mut pos = 0;
            while pos < bytes.len() {
                let Some(m) = ac.find(&bytes[pos..]) else {
                    break;
                };
                let hit = pos + m.start();
                let start = memrchr(b'\n', &bytes[pos..hit]).map_or(pos, |i| pos + i + 1);
                let end = memchr(b'\n', &bytes[hit..]).map_or(bytes.len(), |i| hit + i);
                let line = strip_newline(&bytes[start..end]);
                if line.len() > MAX_LINE_LEN {
                    long_lines += 1;
                } else if let Some(ev) = format.parse_bytes(line, ctx) {
                    emit(ev);
                }
                pos = end + 1;
            }
        }
    }
    stats.long_lines = long_lines;
    stats
}

fn count_lines(bytes: &[u8]) -> u64 {
    let newlines = memchr::memchr_iter(b'\n', bytes).count() as u64;
    let unterminated = u64::from(!bytes.is_empty() && bytes.last() != Some(&b'\n'));
    newlines + unterminated
}

/// Scans a stream (a log file) in fixed-size chunks, so memory stays at about
/// `2 × max(1 MiB, MAX_LINE_LEN)` whatever the file's size. Lines longer than
/// [`MAX_LINE_LEN`] are skipped and counted.
pub fn scan_reader(
    format: &LogFormat,
    mut reader: impl Read,
    ctx: &TimeContext,
    mut f: impl FnMut(AuthEvent),
) -> io::Result<ScanStats> {
    const CHUNK: usize = 1 << 20;
    let mut buf = vec![0u8; CHUNK + MAX_LINE_LEN];
    // Bytes of an unfinished line carried from the previous chunk.
    let mut carried = 0usize;
    // Inside a line already known to be too long: drop bytes up to its newline.
    let mut skipping = false;
    let mut total = ScanStats::default();
    loop {
        let n = match reader.read(&mut buf[carried..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        total.bytes += n as u64;
        let filled = carried + n;
        let mut data_start = 0;
        if skipping {
            match memchr(b'\n', &buf[..filled]) {
                Some(i) => {
                    skipping = false;
                    data_start = i + 1;
                }
                None => {
                    carried = 0;
                    continue;
                }
            }
        }
        let data = &buf[data_start..filled];
        let whole = memrchr(b'\n', data).map_or(0, |i| i + 1);
        let stats = scan_bytes_with(format, &data[..whole], ctx, &mut f);
        total.lines += stats.lines;
        total.events += stats.events;
        total.long_lines += stats.long_lines;
        let rest = data.len() - whole;
        if rest > MAX_LINE_LEN {
            // The unfinished line is already too long: count it and skip the rest of it.
            total.long_lines += 1;
            total.lines += 1;
            skipping = true;
            carried = 0;
        } else {
            buf.copy_within(data_start + whole..filled, 0);
            carried = rest;
        }
    }
    if carried > 0 {
        let stats = scan_bytes_with(format, &buf[..carried], ctx, &mut f);
        total.lines += stats.lines;
        total.events += stats.events;
        total.long_lines += stats.long_lines;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_automaton_builds() {
        for f in [
            LogFormat::Asterisk,
            LogFormat::FreeSwitch,
            LogFormat::Kamailio,
        ] {
            assert!(f.keywords().is_some());
        }
    }

    /// INVARIANT for [`Keywords::kinds_in`]: no keyword contains another, and no
    /// proper suffix of one is a proper prefix of another (or of itself), so matches
    /// can never overlap and a non-overlapping search reports each occurrence.
    #[test]
    fn keywords_cannot_overlap() {
        let lists: [&[(&str, u32)]; 3] = [
            &asterisk::KEYWORDS,
            &freeswitch::KEYWORDS,
            &kamailio::KEYWORDS,
        ];
        for list in lists {
            for (a, _) in list {
                for (b, _) in list {
                    if a != b {
                        assert!(!a.contains(b), "{a:?} contains {b:?}");
                    }
                    for k in 1..a.len().min(b.len()) {
                        assert!(
                            a.as_bytes()[a.len() - k..] != b.as_bytes()[..k],
                            "{a:?} and {b:?} can overlap"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn names() {
        assert!(matches!(
            "asterisk".parse::<LogFormat>(),
            Ok(LogFormat::Asterisk)
        ));
        assert!(matches!(
            "FreeSWITCH".parse::<LogFormat>(),
            Ok(LogFormat::FreeSwitch)
        ));
        assert!(matches!(
            "kamailio".parse::<LogFormat>(),
            Ok(LogFormat::Kamailio)
        ));
        let err = "opensips".parse::<LogFormat>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown log format \"opensips\" (expected asterisk, freeswitch or kamailio)"
        );
        assert_eq!(LogFormat::FreeSwitch.to_string(), "freeswitch");
    }
}
