//! CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267 4): a SEARCH or SORT with
//! RETURN (UPDATE) keeps its result, and the session tells the client how
//! it changes as messages arrive, change flags or go: `ESEARCH (TAG ...)
//! REMOVEFROM (...)` before the EXPUNGEs that cause it, `ADDTO (...)` after
//! the EXISTS (4.3). A SEARCH context uses position 0; a SORT context
//! names each message's position in the sorted result. CANCELUPDATE ends
//! contexts; so does leaving the mailbox.

use std::collections::HashSet;

use super::*;

/// Contexts a session may keep (RFC 5267 4.2: at least one; beyond this
/// an UPDATE gets `NO [NOUPDATE "tag"]` and the search is still answered).
pub(super) const MAX_CONTEXTS: usize = 10;

pub(super) struct SearchContext {
    pub tag: String,
    pub uid: bool,
    /// The store's search key (message numbers in the criteria were
    /// resolved when the command came, RFC 5267 4.2).
    pub key: pb::SearchKey,
    /// SORT criteria; `None` for a SEARCH context.
    pub sort: Option<Vec<pb::SortCriterion>>,
    /// The result as UIDs: mailbox order for SEARCH, sort order for SORT.
    pub result: Vec<u32>,
    /// The view's marker when `result` was computed.
    pub at: (u64, u32, usize),
    /// UIDs found matching that the client is not told of yet (ADDTO
    /// waits for their EXISTS).
    pub pending: Vec<u32>,
    /// The head of each update of a context an ESEARCH made (RFC 7377
    /// 2: its correlator names the mailbox and UIDVALIDITY too); `None`
    /// for SEARCH's and SORT's.
    pub head: Option<String>,
}

impl Session {
    /// The untagged updates at the end of a command (or an IDLE wake-up),
    /// with the search contexts' around them: REMOVEFROM before any
    /// EXPUNGE, ADDTO after the EXISTS (RFC 5267 4.3).
    pub(super) async fn tell_updates(&mut self, expunges_ok: bool) {
        Box::pin(self.context_removals()).await;
        // NOTIFY's SELECTED MessageNew fetch-atts: the messages that
        // arrive now from elsewhere get a FETCH after their EXISTS.
        let fetch_new = self
            .notify
            .as_ref()
            .and_then(|n| n.selected.as_ref())
            .is_some_and(|s| s.fetch_atts.is_some());
        // New messages join the end of the view with UIDs from its
        // UIDNEXT on: only those are looked at, not the whole mailbox.
        let before: Option<(u32, u32)> = match (&self.view, fetch_new) {
            (Some(v), true) => Some((v.uid_validity(), v.uid_next())),
            _ => None,
        };
        let own = self.added_here.1.clone();
        self.drain_updates(expunges_ok);
        self.context_additions();
        if let (Some((validity, next)), Some(v)) = (before, &self.view)
            && v.uid_validity() == validity
        {
            let mut new: Vec<u32> = (0..v.exists() as usize)
                .rev()
                .map_while(|pos| v.uid_at(pos).filter(|&u| u >= next))
                .filter(|u| !own.contains(u))
                .collect();
            new.reverse();
            Box::pin(self.notify_fetch_new(&new)).await;
        }
        Box::pin(self.notify_pending()).await;
    }

    /// Registers a context for `tag` after its command answered (its
    /// result: the store's `found`, less what this session does not know),
    /// or tells why not (`NO [NOUPDATE]`).
    pub(super) fn add_context(
        &mut self,
        tag: &str,
        uid: bool,
        key: pb::SearchKey,
        sort: Option<Vec<pb::SortCriterion>>,
        found: &[u32],
    ) {
        let Some(view) = &self.view else { return };
        let result: Vec<u32> = found
            .iter()
            .copied()
            .filter(|&u| view.position(u).is_some())
            .collect();
        if self.contexts.len() >= MAX_CONTEXTS {
            // A tag is an atom: no quoting needed.
            self.push(&format!(
                "* NO [NOUPDATE \"{tag}\"] Too many search contexts"
            ));
            return;
        }
        let at = view.marker();
        self.contexts.push(SearchContext {
            tag: tag.to_string(),
            uid,
            key,
            sort,
            result,
            at,
            pending: Vec::new(),
            head: None,
        });
    }

