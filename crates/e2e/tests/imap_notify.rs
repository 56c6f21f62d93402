//! NOTIFY (RFC 5465) end to end over raw sessions on both store backends:
//! one session watches, another changes things, and the watcher hears of
//! them without sending a command.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::{Backend, RawImap, StoreClient, TestImap, TestStore};

async fn setup(backend: Backend) -> (TestStore, StoreClient) {
    let store = TestStore::start(backend).await;
    let client = store.client();
    client.add_domain("example.org").await;
    client.add_account("alice@example.org", "pw-alice").await;
    (store, client)
}

fn tagged(r: &[String]) -> &str {
    r.last().unwrap()
}

async fn ok(s: &mut RawImap, c: &str) -> Vec<String> {
    let r = s.cmd(c).await;
    assert!(tagged(&r).contains(" OK "), "{c}: {r:?}");
    r
}

async fn append(s: &mut RawImap, mailbox: &str, subject: &str) {
    let m = format!("Subject: {subject}\r\n\r\nbody\r\n");
    ok(s, &format!("APPEND {mailbox} {{{}+}}\r\n{m}", m.len())).await;
}

/// Reads unsolicited lines until one contains `want` (20 s at most);
/// returns them all.
async fn until(s: &mut RawImap, want: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let l = s.line().await;
        assert_ne!(l, "<closed>", "{seen:?}");
        let done = l.contains(want);
        seen.push(l);
        if done {
            return seen;
        }
    }
}

