//! MULTISEARCH (RFC 7377) in the store, on both backends through the real
//! gRPC server: the filters choose the mailboxes, each mailbox's answer is
//! the one its own Search gives, and one account never sees another's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use common::{Backend, TestStore, message, start};
use mailbox_api::{MailboxClient, pb};
use pb::search_key::Key;
use tonic::Code;

both_backends!(
    workers = 2;
    filters_choose_and_each_answer_is_the_mailboxs_own,
    accounts_never_see_each_other,
    non_ascii_text_is_found_in_every_encoding,
    numbers_and_star_are_each_mailboxs_own,
    summary_only_sends_no_uids_but_the_selected_mailboxs,
    too_many_mailboxes_is_a_limit,
    a_mailbox_created_again_is_never_labelled_with_the_old_uidvalidity,
);

/// The account's mailboxes: name, subscribed.
const BOXES: [(&str, bool); 7] = [
    ("Old", false),
    ("Lists", true),
    ("Lists/rust", false),
    ("Lists/rust/old", true),
    ("Work", true),
    ("Work/2026", false),
    ("Empty", true),
];

fn key(k: Key) -> Option<pb::SearchKey> {
    Some(pb::SearchKey { key: Some(k) })
}

async fn create(c: &mut MailboxClient, name: &str, subscribed: bool) {
    c.create_mailbox(pb::CreateMailboxRequest {
        name: name.into(),
        special_use: 0,
    })
    .await
    .unwrap();
    if subscribed {
        c.set_subscribed(pb::SetSubscribedRequest {
            name: name.into(),
            subscribed: true,
        })
        .await
        .unwrap();
    }
}

async fn append(c: &mut MailboxClient, mailbox: &str, data: Vec<u8>) -> u32 {
    c.append(tokio_stream::iter(vec![
        pb::AppendChunk {
            part: Some(pb::append_chunk::Part::Header(pb::AppendHeader {
                mailbox: mailbox.into(),
                ..Default::default()
            })),
        },
        pb::AppendChunk {
            part: Some(pb::append_chunk::Part::Data(data)),
        },
    ]))
    .await
    .unwrap()
    .into_inner()
    .uid
}

/// `user` with BOXES, and in every mailbox but "Empty" (and INBOX, by
/// delivery) messages whose bodies name the mailbox, every other one
/// also saying "needle".
async fn fill(t: &TestStore, user: &str) -> MailboxClient {
    t.add_account(user, "pw").await;
    let mut c = t.login(user, "pw").await;
    for (name, sub) in BOXES {
        create(&mut c, name, sub).await;
    }
    for i in 0..4 {
        let body = format!(
            "{user} inbox {i}{}",
            if i % 2 == 0 { " needle" } else { "" }
        );
        t.deliver(
            &format!("{user}-{i}"),
            &[user],
            &message(&format!("{user}-in{i}"), &body),
        )
        .await;
    }
    for (name, _) in BOXES.iter().filter(|b| b.0 != "Empty") {
        for i in 0..3 {
            let body = format!("{user} {name} {i}{}", if i != 1 { " needle" } else { "" });
            append(&mut c, name, message(&format!("{name}{i}"), &body)).await;
        }
    }
    c
}

fn names(r: &pb::MultiSearchResponse) -> Vec<&str> {
    r.results.iter().map(|m| m.mailbox.as_str()).collect()
}

async fn multi(c: &mut MailboxClient, req: pb::MultiSearchRequest) -> pb::MultiSearchResponse {
    c.multi_search(req).await.unwrap().into_inner()
}

