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
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use mailbox_api::pb;
use sha2::{Digest, Sha256};

use super::{Entry, Folder, FolderWriter, Key, LocalSource, guess_special_use, to_crlf};

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
        let mut names: Vec<(String, bool)> = files.iter().map(|(n, _)| (n.clone(), true)).collect();
        let have: HashSet<String> = names.iter().map(|(n, _)| n.clone()).collect();
        let mut parents = HashSet::new();
        for (n, _) in &names {
            let parts: Vec<&str> = n.split('/').collect();
            for i in 1..parts.len() {
                let p = parts[..i].join("/");
                if !have.contains(&p) {
                    parents.insert(p);
                }
            }
        }
        names.extend(parents.into_iter().map(|p| (p, false)));
        names.sort_by(|a, b| {
            (a.0 != "INBOX", a.0.split('/').collect::<Vec<_>>())
                .cmp(&(b.0 != "INBOX", b.0.split('/').collect::<Vec<_>>()))
        });
        let folders = names
            .into_iter()
            .map(|(name, selectable)| Folder {
                special_use: guess_special_use(&name),
                subscribed: subscribed.contains(&name),
                selectable,
                name,
            })
            .collect();
        Ok(Self { folders, files })
    }
}

fn inbox_case(name: &str) -> String {
    if name.eq_ignore_ascii_case("INBOX") {
        "INBOX".to_string()
    } else {
        name.to_string()
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
        let level = n.strip_suffix(".sbd").unwrap_or(n);
        let name = if prefix.is_empty() {
            level.to_string()
        } else {
            format!("{prefix}/{level}")
        };
        if p.is_dir() {
            walk(&p, &name, out)?;
        } else if is_mbox(&p) {
            let name = if prefix.is_empty() {
                inbox_case(&name)
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
struct Span<'a> {
    from: &'a [u8],
    start: usize,
    end: usize,
    quoted: bool,
}

/// The messages of an mbox file. A message with a `Content-Length:` header
/// that ends exactly before the next `From ` line (or the end of the file)
/// is taken by that length and not unquoted: such writers (Dovecot, Solaris
/// mail) do not quote body lines. Otherwise the next `From ` line after an
/// empty line ends it, and its body is mboxrd-quoted.
fn split(data: &[u8]) -> Vec<Span<'_>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let line_end = memchr_nl(&data[pos..]).map_or(data.len(), |i| pos + i + 1);
        let from = &data[pos..line_end];
        if !from.starts_with(b"From ") {
            // Leading junk (not an mbox message): skip a line.
            pos = line_end;
            continue;
        }
        let start = line_end;
        if let Some(end) = by_content_length(data, start) {
            out.push(Span {
                from,
                start,
                end,
                quoted: false,
            });
            pos = skip_blank(data, end);
            continue;
        }
        // Scan for the next separator.
        let mut p = start;
        let mut prev_empty = false;
        let mut next = data.len();
        while p < data.len() {
            let e = memchr_nl(&data[p..]).map_or(data.len(), |i| p + i + 1);
            let line = &data[p..e];
            if prev_empty && line.starts_with(b"From ") {
                next = p;
                break;
            }
            prev_empty = line == b"\n" || line == b"\r\n";
            p = e;
        }
        out.push(Span {
            from,
            start,
            end: trim_separator(data, start, next),
            quoted: true,
        });
        pos = next;
    }
    out
}

/// The end of a message that starts at `start` by its Content-Length, when
/// the header is there and the length lands on a message boundary.
fn by_content_length(data: &[u8], start: usize) -> Option<usize> {
    let rest = &data[start..];
    let (head_len, sep) = match (
        rest.windows(2).position(|w| w == b"\n\n"),
        rest.windows(4).position(|w| w == b"\r\n\r\n"),
    ) {
        (Some(a), Some(b)) if b < a => (b, 4),
        (Some(a), _) => (a, 2),
        (None, Some(b)) => (b, 4),
        (None, None) => return None,
    };
    let head = &rest[..head_len + sep / 2];
    let len: usize = head.split(|&b| b == b'\n').find_map(|l| {
        let l = l.strip_suffix(b"\r").unwrap_or(l);
        (l.len() > 15 && l[..15].eq_ignore_ascii_case(b"content-length:"))
            .then(|| String::from_utf8_lossy(&l[15..]).trim().parse().ok())
            .flatten()
    })?;
    let end = start + head_len + sep + len;
    if end > data.len() {
        return None;
    }
    let after = &data[end..];
    let boundary = after.is_empty()
        || after.starts_with(b"From ")
        || after.starts_with(b"\nFrom ")
        || after.starts_with(b"\r\nFrom ")
        || after == b"\n"
        || after == b"\r\n";
    boundary.then_some(end)
}

/// Past the one empty line after a message.
fn skip_blank(data: &[u8], pos: usize) -> usize {
    if data[pos..].starts_with(b"\r\n") {
        pos + 2
    } else if data[pos..].starts_with(b"\n") {
        pos + 1
    } else {
        pos
    }
}

fn memchr_nl(s: &[u8]) -> Option<usize> {
    s.iter().position(|&b| b == b'\n')
}

/// Drops the one empty line that separates a message from the next.
fn trim_separator(data: &[u8], start: usize, end: usize) -> usize {
    let m = &data[start..end];
    if m.ends_with(b"\r\n\r\n") {
        end - 2
    } else if m.ends_with(b"\n\n") {
        end - 1
    } else {
        end
    }
}

/// The internal date of a `From sender Thu Nov 29 12:00:00 2026` line.
fn from_line_date(line: &[u8]) -> Option<i64> {
    let text = String::from_utf8_lossy(line);
    let words: Vec<&str> = text.split_whitespace().collect();
    // "From", sender, then weekday month day time year (a zone may sit
    // before the year).
    let rest = words.get(2..)?;
    let mut parts: Vec<&str> = rest.iter().take(6).copied().collect();
    if parts.len() == 6 && (parts[4].starts_with('+') || parts[4].starts_with('-')) {
        parts.remove(4);
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
        .map(|d| d.and_utc().timestamp())
}

/// The message as an IMAP server serves it, and its flags.
fn decode(raw: &[u8], unquote: bool) -> (Vec<u8>, pb::Flags, Option<i64>) {
    let mut flags = pb::Flags::default();
    let mut out = Vec::with_capacity(raw.len());
    let mut in_headers = true;
    let mut skipping = false;
    let mut date_header = None;
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
    (to_crlf(&out), flags, date_header)
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
        let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let mut out = Vec::new();
        for Span {
            from,
            start,
            end,
            quoted,
        } in split(&data)
        {
            let (msg, flags, date_header) = decode(&data[start..end], quoted);
            let date = from_line_date(from).or(date_header).unwrap_or(0);
            out.push(Entry {
                key: Key::Content(hex::encode(Sha256::digest(&msg))),
                flags,
                date,
                tz: 0,
                size: msg.len() as u64,
                locator: Loc {
                    path: path.clone(),
                    start: start as u64,
                    end: end as u64,
                    quoted,
                },
            });
        }
        Ok(out)
    }

    fn read(&self, loc: &Loc) -> anyhow::Result<Vec<u8>> {
        let mut f = std::fs::File::open(&loc.path)?;
        f.seek(SeekFrom::Start(loc.start))?;
        let mut raw = vec![0; (loc.end - loc.start) as usize];
        f.read_exact(&mut raw)?;
        Ok(decode(&raw, loc.quoted).0)
    }
}

/// Writes an account as a directory of mbox files.
pub struct Writer {
    root: PathBuf,
    parents: HashSet<String>,
    subscribed: Vec<String>,
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
            self.subscribed.push(f.name.clone());
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
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mboxrd_messages_and_their_state() {
        let mbox = b"From a@b Sun Nov 29 12:00:00 2026\nSubject: one\nStatus: RO\nX-Status: AF\nX-Keywords: work $Label1\n\nbody\n>From here\nFrom there\n\nFrom c@d Fri Nov 30 01:02:03 2026\nSubject: two\n\n\n";
        let msgs = split(mbox);
        assert_eq!(msgs.len(), 2, "a From line not after an empty line is body");
        let (m, f, _) = decode(&mbox[msgs[0].start..msgs[0].end], msgs[0].quoted);
        assert_eq!(
            m,
            b"Subject: one\r\n\r\nbody\r\nFrom here\r\nFrom there\r\n".to_vec()
        );
        assert!(f.seen && f.answered && f.flagged && !f.deleted);
        assert_eq!(f.keywords, vec!["work", "$Label1"]);
        assert_eq!(from_line_date(msgs[0].from), Some(1_795_953_600));
        let (m, f, _) = decode(&mbox[msgs[1].start..msgs[1].end], msgs[1].quoted);
        assert_eq!(m, b"Subject: two\r\n\r\n".to_vec());
        assert!(!f.seen);
        assert_eq!(
            from_line_date(b"From x Mon Dec  1 09:05:00 2025\n"),
            Some(1_764_579_900)
        );
    }

    #[test]
    fn content_length_messages_are_not_unquoted() {
        // As Dovecot writes mbox: no quoting, a Content-Length per message.
        let mbox = b"From a Sun Nov 29 12:00:00 2026\nContent-Length: 23\n\nx\n>From y\n\nFrom z here\n\nFrom b Sun Nov 29 12:00:01 2026\nSubject: 2\n\nbody\n";
        let msgs = split(mbox);
        assert_eq!(msgs.len(), 2);
        assert!(!msgs[0].quoted && msgs[1].quoted);
        let (m, _, _) = decode(&mbox[msgs[0].start..msgs[0].end], msgs[0].quoted);
        assert_eq!(m, b"\r\nx\r\n>From y\r\n\r\nFrom z here\r\n".to_vec());
    }
}