    /// Whether `tag` already has a context (RFC 5267 4.2: reusing it for
    /// another UPDATE is BAD).
    /// [`Session::add_context`] for an ESEARCH of the selected mailbox
    /// alone (results in UIDs), whose updates start with `head`.
    pub(super) fn add_esearch_context(
        &mut self,
        tag: &str,
        key: pb::SearchKey,
        found: &[u32],
        head: String,
    ) {
        let before = self.contexts.len();
        self.add_context(tag, true, key, None, found);
        if self.contexts.len() > before
            && let Some(ctx) = self.contexts.last_mut()
        {
            ctx.head = Some(head);
        }
    }

    pub(super) fn context_tag_in_use(&self, tag: &str) -> bool {
        self.contexts.iter().any(|c| c.tag == tag)
    }

    /// CANCELUPDATE: ends the named contexts.
    pub(super) fn cancel_update(&mut self, tags: &[String]) -> Done {
        let before = self.contexts.len();
        self.contexts.retain(|c| !tags.contains(&c.tag));
        if self.contexts.len() + tags.len() > before {
            return Done::no("Unknown search context tag");
        }
        Done::ok("CANCELUPDATE completed: no further updates")
    }

    /// Before the untagged updates of a command (or an IDLE wake-up): when
    /// the mailbox moved, evaluates every context again and sends the
    /// REMOVEFROM of what left each result, in the numbers the client
    /// knows now (before any EXPUNGE); what joined waits for
    /// [`Session::context_additions`].
    pub(super) async fn context_removals(&mut self) {
        if self.contexts.is_empty() {
            return;
        }
        let Some(view) = self.view.as_mut() else {
            self.contexts.clear();
            return;
        };
        view.sync(&std::collections::HashMap::new());
        let marker = view.marker();
        let (mailbox, live) = (view.name.clone(), view.live_uids());
        let Some(mut c) = self.client() else { return };
        for i in 0..self.contexts.len() {
            if self.contexts[i].at == marker {
                continue;
            }
            let ctx = &self.contexts[i];
            // Only what changed since the last look is evaluated again:
            // messages with a newer MODSEQ or new UIDs (RFC 5267 appendix
            // B); an expunged one simply leaves.
            let touched: HashSet<u32> = match &self.view {
                Some(v) => v.touched_since(ctx.at.0, ctx.at.1).into_iter().collect(),
                None => return,
            };
            let matched: Vec<u32> = if touched.is_empty() {
                Vec::new()
            } else {
                let mut t: Vec<u32> = touched.iter().copied().collect();
                t.sort_unstable();
                let r = c
                    .search(pb::SearchRequest {
                        mailbox: mailbox.clone(),
                        key: Some(pb::SearchKey {
                            key: Some(pb::search_key::Key::And(pb::SearchKeyList {
                                keys: vec![
                                    ctx.key.clone(),
                                    pb::SearchKey {
                                        key: Some(pb::search_key::Key::Uid(pb::UidSet::of(t))),
                                    },
                                ],
                            })),
                        }),
                    })
                    .await;
                // A failure leaves the context as it was, to try again.
                match r {
                    Ok(r) => r.into_inner().uids,
                    Err(_) => continue,
                }
            };
            let ctx = &self.contexts[i];
            let old: HashSet<u32> = ctx.result.iter().copied().collect();
            let stays = |u: &u32| live.binary_search(u).is_ok() && !touched.contains(u);
            let found: Result<Vec<u32>, ()> = match &ctx.sort {
                None => {
                    let mut v: Vec<u32> = ctx.result.iter().copied().filter(stays).collect();
                    v.extend(matched.iter().copied());
                    v.sort_unstable();
                    v.dedup();
                    Ok(v)
                }
                // Nothing joined: the sorted result keeps its order.
                Some(_) if matched.iter().all(|u| old.contains(u)) => {
                    let keep: HashSet<u32> = matched.iter().copied().collect();
                    Ok(ctx
                        .result
                        .iter()
                        .copied()
                        .filter(|u| stays(u) || keep.contains(u))
                        .collect())
                }
                // Something joined: the store sorts the new members.
                Some(criteria) => {
                    let mut members: Vec<u32> = ctx.result.iter().copied().filter(stays).collect();
                    members.extend(matched.iter().copied());
                    members.sort_unstable();
                    members.dedup();
                    c.sort(pb::SortRequest {
                        mailbox: mailbox.clone(),
                        criteria: criteria.clone(),
                        key: None,
                        uids: Some(pb::UidSet::of(members)),
                    })
                    .await
                    .map(|r| r.into_inner().uids)
                    .map_err(|_| ())
                }
            };
            // A failure leaves the context as it was, to try again.
            let Ok(new) = found else { continue };
            let Some(view) = &self.view else { return };
            let ctx = &mut self.contexts[i];
            let now: HashSet<u32> = new.iter().copied().collect();
            let before: HashSet<u32> = ctx.result.iter().copied().collect();
            let number = |u: u32| -> Option<u32> {
                if ctx.uid {
                    Some(u)
                } else {
                    view.position(u).map(|p| p as u32 + 1)
                }
            };
            let mut line = String::new();
            if ctx.sort.is_some() {
                // From the end, so each position is before its removal
                // and the earlier ones stay as they were.
                let mut pairs = Vec::new();
                for (pos, &u) in ctx.result.iter().enumerate().rev() {
                    if !now.contains(&u)
                        && let Some(n) = number(u)
                    {
                        pairs.push(format!("{} {n}", pos + 1));
                    }
                }
                if !pairs.is_empty() {
                    line = format!("REMOVEFROM ({})", pairs.join(" "));
                }
            } else {
                let mut gone: Vec<u32> = ctx
                    .result
                    .iter()
                    .filter(|u| !now.contains(u))
                    .filter_map(|&u| number(u))
                    .collect();
                gone.sort_unstable();
                if !gone.is_empty() {
                    line = format!("REMOVEFROM (0 {})", uid_list(&gone));
                }
            }
            ctx.pending = new
                .iter()
                .copied()
                .filter(|u| !before.contains(u))
                .collect();
            ctx.result = new;
            ctx.at = marker;
            if !line.is_empty() {
                let head = esearch_head(ctx);
                self.push(&format!("{head} {line}"));
            }
        }
    }

