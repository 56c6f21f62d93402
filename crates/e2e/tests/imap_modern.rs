//! IMAP's modern set (issue #14) end to end, each check naming its RFC
//! section: QUOTA (RFC 9208), WITHIN (RFC 5032), UNAUTHENTICATE (RFC
//! 8437); raw sessions and Python's imaplib.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::{Backend, RawImap, StoreClient, TestImap, TestStore, message};
use mailbox_api::pb;

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

async fn append(a: &mut RawImap, date: Option<&str>, body: &str) -> Vec<String> {
    let date = date.map(|d| format!(" \"{d}\"")).unwrap_or_default();
    a.cmd(&format!("APPEND INBOX{date} {{{}+}}\r\n{body}", body.len()))
        .await
}

/// RFC 9208: QUOTA and QUOTA=RES-STORAGE advertised; GETQUOTAROOT names
/// the account's root "" with its STORAGE usage and limit in units of
/// 1,024 octets (4.3, 5.1); GETQUOTA "" the same (4.2), another root NO;
/// an unlimited account has no resources; an APPEND past the limit is
/// NO [OVERQUOTA] (4.1.1... 7); SETQUOTA is refused (no QUOTASET);
/// STATUS DELETED-STORAGE counts the \Deleted messages' size (4.1.4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_storage_root_and_deleted_storage() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let (store, client) = setup(backend).await;
        let imap = TestImap::start(&store.uri()).await;
        let mut a = RawImap::connect(imap.imap).await;
        a.login().await;
        let caps = a.cmd("CAPABILITY").await;
        assert!(
            caps[0].contains(" QUOTA ") && caps[0].contains(" QUOTA=RES-STORAGE "),
            "{caps:?}"
        );
        // Unlimited: no quota root (a quota-list needs a resource).
        let r = a.cmd("GETQUOTAROOT INBOX").await;
        assert_eq!(r[0], "* QUOTAROOT \"INBOX\"\r\n", "{r:?}");
        assert!(tagged(&r).contains(" OK "), "{r:?}");
        let r = a.cmd("GETQUOTA \"\"").await;
        assert!(tagged(&r).contains("NO [NONEXISTENT]"), "{r:?}");
        client
            .admin()
            .set_quota(pb::SetQuotaRequest {
                address: "alice@example.org".into(),
                quota_bytes: 10 * 1024,
                quota_messages: None,
            })
            .await
            .unwrap();
        let body = format!("Subject: q\r\n\r\n{}\r\n", "x".repeat(3000));
        assert!(tagged(&append(&mut a, None, &body).await).contains(" OK "));
        let r = a.cmd("GETQUOTA \"\"").await;
        assert_eq!(r[0], "* QUOTA \"\" (STORAGE 3 10)\r\n", "{r:?}");
        let r = a.cmd("GETQUOTAROOT INBOX").await;
        assert_eq!(r[0], "* QUOTAROOT \"INBOX\" \"\"\r\n", "{r:?}");
        assert_eq!(r[1], "* QUOTA \"\" (STORAGE 3 10)\r\n", "{r:?}");
        // The same through Python's imaplib.
        let port = imap.imap.port().to_string();
        let (ok, out) = tokio::task::spawn_blocking(move || {
            e2e::python(
                "imap_quota.py",
                &[
                    "127.0.0.1",
                    &port,
                    "alice@example.org",
                    "pw-alice",
                    "3",
                    "10",
                ],
            )
        })
        .await
        .unwrap();
        assert!(ok && out.contains("ALL OK"), "{out}");
        let r = a.cmd("GETQUOTA \"other\"").await;
        assert!(tagged(&r).contains(" NO "), "{r:?}");
        let r = a.cmd("GETQUOTAROOT Nonexistent").await;
        assert!(tagged(&r).contains("NO [NONEXISTENT]"), "{r:?}");
        let r = a.cmd("SETQUOTA \"\" (STORAGE 100000)").await;
        assert!(tagged(&r).contains(" NO "), "{r:?}");
        // Past the limit.
        let big = format!("Subject: big\r\n\r\n{}\r\n", "x".repeat(9000));
        let r = append(&mut a, None, &big).await;
        assert!(tagged(&r).contains("NO [OVERQUOTA]"), "{r:?}");
        // DELETED-STORAGE, for a mailbox not selected and selected.
        a.cmd("SELECT INBOX").await;
        a.cmd("STORE 1 +FLAGS.SILENT (\\Deleted)").await;
        let r = a.cmd("STATUS INBOX (DELETED DELETED-STORAGE)").await;
        assert_eq!(
            r[0], "* STATUS \"INBOX\" (DELETED 1 DELETED-STORAGE 3)\r\n",
            "{r:?}"
        );
        a.cmd("UNSELECT").await;
        let r = a.cmd("STATUS INBOX (DELETED-STORAGE)").await;
        assert_eq!(r[0], "* STATUS \"INBOX\" (DELETED-STORAGE 3)\r\n");
        // The MESSAGE resource (5.2): counted in messages, beside STORAGE;
        // alone once the storage limit is lifted; past it, NO [OVERQUOTA]
        // for APPEND and for COPY.
        let set = |bytes: u64, messages: u64| pb::SetQuotaRequest {
            address: "alice@example.org".into(),
            quota_bytes: bytes,
            quota_messages: Some(messages),
        };
        client.admin().set_quota(set(10 * 1024, 2)).await.unwrap();
        assert!(caps[0].contains(" QUOTA=RES-MESSAGE "), "{caps:?}");
        let r = a.cmd("GETQUOTA \"\"").await;
        assert_eq!(r[0], "* QUOTA \"\" (STORAGE 3 10 MESSAGE 1 2)\r\n", "{r:?}");
        client.admin().set_quota(set(0, 2)).await.unwrap();
        let r = a.cmd("GETQUOTAROOT INBOX").await;
        assert_eq!(r[0], "* QUOTAROOT \"INBOX\" \"\"\r\n", "{r:?}");
        assert_eq!(r[1], "* QUOTA \"\" (MESSAGE 1 2)\r\n", "{r:?}");
        assert!(tagged(&append(&mut a, None, "Subject: 2\r\n\r\nx\r\n").await).contains(" OK "));
        let r = append(&mut a, None, "Subject: 3\r\n\r\nx\r\n").await;
        assert!(tagged(&r).contains("NO [OVERQUOTA]"), "{r:?}");
        a.cmd("CREATE Other").await;
        a.cmd("SELECT INBOX").await;
        let r = a.cmd("COPY 1 Other").await;
        assert!(tagged(&r).contains("NO [OVERQUOTA]"), "{r:?}");
        let r = a.cmd("GETQUOTA \"\"").await;
        assert_eq!(r[0], "* QUOTA \"\" (MESSAGE 2 2)\r\n", "{r:?}");
    }
}

