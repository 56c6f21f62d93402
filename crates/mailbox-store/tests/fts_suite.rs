//! The full-text index (issue 27) on both backends: every search key
//! answered through the index equals the scan's answer (a replica with
//! `fts_search` off reads and decodes every message), for a corpus with
//! every encoding (base64, quoted-printable, ISO-8859-1, UTF-8, encoded
//! words, HTML, attachments with file names, an attached message) and the
//! shared corpus; a message is found as soon as its delivery or APPEND is
//! acknowledged; bodies not indexed yet are found, then indexed in the
//! background; on PostgreSQL, texts written with their bodies but not yet
//! in the trigram index (a delivery leaves that to the trigram indexer)
//! are found too, in small and large mailboxes and by MULTISEARCH, and
//! the background indexer then adds them. Attachment file names are found
//! decoded, also in bodies indexed before they were (migration 0033).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use common::{Backend, TestStore, start_with};
use mailbox_api::pb;
use mailbox_api::pb::search_key::Key;

both_backends!(
    workers = 2;
    index_answers_equal_the_scan,
    a_large_mailbox_equals_the_scan,
    a_message_is_found_as_soon_as_it_is_stored,
    bodies_not_indexed_yet_are_found_then_indexed,
    texts_not_in_the_trigram_index_yet_are_found,
    file_names_are_found_decoded_and_old_texts_redone,
);

const USER: &str = "f@example.org";

/// The handmade corpus: one message per encoding the index must see
/// through.
fn corpus() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = Vec::new();
    // ISO-8859-1, 8bit, with a line break inside a phrase.
    let mut m = b"From: a@example.org\r\nTo: f@example.org\r\nSubject: latin1\r\n\
Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        .to_vec();
    m.extend_from_slice(b"Gr\xfc\xdfe aus K\xf6ln, \xe9t\xe9 \xe0 Paris\r\nzweite Zeile\r\n");
    v.push(m);
    // ISO-8859-1, quoted-printable with a soft line break.
    v.push(
        b"From: b@example.org\r\nSubject: qp\r\n\
Content-Type: text/plain; charset=ISO-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
Caf=E9 cr=E8me br=FBl=E9e, 50% off_sale in C:\\path\r\nsoft=\r\nbreak here\r\n"
            .to_vec(),
    );
    // UTF-8, base64 over two lines.
    v.push(
        b"From: c@example.org\r\nSubject: b64\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n\
R3LDvMOfZSBhdXMgS8O2bG4KzpTPgc+MzrzOv8+CIM6fzpTOn86jIM+Ezr/P\r\n\
hSDEsHN0YW5idWwKbGV0enRlIFplaWxl\r\n"
            .to_vec(),
    );
    // Encoded words in the header, a folded custom field.
    v.push(
        b"From: =?UTF-8?B?w4lsw6huZQ==?= <elene@example.org>\r\n\
To: =?utf-8?q?J=C3=BCrgen?= <j@example.org>\r\nCc: \"Zo\xc3\xab\" <zoe@example.org>\r\n\
Bcc: hidden@example.org\r\nSubject: =?ISO-8859-1?Q?Sch=F6ne_Gr=FC=DFe?=\r\n\
Message-ID: <enc.1@example.org>\r\nX-Custom: folded\r\n value across lines\r\n\
Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n\r\nplain body\r\n"
            .to_vec(),
    );
    // HTML beside its plain text, the HTML in quoted-printable.
    v.push(
        b"From: d@example.org\r\nSubject: html\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n\
--alt\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nBold move & more\r\n\
--alt\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
<html><body><p><b>Bold</b> move &amp; m=C3=B6re</p>\r\n<div>Second=20line</div></body></html>\r\n\
--alt--\r\n"
            .to_vec(),
    );
    // Attachments with file names (plain, RFC 2231, encoded word), one
    // base64 body that happens to hold "abc" in its encoded form.
    v.push(
        b"From: e@example.org\r\nSubject: attachments\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n\
--mix\r\nContent-Type: text/plain\r\n\r\nSee the attached report.\r\n\
--mix\r\nContent-Type: application/pdf; name=\"Quarterly Report 2024.pdf\"\r\n\
Content-Disposition: attachment; filename=\"Quarterly Report 2024.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKYWJjZGVmYWJjIHJlcG9ydA==\r\n\
--mix\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Disposition: attachment; filename*=utf-8''%C3%A9t%C3%A9.txt\r\n\r\nsummer notes\r\n\
--mix\r\nContent-Type: application/octet-stream; name=\"=?UTF-8?Q?r=C3=A9sum=C3=A9.bin?=\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nAAECAwQFBgcICQ==\r\n\
--mix--\r\n"
            .to_vec(),
    );
    // An attached message with its own header and text.
    v.push(
        b"From: g@example.org\r\nSubject: forward\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"fw\"\r\n\r\n\
--fw\r\nContent-Type: text/plain\r\n\r\nForwarding this.\r\n\
--fw\r\nContent-Type: message/rfc822\r\n\r\n\
From: inner@example.org\r\nSubject: =?utf-8?q?Inner_=C3=A9t=C3=A9?=\r\n\
Content-Type: text/plain; charset=utf-8\r\n\r\nAttached inner text, caf\xc3\xa9.\r\n\
--fw--\r\n"
            .to_vec(),
    );
    // HTML only, in base64 (so only its text is searched, not its
    // source): entities, a script, a style, a comment, non-ASCII.
    v.push(
        b"From: j@example.org\r\nSubject: newsletter\r\nMIME-Version: 1.0\r\n\
Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n\
PGh0bWw+PGhlYWQ+PHN0eWxlPi5zZWNyZXRzdHlsZSB7fTwvc3R5bGU+PC9oZWFkPjxib2R5Pjxw\r\n\
PjxiPk5ld3M8L2I+IGZyb20gY2FmJmVhY3V0ZTsgJmFtcDsgYmFyLCBLJm91bWw7bG4gJiM4MjEx\r\n\
OyBHcsO8w59lPC9wPjwhLS0gaGlkZGVuY29tbWVudCAtLT48c2NyaXB0PnZhciBzZWNyZXRzY3Jp\r\n\
cHQ9MTs8L3NjcmlwdD48ZGl2PlNlY29uZCZuYnNwO2Jsb2NrPC9kaXY+PC9ib2R5PjwvaHRtbD4=\r\n"
            .to_vec(),
    );
    // No body at all, a NUL, Greek final sigma, a dotted capital I.
    v.push(b"From: h@example.org\r\nSubject: header only\r\n".to_vec());
    v.push(
        "From: i@example.org\r\nSubject: ΟΔΟΣ\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
ΟΔΟΣ οδός İSTANBUL a\0b\r\n"
            .as_bytes()
            .to_vec(),
    );
    v
}

