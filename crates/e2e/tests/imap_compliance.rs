//! What the independent IMAP compliance suite (issue #23) found, one
//! test per failure, over raw sessions; each names the RFC section it
//! holds the server to.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::{Backend, RawImap, TestImap, store_with_alice, tagged};

/// APPENDs `m` to `mailbox` with the INTERNALDATE `date`.
async fn append(a: &mut RawImap, mailbox: &str, date: &str, m: &str) {
    let r = a
        .cmd(&format!(
            "APPEND {mailbox} \"{date}\" {{{}+}}\r\n{m}",
            m.len()
        ))
        .await;
    assert!(tagged(&r).contains(" OK "), "{r:?}");
}

/// The first line starting with `prefix`, trimmed.
fn line<'a>(r: &'a [String], prefix: &str) -> &'a str {
    r.iter()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in {r:?}"))
        .trim_end()
}

/// Seven messages whose From, To and Cc headers take the forms address
/// keys must read as ENVELOPE does: quoted local parts, groups (a leading
/// group's name is the first addr-mailbox), comments as display names,
/// RFC 2047 words, a header given twice (the first counts), none at all.
/// Arrival (INTERNALDATE) rises with the sequence number.
const ADDRESSED: [&str; 7] = [
    "From: zed@a.org\r\nTo: \"Zed\" <a@x.org>\r\nCc: bob@a.org\r\nSubject: 1\r\n\r\nx\r\n",
    "From: \"amy b\"@a.org\r\nTo: undisclosed-recipients:;\r\nCc: bob@b.org\r\n\
     Cc: amy@c.org\r\nSubject: 2\r\n\r\nx\r\n",
    "From: Carl <carl@a.org>\r\nTo: =?utf-8?q?=C3=89mile?= <e@x.org>\r\nSubject: 3\r\n\r\nx\r\n",
    "From: bob@a.org (Bobby)\r\nTo: bob@x.org (Bobby)\r\nCc: abe: zed@a.org;\r\n\
     Subject: 4\r\n\r\nx\r\n",
    "Cc: \"carl q\"@d.org\r\nSubject: 5\r\n\r\nx\r\n",
    "From: dan@a.org\r\nFrom: abe@a.org\r\nTo: group: amy@x.org;\r\nSubject: 6\r\n\r\nx\r\n",
    "From: =?utf-8?q?Eve?= <x@a.org>\r\nTo: <carl@x.org>\r\nCc: BOB@e.org\r\nSubject: 7\r\n\r\nx\r\n",
];

