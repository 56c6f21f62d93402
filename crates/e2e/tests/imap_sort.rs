//! SORT and THREAD (RFC 5256), SORT=DISPLAY (RFC 5957), ESORT and PARTIAL
//! (RFC 5267) end to end: the real store on both backends and raw IMAP
//! sessions, each check naming its RFC section; then Python's imaplib
//! (SORT, THREAD, CONDSTORE and a QRESYNC resync).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use e2e::{Backend, RawImap, StoreClient, TestImap, TestStore, python};

async fn setup(backend: Backend) -> (TestStore, StoreClient) {
    let store = TestStore::start(backend).await;
    let client = store.client();
    client.add_domain("example.org").await;
    client.add_account("alice@example.org", "pw-alice").await;
    (store, client)
}

/// Five messages: a thread of three (by References and In-Reply-To), and
/// a message with a forward of it that only the subject ties together.
/// Message 5 has no Date: its INTERNALDATE (the delivery, now) stands in.
const MESSAGES: [&str; 5] = [
    "From: Zed <zed@a.org>\r\nTo: amy@b.org\r\nSubject: Plans\r\n\
     Date: Mon, 02 Nov 2026 10:00:00 +0000\r\nMessage-ID: <p1@x>\r\n\r\nx\r\n",
    "From: \"Amy\" <amy@b.org>\r\nTo: zed@a.org\r\nSubject: Re: Plans\r\n\
     Date: Tue, 03 Nov 2026 10:00:00 +0000\r\nMessage-ID: <p2@x>\r\nReferences: <p1@x>\r\n\r\nx\r\n",
    "From: bob@c.org\r\nTo: zed@a.org\r\nCc: dan@d.org\r\nSubject: Lunch\r\n\
     Date: Sun, 01 Nov 2026 23:30:00 -0300\r\nMessage-ID: <l1@x>\r\n\r\nx\r\n",
    "From: Carl <carl@d.org>\r\nTo: zed@a.org\r\nSubject: Re: [team] plans\r\n\
     Date: Wed, 04 Nov 2026 10:00:00 +0000\r\nMessage-ID: <p3@x>\r\nIn-Reply-To: <p2@x>\r\n\r\nx\r\n",
    "From: \"Al\" <zz@e.org>\r\nTo: bea@b.org\r\nSubject: Fwd: Lunch (fwd)\r\n\
     Message-ID: <l2@x>\r\n\r\nthe longest body of the five, by some way, and a few words more\r\n",
];

/// Delivers MESSAGES in order (UIDs 1 to 5) with today's INTERNALDATE.
async fn deliver_all(store: &TestStore) {
    let imap = TestImap::start(&store.uri()).await;
    let mut a = RawImap::connect(imap.imap).await;
    a.login().await;
    for m in MESSAGES {
        a.send(format!("ap APPEND INBOX {{{}+}}\r\n{m}\r\n", m.len()).as_bytes())
            .await;
        let l = a.line().await;
        assert!(l.starts_with("ap OK"), "{l}");
    }
    a.cmd("LOGOUT").await;
}

fn first(r: &[String]) -> &str {
    r[0].trim_end()
}

