//! Races between sessions that a client cannot avoid (issue #23), over raw
//! sessions on both store backends: commands on messages another session
//! expunged (RFC 2180 4.1-4.5, RFC 5530 EXPUNGEISSUED), new messages
//! another session copied into the selected mailbox (RFC 9051 5.2, 7.4.1),
//! and NOTIFY STATUS for other mailboxes (RFC 5465 5).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::{Backend, RawImap, TestImap, store_with_alice, tagged};

async fn append(s: &mut RawImap, mailbox: &str, subject: &str) {
    let m = format!("Subject: {subject}\r\n\r\nbody of {subject}\r\n");
    s.ok(&format!("APPEND {mailbox} {{{}+}}\r\n{m}", m.len()))
        .await;
}

/// A and B (logged in) select a new mailbox `name` holding four
/// messages; B expunges message 2 (UID 2) and A has not been told yet.
async fn message_2_expunged_by_b(a: &mut RawImap, b: &mut RawImap, name: &str) {
    a.ok(&format!("CREATE {name}")).await;
    for i in 1..=4 {
        append(a, name, &format!("m{i}")).await;
    }
    a.ok(&format!("SELECT {name}")).await;
    b.ok(&format!("SELECT {name}")).await;
    b.ok("UID STORE 2 +FLAGS.SILENT (\\Deleted)").await;
    let r = b.ok("UID EXPUNGE 2").await;
    assert!(r.contains(&"* 2 EXPUNGE\r\n".to_string()), "{r:?}");
}

/// Two logged-in sessions on a fresh store.
async fn two_sessions(imap: &TestImap) -> (RawImap, RawImap) {
    let mut a = RawImap::connect(imap.imap).await;
    a.login().await;
    let mut b = RawImap::connect(imap.imap).await;
    b.login().await;
    (a, b)
}

/// Whether a command's lines tell an EXPUNGE (or VANISHED).
fn tells_expunge(r: &[String]) -> bool {
    r.iter()
        .any(|l| l.starts_with("* ") && (l.ends_with(" EXPUNGE\r\n") || l.contains("VANISHED")))
}

/// RFC 2180 4.2 (STORE of a message another session expunged: the server
/// may apply it to the rest and answer OK, as Dovecot does; a tagged NO is
/// a failed user action to desktop clients), RFC 5530 (EXPUNGEISSUED as a
/// hint in the OK), RFC 7162 3.1.3 (MODIFIED still reported for
/// UNCHANGEDSINCE), RFC 9051 7.5.1 (no EXPUNGE during STORE).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_on_messages_expunged_elsewhere_is_ok() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let (store, _client) = store_with_alice(backend).await;
        let imap = TestImap::start(&store.uri()).await;
        let (mut a, mut b) = two_sessions(&imap).await;
        // (commands first, the one checked, what its tagged OK says)
        let cases: [(&[&str], &str, &str); 8] = [
            (&[], "STORE 1:3 +FLAGS (\\Flagged)", "OK [EXPUNGEISSUED]"),
            (&[], "STORE 2 +FLAGS (\\Seen)", "OK [EXPUNGEISSUED]"),
            (
                &[],
                "STORE 2 +FLAGS.SILENT (\\Deleted)",
                "OK [EXPUNGEISSUED]",
            ),
            (&[], "STORE 2:4 FLAGS.SILENT ($Junk)", "OK [EXPUNGEISSUED]"),
            (&[], "UID STORE 2 +FLAGS (\\Answered)", "OK"),
            (&[], "UID STORE 1:3 -FLAGS.SILENT (\\Seen)", "OK"),
            // A changed message is MODIFIED, the gone one is not.
            (
                &["STORE 1 +FLAGS.SILENT (\\Seen)"],
                "STORE 1:2 (UNCHANGEDSINCE 1) +FLAGS (\\Draft)",
                "OK [MODIFIED 1]",
            ),
            (
                &[],
                "STORE 2:3 (UNCHANGEDSINCE 1000) +FLAGS (\\Draft)",
                "OK [EXPUNGEISSUED]",
            ),
        ];
        for (i, (before, c, want)) in cases.iter().enumerate() {
            message_2_expunged_by_b(&mut a, &mut b, &format!("s{i}")).await;
            for x in before.iter() {
                a.ok(x).await;
            }
            let r = a.cmd(c).await;
            let ctx = format!("{backend:?} {c}");
            assert!(tagged(&r).contains(&format!(" {want}")), "{ctx}: {r:?}");
            if !c.starts_with("UID ") {
                assert!(!tells_expunge(&r), "{ctx}: EXPUNGE during STORE: {r:?}");
            }
            if i == 0 {
                // Applied to the other two, each told with its flags.
                for n in [1, 3] {
                    let f = format!("* {n} FETCH (FLAGS (\\Flagged");
                    assert!(r.iter().any(|l| l.starts_with(&f)), "{ctx}: {r:?}");
                }
                assert_eq!(r.len(), 3, "{ctx}: {r:?}");
            }
            // The next command that may tells the EXPUNGE; the change
            // stayed on the others.
            let r = a.ok("NOOP").await;
            if !c.starts_with("UID ") {
                assert!(r.contains(&"* 2 EXPUNGE\r\n".to_string()), "{ctx}: {r:?}");
            }
            let r = a.ok("UID FETCH 1:* (FLAGS)").await;
            assert_eq!(r.len(), 4, "{ctx}: {r:?}");
            if i == 0 {
                assert!(
                    r[0].contains("\\Flagged") && r[1].contains("\\Flagged"),
                    "{r:?}"
                );
                assert!(!r[2].contains("\\Flagged"), "{r:?}");
            }
        }
    }
}

