//! imap-gateway end to end: the real store and gateway on loopback, driven
//! by clients we did not write (Python imaplib, curl) and by raw sessions
//! for IDLE and concurrent sessions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use e2e::{Backend, RawImap, StoreClient, TestImap, TestStore, message, python};
use service_kit::net::TrustedNetworks;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

async fn setup(backend: Backend) -> (TestStore, StoreClient) {
    let store = TestStore::start(backend).await;
    let client = store.client();
    client.add_domain("example.org").await;
    client.add_account("alice@example.org", "pw-alice").await;
    (store, client)
}

async fn imaplib(addr: SocketAddr, mode: &str) -> (bool, String) {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(&message(
        "imaplib-1",
        "hello from imaplib\r\n.dot line\r\nthree",
    ))
    .unwrap();
    let (port, mode) = (addr.port().to_string(), mode.to_string());
    tokio::task::spawn_blocking(move || {
        python(
            "imap_client.py",
            &[
                "127.0.0.1",
                &port,
                "alice@example.org",
                "pw-alice",
                &mode,
                f.path().to_str().unwrap(),
            ],
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imaplib_drives_every_command_postgres() {
    let (store, _c) = setup(Backend::Postgres).await;
    let imap = TestImap::start_with(&store.uri(), |s| s.trusted = TrustedNetworks::none()).await;
    let (ok, out) = imaplib(imap.imap, "starttls").await;
    assert!(ok && out.contains("ALL OK"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imaplib_drives_every_command_sqlite() {
    let (store, _c) = setup(Backend::Sqlite).await;
    let imap = TestImap::start(&store.uri()).await;
    let (ok, out) = imaplib(imap.imaps, "ssl").await;
    assert!(ok && out.contains("ALL OK"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_fetch_and_search_with_ssl_reqd() {
    let (store, client) = setup(Backend::Sqlite).await;
    let m1 = message("curl-a", "first");
    let m2 = message("curl-b", "second with needle");
    client.deliver("c1", &["alice@example.org"], &m1).await;
    client.deliver("c2", &["alice@example.org"], &m2).await;
    let imap = TestImap::start(&store.uri()).await;
    let base = format!("imap://127.0.0.1:{}", imap.imap.port());
    let run = |args: Vec<String>| {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--ssl-reqd",
                "-k",
                "-u",
                "alice@example.org:pw-alice",
            ])
            .args(args)
            .output()
            .expect("curl runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let b = base.clone();
    let body = tokio::task::spawn_blocking(move || run(vec![format!("{b}/INBOX;UID=2")]))
        .await
        .unwrap();
    assert_eq!(body, m2);
    let b = base.clone();
    let found = tokio::task::spawn_blocking(move || {
        run(vec![
            format!("{b}/INBOX"),
            "-X".into(),
            "SEARCH BODY needle".into(),
        ])
    })
    .await
    .unwrap();
    assert!(
        String::from_utf8_lossy(&found).contains("SEARCH 2"),
        "{}",
        String::from_utf8_lossy(&found)
    );
}

/// Delivers `count` messages to alice's INBOX through the store, as
/// smtp-ingest does; delivery ids and subjects are named after `tag`.
async fn deliver_to_alice(client: &StoreClient, tag: &str, count: usize) {
    for i in 0..count {
        client
            .deliver(
                &format!("{tag}{i}"),
                &["alice@example.org"],
                &message(&format!("{tag}-{i}"), "x"),
            )
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sees_delivery_flags_expunge_and_pop3_deletion() {
    let (store, client) = setup(Backend::Sqlite).await;
    client
        .deliver("i0", &["alice@example.org"], &message("idle-0", "zero"))
        .await;
    let imap = TestImap::start(&store.uri()).await;
    let mut a = RawImap::connect(imap.imap).await;
    a.login().await;
    a.cmd("SELECT INBOX").await;
    a.w.write_all(b"idle1 IDLE\r\n").await.unwrap();
    assert!(a.line().await.starts_with("+ "));

    // A delivery (through the store, as smtp-ingest does).
    client
        .deliver("i1", &["alice@example.org"], &message("idle-1", "one"))
        .await;
    let l = a.line().await;
    assert_eq!(l, "* 2 EXISTS\r\n", "{l}");
    let _recent = a.line().await;

    // A delivery through smtp-ingest.
    let smtp = e2e::TestSmtp::start(&store.uri()).await;
    let s = TcpStream::connect(smtp.smtp).await.unwrap();
    let (sr, mut sw) = tokio::io::split(s);
    let mut sr = BufReader::new(sr);
    let mut line = String::new();
    sr.read_line(&mut line).await.unwrap();
    sw.write_all(b"HELO idle.example\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
        .await
        .unwrap();
    for _ in 0..4 {
        line.clear();
        sr.read_line(&mut line).await.unwrap();
    }
    assert!(line.starts_with("354"), "{line}");
    sw.write_all(&message("idle-smtp", "via smtp"))
        .await
        .unwrap();
    sw.write_all(b".\r\nQUIT\r\n").await.unwrap();
    line.clear();
    sr.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("250"), "{line}");
    let l = a.line().await;
    assert_eq!(l, "* 3 EXISTS\r\n", "{l}");
    let _recent = a.line().await;

    // A flag change and an expunge through session B on another replica.
    let imap2 = TestImap::start(&store.uri()).await;
    let mut b = RawImap::connect(imap2.imap).await;
    b.login().await;
    b.cmd("SELECT INBOX").await;
    b.cmd("STORE 1 +FLAGS (\\Flagged)").await;
    let l = a.line().await;
    assert!(
        l.starts_with("* 1 FETCH (FLAGS (\\Flagged") && l.contains("UID 1"),
        "{l}"
    );
    b.cmd("STORE 2 +FLAGS.SILENT (\\Deleted)").await;
    let l = a.line().await;
    assert!(l.starts_with("* 2 FETCH (FLAGS (\\Deleted"), "{l}");
    b.cmd("EXPUNGE").await;
    let l = a.line().await;
    assert_eq!(l, "* 2 EXPUNGE\r\n");

    // A POP3 deletion shows up the same way.
    let pop = e2e::TestPop3::start(&store.uri()).await;
    let s = TcpStream::connect(pop.pop3).await.unwrap();
    let (pr, mut pw) = tokio::io::split(s);
    let mut pr = BufReader::new(pr);
    let mut line = String::new();
    pr.read_line(&mut line).await.unwrap();
    pw.write_all(b"USER alice@example.org\r\nPASS pw-alice\r\nDELE 1\r\nQUIT\r\n")
        .await
        .unwrap();
    for _ in 0..4 {
        line.clear();
        pr.read_line(&mut line).await.unwrap();
        assert!(line.starts_with("+OK"), "{line}");
    }
    let l = a.line().await;
    assert_eq!(l, "* 1 EXPUNGE\r\n");

    a.w.write_all(b"DONE\r\n").await.unwrap();
    assert!(a.line().await.starts_with("idle1 OK"));
    let r = a.cmd("FETCH 1:* (UID)").await;
    assert_eq!(r.len(), 2, "only the SMTP delivery should be left: {r:?}");
    assert!(r[0].starts_with("* 1 FETCH (UID 3)"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_expunge_during_fetch_and_sequence_numbers_stay_consistent() {
    let (store, client) = setup(Backend::Sqlite).await;
    deliver_to_alice(&client, "s", 3).await;
    let imap = TestImap::start(&store.uri()).await;
    let mut a = RawImap::connect(imap.imap).await;
    a.login().await;
    a.cmd("SELECT INBOX").await;
    let mut b = RawImap::connect(imap.imap).await;
    b.login().await;
    b.cmd("SELECT INBOX").await;
    b.cmd("STORE 2 +FLAGS (\\Deleted)").await;
    b.cmd("EXPUNGE").await;
    // Give A's change feed the expunge before it sends FETCH.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = a.cmd("FETCH 1:3 (UID)").await;
    assert!(
        !r.iter().any(|l| l.contains("EXPUNGE")),
        "EXPUNGE during FETCH: {r:?}"
    );
    assert!(r.iter().any(|l| l.starts_with("* 3 FETCH")), "{r:?}");
    // The feed may take longer on a busy machine: NOOP until it is told.
    let r = a.noop_until("* 2 EXPUNGE").await;
    assert!(r.iter().any(|l| l == "* 2 EXPUNGE\r\n"), "{r:?}");
    let r = a.cmd("FETCH 2 (UID)").await;
    assert!(r[0].starts_with("* 2 FETCH (UID 3)"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_gets_bad_or_no_and_the_session_goes_on() {
    let (store, _client) = setup(Backend::Sqlite).await;
    let imap = TestImap::start_with(&store.uri(), |s| s.max_append = 4096).await;
    let mut a = RawImap::connect(imap.imap).await;
    for bad in [
        "FOO BAR",
        "LIST \"\" (((",
        "SELECT",
        "FETCH 1 (FLAGS",
        "SEARCH ((((((((",
        "\u{1}\u{2}\u{3}",
    ] {
        let r = a.cmd(bad).await;
        let last = r.last().unwrap();
        assert!(
            last.contains(" BAD ") || last.contains(" NO "),
            "{bad}: {r:?}"
        );
    }
    // A huge synchronizing literal is refused without "+".
    a.w.write_all(b"h1 APPEND INBOX {999999999}\r\n")
        .await
        .unwrap();
    let l = a.line().await;
    assert!(l.starts_with("h1 NO [TOOBIG]"), "{l}");
    a.login().await;
    // Invalid UTF-8 / modified UTF-7 mailbox names name no mailbox (see
    // invalid_modified_utf7_names_are_no_not_bad).
    let r = a.cmd("SELECT \"&Jjo\"").await;
    assert!(r.last().unwrap().contains(" NO [NONEXISTENT]"), "{r:?}");
    a.n += 1;
    let mut raw = format!("t{} SELECT \"", a.n).into_bytes();
    raw.extend_from_slice(b"\xff\xfe\"\r\n");
    a.w.write_all(&raw).await.unwrap();
    let l = a.line().await;
    assert!(
        l.contains(" BAD ") || l.contains(" NO "),
        "invalid UTF-8 name: {l}"
    );
    let r = a.cmd("CREATE \"a\u{7}b\"").await;
    assert!(
        r.last().unwrap().contains(" NO ") || r.last().unwrap().contains(" BAD "),
        "{r:?}"
    );
    let r = a.cmd("NOOP").await;
    assert!(r.last().unwrap().contains(" OK "), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn esearch_and_list_extended() {
    let (store, client) = setup(Backend::Sqlite).await;
    deliver_to_alice(&client, "e", 4).await;
    let imap = TestImap::start(&store.uri()).await;
    let mut a = RawImap::connect(imap.imap).await;
    let caps = a.cmd("CAPABILITY").await;
    assert!(
        caps[0].contains(" ESEARCH")
            && caps[0].contains(" LIST-EXTENDED")
            && caps[0].contains(" LIST-STATUS")
    );
    a.login().await;
    a.cmd("SELECT INBOX").await;
    a.cmd("STORE 2,4 +FLAGS (\\Seen)").await;
    let r = a.cmd("SEARCH RETURN (MIN MAX COUNT) UNSEEN").await;
    assert_eq!(
        r[0], "* ESEARCH (TAG \"t5\") MIN 1 MAX 3 COUNT 2\r\n",
        "{r:?}"
    );
    let r = a.cmd("UID SEARCH RETURN () ALL").await;
    assert_eq!(r[0], "* ESEARCH (TAG \"t6\") UID ALL 1:4\r\n", "{r:?}");
    let r = a.cmd("SEARCH RETURN (COUNT) DELETED").await;
    assert_eq!(r[0], "* ESEARCH (TAG \"t7\") COUNT 0\r\n", "{r:?}");
    let r = a.cmd("SEARCH RETURN (BOGUS) ALL").await;
    assert!(r.last().unwrap().contains(" BAD "), "{r:?}");
    // Plain SEARCH still answers SEARCH.
    let r = a.cmd("SEARCH SEEN").await;
    assert_eq!(r[0], "* SEARCH 2 4\r\n");

    a.cmd("CREATE Lists/Sub").await;
    a.cmd("SUBSCRIBE Lists/Sub").await;
    a.cmd("UNSUBSCRIBE Lists").await;
    let r = a.cmd("LIST (SPECIAL-USE) \"\" \"*\"").await;
    assert_eq!(r.len(), 6, "five special-use mailboxes: {r:?}");
    assert!(
        r.iter()
            .any(|l| l.contains("\\Sent") && l.ends_with("\"Sent\"\r\n"))
    );
    // RFC 5258 3.5 and its examples: a parent listed because of its
    // subscribed child carries CHILDINFO, subscribed itself or not; no
    // child attributes unless RETURN (CHILDREN) asks.
    a.cmd("CREATE Projects/Alpha").await;
    a.cmd("SUBSCRIBE Projects").await;
    a.cmd("SUBSCRIBE Projects/Alpha").await;
    let r = a.cmd("LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"%\"").await;
    assert!(
        r.contains(&"* LIST () \"/\" \"Lists\" (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n".to_string()),
        "{r:?}"
    );
    assert!(
        r.contains(
            &"* LIST (\\Subscribed) \"/\" \"Projects\" (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n"
                .to_string()
        ),
        "{r:?}"
    );
    assert!(!r.iter().any(|l| l.contains("Children")), "{r:?}");
    let r = a
        .cmd("LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"%\" RETURN (CHILDREN)")
        .await;
    assert!(
        r.contains(
            &"* LIST (\\Subscribed \\HasChildren) \"/\" \"Projects\" (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n"
                .to_string()
        ),
        "{r:?}"
    );
    // With "*" the subscribed children are listed themselves.
    let r = a.cmd("LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"*\"").await;
    assert!(!r.iter().any(|l| l.contains("CHILDINFO")), "{r:?}");
    assert!(r.iter().any(|l| l.contains("\"Projects/Alpha\"")), "{r:?}");
    let r = a.cmd("LIST \"\" (\"INBOX\" \"Lists/*\") RETURN (SUBSCRIBED CHILDREN STATUS (MESSAGES UNSEEN))").await;
    let text = r.join("");
    assert!(text.contains("* LIST (\\Subscribed \\HasNoChildren) \"/\" \"INBOX\"\r\n* STATUS \"INBOX\" (MESSAGES 4 UNSEEN 2)\r\n"), "{text}");
    assert!(
        text.contains("\\Subscribed \\HasNoChildren) \"/\" \"Lists/Sub\""),
        "{text}"
    );
    let r = a.cmd("LIST (RECURSIVEMATCH) \"\" \"*\"").await;
    assert!(r.last().unwrap().contains(" BAD "), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap4rev2_mode_and_searchres() {
    let (store, client) = setup(Backend::Sqlite).await;
    deliver_to_alice(&client, "r", 4).await;
    let imap = TestImap::start(&store.uri()).await;
    let mut a = RawImap::connect(imap.imap).await;
    let caps = a.cmd("CAPABILITY").await;
    assert!(
        caps[0].contains(" IMAP4rev1 IMAP4rev2 ") && caps[0].contains(" SEARCHRES"),
        "{caps:?}"
    );
    a.login().await;
    let r = a.cmd("ENABLE IMAP4rev2").await;
    assert!(
        r[0].eq_ignore_ascii_case("* ENABLED IMAP4rev2\r\n"),
        "{r:?}"
    );
    let r = a.cmd("SELECT INBOX").await;
    assert!(
        r.iter().any(|l| l == "* LIST () \"/\" \"INBOX\"\r\n"),
        "{r:?}"
    );
    assert!(
        !r.iter().any(|l| l.contains("RECENT")),
        "RECENT in IMAP4rev2: {r:?}"
    );
    let r = a.cmd("FETCH 1 (FLAGS)").await;
    assert!(!r[0].contains("\\Recent"), "{r:?}");
    a.cmd("STORE 1,3 +FLAGS (\\Seen)").await;
    let r = a.cmd("SEARCH SEEN").await;
    assert_eq!(r[0], "* ESEARCH (TAG \"t7\") ALL 1,3\r\n", "{r:?}");
    let r = a.cmd("SEARCH RETURN (SAVE) UNSEEN").await;
    assert!(
        r[0].starts_with("t8 OK"),
        "SAVE alone sends no ESEARCH: {r:?}"
    );
    let r = a.cmd("FETCH $ (UID)").await;
    assert_eq!(r.len(), 3, "{r:?}");
    assert!(
        r[0].starts_with("* 2 FETCH (UID 2)") && r[1].starts_with("* 4 FETCH (UID 4)"),
        "{r:?}"
    );
    let r = a.cmd("UID STORE $ +FLAGS.SILENT (\\Flagged)").await;
    assert!(r.last().unwrap().contains(" OK "), "{r:?}");
    let r = a.cmd("SEARCH FLAGGED").await;
    assert_eq!(r[0], "* ESEARCH (TAG \"t11\") ALL 2,4\r\n", "{r:?}");
    let r = a.cmd("UID SEARCH $ SEEN").await;
    assert_eq!(r[0], "* ESEARCH (TAG \"t12\") UID\r\n", "{r:?}");
    let r = a.cmd("SELECT INBOX").await;
    assert!(r[0].starts_with("* OK [CLOSED]"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_line_is_cut_off() {
    let (store, _client) = setup(Backend::Sqlite).await;
    let imap = TestImap::start(&store.uri()).await;
    let mut a = RawImap::connect(imap.imap).await;
    // 1 MiB without a line end (the line limit is 64 KiB).
    let chunk = vec![b'x'; 64 * 1024];
    let mut closed = None;
    for _ in 0..16 {
        if a.w.write_all(&chunk).await.is_err() {
            break;
        }
    }
    let l = a.line().await;
    if l.starts_with("* BYE") {
        closed = Some(l);
    }
    assert!(
        closed.is_some_and(|l| l.contains("too long")),
        "endless line not refused"
    );
}

/// The gateway's cache of immutable message data (DESIGN.md 8) is keyed by
/// account, UIDVALIDITY and UID: a mailbox deleted and created again under
/// the same name, whose first message has UID 1 again, shows the new
/// message, and another account's message with the same name and UID is
/// never served from the cache either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_message_cache_never_serves_another_message() {
    let (store, client) = setup(Backend::Postgres).await;
    client.add_account("bob@example.org", "pw-bob").await;
    let imap = TestImap::start(&store.uri()).await;
    let append = |subject: &str| {
        let m = format!("Subject: {subject}\r\nFrom: a@example.org\r\n\r\nbody of {subject}\r\n");
        format!("APPEND Box {{{}+}}\r\n{m}", m.len())
    };
    let mut bob = RawImap::connect(imap.imap).await;
    let r = bob.cmd("LOGIN bob@example.org pw-bob").await;
    assert!(r.last().unwrap().contains("OK"), "{r:?}");
    bob.cmd("CREATE Box").await;
    bob.cmd(&append("bobs-message")).await;
    let mut a = RawImap::connect(imap.imap).await;
    a.login().await;
    a.cmd("CREATE Box").await;
    a.cmd(&append("first-message")).await;
    let fetch = "FETCH 1 (ENVELOPE BODY.PEEK[])";
    for (who, s, want) in [
        ("alice", &mut a, "first-message"),
        ("bob", &mut bob, "bobs-message"),
    ] {
        s.cmd("SELECT Box").await;
        let r = s.cmd(fetch).await.concat();
        assert!(r.contains(want), "{who}: {r}");
        // Twice: the second comes from the cache.
        let r = s.cmd(fetch).await.concat();
        assert!(r.contains(want), "{who}, cached: {r}");
    }
    a.cmd("UNSELECT").await;
    let r = a.cmd("DELETE Box").await;
    assert!(r.last().unwrap().contains("OK"), "{r:?}");
    a.cmd("CREATE Box").await;
    let r = a.cmd(&append("second-message")).await.concat();
    assert!(
        r.contains("APPENDUID") && r.contains(" 1]"),
        "UID 1 again: {r}"
    );
    a.cmd("SELECT Box").await;
    let r = a.cmd(fetch).await.concat();
    assert!(
        r.contains("second-message") && !r.contains("first-message"),
        "the deleted mailbox's message came back: {r}"
    );
    let r = bob.cmd(fetch).await.concat();
    assert!(r.contains("bobs-message"), "{r}");
}

/// A mailbox name that is not valid modified UTF-7 (RFC 3501 5.1.3) names
/// no mailbox: SELECT, EXAMINE and STATUS of it are NO [NONEXISTENT], CREATE
/// is NO [CANNOT], and a LIST whose pattern does not decode matches
/// nothing; none of them is BAD (the commands are well-formed) and the
/// session goes on, however often it is asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_modified_utf7_names_are_no_not_bad() {
    let (store, _client) = setup(Backend::Sqlite).await;
    let imap = TestImap::start(&store.uri()).await;
    let mut a = RawImap::connect(imap.imap).await;
    a.login().await;
    for _ in 0..60 {
        for c in [
            "SELECT \"&Jjo!\"",
            "EXAMINE \"a&\"",
            "STATUS \"&U,BTFw\" (MESSAGES)",
        ] {
            let r = a.cmd(c).await;
            let last = r.last().unwrap();
            assert!(last.contains(" NO [NONEXISTENT]"), "{c}: {r:?}");
        }
        let r = a.cmd("CREATE \"&Jjo!\"").await;
        assert!(r.last().unwrap().contains(" NO [CANNOT]"), "{r:?}");
        let r = a.cmd("LIST \"\" \"!#$&'+,-.0-9:;<=>?@^_`|}\"").await;
        assert_eq!(r.len(), 1, "nothing matches: {r:?}");
        assert!(r[0].contains(" OK "), "{r:?}");
        let r = a.cmd("LIST (SUBSCRIBED) \"\" \"&-&\"").await;
        assert!(r.last().unwrap().contains(" OK "), "{r:?}");
    }
    // Still there after 360 such commands (past the BAD limit of 50).
    let r = a.cmd("SELECT INBOX").await;
    assert!(r.last().unwrap().contains(" OK ["), "{r:?}");
}

/// Sessions of one gateway that select the same mailbox share its view
/// (DESIGN.md 8), yet each client keeps its own sequence numbers: an
/// EXPUNGE one session makes is told to another only when that one may
/// hear it (RFC 9051 7.5.1: not during FETCH), twenty IDLE sessions all
/// hear a delivery and the expunge, and a mailbox deleted and created again
/// under its name is a new mailbox to a later SELECT, not the old view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_sharing_a_view_keep_their_own_numbers() {
    let (store, client) = setup(Backend::Postgres).await;
    deliver_to_alice(&client, "s", 3).await;
    let imap = TestImap::start(&store.uri()).await;
    let mut idle = Vec::new();
    for _ in 0..20 {
        let mut d = RawImap::connect(imap.imap).await;
        d.login().await;
        let r = d.cmd("SELECT INBOX").await;
        assert!(r.contains(&"* 3 EXISTS\r\n".to_string()), "{r:?}");
        d.w.write_all(b"i IDLE\r\n").await.unwrap();
        assert!(d.line().await.starts_with("+ "));
        idle.push(d);
    }
    let mut a = RawImap::connect(imap.imap).await;
    a.login().await;
    a.cmd("SELECT INBOX").await;
    let mut b = RawImap::connect(imap.imap).await;
    b.login().await;
    b.cmd("SELECT INBOX").await;
    let r = b.cmd("STORE 2 +FLAGS.SILENT (\\Deleted)").await;
    assert!(r.last().unwrap().contains("OK"), "{r:?}");
    let r = b.cmd("EXPUNGE").await;
    assert_eq!(r[0], "* 2 EXPUNGE\r\n", "{r:?}");

    // A is in FETCH: message 2 keeps its number (and its UID) for now.
    let r = a.cmd("FETCH 1:3 (UID)").await;
    assert!(!r.iter().any(|l| l.contains("EXPUNGE")), "{r:?}");
    for (n, uid) in [(1, 1), (2, 2), (3, 3)] {
        let want = format!("* {n} FETCH (UID {uid})\r\n");
        assert!(r.contains(&want), "{want} missing: {r:?}");
    }
    let r = a.cmd("NOOP").await;
    assert!(r.contains(&"* 2 EXPUNGE\r\n".to_string()), "{r:?}");
    let r = a.cmd("FETCH 2 (UID)").await;
    assert_eq!(r[0], "* 2 FETCH (UID 3)\r\n", "{r:?}");

    // Every IDLE session hears the expunge, then a delivery.
    for d in idle.iter_mut() {
        loop {
            let l = d.line().await;
            if l == "* 2 EXPUNGE\r\n" {
                break;
            }
            assert!(l.contains("FETCH (FLAGS"), "unexpected {l}");
        }
    }
    client
        .deliver("s4", &["alice@example.org"], &message("shared-4", "x"))
        .await;
    for d in idle.iter_mut() {
        let l = d.line().await;
        assert_eq!(l, "* 3 EXISTS\r\n");
    }
    let r = a.cmd("NOOP").await;
    assert!(r.contains(&"* 3 EXISTS\r\n".to_string()), "{r:?}");

    // Deleted and created again: a new mailbox for a later SELECT.
    a.cmd("CREATE Box").await;
    a.cmd("COPY 1:* Box").await;
    a.cmd("SELECT Box").await;
    let r = b.cmd("DELETE Box").await;
    assert!(r.last().unwrap().contains("OK"), "{r:?}");
    b.cmd("CREATE Box").await;
    b.cmd("COPY 1 Box").await;
    let mut c = RawImap::connect(imap.imap).await;
    c.login().await;
    let r = c.cmd("SELECT Box").await;
    assert!(r.contains(&"* 1 EXISTS\r\n".to_string()), "{r:?}");
    let r = c.cmd("FETCH 1:* (UID)").await;
    assert_eq!(r[0], "* 1 FETCH (UID 1)\r\n", "{r:?}");
    assert_eq!(r.len(), 2, "{r:?}");
}

/// RFC 9051 6.4.4: SENTBEFORE, SENTON and SENTSINCE compare the date of
/// the Date: header as written, in the header's own time zone, with the
/// time disregarded; near midnight that differs from the UTC date.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sent_dates_are_compared_in_the_headers_own_zone() {
    let (store, client) = setup(Backend::Sqlite).await;
    for (i, date) in [
        // 04:30 on 1 December in UTC, still 30 November where it was sent.
        "Mon, 30 Nov 2026 23:30:00 -0500",
        // 22:30 on 30 November in UTC, already 1 December where it was sent.
        "Tue, 01 Dec 2026 00:30:00 +0200",
        "Tue, 01 Dec 2026 12:00:00 +0000",
    ]
    .iter()
    .enumerate()
    {
        let m = format!(
            "From: a@remote.example\r\nTo: alice@example.org\r\nSubject: d{i}\r\nDate: {date}\r\n\r\nx\r\n"
        );
        client
            .deliver(&format!("d{i}"), &["alice@example.org"], m.as_bytes())
            .await;
    }
    let imap = TestImap::start(&store.uri()).await;
    let mut a = RawImap::connect(imap.imap).await;
    a.login().await;
    a.cmd("SELECT INBOX").await;
    for (key, want) in [
        ("SENTON 30-Nov-2026", "* SEARCH 1\r\n"),
        ("SENTON 1-Dec-2026", "* SEARCH 2 3\r\n"),
        ("SENTBEFORE 1-Dec-2026", "* SEARCH 1\r\n"),
        ("SENTSINCE 1-Dec-2026", "* SEARCH 2 3\r\n"),
        (
            "SENTSINCE 30-Nov-2026 SENTBEFORE 1-Dec-2026",
            "* SEARCH 1\r\n",
        ),
    ] {
        let r = a.cmd(&format!("UID SEARCH {key}")).await;
        assert_eq!(r[0], want, "UID SEARCH {key}: {r:?}");
    }
}

/// RFC 3501 6.3.9: "%" with LSUB stops at a parent that is not
/// subscribed; that parent is returned, flagged \Noselect, in place of its
/// subscribed child. "*" returns the child itself and no such parent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lsub_percent_returns_an_unsubscribed_parent_as_noselect() {
    let (store, _client) = setup(Backend::Sqlite).await;
    let imap = TestImap::start(&store.uri()).await;
    let mut a = RawImap::connect(imap.imap).await;
    a.login().await;
    for c in [
        "CREATE Lists/Rust",
        "SUBSCRIBE Lists/Rust",
        "UNSUBSCRIBE Lists",
    ] {
        let r = a.cmd(c).await;
        assert!(!r.last().unwrap().contains("BAD"), "{c}: {r:?}");
    }
    // The mailbox name of an LSUB line, quoted or not.
    let named = |l: &str, name: &str| {
        l.trim_end()
            .rsplit(' ')
            .next()
            .is_some_and(|n| n.trim_matches('"') == name)
    };
    let r = a.cmd("LSUB \"\" %").await;
    assert!(
        r.iter()
            .any(|l| l.starts_with("* LSUB (\\Noselect) ") && named(l, "Lists")),
        "{r:?}"
    );
    assert!(!r.iter().any(|l| l.contains("Lists/Rust")), "{r:?}");
    let r = a.cmd("LSUB \"\" *").await;
    assert!(r.iter().any(|l| named(l, "Lists/Rust")), "{r:?}");
    assert!(!r.iter().any(|l| named(l, "Lists")), "{r:?}");
    let r = a.cmd("LSUB \"\" Lists/%").await;
    assert!(r.iter().any(|l| named(l, "Lists/Rust")), "{r:?}");
}

fn status_recent(r: &[String]) -> &str {
    let l = r
        .iter()
        .find(|l| l.starts_with("* STATUS"))
        .expect("STATUS");
    let at = l.find("RECENT ").expect("RECENT") + 7;
    l[at..].split([' ', ')']).next().unwrap()
}

/// RFC 3501 2.3.2 (\Recent): a message is recent in exactly one session,
/// the first to be told of it; STATUS (RECENT) (6.3.10) from any other
/// session does not count a message a selected session has claimed, even
/// after that session ends; a message no session has claimed yet is
/// counted, and EXAMINE never claims it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_recent_follows_the_claiming_session() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let (store, client) = setup(backend).await;
        let imap = TestImap::start(&store.uri()).await;
        let mut a = RawImap::connect(imap.imap).await;
        let mut b = RawImap::connect(imap.imap).await;
        a.login().await;
        b.login().await;
        a.cmd("SELECT INBOX").await;
        // B appends while A has INBOX selected: A is told, and claims it.
        b.send(b"ap1 APPEND INBOX {20}\r\n").await;
        assert!(b.line().await.starts_with('+'));
        b.send(b"Subject: r1\r\n\r\nbody\r\n\r\n").await;
        assert!(b.line().await.starts_with("ap1 OK"));
        let r = a.noop_until("RECENT").await;
        assert!(r.contains(&"* 1 RECENT\r\n".to_string()), "{r:?}");
        let r = b.cmd("STATUS INBOX (MESSAGES RECENT)").await;
        assert_eq!(status_recent(&r), "0", "claimed by A: {r:?}");
        let mut c = RawImap::connect(imap.imap).await;
        c.login().await;
        assert_eq!(status_recent(&c.cmd("STATUS INBOX (RECENT)").await), "0");
        // The claiming session ends: still not recent for anyone else.
        a.cmd("LOGOUT").await;
        assert_eq!(status_recent(&c.cmd("STATUS INBOX (RECENT)").await), "0");
        let r = c.cmd("SELECT INBOX").await;
        assert!(r.contains(&"* 0 RECENT\r\n".to_string()), "{r:?}");
        c.cmd("CLOSE").await;
        // Nobody selected: a delivery is unclaimed, so recent for STATUS;
        // EXAMINE shows it and leaves it; the next SELECT claims it.
        client
            .deliver("r2", &["alice@example.org"], &message("r2", "x"))
            .await;
        assert_eq!(status_recent(&b.cmd("STATUS INBOX (RECENT)").await), "1");
        let r = b.cmd("EXAMINE INBOX").await;
        assert!(r.contains(&"* 1 RECENT\r\n".to_string()), "{r:?}");
        b.cmd("CLOSE").await;
        assert_eq!(status_recent(&c.cmd("STATUS INBOX (RECENT)").await), "1");
        let r = c.cmd("SELECT INBOX").await;
        assert!(r.contains(&"* 1 RECENT\r\n".to_string()), "{r:?}");
        assert_eq!(status_recent(&b.cmd("STATUS INBOX (RECENT)").await), "0");
        // STATUS of its own selected mailbox counts the session's own.
        assert_eq!(status_recent(&c.cmd("STATUS INBOX (RECENT)").await), "1");
    }
}

/// RFC 3516 4.2 and RFC 9051 7.5.2: a partial BINARY (and BODY) fetch
/// names its origin in the response (`BINARY[1]<50>`); BINARY returns the
/// part with its Content-Transfer-Encoding removed, exactly, so a range
/// of it may cross base64 line breaks and quoted-printable soft breaks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_binary_names_its_origin_and_decodes_exactly() {
    let (store, client) = setup(Backend::Sqlite).await;
    let b64 = "VGhlIHF1aWNrIGJyb3duIGZveCBqdW1wcyBvdmVyIHRoZSBsYXp5IGRvZy4NClRoZSBxdWljayBi\r\n\
               cm93biBmb3gganVtcHMgb3ZlciB0aGUgbGF6eSBkb2cuDQpUaGUgcXVpY2sgYnJvd24gZm94IGp1\r\n\
               bXBzIG92ZXIgdGhlIGxhenkgZG9nLg0K\r\n";
    let b64_decoded = "The quick brown fox jumps over the lazy dog.\r\n".repeat(3);
    let qp = "caf=C3=A9 au lait, a line long enough that it needs a soft break right =\r\n\
              here and =3D sign=\r\ns\r\nend";
    let qp_decoded: &[u8] = b"caf\xc3\xa9 au lait, a line long enough that it needs a soft break right here and = signs\r\nend";
    let m = format!(
        "From: a@remote.example\r\nTo: alice@example.org\r\nSubject: binary\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\
         --b1\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\r\n{qp}\r\n--b1--\r\n"
    );
    client
        .deliver("bin", &["alice@example.org"], m.as_bytes())
        .await;
    let imap = TestImap::start(&store.uri()).await;
    let mut a = RawImap::connect(imap.imap).await;
    a.login().await;
    a.cmd("EXAMINE INBOX").await;
    let fetch = |r: Vec<String>| -> Vec<u8> { r[..r.len() - 1].concat().into_bytes() };
    // Whole parts: no origin.
    let r = fetch(a.cmd("FETCH 1 (BINARY.PEEK[1])").await);
    let want = format!(
        "* 1 FETCH (BINARY[1] {{{}}}\r\n{b64_decoded})\r\n",
        b64_decoded.len()
    );
    assert_eq!(String::from_utf8_lossy(&r), want);
    // A range across the first base64 line (57 decoded bytes) and a CRLF.
    let r = fetch(a.cmd("FETCH 1 (BINARY.PEEK[1]<40.25>)").await);
    let want = format!(
        "* 1 FETCH (BINARY[1]<40> {{25}}\r\n{})\r\n",
        &b64_decoded[40..65]
    );
    assert_eq!(String::from_utf8_lossy(&r), want);
    // The origin 0 is named too.
    let r = fetch(a.cmd("FETCH 1 (BINARY.PEEK[1]<0.7>)").await);
    assert_eq!(
        String::from_utf8_lossy(&r),
        "* 1 FETCH (BINARY[1]<0> {7}\r\nThe qui)\r\n"
    );
    // Quoted-printable: a range across the soft break and the =3D.
    let at = qp_decoded.windows(6).position(|w| w == b"right ").unwrap();
    let r = a.cmd(&format!("FETCH 1 (BINARY.PEEK[2]<{at}.20>)")).await;
    let mut want = format!("* 1 FETCH (BINARY[2]<{at}> {{20}}\r\n").into_bytes();
    want.extend_from_slice(&qp_decoded[at..at + 20]);
    want.extend_from_slice(b")\r\n");
    assert_eq!(fetch(r), want);
    // A range past the end is empty, still with its origin.
    let r = fetch(a.cmd("FETCH 1 (BINARY.PEEK[2]<5000.10>)").await);
    assert_eq!(
        String::from_utf8_lossy(&r),
        "* 1 FETCH (BINARY[2]<5000> {0}\r\n)\r\n"
    );
    // BINARY.SIZE is the decoded size; BODY partials name their origin.
    let r = fetch(a.cmd("FETCH 1 (BINARY.SIZE[1] BINARY.SIZE[2])").await);
    assert_eq!(
        String::from_utf8_lossy(&r),
        format!(
            "* 1 FETCH (BINARY.SIZE[1] {} BINARY.SIZE[2] {})\r\n",
            b64_decoded.len(),
            qp_decoded.len()
        )
    );
    let r = fetch(a.cmd("FETCH 1 (BODY.PEEK[1]<10.10>)").await);
    assert_eq!(
        String::from_utf8_lossy(&r),
        format!("* 1 FETCH (BODY[1]<10> {{10}}\r\n{})\r\n", &b64[10..20])
    );
}
