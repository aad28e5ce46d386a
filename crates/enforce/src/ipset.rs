//! The iptables + ipset backend, for hosts that manage their firewall with iptables.
//!
//! ```text
//! ipset create tollgate-v4 hash:net family inet  timeout 0 comment maxelem 65536
//! ipset create tollgate-v6 hash:net family inet6 timeout 0 comment maxelem 65536
//! iptables  -N TOLLGATE
//! iptables  -A TOLLGATE -p udp -m multiport --dports 5060,5061 -m set --match-set tollgate-v4 src -j DROP
//! iptables  -A TOLLGATE -p tcp -m multiport --dports 5060,5061 -m set --match-set tollgate-v4 src -j DROP
//! iptables  -I INPUT 1 -j TOLLGATE
//! (and the same with ip6tables and tollgate-v6)
//! ```
//!
//! `hash:net` holds single addresses and networks of any length side by side (unlike an
//! nftables interval set), each with its own timeout in whole seconds; `timeout 0` is
//! permanent. Re-adding with `-exist` replaces the timeout. ipset cannot hold a timeout above
//! 2,147,483 s (24.8 days): longer bans are applied with that maximum, and a periodic
//! [`Firewall::sync`] re-arms them. `hash:net` cannot hold a /0.
//!
//! Rules live in a chain of their own, jumped to first from INPUT, so that setup can replace
//! them (ports changed) and teardown can remove them without touching the operator's rules.

use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ipnet::IpNet;

use crate::exec::{self, Output};
use crate::nft::check_ports;
use crate::{
    canonical, ceil_secs, plan, sanitize_comment, BanEntry, EnforceError, Firewall, Lifetime,
    Listing, DEFAULT_PORTS,
};

const BACKEND: &str = "ipset";

/// ipset's longest timeout.
pub const IPSET_MAX_TIMEOUT: Duration = Duration::from_secs(2_147_483);

/// Configuration of [`IpsetFirewall`]. Each command is an argv prefix, like
/// [`NftConfig::command`](crate::NftConfig::command).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpsetConfig {
    pub ipset: Vec<String>,
    pub iptables: Vec<String>,
    pub ip6tables: Vec<String>,
    pub set_v4: String,
    pub set_v6: String,
    /// The iptables chain tollgate owns.
    pub chain: String,
    /// Destination ports (UDP and TCP); at most 15, the `multiport` limit.
    pub ports: Vec<u16>,
    /// The most entries per set.
    pub maxelem: u32,
    /// How long one command may take before it is killed.
    pub timeout: Duration,
}

impl Default for IpsetConfig {
    fn default() -> Self {
        Self {
            ipset: vec!["ipset".into()],
            iptables: vec!["iptables".into()],
            ip6tables: vec!["ip6tables".into()],
            set_v4: "tollgate-v4".into(),
            set_v6: "tollgate-v6".into(),
            chain: "TOLLGATE".into(),
            ports: DEFAULT_PORTS.to_vec(),
            maxelem: 65_536,
            timeout: Duration::from_secs(10),
        }
    }
}

/// The iptables + ipset adapter. See the module documentation.
#[derive(Debug)]
pub struct IpsetFirewall {
    cfg: IpsetConfig,
}

fn check_name(what: &str, name: &str, max: usize) -> Result<(), EnforceError> {
    let ok = !name.is_empty()
        && name.len() <= max
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(EnforceError::Config {
            backend: BACKEND,
            reason: format!(
                "{what} '{name}' must start with a letter and hold only letters, digits, '_' and '-' ({max} at most)"
            ),
        })
    }
}

