//! Access control lists and what an extension's ACLs really let in.
//!
//! This module owns the meaning of permit/deny rules: the named ACLs read from Asterisk's
//! `acl.conf` and FreeSWITCH's `acl.conf.xml` (an [`AclSet`]), an extension's own rules
//! (pjsip/sip.conf `permit`/`deny`, FreeSWITCH `cidr`, CSV `permit`/`deny`), and the
//! resolution of both into an [`AclVerdict`]: the networks let in, as the fewest CIDRs, and
//! whether that keeps the internet out. It is pure set arithmetic over address ranges; the
//! importers fill it and the findings read it.
//!
//! The two PBXs decide differently, and each is modelled as it is:
//!
//! - Asterisk ([`Matching::LastMatch`]): the rules of one ACL are applied in order and the
//!   last one matching the address decides; an address no rule matches is permitted. So
//!   `permit=10.0.0.0/8` alone restricts nothing; `deny=0.0.0.0/0.0.0.0` first is needed.
//!   An IPv4 rule never matches an IPv6 address and the reverse. A `!` before an address
//!   inverts the rule. An extension's ACLs (its own permit/deny lines, each `acl=`, and the
//!   contact ACLs) must all let an address in.
//! - FreeSWITCH ([`Matching::MostSpecific`]): the matching node with the longest prefix
//!   decides (the first of equally long ones), a `/0` node never decides, and the list's
//!   `default` covers the rest. `rfc1918.auto`, `loopback.auto`, `wan*.auto` and
//!   `any_v*.auto` are built in; a list name with a `/` is read as a list of CIDRs.
//!
//! When is an extension restricted? When the public addresses its ACLs let in fit in a /8
//! of IPv4 ([`MAX_PUBLIC_V4`]) and a /32 of IPv6 ([`MAX_PUBLIC_V6`]); private, loopback,
//! link-local, shared (CGN), documentation and multicast ranges do not count. Only the
//! address families some rule mentions are judged: ACLs that speak only of IPv4 are taken
//! to be written for an IPv4-only PBX (an Asterisk IPv4 rule leaves IPv6 untouched, so this
//! is the one assumption the audit makes; the effective networks hold only those families).

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::LazyLock;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::inventory::{ImportProblem, ImportedExtension, Location, SourceKind};

/// At most this many public IPv4 addresses (a /8) may be let in for an ACL to count as a
/// restriction: anything wider lets in much of the internet.
pub const MAX_PUBLIC_V4: u128 = 1 << 24;
/// At most this many public IPv6 addresses (a /32, an ISP's allocation) may be let in.
pub const MAX_PUBLIC_V6: u128 = 1 << 96;

/// What a rule, or an ACL's default, does with a matching address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sense {
    Permit,
    Deny,
}

impl Sense {
    fn inverted(self) -> Sense {
        match self {
            Sense::Permit => Sense::Deny,
            Sense::Deny => Sense::Permit,
        }
    }
}

/// Which rule decides for an address several rules match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Matching {
    /// Asterisk: the last matching rule, in order.
    LastMatch,
    /// FreeSWITCH: the matching rule with the longest prefix (the first of equals); a `/0`
    /// rule never decides.
    MostSpecific,
}

/// One permit or deny line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclRule {
    pub sense: Sense,
    /// As written; host bits are ignored when the rule is applied.
    pub net: IpNet,
}

/// A list of rules with a default: a named ACL, or an extension's own permit/deny lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    /// The ACL's name; for an extension's own rules, the keys they come from
    /// ("permit/deny", "contact_permit/contact_deny", "cidr").
    pub name: String,
    /// `false` for an extension's own rules.
    pub named: bool,
    /// The section header, `<list>` element or record defining it.
    pub location: Location,
    pub matching: Matching,
    /// What happens to an address no rule decides.
    pub default: Sense,
    pub rules: Vec<AclRule>,
    /// Entries the audit cannot turn into networks (a FreeSWITCH `domain=` node, a list
    /// that depends on the host's own address). If any, what the ACL lets in is unknown.
    pub unresolved: Vec<String>,
}

impl Acl {
    /// An Asterisk ACL: rules in order, the last match wins, default permit.
    pub fn asterisk(name: impl Into<String>, named: bool, location: Location) -> Self {
        Acl {
            name: name.into(),
            named,
            location,
            matching: Matching::LastMatch,
            default: Sense::Permit,
            rules: Vec::new(),
            unresolved: Vec::new(),
        }
    }

