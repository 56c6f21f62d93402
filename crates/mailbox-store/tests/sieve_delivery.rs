//! Sieve at delivery and the outbox (issue #26), on both backends (a fresh
//! PostgreSQL database per test, and a fresh SQLite file), through the real
//! gRPC server: scripts uploaded with the Sieve service, messages delivered
//! with Deliver, the result read with Select and the outbox with
//! ClaimOutbox.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use common::{Backend, TestStore, select_all, start, start_with};
use mailbox_api::{DeliveryClient, pb};

both_backends!(
    fileinto_several_folders_with_flags,
    discard_stores_nothing,
    reject_is_a_refusal_or_a_bounce,
    redirect_and_vacation_go_to_the_outbox,
    vacation_is_not_sent_twice_within_its_days,
    no_vacation_to_lists_automatic_mail_or_the_null_sender,
    a_failing_script_keeps_the_message,
    the_same_delivery_id_twice_stores_and_sends_nothing_new,
    outbox_rows_are_leased_to_one_owner,
    a_script_activated_anywhere_runs_at_the_next_delivery,
    vacation_and_duplicate_marks_past_their_time_are_collected,
    a_claim_is_capped_by_bytes_and_an_oversized_redirect_is_kept,
    a_dropped_redirect_is_bounced_to_its_sender,
    a_vacation_reply_cannot_be_signed_by_someone_else,
    redirects_over_the_hourly_limit_are_kept_in_inbox,
    a_vacation_reply_over_the_hourly_limit_is_not_sent,
    a_bounce_over_the_hourly_limit_is_kept_in_inbox,
    a_mixed_group_from_two_replicas_stores_each_copy_once,
    every_copy_of_a_script_counts_against_the_quota_in_a_group,
);

const USER: &str = "rcpt@example.org";

/// A store with `USER` (password "pw") whose active script is `script`,
/// and `plain@example.org` without one.
async fn with_script(backend: Backend, script: &str) -> TestStore {
    with_script_and(backend, script, |_| {}).await
}

