//! The `[hangup]` settings as an operator writes them in the policy file, and
//! [`HangupConfig::build`], which checks them, reads the secret files and makes the
//! terminators.
//!
//! ```toml
//! [hangup]
//! timeout_s = 5                # the whole exchange with the PBX, per call (1..=60)
//! dry_run = false              # true: only log what would be ended (shadow mode)
//! kamailio = { url = "http://127.0.0.1:5071/RPC" }
//! asterisk_ami = { address = "127.0.0.1:5038", username = "tollgate", secret_file = "ami.secret" }
//! freeswitch_esl = { address = "127.0.0.1:8021", password_file = "esl.password" }
//! ```
//!
//! Addresses are an IP address and a port (no host names: a DNS lookup has no timeout the
//! kill switch could bound). Relative secret file paths are relative to the policy file's
//! folder once [`HangupConfig::resolve_paths`] has run (the policy loader does it).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::ami::AmiTerminator;
use crate::dry_run::DryRun;
use crate::error::HangupError;
use crate::esl::EslTerminator;
use crate::kamailio::KamailioTerminator;
use crate::secret::read_secret_file;
use crate::CallTerminator;

/// The `[hangup]` section. With no adapter configured, [`HangupConfig::build`] makes none
/// (tollgate cannot end calls in progress and says so at start).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HangupConfig {
    /// The most one hangup may take, connection, login and answer included (seconds).
    #[serde(default = "default_timeout_s")]
    pub timeout_s: u64,
    /// Only log what would be ended (shadow mode); the adapters' settings are still checked
    /// and their secret files read.
    #[serde(default)]
    pub dry_run: bool,
    pub kamailio: Option<KamailioSettings>,
    pub asterisk_ami: Option<AmiSettings>,
    pub freeswitch_esl: Option<EslSettings>,
}

impl Default for HangupConfig {
    fn default() -> Self {
        HangupConfig {
            timeout_s: default_timeout_s(),
            dry_run: false,
            kamailio: None,
            asterisk_ami: None,
            freeswitch_esl: None,
        }
    }
}

/// Kamailio's JSON-RPC endpoint (`jsonrpcs` over `xhttp`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KamailioSettings {
    /// The URL `jsonrpc_dispatch()` answers, e.g. `http://127.0.0.1:5071/RPC` (plain
    /// `http://` with an IP address: keep it on loopback or a management network).
    pub url: String,
}

/// The Asterisk Manager Interface.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmiSettings {
    /// `IP:port` of the manager (`manager.conf` `bindaddr`/`port`, default 5038).
    pub address: SocketAddr,
    /// The `manager.conf` user (needs `write = call` for Hangup).
    pub username: String,
    /// A file holding its secret.
    pub secret_file: PathBuf,
}

/// FreeSWITCH's event socket (`mod_event_socket`, inbound).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EslSettings {
    /// `IP:port` of the event socket (`event_socket.conf.xml`, default 8021).
    pub address: SocketAddr,
    /// A file holding its password.
    pub password_file: PathBuf,
}

// Only paths here, but keep the secrets' files visible and nothing else.
impl std::fmt::Debug for AmiSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmiSettings")
            .field("address", &self.address)
            .field("username", &self.username)
            .field("secret_file", &self.secret_file)
            .finish()
    }
}

impl std::fmt::Debug for EslSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EslSettings")
            .field("address", &self.address)
            .field("password_file", &self.password_file)
            .finish()
    }
}

fn default_timeout_s() -> u64 {
    5
}

/// The longest timeout accepted: a kill switch that waits longer is not one.
const MAX_TIMEOUT_S: u64 = 60;

impl HangupConfig {
    /// Makes relative secret file paths relative to `base_dir` (the policy file's folder).
    pub fn resolve_paths(&mut self, base_dir: &Path) {
        if let Some(ami) = &mut self.asterisk_ami {
            ami.secret_file = base_dir.join(&ami.secret_file);
        }
        if let Some(esl) = &mut self.freeswitch_esl {
            esl.password_file = base_dir.join(&esl.password_file);
        }
    }

