//! Message data holding NUL bytes (issue #23): a literal8 APPEND (RFC 3516
//! 4.4) of a part with `Content-Transfer-Encoding: binary`, then FETCHes
//! of it in every form, over a raw session. A `literal` may hold no NUL
//! (RFC 9051 4.3, CHAR8) and only a BINARY fetch may be answered with a
//! `literal8` (RFC 3516 4.2); RFC 3516 6 has BODYSTRUCTURE and BODY
//! describe a binary part in a CTE the base protocol carries. Before the
//! fix a debug build panicked the session (imap-types refused the NUL) and
//! a release build sent the NULs inside `{n}`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use e2e::{Backend, RawImap, TestImap, store_with_alice};
use tokio::io::{AsyncBufReadExt, AsyncReadExt};

/// A response read as bytes: every line, and each literal as (literal8?,
/// data), up to the tagged line of `tag`.
struct Raw {
    all: Vec<u8>,
    literals: Vec<(bool, Vec<u8>)>,
}

impl Raw {
    fn tagged_ok(&self, tag: &str) -> bool {
        let text = String::from_utf8_lossy(&self.all);
        text.lines()
            .last()
            .is_some_and(|l| l.starts_with(&format!("{tag} OK")))
    }
}

/// Reads (with a hang guard) until the tagged reply of `tag`.
async fn read_until_tagged(a: &mut RawImap, tag: &str) -> Raw {
    let guard = std::time::Duration::from_secs(30);
    let mut out = Raw {
        all: Vec::new(),
        literals: Vec::new(),
    };
    loop {
        let mut line = Vec::new();
        let n = tokio::time::timeout(guard, a.r.read_until(b'\n', &mut line))
            .await
            .expect("a line within 30 s")
            .unwrap();
        assert!(
            n > 0,
            "connection closed: {:?}",
            String::from_utf8_lossy(&out.all)
        );
        out.all.extend_from_slice(&line);
        let text = String::from_utf8_lossy(&line).into_owned();
        if text.starts_with(&format!("{tag} ")) {
            return out;
        }
        // `{n}` or `~{n}` ends the line: the literal's bytes follow.
        let t = text.trim_end();
        if let Some(open) = t.rfind('{')
            && t.ends_with('}')
            && let Ok(len) = t[open + 1..t.len() - 1].parse::<usize>()
        {
            let eight = open > 0 && t.as_bytes()[open - 1] == b'~';
            let mut data = vec![0; len];
            tokio::time::timeout(guard, a.r.read_exact(&mut data))
                .await
                .expect("the literal within 30 s")
                .unwrap();
            out.all.extend_from_slice(&data);
            out.literals.push((eight, data));
        }
    }
}

async fn command(a: &mut RawImap, c: &str) -> Raw {
    a.n += 1;
    let tag = format!("b{}", a.n);
    a.send(format!("{tag} {c}\r\n").as_bytes()).await;
    let r = read_until_tagged(a, &tag).await;
    assert!(
        r.tagged_ok(&tag),
        "{c}: {:?}",
        String::from_utf8_lossy(&r.all)
    );
    r
}

/// APPENDs `m` as a synchronising literal8 (`~{n}`, RFC 3516 4.4).
async fn append8(a: &mut RawImap, m: &[u8]) -> Raw {
    a.n += 1;
    let tag = format!("b{}", a.n);
    a.send(format!("{tag} APPEND INBOX ~{{{}}}\r\n", m.len()).as_bytes())
        .await;
    let go = a.line().await;
    assert!(
        go.starts_with("+"),
        "no continuation for the literal8: {go:?}"
    );
    a.send(m).await;
    a.send(b"\r\n").await;
    let r = read_until_tagged(a, &tag).await;
    assert!(r.tagged_ok(&tag), "{:?}", String::from_utf8_lossy(&r.all));
    r
}

/// The binary part's bytes: every octet value, NUL among them, and
/// line-break-like bytes.
fn attachment() -> Vec<u8> {
    let mut v: Vec<u8> = (0..=255u8).collect();
    v.extend_from_slice(b"\0\0\r\n--b\r\n\0");
    v
}

fn message(attachment: &[u8]) -> Vec<u8> {
    let mut m = b"From: a@example.org\r\nSubject: binary\r\nMIME-Version: 1.0\r\n\
                  Content-Type: multipart/mixed; boundary=\"=sep=\"\r\n\r\n\
                  --=sep=\r\nContent-Type: application/octet-stream\r\n\
                  Content-Transfer-Encoding: binary\r\n\r\n"
        .to_vec();
    m.extend_from_slice(attachment);
    m.extend_from_slice(
        b"\r\n--=sep=\r\nContent-Type: text/plain\r\n\r\nthe text\r\n--=sep=--\r\n",
    );
    m
}

