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
        let Some(mut c) = self.client() else {
            return Ok(Done::bad("Log in first"));
        };
        let r = c
            .expunge(pb::ExpungeRequest {
                mailbox,
                uids,
                ignore_deleted_flag: false,
                lease_id: String::new(),
            })
            .await;
        let r = match r {
            Ok(r) => r.into_inner(),
            Err(s) => return Ok(store_no(&s)),
        };
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
