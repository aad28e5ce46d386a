//! The kill switch: ends calls in progress through the PBX that carries them.
//!
//! When tollgate suspends an extension or an account, or its credit runs out, the calls it
//! already allowed must stop too. This crate owns the adapters that ask a PBX to end one
//! call, behind one trait, [`CallTerminator`]:
//!
//! | adapter | PBX interface | `pbx_ref` |
//! |---|---|---|
//! | [`KamailioTerminator`] | `jsonrpcs` over `xhttp` (HTTP POST), `dlg.end_dlg` | `"h_entry:h_id"` of the dialog (`$dlg(h_entry)`, `$dlg(h_id)` after `dlg_manage()`); optional: without it the dialog is found by its SIP Call-ID (`dlg.dlg_list`) |
//! | [`AmiTerminator`] | Asterisk Manager Interface (TCP 5038), `Action: Hangup` | the channel name, `${CHANNEL}` (e.g. `PJSIP/1001-00000001`) |
//! | [`EslTerminator`] | FreeSWITCH event socket, inbound (TCP 8021), `api uuid_kill` | the channel UUID, `${uuid}` |
//! | [`DryRun`] | none: logs what it would end (shadow mode) | anything |
//!
//! Each call is synchronous and bounded by the `timeout_s` of [`HangupConfig`]: the caller
//! runs it off the decision path (a worker thread). Every peer is treated as hostile: lines,
//! headers, bodies and the whole exchange are bounded in size, every read and write has a
//! deadline, and what the peer said is quoted in errors only as a short, escaped excerpt.
//! Secrets (the AMI secret, the ESL password) are read from files by
//! [`HangupConfig::build`] and never appear in `Debug`, errors or logs.
//!
//! The AMI and ESL adapters open one TCP connection per hangup (connect, log in, end the
//! call, log off): a hangup is rare, and a fresh connection has no state to go stale.
//!
//! Terminators are made from the policy's `[hangup]` section by [`HangupConfig::build`]
//! (which reads the secret files); [`KamailioTerminator::new`] and [`DryRun::new`] can
//! also be called directly.
//!
//! # Where `pbx_ref` comes from
//!
//! The PBX sends it with the authorize request of the call, beside the call id:
//!
//! - Kamailio: `route(TOLLGATE_DIALOG);` from `examples/kamailio/hangup.cfg` after
//!   `record_route()` on the initial INVITE, then send `$var(tollgate_pbx_ref)` (and `$ci`
//!   as the call id).
//! - Asterisk: `${CHANNEL}` in the dialplan that asks tollgate, e.g.
//!   `same => n,Set(TG=${CURL(http://127.0.0.1:8080/...,...&pbx_ref=${URIENCODE(${CHANNEL})})})`;
//!   `manager.conf`: a `[tollgate]` user with `secret`, `deny=0.0.0.0/0.0.0.0`,
//!   `permit=127.0.0.1/255.255.255.255`, `read = system`, `write = call`.
//! - FreeSWITCH: `${uuid}` in the dialplan or script that asks tollgate; the event socket's
//!   password and ACL in `event_socket.conf.xml`.

mod ami;
mod config;
mod dry_run;
mod error;
mod esl;
mod kamailio;
mod secret;
mod wire;

pub use ami::AmiTerminator;
pub use config::{AmiSettings, EslSettings, HangupConfig, KamailioSettings};
pub use dry_run::DryRun;
pub use error::HangupError;
pub use esl::EslTerminator;
pub use kamailio::{KamailioRef, KamailioTerminator};

/// What tollgate knows of a call, to find it in the PBX.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallHandle {
    /// Tollgate's call id, as the PBX gave it at authorize (for Kamailio: the SIP Call-ID).
    pub call_id: String,
    /// Opaque to tollgate, given by the PBX at authorize: what the PBX needs to find the
    /// call (see the table in the crate documentation for what each adapter expects).
    pub pbx_ref: Option<String>,
}

impl CallHandle {
    /// A handle with a PBX reference.
    pub fn new(call_id: impl Into<String>, pbx_ref: Option<String>) -> Self {
        CallHandle {
            call_id: call_id.into(),
            pbx_ref,
        }
    }
}

/// What became of a call the PBX was asked to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The PBX accepted to end it (it sends the BYEs / hangs the channels up).
    Ended,
    /// The PBX does not know it any more: it is already gone.
    NotFound,
}

/// Ends calls in progress through one PBX.
pub trait CallTerminator: Send + Sync {
    /// The adapter's name, as in the `[hangup]` section (`kamailio`, `asterisk_ami`,
    /// `freeswitch_esl`, `dry_run`).
    fn name(&self) -> &str;

    /// Asks the PBX to end `call`. `reason` is a short human text (e.g. "extension 1001
    /// suspended"); adapters that can carry it to the phones do (Kamailio: a `Reason`
    /// header on the BYEs), the others log it. Blocks for at most the configured timeout.
    fn end_call(&self, call: &CallHandle, reason: &str) -> Result<Ended, HangupError>;
}