/// RFC 5256 3: FROM, TO and CC sort by the addr-mailbox of the first
/// address of the (first) header, as ENVELOPE gives it (a group's name
/// for a leading group, RFC 9051 7.5.2; the unquoted local part); no
/// header sorts as the empty string; ties in sequence order; REVERSE per
/// key. RFC 5957 3-4: DISPLAYFROM and DISPLAYTO sort by the first
/// address's display name (RFC 2047 decoded; a comment stands in for a
/// missing name, as in ENVELOPE), else mailbox@host, else the mailbox (a
/// group's name). Keys compare as i;unicode-casemap (RFC 5051), as
/// Dovecot compares them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sort_address_keys_read_as_the_envelope() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let (store, _client) = store_with_alice(backend).await;
        let imap = TestImap::start(&store.uri()).await;
        let mut a = RawImap::connect(imap.imap).await;
        a.login().await;
        for (i, m) in ADDRESSED.iter().enumerate() {
            append(
                &mut a,
                "INBOX",
                &format!("0{}-Dec-2026 10:00:00 +0000", i + 1),
                m,
            )
            .await;
        }
        a.ok("SELECT INBOX").await;
        for (cmd, want) in [
            // Keys: "", "", ABE, BOB, BOB (first Cc), BOB, CARL Q.
            ("SORT (CC) US-ASCII ALL", "* SORT 3 6 4 1 2 7 5"),
            ("SORT (REVERSE CC) US-ASCII ALL", "* SORT 5 1 2 7 4 3 6"),
            (
                "SORT (CC REVERSE ARRIVAL) US-ASCII ALL",
                "* SORT 6 3 4 7 2 1 5",
            ),
            // Keys: ZED, AMY B, CARL, BOB, "", DAN (first From), X.
            ("SORT (FROM) US-ASCII ALL", "* SORT 5 2 4 3 6 7 1"),
            ("SORT (REVERSE FROM) US-ASCII ALL", "* SORT 1 7 6 3 4 2 5"),
            // Keys: A, UNDISCLOSED-RECIPIENTS, E, BOB, "", GROUP, CARL.
            ("SORT (TO) US-ASCII ALL", "* SORT 5 1 4 7 3 6 2"),
            ("UID SORT (TO) US-ASCII ALL", "* SORT 5 1 4 7 3 6 2"),
            // Keys: ZED, UNDISCLOSED-RECIPIENTS, Émile (decoded; compared
            // as i;unicode-casemap, RFC 5051: E and an accent, after
            // CARL@X.ORG and before GROUP, as Dovecot orders it), BOBBY,
            // "", GROUP, CARL@X.ORG.
            ("SORT (DISPLAYTO) UTF-8 ALL", "* SORT 5 4 7 3 6 2 1"),
            ("SORT (REVERSE DISPLAYTO) UTF-8 ALL", "* SORT 1 2 6 3 7 4 5"),
            // Keys: ZED@A.ORG, AMY B@A.ORG, CARL, BOBBY, "", DAN@A.ORG, EVE.
            ("SORT (DISPLAYFROM) UTF-8 ALL", "* SORT 5 2 4 3 6 7 1"),
            (
                "SORT (REVERSE DISPLAYFROM) UTF-8 ALL",
                "* SORT 1 7 6 3 4 2 5",
            ),
        ] {
            let r = a.cmd(cmd).await;
            assert!(tagged(&r).contains(" OK "), "{cmd}: {r:?}");
            assert_eq!(line(&r, "* SORT"), want, "{backend:?} {cmd}");
        }
    }
}

/// RFC 9394 3.1 (and RFC 5267 4.4): `n:m` and `m:n` name one range, and
/// the ESEARCH response names it in one form, the end nearer its origin
/// first (`2:4`, `-1:-5`, as RFC 9394's examples write ranges), for
/// SEARCH, UID SEARCH, SORT and UID SORT alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_ranges_are_echoed_normalised() {
    let (store, _client) = store_with_alice(Backend::Sqlite).await;
    let imap = TestImap::start(&store.uri()).await;
    let mut a = RawImap::connect(imap.imap).await;
    a.login().await;
    for i in 1..=5 {
        let m = format!("Subject: {i}\r\n\r\nx\r\n");
        append(
            &mut a,
            "INBOX",
            &format!("0{i}-Dec-2026 10:00:00 +0000"),
            &m,
        )
        .await;
    }
    a.ok("SELECT INBOX").await;
    for (cmd, want) in [
        ("SEARCH RETURN (PARTIAL 4:2) ALL", "PARTIAL (2:4 2:4)"),
        ("SEARCH RETURN (PARTIAL 2:4) ALL", "PARTIAL (2:4 2:4)"),
        ("SEARCH RETURN (PARTIAL 6:1) ALL", "PARTIAL (1:6 1:5)"),
        (
            "UID SEARCH RETURN (PARTIAL 3:1) ALL",
            "UID PARTIAL (1:3 1:3)",
        ),
        ("SEARCH RETURN (PARTIAL -5:-4) ALL", "PARTIAL (-4:-5 1:2)"),
        (
            "UID SEARCH RETURN (PARTIAL -1:-2) ALL",
            "UID PARTIAL (-1:-2 4:5)",
        ),
        (
            "SORT RETURN (PARTIAL 4:2) (ARRIVAL) US-ASCII ALL",
            "PARTIAL (2:4 2:4)",
        ),
        (
            "SORT RETURN (PARTIAL 4:2) (REVERSE ARRIVAL) US-ASCII ALL",
            "PARTIAL (2:4 4,3,2)",
        ),
        (
            "UID SORT RETURN (PARTIAL -3:-1) (REVERSE ARRIVAL) US-ASCII ALL",
            "UID PARTIAL (-1:-3 3,2,1)",
        ),
    ] {
        let r = a.cmd(cmd).await;
        assert!(tagged(&r).contains(" OK "), "{cmd}: {r:?}");
        let got = line(&r, "* ESEARCH");
        let tag = format!("(TAG \"t{}\") ", a.n);
        assert_eq!(
            got.strip_prefix("* ESEARCH ")
                .and_then(|s| s.strip_prefix(&tag)),
            Some(want),
            "{cmd}: {got}"
        );
    }
}

