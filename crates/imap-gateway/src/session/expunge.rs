//! EXPUNGE, UID EXPUNGE (RFC 4315) and CLOSE.

use super::*;

impl Session {
    /// EXPUNGE, UID EXPUNGE and CLOSE: removes \Deleted messages.
    pub(super) async fn expunge_deleted(
        &mut self,
        set: Option<&SequenceSet>,
        announce: bool,
    ) -> Result<Done, End> {
        let Some(view) = &self.view else {
            return Ok(Done::bad("No mailbox selected"));
        };
        if view.read_only {
            return Ok(if announce {
                Done::no("[READ-ONLY] Mailbox is read-only")
            } else {
                Done::ok("CLOSE completed")
            });
        }
        let mailbox = view.name.clone();
        let uids = set.map(|s| {
            pb::UidSet::of(
                view.uid_positions(s)
                    .into_iter()
                    .filter_map(|i| view.uid_at(i)),
            )
        });
        let Some(c) = self.client() else {
            return Ok(Done::bad("Log in first"));
        };
        // A call lost in transit (its store replica gone mid-call) may
        // have expunged: it is sent again, as the client would resend it.
        // Removing the \Deleted messages twice is removing them once (a
        // message flagged meanwhile goes too, as if the command came a
        // moment later); what the lost call removed is learnt below.
        let mut tries = 0;
        let r = mailbox_api::again_in_transit("EXPUNGE", || {
            tries += 1;
            let mut c = c.clone();
            let req = pb::ExpungeRequest {
                mailbox: mailbox.clone(),
                uids: uids.clone(),
                ignore_deleted_flag: false,
                lease_id: String::new(),
            };
            async move { c.expunge(req).await }
        })
        .await;
        let r = match r {
            Ok(r) => r.into_inner(),
            Err(s) => return Ok(store_no(&s)),
        };
        if tries > 1 {
            // The messages a lost try removed are not in this answer:
            // the view learns them from the store before the reply, so
            // their EXPUNGE responses come before the OK.
            self.sync_view().await;
        }
        if announce {
            if let Some(v) = self.view.as_mut() {
                v.apply_expunged(&r.expunged);
            }
            // RFC 5267 4.3: REMOVEFROM before the EXPUNGEs.
            Box::pin(self.context_removals()).await;
            if let Some(v) = self.view.as_mut() {
                let gone = v.take_expunges();
                self.push_expunged(&gone);
            }
        }
        Ok(Done::ok("EXPUNGE completed"))
    }
}
