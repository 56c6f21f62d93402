//! Import from an IMAP server (RFC 9051 / RFC 3501): a small client over
//! imap-codec's response parser, with rustls for imaps:// and STARTTLS.
//!
//! Per folder it lists UID, FLAGS, INTERNALDATE, RFC822.SIZE and the
//! Message-ID header of every message (EXAMINE, so nothing changes on the
//! source), compares that with what the target already holds, and
//! downloads only the missing messages (`BODY.PEEK[]`), in batches, in UID
//! order.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use imap_codec::ResponseCodec;
use imap_codec::fragmentizer::Fragmentizer;
use imap_codec::imap_types::ToStatic;
use imap_codec::imap_types::fetch::MessageDataItem;
use imap_codec::imap_types::flag::{Flag, FlagFetch, FlagNameAttribute};
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::response::{Data, Response, Status, StatusKind};
use mailbox_api::pb;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::dest::Dest;
use super::{Entry, Folder, FolderReport, ImapArgs, Key, Progress, missing, normalise_message_id};
use crate::admin::Target;

/// The longest response accepted: a whole message with its literal.
const MAX_RESPONSE: u32 = 256 << 20;
/// Body downloads per UID FETCH: at most this many messages...
const BATCH_MESSAGES: usize = 200;
/// ...and about this many bytes.
const BATCH_BYTES: u64 = 16 << 20;
const TIMEOUT: Duration = Duration::from_secs(300);

/// A connection, plain or TLS; a plain one can be taken back for STARTTLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {
    fn into_tcp(self: Box<Self>) -> Option<TcpStream>;
}

impl Io for TcpStream {
    fn into_tcp(self: Box<Self>) -> Option<TcpStream> {
        Some(*self)
    }
}

impl Io for tokio_rustls::client::TlsStream<TcpStream> {
    fn into_tcp(self: Box<Self>) -> Option<TcpStream> {
        None
    }
}

/// One source account: who to log in as and where it goes.
struct Job {
    source_user: String,
    target: String,
    password: String,
}

pub async fn run(target: &Target, args: ImapArgs) -> anyhow::Result<()> {
    let url = Url::parse(&args.url)?;
    let tls = tls_config(&args)?;
    let mut jobs = Vec::new();
    if let Some(file) = &args.accounts {
        let master_pw = match &args.master_user {
            Some(_) => Some(crate::admin::read_secret("Master password: ")?),
            None => None,
        };
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(src), Some(dst)) = (words.next(), words.next()) else {
                bail!(
                    "{}:{}: want `source-user target-account [password]`",
                    file.display(),
                    n + 1
                );
            };
            // The password is the rest of the line after the second field.
            let rest = line
                .find(dst)
                .map(|i| line[i + dst.len()..].trim())
                .filter(|r| !r.is_empty());
            let password = match (&master_pw, rest) {
                (Some(pw), _) => pw.clone(),
                (None, Some(pw)) if !pw.is_empty() => pw.to_string(),
                _ => bail!(
                    "{}:{}: no password (and no --master-user)",
                    file.display(),
                    n + 1
                ),
            };
            jobs.push(Job {
                source_user: src.to_string(),
                target: dst.to_string(),
                password,
            });
        }
    } else {
        let to = args.to.clone().unwrap_or_default();
        let prompt = if args.master_user.is_some() {
            "Master password: "
        } else {
            "Source password: "
        };
        jobs.push(Job {
            source_user: args.user.clone().unwrap_or_else(|| to.clone()),
            target: to,
            password: crate::admin::read_secret(prompt)?,
        });
    }
    let mut failed = Vec::new();
    for job in &jobs {
        if let Err(e) = one_account(target, &url, tls.clone(), &args, job).await {
            eprintln!("{}: {e:#}", job.target);
            failed.push(job.target.clone());
        }
    }
    if !failed.is_empty() {
        bail!(
            "{} of {} accounts failed: {}",
            failed.len(),
            jobs.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

struct Url {
    host: String,
    port: u16,
    implicit_tls: bool,
}

impl Url {
    fn parse(s: &str) -> anyhow::Result<Self> {
        let (implicit_tls, rest) = if let Some(r) = s.strip_prefix("imaps://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("imap://") {
            (false, r)
        } else {
            bail!("{s}: want imap://host[:port] or imaps://host[:port]");
        };
        let rest = rest.trim_end_matches('/');
        let default = if implicit_tls { 993 } else { 143 };
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| anyhow::anyhow!("{s}: unclosed ["))?;
            match after.strip_prefix(':') {
                Some(p) => (h, p.parse().with_context(|| format!("port in {s}"))?),
                None => (h, default),
            }
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, p.parse().with_context(|| format!("port in {s}"))?),
                None => (rest, default),
            }
        };
        let host = host.to_string();
        anyhow::ensure!(!host.is_empty(), "{s}: no host");
        Ok(Self {
            host,
            port,
            implicit_tls,
        })
    }
}

