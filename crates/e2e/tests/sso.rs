//! Logins beyond PLAIN end to end (issue #14), each check naming its RFC
//! section: SCRAM-SHA-256 / SCRAM-SHA-256-PLUS with tls-exporter (RFC
//! 5802, RFC 7677, RFC 9266) driven by Python's scramp over IMAP and POP3,
//! and OAUTHBEARER (RFC 7628) / XOAUTH2 with JWTs checked against a JWKS
//! this test serves over HTTP on 127.0.0.1:0 with keys it made.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use e2e::oidc::{SigningKey, TestIssuer};
use e2e::{Backend, RawImap, StoreClient, TestImap, TestPop3, TestStore};
use mailbox_api::pb;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

async fn setup(backend: Backend) -> (TestStore, StoreClient) {
    let store = TestStore::start(backend).await;
    let client = store.client();
    client.add_domain("example.org").await;
    client.add_account("alice@example.org", "pw-alice").await;
    client.add_account("bob@example.org", "pw-bob").await;
    (store, client)
}

async fn py(args: Vec<String>) -> String {
    let (ok, out) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        e2e::python("sasl_scram.py", &args)
    })
    .await
    .unwrap();
    assert!(ok && out.contains("ALL OK"), "{out}");
    out
}

/// RFC 5802 3 and 5 (the exchange and the client's check of the
/// ServerSignature), RFC 7677 3 (SCRAM-SHA-256), RFC 9266 2-3
/// (tls-exporter, TLS 1.3 only, so -PLUS is offered on TLS 1.3 alone),
/// RFC 5802 6 (a binding from another connection, and the "y" downgrade,
/// refused): Python's scramp as the client over IMAP AUTHENTICATE and
/// POP3 AUTH (RFC 5034), on both store backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_sha_256_and_plus_with_scramp() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let (store, _client) = setup(backend).await;
        let imap = TestImap::start(&store.uri()).await;
        let pop3 = TestPop3::start(&store.uri()).await;
        let user = "alice@example.org".to_string();
        let pw = "pw-alice".to_string();
        for (proto, plain, tls) in [
            ("imap", imap.imap.port(), imap.imaps.port()),
            ("pop3", pop3.pop3.port(), pop3.pop3s.port()),
        ] {
            let out = py(vec![
                proto.into(),
                "127.0.0.1".into(),
                plain.to_string(),
                user.clone(),
                pw.clone(),
                "plain".into(),
            ])
            .await;
            assert!(out.contains(&format!("{proto} plain ok")), "{out}");
            let out = py(vec![
                proto.into(),
                "127.0.0.1".into(),
                tls.to_string(),
                user.clone(),
                pw.clone(),
                "plus".into(),
            ])
            .await;
            assert!(
                out.contains("plus ok")
                    && out.contains("foreign binding refused")
                    && out.contains("downgrade refused"),
                "{out}"
            );
        }
    }
}

/// RFC 5802 5.1 / 7: malformed SCRAM messages and `*` over raw IMAP:
/// a cancel is BAD (RFC 9051 6.2.2), bad base64 is BAD, a malformed
/// client-first is NO; -PLUS on plaintext is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_malformed_and_cancelled() {
    let (store, _client) = setup(Backend::Sqlite).await;
    let imap = TestImap::start(&store.uri()).await;
    let mut a = RawImap::connect(imap.imap).await;
    a.send(b"c1 AUTHENTICATE SCRAM-SHA-256\r\n").await;
    assert_eq!(a.line().await, "+ \r\n");
    a.send(b"*\r\n").await;
    assert!(a.line().await.starts_with("c1 BAD"));
    a.send(b"c2 AUTHENTICATE SCRAM-SHA-256\r\n").await;
    assert_eq!(a.line().await, "+ \r\n");
    a.send(b"!!!\r\n").await;
    assert!(a.line().await.starts_with("c2 BAD"));
    // m= (RFC 5802 5.1: an unknown mandatory extension) as SASL-IR.
    let ir = B64.encode("n,,m=x,n=alice@example.org,r=abc");
    a.send(format!("c3 AUTHENTICATE SCRAM-SHA-256 {ir}\r\n").as_bytes())
        .await;
    assert!(a.line().await.starts_with("c3 NO [AUTHENTICATIONFAILED]"));
    let r = a.cmd("AUTHENTICATE SCRAM-SHA-256-PLUS").await;
    assert!(r.last().unwrap().contains(" NO "), "{r:?}");
    // Still usable afterwards.
    a.login().await;
}