/// RFC 2180 4.1 (FETCH of a message another session expunged: OK, with
/// what can still be sent), 4.3 (COPY: the rest copied, OK, and no
/// COPYUID naming nothing, RFC 4315 3), 4.4-4.5 (SEARCH, MOVE): no tagged
/// NO or BAD for a race the client could not see coming, and no EXPUNGE
/// during FETCH or SEARCH (RFC 9051 7.5.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_copy_move_search_of_messages_expunged_elsewhere_are_ok() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let (store, _client) = store_with_alice(backend).await;
        let imap = TestImap::start(&store.uri()).await;
        let (mut a, mut b) = two_sessions(&imap).await;
        a.ok("CREATE dest").await;
        // (command, the COPYUID source set it answers with, if any)
        let cases: [(&str, Option<&str>); 13] = [
            ("FETCH 2 (FLAGS)", None),
            ("FETCH 2 (BODY[])", None),
            (
                "FETCH 1:3 (UID FLAGS BODY.PEEK[HEADER] ENVELOPE BODYSTRUCTURE)",
                None,
            ),
            ("FETCH 2 (BODY[TEXT] BINARY.PEEK[1])", None),
            ("UID FETCH 2 (FLAGS BODY.PEEK[])", None),
            ("SEARCH ALL", None),
            ("SEARCH 2 BODY body", None),
            ("UID SEARCH UID 1:3", None),
            ("COPY 2 dest", None),
            ("COPY 1:3 dest", Some("1,3")),
            ("UID COPY 2 dest", None),
            ("MOVE 2 dest", None),
            ("MOVE 1:3 dest", Some("1,3")),
        ];
        for (i, (c, copied)) in cases.iter().enumerate() {
            message_2_expunged_by_b(&mut a, &mut b, &format!("f{i}")).await;
            let r = a.cmd(c).await;
            let ctx = format!("{backend:?} {c}");
            assert!(tagged(&r).contains(" OK "), "{ctx}: {r:?}");
            if c.starts_with("FETCH") || c.starts_with("SEARCH") {
                assert!(!tells_expunge(&r), "{ctx}: EXPUNGE during it: {r:?}");
            }
            let copyuid: Vec<&String> = r.iter().filter(|l| l.contains("[COPYUID ")).collect();
            match copied {
                None => assert!(copyuid.is_empty(), "{ctx}: COPYUID for nothing: {r:?}"),
                Some(set) => {
                    assert_eq!(copyuid.len(), 1, "{ctx}: {r:?}");
                    let code = copyuid[0].split("[COPYUID ").nth(1).unwrap();
                    let parts: Vec<&str> = code.split(']').next().unwrap().split(' ').collect();
                    assert_eq!(parts.len(), 3, "{ctx}: {r:?}");
                    assert_eq!(&parts[1], set, "{ctx}: {r:?}");
                }
            }
            if c.starts_with("SEARCH ALL") {
                // Message 2 is still numbered; it matches or not, but the
                // others do.
                assert!(
                    r[0].starts_with("* SEARCH 1 ") && r[0].contains(" 3"),
                    "{r:?}"
                );
            }
            if c.starts_with("MOVE 1:3") {
                // The moved ones and the one gone meanwhile are told gone.
                let gone = r.iter().filter(|l| l.ends_with(" EXPUNGE\r\n")).count();
                assert_eq!(gone, 3, "{ctx}: {r:?}");
            }
            a.ok("NOOP").await;
        }
        let r = a.ok("STATUS dest (MESSAGES)").await;
        assert!(r[0].contains("(MESSAGES 4)"), "{backend:?}: {r:?}");
    }
}

