//! The service side of call-pattern monitoring: stores what the monitor decided (alerts,
//! suspensions) in the same journal batch as the decision that caused it, then carries out
//! the rest off the call path: bans through the intrusion guard, and notifications to the
//! configured channels (which never block: see `tollgate-notify`). Also the routes:
//! `/v1/alerts` (list, get, acknowledge) and `/v1/suspensions` (list, lift).

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use tollgate_core::monitor::{Alert, AlertEvent, MonitorEffect, MonitorSubject};
use tollgate_core::Engine;
use tollgate_store::{AlertQuery, Change, EntityKind};

use crate::app::App;
use crate::error::ApiError;
use crate::json::OptionalJson;
use crate::routes::{durable, Auth};
use tollgate_config::Scope;

/// What is carried out once the store has the monitor's decisions.
#[derive(Debug, Default)]
#[must_use = "carry it out with App::follow_up once the engine lock is released"]
pub struct FollowUp {
    alerts: Vec<(Alert, AlertEvent)>,
    bans: Vec<(IpAddr, Option<u64>, String)>,
    kills: Vec<crate::killswitch::KillOrder>,
}

impl FollowUp {
    pub fn is_empty(&self) -> bool {
        self.alerts.is_empty() && self.bans.is_empty() && self.kills.is_empty()
    }
}

/// A ban asked for without `action_for` lasts this long.
const DEFAULT_BAN_S: u64 = 3600;

impl App {
    /// Drains the monitor's effects into `changes` (to commit with the engine lock held)
    /// and returns what to carry out after.
    pub fn monitor_changes(&self, engine: &mut Engine, changes: &mut Vec<Change>) -> FollowUp {
        let mut follow = FollowUp::default();
        for effect in engine.monitor.drain_effects() {
            match effect {
                MonitorEffect::Alert { alert, event } => {
                    self.metrics
                        .alerts
                        .get_or_create(&crate::metrics::AlertLabels {
                            event: event_name(event),
                            severity: alert.severity.as_str(),
                        })
                        .inc();
                    changes.push(Change::UpsertAlert(alert.clone()));
                    follow.alerts.push((alert, event));
                }
                MonitorEffect::Suspended(s) => {
                    tracing::warn!(subject = %s.subject, rule = %s.rule, until = ?s.until, "suspended by a monitoring rule");
                    if let Some(subject) = crate::killswitch::ledger_subject(&s.subject) {
                        follow.kills.push(crate::killswitch::KillOrder::for_subject(
                            engine,
                            &subject,
                            format!("{} suspended by {}", s.subject, s.rule),
                        ));
                    }
                    changes.push(Change::Suspend(s));
                }
                MonitorEffect::Lifted(s) => {
                    tracing::info!(subject = %s.subject, rule = %s.rule, "monitor suspension ended");
                    changes.push(Change::LiftSuspension {
                        subject: s.subject,
                        at: Utc::now(),
                        by: "expired".into(),
                    });
                }
                MonitorEffect::BanIp {
                    ip,
                    for_s,
                    rule,
                    alert_id,
                } => follow
                    .bans
                    .push((ip, for_s, format!("{rule} (alert {alert_id})"))),
            }
        }
        follow
    }

    /// Sends notifications and asks the guard for bans. Call without the engine lock.
    pub fn follow_up(&self, follow: FollowUp) {
        for order in follow.kills {
            self.end_calls(order);
        }
        for (alert, event) in follow.alerts {
            if event != AlertEvent::Updated {
                self.notifier.notify(notification(&alert, event));
            }
        }
        if follow.bans.is_empty() {
            return;
        }
        let now = Utc::now();
        let mut guard = self.guard();
        let mut actions = Vec::new();
        for (ip, for_s, reason) in follow.bans {
            match guard.ban_manual(
                ipnet::IpNet::from(ip),
                Some(for_s.unwrap_or(DEFAULT_BAN_S)),
                &reason,
                now,
            ) {
                Ok(ban) => actions.push(tollgate_core::guard::GuardAction::Ban(ban)),
                Err(e) => {
                    tracing::warn!(%ip, error = %e, "monitoring rule asked for a ban that the guard refused")
                }
            }
        }
        // Durability of a monitor-requested ban is not awaited by any caller: the alert
        // that asked for it is already stored, and the ban is enforced at once.
        drop(self.carry_out(&actions, now));
    }

    /// Lets the monitor close alerts and lift timed suspensions; commits what it decided.
    pub async fn monitor_tick(&self, now: DateTime<Utc>) {
        let (rx, follow) = {
            let mut engine = self.engine();
            engine.tick(now);
            let mut changes = Vec::new();
            let follow = self.monitor_changes(&mut engine, &mut changes);
            if changes.is_empty() {
                return;
            }
            (self.commit(changes), follow)
        };
        match rx.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "could not record monitoring changes"),
            Err(_) => tracing::error!("could not record monitoring changes: journal closed"),
        }
        self.follow_up(follow);
    }
}