/// RFC 5032 3: SEARCH OLDER / YOUNGER by INTERNALDATE, in seconds before
/// now; the two partition the mailbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn within_older_and_younger() {
    let (store, _client) = setup(Backend::Sqlite).await;
    let imap = TestImap::start(&store.uri()).await;
    let mut a = RawImap::connect(imap.imap).await;
    a.login().await;
    let caps = a.cmd("CAPABILITY").await;
    assert!(caps[0].contains(" WITHIN "), "{caps:?}");
    let old = "Subject: old\r\n\r\nx\r\n";
    let new = "Subject: new\r\n\r\nx\r\n";
    assert!(
        tagged(&append(&mut a, Some("01-Jan-2020 10:00:00 +0000"), old).await).contains(" OK ")
    );
    assert!(tagged(&append(&mut a, None, new).await).contains(" OK "));
    a.cmd("SELECT INBOX").await;
    for (key, want) in [
        ("YOUNGER 3600", "* SEARCH 2\r\n"),
        ("OLDER 3600", "* SEARCH 1\r\n"),
        ("OR OLDER 60 YOUNGER 60", "* SEARCH 1 2\r\n"),
        ("YOUNGER 4000000000", "* SEARCH 1 2\r\n"),
    ] {
        let r = a.cmd(&format!("SEARCH {key}")).await;
        assert_eq!(r[0], want, "SEARCH {key}");
    }
    let r = a.cmd("SEARCH OLDER 0").await;
    assert!(tagged(&r).contains(" BAD "), "interval is nz-number: {r:?}");
}

