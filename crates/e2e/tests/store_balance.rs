//! Client-side balancing over store replicas (issue #25), with real
//! processes on one PostgreSQL database: three store replicas and an
//! imap-gateway whose `IMAP_STORE_URL` lists all three. Under an IMAP
//! load each replica serves a fair share of the calls (read from each
//! store's `/counters`); a replica SIGKILLed under that load costs no
//! IMAP command a NO, a BAD or its connection, the other two take its
//! share within seconds, an IDLE session whose Watch stream it served
//! still hears a delivery, and once restarted on the same port it gets
//! calls again. Also: `dns:///` names, and `store_url` refused with a
//! clear error when it is malformed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::load::counters;
use e2e::procs::{Proc, free_port, spawn_listening};
use e2e::{Backend, PgDatabase, StoreClient, message};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

fn spawn(which: &str, env: &[(&str, String)]) -> Proc {
    e2e::procs::spawn(env!("CARGO_BIN_EXE_e2e-service"), which, env)
}

/// A store replica process: its gRPC port and its admin port (/counters).
struct Replica {
    proc: Proc,
    port: u16,
    admin: u16,
}

fn store_env(port: u16, admin: u16, db: &str) -> Vec<(&'static str, String)> {
    vec![
        ("MAILSTORE_LISTEN", format!("127.0.0.1:{port}")),
        ("MAILSTORE_DATABASE_URL", db.to_string()),
        ("MAILSTORE_ADMIN_LISTEN", format!("127.0.0.1:{admin}")),
    ]
}

async fn start_replica(db: &str) -> Replica {
    let admin = free_port();
    let (proc, port) = spawn_listening(|port| spawn("store", &store_env(port, admin, db))).await;
    Replica { proc, port, admin }
}

/// A gateway process (`imap` or `pop3`) on a free port, reaching the
/// stores of `store_url`, its admin listener off; and its port.
async fn start_gateway(which: &str, store_url: &str) -> (Proc, u16) {
    let p = which.to_uppercase();
    let (listen, url, admin) = (
        format!("{p}_LISTEN"),
        format!("{p}_STORE_URL"),
        format!("{p}_ADMIN_LISTEN"),
    );
    spawn_listening(|port| {
        spawn(
            which,
            &[
                (listen.as_str(), format!("127.0.0.1:{port}")),
                (url.as_str(), store_url.to_string()),
                (admin.as_str(), String::new()),
            ],
        )
    })
    .await
}

/// Mailbox API calls a replica has served (health checks not counted).
async fn mailbox_calls(admin: u16) -> Option<u64> {
    Some(
        counters(admin)
            .await?
            .iter()
            .filter(|(k, _)| k.starts_with("store_rpc./mailbox.v1.Mailbox/"))
            .map(|(_, v)| v)
            .sum(),
    )
}

/// Watch streams a replica has opened.
async fn watch_calls(admin: u16) -> u64 {
    counters(admin)
        .await
        .unwrap_or_default()
        .iter()
        .filter(|(k, _)| k == "store_rpc./mailbox.v1.Mailbox/Watch")
        .map(|(_, v)| v)
        .sum()
}

/// A plain IMAP client that reports failures instead of panicking.
struct Imap {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
    n: u32,
}

impl Imap {
    async fn connect(port: u16) -> Result<Self, String> {
        let s = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| e.to_string())?;
        let (r, w) = s.into_split();
        let mut c = Self {
            r: BufReader::new(r),
            w,
            n: 0,
        };
        let greeting = c.line().await?;
        if !greeting.starts_with("* OK") {
            return Err(format!("greeting: {greeting}"));
        }
        Ok(c)
    }

    async fn line(&mut self) -> Result<String, String> {
        let mut l = String::new();
        match tokio::time::timeout(Duration::from_secs(30), self.r.read_line(&mut l)).await {
            Err(_) => Err("no line within 30 s".into()),
            Ok(Err(e)) => Err(format!("read: {e}")),
            Ok(Ok(0)) => Err("connection closed".into()),
            Ok(Ok(_)) => Ok(l),
        }
    }

    /// Sends a command; Ok(lines) if its tagged answer is OK, Err(why)
    /// for a NO, a BAD, a lost connection or no answer.
    async fn ok(&mut self, cmd: &str) -> Result<Vec<String>, String> {
        self.n += 1;
        let tag = format!("t{}", self.n);
        self.w
            .write_all(format!("{tag} {cmd}\r\n").as_bytes())
            .await
            .map_err(|e| format!("{cmd}: write: {e}"))?;
        let mut out = Vec::new();
        loop {
            let l = self.line().await.map_err(|e| format!("{cmd}: {e}"))?;
            if let Some(rest) = l.strip_prefix(&format!("{tag} ")) {
                return if rest.starts_with("OK") {
                    out.push(l);
                    Ok(out)
                } else {
                    Err(format!("{cmd}: {}", l.trim_end()))
                };
            }
            out.push(l);
        }
    }
}

