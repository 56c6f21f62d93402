//! Maildir (<https://cr.yp.to/proto/maildir.html>) in and out, with the
//! Maildir++ folder layout (`.Parent.Child` directories, names in modified
//! UTF-7) and Dovecot's additions: `dovecot-keywords` (lowercase info
//! letters are keywords), `dovecot-uidlist` (message order) and the
//! `subscriptions` file. A directory tree of maildirs (`Parent/Child/cur`,
//! Dovecot's LAYOUT=fs) is read too. A message's file modification time is
//! its internal date, as Dovecot keeps it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use mailbox_api::pb;
use sha2::{Digest, Sha256};

use super::{Entry, Folder, FolderWriter, Key, LocalSource, to_crlf};

/// The letters of a maildir file name's info (`:2,<letters>`) for system
/// flags, in the ASCII order the spec asks for. `P` (passed) is read as
/// `$Forwarded` but not written: Dovecot keeps `$Forwarded` as a keyword
/// letter and ignores `P`.
const FLAG_LETTERS: [(char, &str); 5] = [
    ('D', "draft"),
    ('F', "flagged"),
    ('R', "answered"),
    ('S', "seen"),
    ('T', "deleted"),
];

pub struct Source {
    folders: Vec<Folder>,
    dirs: HashMap<String, PathBuf>,
}

fn is_maildir(p: &Path) -> bool {
    p.join("cur").is_dir() || p.join("new").is_dir()
}

impl Source {
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        anyhow::ensure!(
            is_maildir(root),
            "{} is not a maildir (no cur/ or new/)",
            root.display()
        );
        let mut dirs = HashMap::new();
        dirs.insert("INBOX".to_string(), root.to_path_buf());
        // Maildir++: .A.B at the top.
        for e in std::fs::read_dir(root).with_context(|| format!("reading {}", root.display()))? {
            let e = e?;
            let file = e.file_name();
            let Some(n) = file.to_str() else { continue };
            let p = e.path();
            if let Some(rest) = n.strip_prefix('.')
                && !rest.is_empty()
                && rest != "."
                && is_maildir(&p)
            {
                let name = rest
                    .split('.')
                    .map(decode_component)
                    .collect::<Vec<_>>()
                    .join("/");
                dirs.insert(super::inbox_case(&name), p);
            }
        }
        // LAYOUT=fs: nested directories that are maildirs themselves.
        nested(root, "", &mut dirs)?;
        let have: HashSet<String> = dirs.keys().cloned().collect();
        let folders = super::local_folders(&have, &read_subscriptions(root));
        Ok(Self { folders, dirs })
    }
}

fn decode_component(c: &str) -> String {
    super::from_file_level(c)
}

fn nested(dir: &Path, prefix: &str, out: &mut HashMap<String, PathBuf>) -> anyhow::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let file = e.file_name();
        let Some(n) = file.to_str() else { continue };
        if n.starts_with('.') || matches!(n, "cur" | "new" | "tmp") || !e.path().is_dir() {
            continue;
        }
        let name = if prefix.is_empty() {
            decode_component(n)
        } else {
            format!("{prefix}/{}", decode_component(n))
        };
        if is_maildir(&e.path()) {
            out.entry(super::inbox_case(&name)).or_insert(e.path());
        }
        nested(&e.path(), &name, out)?;
    }
    Ok(())
}

fn read_subscriptions(root: &Path) -> HashSet<String> {
    std::fs::read_to_string(root.join("subscriptions"))
        .map(|t| super::parse_subscriptions(&t, '.'))
        .unwrap_or_default()
}

/// The keyword each lowercase letter stands for in a folder.
fn read_keywords(dir: &Path) -> HashMap<char, String> {
    let mut out = HashMap::new();
    if let Ok(text) = std::fs::read_to_string(dir.join("dovecot-keywords")) {
        for l in text.lines() {
            if let Some((n, kw)) = l.split_once(' ')
                && let Ok(n) = n.parse::<u8>()
                && n < 26
            {
                out.insert((b'a' + n) as char, kw.to_string());
            }
        }
    }
    out
}

/// The order Dovecot gave a folder's messages: file base name -> UID.
fn read_uidlist(dir: &Path) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    if let Ok(text) = std::fs::read_to_string(dir.join("dovecot-uidlist")) {
        for l in text.lines().skip(1) {
            let Some((uid, rest)) = l.split_once(' ') else {
                continue;
            };
            let Ok(uid) = uid.parse() else { continue };
            if let Some(pos) = rest.find(':') {
                out.insert(rest[pos + 1..].to_string(), uid);
            }
        }
    }
    out
}

/// Flags from a file name's info part.
fn flags_of(file: &str, keywords: &HashMap<char, String>) -> pb::Flags {
    let mut f = pb::Flags::default();
    let info = [":2,", ";2,", "!2,"]
        .iter()
        .find_map(|sep| file.rsplit_once(sep).map(|(_, i)| i))
        .unwrap_or("");
    let mut push = |k: &str| {
        if !f.keywords.iter().any(|x| x == k) {
            f.keywords.push(k.to_string());
        }
    };
    let mut sys = pb::Flags::default();
    for c in info.chars() {
        match c {
            'D' => sys.draft = true,
            'F' => sys.flagged = true,
            'P' => push("$Forwarded"),
            'R' => sys.answered = true,
            'S' => sys.seen = true,
            'T' => sys.deleted = true,
            'a'..='z' => {
                if let Some(k) = keywords.get(&c) {
                    push(k);
                }
            }
            _ => {}
        }
    }
    sys.keywords = f.keywords;
    sys
}