/// As [`with_script`], with the store's settings changed by `tweak`.
async fn with_script_and(
    backend: Backend,
    script: &str,
    tweak: impl FnOnce(&mut mailbox_store::StoreSettings),
) -> TestStore {
    let t = start_with(backend, tweak).await;
    t.add_domain("example.org").await;
    t.add_account(USER, "pw").await;
    t.add_account("plain@example.org", "pw").await;
    let mut sieve = sieve_of(&t).await;
    let put = sieve
        .put_script(pb::PutScriptRequest {
            name: "main".into(),
            content: script.as_bytes().to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(put.error.is_none(), "{:?}", put.error);
    sieve
        .set_active(pb::SetActiveRequest {
            name: "main".into(),
        })
        .await
        .unwrap();
    t
}

/// The Sieve service of `t` for a session of `USER`.
async fn sieve_of(t: &TestStore) -> mailbox_api::SieveClient {
    let token = t
        .authenticate(USER, "pw", "127.0.0.1")
        .await
        .unwrap()
        .into_inner()
        .session_token;
    mailbox_api::sieve_client(
        t.channel(),
        mailbox_api::CallAuth::new(t.secret.as_deref())
            .unwrap()
            .with_session(&token)
            .unwrap(),
    )
}

/// Delivers `body` from `from` to `rcpts`.
async fn deliver(
    c: &mut DeliveryClient,
    id: &str,
    from: &str,
    rcpts: &[&str],
    lmtp: bool,
    body: &[u8],
) -> pb::DeliverResponse {
    let mut chunks = vec![pb::DeliverChunk {
        part: Some(pb::deliver_chunk::Part::Header(pb::DeliverHeader {
            delivery_id: id.into(),
            envelope_from: from.into(),
            recipients: rcpts.iter().map(|s| s.to_string()).collect(),
            received_at: 1_700_000_000,
            trace_headers: b"Return-Path: <x@y>\r\nReceived: from a by b; now\r\n".to_vec(),
            size_hint: body.len() as u64,
            per_recipient_replies: lmtp,
        })),
    }];
    chunks.extend(
        body.chunks(mailbox_api::CHUNK_SIZE)
            .map(|c| pb::DeliverChunk {
                part: Some(pb::deliver_chunk::Part::Data(c.to_vec())),
            }),
    );
    c.deliver(tokio_stream::iter(chunks))
        .await
        .unwrap()
        .into_inner()
}

fn mail(extra: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: Sender <sender@remote.example>\r\nTo: {USER}\r\n{extra}\
         Subject: {subject}\r\nMessage-ID: <{subject}@remote.example>\r\n\
         Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n\r\nHello.\r\n"
    )
    .into_bytes()
}

/// Every outbox row, claimed (and so leased) by `owner`.
async fn outbox(t: &TestStore, owner: &str) -> Vec<pb::OutboxMessage> {
    t.delivery()
        .claim_outbox(pb::ClaimOutboxRequest {
            owner: owner.into(),
            limit: 100,
            lease_secs: 60,
        })
        .await
        .unwrap()
        .into_inner()
        .messages
}

/// Flags of every message in `mailbox` of USER.
async fn flags_in(t: &TestStore, mailbox: &str) -> Vec<pb::Flags> {
    let mut c = t.login(USER, "pw").await;
    let (_, entries) = select_all(&mut c, mailbox).await.unwrap();
    entries
        .into_iter()
        .map(|e| e.flags.unwrap_or_default())
        .collect()
}

fn status(r: &pb::DeliverResponse, i: usize) -> pb::RecipientStatus {
    r.results[i].status()
}

async fn fileinto_several_folders_with_flags(b: Backend) {
    let t = with_script(
        b,
        "require [\"fileinto\", \"imap4flags\", \"mailbox\"];\r\n\
         fileinto :create :flags \"\\\\Seen\" \"Work\";\r\n\
         fileinto :create :flags [\"\\\\Flagged\", \"$Important\"] \"Lists/Rust\";\r\n\
         fileinto \"Missing\";\r\n\
         keep;\r\n",
    )
    .await;
    let r = deliver(
        &mut t.delivery(),
        "d1",
        "sender@remote.example",
        &[USER],
        false,
        &mail("", "one"),
    )
    .await;
    assert_eq!(status(&r, 0), pb::RecipientStatus::Accept);
    let work = flags_in(&t, "Work").await;
    assert_eq!(work.len(), 1);
    assert!(work[0].seen && !work[0].flagged);
    let rust = flags_in(&t, "Lists/Rust").await;
    assert_eq!(rust.len(), 1);
    assert!(rust[0].flagged && !rust[0].seen);
    assert_eq!(rust[0].keywords, vec!["$Important".to_string()]);
    // `keep` and the missing folder (no :create) both land in INBOX: one copy.
    let inbox = flags_in(&t, "INBOX").await;
    assert_eq!(inbox.len(), 1);
    assert!(!inbox[0].seen);
    assert!(outbox(&t, "o").await.is_empty());
}

async fn discard_stores_nothing(b: Backend) {
    let t = with_script(b, "if header :contains \"subject\" \"spam\" { discard; }").await;
    let r = deliver(
        &mut t.delivery(),
        "d1",
        "sender@remote.example",
        &[USER],
        false,
        &mail("", "spam"),
    )
    .await;
    assert_eq!(status(&r, 0), pb::RecipientStatus::Accept);
    assert!(flags_in(&t, "INBOX").await.is_empty());
    deliver(
        &mut t.delivery(),
        "d2",
        "sender@remote.example",
        &[USER],
        false,
        &mail("", "ham"),
    )
    .await;
    assert_eq!(flags_in(&t, "INBOX").await.len(), 1);
}

async fn reject_is_a_refusal_or_a_bounce(b: Backend) {
    let t = with_script(
        b,
        "require \"reject\";\r\nreject \"I do not want this\";\r\n",
    )
    .await;
    let mut c = t.delivery();
    // LMTP: that recipient's refusal, the other accepts.
    let r = deliver(
        &mut c,
        "lmtp",
        "sender@remote.example",
        &[USER, "plain@example.org"],
        true,
        &mail("", "a"),
    )
    .await;
    assert_eq!(status(&r, 0), pb::RecipientStatus::Rejected);
    assert_eq!(r.results[0].reason, "I do not want this");
    assert_eq!(status(&r, 1), pb::RecipientStatus::Accept);
    assert!(outbox(&t, "o1").await.is_empty());
    // SMTP with this recipient alone: the refusal too (550).
    let r = deliver(
        &mut c,
        "smtp1",
        "sender@remote.example",
        &[USER],
        false,
        &mail("", "b"),
    )
    .await;
    assert_eq!(status(&r, 0), pb::RecipientStatus::Rejected);
    assert!(outbox(&t, "o2").await.is_empty());
    // SMTP where another recipient accepts: accepted, and a bounce.
    let r = deliver(
        &mut c,
        "smtp2",
        "sender@remote.example",
        &[USER, "plain@example.org"],
        false,
        &mail("", "c"),
    )
    .await;
    assert_eq!(status(&r, 0), pb::RecipientStatus::Accept);
    assert_eq!(status(&r, 1), pb::RecipientStatus::Accept);
    let out = outbox(&t, "o3").await;
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].kind, "bounce");
    assert_eq!(out[0].mail_from, "");
    assert_eq!(out[0].rcpt_to, "sender@remote.example");
    let text = String::from_utf8_lossy(&out[0].data);
    assert!(text.contains("report-type=delivery-status"), "{text}");
    assert!(text.contains("Final-Recipient: rfc822; rcpt@example.org"));
    assert!(text.contains("I do not want this"));
    assert!(flags_in(&t, "INBOX").await.is_empty());
}

async fn redirect_and_vacation_go_to_the_outbox(b: Backend) {
    let t = with_script(
        b,
        "require \"vacation\";\r\nredirect \"fwd@elsewhere.example\";\r\n\
         vacation :days 3 :subject \"Away\" \"I am away.\";\r\n",
    )
    .await;
    let r = deliver(
        &mut t.delivery(),
        "d1",
        "sender@remote.example",
        &[USER],
        false,
        &mail("", "hello"),
    )
    .await;
    assert_eq!(status(&r, 0), pb::RecipientStatus::Accept);
    // redirect cancels the implicit keep.
    assert!(flags_in(&t, "INBOX").await.is_empty());
    let mut out = outbox(&t, "o").await;
    out.sort_by(|a, b| a.kind.cmp(&b.kind));
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(out[0].kind, "redirect");
    assert_eq!(out[0].mail_from, "sender@remote.example");
    assert_eq!(out[0].rcpt_to, "fwd@elsewhere.example");
    let fwd = String::from_utf8_lossy(&out[0].data);
    assert!(
        fwd.starts_with("X-Sieve-Redirected-From: rcpt@example.org\r\nReceived:"),
        "{fwd}"
    );
    assert!(!fwd.contains("Return-Path:"));
    assert_eq!(out[1].kind, "vacation");
    assert_eq!(out[1].mail_from, "");
    assert_eq!(out[1].rcpt_to, "sender@remote.example");
    let reply = String::from_utf8_lossy(&out[1].data);
    assert!(reply.contains("Auto-Submitted: auto-replied"), "{reply}");
    assert!(reply.contains("In-Reply-To: <hello@remote.example>"));
    assert!(reply.contains("Subject: Away\r\n"));
    assert!(reply.contains("\r\n\r\nI am away.\r\n"));
    assert_eq!(out[0].delivery_id, "d1");
}

