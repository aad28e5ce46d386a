//! Following one log file: new complete lines since the last call, across rotation,
//! truncation, the file going missing, and restarts of tollgate.
//!
//! # How a file is followed
//!
//! A [`Tailer`] holds the file open and reads from its offset to the end on each call
//! to [`Tailer::read_lines`] (or [`Tailer::read_with`]); the caller decides when to
//! call (every 20–50 ms, or when inotify says the file changed). A call costs one
//! `fstat`, one `stat` of the path and one small read of the file's first bytes when
//! nothing was written, so polling is cheap.
//!
//! - **Lines**: only complete lines (ending in `\n`) are delivered, without the `\n`.
//!   An unfinished last line is held until its newline arrives. A line longer than
//!   [`TailOptions::max_line_len`] is skipped whole and counted
//!   ([`Tailer::skipped_lines`]); the memory held for it stays under that cap.
//! - **Rotation** (the file renamed, a new one created at the path, or the file
//!   deleted): the tailer notices that the path no longer names the file it holds,
//!   reads the old file to its end, keeps reading it for [`TailOptions::rotation_grace`]
//!   (a writer may append to the old file until it reopens its log), then delivers the
//!   old file's unfinished last line, if any, as a line, and closes it. The new file at
//!   the path is read from its start. Old-file lines come before new-file lines read in
//!   the same call.
//! - **copytruncate** (the file copied elsewhere, then truncated in place): noticed
//!   when the file is shorter than what was read, or when its first bytes are no
//!   longer those read before (it was truncated and written again between two calls).
//!   Reading starts again from offset 0; the held unfinished line is dropped.
//! - **Missing file**: nothing to read until it appears; a file that appears after the
//!   tailer was opened is new and read from its start.
//! - **Restarts**: [`Tailer::position`] is a small serializable [`TailPosition`]
//!   (device, inode, offset of the next unread line, and a hash of the file's first
//!   bytes up to 256) for the caller to persist. [`Tailer::open`] with it resumes at
//!   the offset when the path still names the same file (same inode and device, or
//!   same inode and a full 256-byte fingerprint, since device numbers can change
//!   across a reboot) with the same first bytes and at least that size; otherwise the
//!   file was rotated or truncated while tollgate was down, and it looks in the same
//!   directory for the old file under a rotated name (`NAME.1`, `NAME-20261126`, any
//!   name that starts with the file's name), reads its rest first if found, and reads
//!   the new file from its start.
//! - **First start** (no saved position): [`StartAt::End`] (the default) skips what the
//!   file already holds, so an old history is not taken for a live attack;
//!   [`StartAt::Beginning`] reads it. This applies only to a file that exists when the
//!   tailer is opened without a position; a file that appears later is always read
//!   from its start.
//!
//! # Guarantees
//!
//! Every complete line written to the followed file is delivered exactly once and in
//! the order written, except:
//!
//! 1. lines of a file that is truncated (copytruncate) before the tailer read them are
//!    lost, and so is an unfinished line held at that moment;
//! 2. lines of a file that the path named only between two calls (created and then
//!    rotated away or deleted before the tailer saw it, e.g. two rotations between two
//!    calls) are lost;
//! 3. lines appended to a rotated-away file more than `rotation_grace` after the
//!    tailer noticed the rotation are lost;
//! 4. across a restart, the rest of the old file is found only if it is still in the
//!    same directory under a name starting with the file's name, with its inode and
//!    first bytes; and only the current file's progress is saved, so the unread rest
//!    of a rotated-away file still being read at shutdown is lost;
//! 5. a rotated file's unfinished last line is delivered as a line when the file is
//!    closed (it can no longer be completed), and a line longer than the cap is skipped.
//!
//! A file that replaces another with the same inode number and the same first bytes
//! would be taken for it; the first bytes of a log are timestamps, so this needs two
//! identical logs.
//!
//! The model-based test in `tests/tail_model.rs` checks exactly these rules under
//! random sequences of writes, partial writes, rotations, copytruncates, deletions,
//! over-long lines and restarts.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How many of a file's first bytes identify it.
const FINGERPRINT_LEN: usize = 256;

/// Where a tailer is in its file, for the caller to persist across restarts.
///
/// All zeros means "no file yet": whatever file is at the path next is read from its
/// start.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct TailPosition {
    pub dev: u64,
    pub inode: u64,
    /// Offset of the first byte not yet delivered (always the start of a line).
    pub offset: u64,
    /// FNV-1a hash of the file's first `min(256, offset)` bytes.
    pub fingerprint: u64,
}

