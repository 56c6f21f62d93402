//! Bodies compressed by the store (migration 0025, `blobs.data_codec`):
//! bodies stored raw before the migration (codec 0; on PostgreSQL with
//! their TOAST compression) and bodies the store compressed (codec 1) read
//! back byte for byte through every path that reads `blobs.data` (whole
//! bodies, byte ranges across the whole body, inline data of Fetch, the
//! search evaluator), on both backends; a corrupted compressed body is an
//! error, and the store goes on serving the others. Bodies over 256 KiB
//! are kept in pieces (codec 2), and a range reads back the same from
//! them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use common::{Backend, TestStore, start_with};
use mailbox_api::pb;
use mailbox_api::pb::search_key::Key;
use sqlx::Connection;

both_backends!(
    workers = 2;
    raw_and_compressed_bodies_read_back_byte_for_byte,
    large_bodies_are_kept_in_pieces_and_ranges_read_back,
);

const USER: &str = "c@example.org";

/// About 40 kB that compresses well, each different: `tag` is in every
/// line and is the word a BODY search looks for.
fn big(tag: &str) -> Vec<u8> {
    let mut s = format!(
        "From: a@remote.example\r\nTo: {USER}\r\nSubject: {tag}\r\n\
         Message-ID: <{tag}@remote.example>\r\n\r\n"
    );
    for i in 0..900 {
        s.push_str(&format!(
            "line {i} of {tag}, a body of {}\r\n",
            i * 7919 % 1000
        ));
    }
    s.into_bytes()
}

/// What `FetchBody` must answer for (`offset`, `length`): the bytes from
/// `offset`, `length` of them (to the end for 0).
fn expected(body: &[u8], offset: usize, length: usize) -> &[u8] {
    let start = offset.min(body.len());
    let end = if length == 0 {
        body.len()
    } else {
        (start + length).min(body.len())
    };
    &body[start..end]
}

async fn fetch_body(
    c: &mut mailbox_api::MailboxClient,
    uid: u32,
    offset: u64,
    length: u64,
) -> Result<(Vec<u8>, u64), tonic::Status> {
    let mut s = c
        .fetch_body(pb::FetchBodyRequest {
            mailbox: "INBOX".into(),
            uid,
            offset,
            length,
        })
        .await?
        .into_inner();
    let (mut out, mut total) = (Vec::new(), 0);
    while let Some(chunk) = s.message().await? {
        if out.is_empty() {
            total = chunk.total_size;
        }
        out.extend(chunk.data);
    }
    Ok((out, total))
}

async fn fetch_inline(
    c: &mut mailbox_api::MailboxClient,
    uid: u32,
) -> Result<Option<Vec<u8>>, tonic::Status> {
    let mut s = c
        .fetch(pb::FetchRequest {
            mailbox: "INBOX".into(),
            uids: Some(pb::UidSet::of([uid])),
            with_summary: true,
            changed_since: 0,
            with_data: true,
        })
        .await?
        .into_inner();
    let mut m = s.message().await?.expect("a batch").messages;
    assert_eq!(m.len(), 1);
    Ok(m.remove(0).data)
}

async fn search_body(
    c: &mut mailbox_api::MailboxClient,
    word: &str,
) -> Result<Vec<u32>, tonic::Status> {
    Ok(c.search(pb::SearchRequest {
        mailbox: "INBOX".into(),
        key: Some(pb::SearchKey {
            key: Some(Key::Body(word.into())),
        }),
    })
    .await?
    .into_inner()
    .uids)
}

/// Runs `sql` on the store's database with `$1` the blob id and `$2`
/// the bytes, when given.
async fn exec(t: &TestStore, backend: Backend, sql: &str, id: Option<&str>, bytes: Option<&[u8]>) {
    match backend {
        Backend::Postgres => {
            let mut db = sqlx::PgConnection::connect(t.url()).await.unwrap();
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()));
            if let Some(id) = id {
                q = q.bind(id);
            }
            if let Some(b) = bytes {
                q = q.bind(b);
            }
            q.execute(&mut db).await.unwrap();
        }
        Backend::Sqlite => {
            let mut db = sqlx::SqliteConnection::connect(t.url()).await.unwrap();
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()));
            if let Some(id) = id {
                q = q.bind(id);
            }
            if let Some(b) = bytes {
                q = q.bind(b);
            }
            q.execute(&mut db).await.unwrap();
        }
    }
}