async fn vacation_is_not_sent_twice_within_its_days(b: Backend) {
    let t = with_script(
        b,
        "require \"vacation\";\r\nvacation :days 2 \"Away.\";\r\n",
    )
    .await;
    let mut c = t.delivery();
    for (i, from) in ["a@remote.example", "a@remote.example", "b@remote.example"]
        .iter()
        .enumerate()
    {
        deliver(
            &mut c,
            &format!("d{i}"),
            from,
            &[USER],
            false,
            &mail("", "x"),
        )
        .await;
    }
    let out = outbox(&t, "o").await;
    let mut to: Vec<&str> = out.iter().map(|m| m.rcpt_to.as_str()).collect();
    to.sort_unstable();
    assert_eq!(to, ["a@remote.example", "b@remote.example"]);
    // Vacation keeps the message.
    assert_eq!(flags_in(&t, "INBOX").await.len(), 3);
}

async fn no_vacation_to_lists_automatic_mail_or_the_null_sender(b: Backend) {
    let t = with_script(b, "require \"vacation\";\r\nvacation \"Away.\";\r\n").await;
    let mut c = t.delivery();
    let cases: [(&str, &str); 4] = [
        ("a@remote.example", "List-Id: <rust.lists.example>\r\n"),
        ("b@remote.example", "Auto-Submitted: auto-generated\r\n"),
        ("c@remote.example", "Precedence: bulk\r\n"),
        ("", ""),
    ];
    for (i, (from, extra)) in cases.iter().enumerate() {
        deliver(
            &mut c,
            &format!("d{i}"),
            from,
            &[USER],
            false,
            &mail(extra, "x"),
        )
        .await;
    }
    assert!(outbox(&t, "o").await.is_empty());
    assert_eq!(flags_in(&t, "INBOX").await.len(), 4);
}

async fn a_failing_script_keeps_the_message(b: Backend) {
    // RFC 5429 2.1: reject with fileinto is a run-time error.
    let t = with_script(
        b,
        "require [\"reject\", \"fileinto\"];\r\nfileinto \"Elsewhere\";\r\nreject \"no\";\r\n",
    )
    .await;
    let r = deliver(
        &mut t.delivery(),
        "d1",
        "sender@remote.example",
        &[USER],
        false,
        &mail("", "x"),
    )
    .await;
    assert_eq!(status(&r, 0), pb::RecipientStatus::Accept);
    assert_eq!(flags_in(&t, "INBOX").await.len(), 1);
}

async fn the_same_delivery_id_twice_stores_and_sends_nothing_new(b: Backend) {
    let t = with_script(
        b,
        "require [\"vacation\", \"fileinto\", \"mailbox\"];\r\nfileinto :create \"A\";\r\nkeep;\r\n\
         redirect \"fwd@elsewhere.example\";\r\nvacation :days 1 \"Away.\";\r\n",
    )
    .await;
    let mut c = t.delivery();
    let first = deliver(
        &mut c,
        "same",
        "s@remote.example",
        &[USER],
        false,
        &mail("", "x"),
    )
    .await;
    let again = deliver(
        &mut c,
        "same",
        "s@remote.example",
        &[USER],
        false,
        &mail("", "x"),
    )
    .await;
    assert!(!first.duplicate);
    assert!(again.duplicate);
    assert_eq!(first.results[0].uid, again.results[0].uid);
    assert_eq!(flags_in(&t, "INBOX").await.len(), 1);
    assert_eq!(flags_in(&t, "A").await.len(), 1);
    assert_eq!(outbox(&t, "o").await.len(), 2);
}

async fn outbox_rows_are_leased_to_one_owner(b: Backend) {
    let t = with_script(b, "redirect \"fwd@elsewhere.example\";\r\n").await;
    let mut c = t.delivery();
    for i in 0..3 {
        deliver(
            &mut c,
            &format!("d{i}"),
            "s@remote.example",
            &[USER],
            false,
            &mail("", "x"),
        )
        .await;
    }
    let mine = outbox(&t, "one").await;
    assert_eq!(mine.len(), 3);
    assert!(
        outbox(&t, "two").await.is_empty(),
        "leased rows go to one owner"
    );
    // Another owner cannot complete a row it does not hold.
    c.complete_outbox(pb::CompleteOutboxRequest {
        owner: "two".into(),
        id: mine[0].id,
    })
    .await
    .unwrap();
    c.complete_outbox(pb::CompleteOutboxRequest {
        owner: "one".into(),
        id: mine[1].id,
    })
    .await
    .unwrap();
    // A failure with no delay is due again at once, with its attempt counted.
    c.fail_outbox(pb::FailOutboxRequest {
        owner: "one".into(),
        id: mine[2].id,
        error: "relay down".into(),
        retry_after_secs: 0,
        drop: false,
    })
    .await
    .unwrap();
    let again = outbox(&t, "two").await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, mine[2].id);
    assert_eq!(again[0].attempts, 1);
    let depth = c
        .claim_outbox(pb::ClaimOutboxRequest {
            owner: "three".into(),
            limit: 10,
            lease_secs: 60,
        })
        .await
        .unwrap()
        .into_inner()
        .depth;
    assert_eq!(depth, 2);
    c.fail_outbox(pb::FailOutboxRequest {
        owner: "two".into(),
        id: mine[2].id,
        error: "refused".into(),
        retry_after_secs: 0,
        drop: true,
    })
    .await
    .unwrap();
}

