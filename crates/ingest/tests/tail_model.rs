//! The tailer against a model, under random sequences of writes, unfinished writes,
//! over-long lines, rotations (rename + create), copytruncates, deletions and restarts.
//!
//! The model keeps each file's lines as the writer wrote them and what the tailer has
//! delivered of each, and encodes the guarantees of `tollgate_ingest::tail` (see its
//! module documentation): after every read, the real tailer must have delivered
//! exactly the lines the model says, in the same order. In particular:
//!
//! - a file truncated by copytruncate loses its unread lines and its unfinished line;
//! - a file the path named only between two reads is never seen;
//! - a rotated or deleted file's unfinished line is delivered when it is retired
//!   (the tests run with no rotation grace, so that happens on the read that notices);
//! - a restart resumes the file at the path if it is the saved one, or finishes the
//!   saved file first when it is still in the directory as `NAME.1`.
//!
//! The harness keeps every file it created open, so that no inode number is reused
//! during a case: the tailer tells files apart by inode, and a reused number with the
//! same first bytes is outside what it can see (documented in the module).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use proptest::prelude::*;
use tollgate_ingest::{StartAt, TailOptions, TailPosition, Tailer};

const MAX_LINE: usize = 40;

#[derive(Clone, Debug)]
enum Op {
    /// Append this many complete lines.
    Write(u8),
    /// Append text without a newline.
    WritePartial,
    /// Append a line longer than the cap.
    WriteLong,
    /// `mv NAME NAME.1; touch NAME`.
    Rotate,
    /// `cp NAME NAME.1; truncate -s 0 NAME`.
    CopyTruncate,
    /// `rm NAME`.
    Delete,
    Read,
    /// Drop the tailer, keeping its position.
    Stop,
    /// Reopen it with the kept position.
    Start,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1..4u8).prop_map(Op::Write),
        2 => Just(Op::WritePartial),
        1 => Just(Op::WriteLong),
        2 => Just(Op::Rotate),
        1 => Just(Op::CopyTruncate),
        1 => Just(Op::Delete),
        5 => Just(Op::Read),
        1 => Just(Op::Stop),
        1 => Just(Op::Start),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// At NAME.
    Path,
    /// At NAME.1.
    Rotated,
    /// Unlinked.
    Gone,
}

#[derive(Debug)]
struct ModelFile {
    /// Complete lines, in order.
    lines: Vec<String>,
    /// Text after the last newline.
    partial: String,
    place: Place,
    /// Whether its unfinished line was already delivered on retirement.
    finished: bool,
}

/// What the tailer holds: a file and how many of its lines it has delivered.
type Cursor = Option<(usize, usize)>;

#[derive(Debug)]
struct Model {
    files: Vec<ModelFile>,
    at_path: Option<usize>,
    running: bool,
    /// Running: the current file. Stopped: the saved position's file.
    cursor: Cursor,
    /// A saved file found under NAME.1 at start, to finish on the next read.
    pending_retired: Cursor,
    /// The followed file was truncated and no read has noticed yet: a position saved
    /// now no longer matches its first bytes or size, so after a restart it is only
    /// recognised if it is still at the path.
    stale: bool,
    seq: u32,
}

impl Model {
    fn new_file(&mut self) -> usize {
        self.files.push(ModelFile {
            lines: Vec::new(),
            partial: String::new(),
            place: Place::Path,
            finished: false,
        });
        let id = self.files.len() - 1;
        self.at_path = Some(id);
        id
    }

    fn next(&mut self, prefix: char) -> String {
        self.seq += 1;
        // Fixed width: no text is a prefix of another, so first bytes identify a file.
        format!("{prefix}{:06}", self.seq)
    }

    /// Delivers file `id`'s lines from `from`, skipping over-long ones.
    fn deliver(&self, id: usize, from: usize, out: &mut Vec<String>) -> usize {
        let lines = &self.files[id].lines;
        out.extend(
            lines[from.min(lines.len())..]
                .iter()
                .filter(|l| l.len() <= MAX_LINE)
                .cloned(),
        );
        lines.len()
    }