/// One IMAP session of the mix (SELECT, FETCH, STORE, NOOP, SEARCH) until
/// `stop`; every failure is recorded with when it happened.
async fn imap_load(
    port: u16,
    n: usize,
    stop: Arc<AtomicBool>,
    done: Arc<Mutex<u64>>,
    failures: Arc<Mutex<Vec<String>>>,
) {
    let fail = |e: String| failures.lock().unwrap().push(format!("session {n}: {e}"));
    let mut c = match Imap::connect(port).await {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    for cmd in ["LOGIN alice@example.org pw-alice", "SELECT INBOX"] {
        if let Err(e) = c.ok(cmd).await {
            return fail(e);
        }
    }
    let mut i = n;
    while !stop.load(Ordering::Relaxed) {
        let k = 1 + i % 20;
        let cmd = match i % 7 {
            0 => "NOOP".to_string(),
            1 => "FETCH 1:* (FLAGS)".to_string(),
            2 => format!("STORE {k} +FLAGS (\\Flagged)"),
            3 => format!("FETCH {k} (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])"),
            4 => format!("STORE {k} -FLAGS (\\Flagged)"),
            5 => "UID SEARCH FLAGGED".to_string(),
            _ => "SELECT INBOX".to_string(),
        };
        if let Err(e) = c.ok(&cmd).await {
            // A session that lost its connection cannot go on.
            let lost = e.contains("closed") || e.contains("write") || e.contains("read:");
            fail(e);
            if lost {
                return;
            }
        }
        *done.lock().unwrap() += 1;
        i += 1;
    }
    let _ = c.ok("LOGOUT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_share_the_load_and_one_dies_unnoticed() {
    let db = PgDatabase::create().await;
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(start_replica(&db.url).await);
    }
    let store_url = replicas
        .iter()
        .map(|r| format!("http://127.0.0.1:{}", r.port))
        .collect::<Vec<_>>()
        .join(",");
    let client = StoreClient::new(&store_url);
    client.add_domain("example.org").await;
    client.add_account("alice@example.org", "pw-alice").await;
    client.add_account("bob@example.org", "pw-bob").await;
    for i in 0..20 {
        client
            .deliver(
                &format!("seed-{i}"),
                &["alice@example.org"],
                &message(&format!("seed-{i}"), "load"),
            )
            .await;
    }
    let (_imap, imap_port) = start_gateway("imap", &store_url).await;

    // Bob IDLEs first, alone, so the one Watch stream opened so far is
    // his: the replica serving it is the one to kill.
    let watches_before: Vec<u64> = {
        let mut v = Vec::new();
        for r in &replicas {
            v.push(watch_calls(r.admin).await);
        }
        v
    };
    let mut idle = Imap::connect(imap_port).await.unwrap();
    idle.ok("LOGIN bob@example.org pw-bob").await.unwrap();
    idle.ok("SELECT INBOX").await.unwrap();
    let start = Instant::now();
    let victim = loop {
        let mut opened = Vec::new();
        for (i, r) in replicas.iter().enumerate() {
            if watch_calls(r.admin).await > watches_before[i] {
                opened.push(i);
            }
        }
        if let [one] = opened[..] {
            break one;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "bob's Watch stream: opened on {opened:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    idle.w.write_all(b"idle IDLE\r\n").await.unwrap();
    assert!(idle.line().await.unwrap().starts_with('+'));

    // The IMAP mix from twelve sessions (each session keeps to one
    // replica, StoreChannel::pinned: four on each).
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(Mutex::new(0u64));
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut load = Vec::new();
    for n in 0..12 {
        load.push(tokio::spawn(imap_load(
            imap_port,
            n,
            stop.clone(),
            done.clone(),
            failures.clone(),
        )));
    }
    // Warm up (logins, views), then measure the shares.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let snapshot = |rs: &Vec<Replica>| {
        let admins: Vec<u16> = rs.iter().map(|r| r.admin).collect();
        async move {
            let mut v = Vec::new();
            for a in admins {
                v.push(mailbox_calls(a).await.unwrap_or(0));
            }
            v
        }
    };
    let (before, t0) = (snapshot(&replicas).await, Instant::now());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = snapshot(&replicas).await;
    let window = t0.elapsed().as_secs_f64();
    let served: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    let total: u64 = served.iter().sum();
    let shares: Vec<f64> = served.iter().map(|s| *s as f64 / total as f64).collect();
    eprintln!(
        "calls served per replica in {window:.1} s: {served:?} (shares {:?})",
        shares
            .iter()
            .map(|s| format!("{:.1}%", s * 100.0))
            .collect::<Vec<_>>()
    );
    assert!(total >= 300, "too little load to judge: {served:?}");
    for (i, s) in shares.iter().enumerate() {
        assert!(
            (0.25..=0.42).contains(s),
            "replica {i} served {:.1}% of the calls: {served:?}",
            s * 100.0
        );
    }
    let rate = total as f64 / window;

    // SIGKILL the replica serving bob's Watch stream, under load.
    let survivors: Vec<usize> = (0..3).filter(|i| *i != victim).collect();
    let survivor_admins: Vec<u16> = survivors.iter().map(|i| replicas[*i].admin).collect();
    let base = {
        let mut v = 0;
        for a in &survivor_admins {
            v += mailbox_calls(*a).await.unwrap();
        }
        v
    };
    let killed_at = Instant::now();
    replicas[victim].proc.0.kill().unwrap();
    replicas[victim].proc.0.wait().unwrap();
    // The two survivors take its share: the end of the first half-second
    // window after the kill in which they served at least half the calls
    // per second that all three served before (a closed-loop load: when
    // nothing stalls, it keeps its rate).
    let mut samples: Vec<(f64, u64)> = vec![(0.0, base)];
    let took_over = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut now = 0;
        for a in &survivor_admins {
            now += mailbox_calls(*a).await.unwrap_or(0);
        }
        let t = killed_at.elapsed().as_secs_f64();
        samples.push((t, now));
        if let Some((t1, c1)) = samples.iter().rev().find(|(ts, _)| t - ts >= 0.5)
            && (now - c1) as f64 / (t - t1) >= rate / 2.0
        {
            break t;
        }
        assert!(
            t < 30.0,
            "the survivors did not take the killed replica's share in 30 s: {samples:?}"
        );
    };
    eprintln!(
        "replica {victim} killed: the other two served its share {took_over:.2} s later \
         (a half-second window at half the former rate or more)"
    );
    assert!(
        took_over <= 5.0,
        "the survivors took {took_over:.2} s to take the share"
    );

    // Bob's IDLE hears a delivery made after the kill: his view's Watch
    // stream was on the dead replica and is open again elsewhere.
    let delivered_at = Instant::now();
    client
        .deliver(
            "after-kill",
            &["bob@example.org"],
            &message("after-kill", "x"),
        )
        .await;
    loop {
        let l = idle.line().await.unwrap();
        if l.contains("EXISTS") {
            break;
        }
    }
    eprintln!(
        "IDLE heard the delivery {:.2} s after it was acknowledged",
        delivered_at.elapsed().as_secs_f64()
    );
    idle.w.write_all(b"DONE\r\n").await.unwrap();
    loop {
        let l = idle.line().await.unwrap();
        if l.starts_with("idle ") {
            assert!(l.contains("OK"), "{l}");
            break;
        }
    }

    // Restarted on the same port, it gets calls again.
    let port = replicas[victim].port;
    let admin = replicas[victim].admin;
    let db_url = db.url.clone();
    let mut back = spawn("store", &store_env(port, admin, &db_url));
    back.wait_listening(port).await.unwrap();
    let listening_at = Instant::now();
    let rejoined = loop {
        if mailbox_calls(admin).await.unwrap_or(0) > 0 {
            break listening_at.elapsed().as_secs_f64();
        }
        assert!(
            listening_at.elapsed() < Duration::from_secs(60),
            "the restarted replica got no call in a minute"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    replicas[victim].proc = back;
    eprintln!("replica {victim} restarted: its first call {rejoined:.2} s after it listened");
    assert!(rejoined <= 30.0, "{rejoined:.2} s to get calls again");

    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    eprintln!(
        "{} IMAP commands, {} failed",
        done.lock().unwrap(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "IMAP commands failed across the kill: {failures:?}"
    );
    drop(replicas);
}

/// `dns:///localhost:PORT` reaches a store listening on 127.0.0.1 (and
/// an address the name also resolves to where nothing listens, ::1 on
/// most machines, is taken out by the first call that fails there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_names_are_resolved() {
    let (store, _) = e2e::store_with_alice(Backend::Postgres).await;
    let url = format!("dns:///localhost:{}", store.addr.port());
    let channel = e2e::mailbox_api::channel(&url).unwrap();
    let mut admin =
        e2e::mailbox_api::admin_client(channel.clone(), e2e::mailbox_api::CallAuth::default());
    for _ in 0..20 {
        let domains = admin
            .list_domains(e2e::mailbox_api::pb::ListDomainsRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(
            domains.domains.iter().any(|d| d == "example.org"),
            "{domains:?}"
        );
    }
    let states = channel.replica_states();
    let want = format!("http://127.0.0.1:{}", store.addr.port());
    assert!(states.iter().any(|(k, up)| *k == want && *up), "{states:?}");
    // Every address the name gave that does not answer is out.
    for (k, up) in &states {
        assert!(*k == want || !*up, "{states:?}");
    }
    // A URL and a name for the same address are one replica.
    let both = e2e::mailbox_api::channel(&format!("{want}, {url}")).unwrap();
    let mut admin = e2e::mailbox_api::admin_client(both.clone(), Default::default());
    admin
        .list_domains(e2e::mailbox_api::pb::ListDomainsRequest {})
        .await
        .unwrap();
    let states = both.replica_states();
    assert_eq!(
        states.iter().filter(|(k, _)| *k == want).count(),
        1,
        "{states:?}"
    );
}

/// A malformed `store_url` is refused before anything starts, naming the
/// entry and what is wrong with it.
#[tokio::test]
async fn a_bad_store_url_is_refused_clearly() {
    for (url, want) in [
        ("http://127.0.0.1:1,,http://127.0.0.1:2", "entry 2 is empty"),
        ("127.0.0.1:50051", "no scheme"),
        ("dns:///store-headless", "no port"),
    ] {
        let e = e2e::mailbox_api::channel(url).unwrap_err().to_string();
        assert!(e.contains(want), "{url}: {e}");
        // The real process exits at once with the same words.
        let port = free_port();
        let run = tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_e2e-service"))
                .arg("imap")
                .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
                .env("IMAP_LISTEN", format!("127.0.0.1:{port}"))
                .env("IMAP_ADMIN_LISTEN", "")
                .env("IMAP_STORE_URL", url)
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap()
        });
        let out = tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .expect("the gateway exits on a bad store_url")
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{url}: started anyway");
        assert!(
            err.contains("store_url") && err.contains(want),
            "{url}: {err}"
        );
    }
}

/// A "replica" that takes whatever a client sends (after its HTTP/2
/// SETTINGS, so the client does send its request) and closes the
/// connection without an answer, as a store killed mid-call does. Counts
/// the bytes it got.
async fn dying_replica() -> (u16, Arc<Mutex<usize>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(0));
    let count = got.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                // An empty SETTINGS frame (RFC 9113 6.5).
                let _ = s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await;
                let mut buf = vec![0; 64 * 1024];
                let until = Instant::now() + Duration::from_millis(300);
                while let Ok(Ok(n)) = tokio::time::timeout_at(until.into(), s.read(&mut buf)).await
                {
                    if n == 0 {
                        break;
                    }
                    *count.lock().unwrap() += n;
                }
            });
        }
    });
    (port, got)
}