/// A replica that has delivered while no account had an active script
/// (and so asks nothing about scripts) runs one activated since: on
/// itself at once, on another replica (PostgreSQL) once the change feed
/// has told it, and deactivated, no longer.
async fn a_script_activated_anywhere_runs_at_the_next_delivery(b: Backend) {
    let t = start(b).await;
    t.add_domain("example.org").await;
    t.add_account(USER, "pw").await;
    let mut d = t.delivery();
    let r = deliver(
        &mut d,
        "n0",
        "s@remote.example",
        &[USER],
        false,
        &mail("", "n0"),
    )
    .await;
    assert_eq!(status(&r, 0), pb::RecipientStatus::Accept);
    // The script goes in through `activator` and mail through `t`.
    let other = match b {
        Backend::Postgres => Some(t.replica().await),
        Backend::Sqlite => None,
    };
    let activator = other.as_ref().unwrap_or(&t);
    let mut sieve = sieve_of(activator).await;
    let put = sieve
        .put_script(pb::PutScriptRequest {
            name: "main".into(),
            content: b"require [\"fileinto\", \"mailbox\"]; fileinto :create \"Filed\";".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(put.error.is_none(), "{:?}", put.error);
    let set = |name: &str| pb::SetActiveRequest { name: name.into() };
    sieve.set_active(set("main")).await.unwrap();
    if other.is_some() {
        // The notification's way to the first replica (milliseconds).
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    deliver(
        &mut d,
        "n1",
        "s@remote.example",
        &[USER],
        false,
        &mail("", "n1"),
    )
    .await;
    assert_eq!(flags_in(&t, "Filed").await.len(), 1, "the script ran");
    assert_eq!(flags_in(&t, "INBOX").await.len(), 1);
    sieve.set_active(set("")).await.unwrap();
    if other.is_some() {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    deliver(
        &mut d,
        "n2",
        "s@remote.example",
        &[USER],
        false,
        &mail("", "n2"),
    )
    .await;
    assert_eq!(flags_in(&t, "Filed").await.len(), 1, "no script any more");
    assert_eq!(flags_in(&t, "INBOX").await.len(), 2);
}

/// Runs `sql` on the test's database; returns the rows it touched, or for
/// a `SELECT COUNT(*)` the count.
async fn sql(t: &TestStore, b: Backend, sql: &'static str) -> i64 {
    let count = sql.starts_with("SELECT");
    match b {
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(t.url()).await.unwrap();
            if count {
                sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
            } else {
                let r = sqlx::query(sql).execute(&pool).await.unwrap();
                r.rows_affected() as i64
            }
        }
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(t.url()).await.unwrap();
            if count {
                sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
            } else {
                let r = sqlx::query(sql).execute(&pool).await.unwrap();
                r.rows_affected() as i64
            }
        }
    }
}

async fn vacation_and_duplicate_marks_past_their_time_are_collected(b: Backend) {
    let t = with_script(
        b,
        "require [\"vacation\", \"duplicate\"];\r\n\
         if duplicate { discard; stop; }\r\n\
         vacation :days 1 \"Away.\";\r\n",
    )
    .await;
    let mut c = t.delivery();
    for (i, from) in ["old@remote.example", "new@remote.example"]
        .iter()
        .enumerate()
    {
        deliver(
            &mut c,
            &format!("d{i}"),
            from,
            &[USER],
            false,
            &mail("", &format!("m{i}")),
        )
        .await;
    }
    assert_eq!(sql(&t, b, "SELECT COUNT(*) FROM sieve_vacation").await, 2);
    assert_eq!(sql(&t, b, "SELECT COUNT(*) FROM sieve_duplicates").await, 2);
    // The first sender's marks ran out long ago.
    assert_eq!(
        sql(
            &t,
            b,
            "UPDATE sieve_vacation SET until = 1 WHERE sender = 'old@remote.example'"
        )
        .await,
        1
    );
    assert_eq!(
        sql(
            &t,
            b,
            "UPDATE sieve_duplicates SET until = 1 WHERE id LIKE '%m0%'"
        )
        .await,
        1
    );
    t.store
        .collect_blobs(std::time::Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(
        sql(
            &t,
            b,
            "SELECT COUNT(*) FROM sieve_vacation WHERE sender = 'new@remote.example'"
        )
        .await,
        1
    );
    assert_eq!(sql(&t, b, "SELECT COUNT(*) FROM sieve_vacation").await, 1);
    assert_eq!(
        sql(
            &t,
            b,
            "SELECT COUNT(*) FROM sieve_duplicates WHERE id LIKE '%m1%'"
        )
        .await,
        1
    );
    assert_eq!(sql(&t, b, "SELECT COUNT(*) FROM sieve_duplicates").await, 1);
}

/// A message of about `mib` MiB (lines of 998 characters).
fn big_mail(subject: &str, mib: usize) -> Vec<u8> {
    let mut m = mail("", subject);
    let line = format!("{}\r\n", "x".repeat(998));
    while m.len() < mib * 1024 * 1024 {
        m.extend_from_slice(line.as_bytes());
    }
    m
}

async fn a_claim_is_capped_by_bytes_and_an_oversized_redirect_is_kept(b: Backend) {
    let t = with_script(b, "redirect \"fwd@elsewhere.example\";\r\n").await;
    let mut c = t.delivery();
    // Four redirects of 3 MiB: 12 MiB in all, more than one claim returns.
    for i in 0..4 {
        let r = deliver(
            &mut c,
            &format!("d{i}"),
            "s@remote.example",
            &[USER],
            false,
            &big_mail(&format!("m{i}"), 3),
        )
        .await;
        assert_eq!(status(&r, 0), pb::RecipientStatus::Accept);
    }
    let first = outbox(&t, "o1").await;
    assert_eq!(first.len(), 2, "8 MiB per claim at most");
    let second = outbox(&t, "o2").await;
    assert_eq!(second.len(), 2);
    assert!(outbox(&t, "o3").await.is_empty());
    // A single row larger than the budget is still claimed, alone.
    let r = deliver(
        &mut c,
        "d9",
        "s@remote.example",
        &[USER],
        false,
        &big_mail("m9", 9),
    )
    .await;
    assert_eq!(status(&r, 0), pb::RecipientStatus::Accept);
    let alone = outbox(&t, "o4").await;
    assert_eq!(alone.len(), 1);
    assert!(alone[0].data.len() > 9 * 1024 * 1024);
    // A redirect larger than a gRPC reply never enters the outbox (it
    // would fail every claim): the message is kept instead.
    assert!(flags_in(&t, "INBOX").await.is_empty());
    let r = deliver(
        &mut c,
        "d17",
        "s@remote.example",
        &[USER],
        false,
        &big_mail("m17", 17),
    )
    .await;
    assert_eq!(status(&r, 0), pb::RecipientStatus::Accept);
    assert_eq!(flags_in(&t, "INBOX").await.len(), 1);
    assert!(outbox(&t, "o5").await.is_empty());
}

/// Drops a claimed row for good, as the relay does after a 5xx or when
/// the row expired.
async fn drop_row(t: &TestStore, owner: &str, id: i64, error: &str) {
    t.delivery()
        .fail_outbox(pb::FailOutboxRequest {
            owner: owner.into(),
            id,
            error: error.into(),
            retry_after_secs: 0,
            drop: true,
        })
        .await
        .unwrap();
}

async fn a_dropped_redirect_is_bounced_to_its_sender(b: Backend) {
    let t = with_script(
        b,
        "require \"vacation\";\r\nredirect \"fwd@elsewhere.example\";\r\nvacation \"Away.\";\r\n",
    )
    .await;
    let mut c = t.delivery();
    deliver(
        &mut c,
        "d1",
        "orig@remote.example",
        &[USER],
        false,
        &mail("", "lost"),
    )
    .await;
    // A redirect of a message from the null sender: nobody to tell.
    deliver(&mut c, "d2", "", &[USER], false, &mail("", "nobody")).await;
    let rows = outbox(&t, "o1").await;
    let mut kinds: Vec<(&str, &str)> = rows
        .iter()
        .map(|m| (m.kind.as_str(), m.mail_from.as_str()))
        .collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        [
            ("redirect", ""),
            ("redirect", "orig@remote.example"),
            ("vacation", "")
        ]
    );
    for m in &rows {
        drop_row(&t, "o1", m.id, "550 5.1.1 no such user here").await;
    }
    // One bounce, for the redirect with a sender; none for the vacation
    // reply or the null sender's redirect.
    let bounces = outbox(&t, "o2").await;
    assert_eq!(bounces.len(), 1, "{bounces:?}");
    let bounce = &bounces[0];
    assert_eq!(bounce.kind, "bounce");
    assert_eq!(bounce.mail_from, "", "a bounce has the null sender");
    assert_eq!(bounce.rcpt_to, "orig@remote.example");
    assert_eq!(bounce.delivery_id, "d1");
    let text = String::from_utf8_lossy(&bounce.data);
    assert!(
        text.contains("multipart/report; report-type=delivery-status"),
        "{text}"
    );
    assert!(
        text.contains("Final-Recipient: rfc822; fwd@elsewhere.example"),
        "{text}"
    );
    assert!(text.contains("no such user here"), "{text}");
    assert!(
        text.contains("Subject: lost"),
        "the original header: {text}"
    );
    // A bounce dropped in turn is not bounced (no loop).
    drop_row(&t, "o2", bounce.id, "550 5.1.1 no such user here").await;
    assert!(outbox(&t, "o3").await.is_empty());
}

/// A vacation reply goes out through our relay: its From is the user's
/// (a `:from` naming anyone else, built with variables past the parser's
/// check, gives way to the recipient's address; RFC 5230 4.2), and a
/// `:mime` reason adds only Content-* fields to the reply's header.
async fn a_vacation_reply_cannot_be_signed_by_someone_else(b: Backend) {
    let t = with_script(
        b,
        "require [\"vacation\", \"variables\"];\r\n\
         set \"who\" \"ceo@bank.example\";\r\n\
         vacation :from \"${who}\" :mime :subject \"Away\" text:\r\n\
         From: evil@bank.example\r\n\
         Reply-To: evil@bank.example\r\n\
         Content-Type: text/plain;\r\n\
         \tcharset=utf-8\r\n\
         \r\n\
         Gone fishing.\r\n\
         .\r\n;\r\n",
    )
    .await;
    let r = deliver(
        &mut t.delivery(),
        "v1",
        "sender@remote.example",
        &[USER],
        false,
        &mail("", "hi"),
    )
    .await;
    assert_eq!(status(&r, 0), pb::RecipientStatus::Accept);
    let out = outbox(&t, "o").await;
    assert_eq!(out.len(), 1, "{out:?}");
    let reply = String::from_utf8_lossy(&out[0].data);
    let (head, body) = reply.split_once("\r\n\r\n").unwrap();
    assert!(head.contains(&format!("From: {USER}\r\n")), "{reply}");
    assert!(!reply.contains("evil@bank.example"), "{reply}");
    assert!(!reply.contains("ceo@bank.example"), "{reply}");
    assert!(
        head.contains("Content-Type: text/plain;\r\n\tcharset=utf-8"),
        "{reply}"
    );
    assert_eq!(body, "Gone fishing.\r\n");
}

/// Over `sieve_max_sends_per_hour` a redirect is not queued: the message
/// is kept in INBOX instead; the next hour redirects again.
async fn redirects_over_the_hourly_limit_are_kept_in_inbox(b: Backend) {
    let t = with_script_and(b, "redirect \"fwd@elsewhere.example\";\r\n", |s| {
        s.sieve_max_sends_per_hour = 2
    })
    .await;
    let mut c = t.delivery();
    for (i, id) in ["r1", "r2", "r3"].iter().enumerate() {
        let r = deliver(
            &mut c,
            id,
            "sender@remote.example",
            &[USER],
            false,
            &mail("", id),
        )
        .await;
        assert_eq!(status(&r, 0), pb::RecipientStatus::Accept, "{i}");
    }
    let out = outbox(&t, "o1").await;
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(out.iter().all(|m| m.kind == "redirect"));
    assert_eq!(
        out.iter()
            .map(|m| m.delivery_id.as_str())
            .collect::<Vec<_>>(),
        ["r1", "r2"]
    );
    // The third: in INBOX, nothing lost.
    assert_eq!(flags_in(&t, "INBOX").await.len(), 1);
    // The count is the account's, not the outbox's: sent rows leave the
    // outbox, the limit stays spent.
    for m in &out {
        t.delivery()
            .complete_outbox(pb::CompleteOutboxRequest {
                owner: "o1".into(),
                id: m.id,
            })
            .await
            .unwrap();
    }
    deliver(
        &mut c,
        "r4",
        "sender@remote.example",
        &[USER],
        false,
        &mail("", "r4"),
    )
    .await;
    assert!(outbox(&t, "o2").await.is_empty());
    assert_eq!(flags_in(&t, "INBOX").await.len(), 2);
    // An hour later the count starts again.
    assert_eq!(
        sql(&t, b, "UPDATE sieve_sends SET hour = hour - 1").await,
        1
    );
    deliver(
        &mut c,
        "r5",
        "sender@remote.example",
        &[USER],
        false,
        &mail("", "r5"),
    )
    .await;
    let out = outbox(&t, "o3").await;
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].delivery_id, "r5");
    assert_eq!(flags_in(&t, "INBOX").await.len(), 2);
    // Another account's limit is its own: plain@ has no script, and the
    // count is one row per account.
    assert_eq!(sql(&t, b, "SELECT COUNT(*) FROM sieve_sends").await, 1);
}