/// RFC 5256 3 (SORT: every key, REVERSE per key, base subject, sent date
/// or INTERNALDATE, ties in sequence order, UID SORT, search criteria,
/// BADCHARSET), RFC 5957 (DISPLAYFROM / DISPLAYTO), RFC 5267 3 and 4.4
/// (ESORT MIN MAX COUNT ALL, PARTIAL), RFC 5256 3 (THREAD=ORDEREDSUBJECT
/// and THREAD=REFERENCES, placeholder and subject gathering), and a
/// message this session was not told of stays out of the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sort_esort_and_thread() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let (store, client) = setup(backend).await;
        deliver_all(&store).await;
        let imap = TestImap::start(&store.uri()).await;
        let mut a = RawImap::connect(imap.imap).await;
        a.login().await;
        let caps = a.cmd("CAPABILITY").await;
        for c in [
            " SORT ",
            " SORT=DISPLAY ",
            " ESORT ",
            " THREAD=ORDEREDSUBJECT ",
            " THREAD=REFERENCES ",
        ] {
            assert!(caps[0].contains(c), "{c}: {caps:?}");
        }
        a.cmd("SELECT INBOX").await;
        let cases = [
            // Base subject: "Re:", "Fwd:", "[team]", "(fwd)" stripped.
            ("SORT (SUBJECT) UTF-8 ALL", "* SORT 3 5 1 2 4"),
            // -0300 on 1 Nov is 02:30 UTC on 2 Nov; no Date: INTERNALDATE.
            ("SORT (DATE) UTF-8 ALL", "* SORT 3 1 2 4 5"),
            ("SORT (REVERSE DATE) UTF-8 ALL", "* SORT 5 4 2 1 3"),
            ("SORT (ARRIVAL) UTF-8 ALL", "* SORT 1 2 3 4 5"),
            // addr-mailbox of the first From, case-insensitively.
            ("SORT (FROM) US-ASCII ALL", "* SORT 2 3 4 1 5"),
            ("SORT (TO REVERSE DATE) UTF-8 ALL", "* SORT 1 5 4 2 3"),
            // No Cc sorts first (empty); ties in sequence order.
            ("SORT (CC) UTF-8 ALL", "* SORT 1 2 4 5 3"),
            ("SORT (DISPLAYFROM) UTF-8 ALL", "* SORT 5 2 3 4 1"),
            ("SORT (DISPLAYTO) UTF-8 ALL", "* SORT 1 5 2 3 4"),
            ("UID SORT (DATE) UTF-8 SUBJECT plans", "* SORT 1 2 4"),
            ("SORT (SUBJECT) UTF-8 FROM nobody", "* SORT"),
            // ESORT: MIN / MAX are the first and last in sort order.
            (
                "SORT RETURN (MIN MAX COUNT ALL) (DATE) UTF-8 ALL",
                "* ESEARCH (TAG \"t5\") MIN 3 MAX 5 COUNT 5 ALL 3,1:2,4:5",
            ),
            (
                "UID SORT RETURN (PARTIAL 2:3) (REVERSE DATE) UTF-8 ALL",
                "* ESEARCH (TAG \"t6\") UID PARTIAL (2:3 4,2)",
            ),
            (
                "SORT RETURN (PARTIAL -2:-1) (SUBJECT) UTF-8 ALL",
                // RFC 9394 3.1: echoed nearer end first.
                "* ESEARCH (TAG \"t7\") PARTIAL (-1:-2 2,4)",
            ),
            (
                "SEARCH RETURN (PARTIAL 1:2) ALL",
                "* ESEARCH (TAG \"t8\") PARTIAL (1:2 1:2)",
            ),
            ("THREAD REFERENCES UTF-8 ALL", "* THREAD (3 5)(1 2 4)"),
            (
                "THREAD ORDEREDSUBJECT UTF-8 ALL",
                "* THREAD (3 5)(1 (2)(4))",
            ),
            (
                "UID THREAD REFERENCES UTF-8 NOT SUBJECT lunch",
                "* THREAD (1 2 4)",
            ),
            // Without the root (a missing parent): its reply leads.
            (
                "THREAD REFERENCES UTF-8 NOT FROM zed",
                "* THREAD (3 5)(2 4)",
            ),
        ];
        for (i, (cmd, want)) in cases.iter().enumerate() {
            let r = a.cmd(cmd).await;
            assert!(r.last().unwrap().contains(" OK "), "{cmd}: {r:?}");
            let got = first(&r);
            // The ESEARCH lines carry this command's tag.
            let want = want.replace("\"t5\"", &format!("\"t{}\"", a.n));
            let want = want.replace("\"t6\"", &format!("\"t{}\"", a.n));
            let want = want.replace("\"t7\"", &format!("\"t{}\"", a.n));
            let want = want.replace("\"t8\"", &format!("\"t{}\"", a.n));
            assert_eq!(got, want, "case {i}: {cmd}");
        }
        // SIZE: RFC822.SIZE, here the length of each APPENDed message.
        let mut by_size: Vec<usize> = (1..=5).collect();
        by_size.sort_by_key(|&n| (std::cmp::Reverse(MESSAGES[n - 1].len()), n));
        let want: Vec<String> = by_size.iter().map(|n| n.to_string()).collect();
        let r = a.cmd("SORT (REVERSE SIZE) UTF-8 ALL").await;
        assert_eq!(first(&r), format!("* SORT {}", want.join(" ")));
        // RFC 5182 2.1: a saved result ($) in UID SORT / THREAD criteria
        // is the UIDs saved.
        a.cmd("UID SEARCH RETURN (SAVE) SUBJECT lunch").await;
        let r = a.cmd("UID SORT (REVERSE DATE) UTF-8 $").await;
        assert_eq!(first(&r), "* SORT 5 3", "{r:?}");
        let r = a.cmd("THREAD REFERENCES UTF-8 $").await;
        assert_eq!(first(&r), "* THREAD (3 5)", "{r:?}");
        // CANCELUPDATE as an argument is just a word.
        let r = a.cmd("SEARCH SUBJECT CANCELUPDATE").await;
        assert!(r.last().unwrap().contains(" OK "), "{r:?}");
        let r = a.cmd("SORT (DATE) KOI8-R ALL").await;
        assert!(r[0].contains("NO [BADCHARSET"), "{r:?}");
        let r = a.cmd("THREAD NOSUCH UTF-8 ALL").await;
        assert!(r[0].contains(" BAD "), "{r:?}");
        let r = a.cmd("SORT () UTF-8 ALL").await;
        assert!(r[0].contains(" BAD "), "{r:?}");

        // A delivery this session has not been told of (no NOOP yet) is
        // not in SORT's answer; after EXISTS it is.
        client
            .deliver("late", &["alice@example.org"], MESSAGES[0].as_bytes())
            .await;
        let r = a.cmd("SORT (ARRIVAL) UTF-8 ALL").await;
        // The SORT may itself announce it (EXISTS after the answer).
        let mut seen = r.iter().any(|l| l.contains("6 EXISTS"));
        assert_eq!(first(&r), "* SORT 1 2 3 4 5", "not told of it yet");
        let since = std::time::Instant::now();
        // A guard against hanging, not a bound on how soon.
        while since.elapsed() < std::time::Duration::from_secs(60) {
            if seen {
                break;
            }
            let r = a.cmd("NOOP").await;
            if r.iter().any(|l| l.contains("6 EXISTS")) {
                seen = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(seen, "EXISTS for the late delivery");
        let r = a.cmd("SORT (ARRIVAL) UTF-8 ALL").await;
        let mut got: Vec<&str> = first(&r).split(' ').skip(2).collect();
        got.sort_unstable();
        assert_eq!(got, ["1", "2", "3", "4", "5", "6"], "{r:?}");
    }
}