    /// A FreeSWITCH network list: the most specific node wins, else `default`.
    pub fn freeswitch(name: impl Into<String>, location: Location, default: Sense) -> Self {
        Acl {
            name: name.into(),
            named: true,
            location,
            matching: Matching::MostSpecific,
            default,
            rules: Vec::new(),
            unresolved: Vec::new(),
        }
    }

    /// An allow list and a deny list (FreeSWITCH `cidr`, tollgate's CSV `permit`/`deny`):
    /// with any `permit`, only those networks minus `deny`; else everything minus `deny`.
    pub fn allow_list(
        name: impl Into<String>,
        location: Location,
        permit: &[IpNet],
        deny: &[IpNet],
    ) -> Self {
        let default = if permit.is_empty() {
            Sense::Permit
        } else {
            Sense::Deny
        };
        let rules = permit
            .iter()
            .map(|net| AclRule {
                sense: Sense::Permit,
                net: *net,
            })
            .chain(deny.iter().map(|net| AclRule {
                sense: Sense::Deny,
                net: *net,
            }))
            .collect();
        Acl {
            name: name.into(),
            named: false,
            location,
            matching: Matching::LastMatch,
            default,
            rules,
            unresolved: Vec::new(),
        }
    }

    /// Adds a rule as Asterisk reads `permit=`/`deny=` items: a leading `!` inverts it.
    pub fn push_asterisk_item(&mut self, sense: Sense, item: &str) -> Result<(), String> {
        let (sense, text) = match item.trim().strip_prefix('!') {
            Some(rest) => (sense.inverted(), rest),
            None => (sense, item),
        };
        let net = crate::import::parse_net(text)?;
        self.rules.push(AclRule { sense, net });
        Ok(())
    }

    /// How to name this ACL in evidence: `acl "office" (acl.conf:3)` or `its own
    /// permit/deny`.
    pub fn label(&self) -> String {
        if self.named {
            format!("acl \"{}\" ({})", self.name, self.location)
        } else {
            format!("its own {}", self.name)
        }
    }

    /// The addresses this ACL lets in, or `None` when some entry is unresolved.
    fn allowed(&self) -> Option<AddressSet> {
        if !self.unresolved.is_empty() {
            return None;
        }
        let mut set = match self.default {
            Sense::Permit => AddressSet::everything(),
            Sense::Deny => AddressSet::nothing(),
        };
        let mut order: Vec<(usize, &AclRule)> = self.rules.iter().enumerate().collect();
        if self.matching == Matching::MostSpecific {
            // Applying the rules from least to most specific, and equally specific ones
            // last-to-first, leaves each address decided by its most specific rule (and
            // the first of equals), which is FreeSWITCH's choice.
            order.retain(|(_, rule)| rule.net.prefix_len() > 0);
            order.sort_by(|(ia, a), (ib, b)| {
                a.net
                    .prefix_len()
                    .cmp(&b.net.prefix_len())
                    .then_with(|| ib.cmp(ia))
            });
        }
        for (_, rule) in order {
            set.apply(rule);
        }
        Some(set)
    }
}

/// Whose syntax and semantics an ACL name refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AclPlatform {
    Asterisk,
    FreeSwitch,
}

impl AclPlatform {
    /// The platform whose named ACLs an extension from `source` refers to.
    pub fn of(source: SourceKind) -> Option<AclPlatform> {
        match source {
            SourceKind::Pjsip | SourceKind::SipConf => Some(AclPlatform::Asterisk),
            SourceKind::FreeSwitch => Some(AclPlatform::FreeSwitch),
            SourceKind::Voicemail | SourceKind::Csv | SourceKind::Json => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AclPlatform::Asterisk => "Asterisk",
            AclPlatform::FreeSwitch => "FreeSWITCH",
        }
    }

    /// The file its named ACLs live in, for messages.
    pub fn acl_file(self) -> &'static str {
        match self {
            AclPlatform::Asterisk => "acl.conf",
            AclPlatform::FreeSwitch => "acl.conf.xml",
        }
    }
}

impl fmt::Display for AclPlatform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The named ACLs read from acl files, per platform, and which files were read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclSet {
    asterisk: BTreeMap<String, Acl>,
    freeswitch: BTreeMap<String, Acl>,
    asterisk_files: Vec<PathBuf>,
    freeswitch_files: Vec<PathBuf>,
}

impl AclSet {
    fn map(&self, platform: AclPlatform) -> &BTreeMap<String, Acl> {
        match platform {
            AclPlatform::Asterisk => &self.asterisk,
            AclPlatform::FreeSwitch => &self.freeswitch,
        }
    }

