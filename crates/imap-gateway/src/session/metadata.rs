//! METADATA (RFC 5464): server and mailbox annotations, private and
//! shared (here both belong to the one account), kept by the store within
//! limits: at most `MAX_VALUE` octets a value (`NO [METADATA MAXSIZE n]`)
//! and `MAX_ENTRIES` entries per mailbox or server (`NO [METADATA
//! TOOMANY]`).

use imap_codec::imap_types::core::NString8;
use imap_codec::imap_types::extensions::metadata::{Depth, Entry, EntryValue, GetMetadataOption};

use super::*;

/// The largest value one entry may hold.
pub(super) const MAX_VALUE: usize = 64 * 1024;

/// An entry name as RFC 5464 3.2 allows it: `/private` or `/shared` and a
/// path below, without `*`, `%`, empty components or control characters;
/// lower-cased (entry names compare without case). `None` otherwise.
fn entry_name(e: &Entry<'_>) -> Option<String> {
    let raw = std::str::from_utf8(e.as_ref()).ok()?;
    let name = raw.to_ascii_lowercase();
    let ok_root = name == "/private"
        || name == "/shared"
        || name.starts_with("/private/")
        || name.starts_with("/shared/");
    let ok_chars = !name.contains(['*', '%']) && !name.chars().any(char::is_control);
    let ok_path = !name.ends_with('/') && !name.contains("//") && name.len() <= 1024;
    (ok_root && ok_chars && ok_path).then_some(name)
}

/// Whether `name` is returned for a requested `entry` at `depth` (RFC
/// 5464 4.2.2): the entry itself, its children (1) or all below (infinity).
fn within(name: &str, entry: &str, depth: &Depth) -> bool {
    if name == entry {
        return true;
    }
    let Some(rest) = name.strip_prefix(entry).and_then(|r| r.strip_prefix('/')) else {
        return false;
    };
    match depth {
        Depth::Null => false,
        Depth::One => !rest.contains('/'),
        Depth::Infinity => true,
    }
}

impl Session {
    /// The mailbox a METADATA command names: "" for the server.
    fn metadata_mailbox(&self, m: &Mailbox<'_>) -> Result<String, Done> {
        match m {
            Mailbox::Other(o) if o.as_ref().is_empty() => Ok(String::new()),
            _ => self.mailbox_name(m),
        }
    }

