//! The HTTP API under `/v1`, plus `/healthz` and `/metrics`. Handlers translate JSON to
//! engine calls and back; they never decide anything themselves.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tollgate_config::raw::{RawAccount, RawExtension};
use tollgate_config::validate::{account_from_raw, extension_from_raw, Problem};
use tollgate_config::Scope;
use tollgate_core::engine::{AuthorizeRequest, Decision};
use tollgate_core::ledger::{ActiveCall, SubjectKind};
use tollgate_core::monitor::{DirectoryChange, MonitorSubject};
use tollgate_core::policy::{DirectoryError, Origin};
use tollgate_core::{Engine, Money};
use tollgate_store::{Change, EntityKind, StoreError, StoredEntity};

use crate::app::App;
use crate::auth::{authenticate, Caller};
use crate::error::ApiError;
use crate::json::{ApiJson, OptionalJson};
use crate::metrics::{DecisionLabels, StatusLabels};

/// The OpenAPI document, written by hand and checked against the router by a test.
pub const OPENAPI: &str = include_str!("openapi.json");

/// How far a client's `at` may be from the server clock.
const MAX_CLOCK_SKEW_S: i64 = 300;

/// The authenticated caller of a `/v1` request.
pub struct Auth(pub Caller);

impl FromRequestParts<Arc<App>> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        authenticate(&app.tokens, &parts.headers).map(Auth)
    }
}

impl Auth {
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        self.0.require(scope)
    }

    /// Read access, which the PBX's call-control token also has for calls and credit.
    fn require_read_or_calls(&self) -> Result<(), ApiError> {
        self.0
            .require(Scope::Read)
            .or_else(|_| self.0.require(Scope::Calls))
    }
}

/// The router over a started [`App`].
pub fn router(app: Arc<App>) -> Router {
    let limit = app.settings.max_body_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/calls/authorize", post(authorize))
        .route("/v1/calls/{call_id}", get(get_call))
        .route("/v1/calls/{call_id}/answer", post(answer))
        .route("/v1/calls/{call_id}/extend", post(extend))
        .route("/v1/calls/{call_id}/end", post(end))
        .route("/v1/accounts", get(list_accounts))
        .route(
            "/v1/accounts/{id}",
            get(get_account).put(put_account).delete(delete_account),
        )
        .route(
            "/v1/accounts/{id}/suspend",
            post(change_suspension::<true, true>),
        )
        .route(
            "/v1/accounts/{id}/resume",
            post(change_suspension::<true, false>),
        )
        .route("/v1/extensions", get(list_extensions))
        .route(
            "/v1/extensions/{id}",
            get(get_extension)
                .put(put_extension)
                .delete(delete_extension),
        )
        .route(
            "/v1/extensions/{id}/suspend",
            post(change_suspension::<false, true>),
        )
        .route(
            "/v1/extensions/{id}/resume",
            post(change_suspension::<false, false>),
        )
        .route("/v1/extensions/{id}/credit", get(extension_credit))
        .route("/v1/extensions/{id}/calls", get(extension_calls))
        .route(
            "/v1/events/registration",
            post(crate::guard_routes::registration),
        )
        .route(
            "/v1/events/registrations",
            post(crate::guard_routes::registrations),
        )
        .route("/v1/events/requests", post(crate::guard_routes::requests))
        .route("/v1/admin/reload", post(crate::reload::reload_route))
        .route("/v1/alerts", get(crate::monitor::list_alerts))
        .route("/v1/alerts/{id}", get(crate::monitor::get_alert))
        .route("/v1/alerts/{id}/ack", post(crate::monitor::ack_alert))
        .route("/v1/suspensions", get(crate::monitor::list_suspensions))
        .route(
            "/v1/suspensions/{kind}/{id}/lift",
            post(crate::monitor::lift_suspension),
        )
        .route(
            "/v1/bans",
            get(crate::guard_routes::list_bans)
                .post(crate::guard_routes::add_ban)
                .delete(crate::guard_routes::delete_ban),
        )
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .with_state(app)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no_route", "no such route")
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}

async fn openapi(_auth: Auth) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// The instant of a request: the client's `at` if given and close to our clock.
fn instant(at: Option<DateTime<Utc>>) -> Result<DateTime<Utc>, ApiError> {
    let now = Utc::now();
    match at {
        None => Ok(now),
        Some(at) if (at - now).num_seconds().abs() <= MAX_CLOCK_SKEW_S => Ok(at),
        Some(at) => Err(ApiError::invalid(
            "at",
            format!("{at} is more than {MAX_CLOCK_SKEW_S} s from the server clock ({now}): check the PBX's NTP"),
        )),
    }
}