    fn files_mut(&mut self, platform: AclPlatform) -> &mut Vec<PathBuf> {
        match platform {
            AclPlatform::Asterisk => &mut self.asterisk_files,
            AclPlatform::FreeSwitch => &mut self.freeswitch_files,
        }
    }

    /// The ACL of that name, if an imported file defines it.
    pub fn get(&self, platform: AclPlatform, name: &str) -> Option<&Acl> {
        self.map(platform).get(name)
    }

    /// Every ACL of a platform, by name.
    pub fn iter(&self, platform: AclPlatform) -> impl Iterator<Item = &Acl> {
        self.map(platform).values()
    }

    /// The acl files of a platform that were read (even if they defined nothing).
    pub fn files(&self, platform: AclPlatform) -> &[PathBuf] {
        match platform {
            AclPlatform::Asterisk => &self.asterisk_files,
            AclPlatform::FreeSwitch => &self.freeswitch_files,
        }
    }

    /// Records that an acl file of `platform` was read, so a name missing from it is
    /// reported as undefined rather than unresolved.
    pub fn file_read(&mut self, platform: AclPlatform, path: impl Into<PathBuf>) {
        let path = path.into();
        let files = self.files_mut(platform);
        if !files.contains(&path) {
            files.push(path);
        }
    }

    /// Adds an ACL; a second one of the same name is refused with the problem to report
    /// (the first is kept, as the audit cannot know which one the PBX would load).
    pub fn add(&mut self, platform: AclPlatform, acl: Acl) -> Result<(), ImportProblem> {
        let map = match platform {
            AclPlatform::Asterisk => &mut self.asterisk,
            AclPlatform::FreeSwitch => &mut self.freeswitch,
        };
        if let Some(first) = map.get(&acl.name) {
            return Err(ImportProblem::new(
                acl.location.clone(),
                format!(
                    "acl \"{}\" is already defined at {}; the audit uses that one",
                    acl.name, first.location
                ),
            ));
        }
        map.insert(acl.name.clone(), acl);
        Ok(())
    }

    /// Adds everything of `other`; returns the problems of names defined twice.
    pub fn merge(&mut self, other: AclSet) -> Vec<ImportProblem> {
        let mut problems = Vec::new();
        for (platform, map, files) in [
            (AclPlatform::Asterisk, other.asterisk, other.asterisk_files),
            (
                AclPlatform::FreeSwitch,
                other.freeswitch,
                other.freeswitch_files,
            ),
        ] {
            for file in files {
                self.file_read(platform, file);
            }
            for acl in map.into_values() {
                if let Err(problem) = self.add(platform, acl) {
                    problems.push(problem);
                }
            }
        }
        problems
    }

