//! The command hook backend: runs programs the operator configured, once per ban and unban,
//! for firewalls tollgate has no adapter for (a cloud security group API, a router over SSH,
//! a Kamailio `permissions` reload ...).
//!
//! Each command is an argv template. Placeholders are replaced inside arguments, and each
//! argument stays exactly one argument: there is no shell, so no value can be split, globbed
//! or run as a command. `{{` and `}}` stand for literal braces.
//!
//! | placeholder | value |
//! |---|---|
//! | `{ip}` | the network's address: `192.0.2.7`, `198.51.100.0`, `2001:db8::` |
//! | `{net}` | the network in CIDR form: `192.0.2.7/32`, `198.51.100.0/24` |
//! | `{prefix}` | the prefix length: `32`, `24`, `64` |
//! | `{timeout}` | seconds the ban still runs, rounded up; `0` for a permanent ban (ban only) |
//! | `{rule}` | the rule name, reduced by [`sanitize_comment`] (ban only) |
//!
//! The hook cannot be asked what it holds, so [`Firewall::list`] answers with the bans this
//! process applied and that have not expired, and [`Firewall::sync`] after a restart re-runs
//! the ban command for every ban (ban commands should therefore be idempotent).

use std::time::Duration;

use chrono::{DateTime, Utc};
use ipnet::IpNet;

use crate::exec;
use crate::{
    canonical, ceil_secs, sanitize_comment, BanEntry, EnforceError, Firewall, Lifetime, Listing,
    Memory,
};

const BACKEND: &str = "command";

/// Configuration of [`CommandHook`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookConfig {
    /// Run for each ban, e.g. `["/usr/local/bin/block", "--cidr", "{net}", "--ttl={timeout}"]`.
    pub ban: Vec<String>,
    /// Run for each unban, e.g. `["/usr/local/bin/unblock", "{net}"]`.
    pub unban: Vec<String>,
    /// How long one run may take before it is killed.
    pub timeout: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placeholder {
    Ip,
    Net,
    Prefix,
    Timeout,
    Rule,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Lit(String),
    Var(Placeholder),
}

type Template = Vec<Vec<Piece>>;

/// The command hook adapter. See the module documentation.
#[derive(Debug)]
pub struct CommandHook {
    ban: Template,
    unban: Template,
    timeout: Duration,
    memory: Memory,
    clock: fn() -> DateTime<Utc>,
}

fn config_error(reason: String) -> EnforceError {
    EnforceError::Config {
        backend: BACKEND,
        reason,
    }
}

fn parse_arg(arg: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut lit = String::new();
    let mut chars = arg.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                lit.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                lit.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => return Err(format!("unclosed '{{' in '{arg}'")),
                    }
                }
                let var = match name.as_str() {
                    "ip" => Placeholder::Ip,
                    "net" => Placeholder::Net,
                    "prefix" => Placeholder::Prefix,
                    "timeout" => Placeholder::Timeout,
                    "rule" => Placeholder::Rule,
                    _ => {
                        return Err(format!(
                            "unknown placeholder '{{{name}}}' in '{arg}' (known: {{ip}}, {{net}}, {{prefix}}, {{timeout}}, {{rule}}; write {{{{ for a brace)"
                        ))
                    }
                };
                if !lit.is_empty() {
                    pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                }
                pieces.push(Piece::Var(var));
            }
            '}' => return Err(format!("lone '}}' in '{arg}' (write }}}} for a brace)")),
            c => lit.push(c),
        }
    }
    if !lit.is_empty() || pieces.is_empty() {
        pieces.push(Piece::Lit(lit));
    }
    Ok(pieces)
}

fn parse_template(
    what: &str,
    argv: &[String],
    allowed: &[Placeholder],
) -> Result<Template, EnforceError> {
    let Some(program) = argv.first() else {
        return Err(config_error(format!("the {what} command is empty")));
    };
    let template = argv
        .iter()
        .map(|a| parse_arg(a))
        .collect::<Result<Template, _>>()
        .map_err(|e| config_error(format!("{what} command: {e}")))?;
    // The program itself is never made of data.
    if program.is_empty() || template[0].iter().any(|p| matches!(p, Piece::Var(_))) {
        return Err(config_error(format!(
            "the {what} command's program '{program}' must be a fixed path, without placeholders"
        )));
    }
    for piece in template.iter().flatten() {
        if let Piece::Var(v) = piece {
            if !allowed.contains(v) {
                return Err(config_error(format!(
                    "the {what} command cannot use {{{}}}",
                    format!("{v:?}").to_lowercase()
                )));
            }
        }
    }
    Ok(template)
}