/// Sends AUTHENTICATE with a SASL-IR initial response and returns the
/// tagged reply; on an RFC 7628 3.2.2 error challenge, checks it is the
/// error JSON with status invalid_token, answers %x01 ("AQ==") and
/// returns the NO that follows.
async fn imap_token(a: &mut RawImap, tag: &str, mech: &str, msg: &[u8]) -> (String, bool) {
    a.send(format!("{tag} AUTHENTICATE {mech} {}\r\n", B64.encode(msg)).as_bytes())
        .await;
    let l = a.line().await;
    if let Some(ch) = l.strip_prefix("+ ") {
        let json: serde_json::Value =
            serde_json::from_slice(&B64.decode(ch.trim_end()).unwrap()).unwrap();
        assert_eq!(json["status"], "invalid_token", "{json}");
        a.send(b"AQ==\r\n").await;
        return (a.line().await, true);
    }
    (l, false)
}

fn oauthbearer(authzid: &str, token: &str) -> Vec<u8> {
    let a = if authzid.is_empty() {
        String::new()
    } else {
        format!("a={authzid}")
    };
    format!("n,{a},\x01host=127.0.0.1\x01port=143\x01auth=Bearer {token}\x01\x01").into_bytes()
}

fn xoauth2(user: &str, token: &str) -> Vec<u8> {
    format!("user={user}\x01auth=Bearer {token}\x01\x01").into_bytes()
}

async fn set_issuer(client: &StoreClient, issuer: &TestIssuer) {
    client
        .admin()
        .set_domain_oidc(pb::SetDomainOidcRequest {
            oidc: Some(pb::DomainOidc {
                domain: "example.org".into(),
                issuer: issuer.issuer.clone(),
                audience: "mail".into(),
                jwks_url: issuer.jwks_url.clone(),
                mailbox_claim: String::new(),
            }),
        })
        .await
        .unwrap();
}

