//! The kill switch: ends calls in progress through the PBX when their extension or account
//! is suspended (by a monitoring rule or by hand) or their credit runs out on `extend`.
//! Blocking new calls is not enough when thirty fraudulent calls are already up.
//!
//! One worker thread takes batches of calls and asks each configured adapter
//! (`tollgate-hangup`: Kamailio JSON-RPC, Asterisk AMI, FreeSWITCH event socket) in turn
//! until one ends the call or says the PBX no longer knows it; nothing here runs on the
//! call path or under the engine lock.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use tollgate_core::ledger::{Subject, SubjectKind};
use tollgate_core::Engine;
use tollgate_hangup::{CallHandle, CallTerminator, Ended};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::metrics::ResultLabels;

/// Calls to end, with why.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KillOrder {
    pub calls: Vec<CallHandle>,
    pub reason: String,
}

impl KillOrder {
    /// The calls in progress of `subject` (never emergency calls), from the engine.
    pub fn for_subject(engine: &Engine, subject: &Subject, reason: String) -> KillOrder {
        KillOrder {
            calls: engine
                .calls_of(subject)
                .into_iter()
                .map(|c| CallHandle::new(c.call_id.clone(), c.pbx_ref.clone()))
                .collect(),
            reason,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }
}

/// The subject of a monitor suspension, as the ledger names it.
pub fn ledger_subject(subject: &tollgate_core::monitor::MonitorSubject) -> Option<Subject> {
    use tollgate_core::monitor::MonitorSubject;
    match subject {
        MonitorSubject::Extension(id) => Some(Subject {
            kind: SubjectKind::Extension,
            id: id.clone(),
        }),
        MonitorSubject::Account(id) => Some(Subject {
            kind: SubjectKind::Account,
            id: id.clone(),
        }),
        MonitorSubject::Global => None,
    }
}

/// The worker; dropping it lets the thread finish what it has and stop.
pub struct KillSwitch {
    sender: Option<mpsc::Sender<KillOrder>>,
    thread: Option<JoinHandle<()>>,
    pub adapters: usize,
}

impl KillSwitch {
    pub fn start(
        terminators: Vec<Arc<dyn CallTerminator>>,
        calls_ended: Family<ResultLabels, Counter>,
    ) -> KillSwitch {
        let adapters = terminators.len();
        let (sender, receiver) = mpsc::channel::<KillOrder>();
        let thread = std::thread::Builder::new()
            .name("tollgate-killswitch".into())
            .spawn(move || {
                for order in receiver {
                    for call in &order.calls {
                        let outcome = end_one(&terminators, call, &order.reason);
                        calls_ended
                            .get_or_create(&ResultLabels { result: outcome })
                            .inc();
                    }
                }
            })
            .ok();
        if thread.is_none() {
            tracing::error!(
                "could not start the kill-switch thread: calls in progress will not be ended"
            );
        }
        KillSwitch {
            sender: Some(sender),
            thread,
            adapters,
        }
    }

    /// Queues calls to end; returns at once.
    pub fn end(&self, order: KillOrder) {
        if order.is_empty() {
            return;
        }
        if self.adapters == 0 {
            tracing::warn!(
                calls = order.calls.len(),
                reason = %order.reason,
                "calls in progress are not ended: no [hangup] adapter is configured"
            );
            return;
        }
        tracing::warn!(calls = order.calls.len(), reason = %order.reason, "ending calls in progress");
        if let Some(sender) = &self.sender {
            if sender.send(order).is_err() {
                tracing::error!("the kill-switch thread is gone: calls in progress are not ended");
            }
        }
    }
}

impl Drop for KillSwitch {
    fn drop(&mut self) {
        self.sender.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Asks each adapter in turn; the label of what happened.
fn end_one(
    terminators: &[Arc<dyn CallTerminator>],
    call: &CallHandle,
    reason: &str,
) -> &'static str {
    let mut last_error = None;
    for terminator in terminators {
        match terminator.end_call(call, reason) {
            Ok(Ended::Ended) => {
                tracing::info!(call = %call.call_id, adapter = terminator.name(), %reason, "call ended through the PBX");
                return "ended";
            }
            Ok(Ended::NotFound) => {
                tracing::info!(call = %call.call_id, adapter = terminator.name(), "the PBX no longer knows the call");
                // Another PBX may still hold it: keep asking.
                last_error.get_or_insert_with(|| "not_found".to_string());
            }
            Err(e) => {
                tracing::warn!(call = %call.call_id, adapter = terminator.name(), error = %e, "could not end the call");
                last_error = Some(e.to_string());
            }
        }
    }
    match last_error.as_deref() {
        Some("not_found") => "not_found",
        _ => "failed",
    }
}