/// The values of one ban or unban.
struct Values {
    net: IpNet,
    timeout: Option<String>,
    rule: Option<String>,
}

fn render(template: &Template, v: &Values) -> Vec<String> {
    template
        .iter()
        .map(|arg| {
            let mut out = String::new();
            for piece in arg {
                match piece {
                    Piece::Lit(s) => out.push_str(s),
                    Piece::Var(Placeholder::Ip) => out.push_str(&v.net.addr().to_string()),
                    Piece::Var(Placeholder::Net) => out.push_str(&v.net.to_string()),
                    Piece::Var(Placeholder::Prefix) => {
                        out.push_str(&v.net.prefix_len().to_string())
                    }
                    Piece::Var(Placeholder::Timeout) => {
                        out.push_str(v.timeout.as_deref().unwrap_or("0"))
                    }
                    Piece::Var(Placeholder::Rule) => out.push_str(v.rule.as_deref().unwrap_or("")),
                }
            }
            out
        })
        .collect()
}

impl CommandHook {
    pub fn new(cfg: HookConfig) -> Result<Self, EnforceError> {
        use Placeholder::*;
        let ban = parse_template("ban", &cfg.ban, &[Ip, Net, Prefix, Timeout, Rule])?;
        let unban = parse_template("unban", &cfg.unban, &[Ip, Net, Prefix])?;
        if cfg.timeout.is_zero() {
            return Err(config_error(
                "the command timeout must be above zero".into(),
            ));
        }
        Ok(Self {
            ban,
            unban,
            timeout: cfg.timeout,
            memory: Memory::default(),
            clock: Utc::now,
        })
    }

    /// Replaces the clock that [`Firewall::list`] measures remaining time against.
    pub fn with_clock(mut self, clock: fn() -> DateTime<Utc>) -> Self {
        self.clock = clock;
        self
    }

    /// The argv the ban command would run for `entry` at `now` (`None`: expired).
    pub fn ban_argv(&self, entry: &BanEntry, now: DateTime<Utc>) -> Option<Vec<String>> {
        let net = canonical(entry.net);
        let timeout = match entry.lifetime(now) {
            Lifetime::Expired => return None,
            Lifetime::Remaining(d) => ceil_secs(d).to_string(),
            Lifetime::Permanent => "0".into(),
        };
        Some(render(
            &self.ban,
            &Values {
                net,
                timeout: Some(timeout),
                rule: Some(sanitize_comment(&entry.comment)),
            },
        ))
    }
}

impl Firewall for CommandHook {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn setup(&mut self) -> Result<(), EnforceError> {
        Ok(())
    }

    fn ban(&mut self, entry: &BanEntry, now: DateTime<Utc>) -> Result<(), EnforceError> {
        let net = canonical(entry.net);
        let Some(argv) = self.ban_argv(entry, now) else {
            tracing::debug!(target: "tollgate::enforce", backend = BACKEND, %net, "ban already expired, not applied");
            return Ok(());
        };
        exec::run_hook(&argv, self.timeout)?;
        self.memory
            .insert(net, entry.expires_at, entry.comment.clone());
        Ok(())
    }

    fn unban(&mut self, net: IpNet) -> Result<(), EnforceError> {
        let net = canonical(net);
        let argv = render(
            &self.unban,
            &Values {
                net,
                timeout: None,
                rule: None,
            },
        );
        exec::run_hook(&argv, self.timeout)?;
        self.memory.remove(&net);
        Ok(())
    }

    fn list(&mut self) -> Result<Listing, EnforceError> {
        Ok(self.memory.list((self.clock)()))
    }

    /// Runs the unban command for every ban this process applied and still remembers.
    fn teardown(&mut self) -> Result<(), EnforceError> {
        let held = self.memory.list((self.clock)());
        for (net, _) in held {
            self.unban(net)?;
        }
        self.memory.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
    }

    fn hook(ban: &[&str], unban: &[&str]) -> Result<CommandHook, EnforceError> {
        CommandHook::new(HookConfig {
            ban: s(ban),
            unban: s(unban),
            timeout: Duration::from_secs(5),
        })
    }