/// RFC 7162 3.1: when a CONDSTORE-enabling command other than
/// SELECT/EXAMINE (FETCH MODSEQ, SEARCH MODSEQ, STORE UNCHANGEDSINCE,
/// STATUS HIGHESTMODSEQ) enables CONDSTORE while a mailbox is selected,
/// the server sends the HIGHESTMODSEQ response code, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn condstore_enabled_while_selected_tells_highestmodseq() {
    let (store, _client) = store_with_alice(Backend::Postgres).await;
    let imap = TestImap::start(&store.uri()).await;
    let mut setup = RawImap::connect(imap.imap).await;
    setup.login().await;
    for i in 1..=2 {
        let m = format!("Subject: {i}\r\n\r\nx\r\n");
        append(&mut setup, "INBOX", "01-Dec-2026 10:00:00 +0000", &m).await;
    }
    let highest = |r: &[String]| -> String {
        line(r, "* OK [HIGHESTMODSEQ ")["* OK [HIGHESTMODSEQ ".len()..]
            .split(']')
            .next()
            .unwrap()
            .to_string()
    };
    for first in [
        "FETCH 1 (MODSEQ)",
        "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1)",
        "SEARCH MODSEQ 1",
        "STORE 1 (UNCHANGEDSINCE 1000000) +FLAGS (\\Seen)",
        "STATUS INBOX (HIGHESTMODSEQ)",
    ] {
        let mut a = RawImap::connect(imap.imap).await;
        a.login().await;
        let sel = a.ok("SELECT INBOX").await;
        let r = a.ok(first).await;
        // The STORE changed the mailbox: the value told may be past
        // SELECT's (never behind it); the others leave it as it was.
        let (told, selected) = (highest(&r), highest(&sel));
        if first.starts_with("STORE") {
            let n = |s: &str| s.parse::<u64>().unwrap();
            assert!(n(&told) >= n(&selected), "{first}: {r:?}");
        } else {
            assert_eq!(told, selected, "{first}: {r:?}");
        }
        // Once: CONDSTORE is on now.
        let r = a.ok("FETCH 2 (MODSEQ)").await;
        assert!(
            !r.iter().any(|l| l.contains("HIGHESTMODSEQ")),
            "{first}: {r:?}"
        );
        a.cmd("LOGOUT").await;
    }
    // Not selected: nothing to tell (SELECT will tell it).
    let mut a = RawImap::connect(imap.imap).await;
    a.login().await;
    let r = a.ok("STATUS INBOX (HIGHESTMODSEQ)").await;
    assert!(
        !r.iter().any(|l| l.starts_with("* OK [HIGHESTMODSEQ")),
        "{r:?}"
    );
    // SELECT (CONDSTORE) tells it once, among SELECT's responses.
    let r = a.ok("SELECT INBOX (CONDSTORE)").await;
    let n = r.iter().filter(|l| l.contains("HIGHESTMODSEQ")).count();
    assert_eq!(n, 1, "{r:?}");
}

