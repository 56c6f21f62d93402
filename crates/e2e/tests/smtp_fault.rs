//! Fault test: the store process is killed (SIGKILL) and restarted while a
//! client streams deliveries through smtp-ingest. Afterwards every message
//! that got a 250 is stored exactly once, and every other one got a 4xx.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use e2e::{StoreClient, TestSmtp, message};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

fn spawn_store(listen: &str, url: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_e2e-store"))
        .args([listen, url])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn wait_ready(client: &StoreClient) {
    let since = std::time::Instant::now();
    // A guard against hanging, not a bound on how soon.
    while since.elapsed() < std::time::Duration::from_secs(60) {
        let mut a = client.admin();
        if a.list_domains(e2e::mailbox_api::pb::ListDomainsRequest {})
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("store did not come up");
}

/// One reply's code (0 if the connection closed).
async fn read_reply(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> u16 {
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
            return 0;
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            return line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
        }
    }
}

/// Sends one message in its own session; returns the final reply code.
async fn send_one(addr: std::net::SocketAddr, id: &str) -> u16 {
    let Ok(s) = TcpStream::connect(addr).await else {
        return 0;
    };
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    read_reply(&mut r).await;
    for cmd in [
        "EHLO fault.example",
        "MAIL FROM:<load@remote.example>",
        "RCPT TO:<alice@example.org>",
        "DATA",
    ] {
        w.write_all(format!("{cmd}\r\n").as_bytes()).await.unwrap();
        let code = read_reply(&mut r).await;
        if code >= 400 || code == 0 {
            return code;
        }
    }
    w.write_all(&message(id, "payload")).await.unwrap();
    w.write_all(b".\r\n").await.unwrap();
    let code = read_reply(&mut r).await;
    let _ = w.write_all(b"QUIT\r\n").await;
    code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn store_killed_and_restarted_during_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("mail.db").display());
    let port = e2e::procs::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut store = spawn_store(&listen, &url);
    let client = StoreClient::new(&format!("http://{listen}"));
    wait_ready(&client).await;
    client.add_domain("example.org").await;
    client.add_account("alice@example.org", "pw").await;
    let smtp = TestSmtp::start_with(&format!("http://{listen}"), |s| {
        s.store_retry = Duration::from_secs(15)
    })
    .await;

    const N: usize = 80;
    let addr = smtp.smtp;
    let sender = tokio::spawn(async move {
        let mut codes = HashMap::new();
        for i in 0..N {
            let id = format!("fault-{i}");
            let code = send_one(addr, &id).await;
            codes.insert(id, code);
        }
        codes
    });
    // Kill the store in the middle of the stream, then bring it back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    store.kill().unwrap();
    store.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mut store = spawn_store(&listen, &url);
    let codes = sender.await.unwrap();
    wait_ready(&client).await;

    let stored = client.messages("alice@example.org", "pw", "INBOX").await;
    let mut count: HashMap<String, usize> = HashMap::new();
    for m in &stored {
        let text = String::from_utf8_lossy(m);
        let id = text
            .split("Message-ID: <")
            .nth(1)
            .and_then(|r| r.split('@').next())
            .unwrap()
            .to_string();
        *count.entry(id).or_default() += 1;
    }
    let mut accepted = 0;
    for (id, code) in &codes {
        let n = count.get(id).copied().unwrap_or(0);
        assert!(n <= 1, "{id} stored {n} times");
        if *code == 250 {
            accepted += 1;
            assert_eq!(n, 1, "{id} got 250 but is not stored");
        } else {
            assert!((400..500).contains(code), "{id} got {code}, not a 4xx");
        }
    }
    assert!(accepted > 0, "nothing was accepted");
    let _ = store.kill();
    let _ = store.wait();
    eprintln!("{accepted}/{N} accepted, {} stored", stored.len());
}