/// A call whose replica's connection breaks after the request left is
/// sent to another replica only if it is safe to run twice (a read); a
/// write that may have been done is not, but one that provably never
/// left (nothing listening) is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cut_mid_way_is_retried_only_when_safe() {
    use e2e::mailbox_api::{CallAuth, admin_client, channel, pb};
    let (store, _) = e2e::store_with_alice(Backend::Postgres).await;
    let real = store.uri();
    let (dying, got) = dying_replica().await;
    let first_dying = format!("http://127.0.0.1:{dying},{real}");

    // A read: answered by the other replica. (A new channel's first call
    // goes to its first replica.)
    let ch = channel(&first_dying).unwrap();
    let domains = admin_client(ch.clone(), CallAuth::default())
        .list_domains(pb::ListDomainsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(domains.domains, vec!["example.org".to_string()]);
    assert!(
        *got.lock().unwrap() > 24,
        "the call did not go to the dying replica first"
    );
    let states = ch.replica_states();
    assert_eq!(
        states,
        vec![
            (format!("http://127.0.0.1:{dying}"), false),
            (real.clone(), true)
        ]
    );

    // A write that may have been done: not sent again.
    let sent_before = *got.lock().unwrap();
    let ch = channel(&first_dying).unwrap();
    let r = admin_client(ch, CallAuth::default())
        .add_domain(pb::AddDomainRequest {
            name: "maybe.example".into(),
        })
        .await;
    assert!(r.is_err(), "{r:?}");
    assert!(*got.lock().unwrap() > sent_before);
    let domains = store
        .client()
        .admin()
        .list_domains(pb::ListDomainsRequest {})
        .await;
    assert!(
        !domains
            .unwrap()
            .into_inner()
            .domains
            .contains(&"maybe.example".to_string()),
        "AddDomain was sent to the other replica"
    );

    // A write that never left (nothing listens on the first replica):
    // sent to the other.
    let ch = channel(&format!("http://127.0.0.1:{},{real}", free_port())).unwrap();
    admin_client(ch, CallAuth::default())
        .add_domain(pb::AddDomainRequest {
            name: "never-sent.example".into(),
        })
        .await
        .unwrap();
}