/// A vacation reply over the limit is simply not sent (and its sender is
/// not remembered, so a later message may still be answered); redirects
/// take the budget first.
async fn a_vacation_reply_over_the_hourly_limit_is_not_sent(b: Backend) {
    let t = with_script_and(
        b,
        "require \"vacation\";\r\nvacation :days 1 \"Away.\";\r\n",
        |s| s.sieve_max_sends_per_hour = 1,
    )
    .await;
    let mut c = t.delivery();
    for (id, from) in [("v1", "one@remote.example"), ("v2", "two@remote.example")] {
        let r = deliver(&mut c, id, from, &[USER], false, &mail("", id)).await;
        assert_eq!(status(&r, 0), pb::RecipientStatus::Accept);
    }
    let out = outbox(&t, "o1").await;
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].kind, "vacation");
    assert_eq!(out[0].rcpt_to, "one@remote.example");
    // Both kept (vacation keeps), one sender remembered.
    assert_eq!(flags_in(&t, "INBOX").await.len(), 2);
    assert_eq!(sql(&t, b, "SELECT COUNT(*) FROM sieve_vacation").await, 1);

    // A redirect and a vacation with one message left: the redirect.
    let t = with_script_and(
        b,
        "require \"vacation\";\r\nvacation :days 1 \"Away.\";\r\n\
         redirect \"fwd@elsewhere.example\";\r\n",
        |s| s.sieve_max_sends_per_hour = 1,
    )
    .await;
    deliver(
        &mut t.delivery(),
        "rv",
        "one@remote.example",
        &[USER],
        false,
        &mail("", "rv"),
    )
    .await;
    let out = outbox(&t, "o1").await;
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].kind, "redirect");
    assert!(flags_in(&t, "INBOX").await.is_empty());
    assert_eq!(sql(&t, b, "SELECT COUNT(*) FROM sieve_vacation").await, 0);
}