    /// After the untagged updates: the ADDTO of what joined each result,
    /// numbered as the client now numbers messages (after the EXISTS that
    /// announced them).
    pub(super) fn context_additions(&mut self) {
        let Some(view) = &self.view else {
            self.contexts.clear();
            return;
        };
        let mut lines = Vec::new();
        for ctx in &mut self.contexts {
            if ctx.pending.is_empty() {
                continue;
            }
            let added: HashSet<u32> = std::mem::take(&mut ctx.pending).into_iter().collect();
            let number = |u: u32| -> Option<u32> {
                if ctx.uid {
                    Some(u)
                } else {
                    view.position(u).map(|p| p as u32 + 1)
                }
            };
            let line = if ctx.sort.is_some() {
                // In order of their final positions: each lands where it
                // belongs once those before it are in.
                let mut pairs: Vec<(usize, Vec<u32>)> = Vec::new();
                for (pos, &u) in ctx.result.iter().enumerate() {
                    if !added.contains(&u) {
                        continue;
                    }
                    let Some(n) = number(u) else { continue };
                    match pairs.last_mut() {
                        // Consecutive positions and numbers: one range.
                        Some((p, run))
                            if *p + run.len() == pos + 1 && run.last() == Some(&(n - 1)) =>
                        {
                            run.push(n)
                        }
                        _ => pairs.push((pos + 1, vec![n])),
                    }
                }
                let text: Vec<String> = pairs
                    .iter()
                    .map(|(p, run)| format!("{p} {}", uid_list(run)))
                    .collect();
                format!("ADDTO ({})", text.join(" "))
            } else {
                let mut nums: Vec<u32> = added.iter().filter_map(|&u| number(u)).collect();
                nums.sort_unstable();
                format!("ADDTO (0 {})", uid_list(&nums))
            };
            if !line.ends_with("()") && !line.ends_with("(0 )") {
                lines.push(format!("{} {line}", esearch_head(ctx)));
            }
        }
        for l in lines {
            self.push(&l);
        }
    }
}

/// `* ESEARCH (TAG "tag") [UID]`, or the context's own head.
fn esearch_head(ctx: &SearchContext) -> String {
    if let Some(h) = &ctx.head {
        return h.clone();
    }
    let mut s = format!("* ESEARCH (TAG \"{}\")", ctx.tag);
    if ctx.uid {
        s.push_str(" UID");
    }
    s
}
