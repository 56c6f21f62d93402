//! CONDSTORE and QRESYNC (RFC 7162) end to end: the real store (both
//! backends; PostgreSQL with two store replicas behind two gateways) and
//! raw IMAP sessions, each check naming the RFC section it holds to.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use e2e::{Backend, RawImap, StoreClient, TestImap, TestStore, message};

async fn setup(backend: Backend) -> (TestStore, StoreClient) {
    let store = TestStore::start(backend).await;
    let client = store.client();
    client.add_domain("example.org").await;
    client.add_account("alice@example.org", "pw-alice").await;
    (store, client)
}

/// Delivers `n` messages to alice's INBOX, many at a time (they share
/// group commits, as under real load).
async fn deliver_many(client: &StoreClient, tag: &str, n: usize) {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let c = client.clone();
        let id = format!("{tag}-{i}");
        set.spawn(async move {
            c.deliver(&id, &["alice@example.org"], &message(&id, "x"))
                .await;
        });
        if set.len() >= 32 {
            set.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
}

/// The number after `key` in a response line (`UID 5`, `MODSEQ (7)`,
/// `[HIGHESTMODSEQ 9]`).
fn num_after(line: &str, key: &str) -> Option<u64> {
    let at = line.find(key)? + key.len();
    let digits: String = line[at..]
        .trim_start_matches([' ', '('])
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

fn flags_of(line: &str) -> Option<String> {
    let at = line.find("FLAGS (")? + 7;
    let end = line[at..].find(')')?;
    Some(line[at..at + end].to_string())
}

fn find<'a>(r: &'a [String], prefix: &str) -> Option<&'a String> {
    r.iter().find(|l| l.starts_with(prefix))
}

fn tagged(r: &[String]) -> &str {
    r.last().unwrap()
}

/// Parses the UID set of a VANISHED response into UIDs.
fn uid_set(s: &str) -> BTreeSet<u32> {
    let mut out = BTreeSet::new();
    for part in s.trim().split(',') {
        match part.split_once(':') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().unwrap(), b.parse().unwrap());
                out.extend(a.min(b)..=a.max(b));
            }
            None => {
                out.insert(part.parse().unwrap());
            }
        }
    }
    out
}

/// (UID -> (flags, MODSEQ)) of every FETCH line, and the UIDs of every
/// VANISHED (EARLIER) line, of a response.
fn resync(r: &[String]) -> (BTreeMap<u32, (String, u64)>, BTreeSet<u32>) {
    let mut fetched = BTreeMap::new();
    let mut vanished = BTreeSet::new();
    for l in r {
        if l.contains(" FETCH (") {
            let uid = num_after(l, "UID ").expect("UID in FETCH") as u32;
            let modseq = num_after(l, "MODSEQ ").expect("MODSEQ in FETCH");
            let flags = flags_of(l).expect("FLAGS in FETCH");
            assert!(
                fetched.insert(uid, (flags, modseq)).is_none(),
                "UID {uid} fetched twice"
            );
        } else if let Some(rest) = l.strip_prefix("* VANISHED (EARLIER) ") {
            vanished.extend(uid_set(rest));
        }
    }
    (fetched, vanished)
}

