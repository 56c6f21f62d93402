//! mbox in and out: the mboxrd variant (a body line `>*From ` gains one `>`
//! when written and loses it when read), messages separated by a `From `
//! line after an empty line. Flags travel in the headers mail programs and
//! Dovecot use (`Status:` R, `X-Status:` A/F/T/D, `X-Keywords:`); those and
//! the other storage headers (`X-UID`, `X-IMAP`, `X-IMAPbase`,
//! `Content-Length`) are not part of the imported message, as Dovecot hides
//! them over IMAP. The `From ` line's date is the internal date.
//!
//! A directory is a tree of mbox files, one folder each: subdirectories
//! (also Thunderbird's `Name.sbd`) are levels, a top-level `inbox` is INBOX,
//! and `.subscriptions` (Dovecot) lists the subscribed names.

use std::collections::HashSet;
use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use mailbox_api::pb;
use sha2::{Digest, Sha256};

use super::{Entry, Folder, FolderWriter, Key, LocalSource, to_crlf};

/// Headers that carry mbox storage state, not message content.
const STATE_HEADERS: [&str; 7] = [
    "status",
    "x-status",
    "x-keywords",
    "x-uid",
    "x-imap",
    "x-imapbase",
    "content-length",
];

/// Where one message's raw bytes are in its file (after the `From ` line).
#[derive(Debug, Clone)]
pub struct Loc {
    path: PathBuf,
    start: u64,
    end: u64,
    quoted: bool,
}

pub struct Source {
    folders: Vec<Folder>,
    files: Vec<(String, PathBuf)>,
}

impl Source {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let mut files = Vec::new();
        let mut subscribed = HashSet::new();
        if path.is_file() {
            files.push(("INBOX".to_string(), path.to_path_buf()));
        } else {
            walk(path, "", &mut files)?;
            for f in [".subscriptions", "subscriptions"] {
                if let Ok(text) = std::fs::read_to_string(path.join(f)) {
                    subscribed.extend(super::parse_subscriptions(&text, '/'));
                }
            }
        }
        anyhow::ensure!(!files.is_empty(), "no mbox files in {}", path.display());
        let have: HashSet<String> = files.iter().map(|(n, _)| n.clone()).collect();
        let folders = super::local_folders(&have, &subscribed);
        Ok(Self { folders, files })
    }
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<(String, PathBuf)>) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let file = e.file_name();
        let Some(n) = file.to_str() else { continue };
        if n.starts_with('.') || n.ends_with(".msf") {
            continue;
        }
        let p = e.path();
        let level = super::from_file_level(n.strip_suffix(".sbd").unwrap_or(n));
        let name = if prefix.is_empty() {
            level.to_string()
        } else {
            format!("{prefix}/{level}")
        };
        if p.is_dir() {
            walk(&p, &name, out)?;
        } else if is_mbox(&p) {
            let name = if prefix.is_empty() {
                super::inbox_case(&name)
            } else {
                name
            };
            out.push((name, p));
        }
    }
    Ok(())
}

/// An empty file or one that starts with a `From ` line.
fn is_mbox(p: &Path) -> bool {
    let mut head = [0u8; 5];
    match std::fs::File::open(p).and_then(|mut f| f.read(&mut head)) {
        Ok(0) => true,
        Ok(5) => &head == b"From ",
        _ => false,
    }
}

/// One message of an mbox file: its `From ` line, the byte range of what
/// follows it (without the empty line before the next `From `), and
/// whether its body lines are mboxrd-quoted.
#[derive(Debug)]
struct Span {
    from: Vec<u8>,
    start: u64,
    end: u64,
    quoted: bool,
}

/// The longest line kept whole while scanning; a longer one is read in
/// pieces (it is body text either way).
const MAX_LINE: u64 = 64 * 1024;
/// The largest message read into memory (the store refuses larger ones).
const MAX_MESSAGE: u64 = 512 << 20;

/// The message being scanned.
struct Open {
    from: Vec<u8>,
    start: u64,
    in_headers: bool,
    content_length: Option<u64>,
}