/// Where to start in a file that exists when the tailer is opened without a position.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartAt {
    /// Skip what the file holds: start at its end (after its last complete line).
    #[default]
    End,
    /// Read the whole file.
    Beginning,
}

/// Tuning of a [`Tailer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TailOptions {
    pub start_at: StartAt,
    /// Longest line delivered, in bytes; longer ones are skipped. Default 64 KiB, the
    /// parsers' own cap.
    pub max_line_len: usize,
    /// How long a rotated-away file is still read after the rotation was noticed.
    /// Default 5 s.
    pub rotation_grace: Duration,
    /// Most bytes read in one call, so that a large backlog comes in several calls
    /// rather than one huge batch. Default 16 MiB.
    pub max_bytes_per_call: usize,
}

impl Default for TailOptions {
    fn default() -> Self {
        Self {
            start_at: StartAt::End,
            max_line_len: crate::formats::MAX_LINE_LEN,
            rotation_grace: Duration::from_secs(5),
            max_bytes_per_call: 16 << 20,
        }
    }
}

/// FNV-1a, 64 bits: stable across Rust versions and platforms, unlike std's hasher,
/// which matters for a value that is persisted.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Reads up to `buf.len()` bytes at `offset`, retrying on `Interrupted`.
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    loop {
        match file.read_at(buf, offset) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Reads the first `len` bytes of `file` (fewer if it is shorter).
fn read_head(file: &File, len: usize) -> io::Result<Vec<u8>> {
    let mut head = vec![0u8; len];
    let mut got = 0;
    while got < len {
        let n = read_at(file, &mut head[got..], got as u64)?;
        if n == 0 {
            break;
        }
        got += n;
    }
    head.truncate(got);
    Ok(head)
}

/// What happens to the bytes before the next newline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    /// They are the start of a line, kept in `partial`.
    Line,
    /// They are the rest of a line that is not delivered (too long, or begun before
    /// the tailer started at the file's end).
    Discard,
}

/// One open file being read.
struct Followed {
    file: File,
    dev: u64,
    inode: u64,
    /// Start of the first line not yet delivered.
    offset: u64,
    /// How far the file has been read (`offset` plus the unfinished line).
    read_to: u64,
    partial: Vec<u8>,
    pending: Pending,
    /// The file's first `min(256, read_to)` bytes as read: a later call that finds
    /// other bytes there knows the file was truncated and written again.
    head: Vec<u8>,
    /// When the path stopped naming this file.
    retired_at: Option<Instant>,
}

impl Followed {
    fn new(file: File, meta: &Metadata, offset: u64) -> io::Result<Self> {
        let head = read_head(&file, FINGERPRINT_LEN.min(offset as usize))?;
        Ok(Self {
            file,
            dev: meta.dev(),
            inode: meta.ino(),
            offset,
            read_to: offset,
            partial: Vec::new(),
            pending: Pending::Line,
            head,
            retired_at: None,
        })
    }

    fn position(&self) -> TailPosition {
        let fp_len = (self.offset as usize)
            .min(FINGERPRINT_LEN)
            .min(self.head.len());
        TailPosition {
            dev: self.dev,
            inode: self.inode,
            offset: self.offset,
            fingerprint: fnv1a(&self.head[..fp_len]),
        }
    }

    fn is(&self, meta: &Metadata) -> bool {
        self.dev == meta.dev() && self.inode == meta.ino()
    }

    /// Starts again from offset 0 if the file was truncated or rewritten under us.
    fn check_truncated(&mut self) -> io::Result<()> {
        let size = self.file.metadata()?.len();
        let rewritten = size < self.read_to
            || (!self.head.is_empty() && read_head(&self.file, self.head.len())? != self.head);
        if rewritten {
            self.offset = 0;
            self.read_to = 0;
            self.partial.clear();
            self.pending = Pending::Line;
            self.head.clear();
        }
        Ok(())
    }

