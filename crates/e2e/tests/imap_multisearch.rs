//! MULTISEARCH (RFC 7377) end to end: Python's imaplib and smtplib on the
//! PostgreSQL store (ten folders of mail delivered over SMTP, searched at
//! once, and non-ASCII search strings as UTF-8 literals), and raw
//! sessions for the exact responses and the errors, after each of which
//! the session goes on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::{Backend, RawImap, TestImap, TestSmtp, python, store_with_alice, tagged};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imaplib_searches_ten_folders_and_non_ascii_text() {
    let (store, _client) = store_with_alice(Backend::Postgres).await;
    let smtp = TestSmtp::start(&store.uri()).await;
    let imap = TestImap::start(&store.uri()).await;
    let (imap_port, smtp_port) = (imap.imap.port().to_string(), smtp.smtp.port().to_string());
    let (ok, out) = tokio::task::spawn_blocking(move || {
        python(
            "imap_multisearch.py",
            &[
                "127.0.0.1",
                &imap_port,
                &smtp_port,
                "alice@example.org",
                "pw-alice",
            ],
        )
    })
    .await
    .unwrap();
    assert!(ok && out.contains("ALL OK"), "{out}");
}

async fn append(a: &mut RawImap, mailbox: &str, body: &str) {
    let r = a
        .cmd(&format!("APPEND {mailbox} {{{}+}}\r\n{body}", body.len()))
        .await;
    assert!(tagged(&r).contains(" OK "), "{r:?}");
}