    /// GETMETADATA (RFC 5464 4.2): one METADATA response with every entry
    /// found; with MAXSIZE, larger values are left out and the OK says
    /// LONGENTRIES with the largest size left out.
    pub(super) async fn get_metadata(
        &mut self,
        options: &[GetMetadataOption],
        m: &Mailbox<'_>,
        entries: &[Entry<'_>],
    ) -> Done {
        let mailbox = match self.metadata_mailbox(m) {
            Ok(n) => n,
            Err(d) => return d,
        };
        let (mut max_size, mut depth) = (None, Depth::Null);
        for o in options {
            match o {
                GetMetadataOption::MaxSize(n) => max_size = Some(*n as usize),
                GetMetadataOption::Depth(d) => depth = d.clone(),
            }
        }
        let mut wanted = Vec::new();
        for e in entries {
            match entry_name(e) {
                Some(n) => wanted.push(n),
                None => return Done::bad("Entry names start with /private or /shared"),
            }
        }
        let Some(mut c) = self.client() else {
            return Done::bad("Log in first");
        };
        let all = match c
            .get_metadata(pb::GetMetadataRequest {
                mailbox: mailbox.clone(),
            })
            .await
        {
            Ok(r) => r.into_inner().entries,
            Err(s) => return store_no(&s),
        };
        let mut longest = 0usize;
        let mut found: Vec<&pb::MetadataEntry> = Vec::new();
        for e in &all {
            if !wanted.iter().any(|w| within(&e.name, w, &depth)) {
                continue;
            }
            if max_size.is_some_and(|m| e.value.len() > m) {
                longest = longest.max(e.value.len());
                continue;
            }
            found.push(e);
        }
        if !found.is_empty() {
            let mut line = b"* METADATA ".to_vec();
            if mailbox.is_empty() {
                line.extend_from_slice(b"\"\"");
            } else {
                line.extend_from_slice(&self.wire_name(&mailbox));
            }
            line.extend_from_slice(b" (");
            for (i, e) in found.iter().enumerate() {
                if i > 0 {
                    line.push(b' ');
                }
                quote::string(&mut line, e.name.as_bytes());
                line.push(b' ');
                if e.value.contains(&0) {
                    // literal8 (RFC 3516): the value holds NUL.
                    line.extend_from_slice(format!("~{{{}}}\r\n", e.value.len()).as_bytes());
                    line.extend_from_slice(&e.value);
                } else {
                    quote::string(&mut line, &e.value);
                }
            }
            line.extend_from_slice(b")\r\n");
            self.out.extend_from_slice(&line);
        }
        if longest > 0 {
            Done::ok(format!(
                "[METADATA LONGENTRIES {longest}] GETMETADATA completed"
            ))
        } else {
            Done::ok("GETMETADATA completed")
        }
    }

    /// SETMETADATA (RFC 5464 4.3): every entry set (NIL removes it) or,
    /// on any refusal, none.
    pub(super) async fn set_metadata(
        &mut self,
        m: &Mailbox<'_>,
        values: &[EntryValue<'_>],
    ) -> Done {
        let mailbox = match self.metadata_mailbox(m) {
            Ok(n) => n,
            Err(d) => return d,
        };
        let mut entries = Vec::new();
        for ev in values {
            let Some(name) = entry_name(&ev.entry) else {
                return Done::bad("Entry names start with /private or /shared");
            };
            if name == "/private" || name == "/shared" {
                return Done::bad("/private and /shared hold no value themselves");
            }
            let value = match &ev.value {
                NString8::NString(n) => n.0.as_ref().map(|s| s.as_ref().to_vec()),
                NString8::Literal8(l) => Some(l.data.as_ref().to_vec()),
            };
            if value.as_ref().is_some_and(|v| v.len() > MAX_VALUE) {
                return Done::no(format!("[METADATA MAXSIZE {MAX_VALUE}] Value too large"));
            }
            entries.push(pb::MetadataEntry {
                name,
                value: value.clone().unwrap_or_default(),
                remove: value.is_none(),
            });
        }
        let Some(mut c) = self.client() else {
            return Done::bad("Log in first");
        };
        match c
            .set_metadata(pb::SetMetadataRequest {
                mailbox: mailbox.clone(),
                entries,
            })
            .await
        {
            Ok(_) => {
                self.notify_own_list(&[&mailbox]);
                Done::ok("SETMETADATA completed")
            }
            Err(s) if s.code() == Code::FailedPrecondition && s.message().contains("metadata") => {
                Done::no("[METADATA TOOMANY] Too many entries")
            }
            Err(s) if s.code() == Code::InvalidArgument && s.message().contains("too large") => {
                Done::no(format!("[METADATA MAXSIZE {MAX_VALUE}] Value too large"))
            }
            Err(s) if s.code() == Code::InvalidArgument => Done::bad(s.message().to_string()),
            Err(s) => store_no(&s),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use imap_codec::imap_types::core::AString;

    #[test]
    fn entry_names_and_depth() {
        let e = |s: &str| Entry::try_from(AString::try_from(s.to_string()).unwrap()).unwrap();
        assert_eq!(
            entry_name(&e("/Shared/Comment")),
            Some("/shared/comment".into())
        );
        assert_eq!(entry_name(&e("/private")), Some("/private".into()));
        for bad in [
            "/other/x",
            "/shared/",
            "/shared//x",
            "/shared/*",
            "shared/x",
            "/privatex",
        ] {
            assert_eq!(entry_name(&e(bad)), None, "{bad}");
        }
        assert!(within("/shared/a", "/shared/a", &Depth::Null));
        assert!(!within("/shared/a/b", "/shared/a", &Depth::Null));
        assert!(within("/shared/a/b", "/shared/a", &Depth::One));
        assert!(!within("/shared/a/b/c", "/shared/a", &Depth::One));
        assert!(within("/shared/a/b/c", "/shared/a", &Depth::Infinity));
        assert!(!within("/shared/ab", "/shared/a", &Depth::Infinity));
    }
}
