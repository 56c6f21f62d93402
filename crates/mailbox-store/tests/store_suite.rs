//! The store test suite: every test runs against both backends (a fresh
//! PostgreSQL database per test, and a fresh SQLite file), through the real
//! gRPC server on 127.0.0.1:0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::collections::HashSet;

use common::{
    Backend, TestStore, deliver_with, message, select_all, select_with, start, start_with,
};
use mailbox_api::pb;
use tonic::Code;

both_backends!(
    concurrent_delivery_allocates_unique_increasing_uids,
    uid_validity_changes_when_mailbox_is_recreated,
    fifty_recipients_store_the_body_once,
    repeated_delivery_id_stores_nothing_new,
    tokens_scope_every_mailbox_call_to_their_account,
    missing_or_forged_tokens_are_refused,
    failed_logins_look_alike_and_are_throttled,
    failed_logins_count_on_every_replica,
    summary_of_multipart_message_is_parsed_at_delivery,
    recipients_are_checked,
    flags_copy_move_expunge_and_changes,
    system_flag_stores_keep_or_clear_keywords,
    watch_streams_changes,
    maildrop_lease_is_exclusive,
    service_secret_is_required_when_configured,
    mailbox_hierarchy_operations,
    recent_is_claimed_by_exactly_one_session,
    login_caches_never_outlive_a_change,
    concurrent_writers_lose_nothing_and_watchers_see_it_all,
    append_keeps_within_the_quota_and_usage_follows_expunge,
    concurrent_moves_move_each_message_once,
    crossing_multi_recipient_deliveries_never_deadlock,
    concurrent_system_flag_stores_lose_nothing,
    expunge_without_uids_takes_only_deleted_messages,
    admin_sessions_act_for_one_account_only,
    expunged_bodies_are_collected_and_a_racing_delivery_survives,
    deliveries_committed_together_decide_as_one_at_a_time,
    sort_and_thread_over_stored_keys,
    sort_and_thread_follow_every_change,
    sort_and_thread_over_a_session_uid_set_are_exact,
    large_bodies_read_back_whole_and_lz4_compressed,
    app_passwords_log_in_and_are_revoked_one_by_one,
    message_count_quota_holds_everywhere_messages_arrive,
    mailbox_list_watch_ticks_for_changes_on_any_replica,
    urlauth_keys_verify_and_reset,
    append_with_an_idempotency_key_stores_once,
    sessions_live_while_used_and_expire_unused,
);

/// A second store replica for tests of writers on several replicas; none
/// on the embedded store, which is one process: its replicas would share
/// no change feed (they would only meet at the Watch poll), so there both
/// sides are the one store.
async fn second_replica(a: &TestStore, backend: Backend) -> Option<TestStore> {
    match backend {
        Backend::Postgres => Some(a.replica().await),
        Backend::Sqlite => None,
    }
}

/// The start of the concurrent-writer tests: a store, its second replica
/// where the backend has one, and `user` (password "pw") with `messages`
/// messages in INBOX.
async fn writers_setup(
    backend: Backend,
    user: &str,
    messages: u32,
) -> (TestStore, Option<TestStore>) {
    let a = setup(backend).await;
    let replica = second_replica(&a, backend).await;
    a.add_account(user, "pw").await;
    for i in 0..messages {
        a.deliver(&format!("{user}-{i}"), &[user], &message(user, "x"))
            .await;
    }
    (a, replica)
}

async fn setup(backend: Backend) -> TestStore {
    let t = start(backend).await;
    t.add_domain("example.org").await;
    t
}

async fn concurrent_delivery_allocates_unique_increasing_uids(backend: Backend) {
    let t = setup(backend).await;
    t.add_account("bob@example.org", "pw-bob").await;
    const WRITERS: usize = 8;
    const EACH: usize = 500;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let mut client = t.delivery();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..EACH {
                let body = message(&format!("w{w}-m{i}"), "hello");
                let r = common::deliver_with(
                    &mut client,
                    &format!("d-{w}-{i}"),
                    &["bob@example.org"],
                    &body,
                )
                .await
                .unwrap();
                assert_eq!(r.results[0].status, pb::RecipientStatus::Accept as i32);
                got.push(r.results[0].uid);
            }
            got
        }));
    }
    let mut uids = Vec::new();
    for task in tasks {
        let got = task.await.unwrap();
        // Each writer's own deliveries got increasing UIDs.
        assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "writer saw UIDs go backwards"
        );
        uids.extend(got);
    }
    let unique: HashSet<u32> = uids.iter().copied().collect();
    assert_eq!(unique.len(), WRITERS * EACH, "duplicate UIDs handed out");

    let mut bob = t.login("bob@example.org", "pw-bob").await;
    let (status, entries) = select_all(&mut bob, "INBOX").await.unwrap();
    assert_eq!(entries.len(), WRITERS * EACH);
    assert_eq!(status.messages as usize, WRITERS * EACH);
    // Sorted by UID, MODSEQs strictly increase too (allocated together).
    assert!(entries.windows(2).all(|w| w[0].uid < w[1].uid));
    assert!(
        entries.windows(2).all(|w| w[0].modseq < w[1].modseq),
        "MODSEQ not strictly increasing with UID"
    );
    let modseqs: HashSet<u64> = entries.iter().map(|e| e.modseq).collect();
    assert_eq!(modseqs.len(), entries.len(), "duplicate MODSEQs");
    assert_eq!(status.uid_next as usize, WRITERS * EACH + 1);
    assert!(status.highest_modseq >= entries.last().unwrap().modseq);
    let uid_set: HashSet<u32> = entries.iter().map(|e| e.uid).collect();
    assert_eq!(uid_set, unique, "stored UIDs differ from the ones returned");
}

