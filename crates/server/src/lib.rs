//! # tollgate-server
//!
//! The HTTP service around the decision core: the axum router ([`routes`]), bearer-token
//! auth with scopes ([`auth`]), hostile-input JSON bodies ([`json`]), the one error type
//! ([`error`]), metrics ([`metrics`]), and start-up and state ([`app`]).
//!
//! [`serve`] takes an already bound listener, so tests bind port 0, and a shutdown future;
//! it also runs the expiry task that settles calls whose `end` never came.

pub mod agi;
pub mod app;
pub mod auth;
pub mod error;
pub mod guard;
pub mod guard_routes;
pub mod json;
pub mod killswitch;
pub mod metrics;
pub mod monitor;
pub mod reload;
pub mod routes;
pub mod shadow;
pub mod tail;

use std::future::Future;
use std::sync::Arc;

use chrono::Utc;
use tokio::net::TcpListener;

pub use app::{App, StartError};
pub use routes::router;

/// How often monitoring closes alerts whose condition ended and lifts timed suspensions.
const MONITOR_TICK: std::time::Duration = std::time::Duration::from_secs(5);

/// How often learned baselines that changed are written (and once more at shutdown).
const BASELINE_SAVE: std::time::Duration = std::time::Duration::from_secs(600);

/// How often the firewall is made to match the guard's bans.
const FIREWALL_RESYNC: std::time::Duration = std::time::Duration::from_secs(3600);

/// Serves the API on `listener` until `shutdown` resolves, then drains requests in flight
/// and waits until every acknowledged change is durable.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_agi(listener, None, app, shutdown).await
}

/// [`serve`], and the FastAGI server on `agi` (bound by the caller from `[agi] listen`).
pub async fn serve_with_agi(
    listener: TcpListener,
    agi: Option<TcpListener>,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let stop_tailers = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let logs = std::mem::take(&mut *app.open_logs.lock().unwrap_or_else(|p| p.into_inner()));
    let tailers = tail::start(app.clone(), logs, stop_tailers.clone());
    let expiry_app = app.clone();
    let expiry = tokio::spawn(async move {
        // The firewall is brought back in step with the guard's bans every so often: a
        // backend that caps timeouts (ipset: 24.8 days) is re-armed, and an element
        // removed by hand is put back.
        let mut last_sync = std::time::Instant::now();
        loop {
            if last_sync.elapsed() >= FIREWALL_RESYNC {
                if let Some(worker) = &expiry_app.firewall {
                    let bans = expiry_app.guard().bans().map(guard::entry_of).collect();
                    worker.sync(bans);
                }
                last_sync = std::time::Instant::now();
            }
            let wait = routes::next_expiry_wait(&expiry_app);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop_rx.changed() => return,
            }
            if let Err(e) = expiry_app.expire_bans(Utc::now()).await {
                tracing::error!(error = %e, "could not record expired bans");
            }
            match expiry_app.expire_now(Utc::now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    calls = n,
                    "settled calls whose end never came at their granted amount"
                ),
                Err(e) => tracing::error!(error = %e, "could not record expired calls"),
            }
        }
    });
    let monitor_app = app.clone();
    let mut monitor_stop = stop_tx.subscribe();
    let monitor = tokio::spawn(async move {
        let idle = {
            let engine = monitor_app.engine();
            engine.monitor.settings().is_empty()
                && engine.monitor.suspensions().is_empty()
                && engine.monitor.open_alerts().is_empty()
        };
        if idle {
            return;
        }
        let mut last_save = std::time::Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(MONITOR_TICK) => {}
                _ = monitor_stop.changed() => {
                    monitor_app.save_baselines().await;
                    return;
                }
            }
            monitor_app.monitor_tick(Utc::now()).await;
            if last_save.elapsed() >= BASELINE_SAVE {
                monitor_app.save_baselines().await;
                last_save = std::time::Instant::now();
            }
        }
    });
    let agi_task = match (agi, app.agi.clone()) {
        (Some(agi_listener), Some(settings)) => {
            let handler = Arc::new(agi::EngineAgi { app: app.clone() });
            let mut agi_stop = stop_tx.subscribe();
            Some(tokio::spawn(async move {
                let stopped = async move {
                    let _ = agi_stop.changed().await;
                };
                match tollgate_agi::serve(agi_listener, handler, settings, stopped).await {
                    Ok(summary) => tracing::info!(?summary, "FastAGI server stopped"),
                    Err(e) => tracing::error!(error = %e, "FastAGI server could not run"),
                }
            }))
        }
        _ => None,
    };
    let result = axum::serve(listener, router(app.clone()))
        .with_graceful_shutdown(shutdown)
        .await;
    let _ = stop_tx.send(true);
    let _ = expiry.await;
    let _ = monitor.await;
    if let Some(task) = agi_task {
        let _ = task.await;
    }
    stop_tailers.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || {
        for tailer in tailers {
            let _ = tailer.join();
        }
    })
    .await;
    let flush_app = app.clone();
    let _ = tokio::task::spawn_blocking(move || {
        let _ = flush_app.journal.flush();
        if let Some(worker) = &flush_app.firewall {
            worker.flush();
        }
    })
    .await;
    result
}