    /// What the extension's own rules and named ACLs let in, together.
    pub fn resolve(&self, ext: &ImportedExtension) -> AclVerdict {
        let mut labels = Vec::new();
        let mut sets = Vec::new();
        let mut unresolved = Vec::new();
        // An extension built by hand (not by an importer) may have only `permit`/`deny`.
        let fallback;
        let own: &[Acl] =
            if ext.own_acls.is_empty() && !(ext.permit.is_empty() && ext.deny.is_empty()) {
                fallback = [Acl::allow_list(
                    "permit/deny",
                    ext.location.clone(),
                    &ext.permit,
                    &ext.deny,
                )];
                &fallback
            } else {
                &ext.own_acls
            };
        for acl in own {
            labels.push(acl.label());
            // Own rules are always addresses; `None` only guards against a future change.
            match acl.allowed() {
                Some(set) => sets.push(set),
                None => unresolved.push(UnresolvedAcl {
                    name: acl.name.clone(),
                    reason: UnresolvedReason::Opaque(acl.unresolved.join(", ")),
                }),
            }
        }
        let platform = AclPlatform::of(ext.source).unwrap_or(AclPlatform::Asterisk);
        let mut names: Vec<&str> = Vec::new();
        for name in &ext.acl_names {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
        // FreeSWITCH reads a comma-separated list of CIDRs given as a list name as one
        // list, letting in an address that any of them matches.
        let mut cidr_names = Vec::new();
        for name in names {
            match self.named(platform, name) {
                Named::Acl(acl) => {
                    labels.push(acl.label());
                    match acl.allowed() {
                        Some(set) => sets.push(set),
                        None => unresolved.push(UnresolvedAcl {
                            name: name.to_string(),
                            reason: UnresolvedReason::Opaque(acl.unresolved.join(", ")),
                        }),
                    }
                }
                Named::Cidr(net) => cidr_names.push((name, net)),
                Named::Missing(reason) => unresolved.push(UnresolvedAcl {
                    name: name.to_string(),
                    reason,
                }),
            }
        }
        if !cidr_names.is_empty() {
            let nets: Vec<IpNet> = cidr_names.iter().map(|(_, net)| *net).collect();
            let text: Vec<&str> = cidr_names.iter().map(|(name, _)| *name).collect();
            let acl = Acl::allow_list(text.join(","), ext.location.clone(), &nets, &[]);
            labels.push(format!("acl \"{}\"", acl.name));
            if let Some(set) = acl.allowed() {
                sets.push(set);
            }
        }
        if !unresolved.is_empty() {
            return AclVerdict::Unresolved(unresolved);
        }
        if sets.is_empty() {
            return AclVerdict::NoAcl;
        }
        let mut combined = AddressSet::everything();
        for set in &sets {
            combined = combined.intersect(set);
        }
        AclVerdict::Resolved(ResolvedAcl::new(labels, &combined))
    }

    fn named(&self, platform: AclPlatform, name: &str) -> Named<'_> {
        if let Some(acl) = self.get(platform, name) {
            return Named::Acl(acl);
        }
        if platform == AclPlatform::FreeSwitch {
            if let Some(builtin) = freeswitch_builtin(name) {
                return builtin;
            }
            if name.contains('/') {
                if let Ok(net) = crate::import::parse_net(name) {
                    return Named::Cidr(net);
                }
            }
        }
        if self.files(platform).is_empty() {
            Named::Missing(UnresolvedReason::NoAclFile)
        } else {
            Named::Missing(UnresolvedReason::NotDefined)
        }
    }
}

enum Named<'a> {
    Acl(&'a Acl),
    Cidr(IpNet),
    Missing(UnresolvedReason),
}

/// The lists FreeSWITCH creates itself at start (`switch_load_network_lists`).
fn freeswitch_builtin(name: &str) -> Option<Named<'static>> {
    static BUILTINS: LazyLock<Vec<Acl>> = LazyLock::new(|| {
        let v4 = |a, b, c, d, prefix| {
            Ipv4Net::new(Ipv4Addr::new(a, b, c, d), prefix)
                .map(IpNet::V4)
                .ok()
        };
        let rfc1918: Vec<IpNet> = [
            v4(10, 0, 0, 0, 8),
            v4(172, 16, 0, 0, 12),
            v4(192, 168, 0, 0, 16),
        ]
        .into_iter()
        .flatten()
        .collect();
        let here = || Location::new("FreeSWITCH built-in list", 0);
        let mut lists = Vec::new();
        let mut list = |name: &str, default: Sense, nodes: &[(Sense, Option<IpNet>)]| {
            let mut acl = Acl::freeswitch(name, here(), default);
            for (sense, net) in nodes {
                if let Some(net) = net {
                    acl.rules.push(AclRule {
                        sense: *sense,
                        net: *net,
                    });
                }
            }
            lists.push(acl);
        };
        let private: Vec<(Sense, Option<IpNet>)> =
            rfc1918.iter().map(|n| (Sense::Permit, Some(*n))).collect();
        list("rfc1918.auto", Sense::Deny, &private);
        let wan: Vec<(Sense, Option<IpNet>)> =
            rfc1918.iter().map(|n| (Sense::Deny, Some(*n))).collect();
        list("wan.auto", Sense::Permit, &wan);
        list("wan_v4.auto", Sense::Permit, &wan);
        list(
            "wan_v6.auto",
            Sense::Permit,
            &[(
                Sense::Deny,
                Ipv6Net::new(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10)
                    .map(IpNet::V6)
                    .ok(),
            )],
        );
        list(
            "loopback.auto",
            Sense::Deny,
            &[(Sense::Permit, v4(127, 0, 0, 0, 8))],
        );
        list("any_v4.auto", Sense::Permit, &[]);
        list("any_v6.auto", Sense::Permit, &[]);
        lists
    });
    static HOST_DEPENDENT: [&str; 2] = ["localnet.auto", "nat.auto"];
    if HOST_DEPENDENT.contains(&name) {
        return Some(Named::Missing(UnresolvedReason::Opaque(
            "a FreeSWITCH built-in list that depends on the host's own address".to_string(),
        )));
    }
    BUILTINS.iter().find(|acl| acl.name == name).map(Named::Acl)
}

