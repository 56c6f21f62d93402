//! METADATA (RFC 5464), URLAUTH (RFC 4467: GENURLAUTH, RESETKEY,
//! URLFETCH) and QUOTA. The SQL is `ops/metadata.rs` (both backends);
//! the limits are [`super::METADATA_MAX_VALUE`] and its neighbours.

use mail_types::{EmailAddress, UidSetRanges};
use mailbox_api::pb;
use rand::RngCore;
use sha2::Sha256;

use super::{
    AccountId, Backend, METADATA_MAX_ACCOUNT_BYTES, METADATA_MAX_ENTRIES, METADATA_MAX_VALUE,
    Store, lite, parse_mailbox, pg,
};
use crate::error::{Result, StoreError};

/// HMAC-SHA256 of a URL rump under a mailbox access key (hex, 32 bytes):
/// the INTERNAL URLAUTH mechanism's verifier (RFC 4467 2.1, 7).
fn urlauth_mac(key_hex: &str, rump: &str) -> Option<hmac::Hmac<Sha256>> {
    use hmac::{KeyInit, Mac};
    let key: [u8; 32] = hex::decode(key_hex).ok()?.try_into().ok()?;
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(&key).ok()?;
    mac.update(rump.as_bytes());
    Some(mac)
}

impl Store {
    /// METADATA entries of a mailbox, or of the server (`mailbox` empty).
    pub async fn get_metadata(
        &self,
        account: AccountId,
        mailbox: &str,
    ) -> Result<Vec<pb::MetadataEntry>> {
        let name = (!mailbox.is_empty())
            .then(|| parse_mailbox(mailbox))
            .transpose()?;
        let rows = on_backend!(
            self,
            get_metadata(account, name.as_ref().map(|n| n.as_str()))
        )?;
        Ok(rows
            .into_iter()
            .map(|(name, value)| pb::MetadataEntry {
                name,
                value,
                remove: false,
            })
            .collect())
    }

    /// Sets and removes METADATA entries, all or none: names must be
    /// `/private/...` or `/shared/...`, values at most METADATA_MAX_VALUE,
    /// at most METADATA_MAX_ENTRIES entries after the change.
    pub async fn set_metadata(
        &self,
        account: AccountId,
        mailbox: &str,
        entries: Vec<pb::MetadataEntry>,
    ) -> Result<()> {
        let name = (!mailbox.is_empty())
            .then(|| parse_mailbox(mailbox))
            .transpose()?;
        let mut changes = Vec::with_capacity(entries.len());
        for e in entries {
            let n = e.name.to_ascii_lowercase();
            let root_ok = n.starts_with("/private/") || n.starts_with("/shared/");
            if !root_ok || n.contains("//") || n.ends_with('/') || n.len() > 1024 {
                return Err(StoreError::Invalid(format!("metadata entry name {n:?}")));
            }
            if e.value.len() > METADATA_MAX_VALUE {
                return Err(StoreError::Invalid("metadata value too large".into()));
            }
            changes.push((n, (!e.remove).then_some(e.value)));
        }
        on_backend!(
            self,
            set_metadata(
                account,
                name.as_ref().map(|n| n.as_str()),
                &changes,
                METADATA_MAX_ENTRIES,
                METADATA_MAX_ACCOUNT_BYTES
            )
        )?;
        self.list_or_metadata_changed(account, true).await;
        Ok(())
    }

    /// GENURLAUTH (RFC 4467 6): the rump, which must name a mailbox of
    /// this account and end in its access identifier, with the verifier
    /// under the mailbox's access key (made on first use) appended.
    pub async fn gen_urlauth(&self, account: AccountId, rump: &str) -> Result<String> {
        use hmac::Mac;
        use mail_types::imap_url;
        let bad = || StoreError::Invalid("not a URLAUTH URL rump (RFC 4467 2)".into());
        let u = imap_url::parse(rump).ok_or_else(bad)?;
        let auth = u.urlauth.as_ref().ok_or_else(bad)?;
        if auth.verifier.is_some() || auth.rump_len != rump.len() {
            return Err(bad());
        }
        let (address, _) = on_backend!(self, account_by_id(account))?;
        // The percent-encoded address on any host, or the local part on
        // the account's own domain (ImapUrl::owner).
        let owner = u.owner().and_then(|a| EmailAddress::parse(&a).ok());
        if !owner.is_some_and(|o| o.as_str().eq_ignore_ascii_case(&address)) {
            return Err(StoreError::Invalid(
                "a URLAUTH URL names the user it belongs to".into(),
            ));
        }
        let name = parse_mailbox(&u.mailbox_name().ok_or_else(bad)?)?;
        let mut fresh = [0u8; 32];
        rand::rng().fill_bytes(&mut fresh);
        let fresh = hex::encode(fresh);
        let (key, _) = on_backend!(self, urlauth_key(account, name.as_str(), Some(&fresh)))?
            .ok_or(StoreError::NotFound("mailbox"))?;
        let mac = urlauth_mac(&key, rump).ok_or(StoreError::Internal(
            "stored URLAUTH key is not 32 hex bytes".into(),
        ))?;
        Ok(format!(
            "{rump}:internal:{}",
            hex::encode(mac.finalize().into_bytes())
        ))
    }

