//! CONDSTORE and QRESYNC (RFC 7162): MODSEQ in untagged FETCH responses
//! once a client enabled CONDSTORE, VANISHED instead of EXPUNGE once it
//! enabled QRESYNC, and the resynchronisation of SELECT/EXAMINE (QRESYNC
//! (...)) and UID FETCH (CHANGEDSINCE n VANISHED) from the store's log of
//! expunged UIDs.

use std::num::NonZeroU64;

use imap_codec::imap_types::fetch::MessageDataItem;
use imap_codec::imap_types::sequence::SequenceSet;

use super::*;

/// Whether `uid` falls in one of `ranges` (from [`imap_wire::seq::ranges`]).
pub(super) fn in_ranges(ranges: &[(u32, u32)], uid: u32) -> bool {
    ranges.iter().any(|&(a, b)| a <= uid && uid <= b)
}

/// The untagged responses that announce expunged messages, given as
/// (sequence number, UID) in the order [`crate::view::View::take_expunges`]
/// returns them: an EXPUNGE each, or once QRESYNC is enabled one VANISHED
/// naming their UIDs (RFC 7162 3.2.10).
pub(super) fn expunge_lines(gone: &[(u32, u32)], qresync: bool) -> Vec<String> {
    if gone.is_empty() {
        return Vec::new();
    }
    if qresync {
        let mut uids: Vec<u32> = gone.iter().map(|&(_, u)| u).collect();
        uids.sort_unstable();
        uids.dedup();
        vec![format!("* VANISHED {}", uid_list(&uids))]
    } else {
        gone.iter()
            .map(|(seq, _)| format!("* {seq} EXPUNGE"))
            .collect()
    }
}

/// Which optional parts the untagged FETCH of a flag change carries.
#[derive(Clone, Copy)]
pub(super) struct FlagFetch {
    /// \Recent is never shown under IMAP4rev2.
    pub rev2: bool,
    /// MODSEQ once CONDSTORE is enabled (RFC 7162 3.2: every later
    /// untagged FETCH carries UID and MODSEQ).
    pub condstore: bool,
}

/// The FETCH items that tell a flag change: FLAGS, UID, and MODSEQ under
/// CONDSTORE.
pub(super) fn flag_items(
    how: FlagFetch,
    m: &crate::shared::Msg,
    recent: bool,
) -> Vec<MessageDataItem<'static>> {
    let mut items = vec![MessageDataItem::Flags(crate::fetch::flags(
        &m.flags,
        recent && !how.rev2,
    ))];
    if let Some(u) = NonZeroU32::new(m.uid) {
        items.push(MessageDataItem::Uid(u));
    }
    if how.condstore
        && let Some(ms) = NonZeroU64::new(m.modseq)
    {
        items.push(MessageDataItem::ModSeq(ms));
    }
    items
}

impl Session {
    pub(super) fn flag_fetch(&self) -> FlagFetch {
        FlagFetch {
            rev2: self.rev2,
            condstore: self.condstore,
        }
    }

    /// Writes [`expunge_lines`] for expunges this session caused.
    pub(super) fn push_expunged(&mut self, gone: &[(u32, u32)]) {
        for l in expunge_lines(gone, self.qresync) {
            self.push(&l);
        }
    }

    /// UIDs the store's expunge log has after MODSEQ `since` that the view
    /// does not hold, below its UIDNEXT and within `within` (a UID set;
    /// "*" is UIDNEXT - 1): what VANISHED (EARLIER)
    /// reports. A UID expunged after the view's snapshot is still in the
    /// view and is told by a VANISHED of its own later, never twice.
    pub(super) async fn vanished_since(
        &mut self,
        since: u64,
        within: Option<&SequenceSet>,
    ) -> Result<Vec<u32>, Done> {
        let Some(view) = &self.view else {
            return Err(Done::bad("No mailbox selected"));
        };
        let (mailbox, validity, uid_next) =
            (view.name.clone(), view.uid_validity(), view.uid_next());
        // "*" is the largest UID ever given here: an expunged UID above
        // the largest still present is within "n:*" too.
        let largest = uid_next.saturating_sub(1);
        let Some(mut c) = self.client() else {
            return Err(Done::bad("Log in first"));
        };
        let r = c
            .changes(pb::ChangesRequest {
                mailbox,
                since_modseq: since,
                claim_recent: false,
                uid_validity: validity,
                expunged_only: true,
            })
            .await
            .map_err(|s| store_no(&s))?
            .into_inner();
        if r.gone {
            return Ok(Vec::new());
        }
        let ranges = within.map(|s| imap_wire::seq::ranges(s, largest));
        let Some(view) = &self.view else {
            return Err(Done::bad("No mailbox selected"));
        };
        let mut out: Vec<u32> = r
            .expunged
            .into_iter()
            .filter(|&u| u < uid_next && view.position(u).is_none())
            .filter(|&u| ranges.as_ref().is_none_or(|r| in_ranges(r, u)))
            .collect();
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// The resynchronisation of SELECT/EXAMINE (QRESYNC (uidvalidity
    /// modseq [known-uids])) (RFC 7162 3.2.5.1), once the view is open:
    /// when the UIDVALIDITY is the mailbox's, VANISHED (EARLIER) for what
    /// was expunged since `modseq`, then a FETCH (UID FLAGS MODSEQ) for
    /// every message changed since. A different UIDVALIDITY makes it a
    /// plain SELECT. The expunge log is kept whole, so the
    /// sequence-match data (for servers that forget) is not needed.
    pub(super) async fn qresync_select(
        &mut self,
        uid_validity: u32,
        modseq: u64,
        known_uids: Option<&SequenceSet>,
    ) -> Result<(), Done> {
        let Some(view) = &self.view else {
            return Ok(());
        };
        if view.uid_validity() != uid_validity {
            return Ok(());
        }
        let vanished = Box::pin(self.vanished_since(modseq, known_uids)).await?;
        if !vanished.is_empty() {
            self.push(&format!("* VANISHED (EARLIER) {}", uid_list(&vanished)));
        }
        let Some(view) = &self.view else {
            return Ok(());
        };
        let largest = view.uids().last().copied().unwrap_or(0);
        let ranges = known_uids.map(|s| imap_wire::seq::ranges(s, largest));
        let how = self.flag_fetch();
        let mut lines = Vec::new();
        for pos in 0..view.exists() as usize {
            let Some(m) = view.msg_at(pos) else { continue };
            if m.modseq <= modseq || ranges.as_ref().is_some_and(|r| !in_ranges(r, m.uid)) {
                continue;
            }
            let items = flag_items(how, m, view.recent.contains(&m.uid));
            lines.push(crate::fetch::encode(pos as u32 + 1, items));
        }
        for l in lines {
            self.out.extend_from_slice(&l);
        }
        Ok(())
    }
}