/// Why a named ACL could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnresolvedReason {
    /// No acl file of the platform was imported: the ACL is taken on trust.
    NoAclFile,
    /// Acl files were imported and none defines the name.
    NotDefined,
    /// The ACL has entries the audit does not turn into networks; why.
    Opaque(String),
}

/// A named ACL of an extension that could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnresolvedAcl {
    pub name: String,
    pub reason: UnresolvedReason,
}

/// Every ACL of an extension resolved, combined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedAcl {
    /// The ACLs combined, as [`Acl::label`]s, for evidence.
    pub sources: Vec<String>,
    /// The addresses let in, as the fewest CIDRs, in the families judged (IPv4 first).
    pub allowed: Vec<IpNet>,
    /// Public IPv4 addresses let in (0 when IPv4 is not judged).
    pub public_v4: u128,
    /// Public IPv6 addresses let in (0 when IPv6 is not judged).
    pub public_v6: u128,
    /// Whether each family was judged: some rule mentions it, or no rule mentions either.
    pub judges_v4: bool,
    pub judges_v6: bool,
    /// Whether the public addresses let in stay within [`MAX_PUBLIC_V4`] and
    /// [`MAX_PUBLIC_V6`].
    pub restricts: bool,
}

impl ResolvedAcl {
    fn new(sources: Vec<String>, set: &AddressSet) -> Self {
        let none_mentioned = !set.mentions_v4 && !set.mentions_v6;
        let judges_v4 = set.mentions_v4 || none_mentioned;
        let judges_v6 = set.mentions_v6 || none_mentioned;
        let public_v4 = if judges_v4 {
            set.v4.intersect(public_v4()).size()
        } else {
            0
        };
        let public_v6 = if judges_v6 {
            set.v6.intersect(public_v6()).size()
        } else {
            0
        };
        let mut allowed = Vec::new();
        if judges_v4 {
            allowed.extend(set.v4.nets(V4_BITS));
        }
        if judges_v6 {
            allowed.extend(set.v6.nets(V6_BITS));
        }
        ResolvedAcl {
            sources,
            allowed,
            public_v4,
            public_v6,
            judges_v4,
            judges_v6,
            restricts: public_v4 <= MAX_PUBLIC_V4 && public_v6 <= MAX_PUBLIC_V6,
        }
    }

    /// "lets in 3,702,258,432 public IPv4 addresses": the families that are too open.
    pub fn openness(&self) -> String {
        let mut parts = Vec::new();
        if self.public_v4 > MAX_PUBLIC_V4 {
            parts.push(format!(
                "{} of the {} public IPv4 addresses",
                thousands(self.public_v4),
                thousands(public_v4().size())
            ));
        }
        if self.public_v6 > MAX_PUBLIC_V6 {
            parts.push(format!(
                "about 2^{} public IPv6 addresses",
                self.public_v6.ilog2()
            ));
        }
        parts.join(" and ")
    }
}

/// What an extension's ACLs let in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AclVerdict {
    /// No permit, deny or named ACL: nothing limits the source address.
    NoAcl,
    /// Every ACL resolved.
    Resolved(ResolvedAcl),
    /// Some named ACL could not be resolved; it is counted as a restriction, as the PBX
    /// either applies it or (undefined) refuses every address.
    Unresolved(Vec<UnresolvedAcl>),
}

impl AclVerdict {
    /// Whether the source address is restricted (an unresolved ACL counts).
    pub fn restricts(&self) -> bool {
        match self {
            AclVerdict::NoAcl => false,
            AclVerdict::Resolved(resolved) => resolved.restricts,
            AclVerdict::Unresolved(_) => true,
        }
    }

    /// The networks the extension may be used from, when every ACL resolved, they
    /// restrict and they let something in: what a policy's `allowed_cidrs` for this
    /// extension should hold. `None` otherwise, including for ACLs that refuse every
    /// address (an empty `allowed_cidrs` would mean the opposite in a tollgate policy).
    pub fn effective_permit(&self) -> Option<&[IpNet]> {
        match self {
            AclVerdict::Resolved(resolved)
                if resolved.restricts && !resolved.allowed.is_empty() =>
            {
                Some(&resolved.allowed)
            }
            _ => None,
        }
    }
}

const V4_BITS: u32 = 32;
const V6_BITS: u32 = 128;
const V4_MAX: u128 = u32::MAX as u128;
const V6_MAX: u128 = u128::MAX;