/// RFC 7628 3.1 (the client response), 3.2.2 (a failure: the error JSON
/// as a challenge, the client's %x01, then NO [AUTHENTICATIONFAILED]) and
/// 4.1/4.3 (success and failure examples): a good token logs in over IMAP
/// with OAUTHBEARER (with and without an authzid) and XOAUTH2; an expired
/// token, a wrong audience, a wrong issuer, an unknown key and a token for
/// another mailbox are refused. The JWKS is fetched once and cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauthbearer_and_xoauth2_over_imap_against_a_jwks() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let (store, client) = setup(backend).await;
        let issuer = TestIssuer::start().await;
        set_issuer(&client, &issuer).await;
        let imap = TestImap::start(&store.uri()).await;
        let mut a = RawImap::connect(imap.imap).await;
        let caps = a.cmd("CAPABILITY").await;
        assert!(
            caps[0].contains(" AUTH=OAUTHBEARER") && caps[0].contains(" AUTH=XOAUTH2"),
            "{caps:?}"
        );
        let good = issuer.token("mail", "alice@example.org", 600);
        let (r, _) = imap_token(
            &mut a,
            "g1",
            "OAUTHBEARER",
            &oauthbearer("alice@example.org", &good),
        )
        .await;
        assert!(r.starts_with("g1 OK"), "{r}");
        let r = a.cmd("SELECT INBOX").await;
        assert!(r.last().unwrap().contains(" OK "), "{r:?}");

        let refused = [
            (
                "expired",
                oauthbearer(
                    "alice@example.org",
                    &issuer.token("mail", "alice@example.org", -3600),
                ),
            ),
            (
                "wrong audience",
                oauthbearer(
                    "alice@example.org",
                    &issuer.token("other-app", "alice@example.org", 600),
                ),
            ),
            ("wrong issuer", {
                let mut c = issuer.claims("mail", "alice@example.org", 600);
                c["iss"] = "https://evil.example".into();
                oauthbearer("alice@example.org", &issuer.key.sign(&c))
            }),
            (
                "unknown key",
                oauthbearer(
                    "alice@example.org",
                    &SigningKey::generate("key-2").sign(&issuer.claims(
                        "mail",
                        "alice@example.org",
                        600,
                    )),
                ),
            ),
            (
                "a key not in the JWKS under the issuer's kid",
                oauthbearer(
                    "alice@example.org",
                    &SigningKey::generate("key-1").sign(&issuer.claims(
                        "mail",
                        "alice@example.org",
                        600,
                    )),
                ),
            ),
            (
                "token for another mailbox",
                oauthbearer(
                    "alice@example.org",
                    &issuer.token("mail", "bob@example.org", 600),
                ),
            ),
            (
                "xoauth2 for another mailbox",
                xoauth2(
                    "bob@example.org",
                    &issuer.token("mail", "alice@example.org", 600),
                ),
            ),
            ("not a JWT", oauthbearer("alice@example.org", "abc.def.ghi")),
        ];
        for (i, (what, msg)) in refused.iter().enumerate() {
            let mut b = RawImap::connect(imap.imap).await;
            let mech = if what.starts_with("xoauth2") {
                "XOAUTH2"
            } else {
                "OAUTHBEARER"
            };
            let tag = format!("r{i}");
            let (r, challenged) = imap_token(&mut b, &tag, mech, msg).await;
            assert!(challenged, "{what}: no RFC 7628 error challenge: {r}");
            assert!(
                r.starts_with(&format!("{tag} NO [AUTHENTICATIONFAILED]")),
                "{what}: {r}"
            );
        }

        // Without an authzid the token's email claim names the mailbox
        // (and the session is that account's).
        let mut b = RawImap::connect(imap.imap).await;
        let bob = issuer.token("mail", "bob@example.org", 600);
        let (r, _) = imap_token(&mut b, "n1", "OAUTHBEARER", &oauthbearer("", &bob)).await;
        assert!(r.starts_with("n1 OK"), "{r}");
        // XOAUTH2 (Google's form).
        let mut b = RawImap::connect(imap.imap).await;
        let (r, _) = imap_token(
            &mut b,
            "x1",
            "XOAUTH2",
            &xoauth2("alice@example.org", &good),
        )
        .await;
        assert!(r.starts_with("x1 OK"), "{r}");
        // Without SASL-IR: an empty challenge first (RFC 9051 6.2.2).
        let mut b = RawImap::connect(imap.imap).await;
        b.send(b"s1 AUTHENTICATE OAUTHBEARER\r\n").await;
        assert_eq!(b.line().await, "+ \r\n");
        b.send(
            format!(
                "{}\r\n",
                B64.encode(oauthbearer("alice@example.org", &good))
            )
            .as_bytes(),
        )
        .await;
        let r = b.line().await;
        assert!(r.starts_with("s1 OK"), "{r}");
        // One fetch served every login: the unknown kid came within 30 s
        // of it, so it was not fetched again (a second fetch only if this
        // machine took longer than that).
        assert!((1..=2).contains(&issuer.fetches()), "{}", issuer.fetches());

        // A domain without an issuer refuses tokens.
        client
            .admin()
            .set_domain_oidc(pb::SetDomainOidcRequest {
                oidc: Some(pb::DomainOidc {
                    domain: "example.org".into(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
        let mut b = RawImap::connect(imap.imap).await;
        let (r, challenged) = imap_token(
            &mut b,
            "d1",
            "OAUTHBEARER",
            &oauthbearer("alice@example.org", &good),
        )
        .await;
        assert!(
            challenged && r.starts_with("d1 NO [AUTHENTICATIONFAILED]"),
            "{r}"
        );
    }
}

/// Plain http:// JWKS URLs only for loopback hosts; an issuer needs an
/// audience; the configuration reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domain_oidc_configuration_is_checked() {
    let (_store, client) = setup(Backend::Sqlite).await;
    let set = |url: &str, aud: &str| pb::SetDomainOidcRequest {
        oidc: Some(pb::DomainOidc {
            domain: "example.org".into(),
            issuer: "https://idp.example".into(),
            audience: aud.into(),
            jwks_url: url.into(),
            mailbox_claim: "preferred_username".into(),
        }),
    };
    let e = client
        .admin()
        .set_domain_oidc(set("http://idp.example/jwks", "mail"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    let e = client
        .admin()
        .set_domain_oidc(set("https://idp.example/jwks", ""))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    client
        .admin()
        .set_domain_oidc(set("https://idp.example/jwks", "mail"))
        .await
        .unwrap();
    let o = client
        .admin()
        .get_domain_oidc(pb::GetDomainOidcRequest {
            domain: "example.org".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .oidc
        .unwrap();
    assert_eq!(o.jwks_url, "https://idp.example/jwks");
    assert_eq!(o.mailbox_claim, "preferred_username");
    let e = client
        .admin()
        .set_domain_oidc(pb::SetDomainOidcRequest {
            oidc: Some(pb::DomainOidc {
                domain: "nowhere.example".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e}");
}

/// RFC 5034 4 with RFC 7628 3.2.2 over POP3: CAPA's SASL line names the
/// mechanisms; a good token opens the maildrop; a refused one gets the
/// error challenge, the client's %x01, then -ERR [AUTH].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauthbearer_over_pop3() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let (store, client) = setup(backend).await;
        let issuer = TestIssuer::start().await;
        set_issuer(&client, &issuer).await;
        let pop3 = TestPop3::start(&store.uri()).await;
        let connect = || async {
            let s = tokio::net::TcpStream::connect(pop3.pop3).await.unwrap();
            let (r, w) = tokio::io::split(s);
            let mut r = BufReader::new(r);
            let mut l = String::new();
            r.read_line(&mut l).await.unwrap();
            assert!(l.starts_with("+OK"), "{l}");
            (r, w)
        };
        let (mut r, mut w) = connect().await;
        w.write_all(b"CAPA\r\n").await.unwrap();
        let mut caps = String::new();
        loop {
            let mut l = String::new();
            r.read_line(&mut l).await.unwrap();
            if l == ".\r\n" {
                break;
            }
            caps.push_str(&l);
        }
        assert!(
            caps.contains("SASL PLAIN SCRAM-SHA-256 OAUTHBEARER XOAUTH2"),
            "{caps}"
        );
        // RFC 5034 4: the token in the continuation (an AUTH line with
        // it would pass 255 octets).
        let good = issuer.token("mail", "alice@example.org", 600);
        w.write_all(b"AUTH OAUTHBEARER\r\n").await.unwrap();
        let mut l = String::new();
        r.read_line(&mut l).await.unwrap();
        assert_eq!(l, "+ \r\n");
        w.write_all(
            format!(
                "{}\r\n",
                B64.encode(oauthbearer("alice@example.org", &good))
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let mut l = String::new();
        r.read_line(&mut l).await.unwrap();
        assert!(l.starts_with("+OK"), "{l}");
        w.write_all(b"QUIT\r\n").await.unwrap();

        let (mut r, mut w) = connect().await;
        let expired = issuer.token("mail", "alice@example.org", -3600);
        w.write_all(b"AUTH OAUTHBEARER\r\n").await.unwrap();
        let mut l = String::new();
        r.read_line(&mut l).await.unwrap();
        w.write_all(
            format!(
                "{}\r\n",
                B64.encode(oauthbearer("alice@example.org", &expired))
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let mut l = String::new();
        r.read_line(&mut l).await.unwrap();
        let ch = l.strip_prefix("+ ").expect("an error challenge");
        let json: serde_json::Value =
            serde_json::from_slice(&B64.decode(ch.trim_end()).unwrap()).unwrap();
        assert_eq!(json["status"], "invalid_token");
        w.write_all(b"AQ==\r\n").await.unwrap();
        let mut l = String::new();
        r.read_line(&mut l).await.unwrap();
        assert!(l.starts_with("-ERR [AUTH]"), "{l}");
    }
}
