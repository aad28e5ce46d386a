//! `tollgate init`: writes a first policy from the PBX configuration an operator already
//! has (the audit's importers): one account, its extensions with the networks their
//! permit/deny/ACL settings allow, conservative money limits, the high-risk rules on, and
//! the whole policy in shadow mode, so that the first days only show what would be
//! blocked. Secrets are never copied. It prints what it imported, what it could not read,
//! and what a person must review.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use chrono::Utc;
use tollgate_audit::import::{
    import_acl_conf, import_csv, import_freeswitch, import_pjsip, import_sip_conf,
};
use tollgate_audit::inventory::{ImportedExtension, Inventory};

/// Where `init --from` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitSource {
    /// An Asterisk configuration folder: pjsip.conf (else sip.conf), acl.conf.
    Asterisk(PathBuf),
    /// A FreeSWITCH configuration folder: directory/ and autoload_configs/acl.conf.xml.
    FreeSwitch(PathBuf),
    /// A CSV inventory (the audit's columns).
    Csv(PathBuf),
}

pub fn parse_init_source(text: &str) -> Result<InitSource, String> {
    let (kind, path) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?}: expected asterisk:DIR, freeswitch:DIR or csv:FILE"))?;
    if path.is_empty() {
        return Err(format!("{text:?}: no path after the kind"));
    }
    let path = PathBuf::from(path);
    match kind {
        "asterisk" => Ok(InitSource::Asterisk(path)),
        "freeswitch" => Ok(InitSource::FreeSwitch(path)),
        "csv" => Ok(InitSource::Csv(path)),
        other => Err(format!(
            "unknown kind {other:?} (expected asterisk, freeswitch or csv)"
        )),
    }
}

fn import(source: &InitSource) -> Result<Inventory> {
    let mut inventory = Inventory::default();
    match source {
        InitSource::Asterisk(dir) => {
            if !dir.is_dir() {
                bail!("{} is not a folder", dir.display());
            }
            let pjsip = dir.join("pjsip.conf");
            let sip = dir.join("sip.conf");
            match (pjsip.exists(), sip.exists()) {
                (true, _) => inventory.merge(import_pjsip(&pjsip)),
                (false, true) => inventory.merge(import_sip_conf(&sip)),
                (false, false) => bail!("neither pjsip.conf nor sip.conf in {}", dir.display()),
            }
            if pjsip.exists() && sip.exists() {
                inventory.merge(import_sip_conf(&sip));
            }
            let acl = dir.join("acl.conf");
            if acl.exists() {
                inventory.merge(import_acl_conf(&acl));
            }
        }
        InitSource::FreeSwitch(dir) => inventory.merge(import_freeswitch(dir)),
        InitSource::Csv(file) => inventory.merge(import_csv(file)),
    }
    inventory.resolve_acls();
    Ok(inventory)
}

fn quote(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// Options of the command.
pub struct InitOptions<'a> {
    pub source: &'a InitSource,
    pub out: Option<&'a Path>,
    pub country: &'a str,
    pub time_zone: &'a str,
    pub currency: &'a str,
}

