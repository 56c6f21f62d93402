//! One ManageSieve session (RFC 5804): non-authenticated, then
//! authenticated (after AUTHENTICATE, until UNAUTHENTICATE or LOGOUT),
//! over a connection that may be upgraded with STARTTLS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use mailbox_api::sasl::{self, Mechanism, Outcome};
use mailbox_api::{CallAuth, SieveClient, StoreChannel, pb};
use service_kit::CancellationToken;
use service_kit::conn::{Connection, Line, ReadError, Stream};
use service_kit::limit::PerIpLimit;
use tokio::net::TcpStream;
use tonic::{Code as GrpcCode, Status};

use crate::config::ManageSieveSettings;
use managesieve_wire::{
    self as wire, Code, Command, MAX_LINE, MAX_LITERALS, Part, bye, no, ok, string,
};

pub(crate) struct Ctx {
    pub settings: ManageSieveSettings,
    pub tls: Option<service_kit::tls::ReloadingTls>,
    pub auth: CallAuth,
    pub channel: StoreChannel,
    pub per_ip: PerIpLimit,
    pub shutdown: CancellationToken,
}

const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Refused commands tolerated before the connection is closed.
const MAX_ERRORS: usize = 20;
/// A literal this many times the limit of the session's state
/// (`max_literal_size`, or `pre_login_max_literal_size` before
/// AUTHENTICATE completes) is not read through to be refused politely:
/// the connection is closed.
const DISCARD_FACTOR: u64 = 4;

pub(crate) async fn handle(ctx: Arc<Ctx>, tcp: TcpStream, peer: SocketAddr) {
    let Some(slot) = ctx.per_ip.try_acquire(peer.ip()) else {
        let mut conn = Connection::new(Stream::Plain(tcp), peer);
        let _ = conn
            .write_all(&bye(
                Some(Code::TryLater),
                "Too many connections from your address",
            ))
            .await;
        conn.shutdown().await;
        return;
    };
    let mut s = Session {
        store: ctx.channel.pinned(),
        ctx,
        conn: Connection::new(Stream::Plain(tcp), peer),
        state: State::Anonymous,
        errors: 0,
        last_ok: true,
    };
    let span = tracing::info_span!("managesieve_session", %peer);
    tracing::Instrument::instrument(
        async move {
            if let Err(e) = s.run().await {
                tracing::debug!(error = %e, "session ended");
            }
            s.logout_store().await;
            s.conn.shutdown().await;
            drop(slot);
        },
        span,
    )
    .await;
}

/// The session's state (RFC 5804 2: AUTHENTICATE moves to the
/// authenticated state, UNAUTHENTICATE back).
enum State {
    Anonymous,
    Authenticated(Box<Account>),
}

/// A logged-in account: its Sieve client (carrying the session token) and
/// the credentials to end the store session.
struct Account {
    user: String,
    sieve: SieveClient,
    auth: CallAuth,
}

struct Session {
    ctx: Arc<Ctx>,
    /// The store channel of this session: its calls start at one store
    /// replica (`StoreChannel::pinned`), where its token is cached.
    store: StoreChannel,
    conn: Connection,
    state: State,
    errors: usize,
    /// Whether the last response was OK (for metrics).
    last_ok: bool,
}

#[derive(Debug, thiserror::Error)]
enum End {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("closed")]
    Closed,
}

/// What reading one command came to.
enum Read {
    Command(Vec<Part>),
    /// A literal over the limit, read and dropped: the command is refused.
    TooLarge,
    /// More literals than any command has.
    TooManyLiterals,
}

/// One SASL round (RFC 5804 2.1): the challenge as a string, the
/// client's answer as a string (quoted or literal).
struct SieveSasl<'a>(&'a mut Session);

