//! The `tollgate` binary: `serve`, `check`, `explain`, `logscan`, `ban`, `firewall render`,
//! `passwd`, `pin`, `audit`. Raw flags are parsed by clap, then turned into validated values before
//! use; only this crate uses `anyhow`. Commands that talk to a running service are in
//! `admin`, the log scan in `logscan`, credential generation in `credentials`, the configuration audit in `audit`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

mod admin;
mod audit;
mod credentials;
mod init;
mod logscan;
mod report;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use tollgate_config::{load_default, load_file, Loaded};
use tollgate_core::engine::{AuthorizeRequest, Decision, Explanation};
use tollgate_core::Engine;

#[derive(Parser)]
#[command(
    name = "tollgate",
    version,
    about = "Toll-fraud guard for SIP/VoIP: real-time call authorization with money limits"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (HTTP API) on the policy's settings or the embedded defaults.
    Serve {
        /// Policy file; without it the embedded example policy is used.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Listen on this address instead of the policy's (port 0 picks a free port).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Use this SQLite database instead of the policy's.
        #[arg(long)]
        database: Option<PathBuf>,
        /// `human` (default) or `json` (one JSON object per line); levels from RUST_LOG.
        #[arg(long, value_enum, default_value = "human")]
        log_format: LogFormat,
    },
    /// Validate a policy file: every problem with its file, line and key.
    Check { file: PathBuf },
    /// Bans in force in the running service, and by hand.
    Ban {
        #[command(subcommand)]
        action: BanAction,
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        /// The service's URL (default: the policy's listen address, or TOLLGATE_URL).
        #[arg(long, global = true)]
        url: Option<String>,
        /// A file holding an admin token (default: the policy's admin token file, or TOLLGATE_TOKEN).
        #[arg(long, global = true)]
        token_file: Option<PathBuf>,
    },
    /// Monitoring alerts of the running service: list (open ones by default) or acknowledge.
    Alerts {
        #[command(subcommand)]
        action: Option<AlertsAction>,
        /// List closed alerts too.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        /// The service's URL (default: the policy's listen address, or TOLLGATE_URL).
        #[arg(long, global = true)]
        url: Option<String>,
        /// A file holding an admin token (default: the policy's admin token file, or TOLLGATE_TOKEN).
        #[arg(long, global = true)]
        token_file: Option<PathBuf>,
    },
    /// Suspensions in the running service (decided by monitoring rules or set by hand).
    Suspend {
        #[command(subcommand)]
        action: SuspendAction,
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[arg(long, global = true)]
        url: Option<String>,
        #[arg(long, global = true)]
        token_file: Option<PathBuf>,
    },
    /// Write a first policy from an existing PBX configuration: one account, its
    /// extensions with their networks, conservative limits, high-risk rules on, shadow mode.
    Init {
        /// asterisk:DIR (pjsip.conf or sip.conf, acl.conf), freeswitch:DIR (a conf folder),
        /// or csv:FILE.
        #[arg(long = "from", value_name = "KIND:PATH", value_parser = init::parse_init_source)]
        from: init::InitSource,
        /// Write here instead of standard output (never overwrites).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// The PBX's country, for national numbers (ISO 3166).
        #[arg(long, default_value = "US")]
        country: String,
        #[arg(long, default_value = "UTC")]
        time_zone: String,
        #[arg(long, default_value = "USD")]
        currency: String,
    },
    /// Reports on a service's database.
    Report {
        #[command(subcommand)]
        what: ReportKind,
    },
    /// Copy the database while the service runs (SQLite's online backup), then check the
    /// copy (integrity, schema, the ledger's balance).
    Backup {
        /// The new file to write (must not exist).
        file: PathBuf,
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The database to copy (default: the policy's).
        #[arg(long)]
        database: Option<PathBuf>,
    },
    /// Replace the database with a backup, after checking the backup; refused while a
    /// service runs on the database. The replaced file is kept beside it.
    Restore {
        file: PathBuf,
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The database to replace (default: the policy's).
        #[arg(long)]
        database: Option<PathBuf>,
    },
    /// Run the guard's jails once over a PBX log: per address, the failures counted and
    /// the bans it would get.
    Logscan {
        /// asterisk, freeswitch or kamailio.
        #[arg(long, short)]
        format: String,
        file: PathBuf,
        /// Policy whose [guard] settings and extensions to use (default: the guard's
        /// built-in rules, no directory).
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long)]
        json: bool,
        /// Year of timestamps that have none (Asterisk's "[Nov 26 12:00:00]"); default:
        /// the current year (or the previous one for dates ahead of today).
        #[arg(long)]
        year: Option<i32>,
        /// Time zone the log's times are written in (default UTC).
        #[arg(long)]
        time_zone: Option<String>,
    },
    /// Firewall rulesets.
    Firewall {
        #[command(subcommand)]
        action: FirewallAction,
    },
    /// Show how a number normalizes and classifies, which rate applies, and which rules
    /// allow or deny it and why (credit figures assume nothing spent yet).
    Explain {
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long, short)]
        extension: String,
        #[arg(long, short)]
        number: String,
        /// The instant to decide at (RFC 3339); default now.
        #[arg(long)]
        at: Option<String>,
        /// Source IP of the call; default: the first address the extension is allowed.
        #[arg(long)]
        ip: Option<IpAddr>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Print SIP passwords from the OS random generator: no ambiguous or quoting-hostile
    /// characters, and at least the given zxcvbn strength score.
    Passwd {
        #[arg(long, default_value_t = 20)]
        length: usize,
        #[arg(long, default_value_t = 1)]
        count: usize,
        /// zxcvbn score, 0 to 4.
        #[arg(long, default_value_t = 4)]
        min_score: u8,
    },
    /// Print voicemail PINs from the OS random generator, avoiding repeated digits, runs,
    /// years and common PINs.
    Pin {
        #[arg(long, default_value_t = 6)]
        length: usize,
        #[arg(long, default_value_t = 1)]
        count: usize,
    },
    /// Audit PBX configuration files (and a policy) for weak or reused credentials, weak
    /// PINs, missing IP restrictions, test extensions and unlimited settings.
    Audit {
        /// A source, KIND:PATH with KIND pjsip, sip, voicemail, acl (Asterisk acl.conf),
        /// freeswitch (a conf directory), csv or json (repeatable).
        #[arg(long = "from", value_name = "KIND:PATH", value_parser = audit::parse_source,
              required_unless_present = "config")]
        from: Vec<audit::Source>,
        /// A tollgate policy to audit too (money limits, allowed_cidrs, schedules).
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long)]
        json: bool,
        /// Also write a self-contained HTML report to this file.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// Exit 1 when a finding at or above this severity exists (info, low, medium,
        /// high, critical); default: never.
        #[arg(long, value_name = "SEVERITY")]
        fail_on: Option<tollgate_audit::Severity>,
        /// Print a generated replacement for each weak password and PIN.
        #[arg(long, conflicts_with = "json")]
        fix: bool,
        /// tollgate's database, for registration and call history (unused extensions,
        /// firmware of the phones seen); default: the policy's database, if it exists.
        #[arg(long, value_name = "FILE")]
        database: Option<PathBuf>,
        /// Days without registration or call after which an extension is unused (0: off;
        /// default: [audit] unused_after, else 30).
        #[arg(long, value_name = "DAYS")]
        unused_after: Option<u32>,
        /// Lowest zxcvbn score of a SIP password, 0-4 (default: [audit], else 3).
        #[arg(long, value_name = "SCORE", value_parser = clap::value_parser!(u8).range(0..=4))]
        min_score: Option<u8>,
        /// Fewest characters of a SIP password (default: [audit], else 12).
        #[arg(long, value_name = "N")]
        min_length: Option<usize>,
        /// Fewest digits of a voicemail PIN (default: [audit], else 6).
        #[arg(long, value_name = "N")]
        min_pin_length: Option<usize>,
        /// A substring marking test extensions (repeatable; replaces the defaults).
        #[arg(long = "test-pattern", value_name = "TEXT")]
        test_patterns: Vec<String>,
    },
}

