//! One IMAP session: framing with imap-codec's `Fragmentizer` (lines and
//! literals, with continuation requests for synchronizing literals and a
//! size cap), command decoding, the NOT AUTHENTICATED -> AUTHENTICATED ->
//! SELECTED -> LOGOUT states (RFC 9051 3), and every command's handler.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use imap_codec::CommandCodec;
use imap_codec::fragmentizer::{
    DecodeMessageError, FragmentInfo, Fragmentizer, LiteralAnnouncement,
};
use imap_codec::imap_types::ToStatic;
use imap_codec::imap_types::auth::AuthMechanism;
use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::core::LiteralMode;
use imap_codec::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_codec::imap_types::fetch::MacroOrMessageDataItemNames;
use imap_codec::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};
use imap_codec::imap_types::search::SearchKey;
use imap_codec::imap_types::sequence::SequenceSet;
use imap_codec::imap_types::status::StatusDataItemName;
use imap_wire::quote;
use mailbox_api::{CallAuth, MailboxClient, pb};
use service_kit::CancellationToken;
use service_kit::conn::{Connection, ReadError, Stream};
use service_kit::limit::PerIpLimit;
use tokio::net::TcpStream;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::config::ImapSettings;
use crate::fetch;
use crate::view::View;

pub(crate) struct Ctx {
    pub settings: ImapSettings,
    pub tls: Option<service_kit::tls::ReloadingTls>,
    pub auth: CallAuth,
    pub channel: Channel,
    pub per_ip: PerIpLimit,
    pub cache: crate::cache::MetaCache,
    pub views: crate::shared::Views,
    pub shutdown: CancellationToken,
}

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 64 * 1024;
/// Protocol errors (BAD) tolerated before the connection is closed.
const MAX_BAD: usize = 50;
/// Messages fetched from the store per metadata batch.
const FETCH_BATCH: usize = 256;
/// Messages per batch when bodies come inline (at most 256 KiB each).
const BODY_BATCH: usize = 32;
/// Flush the response buffer once it holds this much.
const FLUSH_AT: usize = 256 * 1024;
const SEP: char = '/';
/// Response buffer capacity kept between commands.
const OUT_KEEP: usize = 16 * 1024;

pub(crate) async fn handle(ctx: Arc<Ctx>, tcp: TcpStream, peer: SocketAddr, implicit_tls: bool) {
    let Some(slot) = ctx.per_ip.try_acquire(peer.ip()) else {
        let mut conn = Connection::new(Stream::Plain(tcp), peer);
        let _ = conn
            .write_all(b"* BYE [UNAVAILABLE] Too many connections from your address\r\n")
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
    let max = ctx
        .settings
        .max_append
        .saturating_add(ctx.settings.max_line);
    let mut s = Session {
        ctx: ctx.clone(),
        conn,
        frag: Fragmentizer::new(max),
        client: None,
        user: String::new(),
        view: None,
        utf8: false,
        out: Vec::new(),
        bad: 0,
        last_outcome: "OK",
        search_return: None,
        rev2: false,
        saved: Vec::new(),
        added_here: (0, Vec::new()),
    };
    let span = tracing::info_span!("imap_session", %peer);
    tracing::Instrument::instrument(
        async move {
            if let Err(e) = s.run().await {
                tracing::debug!(error = %e, "session ended");
            }
            let _ = s.flush().await;
            if let Some(c) = &mut s.client {
                let _ = c.logout(pb::LogoutRequest {}).await;
            }
            s.conn.shutdown().await;
            drop(slot);
        },
        span,
    )
    .await;
}

struct Session {
    ctx: Arc<Ctx>,
    conn: Connection,
    frag: Fragmentizer,
    /// The store client with this session's token, once authenticated.
    client: Option<MailboxClient>,
    user: String,
    view: Option<View>,
    /// UTF-8 mailbox names (ENABLE UTF8=ACCEPT or IMAP4rev2).
    utf8: bool,
    out: Vec<u8>,
    bad: usize,
    /// OK, NO or BAD of the last tagged reply (for metrics).
    last_outcome: &'static str,
    /// ESEARCH result options of the current SEARCH, if it had RETURN.
    search_return: Option<imap_wire::ext::SearchReturn>,
    /// IMAP4rev2 enabled (RFC 9051): no \Recent, ESEARCH for every SEARCH,
    /// LIST in SELECT responses.
    rev2: bool,
    /// The SEARCHRES saved result (RFC 5182), as UIDs.
    saved: Vec<u32>,
    /// (UIDVALIDITY, UIDs) of the messages the current command added
    /// (APPEND, COPY, MOVE): if that is the selected mailbox, the client
    /// hears of each, even one expunged by someone else meanwhile.
    added_here: (u32, Vec<u32>),
}

#[derive(Debug, thiserror::Error)]
enum End {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("closed")]
    Closed,
}

type R = Result<(), End>;

/// A tagged reply.
struct Done {
    kind: &'static str,
    text: String,
}

impl Done {
    fn ok(text: impl Into<String>) -> Self {
        Self {
            kind: "OK",
            text: text.into(),
        }
    }
    fn no(text: impl Into<String>) -> Self {
        Self {
            kind: "NO",
            text: text.into(),
        }
    }
    fn bad(text: impl Into<String>) -> Self {
        Self {
            kind: "BAD",
            text: text.into(),
        }
    }
}

/// The tagged NO for a failed store call (RFC 5530 response codes).
fn store_no(s: &Status) -> Done {
    let msg = s.message();
    match s.code() {
        Code::NotFound => Done::no("[NONEXISTENT] No such mailbox or message"),
        Code::AlreadyExists => Done::no("[ALREADYEXISTS] Mailbox already exists"),
        Code::ResourceExhausted if msg.starts_with("over-quota") => {
            Done::no("[OVERQUOTA] Quota exceeded")
        }
        Code::ResourceExhausted => {
            Done::no("[UNAVAILABLE] Too many failed logins; try again later")
        }
        Code::OutOfRange => Done::no("[TOOBIG] Message too large"),
        Code::InvalidArgument => Done::no(format!("[CANNOT] {msg}")),
        Code::FailedPrecondition => Done::no(format!("[CANNOT] {msg}")),
        Code::Unauthenticated => Done::no("[AUTHENTICATIONFAILED] Authentication failed"),
        _ => {
            tracing::warn!(code = ?s.code(), error = %msg, "store call failed");
            Done::no("[UNAVAILABLE] Temporary failure, try again later")
        }
    }
}

impl Session {
    /// The largest command message accepted (an APPEND literal and its
    /// line).
    fn max_message(&self) -> u32 {
        self.settings()
            .max_append
            .saturating_add(self.settings().max_line)
    }

    fn settings(&self) -> &ImapSettings {
        &self.ctx.settings
    }

    fn plaintext_ok(&self) -> bool {
        self.conn.is_tls() || self.settings().trusted.contains(self.conn.peer.ip())
    }

    fn capabilities(&self) -> String {
        let mut caps = vec![
            "IMAP4rev1".to_string(),
            "IMAP4rev2".into(),
            "SEARCHRES".into(),
            "LITERAL+".into(),
            "SASL-IR".into(),
            "ENABLE".into(),
            "IDLE".into(),
            "NAMESPACE".into(),
            "UNSELECT".into(),
            "UIDPLUS".into(),
            "MOVE".into(),
            "ID".into(),
            "CHILDREN".into(),
            "ESEARCH".into(),
            "LIST-EXTENDED".into(),
            "LIST-STATUS".into(),
            "SPECIAL-USE".into(),
            "BINARY".into(),
            "STATUS=SIZE".into(),
            "UTF8=ACCEPT".into(),
            format!("APPENDLIMIT={}", self.settings().max_append),
        ];
        if self.client.is_none() {
            if self.ctx.tls.is_some() && !self.conn.is_tls() {
                caps.push("STARTTLS".into());
            }
            if self.plaintext_ok() {
                caps.push("AUTH=PLAIN".into());
            } else {
                caps.push("LOGINDISABLED".into());
            }
        }
        caps.join(" ")
    }