impl sasl::SaslIo for SieveSasl<'_> {
    type Error = End;
    async fn challenge(&mut self, data: &[u8]) -> Result<String, End> {
        let s = &mut *self.0;
        let mut line = string(B64.encode(data).as_bytes());
        line.extend_from_slice(b"\r\n");
        s.conn.write_all(&line).await?;
        s.conn.flush().await?;
        Ok(match s.read_client_string().await? {
            Some(v) => String::from_utf8_lossy(&v).into_owned(),
            // Not a string: not base64 either.
            None => "!".into(),
        })
    }
}

impl Session {
    fn settings(&self) -> &ManageSieveSettings {
        &self.ctx.settings
    }

    async fn send(&mut self, data: &[u8]) -> Result<(), End> {
        self.last_ok = data.starts_with(b"OK") || !data.starts_with(b"NO");
        self.conn.write_all(data).await?;
        self.conn.flush().await?;
        Ok(())
    }

    async fn error(&mut self, code: Option<Code>, text: &str) -> Result<(), End> {
        self.errors += 1;
        self.send(&no(code, text)).await?;
        if self.errors >= MAX_ERRORS {
            let _ = self.send(&bye(None, "Too many errors")).await;
            return Err(End::Closed);
        }
        Ok(())
    }

    /// Before AUTHENTICATE completes, all a client can do is log in: its
    /// literals are held to `pre_login_max_literal_size` and its silence to
    /// `pre_login_idle_timeout`; after, a script may be sent.
    fn authenticated(&self) -> bool {
        matches!(self.state, State::Authenticated(_))
    }

    fn literal_limit(&self) -> u64 {
        if self.authenticated() {
            self.settings().max_literal_size
        } else {
            self.settings().pre_login_max_literal_size
        }
    }

    fn timeout(&self) -> std::time::Duration {
        if self.authenticated() {
            self.settings().idle_timeout
        } else {
            self.settings().pre_login_idle_timeout
        }
    }

    /// Whether a password may be sent on this connection.
    fn plaintext_ok(&self) -> bool {
        self.conn.is_tls() || self.settings().trusted.contains(self.conn.peer.ip())
    }

    async fn run(&mut self) -> Result<(), End> {
        self.capabilities().await?;
        let shutdown = self.ctx.shutdown.clone();
        loop {
            let read = tokio::select! {
                r = self.read_command() => r?,
                _ = shutdown.cancelled() => {
                    let _ = self.send(&bye(Some(Code::TryLater), "Server shutting down")).await;
                    return Err(End::Closed);
                }
            };
            let parts = match read {
                Read::Command(p) => p,
                Read::TooLarge => {
                    let text = if self.authenticated() {
                        "Literal too large"
                    } else {
                        "Literal too large before authentication"
                    };
                    self.error(Some(Code::QuotaMaxSize), text).await?;
                    continue;
                }
                Read::TooManyLiterals => {
                    self.error(None, "Too many literals in one command").await?;
                    continue;
                }
            };
            let parsed = wire::parse(&parts);
            drop(parts);
            let name = match &parsed {
                Ok(c) => c.name(),
                Err(_) => "INVALID",
            };
            let started = Instant::now();
            let span = tracing::info_span!("managesieve.command", command = name);
            let go_on = tracing::Instrument::instrument(
                async {
                    match parsed {
                        Ok(cmd) => self.command(cmd).await,
                        Err(e) => self.error(None, &e.to_string()).await.map(|_| true),
                    }
                },
                span,
            )
            .await;
            service_kit::metrics::command(
                "managesieve",
                name,
                if self.last_ok { "ok" } else { "error" },
                started,
            );
            if !go_on? {
                return Ok(());
            }
        }
    }