/// RFC 8437 3: UNAUTHENTICATE (advertised once authenticated) returns to
/// the not-authenticated state: the mailbox is closed without expunging,
/// ENABLEd extensions are forgotten, commands needing a login are refused,
/// and the client can log in again (as another user, too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticate_returns_to_not_authenticated() {
    let (store, client) = setup(Backend::Sqlite).await;
    client.add_account("bob@example.org", "pw-bob").await;
    client
        .deliver("u1", &["alice@example.org"], &message("u1", "x"))
        .await;
    let imap = TestImap::start(&store.uri()).await;
    let mut a = RawImap::connect(imap.imap).await;
    let caps = a.cmd("CAPABILITY").await;
    assert!(!caps[0].contains("UNAUTHENTICATE"), "{caps:?}");
    a.login().await;
    let caps = a.cmd("CAPABILITY").await;
    assert!(caps[0].contains(" UNAUTHENTICATE"), "{caps:?}");
    a.cmd("ENABLE QRESYNC").await;
    a.cmd("SELECT INBOX").await;
    a.cmd("STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    let r = a.cmd("UNAUTHENTICATE").await;
    assert!(tagged(&r).contains(" OK "), "{r:?}");
    assert!(
        !r.iter()
            .any(|l| l.contains("EXPUNGE") || l.contains("VANISHED"))
    );
    let r = a.cmd("SELECT INBOX").await;
    assert!(tagged(&r).contains(" BAD "), "not authenticated: {r:?}");
    let caps = a.cmd("CAPABILITY").await;
    assert!(caps[0].contains("AUTH=PLAIN"), "{caps:?}");
    a.login_as("bob@example.org", "pw-bob").await;
    let r = a.cmd("SELECT INBOX").await;
    assert!(
        r.contains(&"* 0 EXISTS\r\n".to_string()),
        "bob's INBOX: {r:?}"
    );
    a.cmd("UNAUTHENTICATE").await;
    a.login().await;
    // Alice's message was not expunged, and QRESYNC is off again.
    let r = a.cmd("SELECT INBOX (QRESYNC (1 1))").await;
    assert!(tagged(&r).contains(" BAD "), "ENABLE forgotten: {r:?}");
    let r = a.cmd("SELECT INBOX").await;
    assert!(r.contains(&"* 1 EXISTS\r\n".to_string()), "{r:?}");
}

/// RFC 4978: COMPRESS=DEFLATE with Python's zlib over imaplib's socket,
/// on the plain port, after STARTTLS, and on the implicit-TLS port: the
/// session goes on compressed (APPEND with a literal, SELECT, FETCH,
/// SEARCH), a large FETCH arrives compressed, and a second COMPRESS is NO
/// [COMPRESSIONACTIVE].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compress_deflate_with_zlib_on_every_port() {
    let (store, _client) = setup(Backend::Sqlite).await;
    let imap = TestImap::start(&store.uri()).await;
    for (port, mode) in [
        (imap.imap.port(), "plain"),
        (imap.imap.port(), "starttls"),
        (imap.imaps.port(), "ssl"),
    ] {
        let port = port.to_string();
        let (ok, out) = tokio::task::spawn_blocking(move || {
            e2e::python(
                "imap_compress.py",
                &["127.0.0.1", &port, "alice@example.org", "pw-alice", mode],
            )
        })
        .await
        .unwrap();
        assert!(ok && out.contains("ALL OK"), "{mode}: {out}");
    }
}

/// RFC 6154 3 (CREATE-SPECIAL-USE): CREATE name (USE (\Sent)) makes a
/// mailbox LIST shows with that attribute; more than one use, or one not
/// kept, is NO [USEATTR]; a plain CREATE is unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_special_use() {
    let (store, _client) = setup(Backend::Postgres).await;
    let imap = TestImap::start(&store.uri()).await;
    let mut a = RawImap::connect(imap.imap).await;
    a.login().await;
    let caps = a.cmd("CAPABILITY").await;
    assert!(caps[0].contains(" CREATE-SPECIAL-USE "), "{caps:?}");
    let r = a.cmd("CREATE \"My Sent\" (USE (\\Sent))").await;
    assert!(tagged(&r).contains(" OK "), "{r:?}");
    a.send(b"c2 CREATE {6+}\r\nScraps (USE (\\Trash))\r\n")
        .await;
    let l = a.line().await;
    assert!(l.starts_with("c2 OK"), "literal name: {l}");
    let r = a.cmd("CREATE Two (USE (\\Sent \\Trash))").await;
    assert!(tagged(&r).contains("NO [USEATTR]"), "{r:?}");
    // \All and \Flagged name virtual mailboxes (RFC 6154 2).
    let r = a.cmd("CREATE Everything (USE (\\All))").await;
    assert!(tagged(&r).contains("NO [USEATTR]"), "{r:?}");
    let r = a.cmd("CREATE Odd (USE (\\Important))").await;
    assert!(tagged(&r).contains("NO [USEATTR]"), "{r:?}");
    let r = a.cmd("CREATE Bad (USE \\Sent)").await;
    assert!(tagged(&r).contains(" BAD "), "{r:?}");
    let r = a.cmd("CREATE \"My Sent\" (USE (\\Sent))").await;
    assert!(tagged(&r).contains("NO [ALREADYEXISTS]"), "{r:?}");
    let r = a.cmd("CREATE Plain").await;
    assert!(tagged(&r).contains(" OK "), "{r:?}");
    let r = a.cmd("LIST (SPECIAL-USE) \"\" \"*\"").await;
    assert!(
        r.contains(&"* LIST (\\Sent) \"/\" \"My Sent\"\r\n".to_string()),
        "{r:?}"
    );
    assert!(
        r.contains(&"* LIST (\\Trash) \"/\" \"Scraps\"\r\n".to_string()),
        "{r:?}"
    );
    assert!(
        !r.iter()
            .any(|l| l.contains("Plain") || l.contains("Two") || l.contains("Odd"))
    );
}