/// RFC 4469 5 with RFC 9051 6.3.12: CATENATE into a mailbox that does not
/// exist is NO [TRYCREATE], whatever its URLs name (checked before any URL
/// is read), and stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catenate_to_a_missing_mailbox_is_trycreate() {
    let (store, _client) = store_with_alice(Backend::Sqlite).await;
    let imap = TestImap::start(&store.uri()).await;
    let mut a = RawImap::connect(imap.imap).await;
    a.login().await;
    append(
        &mut a,
        "INBOX",
        "01-Dec-2026 10:00:00 +0000",
        "Subject: s\r\n\r\nbody\r\n",
    )
    .await;
    for parts in [
        "URL \"/INBOX;UIDVALIDITY=12345/;UID=1/;SECTION=HEADER\"".to_string(),
        "TEXT {8+}\r\nhdr: 1\r\n URL \"/INBOX;UIDVALIDITY=12345/;UID=1/;SECTION=HEADER\" \
         TEXT {8+}\r\nhdr: 2\r\n"
            .to_string(),
        "URL \"/INBOX/;UID=1/;SECTION=1\"".to_string(),
        "TEXT {7+}\r\nhello\r\n URL \"/INBOX/;UID=1/;SECTION=1\"".to_string(),
    ] {
        let r = a.cmd(&format!("APPEND Nowhere CATENATE ({parts})")).await;
        assert!(tagged(&r).contains("NO [TRYCREATE]"), "{parts}: {r:?}");
    }
    // MULTIAPPEND with one CATENATE message: the same.
    let r = a
        .cmd("APPEND Nowhere {3+}\r\nabc CATENATE (URL \"/INBOX;UIDVALIDITY=12345/;UID=1\")")
        .await;
    assert!(tagged(&r).contains("NO [TRYCREATE]"), "{r:?}");
    let r = a.cmd("STATUS Nowhere (MESSAGES)").await;
    assert!(tagged(&r).contains(" NO "), "{r:?}");
    // An existing mailbox still reports the bad URL.
    a.ok("CREATE Somewhere").await;
    let r = a
        .cmd("APPEND Somewhere CATENATE (URL \"/INBOX;UIDVALIDITY=12345/;UID=1\")")
        .await;
    assert!(tagged(&r).contains("NO [BADURL "), "{r:?}");
}

/// RFC 9051 7.5.2 (BODY[section]<origin>) and RFC 3516 4.2 (BINARY, whose
/// data is `nstring / literal8`): a section with no bytes is the literal
/// `{0}`, as Dovecot sends it, for BODY, BINARY and their partial forms;
/// BINARY data is a `literal8` only when it holds a NUL (which a
/// `literal` cannot carry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_section_is_a_zero_length_literal() {
    let (store, _client) = store_with_alice(Backend::Sqlite).await;
    let imap = TestImap::start(&store.uri()).await;
    let mut a = RawImap::connect(imap.imap).await;
    a.login().await;
    let m = "From: a@example.org\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\n\r\n\
             --b\r\nContent-Type: application/octet-stream\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n\r\n\
             --b\r\nContent-Type: application/octet-stream\r\n\
             Content-Transfer-Encoding: base64\r\n\r\nAAEA\r\n--b--\r\n";
    append(&mut a, "INBOX", "01-Dec-2026 10:00:00 +0000", m).await;
    a.ok("SELECT INBOX").await;
    for (items, want) in [
        ("BODY.PEEK[1]", "* 1 FETCH (BODY[1] {0}\r\n"),
        ("BODY.PEEK[2]", "* 1 FETCH (BODY[2] {0}\r\n"),
        ("BODY.PEEK[1]<0.10>", "* 1 FETCH (BODY[1]<0> {0}\r\n"),
        ("BODY.PEEK[]<5000.10>", "* 1 FETCH (BODY[]<5000> {0}\r\n"),
        ("BINARY.PEEK[1]", "* 1 FETCH (BINARY[1] {0}\r\n"),
        ("BINARY.PEEK[2]", "* 1 FETCH (BINARY[2] {0}\r\n"),
        ("BINARY.PEEK[2]<0.10>", "* 1 FETCH (BINARY[2]<0> {0}\r\n"),
    ] {
        let r = a.ok(&format!("FETCH 1 ({items})")).await;
        assert_eq!(r[0], want, "{items}: {r:?}");
        assert_eq!(r[1], ")\r\n", "{items}: {r:?}");
    }
    // Part 3 decodes to NUL, 1, NUL: only a literal8 can carry it.
    let r = a.ok("FETCH 1 (BINARY.PEEK[3])").await;
    assert_eq!(r[0], "* 1 FETCH (BINARY[3] ~{3}\r\n", "{r:?}");
    assert_eq!(r[1], "\0\u{1}\0)\r\n", "{r:?}");
}

