//! The MIME corpus through the real server: every message is APPENDed over
//! IMAP and FETCHed back. BODY[] must be byte-exact, and ENVELOPE, BODY and
//! BODYSTRUCTURE must be exactly what the conversion checked against
//! Dovecot's answers in `fetch_corpus.rs` produces.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::num::NonZeroU32;
use std::path::Path;
use std::time::Duration;

use e2e::{Backend, TestImap, TestStore};
use imap_codec::ResponseCodec;
use imap_codec::encode::Encoder;
use imap_codec::imap_types::core::Vec1;
use imap_codec::imap_types::fetch::MessageDataItem;
use imap_codec::imap_types::response::{Data, Response};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The wire form of one FETCH item, as `imap-codec` writes it.
fn item_bytes(item: MessageDataItem<'static>) -> Vec<u8> {
    let resp = Response::Data(Data::Fetch {
        seq: NonZeroU32::MIN,
        items: Vec1::from(item),
    });
    let all = ResponseCodec::default().encode(&resp).dump();
    let start = b"* 1 FETCH (".len();
    all[start..all.len() - 3].to_vec()
}

/// Reads one response up to the tagged line, literals included.
async fn read_until_tagged(
    r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    tag: &str,
) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut line = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), r.read_until(b'\n', &mut line))
            .await
            .expect("response in time")
            .unwrap();
        assert!(!line.is_empty(), "closed");
        out.extend_from_slice(&line);
        if line.ends_with(b"}\r\n")
            && let Some(open) = line.iter().rposition(|&b| b == b'{')
        {
            let n: usize = std::str::from_utf8(&line[open + 1..line.len() - 3])
                .unwrap()
                .trim_start_matches('~')
                .parse()
                .unwrap();
            let mut buf = vec![0u8; n];
            r.read_exact(&mut buf).await.unwrap();
            out.extend_from_slice(&buf);
            continue;
        }
        if line.starts_with(format!("{tag} ").as_bytes()) {
            return out;
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_fetches_through_the_server_match() {
    let store = TestStore::start(Backend::Sqlite).await;
    let client = store.client();
    client.add_domain("example.org").await;
    client.add_account("alice@example.org", "pw").await;
    let imap = TestImap::start(&store.uri()).await;
    let s = TcpStream::connect(imap.imap).await.unwrap();
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    let mut greeting = String::new();
    r.read_line(&mut greeting).await.unwrap();
    w.write_all(b"l LOGIN alice@example.org pw\r\ns SELECT INBOX\r\n")
        .await
        .unwrap();
    read_until_tagged(&mut r, "l").await;
    read_until_tagged(&mut r, "s").await;

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../mailbox-store/tests/corpus/messages");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 60, "corpus missing: {}", dir.display());
    let mut failures = Vec::new();
    for (i, path) in files.iter().enumerate() {
        let raw = std::fs::read(path).unwrap();
        let tag = format!("a{i}");
        w.write_all(format!("{tag} APPEND INBOX {{{}+}}\r\n", raw.len()).as_bytes())
            .await
            .unwrap();
        w.write_all(&raw).await.unwrap();
        w.write_all(b"\r\n").await.unwrap();
        let resp = read_until_tagged(&mut r, &tag).await;
        let text = String::from_utf8_lossy(&resp);
        let uid: u32 = text
            .split("APPENDUID ")
            .nth(1)
            .and_then(|t| t.split_whitespace().nth(1))
            .and_then(|u| u.trim_end_matches(']').parse().ok())
            .unwrap_or_else(|| panic!("no APPENDUID: {text}"));
        let ftag = format!("f{i}");
        w.write_all(
            format!(
                "{ftag} UID FETCH {uid} (RFC822.SIZE ENVELOPE BODY BODYSTRUCTURE BODY.PEEK[])\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let got = read_until_tagged(&mut r, &ftag).await;

        let summary = mailbox_store::summary_pb::to_pb(&mailbox_store::summary::summarize(&raw));
        let env = imap_gateway::structure::envelope(summary.envelope.as_ref().unwrap());
        let body = summary.body.as_ref().unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let expect = [
            (
                "RFC822.SIZE",
                format!("RFC822.SIZE {}", raw.len()).into_bytes(),
            ),
            ("ENVELOPE", item_bytes(MessageDataItem::Envelope(env))),
            (
                "BODY",
                item_bytes(MessageDataItem::Body(
                    imap_gateway::structure::body_structure(body, false),
                )),
            ),
            (
                "BODYSTRUCTURE",
                item_bytes(MessageDataItem::BodyStructure(
                    imap_gateway::structure::body_structure(body, true),
                )),
            ),
        ];
        for (item, bytes) in expect {
            if !contains(&got, &bytes) {
                if failures.is_empty() {
                    eprintln!(
                        "first mismatch, {name} {item}:\ngot: {}\nwant: {}",
                        String::from_utf8_lossy(&got[..got.len().min(1500)]),
                        String::from_utf8_lossy(&bytes[..bytes.len().min(600)])
                    );
                }
                failures.push(format!("{name}: {item} differs"));
            }
        }
        let mut literal = format!("BODY[] {{{}}}\r\n", raw.len()).into_bytes();
        literal.extend_from_slice(&raw);
        if !contains(&got, &literal) {
            failures.push(format!("{name}: BODY[] is not byte-exact"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