fn uidvalidity(r: &[String]) -> u32 {
    let l = r.iter().find(|l| l.contains("UIDVALIDITY")).unwrap();
    let rest = &l[l.find("UIDVALIDITY ").unwrap() + 12..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// RFC 7377 2: the exact response (TAG, MAILBOX in modified UTF-7,
/// UIDVALIDITY, UID), none for a folder without a match or a missing
/// one, MODSEQ with a MODSEQ key (RFC 7162 3.1.5), SAVE for the selected
/// mailbox alone, message numbers there only; and every malformed or
/// refused ESEARCH answered BAD (or NO [BADCHARSET]) with the session
/// going on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_and_errors_on_raw_sessions() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let (store, _client) = store_with_alice(backend).await;
        let imap = TestImap::start(&store.uri()).await;
        let mut a = RawImap::connect(imap.imap).await;
        // Not logged in: not a command yet.
        let r = a.cmd("ESEARCH IN (personal) ALL").await;
        assert!(tagged(&r).contains(" BAD "), "{r:?}");
        a.login().await;
        let caps = a.cmd("CAPABILITY").await;
        assert!(caps[0].contains(" MULTISEARCH "), "{caps:?}");
        a.ok("CREATE \"Caf&AOk-/Q1\"").await;
        a.ok("CREATE Empty").await;
        for i in 1..=3 {
            append(
                &mut a,
                "INBOX",
                &format!("Subject: in {i}\r\n\r\nfind me {i}\r\n"),
            )
            .await;
        }
        append(
            &mut a,
            "\"Caf&AOk-/Q1\"",
            "Subject: cafe\r\n\r\nfind me here\r\n",
        )
        .await;
        let v_inbox = uidvalidity(&a.ok("STATUS INBOX (UIDVALIDITY)").await);
        let v_cafe = uidvalidity(&a.ok("STATUS \"Caf&AOk-/Q1\" (UIDVALIDITY)").await);

        let r = a.ok("ESEARCH IN (personal) BODY \"find me\"").await;
        let t = a.n;
        assert_eq!(
            r[..2],
            [
                format!(
                    "* ESEARCH (TAG \"t{t}\" MAILBOX \"Caf&AOk-/Q1\" UIDVALIDITY {v_cafe}) UID ALL 1\r\n"
                ),
                format!(
                    "* ESEARCH (TAG \"t{t}\" MAILBOX \"INBOX\" UIDVALIDITY {v_inbox}) UID ALL 1:3\r\n"
                ),
            ],
            "{r:?}"
        );
        assert_eq!(r.len(), 3, "{r:?}");
        // RETURN options; a folder named but missing, another without a
        // match: no response for either.
        let r = a
            .ok("ESEARCH IN (mailboxes (INBOX Empty Nowhere) subtree-one \"Caf&AOk-\") RETURN (MIN MAX COUNT) TEXT \"find\"")
            .await;
        let t = a.n;
        assert_eq!(
            r[..2],
            [
                format!(
                    "* ESEARCH (TAG \"t{t}\" MAILBOX \"Caf&AOk-/Q1\" UIDVALIDITY {v_cafe}) UID MIN 1 MAX 1 COUNT 1\r\n"
                ),
                format!(
                    "* ESEARCH (TAG \"t{t}\" MAILBOX \"INBOX\" UIDVALIDITY {v_inbox}) UID MIN 1 MAX 3 COUNT 3\r\n"
                ),
            ],
            "{r:?}"
        );
        assert_eq!(r.len(), 3, "{r:?}");
        // MODSEQ (RFC 7162 3.1.5): the highest of the messages returned
        // (here INBOX's HIGHESTMODSEQ: its last change was its last
        // APPEND), that of MIN alone with RETURN (MIN); never 0.
        let status = a.ok("STATUS INBOX (HIGHESTMODSEQ)").await;
        let highest: u64 = status[0]
            .split("HIGHESTMODSEQ ")
            .nth(1)
            .and_then(|x| x.split(')').next())
            .unwrap()
            .parse()
            .unwrap();
        let r = a.ok("ESEARCH IN (inboxes) MODSEQ 1").await;
        assert!(
            r[0].starts_with("* ESEARCH (TAG")
                && r[0].ends_with(&format!(" UID ALL 1:3 MODSEQ {highest}\r\n")),
            "{r:?}"
        );
        let r = a.ok("ESEARCH IN (inboxes) RETURN (MIN) MODSEQ 1").await;
        let min: u64 = r[0]
            .split("MODSEQ ")
            .nth(1)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            r[0].contains(" UID MIN 1 MODSEQ ") && min > 0 && min < highest,
            "{r:?}"
        );
        // Message numbers and "*" are each mailbox's own (RFC 9051 9):
        // message 3 is INBOX's alone; UID 2:* holds each mailbox's
        // largest UID, 1 in the other folder.
        let r = a.ok("ESEARCH IN (personal) 3").await;
        assert_eq!(r.len(), 2, "{r:?}");
        assert!(
            r[0].contains("MAILBOX \"INBOX\"") && r[0].ends_with(" UID ALL 3\r\n"),
            "{r:?}"
        );
        let r = a.ok("ESEARCH IN (personal) UID 2:*").await;
        assert_eq!(r.len(), 3, "{r:?}");
        assert!(
            r[0].contains("MAILBOX \"Caf&AOk-/Q1\"") && r[0].ends_with(" UID ALL 1\r\n"),
            "{r:?}"
        );
        assert!(
            r[1].contains("MAILBOX \"INBOX\"") && r[1].ends_with(" UID ALL 2:3\r\n"),
            "{r:?}"
        );
        let r = a.ok("ESEARCH IN (personal) RETURN (COUNT) NOT 1:2").await;
        assert_eq!(r.len(), 2, "{r:?}");
        assert!(
            r[0].contains("MAILBOX \"INBOX\"") && r[0].ends_with(" UID COUNT 1\r\n"),
            "{r:?}"
        );

        // Errors: BAD, and the session goes on.
        for bad in [
            "ESEARCH ALL",
            "ESEARCH IN (personal)",
            "ESEARCH IN () ALL",
            "ESEARCH IN (nowhere) ALL",
            "ESEARCH IN (subtree) ALL",
            "ESEARCH IN (personal (depth 1)) ALL",
            "ESEARCH IN personal ALL",
            "ESEARCH IN (personal) RETURN (SAVE) ALL",
            "ESEARCH IN (personal) RETURN (UPDATE) ALL",
            "ESEARCH IN (personal) RETURN (BOGUS) ALL",
            "ESEARCH IN (personal) $",
            "ESEARCH IN (personal) UID $",
            "ESEARCH IN (personal) NOSUCHKEY 1",
            "ESEARCH IN (personal) SUBJECT",
        ] {
            let r = a.cmd(bad).await;
            assert!(tagged(&r).contains(" BAD "), "{bad}: {r:?}");
            assert!(
                !r.iter().any(|l| l.starts_with("* ESEARCH")),
                "{bad}: {r:?}"
            );
            a.ok("NOOP").await;
        }
        let r = a.cmd("ESEARCH IN (personal) CHARSET KOI8-R ALL").await;
        assert!(
            tagged(&r).contains(" NO [BADCHARSET (US-ASCII UTF-8)]"),
            "{r:?}"
        );

        // Selected: no IN is the selected mailbox; message numbers and
        // SAVE are allowed there alone, and the answer is still UIDs.
        a.ok("SELECT INBOX").await;
        a.ok("STORE 2 +FLAGS (\\Deleted)").await;
        a.ok("EXPUNGE").await;
        let r = a.ok("ESEARCH RETURN (SAVE ALL) 2").await;
        assert_eq!(
            r[0],
            format!(
                "* ESEARCH (TAG \"t{}\" MAILBOX \"INBOX\" UIDVALIDITY {v_inbox}) UID ALL 3\r\n",
                a.n
            ),
            "{r:?}"
        );
        let r = a.ok("UID FETCH $ (UID)").await;
        assert!(r[0].contains("UID 3"), "{r:?}");
        let r = a.ok("ESEARCH IN (selected) RETURN (SAVE) ALL").await;
        assert_eq!(r.len(), 1, "SAVE alone sends no ESEARCH: {r:?}");
        let r = a
            .cmd("ESEARCH IN (selected inboxes) RETURN (SAVE) ALL")
            .await;
        assert!(tagged(&r).contains(" BAD "), "{r:?}");
        // Message 1 of each: INBOX's and the other folder's UID 1.
        let r = a.ok("ESEARCH IN (selected personal) 2").await;
        assert_eq!(r.len(), 2, "{r:?}");
        assert!(
            r[0].contains("MAILBOX \"INBOX\"") && r[0].ends_with(" UID ALL 3\r\n"),
            "{r:?}"
        );
        let r = a
            .ok("ESEARCH IN (selected personal) RETURN (COUNT) UID 1:*")
            .await;
        assert_eq!(r.len(), 3, "{r:?}");
        assert!(
            r[1].contains("MAILBOX \"INBOX\"") && r[1].ends_with("UID COUNT 2\r\n"),
            "{r:?}"
        );
        a.ok("LOGOUT").await;

        // With UTF8=ACCEPT (RFC 6855 3) names go both ways as UTF-8.
        let mut u = RawImap::connect(imap.imap).await;
        u.login().await;
        u.ok("ENABLE UTF8=ACCEPT").await;
        let r = u.ok("ESEARCH IN (subtree \"Caf\u{e9}\") ALL").await;
        assert_eq!(
            r[0],
            format!(
                "* ESEARCH (TAG \"t{}\" MAILBOX \"Caf\u{e9}/Q1\" UIDVALIDITY {v_cafe}) UID ALL 1\r\n",
                u.n
            ),
            "{r:?}"
        );
    }
}

