//! URLAUTH (RFC 4467) and URLAUTH=BINARY (RFC 5524): GENURLAUTH makes a
//! URL that lets someone else (a submission server, another user, anyone)
//! fetch one message or part of this account's; URLFETCH reads such URLs
//! (and this account's own plain URLs); RESETKEY withdraws them. The
//! store keeps the access keys and checks every authorized URL itself;
//! the only mechanism is INTERNAL (HMAC-SHA256 under the mailbox's key).

use imap_codec::imap_types::fetch::MessageDataItem;
use imap_wire::ext::UrlFetchArg;
use mail_types::imap_url::{self, ImapUrl};

use super::*;

fn is_internal(mech: &str) -> bool {
    mech.eq_ignore_ascii_case("INTERNAL")
}

/// `* URLFETCH url` and the start of what follows.
fn urlfetch_line(url: &str) -> Vec<u8> {
    let mut out = b"* URLFETCH ".to_vec();
    quote::string(&mut out, url.as_bytes());
    out
}

/// A `literal` (or with `eight`, a `literal8`, RFC 3516 4.2) of `data`.
/// A `literal` holds no NUL (RFC 9051 4.3): one is sent as 0x80, as
/// FETCH BODY does.
fn push_literal(out: &mut Vec<u8>, data: &[u8], eight: bool) {
    let tilde = if eight { "~" } else { "" };
    out.extend_from_slice(format!("{tilde}{{{}}}\r\n", data.len()).as_bytes());
    if eight {
        out.extend_from_slice(data);
    } else {
        out.extend(data.iter().map(|&b| if b == 0 { 0x80 } else { b }));
    }
}

/// The body part numbers a section names when it is a part (`1.2`), or
/// the whole message (no section); `None` for HEADER, TEXT, MIME...
fn part_numbers(section: Option<&str>) -> Option<Vec<NonZeroU32>> {
    let Some(s) = section else {
        return Some(Vec::new());
    };
    s.split('.')
        .map(|n| n.parse::<u32>().ok().and_then(NonZeroU32::new))
        .collect()
}

impl Session {
    /// GENURLAUTH (RFC 4467 6): one authorized URL per rump, in order,
    /// in one untagged GENURLAUTH response. A rump that is not a URLAUTH
    /// URL rump is BAD; one naming another user, or a mailbox that does
    /// not exist, is NO.
    pub(super) async fn gen_urlauth(&mut self, pairs: &[(String, String)]) -> Done {
        let Some(mut c) = self.client() else {
            return Done::bad("Log in first");
        };
        for (url, mech) in pairs {
            if !is_internal(mech) {
                return Done::no(format!(
                    "[CANNOT] Unknown URLAUTH mechanism {}; INTERNAL is supported",
                    printable(mech)
                ));
            }
            let rump_ok = imap_url::parse(url).is_some_and(|u| {
                u.urlauth
                    .as_ref()
                    .is_some_and(|a| a.verifier.is_none() && a.rump_len == url.len())
            });
            if !rump_ok {
                return Done::bad(format!(
                    "Not a URLAUTH URL rump (imap://user@host/mailbox/;UID=n...;URLAUTH=access): {}",
                    printable(url)
                ));
            }
        }
        let mut line = b"* GENURLAUTH".to_vec();
        for (url, _) in pairs {
            match c
                .gen_url_auth(pb::GenUrlAuthRequest { rump: url.clone() })
                .await
            {
                Ok(r) => {
                    line.push(b' ');
                    quote::string(&mut line, r.into_inner().url.as_bytes());
                }
                Err(s) if s.code() == Code::InvalidArgument => {
                    return Done::no(format!(
                        "[CANNOT] A URL must name this user's own mailbox: {}",
                        printable(url)
                    ));
                }
                Err(s) => return store_no(&s),
            }
        }
        line.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(&line);
        Done::ok("GENURLAUTH completed")
    }