/// The messages of an mbox file, read as a stream (memory is one line).
///
/// A message with a `Content-Length:` header that ends exactly where the
/// next `From ` line (or the end of the file) is, is taken by that length
/// and not unquoted: such writers (Dovecot, Solaris mail) do not quote body
/// lines, and its body is not even read here. Otherwise the next `From `
/// line after an empty line ends a message, and its body is mboxrd-quoted.
fn scan(path: &Path) -> anyhow::Result<Vec<Span>> {
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let len = file.metadata()?.len();
    let mut peek = std::fs::File::open(path)?;
    let mut r = std::io::BufReader::with_capacity(256 * 1024, file);
    let mut out = Vec::new();
    let mut open: Option<Open> = None;
    let mut pos = 0u64;
    let mut prev_empty = true;
    let mut prev_len = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut r).take(MAX_LINE).read_until(b'\n', &mut line)? as u64;
        if n == 0 {
            break;
        }
        let line_start = pos;
        pos += n;
        let empty = line == b"\n" || line == b"\r\n";
        if prev_empty && line.starts_with(b"From ") {
            if let Some(o) = open.take() {
                let end = if o.start < line_start {
                    line_start - prev_len
                } else {
                    line_start
                };
                out.push(Span {
                    from: o.from,
                    start: o.start,
                    end: end.max(o.start),
                    quoted: true,
                });
            }
            open = Some(Open {
                from: line.clone(),
                start: pos,
                in_headers: true,
                content_length: None,
            });
            prev_empty = false;
            prev_len = n;
            continue;
        }
        let mut jump = None;
        if let Some(o) = open.as_mut()
            && o.in_headers
        {
            if empty {
                o.in_headers = false;
                if let Some(end) = o.content_length.and_then(|l| pos.checked_add(l))
                    && end <= len
                    && at_boundary(&mut peek, end, len)?
                {
                    jump = Some(end);
                }
            } else if line.len() > 15 && line[..15].eq_ignore_ascii_case(b"content-length:") {
                o.content_length = String::from_utf8_lossy(&line[15..]).trim().parse().ok();
            }
        }
        if let Some(end) = jump
            && let Some(o) = open.take()
        {
            out.push(Span {
                from: o.from,
                start: o.start,
                end,
                quoted: false,
            });
            r.seek(SeekFrom::Start(end))?;
            pos = end;
            // What follows is an empty line or the next From line.
            prev_empty = true;
            prev_len = 0;
            continue;
        }
        prev_empty = empty;
        prev_len = n;
    }
    if let Some(o) = open {
        let end = if prev_empty && pos - prev_len >= o.start {
            pos - prev_len
        } else {
            pos
        };
        out.push(Span {
            from: o.from,
            start: o.start,
            end,
            quoted: true,
        });
    }
    Ok(out)
}