/// imaptest's `copy` group: session 1 COPYs into the mailbox session 2
/// has selected; session 2's very next NOOP tells `* 3 EXISTS` (RFC 9051
/// 5.2 and 7.4.1: a server tells the client of new messages; RFC 3501
/// 6.1.2: NOOP is how a client polls for them), and the rest of the
/// transcript works on them (no BAD for numbers the server never told).
/// The "unexpected disconnection" imaptest reported next was its own:
/// imaptest closes a connection that gets a BAD it did not expect
/// (imap-client.c, "BAD reply for command"), so the BAD was the fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_into_a_mailbox_another_session_has_selected() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        for round in 0..5 {
            let (store, _client) = store_with_alice(backend).await;
            let imap = TestImap::start(&store.uri()).await;
            let mut s1 = RawImap::connect(imap.imap).await;
            s1.login().await;
            let mut s2 = RawImap::connect(imap.imap).await;
            s2.login().await;
            s1.ok("CREATE box").await;
            s1.ok("SELECT box").await;
            for i in 1..=5 {
                append(&mut s1, "box", &format!("m{i}")).await;
            }
            s2.ok("CREATE box2").await;
            s2.ok("SELECT box2").await;
            s1.ok("STORE 1 FLAGS (\\Seen)").await;
            s1.ok("STORE 2 FLAGS (\\Draft \\Flagged)").await;
            s1.ok("STORE 5 FLAGS (\\Flagged $$keyword1 $$keyword2)")
                .await;
            s1.ok("COPY 1:2,4 box2").await;

            let r = s2.ok("NOOP").await;
            let ctx = format!("{backend:?} round {round}");
            assert!(r.contains(&"* 3 EXISTS\r\n".to_string()), "{ctx}: {r:?}");
            assert!(r.contains(&"* 3 RECENT\r\n".to_string()), "{ctx}: {r:?}");
            let r = s2.ok("FETCH 1:3 (FLAGS INTERNALDATE)").await;
            assert_eq!(r.len(), 4, "{ctx}: {r:?}");
            assert!(
                r[0].starts_with("* 1 FETCH (FLAGS (")
                    && r[0].contains("\\Seen")
                    && r[0].contains("\\Recent"),
                "{ctx}: {r:?}"
            );
            assert!(
                r[2].starts_with("* 3 FETCH (FLAGS (\\Recent)"),
                "{ctx}: {r:?}"
            );
            let r = s2.ok("STORE 3 +FLAGS ($$keyword1 $$keyword2)").await;
            assert!(r.iter().any(|l| l.contains("$$keyword2")), "{ctx}: {r:?}");

            s1.ok("COPY 5 box2").await;
            let r = s2.ok("NOOP").await;
            assert!(r.contains(&"* 4 EXISTS\r\n".to_string()), "{ctx}: {r:?}");
            let r = s2.ok("FETCH 4 (FLAGS)").await;
            assert!(
                r[0].contains("\\Flagged") && r[0].contains("$$keyword1"),
                "{ctx}: {r:?}"
            );
            s2.ok("CLOSE").await;
            // MOVE and APPEND into it are told the same way.
            s2.ok("SELECT box2").await;
            s1.ok("MOVE 3 box2").await;
            let r = s2.ok("NOOP").await;
            assert!(r.contains(&"* 5 EXISTS\r\n".to_string()), "{ctx}: {r:?}");
            append(&mut s1, "box2", "appended").await;
            let r = s2.ok("NOOP").await;
            assert!(r.contains(&"* 6 EXISTS\r\n".to_string()), "{ctx}: {r:?}");
        }
    }
}