/// Mutual TLS between the services and the store, end to end: a store
/// process serving gRPC only over TLS with client certificates required,
/// and an imap-gateway process reaching it by a `dns:///` name with the
/// CA, certificate and key of its settings: LOGIN and SELECT work. A
/// caller with the CA but no client certificate, or in plaintext, is
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_reach_the_store_over_mutual_tls() {
    use e2e::mailbox_api::{self, pb, tls::StoreTls};
    use service_kit::tls::{CertUsage, InternalCa};
    let dir = tempfile::tempdir().unwrap();
    let ca = InternalCa::generate("mail test CA").unwrap();
    let (server_cert, server_key) = ca
        .issue(&["localhost".into(), "127.0.0.1".into()], CertUsage::Server)
        .unwrap();
    let (client_cert, client_key) = ca
        .issue(&["imap-gateway".into()], CertUsage::Client)
        .unwrap();
    let path = |name: &str, pem: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, pem).unwrap();
        p.display().to_string()
    };
    let ca_file = path("ca.pem", ca.cert_pem());
    let (sc, sk) = (
        path("server.pem", &server_cert),
        path("server.key", &server_key),
    );
    let (cc, ck) = (
        path("client.pem", &client_cert),
        path("client.key", &client_key),
    );

    let db = PgDatabase::create().await;
    let admin_port = free_port();
    let (_store, port) = spawn_listening(|port| {
        let mut env = store_env(port, admin_port, &db.url);
        env.push(("MAILSTORE_GRPC_TLS_CERT", sc.clone()));
        env.push(("MAILSTORE_GRPC_TLS_KEY", sk.clone()));
        env.push(("MAILSTORE_GRPC_TLS_CLIENT_CA", ca_file.clone()));
        spawn("store", &env)
    })
    .await;
    let url = format!("dns:///localhost:{port}");
    let tls = StoreTls::from_config(&ca_file, &cc, &ck).unwrap().unwrap();
    let channel = mailbox_api::channel_with_tls(&url, Some(&tls)).unwrap();
    let mut admin = mailbox_api::admin_client(channel, Default::default());
    let start = Instant::now();
    while admin
        .add_domain(pb::AddDomainRequest {
            name: "example.org".into(),
        })
        .await
        .is_err()
    {
        assert!(start.elapsed() < Duration::from_secs(30), "store not up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    admin
        .add_account(pb::AddAccountRequest {
            address: "alice@example.org".into(),
            password: "pw-alice".into(),
            quota_bytes: 0,
        })
        .await
        .unwrap();

    // Without a client certificate (the CA only) and in plaintext: refused.
    let ca_only = StoreTls::from_config(&ca_file, "", "").unwrap().unwrap();
    for channel in [
        mailbox_api::channel_with_tls(&url, Some(&ca_only)).unwrap(),
        mailbox_api::channel(&format!("http://127.0.0.1:{port}")).unwrap(),
    ] {
        // Refused in the handshake (no certificate) or by a TLS server
        // that h2c cannot talk to: an error, whatever its code; never served.
        let refused = mailbox_api::admin_client(channel, Default::default())
            .list_domains(pb::ListDomainsRequest {})
            .await;
        assert!(
            refused.is_err(),
            "served without a client certificate: {refused:?}"
        );
    }

    let (_imap, imap_port) = spawn_listening(|p| {
        spawn(
            "imap",
            &[
                ("IMAP_LISTEN", format!("127.0.0.1:{p}")),
                ("IMAP_STORE_URL", url.clone()),
                ("IMAP_STORE_TLS_CA", ca_file.clone()),
                ("IMAP_STORE_TLS_CERT", cc.clone()),
                ("IMAP_STORE_TLS_KEY", ck.clone()),
                ("IMAP_ADMIN_LISTEN", String::new()),
            ],
        )
    })
    .await;
    let mut c = Imap::connect(imap_port).await.unwrap();
    c.ok("LOGIN alice@example.org pw-alice").await.unwrap();
    let select = c.ok("SELECT INBOX").await.unwrap();
    assert!(select.iter().any(|l| l.contains("EXISTS")), "{select:?}");
    c.ok("LOGOUT").await.unwrap();
}

/// A TCP proxy in front of a store replica that, once armed with a byte
/// count, cuts the connection after passing that many more bytes of the
/// replica's answers (mid-frame), as the replica's death mid-answer does;
/// then it disarms. Connections made later pass untouched.
struct CutProxy {
    port: u16,
    /// Bytes of answers still to pass before the cut; 0: not armed.
    armed: Arc<std::sync::atomic::AtomicUsize>,
    cuts: Arc<std::sync::atomic::AtomicUsize>,
}

impl CutProxy {
    async fn start(target: u16) -> Self {
        use std::sync::atomic::AtomicUsize;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let armed = Arc::new(AtomicUsize::new(0));
        let cuts = Arc::new(AtomicUsize::new(0));
        let (armed2, cuts2) = (armed.clone(), cuts.clone());
        tokio::spawn(async move {
            while let Ok((inbound, _)) = l.accept().await {
                let Ok(out) = TcpStream::connect(("127.0.0.1", target)).await else {
                    continue;
                };
                let (armed, cuts) = (armed2.clone(), cuts2.clone());
                tokio::spawn(async move {
                    let (mut ci, mut co) = inbound.into_split();
                    let (mut si, mut so) = out.into_split();
                    let up = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut ci, &mut so).await;
                    });
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match si.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let left = armed.load(Ordering::SeqCst);
                        if left > 0 && n >= left {
                            let _ = co.write_all(&buf[..left]).await;
                            armed.store(0, Ordering::SeqCst);
                            cuts.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                        if left > 0 {
                            armed.fetch_sub(n, Ordering::SeqCst);
                        }
                        if co.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    // Both directions dropped: the connection is gone.
                    up.abort();
                });
            }
        });
        Self { port, armed, cuts }
    }

    fn arm(&self, bytes: usize) {
        self.armed.store(bytes, Ordering::SeqCst);
    }

    fn cuts(&self) -> usize {
        self.cuts.load(Ordering::SeqCst)
    }
}

