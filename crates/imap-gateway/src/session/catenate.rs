//! CATENATE (RFC 4469): an APPEND whose message is put together from text
//! and from IMAP URLs (RFC 5092) naming messages, or parts of them, that
//! this account already has. Only URLs into this server and this account
//! are followed (`/mailbox;UIDVALIDITY=n/;UID=n[/;SECTION=s][/;PARTIAL=o.l]`,
//! or the same after `imap://user@host/` with this account's user);
//! anything else is NO [BADURL].

use imap_codec::CommandCodec;
use imap_codec::decode::Decoder;
use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::fetch::{MacroOrMessageDataItemNames, MessageDataItemName};
use imap_wire::ext::CatPart;

use super::*;

/// What an IMAP URL names.
#[derive(Debug, PartialEq, Eq)]
struct ImapUrl {
    /// The mailbox name as on the wire (modified UTF-7 or UTF-8).
    mailbox: Vec<u8>,
    uid_validity: Option<u32>,
    uid: u32,
    section: Option<String>,
    partial: Option<(u32, Option<u32>)>,
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Parses a URL into this server for `user` (RFC 5092 imapurl / the
/// relative "/..." form); `None` for anything else.
fn parse_url(url: &str, user: &str) -> Option<ImapUrl> {
    let path = match url.strip_prefix("imap://") {
        Some(rest) => {
            let (authority, path) = rest.split_once('/')?;
            // Only this account's URLs: a URL without a user is anonymous
            // access (RFC 5092 3.2), not ours to follow.
            let (userinfo, _host) = authority.rsplit_once('@')?;
            let who = percent_decode(userinfo.split(';').next()?)?;
            if !who.eq_ignore_ascii_case(user.as_bytes()) {
                return None;
            }
            path
        }
        None => url.strip_prefix('/')?,
    };
    let mut pieces = path.split("/;");
    let first = pieces.next()?;
    let (mbox, validity) = match first.split_once(";UIDVALIDITY=") {
        Some((m, v)) => (m, Some(v.parse::<u32>().ok().filter(|&v| v > 0)?)),
        None => (first, None),
    };
    if mbox.is_empty() || mbox.contains(';') {
        return None;
    }
    let mut u = ImapUrl {
        mailbox: percent_decode(mbox)?,
        uid_validity: validity,
        uid: 0,
        section: None,
        partial: None,
    };
    for p in pieces {
        let (k, v) = p.split_once('=')?;
        match k.to_ascii_uppercase().as_str() {
            "UID" if u.uid == 0 => u.uid = v.parse().ok().filter(|&n| n > 0)?,
            "SECTION" if u.section.is_none() && u.uid != 0 => {
                u.section = Some(String::from_utf8(percent_decode(v)?).ok()?);
            }
            "PARTIAL" if u.partial.is_none() && u.uid != 0 => {
                u.partial = Some(match v.split_once('.') {
                    Some((o, l)) => (o.parse().ok()?, Some(l.parse().ok().filter(|&l| l > 0)?)),
                    None => (v.parse().ok()?, None),
                });
            }
            // URLAUTH and anything else: not followed.
            _ => return None,
        }
    }
    (u.uid != 0).then_some(u)
}

/// A FETCH section spec (`1.2.MIME`, `HEADER.FIELDS (TO)`, `TEXT`) as
/// imap-codec parses it in `BODY[...]`.
fn section_of(spec: &str) -> Option<Option<imap_codec::imap_types::fetch::Section<'static>>> {
    use imap_codec::imap_types::ToStatic;
    let cmd = format!("x FETCH 1 BODY.PEEK[{spec}]\r\n");
    let (rest, c) = CommandCodec::default().decode(cmd.as_bytes()).ok()?;
    if !rest.is_empty() {
        return None;
    }
    match c.body {
        CommandBody::Fetch {
            macro_or_item_names: MacroOrMessageDataItemNames::MessageDataItemNames(items),
            ..
        } => match items.first()? {
            MessageDataItemName::BodyExt { section, .. } => Some(section.to_static()),
            _ => None,
        },
        _ => None,
    }
}

impl Session {
    /// The message CATENATE builds (RFC 4469 5), or NO [BADURL url] /
    /// [TOOBIG].
    pub(super) async fn catenate(&mut self, parts: Vec<CatPart>) -> Result<Vec<u8>, Done> {
        let max = self.settings().max_append as usize;
        let mut out = Vec::new();
        for part in parts {
            let bytes = match part {
                CatPart::Text(t) => t,
                CatPart::Url(url) => Box::pin(self.url_bytes(&url)).await?,
            };
            if out.len() + bytes.len() > max {
                return Err(Done::no(
                    "[TOOBIG] The message would be larger than APPENDLIMIT",
                ));
            }
            out.extend_from_slice(&bytes);
        }
        Ok(out)
    }