/// RFC 5465 3.1 (SET STATUS, BADEVENT, BAD rules of 5), 5.1-5.5 (each
/// event, in the selected mailbox and elsewhere), 6.1 (SELECTED and
/// SELECTED-DELAYED), 6.2-6.6 (filters), 5 (own changes not echoed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_events_reach_an_idle_client() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let (store, _client) = setup(backend).await;
        let imap = TestImap::start(&store.uri()).await;
        let mut a = RawImap::connect(imap.imap).await;
        a.login().await;
        let mut b = RawImap::connect(imap.imap).await;
        b.login().await;
        let caps = a.cmd("CAPABILITY").await;
        assert!(caps[0].contains(" NOTIFY "), "{caps:?}");
        for m in ["Lists", "Lists/Lemonade", "misc"] {
            ok(&mut a, &format!("CREATE {m}")).await;
        }
        append(&mut b, "misc", "old").await;

        // Rules that make NOTIFY BAD (5), and BADEVENT (3.1).
        for bad in [
            "NOTIFY SET (selected (MessageNew))",
            "NOTIFY SET (personal (FlagChange))",
            "NOTIFY SET (selected (MailboxName))",
            "NOTIFY SET (selected NONE) (selected-delayed NONE)",
            "NOTIFY SET (inboxes (MessageNew (UID) MessageExpunge))",
            "NOTIFY SET (selected (MessageNew (NOSUCHATT) MessageExpunge))",
        ] {
            let r = a.cmd(bad).await;
            assert!(tagged(&r).contains(" BAD "), "{bad}: {r:?}");
        }
        let r = a
            .cmd("NOTIFY SET (selected (MessageNew MessageExpunge AnnotationChange))")
            .await;
        assert!(tagged(&r).contains(" NO [BADEVENT ("), "{r:?}");
        assert!(tagged(&r).contains("MailboxName"), "{r:?}");

        // STATUS for each non-selected mailbox with message events, before
        // the OK; none for INBOX (names only) or a missing mailbox.
        let r = ok(
            &mut a,
            "NOTIFY SET STATUS (selected (MessageNew (UID BODY.PEEK[HEADER.FIELDS (Subject)]) MessageExpunge FlagChange)) (subtree Lists (MessageNew MessageExpunge)) (mailboxes (misc nowhere) (MessageNew MessageExpunge FlagChange)) (personal (MailboxName SubscriptionChange))",
        )
        .await;
        let status: Vec<&String> = r.iter().filter(|l| l.starts_with("* STATUS")).collect();
        assert_eq!(status.len(), 3, "{r:?}");
        assert!(
            r.iter()
                .any(|l| l.starts_with("* STATUS \"misc\" (MESSAGES 1 UIDNEXT 2 UIDVALIDITY ")),
            "{r:?}"
        );
        assert!(
            r.iter()
                .any(|l| l.starts_with("* STATUS \"Lists/Lemonade\" (MESSAGES 0 ")),
            "{r:?}"
        );
        ok(&mut a, "SELECT INBOX").await;

        // 5.2, selected: EXISTS and the FETCH asked for, unasked.
        append(&mut b, "INBOX", "hello").await;
        let seen = until(&mut a, "FETCH").await;
        assert!(seen.iter().any(|l| l == "* 1 EXISTS\r\n"), "{seen:?}");
        assert!(
            seen.last()
                .unwrap()
                .to_ascii_uppercase()
                .starts_with("* 1 FETCH (UID 1 BODY[HEADER.FIELDS (SUBJECT)] {"),
            "{seen:?}"
        );
        let l = a.line().await;
        assert_eq!(l, "Subject: hello\r\n");
        // 5.2 elsewhere: STATUS (MESSAGES UIDNEXT ...).
        append(&mut b, "Lists/Lemonade", "list mail").await;
        let seen = until(&mut a, "* STATUS \"Lists/Lemonade\"").await;
        assert!(
            seen.last().unwrap().contains("MESSAGES 1 UIDNEXT 2"),
            "{seen:?}"
        );
        // 5.1 elsewhere: a flag change that changes UNSEEN.
        ok(&mut b, "SELECT misc").await;
        ok(&mut b, "STORE 1 +FLAGS.SILENT (\\Seen)").await;
        let seen = until(&mut a, "* STATUS \"misc\"").await;
        assert!(seen.last().unwrap().contains("UNSEEN 0"), "{seen:?}");
        // 5.1 selected: FETCH with UID and FLAGS.
        ok(&mut b, "SELECT INBOX").await;
        ok(&mut b, "STORE 1 +FLAGS.SILENT (\\Flagged)").await;
        let seen = until(&mut a, "\\Flagged").await;
        let l = seen.last().unwrap();
        assert!(
            l.starts_with("* 1 FETCH (") && l.contains("UID 1"),
            "{seen:?}"
        );
        // 5.3 and 6.1.1: SELECTED sends EXPUNGE at once.
        ok(&mut b, "STORE 1 +FLAGS.SILENT (\\Deleted)").await;
        ok(&mut b, "EXPUNGE").await;
        let seen = until(&mut a, "EXPUNGE").await;
        assert_eq!(seen.last().unwrap(), "* 1 EXPUNGE\r\n", "{seen:?}");

        // 5.4 MailboxName: create, rename (OLDNAME), delete; 5.5
        // SubscriptionChange.
        ok(&mut b, "CREATE Newbox").await;
        let seen = until(&mut a, "Newbox").await;
        assert_eq!(
            seen.last().unwrap(),
            "* LIST (\\HasNoChildren) \"/\" \"Newbox\"\r\n"
        );
        ok(&mut b, "RENAME Newbox Renamed").await;
        let seen = until(&mut a, "Renamed").await;
        assert_eq!(
            seen.last().unwrap(),
            "* LIST (\\HasNoChildren) \"/\" \"Renamed\" (\"OLDNAME\" (\"Newbox\"))\r\n"
        );
        ok(&mut b, "SUBSCRIBE Renamed").await;
        let seen = until(&mut a, "Renamed").await;
        assert_eq!(
            seen.last().unwrap(),
            "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"Renamed\"\r\n"
        );
        ok(&mut b, "DELETE Renamed").await;
        let seen = until(&mut a, "Renamed").await;
        assert_eq!(
            seen.last().unwrap(),
            "* LIST (\\NonExistent) \"/\" \"Renamed\"\r\n"
        );
        // A mailbox created under a watched subtree is watched too.
        ok(&mut b, "CREATE Lists/New").await;
        until(&mut a, "Lists/New").await;
        append(&mut b, "Lists/New", "x").await;
        let seen = until(&mut a, "* STATUS \"Lists/New\"").await;
        assert!(seen.last().unwrap().contains("MESSAGES 1"), "{seen:?}");

        // Another client's delivery just before this session's own APPEND
        // to the same mailbox is still told (only the own one is not).
        append(&mut b, "misc", "theirs").await;
        let r = ok(&mut a, "APPEND misc {3+}\r\nx\r\n").await;
        let st: Vec<&String> = r
            .iter()
            .filter(|l| l.starts_with("* STATUS \"misc\""))
            .collect();
        // Told at once between commands (before the APPEND ran), or with
        // it: either way B's message is counted, and A's own is not told
        // on its own.
        assert!(
            st.len() == 1
                && (st[0].contains("MESSAGES 2 UIDNEXT 3")
                    || st[0].contains("MESSAGES 3 UIDNEXT 4")),
            "{r:?}"
        );
        // A failing CREATE hides nothing either.
        ok(&mut b, "CREATE Theirs").await;
        let r = a.cmd("CREATE INBOX").await;
        assert!(tagged(&r).contains(" NO "), "{r:?}");
        let seen = if r.iter().any(|l| l.contains("Theirs")) {
            r
        } else {
            until(&mut a, "Theirs").await
        };
        assert!(
            seen.iter()
                .any(|l| l == "* LIST (\\HasNoChildren) \"/\" \"Theirs\"\r\n"),
            "{seen:?}"
        );
        // 5: the session's own changes are not echoed.
        let r = ok(&mut a, "CREATE Own").await;
        assert!(!r.iter().any(|l| l.contains("Own")), "{r:?}");
        let r = ok(&mut a, "APPEND misc {3+}\r\nx\r\n").await;
        assert!(!r.iter().any(|l| l.starts_with("* STATUS")), "{r:?}");
        let r = ok(&mut a, "NOOP").await;
        assert!(!r.iter().any(|l| l.starts_with("* STATUS")), "{r:?}");
        let r = ok(&mut a, "NOOP").await;
        assert!(
            !r.iter()
                .any(|l| l.contains("Own") || l.starts_with("* STATUS")),
            "{r:?}"
        );

        // 6.1.2 SELECTED-DELAYED: new mail at once, the expunge only with
        // a command that allows it.
        ok(
            &mut a,
            "NOTIFY SET (selected-delayed (MessageNew MessageExpunge))",
        )
        .await;
        append(&mut b, "INBOX", "second").await;
        until(&mut a, "EXISTS").await;
        ok(&mut b, "STORE 1:* +FLAGS.SILENT (\\Deleted)").await;
        ok(&mut b, "EXPUNGE").await;
        // Only the FETCH of the flag change may come unasked; the
        // EXPUNGE waits for NOOP.
        let r = ok(&mut a, "NOOP").await;
        assert!(r.iter().any(|l| l == "* 1 EXPUNGE\r\n"), "{r:?}");

        // NOTIFY NONE: nothing unasked; NOOP tells as before NOTIFY.
        ok(&mut a, "NOTIFY NONE").await;
        append(&mut b, "INBOX", "third").await;
        let r = ok(&mut a, "NOOP").await;
        assert!(r.iter().any(|l| l.ends_with(" EXISTS\r\n")), "{r:?}");
    }
}