/// Waits until a committed change is durable; a failed write is a logged 500.
pub(crate) async fn durable(
    app: &App,
    rx: tokio::sync::oneshot::Receiver<Result<(), StoreError>>,
) -> Result<(), ApiError> {
    match rx.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(ApiError::internal("store write failed", e)),
        Err(_) => Err(ApiError::internal("store write failed", StoreError::Closed)),
    }
    .inspect_err(|e| {
        app.metrics
            .api_errors
            .get_or_create(&StatusLabels {
                status: e.status.as_u16(),
            })
            .inc();
    })
}

/// The decision with its call id, serialized straight to the body.
#[derive(Serialize)]
struct AuthorizeAnswer<'a> {
    call_id: &'a str,
    #[serde(flatten)]
    decision: &'a Decision,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthorizeBody {
    call_id: String,
    extension: String,
    source_ip: String,
    number: String,
    at: Option<DateTime<Utc>>,
    /// The PBX's handle to end the call (kill switch), e.g. a Kamailio dialog's
    /// "h_entry:h_id", an Asterisk channel, a FreeSWITCH uuid.
    pbx_ref: Option<String>,
}

/// Authorizes a call: the decision, its reservation and the monitor's effects durable
/// before it returns; counted in the metrics. Shared by the HTTP API and FastAGI.
pub(crate) async fn decide(
    app: &App,
    request: &AuthorizeRequest<'_>,
    now: DateTime<Utc>,
    started: Instant,
) -> Result<Decision, ApiError> {
    let (decision, rx, follow) = {
        let mut engine = app.engine();
        let (mut decision, event) = engine.authorize(request, now)?;
        let mut changes: Vec<Change> = event.map(Change::Ledger).into_iter().collect();
        // Shadow mode: the denial is recorded and counted, the call allowed.
        if let Decision::Deny(deny) = &decision {
            if let Some((grant, call, record)) =
                crate::shadow::shadow_allow(&engine, request, deny, now)
            {
                app.metrics
                    .decisions
                    .get_or_create(&DecisionLabels {
                        decision: "shadow_deny",
                        code: deny.code.as_str(),
                    })
                    .inc();
                app.shadow_calls().insert(request.call_id, call);
                changes.push(Change::RecordShadow(record));
                decision = Decision::Allow(grant);
            }
        }
        let follow = app.monitor_changes(&mut engine, &mut changes);
        let rx = (!changes.is_empty()).then(|| app.commit(changes));
        app.metrics
            .active_calls
            .set(engine.ledger.active_call_count() as i64);
        (decision, rx, follow)
    };
    if let Some(rx) = rx {
        durable(app, rx).await?;
    }
    if !follow.is_empty() {
        app.follow_up(follow);
    }
    let labels = match &decision {
        Decision::Allow(_) => DecisionLabels {
            decision: "allow",
            code: "",
        },
        Decision::Deny(d) => DecisionLabels {
            decision: "deny",
            code: d.code.as_str(),
        },
    };
    app.metrics.decisions.get_or_create(&labels).inc();
    app.metrics
        .authorize_seconds
        .observe(started.elapsed().as_secs_f64());
    Ok(decision)
}