/// RFC 5465 5 (and 3.1's STATUS): MessageNew and MessageExpunge go
/// together only for the selected mailbox; for another mailbox either
/// alone is a valid request (Dovecot takes it; imaptest's `notify` group
/// sends it), answered OK with the STATUS of the mailbox. (The
/// disconnection imaptest reported at the next command was imaptest
/// closing the connection after the unexpected BAD.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_status_with_one_message_event_for_another_mailbox() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let (store, _client) = store_with_alice(backend).await;
        let imap = TestImap::start(&store.uri()).await;
        let mut a = RawImap::connect(imap.imap).await;
        a.login().await;
        a.ok("CREATE box2").await;
        append(&mut a, "box2", "one").await;
        for c in [
            "NOTIFY SET STATUS (MAILBOXES box2 (MessageExpunge))",
            "NOTIFY SET STATUS (MAILBOXES box2 (MessageNew))",
            "NOTIFY SET STATUS (MAILBOXES box2 (MessageNew MessageExpunge))",
            "NOTIFY SET STATUS (MAILBOXES box2 (MessageNew MessageExpunge FlagChange))",
        ] {
            let r = a.cmd(c).await;
            assert!(tagged(&r).contains(" OK "), "{backend:?} {c}: {r:?}");
            assert!(
                r.iter().any(
                    |l| l.starts_with("* STATUS \"box2\" (MESSAGES 1 UIDNEXT 2 ")
                        || l.starts_with("* STATUS box2 (MESSAGES 1 UIDNEXT 2 ")
                ),
                "{backend:?} {c}: {r:?}"
            );
        }
        // The two sent at once (a client pipelining them): both OK, and
        // the session goes on.
        a.send(
            b"p1 NOTIFY SET STATUS (MAILBOXES box2 (MessageExpunge))\r\n\
              p2 NOTIFY SET STATUS (MAILBOXES box2 (MessageNew))\r\n",
        )
        .await;
        let seen = a.until("p2 ").await;
        for t in ["p1 OK", "p2 OK"] {
            assert!(
                seen.iter().any(|l| l.starts_with(t)),
                "{backend:?}: {seen:?}"
            );
        }
        a.ok("NOOP").await;
        // For SELECTED the pair is still required (RFC 5465 5).
        a.ok("SELECT INBOX").await;
        let r = a.cmd("NOTIFY SET (SELECTED (MessageNew))").await;
        assert!(tagged(&r).contains(" BAD "), "{backend:?}: {r:?}");
        a.ok("NOOP").await;

        // Events for each alone: another session adds to box2 and
        // expunges from it; MessageNew alone hears the first, not the
        // second, and the other way round.
        let mut b = RawImap::connect(imap.imap).await;
        b.login().await;
        a.ok("NOTIFY SET (MAILBOXES box2 (MessageNew))").await;
        append(&mut b, "box2", "two").await;
        let seen = a.until("* STATUS").await;
        assert!(
            seen.last().unwrap().contains("(MESSAGES 2 UIDNEXT 3"),
            "{backend:?}: {seen:?}"
        );
        a.ok("NOTIFY SET (MAILBOXES box2 (MessageExpunge))").await;
        b.ok("SELECT box2").await;
        b.ok("STORE 1 +FLAGS.SILENT (\\Deleted)").await;
        b.ok("EXPUNGE").await;
        let seen = a.until("* STATUS").await;
        assert!(
            seen.last().unwrap().contains("(MESSAGES 1 UIDNEXT 3"),
            "{backend:?}: {seen:?}"
        );
        let r = a.ok("NOOP").await;
        assert_eq!(r.len(), 1, "{backend:?}: {r:?}");
    }
}

/// A client that learned a UID elsewhere (the APPENDUID another session,
/// here on another gateway, was given) and names it at once, before any
/// NOOP: UID STORE and UID FETCH act on that message (its EXISTS told
/// first), never pass over it with an OK that changed nothing. Twenty
/// rounds, so a Watch stream that happens to be quick does not hide it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uids_learned_elsewhere_are_acted_on_at_once() {
    let (store, _client) = store_with_alice(Backend::Postgres).await;
    let one = TestImap::start(&store.uri()).await;
    let two = TestImap::start(&store.uri()).await;
    let mut a = RawImap::connect(one.imap).await;
    a.login().await;
    let mut b = RawImap::connect(two.imap).await;
    b.login().await;
    a.ok("SELECT INBOX").await;
    b.ok("EXAMINE Trash").await;
    for i in 0..20 {
        let m = format!("Subject: r{i}\r\n\r\nround {i}\r\n");
        let r = b.ok(&format!("APPEND INBOX {{{}+}}\r\n{m}", m.len())).await;
        let uid: u32 = tagged(&r)
            .split("APPENDUID ")
            .nth(1)
            .and_then(|s| s.split([' ', ']']).nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no APPENDUID: {r:?}"));
        let r = a.ok(&format!("UID STORE {uid} +FLAGS (\\Flagged)")).await;
        assert!(
            r.iter().any(|l| l.contains(" FETCH (")
                && l.contains("\\Flagged")
                && l.contains(&format!("UID {uid}"))),
            "round {i}: UID STORE {uid} changed nothing: {r:?}"
        );
        assert!(
            r.iter().any(|l| l.ends_with(" EXISTS\r\n")),
            "round {i}: the message was not announced: {r:?}"
        );
        let f = b.ok("STATUS INBOX (MESSAGES)").await;
        assert!(
            f.iter().any(|l| l.contains(&format!("MESSAGES {}", i + 1))),
            "{f:?}"
        );
    }
}