/// Addresses of one family as sorted, disjoint, non-adjacent inclusive ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Ranges(Vec<(u128, u128)>);

impl Ranges {
    fn full(max: u128) -> Self {
        Ranges(vec![(0, max)])
    }

    fn add(&mut self, lo: u128, hi: u128) {
        self.0.push((lo, hi));
        self.0.sort_unstable();
        let mut merged: Vec<(u128, u128)> = Vec::with_capacity(self.0.len());
        for (lo, hi) in self.0.drain(..) {
            match merged.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        self.0 = merged;
    }

    fn remove(&mut self, lo: u128, hi: u128) {
        let mut kept = Vec::with_capacity(self.0.len() + 1);
        for &(a, b) in &self.0 {
            if b < lo || a > hi {
                kept.push((a, b));
                continue;
            }
            if a < lo {
                kept.push((a, lo - 1));
            }
            if b > hi {
                kept.push((hi + 1, b));
            }
        }
        self.0 = kept;
    }

    fn intersect(&self, other: &Ranges) -> Ranges {
        let mut out = Vec::new();
        let (mut i, mut j) = (0, 0);
        while let (Some(&(a1, b1)), Some(&(a2, b2))) = (self.0.get(i), other.0.get(j)) {
            let lo = a1.max(a2);
            let hi = b1.min(b2);
            if lo <= hi {
                out.push((lo, hi));
            }
            if b1 < b2 {
                i += 1;
            } else {
                j += 1;
            }
        }
        Ranges(out)
    }

    /// How many addresses, saturating (only the whole IPv6 space overflows).
    fn size(&self) -> u128 {
        self.0.iter().fold(0u128, |total, &(lo, hi)| {
            total.saturating_add((hi - lo).saturating_add(1))
        })
    }

    /// The fewest CIDRs covering exactly these addresses.
    fn nets(&self, bits: u32) -> Vec<IpNet> {
        let mut nets = Vec::new();
        for &(lo, hi) in &self.0 {
            let mut start = lo;
            loop {
                // The largest block aligned at `start` that does not pass `hi`.
                let align = if start == 0 {
                    bits
                } else {
                    start.trailing_zeros().min(bits)
                };
                let span = hi - start;
                let fit = if span == u128::MAX {
                    128
                } else {
                    (span + 1).ilog2()
                };
                let size_bits = align.min(fit);
                let prefix = u8::try_from(bits - size_bits).unwrap_or(0);
                if let Some(net) = make_net(start, prefix, bits) {
                    nets.push(net);
                }
                let last = start.saturating_add(block_mask(size_bits));
                if last >= hi {
                    break;
                }
                start = last + 1;
            }
        }
        nets
    }
}

/// The offset of the last address of a block of 2^size_bits addresses.
fn block_mask(size_bits: u32) -> u128 {
    if size_bits >= 128 {
        u128::MAX
    } else {
        (1u128 << size_bits) - 1
    }
}

fn make_net(start: u128, prefix: u8, bits: u32) -> Option<IpNet> {
    if bits == V4_BITS {
        let addr = Ipv4Addr::from(u32::try_from(start).ok()?);
        Ipv4Net::new(addr, prefix).ok().map(IpNet::V4)
    } else {
        Ipv6Net::new(Ipv6Addr::from(start), prefix)
            .ok()
            .map(IpNet::V6)
    }
}

/// The inclusive range of a network, host bits ignored, and whether it is IPv4.
fn range_of(net: &IpNet) -> (bool, u128, u128) {
    match net.trunc() {
        IpNet::V4(net) => (
            true,
            u128::from(u32::from(net.network())),
            u128::from(u32::from(net.broadcast())),
        ),
        IpNet::V6(net) => (
            false,
            u128::from(net.network()),
            u128::from(net.broadcast()),
        ),
    }
}

/// Addresses of both families, and which families a rule has mentioned.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AddressSet {
    v4: Ranges,
    v6: Ranges,
    mentions_v4: bool,
    mentions_v6: bool,
}

impl AddressSet {
    fn everything() -> Self {
        AddressSet {
            v4: Ranges::full(V4_MAX),
            v6: Ranges::full(V6_MAX),
            mentions_v4: false,
            mentions_v6: false,
        }
    }

    fn nothing() -> Self {
        AddressSet {
            v4: Ranges::default(),
            v6: Ranges::default(),
            mentions_v4: false,
            mentions_v6: false,
        }
    }