/// (data_codec, stored bytes, size, PostgreSQL's TOAST compression) of a
/// body.
async fn stored(t: &TestStore, backend: Backend, id: &str) -> (i16, i64, i64, Option<String>) {
    match backend {
        Backend::Postgres => {
            let mut db = sqlx::PgConnection::connect(t.url()).await.unwrap();
            sqlx::query_as(
                "SELECT data_codec, CAST(octet_length(data) AS BIGINT), size, \
                 CAST(pg_column_compression(data) AS TEXT) FROM blobs WHERE id = $1",
            )
            .bind(id)
            .fetch_one(&mut db)
            .await
            .unwrap()
        }
        Backend::Sqlite => {
            let mut db = sqlx::SqliteConnection::connect(t.url()).await.unwrap();
            let (c, n, s): (i16, i64, i64) =
                sqlx::query_as("SELECT data_codec, length(data), size FROM blobs WHERE id = $1")
                    .bind(id)
                    .fetch_one(&mut db)
                    .await
                    .unwrap();
            (c, n, s, None)
        }
    }
}

async fn append(c: &mut mailbox_api::MailboxClient, body: Vec<u8>) -> u32 {
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
    .unwrap()
    .into_inner()
    .uid
}

async fn raw_and_compressed_bodies_read_back_byte_for_byte(backend: Backend) {
    // Searches scan (the evaluator reads every body), not the index.
    let t = start_with(backend, |s| s.fts_search = false).await;
    t.add_domain("example.org").await;
    t.add_account(USER, "pw").await;
    let mut c = t.login(USER, "pw").await;

    // uid 1: delivered, compressed by the store; uid 2: delivered, then
    // rewritten below as a body stored before the migration; uid 3:
    // appended, compressed; uid 4: too small to compress.
    let new_body = big("zanzibarnew");
    let old_body = big("zanzibarold");
    let appended = big("zanzibarappended");
    let small = common::message("small", "zanzibarsmall");
    let new_id = t.deliver("d-new", &[USER], &new_body).await.blob_id;
    let old_id = t.deliver("d-old", &[USER], &old_body).await.blob_id;
    assert_eq!(append(&mut c, appended.clone()).await, 3);
    let small_id = t.deliver("d-small", &[USER], &small).await.blob_id;
    let bodies = [&new_body, &old_body, &appended, &small];

    // As before 0025: the raw bytes, codec 0 (PostgreSQL compresses them
    // itself, as the column's storage then did).
    let rewrite = "UPDATE blobs SET data = $2, data_codec = 0 WHERE id = $1";
    match backend {
        Backend::Postgres => {
            exec(
                &t,
                backend,
                "ALTER TABLE blobs ALTER COLUMN data SET STORAGE EXTENDED",
                None,
                None,
            )
            .await;
            exec(&t, backend, rewrite, Some(&old_id), Some(&old_body)).await;
            exec(
                &t,
                backend,
                "ALTER TABLE blobs ALTER COLUMN data SET STORAGE EXTERNAL",
                None,
                None,
            )
            .await;
        }
        Backend::Sqlite => exec(&t, backend, rewrite, Some(&old_id), Some(&old_body)).await,
    }

    let (codec, bytes, size, toast) = stored(&t, backend, &new_id).await;
    assert_eq!((codec, size), (1, new_body.len() as i64));
    assert!(bytes * 3 < size, "{bytes} bytes stored for {size}");
    assert_eq!(toast, None, "compressed twice");
    let (codec, _, size, toast) = stored(&t, backend, &old_id).await;
    assert_eq!((codec, size), (0, old_body.len() as i64));
    if let Backend::Postgres = backend {
        assert!(toast.is_some(), "the old row is not TOAST-compressed");
    }
    let (codec, ..) = stored(&t, backend, &small_id).await;
    assert_eq!(codec, 0, "a small body is kept raw");

    for (i, body) in bodies.iter().enumerate() {
        let uid = i as u32 + 1;
        let n = body.len();
        let (whole, total) = fetch_body(&mut c, uid, 0, 0).await.unwrap();
        assert_eq!(total, n as u64);
        assert!(whole == **body, "uid {uid}: body differs");
        let inline = fetch_inline(&mut c, uid).await.unwrap();
        assert!(
            inline.as_deref() == Some(&body[..]),
            "uid {uid}: inline data differs"
        );
        // Ranges across the whole body, as BODY[]<partial> and BINARY ask.
        let mut cases = vec![(n, 1), (n, 0), (n + 10, 5), (n - 1, 1), (n - 1, 100)];
        let mut offset = 0;
        while offset < n {
            for length in [1, 13, 4096, n] {
                cases.push((offset, length));
            }
            cases.push((offset, 0));
            offset += 997;
        }
        for (offset, length) in cases {
            let (got, total) = fetch_body(&mut c, uid, offset as u64, length as u64)
                .await
                .unwrap();
            assert_eq!(total, n as u64);
            assert!(
                got == expected(body, offset, length),
                "uid {uid}: <{offset}.{length}> differs ({} bytes)",
                got.len()
            );
        }
    }
    for (word, uid) in [
        ("zanzibarnew", 1),
        ("zanzibarold", 2),
        ("zanzibarappended", 3),
        ("zanzibarsmall", 4),
    ] {
        assert_eq!(search_body(&mut c, word).await.unwrap(), [uid], "{word}");
    }

    // A corrupted compressed body is an error, the others still read.
    exec(
        &t,
        backend,
        "UPDATE blobs SET data = $2 WHERE id = $1",
        Some(&new_id),
        Some(&[0xf0; 200]),
    )
    .await;
    let e = fetch_body(&mut c, 1, 0, 0).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Internal, "{e:?}");
    let e = fetch_body(&mut c, 1, 100, 10).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Internal, "{e:?}");
    let e = fetch_inline(&mut c, 1).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Internal, "{e:?}");
    assert!(search_body(&mut c, "zanzibarold").await.is_err());
    // A size that does not match the block is one too.
    let id = blob_of(&t, backend, 3).await;
    let grow = "UPDATE blobs SET size = size + 1 WHERE id = $1";
    exec(&t, backend, grow, Some(&id), None).await;
    let e = fetch_body(&mut c, 3, 0, 0).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Internal, "{e:?}");
    for (uid, body) in [(2, &old_body), (4, &small)] {
        let (got, _) = fetch_body(&mut c, uid, 0, 0).await.unwrap();
        assert!(got == **body, "uid {uid} after the corruption");
    }
}

