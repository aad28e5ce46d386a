//! The intrusion guard's HTTP API: registration events (one or a batch), per-address
//! request counts, and the ban list (JSON or plain text for proxies that poll it).

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use ipnet::IpNet;
use serde::Deserialize;
use serde_json::{json, Value};
use tollgate_config::Scope;
use tollgate_core::guard::RegistrationVerdict;
use tollgate_core::guard_event::{AuthEvent, AuthOutcome};

use crate::app::App;
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::routes::{durable, Auth};

/// Most events or counts in one batch.
const MAX_BATCH: usize = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationBody {
    ip: String,
    port: Option<u16>,
    transport: Option<String>,
    /// The extension or user name tried.
    user: Option<String>,
    user_agent: Option<String>,
    outcome: AuthOutcome,
    reason: Option<String>,
    at: Option<DateTime<Utc>>,
}

fn bounded(text: Option<String>, field: &str, max: usize) -> Result<Option<String>, ApiError> {
    match text {
        Some(t) if t.len() > max => {
            Err(ApiError::invalid(field, format!("longer than {max} bytes")))
        }
        other => Ok(other),
    }
}

fn parse_ip(text: &str, field: &str) -> Result<IpAddr, ApiError> {
    text.trim()
        .parse::<IpAddr>()
        .map(|ip| ip.to_canonical())
        .map_err(|_| ApiError::invalid(field, format!("{text:?} is not an IPv4 or IPv6 address")))
}

impl RegistrationBody {
    fn into_event(self, field_prefix: &str) -> Result<AuthEvent, ApiError> {
        let field = |name: &str| format!("{field_prefix}{name}");
        let transport =
            bounded(self.transport, &field("transport"), 16)?.map(|t| t.to_ascii_lowercase());
        if let Some(t) = &transport {
            if !matches!(t.as_str(), "udp" | "tcp" | "tls" | "ws" | "wss" | "sctp") {
                return Err(ApiError::invalid(
                    field("transport"),
                    format!("{t:?} must be udp, tcp, tls, ws, wss or sctp"),
                ));
            }
        }
        Ok(AuthEvent {
            at: self.at,
            ip: parse_ip(&self.ip, &field("ip"))?,
            port: self.port,
            transport,
            user: bounded(self.user, &field("user"), 256)?,
            user_agent: bounded(self.user_agent, &field("user_agent"), 512)?,
            outcome: self.outcome,
            reason: bounded(self.reason, &field("reason"), 512)?.unwrap_or_default(),
        })
    }
}

/// Runs events through the guard; returns the verdicts once their bans are durable.
async fn judge(app: &App, events: Vec<AuthEvent>) -> Result<Vec<RegistrationVerdict>, ApiError> {
    let (verdicts, rx) = app.judge(&events);
    durable(app, rx).await?;
    Ok(verdicts)
}

fn require_guard(app: &App) -> Result<(), ApiError> {
    if app.guard_enabled {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "guard_disabled",
            "the intrusion guard is off in this policy ([guard] enabled = false)",
        ))
    }
}

