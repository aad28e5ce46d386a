//! # tollgate-ingest
//!
//! Wire formats in, for the intrusion guard: PBX log lines turned into
//! [`AuthEvent`](tollgate_core::guard_event::AuthEvent)s ([`formats`]), log files
//! followed across rotation, truncation and restarts ([`tail`]), and a generator of
//! realistic Asterisk logs for tests and benchmarks ([`generate`]).
//!
//! INVARIANT: parsing ([`formats`]) does no I/O except [`formats::scan_reader`]'s
//! reads from the reader it is given, and reads no clock: time comes in through
//! [`formats::TimeContext`]. The tailer ([`tail`]) is the only part that opens files.

pub mod formats;
pub mod generate;
pub mod tail;

pub use formats::{
    scan_bytes, scan_bytes_with, scan_reader, CustomFormat, CustomFormatError, CustomFormatSpec,
    LogFormat, ScanStats, TimeContext, UnknownFormat, YearRule, MAX_LINE_LEN,
};
pub use generate::{generate_asterisk_log, GeneratedLog};
pub use tail::{StartAt, TailOptions, TailPosition, Tailer};