/// SEARCHRES (RFC 5182 2.1) through ESEARCH: a SAVE replaces `$` with
/// its result, the empty set when nothing matched, and a SAVE that fails
/// (NO or BAD once RETURN is read) empties it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_replaces_the_saved_result_even_when_empty_or_failed() {
    let (store, _client) = store_with_alice(Backend::Sqlite).await;
    let imap = TestImap::start(&store.uri()).await;
    let mut a = RawImap::connect(imap.imap).await;
    a.login().await;
    for i in 1..=3 {
        append(&mut a, "INBOX", &format!("Subject: in {i}\r\n\r\nbody\r\n")).await;
    }
    a.ok("SELECT INBOX").await;
    let fetched = |r: &[String]| {
        r.iter()
            .filter(|l| l.starts_with("* ") && l.contains(" FETCH ("))
            .count()
    };
    for failing in [
        "ESEARCH RETURN (SAVE) SUBJECT nowhere",
        "ESEARCH IN (selected) RETURN (SAVE) SUBJECT nowhere",
        "ESEARCH RETURN (SAVE) CHARSET KOI8-R ALL",
        "ESEARCH RETURN (SAVE) NOSUCHKEY 1",
        "ESEARCH RETURN (SAVE) ALL NOSUCHKEY",
    ] {
        a.ok("ESEARCH RETURN (SAVE) ALL").await;
        let r = a.ok("UID FETCH $ (UID)").await;
        assert_eq!(fetched(&r), 3, "{r:?}");
        let r = a.cmd(failing).await;
        assert!(
            !r.iter().any(|l| l.starts_with("* ESEARCH")),
            "{failing}: {r:?}"
        );
        let r = a.ok("UID FETCH $ (UID)").await;
        assert_eq!(fetched(&r), 0, "{failing}: $ still holds {r:?}");
    }
}