    /// RESETKEY (RFC 4467 5): every URL of the mailbox (or of all the
    /// account's mailboxes) stops working.
    pub async fn reset_urlauth_keys(
        &self,
        account: AccountId,
        mailbox: Option<&str>,
    ) -> Result<()> {
        let name = mailbox.map(parse_mailbox).transpose()?;
        on_backend!(
            self,
            reset_urlauth_keys(account, name.as_ref().map(|n| n.as_str()))
        )
    }

    /// URLFETCH (RFC 4467 7): the message a URLAUTH-authorized URL names,
    /// read from its owner's mailbox when the verifier matches the rump
    /// under that mailbox's key, the URL has not expired, and its access
    /// identifier admits the caller's account. Every refusal is the same
    /// NotFound, so a URL's validity is all a caller learns.
    pub async fn url_fetch(
        &self,
        caller: AccountId,
        url: &str,
    ) -> Result<(pb::MessageMeta, Vec<u8>)> {
        use hmac::Mac;
        use mail_types::imap_url::{self, Access};
        let nf = || StoreError::NotFound("URL");
        let u = imap_url::parse(url).ok_or_else(nf)?;
        let auth = u.urlauth.as_ref().ok_or_else(nf)?;
        let (mech, token) = auth.verifier.as_ref().ok_or_else(nf)?;
        if !mech.eq_ignore_ascii_case("internal") {
            return Err(nf());
        }
        if auth.expire.is_some_and(|e| e <= crate::model::now()) {
            return Err(nf());
        }
        match &auth.access {
            Access::Anonymous | Access::AuthUser => {}
            Access::User(who) => {
                let (me, _) = on_backend!(self, account_by_id(caller))?;
                let who = u
                    .access_user(who)
                    .and_then(|w| EmailAddress::parse(&w).ok())
                    .ok_or_else(nf)?;
                if !who.as_str().eq_ignore_ascii_case(&me) {
                    return Err(nf());
                }
            }
            // No submission server acts for users here.
            Access::Submit(_) => return Err(nf()),
        }
        let owner = u
            .owner()
            .and_then(|a| EmailAddress::parse(&a).ok())
            .ok_or_else(nf)?;
        // A missing account, mailbox or key takes the same steps as a
        // wrong verifier (a key lookup and an HMAC), so response times do
        // not tell which it was.
        let found = on_backend!(self, enabled_account_by_address(owner.as_str()))?;
        let owner = found.unwrap_or(AccountId(0));
        let name = u
            .mailbox_name()
            .and_then(|n| parse_mailbox(&n).ok())
            .ok_or_else(nf)?;
        let key = match on_backend!(self, urlauth_key(owner, name.as_str(), None)) {
            Ok(k) => k,
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        let dummy = "00".repeat(32);
        let key_hex = key.as_ref().map_or(dummy.as_str(), |(k, _)| k.as_str());
        let mac = urlauth_mac(key_hex, &url[..auth.rump_len]).ok_or_else(nf)?;
        let token = hex::decode(token).map_err(|_| nf())?;
        let verified = mac.verify_slice(&token).is_ok();
        let Some((_, validity)) = key.filter(|_| verified && found.is_some()) else {
            return Err(nf());
        };
        if u.uid_validity.is_some_and(|v| v != validity) {
            return Err(nf());
        }
        let uids = UidSetRanges::from_ranges([(u.uid, u.uid)]);
        let meta = self
            .fetch(owner, name.as_str(), &uids, true, 0, false)
            .await?
            .into_iter()
            .next()
            .ok_or_else(nf)?;
        let (data, _) = self.message_data(owner, name.as_str(), u.uid, 0, 0).await?;
        Ok((meta, data))
    }

    pub async fn quota(&self, account: AccountId) -> Result<pb::GetQuotaResponse> {
        on_backend!(self, quota(account))
    }
}