/// A reject that would be a bounce, over the limit: no bounce, the
/// message is kept in INBOX (the other recipient accepted, so the sender
/// is told nothing either way).
async fn a_bounce_over_the_hourly_limit_is_kept_in_inbox(b: Backend) {
    let t = with_script_and(b, "require \"reject\";\r\nreject \"Not now\";\r\n", |s| {
        s.sieve_max_sends_per_hour = 1
    })
    .await;
    let mut c = t.delivery();
    for id in ["b1", "b2"] {
        let r = deliver(
            &mut c,
            id,
            "sender@remote.example",
            &[USER, "plain@example.org"],
            false,
            &mail("", id),
        )
        .await;
        assert_eq!(status(&r, 0), pb::RecipientStatus::Accept, "{id}");
        assert_eq!(status(&r, 1), pb::RecipientStatus::Accept, "{id}");
        if id == "b2" {
            assert!(r.results[0].uid > 0, "{r:?}");
        }
    }
    let out = outbox(&t, "o1").await;
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].kind, "bounce");
    assert_eq!(out[0].delivery_id, "b1");
    assert_eq!(flags_in(&t, "INBOX").await.len(), 1);
    // LMTP says the reject itself: no outgoing message, no limit.
    let r = deliver(
        &mut c,
        "b3",
        "sender@remote.example",
        &[USER],
        true,
        &mail("", "b3"),
    )
    .await;
    assert_eq!(status(&r, 0), pb::RecipientStatus::Rejected);
}