    /// Reads one command: lines and the literals between them, each
    /// bounded. An over-long line cannot be resynchronised (a literal
    /// marker may have been in it), so it ends the session.
    async fn read_command(&mut self) -> Result<Read, End> {
        let mut parts = Vec::new();
        let mut literals = 0;
        let mut refused = None;
        loop {
            let line = self.read_line().await?;
            let (before, marker) = wire::trailing_literal(&line);
            parts.push(Part::Line(before.to_vec()));
            let Some(marker) = marker else {
                return Ok(match refused {
                    Some(r) => r,
                    None => Read::Command(parts),
                });
            };
            literals += 1;
            let max = self.literal_limit();
            if marker.len > max * DISCARD_FACTOR {
                let _ = self
                    .send(&bye(Some(Code::QuotaMaxSize), "Literal far too large"))
                    .await;
                return Err(End::Closed);
            }
            if marker.len > max || literals > MAX_LITERALS || refused.is_some() {
                self.discard(marker.len).await?;
                refused.get_or_insert(if marker.len > max {
                    Read::TooLarge
                } else {
                    Read::TooManyLiterals
                });
                continue;
            }
            let data = self.read_exact(marker.len).await?;
            parts.push(Part::Literal(data));
        }
    }

    async fn read_line(&mut self) -> Result<Vec<u8>, End> {
        let timeout = self.timeout();
        match self.conn.read_line(MAX_LINE, timeout).await {
            Ok(Line::Complete(l)) => Ok(l),
            Ok(Line::TooLong { .. }) => {
                let _ = self.send(&bye(None, "Line too long")).await;
                Err(End::Closed)
            }
            Ok(Line::Eof) => Err(End::Closed),
            Err(ReadError::Timeout) => {
                let text = if self.authenticated() {
                    "Autologout; idle for too long"
                } else {
                    "Autologout; idle for too long before authentication"
                };
                let _ = self.send(&bye(None, text)).await;
                Err(End::Closed)
            }
            Err(ReadError::Io(e)) => Err(e.into()),
        }
    }

    /// Reads exactly `len` bytes (the caller has bounded `len`).
    async fn read_exact(&mut self, len: u64) -> Result<Vec<u8>, End> {
        let timeout = self.timeout();
        let len = usize::try_from(len).map_err(|_| End::Closed)?;
        let mut data = Vec::with_capacity(len.min(1 << 20));
        while data.len() < len {
            match self.conn.read_some(len - data.len(), timeout).await {
                Ok(chunk) if chunk.is_empty() => return Err(End::Closed),
                Ok(chunk) => data.extend_from_slice(&chunk),
                Err(ReadError::Timeout) => {
                    let _ = self.send(&bye(None, "Timed out in a literal")).await;
                    return Err(End::Closed);
                }
                Err(ReadError::Io(e)) => return Err(e.into()),
            }
        }
        Ok(data)
    }