impl App {
    /// Writes the learned baselines that changed since the last call, and waits until
    /// they are durable. Run every few minutes and at shutdown.
    pub async fn save_baselines(&self) {
        let (rx, count) = {
            let mut engine = self.engine();
            let snapshots = engine.monitor.take_baseline_snapshots();
            if snapshots.is_empty() {
                return;
            }
            let count = snapshots.len();
            let changes = snapshots
                .into_iter()
                .map(|(rule, subject, data)| Change::SaveBaseline {
                    rule,
                    subject,
                    data,
                })
                .collect();
            (self.commit(changes), count)
        };
        match rx.await {
            Ok(Ok(())) => tracing::debug!(count, "learned baselines saved"),
            Ok(Err(e)) => tracing::error!(error = %e, "could not save learned baselines"),
            Err(_) => tracing::error!("could not save learned baselines: journal closed"),
        }
    }
}

fn event_name(event: AlertEvent) -> &'static str {
    match event {
        AlertEvent::Opened => "opened",
        AlertEvent::Escalated => "escalated",
        AlertEvent::Updated => "updated",
        AlertEvent::Closed => "closed",
        AlertEvent::Acknowledged => "acknowledged",
    }
}

/// An alert as the channels carry it.
pub fn notification(alert: &Alert, event: AlertEvent) -> tollgate_notify::Notification {
    use tollgate_notify::{AlertEvent as E, AlertSeverity as S};
    tollgate_notify::Notification {
        alert_id: format!("a-{:06}", alert.id),
        event: match event {
            AlertEvent::Opened => E::Opened,
            AlertEvent::Escalated => E::Escalated,
            AlertEvent::Updated => E::Updated,
            AlertEvent::Closed => E::Closed,
            AlertEvent::Acknowledged => E::Acknowledged,
        },
        severity: match alert.severity {
            tollgate_core::monitor::Severity::Warning => S::Warning,
            tollgate_core::monitor::Severity::Critical => S::Critical,
        },
        rule: alert.rule.clone(),
        subject: alert.subject.to_string(),
        summary: alert.summary.clone(),
        figures: json!({
            "metric": alert.metric,
            "profile": alert.profile,
            "value": alert.value,
            "peak": alert.peak,
            "warning_at": alert.warning_at,
            "critical_at": alert.critical_at,
            "window_s": alert.window_s,
            "expected": alert.expected,
            "opened_at": alert.opened_at,
            "acknowledged_by": alert.acknowledged_by,
        }),
        action: (!alert.actions.is_empty()).then(|| alert.actions.join("; ")),
        at: alert.updated_at,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertListQuery {
    /// "open" (default) or "all".
    state: Option<String>,
    before: Option<u64>,
    limit: Option<usize>,
}

/// `GET /v1/alerts?state=open|all&before=ID&limit=N`: newest first.
pub async fn list_alerts(
    State(app): State<Arc<App>>,
    auth: Auth,
    Query(query): Query<AlertListQuery>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    let open_only = match query.state.as_deref() {
        None | Some("open") => true,
        Some("all") => false,
        Some(other) => {
            return Err(ApiError::invalid(
                "state",
                format!("{other:?} must be \"open\" or \"all\""),
            ))
        }
    };
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > 1000 {
        return Err(ApiError::invalid("limit", "must be 1 to 1000"));
    }
    let q = AlertQuery {
        open_only,
        before_id: query.before,
        limit,
    };
    let alerts = app
        .read_store(move |store| store.alerts(&q))
        .await
        .map_err(|e| ApiError::internal("read alerts", e))?;
    let next = (alerts.len() == limit)
        .then(|| alerts.last().map(|a| a.id))
        .flatten();
    Ok(Json(json!({ "alerts": alerts, "next_before": next })))
}

/// `GET /v1/alerts/{id}`.
pub async fn get_alert(
    State(app): State<Arc<App>>,
    auth: Auth,
    Path(id): Path<u64>,
) -> Result<Json<Alert>, ApiError> {
    auth.require(Scope::Read)?;
    app.read_store(move |store| store.alert(id))
        .await
        .map_err(|e| ApiError::internal("read alert", e))?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("not_found", format!("no alert {id}")))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AckBody {
    /// Who acknowledges (shown in the alert); default "admin".
    by: Option<String>,
}

/// `POST /v1/alerts/{id}/ack`: marks an open alert as seen by a person.
pub async fn ack_alert(
    State(app): State<Arc<App>>,
    auth: Auth,
    Path(id): Path<u64>,
    OptionalJson(body): OptionalJson<AckBody>,
) -> Result<Json<Alert>, ApiError> {
    auth.require(Scope::Admin)?;
    let by = body.by.unwrap_or_else(|| "admin".into());
    if by.is_empty() || by.len() > 128 || by.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "by",
            "must be 1 to 128 printable characters",
        ));
    }
    let now = Utc::now();
    let acked = {
        let mut engine = app.engine();
        engine.monitor.acknowledge(id, &by, now).map(|alert| {
            let mut changes = Vec::new();
            let follow = app.monitor_changes(&mut engine, &mut changes);
            (alert, app.commit(changes), follow)
        })
    };
    let Some((alert, rx, follow)) = acked else {
        let stored = app
            .read_store(move |store| store.alert(id))
            .await
            .map_err(|e| ApiError::internal("read alert", e))?;
        return Err(match stored {
            Some(_) => ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "alert_closed",
                format!("alert {id} is closed: there is nothing to acknowledge"),
            ),
            None => ApiError::not_found("not_found", format!("no alert {id}")),
        });
    };
    durable(&app, rx).await?;
    app.follow_up(follow);
    Ok(Json(alert))
}

