//! Log tailing: one thread per configured log that follows the file (through rotation,
//! truncation and restarts, see `tollgate_ingest::Tailer`), parses new lines into
//! registration events and runs them through the guard like API events. The position in
//! each file is stored as a cursor, so a restart resumes where it stopped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::Utc;
use tollgate_config::LogSource;
use tollgate_core::guard_event::AuthOutcome;
use tollgate_ingest::{
    CustomFormat, LogFormat, StartAt, TailOptions, TailPosition, Tailer, TimeContext,
};
use tollgate_store::Change;

use crate::app::App;

/// How often a log is read: the delay from a line being written to its event being
/// judged is at most this, plus the parse and the decision.
const POLL: Duration = Duration::from_millis(20);

/// How often a changed position is stored.
const SAVE_POSITION: Duration = Duration::from_secs(1);

/// Builds the parser of a log source.
pub fn format_of(source: &LogSource) -> Result<LogFormat, String> {
    match source.format.as_str() {
        "regex" => {
            let pattern = source
                .regex
                .as_deref()
                .ok_or("format \"regex\" needs a regex")?;
            CustomFormat::new(pattern, source.time_format.as_deref(), AuthOutcome::Failure)
                .map(LogFormat::Custom)
                .map_err(|e| e.to_string())
        }
        other => other.parse::<LogFormat>().map_err(|e| e.to_string()),
    }
}

fn cursor_key(source: &LogSource) -> String {
    format!("tail:{}", source.path.display())
}

/// A log opened and positioned, ready to follow.
pub struct OpenLog {
    source: LogSource,
    format: LogFormat,
    tailer: Option<Tailer>,
    resumed: bool,
}

/// Opens every source now (reading its stored position), so that lines written after the
/// service said it was listening are never taken for old history.
pub fn open_all(app_store: &tollgate_store::Journal, sources: &[LogSource]) -> Vec<OpenLog> {
    let mut logs = Vec::new();
    for source in sources.iter().cloned() {
        let format = match format_of(&source) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(path = %source.path.display(), error = %e, "log source not tailed");
                continue;
            }
        };
        let key = cursor_key(&source);
        let saved: Option<TailPosition> = app_store
            .with_store(move |store| store.cursor(&key))
            .ok()
            .and_then(Result::ok)
            .flatten()
            .and_then(|text| serde_json::from_str(&text).ok());
        let tailer = match Tailer::with_options(&source.path, saved, options_of(&source)) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!(path = %source.path.display(), error = %e, "cannot open the log; will retry");
                None
            }
        };
        logs.push(OpenLog {
            source,
            format,
            tailer,
            resumed: saved.is_some(),
        });
    }
    logs
}

fn options_of(source: &LogSource) -> TailOptions {
    TailOptions {
        start_at: if source.from_beginning {
            StartAt::Beginning
        } else {
            StartAt::End
        },
        ..TailOptions::default()
    }
}

/// Starts one tailing thread per opened log; they stop when `stop` is set.
pub fn start(app: Arc<App>, logs: Vec<OpenLog>, stop: Arc<AtomicBool>) -> Vec<JoinHandle<()>> {
    let mut threads = Vec::new();
    for log in logs {
        let (app, stop) = (app.clone(), stop.clone());
        let spawned = std::thread::Builder::new()
            .name("tollgate-tail".into())
            .spawn(move || follow(&app, log, &stop));
        match spawned {
            Ok(handle) => threads.push(handle),
            Err(e) => tracing::error!(error = %e, "cannot start a log tailing thread"),
        }
    }
    threads
}

fn follow(app: &App, log: OpenLog, stop: &AtomicBool) {
    let OpenLog {
        source,
        format,
        tailer,
        resumed,
    } = log;
    let key = cursor_key(&source);
    let mut tailer = match tailer {
        Some(t) => t,
        None => loop {
            for _ in 0..50 {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            match Tailer::with_options(&source.path, None, options_of(&source)) {
                Ok(t) => break t,
                Err(e) => {
                    tracing::error!(path = %source.path.display(), error = %e, "cannot open the log; retrying")
                }
            }
        },
    };
    tracing::info!(path = %source.path.display(), format = %source.format, resumed, "tailing log");
    let mut saved_position = tailer.position();
    let mut last_save = Instant::now();
    let mut last_error: Option<String> = None;
    while !stop.load(Ordering::Relaxed) {
        let ctx = TimeContext::live(source.time_zone, Utc::now());
        let mut events = Vec::new();
        match tailer.read_with(|line| {
            if let Some(event) = format.parse_bytes(line, &ctx) {
                events.push(event);
            }
        }) {
            Ok(_) => last_error = None,
            Err(e) => {
                let text = e.to_string();
                if last_error.as_ref() != Some(&text) {
                    tracing::warn!(path = %source.path.display(), error = %text, "reading the log failed");
                }
                last_error = Some(text);
            }
        }
        if !events.is_empty() {
            if let Err(e) = app.judge_blocking(events) {
                tracing::error!(error = %e, "could not record the log's events");
            }
        }
        let position = tailer.position();
        if position != saved_position && last_save.elapsed() >= SAVE_POSITION {
            if let Ok(value) = serde_json::to_string(&position) {
                // Not awaited: a position saved late only re-reads a few lines.
                drop(app.commit(vec![Change::SetCursor {
                    key: key.clone(),
                    value,
                }]));
                saved_position = position;
                last_save = Instant::now();
            }
        }
        std::thread::sleep(POLL);
    }
    if let Ok(value) = serde_json::to_string(&tailer.position()) {
        drop(app.commit(vec![Change::SetCursor { key, value }]));
    }
}