    fn push(&mut self, line: &str) {
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    async fn flush(&mut self) -> R {
        if !self.out.is_empty() {
            self.conn.write_all(&self.out).await?;
            self.out.clear();
            // A large response (a FETCH of bodies) does not leave its
            // buffer behind for the rest of the session.
            if self.out.capacity() > OUT_KEEP {
                self.out = Vec::new();
            }
        }
        self.conn.flush().await?;
        Ok(())
    }

    async fn maybe_flush(&mut self) -> R {
        if self.out.len() >= FLUSH_AT {
            self.conn.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Mailbox names on the wire: UTF-8 once enabled, modified UTF-7 before.
    fn wire_name(&self, name: &str) -> Vec<u8> {
        if self.utf8 {
            quote::to_utf8_string_bytes(name)
        } else {
            quote::to_string_bytes(&imap_wire::utf7::encode(name))
        }
    }

    fn mailbox_name(&self, m: &Mailbox<'_>) -> Result<String, Done> {
        let raw = match m {
            Mailbox::Inbox => return Ok("INBOX".into()),
            Mailbox::Other(o) => o.as_ref(),
        };
        // A name that cannot be decoded names no mailbox: NO, not BAD (the
        // command is well-formed; RFC 3501 5.1.3 only says what names a
        // server creates). CREATE and RENAME say CANNOT instead.
        let invalid =
            || Done::no("[NONEXISTENT] No such mailbox (the name is not valid modified UTF-7)");
        let s = std::str::from_utf8(raw).map_err(|_| invalid())?;
        if self.utf8 {
            return Ok(s.to_string());
        }
        imap_wire::utf7::decode(s).map_err(|_| invalid())
    }

    /// As `mailbox_name`, for a name the command would create.
    fn new_mailbox_name(&self, m: &Mailbox<'_>) -> Result<String, Done> {
        self.mailbox_name(m)
            .map_err(|_| Done::no("[CANNOT] Mailbox names must be valid modified UTF-7"))
    }

    // ------------------------------------------------------------ framing

    /// Reads the next complete command message (line plus any literals).
    /// `None` when the client is gone or idle too long.
    async fn read_message(&mut self) -> Result<Option<()>, End> {
        // Bytes received since the last complete fragment, and whether they
        // belong to an announced literal: a line (outside literals) may not
        // grow past max_line, so memory per connection stays bounded by it
        // rather than by the APPEND limit.
        let mut since_fragment: usize = 0;
        let mut in_literal = false;
        loop {
            let progress = self.frag.progress();
            if progress.is_some() {
                since_fragment = 0;
                in_literal = matches!(
                    progress,
                    Some(FragmentInfo::Line {
                        announcement: Some(_),
                        ..
                    })
                );
            }
            match progress {
                Some(FragmentInfo::Line {
                    announcement: Some(LiteralAnnouncement { mode, length }),
                    ..
                }) => {
                    let max = self.settings().max_append;
                    if length > max {
                        let tag = self.frag.decode_tag().map(|t| t.inner().to_string());
                        if mode == LiteralMode::Sync {
                            // The client waits for "+": refuse, and it will
                            // not send the literal.
                            self.frag.skip_message();
                            let t = tag.unwrap_or_else(|| "*".into());
                            self.push(&format!(
                                "{t} NO [TOOBIG] Literal larger than APPENDLIMIT={max}"
                            ));
                            self.flush().await?;
                        } else {
                            // LITERAL+: the bytes come anyway; the size cap
                            // discards them and the command fails.
                            self.frag.poison_message();
                        }
                        continue;
                    }
                    if mode == LiteralMode::Sync {
                        self.push("+ Ready for literal data");
                        self.flush().await?;
                    }
                }
                Some(FragmentInfo::Line { start, end, .. }) => {
                    let line_len = end - start;
                    if line_len > self.settings().max_line as usize {
                        self.frag.poison_message();
                    }
                    if self.frag.is_message_complete() {
                        return Ok(Some(()));
                    }
                }
                Some(FragmentInfo::Literal { .. }) => {
                    if self.frag.is_message_complete() {
                        return Ok(Some(()));
                    }
                }
                None => {
                    self.flush().await?;
                    if self.frag.message_bytes().is_empty() {
                        // Between commands, with nothing buffered: start
                        // afresh, so the buffers a large command (an
                        // APPEND literal) grew are not kept for the rest of
                        // the session.
                        self.frag = Fragmentizer::new(self.max_message());
                    }
                    let timeout = self.settings().idle_timeout;
                    let shutdown = self.ctx.shutdown.clone();
                    let bytes = tokio::select! {
                        b = self.conn.read_some(READ_CHUNK, timeout) => b,
                        _ = shutdown.cancelled() => {
                            self.push("* BYE Server shutting down");
                            return Ok(None);
                        }
                    };
                    match bytes {
                        Ok(b) if b.is_empty() => return Ok(None),
                        Ok(b) => {
                            since_fragment += b.len();
                            if !in_literal
                                && since_fragment > self.settings().max_line as usize + READ_CHUNK
                            {
                                self.push("* BYE Command line too long");
                                return Ok(None);
                            }
                            self.frag.enqueue_bytes(&b)
                        }
                        Err(ReadError::Timeout) => {
                            self.push("* BYE Autologout; idle for too long");
                            return Ok(None);
                        }
                        Err(ReadError::Io(e)) => return Err(e.into()),
                    }
                }
            }
        }
    }

    async fn run(&mut self) -> R {
        let greeting = format!(
            "* OK [CAPABILITY {}] IMAP server ready",
            self.capabilities()
        );
        self.push(&greeting);
        self.flush().await?;
        loop {
            if self.read_message().await?.is_none() {
                return Ok(());
            }
            let tag = self.frag.decode_tag().map(|t| t.inner().to_string());
            // Syntax imap-codec does not parse yet: LIST-EXTENDED and
            // SEARCH RETURN (ESEARCH).
            if self.client.is_some() && first_line_has(self.frag.message_bytes(), b"LIST") {
                match imap_wire::ext::parse_list_extended(self.frag.message_bytes()) {
                    Ok(Some(ext)) => {
                        let t = tag.clone().unwrap_or_else(|| "*".into());
                        let done = Box::pin(self.list_extended(ext)).await;
                        self.drain_updates(true);
                        self.last_outcome = done.kind;
                        self.push(&format!("{t} {} {}", done.kind, done.text));
                        continue;
                    }
                    Err(e) => {
                        let t = tag.clone().unwrap_or_else(|| "*".into());
                        self.bad += 1;
                        self.push(&format!("{t} BAD {e}"));
                        continue;
                    }
                    Ok(None) => {}
                }
            }
            self.search_return = None;
            let dollar = if self.view.is_some() && first_line_has(self.frag.message_bytes(), b"$") {
                Some(self.substitute_saved(self.frag.message_bytes()))
            } else {
                None
            };
            let source: &[u8] = match &dollar {
                Some(b) => b,
                None => self.frag.message_bytes(),
            };
            let rewritten = if first_line_has(source, b"SEARCH") {
                match imap_wire::ext::split_search_return(source) {
                    Ok(Some((bytes, opts))) => {
                        self.search_return = Some(opts);
                        Some(bytes)
                    }
                    Ok(None) => dollar.clone(),
                    Err(e) => {
                        let t = tag.clone().unwrap_or_else(|| "*".into());
                        self.bad += 1;
                        self.push(&format!("{t} BAD {e}"));
                        continue;
                    }
                }
            } else {
                dollar.clone()
            };
            let decoded = match rewritten {
                Some(bytes) => {
                    use imap_codec::decode::Decoder;
                    match CommandCodec::default().decode(&bytes) {
                        Ok((&[], cmd)) => Ok(cmd.to_static()),
                        _ => Err(("BAD", "Syntax error in SEARCH".to_string())),
                    }
                }
                None => match self.frag.decode_message(&CommandCodec::default()) {
                    Ok(cmd) => Ok(cmd.to_static()),
                    Err(e) => Err(match e {
                        DecodeMessageError::MessageTooLong { .. } => {
                            ("NO", "[TOOBIG] Command too long".to_string())
                        }
                        DecodeMessageError::MessagePoisoned { .. } => {
                            ("NO", "[TOOBIG] Command or literal too long".to_string())
                        }
                        _ => ("BAD", "Syntax error in command".to_string()),
                    }),
                },
            };
            match decoded {
                Ok(cmd) => {
                    if !self.command(cmd).await? {
                        return Ok(());
                    }
                }
                Err((kind, text)) => {
                    self.bad += 1;
                    let unknown = self.unknown_command_name();
                    let t = tag.unwrap_or_else(|| "*".into());
                    let text = match unknown {
                        Some(name) if kind == "BAD" => {
                            format!("Unknown or invalid command: {name}")
                        }
                        _ => text,
                    };
                    self.push(&format!("{t} {kind} {text}"));
                    if self.bad >= MAX_BAD {
                        self.push("* BYE Too many invalid commands");
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Replaces the SEARCHRES `$` (RFC 5182) in the first line of a command
    /// with the saved result: UIDs in UID commands and SEARCH, message
    /// numbers otherwise. An empty result becomes a UID no message has.
    fn substitute_saved(&self, msg: &[u8]) -> Vec<u8> {
        let end = msg
            .iter()
            .position(|&b| b == b'\n')
            .map_or(msg.len(), |p| p + 1);
        let (line, rest) = msg.split_at(end);
        let words: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        let uid_cmd = words.get(1).is_some_and(|w| w.eq_ignore_ascii_case(b"UID"));
        let search = words
            .iter()
            .take(3)
            .any(|w| w.eq_ignore_ascii_case(b"SEARCH"));
        let view = self.view.as_ref();
        let uids = uid_list_or_none(&self.saved);
        let seqs = {
            let mut n: Vec<u32> = self
                .saved
                .iter()
                .filter_map(|u| view.and_then(|v| v.position(*u)).map(|i| i as u32 + 1))
                .collect();
            n.sort_unstable();
            uid_list_or_none(&n)
        };
        let mut out = Vec::with_capacity(msg.len() + 16);
        for (i, w) in words.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            let (core, tail) = match w.strip_suffix(b"\r\n") {
                Some(c) => (c, &b"\r\n"[..]),
                None => match w.strip_suffix(b"\n") {
                    Some(c) => (c, &b"\n"[..]),
                    None => (*w, &b""[..]),
                },
            };
            let (core, close) = match core.iter().position(|&b| b == b')') {
                Some(p) if core[..p] == *b"$" => (&core[..p], &core[p..]),
                _ => (core, &b""[..]),
            };
            if core == b"$" {
                let prev_uid = i > 0 && words[i - 1].eq_ignore_ascii_case(b"UID");
                if search && !prev_uid && i > 2 {
                    out.extend_from_slice(b"UID ");
                    out.extend_from_slice(uids.as_bytes());
                } else if uid_cmd || prev_uid {
                    out.extend_from_slice(uids.as_bytes());
                } else {
                    out.extend_from_slice(seqs.as_bytes());
                }
            } else {
                out.extend_from_slice(core);
            }
            out.extend_from_slice(close);
            out.extend_from_slice(tail);
        }
        out.extend_from_slice(rest);
        out
    }

    /// The command word of the current (undecodable) message, for the BAD
    /// text; only printable atoms are echoed.
    fn unknown_command_name(&self) -> Option<String> {
        let bytes = self.frag.message_bytes();
        let line = bytes.split(|&b| b == b'\n').next()?;
        let word = line.split(|&b| b == b' ').nth(1)?;
        let w: String = word
            .iter()
            .take(32)
            .filter(|b| b.is_ascii_alphanumeric() || **b == b'.' || **b == b'-')
            .map(|&b| b as char)
            .collect();
        (!w.is_empty()).then_some(w)
    }

    /// Runs one command in its own span; `false` ends the session.
    async fn command(&mut self, cmd: Command<'static>) -> Result<bool, End> {
        let name = cmd.body.name();
        let span = tracing::info_span!("imap.command", command = name);
        let started = std::time::Instant::now();
        let r = tracing::Instrument::instrument(self.command_inner(cmd), span).await;
        service_kit::metrics::command("imap", name, self.last_outcome, started);
        r
    }

    async fn command_inner(&mut self, cmd: Command<'static>) -> Result<bool, End> {
        let tag = cmd.tag.inner().to_string();
        let authed = self.client.is_some();
        let selected = self.view.is_some();
        // Whether EXPUNGE responses may be sent after this command
        // (RFC 9051 7.5.1: not during FETCH, STORE, SEARCH).
        let mut expunges_ok = true;
        // Whether to ask the store for changes before answering: only when
        // the command added messages to the selected mailbox, which must be
        // announced before its OK (RFC 9051 6.3.12). Everything else (NOOP
        // polls included) is told from the Watch stream, which has usually
        // delivered a change before the client asks: no store call.
        let sync = selected
            && match &cmd.body {
                CommandBody::Append { mailbox, .. }
                | CommandBody::Copy { mailbox, .. }
                | CommandBody::Move { mailbox, .. } => {
                    let target = self.mailbox_name(mailbox).ok();
                    self.view
                        .as_ref()
                        .is_some_and(|v| target.as_deref() == Some(v.name.as_str()))
                }
                _ => false,
            };
        let done = match cmd.body {
            CommandBody::Capability => {
                let caps = self.capabilities();
                self.push(&format!("* CAPABILITY {caps}"));
                Done::ok("CAPABILITY completed")
            }
            CommandBody::Noop => Done::ok("NOOP completed"),
            CommandBody::Logout => {
                self.push("* BYE Logging out");
                self.push(&format!("{tag} OK LOGOUT completed"));
                self.flush().await?;
                return Ok(false);
            }
            CommandBody::Id { .. } => {
                self.push("* ID (\"name\" \"imap-gateway\" \"vendor\" \"mail\")");
                Done::ok("ID completed")
            }
            CommandBody::StartTLS if !authed => {
                return Box::pin(self.starttls(&tag)).await.map(|_| true);
            }
            CommandBody::Login { username, password } if !authed => {
                let user = String::from_utf8_lossy(username.as_ref()).into_owned();
                let pw = String::from_utf8_lossy(password.declassify().as_ref()).into_owned();
                if !self.plaintext_ok() {
                    Done::no("[PRIVACYREQUIRED] LOGIN is disabled before STARTTLS")
                } else {
                    Box::pin(self.login(&user, &pw)).await
                }
            }
            CommandBody::Authenticate {
                mechanism,
                initial_response,
            } if !authed => {
                let ir = initial_response.map(|r| r.declassify().to_vec());
                Box::pin(self.authenticate(&mechanism, ir)).await?
            }
            CommandBody::StartTLS
            | CommandBody::Login { .. }
            | CommandBody::Authenticate { .. } => Done::bad("Already authenticated"),
            _ if !authed => Done::bad("Log in first"),
            CommandBody::Enable { capabilities } => {
                let mut enabled = Vec::new();
                for c in capabilities.as_ref() {
                    let s = c.to_string();
                    let up = s.to_ascii_uppercase();
                    if up == "UTF8=ACCEPT" || up == "IMAP4REV2" {
                        self.utf8 = true;
                        self.rev2 |= up == "IMAP4REV2";
                        enabled.push(s);
                    }
                }
                if !enabled.is_empty() {
                    self.push(&format!("* ENABLED {}", enabled.join(" ")));
                }
                Done::ok("ENABLE completed")
            }
            CommandBody::Namespace => {
                self.push("* NAMESPACE ((\"\" \"/\")) NIL NIL");
                Done::ok("NAMESPACE completed")
            }
            CommandBody::Select { mailbox, .. } => Box::pin(self.select(&mailbox, false)).await,
            CommandBody::Examine { mailbox, .. } => Box::pin(self.select(&mailbox, true)).await,
            CommandBody::Create { mailbox } => Box::pin(self.create(&mailbox)).await,
            CommandBody::Delete { mailbox } => Box::pin(self.delete(&mailbox)).await,
            CommandBody::Rename { from, to } => Box::pin(self.rename(&from, &to)).await,
            CommandBody::Subscribe { mailbox } => Box::pin(self.subscribe(&mailbox, true)).await,
            CommandBody::Unsubscribe { mailbox } => Box::pin(self.subscribe(&mailbox, false)).await,
            CommandBody::List {
                reference,
                mailbox_wildcard,
            } => Box::pin(self.list(&reference, &mailbox_wildcard, false)).await,
            CommandBody::Lsub {
                reference,
                mailbox_wildcard,
            } => Box::pin(self.list(&reference, &mailbox_wildcard, true)).await,
            CommandBody::Status {
                mailbox,
                item_names,
            } => Box::pin(self.status(&mailbox, item_names.as_ref())).await,
            CommandBody::Append {
                mailbox,
                flags,
                date,
                message,
            } => Box::pin(self.append(&mailbox, &flags, date, message)).await,
            CommandBody::Idle => return self.idle(&tag).await,
            _ if !selected => Done::bad("No mailbox selected"),
            CommandBody::Check => Done::ok("CHECK completed"),
            CommandBody::Close => {
                Box::pin(self.expunge_deleted(None, false)).await?;
                self.view = None;
                Done::ok("CLOSE completed")
            }
            CommandBody::Unselect => {
                self.view = None;
                Done::ok("UNSELECT completed")
            }
            CommandBody::Expunge => Box::pin(self.expunge_deleted(None, true)).await?,
            CommandBody::ExpungeUid { sequence_set } => {
                Box::pin(self.expunge_deleted(Some(&sequence_set), true)).await?
            }
            CommandBody::Search {
                criteria,
                uid,
                charset,
            } => {
                expunges_ok = uid;
                let _ = charset;
                Box::pin(self.search(&tag, criteria.as_ref(), uid)).await
            }
            CommandBody::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
                ..
            } => {
                expunges_ok = uid;
                Box::pin(self.fetch(&sequence_set, &macro_or_item_names, uid)).await?
            }
            CommandBody::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
                modifiers,
            } => {
                expunges_ok = uid;
                let unchanged = modifiers.iter().find_map(|m| match m {
                    imap_codec::imap_types::command::StoreModifier::UnchangedSince(n) => Some(*n),
                    #[allow(unreachable_patterns)]
                    _ => None,
                });
                Box::pin(self.store(&sequence_set, kind, response, &flags, uid, unchanged)).await
            }
            CommandBody::Copy {
                sequence_set,
                mailbox,
                uid,
            } => Box::pin(self.copy(&sequence_set, &mailbox, uid, false)).await?,
            CommandBody::Move {
                sequence_set,
                mailbox,
                uid,
            } => Box::pin(self.copy(&sequence_set, &mailbox, uid, true)).await?,
            _ => Done::bad("Command not supported"),
        };
        if done.kind == "BAD" {
            self.bad += 1;
        }
        if sync {
            Box::pin(self.sync_view()).await;
        }
        self.drain_updates(expunges_ok);
        self.last_outcome = done.kind;
        let line = format!("{tag} {} {}", done.kind, done.text);
        self.push(&line);
        if self.bad >= MAX_BAD {
            self.push("* BYE Too many invalid commands");
            return Ok(false);
        }
        Ok(true)
    }

    // ------------------------------------------------------------ auth

    async fn starttls(&mut self, tag: &str) -> R {
        let Some(acceptor) = self.ctx.tls.as_ref().map(|t| t.acceptor()) else {
            self.push(&format!("{tag} BAD STARTTLS not available"));
            return Ok(());
        };
        if self.conn.is_tls() {
            self.push(&format!("{tag} BAD Already using TLS"));
            return Ok(());
        }
        self.push(&format!("{tag} OK Begin TLS negotiation now"));
        self.flush().await?;
        // Anything the client pipelined after STARTTLS was sent in
        // plaintext: it is dropped, never executed inside TLS.
        self.frag = Fragmentizer::new(
            self.settings()
                .max_append
                .saturating_add(self.settings().max_line),
        );
        if self.conn.buffered() > 0 {
            let _ = self
                .conn
                .read_some(usize::MAX, Duration::from_secs(1))
                .await;
        }
        self.conn
            .start_tls(&acceptor, TLS_HANDSHAKE_TIMEOUT)
            .await?;
        Ok(())
    }

    async fn login(&mut self, user: &str, password: &str) -> Done {
        let mut anon = mailbox_api::mailbox_client(self.ctx.channel.clone(), self.ctx.auth.clone());
        let r = anon
            .authenticate(pb::AuthenticateRequest {
                username: user.to_string(),
                password: password.to_string(),
                client_ip: self.conn.peer.ip().to_string(),
                protocol: "imap".into(),
            })
            .await;
        match r {
            Ok(r) => {
                let r = r.into_inner();
                let Ok(auth) = self.ctx.auth.with_session(&r.session_token) else {
                    return Done::no("[UNAVAILABLE] Bad session token");
                };
                self.client = Some(mailbox_api::mailbox_client(self.ctx.channel.clone(), auth));
                self.user = r.account;
                Done::ok(format!("[CAPABILITY {}] Logged in", self.capabilities()))
            }
            Err(s) if s.code() == Code::InvalidArgument => {
                Done::no("[AUTHENTICATIONFAILED] Authentication failed")
            }
            Err(s) => store_no(&s),
        }
    }

    async fn authenticate(
        &mut self,
        mech: &AuthMechanism<'_>,
        ir: Option<Vec<u8>>,
    ) -> Result<Done, End> {
        if !matches!(mech, AuthMechanism::Plain) {
            return Ok(Done::no("[CANNOT] Unsupported mechanism"));
        }
        if !self.plaintext_ok() {
            return Ok(Done::no("[PRIVACYREQUIRED] AUTHENTICATE PLAIN needs TLS"));
        }
        let response = match ir {
            Some(r) => r,
            None => {
                self.push("+ ");
                if self.read_message().await?.is_none() {
                    return Err(End::Closed);
                }
                let line = self.frag.message_bytes().to_vec();
                let line = String::from_utf8_lossy(&line).trim().to_string();
                if line == "*" {
                    return Ok(Done::bad("Authentication cancelled"));
                }
                match base64::engine::general_purpose::STANDARD.decode(line.as_bytes()) {
                    Ok(d) => d,
                    Err(_) => return Ok(Done::bad("Invalid base64")),
                }
            }
        };
        let mut parts = response.split(|&b| b == 0);
        let (Some(authz), Some(authc), Some(pw), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Ok(Done::no("[AUTHENTICATIONFAILED] Malformed PLAIN response"));
        };
        if !authz.is_empty() && !authz.eq_ignore_ascii_case(authc) {
            return Ok(Done::no(
                "[AUTHORIZATIONFAILED] Authorization identity not permitted",
            ));
        }
        let (user, pw) = (
            String::from_utf8_lossy(authc).into_owned(),
            String::from_utf8_lossy(pw).into_owned(),
        );
        Ok(self.login(&user, &pw).await)
    }

    fn client(&self) -> Option<MailboxClient> {
        self.client.clone()
    }

    // ------------------------------------------------------------ mailboxes

    async fn select(&mut self, m: &Mailbox<'_>, read_only: bool) -> Done {
        // A failed SELECT leaves no mailbox selected (RFC 9051 6.3.2); the
        // end of the previous one's responses is marked (7.1, CLOSED). The
        // old view is kept until the new one is open: a re-SELECT of the
        // same mailbox then costs its changes, not the mailbox.
        let previous = self.view.take();
        if previous.is_some() {
            self.push("* OK [CLOSED] Previous mailbox closed");
        }
        let name = match self.mailbox_name(m) {
            Ok(n) => n,
            Err(d) => return d,
        };
        let Some(c) = self.client() else {
            return Done::bad("Log in first");
        };
        let account: Arc<str> = Arc::from(self.user.as_str());
        let shared = match self.ctx.views.open(&account, &name, read_only, &c).await {
            Ok(s) => s,
            Err(s) => return store_no(&s),
        };
        drop(previous);
        let view = View::new(name, shared, c);
        for l in view.flags_responses() {
            self.push(&l);
        }
        self.push(&format!("* {} EXISTS", view.exists()));
        if self.rev2 {
            // RFC 9051 6.3.2: the mailbox's LIST response; no RECENT or UNSEEN.
            let mut line = b"* LIST () \"/\" ".to_vec();
            line.extend_from_slice(&self.wire_name(&view.name));
            self.out.extend_from_slice(&line);
            self.out.extend_from_slice(b"\r\n");
        } else {
            self.push(&format!("* {} RECENT", view.recent.len()));
            if let Some(u) = view.unseen_first() {
                self.push(&format!("* OK [UNSEEN {u}] First unseen"));
            }
        }
        self.push(&format!(
            "* OK [UIDVALIDITY {}] UIDs valid",
            view.uid_validity()
        ));
        self.push(&format!(
            "* OK [UIDNEXT {}] Predicted next UID",
            view.uid_next()
        ));
        self.push(&format!(
            "* OK [HIGHESTMODSEQ {}] Highest",
            view.highest_modseq()
        ));
        self.view = Some(view);
        if read_only {
            Done::ok("[READ-ONLY] EXAMINE completed")
        } else {
            Done::ok("[READ-WRITE] SELECT completed")
        }
    }

    async fn create(&mut self, m: &Mailbox<'_>) -> Done {
        let name = match self.new_mailbox_name(m) {
            Ok(n) => n,
            Err(d) => return d,
        };
        // A trailing separator only says the name will have children.
        let name = name.trim_end_matches(SEP).to_string();
        if name.eq_ignore_ascii_case("INBOX") {
            return Done::no("[ALREADYEXISTS] INBOX always exists");
        }
        let Some(mut c) = self.client() else {
            return Done::bad("Log in first");
        };
        match c
            .create_mailbox(pb::CreateMailboxRequest {
                name,
                special_use: 0,
            })
            .await
        {
            Ok(_) => Done::ok("CREATE completed"),
            Err(s) => store_no(&s),
        }
    }

    async fn delete(&mut self, m: &Mailbox<'_>) -> Done {
        let name = match self.mailbox_name(m) {
            Ok(n) => n,
            Err(d) => return d,
        };
        let Some(mut c) = self.client() else {
            return Done::bad("Log in first");
        };
        if self.view.as_ref().is_some_and(|v| v.name == name) {
            self.view = None;
        }
        match c.delete_mailbox(pb::DeleteMailboxRequest { name }).await {
            Ok(_) => Done::ok("DELETE completed"),
            Err(s) => store_no(&s),
        }
    }

    async fn rename(&mut self, from: &Mailbox<'_>, to: &Mailbox<'_>) -> Done {
        let (from, to) = match (self.mailbox_name(from), self.new_mailbox_name(to)) {
            (Ok(f), Ok(t)) => (f, t),
            (Err(d), _) | (_, Err(d)) => return d,
        };
        let Some(mut c) = self.client() else {
            return Done::bad("Log in first");
        };
        match c
            .rename_mailbox(pb::RenameMailboxRequest { from, to })
            .await
        {
            Ok(_) => Done::ok("RENAME completed"),
            Err(s) => store_no(&s),
        }
    }

    async fn subscribe(&mut self, m: &Mailbox<'_>, on: bool) -> Done {
        let name = match self.mailbox_name(m) {
            Ok(n) => n,
            Err(d) => return d,
        };
        let Some(mut c) = self.client() else {
            return Done::bad("Log in first");
        };
        match c
            .set_subscribed(pb::SetSubscribedRequest {
                name,
                subscribed: on,
            })
            .await
        {
            Ok(_) => Done::ok(if on {
                "SUBSCRIBE completed"
            } else {
                "UNSUBSCRIBE completed"
            }),
            Err(s) => store_no(&s),
        }
    }

    async fn list(
        &mut self,
        reference: &Mailbox<'_>,
        pattern: &ListMailbox<'_>,
        lsub: bool,
    ) -> Done {
        let reference = match reference {
            Mailbox::Inbox => "INBOX".to_string(),
            Mailbox::Other(o) => String::from_utf8_lossy(o.as_ref()).into_owned(),
        };
        let pattern = match pattern {
            ListMailbox::Token(t) => String::from_utf8_lossy(t.as_ref()).into_owned(),
            ListMailbox::String(s) => String::from_utf8_lossy(s.as_ref()).into_owned(),
        };
        let (reference, pattern) = if self.utf8 {
            (reference, pattern)
        } else {
            match (
                imap_wire::utf7::decode(&reference),
                imap_wire::utf7::decode(&pattern),
            ) {
                (Ok(r), Ok(p)) => (r, p),
                // No mailbox name can match what does not decode.
                _ => {
                    return Done::ok(if lsub {
                        "LSUB completed"
                    } else {
                        "LIST completed"
                    });
                }
            }
        };
        let cmd = if lsub { "LSUB" } else { "LIST" };
        if pattern.is_empty() && !lsub {
            // RFC 9051 6.3.9: the hierarchy delimiter and root.
            self.push("* LIST (\\Noselect) \"/\" \"\"");
            return Done::ok("LIST completed");
        }
        let Some(mut c) = self.client() else {
            return Done::bad("Log in first");
        };
        let boxes = match c.list_mailboxes(pb::ListMailboxesRequest {}).await {
            Ok(r) => r.into_inner().mailboxes,
            Err(s) => return store_no(&s),
        };
        let full = imap_wire::pattern::join(&reference, &pattern, SEP);
        let mut lines = Vec::new();
        for b in &boxes {
            let exists = b.uid_validity != 0;
            if lsub && !b.subscribed {
                continue;
            }
            if !lsub && !exists {
                continue;
            }
            if !imap_wire::pattern::matches(&full, &b.name, SEP) {
                continue;
            }
            let mut attrs: Vec<&str> = Vec::new();
            if !exists {
                attrs.push("\\NonExistent");
            }
            if !lsub {
                attrs.push(if b.has_children {
                    "\\HasChildren"
                } else {
                    "\\HasNoChildren"
                });
            }
            match pb::SpecialUse::try_from(b.special_use).unwrap_or(pb::SpecialUse::None) {
                pb::SpecialUse::Drafts => attrs.push("\\Drafts"),
                pb::SpecialUse::Sent => attrs.push("\\Sent"),
                pb::SpecialUse::Trash => attrs.push("\\Trash"),
                pb::SpecialUse::Junk => attrs.push("\\Junk"),
                pb::SpecialUse::Archive => attrs.push("\\Archive"),
                pb::SpecialUse::All => attrs.push("\\All"),
                pb::SpecialUse::Flagged => attrs.push("\\Flagged"),
                pb::SpecialUse::None => {}
            }
            let mut line = format!("* {cmd} ({}) \"/\" ", attrs.join(" ")).into_bytes();
            line.extend_from_slice(&self.wire_name(&b.name));
            lines.push(line);
        }
        if lsub {
            // RFC 3501 6.3.9: when a subscribed mailbox does not match (a
            // "%" stops at its parent) but a parent that is not subscribed
            // does, LSUB returns the parent, flagged \Noselect.
            let subscribed: std::collections::HashSet<&str> = boxes
                .iter()
                .filter(|b| b.subscribed)
                .map(|b| b.name.as_str())
                .collect();
            let mut parents = std::collections::BTreeSet::new();
            for &name in &subscribed {
                if imap_wire::pattern::matches(&full, name, SEP) {
                    continue;
                }
                let mut up = name;
                while let Some(i) = up.rfind(SEP) {
                    up = &up[..i];
                    if !subscribed.contains(up) && imap_wire::pattern::matches(&full, up, SEP) {
                        parents.insert(up);
                    }
                }
            }
            for p in parents {
                let mut line = b"* LSUB (\\Noselect) \"/\" ".to_vec();
                line.extend_from_slice(&self.wire_name(p));
                lines.push(line);
            }
        }
        for l in lines {
            self.out.extend_from_slice(&l);
            self.out.extend_from_slice(b"\r\n");
        }
        Done::ok(format!("{cmd} completed"))
    }

    /// LIST with RFC 5258 selection and return options, several patterns,
    /// LIST-STATUS (RFC 5819) and SPECIAL-USE (RFC 6154).
    async fn list_extended(&mut self, ext: imap_wire::ext::ListExtended) -> Done {
        // No mailbox name can match a reference or pattern that does not
        // decode: such a LIST answers nothing, successfully.
        let decode = |b: &[u8]| -> Result<String, Done> {
            let none = || Done::ok("LIST completed");
            let s = std::str::from_utf8(b).map_err(|_| none())?;
            if self.utf8 {
                Ok(s.to_string())
            } else {
                imap_wire::utf7::decode(s).map_err(|_| none())
            }
        };
        let reference = match decode(&ext.reference) {
            Ok(r) => r,
            Err(d) => return d,
        };
        let mut patterns = Vec::new();
        for p in &ext.patterns {
            match decode(p) {
                Ok(p) => patterns.push(imap_wire::pattern::join(&reference, &p, SEP)),
                Err(d) => return d,
            }
        }
        let Some(mut c) = self.client() else {
            return Done::bad("Log in first");
        };
        let boxes = match c.list_mailboxes(pb::ListMailboxesRequest {}).await {
            Ok(r) => r.into_inner().mailboxes,
            Err(s) => return store_no(&s),
        };
        // Candidate names: every mailbox and every subscribed name, plus
        // the parents of subscribed names (for RECURSIVEMATCH).
        let mut names: std::collections::BTreeMap<String, Option<&pb::MailboxInfo>> =
            std::collections::BTreeMap::new();
        for b in &boxes {
            names.insert(b.name.clone(), Some(b));
            if ext.recursive_match && b.subscribed {
                let mut acc = String::new();
                for level in b.name.split(SEP) {
                    if !acc.is_empty() {
                        names.entry(acc.clone()).or_insert(None);
                        acc.push(SEP);
                    }
                    acc.push_str(level);
                }
            }
        }
        let mut out: Vec<u8> = Vec::new();
        let mut statuses = Vec::new();
        for (name, info) in &names {
            if !patterns
                .iter()
                .any(|p| imap_wire::pattern::matches(p, name, SEP))
            {
                continue;
            }
            let exists = info.is_some_and(|b| b.uid_validity != 0);
            let subscribed = info.is_some_and(|b| b.subscribed);
            let prefix = format!("{name}{SEP}");
            // RFC 5258 3.5: with RECURSIVEMATCH, a listed mailbox with a
            // subscribed descendant the patterns do not list carries
            // CHILDINFO, whether it is subscribed itself or not.
            let childinfo = ext.recursive_match
                && boxes.iter().any(|b| {
                    b.subscribed
                        && b.name.starts_with(&prefix)
                        && !patterns
                            .iter()
                            .any(|p| imap_wire::pattern::matches(p, &b.name, SEP))
                });
            if ext.subscribed && !subscribed && !childinfo {
                continue;
            }
            if !ext.subscribed && !exists {
                continue;
            }
            let special = info
                .map(|b| pb::SpecialUse::try_from(b.special_use).unwrap_or(pb::SpecialUse::None))
                .unwrap_or(pb::SpecialUse::None);
            if ext.special_use_only && special == pb::SpecialUse::None {
                continue;
            }
            let mut attrs: Vec<&str> = Vec::new();
            if !exists {
                attrs.push("\\NonExistent");
            }
            if subscribed && (ext.subscribed || ext.return_subscribed) {
                attrs.push("\\Subscribed");
            }
            // Child attributes are only sent when asked for (RETURN
            // (CHILDREN)) once selection options are given, as RFC 5258's
            // examples and Dovecot do; a plain LIST keeps them (CHILDREN).
            let selecting = ext.subscribed || ext.special_use_only || ext.recursive_match;
            if exists && (ext.return_children || !selecting) {
                let has_children = boxes
                    .iter()
                    .any(|b| b.uid_validity != 0 && b.name.starts_with(&prefix));
                attrs.push(if has_children {
                    "\\HasChildren"
                } else {
                    "\\HasNoChildren"
                });
            }
            match special {
                pb::SpecialUse::Drafts => attrs.push("\\Drafts"),
                pb::SpecialUse::Sent => attrs.push("\\Sent"),
                pb::SpecialUse::Trash => attrs.push("\\Trash"),
                pb::SpecialUse::Junk => attrs.push("\\Junk"),
                pb::SpecialUse::Archive => attrs.push("\\Archive"),
                pb::SpecialUse::All => attrs.push("\\All"),
                pb::SpecialUse::Flagged => attrs.push("\\Flagged"),
                pb::SpecialUse::None => {}
            }
            out.extend_from_slice(format!("* LIST ({}) \"/\" ", attrs.join(" ")).as_bytes());
            out.extend_from_slice(&self.wire_name(name));
            if childinfo {
                out.extend_from_slice(b" (\"CHILDINFO\" (\"SUBSCRIBED\"))");
            }
            out.extend_from_slice(b"\r\n");
            if let Some(items) = &ext.return_status
                && exists
            {
                statuses.push((name.clone(), items.clone(), out.len()));
            }
        }
        // LIST-STATUS: each STATUS follows its LIST line.
        let mut result = Vec::with_capacity(out.len());
        let mut from = 0;
        for (name, items, at) in statuses {
            result.extend_from_slice(&out[from..at]);
            from = at;
            let st = match c
                .mailbox_status(pb::MailboxStatusRequest { name: name.clone() })
                .await
            {
                Ok(r) => r.into_inner().status.unwrap_or_default(),
                Err(_) => continue,
            };
            let parts: Vec<String> = items
                .iter()
                .map(|i| {
                    use imap_wire::ext::StatusItem as S;
                    let v = match i {
                        S::Messages => st.messages as u64,
                        S::UidNext => st.uid_next as u64,
                        S::UidValidity => st.uid_validity as u64,
                        S::Unseen => st.unseen as u64,
                        S::Deleted => st.deleted as u64,
                        S::Size => st.size,
                        S::Recent => st.recent as u64,
                        S::HighestModSeq => st.highest_modseq,
                    };
                    format!("{} {v}", i.as_str())
                })
                .collect();
            result.extend_from_slice(b"* STATUS ");
            result.extend_from_slice(&self.wire_name(&name));
            result.extend_from_slice(format!(" ({})\r\n", parts.join(" ")).as_bytes());
        }
        result.extend_from_slice(&out[from..]);
        self.out.extend_from_slice(&result);
        Done::ok("LIST completed")
    }

    async fn status(&mut self, m: &Mailbox<'_>, items: &[StatusDataItemName]) -> Done {
        let name = match self.mailbox_name(m) {
            Ok(n) => n,
            Err(d) => return d,
        };
        let Some(mut c) = self.client() else {
            return Done::bad("Log in first");
        };
        let st = if self.view.as_ref().is_some_and(|v| v.name == name) {
            // The selected mailbox: bring the view up to date, tell the
            // client what changed, and answer from the view, so STATUS
            // agrees with what this session was told.
            Box::pin(self.sync_view()).await;
            self.drain_updates(true);
            match &self.view {
                Some(v) => v.status(),
                None => return Done::no("[NONEXISTENT] Mailbox was deleted"),
            }
        } else {
            match c
                .mailbox_status(pb::MailboxStatusRequest { name: name.clone() })
                .await
            {
                Ok(r) => r.into_inner().status.unwrap_or_default(),
                Err(s) => return store_no(&s),
            }
        };
        let mut parts = Vec::new();
        for i in items {
            parts.push(match i {
                StatusDataItemName::Messages => format!("MESSAGES {}", st.messages),
                StatusDataItemName::Recent => format!("RECENT {}", st.recent),
                StatusDataItemName::UidNext => format!("UIDNEXT {}", st.uid_next),
                StatusDataItemName::UidValidity => format!("UIDVALIDITY {}", st.uid_validity),
                StatusDataItemName::Unseen => format!("UNSEEN {}", st.unseen),
                StatusDataItemName::Deleted => format!("DELETED {}", st.deleted),
                StatusDataItemName::DeletedStorage => format!("DELETED-STORAGE {}", 0),
                StatusDataItemName::Size => format!("SIZE {}", st.size),
                StatusDataItemName::HighestModSeq => format!("HIGHESTMODSEQ {}", st.highest_modseq),
            });
        }
        let mut line = b"* STATUS ".to_vec();
        line.extend_from_slice(&self.wire_name(&name));
        line.extend_from_slice(format!(" ({})\r\n", parts.join(" ")).as_bytes());
        self.out.extend_from_slice(&line);
        Done::ok("STATUS completed")
    }

    async fn append(
        &mut self,
        m: &Mailbox<'_>,
        flags: &[Flag<'_>],
        date: Option<imap_codec::imap_types::datetime::DateTime>,
        message: LiteralOrLiteral8<'_>,
    ) -> Done {
        let name = match self.mailbox_name(m) {
            Ok(n) => n,
            Err(d) => return d,
        };
        let data: Vec<u8> = match message {
            LiteralOrLiteral8::Literal(l) => l.data().to_vec(),
            LiteralOrLiteral8::Literal8(l) => l.data.to_vec(),
        };
        if data.len() as u64 > self.settings().max_append as u64 {
            return Done::no("[TOOBIG] Message larger than APPENDLIMIT");
        }
        let pbflags = match to_pb_flags(flags) {
            Ok(f) => f,
            Err(d) => return d,
        };
        let (internal_date, tz) = match &date {
            Some(d) => {
                let d: &chrono::DateTime<chrono::FixedOffset> = d.as_ref();
                (d.timestamp(), d.offset().local_minus_utc() / 60)
            }
            None => (0, 0),
        };
        let Some(mut c) = self.client() else {
            return Done::bad("Log in first");
        };
        let mut chunks = vec![pb::AppendChunk {
            part: Some(pb::append_chunk::Part::Header(pb::AppendHeader {
                mailbox: name.clone(),
                flags: Some(pbflags),
                internal_date,
                internal_date_tz: tz,
                size: data.len() as u64,
            })),
        }];
        for part in data.chunks(mailbox_api::CHUNK_SIZE) {
            chunks.push(pb::AppendChunk {
                part: Some(pb::append_chunk::Part::Data(part.to_vec())),
            });
        }
        match c.append(tokio_stream_iter(chunks)).await {
            Ok(r) => {
                let r = r.into_inner();
                self.added_here = (r.uid_validity, vec![r.uid]);
                Done::ok(format!(
                    "[APPENDUID {} {}] APPEND completed",
                    r.uid_validity, r.uid
                ))
            }
            Err(s) if s.code() == Code::NotFound => Done::no("[TRYCREATE] No such mailbox"),
            Err(s) => store_no(&s),
        }
    }

    // ------------------------------------------------------------ updates

    /// Asks the store for everything that changed in the selected mailbox
    /// since the view's MODSEQ, without waiting for the Watch stream: used
    /// after this session added messages to it (APPEND, COPY, MOVE) and for
    /// STATUS of it, so the client learns of them before the tagged reply.
    /// A read-write session claims \Recent on the new messages.
    async fn sync_view(&mut self) {
        let shared = match &self.view {
            Some(v) => v.shared().clone(),
            None => return,
        };
        let Some(c) = self.client() else { return };
        // A failure leaves the change to the Watch stream.
        if let Err(e) = shared.refresh(c).await {
            tracing::debug!(error = %e, "refreshing the selected mailbox failed");
        }
    }

    /// Moves the view to the latest shared snapshot and writes the
    /// untagged responses that may be sent now.
    fn drain_updates(&mut self, expunges_ok: bool) {
        let Some(view) = self.view.as_mut() else {
            return;
        };
        view.sync(&std::collections::HashMap::new());
        let (validity, added) = std::mem::take(&mut self.added_here);
        if validity == view.uid_validity() {
            view.added_here(&added);
        }
        let owed_recent = std::mem::take(&mut view.owe_recent);
        let mut owed_flags = std::mem::take(&mut view.owe_flags);
        let mut lines = Vec::new();
        // New keywords are announced before any FETCH can show them.
        let pending: Vec<u32> = view.pending_flags.iter().copied().collect();
        for uid in pending {
            if let Some(f) = view.position(uid).and_then(|i| view.msg_at(i)) {
                let f = f.flags.clone();
                owed_flags |= view.learn_keywords(&f);
            }
        }
        if owed_flags {
            lines.extend(view.flags_responses());
        }
        if expunges_ok {
            // Messages this command added and someone else expunged at
            // once: EXISTS counts them before their EXPUNGE (RFC 9051
            // 6.3.12: the client hears of what it added).
            if std::mem::take(&mut view.tell_first)
                && let Some(n) = view.tell_exists()
            {
                lines.push(format!("* {n} EXISTS"));
            }
            for seq in view.take_expunges() {
                lines.push(format!("* {seq} EXPUNGE"));
            }
        }
        // Counted after the expunges above: EXISTS is the number of
        // messages once they are gone.
        if let Some(n) = view.tell_exists() {
            lines.push(format!("* {n} EXISTS"));
        }
        if owed_recent && !self.rev2 {
            lines.push(format!("* {} RECENT", view.recent.len()));
        }
        let changed: Vec<u32> = std::mem::take(&mut view.pending_flags)
            .into_iter()
            .collect();
        let mut fetches = Vec::new();
        for uid in changed {
            if let Some((i, m)) = view
                .position(uid)
                .and_then(|i| view.msg_at(i).map(|m| (i, m)))
            {
                let items = vec![
                    imap_codec::imap_types::fetch::MessageDataItem::Flags(fetch::flags(
                        &m.flags,
                        view.recent.contains(&uid) && !self.rev2,
                    )),
                    imap_codec::imap_types::fetch::MessageDataItem::Uid(
                        NonZeroU32::new(uid).unwrap_or(NonZeroU32::MIN),
                    ),
                ];
                fetches.push(fetch::encode(i as u32 + 1, items));
            }
        }
        if view.gone {
            lines.push("* BYE Mailbox was deleted or renamed".to_string());
        }
        for l in lines {
            self.push(&l);
        }
        for f in fetches {
            self.out.extend_from_slice(&f);
        }
    }

    /// Sends FLAGS and PERMANENTFLAGS again when `flags` carry a keyword
    /// the client has not been told of; called before any FETCH response
    /// that shows flags (RFC 9051 7.3.5: a client learns the mailbox's
    /// keywords from FLAGS).
    fn announce_keywords(&mut self, flags: &pb::Flags) {
        let Some(view) = self.view.as_mut() else {
            return;
        };
        let learnt = view.learn_keywords(flags);
        if learnt || std::mem::take(&mut view.owe_flags) {
            view.owe_flags = false;
            for l in view.flags_responses() {
                self.push(&l);
            }
        }
    }

    async fn idle(&mut self, tag: &str) -> Result<bool, End> {
        self.drain_updates(true);
        self.push("+ idling");
        self.flush().await?;
        let timeout = self.settings().idle_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let shutdown = self.ctx.shutdown.clone();
        loop {
            // Anything already framed is the DONE line.
            if let Some(FragmentInfo::Line { .. }) = self.frag.progress()
                && self.frag.is_message_complete()
            {
                let line = String::from_utf8_lossy(self.frag.message_bytes())
                    .trim()
                    .to_ascii_uppercase();
                if line == "DONE" {
                    self.drain_updates(true);
                    self.push(&format!("{tag} OK IDLE terminated"));
                    return Ok(true);
                }
                self.push(&format!("{tag} BAD Expected DONE"));
                return Ok(true);
            }
            let mut rx = self.view.as_ref().map(|v| v.changes());
            let event = tokio::select! {
                b = self.conn.read_some(READ_CHUNK, timeout) => Event::Bytes(b),
                _ = changed(&mut rx) => Event::Change,
                _ = tokio::time::sleep_until(deadline) => Event::Timeout,
                _ = shutdown.cancelled() => Event::Shutdown,
            };
            match event {
                Event::Bytes(Ok(b)) if b.is_empty() => return Err(End::Closed),
                Event::Bytes(Ok(b)) => self.frag.enqueue_bytes(&b),
                Event::Bytes(Err(ReadError::Timeout)) | Event::Timeout => {
                    self.push("* BYE Autologout; idle for too long");
                    self.flush().await?;
                    return Ok(false);
                }
                Event::Bytes(Err(ReadError::Io(e))) => return Err(e.into()),
                Event::Change => {
                    self.drain_updates(true);
                    self.flush().await?;
                }
                Event::Shutdown => {
                    self.push("* BYE Server shutting down");
                    self.flush().await?;
                    return Ok(false);
                }
            }
        }
    }

    // ------------------------------------------------------------ selected

    /// (positions, uids) of a sequence set; `Err` for a bad message number.
    fn resolve(&self, set: &SequenceSet, uid: bool) -> Result<Vec<usize>, Done> {
        let Some(view) = &self.view else {
            return Err(Done::bad("No mailbox selected"));
        };
        if uid {
            Ok(imap_wire::seq::uid_positions(set, &view.uids()))
        } else {
            match imap_wire::seq::message_numbers(set, view.exists()) {
                Some(nums) => Ok(nums.into_iter().map(|n| n as usize - 1).collect()),
                None => Err(Done::bad("Invalid message sequence number")),
            }
        }
    }

    async fn fetch(
        &mut self,
        set: &SequenceSet,
        names: &MacroOrMessageDataItemNames<'_>,
        uid: bool,
    ) -> Result<Done, End> {
        let positions = match self.resolve(set, uid) {
            Ok(p) => p,
            Err(d) => return Ok(d),
        };
        let plan = fetch::plan(names, uid);
        let Some(mut c) = self.client() else {
            return Ok(Done::bad("Log in first"));
        };
        let (mailbox, read_only, uid_validity) = match &self.view {
            Some(v) => (v.name.clone(), v.read_only, v.uid_validity()),
            None => return Ok(Done::bad("No mailbox selected")),
        };
        let account: Arc<str> = Arc::from(self.user.as_str());
        // Bodies come inline with the metadata: one store call per batch.
        let batch_size = if plan.body { BODY_BATCH } else { FETCH_BATCH };
        for batch in positions.chunks(batch_size) {
            let uids: Vec<u32> = match &self.view {
                Some(v) => batch.iter().map(|&i| v.uid_at(i).unwrap_or(0)).collect(),
                None => return Ok(Done::bad("No mailbox selected")),
            };
            // \Seen is set before the data is sent (RFC 9051 6.4.5).
            if plan.sets_seen && !read_only {
                let unseen: Vec<u32> = match &self.view {
                    Some(v) => batch
                        .iter()
                        .filter_map(|&i| v.msg_at(i))
                        .filter(|m| !m.flags.seen)
                        .map(|m| m.uid)
                        .collect(),
                    None => Vec::new(),
                };
                if !unseen.is_empty() {
                    let r = c
                        .store_flags(pb::StoreFlagsRequest {
                            mailbox: mailbox.clone(),
                            uids: Some(pb::UidSet::of(unseen)),
                            mode: pb::FlagsMode::Add as i32,
                            flags: Some(pb::Flags {
                                seen: true,
                                ..Default::default()
                            }),
                            unchanged_since: 0,
                        })
                        .await;
                    match r {
                        Ok(r) => {
                            if let Some(v) = self.view.as_mut() {
                                let updated = r.into_inner().updated;
                                let uids: Vec<u32> = updated.iter().map(|e| e.uid).collect();
                                // Told below, with the FETCH of each.
                                v.apply_own(updated);
                                v.pending_flags.extend(uids);
                            }
                        }
                        Err(s) => return Ok(store_no(&s)),
                    }
                }
            }
            // What never changes comes from the gateway's cache; the store
            // is asked once for the rest.
            let mut metas: std::collections::HashMap<u32, Arc<pb::MessageMeta>> =
                std::collections::HashMap::new();
            if plan.meta {
                let key = |uid| crate::cache::Key {
                    account: account.clone(),
                    uid_validity,
                    uid,
                };
                let mut missing = Vec::new();
                for &uid in &uids {
                    match self.ctx.cache.get(&key(uid), plan.body) {
                        Some(m) => {
                            metas.insert(uid, m);
                        }
                        None => missing.push(uid),
                    }
                }
                if !missing.is_empty() {
                    let r = c
                        .fetch(pb::FetchRequest {
                            mailbox: mailbox.clone(),
                            uids: Some(pb::UidSet::of(missing.iter().copied())),
                            with_summary: true,
                            changed_since: 0,
                            with_data: plan.body,
                        })
                        .await;
                    let mut s = match r {
                        Ok(s) => s.into_inner(),
                        Err(s) => return Ok(store_no(&s)),
                    };
                    loop {
                        match s.message().await {
                            Ok(Some(b)) => {
                                for m in b.messages {
                                    let uid = m.uid;
                                    metas.insert(uid, self.ctx.cache.insert(key(uid), m));
                                }
                            }
                            Ok(None) => break,
                            Err(s) => return Ok(store_no(&s)),
                        }
                    }
                }
            }
            for (k, &pos) in batch.iter().enumerate() {
                let uid = uids[k];
                if plan.meta && !metas.contains_key(&uid) {
                    // Gone from the store: RFC 9051 allows omitting it.
                    continue;
                }
                let inline = metas.get(&uid).and_then(|m| m.data.as_deref());
                // Larger messages are streamed on their own.
                let streamed = if plan.body && inline.is_none() {
                    // Only the header asked for: only the header read.
                    let length = if plan.header_only {
                        metas
                            .get(&uid)
                            .and_then(|m| m.summary.as_ref())
                            .and_then(|s| s.body.as_ref())
                            .map_or(0, |b| b.body_start)
                    } else {
                        0
                    };
                    match read_body(&mut c, &mailbox, uid, length).await {
                        Ok(b) => Some(b),
                        // Expunged elsewhere meanwhile: nothing to send.
                        Err(s) if s.code() == Code::NotFound => continue,
                        Err(s) => return Ok(store_no(&s)),
                    }
                } else {
                    None
                };
                let raw = inline.or(streamed.as_deref());
                if let Some(f) = self
                    .view
                    .as_ref()
                    .and_then(|v| v.msg_at(pos))
                    .map(|m| m.flags.clone())
                {
                    self.announce_keywords(&f);
                }
                let Some(view) = &self.view else { break };
                let Some(msg) = view.msg_at(pos) else {
                    continue;
                };
                let mut items = match fetch::items(
                    &plan,
                    msg,
                    view.recent.contains(&uid) && !self.rev2,
                    metas.get(&uid).map(|m| &**m),
                    raw,
                ) {
                    Ok(i) => i,
                    Err(fetch::ItemError::Binary(crate::structure::BinaryError::UnknownCte)) => {
                        return Ok(Done::no("[UNKNOWN-CTE] Unknown Content-Transfer-Encoding"));
                    }
                    Err(fetch::ItemError::Binary(_)) => {
                        return Ok(Done::no("[PARSE] Invalid data in MIME part"));
                    }
                };
                if plan.sets_seen
                    && !plan
                        .items
                        .contains(&imap_codec::imap_types::fetch::MessageDataItemName::Flags)
                    && view.pending_flags.contains(&uid)
                {
                    items.push(imap_codec::imap_types::fetch::MessageDataItem::Flags(
                        fetch::flags(&msg.flags, view.recent.contains(&uid)),
                    ));
                }
                let encoded = fetch::encode(pos as u32 + 1, items);
                self.out.extend_from_slice(&encoded);
                if let Some(v) = self.view.as_mut() {
                    v.pending_flags.remove(&uid);
                }
                self.maybe_flush().await?;
            }
        }
        Ok(Done::ok(if uid {
            "UID FETCH completed"
        } else {
            "FETCH completed"
        }))
    }

    async fn store(
        &mut self,
        set: &SequenceSet,
        kind: StoreType,
        response: StoreResponse,
        flags: &[Flag<'_>],
        uid: bool,
        unchanged_since: Option<u64>,
    ) -> Done {
        let positions = match self.resolve(set, uid) {
            Ok(p) => p,
            Err(d) => return d,
        };
        let pbflags = match to_pb_flags(flags) {
            Ok(f) => f,
            Err(d) => return d,
        };
        let Some(view) = &self.view else {
            return Done::bad("No mailbox selected");
        };
        if view.read_only {
            return Done::no("[READ-ONLY] Mailbox is read-only");
        }
        let mailbox = view.name.clone();
        let uids: Vec<u32> = positions.iter().filter_map(|&i| view.uid_at(i)).collect();
        if uids.is_empty() {
            return Done::ok("STORE completed");
        }
        let Some(mut c) = self.client() else {
            return Done::bad("Log in first");
        };
        let mode = match kind {
            StoreType::Replace => pb::FlagsMode::Replace,
            StoreType::Add => pb::FlagsMode::Add,
            StoreType::Remove => pb::FlagsMode::Remove,
        };
        let requested = pbflags.clone();
        let asked = uids.len();
        let r = c
            .store_flags(pb::StoreFlagsRequest {
                mailbox,
                uids: Some(pb::UidSet::of(uids)),
                mode: mode as i32,
                flags: Some(pbflags),
                unchanged_since: unchanged_since.unwrap_or(0),
            })
            .await;
        let r = match r {
            Ok(r) => r.into_inner(),
            Err(s) => return store_no(&s),
        };
        let silent = matches!(response, StoreResponse::Silent);
        // The store reports every message it found (changed or not) in
        // `updated` or `modified`; the rest were expunged meanwhile.
        let gone = asked.saturating_sub(r.updated.len() + r.modified.len());
        for e in &r.updated {
            if let Some(f) = &e.flags {
                self.announce_keywords(f);
            }
        }
        let Some(view) = self.view.as_mut() else {
            return Done::bad("No mailbox selected");
        };
        let mut out = Vec::new();
        // After .SILENT the client assumes its own change and nothing else;
        // if someone else's change is in the result (or was not told yet),
        // it still gets a FETCH. So does every message of a STORE that ends
        // NO (some were gone): the client cannot tell what was applied.
        let mut owed_fetch = Vec::new();
        for e in &r.updated {
            let Some(m) = view.position(e.uid).and_then(|i| view.msg_at(i)) else {
                continue;
            };
            let new = e.flags.clone().unwrap_or_default();
            let told = silent
                && gone == 0
                && !view.pending_flags.contains(&e.uid)
                && crate::view::same_flags(
                    &crate::view::apply_flags(&m.flags, mode, &requested),
                    &new,
                );
            if silent && !told {
                owed_fetch.push(e.uid);
            }
        }
        let updated = r.updated;
        let answered: Vec<(u32, pb::Flags, u64)> = updated
            .iter()
            .map(|e| (e.uid, e.flags.clone().unwrap_or_default(), e.modseq))
            .collect();
        view.apply_own(updated);
        for (u, _, modseq) in &answered {
            // Told by this STORE's answer, unless someone else's newer
            // change is in the view already: that one is still owed.
            if view.msg(*u).is_none_or(|m| m.modseq == *modseq) {
                view.pending_flags.remove(u);
            }
        }
        view.pending_flags.extend(owed_fetch);
        if !silent {
            for (u, f, _) in &answered {
                let Some(i) = view.position(*u) else { continue };
                let mut items = vec![imap_codec::imap_types::fetch::MessageDataItem::Flags(
                    fetch::flags(f, view.recent.contains(u) && !self.rev2),
                )];
                if uid && let Some(u) = NonZeroU32::new(*u) {
                    items.push(imap_codec::imap_types::fetch::MessageDataItem::Uid(u));
                }
                out.push(fetch::encode(i as u32 + 1, items));
            }
        }
        for o in out {
            self.out.extend_from_slice(&o);
        }
        if !r.modified.is_empty() {
            let list: Vec<String> = r.modified.iter().map(|u| u.to_string()).collect();
            return Done::ok(format!(
                "[MODIFIED {}] Conditional STORE failed for some",
                list.join(",")
            ));
        }
        if gone > 0 {
            // RFC 5530: someone else expunged some of them; the client
            // learns which with the EXPUNGEs of its next command.
            return Done::no("[EXPUNGEISSUED] Some messages were expunged meanwhile");
        }
        Done::ok("STORE completed")
    }

    async fn copy(
        &mut self,
        set: &SequenceSet,
        m: &Mailbox<'_>,
        uid: bool,
        remove: bool,
    ) -> Result<Done, End> {
        let positions = match self.resolve(set, uid) {
            Ok(p) => p,
            Err(d) => return Ok(d),
        };
        let dest = match self.mailbox_name(m) {
            Ok(n) => n,
            Err(d) => return Ok(d),
        };
        let Some(view) = &self.view else {
            return Ok(Done::bad("No mailbox selected"));
        };
        if remove && view.read_only {
            return Ok(Done::no("[READ-ONLY] Mailbox is read-only"));
        }
        let mailbox = view.name.clone();
        let uids: Vec<u32> = positions.iter().filter_map(|&i| view.uid_at(i)).collect();
        let verb = if remove { "MOVE" } else { "COPY" };
        if uids.is_empty() {
            return Ok(Done::ok(format!("{verb} completed")));
        }
        let Some(mut c) = self.client() else {
            return Ok(Done::bad("Log in first"));
        };
        let req = pb::CopyRequest {
            mailbox,
            uids: Some(pb::UidSet::of(uids)),
            destination: dest,
        };
        let r = if remove {
            c.r#move(req).await
        } else {
            c.copy(req).await
        };
        let r = match r {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == Code::NotFound => {
                return Ok(Done::no("[TRYCREATE] No such mailbox"));
            }
            Err(s) => return Ok(store_no(&s)),
        };
        self.added_here = (r.destination_uid_validity, r.destination_uids.clone());
        let code = format!(
            "[COPYUID {} {} {}]",
            r.destination_uid_validity,
            uid_list(&r.source_uids),
            uid_list(&r.destination_uids)
        );
        if remove {
            // RFC 6851: COPYUID in an untagged OK before the EXPUNGEs.
            self.push(&format!("* OK {code} Moved"));
            if let Some(v) = self.view.as_mut() {
                for seq in v.expunged_by_us(&r.source_uids) {
                    self.out
                        .extend_from_slice(format!("* {seq} EXPUNGE\r\n").as_bytes());
                }
            }
            return Ok(Done::ok("MOVE completed"));
        }
        Ok(Done::ok(format!("{code} COPY completed")))
    }

    /// EXPUNGE, UID EXPUNGE and CLOSE: removes \Deleted messages.
    async fn expunge_deleted(
        &mut self,
        set: Option<&SequenceSet>,
        announce: bool,
    ) -> Result<Done, End> {
        let Some(view) = &self.view else {
            return Ok(Done::bad("No mailbox selected"));
        };
        if view.read_only {
            return Ok(if announce {
                Done::no("[READ-ONLY] Mailbox is read-only")
            } else {
                Done::ok("CLOSE completed")
            });
        }
        let mailbox = view.name.clone();
        let uids = match set {
            Some(s) => {
                let all = view.uids();
                Some(pb::UidSet::of(
                    imap_wire::seq::uid_positions(s, &all)
                        .into_iter()
                        .map(|i| all[i]),
                ))
            }
            None => None,
        };
        let Some(mut c) = self.client() else {
            return Ok(Done::bad("Log in first"));
        };
        let r = c
            .expunge(pb::ExpungeRequest {
                mailbox,
                uids,
                ignore_deleted_flag: false,
                lease_id: String::new(),
            })
            .await;
        let r = match r {
            Ok(r) => r.into_inner(),
            Err(s) => return Ok(store_no(&s)),
        };
        if announce && let Some(v) = self.view.as_mut() {
            for seq in v.expunged_by_us(&r.expunged) {
                self.out
                    .extend_from_slice(format!("* {seq} EXPUNGE\r\n").as_bytes());
            }
        }
        Ok(Done::ok("EXPUNGE completed"))
    }

    async fn search(&mut self, tag: &str, criteria: &[SearchKey<'_>], uid: bool) -> Done {
        let Some(view) = &self.view else {
            return Done::bad("No mailbox selected");
        };
        let key = match crate::search::translate(criteria, view) {
            Ok(k) => k,
            Err(e) => return Done::bad(e.to_string()),
        };
        let mailbox = view.name.clone();
        let Some(mut c) = self.client() else {
            return Done::bad("Log in first");
        };
        let r = match c
            .search(pb::SearchRequest {
                mailbox,
                key: Some(key),
            })
            .await
        {
            Ok(r) => r.into_inner(),
            Err(s) => return store_no(&s),
        };
        let Some(view) = &self.view else {
            return Done::bad("No mailbox selected");
        };
        // Only messages this session knows about (new ones are announced
        // first, by EXISTS).
        let numbers: Vec<u32> = r
            .uids
            .iter()
            .filter_map(|&u| view.position(u).map(|i| if uid { u } else { i as u32 + 1 }))
            .collect();
        let ret = self.search_return.take();
        if ret.is_some_and(|o| o.save) {
            // SEARCHRES (RFC 5182): remember the result, as UIDs.
            self.saved = r
                .uids
                .iter()
                .copied()
                .filter(|&u| view.position(u).is_some())
                .collect();
        }
        match ret {
            Some(opts) => {
                if !opts.save_only() {
                    let line = imap_wire::ext::esearch_response(tag, uid, &opts, &numbers);
                    self.push(&line);
                }
            }
            // IMAP4rev2 answers every SEARCH with ESEARCH (RFC 9051 6.4.4).
            None if self.rev2 => {
                let line = imap_wire::ext::esearch_response(
                    tag,
                    uid,
                    &imap_wire::ext::SearchReturn::default(),
                    &numbers,
                );
                self.push(&line);
            }
            None => {
                let mut out = String::from("* SEARCH");
                for n in numbers {
                    out.push(' ');
                    out.push_str(&n.to_string());
                }
                self.push(&out);
            }
        }
        Done::ok(if uid {
            "UID SEARCH completed"
        } else {
            "SEARCH completed"
        })
    }
}

/// Whether the first line of a command message contains `word` as a
/// separate, case-insensitive token (a cheap filter before the extension
/// parsers).
fn first_line_has(msg: &[u8], word: &[u8]) -> bool {
    let line = msg.split(|&b| b == b'\n').next().unwrap_or(&[]);
    line.split(|&b| b == b' ').any(|t| {
        let t = t.strip_suffix(b"\r").unwrap_or(t);
        let end = t.iter().position(|&b| b == b')').unwrap_or(t.len());
        let t = &t[..end];
        let t = t.strip_prefix(b"(").unwrap_or(t);
        t.eq_ignore_ascii_case(word)
    })
}

enum Event {
    Bytes(Result<Vec<u8>, ReadError>),
    Change,
    Timeout,
    Shutdown,
}

/// Resolves when the shared view moves on; never without a view.
async fn changed(rx: &mut Option<tokio::sync::watch::Receiver<Arc<crate::shared::Snapshot>>>) {
    if let Some(r) = rx
        && r.changed().await.is_ok()
    {
        return;
    }
    std::future::pending().await
}

fn tokio_stream_iter<T: Send + 'static>(v: Vec<T>) -> tokio_stream::Iter<std::vec::IntoIter<T>> {
    tokio_stream::iter(v)
}

/// A message's bytes from the start: `length` of them, or all for 0.
async fn read_body(
    c: &mut MailboxClient,
    mailbox: &str,
    uid: u32,
    length: u64,
) -> Result<Vec<u8>, Status> {
    let mut s = c
        .fetch_body(pb::FetchBodyRequest {
            mailbox: mailbox.to_string(),
            uid,
            offset: 0,
            length,
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = s.message().await? {
        out.extend_from_slice(&chunk.data);
    }
    Ok(out)
}

/// A set in `uid-set` form, or a UID that no message can have (the empty
/// SEARCHRES result).
fn uid_list_or_none(v: &[u32]) -> String {
    if v.is_empty() {
        u32::MAX.to_string()
    } else {
        uid_list(v)
    }
}

/// A UID list in `uid-set` form (ascending runs as ranges).
fn uid_list(uids: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end + 1 {
            i += 1;
            end = uids[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}:{end}")
        });
        i += 1;
    }
    out.join(",")
}

fn to_pb_flags(flags: &[Flag<'_>]) -> Result<pb::Flags, Done> {
    let mut f = pb::Flags::default();
    for flag in flags {
        match flag {
            Flag::Seen => f.seen = true,
            Flag::Answered => f.answered = true,
            Flag::Flagged => f.flagged = true,
            Flag::Deleted => f.deleted = true,
            Flag::Draft => f.draft = true,
            Flag::Keyword(k) => f.keywords.push(k.inner().to_string()),
            Flag::Extension(_) => return Err(Done::bad("Unknown system flag")),
        }
    }
    Ok(f)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Every connection is a task holding its session's future: its size
    /// is paid by every idle session (issue #11's 32 KiB budget), so the
    /// larger commands run in futures of their own, boxed while they run.
    #[tokio::test]
    async fn a_waiting_session_is_a_small_future() {
        let (_, settings) = crate::config::ImapConfig::default().validate().unwrap();
        let ctx = Arc::new(Ctx {
            auth: CallAuth::new(None).unwrap(),
            channel: mailbox_api::channel("http://127.0.0.1:1").unwrap(),
            per_ip: PerIpLimit::new(10),
            cache: crate::cache::MetaCache::new(1 << 20),
            views: crate::shared::Views::default(),
            tls: None,
            settings,
            shutdown: CancellationToken::new(),
        });
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (tcp, peer) = l.accept().await.unwrap();
        let session = handle(ctx, tcp, peer, false);
        let size = std::mem::size_of_val(&session);
        println!("session future: {size} bytes");
        assert!(size <= 4 * 1024, "a session's future takes {size} bytes");
    }
}