/// Whether a message taken by its Content-Length ends on a boundary: the
/// end of the file, or (after at most one empty line) a `From ` line.
fn at_boundary(peek: &mut std::fs::File, at: u64, len: u64) -> anyhow::Result<bool> {
    if at == len {
        return Ok(true);
    }
    let mut buf = [0u8; 7];
    peek.seek(SeekFrom::Start(at))?;
    let mut got = 0;
    while got < buf.len() {
        let n = peek.read(&mut buf[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let b = &buf[..got];
    Ok(b.starts_with(b"From ")
        || b.starts_with(b"\nFrom ")
        || b.starts_with(b"\r\nFrom ")
        || b == b"\n"
        || b == b"\r\n")
}

/// The internal date of a `From sender Thu Nov 29 12:00:00 2026` line.
fn from_line_date(line: &[u8]) -> Option<i64> {
    let text = String::from_utf8_lossy(line);
    let words: Vec<&str> = text.split_whitespace().collect();
    // "From", sender, then weekday month day time year (a zone may sit
    // before the year).
    let rest = words.get(2..)?;
    let mut parts: Vec<&str> = rest.iter().take(6).copied().collect();
    let mut offset = 0i64;
    if parts.len() == 6 && (parts[4].starts_with('+') || parts[4].starts_with('-')) {
        let z = parts.remove(4);
        if let (Ok(h), Ok(m)) = (
            z.get(1..3).unwrap_or("").parse::<i64>(),
            z.get(3..5).unwrap_or("").parse::<i64>(),
        ) {
            offset = (h * 3600 + m * 60) * if z.starts_with('-') { -1 } else { 1 };
        }
    }
    // The weekday is not checked: writers get it wrong.
    let joined = parts
        .iter()
        .skip(1)
        .take(4)
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    chrono::NaiveDateTime::parse_from_str(&joined, "%b %d %H:%M:%S %Y")
        .ok()
        .map(|d| d.and_utc().timestamp() - offset)
}

/// A message as an IMAP server serves it, with what its mbox headers said.
struct Decoded {
    data: Vec<u8>,
    flags: pb::Flags,
    date_header: Option<i64>,
    /// UW-IMAP's folder-state pseudo message (`X-IMAP` and "DON'T DELETE
    /// THIS MESSAGE"): storage, not mail.
    placeholder: bool,
}

/// The message as an IMAP server serves it, and its flags.
fn decode(raw: &[u8], unquote: bool) -> Decoded {
    let mut flags = pb::Flags::default();
    let mut out = Vec::with_capacity(raw.len());
    let mut in_headers = true;
    let mut skipping = false;
    let mut date_header = None;
    let (mut x_imap, mut internal_subject) = (false, false);
    for line in raw.split_inclusive(|&b| b == b'\n') {
        if in_headers {
            if line == b"\n" || line == b"\r\n" {
                in_headers = false;
                out.extend_from_slice(line);
                continue;
            }
            let continuation = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
            if continuation {
                if !skipping {
                    out.extend_from_slice(line);
                }
                continue;
            }
            let (name, value) = match line.iter().position(|&b| b == b':') {
                Some(i) => (&line[..i], &line[i + 1..]),
                None => (line, &b""[..]),
            };
            let name = String::from_utf8_lossy(name).trim().to_ascii_lowercase();
            let value = String::from_utf8_lossy(value);
            skipping = STATE_HEADERS.contains(&name.as_str());
            match name.as_str() {
                "status" => flags.seen |= value.contains('R'),
                "x-status" => {
                    flags.answered |= value.contains('A');
                    flags.flagged |= value.contains('F');
                    flags.draft |= value.contains('T');
                    flags.deleted |= value.contains('D');
                }
                "x-keywords" => flags.keywords.extend(
                    value
                        .split(|c: char| c == ',' || c.is_whitespace())
                        .filter(|k| !k.is_empty())
                        .map(str::to_string),
                ),
                "x-imap" => x_imap = true,
                "subject" => {
                    internal_subject = value.contains("DON'T DELETE THIS MESSAGE");
                }
                "date" => {
                    date_header = chrono::DateTime::parse_from_rfc2822(value.trim())
                        .ok()
                        .map(|d| d.timestamp());
                }
                _ => {}
            }
            if !skipping {
                out.extend_from_slice(line);
            }
            continue;
        }
        // mboxrd: one '>' less before a quoted "From ".
        let quoted = line.iter().take_while(|&&b| b == b'>').count();
        if unquote && quoted > 0 && line[quoted..].starts_with(b"From ") {
            out.extend_from_slice(&line[1..]);
        } else {
            out.extend_from_slice(line);
        }
    }
    flags.keywords.dedup();
    Decoded {
        data: to_crlf(&out),
        flags,
        date_header,
        placeholder: x_imap && internal_subject,
    }
}

impl LocalSource for Source {
    type Loc = Loc;

    fn folders(&self) -> &[Folder] {
        &self.folders
    }

    fn entries(&self, folder: &Folder) -> anyhow::Result<Vec<Entry<Loc>>> {
        let Some((_, path)) = self.files.iter().find(|(n, _)| *n == folder.name) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for span in scan(path)? {
            let loc = Loc {
                path: path.clone(),
                start: span.start,
                end: span.end,
                quoted: span.quoted,
            };
            let d = decode(&read_range(&loc)?, span.quoted);
            if d.placeholder {
                continue;
            }
            let date = from_line_date(&span.from).or(d.date_header).unwrap_or(0);
            out.push(Entry {
                key: Key::Content(hex::encode(Sha256::digest(&d.data))),
                flags: d.flags,
                date,
                tz: 0,
                size: d.data.len() as u64,
                locator: loc,
            });
        }
        Ok(out)
    }

    fn read(&self, loc: &Loc) -> anyhow::Result<Vec<u8>> {
        Ok(decode(&read_range(loc)?, loc.quoted).data)
    }
}

/// The raw bytes of one message.
fn read_range(loc: &Loc) -> anyhow::Result<Vec<u8>> {
    let n = loc.end.saturating_sub(loc.start);
    anyhow::ensure!(
        n <= MAX_MESSAGE,
        "{}: a message of {n} bytes at offset {} is larger than {MAX_MESSAGE}",
        loc.path.display(),
        loc.start
    );
    let mut f = std::fs::File::open(&loc.path)?;
    f.seek(SeekFrom::Start(loc.start))?;
    let mut raw = vec![0; n as usize];
    f.read_exact(&mut raw)?;
    Ok(raw)
}

/// Writes an account as a directory of mbox files.
pub struct Writer {
    root: PathBuf,
    parents: HashSet<String>,
    subscribed: Vec<String>,
    /// Messages that carried mbox storage headers of their own.
    state_headers_dropped: usize,
}

/// A header block without the fields mbox keeps its state in; true when
/// one was there.
fn without_state_headers(head: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::with_capacity(head.len());
    let mut skipping = false;
    let mut dropped = false;
    for line in head.split_inclusive(|&b| b == b'\n') {
        let continuation = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if !continuation {
            let name = line.iter().position(|&b| b == b':').map(|i| {
                String::from_utf8_lossy(&line[..i])
                    .trim()
                    .to_ascii_lowercase()
            });
            skipping = name.is_some_and(|n| STATE_HEADERS.contains(&n.as_str()));
            dropped |= skipping;
        }
        if !skipping {
            out.extend_from_slice(line);
        }
    }
    (out, dropped)
}

impl Writer {
    pub fn new(root: &Path, folders: &[Folder]) -> Self {
        let mut parents = HashSet::new();
        for f in folders {
            let parts: Vec<&str> = f.name.split('/').collect();
            for i in 1..parts.len() {
                parents.insert(parts[..i].join("/"));
            }
        }
        Self {
            root: root.to_path_buf(),
            parents,
            subscribed: Vec::new(),
            state_headers_dropped: 0,
        }
    }

    /// `A/B/C` is `A.sbd/B.sbd/C`; INBOX is `inbox`.
    fn file_of(&self, name: &str) -> PathBuf {
        if name == "INBOX" {
            return self.root.join("inbox");
        }
        let parts: Vec<&str> = name.split('/').collect();
        let mut p = self.root.clone();
        for (i, part) in parts.iter().enumerate() {
            let part = super::to_file_level(part);
            if i + 1 < parts.len() {
                p.push(format!("{part}.sbd"));
            } else {
                p.push(part);
            }
        }
        p
    }
}

impl FolderWriter for Writer {
    fn folder(&mut self, f: &Folder) -> anyhow::Result<()> {
        if f.subscribed {
            let enc: Vec<String> = f.name.split('/').map(super::to_file_level).collect();
            self.subscribed.push(enc.join("/"));
        }
        let path = self.file_of(&f.name);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        if self.parents.contains(&f.name) {
            std::fs::create_dir_all(path.with_file_name(format!(
                "{}.sbd",
                path.file_name().unwrap_or_default().to_string_lossy()
            )))?;
        }
        if f.selectable {
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        }
        Ok(())
    }

    fn message(
        &mut self,
        f: &Folder,
        flags: &pb::Flags,
        date: i64,
        _tz: i32,
        data: &[u8],
    ) -> anyhow::Result<()> {
        let path = self.file_of(&f.name);
        let mut out = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        let when = chrono::DateTime::from_timestamp(date, 0).unwrap_or_default();
        let mut text = format!(
            "From MAILER-DAEMON {}\n",
            when.format("%a %b %e %H:%M:%S %Y")
        )
        .into_bytes();
        let lf = super::maildir::from_crlf(data);
        let mut state = String::new();
        state.push_str(if flags.seen {
            "Status: RO\n"
        } else {
            "Status: O\n"
        });
        let mut x = String::new();
        for (set, c) in [
            (flags.answered, 'A'),
            (flags.flagged, 'F'),
            (flags.draft, 'T'),
            (flags.deleted, 'D'),
        ] {
            if set {
                x.push(c);
            }
        }
        if !x.is_empty() {
            state.push_str(&format!("X-Status: {x}\n"));
        }
        if !flags.keywords.is_empty() {
            state.push_str(&format!("X-Keywords: {}\n", flags.keywords.join(" ")));
        }
        let header_end = if lf.starts_with(b"\n") {
            Some(0)
        } else {
            lf.windows(2).position(|w| w == b"\n\n").map(|i| i + 1)
        };
        let (head, body) = match header_end {
            Some(i) => lf.split_at(i),
            None => (&lf[..], &b""[..]),
        };
        // The message's own storage headers (a sender can write `X-Status: D`)
        // would be read back as flags: they go, ours say what is true.
        let (head, dropped) = without_state_headers(head);
        if dropped {
            self.state_headers_dropped += 1;
        }
        let head = &head[..];
        text.extend_from_slice(head);
        if header_end.is_none() && !head.is_empty() && !head.ends_with(b"\n") {
            text.push(b'\n');
        }
        text.extend_from_slice(state.as_bytes());
        if header_end.is_none() {
            text.push(b'\n');
        }
        for line in body.split_inclusive(|&b| b == b'\n') {
            let quoted = line.iter().take_while(|&&b| b == b'>').count();
            if line[quoted..].starts_with(b"From ") {
                text.push(b'>');
            }
            text.extend_from_slice(line);
        }
        if !text.ends_with(b"\n") {
            text.push(b'\n');
        }
        text.push(b'\n');
        out.write_all(&text)?;
        Ok(())
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        let mut text = String::new();
        for s in &self.subscribed {
            text.push_str(s);
            text.push('\n');
        }
        std::fs::write(self.root.join(".subscriptions"), text)?;
        if self.state_headers_dropped > 0 {
            eprintln!(
                "{} messages carried Status/X-Status/X-Keywords/X-UID/X-IMAP/Content-Length \
                 headers of their own; the mbox files have ours instead",
                self.state_headers_dropped
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The messages of an mbox given as bytes: (From line, decoded).
    fn messages(mbox: &[u8]) -> Vec<(Vec<u8>, Decoded, bool)> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mbox");
        std::fs::write(&path, mbox).expect("write");
        scan(&path)
            .expect("scan")
            .into_iter()
            .map(|s| {
                let loc = Loc {
                    path: path.clone(),
                    start: s.start,
                    end: s.end,
                    quoted: s.quoted,
                };
                let d = decode(&read_range(&loc).expect("read"), s.quoted);
                (s.from, d, s.quoted)
            })
            .collect()
    }

    #[test]
    fn mboxrd_messages_and_their_state() {
        let mbox = b"From a@b Sun Nov 29 12:00:00 2026\nSubject: one\nStatus: RO\nX-Status: AF\nX-Keywords: work $Label1\n\nbody\n>From here\nFrom there\n\nFrom c@d Fri Nov 30 01:02:03 2026\nSubject: two\n\n\n";
        let msgs = messages(mbox);
        assert_eq!(msgs.len(), 2, "a From line not after an empty line is body");
        let (from, d, _) = &msgs[0];
        assert_eq!(
            d.data,
            b"Subject: one\r\n\r\nbody\r\nFrom here\r\nFrom there\r\n".to_vec()
        );
        assert!(d.flags.seen && d.flags.answered && d.flags.flagged && !d.flags.deleted);
        assert_eq!(d.flags.keywords, vec!["work", "$Label1"]);
        assert_eq!(from_line_date(from), Some(1_795_953_600));
        let (_, d, _) = &msgs[1];
        assert_eq!(d.data, b"Subject: two\r\n\r\n".to_vec());
        assert!(!d.flags.seen);
        assert_eq!(
            from_line_date(b"From x Mon Dec  1 09:05:00 2025\n"),
            Some(1_764_579_900)
        );
        // A zone before the year: local time minus the offset.
        assert_eq!(
            from_line_date(b"From x Mon Dec  1 10:05:00 +0100 2025\n"),
            Some(1_764_579_900)
        );
    }

    #[test]
    fn content_length_messages_are_not_unquoted() {
        // As Dovecot writes mbox: no quoting, a Content-Length per message,
        // and a body that holds "From " after an empty line.
        let mbox = b"From a Sun Nov 29 12:00:00 2026\nContent-Length: 23\n\nx\n>From y\n\nFrom z here\n\nFrom b Sun Nov 29 12:00:01 2026\nSubject: 2\n\nbody\n";
        let msgs = messages(mbox);
        assert_eq!(msgs.len(), 2);
        assert!(!msgs[0].2 && msgs[1].2);
        assert_eq!(
            msgs[0].1.data,
            b"\r\nx\r\n>From y\r\n\r\nFrom z here\r\n".to_vec()
        );
        assert_eq!(msgs[1].1.data, b"Subject: 2\r\n\r\nbody\r\n".to_vec());
    }

    #[test]
    fn lying_content_lengths_fall_back_to_from_lines() {
        for cl in ["18446744073709551615", "3", "99999", "-1"] {
            let mbox = format!(
                "From a Sun Nov 29 12:00:00 2026\nContent-Length: {cl}\n\none\n\nFrom b Sun Nov 29 12:00:01 2026\n\ntwo\n"
            );
            let msgs = messages(mbox.as_bytes());
            assert_eq!(msgs.len(), 2, "Content-Length {cl}");
            assert_eq!(
                msgs[0].1.data,
                b"\r\none\r\n".to_vec(),
                "Content-Length {cl}"
            );
            assert_eq!(msgs[1].1.data, b"\r\ntwo\r\n".to_vec());
        }
    }

    #[test]
    fn uw_imap_placeholder_is_not_a_message() {
        let mbox = b"From MAILER-DAEMON Sun Nov 29 12:00:00 2026\nSubject: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA\nX-IMAP: 1 2\n\nx\n\nFrom b Sun Nov 29 12:00:01 2026\n\ntwo\n";
        let msgs = messages(mbox);
        assert!(msgs[0].1.placeholder && !msgs[1].1.placeholder);
    }
}