    /// Reads to the end of the file (or until `budget` is spent), delivering complete
    /// lines. Returns whether the end was reached.
    fn drain(
        &mut self,
        buf: &mut [u8],
        budget: &mut usize,
        max_line: usize,
        stats: &mut Counters,
        f: &mut dyn FnMut(&[u8]),
    ) -> io::Result<bool> {
        loop {
            if *budget == 0 {
                return Ok(false);
            }
            let want = buf.len().min(*budget);
            let got = read_at(&self.file, &mut buf[..want], self.read_to)?;
            if got == 0 {
                return Ok(true);
            }
            *budget -= got;
            let chunk = &buf[..got];
            if self.head.len() < FINGERPRINT_LEN && (self.read_to as usize) == self.head.len() {
                let take = (FINGERPRINT_LEN - self.head.len()).min(got);
                self.head.extend_from_slice(&chunk[..take]);
            }
            let mut start = 0;
            for nl in memchr::memchr_iter(b'\n', chunk) {
                let piece = &chunk[start..nl];
                match self.pending {
                    Pending::Discard => self.pending = Pending::Line,
                    Pending::Line if self.partial.is_empty() => {
                        if piece.len() <= max_line {
                            f(piece);
                            stats.lines += 1;
                        } else {
                            stats.skipped += 1;
                        }
                    }
                    Pending::Line => {
                        if self.partial.len() + piece.len() <= max_line {
                            self.partial.extend_from_slice(piece);
                            f(&self.partial);
                            stats.lines += 1;
                        } else {
                            stats.skipped += 1;
                        }
                        self.partial.clear();
                    }
                }
                start = nl + 1;
                self.offset = self.read_to + start as u64;
            }
            let rest = &chunk[start..];
            if self.pending == Pending::Line && !rest.is_empty() {
                if self.partial.len() + rest.len() > max_line {
                    self.partial.clear();
                    self.pending = Pending::Discard;
                    stats.skipped += 1;
                } else {
                    self.partial.extend_from_slice(rest);
                }
            }
            self.read_to += got as u64;
        }
    }

    /// The file will not be read again: its unfinished line is delivered as a line.
    fn finish(&mut self, stats: &mut Counters, f: &mut dyn FnMut(&[u8])) {
        if self.pending == Pending::Line && !self.partial.is_empty() {
            f(&self.partial);
            stats.lines += 1;
        }
        self.partial.clear();
        self.offset = self.read_to;
    }
}

#[derive(Default)]
struct Counters {
    lines: usize,
    skipped: u64,
}

/// Follows one log file. See the module documentation for what it guarantees.
pub struct Tailer {
    path: PathBuf,
    opts: TailOptions,
    current: Option<Followed>,
    /// Rotated-away files still read during their grace period, oldest first.
    retired: Vec<Followed>,
    buf: Vec<u8>,
    skipped: u64,
}

impl std::fmt::Debug for Tailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tailer")
            .field("path", &self.path)
            .field("position", &self.position())
            .field("retired", &self.retired.len())
            .finish()
    }
}

impl Tailer {
    /// Opens a tailer on `path`, resuming from `position` when it still applies (see the
    /// module documentation), else starting as `start_at` says. A missing file is not
    /// an error; other errors opening an existing file are.
    pub fn open(
        path: impl Into<PathBuf>,
        position: Option<TailPosition>,
        start_at: StartAt,
    ) -> io::Result<Self> {
        Self::with_options(
            path,
            position,
            TailOptions {
                start_at,
                ..TailOptions::default()
            },
        )
    }

    /// [`Tailer::open`] with all the options.
    pub fn with_options(
        path: impl Into<PathBuf>,
        position: Option<TailPosition>,
        opts: TailOptions,
    ) -> io::Result<Self> {
        let mut t = Self {
            path: path.into(),
            opts,
            current: None,
            retired: Vec::new(),
            buf: vec![0u8; 64 * 1024],
            skipped: 0,
        };
        let meta = match std::fs::metadata(&t.path) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        match position {
            None => {
                if let Some(meta) = meta {
                    let file = File::open(&t.path)?;
                    let meta = file.metadata().unwrap_or(meta);
                    t.current = Some(match opts.start_at {
                        StartAt::Beginning => Followed::new(file, &meta, 0)?,
                        StartAt::End => at_end(file, &meta)?,
                    });
                }
            }
            Some(pos) => {
                if meta.is_some() {
                    let file = File::open(&t.path)?;
                    if let Some(resumed) = resume(file, pos)? {
                        t.current = Some(resumed);
                        return Ok(t);
                    }
                }
                // The saved file is no longer at the path: finish it if it was only
                // renamed, then read the new one from its start.
                if let Some(mut old) = find_rotated(&t.path, pos)? {
                    old.retired_at = Some(Instant::now());
                    t.retired.push(old);
                }
                if meta.is_some() {
                    let file = File::open(&t.path)?;
                    let meta = file.metadata()?;
                    t.current = Some(Followed::new(file, &meta, 0)?);
                }
            }
        }
        Ok(t)
    }