/// RFC 3502 (MULTIAPPEND): several messages in one APPEND, each with its
/// flags, date and literal (also literal8), stored together with
/// consecutive UIDs (APPENDUID with a set, RFC 4315) and announced to a
/// session that has the mailbox selected before the OK; when one of them
/// cannot be stored (over quota) none is; a missing mailbox is TRYCREATE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiappend_all_or_nothing() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let (store, client) = setup(backend).await;
        let imap = TestImap::start(&store.uri()).await;
        let mut a = RawImap::connect(imap.imap).await;
        a.login().await;
        let caps = a.cmd("CAPABILITY").await;
        assert!(caps[0].contains(" MULTIAPPEND "), "{caps:?}");
        a.cmd("SELECT INBOX").await;
        let r = a
            .cmd(
                "APPEND INBOX (\\Seen $Work) \"01-Jan-2020 10:00:00 +0100\" {16+}\r\n\
                 Subject: one\r\n\r\n {16+}\r\nSubject: two\r\n\r\n () ~{17+}\r\nSubject: thr\r\n\r\n\0",
            )
            .await;
        let ok = tagged(&r);
        assert!(
            ok.contains("OK [APPENDUID ") && ok.contains(" 1:3]"),
            "{r:?}"
        );
        let exists = r.iter().position(|l| l == "* 3 EXISTS\r\n");
        assert!(exists.is_some(), "told before the OK: {r:?}");
        let r = a.cmd("FETCH 1:3 (FLAGS INTERNALDATE RFC822.SIZE)").await;
        assert!(r[0].contains("\\Seen") && r[0].contains("$Work"), "{r:?}");
        assert!(r[0].contains("\"01-Jan-2020 10:00:00 +0100\""), "{r:?}");
        assert!(r[2].contains("RFC822.SIZE 17"), "{r:?}");
        // All or nothing: the second message does not fit in the quota.
        client
            .admin()
            .set_quota(pb::SetQuotaRequest {
                address: "alice@example.org".into(),
                quota_bytes: 1000,
                quota_messages: None,
            })
            .await
            .unwrap();
        let big = "x".repeat(1500);
        let r = a
            .cmd(&format!(
                "APPEND INBOX {{10+}}\r\nSubject: a {{{}+}}\r\n{big}",
                big.len()
            ))
            .await;
        assert!(tagged(&r).contains("NO [OVERQUOTA]"), "{r:?}");
        let r = a.cmd("STATUS INBOX (MESSAGES UIDNEXT)").await;
        assert_eq!(
            r[0], "* STATUS \"INBOX\" (MESSAGES 3 UIDNEXT 4)\r\n",
            "nothing of it stored, no UID used: {r:?}"
        );
        // RFC 3502 6.3.11: a zero-length message cancels the APPEND.
        let r = a.cmd("APPEND INBOX {3+}\r\nabc {0+}\r\n").await;
        assert!(tagged(&r).contains(" NO "), "{r:?}");
        let r = a.cmd("STATUS INBOX (MESSAGES)").await;
        assert_eq!(r[0], "* STATUS \"INBOX\" (MESSAGES 3)\r\n", "{r:?}");
        let r = a.cmd("APPEND Nowhere {1+}\r\na {1+}\r\nb").await;
        assert!(tagged(&r).contains("NO [TRYCREATE]"), "{r:?}");
        let r = a.cmd("APPEND INBOX {1+}\r\na junk").await;
        assert!(tagged(&r).contains(" BAD "), "{r:?}");
    }
}

