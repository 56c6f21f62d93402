//! `mailctl import` and `mailctl export`: moving whole accounts in and out.
//!
//! Import reads an IMAP server, a Maildir or mbox files and writes into an
//! account through the store's Mailbox API, with a session the Admin API
//! opens for that account (no user password needed on our side). Every
//! folder keeps its hierarchy, special use and subscription; every message
//! its flags, keywords, internal date and bytes.
//!
//! It is resumable without a state file: before copying a folder it indexes
//! what the target folder already holds and copies only the difference, as a
//! multiset (two identical messages in the source give two in the target).
//! A message is identified by its content hash (SHA-256 of its bytes, which
//! is the store's blob id) when the source is local files, and by
//! Message-ID + internal date + size when it is an IMAP server (cheap to
//! list without downloading bodies). Each folder ends with a count check:
//! every source message must be found in the target.

pub mod dest;
pub mod imap;
pub mod maildir;
pub mod mbox;

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use mailbox_api::pb;

use crate::admin::Target;
use dest::{Dest, Index};

#[derive(Subcommand)]
pub enum ImportCmd {
    /// Copy accounts from an IMAP server (imap:// with STARTTLS when offered,
    /// or imaps://). The password (yours, or the master user's) is read
    /// from stdin, or prompted for.
    Imap(ImapArgs),
    /// Copy a Maildir (Maildir++ `.Sub.Folder` or nested `Sub/Folder`
    /// layout, Dovecot keywords and subscriptions) into an account.
    Maildir(LocalArgs),
    /// Copy an mbox file (into INBOX) or a directory of mbox files (one
    /// folder each; subdirectories and Thunderbird's `.sbd` are hierarchy)
    /// into an account.
    Mbox(LocalArgs),
}

#[derive(Args)]
pub struct ImapArgs {
    /// imap://host[:port] or imaps://host[:port]
    pub url: String,
    /// Login name on the source server (default: the target account).
    #[arg(long)]
    pub user: Option<String>,
    /// The target account in this system.
    #[arg(long, required_unless_present = "accounts")]
    pub to: Option<String>,
    /// Log in as this master/admin user on behalf of each source user
    /// (SASL PLAIN with an authorization identity, RFC 4616); its password
    /// is read from stdin.
    #[arg(long)]
    pub master_user: Option<String>,
    /// Many accounts: a file of lines `source-user target-account [password]`
    /// (the password is the rest of the line; without --master-user it is
    /// required). `#` starts a comment.
    #[arg(long, conflicts_with_all = ["to", "user"])]
    pub accounts: Option<PathBuf>,
    /// Accept any server certificate (a test server's self-signed one).
    #[arg(long)]
    pub insecure: bool,
    /// Allow imap:// without STARTTLS to a host that is not loopback: the
    /// password then crosses the network unencrypted.
    #[arg(long)]
    pub allow_plaintext: bool,
    /// Also copy \All folders (Gmail's "All Mail"), which hold a second
    /// copy of every message.
    #[arg(long)]
    pub include_all: bool,
    /// Trust this PEM CA bundle for the server certificate (in addition to
    /// none: without it and without --insecure, only a certificate signed by
    /// a CA in this file is accepted on a TLS connection).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
}

#[derive(Args)]
pub struct LocalArgs {
    /// The Maildir directory, or the mbox file or directory.
    pub path: PathBuf,
    /// The target account in this system.
    #[arg(long)]
    pub to: String,
}

#[derive(Args)]
pub struct ExportArgs {
    /// The account to export.
    pub account: String,
    /// Output format.
    #[arg(long, value_enum)]
    pub format: Format,
    /// Output directory (created; must be empty or absent).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Maildir,
    Mbox,
}

/// A folder as a source presents it, in this system's naming (UTF-8, "/"
/// as the hierarchy separator, "INBOX").
#[derive(Debug, Clone)]
pub struct Folder {
    pub name: String,
    pub special_use: pb::SpecialUse,
    pub subscribed: bool,
    /// False for a name that only exists as a parent (`\Noselect`).
    pub selectable: bool,
}

/// One message to copy: its identity, metadata and where to read it.
#[derive(Debug, Clone)]
pub struct Entry<L> {
    pub key: Key,
    pub flags: pb::Flags,
    /// Unix seconds and zone offset in minutes.
    pub date: i64,
    pub tz: i32,
    pub size: u64,
    pub locator: L,
}

/// How a message is recognised in the target on a later run.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// SHA-256 of the bytes, hex: the store's blob id.
    Content(String),
    /// Message-ID (normalised), internal date (unix seconds), size.
    Meta(Vec<u8>, i64, u64),
}

