//! The shadow-mode terminator: logs the call it would end, and through which PBX adapters,
//! and ends nothing. `end_call` always answers [`Ended::Ended`] so that the caller's path is
//! the one a real hangup takes.

use crate::error::HangupError;
use crate::{CallHandle, CallTerminator, Ended};

/// Logs instead of ending calls.
#[derive(Debug, Clone, Default)]
pub struct DryRun {
    /// The adapters that would have been asked (for the log line).
    would_use: Vec<String>,
}

impl DryRun {
    /// A dry run standing in for the adapters named in `would_use`.
    pub fn new(would_use: Vec<String>) -> Self {
        DryRun { would_use }
    }
}

impl CallTerminator for DryRun {
    fn name(&self) -> &str {
        "dry_run"
    }

    fn end_call(&self, call: &CallHandle, reason: &str) -> Result<Ended, HangupError> {
        tracing::warn!(
            call_id = %call.call_id,
            pbx_ref = call.pbx_ref.as_deref().unwrap_or(""),
            would_use = ?self.would_use,
            reason,
            "dry run: would end the call"
        );
        Ok(Ended::Ended)
    }
}