/// Puts `script` as `user`'s active script.
async fn activate(t: &TestStore, user: &str, script: &str) {
    let token = t
        .authenticate(user, "pw", "127.0.0.1")
        .await
        .unwrap()
        .into_inner()
        .session_token;
    let mut sieve = mailbox_api::sieve_client(
        t.channel(),
        mailbox_api::CallAuth::new(t.secret.as_deref())
            .unwrap()
            .with_session(&token)
            .unwrap(),
    );
    let put = sieve
        .put_script(pb::PutScriptRequest {
            name: "main".into(),
            content: script.as_bytes().to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(put.error.is_none(), "{:?}", put.error);
    sieve
        .set_active(pb::SetActiveRequest {
            name: "main".into(),
        })
        .await
        .unwrap();
}

/// Entries (flags) of `mailbox` of `user`.
async fn flags_of(t: &TestStore, user: &str, mailbox: &str) -> Vec<pb::Flags> {
    let mut c = t.login(user, "pw").await;
    let (_, entries) = select_all(&mut c, mailbox).await.unwrap();
    entries
        .into_iter()
        .map(|e| e.flags.unwrap_or_default())
        .collect()
}

/// Deliveries to scripted and plain accounts at once, each sent twice (to
/// both replicas on PostgreSQL), so that groups mix scripts' plans
/// (folders with flags, keep, discard, redirect, vacation) with plain
/// deliveries: every copy is stored once with its flags, every outgoing
/// message queued once, and usage counts every copy.
async fn a_mixed_group_from_two_replicas_stores_each_copy_once(b: Backend) {
    let t = start(b).await;
    t.add_domain("example.org").await;
    let (fa, fb, fc) = ("fa@example.org", "fb@example.org", "fc@example.org");
    let (p1, p2) = ("p1@example.org", "p2@example.org");
    for u in [fa, fb, fc, p1, p2] {
        t.add_account(u, "pw").await;
    }
    activate(
        &t,
        fa,
        "require [\"fileinto\", \"imap4flags\", \"mailbox\"];\r\n\
         fileinto :create :flags \"\\\\Seen\" \"Work\";\r\n\
         fileinto :create :flags [\"\\\\Flagged\", \"$Important\"] \"Lists/Rust\";\r\n\
         keep;\r\n",
    )
    .await;
    activate(
        &t,
        fb,
        "require [\"fileinto\", \"mailbox\", \"imap4flags\"];\r\n\
         if header :contains \"subject\" \"even\" { fileinto :create \"Even\"; }\r\n\
         elsif header :contains \"subject\" \"drop\" { discard; }\r\n\
         elsif header :contains \"subject\" \"fwd\" { redirect \"fwd@elsewhere.example\"; }\r\n\
         else { addflag \"$Kept\"; keep; }\r\n",
    )
    .await;
    activate(
        &t,
        fc,
        "require \"vacation\";\r\nvacation :days 2 \"Away.\";\r\n",
    )
    .await;
    // The folders of fa are there before (the batched path); fb's "Even"
    // is made by the first delivery filed there.
    deliver(
        &mut t.delivery(),
        "warm",
        "warm@remote.example",
        &[fa],
        false,
        &mail("", "warm"),
    )
    .await;
    let replica = match b {
        Backend::Postgres => Some(t.replica().await),
        Backend::Sqlite => None,
    };
    const N: usize = 48;
    let subject = |j: usize| match j % 4 {
        0 => format!("m{j}-even"),
        1 => format!("m{j}-drop"),
        2 => format!("m{j}-fwd"),
        _ => format!("m{j}-odd"),
    };
    let rcpts = move |j: usize| -> Vec<&'static str> {
        match j % 3 {
            0 => vec![fa, p1],
            1 => vec![fb, p2, fc],
            _ => vec![fa, fb, fc, p1],
        }
    };
    let mut tasks = Vec::new();
    for round in 0..2 {
        for j in 0..N {
            let mut c = match (&replica, round) {
                (Some(r), 1) => r.delivery(),
                _ => t.delivery(),
            };
            tasks.push(tokio::spawn(async move {
                let from = format!("s{}@remote.example", j % 4);
                let body = format!(
                    "From: <{from}>\r\nTo: {fa}, {fb}, {fc}, {p1}, {p2}\r\n\
                     Subject: {}\r\nMessage-ID: <m{j}@remote.example>\r\n\r\nHi.\r\n",
                    subject(j)
                );
                let r = deliver(
                    &mut c,
                    &format!("mixed-{j}"),
                    &from,
                    &rcpts(j),
                    false,
                    body.as_bytes(),
                )
                .await;
                (j, r)
            }));
        }
    }
    let mut first: std::collections::HashMap<usize, pb::DeliverResponse> =
        std::collections::HashMap::new();
    for task in tasks {
        let (j, r) = task.await.unwrap();
        for x in &r.results {
            assert_eq!(x.status(), pb::RecipientStatus::Accept, "{j}: {r:?}");
        }
        match first.remove(&j) {
            None => {
                first.insert(j, r);
            }
            Some(other) => {
                // The same id twice: one stored it, the other got its result.
                assert!(r.duplicate != other.duplicate, "{j}: {r:?} {other:?}");
                assert_eq!(r.results, other.results, "{j}");
            }
        }
    }
    let with = |who: &str| {
        (0..N)
            .filter(|&j| rcpts(j).contains(&who))
            .collect::<Vec<_>>()
    };
    // fa: a copy in Work (\Seen), Lists/Rust (\Flagged $Important) and
    // INBOX (none) of each, plus the warm-up's.
    let n_fa = with(fa).len() + 1;
    let work = flags_of(&t, fa, "Work").await;
    assert_eq!(work.len(), n_fa);
    assert!(
        work.iter()
            .all(|f| f.seen && !f.flagged && f.keywords.is_empty())
    );
    let rust = flags_of(&t, fa, "Lists/Rust").await;
    assert_eq!(rust.len(), n_fa);
    assert!(
        rust.iter()
            .all(|f| f.flagged && !f.seen && f.keywords == vec!["$Important".to_string()])
    );
    let inbox = flags_of(&t, fa, "INBOX").await;
    assert_eq!(inbox.len(), n_fa);
    assert!(
        inbox
            .iter()
            .all(|f| !f.seen && !f.flagged && f.keywords.is_empty())
    );
    // fb: "even" filed, "drop" discarded, "fwd" redirected, the rest kept
    // with $Kept.
    let fb_of = |k: usize| with(fb).into_iter().filter(|j| j % 4 == k).count();
    assert_eq!(flags_of(&t, fb, "Even").await.len(), fb_of(0));
    let kept = flags_of(&t, fb, "INBOX").await;
    assert_eq!(kept.len(), fb_of(3));
    assert!(kept.iter().all(|f| f.keywords == vec!["$Kept".to_string()]));
    // fc: vacation keeps every message.
    assert_eq!(flags_of(&t, fc, "INBOX").await.len(), with(fc).len());
    for p in [p1, p2] {
        let plain = flags_of(&t, p, "INBOX").await;
        assert_eq!(plain.len(), with(p).len(), "{p}");
        assert!(plain.iter().all(|f| !f.seen && f.keywords.is_empty()));
    }
    // Each UID once per mailbox was checked by the counts above (a UID
    // given twice would fail the insert); the outbox: one redirect per
    // "fwd" delivery to fb, one vacation reply per sender.
    let out = outbox(&t, "o").await;
    let redirects: Vec<&pb::OutboxMessage> = out.iter().filter(|m| m.kind == "redirect").collect();
    assert_eq!(redirects.len(), fb_of(2), "{out:?}");
    let mut ids: Vec<&str> = redirects.iter().map(|m| m.delivery_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), fb_of(2));
    let mut replied: Vec<&str> = out
        .iter()
        .filter(|m| m.kind == "vacation")
        .map(|m| m.rcpt_to.as_str())
        .collect();
    replied.sort_unstable();
    assert_eq!(
        replied,
        [
            "s0@remote.example",
            "s1@remote.example",
            "s2@remote.example",
            "s3@remote.example"
        ]
    );
    // Usage counts every copy once.
    assert_eq!(
        sql(&t, b, "SELECT COUNT(*) FROM messages").await,
        sql(
            &t,
            b,
            "SELECT CAST(SUM(message_count) AS BIGINT) FROM accounts"
        )
        .await
    );
    assert_eq!(
        sql(&t, b, "SELECT CAST(SUM(size) AS BIGINT) FROM messages").await,
        sql(
            &t,
            b,
            "SELECT CAST(SUM(used_bytes) AS BIGINT) FROM accounts"
        )
        .await
    );
    assert_eq!(
        sql(&t, b, "SELECT COUNT(*) FROM deliveries").await,
        N as i64 + 1
    );
}

