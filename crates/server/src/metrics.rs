//! Prometheus metrics: decisions by outcome and code, settlements, money charged, calls in
//! progress and the time the authorize handler takes (including the durable write).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub decision: &'static str,
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    pub rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: u16,
}

pub struct Metrics {
    registry: Registry,
    pub decisions: Family<DecisionLabels, Counter>,
    pub settlements: Family<ReasonLabels, Counter>,
    pub charged_micros: Counter,
    pub active_calls: Gauge,
    pub authorize_seconds: Histogram,
    pub api_errors: Family<StatusLabels, Counter>,
    pub bans: Family<RuleLabels, Counter>,
    pub auth_events: Family<OutcomeLabels, Counter>,
    pub alerts: Family<AlertLabels, Counter>,
    pub calls_ended: Family<ResultLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabels {
    pub event: &'static str,
    pub severity: &'static str,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("tollgate");
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "decisions",
            "Call decisions by outcome and deny code",
            decisions.clone(),
        );
        let settlements = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "settlements",
            "Settled calls by reason (ended, expired)",
            settlements.clone(),
        );
        let charged_micros = Counter::default();
        registry.register(
            "charged_micros",
            "Money charged, in millionths of the currency unit",
            charged_micros.clone(),
        );
        let active_calls = Gauge::default();
        registry.register(
            "active_calls",
            "Calls holding a reservation",
            active_calls.clone(),
        );
        let alerts = Family::<AlertLabels, Counter>::default();
        registry.register(
            "alerts",
            "Monitoring alert events (opened, escalated, closed, acknowledged) by severity",
            alerts.clone(),
        );
        let calls_ended = Family::<ResultLabels, Counter>::default();
        registry.register(
            "calls_ended",
            "Calls in progress the kill switch asked the PBX to end, by result (ended, not_found, failed)",
            calls_ended.clone(),
        );
        let authorize_seconds = Histogram::new([
            0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1,
        ]);
        registry.register(
            "authorize_seconds",
            "Time to decide and durably record an authorize request",
            authorize_seconds.clone(),
        );
        let api_errors = Family::<StatusLabels, Counter>::default();
        registry.register(
            "api_errors",
            "API requests refused or failed, by HTTP status",
            api_errors.clone(),
        );
        let bans = Family::<RuleLabels, Counter>::default();
        registry.register(
            "bans",
            "Bans by rule (jail, scanner, enumeration, pike, manual)",
            bans.clone(),
        );
        let auth_events = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "auth_events",
            "Registration events by outcome (success, failure, refused)",
            auth_events.clone(),
        );
        Metrics {
            registry,
            bans,
            auth_events,
            alerts,
            calls_ended,
            decisions,
            settlements,
            charged_micros,
            active_calls,
            authorize_seconds,
            api_errors,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
