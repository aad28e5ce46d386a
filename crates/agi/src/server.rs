//! The FastAGI server: accepts connections, runs one task per connection, and answers each
//! request through the [`AgiHandler`].
//!
//! # What the dialplan sees
//!
//! After `authorize`: `TOLLGATE_MAX_SECONDS`, `TOLLGATE_REASON`, `TOLLGATE_CODE`, then
//! `TOLLGATE_DECISION` (`allow`, `deny` or `error`). After `end`: `TOLLGATE_END` (`ok` or
//! `error`). An unknown script gets the four `authorize` variables with `error`.
//!
//! # Invariants
//!
//! - `TOLLGATE_DECISION` is set last, so a dialplan that reads `allow` also has that
//!   decision's `TOLLGATE_MAX_SECONDS` (a connection cut half-way leaves the decision unset,
//!   which the example dialplan treats as a refusal).
//! - Every wait is bounded: the environment block by `read_timeout_ms`, the handler by
//!   `decision_timeout_ms`, each reply by `read_timeout_ms`, the whole connection by
//!   `session_timeout_ms`. A connection over `max_connections`, or from a peer outside
//!   `allowed_peers`, is closed at once. A handler that panics ends only its connection
//!   (counted in [`ServeSummary::panicked`]); Asterisk then sees no decision.
//! - Nothing from the environment is logged but the script's name, the call id (Asterisk's
//!   `uniqueid`) and the channel name: caller names and numbers stay out of the logs.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::error::{ProtocolError, SettingsError};
use crate::handler::{AgiCall, AgiDecision, AgiHandler, REMOTE_ADDR_FUNCTION};
use crate::protocol::command::{Command, Reply};
use crate::protocol::io::{read_environment, read_reply};
use crate::protocol::Script;
use crate::settings::AgiSettings;

/// `TOLLGATE_MAX_SECONDS` is capped so that `${TOLLGATE_MAX_SECONDS}000` (milliseconds, for
/// `Dial`'s `L()`) fits a 32-bit `long` wherever Asterisk runs: 24 days.
pub const MAX_SECONDS_CAP: u64 = 2_147_483;
/// `TOLLGATE_CODE` keeps at most this many characters, each a letter, digit, `_`, `-` or `.`.
const MAX_CODE_CHARS: usize = 64;

/// What a run of [`serve`] did, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServeSummary {
    /// Connections taken on.
    pub accepted: u64,
    /// Connections closed at once: from a peer not allowed, or over the connection limit.
    pub refused: u64,
    /// Connections that ran to the end.
    pub completed: u64,
    /// Connections ended by a protocol error or a timeout.
    pub failed: u64,
    /// Connection tasks that panicked (a bug: should stay 0).
    pub panicked: u64,
}

/// Serves FastAGI on `listener` until `shutdown` resolves, then waits for the connections in
/// flight (each ends by its own deadline). Fails only on settings that cannot work; a failed
/// `accept` (out of file descriptors) is logged and retried after a pause.
pub async fn serve<H: AgiHandler>(
    listener: TcpListener,
    handler: Arc<H>,
    settings: AgiSettings,
    shutdown: impl Future<Output = ()>,
) -> Result<ServeSummary, SettingsError> {
    settings.validate()?;
    let settings = Arc::new(settings);
    // One permit per connection in flight; a connection that finds none is closed rather
    // than queued: Asterisk waits on an AGI without a timeout, the call with it.
    let permits = Arc::new(Semaphore::new(settings.max_connections));
    let mut tasks: JoinSet<Result<(), ProtocolError>> = JoinSet::new();
    let mut summary = ServeSummary::default();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                record(&mut summary, joined);
            }
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        tracing::warn!(%error, "agi: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if !settings.allows(peer.ip()) {
                    summary.refused += 1;
                    tracing::warn!(%peer, "agi: connection from a peer not in allowed_peers closed");
                    continue;
                }
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    summary.refused += 1;
                    tracing::warn!(
                        %peer,
                        limit = settings.max_connections,
                        "agi: connection limit reached, connection closed"
                    );
                    continue;
                };
                summary.accepted += 1;
                let handler = handler.clone();
                let settings = settings.clone();
                tasks.spawn(async move {
                    let result = connection(stream, peer, &*handler, &settings).await;
                    drop(permit);
                    result
                });
            }
        }
    }
    drop(listener);
    while let Some(joined) = tasks.join_next().await {
        record(&mut summary, joined);
    }
    tracing::debug!(?summary, "agi: server stopped");
    Ok(summary)
}