/// RFC 7162 3.1: a MODSEQ search key in ESEARCH enables CONDSTORE; with
/// a mailbox selected that is told by `* OK [HIGHESTMODSEQ n]`, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modseq_key_in_esearch_announces_highestmodseq() {
    let (store, _client) = store_with_alice(Backend::Sqlite).await;
    let imap = TestImap::start(&store.uri()).await;
    for cmd in ["ESEARCH MODSEQ 1", "ESEARCH IN (personal) MODSEQ 1"] {
        let mut a = RawImap::connect(imap.imap).await;
        a.login().await;
        append(&mut a, "INBOX", "Subject: x\r\n\r\nbody\r\n").await;
        a.ok("SELECT INBOX").await;
        let r = a.ok(cmd).await;
        assert_eq!(
            r.iter()
                .filter(|l| l.starts_with("* OK [HIGHESTMODSEQ "))
                .count(),
            1,
            "{cmd}: {r:?}"
        );
        let r = a.ok(cmd).await;
        assert!(
            !r.iter().any(|l| l.contains("HIGHESTMODSEQ")),
            "{cmd}: {r:?}"
        );
    }
}

/// CONTEXT=SEARCH (RFC 5267 4) through ESEARCH on the selected mailbox
/// alone: RETURN (UPDATE) keeps the result as SEARCH RETURN (UPDATE)
/// does, and its ADDTO / REMOVEFROM carry the same correlator as the
/// first answer (TAG, MAILBOX, UIDVALIDITY). Over other mailboxes UPDATE
/// stays BAD: a context is the selected mailbox's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_keeps_a_context_for_the_selected_mailbox_alone() {
    let (store, _client) = store_with_alice(Backend::Sqlite).await;
    let imap = TestImap::start(&store.uri()).await;
    let mut a = RawImap::connect(imap.imap).await;
    a.login().await;
    append(&mut a, "INBOX", "Subject: lunch 1\r\n\r\nbody\r\n").await;
    append(&mut a, "INBOX", "Subject: other\r\n\r\nbody\r\n").await;
    let v = uidvalidity(&a.ok("STATUS INBOX (UIDVALIDITY)").await);
    a.ok("SELECT INBOX").await;
    let r = a
        .cmd("ESEARCH IN (selected personal) RETURN (UPDATE) ALL")
        .await;
    assert!(tagged(&r).contains(" BAD "), "{r:?}");
    let r = a.ok("ESEARCH RETURN (ALL UPDATE) SUBJECT lunch").await;
    let t = a.n;
    let head = format!("* ESEARCH (TAG \"t{t}\" MAILBOX \"INBOX\" UIDVALIDITY {v}) UID");
    assert_eq!(r[0], format!("{head} ALL 1\r\n"), "{r:?}");
    // Another session adds a match: ADDTO after its EXISTS.
    let mut b = RawImap::connect(imap.imap).await;
    b.login().await;
    append(&mut b, "INBOX", "Subject: lunch 2\r\n\r\nbody\r\n").await;
    let r = a.noop_until("ADDTO").await;
    assert!(r.contains(&format!("{head} ADDTO (0 3)\r\n")), "{r:?}");
    // Its tag is taken while the context lives; CANCELUPDATE ends it.
    let r = a.ok(&format!("CANCELUPDATE \"t{t}\"")).await;
    assert_eq!(r.len(), 1, "{r:?}");
}