impl IpsetFirewall {
    pub fn new(mut cfg: IpsetConfig) -> Result<Self, EnforceError> {
        for (what, argv) in [
            ("ipset", &cfg.ipset),
            ("iptables", &cfg.iptables),
            ("ip6tables", &cfg.ip6tables),
        ] {
            if argv.is_empty() || argv.iter().any(String::is_empty) {
                return Err(EnforceError::Config {
                    backend: BACKEND,
                    reason: format!(
                        "the {what} command must be a non-empty argv without empty arguments"
                    ),
                });
            }
        }
        // ipset names hold 31 characters, iptables chains 28.
        check_name("set name", &cfg.set_v4, 31)?;
        check_name("set name", &cfg.set_v6, 31)?;
        check_name("chain", &cfg.chain, 28)?;
        cfg.ports = check_ports(BACKEND, &cfg.ports)?;
        if cfg.ports.len() > 15 {
            return Err(EnforceError::Config {
                backend: BACKEND,
                reason: format!(
                    "iptables multiport takes 15 ports at most, not {}",
                    cfg.ports.len()
                ),
            });
        }
        if cfg.timeout.is_zero() || cfg.maxelem == 0 {
            return Err(EnforceError::Config {
                backend: BACKEND,
                reason: "the command timeout and maxelem must be above zero".into(),
            });
        }
        Ok(Self { cfg })
    }

    fn run(
        &self,
        prefix: &[String],
        args: &[&str],
        stdin: Option<String>,
    ) -> Result<Output, EnforceError> {
        exec::run(
            &argv(prefix, args),
            stdin.map(String::into_bytes),
            self.cfg.timeout,
        )
    }

    /// True when the command succeeds (for probes: does this chain, rule, set exist?).
    fn probe(&self, prefix: &[String], args: &[&str]) -> Result<bool, EnforceError> {
        let (status, _) = exec::run_status(&argv(prefix, args), None, self.cfg.timeout)?;
        Ok(status.success())
    }

    fn families(&self) -> [(&[String], &str, &'static str); 2] {
        [
            (&self.cfg.iptables, &self.cfg.set_v4, "inet"),
            (&self.cfg.ip6tables, &self.cfg.set_v6, "inet6"),
        ]
    }

    fn set_for(&self, net: &IpNet) -> &str {
        match net {
            IpNet::V4(_) => &self.cfg.set_v4,
            IpNet::V6(_) => &self.cfg.set_v6,
        }
    }

    /// The `ipset restore` line for one canonical, live entry; `-exist` on the command line
    /// makes it replace the timeout of an entry already held.
    fn add_line(
        &self,
        s: &mut String,
        entry: &BanEntry,
        lifetime: Lifetime,
    ) -> Result<(), EnforceError> {
        check_net(&entry.net)?;
        let secs = ipset_secs(lifetime);
        let _ = write!(
            s,
            "add {} {} timeout {secs}",
            self.set_for(&entry.net),
            entry.net
        );
        let comment = sanitize_comment(&entry.comment);
        if !comment.is_empty() {
            let _ = write!(s, " comment \"{comment}\"");
        }
        s.push('\n');
        Ok(())
    }

    fn restore(&self, script: String) -> Result<(), EnforceError> {
        self.run(&self.cfg.ipset, &["-exist", "restore"], Some(script))
            .map(|_| ())
    }
}

fn check_net(net: &IpNet) -> Result<(), EnforceError> {
    if net.prefix_len() == 0 {
        return Err(EnforceError::Unsupported {
            backend: BACKEND,
            net: *net,
            reason: "hash:net cannot hold a /0".into(),
        });
    }
    Ok(())
}

/// ipset's timeout for a lifetime: whole seconds, clamped, 0 for permanent.
fn ipset_secs(lifetime: Lifetime) -> u64 {
    match lifetime {
        Lifetime::Remaining(d) => ceil_secs(d.min(IPSET_MAX_TIMEOUT)),
        _ => 0,
    }
}

fn argv(prefix: &[String], args: &[&str]) -> Vec<String> {
    let mut v = prefix.to_vec();
    v.extend(args.iter().map(|a| a.to_string()));
    v
}

impl Firewall for IpsetFirewall {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn setup(&mut self) -> Result<(), EnforceError> {
        let maxelem = self.cfg.maxelem.to_string();
        let ports = self
            .cfg
            .ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let chain = self.cfg.chain.clone();
        for (tables, set, family) in self.families() {
            self.run(
                &self.cfg.ipset,
                &[
                    "-exist", "create", set, "hash:net", "family", family, "timeout", "0",
                    "comment", "maxelem", &maxelem,
                ],
                None,
            )?;
            if !self.probe(tables, &["-w", "-n", "-L", &chain])? {
                self.run(tables, &["-w", "-N", &chain], None)?;
            }
            self.run(tables, &["-w", "-F", &chain], None)?;
            for proto in ["udp", "tcp"] {
                self.run(
                    tables,
                    &[
                        "-w",
                        "-A",
                        &chain,
                        "-p",
                        proto,
                        "-m",
                        "multiport",
                        "--dports",
                        &ports,
                        "-m",
                        "set",
                        "--match-set",
                        set,
                        "src",
                        "-j",
                        "DROP",
                    ],
                    None,
                )?;
            }
            if !self.probe(tables, &["-w", "-C", "INPUT", "-j", &chain])? {
                self.run(tables, &["-w", "-I", "INPUT", "1", "-j", &chain], None)?;
            }
        }
        tracing::info!(target: "tollgate::enforce", backend = BACKEND, chain = %chain, ports = %ports, "firewall sets ready");
        Ok(())
    }