async fn authorize(
    State(app): State<Arc<App>>,
    auth: Auth,
    ApiJson(body): ApiJson<AuthorizeBody>,
) -> Result<Response, ApiError> {
    auth.require(Scope::Calls)?;
    let started = Instant::now();
    let source_ip: IpAddr = body.source_ip.trim().parse().map_err(|_| {
        ApiError::invalid(
            "source_ip",
            format!("{:?} is not an IPv4 or IPv6 address", body.source_ip),
        )
    })?;
    let now = instant(body.at)?;
    let request = AuthorizeRequest {
        call_id: &body.call_id,
        extension: &body.extension,
        source_ip,
        number: &body.number,
        pbx_ref: body.pbx_ref.as_deref(),
    };
    let decision = decide(&app, &request, now, started).await?;
    Ok(Json(AuthorizeAnswer {
        call_id: &body.call_id,
        decision: &decision,
    })
    .into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AtBody {
    at: Option<DateTime<Utc>>,
}

#[derive(Serialize)]
struct CallView {
    call_id: String,
    extension: String,
    destination: String,
    class: String,
    granted_s: u64,
    cap_s: u64,
    reserved: Money,
    authorized_at: DateTime<Utc>,
    answered_at: Option<DateTime<Utc>>,
    expires_at: DateTime<Utc>,
    rate_prefix: Option<String>,
}

impl From<&ActiveCall> for CallView {
    fn from(c: &ActiveCall) -> CallView {
        CallView {
            call_id: c.call_id.clone(),
            extension: c.extension.clone(),
            destination: c.destination.clone(),
            class: c.class.to_string(),
            granted_s: c.granted_s,
            cap_s: c.cap_s,
            reserved: c.reserved,
            authorized_at: c.authorized_at,
            answered_at: c.answered_at,
            expires_at: c.expires_at,
            rate_prefix: c.rate.as_ref().map(|r| format!("+{}", r.prefix)),
        }
    }
}

async fn get_call(
    State(app): State<Arc<App>>,
    auth: Auth,
    Path(call_id): Path<String>,
) -> Result<Json<CallView>, ApiError> {
    auth.require_read_or_calls()?;
    let engine = app.engine();
    engine
        .ledger
        .call(&call_id)
        .map(|c| Json(CallView::from(c)))
        .ok_or_else(|| {
            ApiError::not_found(
                "unknown_call",
                format!("call {call_id:?} is not in progress"),
            )
        })
}

async fn answer(
    State(app): State<Arc<App>>,
    auth: Auth,
    Path(call_id): Path<String>,
    OptionalJson(body): OptionalJson<AtBody>,
) -> Result<Response, ApiError> {
    auth.require(Scope::Calls)?;
    let at = instant(body.at)?;
    if let Some(shadow) = app.shadow_calls().answer(&call_id, at) {
        return Ok(Json(json!({
            "call_id": call_id,
            "extension": shadow.extension,
            "shadow": true,
            "cap_s": shadow.cap_s,
            "answered_at": shadow.answered_at,
        }))
        .into_response());
    }
    let (view, rx, follow) = {
        let mut engine = app.engine();
        let (call, event) = engine.answer(&call_id, at)?;
        let mut changes = vec![Change::Ledger(event)];
        let follow = app.monitor_changes(&mut engine, &mut changes);
        (CallView::from(&call), app.commit(changes), follow)
    };
    durable(&app, rx).await?;
    if !follow.is_empty() {
        app.follow_up(follow);
    }
    Ok(Json(view).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ExtendBody {
    seconds: Option<u64>,
    at: Option<DateTime<Utc>>,
}

async fn extend(
    State(app): State<Arc<App>>,
    auth: Auth,
    Path(call_id): Path<String>,
    OptionalJson(body): OptionalJson<ExtendBody>,
) -> Result<Response, ApiError> {
    auth.require(Scope::Calls)?;
    if body.seconds == Some(0) {
        return Err(ApiError::invalid("seconds", "must be at least 1"));
    }
    let at = instant(body.at)?;
    if let Some(shadow) = app.shadow_calls().get(&call_id) {
        return Ok(Json(json!({
            "call_id": call_id,
            "shadow": true,
            "granted_s": shadow.cap_s,
            "added_s": 0,
            "limited_by": null,
        }))
        .into_response());
    }
    let (outcome, rx, kill) = {
        let mut engine = app.engine();
        let (outcome, event) = engine.extend(&call_id, body.seconds, at)?;
        // The credit ran dry: the extension's calls in progress are ended through the PBX.
        let dry = outcome.added_s == 0
            && outcome
                .limited_by
                .as_ref()
                .is_some_and(|d| d.code == tollgate_core::DenyCode::InsufficientCredit);
        let kill = dry
            .then(|| engine.ledger.call(&call_id).map(|c| c.extension.clone()))
            .flatten()
            .map(|extension| {
                crate::killswitch::KillOrder::for_subject(
                    &engine,
                    &tollgate_core::ledger::Subject::extension(&extension),
                    format!("extension {extension}: no credit left"),
                )
            });
        (
            outcome,
            event.map(|e| app.commit(vec![Change::Ledger(e)])),
            kill,
        )
    };
    if let Some(rx) = rx {
        durable(&app, rx).await?;
    }
    if let Some(order) = kill {
        app.end_calls(order);
    }
    Ok(Json(outcome).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct EndBody {
    duration_s: Option<u64>,
    at: Option<DateTime<Utc>>,
}

/// Ends a call: settled, durable, counted. Shared by the HTTP API and FastAGI.
/// How a call ended: settled in the ledger, or a shadow-allowed call and what it cost.
pub(crate) enum Ended {
    Settled(Box<tollgate_core::ledger::Settlement>),
    Shadow { duration_s: u64, cost: Money },
}

pub(crate) async fn end_call(
    app: &App,
    call_id: &str,
    duration_s: Option<u64>,
    at: DateTime<Utc>,
) -> Result<Ended, ApiError> {
    let shadow = app.shadow_calls().end(call_id);
    if let Some(call) = shadow {
        let (duration, cost) = crate::shadow::shadow_cost(&call, duration_s, at);
        let rx = app.commit(vec![Change::SettleShadow {
            call_id: call_id.to_string(),
            duration_s: duration,
            cost,
        }]);
        durable(app, rx).await?;
        return Ok(Ended::Shadow {
            duration_s: duration,
            cost,
        });
    }
    let (settlement, rx, follow) = {
        let mut engine = app.engine();
        let (settlement, event) = engine.end(call_id, duration_s, at)?;
        let events = [event];
        app.count_events(&events);
        app.metrics
            .active_calls
            .set(engine.ledger.active_call_count() as i64);
        let [event] = events;
        let mut changes = vec![Change::Ledger(event)];
        let follow = app.monitor_changes(&mut engine, &mut changes);
        (settlement, app.commit(changes), follow)
    };
    durable(app, rx).await?;
    if !follow.is_empty() {
        app.follow_up(follow);
    }
    Ok(Ended::Settled(Box::new(settlement)))
}

async fn end(
    State(app): State<Arc<App>>,
    auth: Auth,
    Path(call_id): Path<String>,
    OptionalJson(body): OptionalJson<EndBody>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Calls)?;
    if body.duration_s.is_some_and(|d| d > 7 * 86_400) {
        return Err(ApiError::invalid(
            "duration_s",
            "must be at most 604800 (7 days)",
        ));
    }
    let at = instant(body.at)?;
    let settlement = match end_call(&app, &call_id, body.duration_s, at).await? {
        Ended::Settled(settlement) => *settlement,
        Ended::Shadow { duration_s, cost } => {
            return Ok(Json(json!({
                "call_id": call_id,
                "shadow": true,
                "duration_s": duration_s,
                "charged": Money::ZERO,
                "would_have_cost": cost,
            })))
        }
    };
    Ok(Json(json!({
        "call_id": settlement.call.call_id,
        "duration_s": settlement.duration_s,
        "billed_s": settlement.billed_s,
        "charged": settlement.charged,
        "rated": settlement.rated,
        "released": settlement.call.reserved.saturating_sub(settlement.charged),
        "overrun_s": settlement.overrun_s,
    })))
}

// ---- Directory ------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
}

/// Ids in order after `after`, at most `limit`, without sorting the whole directory.
fn page<'a>(ids: impl Iterator<Item = &'a String>, query: &ListQuery) -> Vec<String> {
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let mut heap = std::collections::BinaryHeap::with_capacity(limit + 1);
    for id in ids {
        if query.after.as_ref().is_some_and(|a| id <= a) {
            continue;
        }
        heap.push(id.clone());
        if heap.len() > limit {
            heap.pop();
        }
    }
    heap.into_sorted_vec()
}

fn problems_to_error(problems: Vec<Problem>) -> ApiError {
    let first = problems.first();
    let field = first
        .map(|p| p.key.iter().skip(2).cloned().collect::<Vec<_>>().join("."))
        .unwrap_or_default();
    let messages: Vec<String> = problems
        .iter()
        .map(|p| {
            let key: Vec<String> = p.key.iter().skip(2).cloned().collect();
            if key.is_empty() {
                p.message.clone()
            } else {
                format!("{}: {}", key.join("."), p.message)
            }
        })
        .collect();
    let mut error = ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        messages.join("; "),
    );
    if !field.is_empty() {
        error.field = Some(field);
    }
    error
}

fn directory_error(e: DirectoryError) -> ApiError {
    match e {
        DirectoryError::UnknownAccount(_) | DirectoryError::UnknownExtension(_) => {
            ApiError::not_found("not_found", e.to_string())
        }
        DirectoryError::AccountInUse { .. } => {
            ApiError::new(StatusCode::CONFLICT, "in_use", e.to_string())
        }
        _ => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            e.to_string(),
        ),
    }
}

fn managed_by_policy(kind: &str, id: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "managed_by_policy",
        format!("{kind} {id:?} is defined in the policy file: change it there"),
    )
}

