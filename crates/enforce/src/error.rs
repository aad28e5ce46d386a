//! The one error type of this crate: every failure names the command it ran and what that
//! command said, so an operator can rerun it by hand.

use std::time::Duration;

use ipnet::IpNet;

/// What went wrong while carrying out a ban, an unban or a listing.
#[derive(Debug, thiserror::Error)]
pub enum EnforceError {
    /// The backend's configuration cannot work (empty argv, bad table name, port 0, ...).
    #[error("invalid {backend} configuration: {reason}")]
    Config {
        backend: &'static str,
        reason: String,
    },
    /// The program could not be started at all (missing binary, permissions).
    #[error("could not run `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    /// The program ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    /// The program did not finish in time and was killed.
    #[error("`{command}` did not finish within {timeout:?} and was killed")]
    Timeout { command: String, timeout: Duration },
    /// The program's output was not what we expected.
    #[error("could not understand the output of `{command}`: {reason}")]
    Parse { command: String, reason: String },
    /// nftables refuses a network that overlaps another one in the same interval set (for
    /// example a /16 over an existing /24): interval sets hold disjoint ranges only.
    #[error("{net} overlaps a network already in nftables set '{set}': {stderr}")]
    Overlap {
        net: IpNet,
        set: String,
        stderr: String,
    },
    /// The backend cannot represent this ban (ipset's hash:net cannot hold a /0).
    #[error("{backend} cannot hold {net}: {reason}")]
    Unsupported {
        backend: &'static str,
        net: IpNet,
        reason: String,
    },
}

impl EnforceError {
    /// True when the error concerns one entry only, so a batch can go on without it.
    pub fn is_entry_specific(&self) -> bool {
        matches!(self, Self::Overlap { .. } | Self::Unsupported { .. })
    }
}