fn record(
    summary: &mut ServeSummary,
    joined: Result<Result<(), ProtocolError>, tokio::task::JoinError>,
) {
    match joined {
        Ok(Ok(())) => summary.completed += 1,
        Ok(Err(_)) => summary.failed += 1,
        Err(error) => {
            summary.panicked += 1;
            tracing::error!(%error, "agi: connection task failed");
        }
    }
}

/// One connection, under the session deadline.
async fn connection<H: AgiHandler>(
    mut stream: TcpStream,
    peer: SocketAddr,
    handler: &H,
    settings: &AgiSettings,
) -> Result<(), ProtocolError> {
    let result = match tokio::time::timeout(
        settings.session_timeout(),
        session(&mut stream, handler, settings),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => Err(ProtocolError::Timeout {
            waiting_for: "the end of the session",
        }),
    };
    match &result {
        Ok(()) => {}
        // A peer that connects and leaves (a port check) is no news.
        Err(ProtocolError::Closed) => tracing::debug!(%peer, "agi: peer closed the connection"),
        Err(error) => tracing::warn!(%peer, %error, "agi: connection failed"),
    }
    // Closing is what tells Asterisk the script is over. A reset peer is no news.
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
    result
}

/// The conversation: read the environment, run the script, set the variables.
async fn session<H: AgiHandler>(
    stream: &mut TcpStream,
    handler: &H,
    settings: &AgiSettings,
) -> Result<(), ProtocolError> {
    let (read, write) = stream.split();
    let mut agi = Agi {
        reader: BufReader::new(read),
        writer: write,
        read_timeout: settings.read_timeout(),
        hangups: 0,
    };
    let env = read_environment(&mut agi.reader, settings.read_timeout()).await?;
    let call = AgiCall::new(env);
    let call_id = call.env.uniqueid().unwrap_or_default().to_owned();
    let channel = call.env.channel().unwrap_or_default().to_owned();
    tracing::debug!(script = call.script.name(), %call_id, %channel, "agi: request");
    match &call.script {
        Script::Authorize => {
            let decision = authorize(&mut agi, &call, handler, settings).await?;
            tracing::debug!(
                %call_id,
                decision = decision.decision,
                code = %decision.code,
                max_seconds = decision.max_seconds,
                "agi: authorize answered"
            );
            agi.set_decision(&decision).await
        }
        Script::End => {
            let outcome = match call.end_args() {
                Err(error) => {
                    tracing::warn!(%call_id, %error, "agi: end request refused");
                    "error"
                }
                Ok(args) => {
                    match tokio::time::timeout(settings.decision_timeout(), handler.end(args)).await
                    {
                        Ok(Ok(())) => "ok",
                        Ok(Err(error)) => {
                            tracing::warn!(%call_id, %error, "agi: end failed");
                            "error"
                        }
                        Err(_) => {
                            tracing::warn!(%call_id, "agi: end timed out");
                            "error"
                        }
                    }
                }
            };
            agi.set_variables(&[("TOLLGATE_END", outcome)]).await
        }
        Script::Unknown(name) => {
            tracing::warn!(script = ?name, %call_id, "agi: unknown script");
            let decision = Outcome::error(
                "unknown_script",
                format!("unknown FastAGI script {name:?}: use authorize or end"),
            );
            agi.set_decision(&decision).await
        }
    }
}

