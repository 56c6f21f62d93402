//! Harness for end-to-end tests: a real store (fresh PostgreSQL database or
//! SQLite file) and real services on 127.0.0.1:0, plus helpers to read what
//! was stored. Used only by this crate's tests; the services themselves
//! never depend on it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use mailbox_api::{AdminClient, CallAuth, DeliveryClient, MailboxClient, pb};
use mailbox_store::{Store, StoreSettings};
use service_kit::CancellationToken;
use sqlx::Connection;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub use mailbox_api;

pub mod load;
pub mod oidc;
pub mod otlp;
pub mod patroni;
pub mod promql;

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// The admin connection string for PostgreSQL tests; missing is a
/// failure, never a skip.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "DATABASE_URL is not set: PostgreSQL tests need a server and a role that may \
             CREATE DATABASE (e.g. postgres://postgres:postgres@127.0.0.1:5432/postgres; \
             scripts/test starts a throwaway cluster when it is unset)"
        )
    })
}

/// A fresh PostgreSQL database, dropped on drop.
pub struct PgDatabase {
    pub url: String,
    admin_url: String,
    name: String,
}

impl PgDatabase {
    pub async fn create() -> Self {
        let admin_url = database_url();
        let name = format!("mailtest_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to DATABASE_URL {admin_url}: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("CREATE DATABASE (the role needs CREATEDB)");
        let mut opts = sqlx::postgres::PgConnectOptions::from_str(&admin_url).unwrap();
        opts = opts.database(&name);
        let password = admin_url
            .split_once("://")
            .and_then(|(_, r)| r.split_once('@'))
            .and_then(|(c, _)| c.split_once(':'))
            .map(|(_, p)| p.to_string())
            .unwrap_or_default();
        let url = format!(
            "postgres://{}:{}@{}:{}/{}",
            opts.get_username(),
            password,
            opts.get_host(),
            opts.get_port(),
            name
        );
        Self {
            url,
            admin_url,
            name,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin_url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut c)
                    .await;
                }
            });
        })
        .join();
    }
}

/// Where a store keeps its data for a test.
pub struct StoreData {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    _pg: Option<PgDatabase>,
}

impl StoreData {
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Postgres => {
                let db = PgDatabase::create().await;
                Self {
                    url: db.url.clone(),
                    _dir: None,
                    _pg: Some(db),
                }
            }
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                Self {
                    url: format!("sqlite://{}", dir.path().join("mail.db").display()),
                    _dir: Some(dir),
                    _pg: None,
                }
            }
        }
    }
}

/// A store served in-process on 127.0.0.1:0.
pub struct TestStore {
    pub store: Store,
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    _data: StoreData,
}

impl Drop for TestStore {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestStore {
    pub async fn start(backend: Backend) -> Self {
        Self::serve(StoreData::new(backend).await).await
    }

    /// The database URL the store runs on (to alter rows as no client can).
    pub fn database_url(&self) -> &str {
        &self._data.url
    }

    /// Another store replica over the same database, with its own change
    /// hub: on PostgreSQL it learns of the other replicas' changes through
    /// LISTEN/NOTIFY, as separate store processes do.
    pub async fn replica(&self) -> TestStore {
        Self::serve(StoreData {
            url: self._data.url.clone(),
            _dir: None,
            _pg: None,
        })
        .await
    }

    async fn serve(data: StoreData) -> Self {
        let store = Store::open(StoreSettings::for_test(&data.url))
            .await
            .expect("store opens");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        tokio::spawn(mailbox_store::serve(
            store.clone(),
            listener,
            shutdown.clone(),
        ));
        Self {
            store,
            addr,
            shutdown,
            _data: data,
        }
    }

    pub fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn client(&self) -> StoreClient {
        StoreClient::new(&self.uri())
    }
}

/// gRPC clients to a store, for setup and for reading what was stored.
#[derive(Clone)]
pub struct StoreClient {
    channel: mailbox_api::StoreChannel,
}

impl StoreClient {
    pub fn new(uri: &str) -> Self {
        Self {
            channel: mailbox_api::channel(uri).unwrap(),
        }
    }

    pub fn admin(&self) -> AdminClient {
        mailbox_api::admin_client(self.channel.clone(), CallAuth::default())
    }

