//! `tollgate report shadow`: what shadow mode recorded in a service's database (denials it
//! did not enforce, with what those calls cost; bans that went to dry-run; alerts), so an
//! operator can tune the policy before switching enforcement on. Reads the database
//! directly: works with the service running or stopped.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::Utc;
use serde_json::json;
use tollgate_core::Money;
use tollgate_store::{AlertQuery, Durability, SqliteStore, Store};

pub fn shadow(database: &Path, since: &str, json_out: bool) -> Result<ExitCode> {
    let seconds = tollgate_config::validate::parse_duration(
        &tollgate_config::raw::RawDuration::Text(since.to_string()),
    )
    .map_err(|e| anyhow::anyhow!("--since: {e}"))?;
    let from =
        Utc::now() - chrono::Duration::seconds(i64::try_from(seconds).unwrap_or(i64::MAX / 2));
    if !database.exists() {
        anyhow::bail!("no database at {}", database.display());
    }
    let store = SqliteStore::open(database, Durability::Normal)
        .with_context(|| format!("cannot open {}", database.display()))?;
    let decisions = store
        .shadow_decisions(from)
        .context("cannot read shadow decisions")?;
    let bans = store.load_bans(from).context("cannot read bans")?;
    let alerts: Vec<_> = store
        .alerts(&AlertQuery {
            open_only: false,
            before_id: None,
            limit: 10_000,
        })
        .context("cannot read alerts")?
        .into_iter()
        .filter(|a| a.opened_at >= from)
        .collect();

    let mut by_code: BTreeMap<String, (u64, Money)> = BTreeMap::new();
    let mut by_extension: BTreeMap<String, (u64, Money)> = BTreeMap::new();
    let mut saved = Money::ZERO;
    for d in &decisions {
        let cost = d.cost.unwrap_or(Money::ZERO);
        saved = saved.saturating_add(cost);
        let entry = by_code.entry(d.code.clone()).or_default();
        entry.0 += 1;
        entry.1 = entry.1.saturating_add(cost);
        let entry = by_extension.entry(d.extension.clone()).or_default();
        entry.0 += 1;
        entry.1 = entry.1.saturating_add(cost);
    }
    let mut top: Vec<(&String, &(u64, Money))> = by_extension.iter().collect();
    top.sort_by(|a, b| b.1 .1.cmp(&a.1 .1).then(b.1 .0.cmp(&a.1 .0)));
    top.truncate(10);

    if json_out {
        let body = json!({
            "since": from,
            "would_have_denied": decisions.len(),
            "would_have_saved": saved,
            "by_code": by_code.iter().map(|(k, (n, m))| json!({"code": k, "calls": n, "cost": m})).collect::<Vec<_>>(),
            "top_extensions": top.iter().map(|(k, (n, m))| json!({"extension": k, "calls": n, "cost": m})).collect::<Vec<_>>(),
            "would_have_banned": bans.len(),
            "alerts": alerts.len(),
        });
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "shadow mode since {} ({since})",
        from.format("%Y-%m-%d %H:%M UTC")
    );
    println!(
        "would have denied {} calls; those calls cost {} (the money enforcement would have saved)",
        decisions.len(),
        saved
    );
    for (code, (n, cost)) in &by_code {
        println!("  {code:<28} {n:>6} calls  {cost:>12}");
    }
    if !top.is_empty() {
        println!("extensions with the most would-be denials:");
        for (ext, (n, cost)) in &top {
            println!("  {ext:<28} {n:>6} calls  {cost:>12}");
        }
    }
    println!(
        "would have banned {} addresses or networks (dry-run)",
        bans.len()
    );
    for ban in bans.iter().take(20) {
        println!(
            "  {:<20} {}: {}",
            ban.ban.target, ban.ban.rule, ban.ban.reason
        );
    }
    println!("alerts raised: {}", alerts.len());
    for alert in alerts.iter().take(20) {
        println!(
            "  #{} {} {}",
            alert.id,
            alert.severity.as_str(),
            alert.summary
        );
    }
    Ok(ExitCode::SUCCESS)
}
