//! `mailctl import` (IMAP, Maildir, mbox) and `mailctl export` against a
//! real Dovecot from Debian's packages, checked with Python's imaplib: see
//! `import_dovecot.py` for what it asserts. Needs `dovecot` (scripts/test
//! installs dovecot-imapd when run as root) and fails, with the reason,
//! when it is missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn import_from_dovecot_and_export_round_trips() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/import_dovecot.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_mailctl"))
        .output()
        .expect("python3 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "import_dovecot.py failed:\n{text}");
    assert!(text.contains("all import/export checks passed"), "{text}");
}
