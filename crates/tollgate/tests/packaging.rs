//! The Debian package's policy, `packaging/tollgate.toml` (installed as the conffile
//! `/etc/tollgate/tollgate.toml`), is the documented example with its state moved to
//! `/var/lib/tollgate`: the example's relative `database` and token `file` paths would
//! resolve to `/etc/tollgate`, which the service's unit makes read-only. These tests keep
//! the two files in step and check that the packaged one is a valid policy.
//!
//! After a change to `examples/tollgate.toml`, regenerate the packaged policy with
//! `TOLLGATE_BLESS=1 cargo test -p tollgate --test packaging`.

// Test code: failures must fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use tollgate_config::TokenSource;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Each edit turns one piece of the example into the packaged policy's; each must occur
/// exactly once in the example, so that a change there is noticed here.
const EDITS: &[(&str, &str)] = &[
    (
        "# tollgate policy: the documented example, also compiled into the binary as the default.\n\
         #\n\
         #   tollgate check examples/tollgate.toml      validate (errors name file, line and key)\n\
         #   tollgate serve --config examples/tollgate.toml\n",
        "# tollgate policy, as installed by the Debian package: the documented example with its\n\
         # state (ledger, API tokens) in /var/lib/tollgate, the only folder the service may write.\n\
         # dpkg keeps your edits on upgrade (a conffile).\n\
         #\n\
         #   tollgate check /etc/tollgate/tollgate.toml     validate (errors name file, line and key)\n\
         #   systemctl reload tollgate                      apply (an invalid file leaves the old policy)\n",
    ),
    (
        "database = \"tollgate.db\"           # SQLite, relative to this file (or the current directory)\n",
        "database = \"/var/lib/tollgate/tollgate.db\"   # SQLite; a relative path is relative to this file\n",
    ),
    (
        "file = \"pbx.token\"\n",
        "file = \"/var/lib/tollgate/pbx.token\"\n",
    ),
    (
        "file = \"admin.token\"\n",
        "file = \"/var/lib/tollgate/admin.token\"\n",
    ),
];

fn packaged_from(example: &str) -> String {
    let mut text = example.to_string();
    for (from, to) in EDITS {
        let count = text.matches(from).count();
        assert_eq!(
            count, 1,
            "examples/tollgate.toml should contain this exactly once (found {count}): update EDITS \
             in crates/tollgate/tests/packaging.rs:\n{from}"
        );
        text = text.replacen(from, to, 1);
    }
    text
}

#[test]
fn packaged_policy_is_the_example_with_state_in_var_lib() {
    let example = std::fs::read_to_string(workspace().join("examples/tollgate.toml")).unwrap();
    let expected = packaged_from(&example);
    let path = workspace().join("packaging/tollgate.toml");
    if std::env::var_os("TOLLGATE_BLESS").is_some() {
        std::fs::write(&path, &expected).unwrap();
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "packaging/tollgate.toml is not the example with the packaging edits: regenerate it with \
         TOLLGATE_BLESS=1 cargo test -p tollgate --test packaging"
    );
    assert!(
        !expected.contains("file = \"pbx.token\"") && !expected.contains("\"tollgate.db\""),
        "the packaged policy still keeps state next to itself"
    );
}

#[test]
fn packaged_policy_passes_check() {
    let path = workspace().join("packaging/tollgate.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("check")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tollgate check packaging/tollgate.toml failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(": ok: 2 accounts, 2 extensions"),
        "{stdout}"
    );
}

/// Absolute paths in a policy stay absolute (`base_dir.join(abs)` is `abs`): the packaged
/// policy's state lands in /var/lib/tollgate whatever folder the policy is read from.
#[test]
fn absolute_state_paths_are_kept() {
    let text = std::fs::read_to_string(workspace().join("packaging/tollgate.toml")).unwrap();
    let loaded = tollgate_config::load_str(
        &text,
        Path::new("/etc/tollgate/tollgate.toml"),
        Path::new("/etc/tollgate"),
    )
    .unwrap();
    assert_eq!(
        loaded.settings.server.database,
        Path::new("/var/lib/tollgate/tollgate.db")
    );
    let files: Vec<&Path> = loaded
        .settings
        .tokens
        .iter()
        .map(|t| match &t.source {
            TokenSource::File(path) => path.as_path(),
            other => panic!("token {} is not a file: {other:?}", t.name),
        })
        .collect();
    assert_eq!(
        files,
        [
            Path::new("/var/lib/tollgate/pbx.token"),
            Path::new("/var/lib/tollgate/admin.token")
        ]
    );
}
