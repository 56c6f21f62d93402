//! One POP3 session: AUTHORIZATION -> TRANSACTION -> UPDATE (RFC 1939
//! section 3), over a connection that may be upgraded with STLS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine;
use mailbox_api::StoreChannel;
use mailbox_api::sasl::{self, Mechanism, Outcome};
use mailbox_api::{CallAuth, MailboxClient, pb};
use pop3_wire::{
    Command, DotStuffer, MAX_COMMAND_LINE, MAX_SASL_LINE, ParseError, RespCode, err, ok,
};
use service_kit::CancellationToken;
use service_kit::conn::{Connection, Line, ReadError, Stream};
use service_kit::limit::PerIpLimit;
use tokio::net::TcpStream;
use tonic::{Code, Status};

use crate::config::Pop3Settings;
use crate::readahead::ReadAhead;

pub(crate) struct Ctx {
    pub settings: Pop3Settings,
    pub tls: Option<service_kit::tls::ReloadingTls>,
    pub auth: CallAuth,
    pub channel: StoreChannel,
    pub per_ip: PerIpLimit,
    pub shutdown: CancellationToken,
}

const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Protocol errors tolerated before the connection is closed.
const MAX_ERRORS: usize = 20;

/// One SASL round over POP3 (RFC 5034 4): `+ <base64>`, then the
/// client's line.
struct Pop3Sasl<'a>(&'a mut Session);

impl sasl::SaslIo for Pop3Sasl<'_> {
    type Error = End;
    async fn challenge(&mut self, data: &[u8]) -> Result<String, End> {
        let s = &mut *self.0;
        let line = format!(
            "+ {}\r\n",
            base64::engine::general_purpose::STANDARD.encode(data)
        );
        s.conn.write_all(line.as_bytes()).await?;
        s.conn.flush().await?;
        let timeout = s.settings().idle_timeout;
        match s.conn.read_line(MAX_SASL_LINE, timeout).await {
            Ok(Line::Complete(l)) => Ok(String::from_utf8_lossy(&l).trim_end().to_string()),
            // Too long to be base64 of anything we take: not base64.
            Ok(Line::TooLong { .. }) => Ok("!".into()),
            _ => Err(End::Closed),
        }
    }
}

pub(crate) async fn handle(ctx: Arc<Ctx>, tcp: TcpStream, peer: SocketAddr, implicit_tls: bool) {
    let Some(slot) = ctx.per_ip.try_acquire(peer.ip()) else {
        let mut conn = Connection::new(Stream::Plain(tcp), peer);
        let _ = conn
            .write_all(&err(
                Some(RespCode::SysTemp),
                "Too many connections from your address",
            ))
            .await;
        conn.shutdown().await;
        return;
    };
    let conn = if implicit_tls {
        let Some(acceptor) = &ctx.tls else { return };
        match Connection::accept_tls(tcp, peer, &acceptor.acceptor(), TLS_HANDSHAKE_TIMEOUT).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
        }
    } else {
        Connection::new(Stream::Plain(tcp), peer)
    };
    let mut s = Session {
        ctx: ctx.clone(),
        store: ctx.channel.pinned(),
        conn,
        state: State::Authorization { user: None },
        errors: 0,
        last_ok: true,
    };
    let span = tracing::info_span!("pop3_session", %peer);
    tracing::Instrument::instrument(
        async move {
            if let Err(e) = s.run().await {
                tracing::debug!(error = %e, "session ended");
            }
            // Whatever happened, a dropped session deletes nothing; it only
            // gives the maildrop back.
            if let State::Transaction(m) = std::mem::replace(&mut s.state, State::Closed) {
                m.close().await;
            }
            s.conn.shutdown().await;
            drop(slot);
        },
        span,
    )
    .await;
}

fn command_name(c: &Command) -> &'static str {
    match c {
        Command::User(_) => "USER",
        Command::Pass(_) => "PASS",
        Command::Apop { .. } => "APOP",
        Command::Auth { .. } => "AUTH",
        Command::Stls => "STLS",
        Command::Capa => "CAPA",
        Command::Utf8 => "UTF8",
        Command::Stat => "STAT",
        Command::List(_) => "LIST",
        Command::Uidl(_) => "UIDL",
        Command::Retr(_) => "RETR",
        Command::Top(..) => "TOP",
        Command::Dele(_) => "DELE",
        Command::Noop => "NOOP",
        Command::Rset => "RSET",
        Command::Quit => "QUIT",
    }
}