async fn list_accounts(
    State(app): State<Arc<App>>,
    auth: Auth,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    let engine = app.engine();
    let ids = page(engine.policy.accounts.keys(), &query);
    Ok(Json(json!({ "accounts": ids })))
}

async fn list_extensions(
    State(app): State<Arc<App>>,
    auth: Auth,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    let engine = app.engine();
    let ids = page(engine.policy.extensions.keys(), &query);
    Ok(Json(json!({ "extensions": ids })))
}

async fn stored_body(
    app: &App,
    kind: EntityKind,
    id: &str,
) -> Result<Option<StoredEntity>, ApiError> {
    let id = id.to_string();
    app.read_store(move |store| store.entity(kind, &id))
        .await
        .map_err(|e| ApiError::internal("store read failed", e))
}

async fn get_account(
    State(app): State<Arc<App>>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    let view = {
        let engine = app.engine();
        let account = engine.policy.accounts.get(&id).ok_or_else(|| {
            ApiError::not_found("not_found", format!("account {id:?} does not exist"))
        })?;
        json!({
            "id": account.id,
            "name": account.name,
            "parent": account.parent,
            "currency": account.currency,
            "time_zone": account.time_zone.name(),
            "country": account.dial_plan.country,
            "plan": account.plan,
            "schedule": account.schedule,
            "limits": limits_view(&account.limits),
            "suspended": account.suspended,
            "origin": account.origin,
        })
    };
    let mut view = view;
    if let Some(stored) = stored_body(&app, EntityKind::Account, &id).await? {
        view["definition"] = serde_json::from_str(&stored.body).unwrap_or(Value::Null);
    }
    Ok(Json(view))
}