    fn ban(&mut self, entry: &BanEntry, now: DateTime<Utc>) -> Result<(), EnforceError> {
        let entry = BanEntry {
            net: canonical(entry.net),
            ..entry.clone()
        };
        let lifetime = entry.lifetime(now);
        if lifetime == Lifetime::Expired {
            tracing::debug!(target: "tollgate::enforce", backend = BACKEND, net = %entry.net, "ban already expired, not applied");
            return Ok(());
        }
        check_net(&entry.net)?;
        // One `ipset add` with its arguments as argv (the comment is one argument).
        let secs = ipset_secs(lifetime).to_string();
        let net = entry.net.to_string();
        let comment = sanitize_comment(&entry.comment);
        let mut args = vec![
            "-exist",
            "add",
            self.set_for(&entry.net),
            &net,
            "timeout",
            &secs,
        ];
        if !comment.is_empty() {
            args.extend(["comment", &comment]);
        }
        self.run(&self.cfg.ipset, &args, None).map(|_| ())
    }

    fn ban_many(&mut self, entries: &[BanEntry], now: DateTime<Utc>) -> Result<(), EnforceError> {
        let mut script = String::new();
        for entry in plan::dedup(entries, now) {
            self.add_line(&mut script, &entry, entry.lifetime(now))?;
        }
        if script.is_empty() {
            return Ok(());
        }
        self.restore(script)
    }

    fn unban(&mut self, net: IpNet) -> Result<(), EnforceError> {
        let net = canonical(net);
        // `-exist`: deleting an entry that is not there is not an error.
        self.run(
            &self.cfg.ipset,
            &["-exist", "del", self.set_for(&net), &net.to_string()],
            None,
        )
        .map(|_| ())
    }

    fn unban_many(&mut self, nets: &[IpNet]) -> Result<(), EnforceError> {
        let mut script = String::new();
        for net in nets.iter().map(|n| canonical(*n)) {
            let _ = writeln!(script, "del {} {net}", self.set_for(&net));
        }
        if script.is_empty() {
            return Ok(());
        }
        self.restore(script)
    }

    fn list(&mut self) -> Result<Listing, EnforceError> {
        let mut out = Vec::new();
        for set in [&self.cfg.set_v4, &self.cfg.set_v6] {
            let argv = argv(&self.cfg.ipset, &["save", set]);
            let text = exec::run(&argv, None, self.cfg.timeout)?.stdout;
            let text = String::from_utf8_lossy(&text);
            out.extend(
                parse_save(&text, set).map_err(|reason| EnforceError::Parse {
                    command: exec::display(&argv),
                    reason,
                })?,
            );
        }
        Ok(out)
    }

