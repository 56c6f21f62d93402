//! STORE and UID STORE (RFC 9051 6.4.6), UNCHANGEDSINCE and MODIFIED (RFC
//! 7162 3.1.3).

use super::*;

impl Session {
    pub(super) async fn store(
        &mut self,
        set: &SequenceSet,
        kind: StoreType,
        response: StoreResponse,
        flags: &[Flag<'_>],
        uid: bool,
        unchanged_since: Option<u64>,
    ) -> Done {
        let positions = match self.resolve(set, uid) {
            Ok(p) => p,
            Err(d) => return d,
        };
        let pbflags = match to_pb_flags(flags) {
            Ok(f) => f,
            Err(d) => return d,
        };
        let Some(view) = &self.view else {
            return Done::bad("No mailbox selected");
        };
        if view.read_only {
            return Done::no("[READ-ONLY] Mailbox is read-only");
        }
        let mailbox = view.name.clone();
        let uids: Vec<u32> = positions.iter().filter_map(|&i| view.uid_at(i)).collect();
        if uids.is_empty() {
            return Done::ok("STORE completed");
        }
        if unchanged_since == Some(0) {
            // RFC 7162 3.1.3: UNCHANGEDSINCE 0 always fails (every message
            // has system flags, whether set or not).
            let mut failed: Vec<u32> = if uid {
                uids
            } else {
                positions.iter().map(|&i| i as u32 + 1).collect()
            };
            failed.sort_unstable();
            return Done::ok(format!(
                "[MODIFIED {}] Conditional STORE failed",
                uid_list(&failed)
            ));
        }
        let Some(mut c) = self.client() else {
            return Done::bad("Log in first");
        };
        let mode = match kind {
            StoreType::Replace => pb::FlagsMode::Replace,
            StoreType::Add => pb::FlagsMode::Add,
            StoreType::Remove => pb::FlagsMode::Remove,
        };
        let requested = pbflags.clone();
        let asked = uids.clone();
        let r = c
            .store_flags(pb::StoreFlagsRequest {
                mailbox,
                uids: Some(pb::UidSet::of(uids)),
                mode: mode as i32,
                flags: Some(pbflags),
                unchanged_since: unchanged_since.unwrap_or(0),
            })
            .await;
        let r = match r {
            Ok(r) => r.into_inner(),
            Err(s) => return store_no(&s),
        };
        let silent = matches!(response, StoreResponse::Silent);
        // The store reports every message it found (changed or not) in
        // `updated` or `modified`; the rest were expunged meanwhile.
        let found: std::collections::HashSet<u32> = r
            .updated
            .iter()
            .map(|e| e.uid)
            .chain(r.modified.iter().copied())
            .collect();
        let gone: Vec<u32> = asked.into_iter().filter(|u| !found.contains(u)).collect();
        for e in &r.updated {
            if let Some(f) = &e.flags {
                self.announce_keywords(f);
            }
        }
        let Some(view) = self.view.as_mut() else {
            return Done::bad("No mailbox selected");
        };
        let mut out = Vec::new();
        // After .SILENT the client assumes its own change and nothing else;
        // if someone else's change is in the result (or was not told yet),
        // it still gets a FETCH.
        let mut owed_fetch = Vec::new();
        for e in &r.updated {
            let Some(m) = view.position(e.uid).and_then(|i| view.msg_at(i)) else {
                continue;
            };
            let new = e.flags.clone().unwrap_or_default();
            let told = silent
                && !view.pending_flags.contains(&e.uid)
                && crate::view::same_flags(
                    &crate::view::apply_flags(&m.flags, mode, &requested),
                    &new,
                );
            if silent && !told {
                owed_fetch.push(e.uid);
            }
        }
        // MODSEQs before this STORE: a message whose MODSEQ moved changed.
        let before: std::collections::HashMap<u32, u64> = r
            .updated
            .iter()
            .filter_map(|e| view.msg(e.uid).map(|m| (e.uid, m.modseq)))
            .collect();
        let updated = r.updated;
        let answered: Vec<(u32, pb::Flags, u64)> = updated
            .iter()
            .map(|e| (e.uid, e.flags.clone().unwrap_or_default(), e.modseq))
            .collect();
        view.apply_own(updated);
        for (u, _, modseq) in &answered {
            // Told by this STORE's answer, unless someone else's newer
            // change is in the view already: that one is still owed.
            if view.msg(*u).is_none_or(|m| m.modseq == *modseq) {
                view.pending_flags.remove(u);
            }
        }
        let owed: std::collections::HashSet<u32> = owed_fetch.iter().copied().collect();
        view.pending_flags.extend(owed_fetch);
        if !gone.is_empty() {
            // RFC 2180 4.2: the store says these are gone; the view learns
            // it now (they keep their numbers until an EXPUNGE may be
            // sent), so no FETCH shows one of them, unchanged by this
            // STORE, as if the STORE had left it so.
            view.apply_expunged(&gone);
        }
        let condstore = self.condstore;
        for (u, f, modseq) in &answered {
            let Some(i) = view.position(*u) else { continue };
            use imap_codec::imap_types::fetch::MessageDataItem as Item;
            let mut items = Vec::new();
            if !silent {
                items.push(Item::Flags(fetch::flags(
                    f,
                    view.recent.contains(u) && !self.rev2,
                )));
            } else if !condstore || owed.contains(u) || before.get(u) == Some(modseq) {
                // .SILENT: nothing, unless CONDSTORE is on and this changed
                // the message (RFC 7162 3.1.3: its new MODSEQ is sent even
                // with .SILENT). Owed ones get a whole FETCH below.
                continue;
            }
            if (uid || condstore)
                && let Some(u) = NonZeroU32::new(*u)
            {
                items.push(Item::Uid(u));
            }
            if condstore && let Some(m) = std::num::NonZeroU64::new(*modseq) {
                items.push(Item::ModSeq(m));
            }
            out.push(fetch::encode(i as u32 + 1, items));
        }
        for o in out {
            self.out.extend_from_slice(&o);
        }
        if !r.modified.is_empty() {
            // RFC 7162 3.1.3: message numbers for STORE, UIDs for UID STORE.
            let mut failed: Vec<u32> = match &self.view {
                Some(v) if !uid => r
                    .modified
                    .iter()
                    .filter_map(|u| v.position(*u).map(|i| i as u32 + 1))
                    .collect(),
                _ => r.modified.clone(),
            };
            failed.sort_unstable();
            failed.dedup();
            return Done::ok(format!(
                "[MODIFIED {}] Conditional STORE failed for some",
                uid_list(&failed)
            ));
        }
        if !gone.is_empty() {
            // RFC 2180 4.2: someone else expunged some of them; the change
            // applies to the rest and the STORE succeeds (as Dovecot's
            // does: a tagged NO is a failed user action to a client that
            // could not have known). RFC 5530's EXPUNGEISSUED hints that
            // the EXPUNGEs come with a later command.
            return Done::ok(
                "[EXPUNGEISSUED] STORE completed; some messages were expunged meanwhile",
            );
        }
        Done::ok("STORE completed")
    }
}
