//! Test harness: a real store (fresh PostgreSQL database or SQLite file) on
//! a real gRPC server bound to 127.0.0.1:0, and clients for it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::str::FromStr;

use mailbox_api::{AdminClient, CallAuth, DeliveryClient, MailboxClient, pb};
use mailbox_store::{Store, StoreSettings};
use sqlx::Connection;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// The admin connection string for PostgreSQL tests. Missing is a failure,
/// never a skip.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "DATABASE_URL is not set: the PostgreSQL half of this suite needs a server and a \
             role that may CREATE DATABASE (e.g. postgres://postgres:postgres@127.0.0.1:5432/postgres; \
             scripts/test starts a throwaway cluster when it is unset)"
        )
    })
}

/// A fresh, uniquely named PostgreSQL database, dropped on drop.
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
        let opts = sqlx::postgres::PgConnectOptions::from_str(&admin_url).unwrap();
        let url = format!(
            "postgres://{}:{}@{}:{}/{}",
            opts.get_username(),
            url_password(&admin_url),
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

fn url_password(url: &str) -> String {
    // postgres://user:pass@host...
    url.split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(cred, _)| cred.split_once(':'))
        .map(|(_, p)| p.to_string())
        .unwrap_or_default()
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin_url.clone(), self.name.clone());
        // Drop from a plain thread: the test's runtime may be shutting down.
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

pub struct TestStore {
    pub store: Store,
    pub addr: SocketAddr,
    pub secret: Option<String>,
    url: String,
    shutdown: CancellationToken,
    _dir: Option<tempfile::TempDir>,
    _pg: Option<PgDatabase>,
}

impl Drop for TestStore {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn start(backend: Backend) -> TestStore {
    start_with(backend, |_| {}).await
}

pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut StoreSettings)) -> TestStore {
    let (url, dir, pg) = match backend {
        Backend::Postgres => {
            let db = PgDatabase::create().await;
            (db.url.clone(), None, Some(db))
        }
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("mail.db").display());
            (url, Some(dir), None)
        }
    };
    let mut settings = StoreSettings::for_test(&url);
    tweak(&mut settings);
    serve(settings, url, dir, pg).await
}

/// A store on a database that already exists, reached through `url` as
/// given (for tests that choose its connection options).
pub async fn start_on(url: &str) -> TestStore {
    serve(StoreSettings::for_test(url), url.to_string(), None, None).await
}

/// As [`start_on`], with its settings changed by `tweak`.
pub async fn start_on_with(url: &str, tweak: impl FnOnce(&mut StoreSettings)) -> TestStore {
    let mut settings = StoreSettings::for_test(url);
    tweak(&mut settings);
    serve(settings, url.to_string(), None, None).await
}

async fn serve(
    settings: StoreSettings,
    url: String,
    dir: Option<tempfile::TempDir>,
    pg: Option<PgDatabase>,
) -> TestStore {
    let secret = settings.service_secret.clone();
    let store = Store::open(settings).await.expect("store opens");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(mailbox_store::serve(
        store.clone(),
        listener,
        shutdown.clone(),
    ));
    TestStore {
        store,
        addr,
        secret,
        url,
        shutdown,
        _dir: dir,
        _pg: pg,
    }
}

impl TestStore {
    /// A second store replica on the same database with its own caches
    /// (on PostgreSQL it hears the others through LISTEN/NOTIFY).
    pub async fn replica(&self) -> TestStore {
        self.replica_with(|_| {}).await
    }

    /// As [`TestStore::replica`], with its settings changed by `tweak`.
    pub async fn replica_with(&self, tweak: impl FnOnce(&mut StoreSettings)) -> TestStore {
        let mut settings = StoreSettings::for_test(&self.url);
        tweak(&mut settings);
        serve(settings, self.url.clone(), None, None).await
    }

