//! CATENATE (RFC 4469): an APPEND whose message is put together from text
//! and from IMAP URLs (RFC 5092) naming messages, or parts of them, on
//! this server: this account's own
//! (`/mailbox;UIDVALIDITY=n/;UID=n[/;SECTION=s][/;PARTIAL=o.l]`, or the
//! same after `imap://user@host/` naming this account), or any
//! account's through a URLAUTH-authorized URL (RFC 4467) the store
//! verifies; anything else is NO [BADURL]. URLFETCH reads URLs the same
//! way (`url_content`).

use imap_codec::CommandCodec;
use imap_codec::decode::Decoder;
use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::fetch::{MacroOrMessageDataItemNames, MessageDataItemName};
use imap_wire::ext::CatPart;
use mail_types::imap_url::{self, ImapUrl};

use super::*;

/// A FETCH section spec (`1.2.MIME`, `HEADER.FIELDS (TO)`, `TEXT`) as
/// imap-codec parses it in `BODY[...]`.
pub(super) fn section_of(
    spec: &str,
) -> Option<Option<imap_codec::imap_types::fetch::Section<'static>>> {
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

    /// The bytes an IMAP URL names (its section and partial applied).
    async fn url_bytes(&mut self, url: &str) -> Result<Vec<u8>, Done> {
        // resp-text-code BADURL takes the URL as text without "]".
        let shown: String = url.chars().filter(|&c| c != ']' && c >= ' ').collect();
        let bad = || Done::no(format!("[BADURL {shown}] The URL names nothing here"));
        let u = imap_url::parse(url).ok_or_else(bad)?;
        let (meta, raw) = self.url_content(url, &u).await?.ok_or_else(bad)?;
        // A command's URLs read a bounded amount, however they repeat.
        if raw.len() as u64 > self.catenate_budget {
            return Err(Done::no(
                "[LIMIT] CATENATE would read too much for one command",
            ));
        }
        self.catenate_budget -= raw.len() as u64;
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

    /// The message a URL names, with its summary and bytes: through the
    /// store's URLAUTH check for an authorized URL, else from this
    /// account (a relative URL, or one naming this account's user).
    /// `Ok(None)`: the URL names nothing this session may read.
    pub(super) async fn url_content(
        &mut self,
        url: &str,
        u: &ImapUrl,
    ) -> Result<Option<(pb::MessageMeta, Vec<u8>)>, Done> {
        let Some(mut c) = self.client() else {
            return Err(Done::bad("Log in first"));
        };
        if u.urlauth.is_some() {
            let mut s = match c.url_fetch(pb::UrlFetchRequest { url: url.into() }).await {
                Ok(s) => s.into_inner(),
                Err(s) if s.code() == Code::NotFound => return Ok(None),
                Err(s) => return Err(store_no(&s)),
            };
            let (mut meta, mut raw) = (None, Vec::new());
            loop {
                match s.message().await {
                    Ok(Some(chunk)) => {
                        meta = chunk.meta.or(meta);
                        raw.extend_from_slice(&chunk.data);
                    }
                    Ok(None) => break,
                    Err(s) if s.code() == Code::NotFound => return Ok(None),
                    Err(s) => return Err(store_no(&s)),
                }
            }
            return Ok(meta.map(|m| (m, raw)));
        }
        // This account's user (the percent-encoded address on any host,
        // or the local part on the account's own domain: ImapUrl::owner),
        // or a relative URL; an absolute URL without a user asks for
        // anonymous access (RFC 5092 3.2), not ours.
        let absolute = url
            .get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("imap://"));
        match (u.user.as_deref(), u.owner()) {
            (Some(_), Some(who)) if who.eq_ignore_ascii_case(&self.user) => {}
            (None, _) if !absolute => {}
            _ => return Ok(None),
        }
        let Some(name) = u.mailbox_name() else {
            return Ok(None);
        };
        let Ok(st) = c
            .mailbox_status(pb::MailboxStatusRequest { name: name.clone() })
            .await
        else {
            return Ok(None);
        };
        let st = st.into_inner().status.unwrap_or_default();
        if u.uid_validity.is_some_and(|v| v != st.uid_validity) {
            return Ok(None);
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
        let Some(mut meta) = meta else {
            return Ok(None);
        };
        let raw = match meta.data.take() {
            Some(d) => d,
            None => super::fetching::read_body(&mut c, &name, u.uid, 0)
                .await
                .map_err(|s| store_no(&s))?,
        };
        Ok(Some((meta, raw)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections() {
        assert!(matches!(section_of("1.2.MIME"), Some(Some(_))));
        assert!(matches!(section_of("HEADER.FIELDS (TO)"), Some(Some(_))));
        assert!(section_of("1..2").is_none());
    }
}