/// Asks the handler, turning every failure into an `error` outcome for the dialplan.
async fn authorize<H: AgiHandler>(
    agi: &mut Agi<'_>,
    call: &AgiCall,
    handler: &H,
    settings: &AgiSettings,
) -> Result<Outcome, ProtocolError> {
    let (mut args, ask_address) = match call.authorize_args() {
        Ok(found) => found,
        Err(error) => {
            tracing::warn!(call_id = call.env.uniqueid().unwrap_or_default(), %error, "agi: authorize request refused");
            return Ok(Outcome::error("bad_request", error.to_string()));
        }
    };
    if ask_address {
        args.source_ip = agi.remote_address().await?;
    }
    let call_id = args.call_id.clone();
    Ok(
        match tokio::time::timeout(settings.decision_timeout(), handler.authorize(args)).await {
            Ok(Ok(decision)) => Outcome::from(decision),
            Ok(Err(error)) => {
                tracing::warn!(%call_id, %error, "agi: handler failed");
                Outcome::error("handler_error", error)
            }
            Err(_) => {
                tracing::warn!(%call_id, timeout_ms = settings.decision_timeout_ms, "agi: handler timed out");
                Outcome::error(
                    "timeout",
                    format!(
                        "tollgate did not decide within {} ms",
                        settings.decision_timeout_ms
                    ),
                )
            }
        },
    )
}

/// What the dialplan is told after `authorize`.
struct Outcome {
    decision: &'static str,
    max_seconds: u64,
    reason: String,
    code: String,
}

impl Outcome {
    fn error(code: &str, reason: impl Into<String>) -> Outcome {
        Outcome {
            decision: "error",
            max_seconds: 0,
            reason: reason.into(),
            code: code.to_owned(),
        }
    }
}

impl From<AgiDecision> for Outcome {
    fn from(d: AgiDecision) -> Outcome {
        let code: String = d
            .code
            .chars()
            .take(MAX_CODE_CHARS)
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Outcome {
            decision: if d.allow { "allow" } else { "deny" },
            max_seconds: if d.allow {
                d.max_seconds.min(MAX_SECONDS_CAP)
            } else {
                0
            },
            reason: d.reason,
            code,
        }
    }
}

/// The command side of a connection.
struct Agi<'a> {
    reader: BufReader<ReadHalf<'a>>,
    writer: WriteHalf<'a>,
    read_timeout: Duration,
    /// `HANGUP` notices seen: the channel hung up while the script ran.
    hangups: u32,
}

impl Agi<'_> {
    /// Sends one command and reads its reply.
    async fn command(&mut self, command: Command<'_>) -> Result<Reply, ProtocolError> {
        // Names are this crate's constants and values are sanitized and capped, so this is
        // only a guard against a future mistake.
        let line = command.encode().ok_or(ProtocolError::Unencodable)?;
        tokio::time::timeout(self.read_timeout, self.writer.write_all(line.as_bytes()))
            .await
            .map_err(|_| ProtocolError::Timeout {
                waiting_for: "a command to be sent",
            })??;
        read_reply(&mut self.reader, self.read_timeout, &mut self.hangups).await
    }

    /// Sets variables in order, stopping at the first that Asterisk does not accept: a dead
    /// channel (511) is a normal end, any other refusal an error.
    async fn set_variables(&mut self, vars: &[(&str, &str)]) -> Result<(), ProtocolError> {
        for &(name, value) in vars {
            match self.command(Command::SetVariable { name, value }).await? {
                Reply::Success { .. } => {}
                Reply::DeadChannel => {
                    tracing::debug!(variable = name, "agi: channel dead, variables not set");
                    return Ok(());
                }
                other => return Err(ProtocolError::Refused { code: other.code() }),
            }
        }
        Ok(())
    }

    async fn set_decision(&mut self, outcome: &Outcome) -> Result<(), ProtocolError> {
        let max_seconds = outcome.max_seconds.to_string();
        // INVARIANT: TOLLGATE_DECISION last (see the module docs).
        self.set_variables(&[
            ("TOLLGATE_MAX_SECONDS", &max_seconds),
            ("TOLLGATE_REASON", &outcome.reason),
            ("TOLLGATE_CODE", &outcome.code),
            ("TOLLGATE_DECISION", outcome.decision),
        ])
        .await
    }

    /// The channel's signalling source address from Asterisk; `None` when it has none or
    /// gives something that is no address.
    async fn remote_address(&mut self) -> Result<Option<std::net::IpAddr>, ProtocolError> {
        let reply = self
            .command(Command::GetVariable {
                name: REMOTE_ADDR_FUNCTION,
            })
            .await?;
        Ok(match reply {
            Reply::Success {
                result: 1,
                data: Some(text),
            } => crate::handler::parse_address(&text).unwrap_or_else(|| {
                tracing::debug!("agi: remote_addr is not an address");
                None
            }),
            _ => None,
        })
    }
}