/// What one folder's copy did.
#[derive(Debug, Default, Clone, Copy)]
pub struct FolderReport {
    pub source: usize,
    pub copied: usize,
    pub present: usize,
    pub bytes: u64,
    /// The source folder could not be read at all.
    pub unreadable: bool,
}

/// The message-ID a key uses: the first `<...>` of the header value, or the
/// trimmed value; empty when there is none.
pub fn normalise_message_id(raw: &[u8]) -> Vec<u8> {
    let s = raw.trim_ascii();
    if let Some(start) = s.iter().position(|&b| b == b'<')
        && let Some(len) = s[start..].iter().position(|&b| b == b'>')
    {
        return s[start..=start + len].to_vec();
    }
    s.to_vec()
}

/// Bare LF line ends become CRLF (what an IMAP server serves); CRLF stays.
pub fn to_crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 32);
    let mut prev = 0u8;
    for &b in data {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

/// The entries of `source` the target index does not hold yet, in source
/// order; matches are taken out of the index as a multiset.
pub fn missing<L: Clone>(source: &[Entry<L>], index: &mut Index) -> Vec<Entry<L>> {
    source
        .iter()
        .filter(|e| !index.take(&e.key))
        .cloned()
        .collect()
}

/// Progress of one account: a bar at a terminal, plain lines otherwise.
pub struct Progress {
    bar: Option<ProgressBar>,
    label: String,
    started: Instant,
    last_line: Instant,
    messages: u64,
    bytes: u64,
}

impl Progress {
    pub fn new(label: &str, total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new(total);
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} messages, {msg} ({per_sec}, eta {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.set_prefix(label.to_string());
            b
        });
        Self {
            bar,
            label: label.to_string(),
            started: Instant::now(),
            last_line: Instant::now(),
            messages: 0,
            bytes: 0,
        }
    }

    pub fn add(&mut self, messages: u64, bytes: u64) {
        self.messages += messages;
        self.bytes += bytes;
        if let Some(b) = &self.bar {
            b.inc(messages);
            b.set_message(human_bytes(self.bytes));
        } else if self.last_line.elapsed() >= Duration::from_secs(5) {
            self.last_line = Instant::now();
            eprintln!("{}: {}", self.label, self.rate());
        }
    }

    fn rate(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        format!(
            "{} messages, {} copied in {:.1} s ({:.0} messages/s, {}/s)",
            self.messages,
            human_bytes(self.bytes),
            secs,
            self.messages as f64 / secs,
            human_bytes((self.bytes as f64 / secs) as u64)
        )
    }

    pub fn println(&self, line: String) {
        match &self.bar {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
    }

    pub fn finish(self) -> String {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        self.rate()
    }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Prints the per-folder check and fails when a folder is incomplete.
pub fn conclude(
    account: &str,
    reports: &[(String, FolderReport)],
    summary: String,
) -> anyhow::Result<()> {
    let mut bad = Vec::new();
    for (name, r) in reports {
        let ok = r.copied + r.present == r.source && !r.unreadable;
        println!(
            "{account}  {name}: {} in source, {} copied, {} already there{}",
            r.source,
            r.copied,
            r.present,
            if ok { "" } else { "  INCOMPLETE" }
        );
        if !ok {
            bad.push(name.clone());
        }
    }
    println!("{account}: {summary}");
    if !bad.is_empty() {
        bail!("{account}: folders not complete: {}", bad.join(", "));
    }
    Ok(())
}

/// "INBOX" in any case is INBOX.
pub fn inbox_case(name: &str) -> String {
    if name.eq_ignore_ascii_case("INBOX") {
        "INBOX".to_string()
    } else {
        name.to_string()
    }
}

/// Folders in the order they are created: INBOX, then parents before
/// their children.
pub fn folder_order(a: &str, b: &str) -> std::cmp::Ordering {
    (a != "INBOX", a.split('/').collect::<Vec<_>>())
        .cmp(&(b != "INBOX", b.split('/').collect::<Vec<_>>()))
}

/// A file source's folders: the names it has (selectable), the parents
/// those only imply (not selectable), special use guessed from the name.
pub fn local_folders(
    have: &std::collections::HashSet<String>,
    subscribed: &std::collections::HashSet<String>,
) -> Vec<Folder> {
    let mut names: Vec<String> = have.iter().cloned().collect();
    for n in have {
        let parts: Vec<&str> = n.split('/').collect();
        for i in 1..parts.len() {
            let p = parts[..i].join("/");
            if !have.contains(&p) && !names.contains(&p) {
                names.push(p);
            }
        }
    }
    names.sort_by(|a, b| folder_order(a, b));
    names
        .into_iter()
        .map(|name| Folder {
            special_use: guess_special_use(&name),
            subscribed: subscribed.contains(&name),
            selectable: have.contains(&name),
            name,
        })
        .collect()
}

/// Dovecot's subscriptions file: version 2 is a `V\t2` header, an empty
/// line, then names with TAB between levels; version 1 is one name per line
/// with `v1_separator` between levels. Levels are modified UTF-7.
pub fn parse_subscriptions(text: &str, v1_separator: char) -> std::collections::HashSet<String> {
    let mut lines = text.lines().peekable();
    let v2 = lines.peek().is_some_and(|l| l.starts_with("V\t"));
    if v2 {
        for l in lines.by_ref() {
            if l.is_empty() {
                break;
            }
        }
    }
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let sep = if v2 { '\t' } else { v1_separator };
            inbox_case(
                &l.split(sep)
                    .map(from_file_level)
                    .collect::<Vec<_>>()
                    .join("/"),
            )
        })
        .collect()
}