/// `GET /v1/suspensions`: rule-decided suspensions and those set by hand.
pub async fn list_suspensions(
    State(app): State<Arc<App>>,
    auth: Auth,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    let engine = app.engine();
    let now = Utc::now();
    let mut out: Vec<Value> = engine
        .monitor
        .suspensions()
        .into_iter()
        .filter(|s| s.until.is_none_or(|u| u > now))
        .map(|s| {
            let mut v = serde_json::to_value(&s).unwrap_or(Value::Null);
            if let Some(o) = v.as_object_mut() {
                o.insert("by".into(), json!("rule"));
            }
            v
        })
        .collect();
    let mut manual: Vec<(String, &'static str)> = engine
        .policy
        .extensions
        .values()
        .filter(|e| e.suspended)
        .map(|e| (e.id.clone(), "extension"))
        .chain(
            engine
                .policy
                .accounts
                .values()
                .filter(|a| a.suspended)
                .map(|a| (a.id.clone(), "account")),
        )
        .collect();
    manual.sort();
    for (id, kind) in manual {
        out.push(json!({ "subject": format!("{kind} {id}"), "by": "hand", "until": null }));
    }
    Ok(Json(json!({ "suspensions": out })))
}

/// `POST /v1/suspensions/{kind}/{id}/lift`: ends every suspension of the subject, the
/// rule-decided one and the one set by hand.
pub async fn lift_suspension(
    State(app): State<Arc<App>>,
    auth: Auth,
    Path((kind, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Admin)?;
    let (subject, entity) = match kind.as_str() {
        "extension" => (MonitorSubject::Extension(id.clone()), EntityKind::Extension),
        "account" => (MonitorSubject::Account(id.clone()), EntityKind::Account),
        other => {
            return Err(ApiError::invalid(
                "kind",
                format!("{other:?} must be \"extension\" or \"account\""),
            ))
        }
    };
    let now = Utc::now();
    let (lifted_rule, lifted_hand, rx) = {
        let mut engine = app.engine();
        let exists = match entity {
            EntityKind::Extension => engine.policy.extensions.contains_key(&id),
            EntityKind::Account => engine.policy.accounts.contains_key(&id),
        };
        if !exists {
            return Err(ApiError::not_found(
                "not_found",
                format!("{kind} {id:?} does not exist"),
            ));
        }
        let lifted_rule = engine.monitor.lift(&subject);
        let flag = match entity {
            EntityKind::Extension => engine
                .policy
                .extensions
                .get_mut(&id)
                .map(|e| &mut e.suspended),
            EntityKind::Account => engine
                .policy
                .accounts
                .get_mut(&id)
                .map(|a| &mut a.suspended),
        };
        let lifted_hand = flag.is_some_and(|f| std::mem::replace(f, false));
        let mut changes = Vec::new();
        if lifted_rule.is_some() {
            changes.push(Change::LiftSuspension {
                subject: subject.clone(),
                at: now,
                by: "admin".into(),
            });
        }
        if lifted_hand {
            changes.push(Change::SetSuspended {
                kind: entity,
                id: id.clone(),
                suspended: false,
            });
        }
        (lifted_rule, lifted_hand, app.commit(changes))
    };
    durable(&app, rx).await?;
    if lifted_rule.is_none() && !lifted_hand {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "not_suspended",
            format!("{subject} is not suspended"),
        ));
    }
    tracing::info!(%subject, "suspension lifted by hand");
    Ok(Json(json!({
        "subject": subject,
        "lifted_rule_suspension": lifted_rule,
        "lifted_manual_suspension": lifted_hand,
    })))
}
