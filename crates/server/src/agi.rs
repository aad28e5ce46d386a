//! Asterisk's way in: the FastAGI handler over the same decision path as the HTTP API
//! (`routes::decide`, `routes::end_call`), so a call asked over AGI is reserved, journaled,
//! monitored and counted exactly like one asked over HTTP. The AGI protocol itself is
//! `tollgate-agi`'s.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use tollgate_agi::{AgiDecision, AgiHandler, AuthorizeArgs, EndArgs};
use tollgate_core::engine::{AuthorizeRequest, Decision};

use crate::app::App;
use crate::routes::{decide, end_call};

/// The service as a FastAGI handler.
pub struct EngineAgi {
    pub app: Arc<App>,
}

impl AgiHandler for EngineAgi {
    async fn authorize(&self, request: AuthorizeArgs) -> Result<AgiDecision, String> {
        // Asterisk gives no peer address unless the dialplan passes one: an unknown source
        // is 0.0.0.0, which no extension's allowed_cidrs contains (fail closed for
        // extensions that have them).
        let source_ip = request
            .source_ip
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        // The channel name is what AMI's Hangup needs to end the call (the kill switch).
        let pbx_ref = (!request.channel.is_empty()
            && request.channel.len() <= 256
            && request.channel.chars().all(|c| c.is_ascii_graphic()))
        .then_some(request.channel.as_str());
        let engine_request = AuthorizeRequest {
            call_id: &request.call_id,
            extension: &request.extension,
            source_ip,
            number: &request.number,
            pbx_ref,
        };
        match decide(&self.app, &engine_request, Utc::now(), Instant::now()).await {
            Ok(Decision::Allow(grant)) => Ok(AgiDecision::allow(
                grant.max_duration_s,
                format!(
                    "allowed for {} s, {} reserved",
                    grant.max_duration_s, grant.reserved
                ),
            )),
            Ok(Decision::Deny(deny)) => Ok(AgiDecision::deny(deny.code.as_str(), deny.message)),
            Err(e) => Err(e.message),
        }
    }

    async fn end(&self, request: EndArgs) -> Result<(), String> {
        let duration = if request.answered || request.duration_s.is_some() {
            request.duration_s
        } else {
            Some(0)
        };
        end_call(&self.app, &request.call_id, duration, Utc::now())
            .await
            .map(|_| ())
            .map_err(|e| e.message)
    }
}