async fn filters_choose_and_each_answer_is_the_mailboxs_own(backend: Backend) {
    let t = start(backend).await;
    t.add_domain("example.org").await;
    let mut c = fill(&t, "alice@example.org").await;
    let needle = key(Key::Body("NEEDLE".into()));
    // personal: every mailbox with a match, in name order, each with its
    // UIDVALIDITY and the UIDs its own Search finds.
    let r = multi(
        &mut c,
        pb::MultiSearchRequest {
            key: needle.clone(),
            personal: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        names(&r),
        [
            "INBOX",
            "Lists",
            "Lists/rust",
            "Lists/rust/old",
            "Old",
            "Work",
            "Work/2026"
        ]
    );
    let list = c
        .list_mailboxes(pb::ListMailboxesRequest {})
        .await
        .unwrap()
        .into_inner()
        .mailboxes;
    for m in &r.results {
        let own = c
            .search(pb::SearchRequest {
                mailbox: m.mailbox.clone(),
                key: needle.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(m.uids, own.uids, "{}", m.mailbox);
        let info = list.iter().find(|i| i.name == m.mailbox).unwrap();
        assert_eq!(m.uid_validity, info.uid_validity, "{}", m.mailbox);
        assert!(m.modseqs.is_empty());
        assert!(m.highest_modseq > 0);
    }
    assert_eq!(r.results[0].uids, [1, 3], "INBOX");
    assert_eq!(r.results[4].uids, [1, 3], "Old");
    // with_empty: the mailboxes without a match too (the six every
    // account starts with, less INBOX, and "Empty").
    let r = multi(
        &mut c,
        pb::MultiSearchRequest {
            key: needle.clone(),
            personal: true,
            with_empty: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(r.results.len(), 13);
    let empty = r.results.iter().find(|m| m.mailbox == "Empty").unwrap();
    assert!(empty.uids.is_empty());
    // The filters (RFC 5465 6, RFC 7377 2).
    let cases: Vec<(pb::MultiSearchRequest, Vec<&str>)> = vec![
        (
            pb::MultiSearchRequest {
                inboxes: true,
                ..Default::default()
            },
            vec!["INBOX"],
        ),
        (
            pb::MultiSearchRequest {
                subscribed: true,
                ..Default::default()
            },
            // INBOX and the default mailboxes start subscribed.
            vec!["INBOX", "Lists", "Lists/rust/old", "Work"],
        ),
        (
            pb::MultiSearchRequest {
                subtrees: vec!["Lists".into()],
                ..Default::default()
            },
            vec!["Lists", "Lists/rust", "Lists/rust/old"],
        ),
        (
            pb::MultiSearchRequest {
                subtrees_one: vec!["Lists".into()],
                ..Default::default()
            },
            vec!["Lists", "Lists/rust"],
        ),
        (
            // A name twice, INBOX in any case, one that is no mailbox.
            pb::MultiSearchRequest {
                mailboxes: vec![
                    "Work/2026".into(),
                    "inbox".into(),
                    "Work/2026".into(),
                    "Nowhere".into(),
                ],
                ..Default::default()
            },
            vec!["INBOX", "Work/2026"],
        ),
        (
            pb::MultiSearchRequest {
                mailboxes: vec!["Nowhere".into()],
                ..Default::default()
            },
            vec![],
        ),
    ];
    for (mut req, want) in cases {
        req.key = needle.clone();
        let r = multi(&mut c, req.clone()).await;
        assert_eq!(names(&r), want, "{req:?}");
    }
    // Other keys: flags, UID ranges, NOT, TEXT; each mailbox's answer is
    // its own Search's.
    c.store_flags(pb::StoreFlagsRequest {
        mailbox: "Work".into(),
        uids: Some(pb::UidSet::of([2])),
        flags: Some(pb::Flags {
            flagged: true,
            ..Default::default()
        }),
        mode: pb::FlagsMode::Add as i32,
        ..Default::default()
    })
    .await
    .unwrap();
    for k in [
        Key::Flag("\\Flagged".into()),
        Key::Uid(pb::UidSet::of([2, 3])),
        Key::Not(Box::new(pb::SearchKey {
            key: Some(Key::Body("needle".into())),
        })),
        Key::Text("work/2026".into()),
        Key::All(true),
    ] {
        let r = multi(
            &mut c,
            pb::MultiSearchRequest {
                key: key(k.clone()),
                personal: true,
                with_empty: true,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(r.results.len(), 13, "{k:?}");
        for m in &r.results {
            let own = c
                .search(pb::SearchRequest {
                    mailbox: m.mailbox.clone(),
                    key: key(k.clone()),
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(m.uids, own.uids, "{k:?} in {}", m.mailbox);
        }
    }
    // with_modseqs: each UID's MODSEQ, as Fetch tells it.
    let r = multi(
        &mut c,
        pb::MultiSearchRequest {
            key: needle.clone(),
            mailboxes: vec!["Work".into(), "INBOX".into()],
            with_modseqs: true,
            ..Default::default()
        },
    )
    .await;
    for m in &r.results {
        assert_eq!(m.modseqs.len(), m.uids.len());
        let mut meta = c
            .fetch(pb::FetchRequest {
                mailbox: m.mailbox.clone(),
                uids: Some(pb::UidSet::of(m.uids.iter().copied())),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let mut want = Vec::new();
        while let Some(batch) = meta.message().await.unwrap() {
            want.extend(batch.messages.iter().map(|x| x.modseq));
        }
        assert_eq!(m.modseqs, want, "{}", m.mailbox);
    }
    // Too many names at once is refused, not searched.
    let err = c
        .multi_search(pb::MultiSearchRequest {
            mailboxes: vec!["INBOX".into(); 1001],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
}

/// Two accounts with the same mailbox names and the same words: each
/// MULTISEARCH answers from its own account only, whatever it names.
async fn accounts_never_see_each_other(backend: Backend) {
    let t = start(backend).await;
    t.add_domain("example.org").await;
    let mut alice = fill(&t, "alice@example.org").await;
    let mut bob = fill(&t, "bob@example.org").await;
    // Bob has a mailbox Alice does not.
    create(&mut bob, "Bob-only", false).await;
    append(&mut bob, "Bob-only", message("b1", "needle")).await;
    for (c, me, other) in [(&mut alice, "alice", "bob"), (&mut bob, "bob", "alice")] {
        let r = multi(
            c,
            pb::MultiSearchRequest {
                key: key(Key::Body(other.into())),
                personal: true,
                mailboxes: vec!["Bob-only".into()],
                subtrees: vec!["Lists".into()],
                with_empty: true,
                ..Default::default()
            },
        )
        .await;
        assert!(r.results.iter().all(|m| m.uids.is_empty()), "{me}: {r:?}");
        let r = multi(
            c,
            pb::MultiSearchRequest {
                key: key(Key::Body(me.into())),
                personal: true,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(r.results.len(), 7, "{me}: {r:?}");
    }
    // Without a session token, nothing.
    let err = t
        .anonymous()
        .multi_search(pb::MultiSearchRequest {
            personal: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
}

/// A non-ASCII search string finds text that arrived in ISO-8859-1 (in
/// quoted-printable and in 8 bits), in base64 UTF-8 and in an encoded
/// word, in whichever mailbox it is.
async fn non_ascii_text_is_found_in_every_encoding(backend: Backend) {
    let t = start(backend).await;
    t.add_domain("example.org").await;
    t.add_account("n@example.org", "pw").await;
    let mut c = t.login("n@example.org", "pw").await;
    for name in ["Latin", "Words", "Plain"] {
        create(&mut c, name, false).await;
    }
    let qp = b"Subject: qp\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\r\nSch=F6ne Gr=FC=DFe aus K=F6ln\r\n"
        .to_vec();
    let mut eight = b"Subject: 8bit\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\
Content-Transfer-Encoding: 8bit\r\n\r\nGr"
        .to_vec();
    eight.extend_from_slice(&[0xFC, 0xDF, b'e', b' ', b'K', 0xF6, b'l', b'n', b'\r', b'\n']);
    let b64 = b"Subject: b64\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: base64\r\n\r\nR3LDvMOfZSBhdXMgS8O2bG4=\r\n"
        .to_vec();
    let word = b"Subject: =?ISO-8859-1?Q?Gr=FC=DFe_aus_K=F6ln?=\r\n\r\nplain ascii\r\n".to_vec();
    let plain = b"Subject: other\r\n\r\nGruesse aus Koeln\r\n".to_vec();
    append(&mut c, "Latin", qp).await;
    append(&mut c, "Latin", eight).await;
    append(&mut c, "Words", word).await;
    append(&mut c, "Plain", plain).await;
    append(&mut c, "INBOX", b64).await;
    let search = async |c: &mut MailboxClient, k: Key| {
        let r = multi(
            c,
            pb::MultiSearchRequest {
                key: key(k),
                personal: true,
                ..Default::default()
            },
        )
        .await;
        r.results
            .iter()
            .map(|m| (m.mailbox.clone(), m.uids.clone()))
            .collect::<Vec<_>>()
    };
    let own = |v: &[(&str, &[u32])]| -> Vec<(String, Vec<u32>)> {
        v.iter().map(|(n, u)| (n.to_string(), u.to_vec())).collect()
    };
    assert_eq!(
        search(&mut c, Key::Body("KÖLN".into())).await,
        own(&[("INBOX", &[1]), ("Latin", &[1, 2])])
    );
    assert_eq!(
        search(
            &mut c,
            Key::Header(pb::HeaderMatch {
                name: "subject".into(),
                value: "Grüße".into(),
            })
        )
        .await,
        own(&[("Words", &[1])])
    );
    assert_eq!(
        search(&mut c, Key::Text("grüße".into())).await,
        own(&[("INBOX", &[1]), ("Latin", &[1, 2]), ("Words", &[1])])
    );
}

fn set(r: &[(u32, u32)]) -> pb::UidSet {
    pb::UidSet {
        ranges: r
            .iter()
            .map(|&(first, last)| pb::UidRange { first, last })
            .collect(),
    }
}

/// Message numbers and "*" (RFC 9051 9) in a MULTISEARCH are each
/// mailbox's own: numbers count that mailbox's messages in UID order,
/// "*" is its largest UID. Plain Search refuses them (the gateway
/// resolves the selected mailbox's itself).
async fn numbers_and_star_are_each_mailboxs_own(backend: Backend) {
    let t = start(backend).await;
    t.add_domain("example.org").await;
    let mut c = fill(&t, "alice@example.org").await;
    // Work: UIDs 1, 2, 3; expunge 1 so the numbers and UIDs differ.
    c.expunge(pb::ExpungeRequest {
        mailbox: "Work".into(),
        uids: Some(pb::UidSet::of([1])),
        ignore_deleted_flag: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let ask = |k: Key| pb::MultiSearchRequest {
        key: key(k),
        mailboxes: vec!["Work".into(), "Old".into(), "Empty".into()],
        ..Default::default()
    };
    let uids_of = |r: &pb::MultiSearchResponse, name: &str| -> Vec<u32> {
        r.results
            .iter()
            .find(|m| m.mailbox == name)
            .map(|m| m.uids.clone())
            .unwrap_or_default()
    };
    // Message 1 is Work's UID 2 and Old's UID 1; "*" the last of each.
    let r = multi(&mut c, ask(Key::Seq(set(&[(1, 1)])))).await;
    assert_eq!(uids_of(&r, "Work"), [2]);
    assert_eq!(uids_of(&r, "Old"), [1]);
    let r = multi(&mut c, ask(Key::Seq(set(&[(0, 0)])))).await;
    assert_eq!(uids_of(&r, "Work"), [3]);
    assert_eq!(uids_of(&r, "Old"), [3]);
    assert_eq!(names(&r), ["Old", "Work"], "nothing in Empty");
    let r = multi(&mut c, ask(Key::Seq(set(&[(3, 3)])))).await;
    assert_eq!(uids_of(&r, "Work"), Vec::<u32>::new());
    assert_eq!(uids_of(&r, "Old"), [3]);
    // UID 3:* is 3 in both; UID 9:* is the largest UID (9:3 is 3:9).
    let r = multi(&mut c, ask(Key::UidStar(set(&[(0, 9)])))).await;
    assert_eq!(uids_of(&r, "Work"), [3]);
    assert_eq!(uids_of(&r, "Old"), [3]);
    // The same beside a string the full-text index narrows (one search
    // of the account, then each mailbox's own numbers): message 1 of Work
    // (UID 2) lacks the needle, Old's has it.
    let and = |k: Key| {
        Key::And(pb::SearchKeyList {
            keys: vec![
                pb::SearchKey { key: Some(k) },
                pb::SearchKey {
                    key: Some(Key::Body("NEEDLE".into())),
                },
            ],
        })
    };
    let r = multi(&mut c, ask(and(Key::Seq(set(&[(1, 1)]))))).await;
    assert_eq!(uids_of(&r, "Work"), Vec::<u32>::new());
    assert_eq!(uids_of(&r, "Old"), [1]);
    let r = multi(&mut c, ask(and(Key::UidStar(set(&[(0, 9)]))))).await;
    assert_eq!(uids_of(&r, "Work"), [3]);
    assert_eq!(uids_of(&r, "Old"), [3]);
    // Inside NOT: all but the first message.
    let r = multi(
        &mut c,
        ask(Key::Not(Box::new(pb::SearchKey {
            key: Some(Key::Seq(set(&[(1, 1)]))),
        }))),
    )
    .await;
    assert_eq!(uids_of(&r, "Work"), [3]);
    assert_eq!(uids_of(&r, "Old"), [2, 3]);
    // Search (one mailbox, the session's numbering) refuses them.
    let err = c
        .search(pb::SearchRequest {
            mailbox: "Work".into(),
            key: key(Key::Seq(set(&[(1, 1)]))),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
}

/// RETURN (MIN MAX COUNT) alone: the store sends each mailbox's summary
/// and no UIDs, except the selected mailbox's (the session filters it).
async fn summary_only_sends_no_uids_but_the_selected_mailboxs(backend: Backend) {
    let t = start(backend).await;
    t.add_domain("example.org").await;
    let mut c = fill(&t, "alice@example.org").await;
    let r = multi(
        &mut c,
        pb::MultiSearchRequest {
            key: key(Key::Body("needle".into())),
            mailboxes: vec!["Work".into(), "Lists".into()],
            summary_only: true,
            with_modseqs: true,
            selected: "Lists".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(names(&r), ["Lists", "Work"]);
    let lists = &r.results[0];
    assert_eq!(lists.uids, [1, 3]);
    assert!(lists.summary.is_none());
    let work = &r.results[1];
    assert!(work.uids.is_empty() && work.modseqs.is_empty());
    let s = work.summary.as_ref().unwrap();
    assert_eq!((s.count, s.min, s.max), (2, 1, 3));
    assert!(s.min_modseq > 0 && s.max_modseq > s.min_modseq, "{s:?}");
    assert_eq!(s.matched_modseq, s.max_modseq);
}

/// More mailboxes than one MULTISEARCH may search is refused as a limit,
/// before any is searched.
async fn too_many_mailboxes_is_a_limit(backend: Backend) {
    let t = start(backend).await;
    t.add_domain("example.org").await;
    t.add_account("alice@example.org", "pw").await;
    let mut c = t.login("alice@example.org", "pw").await;
    // 1001 mailboxes in all (the account starts with a few).
    let have = c
        .list_mailboxes(pb::ListMailboxesRequest {})
        .await
        .unwrap()
        .into_inner()
        .mailboxes
        .len();
    for i in have..1001 {
        create(&mut c, &format!("F{i:04}"), false).await;
    }
    let err = c
        .multi_search(pb::MultiSearchRequest {
            personal: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().starts_with("limit: "), "{err:?}");
    // One fewer is searched.
    c.delete_mailbox(pb::DeleteMailboxRequest {
        name: "F1000".into(),
    })
    .await
    .unwrap();
    let r = multi(
        &mut c,
        pb::MultiSearchRequest {
            personal: true,
            with_empty: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(r.results.len(), 1000);
}

/// A mailbox deleted and created again (a new UIDVALIDITY, and on
/// SQLite perhaps the old row id) while searches run: every answer's
/// UIDs are those of the mailbox whose UIDVALIDITY it names. Each
/// incarnation k holds k messages, so UIDs above k under k's UIDVALIDITY
/// would be another incarnation's.
async fn a_mailbox_created_again_is_never_labelled_with_the_old_uidvalidity(backend: Backend) {
    let t = start(backend).await;
    t.add_domain("example.org").await;
    t.add_account("alice@example.org", "pw").await;
    let mut c = t.login("alice@example.org", "pw").await;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let flipper = {
        let mut c = c.clone();
        let seen = seen.clone();
        tokio::spawn(async move {
            for k in 1..=12u32 {
                let info = c
                    .create_mailbox(pb::CreateMailboxRequest {
                        name: "Flip".into(),
                        special_use: 0,
                    })
                    .await
                    .unwrap()
                    .into_inner();
                let v = info.mailbox.map(|m| m.uid_validity).unwrap();
                seen.lock().unwrap().insert(v, k);
                for i in 0..k {
                    append(&mut c, "Flip", message(&format!("f{i}"), "x")).await;
                }
                c.delete_mailbox(pb::DeleteMailboxRequest {
                    name: "Flip".into(),
                })
                .await
                .unwrap();
            }
        })
    };
    let mut checked = 0;
    while !flipper.is_finished() {
        let r = multi(
            &mut c,
            pb::MultiSearchRequest {
                mailboxes: vec!["Flip".into()],
                ..Default::default()
            },
        )
        .await;
        for m in &r.results {
            // Created (and recorded) before any of its messages exist.
            let k = seen.lock().unwrap().get(&m.uid_validity).copied();
            let k = k.expect("a UIDVALIDITY no incarnation had");
            assert!(
                m.uids.iter().all(|&u| u <= k),
                "incarnation {k} answered with {:?}",
                m.uids
            );
            checked += 1;
        }
    }
    flipper.await.unwrap();
    let _ = checked;
}
