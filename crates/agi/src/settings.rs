//! The `[agi]` settings: where the FastAGI server listens, who may connect, how long it
//! waits. Someone else embeds [`AgiSettings`] in the policy file, so it refuses unknown keys
//! and every key has a default.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use crate::error::SettingsError;

/// The FastAGI server's settings.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgiSettings {
    /// Where to listen. Default `127.0.0.1:4573` (4573 is FastAGI's port). FastAGI has no
    /// authentication and no encryption: listen on loopback or a private network only.
    pub listen: SocketAddr,
    /// Who may connect: a peer outside every network here is disconnected at once. Default
    /// loopback only. Anyone who can connect can ask decisions and report the end of any
    /// call id, so list only the Asterisk hosts.
    pub allowed_peers: Vec<IpNet>,
    /// How long the handler may take to decide (or record an end) before the dialplan is
    /// told `TOLLGATE_DECISION=error`. Default 2000 ms.
    pub decision_timeout_ms: u64,
    /// How long Asterisk may take to send its whole environment block, and to answer each
    /// command. Default 5000 ms.
    pub read_timeout_ms: u64,
    /// The most a connection may last, whatever happens in it. Default 30000 ms.
    pub session_timeout_ms: u64,
    /// The most connections served at once; one more is closed at once (Asterisk then goes
    /// on with no decision set: fail-closed in the example dialplan). Default 256.
    pub max_connections: usize,
}

impl Default for AgiSettings {
    fn default() -> AgiSettings {
        AgiSettings {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 4573),
            allowed_peers: vec![
                IpNet::new_assert(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8),
                IpNet::new_assert(IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
            ],
            decision_timeout_ms: 2000,
            read_timeout_ms: 5000,
            session_timeout_ms: 30_000,
            max_connections: 256,
        }
    }
}

/// The longest any timeout may be set to.
const MAX_TIMEOUT_MS: u64 = 600_000;

impl AgiSettings {
    /// Checks that the settings can work: timeouts between 1 ms and 10 minutes, the session
    /// longer than a decision, between 1 and 65536 connections.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |field, problem: String| Err(SettingsError::Invalid { field, problem });
        for (field, value) in [
            ("decision_timeout_ms", self.decision_timeout_ms),
            ("read_timeout_ms", self.read_timeout_ms),
            ("session_timeout_ms", self.session_timeout_ms),
        ] {
            if value == 0 || value > MAX_TIMEOUT_MS {
                return invalid(
                    field,
                    format!("{value} is not between 1 and {MAX_TIMEOUT_MS}"),
                );
            }
        }
        if self.session_timeout_ms <= self.decision_timeout_ms {
            return invalid(
                "session_timeout_ms",
                format!(
                    "{} must be longer than decision_timeout_ms ({})",
                    self.session_timeout_ms, self.decision_timeout_ms
                ),
            );
        }
        if self.max_connections == 0 || self.max_connections > 65_536 {
            return invalid(
                "max_connections",
                format!("{} is not between 1 and 65536", self.max_connections),
            );
        }
        Ok(())
    }

    /// Whether `peer` may connect.
    pub fn allows(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.allowed_peers.iter().any(|net| net.contains(&peer))
    }

    pub fn decision_timeout(&self) -> Duration {
        Duration::from_millis(self.decision_timeout_ms)
    }

    pub fn read_timeout(&self) -> Duration {
        Duration::from_millis(self.read_timeout_ms)
    }

    pub fn session_timeout(&self) -> Duration {
        Duration::from_millis(self.session_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn defaults_are_loopback_and_valid() {
        let s = AgiSettings::default();
        assert_eq!(s.listen.to_string(), "127.0.0.1:4573");
        s.validate().unwrap();
        assert!(s.allows("127.0.0.1".parse().unwrap()));
        assert!(s.allows("::1".parse().unwrap()));
        assert!(s.allows("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!s.allows("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn deserializes_with_defaults_and_refuses_unknown_keys() {
        let s: AgiSettings = toml::from_str(
            "listen = \"0.0.0.0:4573\"\nallowed_peers = [\"10.0.0.5/32\"]\ndecision_timeout_ms = 500\n",
        )
        .unwrap();
        assert_eq!(s.decision_timeout_ms, 500);
        assert_eq!(s.max_connections, 256);
        assert!(s.allows("10.0.0.5".parse().unwrap()));
        assert!(!s.allows("127.0.0.1".parse().unwrap()));
        let err = toml::from_str::<AgiSettings>("listen_on = \"0.0.0.0:4573\"\n").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        assert_eq!(
            toml::from_str::<AgiSettings>("").unwrap(),
            AgiSettings::default()
        );
    }

    #[test]
    fn refuses_settings_that_cannot_work() {
        for bad in [
            AgiSettings {
                decision_timeout_ms: 0,
                ..AgiSettings::default()
            },
            AgiSettings {
                read_timeout_ms: MAX_TIMEOUT_MS + 1,
                ..AgiSettings::default()
            },
            AgiSettings {
                session_timeout_ms: 2000,
                ..AgiSettings::default()
            },
            AgiSettings {
                max_connections: 0,
                ..AgiSettings::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