    #[test]
    fn placeholders_fill_whole_arguments_and_inside_them() {
        let h = hook(
            &[
                "/bin/block",
                "{ip}",
                "{net}",
                "--len={prefix}",
                "{timeout}",
                "{rule}",
                "{{literal}}",
            ],
            &["/bin/unblock", "{net}"],
        )
        .unwrap();
        let e = BanEntry::new(
            "198.51.100.9/24".parse().unwrap(),
            Some(now() + chrono::Duration::milliseconds(600_001)),
            "jail sip; rm -rf /",
        );
        assert_eq!(
            h.ban_argv(&e, now()).unwrap(),
            s(&[
                "/bin/block",
                "198.51.100.0",
                "198.51.100.0/24",
                "--len=24",
                "601",
                "jail sip rm -rf /",
                "{literal}"
            ])
        );
        let perm = BanEntry::new("2001:db8::1/128".parse().unwrap(), None, "");
        assert_eq!(
            h.ban_argv(&perm, now()).unwrap(),
            s(&[
                "/bin/block",
                "2001:db8::1",
                "2001:db8::1/128",
                "--len=128",
                "0",
                "",
                "{literal}"
            ])
        );
        assert_eq!(
            h.ban_argv(
                &BanEntry::new("10.0.0.1/32".parse().unwrap(), Some(now()), ""),
                now()
            ),
            None
        );
    }

    #[test]
    fn bad_templates_are_refused() {
        let err = |b: &[&str], u: &[&str]| hook(b, u).unwrap_err().to_string();
        assert!(err(&[], &["/bin/x"]).contains("empty"));
        assert!(err(&["{ip}"], &["/bin/x"]).contains("fixed path"));
        assert!(err(&["/bin/x", "{host}"], &["/bin/x"]).contains("unknown placeholder '{host}'"));
        assert!(err(&["/bin/x", "{ip"], &["/bin/x"]).contains("unclosed"));
        assert!(err(&["/bin/x", "a}b"], &["/bin/x"]).contains("lone"));
        assert!(err(&["/bin/x"], &["/bin/x", "{timeout}"]).contains("cannot use {timeout}"));
    }

    #[test]
    fn runs_the_commands_without_a_shell_and_remembers() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let log = log.to_str().unwrap();
        // `sh -c SCRIPT NAME ARGS...`: the script is ours and fixed; the ban's values arrive
        // as positional arguments and are never parsed by the shell.
        let mut h = hook(
            &[
                "/bin/sh",
                "-c",
                "printf '%s|' \"$@\" >> \"$0\"; echo >> \"$0\"",
                log,
                "ban",
                "{net}",
                "{timeout}",
                "{rule}",
            ],
            &[
                "/bin/sh",
                "-c",
                "printf '%s|' \"$@\" >> \"$0\"; echo >> \"$0\"",
                log,
                "unban",
                "{net}",
            ],
        )
        .unwrap();
        let real_now = Utc::now();
        let e = BanEntry::new(
            "192.0.2.1/32".parse().unwrap(),
            Some(real_now + chrono::Duration::seconds(60)),
            "$(touch /tmp/x) `id`",
        );
        h.ban(&e, real_now).unwrap();
        assert_eq!(h.list().unwrap().len(), 1);
        h.unban("192.0.2.1/32".parse().unwrap()).unwrap();
        assert!(h.list().unwrap().is_empty());
        let text = std::fs::read_to_string(log).unwrap();
        assert_eq!(
            text,
            "ban|192.0.2.1/32|60|(touch /tmp/x) id|\nunban|192.0.2.1/32|\n"
        );
    }

    #[test]
    fn a_failing_or_slow_hook_is_an_error_naming_it() {
        let mut h = hook(
            &["/bin/sh", "-c", "echo denied >&2; exit 2"],
            &["/bin/true"],
        )
        .unwrap();
        let e = BanEntry::new("192.0.2.1/32".parse().unwrap(), None, "r");
        let msg = h.ban(&e, now()).unwrap_err().to_string();
        assert!(msg.contains("denied") && msg.contains("/bin/sh"), "{msg}");
        assert!(h.list().unwrap().is_empty());
        let mut slow = CommandHook::new(HookConfig {
            ban: s(&["/bin/sleep", "5"]),
            unban: s(&["/bin/true"]),
            timeout: Duration::from_millis(100),
        })
        .unwrap();
        assert!(matches!(
            slow.ban(&e, now()),
            Err(EnforceError::Timeout { .. })
        ));
    }
}