enum State {
    Authorization { user: Option<String> },
    Transaction(Box<Maildrop>),
    Closed,
}

/// One message of the maildrop snapshot.
pub(crate) struct Msg {
    pub(crate) uid: u32,
    pub(crate) size: u64,
    /// DELE'd in this session (undone by RSET).
    pub(crate) deleted: bool,
    retrieved: bool,
}

/// The opened maildrop: a snapshot of INBOX taken at login, the lease that
/// makes it exclusive, and the session's store client.
struct Maildrop {
    client: MailboxClient,
    lease: String,
    uid_validity: u32,
    msgs: Vec<Msg>,
    lease_lost: Arc<AtomicBool>,
    renewer: tokio::task::JoinHandle<()>,
    /// Bodies read ahead of the client's RETR/TOP, a batch per store call.
    ahead: ReadAhead,
}

impl Maildrop {
    fn get(&self, n: u32) -> Option<&Msg> {
        self.msgs
            .get((n as usize).checked_sub(1)?)
            .filter(|m| !m.deleted)
    }

    fn totals(&self) -> (usize, u64) {
        self.msgs
            .iter()
            .filter(|m| !m.deleted)
            .fold((0, 0), |(n, s), m| (n + 1, s + m.size))
    }

    /// Gives the maildrop back and ends the store session.
    async fn close(self) {
        self.renewer.abort();
        let mut c = self.client.clone();
        let _ = c
            .release_maildrop(pb::ReleaseMaildropRequest {
                lease_id: self.lease.clone(),
            })
            .await;
        let _ = c.logout(pb::LogoutRequest {}).await;
    }
}

struct Session {
    ctx: Arc<Ctx>,
    /// The store channel of this session: its calls start at one store
    /// replica (`StoreChannel::pinned`), where its token is cached.
    store: StoreChannel,
    conn: Connection,
    state: State,
    errors: usize,
    /// Whether the last response was +OK (for metrics).
    last_ok: bool,
}

#[derive(Debug, thiserror::Error)]
enum End {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("closed")]
    Closed,
}

impl Session {
    fn settings(&self) -> &Pop3Settings {
        &self.ctx.settings
    }

    async fn send(&mut self, data: &[u8]) -> Result<(), End> {
        if let Some(&b) = data.first() {
            self.last_ok = b == b'+';
        }
        self.conn.write_all(data).await?;
        // PIPELINING (RFC 2449): answer everything queued, then flush.
        if self.conn.buffered() == 0 {
            self.conn.flush().await?;
        }
        Ok(())
    }

    async fn error(&mut self, code: Option<RespCode>, text: &str) -> Result<(), End> {
        self.errors += 1;
        self.send(&err(code, text)).await?;
        if self.errors >= MAX_ERRORS {
            return Err(End::Closed);
        }
        Ok(())
    }

    /// Whether a password may be sent on this connection.
    fn plaintext_ok(&self) -> bool {
        self.conn.is_tls() || self.settings().trusted.contains(self.conn.peer.ip())
    }

    async fn run(&mut self) -> Result<(), End> {
        self.send(&ok("POP3 server ready")).await?;
        loop {
            let timeout = self.settings().idle_timeout;
            let line = tokio::select! {
                l = self.conn.read_line(MAX_COMMAND_LINE, timeout) => l,
                _ = self.ctx.shutdown.cancelled() => {
                    // Closing without UPDATE: nothing is deleted.
                    let _ = self.send(&err(Some(RespCode::SysTemp), "Server shutting down")).await;
                    return Err(End::Closed);
                }
            };
            let line = match line {
                Ok(Line::Complete(l)) => l,
                Ok(Line::TooLong { .. }) => {
                    self.error(None, "Command line too long").await?;
                    continue;
                }
                Ok(Line::Eof) => return Err(End::Closed),
                Err(ReadError::Timeout) => {
                    // Autologout (RFC 1939 3): no UPDATE state, nothing deleted.
                    let _ = self.send(&err(None, "Autologout; idle for too long")).await;
                    return Err(End::Closed);
                }
                Err(ReadError::Io(e)) => return Err(e.into()),
            };
            let parsed = pop3_wire::parse(&line);
            let name = match &parsed {
                Ok(c) => command_name(c),
                Err(_) => "INVALID",
            };
            let started = std::time::Instant::now();
            let span = tracing::info_span!("pop3.command", command = name);
            let go_on = tracing::Instrument::instrument(
                async {
                    match parsed {
                        Ok(cmd) => self.command(cmd).await,
                        Err(ParseError::Unknown) => {
                            self.error(None, "Unknown command").await.map(|_| true)
                        }
                        Err(e) => self.error(None, &e.to_string()).await.map(|_| true),
                    }
                },
                span,
            )
            .await;
            service_kit::metrics::command(
                "pop3",
                name,
                if self.last_ok { "ok" } else { "error" },
                started,
            );
            if !go_on? {
                return Ok(());
            }
        }
    }