    fn apply(&mut self, rule: &AclRule) {
        let (v4, lo, hi) = range_of(&rule.net);
        let ranges = if v4 {
            self.mentions_v4 = true;
            &mut self.v4
        } else {
            self.mentions_v6 = true;
            &mut self.v6
        };
        match rule.sense {
            Sense::Permit => ranges.add(lo, hi),
            Sense::Deny => ranges.remove(lo, hi),
        }
    }

    fn intersect(&self, other: &AddressSet) -> AddressSet {
        AddressSet {
            v4: self.v4.intersect(&other.v4),
            v6: self.v6.intersect(&other.v6),
            mentions_v4: self.mentions_v4 || other.mentions_v4,
            mentions_v6: self.mentions_v6 || other.mentions_v6,
        }
    }
}

/// `(first octets, prefix)` of the IPv4 ranges that are not public: this network,
/// private, shared (CGN), loopback, link-local, IETF, documentation, benchmarking,
/// multicast and reserved.
const NOT_PUBLIC_V4: [([u8; 4], u8); 14] = [
    ([0, 0, 0, 0], 8),
    ([10, 0, 0, 0], 8),
    ([100, 64, 0, 0], 10),
    ([127, 0, 0, 0], 8),
    ([169, 254, 0, 0], 16),
    ([172, 16, 0, 0], 12),
    ([192, 0, 0, 0], 24),
    ([192, 0, 2, 0], 24),
    ([192, 168, 0, 0], 16),
    ([198, 18, 0, 0], 15),
    ([198, 51, 100, 0], 24),
    ([203, 0, 113, 0], 24),
    ([224, 0, 0, 0], 4),
    ([240, 0, 0, 0], 4),
];

fn public_v4() -> &'static Ranges {
    static PUBLIC: LazyLock<Ranges> = LazyLock::new(|| {
        let mut ranges = Ranges::full(V4_MAX);
        for (octets, prefix) in NOT_PUBLIC_V4 {
            let lo = u128::from(u32::from_be_bytes(octets));
            ranges.remove(lo, lo + (1u128 << (32 - u32::from(prefix))) - 1);
        }
        ranges
    });
    &PUBLIC
}

/// Global unicast (2000::/3) without the documentation prefix (2001:db8::/32).
fn public_v6() -> &'static Ranges {
    static PUBLIC: LazyLock<Ranges> = LazyLock::new(|| {
        let lo = 0x2000u128 << 112;
        let mut ranges = Ranges(vec![(lo, lo + (1u128 << 125) - 1)]);
        let doc = 0x2001_0db8u128 << 96;
        ranges.remove(doc, doc + (1u128 << 96) - 1);
        ranges
    });
    &PUBLIC
}