fn limits_view(limits: &tollgate_core::policy::Limits) -> Value {
    json!({
        "daily": limits.daily.to_string(),
        "monthly": limits.monthly.to_string(),
        "balance": limits.balance,
    })
}

async fn get_extension(
    State(app): State<Arc<App>>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    let view = {
        let engine = app.engine();
        let ext = engine.policy.extensions.get(&id).ok_or_else(|| {
            ApiError::not_found("not_found", format!("extension {id:?} does not exist"))
        })?;
        json!({
            "id": ext.id,
            "account": ext.account,
            "allowed_cidrs": ext.allowed_cidrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "limits": limits_view(&ext.limits),
            "max_call_duration_s": ext.max_call_duration_s,
            "max_concurrent_calls": ext.max_concurrent_calls,
            "schedule": ext.schedule,
            "suspended": ext.suspended,
            "origin": ext.origin,
        })
    };
    let mut view = view;
    if let Some(stored) = stored_body(&app, EntityKind::Extension, &id).await? {
        view["definition"] = serde_json::from_str(&stored.body).unwrap_or(Value::Null);
    }
    Ok(Json(view))
}

async fn put_account(
    State(app): State<Arc<App>>,
    auth: Auth,
    Path(id): Path<String>,
    ApiJson(raw): ApiJson<RawAccount>,
) -> Result<Response, ApiError> {
    auth.require(Scope::Admin)?;
    let (created, rx) = {
        let mut engine = app.engine();
        let existing = engine.policy.accounts.get(&id);
        if existing.is_some_and(|a| a.origin == Origin::Policy) {
            return Err(managed_by_policy("account", &id));
        }
        let suspended = existing.is_some_and(|a| a.suspended);
        let created = existing.is_none();
        let base = vec!["accounts".to_string(), id.clone()];
        let mut warnings = Vec::new();
        let mut account =
            account_from_raw(&id, &raw, &engine.policy, Origin::Api, &base, &mut warnings)
                .map_err(problems_to_error)?;
        account.suspended = suspended;
        engine
            .policy
            .upsert_account(account)
            .map_err(directory_error)?;
        let body =
            serde_json::to_string(&raw).map_err(|e| ApiError::internal("encode account", e))?;
        let rx = app.commit(vec![Change::UpsertEntity(StoredEntity {
            kind: EntityKind::Account,
            id: id.clone(),
            origin: Origin::Api,
            body,
            suspended,
        })]);
        (created, rx)
    };
    durable(&app, rx).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({ "id": id, "created": created }))).into_response())
}

