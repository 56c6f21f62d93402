//! QUOTA (RFC 9208): one quota root per account, named "", with the
//! STORAGE and MESSAGE resources the store enforces at delivery, APPEND
//! and COPY (refusals are `NO [OVERQUOTA]`). Limits are set by the
//! operator (`mailctl quota set`), so SETQUOTA is refused.

use imap_codec::imap_types::core::AString;

use super::*;

impl Session {
    /// `* QUOTA "" (STORAGE used limit MESSAGE used limit)`, STORAGE in
    /// units of 1,024 octets (RFC 9208 5.1), MESSAGE in messages (5.2),
    /// each resource only when it has a limit; `None` for an unlimited
    /// account, which has no quota root (a quota-list holds at least one
    /// resource).
    async fn quota_line(&mut self) -> Result<Option<String>, Done> {
        let Some(mut c) = self.client() else {
            return Err(Done::bad("Log in first"));
        };
        let q = c
            .get_quota(pb::GetQuotaRequest {})
            .await
            .map_err(|s| store_no(&s))?
            .into_inner();
        let mut resources = Vec::new();
        if q.limit_bytes != 0 {
            resources.push(format!(
                "STORAGE {} {}",
                q.used_bytes.div_ceil(1024),
                q.limit_bytes / 1024
            ));
        }
        if q.limit_messages != 0 {
            resources.push(format!("MESSAGE {} {}", q.messages, q.limit_messages));
        }
        Ok((!resources.is_empty()).then(|| format!("* QUOTA \"\" ({})", resources.join(" "))))
    }

    /// GETQUOTA (RFC 9208 4.2): the one root there is.
    pub(super) async fn get_quota(&mut self, root: &AString<'_>) -> Done {
        let name: &[u8] = match root {
            AString::Atom(a) => a.inner().as_bytes(),
            AString::String(s) => s.as_ref(),
        };
        if !name.is_empty() {
            return Done::no("[NONEXISTENT] No such quota root (the account's is \"\")");
        }
        match self.quota_line().await {
            Ok(Some(l)) => {
                self.push(&l);
                Done::ok("GETQUOTA completed")
            }
            Ok(None) => Done::no("[NONEXISTENT] This account has no quota"),
            Err(d) => d,
        }
    }

    /// GETQUOTAROOT (RFC 9208 4.3): every mailbox is under the account's
    /// root "".
    pub(super) async fn get_quota_root(&mut self, m: &Mailbox<'_>) -> Done {
        let name = match self.mailbox_name(m) {
            Ok(n) => n,
            Err(d) => return d,
        };
        let Some(mut c) = self.client() else {
            return Done::bad("Log in first");
        };
        // The mailbox must exist.
        if let Err(s) = c
            .mailbox_status(pb::MailboxStatusRequest { name: name.clone() })
            .await
        {
            return store_no(&s);
        }
        let quota = match self.quota_line().await {
            Ok(q) => q,
            Err(d) => return d,
        };
        let mut line = b"* QUOTAROOT ".to_vec();
        line.extend_from_slice(&self.wire_name(&name));
        if quota.is_some() {
            line.extend_from_slice(b" \"\"");
        }
        line.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(&line);
        if let Some(q) = quota {
            self.push(&q);
        }
        Done::ok("GETQUOTAROOT completed")
    }
}
