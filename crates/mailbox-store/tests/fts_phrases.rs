//! The full-text index (issue 27) with search strings of several words,
//! on both backends: phrases of words that are common on their own,
//! phrases across a line break (in the decoded text, in quoted-printable
//! source, in HTML), punctuation and mixed white space. On PostgreSQL the
//! trigram index holds each text without its white space, so it takes
//! "meeting moved" for "meeting\r\nmoved" and the evaluator must tell
//! them apart: every answer, of SEARCH in a large mailbox (the trigram
//! index), in a small one (each text read) and of MULTISEARCH over the
//! account (one candidate statement for all mailboxes), equals a scan's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use common::{Backend, TestStore, start_with};
use mailbox_api::pb;
use mailbox_api::pb::search_key::Key;

both_backends!(
    workers = 2;
    phrases_and_white_space_equal_the_scan,
);

const USER: &str = "p@example.org";

/// Messages whose words are common: every one says "project", "status"
/// and "meeting", but apart.
fn filler(i: usize) -> Vec<u8> {
    format!(
        "From: f{i}@example.org\r\nSubject: filler {i}\r\n\r\n\
the project {i} has a status, and the meeting\r\nof {i} is on; status project meeting {i}\r\n"
    )
    .into_bytes()
}

/// The phrase and its near misses, a different way each `i`.
fn phrased(i: usize) -> Vec<u8> {
    let body = match i % 4 {
        0 => "Content-Type: text/plain\r\n\r\nThe project status meeting\r\nmoved to\tFriday, \
              10:30 -- see  the agenda.\r\n"
            .to_string(),
        1 => "Content-Type: text/plain\r\n\r\nproject  status meeting, then Project status\r\n\
              meeting again\r\n"
            .to_string(),
        // A soft line break inside the phrase: one line once decoded.
        2 => "Content-Type: text/plain; charset=utf-8\r\n\
              Content-Transfer-Encoding: quoted-printable\r\n\r\n\
              Caf=C3=A9 project status meet=\r\ning, 10:30 =E2=80=93 agenda\r\n"
            .to_string(),
        // HTML: tags between the words, white space collapsed.
        _ => "Content-Type: text/html; charset=utf-8\r\n\r\n\
              <p>Project <b>status</b>\r\n   meeting moved&nbsp;on</p>\r\n"
            .to_string(),
    };
    format!("From: p{i}@example.org\r\nSubject: Project status {i}\r\n{body}").into_bytes()
}

fn needles() -> Vec<&'static str> {
    vec![
        "project status meeting",
        "PROJECT Status Meeting",
        "projectstatusmeeting",
        "project status meet",
        "status meeting\r\nmoved to\tfriday",
        "meeting\r\nmoved",
        "meeting moved",
        "meetingmoved",
        "moved\u{a0}on",
        "to\tfriday, 10:30",
        "to friday",
        "friday, 10:30 -- see  the agenda.",
        "see the agenda",
        "project  status",
        "status\r\nmeeting",
        "café project status",
        "10:30 – agenda",
        "meet=\r\ning",
        "<b>status</b>",
        "status, and the meeting\r\nof",
        "absent phrase here",
    ]
}

fn key(k: Key) -> pb::SearchKey {
    pb::SearchKey { key: Some(k) }
}

fn keys() -> Vec<pb::SearchKey> {
    let mut out = Vec::new();
    for n in needles() {
        out.push(key(Key::Body(n.into())));
        out.push(key(Key::Text(n.into())));
    }
    out.push(key(Key::And(pb::SearchKeyList {
        keys: vec![
            key(Key::Uid(pb::UidSet {
                ranges: vec![pb::UidRange {
                    first: 150,
                    last: 1_900,
                }],
            })),
            key(Key::Body("project status meeting".into())),
        ],
    })));
    out.push(key(Key::Or(pb::SearchKeyList {
        keys: vec![
            key(Key::Body("meeting moved".into())),
            key(Key::Text("see  the agenda".into())),
        ],
    })));
    out
}

async fn search(c: &mut mailbox_api::MailboxClient, mailbox: &str, k: &pb::SearchKey) -> Vec<u32> {
    c.search(pb::SearchRequest {
        mailbox: mailbox.into(),
        key: Some(k.clone()),
    })
    .await
    .unwrap_or_else(|e| panic!("search {k:?}: {e}"))
    .into_inner()
    .uids
}

async fn append(c: &mut mailbox_api::MailboxClient, mailbox: &str, messages: &[Vec<u8>]) {
    let mut chunks = Vec::new();
    for m in messages {
        chunks.push(pb::AppendChunk {
            part: Some(pb::append_chunk::Part::Header(pb::AppendHeader {
                mailbox: mailbox.into(),
                size: m.len() as u64,
                ..Default::default()
            })),
        });
        chunks.push(pb::AppendChunk {
            part: Some(pb::append_chunk::Part::Data(m.clone())),
        });
    }
    c.append(tokio_stream::iter(chunks)).await.unwrap();
}

