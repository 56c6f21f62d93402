//! One IMAP session: the connection, its state (NOT AUTHENTICATED ->
//! AUTHENTICATED -> SELECTED -> LOGOUT, RFC 9051 3) and the response
//! buffer. Framing and the command loop are in `framing`, dispatch by
//! state in `dispatch`, the untagged updates of the selected mailbox in
//! `updates`, and each command family in a module of its own: a new
//! extension is a new module with an `impl Session` block.

mod append;
mod auth;
mod catenate;
mod compress;
mod condstore;
mod contexts;
mod copy;
mod dispatch;
mod expunge;
mod fetching;
mod framing;
mod list;
mod mailboxes;
mod metadata;
mod multisearch;
mod notify;
mod quota;
mod searching;
mod sorting;
mod status;
mod store;
mod updates;
mod urlauth;

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
use mailbox_api::StoreChannel;
use mailbox_api::{CallAuth, MailboxClient, pb};
use service_kit::CancellationToken;
use service_kit::conn::{Connection, ReadError, Stream};
use service_kit::limit::PerIpLimit;
use tokio::net::TcpStream;
use tonic::{Code, Status};

use crate::config::ImapSettings;
use crate::fetch;
use crate::view::View;

pub(crate) struct Ctx {
    pub settings: ImapSettings,
    pub tls: Option<service_kit::tls::ReloadingTls>,
    pub auth: CallAuth,
    pub channel: StoreChannel,
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
/// LITERAL- (RFC 7888 5): the largest non-synchronizing literal.
const LITERAL_MINUS_MAX: u32 = 4096;
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
        store: ctx.channel.pinned(),
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
        condstore: false,
        qresync: false,
        contexts: Vec::new(),
        deflate: None,
        catenate_budget: 0,
        literal_minus_breach: false,
        saved: Vec::new(),
        added_here: (0, Vec::new()),
        appended_upto: (0, 0),
        notify: None,
        fetch_extras: Default::default(),
        status_mailboxid: None,
        own_changes: Vec::new(),
        own_list: Vec::new(),
    };
    let span = tracing::info_span!("imap_session", %peer);
    tracing::Instrument::instrument(
        async move {
            if let Err(e) = s.run().await {
                tracing::debug!(error = %e, "session ended");
            }
            let _ = s.flush().await;
            // The view's store client lease goes first: its watcher may
            // use it until then, and the token dies with the logout.
            s.view = None;
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
    /// The store channel of this session: its calls start at one store
    /// replica (`StoreChannel::pinned`), where its token is cached and its
    /// writes meet the changes its views watch.
    store: StoreChannel,
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
    /// A CONDSTORE enabling command was seen (RFC 7162 3.1): untagged
    /// FETCH responses carry MODSEQ.
    condstore: bool,
    /// ENABLE QRESYNC (RFC 7162 3.2.3): VANISHED instead of EXPUNGE.
    qresync: bool,
    /// SEARCH / SORT results kept up to date (RFC 5267 4).
    contexts: Vec<contexts::SearchContext>,
    /// COMPRESS=DEFLATE once the client asked for it (RFC 4978).
    deflate: Option<Box<compress::Deflate>>,
    /// Bytes CATENATE URLs may still read in the current command.
    catenate_budget: u64,
    /// The message in progress broke LITERAL-'s 4,096-byte limit.
    literal_minus_breach: bool,
    /// The SEARCHRES saved result (RFC 5182), as UIDs.
    saved: Vec<u32>,
    /// (UIDVALIDITY, UIDs) of the messages the current command added
    /// (APPEND, COPY, MOVE): if that is the selected mailbox, the client
    /// hears of each, even one expunged by someone else meanwhile.
    added_here: (u32, Vec<u32>),
    /// (UIDVALIDITY, HIGHESTMODSEQ) after the APPEND of the current
    /// command: a view of that mailbox complete up to it needs no store
    /// call to announce what was added (see `sync_view`).
    appended_upto: (u32, u64),
    /// FETCH items imap-codec does not know, taken out of the current
    /// command (OBJECTID, SAVEDATE, PREVIEW).
    fetch_extras: imap_wire::ext::FetchExtras,
    /// STATUS asked for MAILBOXID (RFC 8474 4.2); `Some(true)` alone.
    status_mailboxid: Option<bool>,
    /// NOTIFY SET in effect (RFC 5465).
    notify: Option<notify::NotifyState>,
    /// Other mailboxes the current command added to (not echoed by NOTIFY).
    own_changes: Vec<(String, u32, u32)>,
    /// Mailboxes ("" for the server) whose list entry, subscription or
    /// METADATA the current command changed (not echoed by NOTIFY).
    own_list: Vec<String>,
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
            // RFC 7888 5: one or the other, never both.
            if self.settings().literal_minus {
                "LITERAL-".into()
            } else {
                "LITERAL+".into()
            },
            "MULTIAPPEND".into(),
            "CATENATE".into(),
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
            "MULTISEARCH".into(),
            "LIST-EXTENDED".into(),
            "LIST-STATUS".into(),
            "SPECIAL-USE".into(),
            "CREATE-SPECIAL-USE".into(),
            "BINARY".into(),
            "STATUS=SIZE".into(),
            "CONDSTORE".into(),
            "QRESYNC".into(),
            "SORT".into(),
            "SORT=DISPLAY".into(),
            "ESORT".into(),
            "CONTEXT=SEARCH".into(),
            "CONTEXT=SORT".into(),
            "QUOTA".into(),
            "QUOTA=RES-STORAGE".into(),
            "QUOTA=RES-MESSAGE".into(),
            "NOTIFY".into(),
            "METADATA".into(),
            "METADATA-SERVER".into(),
            "OBJECTID".into(),
            "SAVEDATE".into(),
            "PREVIEW".into(),
            "URLAUTH".into(),
            "URLAUTH=BINARY".into(),
            "WITHIN".into(),
            "COMPRESS=DEFLATE".into(),
            "THREAD=ORDEREDSUBJECT".into(),
            "THREAD=REFERENCES".into(),
            "UTF8=ACCEPT".into(),
            format!("APPENDLIMIT={}", self.settings().max_append),
        ];
        if self.client.is_some() {
            // RFC 8437: offered once authenticated.
            caps.push("UNAUTHENTICATE".into());
        }
        if self.client.is_none() {
            if self.ctx.tls.is_some() && !self.conn.is_tls() && self.deflate.is_none() {
                caps.push("STARTTLS".into());
            }
            if self.plaintext_ok() {
                caps.push("AUTH=PLAIN".into());
            } else {
                caps.push("LOGINDISABLED".into());
            }
            // SCRAM and the bearer tokens where PLAIN is (TLS or a trusted
            // network: a SCRAM exchange in the clear can be attacked
            // offline); -PLUS where the tls-exporter binding exists (TLS
            // 1.3).
            if self.plaintext_ok() {
                caps.push("AUTH=SCRAM-SHA-256".into());
            }
            if self.conn.tls_exporter().is_some() {
                caps.push("AUTH=SCRAM-SHA-256-PLUS".into());
            }
            if self.plaintext_ok() {
                caps.push("AUTH=OAUTHBEARER".into());
                caps.push("AUTH=XOAUTH2".into());
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
            self.write_out(true).await?;
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
            self.write_out(false).await?;
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

    fn client(&self) -> Option<MailboxClient> {
        self.client.clone()
    }

    /// (positions, uids) of a sequence set; `Err` for a bad message number.
    fn resolve(&self, set: &SequenceSet, uid: bool) -> Result<Vec<usize>, Done> {
        let Some(view) = &self.view else {
            return Err(Done::bad("No mailbox selected"));
        };
        if uid {
            Ok(view.uid_positions(set))
        } else {
            match imap_wire::seq::message_numbers(set, view.exists()) {
                Some(nums) => Ok(nums.into_iter().map(|n| n as usize - 1).collect()),
                None => Err(Done::bad("Invalid message sequence number")),
            }
        }
    }
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
