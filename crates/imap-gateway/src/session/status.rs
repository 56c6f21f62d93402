//! STATUS (RFC 9051 6.3.11).

use super::*;

impl Session {
    pub(super) async fn status(&mut self, m: &Mailbox<'_>, items: &[StatusDataItemName]) -> Done {
        let name = match self.mailbox_name(m) {
            Ok(n) => n,
            Err(d) => return d,
        };
        let Some(mut c) = self.client() else {
            return Done::bad("Log in first");
        };
        let st = if self.view.as_ref().is_some_and(|v| v.name == name) {
            // The selected mailbox: bring the view up to date, tell the
            // client what changed, and answer from the view, so STATUS
            // agrees with what this session was told.
            Box::pin(self.sync_view()).await;
            self.tell_updates(true).await;
            match &self.view {
                Some(v) => v.status(),
                None => return Done::no("[NONEXISTENT] Mailbox was deleted"),
            }
        } else {
            match c
                .mailbox_status(pb::MailboxStatusRequest { name: name.clone() })
                .await
            {
                Ok(r) => r.into_inner().status.unwrap_or_default(),
                Err(s) => return store_no(&s),
            }
        };
        let mut parts = Vec::new();
        for i in items {
            parts.push(match i {
                StatusDataItemName::Messages => format!("MESSAGES {}", st.messages),
                StatusDataItemName::Recent => format!("RECENT {}", st.recent),
                StatusDataItemName::UidNext => format!("UIDNEXT {}", st.uid_next),
                StatusDataItemName::UidValidity => format!("UIDVALIDITY {}", st.uid_validity),
                StatusDataItemName::Unseen => format!("UNSEEN {}", st.unseen),
                StatusDataItemName::Deleted => format!("DELETED {}", st.deleted),
                // RFC 9208 4.1.4: in units of 1,024 octets.
                StatusDataItemName::DeletedStorage => {
                    format!("DELETED-STORAGE {}", st.deleted_size.div_ceil(1024))
                }
                StatusDataItemName::Size => format!("SIZE {}", st.size),
                StatusDataItemName::HighestModSeq => format!("HIGHESTMODSEQ {}", st.highest_modseq),
            });
        }
        if let Some(alone) = self.status_mailboxid.take() {
            if alone {
                parts.clear();
            }
            parts.push(format!("MAILBOXID (F{})", st.uid_validity));
        }
        let mut line = b"* STATUS ".to_vec();
        line.extend_from_slice(&self.wire_name(&name));
        line.extend_from_slice(format!(" ({})\r\n", parts.join(" ")).as_bytes());
        self.out.extend_from_slice(&line);
        Done::ok("STATUS completed")
    }
}