async fn put_extension(
    State(app): State<Arc<App>>,
    auth: Auth,
    Path(id): Path<String>,
    ApiJson(raw): ApiJson<RawExtension>,
) -> Result<Response, ApiError> {
    auth.require(Scope::Admin)?;
    let (created, warnings, rx, follow) = {
        let mut engine = app.engine();
        let existing = engine.policy.extensions.get(&id);
        if existing.is_some_and(|e| e.origin == Origin::Policy) {
            return Err(managed_by_policy("extension", &id));
        }
        let suspended = existing.is_some_and(|e| e.suspended);
        let created = existing.is_none();
        let before = existing.map(permissions_of);
        let base = vec!["extensions".to_string(), id.clone()];
        let mut warnings = Vec::new();
        let mut extension =
            extension_from_raw(&id, &raw, &engine.policy, Origin::Api, &base, &mut warnings)
                .map_err(problems_to_error)?;
        extension.suspended = suspended;
        let account = extension.account.clone();
        let after = permissions_of(&extension);
        engine
            .policy
            .upsert_extension(extension)
            .map_err(directory_error)?;
        let now = Utc::now();
        if created {
            engine.observe_directory(DirectoryChange::ExtensionCreated, Some(&id), &account, now);
        } else if before.as_ref() != Some(&after) {
            engine.observe_directory(
                DirectoryChange::PermissionsChanged,
                Some(&id),
                &account,
                now,
            );
        }
        let body =
            serde_json::to_string(&raw).map_err(|e| ApiError::internal("encode extension", e))?;
        let mut changes = vec![Change::UpsertEntity(StoredEntity {
            kind: EntityKind::Extension,
            id: id.clone(),
            origin: Origin::Api,
            body,
            suspended,
        })];
        let follow = app.monitor_changes(&mut engine, &mut changes);
        let rx = app.commit(changes);
        let warnings: Vec<String> = warnings.into_iter().map(|w| w.message).collect();
        (created, warnings, rx, follow)
    };
    durable(&app, rx).await?;
    if !follow.is_empty() {
        app.follow_up(follow);
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({ "id": id, "created": created, "warnings": warnings })),
    )
        .into_response())
}

