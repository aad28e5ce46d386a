//! Shadow mode at the service's edge: a denial in a shadowed policy or account is recorded
//! (stored, counted) and the PBX is told to allow the call, capped at the extension's
//! longest call. The call is not reserved in the ledger; its answer and end are accepted,
//! and at its end the cost it had at its rate is stored: the money the denial would have
//! saved. `tollgate report shadow` summarizes the record.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use tollgate_core::engine::{AuthorizeRequest, Deny, Grant};
use tollgate_core::rating::Rate;
use tollgate_core::{Engine, Money};
use tollgate_store::ShadowDecision;

/// The most shadow-allowed calls followed at once; beyond it a call's end is not rated
/// (the decision is still recorded).
const MAX_SHADOW_CALLS: usize = 100_000;

/// A call shadow mode allowed, until its end.
#[derive(Clone, Debug)]
pub struct ShadowCall {
    pub extension: String,
    pub rate: Option<Rate>,
    pub cap_s: u64,
    pub authorized_at: DateTime<Utc>,
    pub answered_at: Option<DateTime<Utc>>,
    /// Forgotten after this (an end that never came).
    pub forget_at: DateTime<Utc>,
}

/// The shadow-allowed calls in progress.
#[derive(Debug, Default)]
pub struct ShadowCalls {
    calls: HashMap<String, ShadowCall>,
}

impl ShadowCalls {
    pub fn insert(&mut self, call_id: &str, call: ShadowCall) {
        if self.calls.len() < MAX_SHADOW_CALLS {
            self.calls.insert(call_id.to_string(), call);
        } else {
            tracing::warn!(
                "too many shadow-allowed calls followed: this one's end will not be rated"
            );
        }
    }

    pub fn contains(&self, call_id: &str) -> bool {
        self.calls.contains_key(call_id)
    }

    pub fn answer(&mut self, call_id: &str, at: DateTime<Utc>) -> Option<&ShadowCall> {
        let call = self.calls.get_mut(call_id)?;
        call.answered_at.get_or_insert(at);
        Some(call)
    }

    pub fn end(&mut self, call_id: &str) -> Option<ShadowCall> {
        self.calls.remove(call_id)
    }

    pub fn get(&self, call_id: &str) -> Option<&ShadowCall> {
        self.calls.get(call_id)
    }

    /// Drops calls whose end never came.
    pub fn forget_due(&mut self, now: DateTime<Utc>) {
        self.calls.retain(|_, c| c.forget_at > now);
    }
}

/// What to answer, record and follow when `deny` falls under shadow mode; `None` when the
/// extension is not in shadow mode (the denial is enforced).
pub fn shadow_allow(
    engine: &Engine,
    request: &AuthorizeRequest<'_>,
    deny: &Deny,
    now: DateTime<Utc>,
) -> Option<(Grant, ShadowCall, ShadowDecision)> {
    let policy = &engine.policy;
    if !policy.shadow_for(request.extension) {
        return None;
    }
    let ext = policy.extensions.get(request.extension)?;
    let chain = policy.account_chain(&ext.account);
    let account = chain.first()?;
    let explanation = engine.explain(request, now).ok()?;
    let rate = policy
        .plan_for(&chain)
        .and_then(|plan| plan.rate_for(explanation.destination.digits()))
        .filter(|r| !r.blocked)
        .cloned();
    let cap_s = u64::from(ext.max_call_duration_s);
    let grant = Grant {
        max_duration_s: cap_s,
        rate: explanation.rate.clone(),
        reserved: Money::ZERO,
        currency: account.currency,
        destination: explanation.destination.clone(),
    };
    let call = ShadowCall {
        extension: request.extension.to_string(),
        rate,
        cap_s,
        authorized_at: now,
        answered_at: None,
        forget_at: now
            + Duration::seconds(
                cap_s as i64
                    + i64::from(policy.credit.answer_timeout_s)
                    + i64::from(policy.credit.expiry_grace_s),
            ),
    };
    let decision = ShadowDecision {
        call_id: request.call_id.to_string(),
        extension: request.extension.to_string(),
        number: explanation
            .destination
            .e164
            .clone()
            .unwrap_or_else(|| explanation.destination.dialed.clone()),
        code: deny.code.as_str().to_string(),
        rule: deny.rule.clone(),
        message: deny.message.clone(),
        at: now,
        duration_s: None,
        cost: None,
    };
    Some((grant, call, decision))
}

/// The seconds a shadow call lasted and what they cost at its rate.
pub fn shadow_cost(call: &ShadowCall, duration_s: Option<u64>, at: DateTime<Utc>) -> (u64, Money) {
    let duration = match (duration_s, call.answered_at) {
        (Some(d), _) => d,
        (None, Some(answered)) => (at - answered).num_seconds().max(0) as u64,
        (None, None) => 0,
    };
    let cost = match (&call.rate, duration) {
        (_, 0) | (None, _) => Money::ZERO,
        (Some(rate), d) => rate.cost(d),
    };
    (duration, cost)
}