#[derive(Subcommand)]
enum BanAction {
    /// List the bans in force.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Ban an address or network (without --duration: until lifted).
    Add {
        target: String,
        /// Seconds.
        #[arg(long)]
        duration: Option<u64>,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Lift a ban.
    Del { target: String },
}

#[derive(Subcommand)]
enum ReportKind {
    /// What shadow mode would have denied, banned and alerted, and the money the denials
    /// would have saved.
    Shadow {
        /// How far back, e.g. "7d", "24h" (default 7d).
        #[arg(long, default_value = "7d")]
        since: String,
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The database to read (default: the policy's).
        #[arg(long)]
        database: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum AlertsAction {
    /// Mark an open alert as seen (it stays open while its condition lasts).
    Ack {
        id: u64,
        /// Who acknowledges (default: the login name, else "admin").
        #[arg(long)]
        by: Option<String>,
    },
}

#[derive(Subcommand)]
enum SuspendAction {
    /// List the suspensions in force.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Lift every suspension of an extension or account: `lift extension 1001`.
    Lift {
        /// extension or account.
        kind: String,
        id: String,
    },
}

#[derive(Subcommand)]
enum FirewallAction {
    /// Print a baseline nftables ruleset that opens SIP and RTP only to the policy's
    /// trusted networks ([firewall] trusted); load it with `nft -f FILE`.
    Render {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

fn load(config: Option<&PathBuf>) -> Result<Loaded> {
    let loaded = match config {
        Some(path) => load_file(path),
        None => load_default(),
    };
    loaded.map_err(|e| anyhow::anyhow!("{e}"))
}

/// `tollgate restore`: check the copy, take the database's lock (no service may run on
/// it), keep the current file aside, put the copy in place, check it again.
fn restore(file: &std::path::Path, db: &std::path::Path) -> Result<ExitCode> {
    let report = tollgate_store::verify_copy(file)
        .with_context(|| format!("{} is not a usable backup", file.display()))?;
    let _lock = tollgate_server::app::lock_database(db).map_err(|e| anyhow::anyhow!("{e}"))?;
    if db.exists() {
        let aside = db.with_extension(format!(
            "db.before-restore-{}",
            Utc::now().format("%Y%m%dT%H%M%S")
        ));
        std::fs::rename(db, &aside)
            .with_context(|| format!("cannot move {} aside", db.display()))?;
        println!("kept the replaced database as {}", aside.display());
    }
    for suffix in ["-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(std::path::PathBuf::from(name));
    }
    std::fs::copy(file, db).with_context(|| format!("cannot write {}", db.display()))?;
    let after = tollgate_store::verify_copy(db).context("the restored database does not check")?;
    if after != report {
        bail!("the restored database differs from the backup");
    }
    println!(
        "restored {} from {}: schema v{}, {} open and {} settled calls, {} extensions balanced",
        db.display(),
        file.display(),
        report.schema_version,
        report.open_calls,
        report.settled_calls,
        report.balanced_extensions
    );
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve {
            config,
            listen,
            database,
            log_format,
        } => serve(config, listen, database, log_format),
        Command::Check { file } => check(&file),
        Command::Ban {
            action,
            config,
            url,
            token_file,
        } => load(config.as_ref()).and_then(|loaded| {
            let client = admin::Client::new(&loaded, url, token_file)?;
            match action {
                BanAction::List { json } => admin::ban_list(&client, json),
                BanAction::Add {
                    target,
                    duration,
                    reason,
                } => admin::ban_add(&client, &target, duration, reason),
                BanAction::Del { target } => admin::ban_del(&client, &target),
            }
        }),
        Command::Init {
            from,
            out,
            country,
            time_zone,
            currency,
        } => init::run(&init::InitOptions {
            source: &from,
            out: out.as_deref(),
            country: &country,
            time_zone: &time_zone,
            currency: &currency,
        }),
        Command::Report {
            what:
                ReportKind::Shadow {
                    since,
                    config,
                    database,
                    json,
                },
        } => load(config.as_ref()).and_then(|loaded| {
            let db = database.unwrap_or(loaded.settings.server.database);
            report::shadow(&db, &since, json)
        }),
        Command::Backup {
            file,
            config,
            database,
        } => load(config.as_ref()).and_then(|loaded| {
            let db = database.unwrap_or(loaded.settings.server.database);
            let report = tollgate_store::backup_live(&db, &file)
                .with_context(|| format!("cannot back up {}", db.display()))?;
            println!(
                "wrote {}: schema v{}, {} open and {} settled calls, {} spend rows, {} extensions balanced",
                file.display(),
                report.schema_version,
                report.open_calls,
                report.settled_calls,
                report.spend_rows,
                report.balanced_extensions
            );
            Ok(ExitCode::SUCCESS)
        }),
        Command::Restore {
            file,
            config,
            database,
        } => load(config.as_ref()).and_then(|loaded| {
            let db = database.unwrap_or(loaded.settings.server.database);
            restore(&file, &db)
        }),
        Command::Alerts {
            action,
            all,
            json,
            config,
            url,
            token_file,
        } => load(config.as_ref()).and_then(|loaded| {
            let client = admin::Client::new(&loaded, url, token_file)?;
            match action {
                None => admin::alerts_list(&client, all, json),
                Some(AlertsAction::Ack { id, by }) => admin::alerts_ack(
                    &client,
                    id,
                    by.or_else(|| std::env::var("USER").ok())
                        .unwrap_or_else(|| "admin".into()),
                ),
            }
        }),
        Command::Suspend {
            action,
            config,
            url,
            token_file,
        } => load(config.as_ref()).and_then(|loaded| {
            let client = admin::Client::new(&loaded, url, token_file)?;
            match action {
                SuspendAction::List { json } => admin::suspensions_list(&client, json),
                SuspendAction::Lift { kind, id } => admin::suspension_lift(&client, &kind, &id),
            }
        }),
        Command::Logscan {
            format,
            file,
            config,
            json,
            year,
            time_zone,
        } => config
            .as_ref()
            .map(|path| load(Some(path)))
            .transpose()
            .and_then(|loaded| {
                logscan::run(
                    loaded.as_ref(),
                    &logscan::Options {
                        format: &format,
                        file: &file,
                        json,
                        year,
                        time_zone: time_zone.as_deref(),
                    },
                )
            }),
        Command::Firewall {
            action: FirewallAction::Render { config },
        } => load(config.as_ref()).and_then(|loaded| admin::firewall_render(&loaded)),
        Command::Explain {
            config,
            extension,
            number,
            at,
            ip,
            json,
        } => explain(
            config.as_ref(),
            &extension,
            &number,
            at.as_deref(),
            ip,
            json,
        ),
        Command::Passwd {
            length,
            count,
            min_score,
        } => credentials::passwd(length, count, min_score),
        Command::Pin { length, count } => credentials::pin(length, count),
        Command::Audit {
            from,
            config,
            json,
            html,
            fail_on,
            fix,
            database,
            unused_after,
            min_score,
            min_length,
            min_pin_length,
            test_patterns,
        } => config
            .as_ref()
            .map(|path| load(Some(path)))
            .transpose()
            .and_then(|loaded| {
                audit::run(
                    loaded.as_ref(),
                    &audit::Options {
                        sources: &from,
                        json,
                        html: html.as_deref(),
                        fail_on,
                        fix,
                        database: database.as_deref(),
                        unused_after,
                        min_score,
                        min_length,
                        min_pin_length,
                        test_patterns: &test_patterns,
                    },
                )
            }),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tollgate: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// How the service writes its log (stderr): for people, or JSON lines for a collector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

/// Levels from `RUST_LOG` (e.g. `info`, `tollgate_server=debug,info`), `info` by default.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn serve(
    config: Option<PathBuf>,
    listen: Option<SocketAddr>,
    database: Option<PathBuf>,
    log_format: LogFormat,
) -> Result<ExitCode> {
    init_logging(log_format);
    let mut loaded = load(config.as_ref())?;
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    if let Some(listen) = listen {
        loaded.settings.server.listen = listen;
    }
    if let Some(database) = database {
        loaded.settings.server.database = database;
    }
    let source = config
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| tollgate_config::DEFAULT_POLICY_NAME.to_string());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let address = loaded.settings.server.listen;
        let database = loaded.settings.server.database.clone();
        let app = tollgate_server::App::start(loaded, Utc::now())?;
        app.set_policy_path(config.clone());
        #[cfg(unix)]
        {
            // SIGHUP: re-read the policy; an invalid file leaves the old one in force.
            let reload_app = app.clone();
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                Ok(mut hangups) => {
                    tokio::spawn(async move {
                        while hangups.recv().await.is_some() {
                            match reload_app.reload_from_source().await {
                                Ok(summary) => tracing::info!(?summary, "SIGHUP: policy reloaded"),
                                Err(e) => tracing::error!("SIGHUP: {e}"),
                            }
                        }
                    });
                }
                Err(e) => tracing::warn!(error = %e, "cannot listen for SIGHUP: reload with POST /v1/admin/reload"),
            }
        }
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address}"))?;
        let bound = listener.local_addr()?;
        tracing::info!(policy = %source, database = %database.display(), "tollgate listening on http://{bound}");
        let agi = match &app.agi {
            Some(settings) => {
                let agi_listener = tokio::net::TcpListener::bind(settings.listen)
                    .await
                    .with_context(|| format!("cannot listen for FastAGI on {}", settings.listen))?;
                let agi_bound = agi_listener.local_addr()?;
                tracing::info!("FastAGI listening on agi://{agi_bound}");
                println!("agi listening on {agi_bound}");
                Some(agi_listener)
            }
            None => None,
        };
        // Tests and scripts read this line (the last at start) to find a port chosen with :0.
        println!("listening on {bound}");
        tollgate_server::serve_with_agi(listener, agi, app, shutdown_signal()).await?;
        tracing::info!("stopped; every acknowledged change is durable");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}

fn check(file: &std::path::Path) -> Result<ExitCode> {
    match load_file(file) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                println!("warning: {warning}");
            }
            let rates: usize = loaded.policy.plans.values().map(|p| p.rates.len()).sum();
            println!(
                "{}: ok: {} accounts, {} extensions, {} plans ({} rates), {} schedules, {} high-risk ranges, {} warnings",
                file.display(),
                loaded.policy.accounts.len(),
                loaded.policy.extensions.len(),
                loaded.policy.plans.len(),
                rates,
                loaded.policy.schedules.len(),
                loaded.policy.high_risk.len(),
                loaded.warnings.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            for problem in &e.problems {
                eprintln!("error: {problem}");
            }
            eprintln!("{}: {} problems", file.display(), e.problems.len());
            Ok(ExitCode::from(1))
        }
    }
}

fn explain(
    config: Option<&PathBuf>,
    extension: &str,
    number: &str,
    at: Option<&str>,
    ip: Option<IpAddr>,
    json: bool,
) -> Result<ExitCode> {
    let loaded = load(config)?;
    let at: DateTime<Utc> = match at {
        Some(text) => DateTime::parse_from_rfc3339(text)
            .with_context(|| {
                format!("--at {text:?} is not an RFC 3339 time (e.g. 2026-11-26T22:30:00+01:00)")
            })?
            .with_timezone(&Utc),
        None => Utc::now(),
    };
    let engine = Engine::new(loaded.policy);
    let Some(ext) = engine.policy.extensions.get(extension) else {
        bail!("unknown extension {extension:?}");
    };
    let (source_ip, ip_note) = match ip {
        Some(ip) => (ip, None),
        None => match ext.allowed_cidrs.first() {
            Some(net) => {
                let first = net.hosts().next().unwrap_or(net.network());
                (
                    first,
                    Some(format!(
                        "not given: using {first}, the first address the extension is allowed"
                    )),
                )
            }
            None => (
                IpAddr::from([127, 0, 0, 1]),
                Some(
                    "not given: using 127.0.0.1 (the extension has no source restriction)"
                        .to_string(),
                ),
            ),
        },
    };
    let request = AuthorizeRequest {
        call_id: "explain",
        extension,
        source_ip,
        number,
        pbx_ref: None,
    };
    let explanation = engine
        .explain(&request, at)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if json {
        let mut value = serde_json::to_value(&explanation)?;
        value["at"] = serde_json::Value::String(at.to_rfc3339());
        value["source_ip"] = serde_json::Value::String(source_ip.to_string());
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!(
            "{}",
            render_explanation(&explanation, at, source_ip, ip_note.as_deref())
        );
    }
    Ok(match explanation.decision {
        Decision::Allow(_) => ExitCode::SUCCESS,
        Decision::Deny(_) => ExitCode::from(2),
    })
}

fn render_explanation(
    e: &Explanation,
    at: DateTime<Utc>,
    ip: IpAddr,
    ip_note: Option<&str>,
) -> String {
    let mut out = String::new();
    let d = &e.destination;
    out += &format!(
        "extension   {} (accounts: {})\n",
        e.extension,
        e.account_chain.join(" < ")
    );
    out += &format!("at          {}\n", at.to_rfc3339());
    out += &format!(
        "source ip   {ip}{}\n",
        ip_note.map(|n| format!(" ({n})")).unwrap_or_default()
    );
    out += &format!("dialed      {}\n", d.dialed);
    out += &format!(
        "normalized  {} ({})\n",
        d.e164.as_deref().unwrap_or("-"),
        d.normalization
    );
    out += &format!(
        "class       {}{}{}{}\n",
        d.class,
        d.country
            .as_deref()
            .map(|c| format!(", country {c}"))
            .unwrap_or_default(),
        d.number_type
            .as_deref()
            .map(|t| format!(", type {t}"))
            .unwrap_or_default(),
        if d.e164.is_some() && !d.valid {
            ", not a valid number per libphonenumber"
        } else {
            ""
        }
    );
    if let Some(h) = &d.high_risk {
        out += &format!("high risk   +{}: {}\n", h.prefix, h.reason);
    }
    match &e.rate {
        Some(r) => {
            out += &format!(
                "rate        plan {} {} {}: {} {}/min, connection {}, billed {}\n",
                r.plan,
                r.prefix,
                r.description,
                r.price_per_minute,
                r.currency,
                r.connection_fee,
                r.increments
            )
        }
        None => out += "rate        none\n",
    }
    out += "checks\n";
    for check in &e.checks {
        out += &format!(
            "  {} {}: {}\n",
            if check.passed { "pass" } else { "DENY" },
            check.rule,
            check.detail
        );
    }
    if !e.credit.is_empty() {
        out += "credit (nothing spent or reserved yet: explain does not read the ledger)\n";
        for h in &e.credit {
            match (&h.binding, h.available) {
                (Some(b), Some(avail)) => {
                    out += &format!(
                        "  {}: {} of {} {} available\n",
                        h.subject, avail, b.limit, b.kind
                    )
                }
                _ => out += &format!("  {}: unlimited\n", h.subject),
            }
        }
    }
    match &e.decision {
        Decision::Allow(g) => {
            out += &format!(
                "decision    ALLOW for at most {} s (reserves {} {})\n",
                g.max_duration_s, g.reserved, g.currency
            )
        }
        Decision::Deny(d) => {
            out += &format!(
                "decision    DENY {}: {} (rule: {})\n",
                d.code.as_str(),
                d.message,
                d.rule
            )
        }
    }
    out
}
