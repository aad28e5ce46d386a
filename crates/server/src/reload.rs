//! Changing a running service's policy: `SIGHUP` and `POST /v1/admin/reload`.
//!
//! The new file is parsed and validated first; if it is invalid the old policy stays and
//! the error names the file, line and key. If it is valid it replaces the old one in one
//! step under the engine lock. The ledger is not touched: calls in progress keep their
//! reservations and are settled at the rate they were granted (each call carries it).
//! Monitoring keeps its incidents, suspensions and learned baselines; its windows are kept
//! when the `[monitor]` rules did not change. What is read only at start (`[server]`,
//! tokens, `[guard]`, `[firewall]`, `[alerts]`, `[hangup]`, `[agi]`) needs a restart.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use serde_json::{json, Value};
use tollgate_config::{Loaded, Scope};
use tollgate_core::monitor::Monitor;

use crate::app::App;
use crate::error::ApiError;
use crate::routes::Auth;

/// What a reload changed, for the log and the API answer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadSummary {
    pub accounts: usize,
    pub extensions: usize,
    pub monitor_rules_changed: bool,
}

impl App {
    /// Re-reads the policy file the service started from (the embedded example when it
    /// started without one) and applies it; the error names every problem.
    pub async fn reload_from_source(&self) -> Result<ReloadSummary, ReloadError> {
        let loaded = match self.policy_path() {
            Some(path) => tollgate_config::load_file(&path),
            None => tollgate_config::load_default(),
        }
        .map_err(|e| ReloadError::Invalid(e.to_string()))?;
        self.reload(loaded).await
    }

    fn policy_path(&self) -> Option<PathBuf> {
        self.policy_path
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The file `reload_from_source` reads.
    pub fn set_policy_path(&self, path: Option<PathBuf>) {
        *self.policy_path.lock().unwrap_or_else(|p| p.into_inner()) = path;
    }

    /// Applies an already validated policy.
    pub async fn reload(&self, loaded: Loaded) -> Result<ReloadSummary, ReloadError> {
        let Loaded {
            mut policy,
            raw_accounts,
            raw_extensions,
            ..
        } = loaded;
        // Entries created through the API, and suspensions, come from the store as at start.
        let stored = self
            .read_store(|store| store.load_entities())
            .await
            .map_err(|e| ReloadError::Store(e.to_string()))?;
        let changes =
            crate::app::merge_directory(&mut policy, &raw_accounts, &raw_extensions, stored);
        let now = Utc::now();
        let (summary, rx) = {
            let mut engine = self.engine();
            let monitor_rules_changed = engine.policy.monitor != policy.monitor;
            if monitor_rules_changed {
                let old = &mut engine.monitor;
                let baselines = old.all_baseline_snapshots();
                let open = old.open_alerts();
                let suspensions = old.suspensions();
                let next_id = old.next_alert_id();
                let mut fresh = Monitor::new(policy.monitor.clone(), &policy.schedules);
                fresh.restore_baselines(baselines);
                fresh.restore(open, suspensions, next_id, now);
                // Alerts of rules that are gone were closed by `restore`: stored below.
                engine.monitor = fresh;
            }
            engine.policy = policy;
            let mut changes = changes;
            let follow = self.monitor_changes(&mut engine, &mut changes);
            drop(follow);
            let summary = ReloadSummary {
                accounts: engine.policy.accounts.len(),
                extensions: engine.policy.extensions.len(),
                monitor_rules_changed,
            };
            (summary, self.commit(changes))
        };
        match rx.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(ReloadError::Store(e.to_string())),
            Err(_) => return Err(ReloadError::Store("journal closed".into())),
        }
        tracing::info!(
            accounts = summary.accounts,
            extensions = summary.extensions,
            monitor_rules_changed = summary.monitor_rules_changed,
            "policy reloaded"
        );
        Ok(summary)
    }
}

/// Why a reload did not happen; the old policy stays in force.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the new policy is invalid; the old one stays in force:\n{0}")]
    Invalid(String),
    #[error("could not read or write the store; the old policy stays in force: {0}")]
    Store(String),
}

/// `POST /v1/admin/reload` (admin scope).
pub async fn reload_route(
    State(app): State<Arc<App>>,
    auth: Auth,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Admin)?;
    match app.reload_from_source().await {
        Ok(summary) => Ok(Json(json!({ "reloaded": true, "summary": summary }))),
        Err(ReloadError::Invalid(problems)) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_policy",
            format!("the new policy is invalid; the old one stays in force: {problems}"),
        )),
        Err(e @ ReloadError::Store(_)) => Err(ApiError::internal("reload", e)),
    }
}
