//! URLAUTH (RFC 4467) and URLAUTH=BINARY (RFC 5524) end to end over raw
//! sessions, on both store backends: one account authorizes a URL,
//! another fetches it; every way a URL must stop working is tried.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::{Backend, RawImap, TestImap, store_with_alice, tagged};

fn all(r: &[String]) -> String {
    r.concat()
}

/// The URL in `* GENURLAUTH "url"`.
fn generated(r: &[String]) -> String {
    let l = r
        .iter()
        .find(|l| l.starts_with("* GENURLAUTH "))
        .unwrap_or_else(|| panic!("{r:?}"));
    l.trim_end()["* GENURLAUTH ".len()..]
        .trim_matches('"')
        .to_string()
}

const ATTACHMENT: &[u8] = b"\x00\x01binary\xffdata";

/// ATTACHMENT in base64.
const ATTACHMENT_B64: &str = "AAFiaW5hcnn/ZGF0YQ==";

fn multipart() -> String {
    let b64 = ATTACHMENT_B64;
    format!(
        "From: a@example.org\r\nSubject: report\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=b1\r\n\r\n\
         --b1\r\nContent-Type: text/plain\r\n\r\nSi vis pacem, para bellum.\r\n\
         --b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n\
         {b64}\r\n--b1--\r\n"
    )
}

/// GENURLAUTH of one rump, which must succeed; the URL it makes.
async fn gen_url(a: &mut RawImap, rump: String) -> String {
    let r = a.cmd(&format!("GENURLAUTH \"{rump}\" INTERNAL")).await;
    assert!(tagged(&r).contains(" OK "), "{r:?}");
    let url = generated(&r);
    // RFC 4467 2.1: the rump, ":internal:", the verifier.
    let token = url.strip_prefix(&format!("{rump}:internal:")).unwrap();
    assert!(token.len() >= 32 && token.bytes().all(|c| c.is_ascii_hexdigit()));
    url
}