/// RFC 7162 3.1: CONDSTORE. MODSEQ per message (3.1.4: FETCH MODSEQ and
/// CHANGEDSINCE), STORE UNCHANGEDSINCE with [MODIFIED] in message numbers
/// or UIDs (3.1.3, including UNCHANGEDSINCE 0 and .SILENT, which still
/// reports the new MODSEQ), SEARCH MODSEQ with the highest MODSEQ of the
/// result (3.1.5, and with ESEARCH), STATUS HIGHESTMODSEQ (3.1.6), and
/// MODSEQ in every untagged FETCH once enabled (3.2, another session's
/// change included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn condstore_modseq_conditional_store_and_search() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let (store, client) = setup(backend).await;
        deliver_many(&client, "cs", 5).await;
        let imap = TestImap::start(&store.uri()).await;
        let mut a = RawImap::connect(imap.imap).await;
        let mut b = RawImap::connect(imap.imap).await;
        a.login().await;
        b.login().await;
        let caps = a.cmd("CAPABILITY").await;
        assert!(
            caps[0].contains(" CONDSTORE") && caps[0].contains(" QRESYNC"),
            "{caps:?}"
        );
        let r = a.cmd("SELECT INBOX (CONDSTORE)").await;
        let h0 = r
            .iter()
            .find_map(|l| num_after(l, "[HIGHESTMODSEQ"))
            .expect("HIGHESTMODSEQ on SELECT (3.1.2.1)");
        b.cmd("SELECT INBOX").await;
        let r = a.cmd("FETCH 1:* (MODSEQ)").await;
        let modseqs: Vec<u64> = r[..5]
            .iter()
            .map(|l| num_after(l, "MODSEQ").unwrap())
            .collect();
        assert!(modseqs.iter().all(|&m| m > 0 && m <= h0), "{r:?}");

        // A STORE's FETCH carries UID and the new MODSEQ (3.2).
        let r = a.cmd("STORE 1 +FLAGS (\\Flagged)").await;
        let l = find(&r, "* 1 FETCH").expect("FETCH of message 1");
        let m1 = num_after(l, "MODSEQ").expect("MODSEQ");
        assert!(m1 > h0 && l.contains("UID 1 "), "{l}");
        // CHANGEDSINCE: only what changed since, with MODSEQ (3.1.4.1).
        let r = a
            .cmd(&format!("FETCH 1:* (FLAGS) (CHANGEDSINCE {h0})"))
            .await;
        assert_eq!(r.len(), 2, "{r:?}");
        assert!(r[0].starts_with("* 1 FETCH") && r[0].contains(&format!("MODSEQ ({m1})")));

        // UNCHANGEDSINCE: passes when nothing changed since...
        let r = a
            .cmd(&format!(
                "STORE 2 (UNCHANGEDSINCE {}) +FLAGS (\\Seen)",
                modseqs[1]
            ))
            .await;
        assert!(
            tagged(&r).contains("OK") && !tagged(&r).contains("MODIFIED"),
            "{r:?}"
        );
        // ...fails for a message another session changed, named by its
        // message number in STORE (3.1.3), which then keeps its flags.
        b.cmd("STORE 3 +FLAGS ($Work)").await;
        let r = a
            .cmd(&format!(
                "STORE 3,4 (UNCHANGEDSINCE {}) +FLAGS (\\Answered)",
                modseqs[3]
            ))
            .await;
        assert!(tagged(&r).contains("OK [MODIFIED 3]"), "{r:?}");
        let r = a.cmd("FETCH 3 (FLAGS)").await;
        assert!(
            !r[0].contains("\\Answered") && r[0].contains("$Work"),
            "{r:?}"
        );
        // UID STORE names UIDs; UNCHANGEDSINCE 0 always fails.
        let r = a
            .cmd("UID STORE 4,5 (UNCHANGEDSINCE 0) +FLAGS (\\Draft)")
            .await;
        assert!(tagged(&r).contains("OK [MODIFIED 4:5]"), "{r:?}");
        // .SILENT still reports the MODSEQ of what changed (3.1.3).
        let r = a
            .cmd("STORE 5 (UNCHANGEDSINCE 999999999) +FLAGS.SILENT (\\Draft)")
            .await;
        let l = find(&r, "* 5 FETCH").expect("FETCH after .SILENT");
        assert!(!l.contains("FLAGS") && l.contains("MODSEQ ("), "{l}");
        let m5 = num_after(l, "MODSEQ").unwrap();

        // SEARCH MODSEQ: the highest MODSEQ of what matched (3.1.5).
        let r = a.cmd(&format!("SEARCH MODSEQ {m1}")).await;
        let l = find(&r, "* SEARCH").unwrap();
        assert!(l.starts_with("* SEARCH 1 "), "{l}");
        assert_eq!(num_after(l, "(MODSEQ"), Some(m5), "{l}");
        let r = a.cmd("UID SEARCH RETURN (COUNT) MODSEQ 1").await;
        let l = find(&r, "* ESEARCH").unwrap();
        assert!(
            l.contains("COUNT 5") && num_after(l, " MODSEQ") == Some(m5),
            "{l}"
        );
        let r = a.cmd("SEARCH MODSEQ 999999999").await;
        assert_eq!(r[0], "* SEARCH\r\n");

        // A FETCH that sets \Seen tells UID and the new MODSEQ (3.2).
        let r = a.cmd("FETCH 4 (BODY[])").await;
        let l = r.iter().find(|l| l.contains("FLAGS (")).expect("flags");
        assert!(
            r.concat().contains("UID 4") && r.concat().contains("MODSEQ ("),
            "{l}: {r:?}"
        );
        // Another session's change reaches this one with UID and MODSEQ.
        b.cmd("STORE 2 +FLAGS (\\Deleted)").await;
        let mut seen = None;
        let since = std::time::Instant::now();
        // A guard against hanging, not a bound on how soon.
        while since.elapsed() < std::time::Duration::from_secs(60) {
            let r = a.cmd("NOOP").await;
            if let Some(l) = find(&r, "* 2 FETCH") {
                seen = Some(l.clone());
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let l = seen.expect("unsolicited FETCH of message 2");
        assert!(l.contains("UID 2 ") && l.contains("MODSEQ ("), "{l}");
        let m2 = num_after(&l, "MODSEQ").unwrap();

        // STATUS HIGHESTMODSEQ from another session (3.1.6).
        let r = b.cmd("STATUS INBOX (HIGHESTMODSEQ)").await;
        assert_eq!(num_after(&r[0], "HIGHESTMODSEQ"), Some(m2), "{r:?}");
    }
}