fn no_nul_in_plain_literals(r: &Raw, what: &str) {
    for (eight, data) in &r.literals {
        assert!(
            *eight || !data.contains(&0),
            "{what}: a NUL inside a {{n}} literal (RFC 9051 4.3)"
        );
    }
}

/// RFC 3516 4.4 and 6, RFC 9051 4.3: a binary part with NULs, appended
/// with literal8, is stored in base64 (as Dovecot does): BODY[] and
/// BODY[1] carry it in plain literals without a NUL, BODYSTRUCTURE says
/// BASE64, BINARY[1] gives back the exact bytes in a literal8; the
/// session lives on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_literal8_binary_part_is_fetched_without_nul_in_literals() {
    let (store, _client) = store_with_alice(Backend::Sqlite).await;
    let imap = TestImap::start(&store.uri()).await;
    let mut a = RawImap::connect(imap.imap).await;
    a.login().await;
    let bin = attachment();
    append8(&mut a, &message(&bin)).await;
    a.ok("SELECT INBOX").await;

    let r = command(&mut a, "FETCH 1 (BODYSTRUCTURE)").await;
    let text = String::from_utf8_lossy(&r.all).to_ascii_uppercase();
    assert!(
        text.contains("\"APPLICATION\" \"OCTET-STREAM\" NIL NIL NIL \"BASE64\""),
        "RFC 3516 6: BODYSTRUCTURE describes the part in a base CTE: {text}"
    );

    let r = command(&mut a, "FETCH 1 (BODY.PEEK[])").await;
    no_nul_in_plain_literals(&r, "BODY[]");
    let whole = &r.literals[0].1;
    assert!(!r.literals[0].0, "BODY[] is never a literal8");
    assert!(
        String::from_utf8_lossy(whole).contains("Content-Transfer-Encoding: base64"),
        "{}",
        String::from_utf8_lossy(whole)
    );

    let r = command(&mut a, "FETCH 1 (BODY.PEEK[1])").await;
    no_nul_in_plain_literals(&r, "BODY[1]");
    let encoded: Vec<u8> = r.literals[0]
        .1
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&encoded)
        .expect("BODY[1] is the part in base64");
    assert_eq!(decoded, bin, "BODY[1] decodes to the appended bytes");

    let r = command(&mut a, "FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1])").await;
    assert_eq!(r.literals.len(), 1);
    let (eight, data) = &r.literals[0];
    assert!(*eight, "RFC 3516 4.2: NULs come in a literal8");
    assert_eq!(data, &bin, "BINARY[1] is the exact bytes appended");
    assert!(
        String::from_utf8_lossy(&r.all).contains(&format!("BINARY.SIZE[1] {}", bin.len())),
        "{:?}",
        String::from_utf8_lossy(&r.all)
    );

    let r = command(&mut a, "FETCH 1 (BODY.PEEK[TEXT] RFC822.TEXT)").await;
    no_nul_in_plain_literals(&r, "BODY[TEXT], RFC822.TEXT");
    assert_eq!(r.literals.len(), 2);

    // Not PEEK: sets \Seen, and the session still answers.
    let r = command(&mut a, "FETCH 1 (BODY[] RFC822)").await;
    no_nul_in_plain_literals(&r, "BODY[], RFC822");
    a.ok("NOOP").await;
}

/// A NUL outside a part declared binary (malformed MIME, stored as sent):
/// BODY and RFC822 items send it as 0x80 (as Dovecot does), keeping the
/// sizes; BINARY[] gives the exact bytes in a literal8 (RFC 3516 4.2).
/// The URLFETCH of it does the same (RFC 4467 3, RFC 9051 4.3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_elsewhere_is_sent_as_0x80_in_a_literal() {
    let (store, _client) = store_with_alice(Backend::Sqlite).await;
    let imap = TestImap::start(&store.uri()).await;
    let mut a = RawImap::connect(imap.imap).await;
    a.login().await;
    let m = b"Subject: nul\r\nX-Odd: a\0b\r\n\r\nbody \0 here\r\n";
    append8(&mut a, m).await;
    a.ok("SELECT INBOX").await;
    let r = command(
        &mut a,
        "FETCH 1 (RFC822.SIZE BODY.PEEK[] BODY.PEEK[HEADER] BODY.PEEK[1])",
    )
    .await;
    no_nul_in_plain_literals(&r, "BODY");
    assert!(
        String::from_utf8_lossy(&r.all).contains(&format!("RFC822.SIZE {}", m.len())),
        "stored as sent"
    );
    let want: Vec<u8> = m.iter().map(|&b| if b == 0 { 0x80 } else { b }).collect();
    assert_eq!(r.literals[0].1, want);
    let r = command(&mut a, "FETCH 1 (BINARY.PEEK[])").await;
    assert_eq!(r.literals, vec![(true, m.to_vec())]);
    let r = command(&mut a, "FETCH 1 (RFC822)").await;
    no_nul_in_plain_literals(&r, "RFC822");
    a.ok("NOOP").await;
}