/// A script's copies count against the account's message quota within a
/// group and across replicas: two copies per delivery under a limit of
/// five messages leave room for exactly two deliveries, while the plain
/// recipient of the same deliveries takes every one.
async fn every_copy_of_a_script_counts_against_the_quota_in_a_group(b: Backend) {
    let t = with_script(
        b,
        "require [\"fileinto\", \"mailbox\"];\r\nfileinto :create \"Work\";\r\nkeep;\r\n",
    )
    .await;
    t.admin()
        .set_quota(pb::SetQuotaRequest {
            address: USER.into(),
            quota_bytes: 0,
            quota_messages: Some(5),
        })
        .await
        .unwrap();
    let replica = match b {
        Backend::Postgres => Some(t.replica().await),
        Backend::Sqlite => None,
    };
    let mut tasks = Vec::new();
    for i in 0..8 {
        let mut c = match &replica {
            Some(r) if i % 2 == 1 => r.delivery(),
            _ => t.delivery(),
        };
        tasks.push(tokio::spawn(async move {
            deliver(
                &mut c,
                &format!("q{i}"),
                "sender@remote.example",
                &[USER, "plain@example.org"],
                false,
                &mail("", &format!("q{i}")),
            )
            .await
        }));
    }
    let mut accepted = 0;
    for task in tasks {
        let r = task.await.unwrap();
        match status(&r, 0) {
            pb::RecipientStatus::Accept => accepted += 1,
            pb::RecipientStatus::OverQuota => {}
            s => panic!("{s:?}"),
        }
        assert_eq!(status(&r, 1), pb::RecipientStatus::Accept);
    }
    assert_eq!(accepted, 2);
    assert_eq!(flags_in(&t, "Work").await.len(), 2);
    assert_eq!(flags_in(&t, "INBOX").await.len(), 2);
    assert_eq!(
        sql(
            &t,
            b,
            "SELECT message_count FROM accounts WHERE address = 'rcpt@example.org'"
        )
        .await,
        4
    );
    assert_eq!(
        sql(&t, b, "SELECT COUNT(*) FROM messages").await,
        sql(
            &t,
            b,
            "SELECT CAST(SUM(message_count) AS BIGINT) FROM accounts"
        )
        .await
    );
}