/// RFC 5092 3.2 (iuserinfo and host) and RFC 4467 3 (access identifiers)
/// for an account named `local@domain`: a URL names it by the local part
/// with the account's domain as host (`imap://testuser1@example.test/`, as
/// the compliance suite writes it) or by the whole address
/// percent-encoded on any host; `user+` takes the full address or the
/// local part. The local part on another host names nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_name_a_virtual_domain_account_as_users_write_them() {
    let (store, client) = store_with_alice(Backend::Sqlite).await;
    client.add_domain("example.test").await;
    client.add_account("testuser1@example.test", "pw-t1").await;
    let imap = TestImap::start(&store.uri()).await;
    let mut a = RawImap::connect(imap.imap).await;
    a.login_as("testuser1@example.test", "pw-t1").await;
    a.ok("CREATE imaptest").await;
    let body = "Subject: url\r\n\r\nthe body\r\n";
    append(&mut a, "imaptest", "01-Dec-2026 10:00:00 +0000", body).await;
    a.ok("SELECT imaptest").await;
    for rump in [
        "imap://testuser1@example.test/imaptest/;uid=1;urlauth=user+testuser1@example.test",
        "imap://testuser1@example.test:143/imaptest/;uid=1;urlauth=user+testuser1",
        "imap://testuser1%40example.test@imap.example.net/imaptest/;uid=1;urlauth=user+testuser1%40example.test",
    ] {
        let r = a.cmd(&format!("GENURLAUTH \"{rump}\" INTERNAL")).await;
        assert!(tagged(&r).contains(" OK "), "{rump}: {r:?}");
        let url = line(&r, "* GENURLAUTH ")["* GENURLAUTH ".len()..]
            .trim_matches('"')
            .to_string();
        let r = a.ok(&format!("URLFETCH \"{url}\"")).await;
        assert_eq!(
            r[0],
            format!("* URLFETCH \"{url}\" {{{}}}\r\n", body.len()),
            "{r:?}"
        );
    }
    // The local part on a host that is not the account's domain, or
    // another account's address: not this user's.
    for rump in [
        "imap://testuser1@imap.example.net/imaptest/;uid=1;urlauth=anonymous",
        "imap://alice%40example.org@example.test/imaptest/;uid=1;urlauth=anonymous",
        "imap://alice@example.test/imaptest/;uid=1;urlauth=anonymous",
    ] {
        let r = a.cmd(&format!("GENURLAUTH \"{rump}\" INTERNAL")).await;
        assert!(tagged(&r).contains("NO [CANNOT]"), "{rump}: {r:?}");
    }
    // CATENATE and URLFETCH read this account's own plain URLs written
    // either way.
    for url in [
        "imap://testuser1@example.test/imaptest/;UID=1",
        "imap://testuser1%40example.test@localhost/imaptest/;UID=1",
    ] {
        let r = a.ok(&format!("URLFETCH \"{url}\"")).await;
        assert!(
            r[0].ends_with(&format!("{{{}}}\r\n", body.len())),
            "{url}: {r:?}"
        );
        let r = a
            .cmd(&format!("APPEND imaptest CATENATE (URL \"{url}\")"))
            .await;
        assert!(tagged(&r).contains("OK [APPENDUID "), "{url}: {r:?}");
    }
    let r = a
        .ok("URLFETCH \"imap://testuser1@elsewhere.test/imaptest/;UID=1\"")
        .await;
    assert!(r[0].ends_with(" NIL\r\n"), "{r:?}");
}