    /// The bytes an IMAP URL names in this account.
    async fn url_bytes(&mut self, url: &str) -> Result<Vec<u8>, Done> {
        // resp-text-code BADURL takes the URL as text without "]".
        let shown: String = url.chars().filter(|&c| c != ']' && c >= ' ').collect();
        let bad = || Done::no(format!("[BADURL {shown}] The URL names nothing here"));
        let u = parse_url(url, &self.user).ok_or_else(bad)?;
        // RFC 5092 9: a URL's mailbox name is UTF-8, percent-encoded.
        let raw_name = String::from_utf8(u.mailbox.clone()).map_err(|_| bad())?;
        let name = if raw_name.eq_ignore_ascii_case("INBOX") {
            "INBOX".to_string()
        } else {
            raw_name
        };
        let Some(mut c) = self.client() else {
            return Err(Done::bad("Log in first"));
        };
        let st = c
            .mailbox_status(pb::MailboxStatusRequest { name: name.clone() })
            .await
            .map_err(|_| bad())?
            .into_inner()
            .status
            .unwrap_or_default();
        if u.uid_validity.is_some_and(|v| v != st.uid_validity) {
            return Err(bad());
        }
        let mut s = c
            .fetch(pb::FetchRequest {
                mailbox: name.clone(),
                uids: Some(pb::UidSet::of([u.uid])),
                with_summary: true,
                changed_since: 0,
                with_data: true,
            })
            .await
            .map_err(|s| store_no(&s))?
            .into_inner();
        let mut meta = None;
        while let Some(b) = s.message().await.map_err(|s| store_no(&s))? {
            meta = b.messages.into_iter().find(|m| m.uid == u.uid).or(meta);
        }
        let meta = meta.ok_or_else(bad)?;
        // A command's URLs read a bounded amount, however they repeat.
        if meta.size > self.catenate_budget {
            return Err(Done::no(
                "[LIMIT] CATENATE would read too much for one command",
            ));
        }
        self.catenate_budget -= meta.size;
        let raw = match meta.data {
            Some(d) => d,
            None => super::fetching::read_body(&mut c, &name, u.uid, 0)
                .await
                .map_err(|s| store_no(&s))?,
        };
        let empty = pb::BodyPart::default();
        let body = meta
            .summary
            .as_ref()
            .and_then(|s| s.body.as_ref())
            .unwrap_or(&empty);
        let section = match &u.section {
            Some(spec) => section_of(spec).ok_or_else(bad)?,
            None => None,
        };
        let bytes = crate::structure::section_bytes(&raw, body, section.as_ref())
            .ok_or_else(bad)?
            .into_owned();
        Ok(match u.partial {
            Some((o, l)) => crate::structure::partial(&bytes, o, l).to_vec(),
            None => bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imap_urls() {
        let u = parse_url(
            "/INBOX;UIDVALIDITY=7/;UID=20/;SECTION=1.2/;PARTIAL=0.10",
            "a@x",
        );
        assert_eq!(
            u,
            Some(ImapUrl {
                mailbox: b"INBOX".to_vec(),
                uid_validity: Some(7),
                uid: 20,
                section: Some("1.2".into()),
                partial: Some((0, Some(10))),
            })
        );
        let u = parse_url("imap://a%40x@mail.example/My%20Box/;UID=3", "a@x");
        assert_eq!(u.map(|u| (u.mailbox, u.uid)), Some((b"My Box".to_vec(), 3)));
        for bad in [
            "imap://b@mail.example/INBOX/;UID=3",
            "/INBOX",
            "/INBOX/;UID=0",
            "/INBOX/;UID=3/;URLAUTH=anonymous",
            "/INBOX;UIDVALIDITY=x/;UID=3",
            "INBOX/;UID=3",
            "/INBOX/;SECTION=1",
            "/INBOX/;UID=3/;UID=4",
            "/IN%zzBOX/;UID=3",
        ] {
            assert_eq!(parse_url(bad, "a@x"), None, "{bad}");
        }
        assert!(matches!(section_of("1.2.MIME"), Some(Some(_))));
        assert!(matches!(section_of("HEADER.FIELDS (TO)"), Some(Some(_))));
        assert!(section_of("1..2").is_none());
    }
}