    /// RESETKEY (RFC 4467 5): new access keys for one mailbox, or for all
    /// of the account's; every URL made before stops working.
    pub(super) async fn reset_key(&mut self, mailbox: Option<&[u8]>, mechs: &[String]) -> Done {
        if let Some(m) = mechs.iter().find(|m| !is_internal(m)) {
            return Done::no(format!(
                "[CANNOT] Unknown URLAUTH mechanism {}; INTERNAL is supported",
                printable(m)
            ));
        }
        let name = match mailbox {
            None => String::new(),
            Some(raw) => match Mailbox::try_from(raw.to_vec()) {
                Ok(m) => match self.mailbox_name(&m) {
                    Ok(n) => n,
                    Err(d) => return d,
                },
                Err(_) => return Done::bad("Invalid mailbox name"),
            },
        };
        let Some(mut c) = self.client() else {
            return Done::bad("Log in first");
        };
        match c
            .reset_url_auth_keys(pb::ResetUrlAuthKeysRequest { mailbox: name })
            .await
        {
            Ok(_) => Done::ok("RESETKEY completed"),
            Err(s) => store_no(&s),
        }
    }

    /// URLFETCH (RFC 4467 7, RFC 5524 3): one untagged URLFETCH per URL,
    /// NIL for a URL that names nothing this session may read. Output is
    /// flushed per URL, so memory stays one message whatever the count.
    pub(super) async fn url_fetch(&mut self, args: &[UrlFetchArg]) -> Result<Done, End> {
        for a in args {
            let line = match Box::pin(self.url_fetch_one(a)).await {
                Ok(l) => l,
                Err(d) => return Ok(d),
            };
            self.out.extend_from_slice(&line);
            self.maybe_flush().await?;
        }
        Ok(Done::ok("URLFETCH completed"))
    }

    async fn url_fetch_one(&mut self, a: &UrlFetchArg) -> Result<Vec<u8>, Done> {
        let mut line = urlfetch_line(&a.url);
        let nil = |mut line: Vec<u8>| {
            line.extend_from_slice(b" NIL\r\n");
            line
        };
        let Some(u) = imap_url::parse(&a.url) else {
            return Ok(nil(line));
        };
        let Some((meta, raw)) = self.url_content(&a.url, &u).await? else {
            return Ok(nil(line));
        };
        let Some(content) = UrlContent::new(&u, &meta, &raw) else {
            return Ok(nil(line));
        };
        // A section that names nothing is this URL's NIL, not the
        // command's failure (RFC 4467 7).
        let Ok(body) = content.body() else {
            return Ok(nil(line));
        };
        if !a.extended {
            line.push(b' ');
            push_literal(&mut line, &body, false);
            line.extend_from_slice(b"\r\n");
            return Ok(line);
        }
        if a.body_part_structure {
            // With BINARY, the structure of the data BINARY returns.
            let decoded = if a.binary { content.decoded() } else { None };
            let Some(bs) = content.structure(decoded.as_deref()) else {
                return Ok(nil(line));
            };
            line.extend_from_slice(b" (BODYPARTSTRUCTURE ");
            line.extend_from_slice(&bs);
            line.push(b')');
        }
        if a.binary {
            line.extend_from_slice(b" (BINARY ");
            match content.binary() {
                Some(data) => push_literal(&mut line, &data, data.contains(&0)),
                // Not decodable (an unknown transfer encoding): RFC 5524 3.
                None => line.extend_from_slice(b"NIL"),
            }
            line.push(b')');
        }
        if a.body {
            line.extend_from_slice(b" (BODY ");
            push_literal(&mut line, &body, false);
            line.push(b')');
        }
        line.extend_from_slice(b"\r\n");
        Ok(line)
    }
}

/// A fetched URL's message, and the section and partial the URL names.
struct UrlContent<'a> {
    url: &'a ImapUrl,
    body: pb::BodyPart,
    raw: &'a [u8],
}