/// RFC 5524 3.2: URLFETCH's BODYPARTSTRUCTURE asked for with BINARY
/// describes the part as BINARY returns it (as Dovecot answers the
/// compliance suite's urlauth-binary group): no transfer encoding left,
/// the decoded size, no lines; alone, or for a part BINARY cannot decode
/// (NIL), the part as stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urlfetch_structure_with_binary_describes_the_decoded_part() {
    let (store, client) = store_with_alice(Backend::Sqlite).await;
    client.add_domain("example.test").await;
    client.add_account("testuser1@example.test", "pw-t1").await;
    let imap = TestImap::start(&store.uri()).await;
    let mut a = RawImap::connect(imap.imap).await;
    a.login_as("testuser1@example.test", "pw-t1").await;
    let m = "From: a@example.org\r\nSubject: parts\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/alternative; boundary=\"sub1\"\r\n\r\n\
             --sub1\r\nContent-Type: text/x-myown; charset=us-ascii\r\n\
             Content-Transfer-Encoding: base64\r\n\r\naGVs\r\nbG8gd29y\r\nbGQ=\r\n\r\n\
             --sub1\r\nContent-Type: text/plain; charset=us-ascii\r\n\
             Content-Transfer-Encoding: x-unprintable\r\n\r\nnothing to see here\r\n\r\n\
             --sub1\r\nContent-Type: text/plain; charset=us-ascii\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\n\
             definitely nothing to see here\r\n\r\n--=\r\nsub=\r\n=31--\r\n\r\n--sub1--\r\n";
    append(&mut a, "INBOX", "01-Dec-2026 10:00:00 +0000", m).await;
    a.ok("SELECT INBOX").await;
    let mut urls = Vec::new();
    for section in 1..=3 {
        let rump = format!(
            "imap://testuser1@example.test/INBOX/;uid=1/;section={section};urlauth=user+testuser1@example.test"
        );
        let r = a.ok(&format!("GENURLAUTH \"{rump}\" INTERNAL")).await;
        urls.push(
            line(&r, "* GENURLAUTH ")["* GENURLAUTH ".len()..]
                .trim_matches('"')
                .to_string(),
        );
    }
    let text = "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL";
    let myown = "(\"text\" \"x-myown\" (\"charset\" \"us-ascii\") NIL NIL";
    for (url, items, want) in [
        (
            &urls[0],
            "BINARY BODYPARTSTRUCTURE",
            format!(
                "(BODYPARTSTRUCTURE {myown} \"7bit\" 11 0 NIL NIL NIL NIL)) (BINARY {{11}}\r\nhello world)\r\n"
            ),
        ),
        (
            &urls[0],
            "BODYPARTSTRUCTURE",
            format!("(BODYPARTSTRUCTURE {myown} \"base64\" 22 3 NIL NIL NIL NIL))\r\n"),
        ),
        (
            &urls[1],
            "BINARY BODYPARTSTRUCTURE",
            format!(
                "(BODYPARTSTRUCTURE {text} \"x-unprintable\" 21 1 NIL NIL NIL NIL)) (BINARY NIL)\r\n"
            ),
        ),
        (
            &urls[2],
            "BODYPARTSTRUCTURE BINARY",
            format!(
                "(BODYPARTSTRUCTURE {text} \"7bit\" 44 0 NIL NIL NIL NIL)) (BINARY {{44}}\r\n\
                 definitely nothing to see here\r\n\r\n--sub1--\r\n)\r\n"
            ),
        ),
    ] {
        let r = a.ok(&format!("URLFETCH (\"{url}\" {items})")).await;
        // The media type is case-insensitive (imap-codec writes "TEXT").
        let got = r[..r.len() - 1]
            .concat()
            .replacen("(\"TEXT\"", "(\"text\"", 1);
        assert_eq!(got, format!("* URLFETCH \"{url}\" {want}"), "{items}");
    }
}

/// A message larger than the inline limit downloaded in 64 KiB chunks as
/// Thunderbird does, with partials of the whole message beside other
/// items, through Python's imaplib, on both backends: each chunk is the
/// bytes it names (the gateway reads only the chunk's span, and the store
/// decompresses only the pieces it covers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_message_downloads_in_chunks() {
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let (store, _client) = store_with_alice(backend).await;
        let imap = TestImap::start(&store.uri()).await;
        let port = imap.imap.port().to_string();
        let (ok, out) = tokio::task::spawn_blocking(move || {
            e2e::python(
                "imap_chunked_fetch.py",
                &["127.0.0.1", &port, "alice@example.org", "pw-alice"],
            )
        })
        .await
        .unwrap();
        assert!(ok && out.contains("ALL OK"), "{backend:?}: {out}");
    }
}
