//! OBJECTID (RFC 8474), SAVEDATE (RFC 8514) and PREVIEW (RFC 8970) end to
//! end over raw sessions, on both store backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::{Backend, RawImap, TestImap, store_with_alice, tagged};

/// The parenthesized id after `item (` in `text`.
fn id_after(text: &str, item: &str) -> String {
    let at = text
        .find(&format!("{item} ("))
        .unwrap_or_else(|| panic!("{item} in {text}"));
    let rest = &text[at + item.len() + 2..];
    rest[..rest.find(')').unwrap()].to_string()
}

fn now() -> chrono::DateTime<chrono::Utc> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    chrono::DateTime::from_timestamp(secs as i64, 0).unwrap()
}

async fn append(s: &mut RawImap, mailbox: &str, m: &str) {
    s.ok(&format!("APPEND {mailbox} {{{}+}}\r\n{m}", m.len()))
        .await;
}

/// RFC 8474 4 (MAILBOXID in CREATE, SELECT, STATUS, LIST-STATUS; kept by
/// RENAME), 5 (EMAILID the same for the same content and its copies,
/// THREADID NIL), 6 (SEARCH EMAILID / THREADID); RFC 8514 4-5 (FETCH
/// SAVEDATE, SAVEDBEFORE / SAVEDON / SAVEDSINCE, SAVEDATESUPPORTED); RFC
/// 8970 3-4 (PREVIEW and PREVIEW (LAZY), whitespace collapsed, HTML made
/// text, at most 256 characters).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objectid_savedate_preview() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let (store, _client) = store_with_alice(backend).await;
        let imap = TestImap::start(&store.uri()).await;
        let mut a = RawImap::connect(imap.imap).await;
        a.login().await;
        let caps = a.cmd("CAPABILITY").await;
        for c in [" OBJECTID", " SAVEDATE", " PREVIEW"] {
            assert!(caps[0].contains(c), "{c}: {caps:?}");
        }

        // MAILBOXID: made by CREATE, the same after RENAME, everywhere.
        let r = a.ok("CREATE Box").await;
        let id = id_after(tagged(&r), "MAILBOXID");
        assert!(id.starts_with('F') && id.len() > 1, "{r:?}");
        let r = a.ok("STATUS Box (MAILBOXID)").await;
        assert_eq!(r[0], format!("* STATUS \"Box\" (MAILBOXID ({id}))\r\n"));
        a.ok("RENAME Box Box2").await;
        let r = a.ok("STATUS Box2 (MESSAGES MAILBOXID)").await;
        assert_eq!(
            r[0],
            format!("* STATUS \"Box2\" (MESSAGES 0 MAILBOXID ({id}))\r\n")
        );
        let r = a.ok("LIST \"\" Box2 RETURN (STATUS (MAILBOXID))").await;
        assert!(
            r.iter().any(|l| l.contains(&format!("MAILBOXID ({id})"))),
            "{r:?}"
        );
        let r = a.ok("EXAMINE Box2").await;
        assert!(
            r.iter()
                .any(|l| l.starts_with(&format!("* OK [MAILBOXID ({id})]"))),
            "{r:?}"
        );
        let r = a.ok("STATUS INBOX (MAILBOXID)").await;
        assert_ne!(id_after(&r[0], "MAILBOXID"), id, "{r:?}");

        let plain = "Subject: p\r\n\r\nHello   there,\r\n\r\n\tsee you\r\n";
        let html = "Subject: h\r\nContent-Type: text/html\r\n\r\n<html><body><p>Big <b>news</b></p></body></html>\r\n";
        let long = format!("Subject: l\r\n\r\n{}\r\n", "word ".repeat(200));
        append(&mut a, "INBOX", plain).await;
        append(&mut a, "INBOX", plain).await;
        append(&mut a, "INBOX", html).await;
        append(&mut a, "INBOX", &long).await;
        a.ok("SELECT INBOX").await;
        let r = a
            .ok("FETCH 1:4 (UID EMAILID THREADID SAVEDATE PREVIEW)")
            .await;
        let all = r.concat();
        let e: Vec<String> = r
            .iter()
            .filter(|l| l.contains(" FETCH ("))
            .map(|l| id_after(l, "EMAILID"))
            .collect();
        assert_eq!(e.len(), 4, "{r:?}");
        assert!(e[0].starts_with('M'));
        assert_eq!(e[0], e[1], "same content, same EMAILID");
        assert_ne!(e[0], e[2]);
        assert!(all.contains("THREADID NIL"), "{r:?}");
        let today = now().format("%e-%b-%Y").to_string();
        assert!(
            all.contains(&format!("SAVEDATE \"{today} ")),
            "{today}: {r:?}"
        );
        assert!(all.contains("PREVIEW \"Hello there, see you\""), "{r:?}");
        assert!(all.contains("PREVIEW \"Big news\""), "{r:?}");
        let long_preview = r
            .iter()
            .find(|l| l.starts_with("* 4 FETCH"))
            .and_then(|l| l.split("PREVIEW \"").nth(1))
            .map(|p| p.split('"').next().unwrap().to_string())
            .unwrap();
        assert!(long_preview.chars().count() <= 256, "{long_preview}");
        assert!(long_preview.starts_with("word word"), "{long_preview}");
        let r = a.ok("FETCH 1 (PREVIEW (LAZY))").await;
        assert!(r[0].contains("PREVIEW \"Hello there, see you\""), "{r:?}");
        let r = a.cmd("FETCH 1 (PREVIEW (FUZZY))").await;
        assert!(tagged(&r).contains(" BAD "), "{r:?}");
        // A copy keeps the EMAILID (RFC 8474 5.1).
        a.ok("COPY 1 Box2").await;
        a.ok("EXAMINE Box2").await;
        let r = a.ok("FETCH 1 (EMAILID)").await;
        assert_eq!(id_after(&r[0], "EMAILID"), e[0]);
        a.ok("SELECT INBOX").await;

        // SEARCH (RFC 8474 6, RFC 8514 5).
        let r = a.ok(&format!("UID SEARCH EMAILID {}", e[0])).await;
        assert_eq!(r[0], "* SEARCH 1 2\r\n");
        let r = a.ok("SEARCH THREADID T1").await;
        assert_eq!(r[0], "* SEARCH\r\n");
        let day = now().format("%d-%b-%Y").to_string();
        let r = a.ok(&format!("SEARCH SAVEDON {day}")).await;
        assert_eq!(r[0], "* SEARCH 1 2 3 4\r\n");
        let r = a
            .ok(&format!("SEARCH SAVEDSINCE {day} NOT SUBJECT h"))
            .await;
        assert_eq!(r[0], "* SEARCH 1 2 4\r\n");
        let r = a.ok(&format!("SEARCH SAVEDBEFORE {day}")).await;
        assert_eq!(r[0], "* SEARCH\r\n");
        let r = a.ok("SEARCH SAVEDATESUPPORTED").await;
        assert_eq!(r[0], "* SEARCH 1 2 3 4\r\n");
    }
}