impl<'a> UrlContent<'a> {
    /// `None` when the URL names a body part the message does not have.
    fn new(url: &'a ImapUrl, meta: &pb::MessageMeta, raw: &'a [u8]) -> Option<Self> {
        let body = meta.summary.as_ref()?.body.clone().unwrap_or_default();
        let parts: Vec<NonZeroU32> = url
            .section
            .as_deref()
            .unwrap_or("")
            .split('.')
            .map_while(|n| n.parse::<u32>().ok().and_then(NonZeroU32::new))
            .collect();
        if !parts.is_empty() && crate::structure::resolve_part(&body, &parts).is_none() {
            return None;
        }
        Some(UrlContent { url, body, raw })
    }

    fn partial(&self, data: Vec<u8>) -> Vec<u8> {
        match self.url.partial {
            Some((o, l)) => crate::structure::partial(&data, o, l).to_vec(),
            None => data,
        }
    }

    /// The section as stored (RFC 4467 7: "the data is the section").
    fn body(&self) -> Result<Vec<u8>, Done> {
        let section = match &self.url.section {
            Some(spec) => super::catenate::section_of(spec)
                .ok_or_else(|| Done::no("[BADURL] Not a section"))?,
            None => None,
        };
        let bytes = crate::structure::section_bytes(self.raw, &self.body, section.as_ref())
            .map(|b| b.into_owned())
            .unwrap_or_default();
        Ok(self.partial(bytes))
    }

    /// The section with its transfer encoding undone (RFC 5524 3, as
    /// BINARY[] of RFC 3516); `None` when it is not a body part or its
    /// encoding is unknown.
    fn binary(&self) -> Option<Vec<u8>> {
        let part = part_numbers(self.url.section.as_deref())?;
        let data = crate::structure::binary_bytes(self.raw, &self.body, &part).ok()?;
        Some(self.partial(data))
    }

    /// The whole part the URL names with its transfer encoding undone
    /// (no partial applied); `None` as for [`Self::binary`].
    fn decoded(&self) -> Option<Vec<u8>> {
        let part = part_numbers(self.url.section.as_deref())?;
        crate::structure::binary_bytes(self.raw, &self.body, &part).ok()
    }

    /// The BODYSTRUCTURE of the part the URL names (RFC 5524 3). Given
    /// the part's `decoded` bytes (BINARY asked for too), a single part
    /// is described as BINARY returns it (RFC 5524 3.2, as Dovecot does):
    /// no transfer encoding left (`7bit`, `8bit`, or `binary` when it
    /// holds a NUL), the decoded size, 0 lines. A multipart or message
    /// part is described as stored, as BINARY returns it as stored.
    fn structure(&self, decoded: Option<&[u8]>) -> Option<Vec<u8>> {
        let part = part_numbers(self.url.section.as_deref())?;
        let b = if part.is_empty() {
            &self.body
        } else {
            crate::structure::resolve_part(&self.body, &part)?
        };
        let converted;
        let b = match decoded {
            Some(data) if b.parts.is_empty() && b.message_body.is_none() => {
                let encoding: &[u8] = if data.contains(&0) {
                    b"binary"
                } else if data.is_ascii() {
                    b"7bit"
                } else {
                    b"8bit"
                };
                converted = pb::BodyPart {
                    encoding: encoding.to_vec(),
                    size: data.len() as u64,
                    lines: 0,
                    ..b.clone()
                };
                &converted
            }
            _ => b,
        };
        let bs = crate::structure::body_structure(b, true);
        let one = crate::fetch::encode(1, vec![MessageDataItem::BodyStructure(bs)]);
        let prefix = b"* 1 FETCH (BODYSTRUCTURE ".len();
        one.get(prefix..one.len().checked_sub(3)?)
            .map(<[u8]>::to_vec)
    }
}

/// A short, printable echo of client text for a response line.
fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}
