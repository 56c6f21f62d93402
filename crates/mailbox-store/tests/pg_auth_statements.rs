//! A repeat login and its logout ask PostgreSQL nothing (issue #24,
//! DESIGN.md 8: signed session tokens, a verified-credential cache, the
//! change feed). Counted on the wire: the store replica under test reaches
//! the server through a relay on 127.0.0.1 that passes every byte on and
//! writes down each statement the store has the server run (a simple
//! Query, or an extended-protocol Execute with the text of its Parse).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Backend, TestStore};
use mailbox_api::pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tonic::Code;

/// The statements run through the relay, in order.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    fn since(&self, from: usize) -> Vec<String> {
        self.0.lock().unwrap()[from..].to_vec()
    }

    fn any(&self, part: &str) -> bool {
        self.0.lock().unwrap().iter().any(|q| q.contains(part))
    }
}

/// Relays connections to `upstream`, logging the statements clients send.
async fn relay(upstream: String) -> (std::net::SocketAddr, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Log::default();
    let l = log.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = TcpStream::connect(&upstream).await.unwrap();
            let (cr, cw) = client.into_split();
            let (mut sr, sw) = server.into_split();
            let mut cw = cw;
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut sr, &mut cw).await;
                let _ = cw.shutdown().await;
            });
            tokio::spawn(client_to_server(cr, sw, l.clone()));
        }
    });
    (addr, log)
}

/// Frontend messages (PostgreSQL protocol 3): a startup packet without a
/// type byte, then `type, length, body`.
async fn client_to_server(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    log: Log,
) -> std::io::Result<()> {
    let len = from.read_u32().await?;
    let mut startup = vec![0; len as usize - 4];
    from.read_exact(&mut startup).await?;
    to.write_u32(len).await?;
    to.write_all(&startup).await?;
    let cstr = |b: &[u8]| -> (String, usize) {
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        (String::from_utf8_lossy(&b[..end]).into_owned(), end + 1)
    };
    let mut statements: HashMap<String, String> = HashMap::new();
    let mut portals: HashMap<String, String> = HashMap::new();
    loop {
        let kind = from.read_u8().await?;
        let len = from.read_u32().await?;
        let mut body = vec![0; len as usize - 4];
        from.read_exact(&mut body).await?;
        match kind {
            b'Q' => log.0.lock().unwrap().push(cstr(&body).0),
            b'P' => {
                let (name, at) = cstr(&body);
                statements.insert(name, cstr(&body[at..]).0);
            }
            b'B' => {
                let (portal, at) = cstr(&body);
                portals.insert(portal, cstr(&body[at..]).0);
            }
            b'E' => {
                let portal = cstr(&body).0;
                let text = portals
                    .get(&portal)
                    .and_then(|s| statements.get(s))
                    .cloned()
                    .unwrap_or_else(|| format!("(portal {portal:?})"));
                log.0.lock().unwrap().push(text);
            }
            _ => {}
        }
        to.write_u8(kind).await?;
        to.write_u32(len).await?;
        to.write_all(&body).await?;
    }
}

/// Replica A as usual, and replica B on the same database through the
/// relay (plaintext on loopback, so the relay can read it), once B listens
/// for changes and its start-up reads are done.
async fn replicas() -> (TestStore, TestStore, Log) {
    let a = common::start(Backend::Postgres).await;
    a.add_domain("example.org").await;
    a.add_account("r@example.org", "pw-r").await;
    let opts = sqlx::postgres::PgConnectOptions::from_str(a.url()).unwrap();
    let (addr, log) = relay(format!("{}:{}", opts.get_host(), opts.get_port())).await;
    let (_, rest) = a.url().split_once('@').unwrap();
    let (_, db) = rest.split_once('/').unwrap();
    let url = format!(
        "{}@{addr}/{db}?sslmode=disable",
        a.url().split_once('@').unwrap().0
    );
    let b = common::start_on_with(&url, |s| s.fts_indexer = false).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, _, mirrored) = b.store.login_failures("r@example.org", "").await.unwrap();
        if mirrored && log.any("sort_keys IS NULL") {
            break;
        }
        assert!(Instant::now() < deadline, "replica B never came to listen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (a, b, log)
}

async fn login(t: &TestStore, password: &str, protocol: &str) -> Result<String, tonic::Status> {
    t.anonymous()
        .authenticate(pb::AuthenticateRequest {
            username: "r@example.org".into(),
            password: password.into(),
            client_ip: "192.0.2.1".into(),
            protocol: protocol.into(),
        })
        .await
        .map(|r| r.into_inner().session_token)
}

async fn logout(t: &TestStore, token: &str) {
    t.with_token(token)
        .logout(pb::LogoutRequest {})
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_repeat_login_and_logout_run_no_statement() {
    let (a, b, log) = replicas().await;
    let app = a
        .admin()
        .add_app_password(pb::AddAppPasswordRequest {
            address: "r@example.org".into(),
            name: "phone".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .password;

    // The first login reads the account (and runs argon2).
    let from = log.len();
    let token = login(&b, "pw-r", "imap").await.unwrap();
    logout(&b, &token).await;
    let first = log.since(from);
    assert!(
        first.iter().any(|q| q.contains("FROM accounts")),
        "the first login reads its account: {first:#?}"
    );
    println!("first login + logout: {} statements", first.len());
    let from = log.len();
    let token = login(&b, &app, "imap").await.unwrap();
    logout(&b, &token).await;
    println!(
        "first app-password login + logout: {} statements",
        log.since(from).len()
    );

    // Repeats, with the password and with the app password, as IMAP and
    // POP3 make them: nothing.
    for (password, protocol) in [
        ("pw-r", "imap"),
        ("pw-r", "pop3"),
        (app.as_str(), "imap"),
        ("pw-r", "imap"),
    ] {
        let from = log.len();
        let token = login(&b, password, protocol).await.unwrap();
        logout(&b, &token).await;
        assert_eq!(
            log.since(from),
            Vec::<String>::new(),
            "statements of a repeat {protocol} login + logout"
        );
    }

    // A logged-out token is refused where it was logged out.
    let token = login(&b, "pw-r", "imap").await.unwrap();
    b.with_token(&token)
        .list_mailboxes(pb::ListMailboxesRequest {})
        .await
        .unwrap();
    logout(&b, &token).await;
    let e = b
        .with_token(&token)
        .list_mailboxes(pb::ListMailboxesRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);

    // A failed login is no cheaper than before: it reads the account,
    // runs argon2 and counts the failure in the database.
    let from = log.len();
    let e = login(&b, "pw-wrong", "imap").await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let failed = log.since(from);
    assert!(
        failed.iter().any(|q| q.contains("FROM accounts"))
            && failed.iter().any(|q| q.contains("auth_failures")),
        "a failed login: {failed:#?}"
    );
}