async fn uid_validity_changes_when_mailbox_is_recreated(backend: Backend) {
    let t = setup(backend).await;
    t.add_account("a@example.org", "pw-a").await;
    let mut a = t.login("a@example.org", "pw-a").await;
    let first = a
        .create_mailbox(pb::CreateMailboxRequest {
            name: "Projects".into(),
            special_use: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .mailbox
        .unwrap()
        .uid_validity;
    assert_ne!(first, 0);
    a.delete_mailbox(pb::DeleteMailboxRequest {
        name: "Projects".into(),
    })
    .await
    .unwrap();
    let second = a
        .create_mailbox(pb::CreateMailboxRequest {
            name: "Projects".into(),
            special_use: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .mailbox
        .unwrap()
        .uid_validity;
    assert_ne!(first, second, "UIDVALIDITY reused after delete + create");
    let status = a
        .mailbox_status(pb::MailboxStatusRequest {
            name: "Projects".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(status.uid_validity, second);
    // A gateway that still holds the old mailbox's state learns it is gone
    // rather than receiving the new mailbox's changes as if they were its.
    let changes = |validity: u32| {
        let mut a = a.clone();
        async move {
            a.changes(pb::ChangesRequest {
                mailbox: "Projects".into(),
                since_modseq: 0,
                claim_recent: false,
                uid_validity: validity,
                expunged_only: false,
            })
            .await
            .unwrap()
            .into_inner()
        }
    };
    assert!(changes(first).await.gone, "changes of a re-created mailbox");
    assert!(!changes(second).await.gone);
    assert!(!changes(0).await.gone, "0 asks for no check");
}

async fn fifty_recipients_store_the_body_once(backend: Backend) {
    let t = setup(backend).await;
    let mut rcpts = Vec::new();
    for i in 0..50 {
        let a = format!("user{i}@example.org");
        t.add_account(&a, "pw").await;
        rcpts.push(a);
    }
    let body = message("broadcast", &"x".repeat(4096));
    let refs: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    let r = t.deliver("fifty", &refs, &body).await;
    assert_eq!(r.results.len(), 50);
    assert!(
        r.results
            .iter()
            .all(|x| x.status == pb::RecipientStatus::Accept as i32 && x.uid == 1)
    );
    let stats = t
        .admin()
        .stats(pb::StatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.messages, 50);
    assert_eq!(stats.blobs, 1, "body stored more than once");
    assert_eq!(stats.blob_bytes, body.len() as u64);
    // Every recipient reads the same bytes.
    for a in ["user0@example.org", "user49@example.org"] {
        let mut c = t.login(a, "pw").await;
        let data = read_body(&mut c, "INBOX", 1).await;
        assert_eq!(data, body);
    }
}

async fn read_body(c: &mut mailbox_api::MailboxClient, mailbox: &str, uid: u32) -> Vec<u8> {
    let mut s = c
        .fetch_body(pb::FetchBodyRequest {
            mailbox: mailbox.into(),
            uid,
            offset: 0,
            length: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = s.message().await.unwrap() {
        out.extend(chunk.data);
    }
    out
}

/// Large bodies read back byte for byte; the store keeps them as LZ4
/// blocks (migration 0025, `data_codec` 1), which PostgreSQL stores out of
/// line without compressing them again and sends as they are, so POP3
/// RETR and FETCH BODY[] move the compressed bytes from the database.
async fn large_bodies_read_back_whole_and_lz4_compressed(backend: Backend) {
    let t = setup(backend).await;
    t.add_account("z@example.org", "pw").await;
    let mut text = String::from("Subject: big\r\nMessage-ID: <big@x>\r\n\r\n");
    for i in 0..1500 {
        text.push_str(&format!("line {i} of a body that compresses well\r\n"));
    }
    let body = text.into_bytes();
    t.deliver("big-1", &["z@example.org"], &body).await;
    let mut c = t.login("z@example.org", "pw").await;
    assert_eq!(read_body(&mut c, "INBOX", 1).await, body);
    if let Backend::Postgres = backend {
        use sqlx::Connection;
        let mut db = sqlx::PgConnection::connect(t.url()).await.unwrap();
        let rows: Vec<(i16, Option<String>, i64, i64)> = sqlx::query_as(
            "SELECT data_codec, CAST(pg_column_compression(data) AS TEXT), \
               CAST(octet_length(data) AS BIGINT), size FROM blobs",
        )
        .fetch_all(&mut db)
        .await
        .unwrap();
        assert_eq!(rows.len(), 1);
        let (codec, toast, stored, size) = rows[0].clone();
        assert_eq!((codec, toast, size), (1, None, body.len() as i64));
        assert!(stored < size / 2, "{stored} bytes stored for {size}");
    }
}

async fn repeated_delivery_id_stores_nothing_new(backend: Backend) {
    let t = setup(backend).await;
    t.add_account("c@example.org", "pw").await;
    let body = message("once", "only once");
    let first = t.deliver("same-id", &["c@example.org"], &body).await;
    assert!(!first.duplicate);
    let again = t.deliver("same-id", &["c@example.org"], &body).await;
    assert!(again.duplicate, "second delivery not recognised");
    assert_eq!(
        again.results, first.results,
        "retry returned a different result"
    );
    assert_eq!(again.blob_id, first.blob_id);
    // Concurrent retries of one id also store exactly once.
    let mut handles = Vec::new();
    for _ in 0..8 {
        let mut d = t.delivery();
        let body = message("race", "racing");
        handles.push(tokio::spawn(async move {
            common::deliver_with(&mut d, "race-id", &["c@example.org"], &body)
                .await
                .unwrap()
        }));
    }
    let mut firsts = 0;
    let mut uids = HashSet::new();
    for h in handles {
        let r = h.await.unwrap();
        if !r.duplicate {
            firsts += 1;
        }
        uids.insert(r.results[0].uid);
    }
    assert_eq!(
        firsts, 1,
        "more than one concurrent retry stored the message"
    );
    assert_eq!(uids.len(), 1);
    let mut c = t.login("c@example.org", "pw").await;
    let (_, entries) = select_all(&mut c, "INBOX").await.unwrap();
    assert_eq!(
        entries.len(),
        2,
        "expected exactly the two distinct deliveries"
    );
}

/// What B's account looks like, to compare before and after A's calls.
async fn snapshot(c: &mut mailbox_api::MailboxClient) -> String {
    let list = c
        .list_mailboxes(pb::ListMailboxesRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut out = format!("{:?}\n", list.mailboxes);
    for m in &list.mailboxes {
        if let Ok((st, entries)) = select_all(c, &m.name).await {
            out.push_str(&format!("{} {:?} {:?}\n", m.name, st, entries));
            for e in &entries {
                out.push_str(&format!("{:?}\n", read_body(c, &m.name, e.uid).await.len()));
            }
        }
    }
    out
}

/// Calls every Mailbox RPC once with `c`, naming the mailboxes and UIDs that
/// exist in the *other* account. Returns each call's outcome.
async fn call_every_rpc(
    c: &mut mailbox_api::MailboxClient,
) -> Vec<(&'static str, Result<(), tonic::Status>)> {
    let all = pb::UidSet::of([1, 2, 3]);
    let flags = pb::Flags {
        deleted: true,
        seen: true,
        ..Default::default()
    };
    let mut out: Vec<(&'static str, Result<(), tonic::Status>)> = Vec::new();
    macro_rules! call {
        ($name:literal, $e:expr) => {
            out.push(($name, $e.await.map(|_| ())))
        };
    }
    call!("list", c.list_mailboxes(pb::ListMailboxesRequest {}));
    call!(
        "status",
        c.mailbox_status(pb::MailboxStatusRequest {
            name: "Secret".into()
        })
    );
    call!("select", select_all(c, "INBOX"));
    call!("fetch", async {
        let mut s = c
            .fetch(pb::FetchRequest {
                mailbox: "INBOX".into(),
                uids: Some(all.clone()),
                with_summary: true,
                changed_since: 0,
                with_data: false,
            })
            .await?
            .into_inner();
        while let Some(m) = s.message().await? {
            assert!(m.messages.is_empty(), "fetched another account's messages");
        }
        Ok::<(), tonic::Status>(())
    });
    call!("fetch_body", async {
        let mut s = c
            .fetch_body(pb::FetchBodyRequest {
                mailbox: "INBOX".into(),
                uid: 1,
                offset: 0,
                length: 0,
            })
            .await?
            .into_inner();
        while let Some(chunk) = s.message().await? {
            assert!(chunk.data.is_empty(), "read another account's message");
        }
        Ok::<(), tonic::Status>(())
    });
    call!(
        "store_flags",
        c.store_flags(pb::StoreFlagsRequest {
            mailbox: "INBOX".into(),
            uids: Some(all.clone()),
            mode: pb::FlagsMode::Add as i32,
            flags: Some(flags.clone()),
            unchanged_since: 0,
        })
    );
    call!(
        "copy",
        c.copy(pb::CopyRequest {
            mailbox: "INBOX".into(),
            uids: Some(all.clone()),
            destination: "Secret".into(),
        })
    );
    call!(
        "move",
        c.r#move(pb::CopyRequest {
            mailbox: "INBOX".into(),
            uids: Some(all.clone()),
            destination: "Trash".into(),
        })
    );
    call!(
        "expunge",
        c.expunge(pb::ExpungeRequest {
            mailbox: "INBOX".into(),
            uids: Some(all.clone()),
            ignore_deleted_flag: true,
            lease_id: String::new(),
        })
    );
    call!(
        "append",
        c.append(tokio_stream::iter(vec![
            pb::AppendChunk {
                part: Some(pb::append_chunk::Part::Header(pb::AppendHeader {
                    mailbox: "Secret".into(),
                    ..Default::default()
                })),
            },
            pb::AppendChunk {
                part: Some(pb::append_chunk::Part::Data(message("x", "y"))),
            },
        ]))
    );
    call!(
        "search",
        c.search(pb::SearchRequest {
            mailbox: "INBOX".into(),
            key: None,
        })
    );
    call!("sort", async {
        let r = c
            .sort(pb::SortRequest {
                mailbox: "INBOX".into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        assert!(r.uids.is_empty(), "sorted another account's messages");
        Ok::<(), tonic::Status>(())
    });
    call!("thread", async {
        let r = c
            .thread(pb::ThreadRequest {
                mailbox: "INBOX".into(),
                algorithm: pb::ThreadAlgorithm::References as i32,
                ..Default::default()
            })
            .await?
            .into_inner();
        assert!(r.nodes.is_empty(), "threaded another account's messages");
        Ok::<(), tonic::Status>(())
    });
    call!("quota", c.get_quota(pb::GetQuotaRequest {}));
    call!(
        "acquire",
        c.acquire_maildrop(pb::AcquireMaildropRequest {
            holder: "t".into(),
            ttl_seconds: 60,
            lease_id: String::new(),
        })
    );
    call!(
        "renew",
        c.renew_maildrop(pb::RenewMaildropRequest {
            lease_id: "00".into(),
            ttl_seconds: 60,
        })
    );
    call!(
        "release",
        c.release_maildrop(pb::ReleaseMaildropRequest {
            lease_id: "00".into()
        })
    );
    call!(
        "changes",
        c.changes(pb::ChangesRequest {
            mailbox: "INBOX".into(),
            since_modseq: 0,
            claim_recent: true,
            uid_validity: 0,
            expunged_only: false,
        })
    );
    call!(
        "watch",
        c.watch(pb::WatchRequest {
            mailbox: "INBOX".into(),
            since_modseq: 0,
            claim_recent: true,
        })
    );
    call!(
        "subscribe",
        c.set_subscribed(pb::SetSubscribedRequest {
            name: "Secret".into(),
            subscribed: false,
        })
    );
    call!(
        "rename",
        c.rename_mailbox(pb::RenameMailboxRequest {
            from: "Secret".into(),
            to: "Stolen".into(),
        })
    );
    call!(
        "delete",
        c.delete_mailbox(pb::DeleteMailboxRequest {
            name: "Secret".into()
        })
    );
    call!(
        "create",
        c.create_mailbox(pb::CreateMailboxRequest {
            name: "Secret/Sub".into(),
            special_use: 0,
        })
    );
    call!("logout", c.logout(pb::LogoutRequest {}));
    out
}

async fn tokens_scope_every_mailbox_call_to_their_account(backend: Backend) {
    let t = setup(backend).await;
    t.add_account("alice@example.org", "pw-alice").await;
    t.add_account("bob@example.org", "pw-bob").await;
    let mut bob = t.login("bob@example.org", "pw-bob").await;
    bob.create_mailbox(pb::CreateMailboxRequest {
        name: "Secret".into(),
        special_use: 0,
    })
    .await
    .unwrap();
    for i in 0..3 {
        t.deliver(
            &format!("b{i}"),
            &["bob@example.org"],
            &message("for-bob", "private"),
        )
        .await;
    }
    bob.store_flags(pb::StoreFlagsRequest {
        mailbox: "INBOX".into(),
        uids: Some(pb::UidSet::of([2])),
        mode: pb::FlagsMode::Add as i32,
        flags: Some(pb::Flags {
            flagged: true,
            ..Default::default()
        }),
        unchanged_since: 0,
    })
    .await
    .unwrap();
    let before = snapshot(&mut bob).await;
    let bob_quota = bob
        .get_quota(pb::GetQuotaRequest {})
        .await
        .unwrap()
        .into_inner();

    let mut alice = t.login("alice@example.org", "pw-alice").await;
    let outcomes = call_every_rpc(&mut alice).await;
    assert!(outcomes.len() >= 21, "not every RPC was exercised");
    let after = snapshot(&mut bob).await;
    assert_eq!(before, after, "alice's calls changed bob's account");
    let q = bob
        .get_quota(pb::GetQuotaRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(q, bob_quota);
    // Alice's own calls did act on her own account (the test could fail).
    let alice2 = t.login("alice@example.org", "pw-alice").await;
    let names: Vec<String> = alice2
        .clone()
        .list_mailboxes(pb::ListMailboxesRequest {})
        .await
        .unwrap()
        .into_inner()
        .mailboxes
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert!(names.contains(&"Secret/Sub".to_string()), "{names:?}");
    // Alice's logout ended her session.
    let r = alice.list_mailboxes(pb::ListMailboxesRequest {}).await;
    assert_eq!(r.unwrap_err().code(), Code::Unauthenticated);
}

async fn missing_or_forged_tokens_are_refused(backend: Backend) {
    let t = setup(backend).await;
    t.add_account("bob@example.org", "pw-bob").await;
    t.deliver("m1", &["bob@example.org"], &message("hi", "there"))
        .await;
    let forged = "ab".repeat(32);
    // A real token with one character changed (its account, generation,
    // expiry or MAC, wherever it falls).
    let token = t
        .authenticate("bob@example.org", "pw-bob", "")
        .await
        .unwrap()
        .into_inner()
        .session_token;
    let altered: Vec<String> = [3, 12, 30, token.len() - 1]
        .into_iter()
        .map(|i| {
            let mut b = token.clone().into_bytes();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            String::from_utf8(b).unwrap()
        })
        .collect();
    // A token of another store (another database, another key) for an
    // account of the same id and name.
    let other = setup(backend).await;
    other.add_account("bob@example.org", "pw-bob").await;
    let foreign = other
        .authenticate("bob@example.org", "pw-bob", "")
        .await
        .unwrap()
        .into_inner()
        .session_token;
    let mut cases = vec![
        ("missing", t.anonymous()),
        ("forged", t.with_token(&forged)),
        ("malformed", t.with_token("not-a-token")),
        ("foreign", t.with_token(&foreign)),
    ];
    for a in &altered {
        cases.push(("altered", t.with_token(a)));
    }
    for (label, mut client) in cases {
        let outcomes = call_every_rpc(&mut client).await;
        for (rpc, r) in outcomes {
            let e = r.expect_err(&format!("{label} token accepted by {rpc}"));
            assert_eq!(e.code(), Code::Unauthenticated, "{label} token, {rpc}: {e}");
        }
    }
}

async fn failed_logins_look_alike_and_are_throttled(backend: Backend) {
    let t = start_with(backend, |s| {
        s.max_failures_per_account = 3;
        s.max_failures_per_ip = 5;
    })
    .await;
    t.add_domain("example.org").await;
    t.add_account("dave@example.org", "right").await;
    t.add_account("erin@example.org", "right").await;
    let auth = async |user: &str, pw: &str, ip: &str| t.authenticate(user, pw, ip).await;
    let wrong = auth("dave@example.org", "wrong", "192.0.2.1")
        .await
        .unwrap_err();
    let unknown = auth("nobody@example.org", "wrong", "192.0.2.2")
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);
    assert_eq!(wrong.code(), unknown.code());
    assert_eq!(
        wrong.message(),
        unknown.message(),
        "answers reveal which users exist"
    );

    // Per account: after 3 failures (from different IPs) even the right
    // password is refused for the window.
    auth("dave@example.org", "wrong", "192.0.2.3")
        .await
        .unwrap_err();
    auth("dave@example.org", "wrong", "192.0.2.4")
        .await
        .unwrap_err();
    let e = auth("dave@example.org", "right", "192.0.2.5")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e}");
    // Another account is unaffected.
    auth("erin@example.org", "right", "192.0.2.6")
        .await
        .unwrap();

    // Per IP: failures across accounts from one address add up.
    for i in 0..5 {
        let _ = auth(&format!("guess{i}@example.org"), "x", "198.51.100.9").await;
    }
    let e = auth("erin@example.org", "right", "198.51.100.9")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e}");
    auth("erin@example.org", "right", "198.51.100.10")
        .await
        .unwrap();

    // Names longer than any address (keyed by their digest) count like any
    // other: the per-IP limit holds for them too.
    for i in 0..5 {
        let huge = format!("{}{i}@example.org", "x".repeat(20_000));
        let e = auth(&huge, "x", "203.0.113.7").await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{e}");
    }
    let e = auth("erin@example.org", "right", "203.0.113.7")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e}");
}

/// The throttle's counts are shared through the database: failures made
/// on one replica refuse the account on another. On PostgreSQL each
/// replica answers from its in-memory mirror, kept by NOTIFY, so a login
/// asks the database nothing about failures; on SQLite it reads them.
async fn failed_logins_count_on_every_replica(backend: Backend) {
    let a = start_with(backend, |s| {
        s.max_failures_per_account = 3;
        s.max_failures_per_ip = 100;
    })
    .await;
    a.add_domain("example.org").await;
    a.add_account("fay@example.org", "right").await;
    let b = a
        .replica_with(|s| {
            s.max_failures_per_account = 3;
            s.max_failures_per_ip = 100;
        })
        .await;
    let auth =
        async |t: &TestStore, pw: &str, ip: &str| t.authenticate("fay@example.org", pw, ip).await;
    // Two failures on a, one on b: three in the shared record.
    auth(&a, "wrong", "192.0.2.1").await.unwrap_err();
    auth(&a, "wrong", "192.0.2.2").await.unwrap_err();
    auth(&b, "wrong", "192.0.2.3").await.unwrap_err();
    // Each replica comes to count all three (on PostgreSQL, from its
    // mirror once the notifications arrived; the deadline only guards
    // against a hang).
    for (name, t) in [("a", &a), ("b", &b)] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let (acct, _, mirrored) = t
                .store
                .login_failures("fay@example.org", "192.0.2.9")
                .await
                .unwrap();
            let want_mirror = matches!(backend, Backend::Postgres);
            if acct == 3 && mirrored == want_mirror {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "replica {name} counts {acct} failures (mirror: {mirrored})"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    // So both refuse even the right password for the window.
    for t in [&a, &b] {
        let e = auth(t, "right", "192.0.2.4").await.unwrap_err();
        assert_eq!(e.code(), Code::ResourceExhausted, "{e}");
    }
}

const MULTIPART: &str = "From: =?utf-8?q?Jos=C3=A9?= <jose@remote.example>\r\n\
To: Ana <ana@example.org>, bob@example.org\r\n\
Subject: =?utf-8?B?UmVwb3J0IMOcYmVyc2ljaHQ=?=\r\n\
Date: Wed, 04 Jan 2023 09:14:00 -0800\r\n\
Message-ID: <abc.123@remote.example>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"outer\"\r\n\
\r\n\
preamble\r\n\
--outer\r\n\
Content-Type: multipart/alternative; boundary=\"inner\"\r\n\
\r\n\
--inner\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
Hello =C3=BCber\r\n\
second line\r\n\
--inner\r\n\
Content-Type: text/html; charset=utf-8\r\n\
\r\n\
<p>Hello</p>\r\n\
--inner--\r\n\
--outer\r\n\
Content-Type: application/pdf; name=\"r.pdf\"\r\n\
Content-Disposition: attachment; filename=\"r.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
JVBERi0xLjQK\r\n\
--outer--\r\n";

async fn summary_of_multipart_message_is_parsed_at_delivery(backend: Backend) {
    let t = setup(backend).await;
    t.add_account("ana@example.org", "pw").await;
    t.deliver("mp", &["ana@example.org"], MULTIPART.as_bytes())
        .await;
    let mut ana = t.login("ana@example.org", "pw").await;
    let mut s = ana
        .fetch(pb::FetchRequest {
            mailbox: "INBOX".into(),
            uids: Some(pb::UidSet::of([1])),
            with_summary: true,
            changed_since: 0,
            with_data: true,
        })
        .await
        .unwrap()
        .into_inner();
    let meta = s.message().await.unwrap().unwrap().messages.remove(0);
    assert_eq!(meta.size, MULTIPART.len() as u64);
    assert_eq!(
        meta.data.as_deref(),
        Some(MULTIPART.as_bytes()),
        "small messages come inline"
    );
    // A message above the inline limit comes without data (FetchBody).
    let big = message("big", &"x".repeat(300 * 1024));
    t.deliver("big", &["ana@example.org"], &big).await;
    let mut s = ana
        .fetch(pb::FetchRequest {
            mailbox: "INBOX".into(),
            uids: Some(pb::UidSet::of([2])),
            with_summary: false,
            changed_since: 0,
            with_data: true,
        })
        .await
        .unwrap()
        .into_inner();
    let m = s.message().await.unwrap().unwrap().messages.remove(0);
    assert!(m.data.is_none() && m.size > mailbox_api::INLINE_DATA_LIMIT);
    let summary = meta.summary.unwrap();
    let env = summary.envelope.unwrap();
    let b = |s: &str| Some(s.as_bytes().to_vec());
    // Raw header text: encoded words are not decoded in ENVELOPE.
    assert_eq!(env.subject, b("=?utf-8?B?UmVwb3J0IMOcYmVyc2ljaHQ=?="));
    assert_eq!(env.date, b("Wed, 04 Jan 2023 09:14:00 -0800"));
    assert_eq!(env.message_id, b("<abc.123@remote.example>"));
    let from = &env.from.unwrap().addresses[0];
    assert_eq!(from.name, b("=?utf-8?q?Jos=C3=A9?="));
    assert_eq!(
        (from.mailbox.clone(), from.host.clone()),
        (b("jose"), b("remote.example"))
    );
    // Sender and Reply-To default to From.
    assert_eq!(env.sender.unwrap().addresses[0].mailbox, b("jose"));
    let to = env.to.unwrap().addresses;
    assert_eq!(to.len(), 2);
    assert_eq!(to[0].name, b("Ana"));
    assert_eq!(to[1].name, None);
    assert!(env.cc.is_none());

    let body = summary.body.unwrap();
    assert_eq!(body.media_type.to_ascii_lowercase(), b"multipart");
    assert_eq!(body.media_subtype.to_ascii_lowercase(), b"mixed");
    assert_eq!(body.parts.len(), 2);
    let alt = &body.parts[0];
    assert_eq!(alt.media_subtype.to_ascii_lowercase(), b"alternative");
    assert_eq!(alt.parts.len(), 2);
    let plain = &alt.parts[0];
    assert_eq!(plain.media_subtype.to_ascii_lowercase(), b"plain");
    assert_eq!(plain.encoding.to_ascii_lowercase(), b"quoted-printable");
    assert_eq!(plain.size, "Hello =C3=BCber\r\nsecond line".len() as u64);
    assert_eq!(plain.lines, 1);
    assert_eq!(
        plain.decoded_size,
        Some("Hello über\r\nsecond line".len() as u64)
    );
    let raw = MULTIPART.as_bytes();
    assert_eq!(
        &raw[plain.body_start as usize..plain.body_end as usize],
        b"Hello =C3=BCber\r\nsecond line"
    );
    let pdf = &body.parts[1];
    assert_eq!(pdf.media_type.to_ascii_lowercase(), b"application");
    assert_eq!(pdf.media_subtype.to_ascii_lowercase(), b"pdf");
    assert_eq!(pdf.size, 12);
    assert_eq!(pdf.decoded_size, Some(9));
    let disp = pdf.disposition.as_ref().unwrap();
    assert_eq!(disp.kind.to_ascii_lowercase(), b"attachment");
    assert_eq!(disp.params[0].value, b"r.pdf");
    // Decoded fields for SEARCH.
    let search = summary.search.unwrap();
    assert_eq!(search.subject, "Report Übersicht");
    assert!(search.from.contains("José"), "{}", search.from);
    assert_eq!(search.sent_date, 1_672_852_440);

    // And SEARCH uses them.
    let found = ana
        .search(pb::SearchRequest {
            mailbox: "INBOX".into(),
            key: Some(pb::SearchKey {
                key: Some(pb::search_key::Key::Header(pb::HeaderMatch {
                    name: "Subject".into(),
                    value: "Übersicht".into(),
                })),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        found.uids,
        vec![1],
        "decoded (RFC 2047) subject not searched"
    );
    // Non-ASCII case folding is not promised; the ASCII part must match.
    let found2 = ana
        .search(pb::SearchRequest {
            mailbox: "INBOX".into(),
            key: Some(pb::SearchKey {
                key: Some(pb::search_key::Key::Header(pb::HeaderMatch {
                    name: "subject".into(),
                    value: "REPORT".into(),
                })),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found2.uids, vec![1]);
}

async fn recipients_are_checked(backend: Backend) {
    let t = setup(backend).await;
    t.add_account("full@example.org", "pw").await;
    t.add_account("real@example.org", "pw").await;
    let mut admin = t.admin();
    admin
        .set_quota(pb::SetQuotaRequest {
            address: "full@example.org".into(),
            quota_bytes: 100,
            quota_messages: None,
        })
        .await
        .unwrap();
    admin
        .add_alias(pb::AddAliasRequest {
            alias: "postmaster@example.org".into(),
            target: "real@example.org".into(),
        })
        .await
        .unwrap();
    let mut d = t.delivery();
    let check = |a: &str, size: u64| {
        let req = pb::CheckRecipientRequest {
            address: a.into(),
            size_hint: size,
        };
        let mut d = d.clone();
        async move { d.check_recipient(req).await.unwrap().into_inner() }
    };
    assert_eq!(
        check("real@example.org", 10).await.status,
        pb::RecipientStatus::Accept as i32
    );
    assert_eq!(
        check("REAL@Example.ORG", 10).await.status,
        pb::RecipientStatus::Accept as i32
    );
    assert_eq!(
        check("nobody@example.org", 10).await.status,
        pb::RecipientStatus::UnknownUser as i32
    );
    assert_eq!(
        check("x@elsewhere.example", 10).await.status,
        pb::RecipientStatus::NotLocal as i32
    );
    assert_eq!(
        check("full@example.org", 1000).await.status,
        pb::RecipientStatus::OverQuota as i32
    );
    let alias = check("postmaster@example.org", 10).await;
    assert_eq!(alias.status, pb::RecipientStatus::Accept as i32);
    assert_eq!(alias.canonical_address, "real@example.org");
    // Delivery to an alias and its target stores one copy.
    let r = common::deliver_with(
        &mut d,
        "alias",
        &[
            "postmaster@example.org",
            "real@example.org",
            "nobody@example.org",
            "full@example.org",
        ],
        &message("a", &"z".repeat(200)),
    )
    .await
    .unwrap();
    let statuses: Vec<i32> = r.results.iter().map(|x| x.status).collect();
    assert_eq!(
        statuses,
        vec![
            pb::RecipientStatus::Accept as i32,
            pb::RecipientStatus::Accept as i32,
            pb::RecipientStatus::UnknownUser as i32,
            pb::RecipientStatus::OverQuota as i32
        ]
    );
    let mut real = t.login("real@example.org", "pw").await;
    assert_eq!(select_all(&mut real, "INBOX").await.unwrap().1.len(), 1);
}

/// A STORE naming only system flags leaves a message's keywords alone
/// (+FLAGS, -FLAGS) or clears them (FLAGS), and takes a new MODSEQ only
/// where something changed (PostgreSQL runs a statement without keyword
/// arithmetic for these).
async fn system_flag_stores_keep_or_clear_keywords(backend: Backend) {
    let t = setup(backend).await;
    t.add_account("k@example.org", "pw").await;
    for i in 0..3 {
        t.deliver(
            &format!("k{i}"),
            &["k@example.org"],
            &message(&format!("m{i}"), "b"),
        )
        .await;
    }
    let mut c = t.login("k@example.org", "pw").await;
    let store = |mode: pb::FlagsMode, uids: Vec<u32>, flags: pb::Flags| pb::StoreFlagsRequest {
        mailbox: "INBOX".into(),
        uids: Some(pb::UidSet::of(uids)),
        mode: mode as i32,
        flags: Some(flags),
        unchanged_since: 0,
    };
    c.store_flags(store(
        pb::FlagsMode::Add,
        vec![1, 2, 3],
        pb::Flags {
            flagged: true,
            keywords: vec!["$B".into(), "$A".into()],
            ..Default::default()
        },
    ))
    .await
    .unwrap();
    let state = |entries: &[pb::MessageEntry]| -> Vec<(u32, u64, bool, bool, bool, Vec<String>)> {
        entries
            .iter()
            .map(|e| {
                let f = e.flags.clone().unwrap_or_default();
                let mut kw = f.keywords.clone();
                kw.sort();
                (e.uid, e.modseq, f.seen, f.flagged, f.answered, kw)
            })
            .collect()
    };
    let (_, before) = select_all(&mut c, "INBOX").await.unwrap();
    let before = state(&before);
    let ab = vec!["$A".to_string(), "$B".to_string()];
    assert!(before.iter().all(|m| m.3 && m.5 == ab), "{before:?}");
    let answered = || pb::Flags {
        answered: true,
        ..Default::default()
    };
    let seen = pb::Flags {
        seen: true,
        ..Default::default()
    };
    for (mode, uid, flags) in [
        // +FLAGS \Seen on 1: keywords kept, a new MODSEQ.
        (pb::FlagsMode::Add, 1, seen),
        // -FLAGS \Answered on 2 (not set): nothing changes, not even MODSEQ.
        (pb::FlagsMode::Remove, 2, answered()),
        // FLAGS (\Answered) on 3: \Flagged and both keywords gone.
        (pb::FlagsMode::Replace, 3, answered()),
    ] {
        c.store_flags(store(mode, vec![uid], flags)).await.unwrap();
    }
    let (_, mid) = select_all(&mut c, "INBOX").await.unwrap();
    let mid = state(&mid);
    assert_eq!(
        (mid[0].2, mid[0].3, &mid[0].5),
        (true, true, &ab),
        "{mid:?}"
    );
    assert!(
        mid[0].1 > before[0].1,
        "a changed message takes a new MODSEQ"
    );
    assert_eq!(mid[1], before[1], "a STORE that changed nothing changed it");
    assert_eq!(
        (mid[2].3, mid[2].4, mid[2].5.is_empty()),
        (false, true, true),
        "{mid:?}"
    );
    assert!(mid[2].1 > before[2].1);
    // FLAGS (\Answered) again: the same flags, no new MODSEQ.
    c.store_flags(store(pb::FlagsMode::Replace, vec![3], answered()))
        .await
        .unwrap();
    let (_, after) = select_all(&mut c, "INBOX").await.unwrap();
    assert_eq!(state(&after), mid);
}

async fn flags_copy_move_expunge_and_changes(backend: Backend) {
    let t = setup(backend).await;
    t.add_account("f@example.org", "pw").await;
    for i in 0..4 {
        t.deliver(
            &format!("f{i}"),
            &["f@example.org"],
            &message(&format!("m{i}"), "b"),
        )
        .await;
    }
    let mut c = t.login("f@example.org", "pw").await;
    let (st0, _) = select_all(&mut c, "INBOX").await.unwrap();
    let r = c
        .store_flags(pb::StoreFlagsRequest {
            mailbox: "INBOX".into(),
            uids: Some(pb::UidSet::of([1, 3])),
            mode: pb::FlagsMode::Add as i32,
            flags: Some(pb::Flags {
                deleted: true,
                keywords: vec!["$Forwarded".into()],
                ..Default::default()
            }),
            unchanged_since: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.updated.len(), 2);
    assert!(r.updated.iter().all(|e| e.modseq > st0.highest_modseq));
    // UNCHANGEDSINCE below the new MODSEQ fails for those messages.
    let r2 = c
        .store_flags(pb::StoreFlagsRequest {
            mailbox: "INBOX".into(),
            uids: Some(pb::UidSet::of([1, 2])),
            mode: pb::FlagsMode::Add as i32,
            flags: Some(pb::Flags {
                seen: true,
                ..Default::default()
            }),
            unchanged_since: st0.highest_modseq,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r2.modified, vec![1]);
    assert_eq!(
        r2.updated.iter().map(|e| e.uid).collect::<Vec<_>>(),
        vec![2]
    );
    // Unseen search sees 1, 3, 4.
    let unseen = c
        .search(pb::SearchRequest {
            mailbox: "INBOX".into(),
            key: Some(pb::SearchKey {
                key: Some(pb::search_key::Key::Unflag("\\Seen".into())),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unseen.uids, vec![1, 3, 4]);
    let copied = c
        .copy(pb::CopyRequest {
            mailbox: "INBOX".into(),
            uids: Some(pb::UidSet::of([2, 4])),
            destination: "Archive".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(copied.source_uids, vec![2, 4]);
    assert_eq!(copied.destination_uids, vec![1, 2]);
    // Into a mailbox that is not there: NotFound (the gateway's TRYCREATE),
    // nothing written; of UIDs that are not there: an empty answer.
    let copy = |uids: Vec<u32>, destination: &str| {
        let mut c = c.clone();
        let destination = destination.to_string();
        async move {
            c.copy(pb::CopyRequest {
                mailbox: "INBOX".into(),
                uids: Some(pb::UidSet::of(uids)),
                destination,
            })
            .await
        }
    };
    let missing = copy(vec![2], "Nowhere").await.unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let none = copy(vec![90, 91], "Archive").await.unwrap().into_inner();
    assert!(none.source_uids.is_empty() && none.destination_uids.is_empty());
    assert_eq!(
        none.destination_uid_validity,
        copied.destination_uid_validity
    );
    let (_, archived) = select_all(&mut c, "Archive").await.unwrap();
    assert_eq!(
        archived.iter().map(|e| e.uid).collect::<Vec<_>>(),
        vec![1, 2]
    );
    let moved = c
        .r#move(pb::CopyRequest {
            mailbox: "INBOX".into(),
            uids: Some(pb::UidSet::of([4])),
            destination: "Trash".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(moved.destination_uids, vec![1]);
    let ex = c
        .expunge(pb::ExpungeRequest {
            mailbox: "INBOX".into(),
            uids: None,
            ignore_deleted_flag: false,
            lease_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ex.expunged, vec![1, 3]);
    let (_, left) = select_all(&mut c, "INBOX").await.unwrap();
    assert_eq!(left.iter().map(|e| e.uid).collect::<Vec<_>>(), vec![2]);
    let ch = c
        .changes(pb::ChangesRequest {
            mailbox: "INBOX".into(),
            since_modseq: st0.highest_modseq,
            claim_recent: false,
            uid_validity: 0,
            expunged_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ch.expunged, vec![1, 3, 4]);
    assert_eq!(
        ch.changed.iter().map(|e| e.uid).collect::<Vec<_>>(),
        vec![2]
    );
    // The same answer in parts: only the expunges; nothing since the
    // latest MODSEQ; a UIDVALIDITY that is not the mailbox's: gone.
    let changes = |since, uid_validity, expunged_only| {
        let mut c = c.clone();
        async move {
            c.changes(pb::ChangesRequest {
                mailbox: "INBOX".into(),
                since_modseq: since,
                claim_recent: false,
                uid_validity,
                expunged_only,
            })
            .await
            .unwrap()
            .into_inner()
        }
    };
    let only = changes(st0.highest_modseq, st0.uid_validity, true).await;
    assert_eq!(only.expunged, vec![1, 3, 4]);
    assert!(only.changed.is_empty(), "expunged_only: {:?}", only.changed);
    assert_eq!(only.highest_modseq, ch.highest_modseq);
    let none = changes(ch.highest_modseq, st0.uid_validity, false).await;
    assert!(none.changed.is_empty() && none.expunged.is_empty() && !none.gone);
    assert_eq!(none.uid_next, ch.uid_next);
    let gone = changes(0, st0.uid_validity + 1, false).await;
    assert!(gone.gone && gone.changed.is_empty() && gone.expunged.is_empty());
    let missing = c
        .changes(pb::ChangesRequest {
            mailbox: "Nowhere".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let q = c
        .get_quota(pb::GetQuotaRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(q.messages, 4, "1 in INBOX + 2 in Archive + 1 in Trash");
}

/// RFC 3501 2.3.2: a message is \Recent in one session only. Sessions
/// claim it at SELECT and through Changes/Watch while deliveries race
/// them; every message ends up claimed exactly once, and EXAMINE claims
/// nothing.
async fn recent_is_claimed_by_exactly_one_session(backend: Backend) {
    let t = setup(backend).await;
    t.add_account("r@example.org", "pw").await;
    for i in 0..5 {
        t.deliver(&format!("r0-{i}"), &["r@example.org"], &message("r", "x"))
            .await;
    }
    let mut first = t.login("r@example.org", "pw").await;
    let mut examine = first
        .select(pb::SelectRequest {
            name: "INBOX".into(),
            read_only: true,
        })
        .await
        .unwrap()
        .into_inner();
    let Some(pb::select_response::Part::Status(st)) =
        examine.message().await.unwrap().unwrap().part
    else {
        panic!("no status first")
    };
    assert_eq!(st.recent, 5, "EXAMINE reports the unclaimed messages");
    drop(examine);

    const SESSIONS: usize = 8;
    const MORE: usize = 40;
    let mut tasks = Vec::new();
    for s in 0..SESSIONS {
        let mut c = t.login("r@example.org", "pw").await;
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for round in 0..6 {
                if (s + round) % 2 == 0 {
                    let (st, entries) = select_with(&mut c, "INBOX", false).await.unwrap();
                    let from = entries.len() - st.recent as usize;
                    mine.extend(entries[from..].iter().map(|e| e.uid));
                } else {
                    let ch = c
                        .changes(pb::ChangesRequest {
                            mailbox: "INBOX".into(),
                            since_modseq: 0,
                            claim_recent: true,
                            uid_validity: 0,
                            expunged_only: false,
                        })
                        .await
                        .unwrap()
                        .into_inner();
                    mine.extend(
                        ch.changed
                            .iter()
                            .map(|e| e.uid)
                            .filter(|u| (ch.recent_from..ch.recent_to).contains(u)),
                    );
                }
                tokio::task::yield_now().await;
            }
            mine
        }));
    }
    for i in 0..MORE {
        t.deliver(&format!("r1-{i}"), &["r@example.org"], &message("r", "y"))
            .await;
    }
    let mut seen = HashSet::new();
    for task in tasks {
        for uid in task.await.unwrap() {
            assert!(seen.insert(uid), "UID {uid} was \\Recent in two sessions");
        }
    }
    // Whatever the racing sessions left is claimed by the next one, once.
    let (st, entries) = select_with(&mut first, "INBOX", false).await.unwrap();
    let from = entries.len() - st.recent as usize;
    for e in &entries[from..] {
        assert!(seen.insert(e.uid), "UID {} claimed twice", e.uid);
    }
    assert_eq!(seen.len(), 5 + MORE, "every message was recent somewhere");
    let (st, _) = select_with(&mut first, "INBOX", false).await.unwrap();
    assert_eq!(st.recent, 0, "nothing is left to claim");
}

/// Tells when replica B has heard (PostgreSQL NOTIFY) of every change
/// replica A made so far. B hears A's changes on one listener in the order
/// A committed them. A watcher on B of another account's mailbox list
/// tells when B has heard of a METADATA change of that account made on A
/// (the one kind of tick that says metadata; B's periodic re-reads and
/// list changes do not): then B has also heard of every change A made
/// before it. No clock in this. Nothing to wait for on SQLite, which has
/// no change feed between replicas.
struct Hearing {
    ticks: Option<tonic::Streaming<pb::WatchMailboxListResponse>>,
}

impl Hearing {
    /// Makes the account `w@example.org` for its ticks (PostgreSQL).
    async fn start(a: &TestStore, b: &TestStore, backend: Backend) -> Self {
        let mut ticks = None;
        if matches!(backend, Backend::Postgres) {
            a.add_account("w@example.org", "pw").await;
            ticks = Some(
                b.login("w@example.org", "pw")
                    .await
                    .watch_mailbox_list(pb::WatchMailboxListRequest {})
                    .await
                    .unwrap()
                    .into_inner(),
            );
        }
        Self { ticks }
    }

    /// Returns once B has heard of every change `a` made before the call.
    async fn heard(&mut self, a: &TestStore, note: &str) {
        let Some(ticks) = &mut self.ticks else { return };
        a.login("w@example.org", "pw")
            .await
            .set_metadata(pb::SetMetadataRequest {
                mailbox: String::new(),
                entries: vec![pb::MetadataEntry {
                    name: "/private/comment".into(),
                    value: note.as_bytes().to_vec(),
                    remove: false,
                }],
            })
            .await
            .unwrap();
        loop {
            let tick = tokio::time::timeout(std::time::Duration::from_secs(60), ticks.message())
                .await
                .expect("B hears A's METADATA change (a guard against hanging)")
                .unwrap()
                .expect("the stream goes on");
            if tick.metadata {
                return;
            }
        }
    }
}

/// The verified-credential cache and signed sessions (DESIGN.md 8) across
/// two replicas: a changed password is refused on the other replica once
/// it has heard of the change (PostgreSQL: NOTIFY, in the change's own
/// transaction) and at once on SQLite (where every login reads its
/// account); a wrong password is never served from the cache; a disabled
/// account cannot log in and its live sessions stop.
async fn login_caches_never_outlive_a_change(backend: Backend) {
    let a = setup(backend).await;
    let b = a.replica().await;
    a.add_account("c@example.org", "old-password").await;
    let login = |t: &TestStore, pw: &str| {
        let mut anon = t.anonymous();
        let pw = pw.to_string();
        async move {
            anon.authenticate(pb::AuthenticateRequest {
                username: "c@example.org".into(),
                password: pw,
                client_ip: "127.0.0.1".into(),
                protocol: "test".into(),
            })
            .await
            .map(|r| r.into_inner().session_token)
        }
    };
    let pg = matches!(backend, Backend::Postgres);
    let mut hearing = Hearing::start(&a, &b, backend).await;
    // Verified on both replicas, so both cache it.
    login(&a, "old-password").await.unwrap();
    login(&b, "old-password").await.unwrap();
    login(&b, "old-password").await.unwrap();
    let e = login(&b, "Old-password").await.unwrap_err();
    assert_eq!(
        e.code(),
        Code::Unauthenticated,
        "wrong password after a cached one"
    );
    let token = login(&b, "old-password").await.unwrap();
    b.with_token(&token)
        .list_mailboxes(pb::ListMailboxesRequest {})
        .await
        .unwrap();

    a.admin()
        .set_password(pb::SetPasswordRequest {
            address: "c@example.org".into(),
            password: "new-password".into(),
        })
        .await
        .unwrap();
    let e = login(&a, "old-password").await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "old password on A");
    hearing.heard(&a, "password").await;
    let e = login(&b, "old-password").await.unwrap_err();
    assert_eq!(
        e.code(),
        Code::Unauthenticated,
        "old password refused on B once B heard of the change"
    );
    // The new password ended c's sessions (on SQLite, B would take up to
    // 5 s to read c again, as below for the disabling).
    let replicas = if pg {
        vec![("A", &a), ("B", &b)]
    } else {
        vec![("A", &a)]
    };
    for (name, t) in replicas {
        let e = t
            .with_token(&token)
            .list_mailboxes(pb::ListMailboxesRequest {})
            .await
            .expect_err(&format!("a session of the old password goes on on {name}"));
        assert_eq!(e.code(), Code::Unauthenticated);
    }
    // c gets a new one on B, trusted there once used.
    let token = login(&b, "new-password").await.unwrap();
    let mut c = b.with_token(&token);
    c.list_mailboxes(pb::ListMailboxesRequest {}).await.unwrap();
    login(&b, "new-password").await.unwrap();

    a.admin()
        .set_account_disabled(pb::SetAccountDisabledRequest {
            address: "c@example.org".into(),
            disabled: true,
        })
        .await
        .unwrap();
    assert_eq!(
        login(&a, "new-password").await.unwrap_err().code(),
        Code::Unauthenticated,
        "a disabled account cannot log in on A"
    );
    if pg {
        // B trusts what it read of c until it hears of a change: once B
        // has heard of a change A made after the disabling, c can neither
        // log in there nor make a call with its live session.
        hearing.heard(&a, "disabled").await;
        assert_eq!(
            login(&b, "new-password").await.unwrap_err().code(),
            Code::Unauthenticated,
            "a disabled account cannot log in on B, cached or not"
        );
        let e = c
            .list_mailboxes(pb::ListMailboxesRequest {})
            .await
            .expect_err("a disabled account's session still works on B after B heard of it");
        assert_eq!(e.code(), Code::Unauthenticated);
    } else {
        assert_eq!(
            login(&b, "new-password").await.unwrap_err().code(),
            Code::Unauthenticated,
            "a disabled account cannot log in on B, cached or not"
        );
        // Without a change feed between replicas, at the latest after B
        // trusts what it read of the account (5 s). The limit is a guard
        // against hanging, not the lifetime measured.
        let started = std::time::Instant::now();
        loop {
            match c.list_mailboxes(pb::ListMailboxesRequest {}).await {
                Err(e) => {
                    assert_eq!(e.code(), Code::Unauthenticated);
                    break;
                }
                Ok(_) => {
                    assert!(
                        started.elapsed() < std::time::Duration::from_secs(60),
                        "a disabled account's session still works on B after a minute"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
    // Enabled again: its sessions of before stay ended (the disabling
    // moved the generation on); a new login works on both.
    a.admin()
        .set_account_disabled(pb::SetAccountDisabledRequest {
            address: "c@example.org".into(),
            disabled: false,
        })
        .await
        .unwrap();
    hearing.heard(&a, "enabled").await;
    for t in [&a, &b] {
        let e = c
            .list_mailboxes(pb::ListMailboxesRequest {})
            .await
            .expect_err("a session from before the disabling came back");
        assert_eq!(e.code(), Code::Unauthenticated);
        let token = login(t, "new-password").await.unwrap();
        t.with_token(&token)
            .list_mailboxes(pb::ListMailboxesRequest {})
            .await
            .unwrap();
    }
}

async fn watch_streams_changes(backend: Backend) {
    let t = setup(backend).await;
    t.add_account("w@example.org", "pw").await;
    let mut c = t.login("w@example.org", "pw").await;
    let mut stream = c
        .watch(pb::WatchRequest {
            mailbox: "INBOX".into(),
            since_modseq: 0,
            claim_recent: false,
        })
        .await
        .unwrap()
        .into_inner();
    t.deliver("w1", &["w@example.org"], &message("watch", "me"))
        .await;
    let ev = tokio::time::timeout(std::time::Duration::from_secs(10), stream.message())
        .await
        .expect("no change event within 10 s")
        .unwrap()
        .unwrap();
    assert_eq!(ev.changed.len(), 1);
    assert_eq!(ev.changed[0].uid, 1);
    c.store_flags(pb::StoreFlagsRequest {
        mailbox: "INBOX".into(),
        uids: Some(pb::UidSet::of([1])),
        mode: pb::FlagsMode::Add as i32,
        flags: Some(pb::Flags {
            seen: true,
            ..Default::default()
        }),
        unchanged_since: 0,
    })
    .await
    .unwrap();
    let ev = tokio::time::timeout(std::time::Duration::from_secs(10), stream.message())
        .await
        .expect("no flag event")
        .unwrap()
        .unwrap();
    assert!(ev.changed[0].flags.as_ref().unwrap().seen);
    c.expunge(pb::ExpungeRequest {
        mailbox: "INBOX".into(),
        uids: Some(pb::UidSet::of([1])),
        ignore_deleted_flag: true,
        lease_id: String::new(),
    })
    .await
    .unwrap();
    let ev = tokio::time::timeout(std::time::Duration::from_secs(10), stream.message())
        .await
        .expect("no expunge event")
        .unwrap()
        .unwrap();
    assert_eq!(ev.expunged, vec![1]);
}

async fn maildrop_lease_is_exclusive(backend: Backend) {
    let t = setup(backend).await;
    t.add_account("p@example.org", "pw").await;
    t.deliver("p1", &["p@example.org"], &message("pop", "me"))
        .await;
    let mut s1 = t.login("p@example.org", "pw").await;
    let mut s2 = t.login("p@example.org", "pw").await;
    let acquire = |holder: &str| pb::AcquireMaildropRequest {
        holder: holder.into(),
        ttl_seconds: 120,
        lease_id: String::new(),
    };
    let l1 = s1
        .acquire_maildrop(acquire("one"))
        .await
        .unwrap()
        .into_inner();
    assert!(!l1.in_use && !l1.lease_id.is_empty());
    let l2 = s2
        .acquire_maildrop(acquire("two"))
        .await
        .unwrap()
        .into_inner();
    assert!(l2.in_use, "second session got the maildrop");
    // Expunge with someone else's lease is refused.
    let e = s2
        .expunge(pb::ExpungeRequest {
            mailbox: "INBOX".into(),
            uids: Some(pb::UidSet::of([1])),
            ignore_deleted_flag: true,
            lease_id: "ff".repeat(16),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(
        s1.renew_maildrop(pb::RenewMaildropRequest {
            lease_id: l1.lease_id.clone(),
            ttl_seconds: 120
        })
        .await
        .unwrap()
        .into_inner()
        .held
    );
    s1.release_maildrop(pb::ReleaseMaildropRequest {
        lease_id: l1.lease_id.clone(),
    })
    .await
    .unwrap();
    let l3 = s2
        .acquire_maildrop(acquire("two"))
        .await
        .unwrap()
        .into_inner();
    assert!(!l3.in_use);
    let ex = s2
        .expunge(pb::ExpungeRequest {
            mailbox: "INBOX".into(),
            uids: Some(pb::UidSet::of([1])),
            ignore_deleted_flag: true,
            lease_id: l3.lease_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ex.expunged, vec![1]);
    let l3_id = l3.lease_id;

    // A lease whose holder died (never renewed nor released) expires.
    s2.release_maildrop(pb::ReleaseMaildropRequest {
        lease_id: l3_id.clone(),
    })
    .await
    .unwrap();
    let mut dying = t.login("p@example.org", "pw").await;
    let short = dying
        .acquire_maildrop(pb::AcquireMaildropRequest {
            holder: "dies".into(),
            ttl_seconds: 1,
            lease_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!short.in_use);
    let mut next = t.login("p@example.org", "pw").await;
    assert!(
        next.acquire_maildrop(acquire("next"))
            .await
            .unwrap()
            .into_inner()
            .in_use
    );
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    let after = next
        .acquire_maildrop(acquire("next"))
        .await
        .unwrap()
        .into_inner();
    assert!(!after.in_use, "an expired lease still blocks the maildrop");
    next.release_maildrop(pb::ReleaseMaildropRequest {
        lease_id: after.lease_id,
    })
    .await
    .unwrap();

    // A lease id the caller chose: taking it again under that id (a retry
    // whose first answer was lost) succeeds, under another id it does not;
    // an id that is too short or not plain is refused.
    let mine = "0f6c1b1e-8c53-4b7e-9a55-0c2b6f3e9d11";
    let chosen = |id: &str| pb::AcquireMaildropRequest {
        holder: "chosen".into(),
        ttl_seconds: 120,
        lease_id: id.into(),
    };
    let first = s1
        .acquire_maildrop(chosen(mine))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((first.in_use, first.lease_id.as_str()), (false, mine));
    let again = s1
        .acquire_maildrop(chosen(mine))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((again.in_use, again.lease_id.as_str()), (false, mine));
    let other = s2
        .acquire_maildrop(chosen("11111111-2222-3333-4444-555555555555"))
        .await
        .unwrap()
        .into_inner();
    assert!(other.in_use, "another id took a held maildrop");
    for bad in ["short", "has spaces in it, sixteen+", &"x".repeat(129)] {
        let e = s2.acquire_maildrop(chosen(bad)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{bad}");
    }
}

async fn service_secret_is_required_when_configured(backend: Backend) {
    let t = start_with(backend, |s| {
        s.service_secret = Some("a-long-enough-shared-secret".into())
    })
    .await;
    // The harness's clients carry the secret.
    t.add_domain("example.org").await;
    let bare = mailbox_api::admin_client(t.channel(), mailbox_api::CallAuth::default());
    let e = bare
        .clone()
        .list_domains(pb::ListDomainsRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let wrong = mailbox_api::admin_client(
        t.channel(),
        mailbox_api::CallAuth::new(Some("a-long-enough-wrong-secret!")).unwrap(),
    );
    let e = wrong
        .clone()
        .list_domains(pb::ListDomainsRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let domains = t
        .admin()
        .list_domains(pb::ListDomainsRequest {})
        .await
        .unwrap()
        .into_inner()
        .domains;
    assert_eq!(domains, vec!["example.org"]);
}

async fn mailbox_hierarchy_operations(backend: Backend) {
    let t = setup(backend).await;
    t.add_account("h@example.org", "pw").await;
    let mut c = t.login("h@example.org", "pw").await;
    let names = |l: pb::ListMailboxesResponse| -> Vec<String> {
        l.mailboxes.into_iter().map(|m| m.name).collect()
    };
    let initial = names(
        c.list_mailboxes(pb::ListMailboxesRequest {})
            .await
            .unwrap()
            .into_inner(),
    );
    for n in ["INBOX", "Drafts", "Sent", "Trash", "Junk", "Archive"] {
        assert!(initial.contains(&n.to_string()), "{n} missing: {initial:?}");
    }
    c.create_mailbox(pb::CreateMailboxRequest {
        name: "a/b/c".into(),
        special_use: 0,
    })
    .await
    .unwrap();
    let e = c
        .create_mailbox(pb::CreateMailboxRequest {
            name: "a/b".into(),
            special_use: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    c.rename_mailbox(pb::RenameMailboxRequest {
        from: "a".into(),
        to: "z".into(),
    })
    .await
    .unwrap();
    let now = names(
        c.list_mailboxes(pb::ListMailboxesRequest {})
            .await
            .unwrap()
            .into_inner(),
    );
    assert!(now.contains(&"z/b/c".to_string()) && !now.iter().any(|n| n.starts_with("a")));
    // INBOX rename moves the messages and leaves INBOX empty.
    t.deliver("r1", &["h@example.org"], &message("r", "r"))
        .await;
    c.rename_mailbox(pb::RenameMailboxRequest {
        from: "inbox".into(),
        to: "Old".into(),
    })
    .await
    .unwrap();
    assert_eq!(select_all(&mut c, "INBOX").await.unwrap().1.len(), 0);
    assert_eq!(select_all(&mut c, "Old").await.unwrap().1.len(), 1);
    let e = c
        .delete_mailbox(pb::DeleteMailboxRequest {
            name: "INBOX".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let e = c
        .create_mailbox(pb::CreateMailboxRequest {
            name: "bad\u{7}name".into(),
            special_use: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
}

mod body_search {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::body_search_decodes_transfer_encodings(super::Backend::Sqlite).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::body_search_decodes_transfer_encodings(super::Backend::Postgres).await
    }
}

async fn body_search_decodes_transfer_encodings(backend: Backend) {
    let t = setup(backend).await;
    t.add_account("s@example.org", "pw").await;
    // "Grüße aus Köln" in quoted-printable and in base64.
    let qp = "Subject: qp\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=C3=BC=C3=9Fe aus K=C3=B6ln\r\n";
    let b64 = "Subject: b64\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: base64\r\n\r\nR3LDvMOfZSBhdXMgS8O2bG4=\r\n";
    t.deliver("q", &["s@example.org"], qp.as_bytes()).await;
    t.deliver("b", &["s@example.org"], b64.as_bytes()).await;
    let mut c = t.login("s@example.org", "pw").await;
    let search = |k: pb::search_key::Key| pb::SearchRequest {
        mailbox: "INBOX".into(),
        key: Some(pb::SearchKey { key: Some(k) }),
    };
    let r = c
        .search(search(pb::search_key::Key::Body("KÖLN".into())))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.uids, vec![1, 2], "decoded body text not searched");
    let r = c
        .search(search(pb::search_key::Key::Text("b64".into())))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.uids, vec![2]);
    // A body search walks the mailbox in windows of 256: matches on both
    // sides of a window boundary are found.
    for i in 3..=300 {
        let body = if i == 200 || i == 300 {
            "the needle"
        } else {
            "hay"
        };
        t.deliver(
            &format!("w{i}"),
            &["s@example.org"],
            &message(&format!("w{i}"), body),
        )
        .await;
    }
    let r = c
        .search(search(pb::search_key::Key::Body("NEEDLE".into())))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.uids, vec![200, 300]);
}

/// Sessions on two store replicas change the same messages at once: no
/// flag change is lost (each STORE reads the rows it changes only after it
/// holds the mailbox), no message is reported expunged twice, and a Watch
/// on each replica, applying what it streams in order, ends with exactly
/// the mailbox's final state (changes carried from local writes and read
/// after other replicas' hints alike).
async fn concurrent_writers_lose_nothing_and_watchers_see_it_all(backend: Backend) {
    use std::collections::BTreeMap;
    const MESSAGES: u32 = 20;
    const WRITERS: usize = 8;
    let (a, replica) = writers_setup(backend, "c@example.org", MESSAGES).await;
    let b = replica.as_ref().unwrap_or(&a);
    let mut watchers = Vec::new();
    for t in [&a, b] {
        let mut c = t.login("c@example.org", "pw").await;
        let (st, entries) = select_with(&mut c, "INBOX", true).await.unwrap();
        let stream = c
            .watch(pb::WatchRequest {
                mailbox: "INBOX".into(),
                since_modseq: st.highest_modseq,
                claim_recent: false,
            })
            .await
            .unwrap()
            .into_inner();
        let state: BTreeMap<u32, (u64, pb::Flags)> = entries
            .into_iter()
            .map(|e| (e.uid, (e.modseq, e.flags.unwrap_or_default())))
            .collect();
        watchers.push((c, stream, state, st.highest_modseq));
    }
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let mut c = if w % 2 == 0 { &a } else { b }
            .login("c@example.org", "pw")
            .await;
        tasks.push(tokio::spawn(async move {
            let mut expunged = Vec::new();
            for round in 0..10u32 {
                let kw = format!("$W{w}");
                let (mode, uids) = if round % 3 == 2 {
                    (
                        pb::FlagsMode::Remove,
                        pb::UidSet::of([round % MESSAGES + 1]),
                    )
                } else {
                    (pb::FlagsMode::Add, pb::UidSet::of(1..=MESSAGES))
                };
                // Round 2 removes this writer's keyword from one message;
                // every later round adds it everywhere again.
                c.store_flags(pb::StoreFlagsRequest {
                    mailbox: "INBOX".into(),
                    uids: Some(uids),
                    mode: mode as i32,
                    flags: Some(pb::Flags {
                        keywords: vec![kw],
                        seen: w == 0,
                        ..Default::default()
                    }),
                    unchanged_since: 0,
                })
                .await
                .unwrap();
                tokio::task::yield_now().await;
            }
            // All writers expunge overlapping ranges at once.
            let first = (w as u32 % 4) * 3 + 1;
            let r = c
                .expunge(pb::ExpungeRequest {
                    mailbox: "INBOX".into(),
                    uids: Some(pb::UidSet::of(first..=first + 5)),
                    ignore_deleted_flag: true,
                    lease_id: String::new(),
                })
                .await
                .unwrap()
                .into_inner();
            expunged.extend(r.expunged);
            expunged
        }));
    }
    let mut all_expunged = Vec::new();
    for t in tasks {
        all_expunged.extend(t.await.unwrap());
    }
    let unique: HashSet<u32> = all_expunged.iter().copied().collect();
    assert_eq!(
        unique.len(),
        all_expunged.len(),
        "a message was reported expunged twice: {all_expunged:?}"
    );
    assert_eq!(unique, (1..=15).collect(), "UIDs 1..15 were expunged");

    let mut c = a.login("c@example.org", "pw").await;
    let (st, entries) = select_with(&mut c, "INBOX", true).await.unwrap();
    assert_eq!(entries.len() as u32, MESSAGES - 15);
    for e in &entries {
        let f = e.flags.as_ref().unwrap();
        let mut kw = f.keywords.clone();
        kw.sort();
        let want: Vec<String> = (0..WRITERS).map(|w| format!("$W{w}")).collect();
        assert_eq!(kw, want, "UID {}: a concurrent flag change was lost", e.uid);
        assert!(f.seen, "UID {}: \\Seen was lost", e.uid);
    }
    let want: BTreeMap<u32, (u64, pb::Flags)> = entries
        .iter()
        .map(|e| (e.uid, (e.modseq, e.flags.clone().unwrap_or_default())))
        .collect();
    for (i, (_c, mut stream, mut state, mut highest)) in watchers.into_iter().enumerate() {
        while highest < st.highest_modseq {
            let ev = tokio::time::timeout(std::time::Duration::from_secs(10), stream.message())
                .await
                .unwrap_or_else(|_| panic!("watcher {i} stuck at MODSEQ {highest}"))
                .unwrap()
                .unwrap();
            for e in ev.changed {
                let cur = state.entry(e.uid).or_default();
                if e.modseq > cur.0 {
                    *cur = (e.modseq, e.flags.unwrap_or_default());
                }
            }
            for u in ev.expunged {
                state.remove(&u);
            }
            highest = highest.max(ev.highest_modseq);
        }
        assert_eq!(highest, st.highest_modseq);
        let norm = |m: &mut BTreeMap<u32, (u64, pb::Flags)>| {
            for (_, f) in m.values_mut() {
                f.keywords.sort();
            }
        };
        norm(&mut state);
        let mut want = want.clone();
        norm(&mut want);
        assert_eq!(
            state, want,
            "watcher {i} did not end with the mailbox's state"
        );
    }
}

/// APPEND counts against the account's quota in the same statement that
/// records the usage: one that would pass the limit is refused with
/// nothing stored, and EXPUNGE gives the bytes back.
async fn append_keeps_within_the_quota_and_usage_follows_expunge(backend: Backend) {
    let t = setup(backend).await;
    t.add_account("q@example.org", "pw").await;
    let body = message("quota", &"x".repeat(400));
    t.admin()
        .set_quota(pb::SetQuotaRequest {
            address: "q@example.org".into(),
            quota_bytes: body.len() as u64 * 2 + 10,
            quota_messages: None,
        })
        .await
        .unwrap();
    let mut c = t.login("q@example.org", "pw").await;
    let append = |c: &mut mailbox_api::MailboxClient| {
        let mut c = c.clone();
        let body = body.clone();
        async move {
            c.append(tokio_stream::iter(vec![
                pb::AppendChunk {
                    part: Some(pb::append_chunk::Part::Header(pb::AppendHeader {
                        mailbox: "INBOX".into(),
                        ..Default::default()
                    })),
                },
                pb::AppendChunk {
                    part: Some(pb::append_chunk::Part::Data(body)),
                },
            ]))
            .await
        }
    };
    assert_eq!(append(&mut c).await.unwrap().into_inner().uid, 1);
    assert_eq!(append(&mut c).await.unwrap().into_inner().uid, 2);
    let blobs_before = stats(&t).await.blobs;
    let refused = append(&mut c).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    let q = c
        .get_quota(pb::GetQuotaRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!((q.messages, q.used_bytes), (2, body.len() as u64 * 2));
    // Nor does a refused APPEND leave its body behind (the same bytes
    // were stored already, so a different body is tried too).
    let mut other = c.clone();
    let refused = other
        .append(tokio_stream::iter(vec![
            pb::AppendChunk {
                part: Some(pb::append_chunk::Part::Header(pb::AppendHeader {
                    mailbox: "INBOX".into(),
                    ..Default::default()
                })),
            },
            pb::AppendChunk {
                part: Some(pb::append_chunk::Part::Data(message(
                    "new",
                    &"y".repeat(400),
                ))),
            },
        ]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert_eq!(
        stats(&t).await.blobs,
        blobs_before,
        "a refused APPEND stored its body"
    );
    c.expunge(pb::ExpungeRequest {
        mailbox: "INBOX".into(),
        uids: Some(pb::UidSet::of([1])),
        ignore_deleted_flag: true,
        lease_id: String::new(),
    })
    .await
    .unwrap();
    let q = c
        .get_quota(pb::GetQuotaRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!((q.messages, q.used_bytes), (1, body.len() as u64));
    // The refused APPEND used no UID: the next one is 3.
    assert_eq!(append(&mut c).await.unwrap().into_inner().uid, 3);
    let (st, entries) = select_with(&mut c, "INBOX", true).await.unwrap();
    assert_eq!(
        entries.iter().map(|e| e.uid).collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert_eq!(st.uid_next, 4);
}

/// Sessions on two replicas MOVE the same messages at once, in both
/// directions: every message ends up in exactly one mailbox, once (the
/// mailboxes are locked before the rows are read), and no MOVE deadlocks.
async fn concurrent_moves_move_each_message_once(backend: Backend) {
    const MESSAGES: u32 = 12;
    let (a, replica) = writers_setup(backend, "m@example.org", MESSAGES).await;
    let b = replica.as_ref().unwrap_or(&a);
    let mut c = a.login("m@example.org", "pw").await;
    c.create_mailbox(pb::CreateMailboxRequest {
        name: "Dest".into(),
        special_use: 0,
    })
    .await
    .unwrap();
    let mut tasks = Vec::new();
    for w in 0..8 {
        let mut c = if w % 2 == 0 { &a } else { b }
            .login("m@example.org", "pw")
            .await;
        tasks.push(tokio::spawn(async move {
            let (from, to) = if w % 4 == 3 {
                ("Dest", "INBOX")
            } else {
                ("INBOX", "Dest")
            };
            c.r#move(pb::CopyRequest {
                mailbox: from.into(),
                uids: Some(pb::UidSet::of(1..=1000)),
                destination: to.into(),
            })
            .await
            .unwrap()
            .into_inner()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (_, inbox) = select_with(&mut c, "INBOX", true).await.unwrap();
    let (_, dest) = select_with(&mut c, "Dest", true).await.unwrap();
    assert_eq!(
        inbox.len() + dest.len(),
        MESSAGES as usize,
        "messages lost or duplicated: INBOX {} + Dest {}",
        inbox.len(),
        dest.len()
    );
    let q = c
        .get_quota(pb::GetQuotaRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        q.messages, MESSAGES as u64,
        "usage counts each message once"
    );
}

/// Deliveries to the same two accounts, listed in opposite orders, run at
/// once: each locks INBOX and account rows in account order, so none is
/// aborted as a deadlock and every copy is stored.
async fn crossing_multi_recipient_deliveries_never_deadlock(backend: Backend) {
    let t = setup(backend).await;
    t.add_account("x@example.org", "pw").await;
    t.add_account("y@example.org", "pw").await;
    const EACH: usize = 40;
    let mut tasks = Vec::new();
    for w in 0..4 {
        let mut d = t.delivery();
        tasks.push(tokio::spawn(async move {
            for i in 0..EACH {
                let rcpts: [&str; 2] = if (w + i) % 2 == 0 {
                    ["x@example.org", "y@example.org"]
                } else {
                    ["y@example.org", "x@example.org"]
                };
                let r = common::deliver_with(
                    &mut d,
                    &format!("x-{w}-{i}"),
                    &rcpts,
                    &message("cross", &format!("{w}-{i}")),
                )
                .await
                .unwrap_or_else(|e| panic!("delivery {w}-{i} failed: {e:?}"));
                assert_eq!(r.results.len(), 2);
                for (res, want) in r.results.iter().zip(rcpts) {
                    assert_eq!(res.address, want, "results keep the request order");
                    assert_eq!(res.status, pb::RecipientStatus::Accept as i32);
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for user in ["x@example.org", "y@example.org"] {
        let mut c = t.login(user, "pw").await;
        let (_, entries) = select_with(&mut c, "INBOX", true).await.unwrap();
        assert_eq!(entries.len(), 4 * EACH, "{user}");
    }
}

/// STOREs of system flags only (PostgreSQL runs them as one statement) from
/// writers on two replicas at once: each writer owns one flag and adds it
/// everywhere, now and then removing it from one message and adding it
/// back; none of the others' changes may be lost, and a STORE that changes
/// nothing leaves MODSEQs alone.
async fn concurrent_system_flag_stores_lose_nothing(backend: Backend) {
    const MESSAGES: u32 = 20;
    let (a, replica) = writers_setup(backend, "f@example.org", MESSAGES).await;
    let b = replica.as_ref().unwrap_or(&a);
    let flag = |w: usize| {
        let mut f = pb::Flags::default();
        match w {
            0 => f.seen = true,
            1 => f.answered = true,
            2 => f.flagged = true,
            3 => f.draft = true,
            _ => f.deleted = true,
        }
        f
    };
    let mut tasks = Vec::new();
    for w in 0..5usize {
        let mut c = if w % 2 == 0 { &a } else { b }
            .login("f@example.org", "pw")
            .await;
        tasks.push(tokio::spawn(async move {
            for round in 0..12u32 {
                let (mode, uids) = if round % 3 == 1 {
                    (
                        pb::FlagsMode::Remove,
                        pb::UidSet::of([round % MESSAGES + 1]),
                    )
                } else {
                    (pb::FlagsMode::Add, pb::UidSet::of(1..=MESSAGES))
                };
                let r = c
                    .store_flags(pb::StoreFlagsRequest {
                        mailbox: "INBOX".into(),
                        uids: Some(uids),
                        mode: mode as i32,
                        flags: Some(flag(w)),
                        unchanged_since: 0,
                    })
                    .await
                    .unwrap()
                    .into_inner();
                // Every message asked for is reported, with the flag as
                // this writer just left it.
                for e in &r.updated {
                    let f = e.flags.clone().unwrap_or_default();
                    let has = pb::Flags {
                        keywords: Vec::new(),
                        ..f
                    }
                    .bits()
                        & flag(w).bits()
                        != 0;
                    assert_eq!(
                        has,
                        mode == pb::FlagsMode::Add,
                        "UID {} round {round}",
                        e.uid
                    );
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut c = a.login("f@example.org", "pw").await;
    let (st, entries) = select_with(&mut c, "INBOX", true).await.unwrap();
    assert_eq!(entries.len() as u32, MESSAGES);
    let all = (0..5).fold(0, |acc, w| acc | flag(w).bits());
    for e in &entries {
        let bits = e.flags.clone().unwrap_or_default().bits();
        assert_eq!(
            bits, all,
            "UID {}: a concurrent flag change was lost",
            e.uid
        );
    }
    // Adding what is there already changes no message's MODSEQ.
    let r = c
        .store_flags(pb::StoreFlagsRequest {
            mailbox: "INBOX".into(),
            uids: Some(pb::UidSet::of(1..=MESSAGES)),
            mode: pb::FlagsMode::Add as i32,
            flags: Some(flag(0)),
            unchanged_since: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.updated.len() as u32, MESSAGES);
    for (e, before) in r.updated.iter().zip(&entries) {
        assert_eq!(e.modseq, before.modseq, "UID {} changed MODSEQ", e.uid);
        assert!(e.modseq <= st.highest_modseq);
    }
}

/// An EXPUNGE without a UID set removes the \Deleted messages only, even
/// with `ignore_deleted_flag` (which widens a UID set, never the mailbox);
/// both backends, one-statement path on PostgreSQL included.
async fn expunge_without_uids_takes_only_deleted_messages(backend: Backend) {
    let (a, _replica) = writers_setup(backend, "x@example.org", 3).await;
    let mut c = a.login("x@example.org", "pw").await;
    c.store_flags(pb::StoreFlagsRequest {
        mailbox: "INBOX".into(),
        uids: Some(pb::UidSet::of([2])),
        mode: pb::FlagsMode::Add as i32,
        flags: Some(pb::Flags {
            deleted: true,
            ..Default::default()
        }),
        unchanged_since: 0,
    })
    .await
    .unwrap();
    let r = c
        .expunge(pb::ExpungeRequest {
            mailbox: "INBOX".into(),
            uids: None,
            ignore_deleted_flag: true,
            lease_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.expunged, vec![2]);
    let (_, left) = select_with(&mut c, "INBOX", true).await.unwrap();
    assert_eq!(left.iter().map(|e| e.uid).collect::<Vec<_>>(), vec![1, 3]);
}

/// Admin.OpenSession (for `mailctl import`/`export`): a session scoped to
/// one account exactly like a login's; unknown and disabled accounts get
/// none.
async fn admin_sessions_act_for_one_account_only(backend: Backend) {
    let t = setup(backend).await;
    t.add_account("alice@example.org", "pw-alice").await;
    t.add_account("bob@example.org", "pw-bob").await;
    t.deliver("b1", &["bob@example.org"], &message("for-bob", "b"))
        .await;
    let mut bob = t.login("bob@example.org", "pw-bob").await;
    let before = snapshot(&mut bob).await;
    let open = |address: &str| {
        let mut admin = t.admin();
        let address = address.to_string();
        async move {
            admin
                .open_session(pb::OpenSessionRequest {
                    address,
                    purpose: "import".into(),
                })
                .await
        }
    };
    let token = open("alice@example.org")
        .await
        .unwrap()
        .into_inner()
        .session_token;
    let mut alice = t.with_token(&token);
    let outcomes = call_every_rpc(&mut alice).await;
    assert!(outcomes.len() >= 21);
    // It acted on alice's own account (the test could fail).
    t.deliver("a1", &["alice@example.org"], &message("for-alice", "a"))
        .await;
    let token = open("alice@example.org")
        .await
        .unwrap()
        .into_inner()
        .session_token;
    let mut alice = t.with_token(&token);
    let (status, uids) = select_all(&mut alice, "INBOX").await.unwrap();
    assert_eq!((status.messages, uids.len()), (1, 1), "alice's INBOX");
    assert_eq!(
        before,
        snapshot(&mut bob).await,
        "an admin session for alice changed bob's account"
    );
    for nobody in ["nobody@example.org", "not an address"] {
        let e = open(nobody).await.unwrap_err();
        assert!(
            matches!(e.code(), Code::NotFound | Code::InvalidArgument),
            "{nobody}: {e}"
        );
    }
    t.admin()
        .set_account_disabled(pb::SetAccountDisabledRequest {
            address: "bob@example.org".into(),
            disabled: true,
        })
        .await
        .unwrap();
    let e = open("bob@example.org").await.unwrap_err();
    assert_eq!(
        e.code(),
        Code::NotFound,
        "a disabled account got a session: {e}"
    );
}

/// Expunges every message of `user`'s INBOX (by UID, whatever its flags).
async fn expunge_all(t: &TestStore, user: &str) {
    let mut c = t.login(user, "pw").await;
    c.expunge(pb::ExpungeRequest {
        mailbox: "INBOX".into(),
        uids: Some(pb::UidSet {
            ranges: vec![pb::UidRange {
                first: 1,
                last: u32::MAX,
            }],
        }),
        ignore_deleted_flag: true,
        lease_id: String::new(),
    })
    .await
    .unwrap();
}

async fn collect(t: &TestStore) -> pb::CollectGarbageResponse {
    t.admin()
        .collect_garbage(pb::CollectGarbageRequest {
            grace_secs: Some(0),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn stats(t: &TestStore) -> pb::StatsResponse {
    t.admin()
        .stats(pb::StatsRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// The body collector (issue: storage reclaimed): bodies no message
/// references are deleted and their bytes leave the stats; a body still
/// referenced stays; a delivery of the same content racing the collector
/// neither fails nor is lost.
async fn expunged_bodies_are_collected_and_a_racing_delivery_survives(backend: Backend) {
    let t = setup(backend).await;
    t.add_account("alice@example.org", "pw").await;
    t.add_account("bob@example.org", "pw").await;
    let kept = message("kept", &"k".repeat(5000));
    t.deliver("kept", &["bob@example.org"], &kept).await;
    let mut gone_bytes = 0;
    for i in 0..3 {
        let m = message(&format!("gone-{i}"), &"g".repeat(10_000 + i));
        gone_bytes += m.len() as u64;
        t.deliver(&format!("gone-{i}"), &["alice@example.org"], &m)
            .await;
    }
    // Nothing is reclaimable while referenced; the grace period protects
    // young bodies even when they are not.
    assert_eq!(stats(&t).await.reclaimable_bytes, 0);
    expunge_all(&t, "alice@example.org").await;
    let s = stats(&t).await;
    assert_eq!((s.reclaimable_blobs, s.reclaimable_bytes), (3, gone_bytes));
    assert_eq!(s.live_bytes, kept.len() as u64);
    let young = t
        .admin()
        .collect_garbage(pb::CollectGarbageRequest {
            grace_secs: Some(3600),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        young.blobs, 0,
        "a body inside the grace period was collected"
    );
    let r = collect(&t).await;
    assert_eq!((r.blobs, r.bytes), (3, gone_bytes));
    let s = stats(&t).await;
    assert_eq!((s.blobs, s.blob_bytes), (1, kept.len() as u64), "{s:?}");
    assert_eq!((s.reclaimable_blobs, s.reclaimable_bytes), (0, 0));
    let mut bob = t.login("bob@example.org", "pw").await;
    assert_eq!(read_body(&mut bob, "INBOX", 1).await, kept);

    // The race: alice's copy is expunged (its body unreferenced) and bob
    // gets the same content while the collector runs.
    let mut expected = vec![kept.clone()];
    for i in 0..30 {
        let m = message(&format!("race-{i}"), &format!("{i}").repeat(2000));
        t.deliver(&format!("race-a-{i}"), &["alice@example.org"], &m)
            .await;
        expunge_all(&t, "alice@example.org").await;
        let mut delivery = t.delivery();
        let id = format!("race-b-{i}");
        let (collected, delivered) = tokio::join!(
            collect(&t),
            deliver_with(&mut delivery, &id, &["bob@example.org"], &m)
        );
        let _ = collected;
        // The delivery re-stores the body under its row lock, so the
        // collector waits for it or skips it: the delivery never fails.
        delivered.unwrap_or_else(|e| panic!("race {i}: the delivery failed: {e}"));
        expected.push(m);
        // Collected again with nothing in flight: bob's copy must stay.
        collect(&t).await;
    }
    let (_, uids) = select_all(&mut bob, "INBOX").await.unwrap();
    assert_eq!(uids.len(), expected.len());
    for (entry, want) in uids.iter().zip(&expected) {
        assert_eq!(
            &read_body(&mut bob, "INBOX", entry.uid).await,
            want,
            "UID {}",
            entry.uid
        );
    }
    let s = stats(&t).await;
    let live: u64 = expected.iter().map(|m| m.len() as u64).sum();
    assert_eq!((s.live_bytes, s.reclaimable_bytes), (live, 0), "{s:?}");
}

/// Group commit (deliveries that arrive together share one transaction):
/// 31 concurrent deliveries decide exactly as one at a time would: quota
/// holds across the group, an address and its alias share one copy, an
/// unknown or disabled recipient gets its own status, and one delivery id
/// sent five times at once is stored once.
async fn deliveries_committed_together_decide_as_one_at_a_time(backend: Backend) {
    let t = setup(backend).await;
    let body = |tag: &str| message(tag, &"q".repeat(900));
    let size = body("a-00").len() as u64;
    for a in ["a", "b", "c"] {
        t.add_account(&format!("{a}@example.org"), "pw").await;
    }
    let mut admin = t.admin();
    admin
        .set_quota(pb::SetQuotaRequest {
            address: "a@example.org".into(),
            quota_bytes: size * 3,
            quota_messages: None,
        })
        .await
        .unwrap();
    admin
        .set_account_disabled(pb::SetAccountDisabledRequest {
            address: "b@example.org".into(),
            disabled: true,
        })
        .await
        .unwrap();
    admin
        .add_alias(pb::AddAliasRequest {
            alias: "c-alias@example.org".into(),
            target: "c@example.org".into(),
        })
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let mut d = t.delivery();
        let m = body(&format!("a-{i:02}"));
        tasks.push(tokio::spawn(async move {
            (
                "a",
                deliver_with(&mut d, &format!("a-{i}"), &["a@example.org"], &m).await,
            )
        }));
    }
    for i in 0..10 {
        let mut d = t.delivery();
        let m = body(&format!("c-{i:02}"));
        tasks.push(tokio::spawn(async move {
            let rcpts = [
                "c@example.org",
                "c-alias@example.org",
                "nobody@example.org",
                "b@example.org",
            ];
            (
                "c",
                deliver_with(&mut d, &format!("c-{i}"), &rcpts, &m).await,
            )
        }));
    }
    for _ in 0..5 {
        let mut d = t.delivery();
        let m = body("dup-00");
        tasks.push(tokio::spawn(async move {
            (
                "dup",
                deliver_with(&mut d, "dup", &["c@example.org"], &m).await,
            )
        }));
    }
    let (mut a_ok, mut a_over, mut dup_first) = (0, 0, 0);
    let mut c_uids = HashSet::new();
    let mut dup_results = Vec::new();
    for task in tasks {
        let (kind, r) = task.await.unwrap();
        let r = r.unwrap_or_else(|e| panic!("{kind}: {e}"));
        let status = |k: usize| pb::RecipientStatus::try_from(r.results[k].status).unwrap();
        match kind {
            "a" => match status(0) {
                pb::RecipientStatus::Accept => a_ok += 1,
                pb::RecipientStatus::OverQuota => a_over += 1,
                s => panic!("a: {s:?}"),
            },
            "c" => {
                assert_eq!(
                    (status(0), status(1), status(2), status(3)),
                    (
                        pb::RecipientStatus::Accept,
                        pb::RecipientStatus::Accept,
                        pb::RecipientStatus::UnknownUser,
                        pb::RecipientStatus::Disabled
                    )
                );
                assert_eq!(r.results[0].uid, r.results[1].uid, "alias got its own copy");
                assert!(c_uids.insert(r.results[0].uid), "UID handed out twice");
            }
            _ => {
                if !r.duplicate {
                    dup_first += 1;
                }
                dup_results.push(r.results);
            }
        }
    }
    assert_eq!((a_ok, a_over), (3, 13), "quota across the group");
    assert_eq!(dup_first, 1, "one id stored more than once");
    assert!(dup_results.windows(2).all(|w| w[0] == w[1]));
    let mut a = t.login("a@example.org", "pw").await;
    let (st, _) = select_all(&mut a, "INBOX").await.unwrap();
    assert_eq!(st.messages, 3);
    let mut c = t.login("c@example.org", "pw").await;
    let (st, entries) = select_all(&mut c, "INBOX").await.unwrap();
    assert_eq!(st.messages, 11, "ten deliveries and one of the repeated id");
    assert!(
        entries
            .windows(2)
            .all(|w| w[0].uid < w[1].uid && w[0].modseq < w[1].modseq)
    );
    let q = a
        .get_quota(pb::GetQuotaRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(q.used_bytes, size * 3, "{q:?}");
}

/// SORT and THREAD (RFC 5256, RFC 5957) over the keys kept with each body:
/// every key, REVERSE, a search key and a UID restriction, both
/// algorithms; and bodies stored before the keys existed (NULL) get them
/// computed on first use and kept.
async fn sort_and_thread_over_stored_keys(backend: Backend) {
    let t = setup(backend).await;
    t.add_account("s@example.org", "pw").await;
    let msgs = [
        "From: Zed <zed@a.org>\r\nTo: amy@b.org\r\nSubject: Plans\r\n\
         Date: Mon, 02 Nov 2026 10:00:00 +0000\r\nMessage-ID: <p1@x>\r\n\r\nx\r\n",
        "From: \"Amy\" <amy@b.org>\r\nTo: zed@a.org\r\nSubject: Re: Plans\r\n\
         Date: Tue, 03 Nov 2026 10:00:00 +0000\r\nMessage-ID: <p2@x>\r\nReferences: <p1@x>\r\n\r\nx\r\n",
        "From: bob@c.org\r\nTo: zed@a.org\r\nCc: dan@d.org\r\nSubject: Lunch\r\n\
         Date: Sun, 01 Nov 2026 23:30:00 -0300\r\nMessage-ID: <l1@x>\r\n\r\nx\r\n",
        "From: Carl <carl@d.org>\r\nTo: zed@a.org\r\nSubject: Re: [team] plans\r\n\
         Date: Wed, 04 Nov 2026 10:00:00 +0000\r\nMessage-ID: <p3@x>\r\nIn-Reply-To: <p2@x>\r\n\r\nx\r\n",
        "From: \"Al\" <zz@e.org>\r\nTo: bea@b.org\r\nSubject: Fwd: Lunch\r\n\
         Message-ID: <l2@x>\r\n\r\na body much longer than the others, to be the largest\r\n",
    ];
    for (i, m) in msgs.iter().enumerate() {
        t.deliver(&format!("s{i}"), &["s@example.org"], m.as_bytes())
            .await;
    }
    let mut c = t.login("s@example.org", "pw").await;
    use pb::SortField as F;
    let crit = |f: F, reverse: bool| pb::SortCriterion {
        field: f as i32,
        reverse,
    };
    let mut sort = async |criteria: Vec<pb::SortCriterion>,
                          key: Option<pb::SearchKey>,
                          uids: Option<pb::UidSet>| {
        c.sort(pb::SortRequest {
            mailbox: "INBOX".into(),
            criteria,
            key,
            uids,
        })
        .await
        .unwrap()
        .into_inner()
        .uids
    };
    assert_eq!(
        sort(vec![crit(F::Subject, false)], None, None).await,
        [3, 5, 1, 2, 4]
    );
    // No Date: the INTERNALDATE (2023 here) is the sent date (RFC 5256
    // 2.2); the -0300 date is 02:30 UTC on 2 Nov, before message 1.
    assert_eq!(
        sort(vec![crit(F::Date, true)], None, None).await,
        [4, 2, 1, 3, 5]
    );
    assert_eq!(
        sort(vec![crit(F::From, false)], None, None).await,
        [2, 3, 4, 1, 5]
    );
    assert_eq!(
        sort(vec![crit(F::DisplayFrom, false)], None, None).await,
        [5, 2, 3, 4, 1]
    );
    assert_eq!(
        sort(vec![crit(F::DisplayTo, false)], None, None).await,
        [1, 5, 2, 3, 4]
    );
    assert_eq!(
        sort(vec![crit(F::Cc, false), crit(F::To, true)], None, None).await,
        [2, 4, 5, 1, 3]
    );
    let mut by_size: Vec<u32> = (1..=5).collect();
    by_size.sort_by_key(|&u| (std::cmp::Reverse(msgs[u as usize - 1].len()), u));
    assert_eq!(sort(vec![crit(F::Size, true)], None, None).await, by_size);
    assert_eq!(
        sort(vec![crit(F::Arrival, true)], None, None).await,
        [1, 2, 3, 4, 5],
        "equal INTERNALDATEs: sequence order, also in REVERSE"
    );
    let subject_has = |s: &str| pb::SearchKey {
        key: Some(pb::search_key::Key::Header(pb::HeaderMatch {
            name: "subject".into(),
            value: s.into(),
        })),
    };
    assert_eq!(
        sort(
            vec![crit(F::Date, false)],
            Some(subject_has("plans")),
            Some(pb::UidSet::of([1, 2, 3]))
        )
        .await,
        [1, 2]
    );
    let mut thread = async |algorithm: pb::ThreadAlgorithm| {
        c.thread(pb::ThreadRequest {
            mailbox: "INBOX".into(),
            algorithm: algorithm as i32,
            key: None,
            uids: None,
        })
        .await
        .unwrap()
        .into_inner()
        .nodes
        .iter()
        .map(|n| (n.uid, n.depth))
        .collect::<Vec<_>>()
    };
    // (3 5)(1 2 4): the forward gathered under its original by subject.
    assert_eq!(
        thread(pb::ThreadAlgorithm::References).await,
        [(3, 0), (5, 1), (1, 0), (2, 1), (4, 2)]
    );
    // (5 3)(1 (2)(4)): groups by base subject, each led by its earliest.
    assert_eq!(
        thread(pb::ThreadAlgorithm::Orderedsubject).await,
        [(5, 0), (3, 1), (1, 0), (2, 1), (4, 1)]
    );

    // Bodies stored without keys: computed on first use, then kept.
    let nulls = async |sql: &str| -> i64 {
        match backend {
            Backend::Postgres => {
                use sqlx::Connection;
                let mut db = sqlx::PgConnection::connect(t.url()).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
                    .execute(&mut db)
                    .await
                    .unwrap();
                sqlx::query_scalar("SELECT COUNT(*) FROM blobs WHERE sort_keys IS NULL")
                    .fetch_one(&mut db)
                    .await
                    .unwrap()
            }
            Backend::Sqlite => {
                use sqlx::Connection;
                let mut db = sqlx::SqliteConnection::connect(t.url()).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
                    .execute(&mut db)
                    .await
                    .unwrap();
                sqlx::query_scalar("SELECT COUNT(*) FROM blobs WHERE sort_keys IS NULL")
                    .fetch_one(&mut db)
                    .await
                    .unwrap()
            }
        }
    };
    // (On replicas that have not kept this mailbox's keys: the first
    // one keeps what it read, see sort_and_thread_follow_every_change.)
    assert_eq!(nulls("UPDATE blobs SET sort_keys = NULL").await, 5);
    let fresh = t.replica().await;
    let mut c = fresh.login("s@example.org", "pw").await;
    let r = c
        .sort(pb::SortRequest {
            mailbox: "INBOX".into(),
            criteria: vec![crit(F::Subject, false)],
            key: None,
            uids: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.uids, [3, 5, 1, 2, 4]);
    assert_eq!(nulls("SELECT 1").await, 0, "the keys were kept");

    // A store that starts on bodies without keys fills them in the
    // background, with no SORT asking (the deadline only guards a hang).
    assert_eq!(nulls("UPDATE blobs SET sort_keys = NULL").await, 5);
    let replica = t.replica().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while nulls("SELECT 1").await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the keys were not filled"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut c = replica.login("s@example.org", "pw").await;
    let r = c
        .sort(pb::SortRequest {
            mailbox: "INBOX".into(),
            criteria: vec![crit(F::Subject, false)],
            key: None,
            uids: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.uids, [3, 5, 1, 2, 4], "the filled keys sort alike");
}

/// SORT and THREAD answers kept by a replica (sort_cache) are those of a
/// replica that reads everything afresh, after every kind of change: new
/// messages, expunges (on this replica and on another), flag changes,
/// a MOVE out, and the mailbox deleted and made again under its name.
async fn sort_and_thread_follow_every_change(backend: Backend) {
    let t = setup(backend).await;
    t.add_account("k@example.org", "pw").await;
    let subjects = [
        "delta",
        "alpha",
        "Re: alpha",
        "charlie",
        "bravo",
        "Fwd: delta",
    ];
    let mut n = 0;
    let mut deliver = async |count: usize| {
        for _ in 0..count {
            let s = subjects[n % subjects.len()];
            let m = format!(
                "From: u{n}@a.org\r\nSubject: {s}\r\nMessage-ID: <m{n}@x>\r\n\
                 Date: Mon, {:02} Nov 2026 10:00:00 +0000\r\n\r\nbody {n}\r\n",
                1 + (n * 7) % 28
            );
            t.deliver(&format!("k{n}"), &["k@example.org"], m.as_bytes())
                .await;
            n += 1;
        }
    };
    deliver(12).await;
    let other = t.replica().await;
    let mut a = t.login("k@example.org", "pw").await;
    let mut b = other.login("k@example.org", "pw").await;
    use pb::SortField as F;
    let sort_req = || pb::SortRequest {
        mailbox: "INBOX".into(),
        criteria: vec![
            pb::SortCriterion {
                field: F::Subject as i32,
                reverse: false,
            },
            pb::SortCriterion {
                field: F::Date as i32,
                reverse: true,
            },
        ],
        key: None,
        uids: None,
    };
    let thread_req = || pb::ThreadRequest {
        mailbox: "INBOX".into(),
        algorithm: pb::ThreadAlgorithm::Orderedsubject as i32,
        key: None,
        uids: None,
    };
    // What a replica that has kept nothing answers.
    let afresh = async || {
        let r = t.replica().await;
        let mut c = r.login("k@example.org", "pw").await;
        let s = c.sort(sort_req()).await.unwrap().into_inner().uids;
        let th = c.thread(thread_req()).await.unwrap().into_inner().nodes;
        (s, th)
    };
    let kept = async |c: &mut mailbox_api::MailboxClient| {
        let s = c.sort(sort_req()).await.unwrap().into_inner().uids;
        let th = c.thread(thread_req()).await.unwrap().into_inner().nodes;
        (s, th)
    };
    let first = kept(&mut a).await;
    assert_eq!(first.0.len(), 12);
    assert_eq!(kept(&mut a).await, first, "asked again");
    assert_eq!(afresh().await, first);

    deliver(5).await;
    let now = kept(&mut a).await;
    assert_eq!(now.0.len(), 17, "new messages are sorted in");
    assert_eq!(now, afresh().await);

    // Expunged here, then on the other replica; flags changed there too.
    select_all(&mut a, "INBOX").await.unwrap();
    let mark = |uids: &[u32]| pb::StoreFlagsRequest {
        mailbox: "INBOX".into(),
        uids: Some(pb::UidSet::of(uids.iter().copied())),
        mode: pb::FlagsMode::Add as i32,
        flags: Some(pb::Flags {
            deleted: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    a.store_flags(mark(&[2, 5])).await.unwrap();
    a.expunge(pb::ExpungeRequest {
        mailbox: "INBOX".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let now = kept(&mut a).await;
    assert!(!now.0.contains(&2) && !now.0.contains(&5), "{now:?}");
    assert_eq!(now, afresh().await);
    b.store_flags(mark(&[7])).await.unwrap();
    b.expunge(pb::ExpungeRequest {
        mailbox: "INBOX".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    b.store_flags(pb::StoreFlagsRequest {
        mailbox: "INBOX".into(),
        uids: Some(pb::UidSet::of([1, 3])),
        mode: pb::FlagsMode::Add as i32,
        flags: Some(pb::Flags {
            seen: true,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    deliver(2).await;
    let now = kept(&mut a).await;
    assert_eq!(now.0.len(), 16, "{now:?}");
    assert_eq!(now, afresh().await, "changes made on another replica");

    // A search key and a UID set restrict the kept messages.
    let r = a
        .sort(pb::SortRequest {
            key: Some(pb::SearchKey {
                key: Some(pb::search_key::Key::Flag("\\Seen".into())),
            }),
            uids: Some(pb::UidSet::of([1, 3, 4])),
            ..sort_req()
        })
        .await
        .unwrap()
        .into_inner()
        .uids;
    let mut want: Vec<u32> = now
        .0
        .iter()
        .copied()
        .filter(|u| [1, 3].contains(u))
        .collect();
    assert_eq!(r, want, "SEEN and 1,3,4 within the kept order");
    want.clear();

    // Moved out, then the mailbox deleted and made again under its name.
    a.r#move(pb::CopyRequest {
        mailbox: "INBOX".into(),
        uids: Some(pb::UidSet::of([8, 9])),
        destination: "Archive".into(),
    })
    .await
    .unwrap();
    assert_eq!(kept(&mut a).await, afresh().await, "after a MOVE");
    a.create_mailbox(pb::CreateMailboxRequest {
        name: "Box".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let box_req = || pb::SortRequest {
        mailbox: "Box".into(),
        ..sort_req()
    };
    a.copy(pb::CopyRequest {
        mailbox: "INBOX".into(),
        uids: Some(pb::UidSet::of([10, 11, 12])),
        destination: "Box".into(),
    })
    .await
    .unwrap();
    assert_eq!(a.sort(box_req()).await.unwrap().into_inner().uids.len(), 3);
    a.delete_mailbox(pb::DeleteMailboxRequest { name: "Box".into() })
        .await
        .unwrap();
    a.create_mailbox(pb::CreateMailboxRequest {
        name: "Box".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    a.copy(pb::CopyRequest {
        mailbox: "INBOX".into(),
        uids: Some(pb::UidSet::of([10])),
        destination: "Box".into(),
    })
    .await
    .unwrap();
    assert_eq!(
        a.sort(box_req()).await.unwrap().into_inner().uids,
        [1],
        "the new mailbox's one message, not the old one's three"
    );

    // Under the store, to see which path answered. A scalar of a
    // statement run on the database directly.
    let sql = async |q: &str| -> i64 {
        use sqlx::Connection;
        let q = sqlx::AssertSqlSafe(q.to_string());
        match backend {
            Backend::Postgres => {
                let mut db = sqlx::PgConnection::connect(t.url()).await.unwrap();
                sqlx::query_scalar(q).fetch_one(&mut db).await.unwrap()
            }
            Backend::Sqlite => {
                let mut db = sqlx::SqliteConnection::connect(t.url()).await.unwrap();
                sqlx::query_scalar(q).fetch_one(&mut db).await.unwrap()
            }
        }
    };
    // The kept answer is used: keys taken away under it are not read
    // (a fresh read would compute them again), and a delivery reads only
    // the new message's.
    let before = kept(&mut a).await;
    sql(
        "UPDATE blobs SET sort_keys = NULL WHERE id IN (SELECT blob_id FROM messages) \
         RETURNING CAST(1 AS BIGINT)",
    )
    .await;
    let missing = "SELECT COUNT(*) FROM blobs WHERE sort_keys IS NULL";
    let n = sql(missing).await;
    assert!(n > 1, "{n}");
    assert_eq!(kept(&mut a).await, before);
    assert_eq!(sql(missing).await, n, "a repeat reads no keys");
    deliver(1).await;
    assert_eq!(kept(&mut a).await.0.len(), before.0.len() + 1);
    assert_eq!(
        sql(missing).await,
        n,
        "only the new message's keys are read"
    );

    // A MODSEQ that went back (commits lost to a crash or a failover, and
    // the same MODSEQ given again to an expunge) is not taken for "no
    // change": the mailbox is read again.
    let inbox = "(SELECT id FROM mailboxes WHERE name = 'INBOX')";
    let victim = sql(&format!(
        "SELECT MAX(uid) FROM messages WHERE mailbox_id = {inbox}"
    ))
    .await;
    let modseq = sql(&format!(
        "SELECT highest_modseq FROM mailboxes WHERE id = {inbox}"
    ))
    .await;
    sql(&format!(
        "UPDATE mailboxes SET highest_modseq = {} WHERE id = {inbox} RETURNING CAST(1 AS BIGINT)",
        modseq - 1
    ))
    .await;
    sql(&format!(
        "DELETE FROM messages WHERE mailbox_id = {inbox} AND uid = {victim} RETURNING CAST(1 AS BIGINT)"
    ))
    .await;
    sql(&format!(
        "INSERT INTO expunged (account_id, mailbox_id, uid, modseq) \
         SELECT account_id, id, {victim}, {} FROM mailboxes WHERE id = {inbox} RETURNING CAST(1 AS BIGINT)",
        modseq - 1
    ))
    .await;
    let now = kept(&mut a).await;
    assert!(!now.0.contains(&(victim as u32)), "{victim} in {now:?}");
    assert_eq!(now, afresh().await);
}

/// A gateway session names the UIDs it knows with every SORT and THREAD:
/// the whole mailbox, less of it (messages delivered that it has not
/// announced yet) or more (messages expunged elsewhere that it still
/// numbers). The kept answers serve such sets (SORT's kept order with the
/// other messages left out; THREAD threads a subset afresh), and equal a
/// fresh replica's after deliveries, expunges and flag changes made on
/// another replica, with and without a search key.
async fn sort_and_thread_over_a_session_uid_set_are_exact(backend: Backend) {
    let t = setup(backend).await;
    t.add_account("u@example.org", "pw").await;
    let subjects = [
        "Plans",
        "Re: plans",
        "Lunch",
        "Fwd: Lunch",
        "news",
        "Re: NEWS",
    ];
    let mut n = 0usize;
    let mut deliver = async |count: usize| {
        for _ in 0..count {
            let refs = if n % 3 == 1 {
                format!("References: <m{}@x>\r\n", n / 2)
            } else {
                String::new()
            };
            let m = format!(
                "From: \"U{}\" <u{}@a.org>\r\nSubject: {}\r\nMessage-ID: <m{n}@x>\r\n{refs}\
                 Date: Mon, {:02} Nov 2026 10:00:00 +0000\r\n\r\nbody {n}\r\n",
                n % 5,
                n % 4,
                subjects[n % subjects.len()],
                1 + (n * 7) % 28
            );
            t.deliver(&format!("u{n}"), &["u@example.org"], m.as_bytes())
                .await;
            n += 1;
        }
    };
    use pb::SortField as F;
    let crit = |f: F, reverse: bool| pb::SortCriterion {
        field: f as i32,
        reverse,
    };
    let orders = [
        vec![crit(F::Date, false)],
        vec![crit(F::Subject, false), crit(F::Date, true)],
        vec![crit(F::DisplayFrom, true)],
    ];
    // Every SORT above and both THREADs over `uids` (`None`: all) and
    // `key`, the SORTs asked twice.
    let ask = async |c: &mut mailbox_api::MailboxClient,
                     uids: Option<&[u32]>,
                     key: Option<pb::SearchKey>| {
        let uids = uids.map(|u| pb::UidSet::of(u.iter().copied()));
        let mut sorts = Vec::new();
        for criteria in &orders {
            let req = pb::SortRequest {
                mailbox: "INBOX".into(),
                criteria: criteria.clone(),
                key: key.clone(),
                uids: uids.clone(),
            };
            let once = c.sort(req.clone()).await.unwrap().into_inner().uids;
            let again = c.sort(req).await.unwrap().into_inner().uids;
            assert_eq!(once, again, "asked again");
            sorts.push(once);
        }
        let mut threads = Vec::new();
        for algorithm in [
            pb::ThreadAlgorithm::Orderedsubject,
            pb::ThreadAlgorithm::References,
        ] {
            let req = pb::ThreadRequest {
                mailbox: "INBOX".into(),
                algorithm: algorithm as i32,
                key: key.clone(),
                uids: uids.clone(),
            };
            threads.push(c.thread(req).await.unwrap().into_inner().nodes);
        }
        (sorts, threads)
    };
    let afresh = async |uids: Option<&[u32]>, key: Option<pb::SearchKey>| {
        let r = t.replica().await;
        let mut c = r.login("u@example.org", "pw").await;
        ask(&mut c, uids, key).await
    };
    deliver(30).await;
    let mut a = t.login("u@example.org", "pw").await;
    // A small set first (sorted alone), then most of the mailbox (the
    // whole order computed and kept), then all of it.
    let few: Vec<u32> = vec![2, 5, 7, 19];
    let most: Vec<u32> = (1..=30).filter(|u| u % 4 != 0).collect();
    let known: Vec<u32> = (1..=30).collect();
    assert_eq!(
        ask(&mut a, Some(&few), None).await,
        afresh(Some(&few), None).await
    );
    assert_eq!(
        ask(&mut a, Some(&most), None).await,
        afresh(Some(&most), None).await
    );
    let whole = ask(&mut a, Some(&known), None).await;
    assert_eq!(whole.0[0].len(), 30);
    assert_eq!(whole, ask(&mut a, None, None).await, "every UID is no set");
    assert_eq!(whole, afresh(None, None).await);
    assert_eq!(
        ask(&mut a, Some(&few), None).await,
        afresh(Some(&few), None).await
    );

    // Delivered, not yet known to the session: left out.
    deliver(4).await;
    let now = ask(&mut a, Some(&known), None).await;
    assert!(now.0.iter().all(|s| s.len() == 30), "{now:?}");
    assert_eq!(now, afresh(Some(&known), None).await);
    let known: Vec<u32> = (1..=34).collect();
    assert_eq!(
        ask(&mut a, Some(&known), None).await,
        afresh(None, None).await
    );

    // Expunged and flagged on another replica; the session still numbers
    // the expunged ones.
    let other = t.replica().await;
    let mut b = other.login("u@example.org", "pw").await;
    select_all(&mut b, "INBOX").await.unwrap();
    let flag = |uids: &[u32], f: pb::Flags| pb::StoreFlagsRequest {
        mailbox: "INBOX".into(),
        uids: Some(pb::UidSet::of(uids.iter().copied())),
        mode: pb::FlagsMode::Add as i32,
        flags: Some(f),
        ..Default::default()
    };
    let deleted = pb::Flags {
        deleted: true,
        ..Default::default()
    };
    let seen = pb::Flags {
        seen: true,
        ..Default::default()
    };
    b.store_flags(flag(&[3, 10, 31], deleted)).await.unwrap();
    b.expunge(pb::ExpungeRequest {
        mailbox: "INBOX".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    b.store_flags(flag(&[1, 2, 4, 8, 16, 32], seen))
        .await
        .unwrap();
    deliver(1).await;
    let now = ask(&mut a, Some(&known), None).await;
    assert!(now.0.iter().all(|s| s.len() == 31), "{now:?}");
    assert!(!now.0[0].contains(&10) && !now.0[0].contains(&35));
    assert_eq!(now, afresh(Some(&known), None).await);
    let seen_key = || {
        Some(pb::SearchKey {
            key: Some(pb::search_key::Key::Flag("\\Seen".into())),
        })
    };
    let now = ask(&mut a, Some(&known), seen_key()).await;
    assert_eq!(now.0[0].len(), 6, "{now:?}");
    assert_eq!(now, afresh(Some(&known), seen_key()).await);
    let known: Vec<u32> = (1..=35).collect();
    assert_eq!(
        ask(&mut a, Some(&known), None).await,
        afresh(None, None).await
    );
}

/// App passwords (issue #14): made by the store and shown once; each logs
/// in to its own account only; revoking one refuses it and ends the
/// sessions opened with it, and leaves the others and the account's
/// password alone; a disabled account cannot use them.
async fn app_passwords_log_in_and_are_revoked_one_by_one(backend: Backend) {
    let t = setup(backend).await;
    t.add_account("p@example.org", "main-pw").await;
    t.add_account("q@example.org", "q-pw").await;
    let mut admin = t.admin();
    let mut add = async |name: &str| {
        admin
            .add_app_password(pb::AddAppPasswordRequest {
                address: "p@example.org".into(),
                name: name.into(),
            })
            .await
            .map(|r| r.into_inner().password)
    };
    let phone = add("phone").await.unwrap();
    let laptop = add("laptop").await.unwrap();
    assert!(phone.starts_with("app-") && phone.len() == 36 && phone != laptop);
    assert_eq!(add("phone").await.unwrap_err().code(), Code::AlreadyExists);
    let login = async |user: &str, pw: &str| {
        t.anonymous()
            .authenticate(pb::AuthenticateRequest {
                username: user.into(),
                password: pw.into(),
                client_ip: String::new(),
                protocol: "test".into(),
            })
            .await
            .map(|r| r.into_inner().session_token)
    };
    let phone_token = login("p@example.org", &phone).await.unwrap();
    let laptop_token = login("P@Example.org", &laptop).await.unwrap();
    login("p@example.org", "main-pw").await.unwrap();
    assert!(
        login("q@example.org", &phone).await.is_err(),
        "another account's"
    );
    let list = t
        .admin()
        .list_app_passwords(pb::ListAppPasswordsRequest {
            address: "p@example.org".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .passwords;
    let names: Vec<&str> = list.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["laptop", "phone"]);
    let mut with_phone = t.with_token(&phone_token);
    with_phone
        .list_mailboxes(pb::ListMailboxesRequest {})
        .await
        .unwrap();
    // On PostgreSQL, the phone's sessions on another replica too (opened
    // and used there, so that replica trusts them).
    let b = second_replica(&t, backend).await;
    let mut elsewhere = None;
    if let Some(b) = &b {
        let hearing = Hearing::start(&t, b, backend).await;
        let on_b = async |pw: &str| {
            let token = b
                .authenticate("p@example.org", pw, "")
                .await
                .unwrap()
                .into_inner()
                .session_token;
            let mut c = b.with_token(&token);
            c.list_mailboxes(pb::ListMailboxesRequest {}).await.unwrap();
            c
        };
        elsewhere = Some((on_b(&phone).await, on_b(&laptop).await, hearing));
        on_b(&phone).await;
    }
    t.admin()
        .revoke_app_password(pb::RevokeAppPasswordRequest {
            address: "p@example.org".into(),
            name: "phone".into(),
        })
        .await
        .unwrap();
    assert!(login("p@example.org", &phone).await.is_err(), "revoked");
    let e = with_phone
        .list_mailboxes(pb::ListMailboxesRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "its session ended: {e}");
    if let (Some(b), Some((mut phone_b, mut laptop_b, mut hearing))) = (&b, elsewhere) {
        hearing.heard(&t, "revoked").await;
        let e = phone_b
            .list_mailboxes(pb::ListMailboxesRequest {})
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "on B: {e}");
        let e = b
            .authenticate("p@example.org", &phone, "")
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "revoked, on B");
        laptop_b
            .list_mailboxes(pb::ListMailboxesRequest {})
            .await
            .unwrap();
    }
    t.with_token(&laptop_token)
        .list_mailboxes(pb::ListMailboxesRequest {})
        .await
        .unwrap();
    login("p@example.org", &laptop).await.unwrap();
    login("p@example.org", "main-pw").await.unwrap();
    let e = t
        .admin()
        .revoke_app_password(pb::RevokeAppPasswordRequest {
            address: "p@example.org".into(),
            name: "phone".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    t.admin()
        .set_account_disabled(pb::SetAccountDisabledRequest {
            address: "p@example.org".into(),
            disabled: true,
        })
        .await
        .unwrap();
    assert!(login("p@example.org", &laptop).await.is_err(), "disabled");
}

/// QUOTA's MESSAGE resource (RFC 9208 5.2): a limit on the number of
/// messages holds for concurrent deliveries (group commit included), the
/// recipient check, APPEND and COPY; MOVE and EXPUNGE keep the count
/// exact; setting only the storage limit leaves the message limit alone.
async fn message_count_quota_holds_everywhere_messages_arrive(backend: Backend) {
    let t = setup(backend).await;
    t.add_account("m@example.org", "pw").await;
    let mut admin = t.admin();
    admin
        .set_quota(pb::SetQuotaRequest {
            address: "m@example.org".into(),
            quota_bytes: 0,
            quota_messages: Some(3),
        })
        .await
        .unwrap();
    // Five deliveries at once: exactly three fit.
    let mut tasks = Vec::new();
    for i in 0..5 {
        let mut d = t.delivery();
        let m = message(&format!("m-{i}"), "small");
        tasks.push(tokio::spawn(async move {
            deliver_with(&mut d, &format!("m-{i}"), &["m@example.org"], &m)
                .await
                .unwrap()
                .results[0]
                .status
        }));
    }
    let mut accepted = 0;
    for task in tasks {
        match pb::RecipientStatus::try_from(task.await.unwrap()).unwrap() {
            pb::RecipientStatus::Accept => accepted += 1,
            pb::RecipientStatus::OverQuota => {}
            s => panic!("{s:?}"),
        }
    }
    assert_eq!(accepted, 3);
    let mut d = t.delivery();
    let check = d
        .check_recipient(pb::CheckRecipientRequest {
            address: "m@example.org".into(),
            size_hint: 10,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(check.status, pb::RecipientStatus::OverQuota as i32);
    let mut c = t.login("m@example.org", "pw").await;
    let q = c
        .get_quota(pb::GetQuotaRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!((q.messages, q.limit_messages, q.limit_bytes), (3, 3, 0));
    let append = |c: &mut mailbox_api::MailboxClient| {
        let mut c = c.clone();
        async move {
            c.append(tokio_stream::iter(vec![
                pb::AppendChunk {
                    part: Some(pb::append_chunk::Part::Header(pb::AppendHeader {
                        mailbox: "INBOX".into(),
                        ..Default::default()
                    })),
                },
                pb::AppendChunk {
                    part: Some(pb::append_chunk::Part::Data(message("a", "x"))),
                },
            ]))
            .await
        }
    };
    let refused = append(&mut c).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    c.create_mailbox(pb::CreateMailboxRequest {
        name: "Keep".into(),
        special_use: 0,
    })
    .await
    .unwrap();
    // MOVE does not change the count, so it is allowed at the limit.
    let (_, entries) = select_all(&mut c, "INBOX").await.unwrap();
    let uids: Vec<u32> = entries.iter().map(|e| e.uid).collect();
    c.r#move(pb::CopyRequest {
        mailbox: "INBOX".into(),
        uids: Some(pb::UidSet::of([uids[0]])),
        destination: "Keep".into(),
    })
    .await
    .unwrap();
    c.expunge(pb::ExpungeRequest {
        mailbox: "INBOX".into(),
        uids: Some(pb::UidSet::of([uids[1]])),
        ignore_deleted_flag: true,
        lease_id: String::new(),
    })
    .await
    .unwrap();
    // Two held: a COPY of two would make four, of one makes three.
    let c2 = c.clone();
    let copy = |uids: Vec<u32>| {
        let mut c = c2.clone();
        async move {
            c.copy(pb::CopyRequest {
                mailbox: "Keep".into(),
                uids: Some(pb::UidSet::of(uids)),
                destination: "INBOX".into(),
            })
            .await
        }
    };
    let (_, kept) = select_all(&mut c, "Keep").await.unwrap();
    assert_eq!(kept.len(), 1);
    c.r#move(pb::CopyRequest {
        mailbox: "INBOX".into(),
        uids: Some(pb::UidSet::of([uids[2]])),
        destination: "Keep".into(),
    })
    .await
    .unwrap();
    let (_, kept) = select_all(&mut c, "Keep").await.unwrap();
    let kept: Vec<u32> = kept.iter().map(|e| e.uid).collect();
    let refused = copy(kept.clone()).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    copy(vec![kept[0]]).await.unwrap();
    let q = c
        .get_quota(pb::GetQuotaRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(q.messages, 3);
    // Only the storage limit changes: the message limit stays.
    admin
        .set_quota(pb::SetQuotaRequest {
            address: "m@example.org".into(),
            quota_bytes: 1 << 20,
            quota_messages: None,
        })
        .await
        .unwrap();
    let q = c
        .get_quota(pb::GetQuotaRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!((q.limit_messages, q.limit_bytes), (3, 1 << 20));
    let accounts = admin
        .list_accounts(pb::ListAccountsRequest {
            domain: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .accounts;
    assert_eq!(accounts[0].quota_messages, 3, "{accounts:?}");
}

async fn list_tick(ticks: &mut tonic::Streaming<pb::WatchMailboxListResponse>) {
    tokio::time::timeout(std::time::Duration::from_secs(10), ticks.message())
        .await
        .expect("a tick within 10 s")
        .unwrap()
        .expect("the stream goes on");
}

/// WatchMailboxList (behind IMAP NOTIFY's MailboxName and
/// SubscriptionChange, RFC 5465 5.4-5.5) ticks for CREATE, RENAME,
/// SUBSCRIBE and DELETE made through another replica (PostgreSQL NOTIFY)
/// as through this one, and not for another account's changes.
async fn mailbox_list_watch_ticks_for_changes_on_any_replica(backend: Backend) {
    let t = setup(backend).await;
    let replica = second_replica(&t, backend).await;
    t.add_account("w@example.org", "pw").await;
    t.add_account("x@example.org", "pw").await;
    let mut watcher = t.login("w@example.org", "pw").await;
    let mut ticks = watcher
        .watch_mailbox_list(pb::WatchMailboxListRequest {})
        .await
        .unwrap()
        .into_inner();
    let writer_store = replica.as_ref().unwrap_or(&t);
    let mut w = writer_store.login("w@example.org", "pw").await;
    let mut x = writer_store.login("x@example.org", "pw").await;
    // Another account's change: no tick for w.
    x.create_mailbox(pb::CreateMailboxRequest {
        name: "Theirs".into(),
        special_use: 0,
    })
    .await
    .unwrap();
    let quiet = tokio::time::timeout(std::time::Duration::from_millis(500), ticks.message()).await;
    assert!(quiet.is_err(), "another account's change ticked: {quiet:?}");
    w.create_mailbox(pb::CreateMailboxRequest {
        name: "Mine".into(),
        special_use: 0,
    })
    .await
    .unwrap();
    list_tick(&mut ticks).await;
    let names = |l: pb::ListMailboxesResponse| -> Vec<String> {
        l.mailboxes.into_iter().map(|m| m.name).collect()
    };
    let l = watcher
        .list_mailboxes(pb::ListMailboxesRequest {})
        .await
        .unwrap()
        .into_inner();
    let l = names(l);
    assert!(
        l.contains(&"Mine".to_string()) && !l.contains(&"Theirs".to_string()),
        "{l:?}"
    );
    w.rename_mailbox(pb::RenameMailboxRequest {
        from: "Mine".into(),
        to: "Ours".into(),
    })
    .await
    .unwrap();
    list_tick(&mut ticks).await;
    w.set_subscribed(pb::SetSubscribedRequest {
        name: "Ours".into(),
        subscribed: true,
    })
    .await
    .unwrap();
    list_tick(&mut ticks).await;
    w.delete_mailbox(pb::DeleteMailboxRequest {
        name: "Ours".into(),
    })
    .await
    .unwrap();
    list_tick(&mut ticks).await;
}

/// URLAUTH (RFC 4467) in the store: GENURLAUTH only for the caller's own
/// mailbox; URLFETCH checks the verifier over the rump, the access
/// identifier against the caller, EXPIRE, and reads the owner's message
/// across accounts; RESETKEY (one mailbox, or all) stops old URLs; every
/// refusal is NOT_FOUND.
async fn urlauth_keys_verify_and_reset(backend: Backend) {
    let t = setup(backend).await;
    t.add_account("o@example.org", "pw").await;
    t.add_account("r@example.org", "pw").await;
    t.deliver("u1", &["o@example.org"], &message("urlauth", "the body"))
        .await;
    let mut o = t.login("o@example.org", "pw").await;
    let mut r = t.login("r@example.org", "pw").await;
    let gen_url = |c: &mut mailbox_api::MailboxClient, rump: &str| {
        let mut c = c.clone();
        let rump = rump.to_string();
        async move {
            c.gen_url_auth(pb::GenUrlAuthRequest { rump })
                .await
                .map(|r| r.into_inner().url)
        }
    };
    let fetch = |c: &mut mailbox_api::MailboxClient, url: &str| {
        let mut c = c.clone();
        let url = url.to_string();
        async move {
            let mut s = c.url_fetch(pb::UrlFetchRequest { url }).await?.into_inner();
            let mut data = Vec::new();
            while let Some(chunk) = s.message().await? {
                data.extend_from_slice(&chunk.data);
            }
            Ok::<_, tonic::Status>(data)
        }
    };
    let base = "imap://o%40example.org@h/INBOX/;UID=1";
    let url = gen_url(&mut o, &format!("{base};URLAUTH=authuser"))
        .await
        .unwrap();
    assert!(
        url.starts_with(&format!("{base};URLAUTH=authuser:internal:")),
        "{url}"
    );
    let body = fetch(&mut r, &url).await.unwrap();
    assert!(String::from_utf8_lossy(&body).contains("the body"));
    // Someone else's mailbox, a URL without URLAUTH, a full URL: refused.
    for bad in [
        "imap://r%40example.org@h/INBOX/;UID=1;URLAUTH=authuser".to_string(),
        base.to_string(),
        url.clone(),
    ] {
        let e = gen_url(&mut o, &bad).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{bad}: {e:?}");
    }
    // The verifier covers the rump; user+ admits only that user; EXPIRE.
    let tampered = url.replacen("UID=1", "UID=2", 1);
    let only_o = gen_url(&mut o, &format!("{base};URLAUTH=user+o%40example.org"))
        .await
        .unwrap();
    let expired = gen_url(
        &mut o,
        &format!("{base};EXPIRE=2020-01-01T00:00:00Z;URLAUTH=anonymous"),
    )
    .await
    .unwrap();
    for (who, bad) in [(&r, &tampered), (&r, &only_o), (&o, &expired)] {
        let e = fetch(&mut who.clone(), bad).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{bad}: {e:?}");
    }
    assert!(fetch(&mut o, &only_o).await.is_ok());
    // RESETKEY of the mailbox, then of all: old URLs stop working.
    o.reset_url_auth_keys(pb::ResetUrlAuthKeysRequest {
        mailbox: "INBOX".into(),
    })
    .await
    .unwrap();
    assert_eq!(
        fetch(&mut r, &url).await.unwrap_err().code(),
        Code::NotFound
    );
    let again = gen_url(&mut o, &format!("{base};URLAUTH=authuser"))
        .await
        .unwrap();
    assert_ne!(again, url);
    assert!(fetch(&mut r, &again).await.is_ok());
    o.reset_url_auth_keys(pb::ResetUrlAuthKeysRequest {
        mailbox: String::new(),
    })
    .await
    .unwrap();
    assert_eq!(
        fetch(&mut r, &again).await.unwrap_err().code(),
        Code::NotFound
    );
}

/// An APPEND sent again with its idempotency key (a retry after a lost
/// answer) stores nothing and gets the first answer, MULTIAPPEND too, and
/// two tries racing each other store one copy; another key stores
/// another copy; an oversized key is refused.
async fn append_with_an_idempotency_key_stores_once(backend: Backend) {
    let t = setup(backend).await;
    t.add_account("k@example.org", "pw").await;
    let c = t.login("k@example.org", "pw").await;
    let append = |bodies: Vec<Vec<u8>>, key: &str| {
        let mut c = c.clone();
        let key = key.to_string();
        async move {
            let mut chunks = Vec::new();
            for (i, body) in bodies.into_iter().enumerate() {
                chunks.push(pb::AppendChunk {
                    part: Some(pb::append_chunk::Part::Header(pb::AppendHeader {
                        mailbox: "INBOX".into(),
                        idempotency_key: if i == 0 { key.clone() } else { String::new() },
                        ..Default::default()
                    })),
                });
                chunks.push(pb::AppendChunk {
                    part: Some(pb::append_chunk::Part::Data(body)),
                });
            }
            c.append(tokio_stream::iter(chunks))
                .await
                .map(|r| r.into_inner())
        }
    };
    let one = append(vec![message("once", "a")], "key-1").await.unwrap();
    let again = append(vec![message("once", "a")], "key-1").await.unwrap();
    assert_eq!(
        (again.uid_validity, again.uids.clone()),
        (one.uid_validity, one.uids.clone())
    );
    let multi = append(vec![message("m1", "b"), message("m2", "c")], "key-2")
        .await
        .unwrap();
    assert_eq!(multi.uids.len(), 2);
    let multi_again = append(vec![message("m1", "b"), message("m2", "c")], "key-2")
        .await
        .unwrap();
    assert_eq!(multi_again.uids, multi.uids);
    // Two tries at once: one stores, both answer the same.
    let (x, y) = tokio::join!(
        append(vec![message("race", "d")], "key-3"),
        append(vec![message("race", "d")], "key-3")
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.uids, y.uids);
    // Without a key, or with another one: another copy.
    let other = append(vec![message("once", "a")], "key-4").await.unwrap();
    let none = append(vec![message("once", "a")], "").await.unwrap();
    assert_ne!(other.uid, one.uid);
    assert_ne!(none.uid, other.uid);
    let long = append(vec![message("long", "e")], &"k".repeat(129))
        .await
        .unwrap_err();
    assert_eq!(long.code(), Code::InvalidArgument);
    let mut c2 = c.clone();
    let (_, entries) = select_all(&mut c2, "INBOX").await.unwrap();
    let mut want = vec![one.uid];
    want.extend(&multi.uids);
    want.extend([x.uid, other.uid, none.uid]);
    assert_eq!(entries.iter().map(|e| e.uid).collect::<Vec<_>>(), want);
    let q = c2
        .get_quota(pb::GetQuotaRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(q.messages, 6, "usage counts each message once");
}

/// A session token's lifetime is idle time (`session_ttl`): a session in
/// use outlives its token's own expiry (renewed in the database, and so
/// on every replica), one left unused expires. Real seconds pass here
/// (expiry is wall-clock time); the margins are wide for a loaded machine.
async fn sessions_live_while_used_and_expire_unused(backend: Backend) {
    const TTL: u64 = 4;
    let a = start_with(backend, |s| {
        s.session_ttl = std::time::Duration::from_secs(TTL);
    })
    .await;
    a.add_domain("example.org").await;
    a.add_account("e@example.org", "pw").await;
    let b = match backend {
        Backend::Postgres => Some(
            a.replica_with(|s| s.session_ttl = std::time::Duration::from_secs(TTL))
                .await,
        ),
        Backend::Sqlite => None,
    };
    let token = a
        .authenticate("e@example.org", "pw", "")
        .await
        .unwrap()
        .into_inner()
        .session_token;
    let mut c = a.with_token(&token);
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(2 * TTL) {
        c.list_mailboxes(pb::ListMailboxesRequest {})
            .await
            .expect("a session in use expired");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    // Past its own expiry, alive by its renewal: on another replica too.
    if let Some(b) = &b {
        b.with_token(&token)
            .list_mailboxes(pb::ListMailboxesRequest {})
            .await
            .expect("a renewed session on another replica");
    }
    // Unused for longer than its lifetime: refused everywhere.
    tokio::time::sleep(std::time::Duration::from_secs(2 * TTL + 2)).await;
    for t in std::iter::once(&a).chain(b.as_ref()) {
        let e = t
            .with_token(&token)
            .list_mailboxes(pb::ListMailboxesRequest {})
            .await
            .expect_err("an unused session outlived its lifetime");
        assert_eq!(e.code(), Code::Unauthenticated);
    }
}