    /// Handles one command; `false` ends the session.
    async fn command(&mut self, cmd: Command) -> Result<bool, End> {
        match (&self.state, cmd) {
            (_, Command::Capa) => self.capa().await?,
            (_, Command::Quit) => {
                self.quit().await?;
                return Ok(false);
            }
            (State::Authorization { .. }, Command::Utf8) => self.send(&ok("UTF8 enabled")).await?,
            (State::Authorization { .. }, Command::Stls) => self.stls().await?,
            (State::Authorization { .. }, Command::User(name)) => {
                if !self.plaintext_ok() {
                    return self
                        .error(
                            Some(RespCode::Auth),
                            "Plaintext authentication disallowed without TLS; use STLS",
                        )
                        .await
                        .map(|_| true);
                }
                self.state = State::Authorization { user: Some(name) };
                self.send(&ok("Send PASS")).await?;
            }
            (State::Authorization { user }, Command::Pass(password)) => {
                let Some(user) = user.clone() else {
                    return self.error(None, "USER first").await.map(|_| true);
                };
                self.state = State::Authorization { user: None };
                if !self.plaintext_ok() {
                    return self
                        .error(
                            Some(RespCode::Auth),
                            "Plaintext authentication disallowed without TLS; use STLS",
                        )
                        .await
                        .map(|_| true);
                }
                self.login(&user, &password).await?;
            }
            (
                State::Authorization { .. },
                Command::Auth {
                    mechanism,
                    initial_response,
                },
            ) => self.auth(&mechanism, initial_response).await?,
            (State::Authorization { .. }, Command::Apop { .. }) => {
                self.error(None, "APOP not supported").await?
            }
            (State::Authorization { .. }, _) => {
                self.error(None, "Not allowed before authentication")
                    .await?
            }
            (State::Transaction(_), cmd) => self.transaction(cmd).await?,
            (State::Closed, _) => return Ok(false),
        }
        Ok(true)
    }

    async fn capa(&mut self) -> Result<(), End> {
        let mut lines = vec![
            "TOP",
            "UIDL",
            "RESP-CODES",
            "AUTH-RESP-CODE",
            "PIPELINING",
            "UTF8",
        ];
        let authorization = matches!(self.state, State::Authorization { .. });
        let sasl = self.mechanisms().join(" ");
        let sasl = format!("SASL {sasl}");
        if authorization && self.plaintext_ok() {
            lines.push("USER");
        }
        // No SASL line when no mechanism is offered now (RFC 2449 6.3:
        // it lists at least one).
        if authorization && sasl.len() > "SASL ".len() {
            lines.push(&sasl);
        }
        if authorization && self.ctx.tls.is_some() && !self.conn.is_tls() {
            lines.push("STLS");
        }
        if !self.settings().delete_retrieved {
            lines.push("EXPIRE NEVER");
        }
        lines.push("IMPLEMENTATION pop3-gateway");
        self.send(&pop3_wire::multiline("Capability list follows", lines))
            .await
    }

    async fn stls(&mut self) -> Result<(), End> {
        let Some(acceptor) = self.ctx.tls.as_ref().map(|t| t.acceptor()) else {
            return self.error(None, "STLS not available").await;
        };
        if self.conn.is_tls() {
            return self.error(None, "Already using TLS").await;
        }
        if self.conn.buffered() > 0 {
            // Never run plaintext pipelined behind STLS inside TLS.
            return self
                .error(None, "Commands pipelined after STLS; not starting TLS")
                .await;
        }
        self.send(&ok("Begin TLS negotiation")).await?;
        self.conn.flush().await?;
        self.conn
            .start_tls(&acceptor, TLS_HANDSHAKE_TIMEOUT)
            .await?;
        self.state = State::Authorization { user: None };
        Ok(())
    }