/// One level of a folder name as a file name: modified UTF-7 (ASCII, no
/// "/"), with "." written `%2E` and "%" written `%25`, since "." separates
/// levels in Maildir++ and starts hidden files in an mbox tree. A name can
/// then never climb out of the export directory.
pub fn to_file_level(level: &str) -> String {
    let mut out = String::new();
    for c in imap_wire::utf7::encode(level).chars() {
        match c {
            '%' => out.push_str("%25"),
            '.' => out.push_str("%2E"),
            c => out.push(c),
        }
    }
    out
}

/// The folder name level a file name stands for (see [`to_file_level`]);
/// a name that is not valid modified UTF-7 is taken as it is.
pub fn from_file_level(file: &str) -> String {
    let mut unescaped = String::with_capacity(file.len());
    let mut rest = file;
    while let Some(i) = rest.find('%') {
        unescaped.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 3).unwrap_or("");
        if code.eq_ignore_ascii_case("2E") {
            unescaped.push('.');
            rest = &rest[i + 3..];
        } else if code == "25" {
            unescaped.push('%');
            rest = &rest[i + 3..];
        } else {
            unescaped.push('%');
            rest = &rest[i + 1..];
        }
    }
    unescaped.push_str(rest);
    imap_wire::utf7::decode(&unescaped).unwrap_or(unescaped)
}

/// The special use a folder's name suggests, for sources without one
/// (Maildir, mbox): only top-level names, only the common spellings.
pub fn guess_special_use(name: &str) -> pb::SpecialUse {
    if name.contains('/') {
        return pb::SpecialUse::None;
    }
    match name.to_ascii_lowercase().as_str() {
        "sent" | "sent messages" | "sent items" | "sent mail" => pb::SpecialUse::Sent,
        "drafts" => pb::SpecialUse::Drafts,
        "trash" | "deleted messages" | "deleted items" | "bin" => pb::SpecialUse::Trash,
        "junk" | "spam" | "junk e-mail" => pb::SpecialUse::Junk,
        "archive" | "archives" => pb::SpecialUse::Archive,
        _ => pb::SpecialUse::None,
    }
}

/// Runs an import command.
pub async fn import(target: Target, cmd: ImportCmd) -> anyhow::Result<()> {
    match cmd {
        ImportCmd::Imap(args) => imap::run(&target, args).await,
        ImportCmd::Maildir(args) => {
            let source = maildir::Source::open(&args.path)?;
            let mut dest = Dest::open(&target, &args.to, "import").await?;
            local_import(&mut dest, &args.to, &source).await
        }
        ImportCmd::Mbox(args) => {
            let source = mbox::Source::open(&args.path)?;
            let mut dest = Dest::open(&target, &args.to, "import").await?;
            local_import(&mut dest, &args.to, &source).await
        }
    }
}

/// A source on the local disk: folders, their entries, and the bytes of one.
pub trait LocalSource {
    type Loc: Clone;
    fn folders(&self) -> &[Folder];
    fn entries(&self, folder: &Folder) -> anyhow::Result<Vec<Entry<Self::Loc>>>;
    fn read(&self, loc: &Self::Loc) -> anyhow::Result<Vec<u8>>;
}