/// The shared FETCH corpus (/work/shared/corpus/messages), every `step`th
/// message.
fn shared_corpus(step: usize) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new("/work/shared/corpus/messages");
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .expect("the shared corpus at /work/shared/corpus/messages")
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    names
        .iter()
        .step_by(step)
        .map(|p| std::fs::read(p).unwrap())
        .collect()
}

/// A prefix of `s` of at most `n` characters, from character `at`.
fn chars(s: &str, at: usize, n: usize) -> String {
    s.chars().skip(at).take(n).collect()
}

/// Search strings taken from the messages themselves: from the decoded
/// text at a few places, 1 to 20 characters long, across line breaks,
/// and from the header values.
fn derived_needles(messages: &[Vec<u8>], per_message: usize) -> Vec<String> {
    use mailbox_store::summary::search_text::{body_search, header_fields, header_len};
    let mut out = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let text = body_search(m).text;
        let len = text.chars().count();
        if len > 0 {
            for k in 0..per_message {
                let at = (len * (k + 1) / (per_message + 1) + i) % len;
                out.push(chars(&text, at, [1, 2, 3, 5, 9, 20][(k + i) % 6]));
            }
            if let Some(nl) = text.find('\n') {
                let at = text[..nl].chars().count().saturating_sub(3);
                out.push(chars(&text, at, 8));
            }
        }
        for (_, value) in header_fields(&m[..header_len(m)]).iter().take(4) {
            let v = value.trim();
            let n = v.chars().count();
            if n > 2 {
                out.push(chars(v, n / 3, 6).to_uppercase());
            }
        }
    }
    out.retain(|s| !s.is_empty());
    out.sort();
    out.dedup();
    out
}