    /// The followed path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the tailer is, for the caller to persist. All zeros when no file is open.
    pub fn position(&self) -> TailPosition {
        self.current
            .as_ref()
            .map(Followed::position)
            .unwrap_or_default()
    }

    /// Lines skipped so far for being longer than the cap.
    pub fn skipped_lines(&self) -> u64 {
        self.skipped
    }

    /// Appends the complete lines written since the last call to `out` (invalid UTF-8
    /// replaced), returning how many.
    pub fn read_lines(&mut self, out: &mut Vec<String>) -> io::Result<usize> {
        self.read_with(|line| out.push(String::from_utf8_lossy(line).into_owned()))
    }

    /// Calls `f` with each complete line written since the last call (bytes, without
    /// the newline), returning how many. The slice is only valid during the call, so
    /// a parser can read it without a copy.
    pub fn read_with(&mut self, mut f: impl FnMut(&[u8])) -> io::Result<usize> {
        let mut stats = Counters::default();
        let result = self.read_inner(&mut stats, &mut f);
        self.skipped += stats.skipped;
        result.map(|()| stats.lines)
    }

    fn read_inner(&mut self, stats: &mut Counters, f: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        let mut budget = self.opts.max_bytes_per_call;
        let max_line = self.opts.max_line_len;
        let now = Instant::now();

        // Rotated-away files first: their lines are older.
        let mut i = 0;
        while i < self.retired.len() {
            let old = &mut self.retired[i];
            let at_end = old.drain(&mut self.buf, &mut budget, max_line, stats, f)?;
            let expired = old
                .retired_at
                .is_none_or(|t| now.duration_since(t) >= self.opts.rotation_grace);
            if at_end && expired {
                old.finish(stats, f);
                self.retired.remove(i);
            } else {
                i += 1;
            }
        }

        if let Some(cur) = &mut self.current {
            cur.check_truncated()?;
            let at_end = cur.drain(&mut self.buf, &mut budget, max_line, stats, f)?;
            if !at_end {
                // More to read: the rotation check waits until this file is read out.
                return Ok(());
            }
        }

        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let still_there = match (&self.current, &meta) {
            (Some(cur), Some(meta)) => cur.is(meta),
            (Some(_), None) => false,
            (None, _) => true,
        };
        if !still_there {
            if let Some(mut old) = self.current.take() {
                // Whatever was written before the rotation.
                old.drain(&mut self.buf, &mut budget, max_line, stats, f)?;
                if self.opts.rotation_grace.is_zero() {
                    old.finish(stats, f);
                } else {
                    old.retired_at = Some(now);
                    self.retired.push(old);
                }
            }
        }
        if self.current.is_none() && meta.is_some() {
            let file = match File::open(&self.path) {
                Ok(file) => file,
                // Gone again between the stat and the open: next call.
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            };
            let meta = file.metadata()?;
            let mut new = Followed::new(file, &meta, 0)?;
            new.drain(&mut self.buf, &mut budget, max_line, stats, f)?;
            self.current = Some(new);
        }
        Ok(())
    }
}

/// A file opened at its end: after its last complete line, skipping the rest of an
/// unfinished one.
fn at_end(file: File, meta: &Metadata) -> io::Result<Followed> {
    let size = meta.len();
    let mut followed = Followed::new(file, meta, size)?;
    if size > 0 {
        let mut last = [0u8; 1];
        let n = read_at(&followed.file, &mut last, size - 1)?;
        if n == 1 && last[0] != b'\n' {
            followed.pending = Pending::Discard;
        }
    }
    Ok(followed)
}

/// Whether `meta`/`file` is the file `pos` was saved for, with its first bytes
/// unchanged and at least `pos.offset` long.
fn matches(file: &File, meta: &Metadata, pos: TailPosition) -> io::Result<bool> {
    if pos.inode == 0 || meta.ino() != pos.inode || meta.len() < pos.offset {
        return Ok(false);
    }
    let fp_len = (pos.offset as usize).min(FINGERPRINT_LEN);
    // Device numbers can change across reboots; a full fingerprint is then enough.
    if meta.dev() != pos.dev && fp_len < FINGERPRINT_LEN {
        return Ok(false);
    }
    let head = read_head(file, fp_len)?;
    Ok(head.len() == fp_len && fnv1a(&head) == pos.fingerprint)
}