pub fn run(options: &InitOptions<'_>) -> Result<ExitCode> {
    let inventory = import(options.source)?;
    let mut review: Vec<String> = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut extensions: Vec<&ImportedExtension> = Vec::new();
    for ext in &inventory.extensions {
        if !tollgate_config::validate::valid_id(&ext.id) {
            skipped.push(format!(
                "{}: extension {:?}: not a valid tollgate id (letters, digits, . _ - @; 64 at most)",
                ext.location, ext.id
            ));
        } else if !seen.insert(ext.id.clone()) {
            skipped.push(format!(
                "{}: extension {} is defined twice: the first is kept",
                ext.location, ext.id
            ));
        } else {
            extensions.push(ext);
        }
    }
    let source_text = match options.source {
        InitSource::Asterisk(p) => format!("asterisk:{}", p.display()),
        InitSource::FreeSwitch(p) => format!("freeswitch:{}", p.display()),
        InitSource::Csv(p) => format!("csv:{}", p.display()),
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# tollgate policy written by `tollgate init --from {source_text}`"
    );
    let _ = writeln!(
        out,
        "# on {}. Review it, run `tollgate check` on it, watch `tollgate report shadow`",
        Utc::now().format("%Y-%m-%d %H:%M UTC")
    );
    let _ = writeln!(
        out,
        "# for a few days, then set `shadow = false` to enforce. No secret was copied."
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "# Shadow mode: every decision is computed, stored and counted, but calls are allowed"
    );
    let _ = writeln!(out, "# and bans go to dry-run.");
    let _ = writeln!(out, "shadow = true");
    let _ = writeln!(out, "high_risk_builtin = true");
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "[server]\nlisten = \"127.0.0.1:8480\"\ndatabase = \"tollgate.db\"\n"
    );
    for (name, scopes) in [
        ("pbx", "\"calls\""),
        ("admin", "\"admin\""),
        ("reader", "\"read\""),
    ] {
        let _ = writeln!(
            out,
            "[[tokens]]\nname = \"{name}\"\nscopes = [{scopes}]\nfile = \"{name}.token\"\n"
        );
    }
    let _ = writeln!(
        out,
        "# REVIEW: prices. A conservative catch-all deck so that calls are rated at all:"
    );
    let _ = writeln!(
        out,
        "# replace it with your carrier's (a CSV deck works: rates_file = \"rates.csv\")."
    );
    let _ = writeln!(
        out,
        "[plans.default]\ncurrency = {}\nrates = [",
        quote(options.currency)
    );
    for digit in 1..=9 {
        let _ = writeln!(out, "  {{ prefix = \"+{digit}\", description = \"zone {digit} (catch-all)\", price_per_minute = \"0.50\", increments = \"60/60\" }},");
    }
    let _ = writeln!(out, "]\n");
    let _ = writeln!(out, "[accounts.main]");
    let _ = writeln!(out, "country = {}", quote(options.country));
    let _ = writeln!(out, "time_zone = {}", quote(options.time_zone));
    let _ = writeln!(out, "plan = \"default\"");
    let _ = writeln!(
        out,
        "limits = {{ daily = \"50.00\", monthly = \"500.00\" }}"
    );
    let _ = writeln!(
        out,
        "# International, premium, satellite and high-risk calls are off until you allow them."
    );
    let _ = writeln!(out, "rules = {{ allowed_classes = [\"emergency\", \"internal\", \"national\", \"mobile\", \"toll_free\"] }}");
    let _ = writeln!(out, "extension_defaults = {{ limits = {{ daily = \"10.00\", monthly = \"100.00\" }}, max_call_duration = \"1h\", max_concurrent_calls = 2 }}");
    let _ = writeln!(out);
    review.push(format!(
        "account main: country {}, time zone {}, currency {}: correct them if they are not yours",
        options.country, options.time_zone, options.currency
    ));
    review
        .push("plans.default: catch-all prices of 0.50 a minute: load your carrier's rates".into());
    for ext in &extensions {
        let _ = writeln!(out, "[extensions.{}]", quote(&ext.id));
        let _ = writeln!(out, "# from {}", ext.location);
        let _ = writeln!(out, "account = \"main\"");
        match ext.effective_permit() {
            Some(nets) => {
                let list: Vec<String> = nets.iter().map(|n| quote(&n.to_string())).collect();
                let _ = writeln!(out, "allowed_cidrs = [{}]", list.join(", "));
            }
            None if !ext.permit.is_empty() && ext.verdict().restricts() => {
                let list: Vec<String> = ext.permit.iter().map(|n| quote(&n.to_string())).collect();
                let _ = writeln!(out, "allowed_cidrs = [{}]", list.join(", "));
            }
            None => {
                let _ = writeln!(
                    out,
                    "# REVIEW: no IP restriction found: add allowed_cidrs = [\"your office/32\"]"
                );
                review.push(format!(
                    "extension {} ({}): no IP restriction: add its allowed_cidrs",
                    ext.id, ext.location
                ));
            }
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "[monitor.rules.satellite_burst]");
    let _ = writeln!(out, "metric = \"attempts\"\ndestinations = {{ classes = [\"satellite\", \"high_risk\", \"premium\"] }}\nwindow = \"10m\"\nwarning = 2\ncritical = 4\non_critical = [\"suspend_extension\"]\n");
    let _ = writeln!(out, "[monitor.rules.new_extensions]");
    let _ = writeln!(out, "metric = \"extensions_created\"\nscope = \"account\"\nwindow = \"1h\"\nwarning = 5\ncritical = 20\n");
    let _ = writeln!(
        out,
        "[firewall]\nbackend = \"dry-run\"   # shadow mode: bans are only logged"
    );

    // The written policy must be one tollgate accepts.
    tollgate_config::load_str(&out, Path::new("tollgate init output"), Path::new("."))
        .map_err(|e| anyhow::anyhow!("the generated policy does not check (a bug): {e}"))?;
    match options.out {
        Some(path) => {
            if path.exists() {
                bail!(
                    "{} exists: choose another --out (nothing is overwritten)",
                    path.display()
                );
            }
            std::fs::write(path, &out)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{out}"),
    }
    eprintln!(
        "imported {} extensions from {source_text}",
        extensions.len()
    );
    for problem in &inventory.problems {
        eprintln!("could not read: {problem}");
    }
    for skip in &skipped {
        eprintln!("not imported: {skip}");
    }
    for item in &review {
        eprintln!("review: {item}");
    }
    Ok(ExitCode::SUCCESS)
}