fn fixed_needles() -> Vec<String> {
    [
        "a",
        "é",
        "ö",
        "ab",
        "öl",
        "ln",
        "köln",
        "KÖLN",
        "Köln",
        "grüße",
        "GRÜSSE",
        "été",
        "ÉTÉ",
        "café",
        "CRÈME",
        "brûlée",
        "softbreak",
        "soft=",
        "=E9",
        "schöne",
        "Élène",
        "jürgen",
        "ZOË",
        "value across",
        "folded value",
        "<b>bold</b>",
        "bold",
        "&amp;",
        "m=C3",
        "möre",
        "second line",
        "Quarterly Report",
        "report 2024.pdf",
        ".pdf",
        "%C3%A9t",
        "résumé",
        "r=C3=A9sum",
        "été.txt",
        "RÉSUMÉ.bin",
        "attached inner text",
        "inner été",
        "οδοσ",
        "ΟΔΟΣ",
        "δρόμος",
        "istanbul",
        "i̇stanbul",
        "50%",
        "off_sale",
        "_",
        "%",
        "\\path",
        "C:\\",
        "\r\n",
        "Zeile\r\nzw",
        "Paris\r\nZW",
        "Köln\nΔ",
        "JVBERi",
        "abc",
        "AAECAw",
        "a\0b",
        "header only",
        "absent-word",
        "enc.1@example.org",
        "boundary",
        "News from café & bar",
        "news from caf&eacute;",
        "Köln – Grüße",
        "<b>News",
        "secretscript",
        "secretstyle",
        "hiddencomment",
        "second\u{a0}block",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn key(k: Key) -> pb::SearchKey {
    pb::SearchKey { key: Some(k) }
}

fn header(name: &str, value: &str) -> pb::SearchKey {
    key(Key::Header(pb::HeaderMatch {
        name: name.into(),
        value: value.into(),
    }))
}

/// Every key the index narrows, over `needles`: BODY, TEXT, HEADER on
/// the summary's fields and others, and AND / OR / NOT around them.
fn keys(needles: &[String]) -> Vec<pb::SearchKey> {
    let mut out = Vec::new();
    for (i, n) in needles.iter().enumerate() {
        out.push(key(Key::Body(n.clone())));
        out.push(key(Key::Text(n.clone())));
        let name = [
            "subject",
            "from",
            "to",
            "cc",
            "bcc",
            "message-id",
            "x-custom",
            "content-type",
            "mime-version",
        ][i % 9];
        out.push(header(name, n));
        if i % 5 == 0 {
            let other = &needles[(i * 7 + 3) % needles.len()];
            let and = key(Key::And(pb::SearchKeyList {
                keys: vec![key(Key::Body(n.clone())), key(Key::Text(other.clone()))],
            }));
            let or = key(Key::Or(pb::SearchKeyList {
                keys: vec![key(Key::Body(n.clone())), header("subject", other)],
            }));
            let not = key(Key::Not(Box::new(key(Key::Body(n.clone())))));
            out.extend([and, or, not]);
        }
    }
    for name in [
        "X-Custom",
        "x-absent",
        "Received",
        "Content-Transfer-Encoding",
        "SUBJECT",
        "Date",
    ] {
        out.push(header(name, ""));
        out.push(header(name, "e"));
        out.push(header(name, "example"));
    }
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

/// A store whose searches use the index (its background indexer off, so
/// the tests decide when bodies are indexed), the account, and a replica
/// that scans.
async fn stores(backend: Backend) -> (TestStore, TestStore) {
    let t = start_with(backend, |s| s.fts_indexer = false).await;
    t.add_domain("example.org").await;
    t.add_account(USER, "pw").await;
    let scan = t
        .replica_with(|s| {
            s.fts_search = false;
            s.fts_indexer = false;
        })
        .await;
    (t, scan)
}

/// Compares every key's answer on both stores; returns how many keys
/// found something (so a test can tell it was not vacuous).
async fn compare(t: &TestStore, scan: &TestStore, mailbox: &str, keys: &[pb::SearchKey]) -> usize {
    let mut a = t.login(USER, "pw").await;
    let mut b = scan.login(USER, "pw").await;
    let mut wrong = Vec::new();
    let mut found = 0;
    for k in keys {
        let (x, y) = (
            search(&mut a, mailbox, k).await,
            search(&mut b, mailbox, k).await,
        );
        if x != y {
            wrong.push(format!("{k:?}: index {x:?}, scan {y:?}"));
        }
        found += usize::from(!y.is_empty());
    }
    assert!(
        wrong.is_empty(),
        "{} of {} keys differ:\n{}",
        wrong.len(),
        keys.len(),
        wrong.join("\n")
    );
    found
}

async fn append(
    c: &mut mailbox_api::MailboxClient,
    mailbox: &str,
    messages: &[Vec<u8>],
) -> Vec<u32> {
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
    c.append(tokio_stream::iter(chunks))
        .await
        .unwrap()
        .into_inner()
        .uids
}

async fn index_answers_equal_the_scan(backend: Backend) {
    let (t, scan) = stores(backend).await;
    let mine = corpus();
    for (i, m) in mine.iter().enumerate() {
        t.deliver(&format!("c{i}"), &[USER], m).await;
    }
    // The same messages again through APPEND (one, then several in one
    // stream): the other ways a body is stored.
    let mut c = t.login(USER, "pw").await;
    append(&mut c, "INBOX", &mine[..1]).await;
    append(&mut c, "INBOX", &mine[1..]).await;
    let mut needles = fixed_needles();
    needles.extend(derived_needles(&mine, 6));
    let keys_inbox = keys(&needles);
    let found = compare(&t, &scan, "INBOX", &keys_inbox).await;
    assert!(
        found > keys_inbox.len() / 3,
        "{found} of {} keys found something",
        keys_inbox.len()
    );

    // What the evaluator finds and the index must not lose.
    let mut a = t.login(USER, "pw").await;
    let n = mine.len() as u32;
    let both = |u: u32| vec![u, u + n];
    assert_eq!(
        search(&mut a, "INBOX", &key(Key::Body("KÖLN".into()))).await,
        {
            let mut v = both(1);
            v.extend(both(3));
            v.extend(both(8));
            v.sort();
            v
        }
    );
    assert_eq!(
        search(&mut a, "INBOX", &key(Key::Body("crème".into()))).await,
        both(2)
    );
    assert_eq!(
        search(&mut a, "INBOX", &key(Key::Body("Paris\r\nZW".into()))).await,
        both(1)
    );
    assert_eq!(
        search(&mut a, "INBOX", &key(Key::Body("KÖLN\nΔΡΌΜΟΣ".into()))).await,
        both(3)
    );
    assert_eq!(
        search(&mut a, "INBOX", &key(Key::Body("softbreak".into()))).await,
        both(2)
    );
    assert_eq!(
        search(&mut a, "INBOX", &key(Key::Text("Schöne".into()))).await,
        both(4)
    );
    assert_eq!(
        search(&mut a, "INBOX", &header("X-Custom", "folded value")).await,
        both(4)
    );
    assert_eq!(
        search(&mut a, "INBOX", &header("from", "Élène")).await,
        both(4)
    );
    assert_eq!(
        search(
            &mut a,
            "INBOX",
            &key(Key::Body("quarterly report 2024.pdf".into()))
        )
        .await,
        both(6)
    );
    assert_eq!(
        search(&mut a, "INBOX", &key(Key::Body("attached inner".into()))).await,
        both(7)
    );
    // HTML made text: tags, entities, scripts, styles and comments.
    assert_eq!(
        search(
            &mut a,
            "INBOX",
            &key(Key::Body("news from CAFÉ & bar".into()))
        )
        .await,
        both(8)
    );
    assert_eq!(
        search(&mut a, "INBOX", &key(Key::Text("köln – grüße".into()))).await,
        both(8)
    );
    for hidden in ["secretscript", "secretstyle", "hiddencomment", "<b>news"] {
        assert_eq!(
            search(&mut a, "INBOX", &key(Key::Body(hidden.into()))).await,
            Vec::<u32>::new(),
            "{hidden}"
        );
    }
    // Base64 bodies are not searched in their encoded form.
    assert_eq!(
        search(&mut a, "INBOX", &key(Key::Body("JVBERi".into()))).await,
        Vec::<u32>::new()
    );

    // The shared corpus in a folder of its own.
    a.create_mailbox(pb::CreateMailboxRequest {
        name: "Corpus".into(),
        special_use: 0,
    })
    .await
    .unwrap();
    let shared = shared_corpus(2);
    for chunk in shared.chunks(16) {
        append(&mut a, "Corpus", chunk).await;
    }
    let mut needles: Vec<String> = derived_needles(&shared, 2)
        .into_iter()
        .step_by(3)
        .take(160)
        .collect();
    needles.extend(["the", "THE", "é", "ü", "2024", "attachment", "absent-word"].map(String::from));
    let keys_corpus = keys(&needles);
    let found = compare(&t, &scan, "Corpus", &keys_corpus).await;
    assert!(
        found > keys_corpus.len() / 3,
        "{found} of {} keys found something",
        keys_corpus.len()
    );
}

/// A mailbox larger than the store's threshold for reading a mailbox's
/// own texts (2,000 messages): on PostgreSQL its searches go through the
/// trigram index, joined back to the mailbox; candidates come in more
/// than one window of rows; UID ranges bound the candidates. Answers equal
/// the scan's, and a small mailbox beside it keeps its own answers.
async fn a_large_mailbox_equals_the_scan(backend: Backend) {
    let (t, scan) = stores(backend).await;
    let mut c = t.login(USER, "pw").await;
    c.create_mailbox(pb::CreateMailboxRequest {
        name: "Big".into(),
        special_use: 0,
    })
    .await
    .unwrap();
    let mine = corpus();
    // Distinct bodies (each its own index text): the corpus again and
    // again, each copy with a numbered field and a word of its own.
    // Every tenth with a run of letters and digits longer than a word
    // (the word index keeps those apart), as DKIM signatures have.
    let long = |i: usize| format!("Ab{i:03}{}", "Qz7".repeat(25));
    let big: Vec<Vec<u8>> = (0..2_100)
        .map(|i| {
            let mut m = format!("X-Seq: n{i:05}\r\nX-Word: w{}\r\n", i % 7).into_bytes();
            if i % 10 == 3 {
                m.extend_from_slice(format!("X-Sig: b={}+x\r\n", long(i % 40)).as_bytes());
            }
            m.extend_from_slice(&mine[i % mine.len()]);
            m
        })
        .collect();
    // The first half in the trigram index, the second half (and the
    // INBOX) written but not yet in it: both ways a large mailbox's
    // texts are searched, at once.
    for chunk in big[..1_050].chunks(150) {
        append(&mut c, "Big", chunk).await;
    }
    index_trigrams(&t).await;
    for chunk in big[1_050..].chunks(150) {
        append(&mut c, "Big", chunk).await;
    }
    for (i, m) in mine.iter().enumerate() {
        t.deliver(&format!("c{i}"), &[USER], m).await;
    }
    let s = t.store.fts_status().await.unwrap();
    let waiting = match backend {
        Backend::Postgres => (1_050 + mine.len()) as u64,
        Backend::Sqlite => 0,
    };
    assert_eq!((s.pending, s.pending_trigram), (0, waiting));
    let needles: Vec<String> = [
        "köln",
        "CRÈME",
        "attached inner text",
        "news from café",
        "secretscript",
        "n00042",
        "n0204",
        "absent-word",
        "from",
        "plain body",
        "Paris\r\nZW",
        "ab",
        "e",
        // Where a string's runs of letters stand in the text's words (the
        // word index, PostgreSQL): bordered on one side, both, neither,
        // by punctuation, a line break, a no-break space, a NUL.
        "Zeile\r\nzw",
        "a\0b",
        ".pdf",
        "report 2024.pdf",
        "C:\\",
        "i̇stanbul",
        "50%",
        "off_sale",
        "%C3%A9t",
        "enc.1@example.org",
        "second\u{a0}block",
        "Köln – Grüße",
        "<b>News",
        "=E9",
        "ö",
        // Phrases (word pairs, PostgreSQL): next to a long run, across
        // header fields, words a text holds but not next to each other.
        "Qz7+x\r\nFrom:",
        "X-Word: w3\r\nX-Sig: b=",
        "n00042\r\nX-Word: w0",
        "aus Köln, été",
        "Köln Paris",
        "move & more",
    ]
    .map(String::from)
    .to_vec();
    // Parts of the long runs: inside, at the start, at the end, whole.
    let mut needles = needles;
    needles.extend([
        "Qz7Qz7Qz7Qz".to_string(),
        "ab013qz".to_string(),
        "=ab023qz7".to_string(),
        "Qz7Qz7+x".to_string(),
        format!("={}+", long(33)),
        format!("={}", long(13)),
        long(3),
        long(43),
    ]);
    let mut keys = keys(&needles);
    for (first, last, n) in [(1, 300, "köln"), (250, 2_050, "from"), (2_000, 2_100, "n0")] {
        keys.push(key(Key::And(pb::SearchKeyList {
            keys: vec![
                key(Key::Uid(pb::UidSet {
                    ranges: vec![pb::UidRange { first, last }],
                })),
                key(Key::Body(n.into())),
            ],
        })));
    }
    let found = compare(&t, &scan, "Big", &keys).await;
    assert!(found > keys.len() / 3, "{found} of {} keys", keys.len());
    compare(&t, &scan, "INBOX", &keys).await;
    // MULTISEARCH over both: more than 2,000 messages, so through the
    // trigram index and the texts not in it yet, as one search.
    let some: Vec<pb::SearchKey> = keys.iter().step_by(3).cloned().collect();
    compare_multi(&t, &scan, &some).await;
    let mut a = t.login(USER, "pw").await;
    assert_eq!(
        search(&mut a, "Big", &header("x-seq", "n00042")).await,
        vec![43]
    );
    let every = search(&mut a, "Big", &key(Key::Text("from".into()))).await;
    assert_eq!(every, (1..=2_100).collect::<Vec<u32>>());

    // Every text in the trigram index: the same answers through it.
    index_trigrams(&t).await;
    // Appended, delivered: every text with its words and their pairs.
    let s = t.store.fts_status().await.unwrap();
    assert_eq!((s.pending_trigram, s.pending_words), (0, 0));
    compare(&t, &scan, "Big", &keys).await;
    if matches!(backend, Backend::Postgres) {
        words_written_before_the_word_index(&t, &scan, &keys).await;
    }

    // 200 expunged: 1,900 messages over 2,100 UIDs. A replica that has
    // not counted Big yet counts it, small now (it reads Big's texts);
    // the store that counted it before goes by the trigram index for a
    // while yet. Both answer as the scan does.
    c.expunge(pb::ExpungeRequest {
        mailbox: "Big".into(),
        uids: Some(pb::UidSet {
            ranges: vec![pb::UidRange {
                first: 1,
                last: 200,
            }],
        }),
        ignore_deleted_flag: true,
        lease_id: String::new(),
    })
    .await
    .unwrap();
    let fresh = t.replica_with(|s| s.fts_indexer = false).await;
    compare(&fresh, &scan, "Big", &keys).await;
    compare(&t, &scan, "Big", &keys).await;
}

/// PostgreSQL: texts out of the word index as a version before it
/// (migration 0034) leaves them: written without their words, or put in
/// the trigram index without adding their words to the vocabulary (a
/// replica of that version during a rolling update); and as a version
/// before word pairs (migration 0038) leaves them: in the word index,
/// their words without pairs (a phrase would miss them). Every one of them
/// (more than the store's bound): a store that counts them goes by the
/// trigram index. Some: by the word index, reading those one by one. Then
/// the indexer computes them again (the same words as a delivery wrote),
/// and the word index holds them. The scan's answers throughout.
async fn words_written_before_the_word_index(
    t: &TestStore,
    scan: &TestStore,
    keys: &[pb::SearchKey],
) {
    let pool = sqlx::PgPool::connect(t.url()).await.unwrap();
    for q in [
        "CREATE TABLE saved_words AS SELECT blob_id, words, long_words FROM blob_text",
        // `paired` cleared by migration 0038's trigger (words without '|').
        "UPDATE blob_text SET words = NULL, long_words = NULL, worded = FALSE",
    ] {
        sqlx::query(q).execute(&pool).await.unwrap();
    }
    let old = t.replica_with(|s| s.fts_indexer = false).await;
    compare(&old, scan, "Big", keys).await;
    // 300 out of the word index: 150 with their words but not in the
    // vocabulary (only the word index's texts' words are), 100 with their
    // words but no pairs, 50 without words.
    for q in [
        "CREATE TABLE redo AS SELECT blob_id, row_number() OVER (ORDER BY md5(blob_id)) AS n \
           FROM saved_words ORDER BY md5(blob_id) LIMIT 300",
        "UPDATE blob_text t SET words = s.words, long_words = s.long_words, worded = TRUE, \
             paired = TRUE \
           FROM saved_words s WHERE s.blob_id = t.blob_id \
            AND t.blob_id NOT IN (SELECT blob_id FROM redo)",
        "UPDATE blob_text t SET words = s.words, long_words = s.long_words, paired = TRUE \
           FROM saved_words s, redo r WHERE s.blob_id = t.blob_id AND r.blob_id = t.blob_id \
            AND r.n <= 150",
        // As written by this version, then their words written again by
        // an older replica's indexer (which knows nothing of `paired`).
        "UPDATE blob_text t SET words = s.words, long_words = s.long_words, worded = TRUE, \
             paired = TRUE \
           FROM saved_words s, redo r WHERE s.blob_id = t.blob_id AND r.blob_id = t.blob_id \
            AND r.n > 150 AND r.n <= 250",
        "UPDATE blob_text t SET long_words = s.long_words, worded = TRUE, \
             words = ARRAY(SELECT w FROM unnest(s.words) w WHERE strpos(w, '|') = 0) \
           FROM saved_words s, redo r WHERE s.blob_id = t.blob_id AND r.blob_id = t.blob_id \
            AND r.n > 150 AND r.n <= 250",
        "DELETE FROM fts_words WHERE word NOT IN (\
           SELECT unnest(words) FROM blob_text WHERE worded)",
    ] {
        sqlx::query(q).execute(&pool).await.unwrap();
    }
    let some = t.replica_with(|s| s.fts_indexer = false).await;
    compare(&some, scan, "Big", keys).await;
    let every_third: Vec<pb::SearchKey> = keys.iter().step_by(3).cloned().collect();
    compare_multi(&some, scan, &every_third).await;
    assert_eq!(t.store.fts_status().await.unwrap().pending_words, 300);
    let mut redone = 0;
    loop {
        let n = t.store.fts_index_batch().await.unwrap();
        if n == 0 {
            break;
        }
        redone += n;
    }
    assert_eq!(redone, 300);
    let (unworded, differ, longs): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM blob_text WHERE NOT (worded AND paired)), \
           (SELECT COUNT(*) FROM blob_text t JOIN saved_words s ON s.blob_id = t.blob_id \
             WHERE t.words IS DISTINCT FROM s.words \
                OR t.long_words IS DISTINCT FROM s.long_words), \
           (SELECT COUNT(*) FROM blob_text WHERE long_words IS NOT NULL)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((unworded, differ), (0, 0));
    assert!(longs >= 40, "{longs} texts with long words");
    let status = t.store.fts_status().await.unwrap();
    assert_eq!((status.pending_trigram, status.pending_words), (0, 0));
    let now = t.replica_with(|s| s.fts_indexer = false).await;
    compare(&now, scan, "Big", keys).await;
}

/// Adds every text waiting for the trigram index to it, as the trigram
/// indexer does in the background.
async fn index_trigrams(t: &TestStore) {
    while t.store.fts_trigram_batch().await.unwrap() > 0 {}
}

/// MULTISEARCH over every mailbox of the account equals each mailbox's
/// scan.
async fn compare_multi(t: &TestStore, scan: &TestStore, keys: &[pb::SearchKey]) {
    let mut a = t.login(USER, "pw").await;
    let mut b = scan.login(USER, "pw").await;
    let mut wrong = Vec::new();
    for k in keys {
        let r = a
            .multi_search(pb::MultiSearchRequest {
                key: Some(k.clone()),
                personal: true,
                with_empty: true,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("multisearch {k:?}: {e}"))
            .into_inner();
        for m in r.results {
            let y = search(&mut b, &m.mailbox, k).await;
            if m.uids != y {
                wrong.push(format!(
                    "{} {k:?}: index {:?}, scan {y:?}",
                    m.mailbox, m.uids
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

async fn texts_not_in_the_trigram_index_yet_are_found(backend: Backend) {
    let (t, scan) = stores(backend).await;
    let mine = corpus();
    for (i, m) in mine.iter().enumerate() {
        t.deliver(&format!("c{i}"), &[USER], m).await;
    }
    let mut c = t.login(USER, "pw").await;
    c.create_mailbox(pb::CreateMailboxRequest {
        name: "Other".into(),
        special_use: 0,
    })
    .await
    .unwrap();
    append(&mut c, "Other", &mine[2..]).await;
    // Written with their bodies (searchable: `pending` is 0), not yet in
    // the trigram index on PostgreSQL.
    let s = t.store.fts_status().await.unwrap();
    let waiting = match backend {
        Backend::Postgres => mine.len() as u64,
        Backend::Sqlite => 0,
    };
    assert_eq!(
        (s.blobs, s.pending, s.pending_trigram),
        (mine.len() as u64, 0, waiting)
    );
    let mut needles = fixed_needles();
    needles.extend(derived_needles(&mine, 3));
    let keys = keys(&needles);
    compare(&t, &scan, "INBOX", &keys).await;
    compare_multi(&t, &scan, &keys[..keys.len() / 3]).await;

    // Half of them in the trigram index.
    t.store.fts_trigram_batch().await.unwrap();
    if matches!(backend, Backend::Postgres) {
        // One batch takes them all here; put half back.
        let pool = sqlx::PgPool::connect(t.url()).await.unwrap();
        sqlx::query(
            "UPDATE blob_text SET indexed = FALSE WHERE blob_id IN \
             (SELECT blob_id FROM blob_text ORDER BY blob_id LIMIT 5)",
        )
        .execute(&pool)
        .await
        .unwrap();
        assert_eq!(t.store.fts_status().await.unwrap().pending_trigram, 5);
        // Five others as a version before migration 0027 stored them:
        // with white space (here, a space between every two characters,
        // which LIKE over the text without it must see through), `joined`
        // false: out of the trigram index, read one by one, until the
        // indexer rewrites them.
        let old = sqlx::query(
            "UPDATE blob_text SET joined = FALSE, \
               text = regexp_replace(text, '(.)(.)', '\\1 \\2', 'g') \
             WHERE blob_id IN (SELECT blob_id FROM blob_text ORDER BY blob_id DESC LIMIT 5)",
        )
        .execute(&pool)
        .await
        .unwrap();
        assert_eq!(old.rows_affected(), 5);
        assert_eq!(t.store.fts_status().await.unwrap().pending_trigram, 10);
    }
    compare(&t, &scan, "Other", &keys).await;
    compare_multi(&t, &scan, &keys[keys.len() / 3..]).await;

    // A replica's background indexer, woken by a delivery through it,
    // adds the rest; the answers stay the same.
    let indexer = t.replica().await;
    indexer
        .deliver(
            "late",
            &[USER],
            &common::message("late", "a latecomer here"),
        )
        .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let s = t.store.fts_status().await.unwrap();
        if s.pending_trigram == 0 {
            assert_eq!((s.blobs, s.pending), (mine.len() as u64 + 1, 0));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "trigram indexer stuck at {s:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    if matches!(backend, Backend::Postgres) {
        // Every text is stored without white space now.
        let pool = sqlx::PgPool::connect(t.url()).await.unwrap();
        let (unjoined, spaced): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*) FILTER (WHERE NOT joined), \
               COUNT(*) FILTER (WHERE strpos(text, ' ') > 0) FROM blob_text",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!((unjoined, spaced), (0, 0));
        // Texts are compressed with LZ4 (migration 0032): a long one is,
        // and still found.
        t.deliver(
            "long",
            &[USER],
            &common::message("long", &"a long text, compressed well ".repeat(800)),
        )
        .await;
        let method: Option<String> = sqlx::query_scalar(
            "SELECT pg_column_compression(text) FROM blob_text \
             ORDER BY octet_length(text) DESC LIMIT 1",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(method.as_deref(), Some("lz4"));
        assert_eq!(
            search(&mut c, "INBOX", &key(Key::Body("TEXT, COMPRESSED".into()))).await,
            vec![mine.len() as u32 + 2]
        );
    }
    compare(&t, &scan, "INBOX", &keys).await;
    compare_multi(&t, &scan, &keys).await;
    assert_eq!(
        search(&mut c, "INBOX", &key(Key::Body("LATECOMER".into()))).await,
        vec![mine.len() as u32 + 1]
    );
}

async fn a_message_is_found_as_soon_as_it_is_stored(backend: Backend) {
    let (t, _scan) = stores(backend).await;
    let mut c = t.login(USER, "pw").await;
    for i in 0..10u32 {
        let word = format!("fresh{i}word");
        let body = common::message(&format!("s{i}"), &format!("a {word} here"));
        let uid = if i % 2 == 0 {
            t.deliver(&format!("d{i}"), &[USER], &body).await;
            i + 1
        } else {
            append(&mut c, "INBOX", &[body]).await[0]
        };
        let k = key(Key::Body(word.to_uppercase()));
        assert_eq!(search(&mut c, "INBOX", &k).await, vec![uid], "{word}");
    }
    let s = t.store.fts_status().await.unwrap();
    assert_eq!((s.blobs, s.pending), (10, 0));
    // On PostgreSQL their texts wait for the trigram index (searches
    // found them meanwhile); then they are in it, found the same.
    let waiting = if matches!(backend, Backend::Postgres) {
        10
    } else {
        0
    };
    assert_eq!(s.pending_trigram, waiting);
    index_trigrams(&t).await;
    assert_eq!(t.store.fts_status().await.unwrap().pending_trigram, 0);
    for i in 0..10u32 {
        let k = key(Key::Body(format!("fresh{i}word")));
        assert_eq!(search(&mut c, "INBOX", &k).await, vec![i + 1]);
    }
}

async fn bodies_not_indexed_yet_are_found_then_indexed(backend: Backend) {
    let (t, scan) = stores(backend).await;
    let mine = corpus();
    for (i, m) in mine.iter().enumerate() {
        t.deliver(&format!("c{i}"), &[USER], m).await;
    }
    // As a store upgraded to migration 0013 finds its bodies: no index
    // text, none indexed.
    forget_the_index(&t, backend).await;
    let status = t.store.fts_status().await.unwrap();
    assert_eq!(status.pending, mine.len() as u64);
    let mut needles = fixed_needles();
    needles.extend(derived_needles(&mine, 3));
    let keys = keys(&needles);
    compare(&t, &scan, "INBOX", &keys).await;
    let mut a = t.login(USER, "pw").await;
    assert_eq!(
        search(&mut a, "INBOX", &key(Key::Body("köln".into()))).await,
        vec![1, 3, 8]
    );

    // The indexer catches up, in batches.
    while t.store.fts_index_batch().await.unwrap() > 0 {}
    let status = t.store.fts_status().await.unwrap();
    assert_eq!((status.blobs, status.pending), (mine.len() as u64, 0));
    assert!(status.index_bytes > 0);
    compare(&t, &scan, "INBOX", &keys).await;

    // A rebuild marks every body again; searches stay whole meanwhile; a
    // replica's background indexer does the work.
    let mut admin = t.admin();
    let r = admin
        .fts_rebuild(pb::FtsRebuildRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.marked, mine.len() as u64);
    assert_eq!(
        search(&mut a, "INBOX", &key(Key::Body("köln".into()))).await,
        vec![1, 3, 8]
    );
    let _indexer = t.replica().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let s = admin
            .fts_status(pb::FtsStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        if s.pending == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "indexer stuck at {s:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    compare(&t, &scan, "INBOX", &keys).await;
    let stats = admin.stats(pb::StatsRequest {}).await.unwrap().into_inner();
    assert!(stats.index_bytes > 0);
}

/// Removes every index text and marks every body not indexed, under the
/// store.
async fn forget_the_index(t: &TestStore, backend: Backend) {
    let statements: &[&str] = match backend {
        Backend::Postgres => &[
            "DELETE FROM blob_text",
            "UPDATE blobs SET fts_indexed = FALSE",
        ],
        Backend::Sqlite => &[
            "DELETE FROM blob_fts",
            "DELETE FROM blob_text",
            "UPDATE blobs SET fts_indexed = FALSE",
        ],
    };
    match backend {
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(t.url()).await.unwrap();
            for s in statements {
                sqlx::query(*s).execute(&pool).await.unwrap();
            }
        }
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(t.url()).await.unwrap();
            for s in statements {
                sqlx::query(*s).execute(&pool).await.unwrap();
            }
        }
    }
}

/// Attachment file names are found decoded (RFC 2231 `filename*=`, an
/// encoded word in `name=`), by BODY and TEXT, through the index as by the
/// scan; a body whose text was written before (without the decoded names)
/// is marked by migration 0033 for indexing again: found meanwhile (it is
/// decoded), then indexed anew.
async fn file_names_are_found_decoded_and_old_texts_redone(backend: Backend) {
    let (t, scan) = stores(backend).await;
    let m = corpus()[5].clone();
    assert!(String::from_utf8_lossy(&m).contains("filename*=utf-8''%C3%A9t%C3%A9.txt"));
    t.deliver("att", &[USER], &m).await;
    let names = ["été.txt", "ÉTÉ.TXT", "résumé.bin", "RÉSUMÉ", "sumé.b"];
    let keys: Vec<pb::SearchKey> = names
        .iter()
        .flat_map(|n| [key(Key::Body(n.to_string())), key(Key::Text(n.to_string()))])
        .collect();
    let mut a = t.login(USER, "pw").await;
    for k in &keys {
        assert_eq!(search(&mut a, "INBOX", k).await, vec![1], "{k:?}");
    }
    compare(&t, &scan, "INBOX", &keys).await;

    // The text as a version before this one wrote it: without the
    // decoded names (the raw body has them only encoded).
    let fields = mailbox_store::summary::summarize(&m).search;
    let old = mailbox_store::summary::search_text::index_text(&m, &fields)
        .replace("été.txt\n", "")
        .replace("résumé.bin\n", "");
    assert!(!old.contains("été") && !old.contains("résumé"), "{old}");
    match backend {
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(t.url()).await.unwrap();
            let joined: String = old
                .chars()
                .filter(|c| !matches!(c, ' ' | '\n' | '\r' | '\t'))
                .collect();
            sqlx::query("UPDATE blob_text SET text = $1")
                .bind(joined)
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 33")
                .execute(&pool)
                .await
                .unwrap();
        }
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(t.url()).await.unwrap();
            let docid: i64 = sqlx::query_scalar("SELECT docid FROM blob_text")
                .fetch_one(&pool)
                .await
                .unwrap();
            sqlx::query("DELETE FROM blob_fts WHERE rowid = $1")
                .bind(docid)
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query("INSERT INTO blob_fts (rowid, text) VALUES ($1, $2)")
                .bind(docid)
                .bind(&old)
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 33")
                .execute(&pool)
                .await
                .unwrap();
        }
    }
    // Through the old text the index rules the body out.
    assert_eq!(
        search(&mut a, "INBOX", &key(Key::Body("été.txt".into()))).await,
        Vec::<u32>::new()
    );

    // The upgrade: a store that starts runs migration 0033, which marks
    // the body; searches decode it until the indexer has written it anew.
    let _upgraded = t.replica_with(|s| s.fts_indexer = false).await;
    assert_eq!(t.store.fts_status().await.unwrap().pending, 1);
    compare(&t, &scan, "INBOX", &keys).await;
    assert_eq!(
        search(&mut a, "INBOX", &key(Key::Body("été.txt".into()))).await,
        vec![1]
    );
    assert_eq!(t.store.fts_index_batch().await.unwrap(), 1);
    assert_eq!(t.store.fts_status().await.unwrap().pending, 0);
    index_trigrams(&t).await;
    compare(&t, &scan, "INBOX", &keys).await;
    for k in &keys {
        assert_eq!(search(&mut a, "INBOX", k).await, vec![1], "{k:?}");
    }
}