    pub fn delivery(&self) -> DeliveryClient {
        mailbox_api::delivery_client(self.channel.clone(), CallAuth::default())
    }

    pub async fn add_domain(&self, d: &str) {
        self.admin()
            .add_domain(pb::AddDomainRequest { name: d.into() })
            .await
            .unwrap();
    }

    pub async fn add_account(&self, address: &str, password: &str) {
        self.admin()
            .add_account(pb::AddAccountRequest {
                address: address.into(),
                password: password.into(),
                quota_bytes: 0,
            })
            .await
            .unwrap();
    }

    pub async fn login(&self, user: &str, password: &str) -> MailboxClient {
        let token = mailbox_api::mailbox_client(self.channel.clone(), CallAuth::default())
            .authenticate(pb::AuthenticateRequest {
                username: user.into(),
                password: password.into(),
                client_ip: "127.0.0.1".into(),
                protocol: "test".into(),
            })
            .await
            .unwrap_or_else(|e| panic!("login {user}: {e}"))
            .into_inner()
            .session_token;
        mailbox_api::mailbox_client(
            self.channel.clone(),
            CallAuth::default().with_session(&token).unwrap(),
        )
    }

    /// Every message of a mailbox as raw bytes, in UID order.
    pub async fn messages(&self, user: &str, password: &str, mailbox: &str) -> Vec<Vec<u8>> {
        let mut c = self.login(user, password).await;
        let mut s = c
            .select(pb::SelectRequest {
                name: mailbox.into(),
                read_only: true,
            })
            .await
            .unwrap()
            .into_inner();
        let mut uids = Vec::new();
        while let Some(p) = s.message().await.unwrap() {
            if let Some(pb::select_response::Part::Batch(b)) = p.part {
                uids.extend(b.messages.into_iter().map(|m| m.uid));
            }
        }
        let mut out = Vec::new();
        for uid in uids {
            let mut s = c
                .fetch_body(pb::FetchBodyRequest {
                    mailbox: mailbox.into(),
                    uid,
                    offset: 0,
                    length: 0,
                })
                .await
                .unwrap()
                .into_inner();
            let mut data = Vec::new();
            while let Some(chunk) = s.message().await.unwrap() {
                data.extend(chunk.data);
            }
            out.push(data);
        }
        out
    }
}

/// smtp-ingest served in-process on 127.0.0.1:0 (SMTP and LMTP), with
/// STARTTLS from a fresh self-signed certificate.
pub struct TestSmtp {
    pub smtp: SocketAddr,
    pub lmtp: SocketAddr,
    pub cert_dir: tempfile::TempDir,
    shutdown: CancellationToken,
    pub handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Drop for TestSmtp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestSmtp {
    pub async fn start(store_uri: &str) -> Self {
        Self::start_with(store_uri, |_| {}).await
    }

    pub async fn start_with(
        store_uri: &str,
        tweak: impl FnOnce(&mut smtp_ingest::SmtpSettings),
    ) -> Self {
        let cert_dir = tempfile::tempdir().unwrap();
        let (cert, key) = service_kit::tls::ensure_self_signed(cert_dir.path()).unwrap();
        let mut settings = smtp_ingest::SmtpSettings::for_test(store_uri);
        settings.tls = Some((cert, key));
        tweak(&mut settings);
        let smtp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let lmtp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (smtp_addr, lmtp_addr) = (smtp.local_addr().unwrap(), lmtp.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(smtp_ingest::serve(
            settings,
            smtp_ingest::Listeners {
                smtp: Some(smtp),
                smtps: None,
                lmtp: Some(lmtp),
            },
            shutdown.clone(),
        ));
        Self {
            smtp: smtp_addr,
            lmtp: lmtp_addr,
            cert_dir,
            shutdown,
            handle,
        }
    }

    pub fn stop(&self) {
        self.shutdown.cancel();
    }

    /// Only an implicit-TLS SMTP listener; returns its address. The server
    /// lives as long as the returned guard.
    pub async fn start_implicit_tls(store_uri: &str) -> ImplicitTls {
        let cert_dir = tempfile::tempdir().unwrap();
        let (cert, key) = service_kit::tls::ensure_self_signed(cert_dir.path()).unwrap();
        let mut settings = smtp_ingest::SmtpSettings::for_test(store_uri);
        settings.tls = Some((cert, key));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        tokio::spawn(smtp_ingest::serve(
            settings,
            smtp_ingest::Listeners {
                smtp: None,
                smtps: Some(l),
                lmtp: None,
            },
            shutdown.clone(),
        ));
        ImplicitTls {
            addr,
            shutdown,
            _cert_dir: cert_dir,
        }
    }

    pub fn cert(&self) -> PathBuf {
        self.cert_dir.path().join("tls/cert.pem")
    }
}

/// A running implicit-TLS SMTP listener.
pub struct ImplicitTls {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    _cert_dir: tempfile::TempDir,
}

impl ImplicitTls {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for ImplicitTls {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Strips the trace lines smtp-ingest prepends (Return-Path and Received
/// with its folded continuation lines), returning them and the rest.
pub fn split_trace(stored: &[u8]) -> (String, &[u8]) {
    let mut pos = 0;
    let mut in_trace = false;
    while pos < stored.len() {
        let end = stored[pos..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|p| pos + p + 2)
            .unwrap_or(stored.len());
        let line = &stored[pos..end];
        let is_trace = line.starts_with(b"Return-Path:") || line.starts_with(b"Received:");
        let continuation = in_trace && (line.starts_with(b"\t") || line.starts_with(b" "));
        if is_trace || continuation {
            in_trace = true;
            pos = end;
        } else {
            break;
        }
    }
    (
        String::from_utf8_lossy(&stored[..pos]).into_owned(),
        &stored[pos..],
    )
}

/// Runs a Python script from `crates/e2e/tests/py/` with arguments.
pub fn python(script: &str, args: &[&str]) -> (bool, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(script);
    let out = std::process::Command::new("python3")
        .arg(&path)
        .args(args)
        .output()
        .expect("python3 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A test message with a unique Message-ID.
pub fn message(id: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Sender <sender@remote.example>\r\nTo: someone@example.org\r\n\
         Subject: test {id}\r\nMessage-ID: <{id}@remote.example>\r\n\
         Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

/// pop3-gateway served in-process on 127.0.0.1:0, with STLS from a fresh
/// self-signed certificate and an implicit-TLS port.
pub struct TestPop3 {
    pub pop3: SocketAddr,
    pub pop3s: SocketAddr,
    pub cert_dir: tempfile::TempDir,
    shutdown: CancellationToken,
}

impl Drop for TestPop3 {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestPop3 {
    pub async fn start(store_uri: &str) -> Self {
        Self::start_with(store_uri, |_| {}).await
    }

    pub async fn start_with(
        store_uri: &str,
        tweak: impl FnOnce(&mut pop3_gateway::Pop3Settings),
    ) -> Self {
        let cert_dir = tempfile::tempdir().unwrap();
        let (cert, key) = service_kit::tls::ensure_self_signed(cert_dir.path()).unwrap();
        let mut settings = pop3_gateway::Pop3Settings::for_test(store_uri);
        settings.tls = Some((cert, key));
        tweak(&mut settings);
        let pop3 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pop3s = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (a, b) = (pop3.local_addr().unwrap(), pop3s.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        tokio::spawn(pop3_gateway::serve(
            settings,
            pop3_gateway::Listeners {
                pop3: Some(pop3),
                pop3s: Some(pop3s),
            },
            shutdown.clone(),
        ));
        Self {
            pop3: a,
            pop3s: b,
            cert_dir,
            shutdown,
        }
    }
}

impl StoreClient {
    /// Delivers raw bytes straight through the store's Delivery API.
    pub async fn deliver(&self, id: &str, rcpts: &[&str], body: &[u8]) {
        let chunks = vec![
            pb::DeliverChunk {
                part: Some(pb::deliver_chunk::Part::Header(pb::DeliverHeader {
                    delivery_id: id.into(),
                    envelope_from: "sender@remote.example".into(),
                    recipients: rcpts.iter().map(|s| s.to_string()).collect(),
                    received_at: 1_700_000_000,
                    trace_headers: Vec::new(),
                    size_hint: body.len() as u64,
                    per_recipient_replies: false,
                })),
            },
            pb::DeliverChunk {
                part: Some(pb::deliver_chunk::Part::Data(body.to_vec())),
            },
        ];
        self.delivery()
            .deliver(tokio_stream::iter(chunks))
            .await
            .unwrap();
    }
}

/// imap-gateway served in-process on 127.0.0.1:0 (STARTTLS port and
/// implicit-TLS port) with a fresh self-signed certificate.
pub struct TestImap {
    pub imap: SocketAddr,
    pub imaps: SocketAddr,
    pub cert_dir: tempfile::TempDir,
    shutdown: CancellationToken,
}

impl Drop for TestImap {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestImap {
    pub async fn start(store_uri: &str) -> Self {
        Self::start_with(store_uri, |_| {}).await
    }

    pub async fn start_with(
        store_uri: &str,
        tweak: impl FnOnce(&mut imap_gateway::ImapSettings),
    ) -> Self {
        let cert_dir = tempfile::tempdir().unwrap();
        let (cert, key) = service_kit::tls::ensure_self_signed(cert_dir.path()).unwrap();
        let mut settings = imap_gateway::ImapSettings::for_test(store_uri);
        settings.tls = Some((cert, key));
        tweak(&mut settings);
        let imap = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let imaps = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (a, b) = (imap.local_addr().unwrap(), imaps.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        tokio::spawn(imap_gateway::serve(
            settings,
            imap_gateway::Listeners {
                imap: Some(imap),
                imaps: Some(imaps),
            },
            shutdown.clone(),
        ));
        Self {
            imap: a,
            imaps: b,
            cert_dir,
            shutdown,
        }
    }

    pub fn stop(&self) {
        self.shutdown.cancel();
    }
}

/// A TCP proxy that can be cut and restored, standing in for a database
/// going away.
pub struct Proxy {
    pub addr: SocketAddr,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cut: std::sync::Arc<tokio::sync::Notify>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Self {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let cut = std::sync::Arc::new(tokio::sync::Notify::new());
        let (up2, cut2) = (up.clone(), cut.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = l.accept().await else {
                    return;
                };
                if !up2.load(std::sync::atomic::Ordering::SeqCst) {
                    continue;
                }
                let cut = cut2.clone();
                tokio::spawn(async move {
                    let Ok(mut out) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut out) => {}
                        _ = cut.notified() => {}
                    }
                });
            }
        });
        Self { addr, up, cut }
    }

    /// Cuts (false) or restores (true) the path; cutting also drops
    /// the connections in flight.
    pub fn set(&self, up: bool) {
        self.up.store(up, std::sync::atomic::Ordering::SeqCst);
        if !up {
            self.cut.notify_waiters();
        }
    }
}

/// What a mail client sees of an INBOX, read over the protocols: for the
/// "acknowledged means visible" checks. The sessions are
/// `mail_bench::burst`'s, which the burst test and benchmark use.
pub mod visible {
    pub use mail_bench::burst::{Pop3Seen, pop3_session};

    /// The INBOX over IMAP in one fresh session: EXISTS from SELECT,
    /// MESSAGES from STATUS, and the Message-ID of every message from a
    /// FETCH of that header (so the messages are readable, not only
    /// counted). None if the session failed.
    pub async fn imap_inbox(
        addr: std::net::SocketAddr,
        user: &str,
        password: &str,
    ) -> Option<(u32, u32, Vec<String>)> {
        let l = mail_bench::burst::imap_inbox(addr, user, password)
            .await
            .ok()?;
        Some((l.exists, l.status, l.ids))
    }

    /// The maildrop's message count from POP3 STAT in a fresh session, QUIT
    /// answered (so the maildrop lock is given back); None if the session
    /// failed or the maildrop was locked.
    pub async fn pop3_stat(addr: std::net::SocketAddr, user: &str, password: &str) -> Option<u32> {
        match pop3_session(addr, user, password).await {
            Ok(Pop3Seen::Count(n)) => Some(n),
            _ => None,
        }
    }
}

/// Services as processes of their own (the `e2e-service` binary, whose path
/// only tests know: `env!("CARGO_BIN_EXE_e2e-service")`).
pub mod procs {
    use std::collections::BTreeSet;
    use std::process::{Child, Command, Stdio};
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    /// A loopback port nothing listens on now, never one this process
    /// handed out before: the kernel gives a released port out again now
    /// and then (about 3 in 10,000 runs of four calls), and two services
    /// told the same port race to bind it. Another process may still take
    /// it before the service binds it: [`spawn_listening`] checks for that.
    pub fn free_port() -> u16 {
        static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
        // The ones held while looking, so the kernel offers others.
        let mut held = Vec::new();
        loop {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = l.local_addr().unwrap().port();
            if GIVEN.lock().unwrap_or_else(|p| p.into_inner()).insert(port) {
                return port;
            }
            held.push(l);
        }
    }

    /// The inodes of the sockets listening on `port` (any local address).
    fn listening_inodes(port: u16) -> BTreeSet<String> {
        let want = format!(":{port:04X}");
        let mut out = BTreeSet::new();
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            let Ok(text) = std::fs::read_to_string(table) else {
                continue;
            };
            for line in text.lines().skip(1) {
                let f: Vec<&str> = line.split_whitespace().collect();
                // sl local_address rem_address st ... uid timeout inode
                if f.len() > 9 && f[1].ends_with(&want) && f[3] == "0A" {
                    out.insert(f[9].to_string());
                }
            }
        }
        out
    }

    impl Proc {
        /// Whether this process itself (not some other one) listens on
        /// `port`: one of its descriptors is a listening socket on it.
        pub fn listens_on(&self, port: u16) -> bool {
            let inodes = listening_inodes(port);
            if inodes.is_empty() {
                return false;
            }
            let Ok(fds) = std::fs::read_dir(format!("/proc/{}/fd", self.0.id())) else {
                return false;
            };
            fds.flatten().any(|fd| {
                std::fs::read_link(fd.path()).is_ok_and(|t| {
                    t.to_str()
                        .and_then(|t| t.strip_prefix("socket:["))
                        .and_then(|t| t.strip_suffix(']'))
                        .is_some_and(|i| inodes.contains(i))
                })
            })
        }

        /// Waits until this process listens on `port` (Ok) or has exited
        /// (Err: how), at most a minute (a guard against hanging).
        pub async fn wait_listening(&mut self, port: u16) -> Result<(), String> {
            let start = Instant::now();
            loop {
                if let Some(status) = self.0.try_wait().unwrap() {
                    return Err(format!("exited before listening on {port}: {status}"));
                }
                if self.listens_on(port) {
                    return Ok(());
                }
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "the service does not listen on {port} after a minute"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// A service listening on a port of its own: `start(port)` spawns it
    /// told to listen on `port`; this waits until that process (not merely
    /// something) listens there. When it exits first (the port was taken
    /// by another process between [`free_port`] and its bind), it is
    /// started again on another port, up to four more times.
    pub async fn spawn_listening(mut start: impl FnMut(u16) -> Proc) -> (Proc, u16) {
        let mut why = Vec::new();
        for _ in 0..5 {
            let port = free_port();
            let mut p = start(port);
            match p.wait_listening(port).await {
                Ok(()) => return (p, port),
                Err(e) => why.push(e),
            }
        }
        panic!("the service never listened: {why:?}");
    }

    /// A service process, killed on drop.
    pub struct Proc(pub Child);

    impl Drop for Proc {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Starts `bin <which>` with `env` on top of quiet defaults
    /// (RUST_LOG=error, no OTLP export, output discarded). With
    /// `E2E_SERVICE_LOGS` set to a directory, each service's output goes to
    /// `<which>-<pid>.log` there instead, at the test's own `RUST_LOG` if it
    /// has one: to see what a failing run's services did.
    pub fn spawn(bin: &str, which: &str, env: &[(&str, String)]) -> Proc {
        let mut c = Command::new(bin);
        c.arg(which).env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
        match std::env::var_os("E2E_SERVICE_LOGS") {
            Some(dir) => {
                static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let path = std::path::Path::new(&dir)
                    .join(format!("{which}-{}-{n}.log", std::process::id()));
                let file = std::fs::File::create(&path).expect("service log file");
                let level = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
                c.env("RUST_LOG", level)
                    .stdout(file.try_clone().expect("service log file"))
                    .stderr(file);
            }
            None => {
                c.env("RUST_LOG", "error")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
            }
        }
        for (k, v) in env {
            c.env(k, v);
        }
        Proc(c.spawn().unwrap())
    }

    /// Waits until something listens on `port` (at most a minute).
    pub async fn wait_port(port: u16) {
        let start = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "nothing listens on {port}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A raw IMAP client for multi-session and RFC-rule tests: it sends
/// commands as written and returns the lines up to the tagged reply.
pub struct RawImap {
    pub r: BufReader<tokio::io::ReadHalf<TcpStream>>,
    pub w: tokio::io::WriteHalf<TcpStream>,
    /// The number of the last tag `cmd` used (`t{n}`).
    pub n: u32,
}

/// The tagged reply among a command's lines (the last one).
pub fn tagged(r: &[String]) -> &str {
    r.last().map_or("", String::as_str)
}

/// A store with domain example.org and alice@example.org (password
/// pw-alice), and its admin client.
pub async fn store_with_alice(backend: Backend) -> (TestStore, StoreClient) {
    let store = TestStore::start(backend).await;
    let client = store.client();
    client.add_domain("example.org").await;
    client.add_account("alice@example.org", "pw-alice").await;
    (store, client)
}

impl RawImap {
    pub async fn connect(addr: SocketAddr) -> Self {
        let s = TcpStream::connect(addr).await.unwrap();
        let (r, w) = tokio::io::split(s);
        let mut raw = Self {
            r: BufReader::new(r),
            w,
            n: 0,
        };
        assert!(raw.line().await.starts_with("* OK"));
        raw
    }

    pub async fn line(&mut self) -> String {
        let mut l = String::new();
        let n = tokio::time::timeout(std::time::Duration::from_secs(20), self.r.read_line(&mut l))
            .await
            .expect("a line within 20 s")
            .unwrap();
        if n == 0 {
            return "<closed>".into();
        }
        l
    }

    /// Sends a command that must succeed; its lines.
    pub async fn ok(&mut self, c: &str) -> Vec<String> {
        let r = self.cmd(c).await;
        assert!(tagged(&r).contains(" OK "), "{c}: {r:?}");
        r
    }

    /// Reads unsolicited lines until one contains `want` (each within
    /// 20 s); returns them all.
    pub async fn until(&mut self, want: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let l = self.line().await;
            assert_ne!(l, "<closed>", "{seen:?}");
            let done = l.contains(want);
            seen.push(l);
            if done {
                return seen;
            }
        }
    }

    /// Reads exactly `n` bytes (a literal that need not be UTF-8).
    pub async fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut b = vec![0; n];
        tokio::time::timeout(
            std::time::Duration::from_secs(20),
            self.r.read_exact(&mut b),
        )
        .await
        .expect("the bytes within 20 s")
        .unwrap();
        b
    }

    /// Sends a command and returns every line up to its tagged reply.
    pub async fn cmd(&mut self, c: &str) -> Vec<String> {
        self.n += 1;
        let tag = format!("t{}", self.n);
        self.w
            .write_all(format!("{tag} {c}\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = Vec::new();
        loop {
            let l = self.line().await;
            let done = l.starts_with(&format!("{tag} ")) || l == "<closed>";
            out.push(l);
            if done {
                return out;
            }
        }
    }

    /// Logs in as alice@example.org (password pw-alice), the account the
    /// IMAP tests set up.
    pub async fn login(&mut self) {
        self.login_as("alice@example.org", "pw-alice").await;
    }

    pub async fn login_as(&mut self, user: &str, password: &str) {
        let r = self.cmd(&format!("LOGIN {user} {password}")).await;
        assert!(r.last().unwrap().contains("OK"), "{r:?}");
    }

    /// Sends bytes as they are (a literal, DONE).
    pub async fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).await.unwrap();
    }

    /// Sends NOOP until a line containing `want` comes back (the change
    /// feed may tell a session a moment after the write); returns that
    /// NOOP's lines.
    pub async fn noop_until(&mut self, want: &str) -> Vec<String> {
        let since = std::time::Instant::now();
        // A guard against hanging, not a bound on how soon.
        while since.elapsed() < std::time::Duration::from_secs(60) {
            let r = self.cmd("NOOP").await;
            if r.iter().any(|l| l.contains(want)) {
                return r;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("no {want:?} after a minute of NOOPs");
    }
}