/// RFC 4469 (CATENATE): a message built from TEXT parts and IMAP URLs
/// (RFC 5092) of messages and sections this account has: the stored bytes
/// are exactly the parts in order; a URL with another UIDVALIDITY, a UID
/// that is not there, another user's URL or URLAUTH is NO [BADURL] and
/// nothing is stored; past APPENDLIMIT is NO [TOOBIG]; CATENATE inside a
/// MULTIAPPEND.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catenate_text_and_urls() {
    let (store, client) = setup(Backend::Postgres).await;
    let src = "From: a@remote.example\r\nSubject: source\r\nMIME-Version: 1.0\r\n\
               Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
               --b\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n\
               --b\r\nContent-Type: text/plain\r\n\r\nsecond part\r\n--b--\r\n";
    client
        .deliver("src", &["alice@example.org"], src.as_bytes())
        .await;
    let imap = TestImap::start_with(&store.uri(), |s| s.max_append = 4096).await;
    let mut a = RawImap::connect(imap.imap).await;
    a.login().await;
    let caps = a.cmd("CAPABILITY").await;
    assert!(caps[0].contains(" CATENATE "), "{caps:?}");
    let r = a.cmd("STATUS INBOX (UIDVALIDITY)").await;
    let v: u32 = r[0]
        .split("UIDVALIDITY ")
        .nth(1)
        .unwrap()
        .trim_end_matches([')', '\r', '\n'])
        .parse()
        .unwrap();
    a.cmd("CREATE Drafts2").await;
    let head = "Subject: built\r\n\r\n";
    let r = a
        .cmd(&format!(
            "APPEND Drafts2 CATENATE (TEXT {{{}+}}\r\n{head} URL \"/INBOX;UIDVALIDITY={v}/;UID=1/;SECTION=2\" \
             TEXT {{2+}}\r\n-- URL \"imap://alice%40example.org@localhost/INBOX/;UID=1/;SECTION=1/;PARTIAL=0.5\")",
            head.len()
        ))
        .await;
    assert!(tagged(&r).contains("OK [APPENDUID "), "{r:?}");
    a.cmd("SELECT Drafts2").await;
    let r = a.cmd("FETCH 1 (BODY.PEEK[])").await;
    let got: String = r[1..r.len() - 1].concat();
    assert_eq!(
        got.trim_end_matches(")\r\n"),
        "Subject: built\r\n\r\nsecond part--first",
        "{r:?}"
    );
    // Bad URLs: nothing stored.
    for url in [
        format!("/INBOX;UIDVALIDITY={}/;UID=1", v + 1),
        "/INBOX/;UID=99".to_string(),
        "imap://bob%40example.org@localhost/INBOX/;UID=1".to_string(),
        "/INBOX/;UID=1/;URLAUTH=anonymous".to_string(),
        "/Nowhere/;UID=1".to_string(),
        "/INBOX/;UID=1/;SECTION=9".to_string(),
        "imap://localhost/INBOX/;UID=1".to_string(),
    ] {
        let r = a
            .cmd(&format!(
                "APPEND Drafts2 CATENATE (TEXT {{1+}}\r\nx URL \"{url}\")"
            ))
            .await;
        assert!(tagged(&r).contains("NO [BADURL "), "{url}: {r:?}");
    }
    // At most 100 URLs in one APPEND.
    let many = vec!["URL \"/INBOX/;UID=1/;SECTION=1\""; 101].join(" ");
    let r = a.cmd(&format!("APPEND Drafts2 CATENATE ({many})")).await;
    assert!(tagged(&r).contains("NO [LIMIT]"), "{r:?}");
    // Past APPENDLIMIT (4,096 here).
    let big = "y".repeat(3000);
    let r = a
        .cmd(&format!(
            "APPEND Drafts2 CATENATE (TEXT {{{}+}}\r\n{big} TEXT {{{}+}}\r\n{big})",
            big.len(),
            big.len()
        ))
        .await;
    assert!(tagged(&r).contains("NO [TOOBIG]"), "{r:?}");
    // Inside a MULTIAPPEND, beside a plain literal.
    let r = a
        .cmd("APPEND Drafts2 {3+}\r\nabc CATENATE (URL \"/INBOX/;UID=1/;SECTION=HEADER\")")
        .await;
    assert!(tagged(&r).contains("OK [APPENDUID "), "{r:?}");
    let r = a.cmd("STATUS Drafts2 (MESSAGES)").await;
    assert_eq!(r[0], "* STATUS \"Drafts2\" (MESSAGES 3)\r\n", "{r:?}");
}