/// The blob id of INBOX's `uid`.
async fn blob_of(t: &TestStore, backend: Backend, uid: u32) -> String {
    let sql = "SELECT m.blob_id FROM messages m WHERE m.uid = $1";
    match backend {
        Backend::Postgres => {
            let mut db = sqlx::PgConnection::connect(t.url()).await.unwrap();
            sqlx::query_scalar(sql)
                .bind(uid as i64)
                .fetch_one(&mut db)
                .await
                .unwrap()
        }
        Backend::Sqlite => {
            let mut db = sqlx::SqliteConnection::connect(t.url()).await.unwrap();
            sqlx::query_scalar(sql)
                .bind(uid as i64)
                .fetch_one(&mut db)
                .await
                .unwrap()
        }
    }
}

/// About `n` bytes that compress well, every line numbered (a piece read
/// in the wrong place shows), with `tag` in the last line only.
fn numbered(tag: &str, n: usize) -> Vec<u8> {
    let mut s = format!(
        "From: a@remote.example\r\nTo: {USER}\r\nSubject: {tag}\r\n\
         Message-ID: <{tag}@remote.example>\r\n\r\n"
    );
    let mut i = 0;
    while s.len() < n {
        s.push_str(&format!("line {i:07} of a large body\r\n"));
        i += 1;
    }
    s.push_str(&format!("the end: {tag}\r\n"));
    s.into_bytes()
}