/// SEARCH of `mailbox` on both stores, key by key; returns how many keys
/// found something.
async fn compare(t: &TestStore, scan: &TestStore, mailbox: &str) -> usize {
    let mut a = t.login(USER, "pw").await;
    let mut b = scan.login(USER, "pw").await;
    let (mut wrong, mut found) = (Vec::new(), 0);
    for k in keys() {
        let (x, y) = (
            search(&mut a, mailbox, &k).await,
            search(&mut b, mailbox, &k).await,
        );
        if x != y {
            wrong.push(format!("{mailbox} {k:?}: index {x:?}, scan {y:?}"));
        }
        found += usize::from(!y.is_empty());
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    found
}

/// MULTISEARCH (`mailboxes` named, or every mailbox) on the indexed store
/// against each mailbox's SEARCH on the scanning one.
async fn compare_multi(t: &TestStore, scan: &TestStore, mailboxes: &[&str]) {
    let mut a = t.login(USER, "pw").await;
    let mut b = scan.login(USER, "pw").await;
    let mut wrong = Vec::new();
    for k in keys() {
        let r = a
            .multi_search(pb::MultiSearchRequest {
                key: Some(k.clone()),
                personal: mailboxes.is_empty(),
                mailboxes: mailboxes.iter().map(|m| m.to_string()).collect(),
                with_empty: true,
                with_modseqs: true,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("multisearch {k:?}: {e}"))
            .into_inner();
        let names: Vec<&str> = r.results.iter().map(|m| m.mailbox.as_str()).collect();
        if !mailboxes.is_empty() {
            assert_eq!(names, mailboxes, "{k:?}");
        }
        for m in r.results {
            let y = search(&mut b, &m.mailbox, &k).await;
            if m.uids != y || m.modseqs.len() != y.len() || m.modseqs.contains(&0) {
                wrong.push(format!(
                    "{} {k:?}: index {:?} {:?}, scan {y:?}",
                    m.mailbox, m.uids, m.modseqs
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

async fn phrases_and_white_space_equal_the_scan(backend: Backend) {
    let t = start_with(backend, |s| s.fts_indexer = false).await;
    t.add_domain("example.org").await;
    t.add_account(USER, "pw").await;
    let scan = t
        .replica_with(|s| {
            s.fts_search = false;
            s.fts_indexer = false;
        })
        .await;
    let mut c = t.login(USER, "pw").await;
    for name in ["Big", "Small"] {
        c.create_mailbox(pb::CreateMailboxRequest {
            name: name.into(),
            special_use: 0,
        })
        .await
        .unwrap();
    }
    // Big: more than the store reads text by text (2,000), so its
    // searches go through the trigram index; every 50th message phrased.
    let big: Vec<Vec<u8>> = (0..2_100)
        .map(|i| {
            if i % 50 == 7 {
                phrased(i / 50)
            } else {
                filler(i)
            }
        })
        .collect();
    for chunk in big.chunks(150) {
        append(&mut c, "Big", chunk).await;
    }
    let small: Vec<Vec<u8>> = (0..40)
        .map(|i| {
            if i % 5 == 0 {
                phrased(i / 5)
            } else {
                filler(i)
            }
        })
        .collect();
    append(&mut c, "Small", &small).await;
    for i in 0..4 {
        t.deliver(&format!("d{i}"), &[USER], &phrased(i)).await;
    }
    // Texts written with their bodies wait for the trigram index on
    // PostgreSQL (searched one by one meanwhile): first as they are, then
    // every one in the trigram index.
    for round in 0..2 {
        let found = compare(&t, &scan, "Big").await;
        assert!(found >= 10, "round {round}: {found} keys found something");
        compare(&t, &scan, "Small").await;
        compare(&t, &scan, "INBOX").await;
        compare_multi(&t, &scan, &[]).await;
        compare_multi(&t, &scan, &["INBOX", "Small"]).await;
        while t.store.fts_trigram_batch().await.unwrap() > 0 {}
    }
    // The phrase as the evaluator sees it: in the decoded text of each
    // kind (plain, quoted-printable across a soft line break, HTML), not
    // where a line break or two spaces part the words (the second kind).
    let mut a = t.login(USER, "pw").await;
    let phrase = key(Key::Body("project status meeting".into()));
    let want: Vec<u32> = (0..42).filter(|n| n % 4 != 1).map(|n| n * 50 + 8).collect();
    assert_eq!(search(&mut a, "Big", &phrase).await, want);
    assert_eq!(
        search(&mut a, "INBOX", &key(Key::Body("meeting moved".into()))).await,
        vec![4]
    );
    assert_eq!(
        search(&mut a, "INBOX", &key(Key::Body("meeting\r\nmoved".into()))).await,
        vec![1]
    );
}