    /// Reads and drops `len` bytes, holding none of them.
    async fn discard(&mut self, mut len: u64) -> Result<(), End> {
        let timeout = self.timeout();
        while len > 0 {
            let step = usize::try_from(len.min(1 << 20)).unwrap_or(1 << 20);
            match self.conn.skip(step, timeout).await {
                Ok(0) => return Err(End::Closed),
                Ok(n) => len -= n as u64,
                Err(ReadError::Timeout) => return Err(End::Closed),
                Err(ReadError::Io(e)) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// A client string on a line of its own (a SASL response): quoted or
    /// a literal. `None`: the line held something else.
    async fn read_client_string(&mut self) -> Result<Option<Vec<u8>>, End> {
        let line = self.read_line().await?;
        let (before, marker) = wire::trailing_literal(&line);
        match marker {
            Some(m) => {
                // SASL runs before AUTHENTICATE completes: the pre-login
                // limit, and no reading through a huge one.
                let max = self.settings().pre_login_max_literal_size;
                if m.len > max * DISCARD_FACTOR {
                    let _ = self
                        .send(&bye(Some(Code::QuotaMaxSize), "Literal far too large"))
                        .await;
                    return Err(End::Closed);
                }
                if m.len > max || !before.iter().all(|&b| b == b' ') {
                    self.discard(m.len).await?;
                    self.read_line().await?;
                    return Ok(None);
                }
                let data = self.read_exact(m.len).await?;
                let rest = self.read_line().await?;
                Ok((wire::trailing_literal(&rest).0.is_empty()).then_some(data))
            }
            None => Ok(wire::parse_string_line(before)),
        }
    }

    /// Handles one command; `false` ends the session.
    async fn command(&mut self, cmd: Command) -> Result<bool, End> {
        match cmd {
            Command::Capability => self.capabilities().await?,
            Command::Logout => {
                self.logout_store().await;
                self.send(&ok(None, "Logout completed")).await?;
                return Ok(false);
            }
            Command::Noop(None) => self.send(&ok(None, "Done")).await?,
            Command::Noop(Some(tag)) => self.send(&wire::ok_with(Code::Tag, &tag, "Done")).await?,
            Command::StartTls => self.starttls().await?,
            Command::Authenticate { mechanism, initial } => {
                if matches!(self.state, State::Authenticated(_)) {
                    self.error(None, "Already authenticated").await?;
                } else {
                    self.authenticate(&mechanism, initial).await?;
                }
            }
            Command::Unauthenticate => {
                if matches!(self.state, State::Anonymous) {
                    self.error(None, "Not authenticated").await?;
                } else {
                    self.logout_store().await;
                    self.send(&ok(None, "Unauthenticated")).await?;
                }
            }
            cmd => {
                let State::Authenticated(account) = &self.state else {
                    self.error(None, "Authenticate first").await?;
                    return Ok(true);
                };
                let mut sieve = account.sieve.clone();
                self.scripts(&mut sieve, cmd).await?;
            }
        }
        Ok(true)
    }

    /// The capability list (RFC 5804 1.7), then OK.
    async fn capabilities(&mut self) -> Result<(), End> {
        let mut out = Vec::new();
        let mut cap = |name: &str, value: Option<&str>| {
            out.extend_from_slice(&string(name.as_bytes()));
            if let Some(v) = value {
                out.push(b' ');
                out.extend_from_slice(&string(v.as_bytes()));
            }
            out.extend_from_slice(b"\r\n");
        };
        cap("IMPLEMENTATION", Some("managesieve-gateway"));
        cap("SIEVE", Some(&mail_sieve::capabilities().join(" ")));
        // RFC 5804 1.7: a script's run may redirect this many times at
        // most (the interpreter's bound).
        cap("MAXREDIRECTS", Some(&mail_sieve::MAX_REDIRECTS.to_string()));
        let mechanisms = match self.state {
            State::Anonymous => self.mechanisms().join(" "),
            State::Authenticated(_) => String::new(),
        };
        cap("SASL", Some(&mechanisms));
        if self.ctx.tls.is_some() && !self.conn.is_tls() {
            cap("STARTTLS", None);
        }
        if let State::Authenticated(a) = &self.state {
            cap("OWNER", Some(&a.user.clone()));
        }
        cap("UNAUTHENTICATE", None);
        cap("VERSION", Some("1.0"));
        out.extend_from_slice(&ok(None, "ManageSieve ready"));
        self.send(&out).await
    }

    /// The SASL mechanisms offered now: as for IMAP and POP3, PLAIN,
    /// SCRAM-SHA-256 and the bearer tokens only where TLS protects them
    /// or the network is trusted; SCRAM-SHA-256-PLUS on TLS 1.3.
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

    /// STARTTLS (RFC 5804 2.2): OK, the handshake, then the capabilities
    /// again.
    async fn starttls(&mut self) -> Result<(), End> {
        let Some(acceptor) = self.ctx.tls.as_ref().map(|t| t.acceptor()) else {
            return self.error(None, "STARTTLS not available").await;
        };
        if self.conn.is_tls() {
            return self.error(None, "Already using TLS").await;
        }
        if matches!(self.state, State::Authenticated(_)) {
            return self.error(None, "STARTTLS before AUTHENTICATE").await;
        }
        if self.conn.buffered() > 0 {
            // Never run plaintext pipelined behind STARTTLS inside TLS.
            return self
                .error(None, "Commands pipelined after STARTTLS; not starting TLS")
                .await;
        }
        self.send(&ok(None, "Begin TLS negotiation")).await?;
        self.conn
            .start_tls(&acceptor, TLS_HANDSHAKE_TIMEOUT)
            .await?;
        self.capabilities().await
    }

    /// AUTHENTICATE (RFC 5804 2.1): PLAIN here, the others through
    /// `mailbox_api::sasl`, all checked by the store.
    async fn authenticate(&mut self, mechanism: &str, initial: Option<Vec<u8>>) -> Result<(), End> {
        let mech = Mechanism::from_name(mechanism);
        let plain = mechanism.eq_ignore_ascii_case("PLAIN");
        if mech.is_none() && !plain {
            return self
                .error(None, "Unsupported authentication mechanism")
                .await;
        }
        let needs_tls = plain || mech.is_some_and(Mechanism::sends_secret);
        if needs_tls && !self.plaintext_ok() {
            return self
                .error(
                    Some(Code::EncryptNeeded),
                    "Authentication needs TLS here; use STARTTLS",
                )
                .await;
        }
        let initial = match initial {
            None => None,
            Some(i) if i == b"*" => {
                return self.error(None, "Authentication cancelled").await;
            }
            Some(i) => match B64.decode(&i) {
                Ok(d) => Some(d),
                Err(_) => return self.error(None, "Invalid base64").await,
            },
        };
        if let Some(mech) = mech {
            return self.auth_sasl(mech, initial).await;
        }
        let response = match initial {
            Some(r) => r,
            None => {
                let mut challenge = string(b"");
                challenge.extend_from_slice(b"\r\n");
                self.conn.write_all(&challenge).await?;
                self.conn.flush().await?;
                match self.read_client_string().await? {
                    Some(r) if r == b"*" => {
                        return self.error(None, "Authentication cancelled").await;
                    }
                    Some(r) => match B64.decode(&r) {
                        Ok(d) => d,
                        Err(_) => return self.error(None, "Invalid base64").await,
                    },
                    None => return self.error(None, "Malformed SASL response").await,
                }
            }
        };
        let mut parts = response.split(|&b| b == 0);
        let (Some(authz), Some(authc), Some(pw), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return self.error(None, "Malformed PLAIN response").await;
        };
        let (Ok(authz), Ok(authc), Ok(pw)) = (
            std::str::from_utf8(authz),
            std::str::from_utf8(authc),
            std::str::from_utf8(pw),
        ) else {
            return self.error(None, "Malformed PLAIN response").await;
        };
        if !authz.is_empty() && !authz.eq_ignore_ascii_case(authc) {
            return self
                .error(None, "Authorization identity not permitted")
                .await;
        }
        let mut anon = mailbox_api::mailbox_client(self.store.clone(), self.ctx.auth.clone());
        let r = anon
            .authenticate(pb::AuthenticateRequest {
                username: authc.to_string(),
                password: pw.to_string(),
                client_ip: self.conn.peer.ip().to_string(),
                protocol: "managesieve".into(),
            })
            .await;
        match r {
            Ok(r) => {
                let r = r.into_inner();
                self.logged_in(&r.session_token, &r.account).await
            }
            Err(s) => self.auth_failed(&s).await,
        }
    }

    async fn auth_sasl(&mut self, mech: Mechanism, initial: Option<Vec<u8>>) -> Result<(), End> {
        let tls_exporter = self.conn.tls_exporter();
        if mech == Mechanism::ScramSha256Plus && tls_exporter.is_none() {
            return self
                .error(None, "SCRAM-SHA-256-PLUS needs a TLS 1.3 connection")
                .await;
        }
        let ctx = sasl::Context {
            channel: self.store.clone(),
            auth: self.ctx.auth.clone(),
            client_ip: self.conn.peer.ip().to_string(),
            protocol: "managesieve",
            tls_exporter,
        };
        match sasl::run(mech, initial, &mut SieveSasl(self), &ctx).await? {
            Outcome::LoggedIn {
                session_token,
                account,
            } => self.logged_in(&session_token, &account).await,
            Outcome::Cancelled => self.error(None, "Authentication cancelled").await,
            Outcome::BadBase64 => self.error(None, "Invalid base64").await,
            Outcome::Failed(why) => {
                tracing::info!(mechanism = mech.name(), reason = %why, "authentication failed");
                self.error(None, "Authentication failed").await
            }
            Outcome::Store(s) => self.auth_failed(&s).await,
        }
    }

    async fn logged_in(&mut self, token: &str, account: &str) -> Result<(), End> {
        let Ok(auth) = self.ctx.auth.with_session(token) else {
            return self.error(Some(Code::TryLater), "Bad session token").await;
        };
        self.state = State::Authenticated(Box::new(Account {
            user: account.to_string(),
            sieve: mailbox_api::sieve_client(self.store.clone(), auth.clone()),
            auth,
        }));
        self.send(&ok(None, "Logged in")).await
    }

    async fn auth_failed(&mut self, s: &Status) -> Result<(), End> {
        match s.code() {
            GrpcCode::Unauthenticated | GrpcCode::InvalidArgument => {
                self.error(None, "Authentication failed").await
            }
            GrpcCode::ResourceExhausted => {
                self.error(
                    Some(Code::TryLater),
                    "Too many failed logins; try again later",
                )
                .await
            }
            _ => {
                tracing::warn!(code = ?s.code(), error = %s.message(), "store call failed");
                self.error(Some(Code::TryLater), "Temporary server failure")
                    .await
            }
        }
    }

    /// Ends the store session, if there is one, and goes back to the
    /// non-authenticated state.
    async fn logout_store(&mut self) {
        if let State::Authenticated(a) = std::mem::replace(&mut self.state, State::Anonymous) {
            let _ = mailbox_api::mailbox_client(self.store.clone(), a.auth)
                .logout(pb::LogoutRequest {})
                .await;
        }
    }

    /// Answers a failed Sieve call with the response code that fits.
    async fn store_error(&mut self, s: &Status) -> Result<(), End> {
        match s.code() {
            GrpcCode::NotFound => {
                self.error(Some(Code::NonExistent), "There is no such script")
                    .await
            }
            GrpcCode::AlreadyExists => {
                self.error(
                    Some(Code::AlreadyExists),
                    "A script of that name already exists",
                )
                .await
            }
            GrpcCode::FailedPrecondition => {
                self.error(Some(Code::Active), "The active script cannot be deleted")
                    .await
            }
            GrpcCode::InvalidArgument => {
                let m = s.message().to_string();
                self.error(None, &m).await
            }
            GrpcCode::Unauthenticated => {
                let _ = self.send(&bye(None, "Session expired; log in again")).await;
                Err(End::Closed)
            }
            _ => {
                tracing::warn!(code = ?s.code(), error = %s.message(), "store call failed");
                self.error(
                    Some(Code::TryLater),
                    "Temporary server failure, try again later",
                )
                .await
            }
        }
    }

    /// The commands of the authenticated state.
    async fn scripts(&mut self, sieve: &mut SieveClient, cmd: Command) -> Result<(), End> {
        match cmd {
            Command::PutScript { name, content } => {
                match sieve
                    .put_script(pb::PutScriptRequest { name, content })
                    .await
                {
                    Ok(r) => self.put_outcome(r.into_inner()).await,
                    Err(s) => self.store_error(&s).await,
                }
            }
            Command::CheckScript(content) => {
                match sieve.check_script(pb::CheckScriptRequest { content }).await {
                    Ok(r) => match r.into_inner().error {
                        Some(e) => self.error(None, &script_error(&e)).await,
                        None => self.send(&ok(None, "Script is valid")).await,
                    },
                    Err(s) => self.store_error(&s).await,
                }
            }
            Command::HaveSpace { name, size } => {
                match sieve.have_space(pb::HaveSpaceRequest { name, size }).await {
                    Ok(r) => {
                        let r = r.into_inner();
                        match pb::SieveQuota::try_from(r.quota) {
                            Ok(pb::SieveQuota::MaxScripts) => {
                                let m = format!("At most {} scripts", r.max_scripts);
                                self.error(Some(Code::QuotaMaxScripts), &m).await
                            }
                            Ok(pb::SieveQuota::MaxSize) => {
                                let m = format!("Scripts are at most {} bytes", r.max_size);
                                self.error(Some(Code::QuotaMaxSize), &m).await
                            }
                            _ => self.send(&ok(None, "Putscript would succeed")).await,
                        }
                    }
                    Err(s) => self.store_error(&s).await,
                }
            }
            Command::ListScripts => match sieve.list_scripts(pb::ListScriptsRequest {}).await {
                Ok(r) => {
                    let mut out = Vec::new();
                    for s in r.into_inner().scripts {
                        out.extend_from_slice(&string(s.name.as_bytes()));
                        if s.active {
                            out.extend_from_slice(b" ACTIVE");
                        }
                        out.extend_from_slice(b"\r\n");
                    }
                    out.extend_from_slice(&ok(None, "Listscripts completed"));
                    self.send(&out).await
                }
                Err(s) => self.store_error(&s).await,
            },
            Command::GetScript(name) => {
                match sieve.get_script(pb::GetScriptRequest { name }).await {
                    Ok(r) => {
                        let content = r.into_inner().content;
                        let mut out = format!("{{{}}}\r\n", content.len()).into_bytes();
                        out.extend_from_slice(&content);
                        out.extend_from_slice(b"\r\n");
                        out.extend_from_slice(&ok(None, "Getscript completed"));
                        self.send(&out).await
                    }
                    Err(s) => self.store_error(&s).await,
                }
            }
            Command::SetActive(name) => {
                match sieve.set_active(pb::SetActiveRequest { name }).await {
                    Ok(_) => self.send(&ok(None, "Setactive completed")).await,
                    Err(s) => self.store_error(&s).await,
                }
            }
            Command::DeleteScript(name) => {
                match sieve.delete_script(pb::DeleteScriptRequest { name }).await {
                    Ok(_) => self.send(&ok(None, "Deletescript completed")).await,
                    Err(s) => self.store_error(&s).await,
                }
            }
            Command::RenameScript { old, new } => {
                match sieve
                    .rename_script(pb::RenameScriptRequest {
                        old_name: old,
                        new_name: new,
                    })
                    .await
                {
                    Ok(_) => self.send(&ok(None, "Renamescript completed")).await,
                    Err(s) => self.store_error(&s).await,
                }
            }
            // Handled by `command`.
            Command::Capability
            | Command::StartTls
            | Command::Authenticate { .. }
            | Command::Logout
            | Command::Unauthenticate
            | Command::Noop(_) => self.error(None, "Unexpected command").await,
        }
    }

    async fn put_outcome(&mut self, r: pb::PutScriptResponse) -> Result<(), End> {
        if let Some(e) = &r.error {
            return self.error(None, &script_error(e)).await;
        }
        match pb::SieveQuota::try_from(r.quota) {
            Ok(pb::SieveQuota::MaxScripts) => {
                let m = format!("At most {} scripts", r.max_scripts);
                self.error(Some(Code::QuotaMaxScripts), &m).await
            }
            Ok(pb::SieveQuota::MaxSize) => {
                let m = format!("Scripts are at most {} bytes", r.max_size);
                self.error(Some(Code::QuotaMaxSize), &m).await
            }
            _ => self.send(&ok(None, "Putscript completed")).await,
        }
    }
}

/// The interpreter's refusal as the NO text: where, then why.
fn script_error(e: &pb::SieveScriptError) -> String {
    if e.line == 0 {
        e.message.clone()
    } else {
        format!("line {}, column {}: {}", e.line, e.column, e.message)
    }
}