async fn large_bodies_are_kept_in_pieces_and_ranges_read_back(backend: Backend) {
    const CHUNK: usize = 256 * 1024;
    let t = start_with(backend, |s| s.fts_search = false).await;
    t.add_domain("example.org").await;
    t.add_account(USER, "pw").await;
    let mut c = t.login(USER, "pw").await;
    // uid 1 delivered, uid 2 appended: three pieces and a bit.
    let delivered = numbered("quokkadelivered", 3 * CHUNK + 1000);
    let appended = numbered("quokkaappended", 2 * CHUNK + 1);
    let id = t.deliver("d-big", &[USER], &delivered).await.blob_id;
    assert_eq!(append(&mut c, appended.clone()).await, 2);
    let (codec, bytes, size, toast) = stored(&t, backend, &id).await;
    assert_eq!((codec, size), (2, delivered.len() as i64));
    assert!(bytes * 3 < size, "{bytes} bytes stored for {size}");
    assert_eq!(toast, None, "compressed twice");
    let (codec, ..) = stored(&t, backend, &blob_of(&t, backend, 2).await).await;
    assert_eq!(codec, 2);

    for (uid, body) in [(1u32, &delivered), (2, &appended)] {
        let n = body.len();
        let (whole, total) = fetch_body(&mut c, uid, 0, 0).await.unwrap();
        assert_eq!(total, n as u64);
        assert!(whole == *body, "uid {uid}: body differs");
        let mut cases = vec![
            (0, 200),
            (0, 1),
            (n, 0),
            (n, 1),
            (n + 7, 3),
            (n - 1, 0),
            (n - 1, 9),
        ];
        for border in (1..=n / CHUNK).map(|k| k * CHUNK) {
            for offset in [border - 1, border, border + 1, border - 4096] {
                for length in [0, 1, 2, 13, 4096, CHUNK, CHUNK + 1, n] {
                    cases.push((offset, length));
                }
            }
        }
        for (offset, length) in cases {
            let (got, total) = fetch_body(&mut c, uid, offset as u64, length as u64)
                .await
                .unwrap();
            assert_eq!(total, n as u64);
            assert!(
                got == expected(body, offset, length),
                "uid {uid}: <{offset}.{length}> differs ({} bytes)",
                got.len()
            );
        }
    }
    // The evaluator reads the whole of it: the word in the last piece.
    assert_eq!(search_body(&mut c, "quokkadelivered").await.unwrap(), [1]);
    assert_eq!(search_body(&mut c, "quokkaappended").await.unwrap(), [2]);

    // A last piece cut short: the whole body is an error, a range in the
    // first pieces still reads; the other body is untouched.
    let mut bad = raw_stored(&t, backend, &id).await;
    bad.truncate(bad.len() - 20);
    exec(
        &t,
        backend,
        "UPDATE blobs SET data = $2 WHERE id = $1",
        Some(&id),
        Some(&bad),
    )
    .await;
    let e = fetch_body(&mut c, 1, 0, 0)
        .await
        .map(|(b, _)| b.len())
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Internal, "{e:?}");
    let (got, _) = fetch_body(&mut c, 1, 0, 300).await.unwrap();
    assert!(
        got == delivered[..300],
        "the first piece after the last's corruption"
    );
    let (got, _) = fetch_body(&mut c, 2, 0, 0).await.unwrap();
    assert!(got == appended, "the other body after the corruption");
}

/// What `blobs.data` holds for a body.
async fn raw_stored(t: &TestStore, backend: Backend, id: &str) -> Vec<u8> {
    let sql = "SELECT data FROM blobs WHERE id = $1";
    match backend {
        Backend::Postgres => {
            let mut db = sqlx::PgConnection::connect(t.url()).await.unwrap();
            sqlx::query_scalar(sql)
                .bind(id)
                .fetch_one(&mut db)
                .await
                .unwrap()
        }
        Backend::Sqlite => {
            let mut db = sqlx::SqliteConnection::connect(t.url()).await.unwrap();
            sqlx::query_scalar(sql)
                .bind(id)
                .fetch_one(&mut db)
                .await
                .unwrap()
        }
    }
}