/// 1234567 as "1,234,567".
fn thousands(n: u128) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    // A comma before every digit that starts a group of three counted from the right.
    let head = digits.len() % 3;
    for (index, c) in digits.chars().enumerate() {
        if index > 0 && index % 3 == head {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn net(text: &str) -> IpNet {
        crate::import::parse_net(text).unwrap()
    }

    fn asterisk(rules: &[(Sense, &str)]) -> Acl {
        let mut acl = Acl::asterisk("t", true, Location::new("acl.conf", 1));
        for (sense, item) in rules {
            acl.push_asterisk_item(*sense, item).unwrap();
        }
        acl
    }

    fn verdict(acl: &Acl) -> ResolvedAcl {
        ResolvedAcl::new(vec![acl.label()], &acl.allowed().unwrap())
    }

    fn strings(nets: &[IpNet]) -> Vec<String> {
        nets.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn last_match_wins_and_default_is_permit() {
        let r = verdict(&asterisk(&[
            (Sense::Deny, "0.0.0.0/0.0.0.0"),
            (Sense::Permit, "10.0.0.0/8"),
        ]));
        assert!(r.restricts);
        assert_eq!(strings(&r.allowed), ["10.0.0.0/8"]);
        assert!(r.judges_v4 && !r.judges_v6);

        // The same rules the other way round deny everything.
        let r = verdict(&asterisk(&[
            (Sense::Permit, "10.0.0.0/8"),
            (Sense::Deny, "0.0.0.0/0"),
        ]));
        assert!(r.restricts);
        assert!(r.allowed.is_empty());

        // A permit alone changes nothing: the default already permits.
        let r = verdict(&asterisk(&[(Sense::Permit, "10.0.0.0/8")]));
        assert!(!r.restricts);
        assert_eq!(strings(&r.allowed), ["0.0.0.0/0"]);

        // Denying one address leaves the internet in.
        let r = verdict(&asterisk(&[(Sense::Deny, "1.2.3.4")]));
        assert!(!r.restricts);
        assert_eq!(r.allowed.len(), 32);
        assert!(r.openness().contains("public IPv4"), "{}", r.openness());
    }

    #[test]
    fn negation_host_bits_and_ipv6() {
        // "deny=!10.0.0.0/8" is "permit=10.0.0.0/8"; host bits of 10.1.2.3/8 are ignored.
        let r = verdict(&asterisk(&[
            (Sense::Deny, "0.0.0.0/0"),
            (Sense::Deny, "!10.1.2.3/8"),
            (Sense::Deny, "::/0"),
            (Sense::Permit, "2001:db8:10::/48"),
        ]));
        assert!(r.restricts);
        assert_eq!(strings(&r.allowed), ["10.0.0.0/8", "2001:db8:10::/48"]);

        // IPv4 restricted, IPv6 mentioned and open: not restricted.
        let r = verdict(&asterisk(&[
            (Sense::Deny, "0.0.0.0/0"),
            (Sense::Permit, "10.0.0.0/8"),
            (Sense::Deny, "2001:db8::1"),
        ]));
        assert!(!r.restricts);
        assert!(r.openness().contains("IPv6"), "{}", r.openness());
        assert!(!r.openness().contains("IPv4"), "{}", r.openness());
    }

    #[test]
    fn freeswitch_most_specific_wins_and_slash_zero_never_decides() {
        let mut acl = Acl::freeswitch("lan", Location::new("acl.conf.xml", 3), Sense::Permit);
        for (sense, text) in [
            (Sense::Deny, "0.0.0.0/0"),
            (Sense::Deny, "192.168.42.0/24"),
            (Sense::Permit, "192.168.42.42/32"),
        ] {
            acl.rules.push(AclRule {
                sense,
                net: net(text),
            });
        }
        let r = verdict(&acl);
        // The /0 deny is ignored, so the default lets the internet in.
        assert!(!r.restricts);
        assert!(r
            .allowed
            .iter()
            .any(|n| n.contains(&net("192.168.42.42/32"))));
        assert!(!r
            .allowed
            .iter()
            .any(|n| n.contains(&net("192.168.42.1/32"))));

        // Equally specific nodes: the first decides, whatever follows.
        let mut acl = Acl::freeswitch("x", Location::new("acl.conf.xml", 3), Sense::Deny);
        for sense in [Sense::Permit, Sense::Deny] {
            acl.rules.push(AclRule {
                sense,
                net: net("10.0.0.0/8"),
            });
        }
        let r = verdict(&acl);
        assert!(r.restricts);
        assert_eq!(strings(&r.allowed), ["10.0.0.0/8"]);
    }

    #[test]
    fn private_networks_are_not_public() {
        let r = verdict(&Acl::allow_list(
            "permit/deny",
            Location::new("x.csv", 2),
            &[
                net("10.0.0.0/8"),
                net("172.16.0.0/12"),
                net("192.168.0.0/16"),
            ],
            &[net("10.9.0.0/16")],
        ));
        assert!(r.restricts);
        assert_eq!(r.public_v4, 0);
        assert_eq!(r.allowed.len(), 10, "{:?}", strings(&r.allowed));
    }

    #[test]
    fn ranges_round_trip_to_minimal_cidrs() {
        let mut ranges = Ranges::full(V6_MAX);
        assert_eq!(strings(&ranges.nets(V6_BITS)), ["::/0"]);
        assert_eq!(ranges.size(), u128::MAX);
        ranges.remove(0, 0);
        assert_eq!(ranges.nets(V6_BITS).len(), 128);
        let mut ranges = Ranges::default();
        ranges.add(10, 20);
        ranges.add(21, 30);
        ranges.add(5, 5);
        assert_eq!(ranges.0, vec![(5, 5), (10, 30)]);
        assert_eq!(ranges.size(), 22);
        assert_eq!(
            strings(&ranges.nets(V4_BITS)),
            [
                "0.0.0.5/32",
                "0.0.0.10/31",
                "0.0.0.12/30",
                "0.0.0.16/29",
                "0.0.0.24/30",
                "0.0.0.28/31",
                "0.0.0.30/32"
            ]
        );
        assert_eq!(thousands(3702258688), "3,702,258,688");
        assert_eq!(public_v4().size(), 3_702_258_688);
        assert_eq!(thousands(999), "999");
    }
}
