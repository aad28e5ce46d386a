//! The webhook channel: each alert POSTed as the JSON payload to an http(s) URL, signed with
//! HMAC-SHA256 when a key is configured, through a blocking `ureq` agent on the channel's
//! worker thread.
//!
//! Request headers: `Content-Type: application/json`, `X-Tollgate-Timestamp: <unix seconds>`
//! and, with a key, `X-Tollgate-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
//! A receiver recomputes the signature and refuses stale timestamps to stop replays.
//!
//! Network errors, timeouts, 408, 429 and 5xx are retried; any other answer (other 4xx, a
//! redirect, which is not followed) is a permanent failure. Logs name the URL without its
//! path or query ([`redact_url`]), which chat services use as a token, and never the key.

use std::io::Read;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::{redact_url, WebhookChannel};
use crate::deliver::{check_max_attempts, check_timeout, AttemptError, Deliver};
use crate::dispatch::PreparedChannel;
use crate::error::NotifyError;
use crate::model::Notification;
use crate::secret::{read_secret_file, Secret};
use crate::text::{single_line, truncate_bytes};

/// How much of an error answer's body goes into the log line.
const ERROR_BODY_BYTES: usize = 200;

pub(crate) fn prepare(
    channel: &str,
    settings: &WebhookChannel,
) -> Result<PreparedChannel, NotifyError> {
    let url = url::Url::parse(&settings.url)
        .map_err(|e| NotifyError::invalid(channel, "url", format!("not a valid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(NotifyError::invalid(
            channel,
            "url",
            format!(
                "{:?} is not an http or https URL",
                redact_url(&settings.url)
            ),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(NotifyError::invalid(channel, "url", "the URL has no host"));
    }
    check_timeout(channel, settings.timeout_s)?;
    check_max_attempts(channel, settings.max_attempts)?;
    let secret = settings
        .secret_file
        .as_deref()
        .map(|path| read_secret_file(channel, "secret_file", path))
        .transpose()?;
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(settings.timeout_s))
        .redirects(0)
        .user_agent(concat!("tollgate/", env!("CARGO_PKG_VERSION")))
        .build();
    Ok(PreparedChannel {
        name: channel.to_owned(),
        target: redact_url(&settings.url),
        min_severity: settings.min_severity,
        max_attempts: settings.max_attempts,
        deliver: Box::new(WebhookSender {
            agent,
            url: url.to_string(),
            secret,
        }),
    })
}

struct WebhookSender {
    agent: ureq::Agent,
    url: String,
    secret: Option<Secret>,
}

impl Deliver for WebhookSender {
    fn attempt(&mut self, notification: &Notification) -> Result<(), AttemptError> {
        let body = notification
            .payload_json()
            .map_err(|e| AttemptError::Permanent(format!("cannot serialize the payload: {e}")))?;
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|since| since.as_secs())
            .unwrap_or(0);
        let mut request = self
            .agent
            .post(&self.url)
            .set("Content-Type", "application/json")
            .set("X-Tollgate-Timestamp", &timestamp.to_string());
        if let Some(secret) = &self.secret {
            let signature = signature(secret.expose().as_bytes(), timestamp, &body)?;
            request = request.set("X-Tollgate-Signature", &signature);
        }
        match request.send_string(&body) {
            Ok(response) if (200..300).contains(&response.status()) => Ok(()),
            Ok(response) => Err(AttemptError::Permanent(format!(
                "answered {} (redirects are not followed)",
                response.status()
            ))),
            Err(ureq::Error::Status(status, response)) => {
                let reason = format!("answered {status}: {}", body_excerpt(response));
                if status == 408 || status == 429 || status >= 500 {
                    Err(AttemptError::Transient(reason))
                } else {
                    Err(AttemptError::Permanent(reason))
                }
            }
            Err(ureq::Error::Transport(transport)) => Err(classify_transport(&transport)),
        }
    }
}

/// `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">` with `key`.
fn signature(key: &[u8], timestamp: u64, body: &str) -> Result<String, AttemptError> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key)
        .map_err(|e| AttemptError::Permanent(format!("cannot use the HMAC key: {e}")))?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    Ok(format!(
        "sha256={}",
        hex::encode(mac.finalize().into_bytes())
    ))
}

/// The start of an error answer's body, on one line, for the log.
fn body_excerpt(response: ureq::Response) -> String {
    let mut bytes = Vec::new();
    let limit = u64::try_from(ERROR_BODY_BYTES).unwrap_or(u64::MAX);
    if response
        .into_reader()
        .take(limit)
        .read_to_end(&mut bytes)
        .is_err()
    {
        return String::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    format!(
        "{:?}",
        single_line(truncate_bytes(text.trim(), ERROR_BODY_BYTES))
    )
}

/// A transport error as a reason without the URL (ureq's own message starts with it).
fn classify_transport(transport: &ureq::Transport) -> AttemptError {
    use ureq::ErrorKind;
    let mut reason = transport.kind().to_string();
    if let Some(message) = transport.message() {
        reason.push_str(": ");
        reason.push_str(message);
    }
    if let Some(source) = std::error::Error::source(transport) {
        reason.push_str(": ");
        reason.push_str(&source.to_string());
    }
    match transport.kind() {
        ErrorKind::InvalidUrl
        | ErrorKind::UnknownScheme
        | ErrorKind::InsecureRequestHttpsOnly
        | ErrorKind::InvalidProxyUrl => AttemptError::Permanent(reason),
        _ => AttemptError::Transient(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_over_timestamp_dot_body() {
        // RFC 4231 test case 2 shape: key "Jefe"; the message here is "1700000000.{}".
        let signed = signature(b"Jefe", 1_700_000_000, "{}").unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"1700000000.{}");
        assert_eq!(
            signed,
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        );
        assert_eq!(signed.len(), "sha256=".len() + 64);
    }

    #[test]
    fn bad_urls_and_numbers_are_refused_with_the_channel_and_field() {
        let error = |settings: WebhookChannel| {
            prepare("webhook[2]", &settings)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(
            error(WebhookChannel::new("not a url")).starts_with("webhook[2].url: not a valid URL")
        );
        assert_eq!(
            error(WebhookChannel::new("ftp://files.example.com/drop")),
            "webhook[2].url: \"ftp://files.example.com/…\" is not an http or https URL"
        );
        let mut zero = WebhookChannel::new("http://127.0.0.1:9/");
        zero.timeout_s = 0;
        assert_eq!(
            error(zero),
            "webhook[2].timeout_s: 0 is not between 1 and 300 seconds"
        );
        let mut none = WebhookChannel::new("http://127.0.0.1:9/");
        none.max_attempts = 0;
        assert_eq!(
            error(none),
            "webhook[2].max_attempts: 0 is not between 1 and 20"
        );
        let mut missing = WebhookChannel::new("https://hooks.example.com/x");
        missing.secret_file = Some("/nonexistent/tollgate/webhook.key".into());
        let message = error(missing);
        assert!(
            message.starts_with(
                "webhook[2].secret_file: cannot read \"/nonexistent/tollgate/webhook.key\": "
            ),
            "{message}"
        );
        assert!(prepare(
            "webhook[0]",
            &WebhookChannel::new("https://hooks.example.com/x")
        )
        .is_ok());
    }
}