    fn teardown(&mut self) -> Result<(), EnforceError> {
        let chain = self.cfg.chain.clone();
        for (tables, set, _) in self.families() {
            // Remove every jump (a setup racing another could have inserted two).
            while self.probe(tables, &["-w", "-C", "INPUT", "-j", &chain])? {
                self.run(tables, &["-w", "-D", "INPUT", "-j", &chain], None)?;
            }
            if self.probe(tables, &["-w", "-n", "-L", &chain])? {
                self.run(tables, &["-w", "-F", &chain], None)?;
                self.run(tables, &["-w", "-X", &chain], None)?;
            }
            if self.probe(&self.cfg.ipset, &["list", "-n", set])? {
                self.run(&self.cfg.ipset, &["destroy", set], None)?;
            }
        }
        tracing::info!(target: "tollgate::enforce", backend = BACKEND, chain = %chain, "firewall sets removed");
        Ok(())
    }

    fn max_timeout(&self) -> Option<Duration> {
        Some(IPSET_MAX_TIMEOUT)
    }
}

/// Reads `ipset save SET`: `add SET 10.0.0.0/24 timeout 55 comment "x"` lines (single
/// addresses without `/32`); `timeout 0` is permanent.
pub(crate) fn parse_save(text: &str, set: &str) -> Result<Listing, String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("add") || words.next() != Some(set) {
            continue;
        }
        let elem = words
            .next()
            .ok_or_else(|| format!("no element in '{line}'"))?;
        let net: IpNet = match elem.parse::<IpNet>() {
            Ok(n) => n,
            Err(_) => crate::host_net(elem.parse().map_err(|_| format!("bad element '{elem}'"))?),
        };
        let mut remaining = None;
        while let Some(w) = words.next() {
            if w == "timeout" {
                let secs: u64 = words
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| format!("bad timeout in '{line}'"))?;
                remaining = (secs > 0).then(|| Duration::from_secs(secs));
                break;
            }
        }
        out.push((canonical(net), remaining));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ipset_save() {
        let text = "create tollgate-v4 hash:net family inet hashsize 1024 maxelem 65536 timeout 0 comment bucketsize 12 initval 0x76e786fa\n\
                    add tollgate-v4 10.0.0.5 timeout 0\n\
                    add tollgate-v4 10.0.0.0/24 timeout 29 comment \"x y\"\n\
                    add tollgate-v4 10.0.0.6 timeout 2147483\n";
        let l = parse_save(text, "tollgate-v4").unwrap();
        assert_eq!(
            l,
            vec![
                ("10.0.0.5/32".parse().unwrap(), None),
                (
                    "10.0.0.0/24".parse().unwrap(),
                    Some(Duration::from_secs(29))
                ),
                (
                    "10.0.0.6/32".parse().unwrap(),
                    Some(Duration::from_secs(2_147_483))
                ),
            ]
        );
        assert!(parse_save("add tollgate-v4 nonsense\n", "tollgate-v4").is_err());
    }

    #[test]
    fn config_is_checked() {
        let mut c = IpsetConfig {
            chain: "TOLLGATE; rm".into(),
            ..IpsetConfig::default()
        };
        assert!(IpsetFirewall::new(c.clone()).is_err());
        c.chain = "TOLLGATE".into();
        c.ports = (1..=16).collect();
        assert!(IpsetFirewall::new(c)
            .unwrap_err()
            .to_string()
            .contains("15 ports"));
    }

    #[test]
    fn restore_lines_clamp_and_sanitize() {
        let fw = IpsetFirewall::new(IpsetConfig::default()).unwrap();
        let mut s = String::new();
        let e = BanEntry::new("2001:db8::/64".parse().unwrap(), None, "jail \"a\"\nb");
        fw.add_line(
            &mut s,
            &e,
            Lifetime::Remaining(Duration::from_secs(90 * 86_400)),
        )
        .unwrap();
        assert_eq!(
            s,
            "add tollgate-v6 2001:db8::/64 timeout 2147483 comment \"jail a b\"\n"
        );
        let zero = BanEntry::new("0.0.0.0/0".parse().unwrap(), None, "");
        let err = fw.add_line(&mut s, &zero, Lifetime::Permanent).unwrap_err();
        assert!(err.is_entry_specific());
    }
}
