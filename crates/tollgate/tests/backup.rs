//! `tollgate backup` while the service is under load, `tollgate restore` refused while the
//! service runs, and a restore into a fresh directory that opens and balances.

// Test code: failures must fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{start_in, TEST_POLICY};
use tollgate_store::Store;

fn policy() -> String {
    format!(
        "{TEST_POLICY}\n[extensions.4001]\naccount = \"acme\"\nallowed_cidrs = [\"127.0.0.0/8\"]\nlimits = {{ daily = \"40.00\", monthly = \"500.00\" }}\n"
    )
}

fn tollgate(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn backup_under_load_then_restore_into_a_fresh_directory() {
    let dir = tempfile::tempdir().unwrap();
    let server = Arc::new(start_in(dir.path(), &policy()));
    let db = dir.path().join("tollgate.db");
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let server = server.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut cycles = 0;
            while !stop.load(Ordering::Relaxed) && cycles < 3_000 {
                let call = format!("b{cycles}");
                let (status, answer) =
                    server.authorize(&call, "4001", "127.0.0.1", "+442071234567");
                assert_eq!(status, 200, "{answer}");
                let (status, _) = server.post(
                    &format!("/v1/calls/{call}/end"),
                    &server.pbx,
                    r#"{"duration_s": 3}"#,
                );
                assert_eq!(status, 200);
                cycles += 1;
            }
            cycles
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(500));
    let copy = dir.path().join("copy.db");
    let (ok, out, err) = tollgate(&[
        "backup",
        copy.to_str().unwrap(),
        "--database",
        db.to_str().unwrap(),
    ]);
    stop.store(true, Ordering::Relaxed);
    let cycles = load.join().unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("extensions balanced"), "{out}");
    assert!(cycles > 0);

    // Not over a running service.
    let (ok, _, err) = tollgate(&[
        "restore",
        copy.to_str().unwrap(),
        "--database",
        db.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("another tollgate service is using"), "{err}");
    // Not a file that is not a tollgate database.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, b"not a database at all").unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let fresh_db = fresh.path().join("tollgate.db");
    let (ok, _, err) = tollgate(&[
        "restore",
        junk.to_str().unwrap(),
        "--database",
        fresh_db.to_str().unwrap(),
    ]);
    assert!(!ok, "{err}");
    assert!(!fresh_db.exists(), "a refused restore writes nothing");

    // Into a fresh directory: the copy opens, balances, and a service starts on it.
    let (ok, out, err) = tollgate(&[
        "restore",
        copy.to_str().unwrap(),
        "--database",
        fresh_db.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("restored"), "{out}");
    let settled: i64 = {
        let store =
            tollgate_store::SqliteStore::open(&fresh_db, tollgate_store::Durability::Normal)
                .unwrap();
        store
            .settled_calls("4001", 100_000)
            .unwrap()
            .iter()
            .map(|c| c.charged.micros())
            .sum()
    };
    assert!(settled > 0);
    let restored = start_in(fresh.path(), &policy());
    let credit = restored.credit("4001");
    let spent = credit["levels"][0]["spent_today"]
        .as_str()
        .unwrap()
        .to_string();
    let (whole, frac) = spent.split_once('.').unwrap();
    let spent_micros =
        whole.parse::<i64>().unwrap() * 1_000_000 + format!("{frac:0<6}").parse::<i64>().unwrap();
    assert_eq!(spent_micros, settled, "{credit}");
    drop(server);
}