fn base_name(file: &str) -> &str {
    [":2,", ";2,", "!2,"]
        .iter()
        .find_map(|sep| file.rsplit_once(sep).map(|(b, _)| b))
        .unwrap_or(file)
}

impl LocalSource for Source {
    type Loc = PathBuf;

    fn folders(&self) -> &[Folder] {
        &self.folders
    }

    fn entries(&self, folder: &Folder) -> anyhow::Result<Vec<Entry<PathBuf>>> {
        let Some(dir) = self.dirs.get(&folder.name) else {
            return Ok(Vec::new());
        };
        let keywords = read_keywords(dir);
        let uids = read_uidlist(dir);
        let mut files = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(rd) = std::fs::read_dir(dir.join(sub)) else {
                continue;
            };
            for e in rd {
                let e = e?;
                if !e.file_type()?.is_file() {
                    continue;
                }
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                let order = uids.get(base_name(&name)).copied().unwrap_or(u64::MAX);
                files.push((order, name, e.path()));
            }
        }
        files.sort();
        let mut out = Vec::with_capacity(files.len());
        for (_, name, path) in files {
            let meta = std::fs::metadata(&path)?;
            let date = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs() as i64);
            let data = to_crlf(&std::fs::read(&path)?);
            out.push(Entry {
                key: Key::Content(hex::encode(Sha256::digest(&data))),
                flags: flags_of(&name, &keywords),
                date,
                tz: 0,
                size: data.len() as u64,
                locator: path,
            });
        }
        Ok(out)
    }

    fn read(&self, loc: &PathBuf) -> anyhow::Result<Vec<u8>> {
        Ok(to_crlf(
            &std::fs::read(loc).with_context(|| format!("reading {}", loc.display()))?,
        ))
    }
}

/// Writes an account as a Maildir++ tree.
pub struct Writer {
    root: PathBuf,
    seq: u64,
    /// Per folder directory: keyword -> letter.
    keywords: HashMap<PathBuf, BTreeMap<String, char>>,
    subscribed: Vec<String>,
}

impl Writer {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            seq: 0,
            keywords: HashMap::new(),
            subscribed: Vec::new(),
        }
    }

    fn dir_of(&self, name: &str) -> PathBuf {
        if name == "INBOX" {
            self.root.clone()
        } else {
            let enc: Vec<String> = name.split('/').map(super::to_file_level).collect();
            self.root.join(format!(".{}", enc.join(".")))
        }
    }
}

impl FolderWriter for Writer {
    fn folder(&mut self, f: &Folder) -> anyhow::Result<()> {
        if f.subscribed {
            let enc: Vec<String> = f.name.split('/').map(super::to_file_level).collect();
            self.subscribed.push(enc.join("."));
        }
        if !f.selectable {
            return Ok(());
        }
        let dir = self.dir_of(&f.name);
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("creating {}", dir.display()))?;
        }
        if f.name != "INBOX" {
            std::fs::File::create(dir.join("maildirfolder"))?;
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
        let dir = self.dir_of(&f.name);
        let kw = self.keywords.entry(dir.clone()).or_default();
        let mut letters = String::new();
        for (c, which) in FLAG_LETTERS {
            let set = match which {
                "draft" => flags.draft,
                "flagged" => flags.flagged,
                "answered" => flags.answered,
                "seen" => flags.seen,
                _ => flags.deleted,
            };
            if set {
                letters.push(c);
            }
        }
        let mut extra = Vec::new();
        for k in &flags.keywords {
            let next = kw.len();
            let letter = match kw.get(k) {
                Some(&c) => Some(c),
                None if next < 26 => {
                    let c = (b'a' + next as u8) as char;
                    kw.insert(k.clone(), c);
                    Some(c)
                }
                None => {
                    eprintln!("{}: more than 26 keywords; {k} is left out", f.name);
                    None
                }
            };
            extra.extend(letter);
        }
        extra.sort_unstable();
        letters.extend(extra);
        self.seq += 1;
        let lf = from_crlf(data);
        // S= is the file's own size, W= the size with CRLF line ends (what
        // IMAP's RFC822.SIZE says): Dovecot checks and uses both.
        let file = format!(
            "{date}.M{}P{}.mailctl,S={},W={}:2,{letters}",
            self.seq,
            std::process::id(),
            lf.len(),
            data.len()
        );
        let path = dir.join("cur").join(file);
        let mut out =
            std::fs::File::create(&path).with_context(|| format!("writing {}", path.display()))?;
        out.write_all(&lf)?;
        let when = UNIX_EPOCH + Duration::from_secs(date.max(0) as u64);
        out.set_modified(when)?;
        Ok(())
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        for (dir, kws) in &self.keywords {
            let mut text = String::new();
            for (k, c) in kws {
                text.push_str(&format!("{} {k}\n", *c as u8 - b'a'));
            }
            std::fs::write(dir.join("dovecot-keywords"), text)?;
        }
        let mut text = String::new();
        for s in &self.subscribed {
            text.push_str(s);
            text.push('\n');
        }
        std::fs::write(self.root.join("subscriptions"), text)?;
        Ok(())
    }
}

/// CRLF line ends become LF, as maildir and mbox files keep them.
pub fn from_crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'\r' && data.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(data[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_letters_are_flags_and_keywords() {
        let kw = HashMap::from([('a', "$Label1".to_string()), ('c', "work".to_string())]);
        let f = flags_of("1700000000.M1P2.host,S=10:2,FRSac", &kw);
        assert!(f.flagged && f.answered && f.seen && !f.deleted && !f.draft);
        assert_eq!(f.keywords, vec!["$Label1", "work"]);
        assert_eq!(base_name("1.M1.h:2,S"), "1.M1.h");
        assert_eq!(flags_of("1.M1.h", &kw), pb::Flags::default());
    }
}
