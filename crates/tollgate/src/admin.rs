//! Commands that talk to a running service (`ban list|add|del`, `alerts [ack]`,
//! `suspend list|lift`) and that print firewall rulesets (`firewall render`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tollgate_config::{Loaded, Scope, TokenSource};

/// How to reach the service's API: URL and an admin token.
pub struct Client {
    base: String,
    token: String,
}

impl Client {
    /// From flags, the environment (`TOLLGATE_URL`, `TOLLGATE_TOKEN`), or the policy (its
    /// listen address and the first admin token kept in a file or an environment variable).
    pub fn new(
        loaded: &Loaded,
        url: Option<String>,
        token_file: Option<PathBuf>,
    ) -> Result<Client> {
        let base = url
            .or_else(|| std::env::var("TOLLGATE_URL").ok())
            .unwrap_or_else(|| format!("http://{}", loaded.settings.server.listen));
        let token = if let Some(path) = token_file {
            std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read token file {}", path.display()))?
        } else if let Ok(token) = std::env::var("TOLLGATE_TOKEN") {
            token
        } else {
            let admin = loaded
                .settings
                .tokens
                .iter()
                .filter(|t| t.scopes.contains(&Scope::Admin))
                .find_map(|t| match &t.source {
                    TokenSource::File(path) => std::fs::read_to_string(path).ok(),
                    TokenSource::Env(var) => std::env::var(var).ok(),
                    TokenSource::Sha256(_) => None,
                });
            match admin {
                Some(token) => token,
                None => bail!("no admin token: pass --token-file FILE or set TOLLGATE_TOKEN (the policy keeps only a digest of its admin tokens)"),
            }
        };
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            token: token.trim().to_string(),
        })
    }

    fn send(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value)> {
        let agent = ureq::AgentBuilder::new()
            .timeout(std::time::Duration::from_secs(10))
            .build();
        let request = agent
            .request(method, &format!("{}{path}", self.base))
            .set("Authorization", &format!("Bearer {}", self.token));
        let result = match body {
            Some(body) => request.send_json(body.clone()),
            None => request.call(),
        };
        let response = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => bail!("cannot reach tollgate at {}: {e}", self.base),
        };
        let status = response.status();
        let text = response.into_string().unwrap_or_default();
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }
}

fn api_error(status: u16, body: &Value) -> anyhow::Error {
    anyhow::anyhow!(
        "{} (HTTP {status})",
        body["error"]["message"]
            .as_str()
            .unwrap_or("unexpected answer")
    )
}

pub fn ban_list(client: &Client, json: bool) -> Result<ExitCode> {
    let (status, body) = client.send("GET", "/v1/bans", None)?;
    if status != 200 {
        return Err(api_error(status, &body));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(ExitCode::SUCCESS);
    }
    let bans = body["bans"].as_array().cloned().unwrap_or_default();
    if bans.is_empty() {
        println!("no bans in force");
    }
    for ban in bans {
        println!(
            "{:<20} until {:<28} {}: {}",
            ban["target"].as_str().unwrap_or(""),
            ban["expires_at"].as_str().unwrap_or("lifted by hand"),
            ban["rule"].as_str().unwrap_or(""),
            ban["reason"].as_str().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn ban_add(
    client: &Client,
    target: &str,
    duration_s: Option<u64>,
    reason: Option<String>,
) -> Result<ExitCode> {
    let body = serde_json::json!({ "target": target, "duration_s": duration_s, "reason": reason });
    let (status, answer) = client.send("POST", "/v1/bans", Some(&body))?;
    if status != 201 {
        return Err(api_error(status, &answer));
    }
    println!(
        "banned {} until {}",
        answer["ban"]["target"].as_str().unwrap_or(target),
        answer["ban"]["expires_at"]
            .as_str()
            .unwrap_or("lifted by hand")
    );
    Ok(ExitCode::SUCCESS)
}

pub fn ban_del(client: &Client, target: &str) -> Result<ExitCode> {
    let path = format!("/v1/bans?target={}", target.replace('/', "%2F"));
    let (status, answer) = client.send("DELETE", &path, None)?;
    if status != 204 {
        return Err(api_error(status, &answer));
    }
    println!("lifted the ban of {target}");
    Ok(ExitCode::SUCCESS)
}

pub fn alerts_list(client: &Client, all: bool, json: bool) -> Result<ExitCode> {
    let path = if all {
        "/v1/alerts?state=all"
    } else {
        "/v1/alerts"
    };
    let (status, body) = client.send("GET", path, None)?;
    if status != 200 {
        return Err(api_error(status, &body));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(ExitCode::SUCCESS);
    }
    let alerts = body["alerts"].as_array().cloned().unwrap_or_default();
    if alerts.is_empty() {
        println!("{}", if all { "no alerts" } else { "no open alerts" });
    }
    for alert in alerts {
        let state = if alert["open"] == true {
            if alert["acknowledged_by"].is_string() {
                "open, acked"
            } else {
                "open"
            }
        } else {
            "closed"
        };
        println!(
            "#{:<5} {:<8} {:<12} {}  {}",
            alert["id"],
            alert["severity"].as_str().unwrap_or(""),
            state,
            alert["opened_at"].as_str().unwrap_or(""),
            alert["summary"].as_str().unwrap_or("")
        );
        for action in alert["actions"].as_array().into_iter().flatten() {
            println!("       -> {}", action.as_str().unwrap_or(""));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn alerts_ack(client: &Client, id: u64, by: String) -> Result<ExitCode> {
    let body = serde_json::json!({ "by": by });
    let (status, answer) = client.send("POST", &format!("/v1/alerts/{id}/ack"), Some(&body))?;
    if status != 200 {
        return Err(api_error(status, &answer));
    }
    println!("alert {id} acknowledged by {by}");
    Ok(ExitCode::SUCCESS)
}

pub fn suspensions_list(client: &Client, json: bool) -> Result<ExitCode> {
    let (status, body) = client.send("GET", "/v1/suspensions", None)?;
    if status != 200 {
        return Err(api_error(status, &body));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(ExitCode::SUCCESS);
    }
    let list = body["suspensions"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("no suspensions in force");
    }
    for s in list {
        println!(
            "{:<24} by {:<5} until {:<28} {}",
            s["subject"].as_str().unwrap_or(""),
            s["by"].as_str().unwrap_or(""),
            s["until"].as_str().unwrap_or("lifted by hand"),
            s["reason"].as_str().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn suspension_lift(client: &Client, kind: &str, id: &str) -> Result<ExitCode> {
    if kind != "extension" && kind != "account" {
        bail!("{kind:?}: expected `extension` or `account`");
    }
    let path = format!("/v1/suspensions/{kind}/{id}/lift");
    let (status, answer) = client.send("POST", &path, None)?;
    if status != 200 {
        return Err(api_error(status, &answer));
    }
    println!("lifted the suspension of {kind} {id}");
    Ok(ExitCode::SUCCESS)
}

/// The baseline nftables ruleset for the policy's trusted networks.
pub fn firewall_render(loaded: &Loaded) -> Result<ExitCode> {
    let firewall = &loaded.settings.firewall;
    if firewall.trusted.is_empty() {
        eprintln!(
            "warning: [firewall] trusted is empty: the ruleset would close SIP and RTP to everyone"
        );
    }
    let ruleset = tollgate_enforce::render_baseline(
        &firewall.trusted,
        &firewall.ports,
        firewall.rtp_ports,
        tollgate_enforce::BASELINE_TABLE,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    print!("{ruleset}");
    Ok(ExitCode::SUCCESS)
}
