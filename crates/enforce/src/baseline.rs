//! The baseline ruleset: SIP and RTP open to trusted networks only.
//!
//! Where the ban sets drop known attackers, the baseline drops everyone who is not known to be
//! a friend: providers, customer sites, offices. `tollgate firewall render` prints it for the
//! operator to review and load (`nft -f FILE`); tollgate never loads it by itself.
//!
//! ```text
//! table inet tollgate_baseline {
//!     set trusted_v4 { type ipv4_addr; flags interval; auto-merge; elements = { ... } }
//!     set trusted_v6 { type ipv6_addr; flags interval; auto-merge; elements = { ... } }
//!     chain input {
//!         type filter hook input priority filter; policy accept;
//!         iif "lo" accept
//!         ct state established,related accept
//!         meta l4proto { udp, tcp } th dport { 5060, 5061 } ip saddr @trusted_v4 accept
//!         meta l4proto { udp, tcp } th dport { 5060, 5061 } ip6 saddr @trusted_v6 accept
//!         udp dport 10000-20000 ip saddr @trusted_v4 accept
//!         udp dport 10000-20000 ip6 saddr @trusted_v6 accept
//!         meta l4proto { udp, tcp } th dport { 5060, 5061 } counter drop
//!         udp dport 10000-20000 counter drop
//!     }
//! }
//! ```
//!
//! The chain's policy is accept and it matches only the SIP ports and the RTP range, so it
//! cannot lock an operator out of SSH or anything else. Established and related flows are
//! accepted so that answers to tollgate's own host (registrations toward a provider not
//! listed, RTP a call set up) still come in. It runs at priority `filter`, after tollgate's ban
//! chain (`filter - 10`): a banned address stays banned even if it is in a trusted network.
//!
//! The output starts with `table ...` / `flush table ...` so that loading it again replaces
//! the previous version instead of adding rules twice.

use std::fmt::Write as _;

use ipnet::IpNet;

use crate::nft::{check_identifier, check_ports, port_set};
use crate::{canonical, EnforceError};

const BACKEND: &str = "baseline";

/// The table name documented for the baseline.
pub const BASELINE_TABLE: &str = "tollgate_baseline";

/// Renders the baseline ruleset (see the module documentation) for `table` (family `inet`).
///
/// Returns an error rather than a string when an input cannot be written safely: a table name
/// that is not an identifier, a port 0 or an empty RTP range. An empty `trusted` list is
/// valid and closes SIP and RTP to everyone (but established flows).
pub fn render_baseline(
    trusted: &[IpNet],
    sip_ports: &[u16],
    rtp: (u16, u16),
    table: &str,
) -> Result<String, EnforceError> {
    check_identifier(BACKEND, "table", table)?;
    let ports = port_set(&check_ports(BACKEND, sip_ports)?);
    let (lo, hi) = rtp;
    if lo == 0 || lo > hi {
        return Err(EnforceError::Config {
            backend: BACKEND,
            reason: format!("the RTP range {lo}-{hi} must be 1-65535, low to high"),
        });
    }
    let rtp = if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}-{hi}")
    };
    let mut v4: Vec<IpNet> = Vec::new();
    let mut v6: Vec<IpNet> = Vec::new();
    for net in trusted.iter().map(|n| canonical(*n)) {
        match net {
            IpNet::V4(_) => v4.push(net),
            IpNet::V6(_) => v6.push(net),
        }
    }
    for list in [&mut v4, &mut v6] {
        list.sort_unstable();
        list.dedup();
    }

    let mut s = String::new();
    let _ = writeln!(s, "# tollgate baseline: SIP {ports} (UDP/TCP) and RTP {rtp} (UDP) only from trusted networks.");
    let _ = writeln!(
        s,
        "# Everything else passes (policy accept): this table cannot lock you out of SSH."
    );
    let _ = writeln!(s, "# Load with `nft -f FILE`; loading again replaces it.");
    let _ = writeln!(s, "table inet {table}");
    let _ = writeln!(s, "flush table inet {table}");
    let _ = writeln!(s, "table inet {table} {{");
    for (name, ty, nets) in [
        ("trusted_v4", "ipv4_addr", &v4),
        ("trusted_v6", "ipv6_addr", &v6),
    ] {
        let _ = writeln!(s, "\tset {name} {{");
        let _ = writeln!(s, "\t\ttype {ty}");
        // auto-merge: overlapping trusted networks (10.0.0.0/8 and 10.1.0.0/16) are fine.
        let _ = writeln!(s, "\t\tflags interval");
        let _ = writeln!(s, "\t\tauto-merge");
        if !nets.is_empty() {
            let list = nets
                .iter()
                .map(IpNet::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(s, "\t\telements = {{ {list} }}");
        }
        let _ = writeln!(s, "\t}}");
    }
    let _ = writeln!(s, "\tchain input {{");
    let _ = writeln!(
        s,
        "\t\ttype filter hook input priority filter; policy accept;"
    );
    let _ = writeln!(s, "\t\tiif \"lo\" accept");
    let _ = writeln!(s, "\t\tct state established,related accept");
    let sip = format!("meta l4proto {{ udp, tcp }} th dport {ports}");
    let rtp = format!("udp dport {rtp}");
    for m in [&sip, &rtp] {
        let _ = writeln!(s, "\t\t{m} ip saddr @trusted_v4 accept");
        let _ = writeln!(s, "\t\t{m} ip6 saddr @trusted_v6 accept");
    }
    let _ = writeln!(s, "\t\t{sip} counter drop comment \"SIP from untrusted\"");
    let _ = writeln!(s, "\t\t{rtp} counter drop comment \"RTP from untrusted\"");
    let _ = writeln!(s, "\t}}");
    let _ = writeln!(s, "}}");
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(v: &[&str]) -> Vec<IpNet> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn renders_sets_and_rules() {
        let s = render_baseline(
            &nets(&[
                "203.0.113.7/32",
                "10.1.2.3/16",
                "2001:db8::/48",
                "::ffff:198.51.100.1/128",
                "10.1.0.0/16",
            ]),
            &[5060, 5061],
            (10000, 20000),
            BASELINE_TABLE,
        )
        .unwrap();
        assert!(
            s.contains("elements = { 10.1.0.0/16, 198.51.100.1/32, 203.0.113.7/32 }"),
            "{s}"
        );
        assert!(s.contains("elements = { 2001:db8::/48 }"), "{s}");
        assert!(s.contains(
            "meta l4proto { udp, tcp } th dport { 5060, 5061 } ip saddr @trusted_v4 accept"
        ));
        assert!(s.contains("udp dport 10000-20000 ip6 saddr @trusted_v6 accept"));
        assert!(s.contains("udp dport 10000-20000 counter drop"));
        assert!(s.contains("policy accept;"));
    }

    #[test]
    fn empty_trusted_lists_render_sets_without_elements() {
        let s = render_baseline(&[], &[5060], (4000, 4000), "b").unwrap();
        assert!(!s.contains("elements"));
        assert!(s.contains("udp dport 4000 counter drop"));
    }

    #[test]
    fn bad_inputs_are_refused() {
        assert!(render_baseline(&[], &[5060], (1, 2), "x; flush ruleset").is_err());
        assert!(render_baseline(&[], &[0], (1, 2), "t").is_err());
        assert!(render_baseline(&[], &[5060], (20000, 10000), "t").is_err());
        assert!(render_baseline(&[], &[5060], (0, 10), "t").is_err());
    }
}