    fn finish(&mut self, id: usize, out: &mut Vec<String>) {
        let f = &mut self.files[id];
        if !f.finished && !f.partial.is_empty() && f.partial.len() <= MAX_LINE {
            out.push(f.partial.clone());
        }
        f.finished = true;
    }

    fn read(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.running {
            return out;
        }
        self.stale = false;
        if let Some((id, from)) = self.pending_retired.take() {
            self.deliver(id, from, &mut out);
            self.finish(id, &mut out);
        }
        if let Some((id, from)) = self.cursor {
            let n = self.deliver(id, from, &mut out);
            self.cursor = Some((id, n));
            if self.at_path != Some(id) {
                self.finish(id, &mut out);
                self.cursor = None;
            }
        }
        if self.cursor.is_none() {
            if let Some(id) = self.at_path {
                let n = self.deliver(id, 0, &mut out);
                self.cursor = Some((id, n));
            }
        }
        out
    }

    fn start(&mut self) {
        self.running = true;
        let stale = std::mem::take(&mut self.stale);
        match self.cursor {
            Some((id, _)) if self.at_path == Some(id) => {}
            Some((id, from)) => {
                if self.files[id].place == Place::Rotated && !stale {
                    self.pending_retired = Some((id, from));
                }
                self.cursor = self.at_path.map(|p| (p, 0));
            }
            None => self.cursor = self.at_path.map(|p| (p, 0)),
        }
    }
}

struct Harness {
    dir: tempfile::TempDir,
    /// Every file ever created, held open so its inode number is not reused.
    keep: Vec<File>,
}

impl Harness {
    fn path(&self) -> PathBuf {
        self.dir.path().join("full")
    }

    fn rotated(&self) -> PathBuf {
        self.dir.path().join("full.1")
    }

    fn append(&mut self, text: &str) {
        let path = self.path();
        let existed = path.exists();
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        if !existed {
            self.keep.push(File::open(&path).unwrap());
        }
        f.write_all(text.as_bytes()).unwrap();
    }

    fn create_empty(&mut self, path: &Path) {
        let f = File::create(path).unwrap();
        self.keep.push(f);
    }
}

fn options(start_at: StartAt) -> TailOptions {
    TailOptions {
        start_at,
        max_line_len: MAX_LINE,
        rotation_grace: Duration::ZERO,
        ..TailOptions::default()
    }
}