/// App passwords (issue #14) over IMAP: one the operator made logs in
/// with LOGIN and AUTHENTICATE PLAIN; once revoked, it is refused and the
/// session it opened cannot go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_passwords_over_imap() {
    let (store, client) = setup(Backend::Sqlite).await;
    let pw = client
        .admin()
        .add_app_password(pb::AddAppPasswordRequest {
            address: "alice@example.org".into(),
            name: "mutt".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .password;
    let imap = TestImap::start(&store.uri()).await;
    let mut a = RawImap::connect(imap.imap).await;
    a.login_as("alice@example.org", &pw).await;
    let r = a.cmd("SELECT INBOX").await;
    assert!(tagged(&r).contains(" OK "), "{r:?}");
    client
        .admin()
        .revoke_app_password(pb::RevokeAppPasswordRequest {
            address: "alice@example.org".into(),
            name: "mutt".into(),
        })
        .await
        .unwrap();
    // The next command that reaches the store is refused.
    let r = a.cmd("LIST \"\" \"*\"").await;
    assert!(!tagged(&r).contains(" OK "), "revoked session: {r:?}");
    let mut b = RawImap::connect(imap.imap).await;
    let r = b.cmd(&format!("LOGIN alice@example.org {pw}")).await;
    assert!(tagged(&r).contains("NO [AUTHENTICATIONFAILED]"), "{r:?}");
    b.login().await;
}

/// RFC 7888 5 (LITERAL-), configured with `literals = "minus"`: LITERAL-
/// is advertised instead of LITERAL+ (never both); a non-synchronizing
/// literal of up to 4,096 bytes is taken; a larger one gets a tagged BAD
/// with TOOBIG for APPEND and the session goes on; a synchronizing one of
/// any size is fine. The default server advertises LITERAL+ alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn literal_minus() {
    let (store, _client) = setup(Backend::Sqlite).await;
    let plus = TestImap::start(&store.uri()).await;
    let mut p = RawImap::connect(plus.imap).await;
    let caps = p.cmd("CAPABILITY").await;
    assert!(
        caps[0].contains(" LITERAL+ ") && !caps[0].contains("LITERAL-"),
        "{caps:?}"
    );
    let imap = TestImap::start_with(&store.uri(), |s| s.literal_minus = true).await;
    let mut a = RawImap::connect(imap.imap).await;
    let caps = a.cmd("CAPABILITY").await;
    assert!(
        caps[0].contains(" LITERAL- ") && !caps[0].contains("LITERAL+"),
        "{caps:?}"
    );
    a.login().await;
    let small = format!("Subject: s\r\n\r\n{}", "x".repeat(4096 - 14));
    assert_eq!(small.len(), 4096);
    let r = a
        .cmd(&format!("APPEND INBOX {{{}+}}\r\n{small}", small.len()))
        .await;
    assert!(tagged(&r).contains(" OK "), "{r:?}");
    let big = format!("Subject: b\r\n\r\n{}", "x".repeat(5000));
    let r = a
        .cmd(&format!("APPEND INBOX {{{}+}}\r\n{big}", big.len()))
        .await;
    assert!(tagged(&r).contains(" BAD [TOOBIG]"), "{r:?}");
    // Also inside a MULTIAPPEND (a path imap-codec does not parse): the
    // whole command is refused, nothing of it stored.
    let r = a
        .cmd(&format!(
            "APPEND INBOX {{{}+}}\r\n{big} {{10+}}\r\nSubject: x",
            big.len()
        ))
        .await;
    assert!(tagged(&r).contains(" BAD [TOOBIG]"), "{r:?}");
    // A synchronizing literal of the same size: continuation, then OK.
    a.send(format!("s1 APPEND INBOX {{{}}}\r\n", big.len()).as_bytes())
        .await;
    assert!(a.line().await.starts_with('+'));
    a.send(format!("{big}\r\n").as_bytes()).await;
    assert!(a.line().await.starts_with("s1 OK"));
    let r = a.cmd("STATUS INBOX (MESSAGES)").await;
    assert_eq!(r[0], "* STATUS \"INBOX\" (MESSAGES 2)\r\n", "{r:?}");
}