async fn delete_account(
    State(app): State<Arc<App>>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    auth.require(Scope::Admin)?;
    let rx = {
        let mut engine = app.engine();
        if engine
            .policy
            .accounts
            .get(&id)
            .is_some_and(|a| a.origin == Origin::Policy)
        {
            return Err(managed_by_policy("account", &id));
        }
        engine.policy.remove_account(&id).map_err(directory_error)?;
        app.commit(vec![Change::DeleteEntity {
            kind: EntityKind::Account,
            id,
        }])
    };
    durable(&app, rx).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_extension(
    State(app): State<Arc<App>>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    auth.require(Scope::Admin)?;
    let rx = {
        let mut engine = app.engine();
        if engine
            .policy
            .extensions
            .get(&id)
            .is_some_and(|e| e.origin == Origin::Policy)
        {
            return Err(managed_by_policy("extension", &id));
        }
        engine
            .policy
            .remove_extension(&id)
            .map_err(directory_error)?;
        app.commit(vec![Change::DeleteEntity {
            kind: EntityKind::Extension,
            id,
        }])
    };
    durable(&app, rx).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_suspended(
    app: &App,
    kind: EntityKind,
    id: String,
    suspended: bool,
) -> Result<Json<Value>, ApiError> {
    let (rx, kill) = {
        let mut engine = app.engine();
        let flag = match kind {
            EntityKind::Account => engine
                .policy
                .accounts
                .get_mut(&id)
                .map(|a| &mut a.suspended),
            EntityKind::Extension => engine
                .policy
                .extensions
                .get_mut(&id)
                .map(|e| &mut e.suspended),
        };
        let Some(flag) = flag else {
            return Err(ApiError::not_found(
                "not_found",
                format!("{kind} {id:?} does not exist"),
            ));
        };
        *flag = suspended;
        let mut changes = vec![Change::SetSuspended {
            kind,
            id: id.clone(),
            suspended,
        }];
        let kill = suspended.then(|| {
            let subject = match kind {
                EntityKind::Account => tollgate_core::ledger::Subject::account(&id),
                EntityKind::Extension => tollgate_core::ledger::Subject::extension(&id),
            };
            crate::killswitch::KillOrder::for_subject(
                &engine,
                &subject,
                format!("{kind} {id} suspended by hand"),
            )
        });
        // Resuming by hand also ends a suspension decided by a monitoring rule.
        if !suspended {
            let subject = match kind {
                EntityKind::Account => MonitorSubject::Account(id.clone()),
                EntityKind::Extension => MonitorSubject::Extension(id.clone()),
            };
            if engine.monitor.lift(&subject).is_some() {
                changes.push(Change::LiftSuspension {
                    subject,
                    at: Utc::now(),
                    by: "admin".into(),
                });
            }
        }
        (app.commit(changes), kill)
    };
    durable(app, rx).await?;
    if let Some(order) = kill {
        app.end_calls(order);
    }
    tracing::info!(%kind, %id, suspended, "suspension changed");
    Ok(Json(json!({ "id": id, "suspended": suspended })))
}

/// `POST /v1/{accounts,extensions}/{id}/{suspend,resume}`.
async fn change_suspension<const ACCOUNT: bool, const SUSPEND: bool>(
    State(app): State<Arc<App>>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Admin)?;
    let kind = if ACCOUNT {
        EntityKind::Account
    } else {
        EntityKind::Extension
    };
    set_suspended(&app, kind, id, SUSPEND).await
}

async fn extension_credit(
    State(app): State<Arc<App>>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    auth.require_read_or_calls()?;
    let now = Utc::now();
    let engine = app.engine();
    let headrooms = engine.credit_of(&id, now)?;
    let levels: Vec<Value> = headrooms
        .iter()
        .map(|h| {
            let state = engine.ledger.level(h.subject.kind, &h.subject.id);
            let limits = Engine::limits_of(&engine.policy, &h.subject);
            let tz = Engine::time_zone_of(&engine.policy, &h.subject);
            let periods = tollgate_core::ledger::Periods::at(now, tz);
            let (today, month) = state.spent_on(periods);
            json!({
                "level": match h.subject.kind { SubjectKind::Extension => "extension", SubjectKind::Account => "account" },
                "id": h.subject.id,
                "limits": limits.map(limits_view),
                "spent_today": today,
                "spent_this_month": month,
                "spent_total": state.spent_total,
                "reserved": state.reserved,
                "available": h.available.map(|a| a.to_string()).unwrap_or_else(|| "unlimited".into()),
                "binding_limit": h.binding.map(|b| b.kind),
                "active_calls": state.active_calls,
            })
        })
        .collect();
    let calls: Vec<CallView> = engine
        .ledger
        .calls()
        .filter(|c| c.extension == id)
        .map(CallView::from)
        .collect();
    Ok(Json(
        json!({ "extension": id, "levels": levels, "active_calls": calls }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    limit: Option<usize>,
}

async fn extension_calls(
    State(app): State<Arc<App>>,
    auth: Auth,
    Path(id): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    let limit = query.limit.unwrap_or(50).clamp(1, 1000);
    let ext = id.clone();
    let calls = app
        .read_store(move |store| store.settled_calls(&ext, limit))
        .await
        .map_err(|e| ApiError::internal("store read failed", e))?;
    Ok(Json(json!({ "extension": id, "calls": calls })))
}

/// Seconds until the next call expiry, bounded, for the expiry task.
pub fn next_expiry_wait(app: &App) -> std::time::Duration {
    let next = app.engine().ledger.next_expiry();
    let wait = next
        .map(|at| (at - Utc::now()).max(Duration::zero()))
        .unwrap_or(Duration::seconds(1))
        .min(Duration::seconds(1));
    wait.to_std().unwrap_or(std::time::Duration::from_secs(1))
}

/// What counts as a change of an extension's permissions for the monitor.
fn permissions_of(ext: &tollgate_core::policy::Extension) -> String {
    format!(
        "{:?}|{:?}|{:?}|{:?}|{}|{:?}|{}",
        ext.allowed_cidrs,
        ext.limits,
        ext.rules,
        ext.schedule,
        ext.max_call_duration_s,
        ext.max_concurrent_calls,
        ext.account
    )
}
