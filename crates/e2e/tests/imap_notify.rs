//! NOTIFY (RFC 5465) end to end over raw sessions on both store backends:
//! one session watches, another changes things, and the watcher hears of
//! them without sending a command.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::{Backend, RawImap, TestImap, store_with_alice, tagged};

async fn append(s: &mut RawImap, mailbox: &str, subject: &str) {
    let m = format!("Subject: {subject}\r\n\r\nbody\r\n");
    s.ok(&format!("APPEND {mailbox} {{{}+}}\r\n{m}", m.len()))
        .await;
}

/// RFC 5465 3.1 (SET STATUS, BADEVENT, BAD rules of 5), 5.1-5.5 (each
/// event, in the selected mailbox and elsewhere), 6.1 (SELECTED and
/// SELECTED-DELAYED), 6.2-6.6 (filters), 5 (own changes not echoed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_events_reach_an_idle_client() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let (store, _client) = store_with_alice(backend).await;
        let imap = TestImap::start(&store.uri()).await;
        let mut a = RawImap::connect(imap.imap).await;
        a.login().await;
        let mut b = RawImap::connect(imap.imap).await;
        b.login().await;
        let caps = a.cmd("CAPABILITY").await;
        assert!(caps[0].contains(" NOTIFY "), "{caps:?}");
        for m in ["Lists", "Lists/Lemonade", "misc"] {
            a.ok(&format!("CREATE {m}")).await;
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
        let r = a.ok("NOTIFY SET STATUS (selected (MessageNew (UID BODY.PEEK[HEADER.FIELDS (Subject)]) MessageExpunge FlagChange)) (subtree Lists (MessageNew MessageExpunge)) (mailboxes (misc nowhere) (MessageNew MessageExpunge FlagChange)) (personal (MailboxName SubscriptionChange))",
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
        a.ok("SELECT INBOX").await;

        // 5.2, selected: EXISTS and the FETCH asked for, unasked.
        append(&mut b, "INBOX", "hello").await;
        let seen = a.until("FETCH").await;
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
        let seen = a.until("* STATUS \"Lists/Lemonade\"").await;
        assert!(
            seen.last().unwrap().contains("MESSAGES 1 UIDNEXT 2"),
            "{seen:?}"
        );
        // 5.1 elsewhere: a flag change that changes UNSEEN.
        b.ok("SELECT misc").await;
        b.ok("STORE 1 +FLAGS.SILENT (\\Seen)").await;
        let seen = a.until("* STATUS \"misc\"").await;
        assert!(seen.last().unwrap().contains("UNSEEN 0"), "{seen:?}");
        // 5.1 selected: FETCH with UID and FLAGS.
        b.ok("SELECT INBOX").await;
        b.ok("STORE 1 +FLAGS.SILENT (\\Flagged)").await;
        let seen = a.until("\\Flagged").await;
        let l = seen.last().unwrap();
        assert!(
            l.starts_with("* 1 FETCH (") && l.contains("UID 1"),
            "{seen:?}"
        );
        // 5.3 and 6.1.1: SELECTED sends EXPUNGE at once.
        b.ok("STORE 1 +FLAGS.SILENT (\\Deleted)").await;
        b.ok("EXPUNGE").await;
        let seen = a.until("EXPUNGE").await;
        assert_eq!(seen.last().unwrap(), "* 1 EXPUNGE\r\n", "{seen:?}");

        // 5.4 MailboxName: create, rename (OLDNAME), delete; 5.5
        // SubscriptionChange.
        b.ok("CREATE Newbox").await;
        let seen = a.until("Newbox").await;
        assert_eq!(
            seen.last().unwrap(),
            "* LIST (\\HasNoChildren) \"/\" \"Newbox\"\r\n"
        );
        b.ok("RENAME Newbox Renamed").await;
        let seen = a.until("Renamed").await;
        assert_eq!(
            seen.last().unwrap(),
            "* LIST (\\HasNoChildren) \"/\" \"Renamed\" (\"OLDNAME\" (\"Newbox\"))\r\n"
        );
        b.ok("SUBSCRIBE Renamed").await;
        let seen = a.until("Renamed").await;
        assert_eq!(
            seen.last().unwrap(),
            "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"Renamed\"\r\n"
        );
        b.ok("DELETE Renamed").await;
        let seen = a.until("Renamed").await;
        assert_eq!(
            seen.last().unwrap(),
            "* LIST (\\NonExistent) \"/\" \"Renamed\"\r\n"
        );
        // A mailbox created under a watched subtree is watched too; its
        // parent is affected as well (5.4: \HasChildren may change).
        b.ok("CREATE Lists/New").await;
        let seen = a.until("Lists/New").await;
        let r = a.ok("NOOP").await;
        let all: Vec<&String> = seen.iter().chain(r.iter()).collect();
        assert!(
            all.iter()
                .any(|l| *l == "* LIST (\\HasChildren) \"/\" \"Lists\"\r\n"),
            "{all:?}"
        );
        append(&mut b, "Lists/New", "x").await;
        let seen = a.until("* STATUS \"Lists/New\"").await;
        assert!(seen.last().unwrap().contains("MESSAGES 1"), "{seen:?}");

        // Another client's delivery just before this session's own APPEND
        // to the same mailbox is still told (only the own one is not).
        append(&mut b, "misc", "theirs").await;
        let r = a.ok("APPEND misc {3+}\r\nx\r\n").await;
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
        b.ok("CREATE Theirs").await;
        let r = a.cmd("CREATE INBOX").await;
        assert!(tagged(&r).contains(" NO "), "{r:?}");
        let seen = if r.iter().any(|l| l.contains("Theirs")) {
            r
        } else {
            a.until("Theirs").await
        };
        assert!(
            seen.iter()
                .any(|l| l == "* LIST (\\HasNoChildren) \"/\" \"Theirs\"\r\n"),
            "{seen:?}"
        );
        // 5: the session's own changes are not echoed.
        let r = a.ok("CREATE Own").await;
        assert!(!r.iter().any(|l| l.contains("Own")), "{r:?}");
        let r = a.ok("APPEND misc {3+}\r\nx\r\n").await;
        assert!(!r.iter().any(|l| l.starts_with("* STATUS")), "{r:?}");
        let r = a.ok("NOOP").await;
        assert!(!r.iter().any(|l| l.starts_with("* STATUS")), "{r:?}");
        let r = a.ok("NOOP").await;
        assert!(
            !r.iter()
                .any(|l| l.contains("Own") || l.starts_with("* STATUS")),
            "{r:?}"
        );

        // 6.1.2 SELECTED-DELAYED: new mail at once, the expunge only with
        // a command that allows it.
        a.ok("NOTIFY SET (selected-delayed (MessageNew MessageExpunge))")
            .await;
        append(&mut b, "INBOX", "second").await;
        a.until("EXISTS").await;
        b.ok("STORE 1:* +FLAGS.SILENT (\\Deleted)").await;
        b.ok("EXPUNGE").await;
        // Only the FETCH of the flag change may come unasked; the
        // EXPUNGE waits for NOOP.
        let r = a.ok("NOOP").await;
        assert!(r.iter().any(|l| l == "* 1 EXPUNGE\r\n"), "{r:?}");

        // NOTIFY NONE: nothing unasked; NOOP tells as before NOTIFY.
        a.ok("NOTIFY NONE").await;
        append(&mut b, "INBOX", "third").await;
        let r = a.ok("NOOP").await;
        assert!(r.iter().any(|l| l.ends_with(" EXISTS\r\n")), "{r:?}");
    }
}