    /// The SASL mechanisms offered now: PLAIN, SCRAM-SHA-256 and the
    /// bearer tokens (OAUTHBEARER, XOAUTH2) where TLS protects them or the
    /// network is trusted (a SCRAM exchange in the clear can be attacked
    /// offline); SCRAM-SHA-256-PLUS on TLS 1.3 (RFC 9266 3).
    fn mechanisms(&self) -> Vec<&'static str> {
        let mut m = Vec::new();
        if self.plaintext_ok() {
            m.push("PLAIN");
            m.push("SCRAM-SHA-256");
        }
        if self.conn.tls_exporter().is_some() {
            m.push("SCRAM-SHA-256-PLUS");
        }
        if self.plaintext_ok() {
            m.extend(["OAUTHBEARER", "XOAUTH2"]);
        }
        m
    }

    /// RFC 5034 AUTH: PLAIN (RFC 4616) here, the others through
    /// `mailbox_api::sasl`.
    async fn auth(&mut self, mechanism: &str, initial: Option<String>) -> Result<(), End> {
        if mechanism.is_empty() {
            let mechs = self.mechanisms();
            return self
                .send(&pop3_wire::multiline("Mechanisms follow", mechs))
                .await;
        }
        if let Some(m) = Mechanism::from_name(mechanism) {
            return self.auth_sasl(m, initial).await;
        }
        if !mechanism.eq_ignore_ascii_case("PLAIN") {
            return self
                .error(None, "Unsupported authentication mechanism")
                .await;
        }
        if !self.plaintext_ok() {
            return self
                .error(
                    Some(RespCode::Auth),
                    "Plaintext authentication disallowed without TLS; use STLS",
                )
                .await;
        }
        let response = match initial {
            Some(r) => r,
            None => {
                self.send(b"+ \r\n").await?;
                self.conn.flush().await?;
                let timeout = self.settings().idle_timeout;
                match self.conn.read_line(MAX_SASL_LINE, timeout).await {
                    Ok(Line::Complete(l)) => String::from_utf8_lossy(&l).trim_end().to_string(),
                    Ok(Line::TooLong { .. }) => {
                        return self.error(None, "Authentication line too long").await;
                    }
                    _ => return Err(End::Closed),
                }
            }
        };
        if response == "*" {
            return self.error(None, "Authentication cancelled").await;
        }
        let decoded = if response == "=" {
            Vec::new()
        } else {
            match base64::engine::general_purpose::STANDARD.decode(response.as_bytes()) {
                Ok(d) => d,
                Err(_) => return self.error(None, "Invalid base64").await,
            }
        };
        let mut parts = decoded.split(|&b| b == 0);
        let (Some(authz), Some(authc), Some(pw), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return self
                .error(Some(RespCode::Auth), "Malformed PLAIN response")
                .await;
        };
        let (Ok(authz), Ok(authc), Ok(pw)) = (
            std::str::from_utf8(authz),
            std::str::from_utf8(authc),
            std::str::from_utf8(pw),
        ) else {
            return self
                .error(Some(RespCode::Auth), "Malformed PLAIN response")
                .await;
        };
        if !authz.is_empty() && !authz.eq_ignore_ascii_case(authc) {
            return self
                .error(Some(RespCode::Auth), "Authorization identity not permitted")
                .await;
        }
        let (authc, pw) = (authc.to_string(), pw.to_string());
        self.login(&authc, &pw).await
    }

    /// AUTH with a mechanism beyond PLAIN (the rules of IMAP's
    /// AUTHENTICATE; RFC 5034 4 for the exchange, RFC 7628 3.2.2 for a
    /// refused token: error challenge, the client's answer, then -ERR).
    async fn auth_sasl(&mut self, mech: Mechanism, initial: Option<String>) -> Result<(), End> {
        if mech.sends_secret() && !self.plaintext_ok() {
            return self
                .error(
                    Some(RespCode::Auth),
                    "Bearer tokens are not accepted without TLS; use STLS",
                )
                .await;
        }
        let tls_exporter = self.conn.tls_exporter();
        if mech == Mechanism::ScramSha256Plus && tls_exporter.is_none() {
            return self
                .error(None, "SCRAM-SHA-256-PLUS needs a TLS 1.3 connection")
                .await;
        }
        // RFC 5034 4: "=" is an empty initial response.
        let initial = match initial.as_deref().map(str::trim) {
            None => None,
            Some("=") => Some(Vec::new()),
            Some("*") => return self.error(None, "Authentication cancelled").await,
            Some(r) => match base64::engine::general_purpose::STANDARD.decode(r) {
                Ok(d) => Some(d),
                Err(_) => return self.error(None, "Invalid base64").await,
            },
        };
        let ctx = sasl::Context {
            channel: self.store.clone(),
            auth: self.ctx.auth.clone(),
            client_ip: self.conn.peer.ip().to_string(),
            protocol: "pop3",
            tls_exporter,
        };
        match sasl::run(mech, initial, &mut Pop3Sasl(self), &ctx).await? {
            Outcome::LoggedIn { session_token, .. } => self.open_session(&session_token).await,
            Outcome::Cancelled => self.error(None, "Authentication cancelled").await,
            Outcome::BadBase64 => self.error(None, "Invalid base64").await,
            Outcome::Failed(why) => {
                tracing::info!(mechanism = mech.name(), reason = %why, "authentication failed");
                self.error(Some(RespCode::Auth), "Authentication failed")
                    .await
            }
            Outcome::Store(s) => self.store_error(&s, true).await,
        }
    }

    /// Verifies the credentials through the store, locks the maildrop and
    /// takes its snapshot.
    async fn login(&mut self, user: &str, password: &str) -> Result<(), End> {
        let mut anon = mailbox_api::mailbox_client(self.store.clone(), self.ctx.auth.clone());
        let auth = anon
            .authenticate(pb::AuthenticateRequest {
                username: user.to_string(),
                password: password.to_string(),
                client_ip: self.conn.peer.ip().to_string(),
                protocol: "pop3".into(),
            })
            .await;
        let token = match auth {
            Ok(r) => r.into_inner().session_token,
            Err(s) => return self.store_error(&s, true).await,
        };
        self.open_session(&token).await
    }

    /// After a login: locks the maildrop of the session's account and
    /// takes its snapshot.
    async fn open_session(&mut self, token: &str) -> Result<(), End> {
        let Ok(session_auth) = self.ctx.auth.with_session(token) else {
            return self
                .error(Some(RespCode::SysTemp), "Bad session token")
                .await;
        };
        let mut client = mailbox_api::mailbox_client(self.store.clone(), session_auth);
        match self.open_maildrop(&mut client).await {
            Ok(Some(m)) => {
                let (n, size) = m.totals();
                self.state = State::Transaction(Box::new(m));
                self.send(&ok(&format!("Maildrop has {n} messages ({size} octets)")))
                    .await
            }
            Ok(None) => {
                let _ = client.logout(pb::LogoutRequest {}).await;
                self.error(
                    Some(RespCode::InUse),
                    "Maildrop is locked by another session",
                )
                .await
            }
            Err(s) => {
                let _ = client.logout(pb::LogoutRequest {}).await;
                self.store_error(&s, false).await
            }
        }
    }

    async fn open_maildrop(&self, client: &mut MailboxClient) -> Result<Option<Maildrop>, Status> {
        let ttl = self.settings().lease_ttl;
        // Ours, so the balancer may send the call again when a store
        // replica dies under it: the lease it may have taken is then ours,
        // not a lock held until its TTL; and when the call fails all the
        // same, a lease it may have left behind is given back at once.
        let lease_id = uuid::Uuid::new_v4().to_string();
        let lease = match client
            .acquire_maildrop(pb::AcquireMaildropRequest {
                holder: self.settings().instance.clone(),
                ttl_seconds: ttl.as_secs() as u32,
                lease_id: lease_id.clone(),
            })
            .await
        {
            Ok(r) => r.into_inner(),
            Err(e) => {
                let _ = client
                    .release_maildrop(pb::ReleaseMaildropRequest { lease_id })
                    .await;
                return Err(e);
            }
        };
        if lease.in_use {
            return Ok(None);
        }
        let lease_id = lease.lease_id;
        let snapshot_once = || async {
            let mut client = client.clone();
            let mut stream = client
                .select(pb::SelectRequest {
                    name: "INBOX".into(),
                    read_only: true,
                })
                .await?
                .into_inner();
            let mut validity = 0;
            let mut msgs = Vec::new();
            while let Some(part) = stream.message().await? {
                match part.part {
                    Some(pb::select_response::Part::Status(s)) => validity = s.uid_validity,
                    Some(pb::select_response::Part::Batch(b)) => {
                        msgs.extend(b.messages.into_iter().map(|m| Msg {
                            uid: m.uid,
                            size: m.size,
                            deleted: false,
                            retrieved: false,
                        }))
                    }
                    None => {}
                }
            }
            Ok::<_, Status>((validity, msgs))
        };
        // A listing cut half way (its store replica lost) is read again,
        // from the start, from another replica.
        let snapshot = mailbox_api::again_in_transit("a maildrop listing", snapshot_once).await;
        let (uid_validity, msgs) = match snapshot {
            Ok(s) => s,
            Err(e) => {
                let _ = client
                    .release_maildrop(pb::ReleaseMaildropRequest {
                        lease_id: lease_id.clone(),
                    })
                    .await;
                return Err(e);
            }
        };
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = {
            let (mut c, lease, lost) = (client.clone(), lease_id.clone(), lost.clone());
            tokio::spawn(async move {
                let every = ttl / 3;
                loop {
                    tokio::time::sleep(every).await;
                    match c
                        .renew_maildrop(pb::RenewMaildropRequest {
                            lease_id: lease.clone(),
                            ttl_seconds: ttl.as_secs() as u32,
                        })
                        .await
                    {
                        Ok(r) if r.get_ref().held => {}
                        Ok(_) => {
                            lost.store(true, Ordering::Relaxed);
                            return;
                        }
                        // A passing store outage: try again next round.
                        Err(_) => {}
                    }
                }
            })
        };
        Ok(Some(Maildrop {
            client: client.clone(),
            lease: lease_id,
            uid_validity,
            msgs,
            lease_lost: lost,
            renewer,
            ahead: ReadAhead::default(),
        }))
    }

    /// Answers a failed store call with the RFC 3206 code that fits.
    async fn store_error(&mut self, s: &Status, during_auth: bool) -> Result<(), End> {
        match s.code() {
            Code::Unauthenticated if during_auth => {
                self.error(Some(RespCode::Auth), "Authentication failed")
                    .await
            }
            Code::ResourceExhausted if during_auth => {
                self.error(
                    Some(RespCode::SysTemp),
                    "Too many failed logins; try again later",
                )
                .await
            }
            Code::InvalidArgument if during_auth => {
                self.error(Some(RespCode::Auth), "Authentication failed")
                    .await
            }
            _ => {
                tracing::warn!(code = ?s.code(), error = %s.message(), "store call failed");
                self.error(
                    Some(RespCode::SysTemp),
                    "Temporary server failure, try again later",
                )
                .await
            }
        }
    }

    async fn transaction(&mut self, cmd: Command) -> Result<(), End> {
        let State::Transaction(m) = &mut self.state else {
            return Ok(());
        };
        match cmd {
            Command::Stat => {
                let (n, size) = m.totals();
                let r = ok(&format!("{n} {size}"));
                self.send(&r).await
            }
            Command::List(None) => {
                let (n, size) = m.totals();
                let lines: Vec<String> = m
                    .msgs
                    .iter()
                    .enumerate()
                    .filter(|(_, x)| !x.deleted)
                    .map(|(i, x)| format!("{} {}", i + 1, x.size))
                    .collect();
                let r = pop3_wire::multiline(&format!("{n} messages ({size} octets)"), lines);
                self.send(&r).await
            }
            Command::List(Some(n)) => match m.get(n) {
                Some(x) => {
                    let r = ok(&format!("{n} {}", x.size));
                    self.send(&r).await
                }
                None => self.error(None, "No such message").await,
            },
            Command::Uidl(None) => {
                let v = m.uid_validity;
                let lines: Vec<String> = m
                    .msgs
                    .iter()
                    .enumerate()
                    .filter(|(_, x)| !x.deleted)
                    .map(|(i, x)| format!("{} {v}.{}", i + 1, x.uid))
                    .collect();
                let r = pop3_wire::multiline("Unique-ID listing follows", lines);
                self.send(&r).await
            }
            Command::Uidl(Some(n)) => match m.get(n) {
                Some(x) => {
                    let r = ok(&format!("{n} {}.{}", m.uid_validity, x.uid));
                    self.send(&r).await
                }
                None => self.error(None, "No such message").await,
            },
            Command::Retr(n) => self.retrieve(n, None).await,
            Command::Top(n, lines) => self.retrieve(n, Some(lines)).await,
            Command::Dele(n) => {
                let idx = (n as usize).wrapping_sub(1);
                match m.msgs.get_mut(idx) {
                    Some(x) if !x.deleted => {
                        x.deleted = true;
                        self.send(&ok(&format!("Message {n} deleted"))).await
                    }
                    Some(_) => {
                        self.error(None, &format!("Message {n} already deleted"))
                            .await
                    }
                    None => self.error(None, "No such message").await,
                }
            }
            Command::Noop => self.send(&ok("")).await,
            Command::Rset => {
                for x in &mut m.msgs {
                    x.deleted = false;
                }
                let (n, size) = m.totals();
                let r = ok(&format!("Maildrop has {n} messages ({size} octets)"));
                self.send(&r).await
            }
            _ => {
                self.error(None, "Not allowed in the TRANSACTION state")
                    .await
            }
        }
    }

    /// RETR and TOP. Messages up to the store's inline limit come from the
    /// read-ahead (filled with this one and the ones after it in one store
    /// call); larger ones stream from the store in chunks, so a maildrop is
    /// never held in memory.
    async fn retrieve(&mut self, n: u32, top: Option<u32>) -> Result<(), End> {
        let State::Transaction(m) = &mut self.state else {
            return Ok(());
        };
        let Some(msg) = m.get(n) else {
            return self.error(None, "No such message").await;
        };
        let (uid, size) = (msg.uid, msg.size);
        let data = if size <= mailbox_api::INLINE_DATA_LIMIT {
            match m
                .ahead
                .body(&m.client, &m.msgs, n as usize - 1, top.is_some())
                .await
            {
                Ok(d) => Some(d),
                Err(s) => return self.store_error(&s, false).await,
            }
        } else {
            None
        };
        match data {
            Some(Some(data)) => {
                let mut out = ok(&format!("{size} octets"));
                let mut stuffer = DotStuffer::new(top);
                stuffer.push(&data, &mut out);
                stuffer.finish(&mut out);
                self.send(&out).await?;
            }
            Some(None) => {
                return self
                    .error(None, "Message was removed by another session")
                    .await;
            }
            None => self.stream_message(uid, size, top).await?,
        }
        if top.is_none()
            && let State::Transaction(m) = &mut self.state
            && let Some(x) = m.msgs.get_mut(n as usize - 1)
        {
            x.retrieved = true;
        }
        Ok(())
    }

    /// Streams one message from the store, dot-stuffed, chunk by chunk.
    /// RETR asks for the whole message; TOP for its first [`TOP_FIRST`]
    /// bytes, then for more (four times as much each time, at most
    /// [`TOP_MOST`]) only while its lines are not all sent: the header
    /// and a few lines of an 18 MB message are not 18 MB read.
    async fn stream_message(&mut self, uid: u32, size: u64, top: Option<u32>) -> Result<(), End> {
        let State::Transaction(m) = &mut self.state else {
            return Ok(());
        };
        let client = m.client.clone();
        let read = |offset: u64, length: u64| {
            let mut client = client.clone();
            async move {
                client
                    .fetch_body(pb::FetchBodyRequest {
                        mailbox: "INBOX".into(),
                        uid,
                        offset,
                        length,
                    })
                    .await
                    .map(|s| s.into_inner())
            }
        };
        let mut length = if top.is_some() { TOP_FIRST } else { 0 };
        // A stream cut by a lost store replica is asked again (another
        // replica answers) from where it stopped, up to `mailbox_api::TRANSIT_TRIES` reads in all.
        let mut tries = 0;
        // Wait for the first chunk before committing to +OK.
        let (mut stream, first) = loop {
            tries += 1;
            let mut stream = match read(0, length).await {
                Ok(s) => s,
                Err(s) if s.code() == Code::NotFound => {
                    return self
                        .error(None, "Message was removed by another session")
                        .await;
                }
                Err(s) => return self.store_error(&s, false).await,
            };
            match stream.message().await {
                Ok(c) => break (stream, c),
                Err(s)
                    if tries < mailbox_api::TRANSIT_TRIES
                        && mailbox_api::failed_in_transit(s.code()) =>
                {
                    tracing::debug!(error = %s, "message stream broke; asking again");
                }
                Err(s) => return self.store_error(&s, false).await,
            }
        };
        let mut out = ok(&format!("{size} octets"));
        let mut stuffer = DotStuffer::new(top);
        let mut offset = 0u64;
        // Where the last read began: one that adds nothing ends TOP.
        let mut asked_from = u64::MAX;
        // Where the current read began (its `length` counts from there).
        let mut read_from = 0u64;
        if let Some(c) = first {
            offset += c.data.len() as u64;
            stuffer.push(&c.data, &mut out);
        }
        self.conn.write_all(&out).await?;
        loop {
            while !stuffer.is_done() {
                let chunk = match stream.message().await {
                    Ok(Some(c)) => c,
                    Ok(None) => break,
                    Err(e)
                        if tries < mailbox_api::TRANSIT_TRIES
                            && mailbox_api::failed_in_transit(e.code()) =>
                    {
                        tries += 1;
                        tracing::debug!(error = %e, "message stream broke mid-RETR/TOP; reading on");
                        // The rest of this read, from another replica.
                        let rest = if length == 0 {
                            0
                        } else {
                            (read_from + length).saturating_sub(offset)
                        };
                        if length != 0 && rest == 0 {
                            break;
                        }
                        stream = match read(offset, rest).await {
                            Ok(s) => s,
                            Err(e) => {
                                tracing::warn!(error = %e, "message stream failed mid-RETR/TOP");
                                return Err(End::Closed);
                            }
                        };
                        continue;
                    }
                    Err(e) => {
                        // +OK is out; the only honest thing left is to close.
                        tracing::warn!(error = %e, "message stream failed mid-RETR/TOP");
                        return Err(End::Closed);
                    }
                };
                offset += chunk.data.len() as u64;
                out.clear();
                stuffer.push(&chunk.data, &mut out);
                self.conn.write_all(&out).await?;
            }
            // The whole message asked for, its lines all sent, or its end
            // (by its listed size, or a read that brought nothing more).
            if length == 0 || stuffer.is_done() || offset >= size || offset == asked_from {
                break;
            }
            asked_from = offset;
            read_from = offset;
            length = (length * 4).min(TOP_MOST);
            stream = match read(offset, length).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "message stream failed mid-TOP");
                    return Err(End::Closed);
                }
            };
        }
        out.clear();
        stuffer.finish(&mut out);
        self.send(&out).await
    }

    /// QUIT: in TRANSACTION, the UPDATE state removes the deleted messages
    /// (RFC 1939 6) in one store call guarded by the maildrop lease.
    async fn quit(&mut self) -> Result<(), End> {
        let state = std::mem::replace(&mut self.state, State::Closed);
        let State::Transaction(m) = state else {
            return self.send(&ok("Bye")).await;
        };
        let delete_retrieved = self.settings().delete_retrieved;
        let uids: Vec<u32> = m
            .msgs
            .iter()
            .filter(|x| x.deleted || (delete_retrieved && x.retrieved))
            .map(|x| x.uid)
            .collect();
        let left = m.msgs.len() - uids.len();
        let result = if uids.is_empty() {
            Ok(())
        } else if m.lease_lost.load(Ordering::Relaxed) {
            Err(Status::failed_precondition("maildrop lease lost"))
        } else {
            let mut c = m.client.clone();
            let req = pb::ExpungeRequest {
                mailbox: "INBOX".into(),
                uids: Some(pb::UidSet::of(uids.iter().copied())),
                ignore_deleted_flag: true,
                lease_id: m.lease.clone(),
            };
            // Removing these UIDs under the lease we still hold is the same
            // done twice: a call cut with its store replica (which may or
            // may not have committed) is sent again, so the client is not
            // told the deletions failed when another replica can do them.
            let mut r = c.expunge(req.clone()).await.map(|_| ());
            for wait in [50, 250, 1000] {
                match &r {
                    Err(s) if mailbox_api::failed_in_transit(s.code()) => {
                        tracing::info!(code = ?s.code(), error = %s.message(), "UPDATE sent again");
                        tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                        r = c.expunge(req.clone()).await.map(|_| ());
                    }
                    _ => break,
                }
            }
            r
        };
        m.close().await;
        match result {
            Ok(()) => self.send(&ok(&format!("Bye ({left} messages left)"))).await,
            Err(s) => {
                tracing::warn!(code = ?s.code(), error = %s.message(), "UPDATE failed");
                self.send(&err(
                    Some(RespCode::SysTemp),
                    "Some deleted messages were not removed",
                ))
                .await
            }
        }
    }
}

/// What TOP reads of a large message first (see `stream_message`).
const TOP_FIRST: u64 = 64 * 1024;

/// The most TOP asks the store for at a time.
const TOP_MOST: u64 = 4 << 20;