/// RFC 4467 6 (GENURLAUTH), 7 (URLFETCH), 5 (RESETKEY), 3 (access
/// identifiers), 2.1 (the verifier covers the rump); RFC 5524 3
/// (BINARY, BODY, BODYPARTSTRUCTURE); RFC 4469 5 with an authorized URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urlauth_generate_fetch_and_reset() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let (store, client) = store_with_alice(backend).await;
        client.add_account("bob@example.org", "pw-bob").await;
        let imap = TestImap::start(&store.uri()).await;
        let mut a = RawImap::connect(imap.imap).await;
        a.login().await;
        let mut b = RawImap::connect(imap.imap).await;
        b.login_as("bob@example.org", "pw-bob").await;
        let caps = a.cmd("CAPABILITY").await;
        assert!(
            caps[0].contains(" URLAUTH ") && caps[0].contains(" URLAUTH=BINARY "),
            "{caps:?}"
        );
        let m = multipart();
        let r = a
            .cmd(&format!("APPEND INBOX {{{}+}}\r\n{m}", m.len()))
            .await;
        assert!(tagged(&r).contains(" OK "), "{r:?}");
        let r = a.cmd("EXAMINE INBOX").await;
        let validity: u32 = all(&r)
            .split("UIDVALIDITY ")
            .nth(1)
            .and_then(|s| s.split(']').next())
            .unwrap()
            .parse()
            .unwrap();
        let base = format!(
            "imap://alice%40example.org@mail.example.org/INBOX;UIDVALIDITY={validity}/;UID=1"
        );

        // authuser: any logged-in user fetches the part, as stored.
        let text = gen_url(&mut a, format!("{base}/;SECTION=1;URLAUTH=authuser")).await;
        let r = b.cmd(&format!("URLFETCH \"{text}\"")).await;
        assert!(tagged(&r).contains(" OK "), "{r:?}");
        assert_eq!(r[0], format!("* URLFETCH \"{text}\" {{26}}\r\n"), "{r:?}");
        assert_eq!(r[1], "Si vis pacem, para bellum.\r\n");

        // RFC 5524: the attachment decoded, as literal8 (it holds NUL),
        // with its BODYPARTSTRUCTURE; and BODY as stored.
        let att = gen_url(&mut a, format!("{base}/;SECTION=2;URLAUTH=authuser")).await;
        b.send(format!("x1 URLFETCH (\"{att}\" BODYPARTSTRUCTURE BINARY)\r\n").as_bytes())
            .await;
        let head = b.line().await;
        assert!(
            head.to_ascii_lowercase().starts_with(
                &format!(
                    "* URLFETCH \"{att}\" (BODYPARTSTRUCTURE (\"application\" \"octet-stream\" "
                )
                .to_ascii_lowercase()
            ),
            "{head}"
        );
        assert!(
            head.ends_with(&format!("(BINARY ~{{{}}}\r\n", ATTACHMENT.len())),
            "{head}"
        );
        assert_eq!(b.bytes(ATTACHMENT.len()).await, ATTACHMENT);
        assert_eq!(b.line().await, ")\r\n");
        let mut rest = Vec::new();
        loop {
            let l = b.line().await;
            let done = l.starts_with("x1 ");
            rest.push(l);
            if done {
                break;
            }
        }
        assert!(tagged(&rest).contains(" OK "), "{rest:?}");
        let r = b.cmd(&format!("URLFETCH (\"{att}\" BODY)")).await;
        assert!(
            r[0].ends_with(&format!("(BODY {{{}}}\r\n", ATTACHMENT_B64.len())),
            "{r:?}"
        );
        assert_eq!(r[1].trim_end(), format!("{ATTACHMENT_B64})"));
        // A URLFETCH of several URLs answers each, NIL for the bad one.
        let r = b
            .cmd(&format!(
                "URLFETCH \"{text}\" \"{base}/;SECTION=1;URLAUTH=authuser:internal:{}\"",
                "0".repeat(64)
            ))
            .await;
        let joined = all(&r);
        assert!(joined.contains("Si vis pacem"), "{r:?}");
        assert!(
            joined.contains(&format!("{}\" NIL\r\n", "0".repeat(64))),
            "{r:?}"
        );

        // A section the message does not have: NIL, and the command goes
        // on to the next URL (RFC 4467 7).
        let nopart = gen_url(&mut a, format!("{base}/;SECTION=9.9;URLAUTH=authuser")).await;
        let r = b.cmd(&format!("URLFETCH \"{nopart}\" \"{text}\"")).await;
        assert_eq!(r[0], format!("* URLFETCH \"{nopart}\" NIL\r\n"), "{r:?}");
        assert!(
            all(&r).contains("Si vis pacem") && tagged(&r).contains(" OK "),
            "{r:?}"
        );
        // The verifier covers the rump: another section, a changed digit,
        // another mechanism name: NIL.
        let other_section = text.replacen("SECTION=1", "SECTION=2", 1);
        let last = text.chars().last().unwrap();
        let flipped = format!(
            "{}{}",
            &text[..text.len() - 1],
            if last == '0' { '1' } else { '0' }
        );
        let other_mech = text.replacen(":internal:", ":other:", 1);
        for bad in [&other_section, &flipped, &other_mech] {
            let r = b.cmd(&format!("URLFETCH \"{bad}\"")).await;
            assert_eq!(r[0], format!("* URLFETCH \"{bad}\" NIL\r\n"), "{r:?}");
            assert!(tagged(&r).contains(" OK "), "{r:?}");
        }

        // Access identifiers (RFC 4467 3): user+ only for that user,
        // submit+ only for a submission server (none here), anonymous for
        // anyone.
        let for_bob = gen_url(
            &mut a,
            format!("{base}/;SECTION=1;URLAUTH=user+bob%40example.org"),
        )
        .await;
        let for_carol = gen_url(
            &mut a,
            format!("{base}/;SECTION=1;URLAUTH=user+carol%40example.org"),
        )
        .await;
        let submit = gen_url(
            &mut a,
            format!("{base}/;SECTION=1;URLAUTH=submit+bob%40example.org"),
        )
        .await;
        let anon = gen_url(&mut a, format!("{base}/;SECTION=1;URLAUTH=anonymous")).await;
        let r = b.cmd(&format!("URLFETCH \"{for_bob}\"")).await;
        assert!(all(&r).contains("Si vis pacem"), "{r:?}");
        for nil in [&for_carol, &submit] {
            let r = b.cmd(&format!("URLFETCH \"{nil}\"")).await;
            assert!(r[0].ends_with(" NIL\r\n"), "{r:?}");
        }
        let r = a.cmd(&format!("URLFETCH \"{for_bob}\"")).await;
        assert!(r[0].ends_with(" NIL\r\n"), "alice is not bob: {r:?}");
        let r = b.cmd(&format!("URLFETCH \"{anon}\"")).await;
        assert!(all(&r).contains("Si vis pacem"), "{r:?}");

        // EXPIRE (RFC 4467 3, RFC 5092 3.4): past is NIL, future works.
        let past = gen_url(
            &mut a,
            format!("{base}/;SECTION=1;EXPIRE=2020-01-01T00:00:00Z;URLAUTH=authuser"),
        )
        .await;
        let future = gen_url(
            &mut a,
            format!("{base}/;SECTION=1;EXPIRE=2999-01-01T00:00:00Z;URLAUTH=authuser"),
        )
        .await;
        let r = b.cmd(&format!("URLFETCH \"{past}\"")).await;
        assert!(r[0].ends_with(" NIL\r\n"), "{r:?}");
        let r = b.cmd(&format!("URLFETCH \"{future}\"")).await;
        assert!(all(&r).contains("Si vis pacem"), "{r:?}");

        // A plain URL: the owner reads it, nobody else.
        let plain = "/INBOX/;UID=1/;SECTION=1";
        let r = a.cmd(&format!("URLFETCH \"{plain}\"")).await;
        assert!(all(&r).contains("Si vis pacem"), "{r:?}");
        let r = b.cmd(&format!("URLFETCH \"{base}/;SECTION=1\"")).await;
        assert!(r[0].ends_with(" NIL\r\n"), "{r:?}");

        // GENURLAUTH refusals (RFC 4467 6): not a rump is BAD; another
        // user's mailbox, an unknown mechanism, a missing mailbox are NO.
        let r = a
            .cmd(&format!("GENURLAUTH \"{base}/;SECTION=1\" INTERNAL"))
            .await;
        assert!(tagged(&r).contains(" BAD "), "{r:?}");
        let r = a.cmd(&format!("GENURLAUTH \"{text}\" INTERNAL")).await;
        assert!(tagged(&r).contains(" BAD "), "a full URL is no rump: {r:?}");
        let bobs = "imap://bob%40example.org@h/INBOX/;UID=1;URLAUTH=anonymous";
        let r = a.cmd(&format!("GENURLAUTH \"{bobs}\" INTERNAL")).await;
        assert!(tagged(&r).contains(" NO "), "{r:?}");
        let r = a
            .cmd(&format!(
                "GENURLAUTH \"{base}/;SECTION=1;URLAUTH=anonymous\" XYZZY"
            ))
            .await;
        assert!(tagged(&r).contains(" NO "), "{r:?}");
        let r = a
            .cmd("GENURLAUTH \"imap://alice%40example.org@h/Nope/;UID=1;URLAUTH=anonymous\" INTERNAL")
            .await;
        assert!(tagged(&r).contains(" NO "), "{r:?}");

        // CATENATE (RFC 4469 5) with alice's authorized URL, by bob.
        let r = b
            .cmd(&format!(
                "APPEND INBOX CATENATE (TEXT {{10+}}\r\nSubject: x URL \"{text}\")"
            ))
            .await;
        assert!(tagged(&r).contains(" OK "), "{r:?}");
        b.cmd("SELECT INBOX").await;
        let r = b.cmd("FETCH 1 BODY.PEEK[]").await;
        assert!(all(&r).contains("Subject: xSi vis pacem"), "{r:?}");

        // RESETKEY (RFC 4467 5): the mailbox's URLs stop working; a new
        // GENURLAUTH makes a new verifier that works.
        let r = a.cmd("RESETKEY INBOX INTERNAL").await;
        assert!(tagged(&r).contains(" OK "), "{r:?}");
        let r = b.cmd(&format!("URLFETCH \"{text}\"")).await;
        assert!(r[0].ends_with(" NIL\r\n"), "{r:?}");
        let again = gen_url(&mut a, format!("{base}/;SECTION=1;URLAUTH=authuser")).await;
        assert_ne!(again, text);
        let r = b.cmd(&format!("URLFETCH \"{again}\"")).await;
        assert!(all(&r).contains("Si vis pacem"), "{r:?}");
        let r = a.cmd("RESETKEY").await;
        assert!(tagged(&r).contains(" OK "), "{r:?}");
        let r = b.cmd(&format!("URLFETCH \"{again}\"")).await;
        assert!(r[0].ends_with(" NIL\r\n"), "{r:?}");
        let r = a.cmd("RESETKEY Nope").await;
        assert!(tagged(&r).contains(" NO "), "{r:?}");
        let r = a.cmd("RESETKEY INBOX XYZZY").await;
        assert!(tagged(&r).contains(" NO "), "{r:?}");
        // Malformed: BAD, and the session goes on.
        let r = b.cmd("URLFETCH (\"x\" BINARY BODY)").await;
        assert!(tagged(&r).contains(" BAD "), "{r:?}");
        let r = b.cmd("NOOP").await;
        assert!(tagged(&r).contains(" OK "), "{r:?}");
    }
}