fn run(prefill: u8, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut h = Harness {
        dir: tempfile::tempdir().unwrap(),
        keep: Vec::new(),
    };
    let mut m = Model {
        files: Vec::new(),
        at_path: None,
        running: true,
        cursor: None,
        pending_retired: None,
        stale: false,
        seq: 0,
    };
    // A file that exists at the first start is skipped (StartAt::End).
    if prefill > 0 {
        let id = m.new_file();
        for _ in 0..prefill {
            let line = m.next('H');
            h.append(&format!("{line}\n"));
            m.files[id].lines.push(line);
        }
        m.cursor = Some((id, prefill as usize));
    }
    let mut tailer = Some(Tailer::with_options(h.path(), None, options(StartAt::End)).unwrap());
    let mut saved = TailPosition::default();

    for (step, op) in ops
        .iter()
        .chain(std::iter::once(&Op::Start))
        .chain(std::iter::once(&Op::Read))
        .enumerate()
    {
        match op {
            Op::Write(n) => {
                let id = match m.at_path {
                    Some(id) => id,
                    None => m.new_file(),
                };
                let mut text = String::new();
                for _ in 0..*n {
                    let line = m.next('L');
                    text.push_str(&line);
                    text.push('\n');
                    let f = &mut m.files[id];
                    let whole = std::mem::take(&mut f.partial) + &line;
                    f.lines.push(whole);
                }
                h.append(&text);
            }
            Op::WritePartial => {
                let id = match m.at_path {
                    Some(id) => id,
                    None => m.new_file(),
                };
                let text = m.next('P');
                h.append(&text);
                m.files[id].partial.push_str(&text);
            }
            Op::WriteLong => {
                let id = match m.at_path {
                    Some(id) => id,
                    None => m.new_file(),
                };
                let line = format!("{}{}", m.next('X'), "x".repeat(MAX_LINE));
                h.append(&format!("{line}\n"));
                let f = &mut m.files[id];
                let whole = std::mem::take(&mut f.partial) + &line;
                f.lines.push(whole);
            }
            Op::Rotate => {
                if let Some(id) = m.at_path {
                    for f in &mut m.files {
                        if f.place == Place::Rotated {
                            f.place = Place::Gone;
                        }
                    }
                    std::fs::rename(h.path(), h.rotated()).unwrap();
                    m.files[id].place = Place::Rotated;
                    let path = h.path();
                    h.create_empty(&path);
                    m.new_file();
                }
            }
            Op::CopyTruncate => {
                if let Some(id) = m.at_path {
                    for f in &mut m.files {
                        if f.place == Place::Rotated {
                            f.place = Place::Gone;
                        }
                    }
                    let _ = std::fs::remove_file(h.rotated());
                    std::fs::copy(h.path(), h.rotated()).unwrap();
                    h.keep.push(File::open(h.rotated()).unwrap());
                    OpenOptions::new()
                        .write(true)
                        .open(h.path())
                        .unwrap()
                        .set_len(0)
                        .unwrap();
                    // The copy is a new file the tailer never follows.
                    let copy = ModelFile {
                        lines: m.files[id].lines.clone(),
                        partial: m.files[id].partial.clone(),
                        place: Place::Rotated,
                        finished: true,
                    };
                    let f = &mut m.files[id];
                    f.lines.clear();
                    f.partial.clear();
                    m.files.push(copy);
                    if let Some((cur, delivered)) = m.cursor {
                        if cur == id {
                            m.cursor = Some((id, 0));
                            // A saved offset of 0 still fits the truncated file.
                            m.stale |= delivered > 0;
                        }
                    }
                }
            }
            Op::Delete => {
                if let Some(id) = m.at_path.take() {
                    std::fs::remove_file(h.path()).unwrap();
                    m.files[id].place = Place::Gone;
                }
            }
            Op::Read => {
                let expected = m.read();
                if let Some(t) = &mut tailer {
                    let mut got = Vec::new();
                    t.read_lines(&mut got).unwrap();
                    prop_assert_eq!(
                        &got,
                        &expected,
                        "step {}: {:?}\nops: {:?}\nmodel: {:?}",
                        step,
                        op,
                        ops,
                        m
                    );
                }
            }
            Op::Stop => {
                if let Some(t) = tailer.take() {
                    saved = t.position();
                    m.running = false;
                    m.pending_retired = None;
                }
            }
            Op::Start => {
                if tailer.is_none() {
                    tailer = Some(
                        Tailer::with_options(h.path(), Some(saved), options(StartAt::End)).unwrap(),
                    );
                    m.start();
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn tailer_matches_model(prefill in 0..3u8, ops in prop::collection::vec(op(), 1..40)) {
        run(prefill, ops)?;
    }
}

/// A case proptest found worth keeping: rotate twice between reads.
#[test]
fn two_rotations_between_reads_lose_the_middle_file() {
    run(
        0,
        vec![
            Op::Write(1),
            Op::Read,
            Op::Write(1),
            Op::Rotate,
            Op::Write(2),
            Op::Rotate,
            Op::Write(1),
            Op::Read,
        ],
    )
    .unwrap();
}

#[test]
fn restart_finishes_the_rotated_file() {
    run(
        1,
        vec![
            Op::Write(2),
            Op::Read,
            Op::Write(1),
            Op::WritePartial,
            Op::Stop,
            Op::Write(1),
            Op::Rotate,
            Op::Write(1),
            Op::Start,
            Op::Read,
        ],
    )
    .unwrap();
}