/// A message of about `kb` KiB whose lines name it, ending with a line
/// that says it is whole.
fn long_message(i: usize, kb: usize) -> Vec<u8> {
    let mut body = String::new();
    for l in 0..kb * 16 {
        body.push_str(&format!(
            "message {i:03} line {l:05} {}\r\n",
            "x".repeat(40)
        ));
    }
    body.push_str(&format!("END-OF-{i:03}"));
    message(&format!("long-{i}"), &body)
}

/// A read whose answer stream breaks half way (the replica serving it
/// lost mid-answer) is read on from another replica: a large IMAP FETCH
/// and a POP3 RETR each get their whole answer, not `NO [UNAVAILABLE]` or
/// a closed connection, when both replicas' connections are cut in the
/// middle of it (a proxy in front of each cuts after so many bytes). And
/// an EXPUNGE whose answer is cut (done or not) is sent again, every
/// message it removed reported before its OK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_cut_half_way_is_read_on_from_another_replica() {
    let db = PgDatabase::create().await;
    let a = start_replica(&db.url).await;
    let b = start_replica(&db.url).await;
    let pa = CutProxy::start(a.port).await;
    let pb_ = CutProxy::start(b.port).await;
    let store_url = format!("http://127.0.0.1:{},http://127.0.0.1:{}", pa.port, pb_.port);
    let client = StoreClient::new(&format!("http://127.0.0.1:{}", a.port));
    client.add_domain("example.org").await;
    client.add_account("alice@example.org", "pw-alice").await;
    const N: usize = 24;
    let mut sent = Vec::new();
    for i in 0..N {
        // 8 KiB to 200 KiB: small ones come inline, large ones streamed.
        let m = long_message(i, 8 + (i * 8) % 200);
        client
            .deliver(&format!("long-{i}"), &["alice@example.org"], &m)
            .await;
        sent.push(m);
    }
    // Above the store's inline limit: streamed by itself (IMAP and POP3).
    let big = long_message(N, 600);
    assert!(big.len() as u64 > e2e::mailbox_api::INLINE_DATA_LIMIT);
    client
        .deliver(&format!("long-{N}"), &["alice@example.org"], &big)
        .await;
    sent.push(big);
    let n = sent.len();
    let (_imap, imap_port) = start_gateway("imap", &store_url).await;
    let (_pop3, pop3_port) = start_gateway("pop3", &store_url).await;

    // IMAP: the whole mailbox, bodies and all, three times, with both
    // replicas' connections cut part way through each time.
    let mut c = Imap::connect(imap_port).await.unwrap();
    c.ok("LOGIN alice@example.org pw-alice").await.unwrap();
    c.ok("SELECT INBOX").await.unwrap();
    for round in 0..3 {
        let before = pa.cuts() + pb_.cuts();
        pa.arm(150_000 + round * 70_000);
        pb_.arm(90_000 + round * 50_000);
        let lines = c
            .ok("UID FETCH 1:* (BODY.PEEK[])")
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        let text: String = lines.concat();
        for i in 0..n {
            assert!(
                text.contains(&format!("END-OF-{i:03}")),
                "round {round}: message {i} is not whole"
            );
        }
        let lost = (0..n)
            .flat_map(|i| (0..16).map(move |l| (i, l)))
            .find(|(i, l)| !text.contains(&format!("message {i:03} line {l:05} ")));
        assert_eq!(lost, None, "round {round}: a line is missing");
        assert!(
            pa.cuts() + pb_.cuts() > before,
            "round {round}: no connection was cut: the test proves nothing"
        );
        pa.arm(0);
        pb_.arm(0);
    }
    // The large message alone: its body streamed by itself, cut.
    for round in 0..2 {
        let before = pa.cuts() + pb_.cuts();
        pa.arm(100_000 + round * 150_000);
        pb_.arm(100_000 + round * 150_000);
        let lines = c
            .ok(&format!("UID FETCH {n} (BODY.PEEK[])"))
            .await
            .unwrap_or_else(|e| panic!("large, round {round}: {e}"));
        let text: String = lines.concat();
        let prefix = format!("message {N:03} line ");
        let seen: std::collections::BTreeSet<&str> = text
            .split("\r\n")
            .filter_map(|l| l.strip_prefix(prefix.as_str()))
            .filter_map(|l| l.get(..5))
            .collect();
        let whole = seen.len() == 600 * 16;
        assert!(
            whole && text.contains(&format!("END-OF-{N:03}")),
            "large, round {round}: not whole"
        );
        assert!(
            pa.cuts() + pb_.cuts() > before,
            "large, round {round}: no connection was cut: the test proves nothing"
        );
        pa.arm(0);
        pb_.arm(0);
    }
    c.ok("LOGOUT").await.unwrap();

    // POP3, byte for byte, each answer cut part way: RETR of the large
    // message (streamed by itself in chunks of 256 KiB: cut after its
    // first chunk, so after +OK, it goes on from the byte reached), RETR
    // of messages read ahead in a batch, and TOP of the large message
    // (read in growing windows: cut in its second).
    let largest = n - 1;
    let batched = (0..N).max_by_key(|&i| sent[i].len()).unwrap();
    let s = TcpStream::connect(("127.0.0.1", pop3_port)).await.unwrap();
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    r.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("+OK"), "{line}");
    for cmd in ["USER alice@example.org", "PASS pw-alice"] {
        w.write_all(format!("{cmd}\r\n").as_bytes()).await.unwrap();
        line.clear();
        r.read_line(&mut line).await.unwrap();
        assert!(line.starts_with("+OK"), "{cmd}: {line}");
    }
    // The large message's header and first 2,000 lines: what TOP 2000
    // sends (some 120 KB, past TOP's first window of 64 KiB).
    let top_lines = 2000;
    let top_want = {
        let m = &sent[largest];
        let at = m.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let mut want = m[..at].to_vec();
        let mut lines = 0;
        for (i, &b) in m[at..].iter().enumerate() {
            if lines == top_lines {
                break;
            }
            want.push(b);
            if b == b'\n' && m[at + i - 1] == b'\r' {
                lines += 1;
            }
        }
        want
    };
    let cases = [
        ("RETR", largest, 300_000, 280_000),
        ("RETR", batched, 60_000, 40_000),
        ("TOP", largest, 100_000, 100_000),
        ("RETR", largest, 400_000, 420_000),
        ("RETR", batched - 1, 100_000, 130_000),
        ("TOP", largest, 90_000, 110_000),
    ];
    for (round, (verb, which, arm_a, arm_b)) in cases.into_iter().enumerate() {
        let before = pa.cuts() + pb_.cuts();
        pa.arm(arm_a);
        pb_.arm(arm_b);
        let cmd = if verb == "TOP" {
            format!("TOP {} {top_lines}", which + 1)
        } else {
            format!("RETR {}", which + 1)
        };
        w.write_all(format!("{cmd}\r\n").as_bytes()).await.unwrap();
        line.clear();
        r.read_line(&mut line).await.unwrap();
        assert!(line.starts_with("+OK"), "round {round}: {cmd}: {line}");
        let mut got = Vec::new();
        loop {
            let mut l = Vec::new();
            let n = tokio::time::timeout(Duration::from_secs(30), r.read_until(b'\n', &mut l))
                .await
                .expect("the answer stalled")
                .unwrap();
            assert!(n > 0, "round {round}: the connection closed mid-{cmd}");
            if l == b".\r\n" {
                break;
            }
            // Dot-stuffing undone.
            if l.starts_with(b"..") {
                l.remove(0);
            }
            got.extend_from_slice(&l);
        }
        let want = if verb == "TOP" {
            &top_want
        } else {
            &sent[which]
        };
        assert!(
            got == *want,
            "round {round}: {cmd} gave {} bytes, {} expected, not the same",
            got.len(),
            want.len()
        );
        assert!(
            pa.cuts() + pb_.cuts() > before,
            "round {round}: {cmd}: no connection was cut: the test proves nothing"
        );
        pa.arm(0);
        pb_.arm(0);
    }
    w.write_all(b"QUIT\r\n").await.unwrap();

    // EXPUNGE whose answer is cut at its first byte (the store took it,
    // maybe did it): sent again rather than answered NO, and every
    // message it removed is reported before the OK.
    let mut c = Imap::connect(imap_port).await.unwrap();
    c.ok("LOGIN alice@example.org pw-alice").await.unwrap();
    c.ok("SELECT INBOX").await.unwrap();
    c.ok("UID STORE 1:3 +FLAGS.SILENT (\\Deleted)")
        .await
        .unwrap();
    // The STORE's own change notices (Watch streams) go by first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = pa.cuts() + pb_.cuts();
    pa.arm(1);
    pb_.arm(1);
    let lines = c
        .ok("EXPUNGE")
        .await
        .unwrap_or_else(|e| panic!("EXPUNGE: {e}"));
    pa.arm(0);
    pb_.arm(0);
    assert!(
        pa.cuts() + pb_.cuts() > before,
        "EXPUNGE: no connection was cut: the test proves nothing"
    );
    let gone: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("* ") && l.trim_end().ends_with(" EXPUNGE"))
        .collect();
    assert_eq!(gone.len(), 3, "EXPUNGE reported {lines:?}");
    let selected = c.ok("SELECT INBOX").await.unwrap().concat();
    assert!(
        selected.contains(&format!("* {} EXISTS", n - 3)),
        "after EXPUNGE: {selected}"
    );
    c.ok("LOGOUT").await.unwrap();
}