/// RFC 7162 3.2.3-3.2.10: QRESYNC. SELECT (QRESYNC ...) needs ENABLE
/// QRESYNC (BAD before); UID FETCH (CHANGEDSINCE n VANISHED) reports
/// VANISHED (EARLIER); VANISHED needs UID FETCH and CHANGEDSINCE; once
/// enabled, expunges are told by VANISHED (own EXPUNGE, MOVE, another
/// session's), and EXPUNGE's OK names the HIGHESTMODSEQ; a SELECT with a
/// UIDVALIDITY that is not the mailbox's is a plain SELECT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qresync_vanished_rules() {
    let (store, client) = setup(Backend::Sqlite).await;
    deliver_many(&client, "qr", 8).await;
    let imap = TestImap::start(&store.uri()).await;
    let mut a = RawImap::connect(imap.imap).await;
    let mut b = RawImap::connect(imap.imap).await;
    a.login().await;
    b.login().await;
    let r = a.cmd("SELECT INBOX (QRESYNC (1 1))").await;
    assert!(tagged(&r).contains(" BAD "), "QRESYNC before ENABLE: {r:?}");
    let r = a.cmd("ENABLE QRESYNC").await;
    assert_eq!(r[0], "* ENABLED QRESYNC\r\n");
    let r = a.cmd("SELECT INBOX").await;
    let validity = r.iter().find_map(|l| num_after(l, "[UIDVALIDITY")).unwrap();
    let h0 = r
        .iter()
        .find_map(|l| num_after(l, "[HIGHESTMODSEQ"))
        .unwrap();
    let r = a.cmd("FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)").await;
    assert!(tagged(&r).contains(" BAD "), "VANISHED in FETCH: {r:?}");
    let r = a.cmd("UID FETCH 1:* (FLAGS) (VANISHED)").await;
    assert!(
        tagged(&r).contains(" BAD "),
        "VANISHED without CHANGEDSINCE: {r:?}"
    );

    // Another session expunges 2 and 3: told by VANISHED, not EXPUNGE.
    b.cmd("SELECT INBOX").await;
    b.cmd("STORE 2:3 +FLAGS.SILENT (\\Deleted)").await;
    b.cmd("EXPUNGE").await;
    let mut got = None;
    let since = std::time::Instant::now();
    // A guard against hanging, not a bound on how soon.
    while since.elapsed() < std::time::Duration::from_secs(60) {
        let r = a.cmd("NOOP").await;
        if let Some(l) = find(&r, "* VANISHED") {
            assert!(!r.iter().any(|l| l.contains("EXPUNGE")), "{r:?}");
            got = Some(l.clone());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(got.as_deref(), Some("* VANISHED 2:3\r\n"));
    // UID FETCH CHANGEDSINCE VANISHED: the expunged UIDs in the set, then
    // the changed messages.
    let r = a
        .cmd(&format!(
            "UID FETCH 1:* (FLAGS) (CHANGEDSINCE {h0} VANISHED)"
        ))
        .await;
    assert_eq!(r[0], "* VANISHED (EARLIER) 2:3\r\n", "{r:?}");
    assert_eq!(r.len(), 2, "nothing else changed: {r:?}");
    let r = a
        .cmd(&format!(
            "UID FETCH 3:6 (FLAGS) (CHANGEDSINCE {h0} VANISHED)"
        ))
        .await;
    assert_eq!(r[0], "* VANISHED (EARLIER) 3\r\n", "{r:?}");
    // Own EXPUNGE: VANISHED, and the OK names HIGHESTMODSEQ.
    a.cmd("UID STORE 4 +FLAGS.SILENT (\\Deleted)").await;
    let r = a.cmd("EXPUNGE").await;
    assert_eq!(r[0], "* VANISHED 4\r\n", "{r:?}");
    assert!(tagged(&r).contains("OK [HIGHESTMODSEQ "), "{r:?}");
    // MOVE: VANISHED too.
    a.cmd("CREATE Archive").await;
    let r = a.cmd("UID MOVE 5 Archive").await;
    assert!(r.contains(&"* VANISHED 5\r\n".to_string()), "{r:?}");
    // A UIDVALIDITY that is not the mailbox's: a plain SELECT.
    let r = a
        .cmd(&format!("SELECT INBOX (QRESYNC ({} 1))", validity + 1))
        .await;
    assert!(
        !r.iter()
            .any(|l| l.contains("VANISHED") || l.contains("FETCH")),
        "{r:?}"
    );
    assert!(tagged(&r).contains("OK"), "{r:?}");
}

/// The resync the issue asks for (RFC 7162 3.2.5.1): a client offline
/// while another session, on another gateway and another store replica,
/// changes flags on 1,000 messages and expunges 100, reconnects with
/// SELECT (QRESYNC (uidvalidity modseq)) and receives exactly those
/// changes: a FETCH (UID FLAGS MODSEQ) for each changed message with its
/// flags as they are now, and the expunged UIDs in VANISHED (EARLIER),
/// nothing else. With known UIDs, only those are reported; UID FETCH
/// (CHANGEDSINCE VANISHED) agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qresync_resync_after_offline_changes() {
    let (store, client) = setup(Backend::Postgres).await;
    let replica = store.replica().await;
    deliver_many(&client, "off", 1200).await;
    let gw1 = TestImap::start(&store.uri()).await;
    let gw2 = TestImap::start(&replica.uri()).await;

    let mut a = RawImap::connect(gw1.imap).await;
    a.login().await;
    a.cmd("ENABLE QRESYNC").await;
    let r = a.cmd("SELECT INBOX").await;
    assert!(r.contains(&"* 1200 EXISTS\r\n".to_string()), "{r:?}");
    let validity = r.iter().find_map(|l| num_after(l, "[UIDVALIDITY")).unwrap();
    let modseq = r
        .iter()
        .find_map(|l| num_after(l, "[HIGHESTMODSEQ"))
        .unwrap();
    a.cmd("LOGOUT").await;

    // Offline: every 12th message (100) expunged, 1,000 of the others
    // changed, some twice, some back to how they were.
    let mut b = RawImap::connect(gw2.imap).await;
    b.login().await;
    b.cmd("SELECT INBOX").await;
    let expunged: BTreeSet<u32> = (1..=1200).filter(|u| u % 12 == 0).collect();
    let kept: Vec<u32> = (1..=1200).filter(|u| u % 12 != 0).collect();
    let changed: BTreeSet<u32> = kept[..1000].iter().copied().collect();
    let list =
        |v: &mut dyn Iterator<Item = u32>| v.map(|u| u.to_string()).collect::<Vec<_>>().join(",");
    let set = list(&mut changed.iter().copied());
    let r = b
        .cmd(&format!("UID STORE {set} +FLAGS.SILENT (\\Seen)"))
        .await;
    assert!(tagged(&r).contains("OK"), "{r:?}");
    let twice = list(&mut changed.iter().copied().filter(|u| u % 3 == 0));
    b.cmd(&format!(
        "UID STORE {twice} +FLAGS.SILENT ($Label1 \\Flagged)"
    ))
    .await;
    let undone = list(&mut changed.iter().copied().filter(|u| u % 7 == 0));
    b.cmd(&format!("UID STORE {undone} -FLAGS.SILENT (\\Seen)"))
        .await;
    let gone = list(&mut expunged.iter().copied());
    b.cmd(&format!("UID STORE {gone} +FLAGS.SILENT (\\Deleted)"))
        .await;
    let r = b.cmd(&format!("UID EXPUNGE {gone}")).await;
    assert!(tagged(&r).contains("OK"), "{r:?}");
    // The flags each changed message has now, as the other client sees.
    let now: BTreeMap<u32, String> = b
        .cmd("UID FETCH 1:* (FLAGS)")
        .await
        .iter()
        .filter(|l| l.contains(" FETCH ("))
        .map(|l| (num_after(l, "UID ").unwrap() as u32, flags_of(l).unwrap()))
        .collect();
    b.cmd("LOGOUT").await;

    // Reconnect through the other gateway and store replica.
    let mut a = RawImap::connect(gw1.imap).await;
    a.login().await;
    a.cmd("ENABLE QRESYNC").await;
    let r = a
        .cmd(&format!("SELECT INBOX (QRESYNC ({validity} {modseq}))"))
        .await;
    assert!(tagged(&r).contains("OK"), "{:?}", tagged(&r));
    assert!(r.contains(&"* 1100 EXISTS\r\n".to_string()));
    let (fetched, vanished) = resync(&r);
    assert_eq!(
        vanished,
        expunged,
        "VANISHED (EARLIER) is exactly the expunged: {:?}",
        r.iter()
            .filter(|l| !l.contains(" FETCH ("))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        fetched.keys().copied().collect::<BTreeSet<u32>>(),
        changed,
        "a FETCH for exactly the changed messages"
    );
    let highest = r
        .iter()
        .find_map(|l| num_after(l, "[HIGHESTMODSEQ"))
        .unwrap();
    for (uid, (flags, m)) in &fetched {
        assert_eq!(Some(flags), now.get(uid), "flags of UID {uid}");
        assert!(*m > modseq && *m <= highest, "MODSEQ of UID {uid}");
    }

    // Known UIDs 1:600: only what happened to those.
    a.cmd("UNSELECT").await;
    let r = a
        .cmd(&format!(
            "SELECT INBOX (QRESYNC ({validity} {modseq} 1:600))"
        ))
        .await;
    let (f, v) = resync(&r);
    assert_eq!(v, expunged.iter().copied().filter(|&u| u <= 600).collect());
    assert_eq!(
        f.keys().copied().collect::<BTreeSet<u32>>(),
        changed.iter().copied().filter(|&u| u <= 600).collect()
    );
    // UID FETCH (CHANGEDSINCE VANISHED) reports the same.
    let r = a
        .cmd(&format!(
            "UID FETCH 1:* (UID FLAGS) (CHANGEDSINCE {modseq} VANISHED)"
        ))
        .await;
    let (f, v) = resync(&r);
    assert_eq!(v, expunged);
    assert_eq!(f.keys().copied().collect::<BTreeSet<u32>>(), changed);
    // Nothing changed since the new HIGHESTMODSEQ.
    let r = a
        .cmd(&format!("SELECT INBOX (QRESYNC ({validity} {highest}))"))
        .await;
    let (f, v) = resync(&r);
    assert!(f.is_empty() && v.is_empty(), "{r:?}");
}