pub async fn registration(
    State(app): State<Arc<App>>,
    auth: Auth,
    ApiJson(body): ApiJson<RegistrationBody>,
) -> Result<Json<RegistrationVerdict>, ApiError> {
    auth.require(Scope::Calls)?;
    require_guard(&app)?;
    let event = body.into_event("")?;
    let mut verdicts = judge(&app, vec![event]).await?;
    verdicts
        .pop()
        .map(Json)
        .ok_or_else(|| ApiError::internal("guard", "no verdict"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationBatch {
    events: Vec<RegistrationBody>,
}

pub async fn registrations(
    State(app): State<Arc<App>>,
    auth: Auth,
    ApiJson(body): ApiJson<RegistrationBatch>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Calls)?;
    require_guard(&app)?;
    if body.events.len() > MAX_BATCH {
        return Err(ApiError::invalid(
            "events",
            format!("at most {MAX_BATCH} events per batch"),
        ));
    }
    let events = body
        .events
        .into_iter()
        .enumerate()
        .map(|(i, e)| e.into_event(&format!("events[{i}].")))
        .collect::<Result<Vec<_>, _>>()?;
    let verdicts = judge(&app, events).await?;
    Ok(Json(json!({ "results": verdicts })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestCount {
    ip: String,
    count: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestCounts {
    counts: Vec<RequestCount>,
}

pub async fn requests(
    State(app): State<Arc<App>>,
    auth: Auth,
    ApiJson(body): ApiJson<RequestCounts>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Calls)?;
    require_guard(&app)?;
    if body.counts.len() > MAX_BATCH {
        return Err(ApiError::invalid(
            "counts",
            format!("at most {MAX_BATCH} counts per batch"),
        ));
    }
    let counts = body
        .counts
        .iter()
        .enumerate()
        .map(|(i, c)| {
            Ok((
                parse_ip(&c.ip, &format!("counts[{i}].ip"))?,
                c.count.min(1_000_000_000),
            ))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let now = Utc::now();
    let (bans, rx) = {
        let mut guard = app.guard();
        let actions = guard.on_request_counts(&counts, now);
        let bans: Vec<Value> = actions
            .iter()
            .filter_map(|a| match a {
                tollgate_core::guard::GuardAction::Ban(b) => serde_json::to_value(b).ok(),
                tollgate_core::guard::GuardAction::Unban { .. } => None,
            })
            .collect();
        (bans, app.carry_out(&actions, now))
    };
    durable(&app, rx).await?;
    Ok(Json(json!({ "bans": bans })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BansQuery {
    format: Option<String>,
}

/// Bans in force: JSON, or one network per line (`?format=text` or `Accept: text/plain`)
/// for a Kamailio or OpenSIPS that polls it.
pub async fn list_bans(
    State(app): State<Arc<App>>,
    auth: Auth,
    headers: HeaderMap,
    Query(query): Query<BansQuery>,
) -> Result<Response, ApiError> {
    auth.require(Scope::Read)
        .or_else(|_| auth.require(Scope::Calls))?;
    let now = Utc::now();
    let mut bans: Vec<tollgate_core::guard::Ban> = {
        let guard = app.guard();
        guard
            .bans()
            .filter(|b| b.expires_at.is_none_or(|at| at > now))
            .cloned()
            .collect()
    };
    bans.sort_by_key(|b| b.target);
    let text = match query.format.as_deref() {
        Some("text") => true,
        Some("json") | None => headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/plain")),
        Some(other) => {
            return Err(ApiError::invalid(
                "format",
                format!("{other:?} must be \"json\" or \"text\""),
            ))
        }
    };
    if text {
        let mut body = String::with_capacity(bans.len() * 20);
        for ban in &bans {
            body.push_str(&ban.target.to_string());
            body.push('\n');
        }
        return Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response());
    }
    Ok(Json(json!({ "bans": bans })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManualBan {
    target: String,
    /// Seconds; absent: until lifted.
    duration_s: Option<u64>,
    reason: Option<String>,
}

fn parse_target(text: &str, field: &str) -> Result<IpNet, ApiError> {
    text.trim()
        .parse::<IpNet>()
        .or_else(|_| {
            text.trim()
                .parse::<IpAddr>()
                .map(|ip| IpNet::from(ip.to_canonical()))
        })
        .map(|n| n.trunc())
        .map_err(|_| ApiError::invalid(field, format!("{text:?} is not an IP address or CIDR")))
}

pub async fn add_ban(
    State(app): State<Arc<App>>,
    auth: Auth,
    ApiJson(body): ApiJson<ManualBan>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    auth.require(Scope::Admin)?;
    require_guard(&app)?;
    let target = parse_target(&body.target, "target")?;
    if body.duration_s == Some(0) {
        return Err(ApiError::invalid(
            "duration_s",
            "must be at least 1 (leave it out for a ban until lifted)",
        ));
    }
    let reason = bounded(body.reason, "reason", 512)?.unwrap_or_default();
    let now = Utc::now();
    let (ban, rx) = {
        let mut guard = app.guard();
        let ban = guard
            .ban_manual(target, body.duration_s, &reason, now)
            .map_err(|e| ApiError::new(StatusCode::CONFLICT, "allowlisted", e))?;
        let actions = [tollgate_core::guard::GuardAction::Ban(ban.clone())];
        (ban, app.carry_out(&actions, now))
    };
    durable(&app, rx).await?;
    Ok((StatusCode::CREATED, Json(json!({ "ban": ban }))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetQuery {
    target: String,
}

pub async fn delete_ban(
    State(app): State<Arc<App>>,
    auth: Auth,
    Query(query): Query<TargetQuery>,
) -> Result<StatusCode, ApiError> {
    auth.require(Scope::Admin)?;
    require_guard(&app)?;
    let target = parse_target(&query.target, "target")?;
    let now = Utc::now();
    let rx = {
        let mut guard = app.guard();
        if guard.unban(target).is_none() {
            return Err(ApiError::not_found(
                "not_found",
                format!("{target} is not banned"),
            ));
        }
        let actions = [tollgate_core::guard::GuardAction::Unban {
            target,
            reason: "lifted by hand".into(),
        }];
        app.carry_out(&actions, now)
    };
    durable(&app, rx).await?;
    Ok(StatusCode::NO_CONTENT)
}