/// Python's imaplib: SORT, UID SORT, THREAD, CONDSTORE (FETCH MODSEQ,
/// STORE UNCHANGEDSINCE, STATUS HIGHESTMODSEQ) and a QRESYNC resync after
/// another client's change and expunge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imaplib_sorts_threads_and_resyncs() {
    let (store, _client) = setup(Backend::Postgres).await;
    deliver_all(&store).await;
    let imap = TestImap::start(&store.uri()).await;
    let port = imap.imap.port().to_string();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        python(
            "imap_sort_sync.py",
            &["127.0.0.1", &port, "alice@example.org", "pw-alice"],
        )
    })
    .await
    .unwrap();
    assert!(ok && out.contains("ALL OK"), "{out}");
}

fn index_of(r: &[String], needle: &str) -> usize {
    r.iter()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in {r:?}"))
}

/// RFC 5267 4 (CONTEXT=SEARCH, CONTEXT=SORT): RETURN (UPDATE) keeps a
/// result current. A flag change another session makes removes a
/// message (REMOVEFROM, position 0 for SEARCH, its sort position for
/// SORT); a new message joins after its EXISTS (ADDTO, 4.3); an expunge is
/// preceded by its REMOVEFROM (4.3); UPDATE alone returns no data; a
/// reused tag is BAD; beyond the server's limit NOUPDATE (4.2);
/// CANCELUPDATE ends a context and an unknown tag is NO; SELECT ends them
/// all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_and_sort_contexts_follow_the_mailbox() {
    let (store, _client) = setup(Backend::Postgres).await;
    deliver_all(&store).await;
    let imap = TestImap::start(&store.uri()).await;
    let mut a = RawImap::connect(imap.imap).await;
    let mut b = RawImap::connect(imap.imap).await;
    a.login().await;
    b.login().await;
    let caps = a.cmd("CAPABILITY").await;
    assert!(caps[0].contains(" CONTEXT=SEARCH ") && caps[0].contains(" CONTEXT=SORT "));
    a.cmd("SELECT INBOX").await;
    b.cmd("SELECT INBOX").await;
    // t4: UID SEARCH context; t5: SORT context (by subject: 3 5 1 2 4).
    let r = a.cmd("UID SEARCH RETURN (UPDATE COUNT) UNSEEN").await;
    assert_eq!(r[0], "* ESEARCH (TAG \"t4\") UID COUNT 5\r\n");
    let r = a
        .cmd("SORT RETURN (UPDATE ALL) (SUBJECT) UTF-8 UNSEEN")
        .await;
    assert_eq!(r[0], "* ESEARCH (TAG \"t5\") ALL 3,5,1:2,4\r\n");
    let r = a.cmd("SEARCH RETURN (UPDATE) UNSEEN").await;
    assert_eq!(r[0], "* ESEARCH (TAG \"t6\")\r\n", "UPDATE alone: no data");
    // Message 1 stops matching UNSEEN: removed at its place.
    b.cmd("STORE 1 +FLAGS (\\Seen)").await;
    let r = a.noop_until("REMOVEFROM").await;
    assert!(
        r.contains(&"* ESEARCH (TAG \"t4\") UID REMOVEFROM (0 1)\r\n".into()),
        "{r:?}"
    );
    assert!(
        r.contains(&"* ESEARCH (TAG \"t5\") REMOVEFROM (3 1)\r\n".into()),
        "{r:?}"
    );
    assert!(
        r.contains(&"* ESEARCH (TAG \"t6\") REMOVEFROM (0 1)\r\n".into()),
        "{r:?}"
    );
    // A new message ("Lunch" subject sorts after 3 and 5): ADDTO after
    // its EXISTS.
    let m = "From: x@y.org\r\nSubject: Lunch again\r\n\r\nx\r\n";
    b.cmd(&format!("APPEND INBOX {{{}+}}\r\n{m}", m.len()))
        .await;
    let r = a.noop_until("ADDTO").await;
    let exists = index_of(&r, "* 6 EXISTS");
    let add = index_of(&r, "TAG \"t5\") ADDTO (3 6)");
    assert!(exists < add, "ADDTO after EXISTS: {r:?}");
    assert!(
        r.contains(&"* ESEARCH (TAG \"t4\") UID ADDTO (0 6)\r\n".into()),
        "{r:?}"
    );
    // An expunge: REMOVEFROM before the EXPUNGE (and positions shift).
    b.cmd("STORE 5 +FLAGS.SILENT (\\Deleted)").await;
    b.cmd("EXPUNGE").await;
    let r = a.noop_until("EXPUNGE").await;
    let gone = index_of(&r, "* 5 EXPUNGE");
    let rm = index_of(&r, "TAG \"t5\") REMOVEFROM (2 5)");
    assert!(rm < gone, "REMOVEFROM before EXPUNGE: {r:?}");
    // Any command's updates keep the order, LIST-EXTENDED's too: the
    // REMOVEFROM precedes the EXPUNGE.
    b.cmd("STORE 2 +FLAGS.SILENT (\\Deleted)").await;
    b.cmd("EXPUNGE").await;
    let mut r = Vec::new();
    let since = std::time::Instant::now();
    // A guard against hanging, not a bound on how soon.
    while since.elapsed() < std::time::Duration::from_secs(60) {
        r = a.cmd("LIST (SUBSCRIBED) \"\" \"*\"").await;
        if r.iter().any(|l| l.contains("EXPUNGE")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let gone = index_of(&r, "* 2 EXPUNGE");
    let rm = index_of(&r, "TAG \"t6\") REMOVEFROM (0 2)");
    assert!(rm < gone, "REMOVEFROM before EXPUNGE: {r:?}");
    // Tag reuse, CANCELUPDATE, unknown tag.
    let r = a.cmd("CANCELUPDATE \"t4\"").await;
    assert!(r.last().unwrap().contains(" OK "), "{r:?}");
    let r = a.cmd("CANCELUPDATE \"t4\"").await;
    assert!(r.last().unwrap().contains(" NO "), "{r:?}");
    let r = a.cmd("CANCELUPDATE t5").await;
    assert!(r.last().unwrap().contains(" BAD "), "unquoted: {r:?}");
    a.send(b"t5 SEARCH RETURN (UPDATE) ALL\r\n").await;
    let l = a.line().await;
    assert!(l.starts_with("t5 BAD"), "reused tag: {l}");
    // The limit: NOUPDATE, and the search still answered.
    for _ in 0..9 {
        a.cmd("SEARCH RETURN (UPDATE COUNT) ALL").await;
    }
    let r = a.cmd("SEARCH RETURN (UPDATE COUNT) ALL").await;
    assert!(r.iter().any(|l| l.contains("COUNT 4")), "{r:?}");
    assert!(
        r.iter().any(|l| l.starts_with("* NO [NOUPDATE \"")),
        "{r:?}"
    );
    // SELECT ends every context: no more updates.
    a.cmd("SELECT INBOX").await;
    b.cmd("STORE 1:* -FLAGS (\\Seen)").await;
    let r = a.noop_until("FETCH").await;
    assert!(!r.iter().any(|l| l.contains("ESEARCH")), "{r:?}");
}

/// A SORT or THREAD answer of more than a few hundred messages (numbered
/// from a plain copy of the session's view, not by a search of the view
/// per message) numbers each message as a small one does: with a message
/// another session expunged that this one was not told of yet (it keeps
/// its place: RFC 9051 7.5.1), and after it was told (the numbers move).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_answers_number_messages_as_small_ones_do() {
    const N: usize = 300;
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let (store, _client) = setup(backend).await;
        let imap = TestImap::start(&store.uri()).await;
        let mut a = RawImap::connect(imap.imap).await;
        a.login().await;
        // UID i has subject s(N - i): SORT (SUBJECT) is UID order reversed.
        for i in 1..=N {
            let m = format!(
                "From: x@a.org\r\nSubject: s{:03}\r\nMessage-ID: <m{i}@x>\r\n\r\nx\r\n",
                N - i
            );
            a.send(format!("ap APPEND INBOX {{{}+}}\r\n{m}\r\n", m.len()).as_bytes())
                .await;
            let l = a.line().await;
            assert!(l.starts_with("ap OK"), "{l}");
        }
        a.cmd("SELECT INBOX").await;
        let mut b = RawImap::connect(imap.imap).await;
        b.login().await;
        b.cmd("SELECT INBOX").await;
        b.cmd("STORE 5 +FLAGS.SILENT (\\Deleted)").await;
        let r = b.cmd("EXPUNGE").await;
        assert!(r.iter().any(|l| l.starts_with("* 5 EXPUNGE")), "{r:?}");
        let list = |v: Vec<usize>| {
            v.iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        // Not told yet (SORT and THREAD may not announce it, RFC 9051
        // 7.5.1): the others keep their numbers, and message 5 is not in
        // the answer.
        let want: Vec<usize> = (1..=N).rev().filter(|&n| n != 5).collect();
        let r = a.cmd("SORT (SUBJECT) US-ASCII ALL").await;
        assert_eq!(first(&r), format!("* SORT {}", list(want.clone())));
        let r = a.cmd("THREAD REFERENCES US-ASCII ALL").await;
        let mut numbers: Vec<usize> = first(&r)
            .trim_start_matches("* THREAD ")
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|s| s.parse().ok())
            .collect();
        numbers.sort_unstable();
        let mut sorted = want.clone();
        sorted.sort_unstable();
        assert_eq!(numbers, sorted, "{:?}", &r[1..]);
        // UID SORT names UIDs (here equal to the numbers above), and may
        // announce the expunge; NOOP does if it did not.
        let r = a.cmd("UID SORT (SUBJECT) US-ASCII ALL").await;
        assert_eq!(first(&r), format!("* SORT {}", list(want)));
        let told = r.iter().any(|l| l.starts_with("* 5 EXPUNGE"));
        let r = a.cmd("NOOP").await;
        assert!(
            told || r.iter().any(|l| l.starts_with("* 5 EXPUNGE")),
            "{r:?}"
        );
        // Told: the messages after it moved up one.
        let r = a.cmd("SORT (SUBJECT) US-ASCII ALL").await;
        assert_eq!(
            first(&r),
            format!("* SORT {}", list((1..N).rev().collect()))
        );
        // Asked again (the store answers from the order it kept) after
        // the other session added a message that sorts first (UID N + 1)
        // and marked UID 1 \Seen: the new one is in the answer only once
        // this session was told of it (as message N).
        let m = "From: x@a.org\r\nSubject: a000\r\nMessage-ID: <new@x>\r\n\r\nx\r\n";
        b.send(format!("ap APPEND INBOX {{{}+}}\r\n{m}\r\n", m.len()).as_bytes())
            .await;
        let mut l = b.line().await;
        while l.starts_with("* ") {
            l = b.line().await;
        }
        assert!(l.starts_with("ap OK"), "{l}");
        b.cmd("UID STORE 1 +FLAGS.SILENT (\\Seen)").await;
        let r = a.cmd("SORT (SUBJECT) US-ASCII ALL").await;
        let sort_at = r.iter().position(|l| l.starts_with("* SORT")).unwrap();
        let told_first = r[..sort_at]
            .iter()
            .any(|l| l.trim_end() == format!("* {N} EXISTS"));
        let want: Vec<usize> = if told_first {
            (1..=N).rev().collect()
        } else {
            (1..N).rev().collect()
        };
        assert_eq!(r[sort_at].trim_end(), format!("* SORT {}", list(want)));
        a.cmd("NOOP").await;
        let r = a.cmd("SORT (SUBJECT) US-ASCII ALL").await;
        assert_eq!(
            first(&r),
            format!("* SORT {}", list((1..=N).rev().collect()))
        );
        let r = a.cmd("SORT (SUBJECT) US-ASCII UNSEEN").await;
        assert_eq!(
            first(&r),
            format!("* SORT {}", list((2..=N).rev().collect()))
        );
        let r = a.cmd("SORT (SUBJECT) US-ASCII SEEN").await;
        assert_eq!(first(&r), "* SORT 1");
        let r = a.cmd("UID SORT (SUBJECT) US-ASCII ALL").await;
        let uids: Vec<usize> = std::iter::once(N + 1)
            .chain((1..=N).rev().filter(|&u| u != 5))
            .collect();
        assert_eq!(first(&r), format!("* SORT {}", list(uids)));
    }
}
