//! COPY and MOVE (RFC 9051 6.4.7, RFC 6851), with COPYUID (RFC 4315).

use super::*;

impl Session {
    pub(super) async fn copy(
        &mut self,
        set: &SequenceSet,
        m: &Mailbox<'_>,
        uid: bool,
        remove: bool,
    ) -> Result<Done, End> {
        let positions = match self.resolve(set, uid) {
            Ok(p) => p,
            Err(d) => return Ok(d),
        };
        let dest = match self.mailbox_name(m) {
            Ok(n) => n,
            Err(d) => return Ok(d),
        };
        let Some(view) = &self.view else {
            return Ok(Done::bad("No mailbox selected"));
        };
        if remove && view.read_only {
            return Ok(Done::no("[READ-ONLY] Mailbox is read-only"));
        }
        let mailbox = view.name.clone();
        let uids: Vec<u32> = positions.iter().filter_map(|&i| view.uid_at(i)).collect();
        // UIDs of the unseen ones: NOTIFY's own-change count takes only
        // those the store really copied (others may have been expunged).
        let unseen_uids: Vec<u32> = positions
            .iter()
            .filter_map(|&i| view.msg_at(i))
            .filter(|m| !m.flags.seen)
            .map(|m| m.uid)
            .collect();
        let verb = if remove { "MOVE" } else { "COPY" };
        if uids.is_empty() {
            return Ok(Done::ok(format!("{verb} completed")));
        }
        let Some(mut c) = self.client() else {
            return Ok(Done::bad("Log in first"));
        };
        let req_dest = dest.clone();
        let req = pb::CopyRequest {
            mailbox,
            uids: Some(pb::UidSet::of(uids)),
            destination: dest,
        };
        let r = if remove {
            c.r#move(req).await
        } else {
            c.copy(req).await
        };
        let r = match r {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == Code::NotFound => {
                return Ok(Done::no("[TRYCREATE] No such mailbox"));
            }
            Err(s) => return Ok(store_no(&s)),
        };
        self.added_here = (r.destination_uid_validity, r.destination_uids.clone());
        if !r.source_uids.is_empty() {
            let copied: std::collections::HashSet<u32> = r.source_uids.iter().copied().collect();
            let unseen = unseen_uids.iter().filter(|u| copied.contains(u)).count() as u32;
            self.notify_own_change(&req_dest, r.destination_uids.len() as u32, unseen);
        }
        if r.source_uids.is_empty() {
            // RFC 2180 4.3: every one of them was expunged by another
            // session meanwhile; nothing was copied, which is no failure
            // the client could have avoided. No COPYUID: its sets cannot
            // be empty (RFC 4315 3).
            return Ok(Done::ok(format!(
                "[EXPUNGEISSUED] {verb} completed; the messages were expunged meanwhile"
            )));
        }
        let code = format!(
            "[COPYUID {} {} {}]",
            r.destination_uid_validity,
            uid_list(&r.source_uids),
            uid_list(&r.destination_uids)
        );
        if remove {
            // RFC 6851: COPYUID in an untagged OK before the EXPUNGEs.
            self.push(&format!("* OK {code} Moved"));
            if let Some(v) = self.view.as_mut() {
                v.apply_expunged(&r.source_uids);
            }
            // RFC 5267 4.3: REMOVEFROM before the EXPUNGEs.
            Box::pin(self.context_removals()).await;
            if let Some(v) = self.view.as_mut() {
                let gone = v.take_expunges();
                self.push_expunged(&gone);
            }
            return Ok(Done::ok("MOVE completed"));
        }
        Ok(Done::ok(format!("{code} COPY completed")))
    }
}