    /// The timeout of one hangup.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_s)
    }

    /// Checks the settings, reads the secret files and makes the configured terminators,
    /// in the order kamailio, asterisk_ami, freeswitch_esl. With `dry_run`, a single
    /// [`DryRun`] instead (after the same checks). Every problem found is an error here, at
    /// start, rather than at the first hangup.
    pub fn build(&self) -> Result<Vec<Arc<dyn CallTerminator>>, HangupError> {
        if self.timeout_s == 0 || self.timeout_s > MAX_TIMEOUT_S {
            return Err(HangupError::invalid(
                "timeout_s",
                format!(
                    "{} is out of range (1 to {MAX_TIMEOUT_S} seconds)",
                    self.timeout_s
                ),
            ));
        }
        let timeout = self.timeout();
        let mut built: Vec<Arc<dyn CallTerminator>> = Vec::new();
        if let Some(k) = &self.kamailio {
            built.push(Arc::new(KamailioTerminator::new(&k.url, timeout)?));
        }
        if let Some(ami) = &self.asterisk_ami {
            let secret = read_secret_file("asterisk_ami.secret_file", &ami.secret_file)?;
            built.push(Arc::new(AmiTerminator::new(
                ami.address,
                &ami.username,
                secret,
                timeout,
            )?));
        }
        if let Some(esl) = &self.freeswitch_esl {
            let password = read_secret_file("freeswitch_esl.password_file", &esl.password_file)?;
            built.push(Arc::new(EslTerminator::new(esl.address, password, timeout)));
        }
        if self.dry_run {
            let names = built.iter().map(|t| t.name().to_owned()).collect();
            return Ok(vec![Arc::new(DryRun::new(names))]);
        }
        Ok(built)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn parse(text: &str) -> Result<HangupConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn reads_the_documented_example() {
        let config = parse(
            r#"
timeout_s = 3
kamailio = { url = "http://127.0.0.1:5071/RPC" }
asterisk_ami = { address = "127.0.0.1:5038", username = "tollgate", secret_file = "ami.secret" }
freeswitch_esl = { address = "127.0.0.1:8021", password_file = "esl.password" }
"#,
        )
        .unwrap();
        assert_eq!(config.timeout_s, 3);
        assert!(!config.dry_run);
        assert_eq!(
            config.kamailio.as_ref().unwrap().url,
            "http://127.0.0.1:5071/RPC"
        );
        let ami = config.asterisk_ami.as_ref().unwrap();
        assert_eq!(ami.address, "127.0.0.1:5038".parse().unwrap());
        assert_eq!(ami.secret_file, PathBuf::from("ami.secret"));
        let esl = config.freeswitch_esl.as_ref().unwrap();
        assert_eq!(esl.address, "127.0.0.1:8021".parse().unwrap());

        let empty = parse("").unwrap();
        assert_eq!(empty, HangupConfig::default());
        assert_eq!(empty.timeout_s, 5);
    }

    #[test]
    fn refuses_unknown_keys_and_host_names() {
        let err = parse("kamailio = { url = \"http://x\", secret = \"y\" }").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        let err = parse("timeout = 3").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        let err = parse(
            "asterisk_ami = { address = \"pbx.example.com:5038\", username = \"u\", secret_file = \"s\" }",
        )
        .unwrap_err();
        assert!(err.to_string().contains("address"), "{err}");
    }

    #[test]
    fn builds_each_adapter_and_reads_the_secrets() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ami.secret"), "ami-pass\n").unwrap();
        std::fs::write(dir.path().join("esl.password"), "ClueCon\n").unwrap();
        let mut config = parse(
            r#"
kamailio = { url = "http://127.0.0.1:5071/RPC" }
asterisk_ami = { address = "127.0.0.1:5038", username = "tollgate", secret_file = "ami.secret" }
freeswitch_esl = { address = "127.0.0.1:8021", password_file = "esl.password" }
"#,
        )
        .unwrap();
        config.resolve_paths(dir.path());
        let built = config.build().unwrap();
        let names: Vec<&str> = built.iter().map(|t| t.name()).collect();
        assert_eq!(names, ["kamailio", "asterisk_ami", "freeswitch_esl"]);

        config.dry_run = true;
        let built = config.build().unwrap();
        let names: Vec<&str> = built.iter().map(|t| t.name()).collect();
        assert_eq!(names, ["dry_run"]);
    }

    #[test]
    fn refuses_bad_values_at_build() {
        let config = HangupConfig {
            timeout_s: 0,
            ..HangupConfig::default()
        };
        let err = config.build().err().unwrap();
        assert!(err.to_string().starts_with("hangup.timeout_s: "), "{err}");

        let config = HangupConfig {
            kamailio: Some(KamailioSettings {
                url: "https://127.0.0.1:5071/RPC".into(),
            }),
            ..HangupConfig::default()
        };
        let err = config.build().err().unwrap();
        assert!(
            err.to_string().starts_with("hangup.kamailio.url: "),
            "{err}"
        );

        let dir = tempfile::tempdir().unwrap();
        let config = HangupConfig {
            asterisk_ami: Some(AmiSettings {
                address: "127.0.0.1:5038".parse().unwrap(),
                username: "tollgate".into(),
                secret_file: dir.path().join("missing"),
            }),
            ..HangupConfig::default()
        };
        let err = config.build().err().unwrap();
        assert!(
            err.to_string()
                .starts_with("hangup.asterisk_ami.secret_file: cannot read"),
            "{err}"
        );
    }
}