fn tls_config(args: &ImapArgs) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let config = if args.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        match &args.ca_file {
            Some(p) => {
                use rustls_pki_types::pem::PemObject;
                for cert in rustls_pki_types::CertificateDer::pem_file_iter(p)
                    .with_context(|| format!("reading {}", p.display()))?
                {
                    roots.add(cert?)?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// `--insecure`: every certificate is accepted; signatures are still
/// checked so the handshake itself is sound.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// One IMAP connection.
struct Client {
    io: Box<dyn Io>,
    frag: Fragmentizer,
    buf: Vec<u8>,
    tag: u32,
    caps: Vec<String>,
}

/// A response and the bytes it came in (for what the typed form drops).
struct Resp {
    raw: Vec<u8>,
    parsed: Response<'static>,
}

impl Client {
    async fn connect(
        url: &Url,
        tls: Arc<rustls::ClientConfig>,
        allow_plaintext: bool,
    ) -> anyhow::Result<Self> {
        let tcp = tokio::time::timeout(
            Duration::from_secs(30),
            TcpStream::connect((url.host.as_str(), url.port)),
        )
        .await
        .map_err(|_| anyhow::anyhow!("connecting to {}:{}: timed out", url.host, url.port))?
        .with_context(|| format!("connecting to {}:{}", url.host, url.port))?;
        tcp.set_nodelay(true)?;
        let name = rustls_pki_types::ServerName::try_from(url.host.clone())?;
        let io: Box<dyn Io> = if url.implicit_tls {
            Box::new(
                tokio_rustls::TlsConnector::from(tls.clone())
                    .connect(name.clone(), tcp)
                    .await
                    .context("TLS handshake")?,
            )
        } else {
            Box::new(tcp)
        };
        let mut c = Self {
            io,
            frag: Fragmentizer::new(MAX_RESPONSE),
            buf: vec![0; 64 * 1024],
            tag: 0,
            caps: Vec::new(),
        };
        let greeting = c.read().await?;
        match &greeting.parsed {
            Response::Status(Status::Untagged(b)) if b.kind == StatusKind::Ok => {}
            _ => bail!(
                "greeting: {}",
                String::from_utf8_lossy(&greeting.raw).trim_end()
            ),
        }
        c.capability().await?;
        if !url.implicit_tls && c.has("STARTTLS") {
            c.simple("STARTTLS").await?;
            let tcp =
                c.io.into_tcp()
                    .ok_or_else(|| anyhow::anyhow!("STARTTLS on a TLS connection"))?;
            let tls = tokio_rustls::TlsConnector::from(tls)
                .connect(name, tcp)
                .await
                .context("TLS handshake after STARTTLS")?;
            c = Self {
                io: Box::new(tls),
                frag: Fragmentizer::new(MAX_RESPONSE),
                buf: vec![0; 64 * 1024],
                tag: 0,
                caps: Vec::new(),
            };
            c.capability().await?;
        } else if !url.implicit_tls && !allow_plaintext && !is_loopback(&url.host) {
            // No password goes over an unencrypted connection to another
            // machine (an attacker in between can remove STARTTLS).
            bail!(
                "{}:{} offers no STARTTLS: use imaps://, or --allow-plaintext to send the \
                 password unencrypted",
                url.host,
                url.port
            );
        }
        Ok(c)
    }

    fn has(&self, cap: &str) -> bool {
        self.caps.iter().any(|c| c.eq_ignore_ascii_case(cap))
    }

    async fn read(&mut self) -> anyhow::Result<Resp> {
        loop {
            while self.frag.progress().is_some() {
                if !self.frag.is_message_complete() {
                    continue;
                }
                let raw = self.frag.message_bytes().to_vec();
                return match self.frag.decode_message(&ResponseCodec::default()) {
                    Ok(r) => Ok(Resp {
                        raw,
                        parsed: r.to_static(),
                    }),
                    Err(e) => bail!(
                        "response does not parse ({e:?}): {}",
                        String::from_utf8_lossy(&raw[..raw.len().min(200)])
                    ),
                };
            }
            let n = tokio::time::timeout(TIMEOUT, self.io.read(&mut self.buf))
                .await
                .map_err(|_| anyhow::anyhow!("no response from the server in {TIMEOUT:?}"))??;
            anyhow::ensure!(n > 0, "the server closed the connection");
            self.frag.enqueue_bytes(&self.buf[..n]);
        }
    }

    /// Sends a command and reads to its tagged response; untagged responses
    /// go to `each`. Fails unless OK.
    async fn command(
        &mut self,
        line: &str,
        mut each: impl FnMut(Resp) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        self.tag += 1;
        let tag = format!("m{}", self.tag);
        self.io
            .write_all(format!("{tag} {line}\r\n").as_bytes())
            .await?;
        self.io.flush().await?;
        loop {
            let r = self.read().await?;
            match &r.parsed {
                Response::Status(Status::Tagged(t)) if t.tag.inner() == tag => {
                    if t.body.kind == StatusKind::Ok {
                        return Ok(());
                    }
                    let verb = line.split(' ').next().unwrap_or("");
                    bail!(
                        "{verb}: {}",
                        String::from_utf8_lossy(&r.raw)
                            .trim_end()
                            .trim_start_matches(&*tag)
                    );
                }
                Response::Status(Status::Bye(b)) => bail!("the server said BYE: {}", b.text),
                _ => each(r)?,
            }
        }
    }

    async fn simple(&mut self, line: &str) -> anyhow::Result<()> {
        self.command(line, |_| Ok(())).await
    }

    async fn capability(&mut self) -> anyhow::Result<()> {
        let mut caps = Vec::new();
        self.command("CAPABILITY", |r| {
            let text = String::from_utf8_lossy(&r.raw);
            if let Some(rest) = text.strip_prefix("* CAPABILITY ") {
                caps.extend(rest.split_whitespace().map(str::to_string));
            }
            Ok(())
        })
        .await?;
        self.caps = caps;
        Ok(())
    }

    /// SASL PLAIN (RFC 4616), with an authorization identity for a master
    /// login; LOGIN when the server offers no PLAIN and none is needed.
    async fn login(&mut self, user: &str, master: Option<&str>, pw: &str) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.has("LOGINDISABLED") || self.has("AUTH=PLAIN"),
            "the server refuses logins on this connection (LOGINDISABLED)"
        );
        let b64 = base64::engine::general_purpose::STANDARD;
        if self.has("AUTH=PLAIN") || master.is_some() {
            let (authz, authc) = match master {
                Some(m) => (user, m),
                None => ("", user),
            };
            let blob = b64.encode(format!("{authz}\0{authc}\0{pw}"));
            if self.has("SASL-IR") {
                self.simple(&format!("AUTHENTICATE PLAIN {blob}")).await?;
            } else {
                self.tag += 1;
                let tag = format!("m{}", self.tag);
                self.io
                    .write_all(format!("{tag} AUTHENTICATE PLAIN\r\n").as_bytes())
                    .await?;
                loop {
                    let r = self.read().await?;
                    match &r.parsed {
                        Response::CommandContinuationRequest(_) => {
                            self.io.write_all(format!("{blob}\r\n").as_bytes()).await?;
                        }
                        Response::Status(Status::Tagged(t)) if t.tag.inner() == tag => {
                            anyhow::ensure!(
                                t.body.kind == StatusKind::Ok,
                                "AUTHENTICATE: {}",
                                t.body.text
                            );
                            break;
                        }
                        _ => {}
                    }
                }
            }
        } else {
            anyhow::ensure!(
                !pw.contains(['\r', '\n']) && !user.contains(['\r', '\n']),
                "this password cannot be sent with LOGIN"
            );
            self.simple(&format!("LOGIN {} {}", quote(user), quote(pw)))
                .await?;
        }
        self.capability().await
    }
}

/// A loopback address or `localhost`: traffic that never leaves the host.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// An IMAP quoted string.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A source folder: its name on the server (modified UTF-7, as sent) and
/// ours.
struct SourceFolder {
    wire: String,
    folder: Folder,
}

fn mailbox_wire(m: &Mailbox<'_>) -> String {
    match m {
        Mailbox::Inbox => "INBOX".to_string(),
        Mailbox::Other(o) => String::from_utf8_lossy(o.as_ref()).into_owned(),
    }
}

/// Our name for a server name: decoded, the server's separator replaced by
/// "/", INBOX in capitals.
fn our_name(wire: &str, delimiter: Option<char>) -> String {
    let decoded = imap_wire::utf7::decode(wire).unwrap_or_else(|_| wire.to_string());
    let parts: Vec<String> = match delimiter {
        Some(d) if d != '/' => decoded.split(d).map(|p| p.replace('/', "_")).collect(),
        _ => decoded.split('/').map(str::to_string).collect(),
    };
    let name = parts.join("/");
    if name.eq_ignore_ascii_case("INBOX") {
        "INBOX".into()
    } else if parts
        .first()
        .is_some_and(|p| p.eq_ignore_ascii_case("INBOX"))
        && parts.len() > 1
    {
        format!("INBOX/{}", parts[1..].join("/"))
    } else {
        name
    }
}

fn special_use_of(attrs: &[FlagNameAttribute<'_>]) -> pb::SpecialUse {
    for a in attrs {
        let s = a.to_string().to_ascii_lowercase();
        let u = match s.as_str() {
            "\\sent" => pb::SpecialUse::Sent,
            "\\drafts" => pb::SpecialUse::Drafts,
            "\\trash" => pb::SpecialUse::Trash,
            "\\junk" => pb::SpecialUse::Junk,
            "\\archive" => pb::SpecialUse::Archive,
            "\\all" => pb::SpecialUse::All,
            "\\flagged" => pb::SpecialUse::Flagged,
            _ => continue,
        };
        return u;
    }
    pb::SpecialUse::None
}

async fn list_folders(c: &mut Client) -> anyhow::Result<Vec<SourceFolder>> {
    let mut out: Vec<SourceFolder> = Vec::new();
    let cmd = if c.has("SPECIAL-USE") && c.has("LIST-EXTENDED") {
        "LIST \"\" \"*\" RETURN (SPECIAL-USE)"
    } else {
        "LIST \"\" \"*\""
    };
    c.command(cmd, |r| {
        if let Response::Data(Data::List {
            items,
            delimiter,
            mailbox,
        }) = r.parsed
        {
            let wire = mailbox_wire(&mailbox);
            let selectable = !items.iter().any(|a| {
                matches!(a, FlagNameAttribute::Noselect)
                    || a.to_string().eq_ignore_ascii_case("\\NonExistent")
            });
            out.push(SourceFolder {
                folder: Folder {
                    name: our_name(&wire, delimiter.map(|d| d.inner())),
                    special_use: special_use_of(&items),
                    subscribed: false,
                    selectable,
                },
                wire,
            });
        }
        Ok(())
    })
    .await?;
    let mut subscribed = Vec::new();
    c.command("LSUB \"\" \"*\"", |r| {
        if let Response::Data(Data::Lsub {
            delimiter, mailbox, ..
        }) = r.parsed
        {
            subscribed.push(our_name(
                &mailbox_wire(&mailbox),
                delimiter.map(|d| d.inner()),
            ));
        }
        Ok(())
    })
    .await?;
    for f in &mut out {
        f.folder.subscribed = subscribed.contains(&f.folder.name);
    }
    out.sort_by(|a, b| super::folder_order(&a.folder.name, &b.folder.name));
    Ok(out)
}

/// The Message-ID field's value in a header block.
fn message_id_of(header: &[u8]) -> Vec<u8> {
    let mut value: Option<Vec<u8>> = None;
    for line in header.split_inclusive(|&b| b == b'\n') {
        if let Some(v) = &mut value {
            if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
                v.extend_from_slice(line);
                continue;
            }
            break;
        }
        if line.len() > 11 && line[..11].eq_ignore_ascii_case(b"message-id:") {
            value = Some(line[11..].to_vec());
        }
    }
    value.map(|v| normalise_message_id(&v)).unwrap_or_default()
}

fn flags_of(items: &[FlagFetch<'_>]) -> pb::Flags {
    let mut f = pb::Flags::default();
    for i in items {
        match i {
            FlagFetch::Flag(Flag::Seen) => f.seen = true,
            FlagFetch::Flag(Flag::Answered) => f.answered = true,
            FlagFetch::Flag(Flag::Flagged) => f.flagged = true,
            FlagFetch::Flag(Flag::Deleted) => f.deleted = true,
            FlagFetch::Flag(Flag::Draft) => f.draft = true,
            FlagFetch::Flag(Flag::Keyword(k)) => f.keywords.push(k.inner().to_string()),
            _ => {}
        }
    }
    f
}

/// UID, flags, date and identity of every message in the selected folder.
async fn list_messages(c: &mut Client) -> anyhow::Result<Vec<Entry<u32>>> {
    let mut out = Vec::new();
    c.command(
        "UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])",
        |r| {
            if let Response::Data(Data::Fetch { items, .. }) = r.parsed {
                let (mut uid, mut flags, mut date, mut tz, mut size, mut id) =
                    (0, pb::Flags::default(), None, 0i32, None, Vec::new());
                for item in AsRef::<[MessageDataItem<'_>]>::as_ref(&items) {
                    match item {
                        MessageDataItem::Uid(u) => uid = u.get(),
                        MessageDataItem::Flags(f) => flags = flags_of(f),
                        MessageDataItem::InternalDate(d) => {
                            let d = d.as_ref();
                            date = Some(d.timestamp());
                            tz = d.offset().local_minus_utc() / 60;
                        }
                        MessageDataItem::Rfc822Size(s) => size = Some(u64::from(*s)),
                        MessageDataItem::BodyExt { data, .. } => {
                            id = message_id_of(data.0.as_ref().map_or(&b""[..], |s| s.as_ref()));
                        }
                        _ => {}
                    }
                }
                // Only complete answers: a server may send unsolicited
                // FETCH (FLAGS) for other messages meanwhile.
                if let (true, Some(date), Some(size)) = (uid != 0, date, size) {
                    out.push(Entry {
                        key: Key::Meta(id, date, size),
                        flags,
                        date,
                        tz,
                        size,
                        locator: uid,
                    });
                }
            }
            Ok(())
        },
    )
    .await?;
    out.sort_by_key(|e| e.locator);
    Ok(out)
}

/// The bytes of these UIDs, by UID.
async fn download(c: &mut Client, uids: &[u32]) -> anyhow::Result<Vec<(u32, Vec<u8>)>> {
    let set = uids
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut out = Vec::with_capacity(uids.len());
    c.command(&format!("UID FETCH {set} (UID BODY.PEEK[])"), |r| {
        if let Response::Data(Data::Fetch { items, .. }) = r.parsed {
            let mut uid = 0;
            let mut body = None;
            for item in AsRef::<[MessageDataItem<'_>]>::as_ref(&items) {
                match item {
                    MessageDataItem::Uid(u) => uid = u.get(),
                    MessageDataItem::BodyExt {
                        section: None,
                        data,
                        ..
                    } => body = Some(data.0.as_ref().map_or(Vec::new(), |s| s.as_ref().to_vec())),
                    _ => {}
                }
            }
            if let (true, Some(b)) = (uid != 0, body) {
                out.push((uid, b));
            }
        }
        Ok(())
    })
    .await?;
    Ok(out)
}

async fn one_account(
    target: &Target,
    url: &Url,
    tls: Arc<rustls::ClientConfig>,
    args: &ImapArgs,
    job: &Job,
) -> anyhow::Result<()> {
    let master = args.master_user.as_deref();
    let mut c = Client::connect(url, tls, args.allow_plaintext).await?;
    c.login(&job.source_user, master, &job.password)
        .await
        .with_context(|| format!("logging in to the source as {}", job.source_user))?;
    let folders = list_folders(&mut c).await?;
    let mut dest = Dest::open(target, &job.target, "import").await?;
    let mut plans = Vec::new();
    let mut reports = Vec::new();
    for f in &folders {
        if f.folder.special_use == pb::SpecialUse::All && !args.include_all {
            // Gmail's "All Mail" (and virtual All folders) hold a second
            // copy of every message.
            eprintln!(
                "{}: {} is an \\All folder (a copy of every message): left out; \
                 --include-all copies it too",
                job.target, f.folder.name
            );
            continue;
        }
        dest.ensure_folder(&f.folder).await?;
        if f.folder.selectable {
            let listed = match c.simple(&format!("EXAMINE {}", quote(&f.wire))).await {
                Ok(()) => list_messages(&mut c).await,
                Err(e) => Err(e),
            };
            match listed {
                Ok(entries) => plans.push((f.folder.name.clone(), f.wire.clone(), entries)),
                Err(e) => {
                    eprintln!("{}: {}: cannot be read: {e:#}", job.target, f.wire);
                    reports.push((
                        f.folder.name.clone(),
                        FolderReport {
                            unreadable: true,
                            ..Default::default()
                        },
                    ));
                }
            }
        }
    }
    let total: usize = plans.iter().map(|p| p.2.len()).sum();
    let mut progress = Progress::new(&job.target, total as u64);
    for (name, wire, entries) in plans {
        let mut index = dest.index(&name).await?;
        let todo = missing(&entries, &mut index);
        let mut report = FolderReport {
            source: entries.len(),
            present: entries.len() - todo.len(),
            ..Default::default()
        };
        progress.add(report.present as u64, 0);
        if !todo.is_empty() {
            c.simple(&format!("EXAMINE {}", quote(&wire))).await?;
        }
        let mut rest = &todo[..];
        while !rest.is_empty() {
            let mut n = 0;
            let mut bytes = 0;
            while n < rest.len() && n < BATCH_MESSAGES && (n == 0 || bytes < BATCH_BYTES) {
                bytes += rest[n].size;
                n += 1;
            }
            let (batch, tail) = rest.split_at(n);
            rest = tail;
            let uids: Vec<u32> = batch.iter().map(|e| e.locator).collect();
            let mut got = download(&mut c, &uids).await?;
            got.sort_by_key(|(u, _)| *u);
            for e in batch {
                // A message expunged on the source meanwhile is skipped;
                // the final check reports it.
                let Ok(i) = got.binary_search_by_key(&e.locator, |(u, _)| *u) else {
                    continue;
                };
                let data = std::mem::take(&mut got[i].1);
                let len = data.len() as u64;
                if len != e.size {
                    progress.println(format!(
                        "{}  {name}: UID {} is {len} bytes, the server said {} (RFC822.SIZE); \
                         a later run will not recognise it",
                        job.target, e.locator, e.size
                    ));
                }
                if let Err(err) = dest.append(&name, &e.flags, e.date, e.tz, data).await {
                    // One message the store refuses (too large, a keyword
                    // it does not take) must not stop the rest; the check
                    // below reports the folder incomplete.
                    progress.println(format!(
                        "{}  {name}: UID {} not copied: {err:#}",
                        job.target, e.locator
                    ));
                    continue;
                }
                report.copied += 1;
                report.bytes += len;
                progress.add(1, len);
            }
        }
        progress.println(format!(
            "{}  {name}: {} copied, {} already there",
            job.target, report.copied, report.present
        ));
        let mut index = dest.index(&name).await?;
        let left = missing(&entries, &mut index).len();
        let found = report.source - left;
        report.copied = report.copied.min(found);
        report.present = found - report.copied;
        reports.push((name, report));
    }
    let _ = c.simple("LOGOUT").await;
    dest.close().await;
    super::conclude(&job.target, &reports, progress.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_take_our_separator() {
        assert_eq!(our_name("Archive.2024", Some('.')), "Archive/2024");
        assert_eq!(our_name("a/b.c", Some('.')), "a_b/c");
        assert_eq!(our_name("inbox", Some('/')), "INBOX");
        assert_eq!(our_name("&AMk-t&AOk-", Some('/')), "Été");
    }

    #[test]
    fn only_loopback_may_go_without_tls() {
        for h in ["localhost", "127.0.0.1", "127.9.9.9", "::1"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "mail.example.org",
            "10.0.0.1",
            "192.0.2.1",
            "::2",
            "localhost.evil.example",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn message_id_unfolds() {
        assert_eq!(
            message_id_of(b"Message-ID:\r\n <x@y>\r\n\r\n"),
            b"<x@y>".to_vec()
        );
        assert_eq!(message_id_of(b"\r\n"), Vec::<u8>::new());
    }

    #[test]
    fn urls() {
        let u = Url::parse("imaps://mail.example:1993/").expect("url");
        assert_eq!(
            (u.host.as_str(), u.port, u.implicit_tls),
            ("mail.example", 1993, true)
        );
        let u = Url::parse("imap://[::1]").expect("url");
        assert_eq!(
            (u.host.as_str(), u.port, u.implicit_tls),
            ("::1", 143, false)
        );
    }
}