    /// The database URL (for tests that look under the store).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn auth(&self) -> CallAuth {
        CallAuth::new(self.secret.as_deref()).unwrap()
    }

    pub fn channel(&self) -> mailbox_api::StoreChannel {
        mailbox_api::channel(&self.uri()).unwrap()
    }

    pub fn admin(&self) -> AdminClient {
        mailbox_api::admin_client(self.channel(), self.auth())
    }

    pub fn delivery(&self) -> DeliveryClient {
        mailbox_api::delivery_client(self.channel(), self.auth())
    }

    /// A Mailbox client without a session token.
    pub fn anonymous(&self) -> MailboxClient {
        mailbox_api::mailbox_client(self.channel(), self.auth())
    }

    pub fn with_token(&self, token: &str) -> MailboxClient {
        mailbox_api::mailbox_client(self.channel(), self.auth().with_session(token).unwrap())
    }

    /// One Authenticate call as a gateway makes it for `client_ip`.
    pub async fn authenticate(
        &self,
        user: &str,
        password: &str,
        client_ip: &str,
    ) -> Result<tonic::Response<pb::AuthenticateResponse>, tonic::Status> {
        self.anonymous()
            .authenticate(pb::AuthenticateRequest {
                username: user.into(),
                password: password.into(),
                client_ip: client_ip.into(),
                protocol: "test".into(),
            })
            .await
    }

    /// Logs in and returns a client carrying the session token.
    pub async fn login(&self, user: &str, password: &str) -> MailboxClient {
        let token = self
            .anonymous()
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
        self.with_token(&token)
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

    /// Delivers `body` to `rcpts` in one Deliver stream.
    pub async fn deliver(&self, id: &str, rcpts: &[&str], body: &[u8]) -> pb::DeliverResponse {
        deliver_with(&mut self.delivery(), id, rcpts, body)
            .await
            .unwrap()
    }
}

pub async fn deliver_with(
    client: &mut DeliveryClient,
    id: &str,
    rcpts: &[&str],
    body: &[u8],
) -> Result<pb::DeliverResponse, tonic::Status> {
    let mut chunks = vec![pb::DeliverChunk {
        part: Some(pb::deliver_chunk::Part::Header(pb::DeliverHeader {
            delivery_id: id.into(),
            envelope_from: "sender@remote.example".into(),
            recipients: rcpts.iter().map(|s| s.to_string()).collect(),
            received_at: 1_700_000_000,
            trace_headers: Vec::new(),
            size_hint: body.len() as u64,
            per_recipient_replies: false,
        })),
    }];
    for c in body.chunks(64 * 1024) {
        chunks.push(pb::DeliverChunk {
            part: Some(pb::deliver_chunk::Part::Data(c.to_vec())),
        });
    }
    client
        .deliver(tokio_stream::iter(chunks))
        .await
        .map(|r| r.into_inner())
}

/// Every message entry of a mailbox, from a read-only Select stream.
pub async fn select_all(
    client: &mut MailboxClient,
    name: &str,
) -> Result<(pb::MailboxStatus, Vec<pb::MessageEntry>), tonic::Status> {
    select_with(client, name, true).await
}

/// As [`select_all`]; a read-write Select claims \Recent.
pub async fn select_with(
    client: &mut MailboxClient,
    name: &str,
    read_only: bool,
) -> Result<(pb::MailboxStatus, Vec<pb::MessageEntry>), tonic::Status> {
    let mut stream = client
        .select(pb::SelectRequest {
            name: name.into(),
            read_only,
        })
        .await?
        .into_inner();
    let mut status = None;
    let mut entries = Vec::new();
    while let Some(part) = stream.message().await? {
        match part.part {
            Some(pb::select_response::Part::Status(s)) => status = Some(s),
            Some(pb::select_response::Part::Batch(b)) => entries.extend(b.messages),
            None => {}
        }
    }
    Ok((status.expect("select sends a status first"), entries))
}

pub fn message(subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Sender <sender@remote.example>\r\nTo: someone@example.org\r\n\
         Subject: {subject}\r\nMessage-ID: <{subject}@remote.example>\r\n\
         Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

/// Generates `mod NAME { postgres(), sqlite() }` for each suite function,
/// each a test on tokio's multi-threaded runtime with 4 workers (or
/// `workers = N;` before the names). For files that `#[macro_use] mod
/// common;`.
#[allow(unused_macros)]
macro_rules! both_backends {
    (workers = $w:tt; $($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = $w)]
            async fn postgres() {
                super::$name(super::Backend::Postgres).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = $w)]
            async fn sqlite() {
                super::$name(super::Backend::Sqlite).await
            }
        }
    )*};
    ($($name:ident),* $(,)?) => {
        both_backends!(workers = 4; $($name),*);
    };
}