/// The file at the path, resumed at the saved offset, if it is the saved file.
fn resume(file: File, pos: TailPosition) -> io::Result<Option<Followed>> {
    let meta = file.metadata()?;
    if !matches(&file, &meta, pos)? {
        return Ok(None);
    }
    Followed::new(file, &meta, pos.offset).map(Some)
}

/// The saved file under a rotated name in the same directory, if it is there.
fn find_rotated(path: &Path, pos: TailPosition) -> io::Result<Option<Followed>> {
    // How many directory entries to look at: a log directory is small, and a huge one
    // must not stall startup.
    const MAX_ENTRIES: usize = 10_000;
    if pos.inode == 0 {
        return Ok(None);
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(None);
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let name = name.as_encoded_bytes();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    for entry in entries.take(MAX_ENTRIES) {
        let Ok(entry) = entry else { continue };
        let entry_name = entry.file_name();
        let entry_name = entry_name.as_encoded_bytes();
        if entry_name == name || !entry_name.starts_with(name) {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        if meta.ino() != pos.inode {
            continue;
        }
        let Ok(file) = File::open(entry.path()) else {
            continue;
        };
        if matches(&file, &meta, pos)? {
            return Followed::new(file, &meta, pos.offset).map(Some);
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(path: &Path, s: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(s.as_bytes()).unwrap();
    }

    fn read(t: &mut Tailer) -> Vec<String> {
        let mut out = Vec::new();
        t.read_lines(&mut out).unwrap();
        out
    }

    #[test]
    fn starts_at_end_by_default_and_skips_an_unfinished_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("messages");
        append(&path, "old 1\nold 2\nhalf");
        let mut t = Tailer::open(&path, None, StartAt::End).unwrap();
        assert!(read(&mut t).is_empty());
        append(&path, " of old\nnew 1\n");
        assert_eq!(read(&mut t), ["new 1"]);
    }

    #[test]
    fn beginning_reads_history_and_holds_partial_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("messages");
        append(&path, "a\nb");
        let mut t = Tailer::open(&path, None, StartAt::Beginning).unwrap();
        assert_eq!(read(&mut t), ["a"]);
        append(&path, "c\n");
        assert_eq!(read(&mut t), ["bc"]);
        assert_eq!(t.position().offset, 5);
    }

    #[test]
    fn grace_reads_writes_to_the_old_file_after_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("full");
        let rotated = dir.path().join("full.1");
        append(&path, "");
        let mut t = Tailer::with_options(
            &path,
            None,
            TailOptions {
                start_at: StartAt::Beginning,
                rotation_grace: Duration::from_millis(200),
                ..TailOptions::default()
            },
        )
        .unwrap();
        append(&path, "one\n");
        std::fs::rename(&path, &rotated).unwrap();
        append(&path, "new\n");
        assert_eq!(read(&mut t), ["one", "new"]);
        // The writer has not reopened its log yet.
        append(&rotated, "late\nunfinished");
        assert_eq!(read(&mut t), ["late"]);
        std::thread::sleep(Duration::from_millis(250));
        append(&path, "new 2\n");
        assert_eq!(read(&mut t), ["unfinished", "new 2"]);
    }

    #[test]
    fn long_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        append(&path, "");
        let mut t = Tailer::with_options(
            &path,
            None,
            TailOptions {
                start_at: StartAt::Beginning,
                max_line_len: 8,
                ..TailOptions::default()
            },
        )
        .unwrap();
        append(&path, "short\n0123456789\n01234");
        assert_eq!(read(&mut t), ["short"]);
        append(&path, "56789 still long\nok\n");
        assert_eq!(read(&mut t), ["ok"]);
        assert_eq!(t.skipped_lines(), 2);
    }

    #[test]
    fn restart_after_reboot_changed_the_device_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let line = format!("{}\n", "x".repeat(300));
        append(&path, &line);
        let mut t = Tailer::open(&path, None, StartAt::Beginning).unwrap();
        assert_eq!(read(&mut t).len(), 1);
        let mut pos = t.position();
        drop(t);
        pos.dev ^= 1;
        append(&path, "after\n");
        let mut t = Tailer::open(&path, Some(pos), StartAt::End).unwrap();
        assert_eq!(read(&mut t), ["after"]);
    }

    #[test]
    fn fingerprint_is_stable() {
        // Persisted values must not change between builds.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