async fn local_import<S: LocalSource>(
    dest: &mut Dest,
    account: &str,
    source: &S,
) -> anyhow::Result<()> {
    let mut plans = Vec::new();
    for f in source.folders() {
        dest.ensure_folder(f).await?;
        if f.selectable {
            plans.push((f.name.clone(), source.entries(f)?));
        }
    }
    let total: usize = plans.iter().map(|(_, e)| e.len()).sum();
    let mut progress = Progress::new(account, total as u64);
    let mut reports = Vec::new();
    for (name, entries) in plans {
        let mut index = dest.index(&name).await?;
        let todo = missing(&entries, &mut index);
        let mut report = FolderReport {
            source: entries.len(),
            present: entries.len() - todo.len(),
            ..Default::default()
        };
        progress.add(report.present as u64, 0);
        for e in &todo {
            // One unreadable or refused message must not stop the rest; the
            // check below reports the folder incomplete.
            let data = match source.read(&e.locator) {
                Ok(d) => d,
                Err(err) => {
                    progress.println(format!("{account}  {name}: not copied: {err:#}"));
                    continue;
                }
            };
            let n = data.len() as u64;
            if let Err(err) = dest.append(&name, &e.flags, e.date, e.tz, data).await {
                progress.println(format!(
                    "{account}  {name}: a message of {n} bytes not copied: {err:#}"
                ));
                continue;
            }
            report.copied += 1;
            report.bytes += n;
            progress.add(1, n);
        }
        progress.println(format!(
            "{account}  {name}: {} copied, {} already there",
            report.copied, report.present
        ));
        // The check: re-read the target and find every source message.
        let mut index = dest.index(&name).await?;
        let left = missing(&entries, &mut index).len();
        reports.push((name, recheck(report, left)));
    }
    dest.close().await;
    let summary = progress.finish();
    conclude(account, &reports, summary)
}

/// The report after the final check: `left` source messages not found.
fn recheck(mut r: FolderReport, left: usize) -> FolderReport {
    let found = r.source - left;
    r.copied = r.copied.min(found);
    r.present = found - r.copied;
    r
}

/// Runs `mailctl export`.
pub async fn export(target: Target, args: ExportArgs) -> anyhow::Result<()> {
    if args.out.exists()
        && std::fs::read_dir(&args.out)
            .with_context(|| format!("reading {}", args.out.display()))?
            .next()
            .is_some()
    {
        bail!("{} exists and is not empty", args.out.display());
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut dest = Dest::open(&target, &args.account, "export").await?;
    let folders = dest.folders().await?;
    let mut writer: Box<dyn FolderWriter> = match args.format {
        Format::Maildir => Box::new(maildir::Writer::new(&args.out)),
        Format::Mbox => Box::new(mbox::Writer::new(&args.out, &folders)),
    };
    let mut progress = Progress::new(&args.account, 0);
    let mut counts: HashMap<String, usize> = HashMap::new();
    for f in &folders {
        writer.folder(f)?;
        if !f.selectable {
            continue;
        }
        let metas = dest.messages(&f.name, false).await?;
        for m in &metas {
            let data = dest.body(&f.name, m).await?;
            let flags = m.flags.clone().unwrap_or_default();
            progress.add(1, data.len() as u64);
            writer.message(f, &flags, m.internal_date, m.internal_date_tz, &data)?;
        }
        counts.insert(f.name.clone(), metas.len());
    }
    writer.finish()?;
    dest.close().await;
    let summary = progress.finish();
    for f in folders.iter().filter(|f| f.selectable) {
        println!(
            "{}  {}: {} messages",
            args.account,
            f.name,
            counts.get(&f.name).copied().unwrap_or(0)
        );
    }
    println!("{}: {summary}", args.account);
    Ok(())
}

/// Writes an exported account in one format.
pub trait FolderWriter {
    fn folder(&mut self, folder: &Folder) -> anyhow::Result<()>;
    fn message(
        &mut self,
        folder: &Folder,
        flags: &pb::Flags,
        date: i64,
        tz: i32,
        data: &[u8],
    ) -> anyhow::Result<()>;
    fn finish(&mut self) -> anyhow::Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_only_where_missing() {
        assert_eq!(to_crlf(b"a\nb\r\nc\n"), b"a\r\nb\r\nc\r\n");
        assert_eq!(to_crlf(b""), b"");
    }

    #[test]
    fn file_levels_round_trip_and_stay_inside() {
        for level in [
            "..", ".", ".hidden", "a.b", "x.sbd", "100%", "%2E", "Été", "a&b", "inbox",
        ] {
            let f = to_file_level(level);
            assert!(!f.contains('.') && !f.contains('/'), "{level} -> {f}");
            assert_eq!(from_file_level(&f), level);
        }
        assert_eq!(from_file_level("Entw&APw-rfe"), "Entwürfe");
    }

    #[test]
    fn message_ids_compare_by_their_angle_brackets() {
        assert_eq!(normalise_message_id(b"  <a@b>  (c)\r\n"), b"<a@b>");
        assert_eq!(normalise_message_id(b" plain "), b"plain");
    }
}
